from __future__ import annotations

import pickle
import tracemalloc

import numpy as np
import pytest

from memento import Config, Configurations, generate_configurations


class SVC:
    pass


class Perceptron:
    pass


def test_cartesian_product_first_parameter_varies_slowest() -> None:
    configs = generate_configurations({"parameters": {"a": [1, 2], "b": ["x", "y", "z"]}})
    assert [(c.a, c.b) for c in configs] == [
        (1, "x"),
        (1, "y"),
        (1, "z"),
        (2, "x"),
        (2, "y"),
        (2, "z"),
    ]
    assert len(configs) == 6
    assert isinstance(configs, Configurations)


def test_exclude_removes_every_matching_config_and_settings_are_shared() -> None:
    matrix = {
        "parameters": {"model": [SVC, Perceptron], "dataset": ["mnist", "cifar10"]},
        "settings": {"regularization": 0.1},
        "exclude": [{"model": SVC, "dataset": "cifar10"}],
    }
    configs = generate_configurations(matrix)
    assert [(c.model, c.dataset) for c in configs] == [
        (SVC, "mnist"),
        (Perceptron, "mnist"),
        (Perceptron, "cifar10"),
    ]
    assert configs.settings == {"regularization": 0.1}
    assert all(c.settings == {"regularization": 0.1} for c in configs)


def test_partial_exclude_matches_on_named_keys_only() -> None:
    configs = generate_configurations(
        {"parameters": {"a": [1, 2, 3], "b": [1, 2]}, "exclude": [{"a": 2}, {"b": 2, "a": 3}]}
    )
    assert [(c.a, c.b) for c in configs] == [(1, 1), (1, 2), (3, 1)]


def test_exclude_matches_by_value_as_memento_ml_did_but_configs_stay_typed() -> None:
    # memento-ml 1.2 compared with ==, so {"a": 1.0} also excluded 1 and True.
    configs = generate_configurations(
        {"parameters": {"a": [1, 1.0, True, 2]}, "exclude": [{"a": 1.0}]}
    )
    assert [c.a for c in configs] == [2]
    kept = generate_configurations({"parameters": {"a": [1, 1.0, True]}})
    assert [type(c.a) for c in kept] == [int, float, bool]
    assert len(set(kept)) == 3  # three different configs (and keys)


def test_numpy_arrays_as_values_work_with_exclude_and_eq() -> None:
    a, b = np.arange(3), np.ones(3)
    configs = generate_configurations({"parameters": {"v": [a, b]}, "exclude": [{"v": b.copy()}]})
    assert len(configs) == 1
    assert configs[0] == Config(v=np.arange(3))
    assert configs[0] != Config(v=np.arange(3).astype(float))


def test_indexing_negative_and_slices() -> None:
    configs = generate_configurations(
        {"parameters": {"a": range(4), "b": [0, 1]}, "exclude": [{"b": 1, "a": 0}]}
    )
    listed = list(configs)
    assert len(listed) == 7
    assert configs[-1] == listed[-1]
    assert configs[2:5] == listed[2:5]
    with pytest.raises(IndexError):
        configs[7]


def test_include_appends_new_configs_and_merges_extra_keys() -> None:
    configs = generate_configurations(
        {
            "parameters": {"os": ["linux", "mac"], "py": [3.10, 3.11]},
            "exclude": [{"os": "mac", "py": 3.10}],
            "include": [
                {"os": "windows", "py": 3.12},  # no match: a config of its own
                {"os": "linux", "experimental": True},  # merged into matching configs
            ],
        }
    )
    rows = [c.asdict() for c in configs]
    assert rows == [
        {"os": "linux", "py": 3.10, "experimental": True},
        {"os": "linux", "py": 3.11, "experimental": True},
        {"os": "mac", "py": 3.11},
        {"os": "windows", "py": 3.12},
    ]


def test_config_equality_includes_settings_and_types() -> None:
    a = Config(x=1)
    assert a == Config(x=1)  # no settings on either side: memento-ml 1.2 crashed here
    assert a != Config(x=1.0)
    assert a != Config(x=True)
    assert Config({"s": 1}, x=1) != Config({"s": 2}, x=1)
    assert a.asdict() == {"x": 1}
    assert hash(a) == hash(Config(x=1))


def test_config_str_and_repr_show_classes_and_functions_by_name() -> None:
    def train() -> None:
        pass

    config = Config(model=SVC, fn=train, n=3, name="a")
    text = str(config)
    assert "SVC" in text and "train" in text and "0x" not in text
    assert "SVC" in repr(config) and "0x" not in repr(config)


def test_config_pickles_and_attribute_errors_are_clear() -> None:
    config = Config({"s": [1]}, a=1)
    again = pickle.loads(pickle.dumps(config))
    assert again == config and again.settings == {"s": [1]}
    with pytest.raises(AttributeError, match="no parameter 'b'"):
        config.b  # noqa: B018


@pytest.mark.parametrize(
    ("matrix", "error", "needle"),
    [
        ([1, 2], TypeError, "must be a dict"),
        ({}, ValueError, "no 'parameters'"),
        ({"parameters": [1]}, TypeError, "matrix['parameters'] must be a dict"),
        ({"parameters": {"a": "abc"}}, TypeError, "Parameter 'a' must be a list"),
        ({"parameters": {"a": 5}}, TypeError, "wrap a single value"),
        ({"parameters": {"a": b"ab"}}, TypeError, "a string is one value"),
        ({"parameters": {"a": {"x": 1}}}, TypeError, "use the mapping as one value"),
        ({"parameters": {"settings": [1]}}, ValueError, "reserved"),
        ({"parameters": {"a": [1]}, "exlude": []}, ValueError, "Unknown matrix key 'exlude'"),
        ({"parameters": {"a": [1]}, "exlude": []}, ValueError, "did you mean 'exclude'?"),
        ({"parameters": {"a": [1]}, "exclude": {"a": 1}}, TypeError, "list of dicts"),
        ({"parameters": {"a": [1]}, "exclude": [3]}, TypeError, "got int"),
        ({"parameters": {"a": [1]}, "settings": [1]}, TypeError, "settings"),
    ],
)
def test_bad_matrices_are_rejected_with_clear_messages(
    matrix: object, error: type[Exception], needle: str
) -> None:
    with pytest.raises(error) as info:
        generate_configurations(matrix)  # type: ignore[arg-type]
    assert needle in str(info.value)


def test_a_million_configs_stay_lazy() -> None:
    matrix = {"parameters": {f"p{i}": list(range(10)) for i in range(6)}}
    tracemalloc.start()
    configs = generate_configurations(matrix)
    assert len(configs) == 10**6
    assert configs[123456].asdict() == {"p0": 1, "p1": 2, "p2": 3, "p3": 4, "p4": 5, "p5": 6}
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 5 * 2**20  # a materialised million configs would take hundreds of MiB


def test_excludes_are_compiled_not_scanned_per_entry() -> None:
    # 2,000 exclude entries over a 100,000-config grid: with per-entry work per config this
    # would be 2e8 comparisons; grouped set look-ups keep it to one look-up per config.
    values = list(range(100))
    matrix = {
        "parameters": {"a": values, "b": values, "c": list(range(10))},
        "exclude": [{"a": i, "b": j} for i in range(20) for j in range(100)],
    }
    configs = generate_configurations(matrix)
    assert len(configs) == 80 * 100 * 10
    assert configs[0].asdict() == {"a": 20, "b": 0, "c": 0}
