"""What an experiment sees while it runs: its key, checkpoints, metrics and progress."""

from __future__ import annotations

import hashlib
import os
import pickle
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from memento._util.checkpoint_format import (
    SavedCheckpoint,
    pack_checkpoint,
    unpack_checkpoint,
)
from memento._util.files import atomic_write
from memento._util.tables import metric_table, plain_number
from memento.store.outputs import ensure_folder

# Throttle for progress messages sent from a worker to the driver (seconds).
PROGRESS_INTERVAL = 0.5


class CheckpointProvider(Protocol):
    """Where checkpoints go: anything with ``get`` (raising ``KeyError``), ``set``, ``remove``
    and ``contains``, keyed by the experiment's key.

    :meth:`Context.checkpoint` hands ``set`` the state wrapped with the metrics and progress
    recorded so far (see :func:`pack_checkpoint`); :meth:`Context.restore` unwraps what ``get``
    returns. The built-in providers unwrap in ``get`` too, so that calling it directly gives the
    state alone; they give :meth:`Context.restore` the whole checkpoint through ``get_saved``.
    """

    def get(self, key: str) -> Any: ...

    def set(self, key: str, item: Any) -> None: ...

    def remove(self, key: str) -> None: ...

    def contains(self, key: str) -> bool: ...


class FileCheckpoints:
    """Checkpoints as one file per key in a directory, each written atomically.

    The worker writes its own checkpoints (temp file, fsync, rename), so a checkpoint survives
    the death of the worker and of the driver, and a reader never sees half a file.
    """

    def __init__(self, directory: str | os.PathLike[str], mode: int | None = None) -> None:
        self.directory = Path(directory)
        #: The files' permissions (a store's side directory: the store file's); else mkstemp's
        #: private 0600.
        self.mode = mode

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}.ckpt"

    def get(self, key: str) -> Any:
        """The state checkpointed under ``key``; ``KeyError`` when there is none."""
        return unpack_checkpoint(self.get_saved(key)).state

    def get_saved(self, key: str) -> Any:
        """The checkpoint under ``key`` as it was saved: state, metrics and progress."""
        try:
            data = self._path(key).read_bytes()
        except FileNotFoundError:
            raise KeyError(f"No checkpoint for key {key!r}") from None
        import cloudpickle

        return cloudpickle.loads(data)

    def set(self, key: str, item: Any) -> None:
        import cloudpickle

        data = cloudpickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
        atomic_write(self._path(key), data, mode=self.mode)

    def remove(self, key: str) -> None:
        try:
            self._path(key).unlink()
        except FileNotFoundError:
            pass

    def contains(self, key: str) -> bool:
        return self._path(key).exists()

    def __repr__(self) -> str:
        return f"FileCheckpoints({str(self.directory)!r})"


class Metric(NamedTuple):
    """One recorded point of a metric (memento-ml 1.2's ``memento.task_interface.Metric``)."""

    x: Any
    y: Any


