"""LossWriter: the public writer. `add()` records an event on the caller's thread (no I/O); a `Flusher`
thread appends record batches to the `LiveFile`; `close()` compacts it into a closed Arrow IPC file.
`add()` is compiled where the package has its extension (lossfmt/_compiled.py); this file is its rules."""

from __future__ import annotations

import functools
import os
import warnings
import weakref
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from time import time as _time
from types import TracebackType
from typing import Any

from lossfmt import _checks, _compiled, _rows, _signals, _values
from lossfmt import schema as s
from lossfmt._errors import LossfmtError, WriterClosedError
from lossfmt._file import LiveFile
from lossfmt._run import Run as _Run

__all__ = ["LossWriter"]

_DEFAULT_TAG = s.DEFAULT_TAG
_MEAN = s.MEAN
_SUM = s.SUM
_ONE = 1  # `count is _ONE` is a fast-path shortcut only: any other 1 is still checked
_CONVERTERS: dict[type, Callable[[Any], Any]] = _values.CONVERTERS
_scalar: Callable[[Any], Any] = _values.scalar
_pack = _rows.ROW.pack
_pack_plain = _rows.PLAIN.pack
_pack_many = _rows.pack_many
_tag_id = _rows.tag_id
_EPOCH_FLAG = _rows.EPOCH
_SUM_FLAG = _rows.SUM
_ROW_ERRORS = _rows.ROW_ERRORS
_REDUCTION_FLAGS = {_MEAN: 0, _SUM: _SUM_FLAG}
#: Wake the flusher early once this many rows are pending, so live record batches stay moderate.
_WAKE_ROWS = 1 << 16
#: Once the flusher was woken, add() wakes it again only after this many more rows (or at max_pending).
_WAKE_STEP = 1 << 13

_writers: weakref.WeakSet[LossWriter] = weakref.WeakSet()  # for the fork handler (never keeps one alive)


