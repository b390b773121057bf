"""Parameter and settings values that only cloudpickle can send, on every executor.

memento-ml 1.2 sent each task with cloudpickle, so lambdas, local functions and classes (and
their instances), modules and ``functools.partial`` objects of lambdas worked as parameter and
settings values, under ``fork`` and ``spawn`` alike, from scripts and notebooks. These tests
run real worker processes (pebble's pool, a ``ProcessPoolExecutor``, Dask and Ray workers,
scripts and notebook kernels in subprocesses) and check that the experiment gets working
objects and that a lambda or a local-class instance it returns is stored.
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
import math
import multiprocessing
import os
import pickle
import subprocess
import sys
import textwrap
import threading
import types
from pathlib import Path
from typing import Any

import pytest
from clusters import EXECUTORS, dask_client, make_executor, ray_local, slurm_folder
from processes import run_notebook

from memento import Memento
from memento.executors import ProcessExecutor
from memento.matrix.configs import Config
from memento.store.sqlite import Store
from memento.worker.wire import FunctionRef, Job, Task

__all__ = ["dask_client", "ray_local", "slurm_folder"]  # fixtures used through make_executor

pytestmark = pytest.mark.timeout(300)


def use(value: Any) -> Any:
    """What the experiment does with each kind of value (the test does the same in the driver)."""
    if isinstance(value, types.ModuleType):
        return value.join("a", "b")
    if isinstance(value, type):
        return value(5).twice()
    if hasattr(value, "twice"):
        return value.twice()
    return value(5)


def use_values(context: Any, config: Any) -> dict[str, Any]:
    settings = config.settings
    return {
        "value": use(config.value),
        "settings": [settings["shift"](1), settings["helper"].twice(), settings["math"].sqrt(16)],
        "pid": os.getpid(),
        "returned_fn": lambda x: x - 1,
        "returned_obj": settings["helper"],
    }


def local_values() -> tuple[dict[str, Any], type]:
    """The issue's values, all defined here (``<locals>``), with keys that work."""

    class Local:
        def __init__(self, k: int) -> None:
            self.k = k

        def twice(self) -> int:
            return 2 * self.k

    def add_one(x: int) -> int:
        return x + 1

    matrix = {
        "parameters": {
            "value": [
                lambda x: x * 3,
                add_one,
                Local,
                Local(7),
                os.path,
                functools.partial(lambda a, b: a + b, 100),
            ]
        },
        "settings": {"shift": lambda x: x + 1000, "helper": Local(21), "math": math},
    }
    return matrix, Local


def _executor(name: str, request: pytest.FixtureRequest) -> Any:
    if name == "concurrent.futures":
        return cf.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork"))
    return make_executor(name, request)


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slurm) if n == "slurm" else n for n in EXECUTORS]
    + ["concurrent.futures"],
)
def test_local_values_reach_the_experiment_working(
    name: str, request: pytest.FixtureRequest, store_path: Path
) -> None:
    matrix, local_class = local_values()
    executor = _executor(name, request)
    try:
        results = Memento(use_values, executor=executor, num_workers=2, progress=False).run(
            matrix, cache_path=store_path, raise_on_failure=False
        )
    finally:
        if isinstance(executor, cf.Executor):
            executor.shutdown()
    assert results is not None
    assert [r.error for r in results] == [None] * 6
    assert [r.inner["value"] for r in results] == [15, 6, 10, 14, "a/b", 105]
    assert [r.inner["value"] for r in results] == [use(v) for v in matrix["parameters"]["value"]]
    assert all(r.inner["settings"] == [1001, 42, 4.0] for r in results)
    if name not in ("thread", "inline"):
        assert all(r.inner["pid"] != os.getpid() for r in results)  # real workers ran them
    # What the experiment returned came back whole, as an instance of the very same class.
    for result in results:
        assert result.inner["returned_fn"](10) == 9
        assert isinstance(result.inner["returned_obj"], local_class)
        assert result.inner["returned_obj"].twice() == 42
    again = Memento(use_values, executor="inline", progress=False).run(
        matrix, cache_path=store_path
    )
    assert again is not None and all(r.was_cached for r in again)
    assert [r.inner["returned_fn"](1) for r in again] == [0] * 6  # and were stored


