"""Fixtures of the run tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(params=["sqlite", "postgres"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store of each backend: an SQLite file, and a PostgreSQL database of its own."""
    if request.param == "sqlite":
        return str(tmp_path / "grid.sqlite")
    url: str = request.getfixturevalue("postgres_database")
    return url
