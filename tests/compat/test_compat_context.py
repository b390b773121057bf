"""memento-ml 1.2's ``Context``, metric tables and ``Result`` keep working unchanged.

``record(value_dict=...)``; metrics as pandas DataFrames (columns ``x`` and ``y``) when pandas
is installed, fresh and cached alike, while the store keeps plain JSON rows; the light
``MetricTable`` without pandas; ``checkpoint(a, b)``; ``checkpoint_key`` and ``Metric``; and
results pickled by memento-ml 1.2 loading as ours.
"""

from __future__ import annotations

import base64
import datetime
import json
import pickle
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from experiments import record_and_return

from memento import Config, Context, Memento, MemoryUsage, MetricTable, Result
from memento.compat.checkpointing import FileSystemCheckpointing
from memento.worker.context import FileCheckpoints

pd = pytest.importorskip("pandas")

# Pickles made by memento-ml 1.2.0 itself, the way its cache wrote results
# (``cloudpickle.dump`` of a ``memento.task_interface.Result``). Produced once by running 1.2
# (``PYTHONPATH=<memento-ml 1.2 source> python``, pandas 3.1.1, numpy 2.4.6, cloudpickle 3.1.3):
#
#   start = datetime.datetime(2024, 1, 2, 3, 4, 5)
#   PLAIN  = Result({"a": 1}, {"acc": 0.9}, {}, start, timedelta(seconds=1.5),
#                   timedelta(seconds=1.25), MemoryUsage(2_000_000, 1_000_000), True)
#   ctx = Context("k", None); ctx.record({"loss": (1.0, 0.5)}); ctx.record({"loss": (2.0, 0.25)})
#   ctx.record({"acc": (0.0, 0.75)})
#   FRAMES = Result({"a": 1}, 7, ctx.collect_metrics(), start, timedelta(seconds=2), None, None,
#                   False)
#   CONFIG = Result(generate_configurations({"parameters": {"a": [1]}, "settings": {"s": 2}})[0],
#                   7, {}, start, timedelta(seconds=2), None, None, True)
#   MEMORY = MemoryUsage(3, 4);  METRIC = Metric(1.0, 0.5)
#   print(base64.b64encode(cloudpickle.dumps(obj)).decode())

