"""Matrices that depend on matrices: ``Memento.add_matrix`` and ``Memento.run_all``.

Each matrix added with :meth:`~memento.run.memento.Memento.add_matrix` has an ``"id"`` and a
list of ``"dependencies"`` (ids of other matrices).
:meth:`~memento.run.memento.Memento.run_all` runs them in dependency order;
a dependent matrix gets one extra parameter per dependency, named
``str(id)``, whose values are the ``inner`` values of that dependency's results, so the
dependent runs once per combination of its own parameters and its dependencies' results.

Example::

    memento = Memento(experiment)
    memento.add_matrix({"id": "data", "parameters": {"seed": [1, 2]}})
    memento.add_matrix({"id": "model", "dependencies": ["data"],
                        "parameters": {"depth": [3, 5]}})
    results = memento.run_all()
    # results["model"]: 4 results; each config has .depth and .data (a result of "data")

When experiments of a matrix fail, its dependents (and theirs) do not run: their entry in the
returned dict is ``None``. The other matrices still run. At the end the one end-of-run
notification is sent, then, unless ``raise_on_failure=False``, an
:class:`~memento.exceptions.AggregateException` with every failure is raised; its ``results``
is the dict of what ran and its ``skipped`` lists the ids that did not.
"""

from __future__ import annotations

import inspect
import logging
import sys
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

from memento.events import ExperimentFailed, RunFinished
from memento.exceptions import AggregateException, CyclicDependency
from memento.matrix.configs import generate_configurations, validate_matrix
from memento.notifications.base import NotificationDispatcher
from memento.plan.planning import Plan
from memento.results.result import ResultList
from memento.store.backends import open_store
from memento.store.sqlite import default_store_path

logger = logging.getLogger("memento")

_RESERVED = ("id", "dependencies")


def dependencies_of(matrix: Mapping[str, Any]) -> list[Any]:
    """The ids ``matrix`` depends on (``[]`` when it has no ``"dependencies"``)."""
    return list(matrix.get("dependencies") or [])


def check_matrix(matrix: Any, existing_matrices: Sequence[Mapping[str, Any]]) -> None:
    """Check a matrix for :meth:`~memento.run.memento.Memento.add_matrix`, before anything runs.

    Raises ``TypeError``/``ValueError`` naming the problem: no ``"id"``, an id already taken,
    ``"dependencies"`` that is not a list, a dependency id that cannot be a parameter name or
    that clashes with one of the matrix's parameters, or a matrix that is invalid in itself.
    Dependencies on ids not added yet are fine here; :func:`run_all` checks that they exist.

    Example::

        check_matrix({"id": "b", "dependencies": ["a"], "parameters": {"x": [1]}}, [])
    """
    if not isinstance(matrix, Mapping):
        raise TypeError(
            f"add_matrix takes a dict with 'id', 'dependencies' and 'parameters', "
            f"got {type(matrix).__name__}: {matrix!r}"
        )
    if "id" not in matrix:
        raise ValueError(
            "A matrix given to add_matrix needs an 'id', e.g. "
            "{'id': 'train', 'dependencies': [], 'parameters': {...}}"
        )
    matrix_id = matrix["id"]
    if not isinstance(matrix_id, Hashable):
        raise TypeError(f"A matrix 'id' must be hashable (a str, say), got {matrix_id!r}")
    for other in existing_matrices:
        if other["id"] == matrix_id:
            raise ValueError(
                f"A matrix with id {matrix_id!r} was already added; ids must be unique"
            )
    dependencies = matrix.get("dependencies", [])
    if dependencies is None:
        dependencies = []
    if not isinstance(dependencies, (list, tuple)):
        raise TypeError(
            f"Matrix {matrix_id!r}: 'dependencies' must be a list of matrix ids, got "
            f"{type(dependencies).__name__}: {dependencies!r}"
        )
    parameters = matrix.get("parameters", {})
    seen: set[str] = set()
    for dependency in dependencies:
        if not isinstance(dependency, Hashable):
            raise TypeError(
                f"Matrix {matrix_id!r}: dependency {dependency!r} is not a hashable matrix id"
            )
        name = str(dependency)
        if name in seen:
            raise ValueError(f"Matrix {matrix_id!r} lists dependency {dependency!r} twice")
        seen.add(name)
        if name == "settings":
            raise ValueError(
                f"Matrix {matrix_id!r}: dependency {dependency!r} becomes the parameter "
                "'settings', which is reserved (config.settings holds the matrix's settings); "
                "give that matrix another id"
            )
        if isinstance(parameters, Mapping) and name in parameters:
            raise ValueError(
                f"Matrix {matrix_id!r} has a parameter {name!r} and depends on matrix "
                f"{dependency!r}, whose results would become a parameter of the same name; "
                "rename one of them"
            )
    validate_matrix(_expanded(matrix, {str(d): [_Placeholder(d, 0)] for d in dependencies}))


