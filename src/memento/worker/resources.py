"""CPU threads and GPUs per experiment: caps on BLAS/OpenMP thread pools, and the GPU ids
each experiment may see.

Thread pools. numpy, scipy, scikit-learn and PyTorch compute on pools (OpenBLAS, MKL, BLIS,
OpenMP) sized for every core of the machine, so N worker processes run N x cores threads and
slow each other down. :class:`ThreadCap` caps them in a worker process, before each
experiment, in two ways at once:

* the usual environment variables (:data:`THREAD_VARIABLES`), read by a pool when its library
  loads, so they reach what the experiment imports later and the processes it starts;
* threadpoolctl for the pools already loaded: numpy imported in the driver before the workers
  were forked has its OpenBLAS pool sized to every core already, and no variable changes that.

It calls threadpoolctl again only when the cap changed or modules were imported since the last
call, so an experiment costs a few microseconds when nothing changed. :func:`limited` does
the same for the driver's own process (executors that run experiments in the driver's threads)
for the duration of a run, and puts everything back afterwards.

GPUs. :func:`visible_gpus` lists the GPUs the driver may hand out (``CUDA_VISIBLE_DEVICES``,
else ``nvidia-smi -L``); :class:`GpuSlots` hands them to experiments, whole (``g`` per
experiment) or shared (``1/k``: at most ``k`` experiments per GPU), never more than that at
once; :func:`gpu_environment` is what shows an experiment only its own.

How memento uses it: ``Memento(threads_per_experiment=...)`` is checked by
:func:`check_threads` and ``gpus_per_experiment`` by :func:`check_gpus_per_experiment`; the
driver makes one :class:`GpuSlots` per run (an error before anything runs when no GPU is
visible), takes ids for each job it submits and releases them when the job is collected; the
worker calls ``thread_cap.apply(job.threads)`` before each experiment, before it snapshots
``os.environ``, and sets ``gpu_environment(job.gpus)`` in the snapshot's scope.

Example::

    thread_cap.apply(2)                 # in a worker, before each experiment
    slots = GpuSlots(visible_gpus(), 0.5)
    ids = slots.take()                  # ("0",), or None when every GPU is full
    os.environ.update(gpu_environment(ids))
    slots.release(ids)
"""

from __future__ import annotations

import collections
import contextlib
import math
import numbers
import os
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

#: The variables thread pools read when they load: OpenMP (GCC's libgomp, LLVM's libomp,
#: Intel's; also PyTorch's intra-op pool), OpenBLAS, MKL, Apple's Accelerate, numexpr, BLIS.
#: Left out on purpose: ``NUMBA_NUM_THREADS`` (numba then refuses a later
#: ``numba.set_num_threads`` above it, an error where there was none), ``GOTO_NUM_THREADS``
#: (OpenBLAS reads ``OPENBLAS_NUM_THREADS`` first), and library-specific knobs such as
#: ``POLARS_MAX_THREADS`` or ``RAYON_NUM_THREADS`` (not BLAS or OpenMP pools).
THREAD_VARIABLES: tuple[str, ...] = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "BLIS_NUM_THREADS",
)


