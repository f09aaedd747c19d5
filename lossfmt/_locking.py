"""Descriptors of the files lossfmt writes: open + exclusive flock, hidden temp files, checked writes.

Rules kept here:

- Every descriptor opened here is closed in a forked child (`_Descriptors`), so a fork never keeps a run
  locked (the parent keeps its flocks: a child never unlocks, it only closes its copies).
- Only regular files are opened (a FIFO or device is refused, never blocked on); a symlink names its target.
- Temp files are named `.<name>.<random>.lossfmt-tmp` (hidden, no `.arrow` suffix: globs and directory reads
  skip them), are locked from creation, and one whose flock is free belongs to a dead process: the next
  opener of the file removes it.
- Every write is checked: a short write (full disk) is an OSError naming the file, never a silent loss.
- A writer writes only to the file it left: the file at its path must be its own (`check_named`), of the
  size it left, starting with its header (`check_unchanged`: not truncated or overwritten in place).
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
from pathlib import Path

import pyarrow as pa

from lossfmt import _signals
from lossfmt import schema as s
from lossfmt._errors import FileReplacedError, LossFormatError, WriterBusyError

__all__ = [
    "TEMP_SUFFIX",
    "TempFile",
    "changed_outside",
    "check_named",
    "check_unchanged",
    "open_locked",
    "release",
    "remove_stale_temps",
    "same_file",
    "target",
    "write_all",
]

TEMP_SUFFIX = ".lossfmt-tmp"


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


def _before_fork() -> None:  # a signal meanwhile (another fork hook runs Python) is handled after the fork
    _signals.critical.__enter__()
    _descriptors.lock.acquire()


def _after_fork_in_parent() -> None:
    _descriptors.lock.release()
    _signals.critical.__exit__(None, None, None)


os.register_at_fork(
    before=_before_fork,
    after_in_parent=_after_fork_in_parent,
    after_in_child=_descriptors.after_fork_in_child,
)


def _open(path: Path, flags: int, mode: int = 0o644) -> int:
    with _signals.critical, _descriptors.lock:  # a close_on_signal handler closes files too: after this
        fd = os.open(path, flags | os.O_CLOEXEC, mode)
        _descriptors.fds.add(fd)
    return fd


def release(fd: int) -> None:
    """Close a descriptor opened here (releasing its flock if it was the last one)."""
    with _signals.critical, _descriptors.lock:
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


def same_file(path: Path, fd: int) -> bool:
    try:
        st, fst = os.stat(path), os.fstat(fd)
    except FileNotFoundError:
        return False
    return (st.st_dev, st.st_ino) == (fst.st_dev, fst.st_ino)


def check_named(path: Path, fd: int, name: Path, rows: int, appended: int = 0) -> None:
    """FileReplacedError naming `name` if the file at `path` is no longer the one `fd` holds (moved, removed
    or replaced): `rows` events were written to it, the last `appended` of them just now."""
    if same_file(path, fd):
        return
    gone = not os.path.lexists(path)
    if os.fstat(fd).st_nlink:  # our file still has a name: moved, not removed
        raise FileReplacedError(
            f"{os.fspath(name)}: the file was moved or renamed while LossWriter was writing it "
            f"({'nothing' if gone else 'another file, left untouched,'} is at this path now): its "
            f"{_events(rows)} so far are in it, under its new name; events added from now on are written "
            "nowhere"
        )
    if gone:
        raise FileReplacedError(
            f"{os.fspath(name)}: the file was removed while LossWriter was writing it (nothing is at this "
            f"path now): the {_events(rows - appended)} written to it, and any added since, are in no file"
        )
    raise FileReplacedError(
        f"{os.fspath(name)}: the file was removed or replaced while LossWriter was writing it: the "
        f"{_events(rows - appended)} written to it, and any added since, are not in the file now at this "
        "path, which is left untouched"
    )


def check_unchanged(fd: int, name: Path, *, size: int, header: bytes, rows: int, unwritten: int = 0) -> None:
    """LossFormatError naming `name` unless the file `fd` still has the `size` bytes its writer left and
    starts with its `header`: it was truncated or overwritten in place (same inode: `: > run.arrow`, a stray
    open(path, "w"), a copy over it), and nothing may be written to it any more. `rows`: the events written
    to it; `unwritten`: those about to be written, which are not."""
    now = os.fstat(fd).st_size
    if now == size and os.pread(fd, len(header), 0) == header:
        return
    raise changed_outside(
        name, f"{now:,} bytes where it had {size:,}" if now != size else "a new header", rows, unwritten
    )


def _events(n: int) -> str:
    return f"{n} event{'s' if n != 1 else ''}"


def changed_outside(name: Path, found: str, rows: int, unwritten: int) -> LossFormatError:
    """The error of a live file changed in place by another program (`found`: what its writer found)."""
    lost = (
        f"the {unwritten} event{'s' if unwritten != 1 else ''} not yet written to it, and any added since,"
        if unwritten
        else "events added from now on"
    )
    return LossFormatError(
        f"{os.fspath(name)}: the file was changed from outside while LossWriter was writing it (truncated or "
        f"overwritten in place: it has {found}); it is left as it is, with what that change left of the "
        f"{_events(rows)} written to it; {lost} are written nowhere"
    )


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
                f"{os.fspath(path)}: not a regular file ({kind(mode)}); a LossWriter writes only regular "
                "files: pass the path of a new or existing .arrow file"
            )
    return real


def kind(mode: int) -> str:
    """What a file that is not a regular one is, in words (for errors)."""
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
            raise LossFormatError(f"{shown}: not a regular file ({kind(mode)}); refusing to write it")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _lock_holder(fd)
            release(fd)
            holder = f" (pid {pid})" if pid is not None else ""
            if pid == os.getpid():  # a notebook cell run again while its first writer is still open
                holder += ": this process's own earlier one, still open (a cell run again?)"
            raise WriterBusyError(
                f"{shown}: already open by another LossWriter{holder}; "
                "close it first or write to another path"
            ) from None
        # A compaction may have replaced the file between open and flock: lock the file now at `path`.
        if same_file(path, fd):
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


def copy_prefix(fd: int, temp: TempFile, end: int, name: Path) -> None:
    """Copy the first `end` bytes of the file `fd` into `temp` (a resume that drops the file's tail)."""
    offset = 0
    while offset < end:
        chunk = os.pread(fd, min(1 << 20, end - offset), offset)
        if not chunk:
            raise LossFormatError(f"{os.fspath(name)}: shrank while being resumed")
        write_all(temp.fd, chunk, temp.path)
        offset += len(chunk)


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
        if held is not None and not same_file(self.final, held):
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
