"""Stage 2, keys: the canonical encoding of values (``encoding``), what names what a script
defines (``identity``), and code fingerprints (``fingerprint``). ``memento.keys`` stays the
public import path."""

from __future__ import annotations

from memento.keys.encoding import (
    FINGERPRINT_VERSION,
    KEY_SCHEME_VERSION,
    KeyMaker,
    digest,
    encode,
    experiment_identity,
    experiment_name,
)
from memento.keys.identity import main_as_script_of, module_name

__all__ = [
    "FINGERPRINT_VERSION",
    "KEY_SCHEME_VERSION",
    "KeyMaker",
    "digest",
    "encode",
    "experiment_identity",
    "experiment_name",
    "main_as_script_of",
    "module_name",
]
