"""memento-ml 1.2 stores: read them (never write them) and carry their results over.

A 1.2 store is an SQLite file with a ``cache`` table (``key``, ``ts``, ``value``) and a
``checkpoint_table`` of the same shape. For a result of ``Memento.run``, ``key`` is
``cloudpickle.dumps({"function": func.__name__, "args": [config]})`` and ``value`` is the
path of a cloudpickle file, ``memento_cache/<sha256>.pkl``, relative to the directory 1.2 ran
in; the file holds a 1.2 ``Result`` (``config``, ``inner``, ``metrics`` as DataFrames,
``start_time``, ``runtime``, ...).

:func:`import_legacy_store` (the ``memento import-1.2`` command) reads such a store read-only
and writes each result it can load into a memento store, as a success under the key memento
computes for the experiment and config, so that ``Memento(experiment).run(matrix,
cache_path=NEW)`` finds it. 1.2 kept only the experiment's ``__name__`` in its keys, so the
experiment is named by the user (``--experiment``). Loading a result unpickles it, which runs
code stored in the pickle: import only stores you trust.
"""

from __future__ import annotations

import datetime
import importlib
import os
import pickle
import pickletools
import sys
import types
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memento._util.text import params_json
from memento.keys.encoding import KeyMaker, experiment_name
from memento.keys.fingerprint import code_fingerprint
from memento.keys.identity import main_as_script_of
from memento.matrix.configs import Config
from memento.store.backends import open_store, redact, store_location, url_scheme
from memento.store.base import BaseStore, StoredOutcome
from memento.store.queries import read_legacy_store

#: Rows written per transaction: an interrupted import keeps what it wrote, and a second
#: import adds only what is missing.
_BATCH = 100
_EXAMPLES = 3


# -- reading 1.2 pickles ----------------------------------------------------------------------
class _Result12:
    """A 1.2 ``memento.task_interface.Result`` as unpickled: its attributes, nothing else."""

    config: Any
    inner: Any
    metrics: Any
    start_time: Any
    runtime: Any
    memory: Any


class _Memory12:
    """A 1.2 ``MemoryUsage``: ``virtual_peak`` and ``hardware_peak``."""

    virtual_peak: int | None
    hardware_peak: int | None


class _Config12(Config):
    """A 1.2 ``Config`` as unpickled (state ``{"_dict": ..., "settings": ...}``).

    A :class:`~memento.matrix.configs.Config` in every respect; it pickles as a plain ``Config``.
    """

    __slots__ = ()

    def __setstate__(self, state: dict[str, Any]) -> None:
        object.__setattr__(self, "_params", dict(state.get("_dict") or {}))
        object.__setattr__(self, "settings", state.get("settings") or {})


_CLASSES_12: dict[tuple[str, str], type] = {
    ("memento.task_interface", "Result"): _Result12,
    ("memento.task_interface", "MemoryUsage"): _Memory12,
    ("memento.configurations", "Config"): _Config12,
}


class _Unpickler12(pickle.Unpickler):
    """Loads 1.2 pickles: 1.2's own classes become the stand-ins above."""

    def find_class(self, module: str, name: str) -> Any:
        replacement = _CLASSES_12.get((module, name))
        if replacement is not None:
            return replacement
        return super().find_class(module, name)


def load_result_file(path: Path) -> Any:
    """Unpickle one 1.2 result file (this runs code from the pickle)."""
    import cloudpickle  # noqa: F401 - the reconstructors its pickles name

    with open(path, "rb") as file:
        return _Unpickler12(file).load()


def function_name(key: bytes) -> str | None:
    """The experiment name in a 1.2 ``Memento.run`` key, read without unpickling it.

    Such a key is a pickled ``{"function": name, "args": [config]}``; a ``Cache`` key (a
    pickled function object) or anything else gives ``None``.
    """
    strings = ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8")
    ignored = ("PROTO", "FRAME", "EMPTY_DICT", "MARK", "MEMOIZE", "BINPUT", "LONG_BINPUT", "PUT")
    found: list[str] = []
    try:
        for opcode, arg, _ in pickletools.genops(key):
            if opcode.name in ignored:
                continue
            if opcode.name not in strings:
                return None
            found.append(str(arg))
            if len(found) == 3:
                break
    except Exception:  # not a pickle at all
        return None
    if len(found) == 3 and found[0] == "function" and found[2] == "args":
        return found[1]
    return None


