"""Sampled parameters: distributions, and the points a matrix's ``sample`` key draws from them.

A matrix can draw some parameters instead of listing them::

    from memento import loguniform, uniform
    matrix = {
        "parameters": {"model": ["mlp", "cnn"]},
        "sample": {"lr": loguniform(1e-4, 1e-1), "dropout": uniform(0.0, 0.5)},
        "samples": 20,   # 20 points, each run with every model
        "seed": 0,       # optional, 0 by default
    }

The points must be the same every time the matrix is expanded, or a re-run would find none of
its results. So point ``i`` depends only on the seed, ``i`` and the parameter's name: each
value comes from ``u``, a number in [0, 1) read from the SHA-256 of ``(seed, i, name)``, passed
through the distribution's inverse CDF (:meth:`Distribution.ppf`). That makes the points

- independent of ``PYTHONHASHSEED``, the machine and the Python version (no RNG algorithm is
  involved, only SHA-256 and float arithmetic);
- prefix-stable: the first 20 points of ``samples: 30`` are the points of ``samples: 20``;
- unchanged when a parameter, or another sampled name, is added to the matrix.

``method: "sobol"`` takes the ``u`` of each point from scipy's scrambled Sobol sequence (one
dimension per sampled name, in the order of ``sample``), which covers the space more evenly
than independent draws. It is prefix-stable too, but adding a sampled name changes every
point, and its scrambling belongs to scipy: a scipy release that changed it would change the
points. Powers of two (16, 32, 64 points) keep the sequence's balance best.

Values are plain Python ``float``/``int`` (or the items of a :class:`choice`), so that their
keys are exact and they read back as what was drawn.
"""

from __future__ import annotations

import hashlib
import math
import numbers
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from memento._util.optional import optional_import

Method = Literal["random", "sobol"]
METHODS: tuple[Method, ...] = ("random", "sobol")

_2_53 = float(1 << 53)


class Distribution:
    """What a sampled parameter is drawn from: a map from [0, 1) to values (:meth:`ppf`).

    The built-ins are :class:`loguniform`, :class:`uniform`, :class:`randint` and
    :class:`choice`; they are immutable, compare by value and show as they are written. A
    distribution of your own subclasses this one: ``ppf``, and ``_args`` (the constructor's
    arguments, for the repr, equality and pickling), set in ``__init__`` through
    ``object.__setattr__``.
    """

    __slots__ = ()

    def ppf(self, u: float) -> Any:
        """The value at quantile ``u`` (0 <= u < 1): the inverse of the distribution's CDF."""
        raise NotImplementedError

    def _args(self) -> tuple[Any, ...]:
        return ()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(map(repr, self._args()))})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Distribution)
        return self._args() == other._args()

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._args()))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), self._args())


