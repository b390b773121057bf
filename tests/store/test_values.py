"""The value codec: each format round-trips what it accepts, stays readable by standard tools
(SQLite's JSON functions, ``numpy.load``, pandas), falls through when it cannot, and never
runs code from the store when told not to. Real numpy, pandas, pyarrow and scikit-learn."""

from __future__ import annotations

import enum
import io
import json
import logging
import math
import os
import pickle
import shlex
import sqlite3
import subprocess
import sys
import textwrap
import threading
import tracemalloc
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from memento.exceptions import StoreError
from memento.store.safe_pickle import StoredValue
from memento.store.values import (
    BUILTIN_FORMATS,
    MMAP_MIN_BYTES,
    Encoded,
    UnknownFormat,
    ValueLoadError,
    decode,
    encode,
    formats,
    library_versions,
    register_format,
    unregister_format,
)

SRC = Path(__file__).resolve().parents[2] / "src"


def assert_same(got: Any, want: Any) -> None:
    """Equal, and of the same types all the way down (nan equal to nan, -0.0 not 0.0)."""
    assert type(got) is type(want), (got, want)
    if isinstance(want, float):
        if math.isnan(want):
            assert math.isnan(got)
        else:
            assert got == want and math.copysign(1, got) == math.copysign(1, want)
    elif isinstance(want, (list, tuple)):
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert_same(g, w)
    elif isinstance(want, dict):
        assert list(got) == list(want)
        for key in want:
            assert_same(got[key], want[key])
    else:
        assert got == want


def round_trip(value: Any, **kwargs: Any) -> tuple[Encoded, Any]:
    encoded = encode(value)
    return encoded, decode(encoded.format, encoded.data(), info=encoded.info, **kwargs)


def write_side_file(encoded: Encoded, folder: Path) -> Path:
    path = folder / f"value.{encoded.extension}"
    with open(path, "wb") as file:
        for chunk in encoded.chunks:
            file.write(chunk)
    return path


@pytest.fixture
def user_formats() -> Iterator[list[str]]:
    """Names registered by a test, unregistered after it (the registry is per process)."""
    names: list[str] = []
    yield names
    for name in names:
        unregister_format(name)
    assert formats() == list(BUILTIN_FORMATS)


# ---------------------------------------------------------------------------------------------
# json


class MyInt(int):
    pass


class Color(enum.IntEnum):
    RED = 1


PLAIN = [
    None,
    True,
    False,
    0,
    -7,
    10**100,
    -(10**50),
    1.0,
    0.1,
    -0.0,
    1e308,
    5e-324,
    float("nan"),
    float("inf"),
    float("-inf"),
    "",
    "héllo ✓ 日本",
    b"",
    b"\x00\xff bytes",
    [],
    (),
    (1,),
    [1, (2.0, [3, ("x",)])],
    {},
    {"a": 1, "b": [1.5, None, True]},
    {"$tuple": [1, 2]},
    {"$": 1, "plain": {"$bytes": "not really"}},
    {"nested": {"$float": "nan", "k": (b"x", float("-inf"))}},
    {"t": (), "d": {"x": ({"$dict": 1},)}},
]


@pytest.mark.parametrize("value", PLAIN, ids=repr)
def test_plain_values_round_trip_as_json_with_their_exact_types(value: Any) -> None:
    encoded, back = round_trip(value)
    assert encoded.format == "json"
    assert encoded.extension == "json"
    assert_same(back, value)
    json.loads(encoded.data())  # ordinary JSON text


@pytest.mark.parametrize("trusted", [True, False])
def test_json_is_ordinary_text_that_sqlite_queries(trusted: bool) -> None:
    value = {"accuracy": 0.93, "epochs": 12, "tags": ("a", "b"), "ok": True}
    encoded, back = round_trip(value, trusted=trusted)
    assert_same(back, value)
    text = encoded.data().decode("utf-8")
    assert text.startswith('{"accuracy":0.93,"epochs":12,')
    with sqlite3.connect(":memory:") as db:
        row = db.execute(
            "SELECT json_extract(?, '$.accuracy'), json_extract(?, '$.epochs')", (text, text)
        ).fetchone()
    assert row == (0.93, 12)
    assert type(row[0]) is float


def test_the_accuracy_example_is_stored_as_exactly_that() -> None:
    assert encode({"accuracy": 0.93}).data() == b'{"accuracy":0.93}'
    assert encode(1.0).data() == b"1.0"
    assert encode("é").data() == '"é"'.encode()