ML12_PLAIN = (
    "gAWVNgEAAAAAAACMFm1lbWVudG8udGFza19pbnRlcmZhY2WUjAZSZXN1bHSUk5QpgZR9lCiMBmNvbmZpZ5R9lIwB"
    "YZRLAXOMBWlubmVylH2UjANhY2OURz/szMzMzMzNc4wHbWV0cmljc5R9lIwKc3RhcnRfdGltZZSMCGRhdGV0aW1l"
    "lIwIZGF0ZXRpbWWUk5RDCgfoAQIDBAUAAACUhZRSlIwHcnVudGltZZRoDowJdGltZWRlbHRhlJOUSwBLAUogoQcA"
    "h5RSlIwIY3B1X3RpbWWUaBZLAEsBSpDQAwCHlFKUjAZtZW1vcnmUaACMC01lbW9yeVVzYWdllJOUKYGUfZQojAx2"
    "aXJ0dWFsX3BlYWuUSoCEHgCMDWhhcmR3YXJlX3BlYWuUSkBCDwB1YowKd2FzX2NhY2hlZJSIdWIu"
)
ML12_FRAMES = (
    "gAWV7QQAAAAAAACMFm1lbWVudG8udGFza19pbnRlcmZhY2WUjAZSZXN1bHSUk5QpgZR9lCiMBmNvbmZpZ5R9lIwB"
    "YZRLAXOMBWlubmVylEsHjAdtZXRyaWNzlH2UKIwEbG9zc5SMBnBhbmRhc5SMCURhdGFGcmFtZZSTlCmBlH2UKIwE"
    "X21ncpSMHnBhbmRhcy5jb3JlLmludGVybmFscy5tYW5hZ2Vyc5SMDEJsb2NrTWFuYWdlcpSTlIwWcGFuZGFzLl9s"
    "aWJzLmludGVybmFsc5SMD191bnBpY2tsZV9ibG9ja5STlIwTbnVtcHkuX2NvcmUubnVtZXJpY5SMC19mcm9tYnVm"
    "ZmVylJOUKJYgAAAAAAAAAAAAAAAAAPA/AAAAAAAAAEAAAAAAAADgPwAAAAAAANA/lIwFbnVtcHmUjAVkdHlwZZST"
    "lIwCZjiUiYiHlFKUKEsDjAE8lE5OTkr/////Sv////9LAHSUYksCSwKGlIwBQ5R0lFKUjAhidWlsdGluc5SMBXNs"
    "aWNllJOUSwBLAksBh5RSlEsCh5RSlIWUXZQojBhwYW5kYXMuY29yZS5pbmRleGVzLmJhc2WUjApfbmV3X0luZGV4"
    "lJOUaAyMBUluZGV4lJOUfZQojARkYXRhlIwTcGFuZGFzLl9saWJzLmFycmF5c5SMHF9fcHl4X3VucGlja2xlX05E"
    "QXJyYXlCYWNrZWSUk5SMDXBhbmRhcy5hcnJheXOUjAtTdHJpbmdBcnJheZSTlEofBvEEToeUUpRoDIwLU3RyaW5n"
    "RHR5cGWUk5SMBnB5dGhvbpRHf/gAAAAAAACGlFKUjBZudW1weS5fY29yZS5tdWx0aWFycmF5lIwMX3JlY29uc3Ry"
    "dWN0lJOUaByMB25kYXJyYXmUk5RLAIWUQwFilIeUUpQoSwFLAoWUaB6MAk84lImIh5RSlChLA4wBfJROTk5K////"
    "/0r/////Sz90lGKJXZQojAF4lIwBeZRldJRihpRijARuYW1llE51hpRSlGgzaAyMClJhbmdlSW5kZXiUk5R9lCho"
    "WU6MBXN0YXJ0lEsAjARzdG9wlEsCjARzdGVwlEsBdYaUUpRlhpRSlIwEX3R5cJSMCWRhdGFmcmFtZZSMCV9tZXRh"
    "ZGF0YZRdlIwFYXR0cnOUfZSMBl9mbGFnc5R9lIwXYWxsb3dzX2R1cGxpY2F0ZV9sYWJlbHOUiHN1YowDYWNjlGgO"
    "KYGUfZQoaBFoFGgXaBoolhAAAAAAAAAAAAAAAAAAAAAAAAAAAADoP5RoIUsCSwGGlGgldJRSlGgqSwBLAksBh5RS"
    "lEsCh5RSlIWUXZQoaDNoNX2UKGg3aDpoPUofBvEEToeUUpRoQWhCR3/4AAAAAAAAhpRSlGhHaElLAIWUaEuHlFKU"
    "KEsBSwKFlGhRiV2UKGhVaFZldJRihpRiaFlOdYaUUpRoM2hdfZQoaFlOaF9LAGhgSwFoYUsBdYaUUpRlhpRSlGhm"
    "aGdoaGhpaGp9lGhsfZRobohzdWJ1jApzdGFydF90aW1llIwIZGF0ZXRpbWWUjAhkYXRldGltZZSTlEMKB+gBAgME"
    "BQAAAJSFlFKUjAdydW50aW1llGiSjAl0aW1lZGVsdGGUk5RLAEsCSwCHlFKUjAhjcHVfdGltZZROjAZtZW1vcnmU"
    "TowKd2FzX2NhY2hlZJSJdWIu"
)
ML12_CONFIG = (
    "gAWVGwEAAAAAAACMFm1lbWVudG8udGFza19pbnRlcmZhY2WUjAZSZXN1bHSUk5QpgZR9lCiMBmNvbmZpZ5SMFm1l"
    "bWVudG8uY29uZmlndXJhdGlvbnOUjAZDb25maWeUk5QpgZR9lCiMBV9kaWN0lH2UjAFhlEsBc4wIc2V0dGluZ3OU"
    "fZSMAXOUSwJzdWKMBWlubmVylEsHjAdtZXRyaWNzlH2UjApzdGFydF90aW1llIwIZGF0ZXRpbWWUjAhkYXRldGlt"
    "ZZSTlEMKB+gBAgMEBQAAAJSFlFKUjAdydW50aW1llGgVjAl0aW1lZGVsdGGUk5RLAEsCSwCHlFKUjAhjcHVfdGlt"
    "ZZROjAZtZW1vcnmUTowKd2FzX2NhY2hlZJSIdWIu"
)
ML12_MEMORY = (
    "gAWVVQAAAAAAAACMFm1lbWVudG8udGFza19pbnRlcmZhY2WUjAtNZW1vcnlVc2FnZZSTlCmBlH2UKIwMdmlydHVh"
    "bF9wZWFrlEsDjA1oYXJkd2FyZV9wZWFrlEsEdWIu"
)
ML12_METRIC = (
    "gAWVOwAAAAAAAACMFm1lbWVudG8udGFza19pbnRlcmZhY2WUjAZNZXRyaWOUk5RHP/AAAAAAAABHP+AAAAAAAACG"
    "lIGULg=="
)


