"""Typed return values as a user meets them: real driver scripts run in fresh interpreters,
the store read back with plain ``sqlite3``, ``numpy`` alone and the ``memento`` command.

Each test would fail with every value cloudpickled into the ``value`` column (the behaviour
before typed storage): the formats, the side file of a big array, the JSON that SQL can query.
"""

from __future__ import annotations

import json
import pickle
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from memento import open_results

#: A deadline for one driver script; they run a handful of tiny experiments.
SCRIPT_TIMEOUT = 180

#: The experiment module every test's driver runs: one return value per ``kind``. A module of
#: its own (not the script), so that worker processes and later interpreters import the same
#: functions and classes.
KINDS = '''
import numpy
from memento import register_format


class Point:
    """A user type with a format of its own: stored as the text "x,y"."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __eq__(self, other):
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)

    def __repr__(self):
        return f"Point({self.x}, {self.y})"


def dump_point(point):
    return f"{point.x},{point.y}".encode()


def load_point(data):
    x, y = data.decode().split(",")
    return Point(int(x), int(y))


register_format(Point, dump_point, load_point, "point", extension="pt")


class Opaque:
    """A class memento knows nothing about: it must be pickled."""

    def __init__(self, rng):
        self.rng = rng


def big():
    return numpy.random.default_rng(7).random(5 * 1024 * 1024 // 8)


def experiment(context, config):
    kind = config.kind
    if kind == "scores":
        return {"accuracy": 0.93, "f1": 0.91}
    if kind == "array":
        return numpy.arange(12, dtype=numpy.int32).reshape(3, 4)
    if kind == "tree":
        return {"w": numpy.linspace(0.0, 1.0, 5), "loss": 0.1}
    if kind == "frame":
        import pandas

        return pandas.DataFrame({"epoch": [1, 2], "loss": [0.5, 0.25]})
    if kind == "object":
        return Opaque(numpy.random.default_rng(0))
    if kind == "big":
        return big()
    if kind == "exact":
        return {"pair": (1, 2.0), "f": 1.0, "n": 3, "nested": [(0.0, "a")]}
    if kind == "point":
        return Point(3, 4)
    raise ValueError(kind)
'''

#: The driver: runs the kinds named on its command line and prints one JSON line per result.
DRIVER = """
import json, sys
import numpy
from memento import Memento
from kinds import experiment

store, kinds = sys.argv[1], sys.argv[2].split(",")
results = Memento(experiment, progress=False).run(
    {"parameters": {"kind": kinds}}, cache_path=store
)
for r in results:
    inner = r.inner
    if isinstance(inner, numpy.ndarray):
        numpy.save(sys.argv[3], numpy.asarray(inner), allow_pickle=False)
        inner = "<array>"
    print(json.dumps({"kind": r.config.kind, "key": r.key, "cached": r.was_cached,
                      "type": type(r.inner).__name__, "repr": repr(inner)}))
"""


@pytest.fixture
def project(tmp_path: Path, subprocess_env: dict[str, str]) -> Path:
    """A user's project folder holding the experiment module and the driver script."""
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "kinds.py").write_text(textwrap.dedent(KINDS))
    (folder / "drive.py").write_text(textwrap.dedent(DRIVER))
    subprocess_env["PYTHONPATH"] = f"{folder}:{subprocess_env['PYTHONPATH']}"
    return folder


def drive(
    project: Path, env: dict[str, str], store: Path, *kinds: str
) -> dict[str, dict[str, Any]]:
    """Run the driver in a new interpreter; its JSON lines by kind."""
    out = run(
        [
            sys.executable,
            str(project / "drive.py"),
            str(store),
            ",".join(kinds),
            str(project / "array.npy"),
        ],
        env,
        project,
    )
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return {line["kind"]: line for line in lines}


