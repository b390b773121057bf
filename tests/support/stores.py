"""A real store to read: ``trainer`` over ``GRID`` (12 configs, 4 failed), made by a run."""

from __future__ import annotations

import importlib
import sys
import textwrap
from pathlib import Path
from typing import Any

from memento import Memento

XSS = "<script>alert(1)</script>"


class Linear:
    """A class used as a parameter value (stored by name)."""


class Forest:
    pass


def trainer(context: Any, config: Any) -> dict[str, Any]:
    """Records a curve, fails for one config, returns a dict of scalars."""
    for step in range(4):
        context.record({"loss": (step, config.lr * (4 - step))})
    context.record({"accuracy": (0, 0.5 + config.lr)})
    if config.lr == 0.3:
        raise ValueError(f"diverged with {config.tag} & lr={config.lr}")
    return {"score": config.lr * 10, "model_name": config.model.__name__}


GRID: dict[str, Any] = {
    "parameters": {"model": [Linear, Forest], "lr": [0.1, 0.2, 0.3], "tag": ["plain", XSS]},
}


def make_store(path: Path, executor: str = "thread", grid: dict[str, Any] | None = None) -> Path:
    """A real store: 12 configs of ``trainer``, 4 of them failed."""
    memento = Memento(trainer, progress=False, executor=executor, num_workers=2)
    memento.run(grid or GRID, cache_path=path, raise_on_failure=False)
    return path


def write_module(directory: Path, name: str, source: str) -> None:
    (directory / f"{name}.py").write_text(textwrap.dedent(source))
    importlib.invalidate_caches()


def load(name: str) -> Any:
    """(Re)import a module written by the test (fresh source each time)."""
    if name in sys.modules:
        return importlib.reload(sys.modules[name])
    return importlib.import_module(name)
