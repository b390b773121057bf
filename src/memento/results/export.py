"""Results as a Parquet file: one typed column per flat-record column (the ``parquet`` extra).

:func:`write_parquet` turns the flat records of ``to_records()`` (of a ``ResultList`` or of
``open_results``) into a pyarrow Table without pandas, and writes it atomically: a reader of
the file sees the previous export or the new one, never half of it.

Each column gets one Arrow type, from its non-``None`` values (``None`` is null):

======================================  =====================================================
values                                  column
======================================  =====================================================
all ``bool``                            ``bool``
all ``int`` (within 64 bits)            ``int64``
``int`` and ``float``                   ``float64`` (NaN stays NaN, not null)
all ``str`` / all ``bytes``             ``string`` (invalid Unicode escaped) / ``binary``
all ``datetime``                        ``timestamp[us]``; ``timestamp[us, tz=UTC]`` when all
                                        carry a timezone (converted to UTC)
all ``timedelta``                       ``float64`` seconds, like ``runtime`` and ``cpu_time``
none at all                             ``null``
anything else (lists, dicts, mixed      ``string``: each value's JSON text (``default=str``),
types, placeholders)                    so ``[1, 2]`` is ``"[1, 2]"`` and ``"a"`` is ``"\\"a\\""``
======================================  =====================================================

numpy scalars count as the Python scalar they hold. Timedeltas become seconds rather than an
Arrow duration so that every time span in the table (``runtime``, ``cpu_time`` and the
experiment's own) has the same unit and reads back as a plain number in any tool.
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from memento._util.files import atomic_write
from memento._util.optional import optional_import
from memento._util.text import display_value

#: The provenance columns, in order, added when any result carries a provenance mapping.
PROVENANCE_COLUMNS = ("git_commit", "dirty", "python", "platform", "command")

_INT64 = (-(2**63), 2**63 - 1)
_KINDS: tuple[tuple[type, str], ...] = (
    # bool before int (a bool is an int), datetime before anything it could be confused with.
    (bool, "bool"),
    (int, "int"),
    (float, "float"),
    (str, "string"),
    (bytes, "binary"),
    (datetime.datetime, "datetime"),
    (datetime.timedelta, "timedelta"),
)


def write_parquet(
    records: Sequence[Mapping[str, Any]], path: str | os.PathLike[str], *, purpose: str = ""
) -> int:
    """Write ``records`` (flat dicts, as ``to_records()`` gives) to ``path`` as one Parquet
    table; return the number of rows.

    Columns are the union of the records' keys, in first-seen order; a record without a
    column has null there. Types are those of the module docstring. ``purpose`` names the
    caller in the error raised when pyarrow is missing.

    :raises MissingExtra: pyarrow is not installed (``pip install 'memento-grid[parquet]'``).
    """
    pa = optional_import("pyarrow", "parquet", purpose or "write_parquet()")
    pq = optional_import("pyarrow.parquet", "parquet", purpose or "write_parquet()")
    table = records_table(records, pa)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    target = Path(path)
    atomic_write(target, sink.getvalue().to_pybytes(), mode=_file_mode(target))
    return len(records)


def records_table(records: Sequence[Mapping[str, Any]], pa: Any) -> Any:
    """A ``pyarrow.Table`` of ``records``, one typed column per key (``pa`` is pyarrow)."""
    columns: dict[str, None] = {}
    for record in records:
        columns.update(dict.fromkeys(record))
    arrays = [column_array([r.get(c) for r in records], pa) for c in columns]
    return pa.Table.from_arrays(arrays, names=list(columns)) if columns else pa.table({})


def column_array(values: Sequence[Any], pa: Any) -> Any:
    """One column's values as a pyarrow Array of a single type (see the module docstring)."""
    values = [_python_scalar(v) for v in values]
    kinds = {_kind(v) for v in values if v is not None}
    if not kinds:
        return pa.nulls(len(values))
    if kinds == {"bool"}:
        return pa.array(_cast(values, bool), type=pa.bool_())
    if kinds == {"int"} and all(_INT64[0] <= v <= _INT64[1] for v in values if v is not None):
        return pa.array(_cast(values, int), type=pa.int64())
    if kinds in ({"float"}, {"int", "float"}):
        return pa.array(_cast(values, float), type=pa.float64())
    if kinds == {"string"}:
        return _strings(_cast(values, str.__str__), pa)
    if kinds == {"binary"}:
        return pa.array(_cast(values, bytes), type=pa.binary())
    if kinds == {"timedelta"}:
        return pa.array([None if v is None else v.total_seconds() for v in values], pa.float64())
    if kinds == {"datetime"}:
        stamps = _timestamps(values, pa)
        if stamps is not None:
            return stamps
    return pa.array([None if v is None else json_text(v) for v in values], type=pa.string())