def check_threads(value: object) -> int | None:
    """``Memento(threads_per_experiment=...)`` checked: an int >= 1, or ``None`` (leave the
    pools alone). A ``TypeError`` or ``ValueError`` naming the argument otherwise.

    Example::

        check_threads(4)      # 4
        check_threads(None)   # None
        check_threads(0)      # ValueError: threads_per_experiment must be ...
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"threads_per_experiment must be a positive int (threads per experiment) or None "
            f"(leave thread pools alone), got {value!r} of type {type(value).__name__}"
        )
    if value < 1:
        raise ValueError(
            f"threads_per_experiment must be a positive int (threads per experiment) or None "
            f"(leave thread pools alone), got {value!r}"
        )
    return int(value)


def default_threads(cpus: int, workers: int) -> int:
    """Each experiment's share of ``cpus`` when ``workers`` run at once (at least one).

    Example::

        default_threads(8, 3)   # 2
        default_threads(2, 4)   # 1
    """
    return max(1, cpus // max(1, workers))


class ThreadCap:
    """Caps this process's thread pools; one per process (:data:`thread_cap`).

    What it cannot see: an experiment that resizes a pool itself (``threadpool_limits``,
    ``torch.set_num_threads``) without importing anything keeps that size for the next
    experiment of the same worker, as :meth:`apply` skips threadpoolctl when no module was
    imported. OpenMP's ``omp_set_num_threads`` (what threadpoolctl calls for an OpenMP pool
    already loaded) holds for the calling thread, so call :meth:`apply` in the thread that runs
    the experiment.
    """

    def __init__(self) -> None:
        self._applied: int | None = None
        self._value = ""
        self._modules = -1

    def apply(self, threads: int | None) -> None:
        """Cap every BLAS and OpenMP pool of this process at ``threads`` (``None``: nothing).

        Sets :data:`THREAD_VARIABLES` to ``str(threads)`` and, when the cap changed or
        modules were imported since the last call, limits the pools loaded now with
        threadpoolctl (kept in force, never restored). Idempotent, and cheap when nothing
        changed: a look at ``len(sys.modules)`` and the variables.

        Example::

            thread_cap.apply(1)    # numpy's pool, loaded or not, now runs 1 thread
        """
        if threads is None:
            return
        if threads == self._applied and len(sys.modules) == self._modules:
            environ, value = os.environ, self._value
            for name in THREAD_VARIABLES:
                if environ.get(name) != value:
                    break
            else:
                return
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be a positive int or None, got {threads!r}")
        value = str(threads)
        _set_variables(dict.fromkeys(THREAD_VARIABLES, value))
        _limit_pools(threads)
        self._applied, self._value = threads, value
        self._modules = len(sys.modules)  # threadpoolctl's own import counts as seen

    def _forget(self) -> None:
        """The pools changed behind :meth:`apply`'s back: look at them again next time."""
        self._applied = None


#: This process's cap (a forked worker inherits the driver's, and the pools that go with it).
thread_cap = ThreadCap()


def _set_variables(values: Mapping[str, str | None]) -> None:
    """Set (``None``: remove) each variable, touching only those that differ."""
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        elif os.environ.get(name) != value:
            os.environ[name] = value


def _limit_pools(threads: int) -> Any:
    """threadpoolctl's limit on the pools loaded now (kept in force); ``None`` without it."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # the variables still reach what loads later
        return None
    return threadpool_limits(limits=threads)


_this_thread = threading.local()


def cap_this_thread(threads: int | None) -> None:
    """Cap the OpenMP pools of the calling thread at ``threads``: OpenMP keeps its thread
    count per calling thread, so a thread of the driver's process that runs experiments
    (the thread executor) caps its own, beside :func:`limited`'s process-wide BLAS caps.
    Cheap when nothing changed since this thread's last call (no module imported)."""
    if threads is None:
        return
    state = (threads, len(sys.modules))
    if getattr(_this_thread, "state", None) == state:
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(limits=threads, user_api="openmp")
    _this_thread.state = (threads, len(sys.modules))


@contextlib.contextmanager
def limited(threads: int | None) -> Iterator[None]:
    """Cap this process's pools and thread variables at ``threads`` for the duration, then put
    back the pools' sizes and the variables as they were (``None``: nothing).

    For experiments that run in the driver's own threads: enter it once around the run, in
    the driver's thread, not once per experiment (it is process-wide, not per thread). An
    OpenMP pool already loaded is capped for the entering thread only (see
    :class:`ThreadCap`); BLAS pools are capped for every thread.

    Example::

        with limited(2):
            run_experiments_in_threads()
    """
    if threads is None:
        yield
        return
    check_threads(threads)
    saved = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    thread_cap._forget()
    _set_variables(dict.fromkeys(THREAD_VARIABLES, str(threads)))
    limits = _limit_pools(threads)
    try:
        yield
    finally:
        if limits is not None:
            limits.restore_original_limits()
        _set_variables(saved)
        thread_cap._forget()


