"""``parse_memory``: memory sizes as users write them, to bytes; errors that name the argument."""

from __future__ import annotations

from fractions import Fraction

import pytest

from memento._util.sizes import parse_memory

GiB = 2**30
MiB = 2**20


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8GiB", 8 * GiB),
        ("512 MiB", 512 * MiB),
        ("1.5GiB", 3 * GiB // 2),
        ("8GB", 8 * 10**9),
        ("8G", 8 * GiB),  # binary, as Slurm's --mem and docker -m read it
        ("8g", 8 * GiB),
        ("8gib", 8 * GiB),
        ("8Gi", 8 * GiB),  # as Kubernetes writes it
        ("100KiB", 100 * 1024),
        ("100kb", 100 * 1000),
        ("2K", 2048),
        ("3m", 3 * MiB),
        ("1T", 2**40),
        ("2 TB", 2 * 10**12),
        ("1tib", 2**40),
        ("1024", 1024),
        ("1024 B", 1024),
        ("  64MiB  ", 64 * MiB),
        (".5KiB", 512),
        ("1.", 1),
        ("0.3KB", 300),
        ("1.0001KiB", 1024),  # fractions of a byte rounded down
        ("123456789123456789", 123456789123456789),  # exact, no float rounding
    ],
)
def test_strings_with_units(text: str, expected: int) -> None:
    assert parse_memory(text) == expected


def test_numbers_are_bytes() -> None:
    assert parse_memory(None) is None
    assert parse_memory(1) == 1
    assert parse_memory(8 * GiB) == 8 * GiB
    assert parse_memory(1024.9) == 1024  # a float of bytes is rounded down
    assert parse_memory(Fraction(7, 2)) == 3
    assert type(parse_memory(2.0)) is int


@pytest.mark.parametrize(
    ("value", "error", "words"),
    [
        (True, TypeError, "not the bool True"),
        (False, TypeError, "not the bool False"),
        ([8], TypeError, "not list [8]"),
        (b"8GiB", TypeError, "not bytes"),
        (0, ValueError, "must be positive, got 0"),
        (-5, ValueError, "must be positive, got -5"),
        ("0", ValueError, "must be positive, got '0'"),
        ("0GiB", ValueError, "must be positive, got '0GiB'"),
        ("-1GiB", ValueError, "must be positive, got '-1GiB'"),
        (0.5, ValueError, "less than one byte"),
        ("0.5B", ValueError, "less than one byte"),
        (-0.5, ValueError, "must be positive"),
        (float("nan"), ValueError, "is not a size"),
        (float("inf"), ValueError, "is not a size"),
        ("", ValueError, "is not a size"),
        ("lots", ValueError, "'lots' is not a size"),
        ("1e9", ValueError, "is not a size"),
        ("8 GiB RAM", ValueError, "is not a size"),
        ("8XB", ValueError, "unknown unit 'XB'"),
        ("8 gigs", ValueError, "unknown unit 'gigs'"),
        ("8KIBB", ValueError, "unknown unit"),
    ],
)
def test_errors_name_the_argument_and_the_value_and_give_an_example(
    value: object, error: type[Exception], words: str
) -> None:
    with pytest.raises(error) as info:
        parse_memory(value, "memory_limit")
    message = str(info.value)
    assert "memory_limit" in message
    assert words in message
    assert "8GiB" in message  # an example of what works


def test_the_name_in_messages_is_the_callers() -> None:
    with pytest.raises(ValueError, match=r"^worker_memory='12 parsecs' has an unknown unit"):
        parse_memory("12 parsecs", "worker_memory")