def _real(kind: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{kind}() takes numbers, got {name}={value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{kind}() takes finite numbers, got {name}={value!r}")
    return number


def _below(value: float, high: float) -> float:
    """``value``, kept below ``high`` where rounding reached it."""
    return value if value < high else math.nextafter(high, -math.inf)


class uniform(Distribution):
    """Floats spread evenly over ``[low, high)``.

    Example: ``uniform(0.0, 0.5)`` for a dropout rate.
    """

    __slots__ = ("high", "low")
    low: float
    high: float

    def __init__(self, low: float, high: float) -> None:
        lo, hi = _real("uniform", "low", low), _real("uniform", "high", high)
        if not lo < hi:
            raise ValueError(f"uniform(low, high) needs low < high, got uniform({low!r}, {high!r})")
        object.__setattr__(self, "low", lo)
        object.__setattr__(self, "high", hi)

    def ppf(self, u: float) -> float:
        return _below(self.low + (self.high - self.low) * u, self.high)

    def _args(self) -> tuple[float, float]:
        return (self.low, self.high)


class loguniform(Distribution):
    """Floats in ``[low, high)`` whose logarithm is spread evenly: each decade equally likely.

    Example: ``loguniform(1e-4, 1e-1)`` for a learning rate. Both bounds must be positive.
    """

    __slots__ = ("high", "low")
    low: float
    high: float

    def __init__(self, low: float, high: float) -> None:
        lo, hi = _real("loguniform", "low", low), _real("loguniform", "high", high)
        if lo <= 0:
            raise ValueError(
                f"loguniform(low, high) needs positive bounds, got low={low!r}; "
                "use uniform() for a range that includes 0 or negative numbers"
            )
        if not lo < hi:
            raise ValueError(
                f"loguniform(low, high) needs low < high, got loguniform({low!r}, {high!r})"
            )
        object.__setattr__(self, "low", lo)
        object.__setattr__(self, "high", hi)

    def ppf(self, u: float) -> float:
        log_low, log_high = math.log(self.low), math.log(self.high)
        value = math.exp(log_low + (log_high - log_low) * u)
        return _below(max(value, self.low), self.high)

    def _args(self) -> tuple[float, float]:
        return (self.low, self.high)


class randint(Distribution):
    """Integers from ``low`` to ``high``, **both included**, each equally likely.

    As :func:`random.randint` (not numpy's, which leaves ``high`` out): ``randint(1, 6)`` is a
    die. Values are plain ``int``.
    """

    __slots__ = ("high", "low")
    low: int
    high: int

    def __init__(self, low: int, high: int) -> None:
        for name, value in (("low", low), ("high", high)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise TypeError(f"randint() takes integers, got {name}={value!r}")
        lo, hi = int(low), int(high)
        if not lo < hi:
            raise ValueError(
                f"randint(low, high) needs low < high (high is included), "
                f"got randint({low!r}, {high!r})"
            )
        object.__setattr__(self, "low", lo)
        object.__setattr__(self, "high", hi)

    def ppf(self, u: float) -> int:
        span = self.high - self.low + 1
        return self.low + min(int(u * span), span - 1)

    def _args(self) -> tuple[int, int]:
        return (self.low, self.high)


class choice(Distribution):
    """One of the given values, each equally likely.

    Example: ``choice(["relu", "tanh"])``. The values are used as they are (their types kept).
    """

    __slots__ = ("options",)
    options: tuple[Any, ...]

    def __init__(self, options: Iterable[Any]) -> None:
        if isinstance(options, (str, bytes, bytearray)):
            raise TypeError(
                f"choice() takes a list of values, got the string {options!r}; "
                f"wrap it in a list for one value: choice([{options!r}])"
            )
        if isinstance(options, Mapping):
            raise TypeError("choice() takes a list of values, got a mapping; pass list(d)")
        try:
            items = tuple(options)
        except TypeError:
            raise TypeError(
                f"choice() takes a list of values, got {type(options).__name__}: {options!r}"
            ) from None
        if not items:
            raise ValueError("choice() needs at least one value, got an empty sequence")
        object.__setattr__(self, "options", items)

    def ppf(self, u: float) -> Any:
        n = len(self.options)
        return self.options[min(int(u * n), n - 1)]

    def _args(self) -> tuple[Any, ...]:
        return (list(self.options),)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, choice):
            return NotImplemented
        return self.options == other.options

    def __hash__(self) -> int:
        try:
            return hash(("choice", self.options))
        except TypeError:  # unhashable options (lists, arrays): equal ones may still differ
            return hash(("choice", len(self.options)))


def hashed_uniform(seed: int, index: int, name: str) -> float:
    """A number in [0, 1) fixed by ``(seed, index, name)``: 53 bits of their SHA-256."""
    digest = hashlib.sha256(f"memento-sample\0{seed}\0{index}\0{name}".encode()).digest()
    return (int.from_bytes(digest[:8], "big") >> 11) / _2_53


def sample_points(
    sample: Mapping[str, Distribution],
    samples: int,
    seed: int = 0,
    method: Method = "random",
) -> list[tuple[Any, ...]]:
    """The first ``samples`` points: for each, one value per name of ``sample``, in its order.

    Example::

        sample_points({"lr": loguniform(1e-4, 1e-1)}, 2)   # [(0.0123...,), (0.0004...,)]
    """
    names = list(sample)
    if method == "sobol":
        quantiles = _sobol(len(names), samples, seed)
    else:
        quantiles = [[hashed_uniform(seed, i, name) for name in names] for i in range(samples)]
    dists = [sample[name] for name in names]
    return [tuple(d.ppf(u) for d, u in zip(dists, row)) for row in quantiles]


def _sobol(dimensions: int, n: int, seed: int) -> Sequence[Sequence[float]]:
    """The first ``n`` points of a scrambled Sobol sequence seeded from ``seed``."""
    purpose = "A matrix with method 'sobol'"
    optional_import("scipy", "sampling", purpose)  # the message names scipy, not a submodule
    qmc = optional_import("scipy.stats.qmc", "sampling", purpose)
    np = optional_import("numpy", "sampling", purpose)
    digest = hashlib.sha256(f"memento-sobol\0{seed}".encode()).digest()
    # A Generator, not an int: scipy turns an int into a different stream depending on the
    # keyword (legacy `seed` or newer `rng`), a Generator means the same thing to both.
    rng = np.random.default_rng(int.from_bytes(digest[:16], "big"))
    try:
        engine = qmc.Sobol(dimensions, scramble=True, rng=rng)
    except TypeError:  # scipy < 1.15
        engine = qmc.Sobol(dimensions, scramble=True, seed=rng)
    with warnings.catch_warnings():
        # The balance warning for n not a power of two: the module docstring says it once.
        warnings.simplefilter("ignore", UserWarning)
        table = engine.random(n)
    return [[float(u) for u in row] for row in table]


__all__ = [
    "METHODS",
    "Distribution",
    "Method",
    "choice",
    "hashed_uniform",
    "loguniform",
    "randint",
    "sample_points",
    "uniform",
]
