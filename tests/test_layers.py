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
    # `memento run TARGET`: the one command that runs experiments, so the one view module that
    # drives run/ (nothing in run/ imports view/).
    ("memento.view.launch", "memento.run.memento"),
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


def _module_name(path: Path, root: Path = SRC) -> str:
    parts = ("memento", *path.relative_to(root).with_suffix("").parts)
    name = ".".join(parts)
    return name.removesuffix(".__init__")


def _imports(path: Path, root: Path = SRC) -> list[Import]:
    source = _module_name(path, root)
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


def _all_imports(*, third_party: bool = False, root: Path = SRC) -> list[Import]:
    """memento's imports of its own modules (and of everything else with ``third_party``)."""
    return [
        imp
        for path in sorted(root.rglob("*.py"))
        for imp in _imports(path, root)
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


def upward_imports(imports: list[Import]) -> list[str]:
    upward = []
    for imp in imports:
        if imp.source in FACES or (imp.source, imp.target) in EXCEPTIONS:
            continue
        here, there = _unit(imp.source), _unit(imp.target)
        if here == there:
            continue
        if there not in LAYERS or LAYERS[there] >= LAYERS[here or ""]:
            upward.append(f"{imp.source}:{imp.line} imports {imp.target}")
    return upward


def test_imports_point_down() -> None:
    upward = upward_imports(_all_imports())
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


def import_cycles(imports: list[Import]) -> list[str]:
    graph: dict[str, set[str]] = {}
    for imp in imports:
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
    return cycles


def test_no_import_cycles_between_modules() -> None:
    cycles = import_cycles(_all_imports())
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


def test_the_checks_catch_an_upward_import_and_a_cycle(tmp_path: Path) -> None:
    """The checks above can fail: a made-up tree with the store importing the driver, and
    two modules of one folder importing each other, is caught by both."""
    root = tmp_path / "memento"
    for name, text in {
        "store/sqlite.py": "from memento.run.driver import Driver\n",
        "run/driver.py": "from memento.store.sqlite import Store\n",
        "keys/a.py": "import memento.keys.b\n",
        "keys/b.py": "from memento.keys.a import x\n",
        "plan/planning.py": "from memento.keys.a import x\n",
        "worker/task.py": "def f():\n    from memento.run.driver import Driver\n",
    }.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    imports = _all_imports(root=root)
    assert upward_imports(imports) == [
        "memento.store.sqlite:1 imports memento.run.driver",
        "memento.worker.task:2 imports memento.run.driver",
    ]
    assert sorted(import_cycles(imports)) == [
        "memento.keys.a -> memento.keys.b -> memento.keys.a",
        "memento.run.driver -> memento.store.sqlite -> memento.run.driver",
    ]
