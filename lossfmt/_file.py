"""The file of one run: locking, the header, resume, appending flushes, and writing closed files.

The only code that writes lossfmt files: the flusher hands `LiveFile` record batches, and `write_closed`
(used by compaction, `compact`, `salvage` and `import_tb`) writes every closed file. See spec/FORMAT.md for
the bytes on disk and the rules of resume and compaction. Rules kept here:

- A file is never truncated or rewritten in place: resume appends when the file ends on a record batch,
  and otherwise writes the kept prefix to a locked temp file that atomically replaces the file.
- Temp files are named `.<name>.<random>.lossfmt-tmp` (hidden, no `.arrow` suffix: globs and directory reads
  skip them); one whose flock is free belongs to a dead process and is removed by the next opener.
- Every descriptor opened here is closed in a forked child (`_Descriptors`), so a fork never keeps a run
  locked, and every write is checked for a short write.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import secrets
import stat
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from lossfmt import _framing, reader
from lossfmt import schema as s
from lossfmt._errors import FileReplacedError, LossFormatError, WriterBusyError

__all__ = ["COMPACT_ROWS", "IPC_OPTIONS", "LiveFile", "open_locked", "release", "write_closed"]

#: Rows per record batch in a closed file (spec/FORMAT.md): bounds the memory of compaction (a batch is about
#: 24 MB decoded, and compaction holds about three: measured 165 MB of extra RSS closing 10M events, where
#: 2^20 rows took 270 MB) and of a reader decoding one batch, while keeping batches cheap per row.
COMPACT_ROWS = 1 << 19
IPC_OPTIONS = pa.ipc.IpcWriteOptions(compression=s.COMPRESSION, emit_dictionary_deltas=False)
TEMP_SUFFIX = ".lossfmt-tmp"
_COPY_CHUNK = 1 << 20


class _Descriptors:
    """Every descriptor this module holds open, closed in a forked child (the parent keeps the flocks).

    A lock spans open+register and the fork, so a fork never copies a descriptor not yet registered.
    """

    def __init__(self) -> None:
        self.fds: set[int] = set()
        self.lock = threading.Lock()

    def after_fork_in_child(self) -> None:
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)  # never flock(LOCK_UN): the lock is shared with the parent's descriptor
        self.fds.clear()
        self.lock.release()


_descriptors = _Descriptors()
os.register_at_fork(
    before=_descriptors.lock.acquire,
    after_in_parent=_descriptors.lock.release,
    after_in_child=_descriptors.after_fork_in_child,
)


def _open(path: Path, flags: int, mode: int = 0o644) -> int:
    with _descriptors.lock:
        fd = os.open(path, flags | os.O_CLOEXEC, mode)
        _descriptors.fds.add(fd)
    return fd


def release(fd: int) -> None:
    """Close a descriptor opened here (releasing its flock if it was the last one)."""
    with _descriptors.lock:
        _descriptors.fds.discard(fd)
        os.close(fd)


def write_all(fd: int, data: bytes | memoryview, path: Path) -> None:
    """Write every byte or raise OSError naming `path` (a short write on a full disk is an error, not a
    loss)."""
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except OSError as exc:
            raise OSError(exc.errno, f"{exc.strerror}: writing {os.fspath(path)}") from None
        if n <= 0:
            raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)}: writing {os.fspath(path)}")
        view = view[n:]


def _same_file(path: Path, fd: int) -> bool:
    try:
        st, fst = os.stat(path), os.fstat(fd)
    except FileNotFoundError:
        return False
    return (st.st_dev, st.st_ino) == (fst.st_dev, fst.st_ino)


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


def target(path: Path) -> Path:
    """The file a path names: a symlink's target (the link stays a link), refused unless a regular file."""
    real = Path(os.path.realpath(path))
    with contextlib.suppress(FileNotFoundError):
        mode = os.stat(real).st_mode
        if not stat.S_ISREG(mode):
            raise LossFormatError(
                f"{os.fspath(path)}: not a regular file ({_kind(mode)}); a LossWriter writes only regular "
                "files: pass the path of a new or existing .arrow file"
            )
    return real


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISDIR, "a directory"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file"


def open_locked(path: Path, name: Path | None = None) -> tuple[int, bool]:
    """Open (creating if missing) and exclusively lock the regular file `path`; return (fd, created).

    WriterBusyError if another writer holds it. `name` is the path to name in errors (default: `path`).
    """
    shown = os.fspath(name or path)
    while True:
        created = True
        try:
            fd = _open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND)
        except FileExistsError:
            created = False
            # O_NONBLOCK: opening a FIFO or device never blocks; it is refused below.
            fd = _open(path, os.O_RDWR | os.O_APPEND | os.O_NONBLOCK)
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            release(fd)
            raise LossFormatError(f"{shown}: not a regular file ({_kind(mode)}); refusing to write it")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _lock_holder(fd)
            release(fd)
            holder = f" (pid {pid})" if pid is not None else ""
            raise WriterBusyError(
                f"{shown}: already open by another LossWriter{holder}; "
                "close it first or write to another path"
            ) from None
        # A compaction may have replaced the file between open and flock: lock the file now at `path`.
        if _same_file(path, fd):
            return fd, created
        release(fd)


