"""Shared fixtures: every test gets its own store path and never writes into the cwd.

The tests mirror the folders of ``src/memento``; helpers they share live in ``tests/support``
(``experiments``, ``clusters``, ``processes``), which is put on ``sys.path`` here, so that
the module names (and the keys of the experiments they define) stay what they were."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SUPPORT = ROOT / "tests" / "support"
if str(SUPPORT) not in sys.path:
    sys.path.insert(0, str(SUPPORT))

from clusters import support_paths  # noqa: E402  (needs SUPPORT on sys.path)

#: The real SMTP and HTTP servers' fixtures (tests/support/servers.py) and the PostgreSQL
#: server's (tests/support/postgres.py), for every test.
pytest_plugins = ["servers", "postgres"]


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv("MEMENTO_CACHE_PATH", raising=False)


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "store" / "results.sqlite"


@pytest.fixture
def subprocess_env() -> dict[str, str]:
    """Environment for child Python processes that import memento and the tests' helpers."""
    env = dict(os.environ)
    paths = [str(ROOT / "src"), *support_paths()]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("MEMENTO_CACHE_PATH", None)
    return env
