"""RayExecutor beyond the contract: a cluster started with ``ray start --head``, addresses.

Ray allows one connection per process, and the contract suite keeps a private cluster open in
this one, so tests that connect elsewhere run their driver in a child process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from clusters import (
    RAY_ENV,
    ROOT,
    alive,
    free_port,
    installed,
    ray_head,
    ray_local,
    sleeper_job,
    support_paths,
    wait_for,
)

from memento.exceptions import MissingExtra

__all__ = ["ray_head", "ray_local"]

pytestmark = pytest.mark.timeout(240)
needs_ray = pytest.mark.skipif(not installed("ray"), reason="ray is not installed")

DRIVER = textwrap.dedent(
    """
    import json, sys
    import ray
    from experiments import misbehave
    from memento import Memento
    from memento.executors import RayExecutor

    workers_path = {"env_vars": {"PYTHONPATH": sys.argv[3]}}
    grid = {"parameters": {"how": ["ok", "segfault", "hang", "raise"]}}
    init = {"runtime_env": workers_path, "log_to_driver": False}
    with RayExecutor(address=sys.argv[2], init_kwargs=init) as executor:
        results = Memento(misbehave, executor=executor, timeout=8, progress=False).run(
            grid, cache_path=sys.argv[1], raise_on_failure=False
        )
    print(json.dumps({
        "results": [[r.ok, type(r.error).__name__ if r.error else r.inner] for r in results],
        "still_connected": ray.is_initialized(),
    }))
    """
)


def _driver(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", *args], env={**env, **RAY_ENV}, capture_output=True, text=True,
        timeout=200,
    )  # fmt: skip


def test_a_cluster_started_with_ray_start(
    ray_head: str, store_path: Path, subprocess_env: dict[str, str]
) -> None:
    workers_path = os.pathsep.join([*support_paths(), str(ROOT / "src")])
    out = _driver([DRIVER, str(store_path), ray_head, workers_path], subprocess_env)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["results"] == [
        [True, "ok"],
        [False, "WorkerDied"],
        [False, "ExperimentTimeout"],
        [False, "RuntimeError"],
    ]
    assert report["still_connected"] is False  # the executor connected, so it disconnected


def test_cancelling_kills_the_worker_running_the_experiment(
    ray_local: None, tmp_path: Path
) -> None:
    from memento.executors import RayExecutor

    executor = RayExecutor()
    pid_file = tmp_path / "pid"
    future = executor.submit(sleeper_job(str(pid_file), 600))
    pid = int(wait_for(lambda: pid_file.exists() and pid_file.read_text(), 60, "the worker's pid"))
    executor.shutdown(cancel=True)  # what the runner does on Ctrl-C
    assert future.cancelled()
    wait_for(lambda: not alive(pid), 30, "the worker's death")


@needs_ray
def test_an_unreachable_address_fails_fast_instead_of_hanging(
    store_path: Path, subprocess_env: dict[str, str]
) -> None:
    script = textwrap.dedent(
        f"""
        from experiments import multiply
        from memento import Memento
        from memento.executors import RayExecutor
        executor = RayExecutor(address="127.0.0.1:{free_port()}", connect_timeout=2)
        Memento(multiply, executor=executor, progress=False).run(
            {{"parameters": {{"a": [1], "b": [2]}}}}, cache_path={str(store_path)!r}
        )
        """
    )
    out = _driver([script], subprocess_env)
    assert out.returncode != 0
    assert "ConnectionError: Cannot reach the Ray cluster at '127.0.0.1:" in out.stderr
    assert "ray start --head" in out.stderr


@needs_ray
def test_a_ray_client_address_is_rejected() -> None:
    from memento.executors import RayExecutor

    with pytest.raises(ValueError, match="Ray Client"):
        RayExecutor(address="ray://head:10001")


def test_a_missing_ray_names_the_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    from memento.executors import RayExecutor

    with pytest.raises(MissingExtra, match=r"pip install 'memento-grid\[ray\]'"):
        RayExecutor()
