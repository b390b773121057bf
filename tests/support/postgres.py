"""A real PostgreSQL server for the tests: ``$MEMENTO_TEST_POSTGRES`` (what ``.ci/postgres.sh``
exports), else a throwaway cluster started here, on 127.0.0.1 only, with password
authentication (so URLs with passwords are tested for real), stopped at the end of the session.

``postgres_url`` (session scope) is a database of its own for the session; tests that need an
empty one call :func:`fresh_database` (or take the ``postgres_database`` fixture). Without
PostgreSQL's programs the tests that use them skip, except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import pytest

#: Where Debian puts the server programs (``/usr/lib/postgresql/<version>/bin``).
DEBIAN_BINARIES = "/usr/lib/postgresql/*/bin"
USER = "memento"

_server: _Server | None = None


class _Server:
    """The server of this session: its admin URL, and the databases made for tests."""

    def __init__(self, url: str, stop: Any = None) -> None:
        self.url = url
        self.stop = stop
        self.databases: list[str] = []

    def create_database(self) -> str:
        import psycopg

        name = f"memento_test_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"'.encode())
        self.databases.append(name)
        return with_database(self.url, name)

    def drop_databases(self) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            for name in self.databases:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())
        self.databases.clear()


def with_database(url: str, name: str) -> str:
    """``url`` naming the database ``name`` instead."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + quote(name)))


def fresh_database() -> str:
    """The URL of a new, empty database on the session's server (``postgres_url`` first)."""
    if _server is None:
        raise RuntimeError("fresh_database() needs the postgres_url fixture to be requested first")
    return _server.create_database()


def _binaries() -> Path | None:
    """The folder of ``initdb`` and ``pg_ctl``: on the PATH, else Debian's newest."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    versions = sorted(
        glob.glob(DEBIAN_BINARIES), key=lambda p: int(Path(p).parent.name.split(".")[0])
    )
    return Path(versions[-1]) if versions else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _start_cluster(binaries: Path) -> _Server:
    """initdb + pg_ctl start in a temp dir, as an unprivileged user when we are root
    (PostgreSQL refuses to run as root); the user ``memento`` with a random password."""
    root = Path(tempfile.mkdtemp(prefix="memento-pg-"))
    user: str | None = None
    if os.geteuid() == 0:
        user = "nobody"
        shutil.chown(root, user=user)
    password = secrets.token_urlsafe(18)
    pwfile = root / "pwfile"
    pwfile.write_text(password + "\n")
    if user:
        shutil.chown(pwfile, user=user)
    data, port = root / "data", _free_port()

    def run(*args: str) -> None:
        done = subprocess.run(
            args, user=user, cwd=root, capture_output=True, text=True, timeout=120, check=False
        )
        if done.returncode:
            raise RuntimeError(f"{args[0]} failed:\n{done.stdout}\n{done.stderr}")

    run(
        str(binaries / "initdb"),
        "-D",
        str(data),
        "-U",
        USER,
        f"--pwfile={pwfile}",
        "--auth-host=scram-sha-256",
        "--auth-local=scram-sha-256",
        "-E",
        "UTF8",
        "--no-instructions",
    )
    pwfile.unlink()
    # Durability is not what these tests are about: no fsync makes CREATE DATABASE quick.
    options = (
        f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
    )
    pg_ctl = str(binaries / "pg_ctl")
    run(pg_ctl, "start", "-w", "-t", "60", "-D", str(data), "-l", str(root / "log"), "-o", options)

    def stop() -> None:
        run(pg_ctl, "stop", "-D", str(data), "-m", "fast", "-w", "-t", "60")
        shutil.rmtree(root, ignore_errors=True)

    return _Server(f"postgresql://{USER}:{password}@127.0.0.1:{port}/postgres", stop)


def _wait_until_up(url: str, seconds: float = 60.0) -> None:
    import psycopg

    deadline = time.monotonic() + seconds
    while True:
        try:
            psycopg.connect(url, connect_timeout=5).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """The URL of a database of this session's own on a real PostgreSQL server."""
    global _server
    pytest.importorskip("psycopg")
    given = os.environ.get("MEMENTO_TEST_POSTGRES")
    if given:
        server = _Server(given)
    else:
        binaries = _binaries()
        if binaries is None:
            message = "PostgreSQL is not installed (no initdb): apt-get install postgresql"
            if os.environ.get("CI") == "true":
                pytest.fail(message)
            pytest.skip(message)
        server = _start_cluster(binaries)
    _wait_until_up(server.url)
    _server = server
    try:
        yield server.create_database()
    finally:
        _server = None
        try:
            server.drop_databases()
        finally:
            if server.stop is not None:
                server.stop()


@pytest.fixture
def postgres_database(postgres_url: str) -> str:
    """The URL of a new, empty database, for one test."""
    return fresh_database()
