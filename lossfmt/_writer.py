"""LossWriter: the public writer. `add()` records an event on the caller's thread (no I/O); a `Flusher`
thread appends record batches to the `LiveFile`; `close()` compacts it into a closed Arrow IPC file.
"""

from __future__ import annotations

import operator
import os
import struct
import weakref
from collections.abc import Mapping
from pathlib import Path
from time import time as _time
from types import TracebackType
from typing import Any

from lossfmt import _rows, _values
from lossfmt import schema as s
from lossfmt._errors import WriterClosedError
from lossfmt._file import LiveFile
from lossfmt._flusher import Flusher

__all__ = ["LossWriter"]

_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
_DEFAULT_TAG = s.DEFAULT_TAG
_MEAN = s.MEAN
_SUM = s.SUM
_ONE = 1  # `count is _ONE` is a fast-path shortcut only: any other 1 is still checked
_FLOAT_TYPES = _values.FLOAT_TYPES
_pack_row = _rows.ROW.pack
#: Wake the flusher early once this many rows are pending, so live record batches stay moderate.
_WAKE_ROWS = 1 << 16

# Writers of this process, for the fork handler (weak: the registry never keeps a writer alive).
_writers: weakref.WeakSet[LossWriter] = weakref.WeakSet()


# --- validation (slow path) ---------------------------------------------------------------------------------


def _as_int(name: str, value: Any) -> int:
    """`value` as an int: Python ints and integer types with __index__ (numpy, torch); never bool or float."""
    if type(value) is int:
        return value
    if isinstance(value, bool) or not hasattr(type(value), "__index__"):
        raise TypeError(f"{name} must be an int, got {_values.type_name(value)}: {value!r:.80}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {_values.type_name(value)}: {value!r:.80}") from None


def _check_int64(name: str, value: int) -> None:
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise ValueError(f"{name} {value} is outside the int64 range")


def _check_tag(tag: Any) -> None:
    if not isinstance(tag, str):
        raise TypeError(f"tag must be a str, got {_values.type_name(tag)}: {tag!r:.80}")
    if not tag:
        raise ValueError("tag must be a non-empty string")


def _check_reduction(reduction: Any) -> None:
    if not isinstance(reduction, str) or reduction not in s.REDUCTIONS:
        raise ValueError(f"reduction must be one of {s.REDUCTIONS}, got {reduction!r:.80}")


class _Run:
    """The resources of one open writer: the file and its flusher. Holds no reference to the LossWriter, so
    a writer dropped without close() is still finalized (flushed and compacted) by its weakref finalizer."""

    def __init__(self, file: LiveFile, flusher: Flusher) -> None:
        self.file = file
        self.flusher = flusher
        self.pid = os.getpid()
        self.finished = False

    def close(self) -> None:
        """Stop the flusher, write the last rows, compact, unlock. Idempotent; a no-op in a forked child."""
        if self.finished or os.getpid() != self.pid:
            return
        self.finished = True
        flusher = self.flusher
        try:
            flusher.stop()
        finally:
            self.file.close(compact=flusher.error is None)
        if not flusher.reported:
            flusher.raise_error()


