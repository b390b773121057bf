"""The distribution has a name of its own, and every install command in the docs uses it.

The package index's ``memento`` is an unrelated 2006 WSGI middleware: ``pip install
'memento[slurm]'`` in a fresh venv installs that. Ours is ``memento-grid``; the import name stays
``memento``.
"""

from __future__ import annotations

import importlib.metadata
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "bench" / "README.md"]
SOURCES = sorted((ROOT / "src" / "memento").rglob("*.py"))

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    tomllib = None


def test_distribution_name_is_memento_grid() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    if tomllib is not None:
        assert tomllib.loads(text)["project"]["name"] == "memento-grid"
    else:
        assert re.search(r'^name = "memento-grid"$', text, re.M)


def test_installed_distribution_provides_the_memento_package() -> None:
    dist = importlib.metadata.distribution("memento-grid")
    import memento

    assert dist.version == memento.__version__
    assert "memento" in (dist.read_text("top_level.txt") or "memento").split()


def _install_lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if "pip install" in line]


# An install command that names our package by the index's other project's name:
# ``pip install memento``, ``'memento[dask]'``, ``memento[pandas]`` (not memento-ml, not -grid).
WRONG = re.compile(r"(?<![\w-])memento(\[[\w,]+\]|(?=['\"`\s]|$))(?!-)")


@pytest.mark.parametrize("path", DOCS + SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_install_commands_name_memento_grid(path: Path) -> None:
    bad = []
    for line in _install_lines(path):
        for command in re.findall(r"pip install[^`\n;&|)]*", line):
            if WRONG.search(command.replace("pip install", "", 1)):
                bad.append(command.strip())
    assert not bad, f"{path.name}: install commands that name 'memento' instead of 'memento-grid'"


def test_the_pattern_catches_the_old_names() -> None:
    for wrong in ("memento", "'memento[slurm]'", "memento[pandas]", '"memento[dask,ray]"'):
        assert WRONG.search(" " + wrong), wrong
    for right in ("memento-grid", "'memento-grid[slurm]'", "memento-ml", "-e '.[test]'"):
        assert not WRONG.search(" " + right), right


def test_missing_extra_names_the_distribution() -> None:
    from memento.exceptions import MissingExtra

    message = str(MissingExtra("pandas", "pandas", "A table"))
    assert "pip install 'memento-grid[pandas]'" in message