@pytest.mark.parametrize(
    ("value", "want"),
    [
        (np.float64(0.25), 0.25),
        (np.float32(0.5), 0.5),
        (np.int64(-3), -3),
        (np.uint8(200), 200),
        (np.bool_(True), True),
        ({"score": np.float64(0.75), "n": [np.int32(2)]}, {"score": 0.75, "n": [2]}),
    ],
    ids=repr,
)
def test_numpy_scalars_are_stored_as_json_numbers_and_come_back_as_python(
    value: Any, want: Any
) -> None:
    encoded, back = round_trip(value)
    assert encoded.format == "json"
    assert_same(back, want)


@pytest.mark.parametrize(
    "value",
    [
        MyInt(3),
        Color.RED,
        "lone \ud800 surrogate",
        {1: "int key"},
        {("a",): 1},
        "DEEP",  # replaced below by a list nested too deep
        np.complex128(1 + 2j),
        np.longdouble(1) / 3,  # float() would round it
        10**5000,  # more digits than int <-> str conversions allow by default
        {1, 2},
    ],
    ids=lambda value: type(value).__name__,
)
def test_values_that_are_not_plain_fall_through_to_pickle(value: Any) -> None:
    if isinstance(value, str) and value == "DEEP":
        value = []
        for _ in range(300):
            value = [value]
    encoded, back = round_trip(value)
    assert encoded.format == "pickle"
    assert back == value
    assert type(back) is type(value)


def test_a_nested_value_just_under_the_depth_limit_is_json() -> None:
    value: Any = 1
    for _ in range(95):  # 190 levels
        value = {"x": [value]}
    encoded, back = round_trip(value)
    assert encoded.format == "json"
    assert back == value


# ---------------------------------------------------------------------------------------------
# npy


ARRAYS = {
    "float": np.arange(12.0).reshape(3, 4),
    "fortran": np.asfortranarray(np.arange(12).reshape(3, 4)),
    "strided": np.arange(20)[::3],
    "zero-d": np.array(2.5),
    "empty": np.zeros((0, 3), dtype=np.int16),
    "datetime": np.array(["2020-01-01", "2024-02-29"], dtype="datetime64[D]"),
    "structured": np.array([(1, 2.5, b"ab")], dtype=[("i", "<i4"), ("f", ">f8"), ("s", "S2")]),
    "unicode": np.array(["é", "日本"]),
    "bool": np.array([True, False]),
    "complex": np.array([1 + 2j]),
}


@pytest.mark.parametrize("name", sorted(ARRAYS))
def test_arrays_are_npy_that_numpy_load_reads_without_pickle(name: str) -> None:
    array = ARRAYS[name]
    encoded, back = round_trip(array)
    assert encoded.format == "npy"
    assert encoded.extension == "npy"
    assert encoded.info == {
        "type": "numpy.ndarray",
        "shape": list(array.shape),
        "dtype": str(array.dtype),
    }
    plain = np.load(io.BytesIO(encoded.data()), allow_pickle=False)
    for got in (back, plain):
        assert type(got) is np.ndarray
        assert got.dtype == array.dtype and got.shape == array.shape
        np.testing.assert_array_equal(got, array)
    assert encoded.size == len(encoded.data())


@pytest.mark.parametrize(
    "value",
    [
        np.array([1, "a", None], dtype=object),
        np.ma.masked_array([1, 2], mask=[0, 1]),
        np.array([(1, {"x": 1})], dtype=[("i", "i4"), ("o", "O")]),
    ],
    ids=["object", "masked", "structured-object"],
)
def test_arrays_holding_objects_or_of_subclasses_are_pickled(value: Any) -> None:
    encoded, back = round_trip(value)
    assert encoded.format == "pickle"
    assert type(back) is type(value)
    assert repr(back) == repr(value)


