"""``memento run TARGET``: launch a grid from the command line, with its matrix from a file.

::

    memento run train.py:experiment -p lr=0.1,0.01 -p model=mlp,cnn -s epochs=20 --workers 4
    memento run mypkg.experiments:train --matrix grid.yaml -p seed=range(5) --dry-run

The experiment is loaded with :func:`memento.view.import_legacy.loaded_experiment`, as
``python train.py`` would define it, so that the keys are those a Python run of the same grid
computes: a grid launched here and the same grid run from Python share their results.

A matrix file (:func:`load_matrix`) holds what a Python matrix holds (``parameters``,
``settings``, ``exclude``, ``include``, the sampling keys), as YAML or JSON. Classes and
functions are named by import path and arrive as the objects themselves (never called): in
YAML ``!py sklearn.svm.SVC`` or ``!py mypkg.models:MLP``, in JSON ``{"$py": "sklearn.svm.SVC"}``.
A distribution to sample from is ``!loguniform [1e-4, 1e-1]`` (JSON ``{"$loguniform": [1e-4,
1e-1]}``), and likewise ``!uniform``, ``!randint``, ``!choice``. Values given with ``-p`` and
``-s`` are read as YAML too, so ``0.1`` is a float, ``true`` a bool and ``mlp`` a string.

Everything a user can get wrong (a TARGET that does not import, a wrong signature, a file that
is not valid YAML, a misspelt matrix key, ``-p lr`` without ``=``) is one line, ``Error: ...``,
and exit status 1, before anything runs and before a store is created. See docs/cli.md.
"""

from __future__ import annotations

import importlib
import json
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Literal, cast

import click
import yaml

from memento._util.text import display_value, truncate
from memento.exceptions import MementoError, RunInterrupted
from memento.keys.identity import MAIN_MODULES, module_name
from memento.matrix.sampling import Distribution, choice, loguniform, randint, uniform
from memento.results.reading import config_label
from memento.results.result import Result, ResultList
from memento.run.memento import Memento
from memento.store.backends import redact, store_location
from memento.view.import_legacy import loaded_experiment

#: The distributions a matrix file may name with a tag (``!loguniform [a, b]``).
DISTRIBUTIONS: dict[str, Callable[..., Distribution]] = {
    "loguniform": loguniform,
    "uniform": uniform,
    "randint": randint,
    "choice": choice,
}
_EXECUTORS = ("process", "thread", "inline")
CodeChange = Literal["warn", "rerun", "ignore"]
#: Rows of the results table printed at the end of a run.
TABLE_LIMIT = 50
_RANGE = re.compile(r"range\((.*)\)", re.DOTALL)
_OPENERS = {"[": "]", "(": ")", "{": "}"}


# -- references: `!py module.attr` and {"$py": "module:attr"} -----------------------------------
def resolve_reference(path: str) -> Any:
    """The class or function ``path`` names, imported, not called.

    ``package.module:Name.attr`` says where the module ends; ``package.module.Name`` is
    read as the longest prefix that imports, then attributes. A name the script that is
    being run defines (``train:MLP`` while ``train.py`` runs) is the script's own object.

    Example::

        resolve_reference("collections:OrderedDict")  # the class OrderedDict
    """
    text = path.strip() if isinstance(path, str) else ""
    if not text or text.startswith((":", ".")) or text.endswith((":", ".")):
        raise ValueError(
            f"Reference {path!r}: give an import path, such as sklearn.svm.SVC or mypkg.models:MLP"
        )
    if ":" in text:
        module, _, attrs = text.partition(":")
        splits = [(module, attrs)]
    else:
        parts = text.split(".")
        splits = [(".".join(parts[:i]), ".".join(parts[i:])) for i in range(len(parts) - 1, 0, -1)]
    script = _from_script(splits)
    if script is not None:
        return script
    for module, attrs in splits:
        try:
            found: Any = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name is not None and not f"{module}.".startswith(f"{exc.name}."):
                raise ValueError(_import_failed(path, module, exc)) from None
            continue  # not a module: perhaps a shorter prefix is, and this an attribute
        except Exception as exc:
            raise ValueError(_import_failed(path, module, exc)) from None
        # The longest prefix that imports is the module; the rest must be its attributes.
        where = module
        for attr in attrs.split("."):
            if not hasattr(found, attr):
                raise ValueError(f"Reference {path!r} cannot be resolved: {where} has no {attr!r}")
            found = getattr(found, attr)
            where = f"{where}.{attr}"
        return found
    raise ValueError(f"Reference {path!r} cannot be resolved: no module {splits[-1][0]!r}")