def _strings(values: list[str | None], pa: Any) -> Any:
    """A string array; a string that is not valid Unicode (a lone surrogate, from a file name
    decoded with ``surrogateescape``) with those code points as ``\\udcff`` escapes, as
    Parquet strings must be UTF-8 and one bad value should not lose the whole export."""
    try:
        return pa.array(values, type=pa.string())
    except UnicodeEncodeError:
        fixed = [v if v is None else v.encode("utf-8", "backslashreplace").decode() for v in values]
        return pa.array(fixed, type=pa.string())


def _timestamps(values: Sequence[datetime.datetime | None], pa: Any) -> Any:
    """Datetimes as a timestamp array: naive ones as they are, aware ones in UTC; ``None``
    when naive and aware are mixed (no single column type holds both truthfully)."""
    aware = {v.utcoffset() is not None for v in values if v is not None}
    if aware == {False}:
        return pa.array(values, type=pa.timestamp("us"))
    if aware == {True}:
        utc = [None if v is None else v.astimezone(datetime.timezone.utc) for v in values]
        return pa.array(utc, type=pa.timestamp("us", tz="UTC"))
    return None


def json_text(value: Any) -> str:
    """``value`` as JSON text (objects JSON cannot hold by their ``str``); a value JSON cannot
    encode at all (a dict with tuple keys, a list inside itself) by its displayed form."""
    try:
        return json.dumps(value, default=str)
    except (TypeError, ValueError):
        return display_value(value)


def with_provenance(
    rows: Sequence[Mapping[str, Any]], provenances: Iterable[Any]
) -> list[dict[str, Any]]:
    """``rows`` with the :data:`PROVENANCE_COLUMNS` appended, from each row's provenance (a
    mapping, or ``None``), when at least one row has one; else the rows unchanged.

    A provenance column whose name is already taken (a parameter called ``python``) is
    named ``provenance.<name>`` instead, so no column of the results is overwritten.
    """
    found = [p if isinstance(p, Mapping) else None for p in provenances]
    out = [dict(row) for row in rows]
    if not any(p is not None for p in found):
        return out
    taken = {c for row in rows for c in row}
    names = {c: f"provenance.{c}" if c in taken else c for c in PROVENANCE_COLUMNS}
    for row, provenance in zip(out, found):
        for column, name in names.items():
            row[name] = provenance.get(column) if provenance is not None else None
    return out


def _kind(value: Any) -> str:
    for cls, kind in _KINDS:
        if isinstance(value, cls):
            return kind
    return "other"


def _cast(values: Sequence[Any], to: Any) -> list[Any]:
    """``values`` as exactly ``to`` (a str or int subclass, an IntEnum, as the plain value)."""
    return [None if v is None else to(v) for v in values]


def _python_scalar(value: Any) -> Any:
    """A numpy scalar as the Python value it holds (``np.int64(3)`` -> ``3``); others as is."""
    if type(value).__module__ == "numpy" and getattr(value, "shape", None) == ():
        try:
            return value.item()
        except Exception:  # an odd numpy scalar: typed as "other", so written as JSON text
            return value
    return value


def _file_mode(path: Path) -> int:
    """The permissions the new file gets: those of the file it replaces, else those a plain
    ``open()`` would give (0o666 less the umask), not the temp file's private 0o600."""
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        return 0o666 & ~_umask()


def _umask() -> int:
    """The process umask, read without changing it where Linux allows (changing it, even
    briefly, races with other threads creating files)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


__all__ = [
    "PROVENANCE_COLUMNS",
    "column_array",
    "json_text",
    "records_table",
    "with_provenance",
    "write_parquet",
]
