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
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from itertools import islice
from typing import Generic, Protocol, TypeVar

from memento.store.base import BaseStore
from memento.store.leases import Claim, Lease

logger = logging.getLogger("memento")

#: Experiments claimed at least at once: fewer transactions for short experiments, while a
#: driver never holds much more than it is about to run.
MIN_CLAIM = 4
#: The most experiments one claim looks at (when the ones before were all taken).
MAX_SCAN = 1024
#: Seconds between two looks at the experiments held elsewhere while this driver has work of
#: its own. Once it has nothing else to do, it looks again after IDLE_POLL_INTERVAL, then
#: twice as long each time nothing landed, up to POLL_INTERVAL: short experiments land
#: without delay, long ones cost a look every half second.
POLL_INTERVAL = 0.5
IDLE_POLL_INTERVAL = 0.01


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
        known: Mapping[str, float] | None = None,
    ) -> None:
        self.store = store
        self.heartbeat_store = heartbeat_store
        self.run_id = run_id
        self.since = since
        #: Each planned key's ``updated`` when the plan read it (see ``leases.decide``).
        self.known = known
        self.lease_timeout = lease_timeout
        #: Keys this run holds.
        self.mine: set[str] = set()
        #: Experiments held by live drivers elsewhere: key -> (experiment, lease).
        self.waiting: dict[str, tuple[T, Lease]] = {}
        self._last_poll = 0.0
        self._idle_interval = IDLE_POLL_INTERVAL
        self._spread = False
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
    def take(self, queue: deque[T], want: int, *, ahead: int = MIN_CLAIM) -> list[T]:
        """Make the first ``want`` experiments of ``queue`` ones this run holds, claiming at
        least ``ahead`` (:data:`MIN_CLAIM` or more) at once. Those another live driver holds move to
        :attr:`waiting`; those whose result another driver stored since the plan leave the
        queue and are returned (to be read from the store).

        A claim looks further ahead each time it finds nothing free (a stretch of the grid
        another driver went through), and after the first collision this driver goes on
        from a random place of its queue, so drivers started together spread out.
        """
        landed: list[T] = []
        ahead = max(ahead, MIN_CLAIM)
        scan = max(want, ahead)
        while queue:
            need = sum(1 for p in islice(queue, want) if p.key not in self.mine)
            if not need:
                return landed
            # The front of the queue up to ``scan`` experiments this run does not hold yet.
            head: list[T] = []
            todo: list[T] = []
            while queue and len(todo) < scan:
                item = queue.popleft()
                head.append(item)
                if item.key not in self.mine:
                    todo.append(item)
            claim = self._claim(todo, limit=max(need, ahead))
            for p in todo:
                if p.key in claim.held:
                    self.waiting[p.key] = (p, claim.held[p.key])
                elif p.key in claim.finished:
                    landed.append(p)
            gone = claim.held.keys() | set(claim.finished)
            queue.extendleft(reversed([p for p in head if p.key not in gone]))
            if claim.held and not self._spread and len(queue) > 1:
                # Another driver works from the same end of the grid: go on from a random
                # place instead, so that the two stop colliding claim after claim (results
                # still come back in matrix order).
                self._spread = True
                queue.rotate(-random.randrange(len(queue)))
            scan = max(want, ahead) if claim.claimed else min(4 * scan, MAX_SCAN)
        return landed

    def _claim(self, items: Iterable[T], limit: int | None = None) -> Claim:
        keys = [p.key for p in items]
        claim = self.store.claim(
            self.run_id,
            keys,
            since=self.since,
            lease_timeout=self.lease_timeout,
            limit=limit,
            known=self.known,
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
    def due(self, *, idle: bool = False) -> bool:
        """Whether it is time to look at the experiments held elsewhere again (sooner when
        this driver is ``idle``: it has nothing else to do)."""
        interval = self._idle_interval if idle else POLL_INTERVAL
        return bool(self.waiting) and time.monotonic() >= self._last_poll + interval

    def wait(self) -> None:
        """Sleep until the next look is due for a driver with nothing else to do."""
        time.sleep(max(0.0, self._last_poll + self._idle_interval - time.monotonic()))

    def poll(self) -> tuple[list[T], list[T]]:
        """Look at the experiments held elsewhere: those whose result landed (to read), and
        those now claimed by this run because their holder died or let go (to run)."""
        self._last_poll = time.monotonic()
        items = [p for p, _ in self.waiting.values()]
        claim = self._claim(items)
        finished = set(claim.finished)
        landed = [p for p in items if p.key in finished]
        back = [p for p in items if p.key in self.mine]
        if landed or back:
            self._idle_interval = IDLE_POLL_INTERVAL
        else:
            self._idle_interval = min(2 * self._idle_interval, POLL_INTERVAL)
        for p in landed + back:
            del self.waiting[p.key]
        for key, lease in claim.held.items():
            if key in self.waiting:
                self.waiting[key] = (self.waiting[key][0], lease)
        return landed, back

    def holders(self) -> list[str]:
        """Who holds the experiments this run waits for (``host:pid``), most first."""
        counts = Counter(lease.holder for _, lease in self.waiting.values())
        return [holder for holder, _ in counts.most_common()]


__all__ = ["IDLE_POLL_INTERVAL", "MIN_CLAIM", "POLL_INTERVAL", "Claims"]
