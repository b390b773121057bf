"""Issue 12: threads, GPUs and memory per experiment, seen from inside real workers."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from memento import Memento
from memento.executors.local import ProcessExecutor

threadpoolctl = pytest.importorskip("threadpoolctl")
numpy = pytest.importorskip("numpy")  # imported here, before the workers fork


def pools(context: Any, config: Any) -> dict[str, Any]:
    """The experiment's view: its BLAS/OpenMP pools' sizes and ``context.threads``."""
    import numpy as np

    np.dot(np.ones((64, 64)), np.ones((64, 64)))  # the pool exists and has worked
    sizes = sorted({p["num_threads"] for p in threadpoolctl.threadpool_info()})
    return {
        "sizes": sizes,
        "threads": context.threads,
        "env": os.environ.get("OPENBLAS_NUM_THREADS"),
    }


def _cpus() -> int:
    return len(os.sched_getaffinity(0))


def test_threads_are_capped_at_cores_over_workers_by_default(tmp_path: Path) -> None:
    # numpy was imported in this process before the pool forks its workers: its OpenBLAS pool
    # was sized for every core, and the cap still applies inside the workers.
    assert threadpoolctl.threadpool_info(), "numpy's BLAS is loaded before the workers start"
    workers = 2
    results = Memento(pools, num_workers=workers, progress=False).run(
        {"parameters": {"i": [1, 2, 3, 4]}}, cache_path=tmp_path / "a.sqlite"
    )
    assert results is not None
    share = max(1, _cpus() // workers)
    for r in results:
        assert r.inner["sizes"] == [share]
        assert r.inner["threads"] == share
        assert r.inner["env"] == str(share)


def test_threads_per_experiment_sets_the_cap_and_none_leaves_pools_alone(tmp_path: Path) -> None:
    results = Memento(pools, num_workers=1, threads_per_experiment=1, progress=False).run(
        {"parameters": {"i": [1]}}, cache_path=tmp_path / "b.sqlite"
    )
    assert results is not None and results[0].inner["sizes"] == [1]
    before = sorted({p["num_threads"] for p in threadpoolctl.threadpool_info()})
    results = Memento(pools, num_workers=2, threads_per_experiment=None, progress=False).run(
        {"parameters": {"i": [2]}}, cache_path=tmp_path / "c.sqlite"
    )
    assert results is not None
    assert results[0].inner["threads"] is None
    assert results[0].inner["sizes"] == before  # what the process had: untouched


def test_thread_executor_caps_the_shared_pools_for_the_run_only(tmp_path: Path) -> None:
    before = threadpoolctl.threadpool_info()
    results = Memento(pools, executor="thread", num_workers=2, progress=False).run(
        {"parameters": {"i": [1, 2]}}, cache_path=tmp_path / "d.sqlite"
    )
    assert results is not None
    assert all(r.inner["sizes"] == [max(1, _cpus() // 2)] for r in results)
    after = threadpoolctl.threadpool_info()
    assert [p["num_threads"] for p in after] == [p["num_threads"] for p in before]


def test_bad_thread_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="threads_per_experiment"):
        Memento(pools, threads_per_experiment=0)
    with pytest.raises(TypeError, match="threads_per_experiment"):
        Memento(pools, threads_per_experiment="all")  # type: ignore[arg-type]


# --- GPUs (a fake set of visible ids: no GPU on this machine) ----------------------------------


def on_gpu(context: Any, config: Any) -> dict[str, Any]:
    start = time.time()
    time.sleep(0.3)
    return {
        "visible": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "gpus": context.gpus,
        "start": start,
        "end": time.time(),
    }


def _overlaps(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at once."""
    points = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    most = now = 0
    for _, step in points:
        now += step
        most = max(most, now)
    return most


