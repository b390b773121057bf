"""The host name a lease records."""

from __future__ import annotations

import socket

from memento.store.leases import this_host


def test_this_host_is_the_host_name() -> None:
    assert this_host() == socket.gethostname()
    assert this_host() is this_host()  # asked once per process
