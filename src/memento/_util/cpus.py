"""How many CPUs this process may use: what worker counts and thread caps are made from."""

from __future__ import annotations

import os


def available_cpus() -> int:
    """CPUs this process may run on (respects affinity and cgroup-limited sets).

    Example::

        workers = available_cpus()          # Memento's default num_workers
        threads = max(1, available_cpus() // workers)
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


__all__ = ["available_cpus"]