def test_each_experiment_gets_its_own_gpu_without_overlap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    results = Memento(on_gpu, num_workers=4, gpus_per_experiment=1, progress=False).run(
        {"parameters": {"i": list(range(6))}}, cache_path=tmp_path / "g.sqlite"
    )
    assert results is not None
    by_gpu: dict[str, list[tuple[float, float]]] = {}
    for r in results:
        assert r.inner["visible"] in ("3", "5")
        assert r.inner["gpus"] == [r.inner["visible"]]
        by_gpu.setdefault(r.inner["visible"], []).append((r.inner["start"], r.inner["end"]))
    for intervals in by_gpu.values():
        assert _overlaps(intervals) == 1  # never two experiments on one GPU at once
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "3,5"  # the driver's own is unchanged


def test_a_half_gpu_is_shared_by_two_experiments_at_most(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    results = Memento(on_gpu, num_workers=3, gpus_per_experiment=0.5, progress=False).run(
        {"parameters": {"i": list(range(4))}}, cache_path=tmp_path / "h.sqlite"
    )
    assert results is not None
    assert {r.inner["visible"] for r in results} == {"0"}
    assert _overlaps([(r.inner["start"], r.inner["end"]) for r in results]) <= 2


def test_two_gpus_per_experiment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    results = Memento(on_gpu, gpus_per_experiment=2, progress=False).run(
        {"parameters": {"i": list(range(4))}}, cache_path=tmp_path / "i.sqlite"
    )
    assert results is not None
    seen = {r.inner["visible"] for r in results}
    assert all(len(v.split(",")) == 2 for v in seen)
    assert len({g for v in seen for g in v.split(",")}) >= 2


def test_asking_for_gpus_where_none_is_visible_fails_before_anything_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    store = tmp_path / "none.sqlite"
    with pytest.raises(ValueError, match=r"(?i)no GPU"):
        Memento(on_gpu, gpus_per_experiment=1, progress=False).run(
            {"parameters": {"i": [1]}}, cache_path=store
        )
    assert not store.exists()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    with pytest.raises(ValueError, match="gpus_per_experiment"):
        Memento(on_gpu, gpus_per_experiment=0.4)
    with pytest.raises(ValueError, match="gpus_per_experiment needs worker processes"):
        Memento(on_gpu, executor="thread", gpus_per_experiment=1, progress=False).run(
            {"parameters": {"i": [1]}}, cache_path=store
        )


# --- memory -------------------------------------------------------------------------------------


def hog(context: Any, config: Any) -> int:
    blocks = []
    for _ in range(config.blocks):
        block = bytearray(16 << 20)
        block[::4096] = b"y" * len(block[::4096])
        blocks.append(block)
    return len(blocks)


def test_a_memory_hog_is_stopped_and_classed_oom(tmp_path: Path) -> None:
    store = tmp_path / "m.sqlite"
    results = Memento(hog, memory_limit="200MiB", progress=False).run(
        {"parameters": {"blocks": [2, 40]}}, cache_path=store, raise_on_failure=False
    )
    assert results is not None
    small, big = results
    assert small.ok and small.inner == 2
    assert not big.ok and big.kind == "oom"
    assert "memory_limit=200 MiB" in str(big.error)
    with sqlite3.connect(store) as conn:
        kinds = dict(conn.execute("SELECT status, kind FROM results").fetchall())
    assert kinds == {"done": None, "failed": "oom"}


def test_memory_limit_is_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="memory_limit"):
        Memento(hog, memory_limit="lots")
    with pytest.raises(ValueError, match="memory_limit needs worker processes"):
        Memento(hog, executor="thread", memory_limit="1GiB", progress=False).run(
            {"parameters": {"blocks": [1]}}, cache_path=tmp_path / "t.sqlite"
        )
    # An executor given by the user is kept, and its workers watch the limit too.
    results = Memento(
        hog, executor=ProcessExecutor(1), memory_limit=200 << 20, progress=False
    ).run({"parameters": {"blocks": [40]}}, cache_path=tmp_path / "u.sqlite",
          raise_on_failure=False)  # fmt: skip
    assert results is not None and results[0].kind == "oom"
