"""The house rules, checked on the source: imports point down the layers, no cycles, no module
imports another's private names, and memento's own modules are imported at module level.

The layers are those of docs/architecture.md. A module may import its own folder and any
folder of a lower layer; faces (``memento/__init__.py`` and the modules that keep public and
memento-ml 1.2 import paths) only re-export and may import anything.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "memento"

#: Folder (or layer-0 module) -> layer.
LAYERS = {
    "exceptions": 0,
    "events": 0,
    "_util": 1,
    "keys": 2,
    "store": 2,
    "matrix": 3,
    "notifications": 3,
    "worker": 4,
    "plan": 4,
    "results": 4,
    "executors": 5,
    "run": 6,
    "view": 6,
    "compat": 7,
}

#: Modules that only re-export, keeping public import paths.
FACES = {
    "memento",
    "memento.__main__",
    "memento.memento",
    "memento.configurations",
    "memento.task_interface",
    "memento.caching",
    "memento.parallel",
}

#: Imports allowed against the rules, each with its reason. Keep this short.
EXCEPTIONS = {
    # memento-ml 1.2's `from memento.exceptions import Config`: loaded on first use by a module
    # __getattr__, so that the error tree stays at the bottom of the graph.
    ("memento.exceptions", "memento.matrix.configs"),
    # `memento --version`: the root package is always imported before any of its modules.
    ("memento.view.cli", "memento"),
}


@dataclass(frozen=True)
class Import:
    source: str  # importing module
    target: str  # imported module
    names: tuple[str, ...]
    line: int
    in_function: bool
    #: Under ``if TYPE_CHECKING:``: for annotations only, never executed.
    type_only: bool = False


def _module_name(path: Path) -> str:
    parts = ("memento", *path.relative_to(SRC).with_suffix("").parts)
    name = ".".join(parts)
    return name.removesuffix(".__init__")


def _imports(path: Path) -> list[Import]:
    source = _module_name(path)
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[Import] = []

    def visit(node: ast.AST, in_function: bool, type_only: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            typing = type_only or (
                isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test)
            )
            if isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                names = tuple(a.name for a in child.names)
                found.append(
                    Import(source, child.module, names, child.lineno, in_function, type_only)
                )
            elif isinstance(child, ast.Import):
                for alias in child.names:
                    found.append(
                        Import(source, alias.name, (), child.lineno, in_function, type_only)
                    )
            visit(child, nested, typing)

    visit(tree, False, False)
    return found


def _all_imports(*, third_party: bool = False) -> list[Import]:
    """memento's imports of its own modules (and of everything else with ``third_party``)."""
    return [
        imp
        for path in sorted(SRC.rglob("*.py"))
        for imp in _imports(path)
        if third_party or imp.target.split(".")[0] == "memento"
    ]


def _unit(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_every_module_belongs_to_a_layer_or_is_a_face() -> None:
    homeless = [
        name
        for name in map(_module_name, sorted(SRC.rglob("*.py")))
        if name not in FACES and _unit(name) not in LAYERS
    ]
    assert homeless == [], f"modules outside the layers (add them to a folder): {homeless}"


def test_imports_point_down() -> None:
    upward = []
    for imp in _all_imports():
        if imp.source in FACES or (imp.source, imp.target) in EXCEPTIONS:
            continue
        here, there = _unit(imp.source), _unit(imp.target)
        if here == there:
            continue
        if there not in LAYERS or LAYERS[there] >= LAYERS[here or ""]:
            upward.append(f"{imp.source}:{imp.line} imports {imp.target}")
    assert upward == [], "imports that do not point down:\n" + "\n".join(upward)


def test_internal_code_does_not_import_faces() -> None:
    through_faces = [
        f"{imp.source}:{imp.line} imports the face {imp.target}"
        for imp in _all_imports()
        if imp.source not in FACES
        and imp.target in FACES | {f"memento.{u}" for u in ("keys", "store", "matrix", "results")}
        and (imp.source, imp.target) not in EXCEPTIONS
        and _unit(imp.source) != _unit(imp.target)
    ]
    assert through_faces == [], "\n".join(through_faces)


def test_no_import_cycles_between_modules() -> None:
    graph: dict[str, set[str]] = {}
    for imp in _all_imports():
        if imp.in_function or imp.type_only or imp.source in FACES:
            continue
        if (imp.source, imp.target) in EXCEPTIONS:
            continue
        graph.setdefault(imp.source, set()).add(imp.target)
    cycles = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*stack[stack.index(nxt) :], nxt]))
            elif nxt not in state:
                walk(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            walk(node)
    assert cycles == [], "import cycles:\n" + "\n".join(cycles)


def test_no_private_names_imported_across_modules() -> None:
    private = [
        f"{imp.source}:{imp.line} imports {name} from {imp.target}"
        for imp in _all_imports()
        for name in imp.names
        if name.startswith("_") and not name.startswith("__") and imp.source != imp.target
    ]
    assert private == [], "\n".join(private)


#: Third-party modules that `import memento` must not pay for: memento's own modules that import
#: one of these at module level are imported on first use, inside functions.
HEAVY = {
    "apprise",
    "click",
    "cloudpickle",
    "dask",
    "distributed",
    "jinja2",
    "numpy",
    "pandas",
    "pebble",
    "psutil",
    "ray",
    "rich",
    "smtplib",
    "submitit",
    "urllib",
}


def _heavy_modules() -> set[str]:
    """memento's modules whose import (at module level, transitively) loads a HEAVY module."""
    top: dict[str, set[str]] = {}
    for imp in _all_imports(third_party=True):
        if not (imp.in_function or imp.type_only):
            top.setdefault(imp.source, set()).add(imp.target)
    heavy = {
        module for module, targets in top.items() if any(t.split(".")[0] in HEAVY for t in targets)
    }
    changed = True
    while changed:
        changed = False
        for module, targets in top.items():
            if module not in heavy and targets & heavy:
                heavy.add(module)
                changed = True
    return heavy


def test_memento_modules_are_imported_at_module_level() -> None:
    """Imports inside functions are for heavy or optional third-party modules, never to hide a
    cycle: one of memento's own modules may be imported inside a function only when importing
    it loads a heavy third-party module (see ``HEAVY``)."""
    heavy = _heavy_modules()
    inside = sorted(
        f"{imp.source}:{imp.line} imports {imp.target} inside a function"
        for imp in _all_imports()
        if imp.in_function
        and imp.source not in FACES
        and imp.target not in heavy
        and (imp.source, imp.target) not in EXCEPTIONS
    )
    assert inside == [], "\n".join(inside)


@pytest.mark.parametrize(
    ("source", "target", "allowed"),
    [
        ("memento.run.driver", "memento.store.sqlite", True),
        ("memento.store.sqlite", "memento.run.driver", False),
        ("memento.worker.task", "memento.run.progress", False),
        ("memento.keys.encoding", "memento.matrix.configs", False),
        ("memento.compat.parallel", "memento.executors.local", True),
    ],
)
def test_the_rule_itself(source: str, target: str, allowed: bool) -> None:
    """The check would catch an upward import (so the tests above can fail)."""
    here, there = _unit(source), _unit(target)
    assert (LAYERS[there or ""] < LAYERS[here or ""]) is allowed