def remove_stale_temps(path: Path) -> list[Path]:
    """Remove the temp files a killed writer or compaction of `path` left (their flock is free); the caller
    holds `path`'s lock, so no live compaction of it can be writing one."""
    pattern = re.compile(rf"\.{re.escape(path.name)}\.[0-9a-f]{{8}}{re.escape(TEMP_SUFFIX)}")
    removed = []
    with contextlib.suppress(OSError):
        names = os.listdir(path.parent)
        for name in names:
            if not pattern.fullmatch(name):
                continue
            stale = path.parent / name
            try:
                fd = _open(stale, os.O_RDONLY | os.O_NONBLOCK)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                os.unlink(stale)
                removed.append(stale)
            except OSError:
                pass  # locked: a live process still owns it
            finally:
                release(fd)
    return removed


class TempFile:
    """A locked, hidden temp file beside `path` that `commit()` atomically renames over it (keeping the
    mode of the file it replaces)."""

    def __init__(self, path: Path) -> None:
        self.final = path
        self.path = path.with_name(f".{path.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")
        self.fd = _open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # locked before it can ever be renamed
            with contextlib.suppress(FileNotFoundError):
                os.fchmod(self.fd, os.stat(path).st_mode & 0o7777)
        except BaseException:
            self.discard()
            raise

    def commit(self, held: int | None) -> None:
        """fsync, then replace `final`; FileReplacedError if `final` is no longer the file `held` locks."""
        os.fsync(self.fd)
        if held is not None and not _same_file(self.final, held):
            raise FileReplacedError(
                f"{os.fspath(self.final)}: the file was removed or replaced by another; it is left as it is"
            )
        os.replace(self.path, self.final)
        fd = _open(self.final.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            release(fd)

    def discard(self) -> None:
        """Remove the temp file and close it (after a failure)."""
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        with contextlib.suppress(OSError):
            release(self.fd)


class _Sink:
    """File-like object collecting what an Arrow writer emits, so whole messages are sealed and written."""

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
    columns = []
    for i, field in enumerate(first.schema):
        chunks = [b.column(i) for b in group]
        if pa.types.is_dictionary(field.type):
            dictionary = chunks[0].dictionary
            if any(c.dictionary is not dictionary and not c.dictionary.equals(dictionary) for c in chunks):
                raise ValueError(f"write_closed: column {field.name!r} has more than one dictionary")
            indices = pa.concat_arrays([c.indices for c in chunks])
            columns.append(pa.DictionaryArray.from_arrays(indices, dictionary))
        else:
            columns.append(pa.concat_arrays(chunks))
    return pa.RecordBatch.from_arrays(columns, schema=first.schema)


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
    schema = schema.with_metadata({**(schema.metadata or {}), s.KEY_CHECKSUM.encode(): b"crc32c"})
    temp = TempFile(path)
    try:
        sink, sealer, rows = _Sink(), _framing.Sealer(), 0
        with pa.ipc.new_file(sink, schema, options=IPC_OPTIONS) as out:
            write_all(temp.fd, sealer.seal(sink.take()), temp.path)
            for batch in _rebatch(batches, COMPACT_ROWS):
                out.write_batch(batch, custom_metadata=_framing.BATCH_METADATA)
                rows += batch.num_rows
                del batch  # released before the next one is built
                write_all(temp.fd, sealer.seal(sink.take()), temp.path)
        write_all(temp.fd, sealer.seal(sink.take()), temp.path)
        if expect_rows is not None and rows != expect_rows:
            raise LossFormatError(
                f"{os.fspath(path)}: holds {rows} events where {expect_rows} were written (the file was "
                "truncated or damaged from outside); it is left as it is, not compacted"
            )
        temp.commit(held)
    except BaseException:
        temp.discard()
        raise
    release(temp.fd)
    return rows


def write_closed(path: str | os.PathLike[str], schema: pa.Schema, batches: Iterable[pa.RecordBatch]) -> int:
    """Write a closed (footer'd, checksummed) lossfmt file at `path` atomically; return the rows written.

    The file appears complete or not at all (temp file, fsync, rename), under `path`'s lock (WriterBusyError
    if a writer holds it). Every dictionary column of `batches` must use one dictionary throughout; rows are
    rebatched into `COMPACT_ROWS`-row record batches.
    """
    final = target(Path(path).absolute())
    fd, created = open_locked(final, Path(path))
    try:
        remove_stale_temps(final)
        return write_closed_locked(final, schema, batches, held=fd)
    except BaseException:
        if created and _same_file(final, fd) and os.fstat(fd).st_size == 0:
            with contextlib.suppress(OSError):
                os.unlink(final)
        raise
    finally:
        release(fd)


class LiveFile:
    """The locked file of a running writer: created with its header, or resumed; flushes are appended.

    `rows` counts every event the file holds (at resume, plus every appended batch): close() checks the
    compacted file against it.
    """

    def __init__(self, path: Path, new_schema: pa.Schema, meta: dict[str, Any] | None) -> None:
        """Lock `path` and write the header of `new_schema`, or resume the run in an existing file (then
        `meta` is merged into its user metadata at close)."""
        self.path = path  # what errors name (a symlink stays a symlink)
        self.target = target(path)
        self.sealer = _framing.Sealer()
        self.rows = 0
        fd, created = open_locked(self.target, path)
        try:
            remove_stale_temps(self.target)
            if os.fstat(fd).st_size == 0:
                self.schema, self.meta_update = new_schema, None
                self._write_header(fd, created)
            else:
                self.meta_update = meta
                fd = self._resume(fd)
        except BaseException:
            with contextlib.suppress(OSError):
                release(fd)
            raise
        self.fd = fd
        self._sink = _Sink()
        self._stream = pa.ipc.new_stream(self._sink, self.schema, options=IPC_OPTIONS)
        self._schema_skipped = False

    def _write_header(self, fd: int, created: bool) -> None:
        header = _framing.Sealer().seal(s.MAGIC + self.schema.serialize().to_pybytes())
        try:
            write_all(fd, header, self.path)
        except OSError:
            # A torn header would make every later flush unreadable: leave no half file behind.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
                if created and _same_file(self.target, fd):
                    os.unlink(self.target)
            raise

    def _resume(self, fd: int) -> int:
        """Resume the run in the file locked by `fd`; return the descriptor to append to.

        Corruption raises LossFormatError (from the scan) and the file stays byte-for-byte as it was.
        """
        scanned = reader.scan(self.target)
        if scanned.schema.names != list(s.COLUMNS):
            raise LossFormatError(
                f"{os.fspath(self.path)}: has columns {scanned.schema.names}, this writer appends "
                f"only {list(s.COLUMNS)}; refusing to resume (the file is left untouched)"
            )
        self.schema, self.rows, end = scanned.schema, scanned.table.num_rows, scanned.end
        del scanned
        if end == os.fstat(fd).st_size:
            return fd  # a live file ending on a record batch: append in place
        # A closed file's EOS and footer, a torn tail, or dictionaries of a torn flush follow `end`: copy the
        # prefix to a new file and replace (a reader of the old file keeps reading the old bytes).
        temp = TempFile(self.target)
        try:
            offset = 0
            while offset < end:
                chunk = os.pread(fd, min(_COPY_CHUNK, end - offset), offset)
                if not chunk:
                    raise LossFormatError(f"{os.fspath(self.path)}: shrank while being resumed")
                write_all(temp.fd, chunk, temp.path)
                offset += len(chunk)
            temp.commit(fd)
        except BaseException:
            temp.discard()
            raise
        release(fd)
        return temp.fd

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
        self.rows += batch.num_rows

    def append(self, data: bytes) -> None:
        """Append bytes of whole messages; FileReplacedError if the file at `path` is no longer this one."""
        end = os.fstat(self.fd).st_size
        try:
            write_all(self.fd, data, self.path)
        except OSError:
            # Our own partial flush (disk full): drop it so the file still ends on a record batch.
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, end)
            raise
        self.check_identity()

    def check_identity(self) -> None:
        """FileReplacedError if the file at `path` is no longer the one this writer holds the lock on."""
        if not _same_file(self.target, self.fd):
            raise FileReplacedError(
                f"{os.fspath(self.path)}: the file was removed or replaced while LossWriter was writing it; "
                f"the {self.rows} events written to it are not in the file now at this path (lost because "
                "the file was removed); that file is left untouched"
            )

    def close(self, *, compact: bool) -> None:
        """Compact (if `compact`) and release the lock; the descriptor is closed whatever happens.

        Never touches a file it does not hold the lock on (FileReplacedError instead), and never replaces the
        live file by a closed one that lacks any of its `rows` (LossFormatError; the live file stays).
        """
        from lossfmt._compact import compact_locked  # compaction builds on this module

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
        finally:
            release(self.fd)
