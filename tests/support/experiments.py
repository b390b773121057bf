"""Experiment functions the tests run, importable by worker and driver subprocesses."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any


def multiply(context: Any, config: Any) -> int:
    return int(config.a * config.b)


def record_and_return(context: Any, config: Any) -> dict[str, Any]:
    for step in range(3):
        context.record({"loss": 1.0 / (step + 1)})
        context.record({"acc": (step, step * 0.1)})
        context.progress(1, total=3)
    return {"a": config.a, "twice": config.a * 2}


def fail_on_three(context: Any, config: Any) -> int:
    if config.a == 3:
        raise ValueError(f"a is {config.a}")
    return int(config.a)


def misbehave(context: Any, config: Any) -> str:
    """Crash the worker in the way the config asks for."""
    how = config.how
    if how == "segfault":
        ctypes.string_at(0)
    elif how == "exit":
        os._exit(3)
    elif how == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif how == "hang":
        time.sleep(3600)
    elif how == "raise":
        raise RuntimeError("plain failure")
    return how


def sleepy(context: Any, config: Any) -> float:
    time.sleep(config.seconds)
    return float(config.seconds)


def count_calls(context: Any, config: Any) -> int:
    """Append a line per call to the file named in settings (to count real executions)."""
    with open(config.settings["log"], "a") as f:
        f.write(f"{config.a}\n")
    return int(config.a)


def flaky(context: Any, config: Any) -> int:
    """Fails on its first attempt (tracked in a file), succeeds after."""
    marker = Path(config.settings["dir"]) / f"flaky-{config.a}"
    if not marker.exists():
        marker.write_text("1")
        raise RuntimeError("first attempt fails")
    return int(config.a)


def resumable(context: Any, config: Any) -> int:
    """Counts to `steps`, checkpointing each step; dies once at `die_at` (file-tracked)."""
    state = context.restore() if context.checkpoint_exist() else {"i": 0, "starts": 0}
    state["starts"] += 1
    marker = Path(config.settings["dir"]) / f"died-{config.a}"
    for i in range(state["i"], config.settings["steps"]):
        if i == config.settings["die_at"] and not marker.exists():
            marker.write_text("1")
            os._exit(1)
        state["i"] = i + 1
        context.checkpoint(state)
    return int(state["starts"])


def chatty(context: Any, config: Any) -> int:
    print(f"line one from {config.a}")
    sys.stdout.write("partial ")
    sys.stdout.write("line\n")
    print(f"to stderr {config.a}", file=sys.stderr)
    return int(config.a)


def slow_count(context: Any, config: Any) -> int:
    """Sleeps a little, for kill/interrupt tests."""
    time.sleep(config.settings.get("sleep", 0.2))
    return int(config.a)


def logs(context: Any, config: Any) -> int:
    import logging

    logging.getLogger("user").warning("logged by %s", config.a)
    return int(config.a)