def _load(blob: tuple[str, ...]) -> Any:
    return pickle.loads(base64.b64decode("".join(blob)))


def _rows(store: Path) -> dict[str, Any]:
    with sqlite3.connect(store) as conn:
        return {key: text for key, text in conn.execute("SELECT key, metrics FROM results")}


# --- record(value_dict=...) ----------------------------------------------------------------------


def test_record_takes_12s_value_dict_keyword() -> None:
    context = Context("k")
    context.record(value_dict={"loss": (0, 0.5)})
    context.record(values={"loss": (1, 0.25)})
    context.record({"loss": (2, 0.125)})
    assert context.metric_rows() == {"loss": [(0, 0.5), (1, 0.25), (2, 0.125)]}


def test_record_refuses_both_or_neither_dict() -> None:
    with pytest.raises(TypeError, match="both values and value_dict"):
        Context("k").record({"a": 1.0}, value_dict={"b": 2.0})
    with pytest.raises(TypeError, match="got NoneType"):
        Context("k").record()


# --- metric tables -------------------------------------------------------------------------------


def _context_with_loss() -> Context:
    context = Context("k")
    for x, y in [(1.0, 0.5), (2.0, 0.25), (3.0, 0.75), (4.0, 0.125)]:
        context.record({"loss": (x, y)})
    return context


def test_collect_metrics_gives_dataframes_like_12() -> None:
    table = _context_with_loss().collect_metrics()["loss"]
    assert isinstance(table, pd.DataFrame)
    assert list(table.columns) == ["x", "y"]
    assert table.dtypes.tolist() == [float, float]  # float64, as 1.2's Metric rows gave
    assert table["y"].mean() == pytest.approx(0.40625)
    assert table["y"].max() == 0.75
    assert table["x"].to_numpy().tolist() == [1.0, 2.0, 3.0, 4.0]
    assert table[table["x"] > 2]["y"].tolist() == [0.75, 0.125]
    assert table[["x", "y"]].shape == (4, 2)
    assert len(pd.concat([table, table])) == 8
    assert table.index.tolist() == [0, 1, 2, 3]


def test_collect_metrics_without_pandas_is_the_light_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    context = _context_with_loss()
    monkeypatch.setitem(sys.modules, "pandas", None)  # `import pandas` now raises ImportError
    table = context.collect_metrics()["loss"]
    assert isinstance(table, MetricTable)
    assert list(table["y"]) == [0.5, 0.25, 0.75, 0.125] and table.x[0] == 1.0


