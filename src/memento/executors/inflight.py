"""The jobs an executor runs and nobody collected yet: what both loops that drive an executor
share (``Driver`` for ``Memento.run``, and memento-ml 1.2's ``TaskManager``).

Each loop keeps :meth:`~memento.executors.base.Executor.max_in_flight` jobs submitted through
:meth:`~memento.executors.base.Executor.submit`, waits for the first to finish, and reads each
finished future through :meth:`~memento.executors.base.Executor.result`.

Example::

    inflight: InFlight[str] = InFlight(executor, timeout=60)
    while queue or inflight:
        while queue and inflight.has_room():
            name, job = queue.popleft()
            inflight.submit(job, name)
        for future, name in inflight.wait(0.5):
            outcomes = executor.result(future)
"""

from __future__ import annotations

import concurrent.futures as cf
from typing import TYPE_CHECKING, Generic, TypeVar

from memento.executors.base import Executor

if TYPE_CHECKING:
    from memento.worker.wire import Job, Outcome

T = TypeVar("T")


class InFlight(Generic[T]):
    """The futures of the jobs submitted to ``executor``, each with what it stands for.

    :attr:`running` maps each future not yet handed back by :meth:`wait` to its item. Every
    job is submitted with ``timeout`` (seconds per job, ``None``: none).
    """

    def __init__(self, executor: Executor, timeout: float | None = None) -> None:
        self.executor = executor
        self.timeout = timeout
        self.running: dict[cf.Future[list[Outcome]], T] = {}
        self._limit: int | None = None  # asked when first needed: after the executor's prepare()

    def __len__(self) -> int:
        return len(self.running)

    def has_room(self) -> bool:
        """Whether fewer jobs than the executor's :meth:`max_in_flight` are submitted."""
        if self._limit is None:
            self._limit = self.executor.max_in_flight()
        return len(self.running) < self._limit

    def submit(self, job: Job, item: T) -> cf.Future[list[Outcome]]:
        """Start ``job`` on the executor; :meth:`wait` hands ``item`` back with its future."""
        future = self.executor.submit(job, timeout=self.timeout)
        self.running[future] = item
        return future

    def wait(self, poll: float) -> list[tuple[cf.Future[list[Outcome]], T]]:
        """Send buffered submissions (:meth:`Executor.flush`), then wait up to ``poll``
        seconds for a job to finish; the finished ones leave :attr:`running`."""
        self.executor.flush()
        done, _ = cf.wait(list(self.running), timeout=poll, return_when=cf.FIRST_COMPLETED)
        return [(future, self.running.pop(future)) for future in done]


__all__ = ["InFlight"]
