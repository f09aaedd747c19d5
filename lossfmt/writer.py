"""LossWriter: the hot path (`add`) and the flusher thread that appends record batches to the file.

The writer object only records events: `add()` appends one row to a list (atomic under the GIL, so several
threads may add without a lock). A `_Flusher` thread owns the file: at least every `flush_secs` it takes the
pending prefix, turns it into one Arrow record batch and appends the encoded messages with `os.write`, so a
reader (or a crash) sees every flushed event. `close()` compacts the footerless live file into a standard
Arrow IPC file (Feather v2). See spec/FORMAT.md for the bytes on disk.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import operator
import os
import secrets
import struct
import threading
import weakref
from collections.abc import Mapping
from itertools import islice
from operator import itemgetter
from pathlib import Path
from time import time as _time
from types import TracebackType
from typing import Any

import numpy as np
import pyarrow as pa

from lossfmt import _arrow, _framing, reader, values
from lossfmt import schema as s
from lossfmt.schema import LossFormatError

__all__ = ["LossWriter", "compact"]

_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
_DEFAULT_TAG = s.DEFAULT_TAG
_MEAN = s.MEAN
_SUM = s.SUM
_ONE = 1  # `count is _ONE` is a fast-path shortcut only: any other 1 is still checked
_FLOAT_TYPES = values.FLOAT_TYPES
# A pending row: a plain event packed as _ROW, or the tuple (step, value, tag, count, epoch, reduction, time).
_ROW = struct.Struct("<qdd")  # step, value, time: every option at its default, a float value
_pack_row = _ROW.pack
_ROW_DTYPE = np.dtype([("step", "<i8"), ("value", "<f8"), ("time", "<f8")])
_STEP, _VALUE, _TIME = itemgetter(0), itemgetter(1), itemgetter(6)
_TAG, _COUNT, _EPOCH, _REDUCTION = itemgetter(2), itemgetter(3), itemgetter(4), itemgetter(5)
_NOT_NONE = functools.partial(operator.is_not, None)
#: Wake the flusher early once this many rows are pending, so live record batches stay moderate.
_WAKE_ROWS = 1 << 16
#: Rows per record batch in a compacted (closed) file.
_COMPACT_ROWS = 1 << 24  # one batch for most runs: readers get one chunk, zero-copy to numpy
_IPC_OPTIONS = pa.ipc.IpcWriteOptions(compression=s.COMPRESSION, emit_dictionary_deltas=False)

# Writers of this process, for the fork handler (weak: the registry never keeps a writer alive).
_writers: weakref.WeakSet[LossWriter] = weakref.WeakSet()


# --- validation (slow path) ---------------------------------------------------------------------------------


def _as_int(name: str, value: Any) -> int:
    """`value` as an int: Python ints and integer types with __index__ (numpy, torch); never bool or float."""
    if type(value) is int:
        return value
    if isinstance(value, bool) or not hasattr(type(value), "__index__"):
        raise TypeError(f"{name} must be an int, got {values.type_name(value)}: {value!r:.80}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {values.type_name(value)}: {value!r:.80}") from None


def _check_int64(name: str, value: int) -> None:
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise ValueError(f"{name} {value} is outside the int64 range")


def _check_tag(tag: Any) -> None:
    if not isinstance(tag, str):
        raise TypeError(f"tag must be a str, got {values.type_name(tag)}: {tag!r:.80}")
    if not tag:
        raise ValueError("tag must be a non-empty string")


def _check_reduction(reduction: Any) -> None:
    if not isinstance(reduction, str) or reduction not in s.REDUCTIONS:
        raise ValueError(f"reduction must be one of {s.REDUCTIONS}, got {reduction!r:.80}")


# --- the file: locking, creation, resume, compaction --------------------------------------------------------


def _lock_holder(fd: int, path: Path) -> int | None:
    """Pid holding the flock on `fd`'s file: /proc/locks on Linux, else the pid in the file's metadata."""
    ino = os.fstat(fd).st_ino
    with contextlib.suppress(OSError), open("/proc/locks") as f:
        for line in f:
            parts = line.split()
            if len(parts) > 5 and parts[1] == "FLOCK" and parts[5].endswith(f":{ino}"):
                return int(parts[4])
    try:
        head = os.pread(fd, 1 << 16, len(s.MAGIC))
        return s.run_info(pa.ipc.read_schema(pa.py_buffer(head))).get("pid")
    except (OSError, ValueError, pa.ArrowException):
        return None


def _open_locked(path: Path) -> int:
    """Open (creating if missing) and exclusively lock `path`; RuntimeError if another writer holds it."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _lock_holder(fd, path)
            os.close(fd)
            holder = f" (pid {pid})" if pid is not None else ""
            raise RuntimeError(
                f"{os.fspath(path)}: already open by another LossWriter{holder}; "
                "close it first or write to another path"
            ) from None
        # A compaction may have replaced the file between open and flock: lock the file now at `path`.
        with contextlib.suppress(FileNotFoundError):
            st, fst = os.stat(path), os.fstat(fd)
            if (st.st_dev, st.st_ino) == (fst.st_dev, fst.st_ino):
                return fd
        os.close(fd)