def test_a_job_carries_every_part_of_its_configs(tmp_path: Path) -> None:
    # The job's configs travel as their parts (fast for plain data): Config's every slot.
    matrix, _ = local_values()
    settings = matrix["settings"]
    tasks = [
        Task(f"k{i}", Config._make({"value": v, "i": i}, settings), attempt=i + 1)
        for i, v in enumerate(matrix["parameters"]["value"])
    ]
    job = Job(FunctionRef(use_values, "digest"), tasks, str(tmp_path))
    again = pickle.loads(pickle.dumps(job))
    assert [(t.key, t.attempt) for t in again.tasks] == [(t.key, t.attempt) for t in tasks]
    # A config is its parameters and its settings; a new slot must be carried too.
    assert set(Config.__slots__) == {"_params", "settings"}
    for sent, got in zip(tasks, again.tasks):
        assert type(got.config) is Config
        assert list(got.config._params) == ["value", "i"]
        assert got.config.i == sent.config.i
        assert use(got.config.value) == use(sent.config.value)
        assert got.config.settings["shift"](1) == 1001
    # The shared settings travel once and stay shared.
    assert len({id(t.config.settings) for t in again.tasks}) == 1
    # A job passed on unchanged (a Dask worker hands it to its process pool) is not re-packed.
    assert pickle.loads(pickle.dumps(again)).tasks[3].config.value.twice() == 14


class Guarded:
    """Has a key (``__memento_key__``) but holds a lock, which no pickle can send."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.lock = threading.Lock()

    def __memento_key__(self) -> str:
        return self.name


def read_x(context: Any, config: Any) -> int:
    return int(config.x)


def test_a_value_that_cannot_travel_fails_its_experiments_naming_it(store_path: Path) -> None:
    results = Memento(read_x, num_workers=2, progress=False).run(
        {"parameters": {"x": [1, 2], "guard": [Guarded("g")]}, "settings": {"s": 1}},
        cache_path=store_path,
        raise_on_failure=False,
    )
    assert results is not None
    assert [r.ok for r in results] == [False, False]
    for result in results:
        message = str(result.error)
        assert isinstance(result.error, TypeError)
        assert message.startswith(
            f"The parameter guard (a Guarded) of config x={result.config.x}, guard=Guarded "
            "cannot be pickled"
        )
        assert "executor='thread' or 'inline'" in message
    # In this process nothing needs pickling.
    inline = Memento(read_x, executor="inline", progress=False).run(
        {"parameters": {"x": [1, 2], "guard": [Guarded("g")]}}, cache_path=store_path
    )
    assert inline is not None and [r.inner for r in inline] == [1, 2]


GHOST = """
import sys, types
ghost = types.ModuleType("ghost_values")
exec("class Thing:\\n    def __init__(self, k):\\n        self.k = k\\n", ghost.__dict__)
sys.modules["ghost_values"] = ghost
"""


def read_ghost(context: Any, config: Any) -> int:
    return int(config.thing.k)


@pytest.mark.timeout(120)
def test_a_value_a_spawned_worker_cannot_import_fails_that_experiment_clearly(
    store_path: Path,
) -> None:
    # A class of a module that exists only in the driver travels by reference (it is not
    # __main__); a spawned worker cannot import it. The experiments fail, with the fix in the
    # message; the pool is not lost.
    namespace: dict[str, Any] = {}
    exec(GHOST, namespace)
    thing = namespace["ghost"].Thing
    try:
        executor = ProcessExecutor(2, start_method="spawn")
        results = Memento(read_ghost, executor=executor, progress=False).run(
            {"parameters": {"thing": [thing(1), thing(2)], "n": [1, 2]}},
            cache_path=store_path,
            raise_on_failure=False,
        )
    finally:
        sys.modules.pop("ghost_values", None)
    assert results is not None
    assert [r.ok for r in results] == [False] * 4
    for result in results:
        assert isinstance(result.error, RuntimeError)
        assert "No module named 'ghost_values'" in str(result.error)
        assert "register_pickle_by_value" in str(result.error)
        assert "ModuleNotFoundError" in result.error.traceback
    with Store(store_path) as store:
        assert store.lookup([r.key for r in results], ("status",)) == {
            r.key: ("failed",) for r in results
        }


SCRIPT = """
import functools, multiprocessing, sys
from memento import Memento
from memento.executors import ProcessExecutor

