"""Sampled parameters and repeats: the distributions, the points, the matrix keys, real runs."""

from __future__ import annotations

import json
import math
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from memento import (
    Config,
    Configurations,
    Memento,
    MissingExtra,
    choice,
    generate_configurations,
    loguniform,
    randint,
    uniform,
)
from memento.keys.encoding import KeyMaker
from memento.matrix.sampling import hashed_uniform, sample_points

SAMPLED: dict[str, Any] = {
    "parameters": {"model": ["mlp", "cnn"]},
    "sample": {"lr": loguniform(1e-4, 1e-1), "dropout": uniform(0.0, 0.5)},
    "samples": 20,
}


def points(configs: Configurations, *names: str) -> list[tuple[Any, ...]]:
    return [tuple(c.asdict()[n] for n in names) for c in configs]


# --- distributions ---------------------------------------------------------------------------


def test_distributions_show_as_written_compare_by_value_and_pickle() -> None:
    dists = [loguniform(1e-4, 1e-1), uniform(0, 0.5), randint(1, 6), choice(["relu", "tanh"])]
    assert [repr(d) for d in dists] == [
        "loguniform(0.0001, 0.1)",
        "uniform(0.0, 0.5)",
        "randint(1, 6)",
        "choice(['relu', 'tanh'])",
    ]
    assert dists[0] == loguniform(0.0001, 0.1) and dists[0] != uniform(0.0001, 0.1)
    assert len({*dists, randint(1, 6)}) == 4
    assert [pickle.loads(pickle.dumps(d)) for d in dists] == dists
    with pytest.raises(AttributeError, match="immutable"):
        dists[1].low = 3.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("make", "error", "needle"),
    [
        (lambda: uniform(1, 1), ValueError, "needs low < high, got uniform(1, 1)"),
        (lambda: uniform(2, 1), ValueError, "needs low < high"),
        (lambda: uniform(0, math.inf), ValueError, "finite numbers"),
        (lambda: uniform("0", 1), TypeError, "takes numbers, got low='0'"),
        (lambda: loguniform(0, 1), ValueError, "positive bounds, got low=0; use uniform()"),
        (lambda: loguniform(-1, 1), ValueError, "positive bounds"),
        (lambda: loguniform(0.1, 0.01), ValueError, "needs low < high"),
        (lambda: randint(3, 3), ValueError, "needs low < high (high is included)"),
        (lambda: randint(0, 2.5), TypeError, "takes integers, got high=2.5"),
        (lambda: randint(True, 3), TypeError, "takes integers"),
        (lambda: choice([]), ValueError, "needs at least one value"),
        (lambda: choice("abc"), TypeError, "wrap it in a list for one value: choice(['abc'])"),
        (lambda: choice({"a": 1}), TypeError, "got a mapping"),
        (lambda: choice(3), TypeError, "takes a list of values, got int"),
    ],
)
def test_bad_arguments_are_clear_errors(make: Any, error: type[Exception], needle: str) -> None:
    with pytest.raises(error) as caught:
        make()
    assert needle in str(caught.value)


def test_values_are_plain_python_and_stay_in_range() -> None:
    qs = [0.0, 1e-12, 0.25, 0.5, 0.999999, math.nextafter(1.0, 0.0)]
    for u in qs:
        for dist in (uniform(-1, 1), loguniform(1e-4, 1e-1)):
            value = dist.ppf(u)
            assert type(value) is float and dist.low <= value < dist.high
        value = randint(1, 6).ppf(u)
        assert type(value) is int and 1 <= value <= 6
    assert randint(1, 6).ppf(math.nextafter(1.0, 0.0)) == 6  # high is included
    assert randint(1, 6).ppf(0.0) == 1
    assert [randint(0, 3).ppf(u) for u in (0.0, 0.25, 0.5, 0.75)] == [0, 1, 2, 3]
    assert loguniform(1e-4, 1e-2).ppf(0.5) == pytest.approx(1e-3)
    assert choice([1, "a", None]).ppf(0.5) == "a"


def test_uniforms_are_spread_evenly_and_every_option_is_drawn() -> None:
    us = [hashed_uniform(0, i, "x") for i in range(4000)]
    assert all(0.0 <= u < 1.0 for u in us)
    assert abs(sum(us) / len(us) - 0.5) < 0.02
    assert len(set(us)) == len(us)
    drawn = [p[0] for p in sample_points({"k": randint(0, 4)}, 500)]
    assert set(drawn) == {0, 1, 2, 3, 4}
    options = ["x", "y", "z", None]
    assert {p[0] for p in sample_points({"c": choice(options)}, 200)} == set(options)