def test_a_big_contiguous_array_is_not_copied_to_be_encoded() -> None:
    array = np.ones(50 * 2**20 // 8)
    tracemalloc.start()
    try:
        encoded = encode(array)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5 * 2**20, peak
    header, body = encoded.chunks
    assert isinstance(header, bytes) and isinstance(body, memoryview)
    assert np.shares_memory(np.frombuffer(body, dtype=np.uint8), array)
    assert encoded.size == array.nbytes + len(header)
    fortran = np.asfortranarray(np.ones((512, 1024)))
    assert np.shares_memory(np.frombuffer(encode(fortran).chunks[1], np.uint8), fortran)


def test_a_memmap_read_back_is_stored_as_npy_again(tmp_path: Path) -> None:
    path = write_side_file(encode(np.arange(MMAP_MIN_BYTES // 4, dtype=np.int32)), tmp_path)
    mapped = decode("npy", path=path)
    assert isinstance(mapped, np.memmap)
    encoded, back = round_trip(mapped)
    assert encoded.format == "npy"
    np.testing.assert_array_equal(back, mapped)


def test_a_big_npy_side_file_is_memory_mapped_copy_on_write(tmp_path: Path) -> None:
    array = np.arange(MMAP_MIN_BYTES // 4, dtype=np.float64)  # 2 MiB
    path = write_side_file(encode(array), tmp_path)
    before = path.read_bytes()
    back = decode("npy", path=path)
    assert isinstance(back, np.memmap)
    np.testing.assert_array_equal(back, array)
    back[:10] = -1.0
    assert back[0] == -1.0
    del back
    assert path.read_bytes() == before
    np.testing.assert_array_equal(np.load(path), array)


def test_a_small_npy_side_file_is_read_into_memory(tmp_path: Path) -> None:
    path = write_side_file(encode(np.arange(10)), tmp_path)
    back = decode("npy", path=str(path), trusted=False)
    assert type(back) is np.ndarray
    np.testing.assert_array_equal(back, np.arange(10))


# ---------------------------------------------------------------------------------------------
# npz


def test_trees_of_arrays_are_npz_that_numpy_load_opens(tmp_path: Path) -> None:
    value = {
        "weights": np.arange(6.0).reshape(2, 3),
        "history": [0.5, 0.25, (np.arange(3), "x")],
        "$meta": {"epochs": 3, "raw": b"\x01"},
    }
    encoded, back = round_trip(value)
    assert encoded.format == "npz" and encoded.extension == "npz"
    assert encoded.info == {"type": "dict", "arrays": 2}
    assert list(back) == list(value)
    np.testing.assert_array_equal(back["weights"], value["weights"])
    assert type(back["history"][2]) is tuple
    np.testing.assert_array_equal(back["history"][2][0], np.arange(3))
    assert back["history"][:2] == [0.5, 0.25] and back["history"][2][1] == "x"
    assert_same(back["$meta"], value["$meta"])

    with zipfile.ZipFile(io.BytesIO(encoded.data())) as archive:
        assert {i.compress_type for i in archive.infolist()} == {zipfile.ZIP_STORED}
    path = write_side_file(encoded, tmp_path)
    with np.load(path, allow_pickle=False) as npz:
        assert sorted(npz.files) == ["arr_0", "arr_1", "value.json"]
        np.testing.assert_array_equal(npz["arr_0"], value["weights"])
        skeleton = json.loads(npz["value.json"])
    skeleton = skeleton["$dict"]  # a key starts with "$"
    assert skeleton["weights"] == {"$npy": "arr_0.npy"}
    assert skeleton["history"][2] == {"$tuple": [{"$npy": "arr_1.npy"}, "x"]}
    from_file = decode("npz", path=path, trusted=False)
    np.testing.assert_array_equal(from_file["history"][2][0], np.arange(3))


def test_a_tuple_of_arrays_stays_a_tuple() -> None:
    value = (np.zeros(2), np.ones((2, 2), dtype=np.int8))
    encoded, back = round_trip(value)
    assert encoded.format == "npz"
    assert type(back) is tuple and len(back) == 2
    assert back[1].dtype == np.int8


def test_a_tree_with_an_object_array_is_pickled() -> None:
    encoded, back = round_trip([np.zeros(2), np.array([None], dtype=object)])
    assert encoded.format == "pickle"
    assert back[1][0] is None


# ---------------------------------------------------------------------------------------------
# parquet


def frames() -> dict[str, pd.DataFrame]:
    return {
        "simple": pd.DataFrame({"x": [1, 2, 3], "y": [0.5, None, 2.0]}),
        "typed": pd.DataFrame(
            {
                "cat": pd.Categorical(["a", "b", "a"]),
                "when": pd.to_datetime(["2020-01-01", "2021-06-30", None]),
                "n": pd.array([1, None, 3], dtype="Int64"),
                "s": pd.Series(["p", "q", None], dtype="string"),
                "b": [True, False, True],
            },
            index=pd.MultiIndex.from_tuples([(1, "a"), (1, "b"), (2, "a")], names=["k", "l"]),
        ),
        "named-index": pd.DataFrame({"v": [1.0]}, index=pd.Index([10], name="step")),
        "empty": pd.DataFrame({"v": pd.Series([], dtype="float32")}),
    }


@pytest.mark.parametrize("name", sorted(frames()))
def test_frames_are_parquet_and_round_trip(name: str, tmp_path: Path) -> None:
    frame = frames()[name]
    encoded, back = round_trip(frame)
    assert encoded.format == "parquet" and encoded.extension == "parquet"
    assert encoded.info == {
        "type": "pandas.DataFrame",
        "rows": len(frame),
        "columns": [str(c) for c in frame.columns],
    }
    pd.testing.assert_frame_equal(back, frame)
    pd.testing.assert_frame_equal(pd.read_parquet(io.BytesIO(encoded.data())), frame)
    from_file = decode("parquet", path=write_side_file(encoded, tmp_path), trusted=False)
    pd.testing.assert_frame_equal(from_file, frame)


@pytest.mark.parametrize("name", [None, "score", 3, ("a", 1)], ids=repr)
def test_series_are_parquet_and_come_back_series_with_their_name(name: Any) -> None:
    series = pd.Series([0.5, 1.5], index=pd.Index(["a", "b"], name="run"), name=name)
    encoded, back = round_trip(series)
    assert encoded.format == "parquet"
    assert encoded.info["type"] == "pandas.Series"
    assert encoded.info["rows"] == 2
    pd.testing.assert_series_equal(back, series)
    assert back.name == name and type(back.name) is type(name)


@pytest.mark.parametrize(
    "frame",
    [
        pd.DataFrame({"o": [[1], [2, 3]]}),
        pd.DataFrame({"o": [1, "mixed"]}),
        pd.DataFrame({"o": pd.Series([{"a": 1}, {"b": 2}])}),
        pd.DataFrame([[1, 2]], columns=["same", "same"]),
    ],
    ids=["lists", "mixed", "dicts", "duplicate-columns"],
)
def test_frames_parquet_would_change_are_pickled(frame: pd.DataFrame) -> None:
    encoded, back = round_trip(frame)
    assert encoded.format == "pickle"
    pd.testing.assert_frame_equal(back, frame)


def test_reading_parquet_without_pyarrow_says_what_to_install(tmp_path: Path) -> None:
    encoded = encode(frames()["simple"])
    path = write_side_file(encoded, tmp_path)
    script = f"""
        import sys
        sys.modules["pyarrow"] = None  # as if it were not installed
        from memento.store.values import ValueLoadError, decode
        try:
            decode("parquet", open({str(path)!r}, "rb").read(), info={encoded.info!r})
        except ValueLoadError as exc:
            print(exc)
    """
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(SRC)},
        check=True,
    ).stdout
    assert "pip install pyarrow" in out
    assert "memento-grid[parquet]" in out
    assert "pandas.DataFrame" in out and "parquet" in out


def test_without_pyarrow_frames_are_pickled() -> None:
    script = """
        import sys
        sys.modules["pyarrow"] = None  # as if it were not installed
        import pandas
        from memento.store.values import decode, encode
        frame = pandas.DataFrame({"x": [1, 2]})
        encoded = encode(frame)
        print(encoded.format, decode(encoded.format, encoded.data()).equals(frame))
    """
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(SRC)},
        check=True,
    ).stdout
    assert out.split() == ["pickle", "True"]


# ---------------------------------------------------------------------------------------------
# pickle


def test_pickles_record_the_versions_of_their_libraries() -> None:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
    encoded, back = round_trip(model)
    assert encoded.format == "pickle" and encoded.extension == "pkl"
    assert encoded.info["type"] == "sklearn.linear_model._logistic.LogisticRegression"
    import sklearn

    versions = encoded.info["versions"]
    assert versions["scikit-learn"] == sklearn.__version__
    assert versions["numpy"] == np.__version__  # its fitted arrays
    assert back.predict([[3.0]]) == [1]
    json.dumps(encoded.info)


def test_library_versions_walks_containers_and_leaves_builtins_out() -> None:
    assert library_versions({"a": [1, 2.0, "x"]}) == {}
    assert library_versions([{"x": np.zeros(1)}]) == {"numpy": np.__version__}
    assert "pandas" in library_versions((1, pd.DataFrame()))


def test_a_value_format_none_is_a_pickle_of_an_earlier_version() -> None:
    data = pickle.dumps({1, 2, 3})
    assert decode(None, data) == {1, 2, 3}
    assert decode(None, data, trusted=False) == {1, 2, 3}


def test_an_unpicklable_value_raises_a_type_error_naming_its_type() -> None:
    with pytest.raises(TypeError, match="lock"):
        encode(threading.Lock())


class RunsCode:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> Any:
        return (os.system, (self.command,))


def test_an_untrusted_pickle_never_runs_its_code(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    data = pickle.dumps(RunsCode(f"touch {shlex.quote(str(marker))}"))
    back = decode("pickle", data, trusted=False)
    assert isinstance(back, StoredValue)
    assert "system" in repr(back)
    assert not marker.exists()
    decode("pickle", data, trusted=True)  # the same bytes do run code when trusted
    assert marker.exists()


def test_untrusted_plain_pickles_come_back_as_they_are() -> None:
    encoded = encode({1: (2, {3})})
    assert encoded.format == "pickle"
    assert decode("pickle", encoded.data(), trusted=False) == {1: (2, {3})}


# ---------------------------------------------------------------------------------------------
# Errors


def test_a_corrupt_npy_raises_value_load_error_saying_what_and_how() -> None:
    encoded = encode(np.arange(4))
    with pytest.raises(ValueLoadError) as caught:
        decode("npy", encoded.data()[:20] + b"garbage", info=encoded.info)
    error = caught.value
    assert isinstance(error, StoreError)
    assert "numpy.ndarray" in str(error) and "npy" in str(error)
    assert error.__cause__ is not None
    assert error.format == "npy" and error.type_name == "numpy.ndarray"
    assert str(pickle.loads(pickle.dumps(error))) == str(error)


def test_info_may_be_json_text() -> None:
    encoded = encode(np.arange(3))
    with pytest.raises(ValueLoadError, match=r"numpy\.ndarray"):
        decode("npy", b"xx", info=json.dumps(encoded.info))


def test_a_pickle_whose_module_is_gone_names_its_type_and_library_versions(
    tmp_path: Path,
) -> None:
    """Written in another process, where the class's module exists; read here, where not."""
    (tmp_path / "gone_module.py").write_text(
        "class Model:\n    def __init__(self, w):\n        self.w = w\n"
    )
    out = tmp_path / "out"
    script = f"""
        import json, numpy
        from gone_module import Model
        from memento.store.values import encode
        encoded = encode(Model(numpy.arange(3)))
        open({str(out) + ".bin"!r}, "wb").write(encoded.data())
        open({str(out) + ".json"!r}, "w").write(json.dumps([encoded.format, encoded.info]))
    """
    subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{tmp_path}"},
        timeout=60,
        check=True,
    )
    data = (tmp_path / "out.bin").read_bytes()
    format, info = json.loads((tmp_path / "out.json").read_text())
    assert format == "pickle"
    assert info["type"] == "gone_module.Model"
    assert info["versions"] == {"numpy": np.__version__}

    with pytest.raises(ValueLoadError) as caught:
        decode(format, data, info=info)
    message = str(caught.value)
    assert "gone_module.Model" in message and "pickle" in message
    assert "ModuleNotFoundError" in message and "gone_module" in message
    assert f"numpy {np.__version__} (now {np.__version__})" in message

    info["versions"] = {"numpy": "1.0.0", "made-up-dist": "2.0", "scikit-learn": "0.1"}
    with pytest.raises(ValueLoadError) as caught:
        decode(format, data, info=info)
    message = str(caught.value)
    assert f"numpy 1.0.0 (now {np.__version__})" in message
    assert "made-up-dist 2.0 (now not installed)" in message
    # Untrusted, it is a placeholder, no error.
    assert "gone_module.Model" in repr(decode(format, data, info=info, trusted=False))


def test_decode_needs_data_or_path() -> None:
    with pytest.raises(TypeError):
        decode("json")
    with pytest.raises(TypeError):
        decode("json", b"1", path="x.json")


# ---------------------------------------------------------------------------------------------
# Registered formats


class Point:
    def __init__(self, x: int, y: int) -> None:
        self.x, self.y = x, y

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)

    __hash__ = None  # type: ignore[assignment]


