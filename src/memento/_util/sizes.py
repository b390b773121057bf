"""Memory sizes as users write them: ``8GiB``, ``512 MiB``, ``1.5GB``, ``8G`` or plain bytes.

The one parser of sizes, for ``memory_limit`` and anything else given in bytes. Units are
case-insensitive:

* ``B`` (or none): bytes;
* ``KiB``/``MiB``/``GiB``/``TiB`` (also ``Ki``, ``Mi``, ... as Kubernetes writes them): binary,
  powers of 1024;
* ``KB``/``MB``/``GB``/``TB``: decimal, powers of 1000, as the SI and disk makers mean them;
* ``K``/``M``/``G``/``T`` alone: **binary**, as Slurm (``--mem=8G``), Docker (``-m 8g``) and
  ``ulimit`` read them, so that the same text means the same amount in a job script and here.
"""

from __future__ import annotations

import math
import numbers
import re

_UNITS: dict[str, int] = {"": 1, "b": 1}
for _power, _letter in enumerate("kmgt", start=1):
    _UNITS[_letter] = 1024**_power
    _UNITS[f"{_letter}i"] = 1024**_power
    _UNITS[f"{_letter}ib"] = 1024**_power
    _UNITS[f"{_letter}b"] = 1000**_power

_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*", re.IGNORECASE)

_EXAMPLE = "bytes as an int, or a string like '8GiB', '512 MiB', '1.5GB' or '8G'"


def parse_memory(value: object, name: str = "memory_limit") -> int | None:
    """``value`` as a whole number of bytes, or ``None`` for ``None`` (no limit).

    An int is bytes; a float is bytes rounded down; a string is a number and an optional unit
    (see the module's docstring: ``G`` alone is binary, ``GB`` decimal). The result is at
    least one byte. Anything else raises an error naming ``name`` and the value: a
    ``TypeError`` for a bool or another type, a ``ValueError`` for zero, a negative, an
    infinite or NaN number, text that is not a size, or an unknown unit.

    >>> parse_memory("8GiB"), parse_memory("8G"), parse_memory("8GB")
    (8589934592, 8589934592, 8000000000)
    >>> parse_memory("1.5 MiB"), parse_memory(1024), parse_memory(None)
    (1572864, 1024, None)
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError(f"{name} must be {_EXAMPLE}, not the bool {value!r}")
    if isinstance(value, numbers.Integral):
        size = int(value)
    elif isinstance(value, numbers.Real):
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"{name}={value!r} is not a size: give {_EXAMPLE}")
        size = math.floor(number)
        if number > 0 and size < 1:
            raise ValueError(f"{name}={value!r} is less than one byte: give {_EXAMPLE}")
    elif isinstance(value, str):
        size = _parse_text(value, name)
    else:
        raise TypeError(f"{name} must be {_EXAMPLE}, not {type(value).__name__} {value!r}")
    if size <= 0:
        raise ValueError(f"{name} must be positive, got {value!r}: give {_EXAMPLE}")
    return size


def _parse_text(text: str, name: str) -> int:
    match = _SIZE.fullmatch(text)
    if match is None and text.strip().startswith("-"):
        raise ValueError(f"{name} must be positive, got {text!r}: give {_EXAMPLE}")
    if match is None:
        raise ValueError(f"{name}={text!r} is not a size: give {_EXAMPLE}")
    number, unit = match.groups()
    factor = _UNITS.get(unit.lower())
    if factor is None:
        raise ValueError(
            f"{name}={text!r} has an unknown unit {unit!r}: use B, K/KiB/KB, M/MiB/MB, "
            f"G/GiB/GB or T/TiB/TB (K, M, G, T alone are binary), e.g. '8GiB'"
        )
    # Whole numbers exactly (no float rounding of "123456789123456789"), fractions rounded down.
    if "." not in number:
        size = int(number) * factor
    else:
        whole, _, fraction = number.partition(".")
        fraction = fraction or "0"
        size = int(whole or "0") * factor + int(fraction) * factor // 10 ** len(fraction)
    if size < 1 and number.strip("0.") != "":
        raise ValueError(f"{name}={text!r} is less than one byte: give {_EXAMPLE}")
    return size  # 0 for "0" or "0GiB": the caller says it must be positive


def format_memory(size: int | None) -> str:
    """``size`` bytes in binary units that :func:`parse_memory` reads back as the same amount
    (up to the shown precision): ``"150 MiB"``, ``"1.5 GiB"``, ``"512 B"``; ``"?"`` for
    ``None``."""
    if size is None:
        return "?"
    amount = float(size)
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    step = 0
    while amount >= 1024 and step < len(units) - 1:
        amount /= 1024
        step += 1
    unit = units[step]
    text = f"{amount:.1f}".rstrip("0").rstrip(".") if unit != "B" else str(size)
    return f"{text} {unit}"


__all__ = ["format_memory", "parse_memory"]