class LossWriter(_compiled.Base):
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
        close_on_signal: bool = False,
    ) -> None:
        """Open `path` for writing (created with its parent directories, or resumed if it exists).

        flush_secs: the longest an added event stays only in memory (what a viewer lags behind at most).
        max_pending: events held in memory before add() blocks until the flusher catches up (backpressure;
        with several adding threads, each may add one more). meta: JSON-able run metadata (hparams), its
        text valid UTF-8 (a lone surrogate is refused). run: the run's name (default: the file's stem; a
        resumed file keeps its own).
        close_on_signal: close this writer on SIGTERM/SIGINT, then pass the signal on (see lossfmt._signals);
        by default a signal loses the events added since the last flush.

        A resumed file lacking optional metadata gets defaults: the run name as for a new run, and `run_id`
        None (a file without an id is not given one). A corrupt file raises LossFormatError and is left
        byte-for-byte as it was (`lossfmt.salvage` copies its readable prefix into a new file); a FIFO or
        other non-regular path raises LossFormatError; an empty path, or one naming a directory (ending in a
        separator), ValueError; bytes, TypeError (os.fsdecode them); a path under a regular file,
        NotADirectoryError. A failure here releases everything it took, and creates no directory when an
        argument is refused.
        """
        flush_secs, max_pending = _checks.writer_options(flush_secs, max_pending, meta, run, close_on_signal)
        self.path = _checks.writer_path(path)
        run_meta = _checks.checked_meta(meta)  # (every argument checked before anything is created)
        name = _checks.run_name(run, self.path)
        _checks.make_parent(self.path)
        self._ok, self._forked = False, False
        self._pending: list[Any] = []
        self._wake_at = min(_WAKE_ROWS, max_pending)
        ref = weakref.ref(self)
        self._run = _Run.start(
            LiveFile(self.path, s.make_schema(name, run_meta), run_meta),
            name,
            self._pending,
            lambda exc: _disable(ref),
            flush_secs=flush_secs,
            max_pending=max_pending,
        )
        self._flusher, self.run, self.run_id = self._run.flusher, self._run.name, self._run.run_id
        self._finalizer = weakref.finalize(self, _disable, ref, self._run)  # (also at interpreter exit)
        self._ok = True
        _writers.add(self)
        if close_on_signal:
            release = _signals.register(self)
            if self._run.finished:  # a signal inside register() closed it already
                release()
            else:
                self._run.on_closed = release

    @property
    def closed(self) -> bool:
        """True once close() was called (or the writer was inherited by a forked process)."""
        return self._run.finished or self._forked

    @property
    def pending(self) -> int:
        """Events recorded by add() and not yet handed to the file (at most `max_pending`, plus one per
        other adding thread): what a crash right now would lose."""
        return len(self._pending)

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

        TypeError / ValueError for bad input (see the contract); WriterClosedError after close() (also when
        close() ran in another thread during this call: then the event is not in the file); an error of the
        background thread (disk full, file removed) is raised here. Pass count, epoch and reduction by
        keyword (they are not keyword-only because CPython calls such a method about 90 ns slower).
        """
        # Fast path: identity and type tests, one packed row (lossfmt._rows); anything else goes to _add_slow.
        if self._ok and type(step) is int:
            if type(value) is not float:
                if type(value) is _values.TENSOR and value.is_cpu:  # inline: see lossfmt._values.TENSOR
                    try:
                        number = value.item()
                    except RuntimeError:  # not one element: _scalar says so
                        number = None
                    if type(number) is not float:  # an int, bool or complex tensor: _scalar's rules
                        return self._add_slow(step, ((tag, value),), count, epoch, reduction)
                    value = number
                else:
                    value = _CONVERTERS.get(type(value), _scalar)(value)
                    if type(value) is not float:  # a deferred device scalar
                        return self._add_slow(step, ((tag, value),), count, epoch, reduction, converted=True)
            # (None: the slow path, called outside the try, so that its error is not raised twice, chained)
            row: bytes | None = None
            try:
                if tag is _DEFAULT_TAG and count is _ONE and epoch is None and reduction is _MEAN:
                    row = _pack_plain(step, value, _time())
                else:
                    code = 0 if tag is _DEFAULT_TAG else _tag_id(tag)  # id 0: the default tag
                    flags = _REDUCTION_FLAGS.get(reduction, -1) if type(reduction) is str else -1
                    if code is not None and type(count) is int and count >= 1 and flags >= 0:
                        if epoch is None:
                            row = _pack(step, value, _time(), count, 0, code, flags)
                        elif type(epoch) is int:
                            row = _pack(step, value, _time(), count, epoch, code, flags | _EPOCH_FLAG)
            except _ROW_ERRORS:  # a value out of range, an unhashable tag
                pass
            if row is None:
                return self._add_slow(step, ((tag, value),), count, epoch, reduction)
            pending = self._pending
            pending.append(row)
            if len(pending) >= self._wake_at:
                self._wake()
            if not self._ok:  # close() began meanwhile: make sure the row was written, or raise
                self._added_while_closing((row,))
            return
        self._add_slow(step, ((tag, value),), count, epoch, reduction)

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
        if (
            self._ok
            and type(step) is int
            and type(values) is dict
            and type(count) is int
            and (epoch is None or type(epoch) is int)
        ):
            flags = _REDUCTION_FLAGS.get(reduction, -1) if type(reduction) is str else -1
            if flags >= 0 and count >= 1:
                if epoch is not None:
                    flags |= _EPOCH_FLAG
                rows = _pack_many(step, values, count, 0 if epoch is None else epoch, flags)
                if rows is not None:
                    pending = self._pending
                    pending.extend(rows)
                    if len(pending) >= self._wake_at:
                        self._wake()
                    if not self._ok:
                        self._added_while_closing(rows)
                    return
        if not isinstance(values, Mapping):
            raise TypeError(f"values must be a mapping of tag -> value, got {type(values).__name__}")
        self._add_slow(step, values.items(), count, epoch, reduction, many=True)

    def _add_slow(
        self,
        step: Any,
        tagged: Iterable[tuple[Any, Any]],
        count: Any,
        epoch: Any,
        reduction: Any,
        *,
        converted: bool = False,
        many: bool = False,
    ) -> None:
        """Check every argument (the errors of add and add_many are raised here; add_many's name the tag of a
        bad value), then record the events."""
        self._check_usable()
        step, count, epoch = _checks.event_options(step, count, epoch, reduction)
        flags = (0 if epoch is None else _EPOCH_FLAG) | (_SUM_FLAG if reduction == _SUM else 0)
        now = _time()
        rows: list[Any] = []
        for tag, value in tagged:
            code = _rows.intern(tag)
            if not converted:
                try:
                    value = _scalar(value)
                except (TypeError, ValueError) as exc:
                    if not many:
                        raise
                    raise _checks.value_of_tag(exc, tag) from exc.__cause__
            rows.append(_rows.row(step, value, now, count, epoch or 0, code, flags))
        pending = self._pending
        pending.extend(rows)
        if len(pending) >= self._wake_at:
            self._wake()
        if not self._ok:
            self._added_while_closing(rows)

    def _wake(self) -> None:
        """Many rows are pending: wake the flusher (or wait for it at max_pending), then raise the threshold
        until it drains, so the adds meanwhile don't each call into it (measured: ~20% of a sustained add)."""
        flusher = self._flusher
        if flusher.on_drain is None:
            flusher.on_drain = functools.partial(_rearm, weakref.ref(self), self._wake_at)
        flusher.overflow()
        self._wake_at = min(len(self._pending) + _WAKE_STEP, flusher.max_pending)

    def _added_while_closing(self, rows: list[Any] | tuple[Any, ...]) -> None:
        """`rows` were appended while close() (or a failure) stopped the writer accepting rows: return only if
        close() wrote them, else raise (an event is in the file or its add() raised, never in between)."""
        flusher = self._flusher
        if not self._forked and flusher.error is None:
            flusher.stopped.wait()  # close() began: its last write takes every row appended before it
        if self._forked or flusher.error is not None:
            self._check_usable()
        pending = self._pending
        if any(row is p for p in pending for row in rows):
            raise WriterClosedError(
                f"{os.fspath(self.path)}: LossWriter was closed by another thread during this call; "
                "the event was not written"
            )

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
        """Return once every event added so far (by any thread) is in the file; it raises as close() does."""
        self._check_usable()
        self._flusher.flush()

    def close(self) -> None:
        """Flush, compact into a footer'd Arrow IPC file (pandas/Polars/pyarrow read it), release the lock.

        Idempotent. Raises a background error (or UnreadableValueError) not yet raised by add/flush; in a
        forked child it does nothing. Never touches a file it does not hold: if the file was removed or
        replaced, FileReplacedError (the file at the path is left alone). If the file lacks events this writer
        wrote or resumed (truncated or damaged, or changed in place from outside), LossFormatError, the live
        file left as it is; if its directory is not writable or its disk full (compaction writes beside it),
        PermissionError or OSError naming the file, the live file kept (then `lossview compact` it). Memory
        stays bounded (about 200 MB at most) whatever the run's length. Called while another thread closes
        the writer, it returns once the file is closed. A close() cut short by Ctrl-C while it compacts
        leaves the file live, whole and locked: call close() again (the program's exit does it too) to
        compact it."""
        if self._forked:
            return
        self._ok = False
        _writers.discard(self)
        try:
            self._run.close()
        finally:  # (after: at exit, the finalizer waits for a close() a daemon thread has begun)
            if self._run.done:
                self._finalizer.detach()

    def __enter__(self) -> LossWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<LossWriter {os.fspath(self.path)!r} run={self.run!r} {state}>"


