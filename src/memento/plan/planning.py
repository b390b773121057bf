"""Planning a run: matrix -> configs -> keys -> one bulk look-up -> a state per config.

Example::

    plan = make_plan(experiment, {"parameters": {"a": [1, 2]}}, "results.sqlite")
    plan.states  # ["cached", "new"]: one was stored, one was not
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from memento.keys.encoding import KeyMaker, experiment_name
from memento.keys.fingerprint import code_fingerprint, is_stale
from memento.matrix.configs import Config, generate_configurations
from memento.store.backends import open_store, redact, store_location, url_scheme
from memento.store.leases import Lease, holder_dead

#: What a config's stored result makes of it: see :func:`classify`; ``"running"``: not
#: stored, and claimed by a live driver elsewhere (its lease is in :attr:`Plan.holders`).
State = Literal["cached", "failed", "new", "stale", "running"]

#: What a run reads of each stored result; the two columns :func:`classify` needs come first.
LOAD_COLUMNS = (
    "status",
    "fingerprint",
    "value",
    "value_file",
    "value_format",
    "value_info",
    "start_time",
    "runtime",
    "cpu_time",
    "peak_rss",
    "peak_vms",
    "metrics",
    "attempts",
    "host",
    "run_id",
    "output_dir",
    "updated",
)
#: What a plan alone reads: what :func:`classify` needs, and when each row was written.
_PLAN_COLUMNS = (*LOAD_COLUMNS[:2], "updated")


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
    #: The store's clock just before the look-up: a result stored at or after it was
    #: written since (by another driver); 0 when there was no store yet.
    made_at: float = 0.0
    #: The leases of the configs in state ``"running"``: key -> who holds it.
    holders: dict[str, Lease] = field(default_factory=dict)
    #: When each stored row was written, as the plan read it (key -> ``updated``): a row of
    #: another run that is new or changed since was stored by another driver meanwhile.
    stored_at: dict[str, float] = field(default_factory=dict)

    @property
    def store_name(self) -> str:
        """The store as shown (a server URL without its password)."""
        return redact(self.store_path)

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
        if self.holders:
            parts.append(f"{self.count('running')} running elsewhere")
        return f"{len(self.keys)} configs: " + ", ".join(parts)

    def lines(self) -> list[str]:
        """One line per config, with its state, as a dry run prints them."""
        stale = "stale: rerun" if self.on_code_change == "rerun" else "stale: reuse"
        labels = {"cached": "cached", "failed": "failed before", "new": "new", "stale": stale}
        width = 16 if self.holders else 13
        lines = []
        for config, key, state in zip(self.configs, self.keys, self.states):
            if state == "running":
                lease = self.holders[key]
                lines.append(f"  [{'running elsewhere':>{width}}] {config} ({lease.holder})\n")
            else:
                lines.append(f"  [{labels[state]:>{width}}] {config}\n")
        return lines


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
    location = store_location(cache_path)
    look = _look_up(location, keys, LOAD_COLUMNS if keep_rows else _PLAN_COLUMNS)
    fingerprint = code_fingerprint(func)
    # What is not done and leased by a live driver runs elsewhere (see _look_up).
    states: list[State] = [
        "running" if key in look.holders else state
        for key, state in zip(keys, classify(keys, look.rows, fingerprint))
    ]
    return Plan(
        configs,
        keys,
        states,
        location,
        experiment_name(func),
        look.rows if keep_rows else None,
        fingerprint=fingerprint,
        on_code_change=on_code_change,
        identity=keymaker.identity,
        made_at=look.made_at,
        holders=look.holders,
        stored_at={key: row[-1] for key, row in look.rows.items()},
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


@dataclass
class _LookUp:
    rows: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    holders: dict[str, Lease] = field(default_factory=dict)
    made_at: float = 0.0


def _look_up(location: str, keys: list[str], columns: Sequence[str]) -> _LookUp:
    """The stored rows of ``keys``, in one bulk read-only look-up, and the live leases of the
    others (nothing without a store)."""
    if url_scheme(location) is None and not Path(location).is_file():
        return _LookUp()
    with open_store(location, readonly=True) as store:
        made_at = store.now()
        rows = store.lookup(keys, columns)
        holders = {}
        if len(rows) < len(keys) or any(row[0] != "done" for row in rows.values()):
            leased = store.leases([k for k in keys if k not in rows or rows[k][0] != "done"])
            holders = {k: v for k, v in leased.items() if not holder_dead(v, made_at)}
        return _LookUp(rows, holders, made_at)


__all__ = ["LOAD_COLUMNS", "Plan", "State", "classify", "make_plan"]