def test_result_metrics_are_dataframes_fresh_and_cached_and_stored_as_json(
    store_path: Path,
) -> None:
    matrix = {"parameters": {"a": [1, 2]}}
    fresh = Memento(record_and_return, executor="process", progress=False).run(
        matrix, cache_path=store_path
    )
    cached = Memento(record_and_return, executor="process", progress=False).run(
        matrix, cache_path=store_path
    )
    assert fresh is not None and cached is not None and cached[0].was_cached
    for result in (fresh[0], cached[0]):
        loss, acc = result.metrics["loss"], result.metrics["acc"]
        assert isinstance(loss, pd.DataFrame) and isinstance(acc, pd.DataFrame)
        assert loss["y"].tolist() == [1.0, 0.5, 1.0 / 3]
        assert acc[acc["x"] >= 1]["y"].tolist() == [0.1, 0.2]
    pd.testing.assert_frame_equal(fresh[0].metrics["acc"], cached[0].metrics["acc"])
    pd.testing.assert_frame_equal(fresh[1].metrics["loss"], cached[1].metrics["loss"])
    assert fresh.to_records()[0]["metric.loss"] == pytest.approx(1.0 / 3)
    assert type(fresh.to_records()[0]["metric.loss"]) is float
    # The store holds plain JSON rows, never pickled DataFrames.
    stored = json.loads(_rows(store_path)[fresh[0].key])
    assert stored["acc"] == [[0, 0.0], [1, 0.1], [2, 0.2]]


SCRIPT_LAZY = """
import sys
from experiments import record_and_return
from memento import Memento
results = Memento(record_and_return, executor="inline", progress=False).run(
    {"parameters": {"a": [1]}}, cache_path=sys.argv[1]
)
print("after run:", "pandas" in sys.modules)
results.to_records()
print("after records:", "pandas" in sys.modules)
table = results[0].metrics["loss"]
print("after access:", type(table).__name__, "pandas" in sys.modules)
"""


@pytest.mark.timeout(120)
def test_pandas_is_imported_only_when_a_metric_is_looked_at(
    store_path: Path, subprocess_env: dict[str, str]
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT_LAZY, str(store_path)],
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert done.returncode == 0, done.stderr
    # to_records reads the last y of each metric, and builds the tables to do so (like 1.2).
    assert done.stdout.split("\n")[:3] == [
        "after run: False",
        "after records: True",
        "after access: DataFrame True",
    ]


SCRIPT_NO_PANDAS = """
import sys
sys.modules["pandas"] = None  # as if pandas were not installed
from experiments import record_and_return
from memento import Memento, MetricTable
for attempt in ("fresh", "cached"):
    results = Memento(record_and_return, executor="process", progress=False).run(
        {"parameters": {"a": [1]}}, cache_path=sys.argv[1]
    )
    table = results[0].metrics["loss"]
    assert isinstance(table, MetricTable), type(table)
    last = results.to_records()[0]["metric.acc"]
    print(attempt, results[0].was_cached, list(table["y"])[-1], last)
"""


@pytest.mark.timeout(120)
def test_without_pandas_results_carry_light_tables(
    store_path: Path, subprocess_env: dict[str, str]
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT_NO_PANDAS, str(store_path)],
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == [
        f"fresh False {1.0 / 3} 0.2",
        f"cached True {1.0 / 3} 0.2",
    ]