# --- the points in a matrix ------------------------------------------------------------------


def test_sampled_points_are_crossed_with_the_parameters() -> None:
    configs = generate_configurations(SAMPLED)
    assert len(configs) == 40
    assert repr(configs) == "<Configurations: 40 configs of ['model', 'lr', 'dropout']>"
    assert list(configs[0]) == ["model", "lr", "dropout"]
    assert [c.model for c in configs] == ["mlp"] * 20 + ["cnn"] * 20
    mlp, cnn = points(configs, "lr", "dropout")[:20], points(configs, "lr", "dropout")[20:]
    assert mlp == cnn and len(set(mlp)) == 20  # the same 20 points for each model
    assert all(1e-4 <= lr < 1e-1 and 0.0 <= d < 0.5 for lr, d in mlp)
    assert all(type(lr) is float and type(d) is float for lr, d in mlp)


def test_points_are_prefix_stable_and_do_not_move_when_the_grid_grows() -> None:
    base = points(generate_configurations(SAMPLED), "model", "lr", "dropout")
    more = points(generate_configurations({**SAMPLED, "samples": 30}), "model", "lr", "dropout")
    assert more[:20] == base[:20]  # mlp's first 20 points are the 20 points
    assert set(base) < set(more)
    three = {**SAMPLED, "parameters": {"model": ["mlp", "cnn", "rnn"]}}
    assert set(base) < set(points(generate_configurations(three), "model", "lr", "dropout"))
    # another sampled name leaves the others' values alone (random method)
    wider = {**SAMPLED, "sample": {**SAMPLED["sample"], "wd": loguniform(1e-6, 1e-3)}}
    assert points(generate_configurations(wider), "lr", "dropout") == points(
        generate_configurations(SAMPLED), "lr", "dropout"
    )
    # and the seed does move them
    other = points(generate_configurations({**SAMPLED, "seed": 1}), "lr")
    assert not set(other) & set(points(generate_configurations(SAMPLED), "lr"))
    assert points(generate_configurations({**SAMPLED, "seed": 0}), "lr") == points(
        generate_configurations(SAMPLED), "lr"
    )


_PRINT_POINTS = """
import json, sys
from memento import generate_configurations, loguniform, randint, uniform, choice
matrix = {
    "parameters": {"model": ["mlp"]},
    "sample": {"lr": loguniform(1e-4, 1e-1), "dropout": uniform(0.0, 0.5),
               "layers": randint(1, 4), "act": choice(["relu", "tanh"])},
    "samples": 8, "seed": 7,
}
out = [[c.lr.hex(), c.dropout.hex(), c.layers, c.act] for c in generate_configurations(matrix)]
print(json.dumps(out))
"""