def run(command: list[str], env: dict[str, str], cwd: Path) -> str:
    """Run ``command``; its stdout. A failure shows what the program said."""
    done = subprocess.run(
        command, env=env, cwd=cwd, capture_output=True, text=True, timeout=SCRIPT_TIMEOUT
    )
    assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def rows(store: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """``sql`` against the store with the standard library alone."""
    with sqlite3.connect(store) as conn:
        return conn.execute(sql, args).fetchall()


def key_of(store: Path, kind: str) -> str:
    """The key of the result of ``kind``, found with plain SQL."""
    found = rows(store, "SELECT key FROM results WHERE json_extract(params, '$.kind') = ?", kind)
    assert len(found) == 1, found
    return str(found[0][0])


def test_a_json_value_is_read_with_plain_sqlite(
    project: Path, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    store = tmp_path / "store.sqlite"
    drive(project, subprocess_env, store, "scores")
    assert rows(store, "SELECT json_extract(value, '$.accuracy') FROM results") == [(0.93,)]
    assert rows(store, "SELECT json_extract(value, '$.f1'), value_format FROM results") == [
        (0.91, "json")
    ]


def test_each_kind_of_value_gets_its_format(
    project: Path, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    store = tmp_path / "store.sqlite"
    kinds = ("scores", "array", "tree", "frame", "object")
    drive(project, subprocess_env, store, *kinds)
    found = {
        json.loads(params)["kind"]: (fmt, json.loads(info))
        for params, fmt, info in rows(store, "SELECT params, value_format, value_info FROM results")
    }
    assert {kind: fmt for kind, (fmt, _) in found.items()} == {
        "scores": "json",
        "array": "npy",
        "tree": "npz",
        "frame": "parquet",
        "object": "pickle",
    }
    assert found["array"][1]["shape"] == [3, 4]
    assert found["array"][1]["dtype"] == "int32"
    # The pickle records the versions of the libraries its types come from (numpy's Generator).
    assert found["object"][1]["versions"]["numpy"] == np.__version__


def test_an_npy_value_is_read_with_numpy_alone(
    project: Path, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    store = tmp_path / "store.sqlite"
    drive(project, subprocess_env, store, "array")
    ((blob,),) = rows(store, "SELECT value FROM results")
    import io

    array = np.load(io.BytesIO(blob), allow_pickle=False)
    np.testing.assert_array_equal(array, np.arange(12, dtype=np.int32).reshape(3, 4))
    assert array.dtype == np.int32


def test_a_big_array_is_a_side_file_numpy_loads_and_a_cached_rerun_gives_back(
    project: Path, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    store = tmp_path / "store.sqlite"
    expected = np.random.default_rng(7).random(5 * 1024 * 1024 // 8)
    first = drive(project, subprocess_env, store, "big")["big"]
    assert first["cached"] is False
    np.testing.assert_array_equal(np.load(project / "array.npy"), expected)

    key = key_of(store, "big")
    side = Path(f"{store}.d") / "values" / f"{key}.npy"
    assert side.is_file()
    assert side.stat().st_size > 5 * 1024 * 1024
    np.testing.assert_array_equal(np.load(side, allow_pickle=False), expected)
    ((value, value_file, fmt),) = rows(store, "SELECT value, value_file, value_format FROM results")
    assert value is None and fmt == "npy" and value_file == f"values/{key}.npy"

    (project / "array.npy").unlink()
    again = drive(project, subprocess_env, store, "big")["big"]
    assert again["cached"] is True
    np.testing.assert_array_equal(np.load(project / "array.npy"), expected)


def test_tuples_stay_tuples_and_floats_stay_floats_after_a_cached_rerun(
    project: Path, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    store = tmp_path / "store.sqlite"
    fresh = drive(project, subprocess_env, store, "exact")["exact"]
    cached = drive(project, subprocess_env, store, "exact")["exact"]
    expected = repr({"pair": (1, 2.0), "f": 1.0, "n": 3, "nested": [(0.0, "a")]})
    assert (fresh["cached"], cached["cached"]) == (False, True)
    assert fresh["repr"] == expected
    assert cached["repr"] == expected
    assert rows(store, "SELECT value_format FROM results") == [("json",)]


def test_a_registered_format_is_used_by_worker_processes_and_read_back(
    project: Path, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    store = tmp_path / "store.sqlite"
    fresh = drive(project, subprocess_env, store, "point")["point"]
    assert (fresh["type"], fresh["repr"]) == ("Point", "Point(3, 4)")
    assert rows(store, "SELECT value_format, value FROM results") == [("point", b"3,4")]

    cached = drive(project, subprocess_env, store, "point")["point"]
    assert (cached["cached"], cached["type"], cached["repr"]) == (True, "Point", "Point(3, 4)")


def test_a_pickled_value_of_an_older_memento_still_loads(
    project: Path, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    store = tmp_path / "store.sqlite"
    drive(project, subprocess_env, store, "scores")
    # What memento wrote before typed values: a pickle, and no format or description.
    old = pickle.dumps({"accuracy": 0.5, "f1": (0.25, 0.75)}, protocol=4)
    with sqlite3.connect(store) as conn:
        conn.execute("UPDATE results SET value = ?, value_format = NULL, value_info = NULL", (old,))

    cached = drive(project, subprocess_env, store, "scores")["scores"]
    assert cached["cached"] is True
    assert cached["repr"] == repr({"accuracy": 0.5, "f1": (0.25, 0.75)})
    (record,) = open_results(store)
    assert record["inner"] == {"accuracy": 0.5, "f1": (0.25, 0.75)}


def test_dict_results_are_one_column_per_key_when_opened(
    project: Path, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    pytest.importorskip("pandas")
    store = tmp_path / "store.sqlite"
    drive(project, subprocess_env, store, "scores")
    frame = open_results(store).to_dataframe()
    assert frame["accuracy"].tolist() == [0.93]
    assert frame["f1"].tolist() == [0.91]
    assert "inner" not in frame.columns

    out = run([sys.executable, "-m", "memento", "results", str(store)], subprocess_env, tmp_path)
    header = out.splitlines()[0].split()
    assert "accuracy" in header and "f1" in header


def test_memento_results_shows_typed_values_without_load_values(
    project: Path, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    store = tmp_path / "store.sqlite"
    drive(project, subprocess_env, store, "array", "tree", "object")
    out = run([sys.executable, "-m", "memento", "results", str(store)], subprocess_env, tmp_path)
    lines = {
        kind: line
        for line in out.splitlines()
        for kind in ("array", "tree", "object")
        if f" {kind} " in line
    }
    # The arrays are described from the stored value, which needed no unpickling.
    assert "int32" in lines["array"] and "(3, 4)" in lines["array"]
    assert "'w': array([0. , 0.25, 0.5" in lines["tree"]
    # The pickle alone is left unloaded, and named by its type.
    assert "Opaque" in lines["object"]


def test_typed_values_load_without_the_experiments_code(
    project: Path, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    store = tmp_path / "store.sqlite"
    drive(project, subprocess_env, store, "array", "tree", "frame", "big")
    assert "kinds" not in sys.modules  # this process cannot import the experiment's module
    loaded = {r["params"]["kind"]: r for r in open_results(store)}
    assert all(r["note"] in (None, "") for r in loaded.values()), loaded
    np.testing.assert_array_equal(loaded["array"]["inner"], np.arange(12).reshape(3, 4))
    tree = loaded["tree"]["inner"]
    assert tree["loss"] == 0.1
    np.testing.assert_array_equal(tree["w"], np.linspace(0.0, 1.0, 5))
    expected = pd.DataFrame({"epoch": [1, 2], "loss": [0.5, 0.25]})
    pd.testing.assert_frame_equal(loaded["frame"]["inner"], expected)
    big = np.random.default_rng(7).random(5 * 1024 * 1024 // 8)
    np.testing.assert_array_equal(loaded["big"]["inner"], big)