# -- naming the experiment --------------------------------------------------------------------
@contextmanager
def loaded_experiment(
    spec: str | Callable[..., Any], search: Path | None = None
) -> Iterator[Callable[..., Any]]:
    """The experiment named by ``spec``, usable (keys, fingerprint) inside the ``with``.

    ``spec`` is ``path/to/script.py:function``, ``package.module:function``, or the experiment
    callable itself. A script is
    loaded as ``python script.py`` would run it, ``__main__`` included (its ``if __name__ ==
    "__main__":`` block excepted), so that its functions have the identity, hence the keys,
    they have when the script runs; ``sys.modules["__main__"]`` and ``sys.path`` are restored
    afterwards. ``search`` (and the script's directory) go on ``sys.path`` meanwhile, for the
    modules the results' pickles refer to.
    """
    if callable(spec):
        saved = list(sys.path)
        sys.path[:0] = [str(search)] if search is not None else []
        try:
            yield spec
        finally:
            sys.path[:] = saved
        return
    target, sep, name = spec.rpartition(":")
    if not sep or not target or not name:
        raise ValueError(
            f"--experiment must be SCRIPT.py:FUNCTION or package.module:FUNCTION, got {spec!r}"
        )
    script = Path(target).expanduser()
    is_script = target.endswith(".py") or os.sep in target or "/" in target
    saved_path = list(sys.path)
    saved_main = {k: sys.modules.get(k) for k in ("__main__", "__mp_main__")}
    extra = [str(search)] if search is not None else []
    try:
        if is_script:
            sys.path[:0] = [str(script.absolute().parent), *extra]
            module = _run_script(script)
        else:
            sys.path[:0] = [*extra, os.getcwd()]
            module = importlib.import_module(target)
        yield _attribute(module, name, spec)
    finally:
        sys.path[:] = saved_path
        for key, value in saved_main.items():
            if value is None:
                sys.modules.pop(key, None)
            else:
                sys.modules[key] = value


def _run_script(script: Path) -> types.ModuleType:
    if not script.is_file():
        raise ValueError(f"--experiment names the script {script}, which does not exist")
    path = script.absolute()
    code = compile(path.read_bytes(), str(path), "exec")
    # As multiprocessing's spawn does: run it as __mp_main__ (the __main__ guard stays shut),
    # then make it __main__.
    module = types.ModuleType("__mp_main__")
    module.__file__ = str(path)
    sys.modules["__mp_main__"] = module
    try:
        exec(code, module.__dict__)
    except (Exception, SystemExit) as exc:
        raise ValueError(f"Loading {script} failed: {type(exc).__name__}: {exc}") from None
    module.__name__ = "__main__"
    for value in list(vars(module).values()):
        _claim(value, set())
    sys.modules["__main__"] = module
    return module


def _claim(value: Any, seen: set[int]) -> None:
    """Functions and classes the script defined say ``__module__ == "__main__"``."""
    if id(value) in seen or getattr(value, "__module__", None) != "__mp_main__":
        return
    seen.add(id(value))
    if isinstance(value, (types.FunctionType, type)):
        value.__module__ = "__main__"
    if isinstance(value, type):
        for member in vars(value).values():
            _claim(getattr(member, "__func__", member), seen)


def _attribute(module: types.ModuleType, name: str, spec: str) -> Callable[..., Any]:
    value: Any = module
    for part in name.split("."):
        if not hasattr(value, part):
            defined = sorted(
                k
                for k, v in vars(module).items()
                if callable(v) and getattr(v, "__module__", None) in (module.__name__, "__main__")
            )
            raise ValueError(
                f"--experiment {spec}: {module.__file__ or module.__name__} has no {name!r}; "
                f"it defines: {', '.join(defined) or 'no functions'}"
            )
        value = getattr(value, part)
    if not callable(value):
        raise ValueError(f"--experiment {spec} is a {type(value).__name__}, not a function")
    return value  # type: ignore[no-any-return]


