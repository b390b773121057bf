"""Planning a run: matrix -> configs -> keys -> one bulk look-up -> a state per config.

Example::

    plan = make_plan(experiment, {"parameters": {"a": [1, 2]}}, "results.sqlite")
    plan.states  # ["cached", "new"]: one was stored, one was not
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from memento.keys.encoding import KeyMaker, experiment_name
from memento.keys.fingerprint import code_fingerprint, is_stale
from memento.matrix.configs import Config, generate_configurations
from memento.store.backends import open_store
from memento.store.sqlite import default_store_path

#: What a config's stored result makes of it: see :func:`classify`.
State = Literal["cached", "failed", "new", "stale"]

#: What a run reads of each stored result; the two columns :func:`classify` needs come first.
LOAD_COLUMNS = (
    "status",
    "fingerprint",
    "value",
    "value_file",
    "start_time",
    "runtime",
    "cpu_time",
    "peak_rss",
    "peak_vms",
    "metrics",
    "attempts",
    "host",
)
_PLAN_COLUMNS = LOAD_COLUMNS[:2]


@dataclass
class Plan:
    """What a run will do: each config's key and state, in matrix order."""

    configs: list[Config]
    keys: list[str]
    states: list[State]
    store_path: str
    experiment: str
    #: Stored rows read while planning (``LOAD_COLUMNS``), reused by the run.
    rows: dict[str, tuple[Any, ...]] | None = None
    #: The experiment's current code fingerprint.
    fingerprint: str = ""
    #: What happens to stale results: see ``Memento(on_code_change=...)``.
    on_code_change: str = "warn"
    #: The hash of the experiment's identity (see ``KeyMaker.identity``).
    identity: str = ""

    def count(self, state: State) -> int:
        """How many configs are in ``state``."""
        return sum(1 for s in self.states if s == state)

    def summary(self) -> str:
        """``"4 configs: 1 cached, 1 failed before, 1 stale, 1 new"``."""
        labels: tuple[tuple[State, str], ...] = (
            ("cached", "cached"),
            ("failed", "failed before"),
            ("stale", "stale"),
            ("new", "new"),
        )
        parts = [f"{self.count(s)} {label}" for s, label in labels]
        return f"{len(self.keys)} configs: " + ", ".join(parts)

    def lines(self) -> list[str]:
        """One line per config, with its state, as a dry run prints them."""
        stale = "stale: rerun" if self.on_code_change == "rerun" else "stale: reuse"
        labels = {"cached": "cached", "failed": "failed before", "new": "new", "stale": stale}
        return [
            f"  [{labels[state]:>13}] {config}\n"
            for config, state in zip(self.configs, self.states)
        ]


def make_plan(
    func: Callable[..., Any],
    matrix: Mapping[str, Any],
    cache_path: str | os.PathLike[str] | None = None,
    *,
    version: str | None = None,
    on_code_change: str = "warn",
    keep_rows: bool = False,
) -> Plan:
    """Expand ``matrix`` and classify each config of ``func`` against the store.

    Runs nothing and writes nothing: a store that does not exist yet plans every config as
    new. With ``keep_rows``, the look-up also reads each stored result (``LOAD_COLUMNS``),
    which a real run then reuses instead of reading the store a second time.
    """
    # Materialised once here; every later step walks this list.
    configs = list(generate_configurations(matrix))
    keymaker = KeyMaker(func, version)
    keys = [keymaker.key(c._params, c.settings) for c in configs]
    path = default_store_path(cache_path)
    found = _look_up(path, keys, LOAD_COLUMNS if keep_rows else _PLAN_COLUMNS)
    fingerprint = code_fingerprint(func)
    return Plan(
        configs,
        keys,
        classify(keys, found, fingerprint),
        str(path),
        experiment_name(func),
        found if keep_rows else None,
        fingerprint=fingerprint,
        on_code_change=on_code_change,
        identity=keymaker.identity,
    )


def classify(
    keys: Sequence[str], rows: Mapping[str, Sequence[Any]], fingerprint: str
) -> list[State]:
    """Each key's state from its stored row (``(status, fingerprint, ...)``), in order.

    No row: ``"new"``; a failed row: ``"failed"``; a row computed by other code than
    ``fingerprint`` (see :func:`~memento.keys.fingerprint.is_stale`): ``"stale"``; else
    ``"cached"``.
    """
    states: list[State] = []
    for key in keys:
        row = rows.get(key)
        if row is None:
            states.append("new")
        elif row[0] == "failed":
            states.append("failed")
        elif is_stale(row[1], fingerprint):
            states.append("stale")
        else:
            states.append("cached")
    return states


def _look_up(path: Path, keys: list[str], columns: Sequence[str]) -> dict[str, tuple[Any, ...]]:
    """The stored rows of ``keys``, in one bulk read-only look-up (none without a store)."""
    if not path.is_file():
        return {}
    with open_store(path, readonly=True) as store:
        return store.lookup(keys, columns)


__all__ = ["LOAD_COLUMNS", "Plan", "State", "classify", "make_plan"]
