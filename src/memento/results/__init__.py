"""Results: ``Result`` and ``ResultList`` (``result``), and ``open_results``, reading a
store without the experiment's code (``reading``).

``reading``'s names are loaded on first use (a module ``__getattr__``): a run imports this
package for ``Result``, and need not pay for the store reader's import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from memento.results.result import (
    Column,
    MemoryUsage,
    MetricTable,
    Result,
    ResultList,
    last_y,
    metric_table,
    optional_pandas,
    result_record,
)

#: The names of ``reading``, loaded on first use.
_READING = frozenset(
    {
        "ExperimentCounts",
        "RunInfo",
        "StoredResults",
        "StoreSummary",
        "Text",
        "config_label",
        "filter_records",
        "flat_records",
        "latest_fingerprints",
        "open_results",
        "parse_where",
        "read_records",
        "summarize",
        "value_matches",
    }
)


def __getattr__(name: str) -> Any:
    if name not in _READING:
        raise AttributeError(f"module 'memento.results' has no attribute {name!r}")
    value = getattr(importlib.import_module("memento.results.reading"), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from memento.results.reading import (
        ExperimentCounts,
        RunInfo,
        StoredResults,
        StoreSummary,
        Text,
        config_label,
        filter_records,
        flat_records,
        latest_fingerprints,
        open_results,
        parse_where,
        read_records,
        summarize,
        value_matches,
    )

__all__ = [
    "Column",
    "ExperimentCounts",
    "MemoryUsage",
    "MetricTable",
    "Result",
    "ResultList",
    "RunInfo",
    "StoreSummary",
    "StoredResults",
    "Text",
    "config_label",
    "filter_records",
    "flat_records",
    "last_y",
    "latest_fingerprints",
    "metric_table",
    "open_results",
    "optional_pandas",
    "parse_where",
    "read_records",
    "result_record",
    "summarize",
    "value_matches",
]