def _rearm(ref: weakref.ref[LossWriter], wake_at: int) -> None:
    """The flusher drained the pending rows: add() wakes it again at the usual threshold."""
    writer = ref()
    if writer is not None:
        writer._wake_at = wake_at


def _disable(ref: weakref.ref[LossWriter], closing: _Run | None = None) -> None:
    """The flusher failed, or the finalizer is `closing` the run (at exit the writer may still be used, by an
    atexit handler or a daemon thread): the fast path stops accepting rows (the slow path raises). A file
    error of the finalizer's close is a warning: it has no caller to raise to."""
    if (writer := ref()) is not None:
        writer._ok = False
    if closing is not None:
        try:
            closing.close()
        except (OSError, LossfmtError) as exc:  # one line, not a traceback (a bug still shows its own)
            warnings.warn(
                f"lossfmt: closing a LossWriter left open (dropped, or open at exit) failed: {exc}",
                UserWarning,
                stacklevel=2,
            )


def _after_fork_in_child() -> None:
    for writer in list(_writers):
        if writer._run.finished:
            continue
        writer._ok = False
        writer._forked = True
        writer._pending.clear()  # the parent's rows, copied by fork: the parent writes them, not us
    # The descriptors themselves (live file, compaction temp file) are closed by lossfmt._file's handler.


_compiled.install(LossWriter)  # the compiled add(), where the package has it (lossfmt/_fastadd.c)
os.register_at_fork(after_in_child=_after_fork_in_child)