# -- GPUs -------------------------------------------------------------------------------------
def visible_gpus(
    environ: Mapping[str, str] | None = None,
    *,
    smi: str = "nvidia-smi",
    timeout: float = 10.0,
) -> list[str]:
    """The GPUs this process may give to experiments, as ids for ``CUDA_VISIBLE_DEVICES``.

    ``CUDA_VISIBLE_DEVICES`` when it is set (in ``environ``, by default ``os.environ``): its
    comma-separated entries, whitespace stripped and empty entries dropped, each an index or
    a ``GPU-...``/``MIG-...`` UUID, up to the first entry that is neither (``-1``,
    ``NoDevFiles``, a typo), as CUDA itself ignores every device from an invalid entry on;
    a repeated entry counts once. ``""`` means none. When it is unset: the devices
    ``nvidia-smi -L`` lists, by index (MIG lines skipped); none when the program is missing,
    fails, or takes longer than ``timeout`` seconds (a first call without persistence mode may
    take a few seconds on a node with many GPUs).

    Example::

        visible_gpus({"CUDA_VISIBLE_DEVICES": "2, 3"})   # ["2", "3"]
        visible_gpus({"CUDA_VISIBLE_DEVICES": "0,-1,1"})  # ["0"]
    """
    env = os.environ if environ is None else environ
    if "CUDA_VISIBLE_DEVICES" in env:
        ids: list[str] = []
        for raw in env["CUDA_VISIBLE_DEVICES"].split(","):
            entry = raw.strip()
            if not entry:
                continue
            if not (entry.isdigit() or entry.startswith(("GPU-", "MIG-"))):
                break
            if entry not in ids:
                ids.append(entry)
        return ids
    try:
        listed = subprocess.run(
            [smi, "-L"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
            stdin=subprocess.DEVNULL,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    ids = []
    for line in listed.splitlines():
        head, colon, _ = line.partition(":")
        words = head.split()
        if colon and len(words) == 2 and words[0] == "GPU" and words[1].isdigit():
            ids.append(words[1])
    return ids


_GPU_FORMS = "a positive int (whole GPUs each) or a fraction 1/k (0.5, 1/3, 0.25: k share one)"


def check_gpus_per_experiment(value: object) -> float | int | None:
    """``Memento(gpus_per_experiment=...)`` checked: ``None``, a positive int (``2.0`` counts
    as ``2``), or a fraction ``1/k`` with an integer ``k >= 2`` (``0.5``, ``1/3``, ``0.25``;
    within a relative ``1e-6``, returned as exactly ``1 / k``). A ``TypeError`` or
    ``ValueError`` naming the argument and the allowed forms otherwise.

    Example::

        check_gpus_per_experiment(2)      # 2
        check_gpus_per_experiment(1 / 3)  # 0.333...
        check_gpus_per_experiment(0.4)    # ValueError: ... 1/k ...
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"gpus_per_experiment must be {_GPU_FORMS}, or None; got {value!r} of type "
            f"{type(value).__name__}"
        )
    number = float(value)
    if math.isfinite(number) and number >= 1 and number == int(number):
        return int(number)
    if math.isfinite(number) and 0 < number < 1:
        share = 1 / number
        if abs(share - round(share)) <= 1e-6 * share:
            return 1 / round(share)
    raise ValueError(f"gpus_per_experiment must be {_GPU_FORMS}, or None; got {value!r}")


def _describe(per_experiment: float) -> str:
    return str(int(per_experiment)) if per_experiment >= 1 else f"1/{round(1 / per_experiment)}"


class GpuSlots:
    """The GPUs of a run, handed out to experiments without overlap. Thread-safe.

    ``per_experiment`` is ``g`` (an int: ``g`` whole GPUs each, GPUs no one else holds) or
    ``1/k`` (one GPU each, shared by at most ``k`` experiments; the least loaded GPU is taken
    first, so experiments spread over the GPUs before they share one). A ``ValueError`` when
    no GPU is visible or ``g`` is more than there are.

    Example::

        slots = GpuSlots(["0", "1"], 0.5)
        slots.capacity           # 4
        a, b = slots.take(), slots.take()   # ("0",), ("1",)
        slots.release(a)
    """

    def __init__(self, ids: Sequence[str], per_experiment: float) -> None:
        per = check_gpus_per_experiment(per_experiment)
        if per is None:
            raise ValueError("GpuSlots needs gpus_per_experiment, got None")
        if not ids:
            raise ValueError(
                f"gpus_per_experiment={_describe(per)} asks for GPUs, but no GPU is visible: "
                "CUDA_VISIBLE_DEVICES is empty, or unset and `nvidia-smi -L` lists none. Set "
                "CUDA_VISIBLE_DEVICES to the GPUs to use, or leave gpus_per_experiment unset."
            )
        #: The GPUs, in the order they were listed (a repeated id counts once).
        self.ids: list[str] = list(dict.fromkeys(ids))
        if per >= 1:
            self.whole, self.share = int(per), 1
            if self.whole > len(self.ids):
                raise ValueError(
                    f"gpus_per_experiment={self.whole} asks for more GPUs than the "
                    f"{len(self.ids)} visible ({', '.join(self.ids)})"
                )
        else:
            self.whole, self.share = 1, round(1 / per)
        self._users = dict.fromkeys(self.ids, 0)
        self._taken: collections.Counter[tuple[str, ...]] = collections.Counter()
        self._lock = threading.Lock()

    @property
    def capacity(self) -> int:
        """How many experiments can hold GPUs at once: ``len(ids) // g``, or ``len(ids) * k``."""
        return (len(self.ids) // self.whole) * self.share

    def in_use(self) -> dict[str, int]:
        """How many experiments hold each GPU now."""
        with self._lock:
            return dict(self._users)

    def take(self) -> tuple[str, ...] | None:
        """GPUs for one experiment (in the order they were listed), or ``None`` when too few
        are free."""
        with self._lock:
            free = [i for i in self.ids if self._users[i] < self.share]
            if len(free) < self.whole:
                return None
            # The least loaded first; among equals, in the order they were listed (stable).
            chosen = set(sorted(free, key=self._users.__getitem__)[: self.whole])
            for i in chosen:
                self._users[i] += 1
            taken = tuple(i for i in self.ids if i in chosen)
            self._taken[taken] += 1
            return taken

    def release(self, ids: tuple[str, ...]) -> None:
        """Give back what :meth:`take` gave; a ``RuntimeError`` for anything else."""
        with self._lock:
            if self._taken.get(ids, 0) <= 0:
                raise RuntimeError(f"GPUs {ids!r} were released but not taken (or twice)")
            self._taken[ids] -= 1
            if not self._taken[ids]:
                del self._taken[ids]
            for i in ids:
                self._users[i] -= 1


def gpu_environment(ids: Sequence[str], environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables that show an experiment only ``ids``: ``CUDA_VISIBLE_DEVICES``, and
    ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` when the ids came from ``nvidia-smi`` (``environ``, by
    default ``os.environ``, sets neither variable): nvidia-smi numbers GPUs by PCI bus, CUDA
    by default fastest first. Ids taken from the driver's own ``CUDA_VISIBLE_DEVICES`` keep
    its numbering (whatever order it chose), so nothing else is added then.

    Example::

        gpu_environment(("0", "1"), {})  # {"CUDA_VISIBLE_DEVICES": "0,1",
                                         #  "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    """
    env = os.environ if environ is None else environ
    variables = {"CUDA_VISIBLE_DEVICES": ",".join(ids)}
    if "CUDA_VISIBLE_DEVICES" not in env and "CUDA_DEVICE_ORDER" not in env:
        variables["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
    return variables


__all__ = [
    "THREAD_VARIABLES",
    "GpuSlots",
    "ThreadCap",
    "cap_this_thread",
    "check_gpus_per_experiment",
    "check_threads",
    "default_threads",
    "gpu_environment",
    "limited",
    "thread_cap",
    "visible_gpus",
]
