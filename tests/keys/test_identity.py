"""Experiment identity and code fingerprints, tried as a user would: real scripts run with
``python a.py`` in new interpreters, sharing one store."""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

import experiments
import pytest

from memento.keys.encoding import KeyMaker
from memento.keys.fingerprint import changed_functions, is_stale, stale_message


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(
        [sys.executable, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return out


def test_keys_of_experiments_in_modules_did_not_change() -> None:
    """Digests computed before ``__main__`` experiments were named by their script."""
    pinned = [
        (experiments.multiply, "c586a93c70cb7d671a3b0a56c7a6517c",
         "5541e56985d4bcd2e5e772f0d56d0963"),
        (functools.partial(experiments.multiply, 3), "3898fca2aec88d67883b08e81100fda9",
         "1827f29687ff0da4af68560176fc4748"),
        (experiments.Path, "8b2cab1ad3041604ad7be1f278a272a0", "7c062010b043694b4b709df1402b02cc"),
    ]  # fmt: skip
    for func, identity, key in pinned:
        maker = KeyMaker(func, None)
        assert (maker.identity, maker.key({"a": 1, "b": "x"}, {})) == (identity, key)
    versioned = KeyMaker(experiments.multiply, "2").key({"a": 1.5}, {"s": 1})
    assert versioned == "2e4cb016b7c81083238391cff8055d88"


HELPER = """
def helper(x):
    return x * 2
"""

USES_HELPER = """
import sys
from memento import Memento
from helper import helper

def experiment(context, config):
    return helper(config.a)

results = Memento(experiment, executor="inline", progress=False).run(
    {"parameters": {"a": [1, 2]}}, cache_path=sys.argv[1]
)
print("cached", sum(r.was_cached for r in results))
"""

REFORMATTED = '''
"""A module docstring."""
import sys
from memento import Memento
from helper import helper


def experiment(context, config):
    """Now documented."""
    # and commented
    return helper(
        config.a
    )  # with a trailing comment

results = Memento(experiment, executor="inline", progress=False).run(
    {"parameters": {"a": [1, 2]}}, cache_path=sys.argv[1]
)
print("cached", sum(r.was_cached for r in results))
'''


@pytest.mark.timeout(300)
def test_fingerprint_ignores_comments_and_formatting_but_not_helpers(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    store = tmp_path / "store.sqlite"
    (tmp_path / "helper.py").write_text(HELPER)
    (tmp_path / "a.py").write_text(USES_HELPER)
    assert "cached 0" in _run(["a.py", str(store)], subprocess_env, tmp_path).stdout
    (tmp_path / "a.py").write_text(REFORMATTED)
    (tmp_path / "helper.py").write_text('"""Helpers."""\n\n\ndef helper(x):  # doubles\n'
                                        '    """Twice x."""\n\n    return x*2\n')  # fmt: skip
    out = _run(["a.py", str(store)], subprocess_env, tmp_path)
    assert "cached 2" in out.stdout
    assert "older version" not in out.stderr, out.stderr
    (tmp_path / "helper.py").write_text(HELPER.replace("x * 2", "x * 3"))
    out = _run(["a.py", str(store)], subprocess_env, tmp_path)
    assert "older version" in out.stderr, out.stderr
    assert "(changed since: helper:helper)" in out.stderr, out.stderr  # the run's own warning


PRINT_FINGERPRINT = """
from memento.keys.fingerprint import code_fingerprint
import experiment_mod
print(code_fingerprint(experiment_mod.experiment))
"""


def test_the_stale_warning_names_the_functions_that_changed(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    (tmp_path / "helper.py").write_text(HELPER + "\ndef other(x):\n    return x\n")
    (tmp_path / "experiment_mod.py").write_text(
        "from helper import helper, other\n\n"
        "def experiment(context, config):\n    return helper(config.a) + other(1)\n"
    )
    env = {**subprocess_env, "PYTHONDONTWRITEBYTECODE": "1"}
    before = _run(["-c", PRINT_FINGERPRINT], env, tmp_path).stdout.strip()
    (tmp_path / "helper.py").write_text(
        HELPER.replace("x * 2", "x * 3") + "\ndef other(x):\n    return x\n"
    )
    after = _run(["-c", PRINT_FINGERPRINT], env, tmp_path).stdout.strip()
    assert is_stale(before, after)
    assert changed_functions([before, before, None], after) == ["helper:helper"]
    message = stale_message(2, "experiment_mod:experiment", [before], after)
    assert "2 stored result(s) of experiment_mod:experiment" in message
    assert "(changed since: helper:helper)" in message
    # A fingerprint of the previous scheme is never stale and names nothing.
    assert not is_stale("v2:" + "0" * 32, after)
    assert changed_functions(["v2:" + "0" * 32], after) == []