def test_the_12_modules_import_without_pandas() -> None:
    code = (
        "import sys, memento.memento, memento.task_interface, memento.results.result\n"
        "print('pandas' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "False"


def test_result_built_by_hand_keeps_its_tables_and_converts_light_ones() -> None:
    frame = pd.DataFrame({"x": [0.0], "y": [1.0]})
    light = MetricTable([(0, 2.0), (1, 3.0)])
    result = Result(Config(a=1), None, {"f": frame, "m": light}, None, None, None, None, False)
    assert result.metrics["f"] is frame
    pd.testing.assert_frame_equal(result.metrics["m"], pd.DataFrame({"x": [0, 1], "y": [2.0, 3.0]}))
    assert Result(Config(a=1), None).metrics == {}


# --- checkpoints, checkpoint_key, Metric ---------------------------------------------------------


@pytest.mark.parametrize("provider", ["files", "sqlite"])
def test_checkpoint_of_two_values_restores_both(provider: str, tmp_path: Path) -> None:
    checkpoints = (
        FileCheckpoints(tmp_path)
        if provider == "files"
        else FileSystemCheckpointing(tmp_path / "store.sqlite")
    )
    context = Context("k", checkpoints)
    context.checkpoint(3, {"w": [1.0]})
    assert context.restore() == (3, {"w": [1.0]})  # 1.2 returned only 3
    context.checkpoint({"epoch": 4})
    assert context.restore() == {"epoch": 4}
    with pytest.raises(TypeError, match=r"context.checkpoint\(state\)"):
        context.checkpoint()


def test_checkpoint_key_and_metric_exist_as_in_12() -> None:
    from memento.task_interface import Metric

    assert Context("k").checkpoint_key is None  # 1.2 set it to None and never changed it
    point = Metric(1.0, 0.5)
    assert point == (1.0, 0.5) and (point.x, point.y) == (1.0, 0.5)
    assert Metric._fields == ("x", "y")
    assert pd.DataFrame([Metric(1.0, 0.5)]).columns.tolist() == ["x", "y"]


# --- pickles written by memento-ml 1.2 -----------------------------------------------------------


def test_a_12_result_pickle_loads_as_our_result() -> None:
    result = _load(ML12_PLAIN)
    assert type(result) is Result
    assert result.config == {"a": 1} and result.inner == {"acc": 0.9}
    assert result.metrics == {}
    assert result.start_time == datetime.datetime(2024, 1, 2, 3, 4, 5)
    assert result.runtime == datetime.timedelta(seconds=1.5)
    assert result.cpu_time == datetime.timedelta(seconds=1.25)
    assert result.memory == MemoryUsage(virtual_peak=2_000_000, hardware_peak=1_000_000)
    assert result.was_cached is True
    assert (result.key, result.error, result.attempts, result.host) == ("", None, 1, "")
    assert result.ok and "cached" in repr(result)
    again = pickle.loads(pickle.dumps(result))  # and it pickles again, as ours
    assert again.memory == result.memory and again.inner == result.inner


def test_a_12_result_with_dataframe_metrics_loads() -> None:
    result = _load(ML12_FRAMES)
    assert type(result) is Result and result.inner == 7 and result.was_cached is False
    assert result.cpu_time is None and result.memory is None
    assert result.ok and (result.key, result.attempts) == ("", 1)
    # The pickled frame's column labels keep the string storage they were pickled with
    # ("python"); a new frame's is pyarrow's when pyarrow is installed (pandas 3): the labels
    # and values are what this test is about.
    pd.testing.assert_frame_equal(
        result.metrics["loss"],
        pd.DataFrame({"x": [1.0, 2.0], "y": [0.5, 0.25]}),
        check_column_type=False,
    )
    assert list(result.metrics["loss"].columns) == ["x", "y"]
    assert result.metrics["acc"]["y"].tolist() == [0.75]


def test_a_12_result_with_a_12_config_loads() -> None:
    result = _load(ML12_CONFIG)
    assert type(result) is Result and type(result.config) is Config
    assert result.config.a == 1 and result.config.settings == {"s": 2}


def test_12_memory_usage_and_metric_pickles_load() -> None:
    from memento.task_interface import Metric

    memory = _load(ML12_MEMORY)
    assert type(memory) is MemoryUsage
    assert (memory.virtual_peak, memory.hardware_peak) == (3, 4)
    metric = _load(ML12_METRIC)
    assert type(metric) is Metric and metric == (1.0, 0.5)


def test_our_memory_usage_pickled_with_slots_still_loads() -> None:
    # What this class pickled to while it had __slots__ (protocol 5): state (None, {slots}).
    old = (
        b"\x80\x05\x95Q\x00\x00\x00\x00\x00\x00\x00\x8c\x0fmemento.results\x94"
        b"\x8c\x0bMemoryUsage\x94\x93\x94)\x81\x94N}\x94(\x8c\rhardware_peak\x94K\x02"
        b"\x8c\x0cvirtual_peak\x94K\x01u\x86\x94b."
    )
    assert pickle.loads(old) == MemoryUsage(virtual_peak=1, hardware_peak=2)
