"""What is installed, read from the metadata folders, and the cache that spares the scan."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from memento._util import distributions


def _install(site: Path, name: str, version: str, module: str) -> None:
    info = site / f"{name}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "top_level.txt").write_text(f"{module}\n")
    (site / module).mkdir()


def test_the_cache_follows_what_is_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    site = tmp_path / "site-packages"
    site.mkdir()
    _install(site, "alpha", "1.0", "alpha")
    modules, versions = distributions._cached_scan([str(site)])
    assert versions == {"alpha": "1.0"} and modules == {"alpha": ["alpha"]}
    cached = list((tmp_path / "cache" / "memento").iterdir())
    assert len(cached) == 1  # the scan was kept
    # Read back from the file, not scanned: a change inside a dist-info folder (which no
    # installer makes) is not seen, which shows the file was used.
    (site / "alpha-1.0.dist-info" / "METADATA").write_text("Name: alpha\nVersion: 9\n")
    assert distributions._cached_scan([str(site)])[1] == {"alpha": "1.0"}
    # Installing something changes the folder's time, and so the cache file's name.
    before = os.stat(site).st_mtime_ns
    deadline = time.monotonic() + 5
    while os.stat(site).st_mtime_ns == before and time.monotonic() < deadline:
        _install(site, f"beta{int(time.monotonic() * 1e6)}", "2.0", f"b{time.monotonic_ns()}")
    modules, versions = distributions._cached_scan([str(site)])
    assert any(name.startswith("beta") for name in versions)


def test_an_unwritable_cache_directory_only_costs_the_scan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    site = tmp_path / "site"
    site.mkdir()
    _install(site, "alpha", "1.0", "alpha")
    assert distributions._cached_scan([str(site)])[1] == {"alpha": "1.0"}
