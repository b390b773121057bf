"""Thread caps and GPU slots (memento.worker.resources).

Thread caps are checked through threadpoolctl on the real pools of real processes, each in a
fresh interpreter (never pytest's own, whose pools other tests may have touched): numpy's
OpenBLAS and, where the system has it, GCC's libgomp loaded with ctypes (a real OpenMP pool,
without the second it takes to import scikit-learn). This machine has 2 cores, so a pool's
default is 2 and the cap is 1; a test skips where the default is already 1.

GPU ids: no GPU here, so ``CUDA_VISIBLE_DEVICES`` values are given as a mapping and
``nvidia-smi`` is a real executable script in a tmp dir, run as a real process (subprocess is
not mocked).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from memento.worker.resources import (
    THREAD_VARIABLES,
    GpuSlots,
    check_gpus_per_experiment,
    check_threads,
    default_threads,
    gpu_environment,
    visible_gpus,
)

pytest.importorskip("numpy")
pytest.importorskip("threadpoolctl")

# Shared by the scripts below: the pools' sizes as threadpoolctl sees them, and GCC's OpenMP
# runtime loaded for real when the system has one.
PRELUDE = """
import ctypes, ctypes.util, json, os, sys
from threadpoolctl import threadpool_info

def sizes():
    return sorted([p["user_api"], p["internal_api"], p["num_threads"]] for p in threadpool_info())

def load_openmp():
    name = ctypes.util.find_library("gomp")
    if name:
        ctypes.CDLL(name)
    return bool(name)

def variables():
    from memento.worker.resources import THREAD_VARIABLES
    return {n: os.environ.get(n) for n in THREAD_VARIABLES}
