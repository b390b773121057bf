"""Live progress of a run (placeholder: replaced by the full display)."""

from __future__ import annotations


class ProgressDisplay:
    """Receives the runner's progress calls; this minimal version shows nothing."""

    def __init__(self, total: int, cached: int, experiment: str) -> None:
        self.total = total
        self.cached = cached
        self.experiment = experiment

    def start(self) -> None:
        pass

    def submitted(self, key: str, label: str) -> None:
        pass

    def progress(self, key: str, done: float, total: float | None) -> None:
        pass

    def finished(self, key: str, ok: bool, runtime: float) -> None:
        pass

    def stop(self) -> None:
        pass