# -- the import -------------------------------------------------------------------------------
@dataclass
class ImportReport:
    """What :func:`import_legacy_store` did: counts, and why rows were skipped."""

    old: Path
    #: The new store, as shown (a server URL without its password).
    new: str
    experiment: str
    imported: int = 0
    #: reason -> the configs (or files) skipped for it
    skipped: dict[str, list[str]] = field(default_factory=dict)
    checkpoints: int = 0

    def skip(self, reason: str, label: str) -> None:
        self.skipped.setdefault(reason, []).append(label)

    def lines(self) -> list[str]:
        """The summary the command prints."""
        out = [
            f"Imported {self.imported} result(s) of {self.experiment} from {self.old} "
            f"into {self.new}."
        ]
        total = sum(map(len, self.skipped.values()))
        if total:
            out.append(f"Skipped {total}:")
            for reason, labels in self.skipped.items():
                examples = "; ".join(labels[:_EXAMPLES])
                more = f"; ... {len(labels) - _EXAMPLES} more" if len(labels) > _EXAMPLES else ""
                out.append(f"  {len(labels)}: {reason} [{examples}{more}]")
        if self.checkpoints:
            out.append(
                f"Not imported: {self.checkpoints} checkpoint(s) of unfinished 1.2 experiments "
                "(memento keeps checkpoints in another form); those experiments start over."
            )
        return out


def import_legacy_store(
    old: str | os.PathLike[str],
    new: str | os.PathLike[str],
    experiment: str | Callable[..., Any],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    version: str | None = None,
) -> ImportReport:
    """Copy the ``Memento.run`` results of the memento-ml 1.2 store ``old`` into ``new``.

    Example::

        report = import_legacy_store("memento.sqlite", "results.sqlite", "train.py:train")
        print("\\n".join(report.lines()))

    ``old`` is only read. Each result of ``experiment`` becomes a success in ``new`` under the
    key ``Memento(experiment, version=version)`` computes for its config; results already in
    ``new`` are left as they are, so importing twice adds only what is missing. A row that
    cannot be loaded is skipped and reported, never fatal for the others.

    :param experiment: ``script.py:function``, ``package.module:function``, or the
        experiment callable itself.
    :param cache_dir: the directory 1.2 ran in, which holds ``memento_cache/`` (or that
        directory itself); defaults to the directory of ``old``.
    :param version: the ``Memento(version=...)`` the experiment now runs with.
    :raises StoreError: ``old`` is not a 1.2 store, or ``new`` cannot be written.
    :raises ValueError: ``experiment`` cannot be loaded.
    """
    if not os.fspath(new):
        raise ValueError("Give the path of the new store (NEW).")
    old_path = Path(old).expanduser().absolute()
    new_location = store_location(new)  # a file, or a server store's URL
    rows, checkpoints = read_legacy_store(old_path)
    if url_scheme(new_location) is not None:
        open_store(new_location, readonly=True).open().close()  # refuse a bad NEW first
    else:
        new_path = Path(new_location)
        if new_path.exists() and new_path.resolve() == old_path.resolve():
            raise ValueError(
                f"NEW must be another file than OLD ({old_path}): OLD is never written."
            )
        if new_path.exists():
            open_store(new_path, readonly=True).open().close()  # refuse a bad NEW first
    base = Path(cache_dir).expanduser().absolute() if cache_dir else old_path.parent
    with loaded_experiment(experiment, search=base) as func, main_as_script_of(func):
        # The functions of `__main__` in 1.2's pickles (by value, with the `__file__` of
        # wherever 1.2 ran) are the script's: keyed as its run will key them.
        return _Importer(old_path, new_location, func, version, base).run(rows, checkpoints)


