"""The direct read of what is installed (``memento._util.distributions``), on made-up site
folders of real files, checked against ``importlib.metadata`` reading the same folders."""

from __future__ import annotations

import importlib.metadata as metadata
import sys
from pathlib import Path

import pytest

from memento._util.distributions import record_top_levels, scan


def test_record_top_levels_of_each_kind_of_line() -> None:
    record = "\n".join(
        [
            "pkg/__init__.py,sha256=abc,10",
            "pkg/sub/mod.py,sha256=def,20",
            "six.py,sha256=ghi,30",
            "_cffi_backend.cpython-311-x86_64-linux-gnu.so,sha256=jkl,40",
            "pkg-1.0.dist-info/RECORD,,",
            "pkg-1.0.dist-info/METADATA,sha256=mno,50",
            "pkg-1.0.data/scripts/tool,sha256=pqr,60",
            "../../../bin/tool,sha256=stu,70",
            "README.txt,sha256=vwx,80",
            '"quoted/file,with comma.py",sha256=yz,90',
            "bare_module.py",  # a last line without its fields
            "",
        ]
    )
    assert record_top_levels(record) == {"pkg", "six", "_cffi_backend", "quoted", "bare_module"}
    assert record_top_levels("") == set()


def _dist(site: Path, name: str, version: str, files: dict[str, str]) -> None:
    """A real ``.dist-info`` folder in ``site`` with ``files`` besides its METADATA."""
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\nA description.\n"
    )
    for filename, text in files.items():
        (info / filename).write_text(text)


def test_scan_agrees_with_importlib_metadata_on_a_made_up_site(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Top-level files, RECORD-only distributions, a namespace package shared by three
    distributions (two without top_level.txt), a module file and a shadowed duplicate."""
    site, later = tmp_path / "site", tmp_path / "later"
    _dist(site, "With-Top", "1.0", {"top_level.txt": "withtop\nshared_ns\n"})
    _dist(
        site,
        "ns-one",
        "2.0",
        {"RECORD": "shared_ns/one/__init__.py,sha256=a,1\nns_one-2.0.dist-info/RECORD,,\n"},
    )
    _dist(
        site,
        "ns_two",
        "3.0",
        {"RECORD": "shared_ns/two/x.py,sha256=b,2\nsolo.py,sha256=c,3\n../../bin/two,,\n"},
    )
    _dist(later, "ns-one", "0.1", {"RECORD": "old_ns/__init__.py,,\n"})  # shadowed by site's
    path = [str(site), str(later)]

    modules, versions = scan(path)

    assert versions == {"With-Top": "1.0", "ns-one": "2.0", "ns_two": "3.0"}
    assert sorted(modules["shared_ns"]) == ["With-Top", "ns-one", "ns_two"]
    assert modules["solo"] == ["ns_two"] and modules["withtop"] == ["With-Top"]
    assert "old_ns" not in modules
    # importlib.metadata reads sys.path: the made-up site is all of it here (a real list).
    monkeypatch.setattr(sys, "path", path)
    expected = metadata.packages_distributions()
    assert {m: sorted(set(d)) for m, d in modules.items()} == {
        m: sorted(set(d)) for m, d in expected.items() if m != "old_ns"
    }