class Context:
    """Handed to each experiment as its first argument.

    Example::

        def experiment(context, config):
            state = context.restore() if context.checkpoint_exist() else {"epoch": 0}
            for epoch in range(state["epoch"], 10):
                loss = train_one_epoch()
                context.record({"loss": loss})            # x defaults to a timestamp
                context.record({"accuracy": (epoch, acc)})  # or give x yourself
                context.progress(1, total=10)
                context.checkpoint({"epoch": epoch + 1})
            return loss

    ``key`` is the experiment's stable key, and the key its checkpoints are stored under;
    ``seed`` an int derived from it, for seeding random number generators.
    Checkpoints survive crashes and are removed once the experiment's result is stored. A
    checkpoint keeps the metrics recorded so far and the progress: after :meth:`restore`, the
    result gets the rows recorded before the checkpoint and those recorded since, each once.
    ``checkpoint_key`` is kept for memento-ml 1.2 code: it is ``None``, as it always was in 1.2.
    :attr:`output_dir` is a folder of the experiment's own under ``output_root``, for models,
    plots and logs; ``output_mode`` is the store's file permissions, which it mirrors.

    :attr:`threads` is the experiment's share of the CPUs: the number of threads its BLAS and
    OpenMP pools are capped at (``Memento(threads_per_experiment=...)``; ``None`` when they
    are left alone), to give to libraries that take a thread count
    (``torch.set_num_threads(context.threads)``, ``n_jobs=context.threads``). :attr:`gpus`
    is the list of the GPU ids the experiment was given (``Memento(gpus_per_experiment=...)``),
    which is also all its ``CUDA_VISIBLE_DEVICES`` shows (so inside, they are ``cuda:0``,
    ``cuda:1``...); ``[]`` when none were asked for.
    """

    def __init__(
        self,
        key: str,
        checkpoint_provider: CheckpointProvider | None = None,
        *,
        progress_sink: Callable[[str, float, float | None], None] | None = None,
        output_root: str | os.PathLike[str] = "",
        output_mode: int | None = None,
        threads: int | None = None,
        gpus: list[str] | None = None,
    ) -> None:
        self.key = key
        #: The threads this experiment's BLAS and OpenMP pools are capped at (``None``: not).
        self.threads = threads
        #: The GPU ids this experiment was given (``CUDA_VISIBLE_DEVICES``); ``[]``: none.
        self.gpus: list[str] = list(gpus or ())
        self.checkpoint_key: str | None = None
        self._checkpoints = checkpoint_provider
        self._metrics: dict[str, list[Metric]] = {}
        self._progress_done = 0.0
        self._progress_total: float | None = None
        self._progress_sink = progress_sink
        self._progress_sent = 0.0
        # The rows recorded before this context first checkpointed or restored: no checkpoint
        # holds them, so restore() keeps them after the checkpoint's rows. None until then.
        self._unsaved: dict[str, list[Metric]] | None = None
        self._output_root = output_root
        self._output_mode = output_mode
        #: Whether the experiment asked for :attr:`output_dir` (its folder may exist then).
        self.output_used = False

    @property
    def seed(self) -> int:
        """A stable integer in [0, 2**32) for seeding random number generators.

        Derived from :attr:`key` (its first 8 hex digits), so it is the same every time the
        config runs, on any machine, and differs between configs, repeats included::

            rng = numpy.random.default_rng(context.seed)
            random.seed(context.seed)
            torch.manual_seed(context.seed)
        """
        head = self.key[:8]
        if len(head) == 8 and all(c in "0123456789abcdef" for c in head):
            return int(head, 16)
        # A key made by hand (not a memento key): hash it the same stable way.
        digest = hashlib.sha256(self.key.encode("utf-8", "surrogatepass")).digest()
        return int.from_bytes(digest[:4], "big")

    @property
    def output_dir(self) -> Path:
        """A directory of this experiment's own, for the models, plots and logs it writes.

        Created on first use (each access makes sure it is there, so an experiment may empty
        it). It is kept with the result; a failed attempt's folder stays for inspection until
        the next attempt, which empties it unless it resumes from a checkpoint::

            torch.save(model.state_dict(), context.output_dir / "model.pt")
        """
        if not os.fspath(self._output_root):
            raise RuntimeError(
                "This store keeps no output folders: pass Memento(..., output_dir=DIR) to give "
                "each experiment a folder of its own under DIR (a server store keeps them only "
                "where you say; a Context made by hand takes Context(key, output_root=DIR))"
            )
        self.output_used = True
        return ensure_folder(self._output_root, self.key, self._output_mode)

    # -- checkpoints -----------------------------------------------------------------------
    def _provider(self) -> CheckpointProvider:
        if self._checkpoints is None:
            raise RuntimeError(
                "This Context has no checkpoint provider; pass one to Context(key, provider)"
            )
        return self._checkpoints

    def checkpoint(self, *state: Any) -> None:
        """Save ``state`` durably; :meth:`restore` returns it after an interruption.

        ``checkpoint(a)`` then ``restore()`` gives ``a``; ``checkpoint(a, b)`` gives ``(a, b)``.
        The metrics recorded so far and the progress are saved with it.
        """
        if not state:
            raise TypeError(
                "context.checkpoint() needs the state to save, e.g. context.checkpoint(state)"
            )
        item = pack_checkpoint(
            state[0] if len(state) == 1 else state, self.metric_rows(), self.progress_state
        )
        self._provider().set(self.key, item)
        self._unsaved = {}  # every row so far is in the checkpoint now

    def restore(self) -> Any:
        """The state last given to :meth:`checkpoint`; ``KeyError`` when there is none.

        The metrics and progress go back to what they were at that checkpoint, so the result
        holds the rows recorded before it, then those recorded since: each row once, however
        often ``restore()`` is called. Rows this context recorded after its own last checkpoint
        are dropped (the experiment goes back there and records them again); rows recorded
        before its first checkpoint or restore are kept, after the checkpoint's. A checkpoint
        written by an earlier version carries no metrics: they are left as they are.
        """
        provider = self._provider()
        get_saved = getattr(provider, "get_saved", None)
        item = get_saved(self.key) if callable(get_saved) else provider.get(self.key)
        saved = unpack_checkpoint(item)
        if saved.metrics is not None:
            if self._unsaved is None:
                self._unsaved = self._metrics
            metrics = {
                name: [Metric(x, y) for x, y in points] for name, points in saved.metrics.items()
            }
            for name, points in self._unsaved.items():
                metrics.setdefault(name, []).extend(points)
            self._metrics = metrics
        if saved.progress is not None:
            done, total = saved.progress
            self._progress_done = done
            if total is not None:
                self._progress_total = total
            self._send_progress(force=True)  # the live display shows the resumed position now
        return saved.state

    def checkpoint_exist(self) -> bool:
        """Whether a checkpoint exists for this experiment."""
        return self._provider().contains(self.key)

    # -- metrics ---------------------------------------------------------------------------
    def record(
        self,
        values: Mapping[str, Any] | None = None,
        *,
        value_dict: Mapping[str, Any] | None = None,
    ) -> None:
        """Record metrics: ``{"name": y}`` (x is the current timestamp) or ``{"name": (x, y)}``.

        ``value_dict=`` is memento-ml 1.2's name for ``values``.
        """
        if value_dict is not None:
            if values is not None:
                raise TypeError(
                    "context.record got both values and value_dict; pass one dict of metrics"
                )
            values = value_dict
        if not isinstance(values, Mapping):
            raise TypeError(
                f"context.record takes a dict of name -> y or (x, y), got {type(values).__name__}"
            )
        now = time.time()
        for name, value in values.items():
            if isinstance(value, tuple):
                if len(value) != 2:
                    raise ValueError(
                        f"Metric {name!r}: a tuple must be (x, y), got {len(value)} items"
                    )
                x, y = value
            else:
                x, y = now, value
            self._metrics.setdefault(str(name), []).append(Metric(plain_number(x), plain_number(y)))

    def collect_metrics(self) -> dict[str, Any]:
        """The recorded metrics, name -> table with columns ``x`` and ``y``.

        Each table is a pandas ``DataFrame`` when pandas is installed (as in memento-ml 1.2),
        else a :class:`~memento.results.result.MetricTable`. Example::

            context.record({"loss": (0, 0.9)})
            context.collect_metrics()["loss"]["y"].max()   # 0.9
        """
        return {name: metric_table(points) for name, points in self._metrics.items()}

    def metric_rows(self) -> dict[str, list[tuple[Any, Any]]]:
        """The recorded metrics as plain data, name -> list of ``(x, y)``: what is stored."""
        return {name: [(m.x, m.y) for m in points] for name, points in self._metrics.items()}

    # -- progress --------------------------------------------------------------------------
    def progress(self, delta: float, total: float | None = None) -> None:
        """Advance this experiment's progress by ``delta``; ``total`` sets or refines the goal.

        Updates reach the driver's live display throttled, so calling this often is cheap.
        """
        self._progress_done += float(delta)
        if total is not None:
            self._progress_total = float(total)
        self._send_progress(force=False)

    def _send_progress(self, force: bool) -> None:
        """Report the progress to the driver: when ``force``d, when finished, else throttled."""
        sink = self._progress_sink
        if sink is None:
            return
        now = time.monotonic()
        finished = self._progress_total is not None and (
            self._progress_done >= self._progress_total
        )
        if force or finished or now - self._progress_sent >= PROGRESS_INTERVAL:
            self._progress_sent = now
            try:
                sink(self.key, self._progress_done, self._progress_total)
            except Exception:
                pass

    @property
    def progress_state(self) -> tuple[float, float | None]:
        """``(done, total)`` as reported through :meth:`progress`."""
        return self._progress_done, self._progress_total


__all__ = [
    "CheckpointProvider",
    "Context",
    "FileCheckpoints",
    "Metric",
    "SavedCheckpoint",
    "pack_checkpoint",
    "unpack_checkpoint",
]
