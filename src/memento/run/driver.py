"""Executing a plan: submit jobs, collect outcomes, store them, build results.

:class:`_Run` is one call of ``Memento.run`` once planning is done (see :mod:`memento.run.memento`):
it owns the store, the executor and the bookkeeping. It keeps about two jobs per worker in
flight, batches tiny experiments, retries failures while attempts remain, writes everything
that finished together in one transaction, and puts results back in matrix order.
"""

from __future__ import annotations

import concurrent.futures as cf
import datetime
import json
import logging
import signal
import sys
import threading
import time
import uuid
from collections import deque
from typing import TYPE_CHECKING, Any, NoReturn

from memento._util.text import params_json
from memento.exceptions import AggregateException
from memento.keys.fingerprint import stale_message
from memento.matrix.configs import Config
from memento.results.result import MemoryUsage, MetricTable, Result, ResultList
from memento.run.stopping import (
    RunInterrupted,
    Terminated,
    catch_sigterm,
    install_quiet_excepthook,
    restore_sigterm,
)
from memento.store.sqlite import Store, StoredOutcome
from memento.worker.task import (
    FunctionRef,
    Job,
    Outcome,
    OutputTail,
    Task,
    driver_stderr,
    prefix_lines,
    rebuild_error,
    run_job,
)

if TYPE_CHECKING:
    from memento.run.memento import Memento, Plan

logger = logging.getLogger("memento")

# What a run reads of each stored result; the plan's two columns come first.
LOAD_COLUMNS = (
    "status",
    "fingerprint",
    "value",
    "value_file",
    "start_time",
    "runtime",
    "cpu_time",
    "peak_rss",
    "peak_vms",
    "metrics",
    "attempts",
    "host",
)
_BATCH_TARGET = 0.05  # seconds of work per job when experiments are tiny
_MAX_BATCH = 64


class _NoNotifications:
    """Stands in for a dispatcher when there is no provider (saves importing smtplib & co)."""

    def emit(self, event: Any) -> None:
        pass

    def tick(self) -> None:
        pass

    def close(self) -> None:
        pass


def _notifier(provider: Any) -> Any:
    if provider is None:
        return _NoNotifications()
    from memento.notifications import NotificationDispatcher

    return NotificationDispatcher(provider)


class _Pending:
    """An experiment waiting to run, or running."""

    __slots__ = ("_params", "attempt", "config", "index", "key")

    def __init__(self, index: int, key: str, config: Config, attempt: int = 1) -> None:
        self.index = index
        self.key = key
        self.config = config
        self.attempt = attempt
        self._params: str | None = None

    @property
    def params(self) -> str:
        """The parameters as the store keeps them (JSON; values shown by name), made once."""
        if self._params is None:
            self._params = params_json(self.config.asdict())
        return self._params

    def again(self) -> _Pending:
        """The next attempt of the same experiment."""
        retry = _Pending(self.index, self.key, self.config, self.attempt + 1)
        retry._params = self._params
        return retry


