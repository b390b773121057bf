"""Results: ``Result`` and ``ResultList`` (``result``), and ``open_results``, reading a
store without the experiment's code (``reading``)."""

from __future__ import annotations

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
