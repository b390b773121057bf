"""The README's Python blocks run, in order, in one namespace (except those marked not run)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCK = re.compile(r"(<!-- not run[^>]*-->\n)?```python\n(.*?)```", re.S)


def test_readme_quick_start_is_two_commands() -> None:
    text = README.read_text()
    start = text.index("## Quick start")
    section = text[start : text.index("\n## ", start + 5)]
    commands = re.findall(r"```bash\n(.*?)```", section, re.S)
    assert len(commands) == 2
    assert "examples/quickstart.py" in commands[0] and "pytest" in commands[1]


@pytest.mark.timeout(300)
def test_readme_python_blocks_run() -> None:
    pytest.importorskip("sklearn")
    pytest.importorskip("pandas")
    namespace: dict[str, object] = {"__name__": "__main__"}
    ran = 0
    for skip, code in BLOCK.findall(README.read_text()):
        if skip:
            compile(code, "README.md", "exec")
            continue
        exec(compile(code, "README.md", "exec"), namespace)
        ran += 1
    assert ran >= 5
    assert Path("memento.sqlite").is_file()