"""


def run_script(tmp_path: Path, body: str) -> Any:
    """Run ``body`` (after :data:`PRELUDE`) as a script in a fresh interpreter, with none of
    the thread variables set; what it prints last, as JSON."""
    script = tmp_path / "probe.py"
    script.write_text(PRELUDE + textwrap.dedent(body))
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    done = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def needs_two(pools: list[list[Any]]) -> None:
    if min(p[2] for p in pools) < 2:
        pytest.skip("the pools default to 1 thread here: nothing to cap")


def test_forked_worker_caps_pools_numpy_loaded_before_the_fork(tmp_path: Path) -> None:
    result = run_script(
        tmp_path,
        """
        import multiprocessing
        import numpy  # a driver that imported numpy before its workers started
        from memento.worker.resources import thread_cap
        openmp = load_openmp()

        def worker(conn):
            before = sizes()
            thread_cap.apply(1)
            conn.send({"before": before, "after": sizes(), "env": variables()})

        if __name__ == "__main__":
            ctx = multiprocessing.get_context("fork")
            receive, send = ctx.Pipe(duplex=False)
            child = ctx.Process(target=worker, args=(send,))
            child.start()
            got = receive.recv()
            child.join()
            print(json.dumps({"parent": sizes(), "openmp": openmp, **got}))
        """,
    )
    needs_two(result["parent"])
    apis = {p[0] for p in result["after"]}
    assert "blas" in apis
    if result["openmp"]:
        assert "openmp" in apis
    assert result["before"] == result["parent"]  # the fork inherited pools sized to all cores
    assert [p[2] for p in result["after"]] == [1] * len(result["after"])
    assert result["env"] == dict.fromkeys(THREAD_VARIABLES, "1")


def test_spawned_worker_caps_pools_loaded_after_apply(tmp_path: Path) -> None:
    result = run_script(
        tmp_path,
        """
        import multiprocessing
        from memento.worker.resources import thread_cap

        def worker(conn, cap):
            loaded_first = "numpy" in sys.modules
            thread_cap.apply(cap)
            import numpy  # loaded after the cap: the variables size its pool
            openmp = load_openmp()
            conn.send({"loaded_first": loaded_first, "openmp": openmp, "sizes": sizes()})

        def spawned(cap):
            ctx = multiprocessing.get_context("spawn")
            receive, send = ctx.Pipe(duplex=False)
            child = ctx.Process(target=worker, args=(send, cap))
            child.start()
            got = receive.recv()
            child.join()
            return got

        if __name__ == "__main__":
            print(json.dumps({"none": spawned(None), "one": spawned(1)}))
        """,
    )
    needs_two(result["none"]["sizes"])  # without a cap: every core
    capped = result["one"]
    assert capped["loaded_first"] is False
    assert "blas" in {p[0] for p in capped["sizes"]}
    if capped["openmp"]:
        assert "openmp" in {p[0] for p in capped["sizes"]}
    assert [p[2] for p in capped["sizes"]] == [1] * len(capped["sizes"])


def test_apply_looks_again_only_when_modules_were_imported_or_the_cap_changed(
    tmp_path: Path,
) -> None:
    result = run_script(
        tmp_path,
        """
        import numpy
        from threadpoolctl import threadpool_limits
        from memento.worker.resources import ThreadCap
        blas = lambda: [p[2] for p in sizes() if p[0] == "blas"]
        cap, seen = ThreadCap(), {"default": blas()}
        cap.apply(1)
        seen["capped"] = blas()
        threadpool_limits(limits=2)  # an experiment resized the pool itself
        cap.apply(1)
        seen["nothing_imported"] = blas()  # the cheap path: left as the experiment made it
        assert "colorsys" not in sys.modules
        import colorsys  # a new module may bring a new pool: look again
        cap.apply(1)
        seen["after_import"] = blas()
        cap.apply(2)
        seen["changed"] = blas()
        os.environ["OMP_NUM_THREADS"] = "8"  # an experiment changed a variable
        cap.apply(2)
        seen["env"] = variables()
        cap.apply(None)
        seen["none"] = blas()
        print(json.dumps(seen))
        """,
    )
    needs_two([["blas", "", n] for n in result["default"]])
    assert set(result["capped"]) == {1}
    assert set(result["nothing_imported"]) == {2}
    assert set(result["after_import"]) == {1}
    assert set(result["changed"]) == {2}
    assert result["env"] == dict.fromkeys(THREAD_VARIABLES, "2")
    assert set(result["none"]) == {2}


def test_limited_caps_for_the_duration_and_puts_everything_back(tmp_path: Path) -> None:
    result = run_script(
        tmp_path,
        """
        import numpy
        from memento.worker.resources import limited
        openmp = load_openmp()
        os.environ["MKL_NUM_THREADS"] = "7"  # the user's own setting, put back afterwards
        seen = {"openmp": openmp, "before": sizes(), "env_before": variables()}
        with limited(1):
            seen["inside"], seen["env_inside"] = sizes(), variables()
        seen["after"], seen["env_after"] = sizes(), variables()
        with limited(None):
            seen["none"] = sizes()
        print(json.dumps(seen))
        """,
    )
    needs_two(result["before"])
    assert [p[2] for p in result["inside"]] == [1] * len(result["inside"])
    assert result["env_inside"] == dict.fromkeys(THREAD_VARIABLES, "1")
    assert result["after"] == result["before"]
    assert result["env_after"] == result["env_before"]
    assert result["env_after"]["MKL_NUM_THREADS"] == "7"
    assert result["env_after"]["OMP_NUM_THREADS"] is None
    assert result["none"] == result["before"]


def test_apply_refuses_a_bad_cap() -> None:
    from memento.worker.resources import ThreadCap

    with pytest.raises(ValueError, match="positive int"):
        ThreadCap().apply(0)


@pytest.mark.parametrize("value", [1, 4, 128, None])
def test_check_threads_accepts(value: int | None) -> None:
    assert check_threads(value) == value


@pytest.mark.parametrize(
    ("value", "error"),
    [(0, ValueError), (-2, ValueError), (True, TypeError), (1.0, TypeError), ("4", TypeError)],
)
def test_check_threads_refuses(value: object, error: type[Exception]) -> None:
    with pytest.raises(error, match=r"threads_per_experiment must be a positive int .* got"):
        check_threads(value)


@pytest.mark.parametrize(
    ("cpus", "workers", "share"), [(2, 1, 2), (2, 2, 1), (2, 4, 1), (8, 3, 2), (64, 8, 8)]
)
def test_default_threads(cpus: int, workers: int, share: int) -> None:
    assert default_threads(cpus, workers) == share


# -- GPUs -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "ids"),
    [
        ("0,1", ["0", "1"]),
        (" 2 , 3 ", ["2", "3"]),
        ("0,1,", ["0", "1"]),
        ("0,,1", ["0", "1"]),
        ("1,1,0", ["1", "0"]),
        ("GPU-8a0b1c2d-aaaa-bbbb-cccc-0123456789ab,MIG-1f2e3d4c", None),
        ("", []),
        ("  ", []),
        ("-1", []),
        ("NoDevFiles", []),
        ("0,-1,1", ["0"]),
        ("0,gpu1,2", ["0"]),
    ],
)
def test_visible_gpus_from_cuda_visible_devices(value: str, ids: list[str] | None) -> None:
    expected = value.split(",") if ids is None else ids
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": value}, smi="/nonexistent/nvidia-smi") == (
        expected
    )


def fake_smi(folder: Path, body: str) -> Path:
    """A real ``nvidia-smi`` executable in ``folder`` running the shell ``body``."""
    folder.mkdir(exist_ok=True)
    path = folder / "nvidia-smi"
    path.write_text("#!/bin/sh\n" + textwrap.dedent(body))
    path.chmod(0o755)
    return path


SMI_LISTING = """\
[ "$1" = "-L" ] || exit 2
cat <<'EOF'
GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-8a0b1c2d-aaaa-bbbb-cccc-0123456789ab)
  MIG 1g.5gb      Device  0: (UUID: MIG-1f2e3d4c-aaaa-bbbb-cccc-0123456789ab)
GPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-9b1c2d3e-aaaa-bbbb-cccc-0123456789ab)
GPU 10: Tesla V100 (UUID: GPU-0c2d3e4f-aaaa-bbbb-cccc-0123456789ab)
EOF
"""


def test_visible_gpus_from_nvidia_smi_on_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_smi(tmp_path / "bin", SMI_LISTING)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    assert visible_gpus({}) == ["0", "1", "10"]
    # CUDA_VISIBLE_DEVICES, when set, wins over what nvidia-smi lists.
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "1"}) == ["1"]


def test_visible_gpus_none_when_nvidia_smi_fails_is_missing_or_hangs(tmp_path: Path) -> None:
    failing = fake_smi(
        tmp_path / "failing",
        """\
        echo "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."
        exit 9
        """,
    )
    assert visible_gpus({}, smi=str(failing)) == []
    assert visible_gpus({}, smi=str(tmp_path / "missing" / "nvidia-smi")) == []
    hanging = fake_smi(tmp_path / "hanging", "exec sleep 60\n")
    start = time.monotonic()
    assert visible_gpus({}, smi=str(hanging), timeout=0.5) == []
    assert time.monotonic() - start < 10


def test_gpu_environment() -> None:
    # Ids from nvidia-smi (the driver set neither variable): numbered as nvidia-smi does.
    assert gpu_environment(("0", "1"), {}) == {
        "CUDA_VISIBLE_DEVICES": "0,1",
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
    }
    # Ids from the driver's CUDA_VISIBLE_DEVICES, or an order the user chose: kept as they are.
    assert gpu_environment(("3",), {"CUDA_VISIBLE_DEVICES": "2,3"}) == {"CUDA_VISIBLE_DEVICES": "3"}
    assert gpu_environment(("0",), {"CUDA_DEVICE_ORDER": "FASTEST_FIRST"}) == {
        "CUDA_VISIBLE_DEVICES": "0"
    }


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), (1, 1), (2, 2), (3.0, 3), (0.5, 0.5), (1 / 3, 1 / 3), (0.25, 0.25),
     (0.3333333, 1 / 3), (1 / 7, 1 / 7)],
)  # fmt: skip
def test_check_gpus_per_experiment_accepts(value: object, expected: float | None) -> None:
    checked = check_gpus_per_experiment(value)
    assert checked == expected
    assert type(checked) is type(expected)


@pytest.mark.parametrize(
    ("value", "error"),
    [(0.4, ValueError), (1.5, ValueError), (0, ValueError), (-1, ValueError),
     (-0.5, ValueError), (0.333, ValueError), (float("inf"), ValueError),
     (float("nan"), ValueError), (True, TypeError), ("1", TypeError), ("1/2", TypeError)],
)  # fmt: skip
def test_check_gpus_per_experiment_refuses(value: object, error: type[Exception]) -> None:
    with pytest.raises(error, match=r"gpus_per_experiment must be a positive int .* 1/k"):
        check_gpus_per_experiment(value)


@pytest.mark.parametrize(
    ("count", "per", "capacity"),
    [(4, 1, 4), (4, 2, 2), (3, 2, 1), (1, 1, 1), (2, 0.5, 4), (3, 1 / 3, 9), (1, 0.25, 4)],
)
def test_capacity(count: int, per: float, capacity: int) -> None:
    slots = GpuSlots([str(i) for i in range(count)], per)
    assert slots.capacity == capacity
    taken = [slots.take() for _ in range(capacity)]
    assert None not in taken
    assert slots.take() is None  # exactly capacity at once


def test_whole_gpus_are_taken_free_and_given_back() -> None:
    slots = GpuSlots(["0", "1", "2"], 2)
    first = slots.take()
    assert first == ("0", "1")
    assert slots.take() is None  # one GPU free, two wanted
    slots.release(first)
    assert slots.in_use() == {"0": 0, "1": 0, "2": 0}
    assert slots.take() == ("0", "1")


def test_shared_gpus_spread_over_the_least_loaded() -> None:
    slots = GpuSlots(["0", "1"], 0.5)
    a, b = slots.take(), slots.take()
    assert {a, b} == {("0",), ("1",)}  # two experiments, two GPUs
    assert slots.take() == ("0",)
    assert slots.take() == ("1",)
    assert slots.take() is None
    slots.release(("0",))
    assert slots.in_use() == {"0": 1, "1": 2}
    assert slots.take() == ("0",)


def test_gpu_slot_errors() -> None:
    with pytest.raises(ValueError, match=r"gpus_per_experiment=1/2 .*no GPU is visible"):
        GpuSlots([], 0.5)
    with pytest.raises(ValueError, match=r"gpus_per_experiment=3 .*the 2 visible \(0, 1\)"):
        GpuSlots(["0", "1"], 3)
    with pytest.raises(ValueError, match="gpus_per_experiment must be"):
        GpuSlots(["0", "1"], 1.5)
    slots = GpuSlots(["0", "1"], 2)
    with pytest.raises(RuntimeError, match="not taken"):
        slots.release(("0", "1"))
    taken = slots.take()
    assert taken is not None
    with pytest.raises(RuntimeError, match="not taken"):
        slots.release(("0",))  # part of what was taken
    slots.release(taken)
    with pytest.raises(RuntimeError, match="not taken"):
        slots.release(taken)  # twice
    assert slots.in_use() == {"0": 0, "1": 0}


def test_repeated_ids_count_once() -> None:
    slots = GpuSlots(["0", "1", "0"], 1)
    assert slots.ids == ["0", "1"]
    assert slots.capacity == 2


@pytest.mark.parametrize(("count", "per"), [(4, 1), (4, 2), (3, 0.5), (2, 0.25)])
def test_no_gpu_held_by_more_than_allowed_under_concurrent_use(count: int, per: float) -> None:
    slots = GpuSlots([str(i) for i in range(count)], per)
    allowed = 1 if per >= 1 else round(1 / per)
    holders = dict.fromkeys(slots.ids, 0)
    worst = dict.fromkeys(slots.ids, 0)
    check = threading.Lock()
    start = threading.Barrier(12)
    successes: list[int] = []
    errors: list[BaseException] = []

    def use() -> None:
        got = 0
        try:
            start.wait()
            for _ in range(300):
                ids = slots.take()
                if ids is None:
                    continue
                got += 1
                assert len(ids) == (per if per >= 1 else 1) == len(set(ids))
                with check:  # counted after take returns and before release: never more
                    for i in ids:  # than slots itself has handed out
                        holders[i] += 1
                        worst[i] = max(worst[i], holders[i])
                time.sleep(0)  # hold them across a switch to another thread
                with check:
                    for i in ids:
                        holders[i] -= 1
                slots.release(ids)
        except BaseException as exc:
            errors.append(exc)
        successes.append(got)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        threads = [threading.Thread(target=use) for _ in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    finally:
        sys.setswitchinterval(interval)
    assert not errors
    assert len(successes) == 12 and sum(successes) > 0
    assert max(worst.values()) <= allowed
    assert slots.in_use() == dict.fromkeys(slots.ids, 0)
