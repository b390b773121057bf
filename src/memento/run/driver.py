"""Executing a plan: submit jobs, collect outcomes, store them, build results.

:class:`Driver` is one call of ``Memento.run`` once planning is done (:mod:`memento.plan`):
it gets the plan, the frozen :class:`~memento.run.settings.RunSettings`, the store and the
notifier, and owns the executor and the bookkeeping. It keeps about two jobs per worker in
flight, batches tiny experiments, retries failures while attempts remain, writes everything
that finished together in one transaction, and puts results back in matrix order.
"""

from __future__ import annotations

import concurrent.futures as cf
import datetime
import logging
import os
import signal
import sys
import threading
import time
from collections import deque
from typing import Any, NoReturn

import memento.run.progress as live_display
from memento._util.sizes import format_memory
from memento.events import (
    ExperimentFailed,
    ExperimentFinished,
    RunFinished,
    RunStarted,
    SystematicFailure,
)
from memento.exceptions import AggregateException, ExperimentTimeout, WorkerDied, kind_of_stored
from memento.executors.base import Executor
from memento.executors.inflight import InFlight
from memento.executors.workspace import Workspace
from memento.keys.fingerprint import stale_message
from memento.notifications.base import NotificationDispatcher
from memento.plan.planning import LOAD_COLUMNS, Plan
from memento.results.result import Result, ResultList
from memento.run.claims import MIN_CLAIM, Claims
from memento.run.hardware import MAX_MEMORY_SCALE, Hardware, default_threads, should_retry
from memento.run.outcomes import (
    Pending,
    as_datetime,
    as_timedelta,
    engine_error_kind,
    infrastructure_outcome,
    loaded_outcome,
    memory_usage,
    metric_tables,
    rebuild_failure,
)
from memento.run.provenance import Collector
from memento.run.settings import RunSettings
from memento.run.stopping import (
    RunInterrupted,
    Terminated,
    catch_sigterm,
    install_quiet_excepthook,
    restore_sigterm,
)
from memento.store.backends import open_store
from memento.store.base import BaseStore, StoredOutcome
from memento.worker.errors import where_in_traceback
from memento.worker.memory import (
    looks_like_kernel_oom,
    memory_ceiling,
    oom_kill_count,
    read_report,
)
from memento.worker.output import (
    OutputTail,
    driver_stderr,
    install_output_router,
    prefix_lines,
    uninstall_output_router,
)
from memento.worker.resources import limited
from memento.worker.task import read_stacks
from memento.worker.wire import FunctionRef, Job, Outcome, Task

logger = logging.getLogger("memento")

_BATCH_TARGET = 0.05  # seconds of work per job when experiments are tiny
#: What is read of a result another driver stored: its error, then what a run loads.
_ERROR_COLUMNS = ("status", "error", "error_type", "error_message", "traceback", "kind", "stacks")
_LANDED_COLUMNS = _ERROR_COLUMNS + LOAD_COLUMNS
_MAX_BATCH = 64
#: Seconds an experiment runs before it is written to the ``running`` table.
_MARK_AFTER = 0.2
#: Seconds of work claimed at once (see Driver._claim_ahead), and the most experiments.
_CLAIM_AHEAD = 0.25
_MAX_CLAIM = 256
#: How many failures of the same error, and nothing else, make a systematic failure.
SYSTEMATIC_AFTER = 3