class _Run:
    """One call of ``Memento.run``: owns the store, the executor and the bookkeeping."""

    def __init__(
        self,
        memento: Memento,
        plan: Plan,
        force_run: bool,
        notify: bool,
        raise_on_failure: bool,
        force_cache: bool = False,
    ) -> None:
        from memento.executors.local import make_executor

        self.m = memento
        self.plan = plan
        self.force_run = force_run
        self.notify_on_complete = notify
        self.raise_on_failure = raise_on_failure
        # force_cache runs nothing and writes nothing, so a store in a read-only place (an
        # archive, a read-only mount) serves it.
        self.read_only = force_cache
        self.store = Store(plan.store_path, readonly=force_cache)
        self.executor, self.owns_executor = make_executor(memento.executor, memento.num_workers)
        self.notifier = _notifier(memento.notification_provider)
        self.results: list[Result | None] = [None] * len(plan.keys)
        self.run_id = uuid.uuid4().hex[:12]
        self.fingerprint = plan.fingerprint
        # force_cache runs nothing, so stale results are served then, whatever the policy.
        self.reuse_stale = memento.on_code_change != "rerun" or force_cache
        self.experiment = plan.experiment
        self.function = FunctionRef(memento.func, plan.identity)
        self.done = self.failed = self.cached = 0
        self.failures: list[Any] = []
        self.failed_events: list[Any] = []
        self.runtimes: deque[float] = deque(maxlen=50)
        self.display: Any = None
        # Keys whose worker reported that they began, not yet written to the store.
        self.started: set[str] = set()
        self.started_lock = threading.Lock()
        self.marked: set[str] = set()
        ex = self.executor
        self.has_progress = ex.in_process or hasattr(ex, "progress_updates")

    # -- the whole run ---------------------------------------------------------------------
    def execute(self) -> ResultList:
        from memento.events import RunStarted

        started = time.monotonic()
        plan = self.plan
        to_run: list[_Pending] = []
        cached_idx: list[int] = []
        for i, (config, key, state) in enumerate(zip(plan.configs, plan.keys, plan.states)):
            reuse = state == "cached" or (state == "stale" and self.reuse_stale)
            if reuse and not self.force_run:
                cached_idx.append(i)
            else:
                to_run.append(_Pending(i, key, config))
        stale = plan.count("stale")
        if stale and not self.force_run:
            if self.m.on_code_change == "warn":
                rows = plan.rows or {}
                stored = [
                    rows[k][1] for k, s in zip(plan.keys, plan.states) if s == "stale" and k in rows
                ]
                logger.warning(
                    "%s", stale_message(stale, self.experiment, stored, plan.fingerprint)
                )
            elif self.m.on_code_change == "rerun" and not self.reuse_stale:
                logger.info(
                    "%d stored result(s) of %s were computed by older code; computing them again",
                    stale,
                    self.experiment,
                )
        store = self.store
        if not self.read_only:
            store.start_run(
                self.run_id,
                self.experiment,
                len(plan.keys),
                len(to_run),
                len(cached_idx),
                fingerprint=plan.fingerprint,
            )
        run_state = "failed"
        stop: KeyboardInterrupt | None = None
        previous_sigterm = catch_sigterm()
        try:
            for i in self._load_cached(cached_idx):
                to_run.append(_Pending(i, plan.keys[i], plan.configs[i]))
            self.notifier.emit(
                RunStarted(
                    total=len(plan.keys),
                    to_run=len(to_run),
                    cached=self.cached,
                    failed_before=plan.count("failed"),
                    store_path=str(store.path),
                    experiment=self.experiment,
                )
            )
            if to_run:
                self._start_display(len(to_run))
                try:
                    self._execute(to_run)
                finally:
                    self._stop_display()
            run_state = "finished"
        except KeyboardInterrupt as exc:
            run_state = "interrupted"
            stop = exc
        finally:
            try:
                # Also clears this run's in-flight rows, so `memento status` shows none.
                if not self.read_only:
                    store.finish_run(self.run_id, self.done, self.failed, run_state)
            finally:
                restore_sigterm(previous_sigterm)
                if run_state != "interrupted" and self.notify_on_complete:
                    self._emit_finished(started)
                self.notifier.close()
                store.close()
        if stop is not None:
            self._stopped(stop)
        results = ResultList(r for r in self.results if r is not None)
        if self.failures and self.raise_on_failure:
            error = AggregateException(self.failures)
            error.results = results  # type: ignore[attr-defined]
            raise error
        return results

    def _stopped(self, stop: KeyboardInterrupt) -> NoReturn:
        """Say what an interrupted run kept, then leave: exit code 143 for SIGTERM, else a
        :class:`RunInterrupted` (a ``KeyboardInterrupt``, as in memento-ml 1.2)."""
        terminated = isinstance(stop, Terminated)
        stored = self.done + self.failed
        remaining = len(self.plan.keys) - stored - self.cached
        sys.stderr.write(
            f"memento: run of {self.experiment} stopped by "
            f"{'SIGTERM' if terminated else 'Ctrl-C'}; {stored} new result(s) stored "
            f"({self.done} done, {self.failed} failed; {self.cached} were cached) in "
            f"{self.store.path}. Running again resumes with the {remaining} remaining.\n"
        )
        sys.stderr.flush()
        if terminated:
            raise SystemExit(128 + signal.SIGTERM) from None
        install_quiet_excepthook()
        raise RunInterrupted(f"run of {self.experiment} interrupted") from None

    def _emit_finished(self, started: float) -> None:
        from memento.events import RunFinished

        self.notifier.emit(
            RunFinished(
                done=self.done,
                cached=self.cached,
                failed=self.failed,
                elapsed=datetime.timedelta(seconds=time.monotonic() - started),
                store_path=str(self.store.path),
                failures=tuple(self.failed_events),
            )
        )

    # -- cached results --------------------------------------------------------------------
    def _load_cached(self, indices: list[int]) -> list[int]:
        """Read stored results into place; return the indices that must run after all
        (their row vanished since planning, or their value cannot be unpickled)."""
        if not indices:
            return []
        keys = [self.plan.keys[i] for i in indices]
        rows = self.plan.rows if self.plan.rows is not None else {}
        if any(key not in rows for key in keys):
            rows = self.store.lookup(keys, LOAD_COLUMNS)
        missing = []
        for i, key in zip(indices, keys):
            row = rows.get(key)
            if row is None or row[0] != "done":  # removed since planning
                missing.append(i)
                continue
            (_, _, value, value_file, start, runtime, cpu, rss, vms, metrics, attempts, host) = row
            try:
                inner = self.store.load_value(value, value_file)
            except Exception as exc:
                logger.warning("Stored result %s cannot be loaded (%s); running it again", key, exc)
                missing.append(i)
                continue
            self.results[i] = Result(
                self.plan.configs[i],
                inner,
                _metric_tables(metrics),
                _datetime(start),
                _timedelta(runtime),
                _timedelta(cpu),
                _memory(rss, vms),
                was_cached=True,
                key=key,
                attempts=attempts or 1,
                host=host or "",
            )
            self.cached += 1
        return missing

    # -- running ---------------------------------------------------------------------------
    def _job(self, batch: list[_Pending]) -> Job:
        ex = self.executor
        return Job(
            function=self.function,
            tasks=[Task(p.key, p.config, p.attempt) for p in batch],
            checkpoint_dir=str(self.store.checkpoint_directory),
            thread_cpu=ex.in_process and ex.name == "thread",
            reset_memory_peak=ex.own_process,
            alarm_timeout=self.m.timeout if ex.name == "inline" else None,
            pickle_values=not ex.in_process,
            progress=self._on_progress if ex.in_process else None,
            output=self._on_output if ex.in_process else None,
        )

    def _execute(self, to_run: list[_Pending]) -> None:
        from memento.worker.task import install_output_router, uninstall_output_router

        ex = self.executor
        queue: deque[_Pending] = deque(to_run)
        running: dict[cf.Future[Any], list[_Pending]] = {}
        ex.prepare(self.store)
        # What each running experiment printed so far, as it arrived: what a crash or a
        # timeout leaves of its output.
        self.outputs: dict[str, OutputTail] = {}
        self.output_lock = threading.Lock()
        routed = ex.in_process
        if routed:
            install_output_router()
        set_output_sink = getattr(ex, "set_output_sink", None)
        if set_output_sink is not None:
            set_output_sink(self._on_output_records)
        updates = getattr(ex, "progress_updates", None)
        if updates is not None:
            # Read even without a live display: a worker's first update says that the
            # experiment began, which is when it is marked running in the store.
            threading.Thread(target=self._forward_progress, args=(updates(),), daemon=True).start()
        timeout = self.m.timeout
        try:
            limit = ex.max_in_flight()
            while queue or running:
                while queue and len(running) < limit:
                    batch = self._next_batch(queue)
                    future = ex.submit(run_job, self._job(batch), timeout=timeout)
                    running[future] = batch
                    if self.display is not None:
                        for p in batch:
                            self.display.submitted(p.key, str(p.config))
                ex.flush()
                done, _ = cf.wait(list(running), timeout=0.5, return_when=cf.FIRST_COMPLETED)
                self.notifier.tick()
                if done:
                    finished: list[tuple[_Pending, Outcome]] = []
                    for future in done:
                        batch = running.pop(future)
                        finished.extend(self._collect(future, batch, queue))
                    self._record(finished, queue)
                # After the finished ones left the running table, so that a worker's next
                # experiment never counts beside the one it just finished.
                self._mark_started(running)
        except KeyboardInterrupt:
            # Keep what already finished, then stop the workers at once.
            finished = []
            for future, batch in list(running.items()):
                if future.done() and not future.cancelled():
                    try:
                        finished.extend(self._collect(future, batch, deque()))
                    except BaseException:
                        pass
            try:
                self._record([(p, o) for p, o in finished if o.ok], deque())
            finally:
                ex.shutdown(wait=False, cancel=True)
            raise
        finally:
            if set_output_sink is not None:
                # Every line shows before the display's last frame and before run() returns.
                getattr(ex, "drain_output", lambda: None)()
                set_output_sink(None)
            if routed:
                uninstall_output_router()
            if self.owns_executor:
                ex.shutdown()

    def _mark_started(self, running: dict[cf.Future[Any], list[_Pending]]) -> None:
        """Write the experiments that began since the last call into the ``running`` table.

        Rows are written when a worker reports that an experiment began, not at submission,
        so ``memento status`` counts only what really runs. An executor that sends no such
        report (a remote engine without a progress channel) has the jobs it was handed (about
        two per worker, never the whole grid) counted as running.
        """
        with self.started_lock:
            began, self.started = self.started, set()
        by_key = {p.key: p for batch in running.values() for p in batch}
        if not self.has_progress:
            began.update(by_key)
        fresh = [by_key[k] for k in began if k in by_key and k not in self.marked]
        if self.has_progress:
            # A worker reports its next experiment's start on the progress pipe, which may
            # overtake the result of the one before: never count more than the workers.
            busy = sum(1 for k in by_key if k in self.marked)
            room = max(0, self.executor.max_workers - busy)
            with self.started_lock:
                self.started.update(p.key for p in fresh[room:])
            fresh = fresh[:room]
        if fresh:
            self.marked.update(p.key for p in fresh)
            self.store.mark_running(
                self.run_id, self.experiment, ((p.key, p.params) for p in fresh)
            )

    def _next_batch(self, queue: deque[_Pending]) -> list[_Pending]:
        size = 1
        if self.executor.batching and self.m.timeout is None and self.runtimes:
            mean = sum(self.runtimes) / len(self.runtimes)
            size = int(_BATCH_TARGET / max(mean, 1e-6))
            # Leave every worker some jobs, so the tail of the grid stays parallel.
            fair = len(queue) // max(1, 2 * self.executor.max_workers)
            size = max(1, min(size, _MAX_BATCH, fair))
        return [queue.popleft() for _ in range(min(size, len(queue)))]

    def _collect(
        self, future: cf.Future[Any], batch: list[_Pending], queue: deque[_Pending]
    ) -> list[tuple[_Pending, Outcome]]:
        try:
            outcomes: list[Outcome] = self.executor.result(future)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:
            if len(batch) > 1:
                # We cannot tell which experiment of the batch broke its worker: run each alone.
                queue.extendleft(reversed(batch))
                self.runtimes.clear()
                return []
            return [(batch[0], _infrastructure_outcome(batch[0], exc))]
        for outcome in outcomes:
            self.runtimes.append(outcome.runtime)
        return list(zip(batch, outcomes))

    def _record(self, finished: list[tuple[_Pending, Outcome]], queue: deque[_Pending]) -> None:
        import cloudpickle

        from memento.events import ExperimentFailed, ExperimentFinished

        rows: list[StoredOutcome] = []
        final: list[tuple[_Pending, Outcome]] = []
        drain = getattr(self.executor, "drain_output", None)
        if drain is not None and any(o.output is None for _, o in finished):
            drain()  # a crash or a timeout: what it printed may still be on its way
        for pending, outcome in finished:
            with self.output_lock:
                arrived = self.outputs.pop(pending.key, None)
            output = outcome.output
            if output is None and arrived is not None:
                output = arrived.text()
            if outcome.ok and outcome.value is None and self.executor.in_process:
                try:
                    outcome.value = cloudpickle.dumps(outcome.local_value)
                except Exception as exc:
                    outcome = _infrastructure_outcome(
                        pending,
                        TypeError(
                            f"The experiment returned a {type(outcome.local_value).__qualname__} "
                            f"that cannot be pickled, so it cannot be stored: {exc}"
                        ),
                    )
            elif outcome.ok and outcome.value is not None and not self.executor.in_process:
                outcome = _loaded(pending, outcome)
            if not outcome.ok and pending.attempt <= self.m.retries:
                logger.info(
                    "Retrying %s after %s (attempt %d of %d)",
                    pending.config,
                    outcome.error_type,
                    pending.attempt + 1,
                    self.m.retries + 1,
                )
                self.marked.discard(pending.key)  # marked running again when it begins
                queue.append(pending.again())
                continue
            outcome.output = output
            row = self._stored(pending, outcome)
            row.output = output or None
            rows.append(row)
            final.append((pending, outcome))
        if not rows:
            return
        # The durable point: one transaction for everything that finished together.
        self.store.write_outcomes(rows)
        checkpoints = self.store.checkpoint_directory
        any_checkpoints = checkpoints.is_dir()
        for pending, outcome in final:
            if outcome.ok and any_checkpoints:
                try:
                    (checkpoints / f"{pending.key}.ckpt").unlink()
                except FileNotFoundError:
                    pass
            result = self._result(pending, outcome)
            self.results[pending.index] = result
            runtime = datetime.timedelta(seconds=outcome.runtime)
            if outcome.ok:
                self.done += 1
                self.notifier.emit(
                    ExperimentFinished(pending.config, pending.key, runtime, pending.attempt)
                )
            else:
                self.failed += 1
                self.failures.append(result.error)
                event = ExperimentFailed(
                    pending.config,
                    pending.key,
                    outcome.error_type or "Exception",
                    outcome.error_message or "",
                    outcome.traceback or "",
                    pending.attempt,
                )
                self.failed_events.append(event)
                self.notifier.emit(event)
            if self.display is not None:
                self.display.finished(pending.key, outcome.ok, outcome.runtime)

    def _stored(self, pending: _Pending, o: Outcome) -> StoredOutcome:
        return StoredOutcome(
            key=pending.key,
            experiment=self.experiment,
            status="done" if o.ok else "failed",
            params=pending.params,
            value=o.value,
            error_type=o.error_type,
            error_message=o.error_message,
            traceback=o.traceback,
            error=o.error,
            attempts=pending.attempt,
            host=o.host,
            pid=o.pid,
            start_time=o.start_time or None,
            end_time=o.end_time or None,
            runtime=o.runtime if o.start_time else None,
            cpu_time=o.cpu_time or None,
            peak_rss=o.peak_rss,
            peak_vms=o.peak_vms,
            metrics=o.metrics,
            progress=o.progress,
            fingerprint=self.fingerprint,
            version=self.m.version,
            run_id=self.run_id,
        )

    def _result(self, pending: _Pending, o: Outcome) -> Result:
        error = None
        inner = None
        if o.ok:
            inner = o.local_value  # for another process's value: loaded by _loaded()
        else:
            error = _rebuild_error(pending, o)
        return Result(
            pending.config,
            inner,
            _metric_tables(o.metrics),
            _datetime(o.start_time or None),
            _timedelta(o.runtime if o.start_time else None),
            _timedelta(o.cpu_time),
            _memory(o.peak_rss, o.peak_vms),
            was_cached=False,
            key=pending.key,
            error=error,
            attempts=pending.attempt,
            host=o.host,
        )

    # -- live progress -----------------------------------------------------------------------
    def _start_display(self, total: int) -> None:
        if not self.m.progress:
            return
        from memento.run.progress import ProgressDisplay

        self.display = ProgressDisplay(
            total=total,
            cached=self.cached,
            experiment=self.experiment,
            workers=self.executor.max_workers,
        )
        self.display.start()

    def _stop_display(self) -> None:
        display, self.display = self.display, None
        if display is not None:
            display.stop()

    def _forward_progress(self, updates: Any) -> None:
        for key, done, total in updates:
            self._on_progress(key, done, total)

    def _on_output(self, key: str, label: str, text: str, first: bool) -> None:
        # From an in-process experiment's thread, as it prints.
        self._show_output(self._keep_output(key, label, text, first))

    def _on_output_records(self, records: list[tuple[str, str, str, bool]]) -> None:
        # From the executor's output reader: what worker processes printed.
        self._show_output("".join(self._keep_output(*record) for record in records))

    def _keep_output(self, key: str, label: str, text: str, first: bool) -> str:
        """Add ``text`` to what ``key`` printed so far; return it as shown (prefixed)."""
        with self.output_lock:
            tail = None if first else self.outputs.get(key)
            if tail is None:
                tail = self.outputs[key] = OutputTail()
            continued = tail.open_line
            tail.add(text)
        return prefix_lines(label, text, continued)

    def _show_output(self, text: str) -> None:
        """Above the live display, else on stderr: stdout stays the user's program's own."""
        if not text:
            return
        display = self.display
        if display is not None:
            display.output(text)
            return
        try:
            stream = driver_stderr()
            stream.write(text)
            stream.flush()
        except Exception:  # a closed stderr must not break the run
            pass

    def _on_progress(self, key: str, done: float, total: float | None) -> None:
        # Called from the progress thread or a worker thread; the main loop writes the store.
        with self.started_lock:
            self.started.add(key)
        if self.display is not None:
            self.display.progress(key, done, total)


