"""A driver's side of the leases (:mod:`memento.store.leases`): claim before submitting, keep
the claims alive, and follow the experiments other drivers hold.

Several drivers on one grid (two terminals, a Slurm job array of identical scripts, hosts
sharing a PostgreSQL store) split it this way: each claims the next few experiments of its
queue just before it submits them, so a driver takes no more than it is about to run; what
another live driver holds waits in :attr:`Claims.waiting`, and is polled until its result
lands (then it is read like a cached one) or its holder dies (then it is claimed and run
here, resuming from its checkpoint).

Example (what the driver does)::

    claims = Claims(store, heartbeat_store, run_id, since=plan.made_at, lease_timeout=60)
    claims.start()
    landed = claims.take(queue, 4)       # queue keeps only what this driver now holds
    ...
    landed, back = claims.poll()         # outcomes stored elsewhere; experiments to run here
    claims.stop()
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterable
from itertools import islice
from typing import Generic, Protocol, TypeVar

from memento.store.base import BaseStore
from memento.store.leases import Claim, Lease

logger = logging.getLogger("memento")

#: Experiments claimed at least at once: fewer transactions for short experiments, while a
#: driver never holds much more than it is about to run.
MIN_CLAIM = 4
#: Seconds between two looks at the experiments held elsewhere.
POLL_INTERVAL = 0.5


class Keyed(Protocol):
    @property
    def key(self) -> str: ...


T = TypeVar("T", bound=Keyed)


class Claims(Generic[T]):
    """The leases of one run (``run_id``) in ``store``; heartbeats go through
    ``heartbeat_store`` (a connection of its own, used from a thread of its own)."""

    def __init__(
        self,
        store: BaseStore,
        heartbeat_store: BaseStore,
        run_id: str,
        *,
        since: float,
        lease_timeout: float,
    ) -> None:
        self.store = store
        self.heartbeat_store = heartbeat_store
        self.run_id = run_id
        self.since = since
        self.lease_timeout = lease_timeout
        #: Keys this run holds.
        self.mine: set[str] = set()
        #: Experiments held by live drivers elsewhere: key -> (experiment, lease).
        self.waiting: dict[str, tuple[T, Lease]] = {}
        self._next_poll = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- heartbeat -------------------------------------------------------------------------
    def start(self) -> None:
        """Start the heartbeat: every quarter of the lease timeout, this run's leases are
        extended, so they lapse only when this process stops (dies, or is frozen)."""
        self._thread = threading.Thread(target=self._beat, name="memento-heartbeat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        interval = min(15.0, max(0.05, self.lease_timeout / 4))
        while not self._stop.wait(interval):
            try:
                self.heartbeat_store.heartbeat(self.run_id)
            except Exception as exc:  # a busy or unreachable store: try again next time
                logger.debug("Lease heartbeat failed: %s", exc)

    def stop(self) -> None:
        """Stop the heartbeat and close its connection (the leases stay until released)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.heartbeat_store.close()

    # -- claiming --------------------------------------------------------------------------
    def take(self, queue: deque[T], want: int) -> list[T]:
        """Make the first ``want`` experiments of ``queue`` ones this run holds: claim them
        (and a few more, up to :data:`MIN_CLAIM`); those another live driver holds move to
        :attr:`waiting`, and those whose result another driver stored since the plan leave
        the queue and are returned (to be read from the store)."""
        landed: list[T] = []
        while queue:
            front = list(islice(queue, max(want, MIN_CLAIM)))
            todo = [p for p in front if p.key not in self.mine]
            if not todo:
                return landed
            claim = self._claim(todo)
            gone = set(claim.held) | set(claim.finished)
            if not gone:
                continue
            for p in todo:
                if p.key in claim.held:
                    self.waiting[p.key] = (p, claim.held[p.key])
                elif p.key in claim.finished:
                    landed.append(p)
            kept = [p for p in queue if p.key not in gone]
            queue.clear()
            queue.extend(kept)
        return landed

    def _claim(self, items: Iterable[T]) -> Claim:
        keys = [p.key for p in items]
        claim = self.store.claim(
            self.run_id, keys, since=self.since, lease_timeout=self.lease_timeout
        )
        self.mine.update(claim.claimed)
        for lease in claim.reclaimed:
            logger.info(
                "Claimed %s from %s (run %s), which is gone; it resumes from its checkpoint",
                lease.key,
                lease.holder,
                lease.run_id,
            )
        return claim

    # -- following what others hold ----------------------------------------------------------
    def due(self) -> bool:
        """Whether it is time to look at the experiments held elsewhere again."""
        return bool(self.waiting) and time.monotonic() >= self._next_poll

    def poll(self) -> tuple[list[T], list[T]]:
        """Look at the experiments held elsewhere: those whose result landed (to read), and
        those now claimed by this run because their holder died or let go (to run)."""
        self._next_poll = time.monotonic() + POLL_INTERVAL
        items = [p for p, _ in self.waiting.values()]
        claim = self._claim(items)
        landed = [p for p in items if p.key in set(claim.finished)]
        back = [p for p in items if p.key in self.mine]
        for p in landed + back:
            del self.waiting[p.key]
        for key, lease in claim.held.items():
            if key in self.waiting:
                self.waiting[key] = (self.waiting[key][0], lease)
        return landed, back

    def holders(self) -> list[str]:
        """Who holds the experiments this run waits for (``host:pid``), most first."""
        counts: dict[str, int] = {}
        for _, lease in self.waiting.values():
            counts[lease.holder] = counts.get(lease.holder, 0) + 1
        return sorted(counts, key=lambda h: -counts[h])


__all__ = ["MIN_CLAIM", "POLL_INTERVAL", "Claims"]
