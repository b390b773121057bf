"""Leases: which driver holds which experiment, so that several drivers on one grid run each
experiment once.

Before a driver submits an experiment it *claims* it (:meth:`BaseStore.claim
<memento.store.base.BaseStore.claim>`): in one transaction, the store checks that no live
holder has it and writes a lease naming the claiming run, its host and pid. While the run
lives, a heartbeat pushes each of its leases' expiry forward (:meth:`BaseStore.heartbeat
<memento.store.base.BaseStore.heartbeat>`); storing the experiment's outcome removes its
lease in the same transaction as the result.

A lease whose holder died is taken over by the next claim: at once when the holder ran on
this host and its pid is gone, otherwise when the lease expired (its holder missed
heartbeats for ``lease_timeout`` seconds). Times are the store's clock (the database
server's, for a server store), so hosts with skewed clocks agree on expiry.

This module is what both backends share: the record, and the rule for a dead holder.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: Seconds a lease lives without a heartbeat: ``Memento(lease_timeout=...)``'s default.
DEFAULT_LEASE_TIMEOUT = 60.0


@dataclass(frozen=True)
class Lease:
    """One experiment held by one run: who holds it, and until when without a heartbeat."""

    key: str
    run_id: str
    host: str
    pid: int | None
    #: When it was claimed, and when its holder last showed it is alive (store clock).
    claimed: float
    heartbeat: float
    #: When it lapses unless a heartbeat comes first (store clock).
    expires: float

    @property
    def holder(self) -> str:
        """``"host:pid"``, as the plan and ``memento status`` show it."""
        return f"{self.host}:{self.pid}" if self.pid is not None else self.host


@dataclass
class Claim:
    """What one :meth:`~memento.store.base.BaseStore.claim` found, key by key."""

    #: Claimed now by the caller (some possibly taken over from dead holders).
    claimed: list[str] = field(default_factory=list)
    #: Held by live holders elsewhere: key -> their lease.
    held: dict[str, Lease] = field(default_factory=dict)
    #: Their result was stored by another run since the caller planned: nothing to run.
    finished: list[str] = field(default_factory=list)
    #: The leases of dead holders that this claim took over.
    reclaimed: list[Lease] = field(default_factory=list)


_HOST: str | None = None


def this_host() -> str:
    """This host's name, asked once per process (``lease_row`` needs it for every key)."""
    global _HOST
    if _HOST is None:
        _HOST = socket.gethostname()
    return _HOST


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this host (one we may not signal counts)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def holder_dead(lease: Lease, now: float, host: str | None = None) -> bool:
    """Whether ``lease``'s holder is gone: its lease expired at store time ``now``, or it ran
    on this host (``host``, default this one) under a pid that no longer exists."""
    if lease.expires <= now:
        return True
    here = host if host is not None else this_host()
    return lease.host == here and lease.pid is not None and not pid_alive(lease.pid)


def decide(
    run_id: str,
    keys: Sequence[str],
    stored: Mapping[str, tuple[float, str | None]],
    leased: Mapping[str, Lease],
    *,
    since: float,
    now: float,
    limit: int | None = None,
    known: Mapping[str, float] | None = None,
) -> Claim:
    """What a claim of ``keys`` by ``run_id`` makes of each, given their stored results
    (key -> ``(updated, run_id)``) and leases, read in the claim's transaction at store time
    ``now``. The backend then writes a lease for each of ``claimed``. With ``limit``, keys
    are looked at in order until ``limit`` are claimed: the rest are in none of the lists.

    ``known``, when given, is what the caller's plan saw: the ``updated`` time of each key
    that had a row then. A result is then ``finished`` when another run's row is there and
    was not (or has changed) since: no clock is compared, so a row written by a transaction
    that had not committed when the caller read the clock is not taken for an old one.
    Without it, a row counts when it was ``updated`` at or after ``since``."""
    claim = Claim()
    host = this_host()
    for key in keys:
        if limit is not None and len(claim.claimed) >= limit:
            break
        row = stored.get(key)
        if row is not None and row[1] != run_id:
            if known is not None:
                changed = key not in known or row[0] != known[key]
            else:
                changed = row[0] >= since
            if changed:
                claim.finished.append(key)
                continue
        lease = leased.get(key)
        if lease is not None and lease.run_id != run_id:
            if not holder_dead(lease, now, host):
                claim.held[key] = lease
                continue
            claim.reclaimed.append(lease)
        claim.claimed.append(key)
    return claim


def lease_row(
    key: str, run_id: str, now: float, timeout: float
) -> tuple[str, str, str, int, float, float, float, float]:
    """The ``leases`` row of a claim: ``(key, run_id, host, pid, claimed, heartbeat,
    expires, timeout)``."""
    return (key, run_id, this_host(), os.getpid(), now, now, now + timeout, timeout)


#: The ``leases`` columns, in the order of :func:`lease_row` (docs/store.md).
LEASE_COLUMNS = ("key", "run_id", "host", "pid", "claimed", "heartbeat", "expires", "timeout")


def lease_of(row: Sequence[Any]) -> Lease:
    """The :class:`Lease` of a ``leases`` row (:data:`LEASE_COLUMNS`)."""
    key, run_id, host, pid, claimed, heartbeat, expires = row[:7]
    return Lease(key, run_id, host, pid, claimed, heartbeat, expires)


__all__ = [
    "DEFAULT_LEASE_TIMEOUT",
    "LEASE_COLUMNS",
    "decide",
    "lease_of",
    "lease_row",
    "Claim",
    "Lease",
    "holder_dead",
    "pid_alive",
    "this_host",
]
