"""Stage 1, matrix to configs: validation (``validation``) and lazy expansion
(``configs``). Pure, no I/O."""

from __future__ import annotations

from memento.matrix.configs import (
    Config,
    Configurations,
    generate_configurations,
    validate_matrix,
)

__all__ = [
    "Config",
    "Configurations",
    "generate_configurations",
    "validate_matrix",
]