def _infrastructure_outcome(pending: _Pending, exc: BaseException) -> Outcome:
    import traceback as tb

    text = "".join(tb.format_exception_only(type(exc), exc))
    return Outcome(
        key=pending.key,
        ok=False,
        error_type=type(exc).__qualname__,
        error_message=str(exc),
        traceback=getattr(exc, "traceback", "") or text,
        error=_pickled(exc),
        attempt=pending.attempt,
    )


def _loaded(pending: _Pending, outcome: Outcome) -> Outcome:
    """Load a value pickled by a worker; one the driver cannot load fails only its cell.

    Checked before storing, so that a value no later run could read is never stored as done
    (such a row would abort every re-run of the grid).
    """
    import cloudpickle

    try:
        outcome.local_value = cloudpickle.loads(outcome.value)
    except Exception as exc:
        return _infrastructure_outcome(
            pending,
            TypeError(
                f"The experiment's return value was pickled in its worker but cannot be "
                f"loaded in the driver ({type(exc).__qualname__}: {exc}); return plain data, "
                f"or types from modules the driver can import too"
            ),
        )
    return outcome


def _pickled(exc: BaseException) -> bytes | None:
    try:
        import cloudpickle

        return bytes(cloudpickle.dumps(exc))
    except Exception:
        return None


def _rebuild_error(pending: _Pending, o: Outcome) -> BaseException:
    return rebuild_error(
        o.error,
        o.error_type or "Exception",
        o.error_message or "",
        o.traceback or "",
        config=pending.config,
        traceback=o.traceback or "",
        key=pending.key,
        attempts=pending.attempt,
    )


def _metric_tables(metrics: Any) -> dict[str, MetricTable]:
    if not metrics:
        return {}
    if isinstance(metrics, str):
        metrics = json.loads(metrics)
    return {name: MetricTable(points) for name, points in metrics.items()}


def _datetime(ts: float | None) -> datetime.datetime | None:
    return datetime.datetime.fromtimestamp(ts) if ts else None


def _timedelta(seconds: float | None) -> datetime.timedelta | None:
    return datetime.timedelta(seconds=seconds) if seconds is not None else None


def _memory(rss: int | None, vms: int | None) -> MemoryUsage | None:
    if rss is None and vms is None:
        return None
    return MemoryUsage(virtual_peak=vms or 0, hardware_peak=rss or 0)