class Scale:
    def __init__(self, k):
        self.k = k

def experiment(context, config):
    worker_main = sys.modules["__main__"].__name__
    scale = config.settings["scale"]
    return (config.f(10) * scale.k, isinstance(scale, Scale), worker_main, lambda: "back")
"""

MAIN = """
how = sys.argv[2]
executor = "process"
if how == "set_start_method":
    multiprocessing.set_start_method("spawn")
elif how == "start_method=":
    executor = ProcessExecutor(2, start_method="spawn")
matrix = {
    "parameters": {"f": [lambda x: x + 1, functools.partial(lambda a, b: a * b, 3)]},
    "settings": {"scale": Scale(2)},
}
for _ in range(2):
    results = Memento(experiment, executor=executor, num_workers=2, progress=False).run(
        matrix, cache_path=sys.argv[1]
    )
    print([r.inner[:3] + (r.inner[3](), r.was_cached) for r in results])
"""


@pytest.mark.parametrize(
    ("how", "worker_main"),
    [
        ("set_start_method", "__mp_main__"),  # a spawned worker imports the script anew
        ("start_method=", "__mp_main__"),
        ("default", "__main__"),  # forked on Linux, so a script needs no __main__ guard
    ],
)
def test_spawned_workers_run_a_scripts_main_functions_and_lambdas(
    how: str, worker_main: str, tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    if how == "default" and not sys.platform.startswith("linux"):
        pytest.skip("workers are forked by default on Linux only")
    guarded = 'if __name__ == "__main__":' + textwrap.indent(MAIN, "    ")
    main = MAIN if how == "default" else guarded
    script = tmp_path / "grid.py"
    script.write_text(SCRIPT + main)
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "store.sqlite"), how],
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=200,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    expected = [
        f"[(22, True, {worker_main!r}, 'back', {cached}), "
        f"(60, True, {worker_main!r}, 'back', {cached})]"
        for cached in (False, True)
    ]
    assert done.stdout.splitlines() == expected


def test_an_unknown_start_method_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match=r"start_method must be one of 'fork'.*got 'spwan'"):
        ProcessExecutor(start_method="spwan")


NOTEBOOK_CELLS = [
    "import functools, multiprocessing, sys\n"
    "from memento import Memento\n"
    "from memento.executors import ProcessExecutor",
    "class Scale:\n    def __init__(self, k):\n        self.k = k\n",
    "def experiment(context, config):\n"
    "    spawned = 'ipykernel' not in sys.modules  # a forked worker has the kernel's modules\n"
    "    return (config.f(config.x) * config.settings['scale'].k, spawned, lambda: 'back')",
    "def show(results):\n"
    "    print([(r.inner[0], r.inner[1], r.inner[2]()) if r.ok else repr(r.error)\n"
    "           for r in results])",
    "matrix = {'parameters': {'x': [1, 2], 'f': [lambda v: v + 1]},\n"
    "          'settings': {'scale': Scale(10)}}\n"
    "show(Memento(experiment, executor=ProcessExecutor(2, start_method='spawn'),\n"
    "             progress=False).run(matrix, cache_path=STORE + '1', raise_on_failure=False))",
    "multiprocessing.set_start_method('spawn', force=True)\n"
    "show(Memento(experiment, num_workers=2, progress=False).run(\n"
    "    matrix, cache_path=STORE + '2', raise_on_failure=False))",
]


@pytest.mark.timeout(300)
def test_spawned_workers_run_a_notebooks_functions_and_lambdas(tmp_path: Path) -> None:
    outputs = run_notebook([f"STORE = {str(tmp_path / 'nb.sqlite')!r}", *NOTEBOOK_CELLS])
    expected = "[(20, True, 'back'), (30, True, 'back')]"
    assert outputs[-2:] == [expected, expected]
