from __future__ import annotations

import functools
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from memento.exceptions import UnencodableValue
from memento.keys.encoding import KeyMaker, encode, experiment_identity
from memento.keys.fingerprint import code_fingerprint


class Point:
    def __init__(self, x: int, y: int) -> None:
        self.x, self.y = x, y


class WithHook:
    def __init__(self, name: str) -> None:
        self.name = name
        self.handle = open

    def __memento_key__(self) -> str:
        return self.name


def f(context: object, config: object) -> int:
    return 1


def g(context: object, config: object) -> int:
    return 2


def test_type_tags_keep_equal_looking_values_apart() -> None:
    assert len({encode(1), encode(1.0), encode(True), encode("1"), encode(b"1")}) == 5
    assert encode(0.0) != encode(-0.0)
    assert encode(math.nan) == encode(float("nan"))
    assert encode((1, 2)) != encode([1, 2])
    assert encode({1, 2}) != encode(frozenset({1, 2}))


def test_containers_are_order_insensitive_where_python_is() -> None:
    assert encode({"a": 1, "b": 2}) == encode({"b": 2, "a": 1})
    assert encode({3, 1, 2}) == encode({2, 3, 1})
    assert encode(frozenset({"x", "y"})) == encode(frozenset({"y", "x"}))


def test_functions_classes_partials_and_bound_methods() -> None:
    assert encode(f) != encode(g)
    assert encode(Point) == encode(Point)
    assert encode(functools.partial(f, 1)) != encode(functools.partial(f, 2))
    assert encode(functools.partial(f, a=1)) == encode(functools.partial(f, a=1))
    p1, p2 = Point(1, 2), Point(1, 2)
    assert encode(p1.__init__) == encode(p2.__init__)


def test_lambdas_with_different_code_or_closures_differ() -> None:
    def make(n: int):
        return lambda c, x: n

    assert encode(lambda c, x: 1) != encode(lambda c, x: 2)
    assert encode(make(1)) != encode(make(2))
    assert encode(make(1)) == encode(make(1))


def test_numpy_arrays_and_scalars() -> None:
    a = np.arange(6).reshape(2, 3)
    assert encode(a) == encode(a.copy())
    assert encode(a) != encode(a.reshape(3, 2))
    assert encode(a) != encode(a.astype(np.float64))
    assert encode(np.float64(1.5)) != encode(1.5)
    assert encode(np.int32(3)) != encode(np.int64(3))
    assert encode(np.asfortranarray(a)) == encode(a)


def test_instances_of_user_classes_encode_by_class_and_state() -> None:
    assert encode(Point(1, 2)) == encode(Point(1, 2))
    assert encode(Point(1, 2)) != encode(Point(2, 1))


def test_memento_key_hook_wins() -> None:
    assert encode(WithHook("a")) == encode(WithHook("a"))
    assert encode(WithHook("a")) != encode(WithHook("b"))


def test_sklearn_estimators_and_pipelines_encode_by_parameters_and_state() -> None:
    sklearn = pytest.importorskip("sklearn")
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    assert sklearn
    assert encode(LogisticRegression(C=1.0)) == encode(LogisticRegression(C=1.0))
    assert encode(LogisticRegression(C=1.0)) != encode(LogisticRegression(C=2.0))
    p1 = make_pipeline(StandardScaler(), LogisticRegression())
    p2 = make_pipeline(StandardScaler(), LogisticRegression())
    assert encode(p1) == encode(p2)
    fitted = make_pipeline(StandardScaler(), LogisticRegression())
    fitted.fit(np.array([[0.0], [1.0], [2.0], [3.0]]), np.array([0, 0, 1, 1]))
    assert encode(fitted) != encode(p1)


def test_unencodable_value_names_the_parameter_and_the_hook() -> None:
    import threading

    maker = KeyMaker(f)
    with pytest.raises(UnencodableValue) as info:
        maker.key({"lock": threading.Lock()}, {})
    message = str(info.value)
    assert "Parameter 'lock'" in message and "__memento_key__" in message


def test_cycles_encode_as_back_references() -> None:
    a: list[object] = []
    a.append(a)
    b: list[object] = []
    b.append(b)
    assert encode(a) == encode(b)  # by shape, not by address
    assert encode(a) != encode([[]])


def test_settings_and_version_are_part_of_the_key() -> None:
    assert KeyMaker(f).key({"a": 1}, {}) != KeyMaker(f).key({"a": 1}, {"s": 1})
    assert KeyMaker(f).key({"a": 1}, {}) != KeyMaker(f, "v2").key({"a": 1}, {})
    assert KeyMaker(f).key({"a": 1}, {}) != KeyMaker(g).key({"a": 1}, {})
    assert experiment_identity(f) != experiment_identity(f, version="2")


SCRIPT = textwrap.dedent(
    """
    import numpy as np, functools
    from memento.keys.encoding import KeyMaker
    from test_keys import f, Point
    params = {"s": {"b", "a", "c"}, "d": {"z": 1, "y": (1.5, None, b"x")}, "p": Point(1, 2),
              "n": np.arange(4), "fs": frozenset({3, 4}), "part": functools.partial(f, 1),
              "nan": float("nan"), "neg": -0.0, "cls": Point}
    print(KeyMaker(f, "v1").key(params, {"k": [1, 2]}))
    """
)


def test_keys_are_equal_across_processes_and_hash_seeds(subprocess_env: dict[str, str]) -> None:
    keys = set()
    for seed in ("0", "1", "12345"):
        env = dict(subprocess_env, PYTHONHASHSEED=seed)
        out = subprocess.run(
            [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True
        )
        keys.add(out.stdout.strip())
    assert len(keys) == 1 and len(next(iter(keys))) == 32


def test_code_fingerprint_changes_with_source() -> None:
    assert code_fingerprint(f) != code_fingerprint(g)
    assert code_fingerprint(f) == code_fingerprint(f)
    assert code_fingerprint(f).startswith("v")
