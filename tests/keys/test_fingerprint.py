"""Code fingerprints of a fixed module: what they cover, pinned so a refactor cannot move them."""

from __future__ import annotations

import hashlib
import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from memento.keys.fingerprint import code_fingerprint, normalised

UTILS = """
def scale(x):
    return x * 10


def unused(x):
    return x
"""

MAIN = '''
import functools

import fp_pinned_utils as utils


def helper(x):
    """Documented."""
    return x + 1


def via_default(x):
    return x - 1


def wrapped(x):
    return -x


def decorate(f):
    @functools.wraps(f)
    def inner(*args):
        return f(*args)
    return inner


class Base:
    def shared(self):
        return helper(0)


class Model(Base):
    @property
    def size(self):
        return utils.scale(2)

    def fit(self, x):
        return [helper(v) for v in x]


def make_closure():
    def closure(x):
        return x * 3
    return lambda x: closure(x)


closed = make_closure()


@decorate
def decorated(x):
    return wrapped(x)


def experiment(context, config, adjust=via_default):
    model = Model()
    return helper(config.a) + model.size + closed(1) + decorated(2) + adjust(3)
'''

#: The fingerprint recorded (Python 3.11) before ``code_fingerprint`` was split into steps.
PINNED_311 = (
    "v3:a7ca29b76c8b0403e43c67237baca042;fp_pinned_main:experiment=0501cd72acac,"
    "fp_pinned_main:Base=f8e0dc3b0670,fp_pinned_main:Model=d641205d0f87,"
    "fp_pinned_main:decorated=2c068db7fd93,fp_pinned_main:helper=332052500ffc,"
    "fp_pinned_main:make_closure.<locals>.<lambda>=9d223628d337,"
    "fp_pinned_main:make_closure.<locals>.closure=9a0ba552dcd0,"
    "fp_pinned_main:via_default=90d8f6e191d4,fp_pinned_main:wrapped=36c25e4fb959,"
    "fp_pinned_utils:scale=ddd8dc30cca9"
)


@pytest.fixture
def fixed_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    (tmp_path / "fp_pinned_utils.py").write_text(UTILS)
    (tmp_path / "fp_pinned_main.py").write_text(MAIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    try:
        yield importlib.import_module("fp_pinned_main")
    finally:
        for name in ("fp_pinned_main", "fp_pinned_utils"):
            sys.modules.pop(name, None)


def _digest(text: str) -> str:
    return hashlib.sha256(normalised(text).encode()).hexdigest()


def test_the_fingerprint_covers_what_the_experiment_refers_to(fixed_module: ModuleType) -> None:
    fingerprint = code_fingerprint(fixed_module.experiment)
    version, _, rest = fingerprint.partition(":")
    overall, _, listing = rest.partition(";")
    entries = [item.rpartition("=") for item in listing.split(",")]
    names = [name for name, _, _ in entries]
    assert version == "v3" and len(overall) == 32
    assert names[0] == "fp_pinned_main:experiment"
    assert sorted(names[1:]) == names[1:]
    assert set(names[1:]) == {
        "fp_pinned_main:Base",
        "fp_pinned_main:Model",
        "fp_pinned_main:helper",
        "fp_pinned_main:make_closure.<locals>.closure",
        "fp_pinned_main:make_closure.<locals>.<lambda>",
        "fp_pinned_main:via_default",
        "fp_pinned_main:wrapped",
        "fp_pinned_main:decorated",
        "fp_pinned_utils:scale",
    }
    # Each entry is the first 12 hex digits of the hash of its normalised source.
    helper = {name: digest for name, _, digest in entries}["fp_pinned_main:helper"]
    assert helper == _digest('def helper(x):\n    """Documented."""\n    return x + 1\n')[:12]
    if sys.version_info[:2] == (3, 11):  # ast dumps differ between Python versions
        assert fingerprint == PINNED_311


def test_the_fingerprint_is_stable_within_a_process(fixed_module: ModuleType) -> None:
    first = code_fingerprint(fixed_module.experiment)
    assert code_fingerprint(fixed_module.experiment) == first
    assert code_fingerprint(fixed_module.Model().fit) != first
    assert code_fingerprint(fixed_module.Model().fit).startswith("v3:")