class Driver:
    """One call of ``Memento.run``: runs ``plan`` on ``executor`` as ``settings`` say, writing
    to ``store`` and telling ``notifier``; does the bookkeeping. Closes the store and the
    notifier when :meth:`execute` ends.

    Example::

        plan = make_plan(experiment, matrix, keep_rows=True)
        settings = RunSettings(experiment)
        store = open_store(plan.store_path)
        executor, owned = make_executor(settings.executor, settings.num_workers)
        notifier = NotificationDispatcher()
        driver = Driver(plan, settings, store, notifier, executor, owns_executor=owned)
        results = driver.execute()
    """

    def __init__(
        self,
        plan: Plan,
        settings: RunSettings,
        store: BaseStore,
        notifier: NotificationDispatcher,
        executor: Executor,
        *,
        owns_executor: bool,
    ) -> None:
        #: The run's settings, frozen.
        self.settings = settings
        self.plan = plan
        # force_cache runs nothing and writes nothing, so a store in a read-only place (an
        # archive, a read-only mount) serves it.
        self.read_only = settings.force_cache
        self.store = store
        self.executor = executor
        #: The permissions of checkpoint files: the store file's (read once a run).
        self.checkpoint_mode: int | None = None
        #: Shut the executor down when the run ends (one made for this run, not the user's).
        self.owns_executor = owns_executor
        self.notifier = notifier
        self.results: list[Result | None] = [None] * len(plan.keys)
        self.run_id = os.urandom(6).hex()  # 12 random hex digits, as uuid4().hex[:12] was
        self.fingerprint = plan.fingerprint
        # force_cache runs nothing, so stale results are served then, whatever the policy.
        self.reuse_stale = settings.on_code_change != "rerun" or settings.force_cache
        self.experiment = plan.experiment
        self.function = FunctionRef(settings.func, plan.identity)
        self.done = self.failed = self.cached = 0
        #: This run's leases (None when it runs nothing: force_cache).
        self.claims: Claims[Pending] | None = None
        #: This run's provenance, collected in the background while it runs something.
        self.provenance: Collector | None = None
        self.failures: list[Any] = []
        self.failed_events: list[Any] = []
        self.runtimes: deque[float] = deque(maxlen=50)
        self.display: Any = None
        # Keys whose worker reported that they began, not yet written to the store.
        # (key -> when it was first reported, monotonic seconds)
        self.started: dict[str, float] = {}
        self.started_lock = threading.Lock()
        self.marked: set[str] = set()
        # Whether workers say when each experiment begins: in-process ones through the job's
        # own callback, the others through the executor's declared progress channel.
        self.has_progress = self.executor.in_process or self.executor.reports_progress
        #: What the run asks of the machine (``Memento.run`` sets it from
        #: :func:`memento.run.hardware.plan_hardware`; else the defaults for the executor).
        self.hardware: Hardware | None = None
        #: Where workers leave what the driver reads after a timeout or a memory kill.
        self.report_dir = ""
        #: The experiments ``max_failures`` kept from running, and whether it did.
        self.not_run: list[Pending] = []
        self.stopping = False
        #: (kind, type, where) of each failure, in order, until the first differs.
        self.signatures: list[tuple[str, str, str]] | None = []
        self.systematic_said = False
        #: The kernel's OOM kill count in this process's cgroup, when last looked at.
        self.oom_kills: int | None = None

    # -- the whole run ---------------------------------------------------------------------
    def execute(self) -> ResultList:
        """Run what the plan lacks, storing each outcome as it arrives; return every result
        in matrix order, or raise an :class:`AggregateException` with the failures."""
        started = time.monotonic()
        to_run, cached_idx = self._split()
        self._report_stale()
        if not self.read_only:
            self.store.start_run(
                self.run_id,
                self.experiment,
                len(self.plan.keys),
                len(to_run),
                len(cached_idx),
                fingerprint=self.plan.fingerprint,
            )
        stop = self._run_then_close(to_run, cached_idx, started)
        if stop is not None:
            self._stopped(stop)
        results = ResultList(r for r in self.results if r is not None)
        results.not_run = [p.config for p in sorted(self.not_run, key=lambda p: p.index)]
        if self.failures and self.settings.raise_on_failure:
            error = AggregateException(self.failures)
            error.results = results  # type: ignore[attr-defined]
            error.not_run = results.not_run  # type: ignore[attr-defined]
            if results.not_run:
                error.args = (
                    f"{error.args[0]}\n{len(results.not_run)} experiment(s) not run: "
                    f"max_failures={self.settings.max_failures} was reached (the next run() "
                    "runs them)",
                )
            raise error
        return results

    def _split(self) -> tuple[list[Pending], list[int]]:
        """What must run, and the indices of the stored results to reuse."""
        to_run: list[Pending] = []
        cached_idx: list[int] = []
        plan = self.plan
        for i, (config, key, state) in enumerate(zip(plan.configs, plan.keys, plan.states)):
            reuse = state == "cached" or (state == "stale" and self.reuse_stale)
            if reuse and not self.settings.force_run:
                cached_idx.append(i)
            else:
                to_run.append(Pending(i, key, config))
        return to_run, cached_idx

    def _report_stale(self) -> None:
        """Warn about reused stale results, or say they run again, as ``on_code_change`` asks."""
        plan = self.plan
        stale = plan.count("stale")
        if not stale or self.settings.force_run:
            return
        if self.settings.on_code_change == "warn":
            rows = plan.rows or {}
            stored = [
                rows[k][1] for k, s in zip(plan.keys, plan.states) if s == "stale" and k in rows
            ]
            logger.warning("%s", stale_message(stale, self.experiment, stored, plan.fingerprint))
        elif self.settings.on_code_change == "rerun" and not self.reuse_stale:
            logger.info(
                "%d stored result(s) of %s were computed by older code; computing them again",
                stale,
                self.experiment,
            )

    def _run_then_close(
        self, to_run: list[Pending], cached_idx: list[int], started: float
    ) -> KeyboardInterrupt | None:
        """Load the cached results, run the rest; then, whatever happened, finish the run's
        row, send the end-of-run event and close. Returns the Ctrl-C or SIGTERM that stopped
        the run, if one did."""
        plan = self.plan
        run_state = "failed"
        stop: KeyboardInterrupt | None = None
        previous_sigterm = catch_sigterm()
        try:
            for i in self._load_cached(cached_idx):
                to_run.append(Pending(i, plan.keys[i], plan.configs[i]))
            self.notifier.emit(
                RunStarted(
                    total=len(plan.keys),
                    to_run=len(to_run),
                    cached=self.cached,
                    failed_before=plan.count("failed"),
                    store_path=self.store.name,
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
                self._attach_provenance()
                # Also clears this run's in-flight rows, so `memento status` shows none.
                if not self.read_only:
                    self.store.finish_run(self.run_id, self.done, self.failed, run_state)
            finally:
                restore_sigterm(previous_sigterm)
                if run_state != "interrupted" and self.settings.notify_on_complete:
                    self._emit_finished(started)
                self.notifier.close()
                self.store.close()
        return stop

    def _attach_provenance(self) -> None:
        """Store this run's provenance (when it ran something), and give every result its
        run's. Never fails the run: provenance is a record, not a result."""
        try:
            if self.provenance is not None:
                record = self.provenance.result().as_row()
                self.store.record_provenance(self.run_id, record)
            run_ids = sorted({r.run_id for r in self.results if r is not None and r.run_id})
            found = self.store.provenance(run_ids) if run_ids else {}
        except Exception as exc:
            logger.warning("The run's provenance could not be recorded or read: %s", exc)
            return
        for result in self.results:
            if result is not None:
                result.provenance = found.get(result.run_id)

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
            f"{self.store.name}. Running again resumes with the {remaining} remaining.\n"
        )
        sys.stderr.flush()
        if terminated:
            raise SystemExit(128 + signal.SIGTERM) from None
        install_quiet_excepthook()
        raise RunInterrupted(f"run of {self.experiment} interrupted") from None

    def _emit_finished(self, started: float) -> None:
        self.notifier.emit(
            RunFinished.since(
                started,
                done=self.done,
                cached=self.cached,
                failures=self.failed_events,
                store_path=self.store.name,
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
            try:
                inner = self.store.load_value(*row[2:6])
            except Exception as exc:
                logger.warning("Stored result %s cannot be loaded (%s); running it again", key, exc)
                missing.append(i)
                continue
            self.results[i] = self._cached_result(i, key, row, inner)
            self.cached += 1
        return missing

    def _cached_result(self, index: int, key: str, row: tuple[Any, ...], inner: Any) -> Result:
        """The result of a stored row (``LOAD_COLUMNS``) whose value loaded as ``inner``."""
        (*_, start, runtime, cpu, rss, vms, metrics, attempts, host, run_id, output_dir, _) = row
        return Result(
            self.plan.configs[index],
            inner,
            metric_tables(metrics),
            as_datetime(start),
            as_timedelta(runtime),
            as_timedelta(cpu),
            memory_usage(rss, vms),
            was_cached=True,
            key=key,
            attempts=attempts or 1,
            host=host or "",
            run_id=run_id or "",
            output_dir=output_dir,
        )

    # -- running ---------------------------------------------------------------------------
    def _job(self, batch: list[Pending], gpus: tuple[str, ...] | None = None) -> Job:
        ex = self.executor
        hw = self.hw
        memory = hw.memory_limit
        scale = max(p.memory_scale for p in batch)
        if memory is not None and ex.requests_memory:
            memory = int(memory * scale)  # an oom retry asks an allocating engine for more
        return Job(
            function=self.function,
            tasks=[Task(p.key, p.config, p.attempt) for p in batch],
            checkpoint_dir=str(self.store.checkpoint_directory or ""),
            checkpoint_mode=self.checkpoint_mode,
            checkpoint_url=self.store.checkpoint_url,
            side_dir=str(self.store.directory or ""),
            output_root=self.output_root,
            thread_cpu=ex.measures_thread_cpu,
            reset_memory_peak=ex.own_process,
            pickle_values=not ex.in_process,
            progress=self._on_progress if ex.in_process else None,
            output=self._on_output if ex.in_process else None,
            timeout=self.settings.timeout,
            report_dir=self.report_dir,
            threads=hw.threads,
            gpus=gpus,
            gpu_request=hw.gpu_request,
            memory_limit=memory,
            memory_scale=scale,
        )

    def _execute(self, to_run: list[Pending]) -> None:
        ex = self.executor
        self.hw = self.hardware or Hardware(threads=default_threads(self.settings, ex))
        slots = self.hw.gpu_slots
        job_gpus: dict[cf.Future[Any], tuple[str, ...]] = {}
        queue: deque[Pending] = deque(to_run)
        inflight: InFlight[list[Pending]] = InFlight(ex, self.settings.timeout)
        running = inflight.running
        # Job ids go through a connection of their own: an engine records them from its own
        # threads while this one writes outcomes (SQLite's WAL and busy timeout make the two
        # safe together). Opened on first use, closed with the run.
        jobs = open_store(self.store.location)
        ex.prepare(Workspace(self.store.directory, jobs))
        self.provenance = Collector(_source_file(self.settings.func))
        self.checkpoint_mode = self.store.side_file_mode()
        directory = self.store.directory
        self.output_root = self.settings.output_dir or (
            str(directory / "outputs") if directory is not None else ""
        )
        self.report_dir = self._make_report_dir()
        self.oom_kills = oom_kill_count()
        claims = self.claims = Claims[Pending](
            self.store,
            open_store(self.store.location),
            self.run_id,
            since=self.plan.made_at,
            lease_timeout=self.settings.lease_timeout,
            known=self.plan.stored_at,
        )
        claims.start()
        # What each running experiment printed so far, as it arrived: what a crash or a
        # timeout leaves of its output.
        self.outputs: dict[str, OutputTail] = {}
        self.output_lock = threading.Lock()
        routed = ex.in_process
        if routed:
            install_output_router()
        ex.set_output_sink(self._on_output_records)
        if ex.reports_progress:
            # Read even without a live display: a worker's first update says that the
            # experiment began, which is when it is marked running in the store.
            updates = ex.progress_updates()
            threading.Thread(target=self._forward_progress, args=(updates,), daemon=True).start()
        # Threads of this process run the experiments: cap its pools for the run.
        pools = limited(self.hw.threads if ex.in_process else None)
        pools.__enter__()
        try:
            while queue or inflight or (claims.waiting and not self.stopping):
                while queue and self._room(inflight) and not self.stopping:
                    gpus = slots.take() if slots is not None else None
                    if slots is not None and gpus is None:
                        break  # every GPU is in use: wait for a job to finish
                    batch = self._next_batch(queue)
                    if not batch:
                        if slots is not None and gpus is not None:
                            slots.release(gpus)
                        break
                    future = inflight.submit(self._job(batch, gpus), batch)
                    if gpus is not None:
                        job_gpus[future] = gpus
                    if self.display is not None:
                        for p in batch:
                            self.display.submitted(p.key, str(p.config))
                idle = not queue and not inflight
                if inflight:
                    # Sooner while experiments that began wait to be marked running.
                    done = inflight.wait(_MARK_AFTER / 2 if self.started else 0.5)
                else:
                    done = []
                    if idle:  # only experiments held elsewhere are left: wait for them
                        claims.wait()
                self.notifier.tick()
                if done:
                    finished: list[tuple[Pending, Outcome]] = []
                    for future, batch in done:
                        if slots is not None and future in job_gpus:
                            slots.release(job_gpus.pop(future))
                        finished.extend(self._collect(future, batch, queue))
                    self._record(finished, queue)
                if self.stopping and queue:
                    self._stop_submitting(queue)
                # After the finished ones left the running table, so that a worker's next
                # experiment never counts beside the one it just finished.
                self._mark_started(running)
                if claims.due(idle=idle):
                    self._follow_elsewhere(queue)
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
            pools.__exit__(None, None, None)
            if self.stopping and claims.waiting:
                # Held by other drivers: not waited for.
                self.not_run.extend(p for p, _ in claims.waiting.values())
            self._remove_report_dir()
            # Every line shows before the display's last frame and before run() returns.
            ex.drain_output()
            ex.set_output_sink(None)
            if routed:
                uninstall_output_router()
            if self.owns_executor:
                ex.shutdown()
            jobs.close()
            claims.stop()

    def _room(self, inflight: InFlight[list[Pending]]) -> bool:
        """Whether to submit another job: about two per worker are kept in flight, but with
        ``max_failures`` only one per worker, so that what runs when it is reached is what
        finishes (nothing waits queued in the engine)."""
        if self.settings.max_failures is not None and len(inflight) >= self.executor.max_workers:
            return False
        return inflight.has_room()

    def _mark_started(self, running: dict[cf.Future[Any], list[Pending]]) -> None:
        """Write the experiments that began at least :data:`_MARK_AFTER` seconds ago and are
        still running into the ``running`` table.

        Rows are written when a worker reports that an experiment began, not at submission,
        so ``memento status`` counts only what really runs; and only once it has run a
        moment, so that a grid of short experiments costs no store write for each. An
        executor that sends no such report (a remote engine without a progress channel) has
        the jobs it was handed (about two per worker, never the whole grid) counted as
        running.
        """
        now = time.monotonic()
        with self.started_lock:
            reported, self.started = self.started, {}
        by_key = {p.key: p for batch in running.values() for p in batch}
        if not self.has_progress:
            for key in by_key:
                reported.setdefault(key, now)
        young: dict[str, float] = {}
        fresh = []
        for key, since in reported.items():
            if key not in by_key or key in self.marked:
                continue  # finished already, or marked
            if now - since < _MARK_AFTER:
                young[key] = since
            else:
                fresh.append(by_key[key])
        if self.has_progress:
            # A worker reports its next experiment's start on the progress pipe, which may
            # overtake the result of the one before: never count more than the workers.
            busy = sum(1 for k in by_key if k in self.marked)
            room = max(0, self.executor.max_workers - busy)
            young.update((p.key, reported[p.key]) for p in fresh[room:])
            fresh = fresh[:room]
        with self.started_lock:
            for key, since in young.items():
                self.started.setdefault(key, since)
        if fresh:
            self.marked.update(p.key for p in fresh)
            self.store.mark_running(
                self.run_id, self.experiment, ((p.key, p.params) for p in fresh)
            )

    def _next_batch(self, queue: deque[Pending]) -> list[Pending]:
        size = 1
        mean = self._mean_runtime()
        # max_failures counts experiments: one per job, so that it stops close to its count.
        batching = self.settings.timeout is None and self.settings.max_failures is None
        if self.executor.batching and batching and mean is not None:
            size = int(_BATCH_TARGET / max(mean, 1e-6))
            # Leave every worker some jobs, so the tail of the grid stays parallel.
            fair = len(queue) // max(1, 2 * self.executor.max_workers)
            size = max(1, min(size, _MAX_BATCH, fair))
        if self.claims is not None:
            # Claimed just before submitting; what other drivers hold or finished leaves.
            self._land(self.claims.take(queue, size, ahead=self._claim_ahead(mean)))
            self._show_elsewhere()
        return [queue.popleft() for _ in range(min(size, len(queue)))]

    def _mean_runtime(self) -> float | None:
        """The mean runtime of the experiments that finished lately (``None`` before any)."""
        return sum(self.runtimes) / len(self.runtimes) if self.runtimes else None

    def _claim_ahead(self, mean: float | None) -> int:
        """How many experiments to claim at once: about :data:`_CLAIM_AHEAD` seconds of work
        for the workers at the ``mean`` runtime, so that short experiments cost few claim
        transactions and long ones are not held away from other drivers."""
        if mean is None:
            return MIN_CLAIM
        ahead = int(_CLAIM_AHEAD * self.executor.max_workers / max(mean, 1e-6))
        return max(MIN_CLAIM, min(ahead, _MAX_CLAIM))

    def _collect(
        self, future: cf.Future[Any], batch: list[Pending], queue: deque[Pending]
    ) -> list[tuple[Pending, Outcome]]:
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
            return [(batch[0], self._engine_failure(batch[0], exc))]
        for outcome in outcomes:
            self.runtimes.append(outcome.runtime)
        return list(zip(batch, outcomes))

    # -- recording what finished -------------------------------------------------------------
    def _record(self, finished: list[tuple[Pending, Outcome]], queue: deque[Pending]) -> None:
        """Store what finished together, retrying failures that have attempts left; then
        put each result in place and tell the notifier and the display."""
        final: list[tuple[Pending, Outcome]] = []
        for pending, outcome in self._arrived(finished):
            if self._retried(pending, outcome, queue):
                continue
            final.append((pending, outcome))
        if not final:
            return
        # The durable point: one transaction for everything that finished together.
        self.store.write_outcomes([self._stored(p, o) for p, o in final])
        for pending, outcome in final:
            result = self._result(pending, outcome)
            self.results[pending.index] = result
            self._emit_outcome(pending, outcome, result)

    def _arrived(self, finished: list[tuple[Pending, Outcome]]) -> list[tuple[Pending, Outcome]]:
        """The outcomes with their value decoded and what their experiment printed."""
        if any(o.output is None for _, o in finished):
            self.executor.drain_output()  # a crash or a timeout: its output may be on its way
        arrived = []
        for pending, outcome in finished:
            with self.output_lock:
                tail = self.outputs.pop(pending.key, None)
            output = outcome.output
            if output is None and tail is not None:
                output = tail.text()
            outcome = self._decoded(pending, outcome)
            outcome.output = output
            arrived.append((pending, outcome))
        return arrived

    def _decoded(self, pending: Pending, outcome: Outcome) -> Outcome:
        """The outcome with its value loaded (to return), from what the worker stored: a
        value the driver cannot load fails the experiment instead (in-process, the worker
        hands over the object itself)."""
        if outcome.modules and self.provenance is not None:
            self.provenance.add_modules(outcome.modules)
        if not outcome.ok or self.executor.in_process:
            return outcome
        path = self.store.value_path(outcome.value_file) if outcome.value_file else None
        return loaded_outcome(pending, outcome, path)

    def _retried(self, pending: Pending, outcome: Outcome, queue: deque[Pending]) -> bool:
        """Queue the next attempt of a failed experiment that has attempts left, when
        ``retry_on`` retries its kind of failure (by default, the transient kinds only)."""
        if outcome.ok or pending.attempt > self.settings.retries or self.stopping:
            return False
        kind = outcome.kind or "error"
        if not should_retry(self.settings.retry_on, rebuild_failure(pending, outcome), kind):
            return False
        logger.info(
            "Retrying %s after %s (%s; attempt %d of %d)",
            pending.config,
            outcome.error_type,
            kind,
            pending.attempt + 1,
            self.settings.retries + 1,
        )
        self.marked.discard(pending.key)  # marked running again when it begins
        retry = pending.again()
        if kind == "oom":
            factor = self.settings.retry_memory_factor
            retry.memory_scale = min(pending.memory_scale * factor, MAX_MEMORY_SCALE)
        queue.append(retry)
        return True

    # -- failures ------------------------------------------------------------------------------
    def _engine_failure(self, pending: Pending, exc: BaseException) -> Outcome:
        """The failed outcome of an experiment whose job the engine could not finish: a
        timeout gets the stacks its worker dumped; a dead worker is an ``oom`` when its memory
        watch stopped it, or when the kernel's OOM killer did as far as can be told (SIGKILL
        while this cgroup's OOM kill count went up), else as its exit status says."""
        kind = engine_error_kind(exc)
        if isinstance(exc, ExperimentTimeout):
            stacks = read_stacks(self.report_dir, pending.key)
            if stacks:
                exc.stacks = stacks
        elif isinstance(exc, WorkerDied):
            report = read_report(self.report_dir, pending.key) if self.report_dir else None
            if report is not None:
                kind = "oom"
                exc = WorkerDied(
                    f"The experiment's processes used {format_memory(report.get('rss'))}, over "
                    f"memory_limit={format_memory(report.get('limit'))}; its worker was stopped",
                    kind="oom",
                )
            elif exc.exitcode == -signal.SIGKILL and self._kernel_oom():
                kind = "oom"
                exc = WorkerDied(
                    f"{exc} by the kernel's out-of-memory killer (this cgroup's OOM kill count "
                    "went up)",
                    kind="oom",
                )
        return infrastructure_outcome(pending, exc, kind)

    def _kernel_oom(self) -> bool:
        """Whether the kernel's OOM killer struck since the last look (each kill counted once)."""
        before, self.oom_kills = self.oom_kills, oom_kill_count()
        return looks_like_kernel_oom(
            -signal.SIGKILL, None, before, self.oom_kills, memory_ceiling()
        )

    def _note_failure(self, pending: Pending, outcome: Outcome, event: ExperimentFailed) -> None:
        """After a failure is stored: say at once when the first failures are all the same
        error (a systematic failure), and stop submitting at ``max_failures``."""
        signature = (event.kind, event.exc_type, event.where)
        if self.signatures is not None:
            if self.signatures and self.signatures[0] != signature:
                self.signatures = None  # the failures differ: no systematic failure to say
            else:
                self.signatures.append(signature)
                count = len(self.signatures)
                if count >= SYSTEMATIC_AFTER and not self.systematic_said:
                    self.systematic_said = True
                    systematic = SystematicFailure(
                        count=count,
                        failures=self.failed,
                        kind=event.kind,
                        exc_type=event.exc_type,
                        where=event.where,
                        message=event.message,
                        experiment=self.experiment,
                        store_path=self.store.name,
                    )
                    text = f"{systematic.text}: {event.message}"
                    if self.display is not None:
                        self.display.warn(text)  # shown above the live display: once
                    else:
                        logger.warning("%s", text)
                    self.notifier.emit(systematic)
        limit = self.settings.max_failures
        if limit is not None and self.failed >= limit and not self.stopping:
            self.stopping = True

    def _stop_submitting(self, queue: deque[Pending]) -> None:
        """``max_failures`` was reached: what is queued is not run (the next run runs it)."""
        self.not_run.extend(queue)
        queue.clear()
        text = (
            f"max_failures={self.settings.max_failures} reached: stopped submitting; "
            f"{len(self.not_run)} experiment(s) not run (the next run() runs them)"
        )
        if self.display is not None:
            self.display.warn(text)
        else:
            logger.warning("%s", text)

    def _make_report_dir(self) -> str:
        """A folder for this run's worker reports (stacks at a timeout, memory kills): in the
        store's side directory, which cluster workers reach too, else a temporary one."""
        import tempfile

        directory = self.store.directory
        try:
            if directory is not None:
                path = directory / "reports" / self.run_id
                path.mkdir(parents=True, exist_ok=True)
                return str(path)
            return tempfile.mkdtemp(prefix="memento-reports-")
        except OSError:
            return ""

    def _remove_report_dir(self) -> None:
        import shutil

        if self.report_dir:
            shutil.rmtree(self.report_dir, ignore_errors=True)
            parent = os.path.dirname(self.report_dir)
            if os.path.basename(parent) == "reports":
                try:
                    os.rmdir(parent)  # only when no other run's reports are there
                except OSError:
                    pass

    # -- experiments other drivers hold ------------------------------------------------------
    def _follow_elsewhere(self, queue: deque[Pending]) -> None:
        """Read what other drivers stored for this grid; run here what a dead one held."""
        assert self.claims is not None
        landed, back = self.claims.poll()
        self._land(landed)
        queue.extend(back)
        self._show_elsewhere()

    def _show_elsewhere(self) -> None:
        if self.display is not None and self.claims is not None:
            self.display.elsewhere(len(self.claims.waiting), self.claims.holders())

    def _land(self, landed: list[Pending]) -> None:
        """Put in place the outcomes another driver stored for ``landed``, as if this run
        had computed them: a done one like a cached result, a failed one as a failure."""
        if not landed:
            return
        rows = self.store.lookup([p.key for p in landed], _LANDED_COLUMNS)
        for pending in landed:
            row = rows.get(pending.key)
            if row is None:  # forgotten meanwhile: nothing to show
                continue
            status, error, etype, emsg, tb, kind, stacks = row[: len(_ERROR_COLUMNS)]
            load = row[len(_ERROR_COLUMNS) :]
            if status == "done":
                try:
                    inner = self.store.load_value(*load[2:6])
                except Exception as exc:
                    logger.warning("Result %s cannot be loaded (%s)", pending.key, exc)
                    continue
                result = self._cached_result(pending.index, pending.key, load, inner)
            else:
                outcome = Outcome(
                    key=pending.key,
                    ok=False,
                    error=error,
                    error_type=etype,
                    error_message=emsg,
                    traceback=tb,
                    kind=kind_of_stored(kind, etype),
                    stacks=stacks,
                )
                result = self._cached_result(pending.index, pending.key, load, None)
                result.error = rebuild_failure(pending, outcome)
                self.failures.append(result.error)
            self.results[pending.index] = result
            if self.display is not None:
                self.display.landed(status == "done")

    def _emit_outcome(self, pending: Pending, outcome: Outcome, result: Result) -> None:
        """Count a stored outcome, and tell the notifier and the live display."""
        if outcome.ok:
            self.done += 1
            runtime = datetime.timedelta(seconds=outcome.runtime)
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
                kind=outcome.kind or "error",
                where=outcome.where or where_in_traceback(outcome.traceback),
            )
            self.failed_events.append(event)
            self.notifier.emit(event)
        if self.display is not None:
            kind = None if outcome.ok else (outcome.kind or "error")
            self.display.finished(pending.key, outcome.ok, outcome.runtime, kind=kind)
        if not outcome.ok:
            self._note_failure(pending, outcome, event)

    def _stored(self, pending: Pending, o: Outcome) -> StoredOutcome:
        """The row the store keeps for a final outcome."""
        return StoredOutcome(
            key=pending.key,
            experiment=self.experiment,
            status="done" if o.ok else "failed",
            params=pending.params,
            value=o.value,
            value_file=o.value_file,
            value_format=o.value_format,
            value_info=o.value_info,
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
            version=self.settings.version,
            run_id=self.run_id,
            output=o.output or None,
            output_dir=o.output_dir,
            kind=None if o.ok else (o.kind or "error"),
            stacks=o.stacks,
        )

    def _result(self, pending: Pending, o: Outcome) -> Result:
        error = None
        inner = None
        if o.ok:
            inner = o.local_value  # for another process's value: loaded by loaded_outcome()
        else:
            error = rebuild_failure(pending, o)
        return Result(
            pending.config,
            inner,
            metric_tables(o.metrics),
            as_datetime(o.start_time or None),
            as_timedelta(o.runtime if o.start_time else None),
            as_timedelta(o.cpu_time),
            memory_usage(o.peak_rss, o.peak_vms),
            was_cached=False,
            key=pending.key,
            error=error,
            attempts=pending.attempt,
            host=o.host,
            run_id=self.run_id,
            output_dir=o.output_dir,
        )

    # -- live progress -----------------------------------------------------------------------
    def _start_display(self, total: int) -> None:
        if not self.settings.progress:
            return
        self.display = live_display.ProgressDisplay(
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
            self.started.setdefault(key, time.monotonic())
        if self.display is not None:
            self.display.progress(key, done, total)


def _source_file(func: Any) -> str | None:
    """The file that defines the experiment (its repository is the run's git provenance)."""
    import inspect

    for candidate in (func, getattr(func, "__func__", None), type(func)):
        try:
            if candidate is not None:
                return inspect.getsourcefile(candidate)
        except TypeError:
            continue
    return None
