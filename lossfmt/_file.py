"""The file of one run: the header, resume, appending flushes, and writing closed files.

The only code that writes lossfmt files: the flusher hands `LiveFile` record batches, and `write_closed`
(used by compaction, `compact`, `salvage` and `import_tb`) writes every closed file. See spec/FORMAT.md for
the bytes on disk and the rules of resume and compaction. A file is never truncated or rewritten in place:
resume appends when the file ends on a record batch, and otherwise writes the kept prefix to a locked temp
file that atomically replaces the file (`_locking` has the descriptors, locks and temp files); a running
writer's re-compaction (`_recompact`) replaces the live file the same way, by `write_live`'s file.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal, cast

import pyarrow as pa

from lossfmt import _checks, _framing, _locking, _read
from lossfmt import schema as s
from lossfmt._errors import LossFormatError

__all__ = ["COMPACT_ROWS", "IPC_OPTIONS", "LiveFile", "write_closed", "write_closed_locked"]

#: Rows per record batch in a closed file (spec/FORMAT.md): bounds the memory of compaction (a batch is about
#: 24 MB decoded, and compaction holds about three: measured 165 MB of extra RSS closing 10M events, where
#: 2^20 rows took 270 MB) and of a reader decoding one batch, while keeping batches cheap per row.
COMPACT_ROWS = 1 << 19
# schema.COMPRESSION is a plain str to mypy (it is "zstd"): named here as the codec literal the stubs want.
_COMPRESSION = cast(Literal["lz4", "zstd"], s.COMPRESSION)
IPC_OPTIONS = pa.ipc.IpcWriteOptions(compression=_COMPRESSION, emit_dictionary_deltas=False)
#: The live stream: a flush that brings new tags appends them as a delta dictionary message (the encoder's
#: dictionary only grows), so K tags over K flushes write O(K) dictionary bytes, not O(K^2).
LIVE_OPTIONS = pa.ipc.IpcWriteOptions(compression=_COMPRESSION, emit_dictionary_deltas=True)
#: The dictionary ids pyarrow's writers give the v1 schema (its dictionary fields numbered in order).
_STREAM_DICT_IDS = {"tag": 0, "reduction": 1}


class _Sink:
    """File-like object collecting what an Arrow writer emits, so whole messages are sealed and written.

    With `drop_schema`, the stream's first message (the schema, which the file already has) is dropped.
    """

    def __init__(self, *, drop_schema: bool = False) -> None:
        self.chunks: list[bytes] = []
        self.closed = False
        self._drop_schema = drop_schema

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
        if self._drop_schema and data:
            meta_len = int.from_bytes(data[4:8], "little", signed=True)
            data = data[8 + meta_len :]  # a schema message has no body
            self._drop_schema = False
        return data


def _rebatch(batches: Iterable[pa.RecordBatch], rows: int) -> Iterator[pa.RecordBatch]:
    """The rows of `batches` in batches of exactly `rows` rows (the last may be shorter)."""
    group: list[pa.RecordBatch] = []
    n = 0
    for batch in batches:
        while batch.num_rows:
            take = min(batch.num_rows, rows - n)
            group.append(batch.slice(0, take))
            batch = batch.slice(take)
            n += take
            if n == rows:
                full, group, n = _concat(group), [], 0
                yield full  # the pieces are released first: only one copy of the rows is alive
    if group:
        yield _concat(group)


def _concat(group: list[pa.RecordBatch]) -> pa.RecordBatch:
    """One batch of `group`; dictionary columns keep their (one, shared) dictionary."""
    if len(group) == 1:
        return group[0]
    first = group[0]
    columns: list[pa.Array[Any]] = []
    for i, field in enumerate(first.schema):
        chunks = [b.column(i) for b in group]
        if pa.types.is_dictionary(field.type):
            encoded = cast("list[pa.DictionaryArray[Any, Any]]", chunks)  # a dictionary field's columns
            dictionary = encoded[0].dictionary
            if any(c.dictionary is not dictionary and not c.dictionary.equals(dictionary) for c in encoded):
                raise ValueError(f"write_closed: column {field.name!r} has more than one dictionary")
            indices = pa.concat_arrays([c.indices for c in encoded])
            columns.append(pa.DictionaryArray.from_arrays(indices, dictionary))
        else:
            columns.append(pa.concat_arrays(chunks))
    return pa.RecordBatch.from_arrays(columns, schema=first.schema)


def _seal_into(temp: _locking.TempFile, sealer: _framing.Sealer, sink: _Sink) -> None:
    """Write the whole messages the Arrow writer emitted since the last call, checksums filled in."""
    data = sink.take()
    if data:  # a Sealer's first chunk must be the file's first bytes (magic), not an empty one
        _locking.write_all(temp.fd, sealer.seal(data), temp.path)


def _write_rebatched(
    temp: _locking.TempFile, out: Any, sink: _Sink, sealer: _framing.Sealer, batches: Iterable[pa.RecordBatch]
) -> int:
    """Write `batches` through the Arrow writer `out` in `COMPACT_ROWS`-row record batches, each sealed
    into `temp` as soon as it is complete; return the rows written."""
    rows = 0
    for batch in _rebatch(batches, COMPACT_ROWS):
        out.write_batch(batch, custom_metadata=_framing.BATCH_METADATA)
        rows += batch.num_rows
        del batch  # released before the next one is built
        _seal_into(temp, sealer, sink)
    return rows


def write_live(
    temp: _locking.TempFile, header: bytes, schema: pa.Schema, batches: Iterable[pa.RecordBatch]
) -> int:
    """Write a live (footerless) file into `temp`: `header` (the magic and sealed schema message of the file
    it is to replace, byte for byte), then `batches` as in a closed file (one dictionary per column,
    `COMPACT_ROWS`-row batches, sealed) and no EOS, so appends continue on it; return the rows written."""
    _locking.write_all(temp.fd, header, temp.path)
    sink, sealer = _Sink(drop_schema=True), _framing.Sealer()
    # pyarrow takes any object with write() as a sink; the stubs accept only NativeFile or IOBase
    out = pa.ipc.new_stream(sink, schema, options=IPC_OPTIONS)  # type: ignore[arg-type]
    return _write_rebatched(temp, out, sink, sealer, batches)  # never closed: that would write EOS


def write_closed_locked(
    path: Path,
    schema: pa.Schema,
    batches: Iterable[pa.RecordBatch],
    *,
    held: int | None,
    expect_rows: int | None = None,
) -> int:
    """`write_closed` for a caller that holds `path`'s lock on `held`; returns the rows written.

    LossFormatError (and `path` left as it is) if `expect_rows` is given and differs from the rows written.
    """
    metadata = {**(schema.metadata or {}), s.KEY_CHECKSUM.encode(): b"crc32c"}
    metadata.setdefault(s.KEY_SCHEMA_CHECKSUM.encode(), b"00000000")  # the schema's checksum (§1.6), sealed
    schema = schema.with_metadata(metadata)
    temp = _locking.TempFile(path)
    try:
        sink, sealer = _Sink(), _framing.Sealer()
        # pyarrow takes any object with write() as a sink; the stubs accept only NativeFile or IOBase
        with pa.ipc.new_file(sink, schema, options=IPC_OPTIONS) as out:  # type: ignore[arg-type]
            _seal_into(temp, sealer, sink)
            rows = _write_rebatched(temp, out, sink, sealer, batches)
        _seal_into(temp, sealer, sink)
        if expect_rows is not None and rows != expect_rows:
            raise LossFormatError(
                f"{os.fspath(path)}: holds {rows} events where {expect_rows} were written (the file was "
                "truncated or damaged from outside); it is left as it is, not compacted"
            )
        temp.commit(held)
    except BaseException:
        temp.discard()
        raise
    _locking.release(temp.fd)
    return rows


def write_closed(path: str | os.PathLike[str], schema: pa.Schema, batches: Iterable[pa.RecordBatch]) -> int:
    """Write a closed (footer'd, checksummed) lossfmt file at `path` atomically; return the rows written.

    The file appears complete or not at all (temp file, fsync, rename), under `path`'s lock (WriterBusyError
    if a writer holds it). Every dictionary column of `batches` must use one dictionary throughout; rows are
    rebatched into `COMPACT_ROWS`-row record batches.
    """
    final = _locking.target(Path(path).absolute())
    fd, created = _locking.open_locked(final, Path(path))
    try:
        _locking.remove_stale_temps(final)
        return write_closed_locked(final, schema, batches, held=fd)
    except BaseException:
        if created and _locking.same_file(final, fd) and os.fstat(fd).st_size == 0:
            with contextlib.suppress(OSError):
                os.unlink(final)
        raise
    finally:
        _locking.release(fd)


def _header(fd: int) -> bytes:
    """The magic and schema message at the start of the (verified) file `fd`: the schema has no body."""
    prefix = os.pread(fd, 16, 0)
    return os.pread(fd, 16 + int.from_bytes(prefix[12:16], "little", signed=True), 0)


class LiveFile:
    """The locked file of a running writer: created with its header, or resumed; flushes are appended.

    `rows` counts every event the file holds (at resume, plus every appended batch): close() checks the
    compacted file against it.
    """

    def __init__(self, path: Path, new_schema: pa.Schema, meta: dict[str, Any] | None) -> None:
        """Lock `path` and write the header of `new_schema`, or resume the run in an existing file (then
        `meta` is merged into its user metadata at close)."""
        self.path = path  # what errors name (a symlink stays a symlink)
        self.target = _locking.target(path)
        self.sealer = _framing.Sealer()
        self.rows = 0
        self.header = b""
        #: A resumed file's first event (step, epoch) and its lowest and highest step: a writer starting at
        #: or before that event is a script run again on the same path (the Encoder tells, on the caller's
        #: thread).
        self.resumed: _checks.Resumed | None = None
        fd, created = _locking.open_locked(self.target, path)
        try:
            _locking.remove_stale_temps(self.target)
            if os.fstat(fd).st_size == 0:
                self.schema, self.meta_update = new_schema, None
                self._write_header(fd, created)
            else:
                self.meta_update = meta
                fd = self._resume(fd)
        except BaseException:
            with contextlib.suppress(OSError):
                _locking.release(fd)
            raise
        self.fd = fd
        #: The file's magic and sealed schema message, byte for byte (a re-compacted file starts with them).
        self.header = self.header or _header(fd)
        self.size = os.fstat(fd).st_size
        self.flushes = 0  # appended since the file was opened or last replaced
        self.cut = False  # close() was cut short as it compacted: the file still live, whole and locked
        #: The dictionaries of the stream's last batch, by column (the stream's state); empty before a flush.
        self.dictionaries: dict[int, pa.Array[Any]] = {}
        self._restart_stream(None)

    def _restart_stream(self, seed: pa.RecordBatch | None) -> None:
        """A new Arrow stream writer for the flushes to come; its dictionary state is `seed`'s (the file's
        last dictionaries), else none (then its first flush writes full dictionaries, spec §1.4)."""
        self._sink = _Sink(drop_schema=True)  # the file already has its schema message
        # pyarrow takes any object with write() as a sink; the stubs accept only NativeFile or IOBase
        self._stream = pa.ipc.new_stream(self._sink, self.schema, options=LIVE_OPTIONS)  # type: ignore[arg-type]
        if seed is not None:
            self._stream.write_batch(seed)  # written nowhere: only the writer's dictionary memo is kept
            self._sink.take()

    def _write_header(self, fd: int, created: bool) -> None:
        header = _framing.Sealer().seal(s.MAGIC + self.schema.serialize().to_pybytes())
        self.header = header
        try:
            _locking.write_all(fd, header, self.path)
        except OSError:
            # A torn header would make every later flush unreadable: leave no half file behind.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
                if created and _locking.same_file(self.target, fd):
                    os.unlink(self.target)
            raise

    def _resume(self, fd: int) -> int:
        """Resume the run in the file locked by `fd`; return the descriptor to append to. LossFormatError for
        corruption (from the scan), PermissionError if the file must be rewritten and its directory is not
        writable: either way the file stays byte-for-byte as it was."""
        name = os.fspath(self.target)
        layout = _framing.walk(_read.read_bytes(self.target), name)  # verified; only bytes held, no table
        s.check_schema(layout.schema, name)
        if layout.schema.names != list(s.COLUMNS):
            raise LossFormatError(
                f"{os.fspath(self.path)}: has columns {layout.schema.names}, this writer appends "
                f"only {list(s.COLUMNS)}; refusing to resume (the file is left untouched)"
            )
        self.schema, closed, size = layout.schema, layout.closed, os.fstat(fd).st_size
        # The resume point: after the last record batch (an empty closed file's dictionaries are dropped too).
        end = max(
            (m.end for m in layout.messages if m.kind == _framing.RECORD_BATCH), default=layout.schema_end
        )
        # Other dictionary ids than this writer's stream uses (§1.1 allows any): rewritten, with 0 and 1.
        renumber = layout.dict_ids != _STREAM_DICT_IDS
        del layout
        self.rows, self.resumed = _checks.resumed_events(self.target, end)
        if end == size and not renumber:
            return fd  # a live file ending on a record batch: append in place
        # A closed file's EOS and footer, a torn tail, or dictionaries of a torn flush follow `end`: copy the
        # prefix to a new file and replace (a reader of the old file keeps reading the old bytes).
        with _checks.unwritable_directory(self.path, _checks.NOT_RESUMED, full=_checks.NOT_RESUMED_FULL):
            temp = self._renumbered(end) if renumber else _locking.TempFile(self.target)
            try:
                if not renumber:
                    _locking.copy_prefix(fd, temp, end, self.path)
                temp.commit(fd)
            except BaseException:
                temp.discard()
                raise
        try:
            if not closed and size > end:  # (told once it is dropped: a failed replace leaves the file)
                _checks.warn_torn_tail(self.path, size - end)
        except BaseException:  # (warnings as errors: the caller releases `fd`)
            _locking.release(temp.fd)
            raise
        _locking.release(fd)
        return temp.fd

    def _renumbered(self, end: int) -> _locking.TempFile:
        """The events up to `end` in a live temp file whose schema message (same metadata) has ids 0, 1."""
        from lossfmt._compact import recompact  # compaction builds on this module

        self.header = _framing.Sealer().seal(s.MAGIC + self.schema.serialize().to_pybytes())
        return recompact(self.target, self.header, {}, expect_rows=self.rows, end=end, name=self.path)[0]

    def write_batch(self, batch: pa.RecordBatch) -> None:
        """Append `batch` as one flush (its dictionary messages, then the record batch) with one write."""
        # str keys and values are accepted (encoded as UTF-8); the stubs want bytes
        self._stream.write_batch(batch, custom_metadata=_framing.BATCH_METADATA)  # type: ignore[arg-type]
        self.append(self.sealer.seal(self._sink.take()), batch.num_rows)
        self.rows += batch.num_rows
        self.flushes += 1
        for i, field in enumerate(batch.schema):
            if pa.types.is_dictionary(field.type):
                self.dictionaries[i] = cast("pa.DictionaryArray[Any, Any]", batch.column(i)).dictionary

    def append(self, data: bytes, rows: int = 0) -> None:
        """Append bytes of whole messages (`rows` events); FileReplacedError if the file at `path` is not
        this one any more, LossFormatError (nothing written) if it was changed in place from outside."""
        end = self.size
        _locking.check_unchanged(
            self.fd, self.path, size=end, header=self.header, rows=self.rows, unwritten=rows
        )
        try:
            _locking.write_all(self.fd, data, self.path)
        except OSError:
            # Our own partial flush (disk full): drop it so the file still ends on a record batch.
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, end)
            raise
        self.size = end + len(data)
        _locking.check_named(self.target, self.fd, self.path, self.rows + rows, rows)

    def replace_by(self, temp: _locking.TempFile, seed: pa.RecordBatch) -> None:
        """Commit `temp` (the same events, re-compacted: `_recompact`) over the file and append to it from now
        on, its lock held throughout; `seed`: a zero-row batch with the dictionaries `temp` ends with.

        On an error before the rename the file stays as it was (the temp is removed) and appends go on.
        """
        try:
            temp.commit(self.fd)
        except BaseException:
            if not _locking.same_file(self.target, temp.fd):
                temp.discard()
                raise
            # Renamed; only the directory's fsync failed: the file at the path is the new one now.
        _locking.release(self.fd)
        self.fd, self.size, self.flushes = temp.fd, os.fstat(temp.fd).st_size, 0
        self._restart_stream(seed)

    def check_identity(self, appended: int = 0) -> None:
        """FileReplacedError if the file at `path` is no longer the one this writer holds the lock on
        (`appended`: events just written to it, not yet in `rows`); LossFormatError if it was truncated or
        overwritten in place from outside (`_locking.check_unchanged`)."""
        _locking.check_named(self.target, self.fd, self.path, self.rows + appended, appended)
        _locking.check_unchanged(self.fd, self.path, size=self.size, header=self.header, rows=self.rows)

    def close(self, *, compact: bool) -> None:
        """Compact (if `compact`) and release the lock; the descriptor is closed whatever happens, unless a
        KeyboardInterrupt (any BaseException) cuts the compaction short: then the file, still whole, stays
        locked (`cut`) for close() to be called again.

        Never touches a file it does not hold the lock on (FileReplacedError instead), and never replaces the
        live file by a closed one that lacks any of its `rows` (LossFormatError; the live file stays).
        """
        from lossfmt._compact import compact_locked  # compaction builds on this module

        self.cut = False
        try:
            if compact:
                self.check_identity()
                compact_locked(
                    self.target,
                    self.fd,
                    self.meta_update,
                    expect_rows=self.rows,
                    end=os.fstat(self.fd).st_size,  # the writer's own file ends on its last record batch
                    name=self.path,
                )
        except BaseException as exc:  # (cut after the rename: the path holds the closed file, all is done)
            self.cut = not isinstance(exc, Exception) and _locking.same_file(self.target, self.fd)
            raise
        finally:
            if not self.cut:
                _locking.release(self.fd)