class _Importer:
    """One import: turns 1.2 rows into stored outcomes and writes them in batches."""

    def __init__(self, old: Path, new: str, func: Any, version: str | None, base: Path) -> None:
        self.new = new
        self.base = base
        self.keymaker = KeyMaker(func, version)
        self.name = getattr(func, "__name__", None)
        self.version = version
        self.fingerprint = code_fingerprint(func)
        self.report = ImportReport(old, redact(new), experiment_name(func))
        self.run_id = "import-" + uuid.uuid4().hex[:12]
        self.seen: set[str] = set()
        self.store: BaseStore | None = None
        self.total = 0

    def run(self, rows: list[tuple[bytes, str]], checkpoints: int) -> ImportReport:
        self.report.checkpoints = checkpoints
        self.total = len(rows)
        batch: list[tuple[StoredOutcome, str]] = []
        state = "interrupted"
        try:
            for key, value in rows:
                converted = self._convert(key, value)
                if converted is not None:
                    batch.append(converted)
                if len(batch) >= _BATCH:
                    self._write(batch)
                    batch = []
            self._write(batch)
            state = "imported"
        finally:
            if self.store is not None:
                self.store.finish_run(self.run_id, self.report.imported, 0, state)
                self.store.close()
        return self.report

    def _convert(self, key: bytes, value: Any) -> tuple[StoredOutcome, str] | None:
        """One 1.2 row as an outcome to store and its label, or None (reported as skipped)."""
        label = str(value)
        name = function_name(bytes(key)) if isinstance(key, (bytes, memoryview)) else None
        if name is None:
            self.report.skip("not a result of Memento.run (a Cache entry?)", label)
            return None
        if name != self.name:
            self.report.skip(f"computed by experiment {name!r}, not {self.name!r}", label)
            return None
        file = self._result_file(str(value))
        if file is None:
            self.report.skip(
                f"result file missing under {self.base} (give --cache-dir, the directory "
                "1.2 ran in)",
                label,
            )
            return None
        try:
            result = load_result_file(file)
        except Exception as exc:
            hint = (
                "; put the modules it needs on PYTHONPATH" if isinstance(exc, ImportError) else ""
            )
            why = f"result file cannot be loaded ({type(exc).__name__}: {exc}{hint})"
            self.report.skip(why, label)
            return None
        if not isinstance(result, _Result12) or not isinstance(
            getattr(result, "config", None), Config
        ):
            self.report.skip("the file does not hold a 1.2 Result with its Config", label)
            return None
        config: Config = result.config
        label = str(config)
        try:
            new_key = self.keymaker.key(config.asdict(), config.settings)
            outcome = self._outcome(new_key, config, result)
        except Exception as exc:
            self.report.skip(f"cannot be stored ({type(exc).__name__}: {exc})", label)
            return None
        if new_key in self.seen:  # rows are newest first: keep the newest
            self.report.skip("an older result of the same config", label)
            return None
        self.seen.add(new_key)
        return outcome, label

    def _result_file(self, value: str) -> Path | None:
        relative = Path(value)
        for candidate in (self.base / relative, self.base / relative.name):
            if candidate.is_file():
                return candidate
        return None

    def _outcome(self, key: str, config: Config, result: _Result12) -> StoredOutcome:
        import cloudpickle

        start = getattr(result, "start_time", None)
        runtime = getattr(result, "runtime", None)
        start_ts = start.timestamp() if isinstance(start, datetime.datetime) else None
        seconds = runtime.total_seconds() if isinstance(runtime, datetime.timedelta) else None
        memory = getattr(result, "memory", None)
        return StoredOutcome(
            key=key,
            experiment=self.report.experiment,
            status="done",
            params=params_json(config.asdict()),
            value=cloudpickle.dumps(getattr(result, "inner", None)),
            start_time=start_ts,
            end_time=start_ts + seconds if start_ts is not None and seconds is not None else None,
            runtime=seconds,
            peak_rss=getattr(memory, "hardware_peak", None),
            peak_vms=getattr(memory, "virtual_peak", None),
            metrics={n: _points(t) for n, t in (getattr(result, "metrics", None) or {}).items()},
            fingerprint=self.fingerprint,
            version=self.version,
            run_id=self.run_id,
        )

    def _write(self, batch: list[tuple[StoredOutcome, str]]) -> None:
        if not batch:
            return
        if self.store is None:
            self.store = open_store(self.new)
            self.store.start_run(self.run_id, self.report.experiment, self.total, 0, 0)
        present = self.store.lookup([o.key for o, _ in batch], ["status"])
        fresh = []
        for outcome, label in batch:
            if outcome.key in present:
                self.report.skip("already in NEW (left as it is)", label)
            else:
                fresh.append(outcome)
        self.store.write_outcomes(fresh)
        self.report.imported += len(fresh)


def _points(table: Any) -> list[tuple[Any, Any]]:
    """A 1.2 metric (a DataFrame with columns x and y) as the store's ``[(x, y), ...]``."""
    columns = getattr(table, "columns", None)
    if columns is not None and "x" in columns and "y" in columns:
        return list(zip(table["x"].tolist(), table["y"].tolist()))
    return [(x, y) for x, y in table]


__all__ = ["ImportReport", "function_name", "import_legacy_store", "loaded_experiment"]