def _merged_schema(schema: pa.Schema, meta: Mapping[str, Any] | None) -> pa.Schema:
    if not meta:
        return schema
    info = s.run_info(schema)
    merged = {**info["meta"], **meta}
    metadata = dict(schema.metadata or {})
    metadata[s.KEY_META.encode()] = json.dumps(merged, sort_keys=True, allow_nan=True, default=str).encode()
    return schema.with_metadata(metadata)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _compact_locked(path: Path, meta: Mapping[str, Any] | None = None) -> None:
    """Rewrite the locked file at `path` as a footer'd Arrow IPC file: one dictionary per field, big batches.

    Atomic: the new file is written and fsynced beside the old one, then os.replace()d over it, so a reader
    sees either the complete old file or the complete new one (same run_id).
    """
    scanned = reader.scan(path)
    if scanned.closed and not meta:
        return
    schema = _merged_schema(scanned.schema, meta)
    table = scanned.table.select(list(s.COLUMNS)).unify_dictionaries().combine_chunks()
    table = table.replace_schema_metadata(schema.metadata)
    tmp = path.with_name(f"{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with contextlib.suppress(OSError):
            os.fchmod(fd, os.stat(path).st_mode & 0o7777)
        with open(fd, "wb", closefd=False) as f:
            sink = _framing.SealingFile(f)
            with pa.ipc.new_file(sink, schema, options=_IPC_OPTIONS) as out:
                for batch in table.to_batches(max_chunksize=_COMPACT_ROWS):
                    out.write_batch(batch, custom_metadata=_framing.BATCH_METADATA)
            sink.finish()
        os.fsync(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    finally:
        os.close(fd)
    _fsync_dir(path.parent)


def compact(path: str | os.PathLike[str]) -> None:
    """Turn a live or crashed (footerless) file into a closed, compact one; a closed file is left as is.

    A torn tail is dropped. RuntimeError if a LossWriter has the file open; LossFormatError if not lossfmt.
    """
    path = Path(path)
    if not path.exists():
        raise s.LossFormatError(f"{os.fspath(path)}: no such file")
    fd = _open_locked(path)
    try:
        _compact_locked(path)
    finally:
        os.close(fd)


@functools.cache
def _reduction_dictionary() -> pa.Array:
    return _arrow.strings(list(s.REDUCTIONS))


# --- the flusher thread -------------------------------------------------------------------------------------


class _Sink:
    """File-like object collecting what the Arrow stream writer emits, so one flush is one os.write."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> int:
        self.chunks.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def take(self) -> bytes:
        data = b"".join(self.chunks)
        self.chunks.clear()
        return data


class _Flusher:
    """Owns the open, locked file and the background thread that appends pending rows to it.

    Holds only a weak reference to its LossWriter, so a writer that is dropped without close() is still
    finalized (flushed and compacted) by its weakref finalizer.
    """

    def __init__(
        self,
        writer: LossWriter,
        fd: int,
        schema: pa.Schema,
        *,
        flush_secs: float,
        max_pending: int,
        meta_update: Mapping[str, Any] | None,
    ) -> None:
        self.path = writer.path
        self.fd = fd
        self.pid = os.getpid()
        self.pending: list[Any] = writer._pending  # packed plain events (bytes) and 7-tuples
        self.flush_secs = flush_secs
        self.max_pending = max_pending
        self.meta_update = meta_update
        self.owner = weakref.ref(writer)
        self.deferred = False  # a deferred (device) value was added: materialize batches from now on
        self.error: BaseException | None = None
        self.reported = False  # the error was raised to the user (close() then doesn't raise it again)
        self.finished = False
        self._cond = threading.Condition()
        self._wake = threading.Event()
        self._requested = 0
        self._done = 0
        self._stopping = False
        self._schema = schema
        self._sink = _Sink()
        self._stream = pa.ipc.new_stream(self._sink, schema, options=_IPC_OPTIONS)
        self._sealer = _framing.Sealer()
        self._schema_skipped = False
        self._tag_codes: dict[str, int] = {}
        self._tag_dictionary = _arrow.strings([])
        name = f"lossfmt-flusher[{self.path.name}]"
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # Called from the writer's threads.

    def overflow(self) -> None:
        """Wake the flusher early; block while `max_pending` rows are pending (backpressure, never a drop)."""
        if not self._wake.is_set():
            self._wake.set()
        if len(self.pending) < self.max_pending:
            return
        with self._cond:
            while len(self.pending) >= self.max_pending and self.error is None and self._thread.is_alive():
                self._wake.set()
                self._cond.wait(1.0)
        self.raise_error()

    def flush(self) -> None:
        """Return once every row pending at the call is written to the file (or raise the flusher's error)."""
        with self._cond:
            self._requested += 1
            ticket = self._requested
            self._wake.set()
            while self._done < ticket and self.error is None and self._thread.is_alive():
                self._cond.wait(1.0)
        self.raise_error()

    def raise_error(self) -> None:
        """Raise the thread's error, if any (every call does: the writer cannot continue after it)."""
        if self.error is not None:
            self.reported = True
            raise self.error

    def close(self) -> None:
        """Stop the thread, write the last rows, compact, unlock. Idempotent; a no-op in a forked child."""
        if self.finished or os.getpid() != self.pid:
            return
        self.finished = True
        with self._cond:
            self._stopping = True
            self._wake.set()
        self._thread.join()
        try:
            if self.error is None:
                self._write_pending()  # rows added by other threads while the thread stopped
                _compact_locked(self.path, self.meta_update)
        finally:
            os.close(self.fd)  # releases the flock
        if not self.reported:
            self.raise_error()

    # The thread.

    def _run(self) -> None:
        try:
            while True:
                self._wake.wait(self.flush_secs)
                self._wake.clear()
                with self._cond:
                    ticket, stopping = self._requested, self._stopping
                self._write_pending()
                with self._cond:
                    self._done = ticket
                    self._cond.notify_all()
                if stopping:
                    return
        except BaseException as exc:
            self.error = exc
            writer = self.owner()
            if writer is not None:
                writer._ok = False
            with self._cond:
                self._cond.notify_all()

    def _write_pending(self) -> None:
        n = len(self.pending)
        if not n:
            return
        # Converted in place, not from a copy: a young list of n rows would be traversed by every garbage
        # collection the producer's allocations trigger meanwhile (measured: 100-200 ns per event).
        batch = self._batch(self.pending, n)
        del self.pending[:n]
        with self._cond:
            self._cond.notify_all()  # unblock producers waiting in overflow()
        self._stream.write_batch(batch, custom_metadata=_framing.BATCH_METADATA)
        data = self._sealer.seal(self._sink.take())
        if not self._schema_skipped:
            # The stream writer starts with the schema message, which the file already has: drop it.
            meta_len = int.from_bytes(data[4:8], "little", signed=True)
            data = data[8 + meta_len :]
            self._schema_skipped = True
        self._append(data)

    def _append(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]
        try:
            st, fst = os.stat(self.path), os.fstat(self.fd)
            moved = (st.st_dev, st.st_ino) != (fst.st_dev, fst.st_ino)
        except FileNotFoundError:
            moved = True
        if moved:
            raise FileNotFoundError(
                f"{os.fspath(self.path)}: the file was removed or replaced while LossWriter was writing it; "
                "events written since then are not in the file at this path"
            )

    def _batch(self, rows: list[Any], n: int) -> pa.RecordBatch:
        """A record batch of the first `n` rows (producers may append more meanwhile).

        A row is a packed plain event (`_ROW`: step, value, time, every option at its default) or the
        7-tuple in column order.
        """
        try:
            packed = b"".join(islice(rows, n))
        except TypeError:  # some rows are 7-tuples
            columns = self._mixed_columns(rows, n)
        else:
            plain = np.frombuffer(packed, _ROW_DTYPE)
            columns = (
                plain["step"].copy(),
                plain["value"].copy(),
                plain["time"],
                np.full(n, self._tag_code(_DEFAULT_TAG), dtype=np.int32),
                np.ones(n, dtype=np.int64),
                pa.nulls(n, pa.int64()),
                np.zeros(n, dtype=np.int8),
            )
        steps, vals, wall, tag_index, counts, epochs, reduction_index = columns
        wall_us = np.rint(wall * 1e6).astype(np.int64)
        return pa.RecordBatch.from_arrays(
            [
                _arrow.array(steps),
                pa.DictionaryArray.from_arrays(_arrow.array(tag_index), self._tag_dictionary),
                _arrow.array(vals),
                _arrow.array(counts),
                epochs,
                _arrow.array(wall_us, s.WALL_TIME_TYPE),
                pa.DictionaryArray.from_arrays(_arrow.array(reduction_index), _reduction_dictionary()),
            ],
            schema=self._schema,
        )

    def _mixed_columns(self, rows: list[Any], n: int) -> tuple[Any, ...]:
        """Steps, values, times, tag codes, counts, epochs and reduction codes of the first `n` rows, some
        packed and some 7-tuples (the only rows that carry options or deferred values)."""
        is_full = np.fromiter(map(len, rows), np.int16, n) == 7  # a packed row has 24 bytes
        optioned = np.flatnonzero(is_full)
        plain_at = np.flatnonzero(~is_full)
        # Tuples, not lists: a collection untracks them (their rows hold no containers) instead of revisiting.
        full = tuple(map(rows.__getitem__, optioned.tolist()))
        m = len(full)
        steps = np.empty(n, dtype=np.int64)
        vals = np.empty(n, dtype=np.float64)
        wall = np.empty(n, dtype=np.float64)
        if len(plain_at):
            plain = np.frombuffer(b"".join(map(rows.__getitem__, plain_at.tolist())), _ROW_DTYPE)
            steps[plain_at], vals[plain_at], wall[plain_at] = plain["step"], plain["value"], plain["time"]
        steps[optioned] = np.fromiter(map(_STEP, full), np.int64, m)
        if self.deferred:
            vals[optioned] = values.materialize(list(map(_VALUE, full)))
        else:
            vals[optioned] = np.fromiter(map(_VALUE, full), np.float64, m)
        wall[optioned] = np.fromiter(map(_TIME, full), np.float64, m)
        tags = list(map(_TAG, full))
        # New tags enter the dictionary in the order of their first event.
        first = {t: int(optioned[tags.index(t)]) for t in dict.fromkeys(tags) if t not in self._tag_codes}
        if m < n:
            first[_DEFAULT_TAG] = min(first.get(_DEFAULT_TAG, n), int(plain_at[0]))
        for tag in sorted(first, key=first.__getitem__):
            self._tag_code(tag)
        codes = self._tag_codes
        tag_index = np.full(n, codes[_DEFAULT_TAG] if m < n else 0, dtype=np.int32)
        if tags.count(tags[0]) == m:  # C-speed check for the common single-tag batch
            tag_index[optioned] = codes[tags[0]]
        else:
            tag_index[optioned] = np.fromiter(map(codes.__getitem__, tags), np.int32, m)
        counts = np.ones(n, dtype=np.int64)
        counts[optioned] = np.fromiter(map(_COUNT, full), np.int64, m)
        epoch_list = list(map(_EPOCH, full))
        missing = epoch_list.count(None)
        if missing == m:
            epochs = pa.nulls(n, pa.int64())
        else:
            valid = np.zeros(n, dtype=bool)
            epoch_values = np.zeros(n, dtype=np.int64)
            if missing == 0:
                valid[optioned] = True
                epoch_values[optioned] = np.fromiter(epoch_list, np.int64, m)
            else:
                valid[optioned] = np.fromiter(map(_NOT_NONE, epoch_list), bool, m)
                epoch_values[optioned] = np.fromiter((0 if e is None else e for e in epoch_list), np.int64, m)
            epochs = _arrow.array(epoch_values, pa.int64(), mask=~valid)
        reduction_index = np.zeros(n, dtype=np.int8)
        reductions = list(map(_REDUCTION, full))
        if reductions.count(_MEAN) != m:
            reduction_index[optioned] = np.fromiter(map(s.REDUCTIONS.index, reductions), np.int8, m)
        return steps, vals, wall, tag_index, counts, epochs, reduction_index

    def _tag_code(self, tag: str) -> int:
        """Index of `tag` in the live dictionary; a new tag grows it (one replacement dictionary message)."""
        code = self._tag_codes.get(tag)
        if code is None:
            code = self._tag_codes[tag] = len(self._tag_codes)
            self._tag_dictionary = _arrow.strings(list(self._tag_codes))
        return code


# --- the public writer --------------------------------------------------------------------------------------


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
    run_id: str

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
        fd = _open_locked(self.path)
        try:
            if os.fstat(fd).st_size == 0:
                schema, meta_update = new_schema, None
                os.write(fd, _framing.Sealer().seal(s.MAGIC + new_schema.serialize().to_pybytes()))
            else:
                scanned = reader.scan(self.path)  # LossFormatError for a foreign file, which stays untouched
                if scanned.schema.names != list(s.COLUMNS):
                    raise LossFormatError(
                        f"{os.fspath(self.path)}: has columns {scanned.schema.names}, this writer appends "
                        f"only {list(s.COLUMNS)}; refusing to resume (the file is left untouched)"
                    )
                schema, end, meta_update = scanned.schema, scanned.end, meta
                del scanned
                os.ftruncate(fd, end)  # a closed file becomes live again; a torn tail is dropped
            self._flusher = _Flusher(
                self, fd, schema, flush_secs=flush_secs, max_pending=max_pending, meta_update=meta_update
            )
        except BaseException:
            os.close(fd)
            raise
        info = s.run_info(schema)
        self.run = info["run"]
        self.run_id = info["run_id"]
        self._ok = True
        _writers.add(self)
        self._finalizer = weakref.finalize(self, self._flusher.close)

    @property
    def closed(self) -> bool:
        """True once close() was called (or the writer was inherited by a forked process)."""
        return self._flusher.finished or self._forked

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
        value = values.scalar(value)
        if type(value) is not float:
            self._flusher.deferred = True
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
            raise RuntimeError(
                f"{os.fspath(self.path)}: this LossWriter belongs to process {self._flusher.pid} and cannot "
                f"be used in forked process {os.getpid()}; create a writer per process, e.g. with the rank "
                "or pid in the path (LossWriter(f'run-{rank}.arrow'))"
            )
        self._flusher.raise_error()
        if self._flusher.finished:
            raise RuntimeError(f"{os.fspath(self.path)}: LossWriter is closed")

    def flush(self) -> None:
        """Return once every event added so far (by any thread) is in the file, visible to a new reader."""
        self._check_usable()
        self._flusher.flush()

    def close(self) -> None:
        """Flush, compact into a footer'd Arrow IPC file (pandas/Polars/pyarrow read it), release the lock.

        Idempotent. Raises a background error not yet raised by add/flush; in a forked child it does nothing.
        """
        if self._forked or self._flusher.finished:
            return
        self._ok = False
        _writers.discard(self)
        self._finalizer.detach()
        self._flusher.close()

    def __enter__(self) -> LossWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<LossWriter {os.fspath(self.path)!r} run={self.run!r} {state}>"


def _after_fork_in_child() -> None:
    for writer in list(_writers):
        if writer._flusher.finished:
            continue
        writer._ok = False
        writer._forked = True
        writer._pending.clear()  # the parent's rows, copied by fork: the parent writes them, not us
        with contextlib.suppress(OSError):
            os.close(writer._flusher.fd)  # never flock(LOCK_UN): the lock is shared with the parent's fd


os.register_at_fork(after_in_child=_after_fork_in_child)