def test_points_are_the_same_in_other_processes_whatever_the_hash_seed(
    subprocess_env: dict[str, str],
) -> None:
    seen = []
    for hash_seed in ("1", "2"):
        env = {**subprocess_env, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run(
            [sys.executable, "-c", _PRINT_POINTS],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        seen.append(json.loads(out))
    ns: dict[str, Any] = {}
    exec(_PRINT_POINTS.split("out = ")[0], ns)
    here = [
        [c.lr.hex(), c.dropout.hex(), c.layers, c.act]
        for c in generate_configurations(ns["matrix"])
    ]
    assert seen[0] == seen[1] == here
    # and pinned: a change of the scheme would lose every stored sampled result
    assert hashed_uniform(0, 0, "lr") == float.fromhex("0x1.441c99f881f0ep-2")


def test_sobol_points_are_balanced_prefix_stable_and_seeded() -> None:
    pytest.importorskip("scipy.stats.qmc")
    matrix = {
        "parameters": {},
        "sample": {"x": uniform(0.0, 1.0), "k": randint(0, 15)},
        "samples": 16,
        "method": "sobol",
    }
    sobol = points(generate_configurations(matrix), "x", "k")
    xs = sorted(x for x, _ in sobol)
    assert [int(x * 16) for x in xs] == list(range(16))  # one point in each sixteenth
    assert sorted(k for _, k in sobol) == list(range(16))
    assert all(type(x) is float and type(k) is int for x, k in sobol)
    more = points(generate_configurations({**matrix, "samples": 40}), "x", "k")
    assert more[:16] == sobol
    assert points(generate_configurations(matrix), "x", "k") == sobol
    assert points(generate_configurations({**matrix, "seed": 3}), "x", "k") != sobol
    randomly = points(generate_configurations({**matrix, "method": "random"}), "x", "k")
    assert randomly != sobol


def test_sobol_without_scipy_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "scipy", None)  # as if scipy were not installed
    with pytest.raises(MissingExtra) as caught:
        generate_configurations({**SAMPLED, "method": "sobol"})
    message = str(caught.value)
    assert "A matrix with method 'sobol' needs the 'scipy' package" in message
    assert "pip install 'memento-grid[sampling]'" in message


# --- repeats ---------------------------------------------------------------------------------


def test_repeats_add_a_last_parameter_and_nothing_without_them() -> None:
    configs = generate_configurations({**SAMPLED, "samples": 2, "repeats": 3})
    assert len(configs) == 12
    assert list(configs[0]) == ["model", "lr", "dropout", "repeat"]
    assert [c.repeat for c in configs] == [0, 1, 2] * 4
    assert all(type(c.repeat) is int for c in configs)
    assert configs[0].lr == configs[2].lr != configs[3].lr
    plain = generate_configurations({"parameters": {"a": [1, 2]}, "repeats": 2})
    assert [c.asdict() for c in plain] == [
        {"a": 1, "repeat": 0},
        {"a": 1, "repeat": 1},
        {"a": 2, "repeat": 0},
        {"a": 2, "repeat": 1},
    ]
    assert "repeat" not in generate_configurations({"parameters": {"a": [1]}})[0]
    only = generate_configurations({"parameters": {}, "repeats": 2})
    assert [c.asdict() for c in only] == [{"repeat": 0}, {"repeat": 1}]


def test_keys_of_a_plain_matrix_do_not_change() -> None:
    # Pinned: the same key as before sampling and repeats existed.
    config = generate_configurations({"parameters": {"a": [1]}, "settings": {"s": 2}})[0]
    keymaker = KeyMaker(_double)
    assert keymaker.key(config._params, config.settings) == keymaker.key({"a": 1}, {"s": 2})
    assert config == Config({"s": 2}, a=1)


def _double(context: Any, config: Any) -> Any:
    return config.a * 2


def test_lazy_configurations_index_slice_iterate_and_pickle() -> None:
    matrix = {**SAMPLED, "samples": 3, "repeats": 2, "exclude": [{"model": "cnn", "repeat": 1}]}
    configs = generate_configurations(matrix)
    listed = list(configs)
    assert len(configs) == len(listed) == 9
    assert [configs[i] for i in range(len(configs))] == listed
    assert configs[-1] == listed[-1] and configs[2:5] == listed[2:5]
    assert not [c for c in listed if c.model == "cnn" and c.repeat == 1]
    again = pickle.loads(pickle.dumps(configs))
    assert list(again) == listed and len(again) == 9


# --- exclude and include with sampled names --------------------------------------------------


def test_exclude_and_include_see_sampled_names_as_parameters() -> None:
    base = generate_configurations({**SAMPLED, "samples": 3})
    first_lr = base[0].lr
    excluded = generate_configurations(
        {**SAMPLED, "samples": 3, "exclude": [{"model": "mlp", "lr": first_lr}]}
    )
    assert len(excluded) == 5 and Config(**base[0].asdict()) not in list(excluded)
    merged = generate_configurations(
        {**SAMPLED, "samples": 3, "include": [{"lr": first_lr, "note": "best"}]}
    )
    notes = [c.asdict().get("note") for c in merged]
    assert notes == ["best", None, None, "best", None, None]


def test_include_of_several_points_gives_several_configs() -> None:
    # Each hand-picked point is a config of its own (GitHub Actions' rule for an entry that
    # matches no combination): they do not collapse into one.
    picked = [{"lr": 0.1, "dropout": 0.2}, {"lr": 0.01, "dropout": 0.3}, {"lr": 0.001}]
    configs = generate_configurations({**SAMPLED, "samples": 2, "include": picked})
    assert len(configs) == 4 + 3
    assert [c.asdict() for c in configs][-3:] == picked
    repeated = generate_configurations(
        {**SAMPLED, "samples": 2, "include": picked[:2], "repeats": 2}
    )
    assert [c.asdict() for c in repeated][-4:] == [
        {"lr": 0.1, "dropout": 0.2, "repeat": 0},
        {"lr": 0.1, "dropout": 0.2, "repeat": 1},
        {"lr": 0.01, "dropout": 0.3, "repeat": 0},
        {"lr": 0.01, "dropout": 0.3, "repeat": 1},
    ]


def test_include_configs_of_their_own_get_the_points_and_repeats() -> None:
    configs = generate_configurations(
        {**SAMPLED, "samples": 2, "repeats": 2, "include": [{"model": "rnn", "repeat": 9}]}
    )
    sampled = points(configs, "lr", "dropout")[:4:2]
    rnn = [c.asdict() for c in configs if c.model == "rnn"]
    assert rnn == [{"model": "rnn", "lr": lr, "dropout": d, "repeat": 9} for lr, d in sampled]
    # no parameters: the entries are the configs (as in memento-ml 1.2), each repeated
    only = generate_configurations(
        {"parameters": {}, "include": [{"a": 1}, {"a": 2}], "repeats": 2}
    )
    assert [c.asdict() for c in only] == [
        {"a": 1, "repeat": 0},
        {"a": 1, "repeat": 1},
        {"a": 2, "repeat": 0},
        {"a": 2, "repeat": 1},
    ]
    drawn = generate_configurations(
        {
            "parameters": {},
            "include": [{"a": 1}, {"a": 2}],
            "sample": SAMPLED["sample"],
            "samples": 3,
        }
    )
    assert [c.a for c in drawn] == [1, 1, 1, 2, 2, 2]
    assert points(drawn, "lr")[:3] == points(drawn, "lr")[3:]


# --- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "error", "needle"),
    [
        ({"sampels": 20}, ValueError, "Unknown matrix key 'sampels' (with value 20): did you "),
        ({"repeat": 3}, ValueError, "did you mean 'repeats'?"),
        ({"samples": 0}, ValueError, "matrix['samples'] must be an int >= 1, got 0"),
        ({"samples": "20"}, TypeError, "matrix['samples'] must be an int >= 1, got str"),
        ({"samples": True}, TypeError, "matrix['samples'] must be an int >= 1, got bool"),
        ({"sample": 20}, TypeError, "(the number of points goes in 'samples')"),
        ({"sample": {}}, ValueError, "matrix['sample'] is empty"),
        (
            {"sample": {"lr": [0.1, 0.01]}},
            TypeError,
            "matrix['sample']['lr'] must be a distribution (memento's loguniform, uniform, "
            "randint or choice), got list: [0.1, 0.01]; for a list of values",
        ),
        ({"sample": {"model": uniform(0, 1)}}, ValueError, "'model' is both in"),
        ({"sample": {"settings": uniform(0, 1)}}, ValueError, "'settings' is a reserved"),
        ({"samples": None}, ValueError, "matrix['sample'] needs matrix['samples']"),
        ({"method": "Sobol"}, ValueError, "matrix['method'] must be 'random' or 'sobol'"),
        ({"seed": 1.5}, TypeError, "matrix['seed'] must be an int"),
        ({"repeats": 0}, ValueError, "matrix['repeats'] must be an int >= 1, got 0"),
        ({"repeats": 2.0}, TypeError, "matrix['repeats'] must be an int >= 1, got float"),
        (
            {"repeats": 2, "parameters": {"repeat": [0, 1]}},
            ValueError,
            "a parameter 'repeat' and matrix['repeats']",
        ),
        (
            {"repeats": 2, "sample": {"repeat": randint(0, 3)}},
            ValueError,
            "matrix['sample'] has 'repeat' and matrix['repeats']",
        ),
    ],
)
def test_bad_sampling_keys_name_the_key_and_what_is_expected(
    changes: dict[str, Any], error: type[Exception], needle: str
) -> None:
    matrix = {**SAMPLED, **changes}
    matrix = {k: v for k, v in matrix.items() if v is not None}
    with pytest.raises(error) as caught:
        generate_configurations(matrix)
    assert needle in str(caught.value)


