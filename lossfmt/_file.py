"""The file of one run: locking, the header, resume, appending flushes, and compaction into a closed file.

The only code that writes lossfmt files (the flusher hands it bytes; compaction and `compact()` write closed
files). See spec/FORMAT.md for the bytes on disk and the rules of resume and compaction.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa

from lossfmt import _framing, reader
from lossfmt import schema as s
from lossfmt._errors import FileReplacedError, LossFormatError, WriterBusyError

__all__ = ["IPC_OPTIONS", "LiveFile", "compact"]

#: Rows per record batch in a compacted (closed) file.
COMPACT_ROWS = 1 << 24  # one batch for most runs: readers get one chunk, zero-copy to numpy
IPC_OPTIONS = pa.ipc.IpcWriteOptions(compression=s.COMPRESSION, emit_dictionary_deltas=False)
#: The live stream: a flush that brings new tags appends them as a delta dictionary message (the encoder's
#: dictionary only grows), so K tags over K flushes write O(K) dictionary bytes, not O(K^2).
LIVE_OPTIONS = pa.ipc.IpcWriteOptions(compression=s.COMPRESSION, emit_dictionary_deltas=True)


def _lock_holder(fd: int) -> int | None:
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
    """Open (creating if missing) and exclusively lock `path`; WriterBusyError if another writer holds it."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _lock_holder(fd)
            os.close(fd)
            holder = f" (pid {pid})" if pid is not None else ""
            raise WriterBusyError(
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
        with open(fd, "wb", closefd=False) as f, pa.ipc.new_file(f, schema, options=IPC_OPTIONS) as out:
            for batch in table.to_batches(max_chunksize=COMPACT_ROWS):
                out.write_batch(batch)
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

    A torn tail is dropped. WriterBusyError if a LossWriter has the file open; LossFormatError if not lossfmt.
    """
    path = Path(path)
    if not path.exists():
        raise LossFormatError(f"{os.fspath(path)}: no such file")
    fd = _open_locked(path)
    try:
        _compact_locked(path)
    finally:
        os.close(fd)


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


class LiveFile:
    """The locked file of a running writer: created with its header, or resumed; flushes are appended."""

    def __init__(self, path: Path, new_schema: pa.Schema, meta: Mapping[str, Any] | None) -> None:
        """Lock `path` and write the header of `new_schema`, or resume the run in an existing file."""
        self.path = path
        self.sealer = _framing.Sealer()
        fd = _open_locked(path)
        try:
            if os.fstat(fd).st_size == 0:
                self.schema, self.meta_update = new_schema, None
                os.write(fd, s.MAGIC + new_schema.serialize().to_pybytes())
            else:
                scanned = reader.scan(path)  # LossFormatError for a foreign file, which stays untouched
                if scanned.schema.names != list(s.COLUMNS):
                    raise LossFormatError(
                        f"{os.fspath(path)}: has columns {scanned.schema.names}, this writer appends "
                        f"only {list(s.COLUMNS)}; refusing to resume (the file is left untouched)"
                    )
                self.schema, self.meta_update = scanned.schema, meta
                end = scanned.end
                del scanned
                os.ftruncate(fd, end)  # a closed file becomes live again; a torn tail is dropped
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        self._sink = _Sink()
        self._stream = pa.ipc.new_stream(self._sink, self.schema, options=LIVE_OPTIONS)
        self._schema_skipped = False

    def write_batch(self, batch: pa.RecordBatch) -> None:
        """Append `batch` as one flush (its dictionary messages, then the record batch) with one write."""
        self._stream.write_batch(batch, custom_metadata=_framing.BATCH_METADATA)
        data = self._sink.take()
        if not self._schema_skipped:
            # The stream writer starts with the schema message, which the file already has: drop it.
            meta_len = int.from_bytes(data[4:8], "little", signed=True)
            data = data[8 + meta_len :]
            self._schema_skipped = True
        self.append(self.sealer.seal(data))

    def append(self, data: bytes) -> None:
        """Append bytes of whole messages; FileReplacedError if the file at `path` is no longer this one."""
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]
        try:
            st, fst = os.stat(self.path), os.fstat(self.fd)
            moved = (st.st_dev, st.st_ino) != (fst.st_dev, fst.st_ino)
        except FileNotFoundError:
            moved = True
        if moved:
            raise FileReplacedError(
                f"{os.fspath(self.path)}: the file was removed or replaced while LossWriter was writing it; "
                "events written since then are not in the file at this path"
            )

    def close(self, *, compact: bool) -> None:
        """Compact (if `compact`) and release the lock; the descriptor is closed whatever happens."""
        try:
            if compact:
                _compact_locked(self.path, self.meta_update)
        finally:
            os.close(self.fd)