def dump_point(point: Point) -> bytes:
    return f"{point.x},{point.y}".encode()


def load_point(data: bytes) -> Point:
    x, y = data.decode().split(",")
    return Point(int(x), int(y))


def test_a_registered_format_round_trips_its_type(user_formats: list[str], tmp_path: Path) -> None:
    register_format(Point, dump_point, load_point, "point", extension="pt")
    user_formats.append("point")
    assert formats() == ["point", *BUILTIN_FORMATS]
    encoded = encode(Point(1, 2))
    assert (encoded.format, encoded.data(), encoded.extension) == ("point", b"1,2", "pt")
    assert encoded.info["type"].endswith("Point")
    for trusted in (True, False):  # its load is the user's own code, in their own process
        assert decode("point", encoded.data(), trusted=trusted) == Point(1, 2)
    assert decode("point", path=write_side_file(encoded, tmp_path)) == Point(1, 2)
    assert encode([Point(1, 2)]).format == "pickle"  # only the type itself


def test_registered_formats_come_first_the_latest_first(user_formats: list[str]) -> None:
    register_format(
        dict, lambda d: b"first", lambda b: "first", "first", accepts=lambda d: "k" in d
    )
    register_format(dict, lambda d: b"second", lambda b: "second", "second")
    user_formats.extend(["first", "second"])
    assert formats()[:2] == ["second", "first"]
    assert encode({"k": 1}).format == "second"  # before json, latest first
    register_format(
        dict, lambda d: b"first2", lambda b: "first2", "first", accepts=lambda d: "k" in d
    )
    assert formats()[:2] == ["first", "second"]  # re-registered: replaced, now the latest
    assert encode({"k": 1}).data() == b"first2"
    assert encode({"other": 1}).format == "second"
    assert encode(1.5).format == "json"