def _import_failed(path: str, module: str, exc: BaseException) -> str:
    detail = " ".join(str(exc).split())
    return f"Reference {path!r}: importing {module} failed: {type(exc).__name__}: {detail}"


def _from_script(splits: Sequence[tuple[str, str]]) -> Any:
    """What the running script (``__main__``, as loaded for TARGET) defines under a name."""
    main = sys.modules.get("__main__")
    for module, attrs in splits:
        found: Any = main
        for attr in attrs.split("."):
            found = getattr(found, attr, None)
        if found is None or getattr(found, "__module__", None) not in MAIN_MODULES:
            continue
        if module_name(found) == module:
            return found
    return None


def distribution(name: str, args: Any) -> Distribution:
    """The distribution ``name`` (one of :data:`DISTRIBUTIONS`) made from ``args`` as a file
    gives them: a list is the arguments (for ``choice``, the options), a dict the keyword
    arguments.

    Example::

        distribution("loguniform", [1e-4, 1e-1])  # loguniform(0.0001, 0.1)
    """
    func = DISTRIBUTIONS[name]
    try:
        if isinstance(args, Mapping):
            return func(**args)
        if isinstance(args, list) and name != "choice":
            return func(*args)
        return func(args)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"!{name} {args!r}: {' '.join(str(exc).split())}") from None