def execution_order(matrices: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The matrices in an order where each comes after its dependencies.

    Among matrices whose dependencies are met, those added first come first. Raises
    ``ValueError`` naming a dependency id that no matrix has, and
    :class:`~memento.exceptions.CyclicDependency` (with the cycle) when there is a cycle.
    """
    ids = {m["id"] for m in matrices}
    for matrix in matrices:
        for dependency in dependencies_of(matrix):
            if dependency not in ids:
                raise ValueError(
                    f"Matrix {matrix['id']!r} depends on {dependency!r}, but no matrix has that "
                    f"id; the ids are {sorted(map(repr, ids))}"
                )
    order: list[Mapping[str, Any]] = []
    placed: set[Any] = set()
    waiting = list(matrices)
    while waiting:
        ready = [m for m in waiting if all(d in placed for d in dependencies_of(m))]
        if not ready:
            raise CyclicDependency(_find_cycle(waiting))
        for matrix in ready:
            order.append(matrix)
            placed.add(matrix["id"])
        waiting = [m for m in waiting if m["id"] not in placed]
    return order


def _find_cycle(waiting: Sequence[Mapping[str, Any]]) -> list[Any]:
    """A cycle among matrices none of which can be placed: [a, b, ..., a], each depending on
    the next. Following unplaced dependencies from any of them must come back around."""
    unplaced = {m["id"]: m for m in waiting}
    path: list[Any] = []
    at = waiting[0]["id"]
    while at not in path:
        path.append(at)
        at = next(d for d in dependencies_of(unplaced[at]) if d in unplaced)
    return [*path[path.index(at) :], at]


def run_all(
    run: Callable[..., ResultList | None],
    plan: Callable[..., Plan],
    matrices: Sequence[Mapping[str, Any]],
    run_kwargs: Mapping[str, Any],
    *,
    notification_provider: Any = None,
) -> dict[Any, ResultList | None] | None:
    """Run ``matrices`` in dependency order with ``run(matrix, **run_kwargs)``.

    ``run`` and ``plan`` are a Memento's ``run`` and ``plan``. Returns ``{id: results}``
    (``None`` for a matrix skipped because a dependency failed), or ``None`` for
    ``dry_run=True``, which prints each matrix's plan and runs nothing. Sends one end-of-run
    notification for the whole set to ``notification_provider`` (``notify_on_complete=False``
    turns it off). Everything is checked, including the order, before the first experiment
    runs.
    """
    kwargs = dict(run_kwargs)
    notify = bool(kwargs.pop("notify_on_complete", True))
    try:
        inspect.signature(run).bind({}, **kwargs)
    except TypeError as exc:
        raise TypeError(f"run_all passes its keyword arguments to Memento.run: {exc}") from None
    order = execution_order(matrices)
    if kwargs.get("dry_run"):
        _print_plans(plan, order, kwargs.get("cache_path"))
        return None
    runs = _DependentRuns(run, notification_provider, kwargs, notify)
    return runs.run(order, [m["id"] for m in matrices])


class _DependentRuns:
    """One call of ``run_all``: one ``Memento.run`` per matrix, in order; tracks failures,
    skips the dependents of failed matrices, notifies once at the end."""

    def __init__(
        self,
        run: Callable[..., ResultList | None],
        notification_provider: Any,
        kwargs: dict[str, Any],
        notify: bool,
    ) -> None:
        self.run_matrix = run
        self.notification_provider = notification_provider
        self.kwargs = kwargs
        self.notify = notify
        self.failures: list[BaseException] = []
        self.failed: set[Any] = set()  # matrices with failed experiments
        self.skipped: dict[Any, Any] = {}  # id -> the dependency that stopped it

    def run(self, order: list[Mapping[str, Any]], ids: list[Any]) -> dict[Any, ResultList | None]:
        results: dict[Any, ResultList | None] = dict.fromkeys(ids)
        started = time.monotonic()
        notifier = NotificationDispatcher(self.notification_provider)
        interrupted = False
        try:
            for matrix in order:
                results[matrix["id"]] = self._run_one(matrix, results)
        except KeyboardInterrupt:
            interrupted = True
            raise
        finally:
            try:
                if self.notify and not interrupted:
                    notifier.emit(self._finished(results, started))
            finally:
                notifier.close()
        if self.failures and self.kwargs.get("raise_on_failure", True):
            error = AggregateException(self.failures)
            if self.skipped:
                skipped = ", ".join(f"{m!r} (needs {d!r})" for m, d in self.skipped.items())
                error.args = (f"{error.args[0]}\nNot run because a dependency failed: {skipped}",)
            error.results = results  # type: ignore[attr-defined]
            error.skipped = list(self.skipped)  # type: ignore[attr-defined]
            raise error
        return results

    def _run_one(
        self, matrix: Mapping[str, Any], results: dict[Any, ResultList | None]
    ) -> ResultList | None:
        matrix_id = matrix["id"]
        for dependency in dependencies_of(matrix):
            if dependency in self.failed or dependency in self.skipped:
                self.skipped[matrix_id] = dependency
                logger.warning(
                    "Matrix %r is not run: experiments of its dependency %r failed or did not run",
                    matrix_id,
                    dependency,
                )
                return None
        axes = {}
        for dependency in dependencies_of(matrix):
            done = results[dependency]
            assert done is not None
            axes[str(dependency)] = [result.inner for result in done]
        if any(not values for values in axes.values()):
            return ResultList()  # a dependency without results: the product is empty
        try:
            outcome = self.run_matrix(
                _expanded(matrix, axes), notify_on_complete=False, **self.kwargs
            )
        except AggregateException as exc:
            self.failures.extend(exc.exceptions)
            self.failed.add(matrix_id)
            partial = getattr(exc, "results", None)
            return partial if partial is not None else ResultList()
        assert outcome is not None
        if outcome.failures:
            self.failed.add(matrix_id)  # raise_on_failure=False: keep going, stop dependents
        return outcome

    def _finished(self, results: dict[Any, ResultList | None], started: float) -> RunFinished:
        done = cached = 0
        failures = []
        for result_list in results.values():
            for result in result_list or ():
                if result.error is not None:
                    error = result.error
                    failures.append(
                        ExperimentFailed(
                            result.config,
                            result.key,
                            getattr(error, "exc_type", None) or type(error).__qualname__,
                            str(error),
                            getattr(error, "traceback", "") or "",
                            result.attempts,
                        )
                    )
                elif result.was_cached:
                    cached += 1
                else:
                    done += 1
        store_path = default_store_path(self.kwargs.get("cache_path"))
        return RunFinished.since(
            started, done=done, cached=cached, failures=failures, store_path=store_path
        )


def _expanded(matrix: Mapping[str, Any], axes: Mapping[str, list[Any]]) -> dict[str, Any]:
    """A copy of ``matrix`` for ``Memento.run``: no id or dependencies, one more parameter per
    dependency. The user's dicts are never modified."""
    copy = {k: v for k, v in matrix.items() if k not in _RESERVED}
    if axes:
        parameters = copy.get("parameters", {})
        if isinstance(parameters, Mapping):  # else validate_matrix names the problem
            copy["parameters"] = {**parameters, **axes}
    return copy


class _Placeholder:
    """Stands, in a dry run, for a result of a dependency that has not run yet."""

    def __init__(self, matrix_id: Any, index: int) -> None:
        self.matrix_id = matrix_id
        self.index = index

    def __memento_key__(self) -> tuple[str, int]:
        return (str(self.matrix_id), self.index)

    def __repr__(self) -> str:
        return f"(result {self.index + 1} of {self.matrix_id!r})"


def _print_plans(
    plan_matrix: Callable[..., Plan], order: list[Mapping[str, Any]], cache_path: Any
) -> None:
    """The dry run: each matrix's plan, in order. A dependent whose dependencies are all
    stored is planned with their stored results; otherwise its configs show placeholders."""
    out = sys.stdout
    counts: dict[Any, int] = {}
    known: dict[Any, list[Any] | None] = {}  # id -> inner values, when all are stored
    out.write(f"Plan for {len(order)} matrices, in dependency order:\n")
    for matrix in order:
        matrix_id = matrix["id"]
        dependencies = dependencies_of(matrix)
        if all(known[d] is not None for d in dependencies):
            axes = {str(d): known[d] or [] for d in dependencies}
            if not all(axes.values()):
                counts[matrix_id], known[matrix_id] = 0, []
                out.write(f"Matrix {matrix_id!r}: 0 configs (a dependency has no results)\n")
                continue
            plan = plan_matrix(_expanded(matrix, axes), cache_path)
            counts[matrix_id] = len(plan.keys)
            known[matrix_id] = _stored_values(plan)
            out.write(f"Matrix {matrix_id!r}: {plan.summary()} (store: {plan.store_path})\n")
            out.writelines(plan.lines())
            continue
        placeholders = {
            str(d): [_Placeholder(d, i) for i in range(counts[d])] for d in dependencies
        }
        configs = (
            generate_configurations(_expanded(matrix, placeholders))
            if all(placeholders.values())
            else []
        )
        counts[matrix_id], known[matrix_id] = len(configs), None
        waiting = [repr(d) for d in dependencies if known[d] is None]
        out.write(
            f"Matrix {matrix_id!r}: {len(configs)} configs, whose inputs are not known until "
            f"{', '.join(waiting)} {'has' if len(waiting) == 1 else 'have'} run "
            "(shown as placeholders)\n"
        )
        for config in configs:
            out.write(f"  [{'pending':>13}] {config}\n")
    out.write("Exiting due to dry run\n")
    out.flush()


def _stored_values(plan: Plan) -> list[Any] | None:
    """The inner values of a plan whose results are all stored (read-only), else None."""
    if any(state not in ("cached", "stale") for state in plan.states):
        return None
    if not plan.keys:
        return []
    try:
        with open_store(plan.store_path, readonly=True) as store:
            columns = ("status", "value", "value_file", "value_format", "value_info")
            rows = store.lookup(plan.keys, columns)
            values = []
            for key in plan.keys:
                status, *stored = rows[key]
                if status != "done":
                    return None
                values.append(store.load_value(*stored))
    except Exception as exc:  # an unreadable value: the run would recompute it
        logger.debug("Stored results cannot be read for the dry run: %s", exc)
        return None
    return values


__all__ = ["check_matrix", "dependencies_of", "execution_order", "run_all"]