def test_samples_or_method_without_sample_are_errors_seed_alone_is_not() -> None:
    for key, value in (("samples", 5), ("method", "sobol")):
        with pytest.raises(ValueError, match=rf"matrix\['{key}'\] is given without"):
            generate_configurations({"parameters": {"a": [1]}, key: value})
    configs = generate_configurations({"parameters": {"a": [1]}, "seed": 3})
    assert [c.asdict() for c in configs] == [{"a": 1}] and configs.metadata == {}


# --- real runs -------------------------------------------------------------------------------

_EXPERIMENTS = """
import random


def train(context, config):
    rng = random.Random(context.seed)
    return {"seed": context.seed, "key": context.key, "noise": rng.random(),
            "score": config.lr * 10 + config.dropout}
"""

_RERUN = """
import json, sys
from memento import Memento, loguniform, uniform
from sampled_experiments import train

samples, models = int(sys.argv[2]), sys.argv[3].split(",")
matrix = {
    "parameters": {"model": models},
    "sample": {"lr": loguniform(1e-4, 1e-1), "dropout": uniform(0.0, 0.5)},
    "samples": samples,
    "seed": 0,
}
results = Memento(train, executor="process", num_workers=2, progress=False).run(
    matrix, cache_path=sys.argv[1]
)
print(json.dumps({"ran": sum(not r.was_cached for r in results), "total": len(results),
                  "keys": sorted(r.key for r in results)}))
"""