class LossWriter:
    """Log training losses to a crash-safe Arrow file: `add()` only records the event, a thread does the I/O.

    Opening an existing lossfmt file appends to it (resume): a torn tail left by a crash is dropped first, the
    file's run name, run_id and creation metadata are kept, and `meta` is merged into its user metadata at
    close. One writer per file: a second one (in any process) gets RuntimeError. One writer per process: a
    forked child cannot use its parent's writer (RuntimeError); create one per process, e.g. with the rank or
    pid in the path.
    """

    path: Path
    run: str
    run_id: str | None

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        flush_secs: float = 1.0,
        meta: Mapping[str, Any] | None = None,
        run: str | None = None,
        max_pending: int = 1 << 18,
    ) -> None:
        """Open `path` for writing (created with its parent directories, or resumed if it exists).

        flush_secs: the longest an added event stays only in memory (what a viewer lags behind at most).
        max_pending: events held in memory before add() blocks until the flusher catches up (backpressure;
        with several adding threads, each may add one more). meta: JSON-able run metadata (hparams).
        run: the run's name (default: the file's stem; a resumed file keeps its own).

        A resumed file lacking optional metadata gets defaults: the run name as for a new run, and `run_id`
        None (a file without an id is not given one). A corrupt file raises LossFormatError and is left
        byte-for-byte as it was (`lossfmt.salvage` copies its readable prefix into a new file); a FIFO or
        other non-regular path raises LossFormatError. A failure here releases everything it took.
        """
        if (
            isinstance(flush_secs, bool)
            or not isinstance(flush_secs, (int, float))
            or not 0 < flush_secs < 1e9
        ):
            raise ValueError(f"flush_secs must be a positive number of seconds, got {flush_secs!r}")
        if type(max_pending) is not int or max_pending < 1:
            raise ValueError(f"max_pending must be an int >= 1, got {max_pending!r}")
        if meta is not None and not isinstance(meta, Mapping):
            raise TypeError(f"meta must be a mapping (e.g. of hyperparameters), got {type(meta).__name__}")
        if run is not None and (not isinstance(run, str) or not run):
            raise ValueError(f"run must be a non-empty string, got {run!r}")
        # Absolute: a notebook's %cd or Hydra's chdir mid-run must not lose the file.
        self.path = Path(path).absolute()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Built first: it validates meta before any file is created.
        new_schema = s.make_schema(run or self.path.stem, dict(meta) if meta else None)
        self._ok = False
        self._forked = False
        self._pending: list[Any] = []
        self._wake_at = min(_WAKE_ROWS, max_pending)
        file = LiveFile(self.path, new_schema, dict(meta) if meta else None)
        flusher = None
        try:
            info = s.run_info(file.schema)
            # A file with only the metadata the spec requires: the run is named as a new one would be; a
            # run_id is not invented (it would claim an identity the file never had): run_id is None.
            self.run = info.get("run") or s.run_info(new_schema)["run"]
            self.run_id = info.get("run_id")
            ref = weakref.ref(self)
            flusher = self._flusher = Flusher(
                self._pending,
                _rows.Encoder(file.schema),
                file.write_batch,
                lambda exc: _disable(ref),
                flush_secs=flush_secs,
                max_pending=max_pending,
                name=f"lossfmt-flusher[{self.path.name}]",
            )
            self._run = _Run(file, flusher)
            self._finalizer = weakref.finalize(self, self._run.close)
        except BaseException:
            # Release everything taken (thread, flock, descriptor): the next writer on this path must work.
            try:
                if flusher is not None:
                    flusher.stop()
            finally:
                file.close(compact=False)
            raise
        self._ok = True
        _writers.add(self)

    @property
    def closed(self) -> bool:
        """True once close() was called (or the writer was inherited by a forked process)."""
        return self._run.finished or self._forked

    def add(
        self,
        step: int,
        value: Any,
        tag: str = _DEFAULT_TAG,
        count: int = 1,
        epoch: int | None = None,
        reduction: str = _MEAN,
    ) -> None:
        """Record one event (no I/O). `value` is any framework's scalar; it is stored as it was at this call.

        TypeError / ValueError for bad input (see the contract); RuntimeError after close(); an error of the
        background thread (disk full, file removed) is raised here. Pass count, epoch and reduction by
        keyword (they are not keyword-only because CPython calls such a method about 90 ns slower).
        """
        # Fast path: plain Python arguments, checked with identity and type tests. An event with every
        # option at its default and a float value is packed into 24 bytes (step, value, time): no object
        # for the garbage collector to track, and the flusher converts a batch of them with one join.
        # Otherwise: a 7-tuple in column order.
        if self._ok and type(step) is int:
            if type(value) is not float:
                value = _FLOAT_TYPES.get(type(value), self._value)(value)
            if (
                tag is _DEFAULT_TAG
                and count is _ONE
                and epoch is None
                and reduction is _MEAN
                and type(value) is float
            ):
                pending = self._pending
                try:
                    pending.append(_pack_row(step, value, _time()))
                except struct.error:  # step outside int64: the slow path says so
                    return self._add_slow(step, {tag: value}, count, epoch, reduction)
                if len(pending) >= self._wake_at:
                    self._flusher.overflow()
                return
            if (
                (_INT64_MIN <= step <= _INT64_MAX)
                and (type(tag) is str and tag != "")
                and (type(count) is int and 1 <= count <= _INT64_MAX)
                and (epoch is None or (type(epoch) is int and _INT64_MIN <= epoch <= _INT64_MAX))
                and (reduction is _MEAN or (type(reduction) is str and reduction == _SUM))
            ):
                pending = self._pending
                pending.append((step, value, tag, count, epoch, reduction, _time()))
                if len(pending) >= self._wake_at:
                    self._flusher.overflow()
                return
        self._add_slow(step, {tag: value}, count, epoch, reduction)

    def _value(self, value: Any) -> Any:
        """`value` as a float, or as a deferred device scalar (then the flusher materializes its batches)."""
        value = _values.scalar(value)
        if type(value) is not float:
            self._flusher.encoder.deferred = True
        return value

    def add_many(
        self,
        step: int,
        values: Mapping[str, Any],
        *,
        count: int = 1,
        epoch: int | None = None,
        reduction: str = _MEAN,
    ) -> None:
        """Record one event per tag for the same step (e.g. {"loss": l, "val_loss": v}); all or nothing."""
        if not isinstance(values, Mapping):
            raise TypeError(f"values must be a mapping of tag -> value, got {type(values).__name__}")
        self._add_slow(step, values, count, epoch, reduction)

    def _add_slow(self, step: Any, tagged: Mapping[str, Any], count: Any, epoch: Any, reduction: Any) -> None:
        self._check_usable()
        step = _as_int("step", step)
        _check_int64("step", step)
        count = _as_int("count", count)
        if count < 1:
            raise ValueError(f"count must be >= 1 (the number of items the value summarizes), got {count}")
        _check_int64("count", count)
        if epoch is not None:
            epoch = _as_int("epoch", epoch)
            _check_int64("epoch", epoch)
        _check_reduction(reduction)
        rows = []
        for tag, value in tagged.items():
            _check_tag(tag)
            rows.append((step, self._value(value), tag, count, epoch, reduction))
        now = _time()
        pending = self._pending
        pending.extend([(*row, now) for row in rows])
        if len(pending) >= self._wake_at:
            self._flusher.overflow()

    def _check_usable(self) -> None:
        if self._forked:
            raise WriterClosedError(
                f"{os.fspath(self.path)}: this LossWriter belongs to process {self._run.pid} and cannot "
                f"be used in forked process {os.getpid()}; create a writer per process, e.g. with the rank "
                "or pid in the path (LossWriter(f'run-{rank}.arrow'))"
            )
        self._flusher.raise_error()
        if self._run.finished:
            raise WriterClosedError(f"{os.fspath(self.path)}: LossWriter is closed")

    def flush(self) -> None:
        """Return once every event added so far (by any thread) is in the file, visible to a new reader."""
        self._check_usable()
        self._flusher.flush()

    def close(self) -> None:
        """Flush, compact into a footer'd Arrow IPC file (pandas/Polars/pyarrow read it), release the lock.

        Idempotent. Raises a background error not yet raised by add/flush; in a forked child it does nothing.
        Never touches a file it does not hold: if the file was removed or replaced, FileReplacedError (the
        file now at the path is left alone). If the file lacks events this writer wrote or resumed (truncated
        or damaged from outside), LossFormatError and the live file stays as it is. Memory stays bounded
        (about 200 MB at most) whatever the run's length.
        """
        if self._forked or self._run.finished:
            return
        self._ok = False
        _writers.discard(self)
        self._finalizer.detach()
        self._run.close()

    def __enter__(self) -> LossWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<LossWriter {os.fspath(self.path)!r} run={self.run!r} {state}>"


def _disable(ref: weakref.ref[LossWriter]) -> None:
    """The flusher failed: the writer's fast path stops accepting rows (the slow path raises the error)."""
    writer = ref()
    if writer is not None:
        writer._ok = False


def _after_fork_in_child() -> None:
    for writer in list(_writers):
        if writer._run.finished:
            continue
        writer._ok = False
        writer._forked = True
        writer._pending.clear()  # the parent's rows, copied by fork: the parent writes them, not us
    # The descriptors themselves (live file, compaction temp file) are closed by lossfmt._file's handler.


os.register_at_fork(after_in_child=_after_fork_in_child)