# -- YAML -----------------------------------------------------------------------------------------
class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, with ``!py`` and the distribution tags, and YAML 1.2's floats:
    ``1e-3`` is a float (in PyYAML's YAML 1.1 it would be the string "1e-3")."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _construct_py(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if not isinstance(node, yaml.ScalarNode):
        raise ValueError(f"!py takes an import path, such as !py sklearn.svm.SVC ({_where(node)})")
    return resolve_reference(loader.construct_scalar(node))


def _construct_distribution(name: str) -> Callable[[yaml.SafeLoader, yaml.Node], Any]:
    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
        args: Any
        if isinstance(node, yaml.SequenceNode):
            args = loader.construct_sequence(node, deep=True)
        elif isinstance(node, yaml.MappingNode):
            args = loader.construct_mapping(node, deep=True)
        else:
            args = loader.construct_object(node)
        return distribution(name, args)

    return construct


_Loader.add_constructor("!py", _construct_py)
for _name in DISTRIBUTIONS:
    _Loader.add_constructor(f"!{_name}", _construct_distribution(_name))


def _where(node: yaml.Node) -> str:
    mark = node.start_mark
    return f"line {mark.line + 1}, column {mark.column + 1}"


def _yaml_error(source: str, exc: yaml.YAMLError) -> str:
    problem = getattr(exc, "problem", None) or str(exc)
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{source} is not valid YAML: {' '.join(str(problem).split())}{where}"


def load_yaml(text: str, source: str = "the value") -> Any:
    """``text`` read as YAML with memento's tags (``!py``, ``!loguniform``, ...)."""
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ValueError(_yaml_error(source, exc)) from None


# -- JSON -----------------------------------------------------------------------------------------
def _json_object(obj: dict[str, Any]) -> Any:
    tags = [k for k in obj if isinstance(k, str) and k.startswith("$")]
    if not tags:
        return obj
    if len(obj) != 1:
        raise ValueError(
            f'{{"{tags[0]}": ...}} must be an object with that one key, '
            f"got {truncate(repr(obj), 80)}"
        )
    tag, value = tags[0], obj[tags[0]]
    if tag == "$py":
        if not isinstance(value, str):
            raise ValueError(f'{{"$py": ...}} takes an import path string, got {value!r}')
        return resolve_reference(value)
    if tag[1:] in DISTRIBUTIONS:
        return distribution(tag[1:], value)
    known = ", ".join(f'"${n}"' for n in ("py", *DISTRIBUTIONS))
    raise ValueError(f"Unknown tag {tag!r} in a JSON matrix: use one of {known}")


def load_json(text: str, source: str = "the value") -> Any:
    """``text`` read as JSON, with ``{"$py": path}`` and ``{"$loguniform": [a, b]}`` objects."""
    try:
        return json.loads(text, object_hook=_json_object)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{source} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from None


# -- matrix files ---------------------------------------------------------------------------------
def load_matrix(path: str | Path) -> dict[str, Any]:
    """The matrix in a YAML (``.yaml``, ``.yml``, or anything else) or JSON (``.json``) file.

    Keys pass through as written (``parameters``, ``settings``, ``exclude``, ``include``,
    ``sample``, ``samples``, ``seed``, ``method``, ``repeats``); their checks are the matrix's
    own. Raises ``ValueError`` with a one-line message naming the file.

    Example (``grid.yaml``)::

        parameters:
          model: [!py sklearn.svm.SVC, !py sklearn.linear_model.Perceptron]
          lr: [0.1, 1e-2]
        settings: {epochs: 20}
        sample: {dropout: !uniform [0.0, 0.5]}
        samples: 10

    ``load_matrix("grid.yaml")["parameters"]["model"][0] is sklearn.svm.SVC``.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"No matrix file {file}: check the path given to --matrix") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"The matrix file {file} cannot be read: {exc}") from None
    if file.suffix.lower() == ".json":
        matrix = load_json(text, str(file))
    else:
        matrix = load_yaml(text, str(file))
    if matrix is None:
        matrix = {}
    if not isinstance(matrix, dict):
        raise ValueError(
            f"{file} must hold a mapping with a 'parameters' key, got {type(matrix).__name__}: "
            f"{truncate(repr(matrix), 60)}"
        )
    return matrix


# -- -p and -s ------------------------------------------------------------------------------------
def split_items(text: str) -> list[str]:
    """``text`` split on the commas outside quotes and brackets: ``a,'b,c',range(1,3)`` gives
    ``["a", "'b,c'", "range(1,3)"]``."""
    items: list[str] = []
    current: list[str] = []
    closing: list[str] = []
    quote = ""
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in _OPENERS:
            closing.append(_OPENERS[char])
        elif closing and char == closing[-1]:
            closing.pop()
        elif char == "," and not closing:
            items.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    if quote or closing:
        raise ValueError(f"{text!r} has an unclosed {quote or 'bracket'}")
    items.append("".join(current).strip())
    return items


def parse_range(text: str) -> list[int] | None:
    """``range(a, b[, step])`` as the list of its ints; ``None`` when ``text`` is not one."""
    match = _RANGE.fullmatch(text.strip())
    if match is None:
        return None
    args = [a.strip() for a in match.group(1).split(",")]
    if not 1 <= len(args) <= 3 or not all(re.fullmatch(r"[-+]?[0-9]+", a) for a in args):
        raise ValueError(
            f"{text!r}: give range(stop), range(start, stop) or range(start, stop, step), "
            "with integers"
        )
    numbers = [int(a) for a in args]
    if len(numbers) == 3 and numbers[2] == 0:
        raise ValueError(f"{text!r}: the step of a range cannot be 0")
    return list(range(*numbers))


def _assignment(item: str, option: str, example: str) -> tuple[str, str]:
    name, sep, raw = item.partition("=")
    name = name.strip()
    if not sep or not name:
        raise ValueError(f"{option} {item!r}: write {option} NAME=VALUE, e.g. {option} {example}")
    if not raw.strip():
        raise ValueError(f"{option} {item!r} gives {name} no value: e.g. {option} {example}")
    return name, raw.strip()


def parse_parameter(item: str) -> tuple[str, list[Any]]:
    """``-p NAME=V1,V2,...``: the name and its values (YAML scalars; ``range(a,b[,step])``
    expands; ``NAME=[V1,V2]`` is a YAML list of the values).

    Example::

        parse_parameter("lr=0.1,1e-2")  # ("lr", [0.1, 0.01])
    """
    name, raw = _assignment(item, "-p", "lr=0.1,0.01")
    where = f"-p {item!r}"
    try:
        if raw.startswith("[") and raw.endswith("]") and len(split_items(raw)) == 1:
            values = load_yaml(raw, where)
            return name, list(values) if isinstance(values, list) else [values]
        out: list[Any] = []
        for piece in split_items(raw):
            if not piece:
                raise ValueError(f"{where} has an empty value between commas")
            expanded = parse_range(piece)
            out.extend(expanded if expanded is not None else [load_yaml(piece, where)])
        return name, out
    except ValueError as exc:
        message = str(exc)
        raise ValueError(message if message.startswith(where) else f"{where}: {message}") from None


def parse_setting(item: str) -> tuple[str, Any]:
    """``-s NAME=VALUE``: the name and its value (one YAML value; ``range(...)`` a list)."""
    name, raw = _assignment(item, "-s", "epochs=20")
    where = f"-s {item!r}"
    try:
        expanded = parse_range(raw)
        return name, expanded if expanded is not None else load_yaml(raw, where)
    except ValueError as exc:
        message = str(exc)
        raise ValueError(message if message.startswith(where) else f"{where}: {message}") from None


def build_matrix(
    matrix: Mapping[str, Any],
    parameters: Sequence[tuple[str, list[Any]]],
    settings: Sequence[tuple[str, Any]],
) -> dict[str, Any]:
    """``matrix`` with ``-p`` values replacing (or adding) parameters and ``-s`` values set.

    A ``-p`` parameter that the matrix samples (``sample``) is taken out of ``sample``: the
    values given on the command line are the ones to run.
    """
    out = dict(matrix)
    if parameters:
        params = out.get("parameters")
        params = dict(params) if isinstance(params, Mapping) else {}
        sample = out.get("sample")
        for name, values in parameters:
            params[name] = values
            if isinstance(sample, Mapping) and name in sample:
                sample = {k: v for k, v in sample.items() if k != name}
        out["parameters"] = params
        if sample is not None:
            out["sample"] = sample
    if settings:
        given = out.get("settings")
        merged = dict(given) if isinstance(given, Mapping) else {}
        merged.update(settings)
        out["settings"] = merged
    out.setdefault("parameters", {})
    return out


# -- the command ----------------------------------------------------------------------------------
class _RunCommand(click.Command):
    """A bad option value is a one-line ``Error:`` and exit status 1, like every other bad
    input of ``memento run``; an unknown option stays click's usage error (exit status 2)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except (click.BadParameter, click.BadOptionUsage) as exc:
            raise click.ClickException(exc.format_message()) from None


def _one_line(exc: BaseException) -> click.ClickException:
    return click.ClickException(" ".join(str(exc).split()))


@click.command("run", cls=_RunCommand)
@click.argument("target", metavar="TARGET")
@click.option(
    "--matrix",
    "-m",
    "matrix_file",
    metavar="FILE",
    help="The matrix, as YAML (.yaml, .yml) or JSON (.json). See docs/cli.md.",
)
@click.option(
    "-p",
    "--param",
    "params",
    multiple=True,
    metavar="NAME=V1,V2",
    help="Run the parameter NAME over these values (YAML scalars; range(a,b[,step]) "
    "expands), replacing its values in the matrix file or adding it (repeatable).",
)
@click.option(
    "-s",
    "--setting",
    "settings",
    multiple=True,
    metavar="NAME=VALUE",
    help="Set the setting NAME (config.settings) to VALUE, a YAML value (repeatable).",
)
@click.option(
    "--store",
    metavar="STORE",
    help="The store [default: $MEMENTO_CACHE_PATH, else ./memento.sqlite].",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    metavar="N",
    help="Parallel workers [default: the CPUs].",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Stop an experiment after this long and record it as failed.",
)
@click.option(
    "--retries",
    type=click.IntRange(min=0),
    metavar="N",
    default=0,
    show_default=True,
    help="Extra attempts.",
)
@click.option(
    "--retry-on",
    metavar="KINDS",
    help="Which failures --retries applies to, comma-separated kinds (error, timeout, crash, "
    "oom, interrupted, infrastructure) [default: crash,oom,infrastructure,interrupted].",
)
@click.option(
    "--max-failures",
    type=click.IntRange(min=1),
    metavar="K",
    help="Stop submitting after K failures; the rest run next time.",
)
@click.option(
    "--threads",
    "threads",
    metavar="N|auto|none",
    default="auto",
    show_default=True,
    help="BLAS/OpenMP threads per experiment: auto is CPUs // workers, none leaves them alone.",
)
@click.option(
    "--gpus",
    "gpus",
    type=click.FloatRange(min=0, min_open=True),
    metavar="G",
    help="GPUs per experiment: a whole number, or a fraction 1/k (0.5: two share a GPU).",
)
@click.option(
    "--memory-limit",
    metavar="SIZE",
    help="Memory each experiment's processes may use (8GiB, 512MiB); over it: an oom failure.",
)
@click.option(
    "--executor",
    type=click.Choice(_EXECUTORS),
    default="process",
    show_default=True,
    help="Where experiments run: worker processes, threads, or this process one at a time.",
)
@click.option(
    "--dry-run", is_flag=True, help="Print the plan (each config and its state); run nothing."
)
@click.option("--force-run", is_flag=True, help="Run every config again, ignoring stored results.")
@click.option(
    "--force-cache",
    is_flag=True,
    help="Run nothing: serve stored results, failing on the first config without one.",
)
@click.option(
    "--lease-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=60.0,
    show_default=True,
    metavar="SECONDS",
    help="With several drivers on one store: how long a driver that stopped sending "
    "heartbeats keeps its experiments claimed.",
)
@click.option(
    "--version",
    "version",
    metavar="V",
    help="The experiment's version, Memento(version=V): part of every key (not memento's "
    "own version, which is memento --version).",
)
@click.option(
    "--progress/--no-progress",
    default=True,
    show_default=True,
    help="Show live progress on stderr.",
)
@click.option(
    "--on-code-change",
    type=click.Choice(("warn", "rerun", "ignore")),
    default="warn",
    show_default=True,
    help="Results computed by older code: reuse with a warning, compute again, or reuse.",
)
def run_command(
    target: str,
    matrix_file: str | None,
    params: tuple[str, ...],
    settings: tuple[str, ...],
    store: str | None,
    workers: int | None,
    timeout: float | None,
    retries: int,
    retry_on: str | None,
    max_failures: int | None,
    threads: str,
    gpus: float | None,
    memory_limit: str | None,
    executor: str,
    dry_run: bool,
    force_run: bool,
    force_cache: bool,
    lease_timeout: float,
    version: str | None,
    progress: bool,
    on_code_change: str,
) -> None:
    """Run the experiment TARGET (path/to/script.py:FUNCTION or package.module:FUNCTION) over
    a grid: the matrix file, with -p parameters and -s settings on top. Its keys are those a
    Python run of the same experiment computes, so the two share results.

    \b
    memento run train.py:experiment -p lr=0.1,0.01 -p model=mlp,cnn -s epochs=20
    memento run mypkg.experiments:train --matrix grid.yaml -p seed='range(5)' --dry-run
    """
    try:
        overrides = [parse_parameter(p) for p in params]
        setting_values = [parse_setting(s) for s in settings]
    except ValueError as exc:
        raise _one_line(exc) from None
    with ExitStack() as stack:
        func = _enter_target(stack, target)
        try:
            given = load_matrix(matrix_file) if matrix_file is not None else {}
            matrix = build_matrix(given, overrides, setting_values)
            memento = Memento(
                func,
                num_workers=workers,
                executor=executor,
                timeout=timeout,
                retries=retries,
                version=version,
                progress=progress,
                on_code_change=cast(CodeChange, on_code_change),
                lease_timeout=lease_timeout,
                threads_per_experiment=_threads(threads),
                gpus_per_experiment=gpus,
                memory_limit=memory_limit,
                retry_on=[k.strip() for k in retry_on.split(",") if k.strip()]
                if retry_on is not None
                else None,
                max_failures=max_failures,
            )
        except (TypeError, ValueError) as exc:
            raise _one_line(exc) from None
        results = _run(
            memento,
            matrix,
            dry_run=dry_run,
            force_run=force_run,
            force_cache=force_cache,
            store=store,
        )
    if results is not None:
        _report(results, store)


def _threads(text: str) -> int | Literal["auto"] | None:
    """``--threads``: ``auto``, ``none`` or a number."""
    lowered = text.strip().lower()
    if lowered == "auto":
        return "auto"
    if lowered == "none":
        return None
    if lowered.isdigit():
        return int(lowered)
    raise ValueError(f"--threads must be a number, auto or none, got {text!r}")


def _enter_target(stack: ExitStack, target: str) -> Callable[..., Any]:
    """The experiment TARGET names, loaded for the rest of ``stack``."""
    module, sep, name = target.rpartition(":")
    if not sep or not module or not name:
        raise click.ClickException(
            f"TARGET must be path/to/script.py:FUNCTION or package.module:FUNCTION, got {target!r}"
        )
    try:
        return stack.enter_context(loaded_experiment(target))
    except ValueError as exc:
        message = " ".join(str(exc).split()).replace("--experiment", "TARGET", 1)
        raise click.ClickException(message) from None
    except Exception as exc:  # the module's own import failed
        detail = " ".join(str(exc).split())
        raise click.ClickException(
            f"TARGET {target}: importing {module} failed: {type(exc).__name__}: {detail}"
        ) from None


def _run(
    memento: Memento,
    matrix: dict[str, Any],
    *,
    dry_run: bool,
    force_run: bool,
    force_cache: bool,
    store: str | None,
) -> ResultList | None:
    """``memento.run(matrix)``; user errors one line, Ctrl-C exit status 130."""
    try:
        return memento.run(
            matrix,
            dry_run=dry_run,
            force_run=force_run,
            force_cache=force_cache,
            cache_path=store,
            raise_on_failure=False,
        )
    except RunInterrupted:
        # The driver said what was kept; the status a shell expects after Ctrl-C.
        sys.exit(130)
    except (TypeError, ValueError, MementoError) as exc:
        raise _one_line(exc) from None


def _report(results: ResultList, store: str | None) -> None:
    """The results table (one row per config), then a summary; exit status 1 on failures."""
    shown = results[:TABLE_LIMIT]
    params = [r.config.asdict() for r in shown]
    names = list(dict.fromkeys(n for p in params for n in p))
    rows = [[*(_cell(p.get(n)) for n in names), *_outcome(r)] for p, r in zip(params, shown)]
    for line in _table([*names, "status", "value"], rows):
        click.echo(line)
    if len(results) > TABLE_LIMIT:
        click.echo(f"... and {len(results) - TABLE_LIMIT} more (memento results)")
    failed = [r for r in results if not r.ok]
    cached = sum(1 for r in results if r.was_cached)
    click.echo(
        f"{len(results)} result(s): {len(results) - len(failed) - cached} done, "
        f"{cached} cached, {len(failed)} failed"
    )
    if failed:
        first = config_label(failed[0].config.asdict()) or "the config without parameters"
        raise click.ClickException(
            f"{len(failed)} of {len(results)} experiments failed (first: {first}); "
            f"see memento results {redact(store_location(store))} --status failed"
        )


def _outcome(result: Result) -> list[str]:
    if not result.ok:
        error = result.error
        return ["failed", truncate(f"{type(error).__name__}: {error}", 60)]
    return ["cached" if result.was_cached else "done", _cell(result.inner)]


def _cell(value: Any) -> str:
    if isinstance(value, float):
        text = f"{value:.6g}"
    elif isinstance(value, str):
        text = value
    elif isinstance(value, dict):
        text = ", ".join(f"{k}={_cell(v)}" for k, v in value.items())
    else:
        text = display_value(value)
    return truncate(" ".join(text.split()), 40)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> Iterator[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    for cells in (headers, ["-" * w for w in widths], *rows):
        yield "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()


__all__ = [
    "DISTRIBUTIONS",
    "build_matrix",
    "load_json",
    "load_matrix",
    "load_yaml",
    "parse_parameter",
    "parse_setting",
    "resolve_reference",
    "run_command",
    "split_items",
]