def test_a_format_whose_dump_raises_falls_through(
    user_formats: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    def broken(value: Any) -> bytes:
        raise RuntimeError("no")

    register_format(list, broken, list, "broken")
    user_formats.append("broken")
    with caplog.at_level(logging.DEBUG, logger="memento"):
        encoded = encode([1, 2])
    assert encoded.format == "json"
    assert any("broken" in r.getMessage() and r.levelno == logging.DEBUG for r in caplog.records)


def test_a_value_of_a_format_not_registered_here_is_a_placeholder(user_formats: list[str]) -> None:
    register_format(Point, dump_point, load_point, "point")
    user_formats.append("point")  # unregistered after the test even if it fails here
    encoded = encode(Point(3, 4))
    unregister_format("point")
    back = decode("point", encoded.data(), info=encoded.info)
    assert isinstance(back, UnknownFormat)
    assert repr(back) == (
        f"<value stored as 'point' (type {encoded.info['type']}); "
        "call memento.register_format(...) to load it>"
    )
    with pytest.raises(ValueLoadError):
        back.load()
    register_format(Point, dump_point, load_point, "point")
    assert back.load() == Point(3, 4)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"name": ""}, ValueError, "name"),
        ({"name": "Point"}, ValueError, "lowercase"),
        ({"name": "a/b"}, ValueError, "name"),
        ({"name": 3}, ValueError, "name"),
        ({"name": "json"}, ValueError, "built-in"),
        ({"name": "pickle"}, ValueError, "built-in"),
        ({"type_": 3}, TypeError, "type_"),
        ({"type_": ()}, TypeError, "type_"),
        ({"type_": (Point, "x")}, TypeError, "type_"),
        ({"dump": "not callable"}, TypeError, "dump"),
        ({"load": None}, TypeError, "load"),
        ({"accepts": True}, TypeError, "accepts"),
        ({"extension": ".pt"}, ValueError, "extension"),
        ({"extension": "a/b"}, ValueError, "extension"),
    ],
    ids=repr,
)
def test_bad_register_format_arguments_are_refused(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    arguments: dict[str, Any] = {
        "type_": Point,
        "dump": dump_point,
        "load": load_point,
        "name": "point",
        **kwargs,
    }
    with pytest.raises(error, match=match):
        register_format(
            arguments.pop("type_"),
            arguments.pop("dump"),
            arguments.pop("load"),
            arguments.pop("name"),
            **arguments,
        )
    assert formats() == list(BUILTIN_FORMATS)


def test_built_in_formats_cannot_be_unregistered() -> None:
    with pytest.raises(ValueError, match="built-in"):
        unregister_format("json")


def test_importing_the_codec_loads_no_heavy_library() -> None:
    script = """
        import sys
        import memento.store.values as values
        values.encode({"a": (1, b"x")})
        heavy = {"numpy", "pandas", "pyarrow", "cloudpickle"} & set(sys.modules)
        print(sorted(heavy))
    """
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(SRC)},
        check=True,
    ).stdout
    assert out.strip() == "[]"
