"""memento-ml 1.2 compatibility of matrices, configs and keys (issue 8).

Values 1.2 accepted (ufuncs, compiled regexes, cyclic values, any iterable of values),
its exclude semantics, its ``Config``/``Configurations`` constructors and its pickles.
"""

from __future__ import annotations

import base64
import datetime
import decimal
import fractions
import functools
import http
import json
import math
import pathlib
import pickle
import re
import subprocess
import sys
import textwrap
import uuid
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from memento import Config, Configurations, Memento, generate_configurations
from memento._util.text import display_value
from memento.compat.caching import Cache, MemoryCacheProvider, default_key_provider
from memento.exceptions import UnencodableValue
from memento.keys.encoding import KeyMaker, digest, encode
from memento.matrix.configs import validate_matrix

# -- keys of values that had none ------------------------------------------------------------


class SelfRef:
    """An object whose state refers back to itself."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.me = self


def cyclic_list() -> list[Any]:
    a: list[Any] = [1]
    a.append(a)
    return a


def cyclic_dict() -> dict[str, Any]:
    d: dict[str, Any] = {"k": 1}
    d["self"] = d
    return d


def kind(context: Any, config: Any) -> str:
    return f"{type(config.v).__name__}:{display_value(config.settings['f'])}"


def test_ufuncs_regexes_and_cycles_have_keys_that_tell_them_apart() -> None:
    values = [
        np.log,
        np.add,
        re.compile("a+"),
        re.compile("a+", re.IGNORECASE),
        re.compile(b"a+"),
        cyclic_list(),
        [1, [1]],
        cyclic_dict(),
        SelfRef("x"),
        SelfRef("y"),
    ]
    codes = [encode(v) for v in values]
    assert len(set(codes)) == len(values)
    assert encode(cyclic_list()) == encode(cyclic_list())  # by shape, not by address
    assert encode(SelfRef("x")) == encode(SelfRef("x"))
    assert Config(v=cyclic_list()) == Config(v=cyclic_list())
    assert "[...]" in str(Config(v=cyclic_list()))
    assert str(Config(f=np.log)) == "f=log"


def test_scipy_ufuncs_are_named_by_their_module() -> None:
    special = pytest.importorskip("scipy.special")
    assert encode(special.expit) != encode(special.logit)
    assert b"scipy.special" in encode(special.expit)


def test_a_ufunc_made_from_a_python_function_is_refused_clearly() -> None:
    with pytest.raises(UnencodableValue, match="frompyfunc"):
        encode(np.frompyfunc(lambda x: x, 1, 1))


def test_deep_nesting_is_an_unencodable_value_not_a_crash() -> None:
    deep: list[Any] = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(UnencodableValue, match=r"Parameter 'v'.*nested too deeply"):
        KeyMaker(kind).key({"v": deep}, {})


KEYS_SCRIPT = textwrap.dedent(
    """
    import functools, json, re, sys
    import numpy as np
    from memento.compat.caching import default_key_provider
    from memento.keys.encoding import KeyMaker
    from test_compat_matrix import SelfRef, cyclic_dict, cyclic_list, kind

    def make(n):
        def local(x):
            return x * n
        class Local:
            def __init__(self, v):
                self.v = v
        return local, Local

    local, Local = make(3)
    values = {
        "log": np.log, "add": np.add, "regex": re.compile("a+", re.I | re.M),
        "list": cyclic_list(), "dict": cyclic_dict(), "object": SelfRef("x"),
        "module": json, "local": local, "lambda": lambda x: x + 1, "Local": Local,
        "instance": Local([1, 2]), "partial": functools.partial(lambda a, b: a - b, 1),
    }
    maker = KeyMaker(kind)
    for name, value in values.items():
        print(name, maker.key({"v": value}, {"s": value}), default_key_provider(kind, value))
    """
)


def test_new_keys_are_equal_across_processes_and_hash_seeds(
    subprocess_env: dict[str, str],
) -> None:
    outputs = set()
    for seed in ("0", "1", "4242"):
        out = subprocess.run(
            [sys.executable, "-c", KEYS_SCRIPT],
            env=dict(subprocess_env, PYTHONHASHSEED=seed),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        outputs.add(out)
    assert len(outputs) == 1
    rows = [line.split() for line in next(iter(outputs)).splitlines()]
    assert len(rows) == 12
    assert len({row[1] for row in rows}) == 12 and len({row[2] for row in rows}) == 12


RUN_SCRIPT = textwrap.dedent(
    """
    import re, sys
    import numpy as np
    from memento import Memento
    from memento.compat.caching import Cache, FileSystemCacheProvider
    from test_compat_matrix import SelfRef, cyclic_dict, cyclic_list, kind

    store, calls = sys.argv[1], sys.argv[2]
    matrix = {
        "parameters": {"v": [np.log, re.compile("a+", re.I), cyclic_list(), cyclic_dict(),
                             SelfRef("x")]},
        "settings": {"f": np.add, "loop": cyclic_list()},
    }
    results = Memento(kind, num_workers=2, progress=False).run(matrix, cache_path=store)
    print(sum(r.was_cached for r in results), [r.inner for r in results])

    def logged(value):
        with open(calls, "a") as f:
            f.write("call\\n")
        return type(value).__name__

    cached = Cache(logged, FileSystemCacheProvider(filepath=store, table_name="calls"))
    print([cached(v) for v in (np.log, re.compile("a+"), cyclic_list(), SelfRef("y"))])
    """
)


@pytest.mark.timeout(120)
def test_ufunc_regex_and_cyclic_values_run_and_are_found_after_a_restart(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    store, calls = tmp_path / "store.sqlite", tmp_path / "calls.log"
    outputs = []
    for seed in ("1", "2"):
        outputs.append(
            subprocess.run(
                [sys.executable, "-c", RUN_SCRIPT, str(store), str(calls)],
                env=dict(subprocess_env, PYTHONHASHSEED=seed),
                capture_output=True,
                text=True,
                check=True,
            ).stdout.splitlines()
        )
    inner = "['ufunc:add', 'Pattern:add', 'list:add', 'dict:add', 'SelfRef:add']"
    assert outputs[0][0] == f"0 {inner}"
    assert outputs[1][0] == f"5 {inner}"  # every result found again by a new interpreter
    assert outputs[0][1] == outputs[1][1] == "['ufunc', 'Pattern', 'list', 'SelfRef']"
    assert calls.read_text().split() == ["call"] * 4  # the second process computed nothing


CALLS: list[Any] = []  # global, not a closure: a closure is part of a function's key


def type_name(value: Any) -> str:
    CALLS.append(value)
    return type(value).__name__


def test_cache_takes_ufuncs_regexes_and_cyclic_arguments() -> None:
    cached = Cache(type_name, MemoryCacheProvider())
    CALLS.clear()
    for value in (np.log, re.compile("x", re.S), cyclic_dict()):
        assert cached(value) == cached(value)
    assert len(CALLS) == 3
    assert default_key_provider(type_name, np.log) != default_key_provider(type_name, np.exp)


# Digests of values that had keys before ufuncs, regexes and cycles got theirs, computed with
# the encoding of before that change: existing users' keys must not move.
class GoldenPoint:
    def __init__(self, x: Any, y: Any) -> None:
        self.x, self.y = x, y


class GoldenHook:
    def __memento_key__(self) -> tuple[str, int]:
        return ("hook", 1)


for _cls in (GoldenPoint, GoldenHook):  # digests independent of this module's import name
    _cls.__module__, _cls.__qualname__ = "golden", _cls.__name__


GOLDEN = {
    "none": (None, "8ce86a6ae65d3692e7305e2c58ac62ee"),
    "true": (True, "e632b7095b0bf32c260fa4c539e9fd7b"),
    "int": (12345678901234567890, "d89f2b87fe489583bcb20fe089f8ae15"),
    "float": (0.1, "f90359e570782598d784fde433462ae4"),
    "nan": (math.nan, "21aecdac65cae835e8160ea7213600c8"),
    "negzero": (-0.0, "9977f7a0dca6309e9ae45051d8f12729"),
    "complex": (1 + 2j, "f51e63c38635b6dd75384d9e5c33af2b"),
    "str": ("héllo", "38c69b06c666de56c36766076d8265ca"),
    "bytes": (b"\x00\xff", "0b13c3883243449283628376e65d4d07"),
    "tuple": ((1, "a", None), "9edf2b9286a0d0cc8c7045255f9ab8db"),
    "list": ([1, [2, [3]]], "1cd30cbd950a87422d71db83ee196613"),
    "dict": ({"b": 1, "a": [1.5]}, "a42f25e3953e1bc39e20df4f6c6eceb3"),
    "mixed_dict": ({1: "a", "x": 2, (1, 2): None}, "028fb88e5de5faa2343bb54eaf4de72a"),
    "set": ({3, 1, 2}, "145c81ba0aeb8ff1b99904a1fad13168"),
    "frozenset": (frozenset({"x", "y"}), "60ff98ca62f4c4bbcbe5052f346a53dd"),
    "range": (range(1, 10, 2), "2dd847101a63153fefd89e050c367f47"),
    "module": (json, "fc43d31be2c9801c2632e7f8d14d4ba0"),
    "class": (fractions.Fraction, "ef48c1b33e8d14f71c65d746c867b124"),
    "builtin": (len, "8a615e37fefe41531b62a43e9ece0a50"),
    "function": (json.dumps, "b7e502f3552f92a8c5cc969024a79d9b"),
    "partial": (functools.partial(json.dumps, indent=2), "48a10eaea1cbbaa191c87fe6d0cc92bd"),
    "fraction": (fractions.Fraction(1, 3), "21385e1cda847893e8eb6ee84fa1683f"),
    "decimal": (decimal.Decimal("1.50"), "7b4c661f73b4d85659d1b7bb75a350bf"),
    "datetime": (datetime.datetime(2024, 1, 2, 3, 4, 5), "e488fe0d9de953ceb653a300d4733aa2"),
    "path": (pathlib.PurePosixPath("a/b"), "df2cce43a40c9df20a02c5dd4d2e4c10"),
    "uuid": (uuid.UUID(int=7), "91b2ceced83eb7eac1f116489ce48882"),
    "enum": (http.HTTPStatus.OK, "8e893d669ed5d0f25fbf33981ab97b35"),
    "array": (np.arange(6).reshape(2, 3), "d9c119b39eecaf55e558e43fc49c906e"),
    "objarray": (np.array([1, "a"], dtype=object), "28b5c9302ff290237210d100e82d372e"),
    "np_float": (np.float64(0.5), "1fd4c6027dec0d3bb3b685b820e62b7a"),
    "np_str": (np.str_("a"), "4528d8f0431668d4231915669dfee97d"),
    "dtype": (np.dtype("float32"), "5e20c3d8b25a6ffd1e7adca6b63c50b3"),
    "instance": (GoldenPoint(1, (2, 3)), "b5369df2e8388fee743f948df241adad"),
    "hook": (GoldenHook(), "1b78dad4a153ccbddca617af9eeab4e8"),
    "nested": (
        {"p": [GoldenPoint(0, 0)], "s": frozenset({1.5})},
        "9eb95c638ee8bef586de95f5f03a1c0c",
    ),
}


def test_values_that_had_keys_keep_them() -> None:
    assert {name: digest(encode(v)) for name, (v, _) in GOLDEN.items()} == {
        name: expected for name, (_, expected) in GOLDEN.items()
    }
    params = {"a": 1, "b": "x", "c": [1.5], "d": None}
    key = KeyMaker(json.dumps, "v1").key(params, {"s": {"k": 2}})
    assert key == "405cf3eea4556599c571de33d3e92e72"


# -- exclude ---------------------------------------------------------------------------------


def values_of(matrix: dict[str, Any], name: str = "a") -> list[Any]:
    return [getattr(c, name) for c in generate_configurations(matrix)]


@pytest.mark.parametrize(
    ("values", "excluded", "kept"),
    [
        (np.arange(3), 2, [0, 1]),
        (np.array([0.1, 0.5]), 0.5, [0]),
        (np.array(["a", "b"]), "a", [1]),
        (np.linspace(0, 1, 3), 1, [0, 1]),  # 1.2: np.float64(1.0) == 1
        ([1, 2], np.int64(2), [0]),
        ([0.5, math.nan], float("nan"), [0]),  # 1.2 could never exclude a nan
        ([[1, 2], [3]], [1, 2], [1]),
        ([np.arange(2), np.ones(2)], np.ones(2), [0]),  # 1.2 raised here
    ],
)
def test_exclude_matches_by_value(values: Any, excluded: Any, kept: list[int]) -> None:
    configs = generate_configurations({"parameters": {"a": values}, "exclude": [{"a": excluded}]})
    assert [encode(c.a) for c in configs] == [encode(list(values)[i]) for i in kept]


def test_exclude_keeps_numpy_types_and_keys_type_exact() -> None:
    configs = generate_configurations(
        {"parameters": {"a": np.arange(3), "lr": [0.5, 1]}, "exclude": [{"a": 2, "lr": 0.5}]}
    )
    assert [(type(c.a), c.a, c.lr) for c in configs] == [
        (np.int64, 0, 0.5),
        (np.int64, 0, 1),
        (np.int64, 1, 0.5),
        (np.int64, 1, 1),
        (np.int64, 2, 1),
    ]
    maker = KeyMaker(kind)
    assert maker.key({"a": 1}, {}) != maker.key({"a": 1.0}, {}) != maker.key({"a": True}, {})


def test_many_numpy_excludes_stay_one_set_look_up_per_group() -> None:
    matrix = {
        "parameters": {"a": np.arange(100), "b": np.arange(100), "c": [0.5, 1.5]},
        "exclude": [{"a": i, "b": float(j)} for i in range(20) for j in range(100)] + [{"c": 1.5}],
    }
    configs = generate_configurations(matrix)
    assert len(configs) == 80 * 100
    assert configs[0].asdict() == {"a": 20, "b": 0, "c": 0.5}
    exclusion = configs._excluded
    assert exclusion is not None and len(exclusion.tests) == 2  # type: ignore[attr-defined]
    assert pickle.loads(pickle.dumps(configs))[0] == configs[0]


def test_an_empty_exclude_entry_excludes_everything_but_includes() -> None:
    assert len(generate_configurations({"parameters": {"a": [1, 2]}, "exclude": [{}]})) == 0
    configs = generate_configurations(
        {"parameters": {"a": [1, 2]}, "exclude": [{}], "include": [{"a": 3}]}
    )
    assert [c.a for c in configs] == [3]


def test_an_exclude_entry_naming_no_parameter_warns_and_excludes_nothing() -> None:
    with pytest.warns(UserWarning, match="names 'b', which is not a parameter") as caught:
        configs = generate_configurations(
            {"parameters": {"a": [1, 2]}, "exclude": [{"a": 1, "b": 1}, {"a": 2}]}
        )
    assert [c.a for c in configs] == [1]
    assert len(caught) == 1


# -- parameter values ------------------------------------------------------------------------


def test_any_finite_iterable_gives_the_values() -> None:
    pd = pytest.importorskip("pandas")
    d = {"x": 1, "y": 2}
    assert values_of({"parameters": {"a": {3, 1, 2}}}) == [1, 2, 3]
    assert values_of({"parameters": {"a": frozenset({"b", "a"})}}) == ["a", "b"]
    assert values_of({"parameters": {"a": (i * 2 for i in range(3))}}) == [0, 2, 4]
    assert values_of({"parameters": {"a": pd.Series([0.5, 1.5])}}) == [0.5, 1.5]
    assert values_of({"parameters": {"a": d.keys()}}) == ["x", "y"]
    assert values_of({"parameters": {"a": d.values()}}) == [1, 2]
    assert values_of({"parameters": {"a": range(2)}}) == [0, 1]
    assert [list(v) for v in values_of({"parameters": {"a": np.eye(2)}})] == [[1, 0], [0, 1]]


SET_ORDER_SCRIPT = textwrap.dedent(
    """
    from memento import generate_configurations
    for values in ({"b", "a", "c"}, {("x", 1), "y", 2.5, None}, {frozenset({1}), frozenset({2})}):
        print([c.a for c in generate_configurations({"parameters": {"a": values}})])
    """
)


def test_sets_come_in_the_same_order_whatever_the_hash_seed(
    subprocess_env: dict[str, str],
) -> None:
    outputs = {
        subprocess.run(
            [sys.executable, "-c", SET_ORDER_SCRIPT],
            env=dict(subprocess_env, PYTHONHASHSEED=seed),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("0", "1", "2", "3")
    }
    assert len(outputs) == 1
    assert next(iter(outputs)).splitlines()[0] == "['a', 'b', 'c']"


def test_validating_does_not_consume_a_generator() -> None:
    matrix = {"parameters": {"a": (i for i in range(2))}}
    validate_matrix(matrix)
    assert values_of(matrix) == [0, 1]


def test_a_parameter_without_values_gives_no_configs_and_a_warning() -> None:
    with pytest.warns(UserWarning, match="Parameter 'b' has no values"):
        configs = generate_configurations({"parameters": {"a": [1, 2], "b": []}})
    assert len(configs) == 0 and list(configs) == []


def test_no_parameters_is_one_empty_config_as_in_memento_ml() -> None:
    configs = generate_configurations({"parameters": {}, "settings": {"s": 1}})
    assert len(configs) == 1 and list(configs) == [Config({"s": 1})]
    only = generate_configurations({"parameters": {}, "include": [{"a": 1}, {"a": 2}]})
    assert [c.asdict() for c in only] == [{"a": 1}, {"a": 2}]


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        ("abc", "a string is one value, so wrap it in a list: ['abc']"),
        (b"abc", "a string is one value"),
        ({"x": 1}, "use the mapping as one value wrap it in a list"),
        (3, "wrap a single value in a list"),
        (np.float64(1.5), "wrap a single value in a list"),
        (np.array(2), "wrap a single value in a list"),
        (__import__("itertools").count(), "endless iterator"),
    ],
)
def test_strings_mappings_and_scalars_are_still_errors(values: Any, needle: str) -> None:
    with pytest.raises(TypeError, match="Parameter 'lr'") as info:
        generate_configurations({"parameters": {"lr": values}})
    assert needle in str(info.value)


# -- top-level keys --------------------------------------------------------------------------


def test_extra_top_level_keys_are_kept_as_metadata(store_path: Path) -> None:
    matrix = {"name": "grid", "description": "a test grid", "parameters": {"a": [1]}}
    configs = generate_configurations(matrix)
    assert configs.metadata == {"name": "grid", "description": "a test grid"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        results = Memento(kind, executor="inline", progress=False).run(
            {**matrix, "settings": {"f": len}, "parameters": {"v": [1]}}, cache_path=store_path
        )
    assert results is not None and [r.inner for r in results] == ["int:len"]


@pytest.mark.parametrize(
    ("key", "meant"),
    [
        ("exlude", "exclude"),
        ("setings", "settings"),
        ("parameter", "parameters"),
        ("include ", "include"),
        ("Settings", "settings"),
        ("dependency", "dependencies"),
    ],
)
def test_a_misspelt_top_level_key_is_an_error_naming_the_right_one(key: str, meant: str) -> None:
    with pytest.raises(ValueError, match=f"did you mean {meant!r}"):
        generate_configurations({"parameters": {"a": [1]}, key: []})


def test_a_missing_parameters_key_points_at_a_lookalike() -> None:
    with pytest.raises(ValueError, match="is 'params' meant to be 'parameters'"):
        generate_configurations({"params": {"a": [1]}})


# -- Config and Configurations as memento-ml 1.2 made them -----------------------------------


def test_config_takes_settings_as_a_keyword_as_in_memento_ml() -> None:
    config = Config(x=1, settings={"s": 2})
    assert config.settings == {"s": 2} and config.x == 1
    assert config.asdict() == {"x": 1}
    assert config == Config({"s": 2}, x=1)
    assert Config(x=1, settings=None).settings == {}
    with pytest.raises(TypeError, match="settings twice"):
        Config({"s": 1}, x=1, settings={"s": 2})


def test_configurations_builds_from_a_list_of_configs() -> None:
    listed = [Config(x=1), Config(x=2, settings={"old": 0})]
    configs = Configurations(listed, {"s": 1})
    assert len(configs) == 2 and list(configs) == listed and configs[-1] is listed[1]
    assert configs[0:1] == [listed[0]]
    assert configs.configurations is listed and configs.settings == {"s": 1}
    assert all(c.settings == {"s": 1} for c in configs)  # as 1.2 did, settings are shared
    assert Configurations().configurations == []
    with pytest.raises(TypeError, match="item 1 is a dict"):
        Configurations([Config(x=1), {"x": 2}], {})  # type: ignore[list-item]


# Made with real memento-ml 1.2.0: a directory holding memento/__init__.py (empty, because
# 1.2's imports networkx) and 1.2's memento/configurations.py, then with that on PYTHONPATH:
#   cs = generate_configurations({"parameters": {"x": [1, 2], "name": ["a"]},
#                                 "settings": {"s": 2}})
#   base64.b64encode(pickle.dumps(cs[0])), pickle.dumps(cs), pickle.dumps(cs[1], protocol=0)
#   and pickle.dumps(Config(x=1, settings={"s": 3})).
PICKLED_BY_1_2 = {
    "config": (
        "gASVXgAAAAAAAACMFm1lbWVudG8uY29uZmlndXJhdGlvbnOUjAZDb25maWeUk5QpgZR9lCiMBV9kaWN0lH2U"
        "KIwBeJRLAYwEbmFtZZSMAWGUdYwIc2V0dGluZ3OUfZSMAXOUSwJzdWIu"
    ),
    "configurations": (
        "gASVsAAAAAAAAACMFm1lbWVudG8uY29uZmlndXJhdGlvbnOUjA5Db25maWd1cmF0aW9uc5STlCmBlH2UKIwO"
        "Y29uZmlndXJhdGlvbnOUXZQoaACMBkNvbmZpZ5STlCmBlH2UKIwFX2RpY3SUfZQojAF4lEsBjARuYW1llIwB"
        "YZR1jAhzZXR0aW5nc5R9lIwBc5RLAnN1YmgIKYGUfZQoaAt9lChoDUsCaA5oD3VoEGgRdWJlaBBoEXViLg=="
    ),
    "protocol0": (
        "Y2NvcHlfcmVnCl9yZWNvbnN0cnVjdG9yCnAwCihjbWVtZW50by5jb25maWd1cmF0aW9ucwpDb25maWcKcDEK"
        "Y19fYnVpbHRpbl9fCm9iamVjdApwMgpOdHAzClJwNAooZHA1ClZfZGljdApwNgooZHA3ClZ4CnA4CkkyCnNW"
        "bmFtZQpwOQpWYQpwMTAKc3NWc2V0dGluZ3MKcDExCihkcDEyClZzCnAxMwpJMgpzc2Iu"
    ),
    "hand_made": (
        "gASVUgAAAAAAAACMFm1lbWVudG8uY29uZmlndXJhdGlvbnOUjAZDb25maWeUk5QpgZR9lIwFX2RpY3SUfZQo"
        "jAF4lEsBjAhzZXR0aW5nc5R9lIwBc5RLA3N1c2Iu"
    ),
}


def load_1_2(name: str) -> Any:
    return pickle.loads(base64.b64decode(PICKLED_BY_1_2[name]))


def test_configs_pickled_by_memento_ml_1_2_load() -> None:
    config = load_1_2("config")
    assert isinstance(config, Config) and config == Config({"s": 2}, x=1, name="a")
    assert load_1_2("protocol0") == Config({"s": 2}, x=2, name="a")
    hand_made = load_1_2("hand_made")
    assert hand_made.asdict() == {"x": 1} and hand_made.settings == {"s": 3}
    configs = load_1_2("configurations")
    assert isinstance(configs, Configurations) and configs.settings == {"s": 2}
    assert list(configs) == [Config({"s": 2}, x=1, name="a"), Config({"s": 2}, x=2, name="a")]
    assert configs[1].settings is configs.settings and len(configs) == 2
    again = pickle.loads(pickle.dumps(config))
    assert again == config and again.settings == {"s": 2}