@pytest.fixture
def experiments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A module of experiments, importable here, in workers and in scripts."""
    folder = tmp_path / "mods"
    folder.mkdir()
    (folder / "sampled_experiments.py").write_text(_EXPERIMENTS)
    (folder / "rerun.py").write_text(_RERUN)
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv("PYTHONPATH", str(folder))
    monkeypatch.delitem(sys.modules, "sampled_experiments", raising=False)
    return folder


def _rerun(folder: Path, store: Path, env: dict[str, str], samples: int, models: str) -> Any:
    env = {**env, "PYTHONPATH": f"{folder}:{env['PYTHONPATH']}"}
    done = subprocess.run(
        [sys.executable, str(folder / "rerun.py"), str(store), str(samples), models],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.timeout(300)
def test_a_sampled_grid_reruns_cached_and_grows_running_only_new_configs(
    experiments: Path, store_path: Path, subprocess_env: dict[str, str]
) -> None:
    from sampled_experiments import train  # type: ignore[import-not-found]

    matrix = {
        "parameters": {"model": ["mlp", "cnn"]},
        "sample": {"lr": loguniform(1e-4, 1e-1), "dropout": uniform(0.0, 0.5)},
        "samples": 6,
        "seed": 0,
    }
    memento = Memento(train, executor="process", num_workers=2, progress=False)
    first = memento.run(matrix, cache_path=store_path)
    assert first is not None and len(first) == 12
    assert not any(r.was_cached for r in first)
    assert [r.config.lr for r in first[:6]] == [r.config.lr for r in first[6:]]

    again = _rerun(experiments, store_path, subprocess_env, 6, "mlp,cnn")
    assert again == {"ran": 0, "total": 12, "keys": sorted(r.key for r in first)}

    grown = _rerun(experiments, store_path, subprocess_env, 9, "mlp,cnn,rnn")
    assert grown["total"] == 27 and grown["ran"] == 27 - 12  # 3 new points, one new model
    assert set(grown["keys"]) > set(again["keys"])


@pytest.mark.timeout(300)
def test_repeats_run_each_config_with_its_own_stable_seed(
    experiments: Path, tmp_path: Path
) -> None:
    from sampled_experiments import train

    matrix = {
        "parameters": {"model": ["mlp"]},
        "sample": {"lr": loguniform(1e-4, 1e-1), "dropout": uniform(0.0, 0.5)},
        "samples": 2,
        "repeats": 3,
    }
    memento = Memento(train, executor="process", num_workers=2, progress=False)
    one = memento.run(matrix, cache_path=tmp_path / "one.sqlite")
    two = memento.run(matrix, cache_path=tmp_path / "two.sqlite")  # computed afresh
    assert one is not None and two is not None
    assert [r.config.repeat for r in one] == [0, 1, 2, 0, 1, 2]
    assert not any(r.was_cached for r in two)
    keys = [r.key for r in one]
    seeds = [r.inner["seed"] for r in one]
    assert len(set(keys)) == 6 and len(set(seeds)) == 6
    assert all(isinstance(s, int) and 0 <= s < 2**32 for s in seeds)
    assert [r.inner["key"] for r in one] == keys  # the worker's context had the same key
    assert seeds == [int(k[:8], 16) for k in keys]
    assert [r.inner for r in two] == [r.inner for r in one]  # the same seeds, the same draws


def test_a_dry_run_lists_the_sampled_configs(
    experiments: Path, store_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sampled_experiments import train

    matrix = {**SAMPLED, "samples": 3, "repeats": 2}
    assert Memento(train, progress=False).run(matrix, dry_run=True, cache_path=store_path) is None
    out = capsys.readouterr().out
    listed = [line.split("]", 1) for line in out.splitlines() if "lr=" in line]
    configs = generate_configurations(matrix)
    assert [(state.strip("[ "), config.strip()) for state, config in listed] == [
        ("new", str(c)) for c in configs
    ]
    assert "12 configs" in out and "model='cnn', lr=" in out and "repeat=1" in out
    assert not store_path.exists()


def test_a_context_with_a_hand_made_key_still_has_a_stable_seed() -> None:
    from memento import Context

    assert Context("0123abcdffff").seed == 0x0123ABCD
    seed = Context("my experiment").seed
    assert seed == Context("my experiment").seed != Context("my experiment 2").seed
    assert isinstance(seed, int) and 0 <= seed < 2**32
