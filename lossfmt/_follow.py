"""Following a file a writer appends to: each poll decodes only the bytes added since the last one.

Implements spec/FORMAT.md §6 on top of `_framing` (the verified walk) and `_decode` (spans decoded with the
dictionaries in effect before them).
"""

from __future__ import annotations

import os
import stat
import struct
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import pyarrow as pa

from lossfmt import _decode, _read
from lossfmt import _framing as fr
from lossfmt import schema as s

__all__ = ["Follower", "Update", "follow"]

PathLike = str | os.PathLike[str]
_V1_SCHEMA = pa.schema(s.FIELDS)


class Update(NamedTuple):
    """What one `Follower.poll()` found."""

    table: pa.Table
    """New events (or, if `reset`, every event of the file)."""
    reset: bool
    """True: discard what earlier polls delivered; `table` is the whole file."""


def _row_key(table: pa.Table, i: int) -> tuple[Any, ...]:
    """A fingerprint of one event, to check that a replacement file starts with what was already delivered."""
    value = table.column(s.VALUE)[i].as_py()
    return (
        table.column(s.STEP)[i].as_py(),
        table.column(s.TAG)[i].as_py(),
        struct.pack("<d", value),
        table.column(s.WALL_TIME)[i].value,
    )


class Follower:
    """Incremental reader of one file that a writer may be appending to, compacting, resuming or replacing.

    Each `poll()` returns only the events appended since the previous poll, reading only the new bytes. It
    survives the writer's compaction on close (same run_id: continues without duplicates or loss),
    truncation, deletion and recreation (then `Update(everything, reset=True)`), and a torn tail (its events
    arrive once the message is complete). A missing or not-yet-written file gives an empty update; a file
    that is not lossfmt raises LossFormatError.
    """

    def __init__(self, path: PathLike) -> None:
        self.path = Path(path)
        #: run_info() of the file once its header has been read, else None.
        self.info: dict[str, Any] | None = None
        #: True once the file has its footer (the writer closed it).
        self.closed = False
        self._schema: pa.Schema | None = None
        self._identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the file last read
        self._stamp: tuple[int, int] = (-1, -1)  # (size, mtime_ns) when last read
        self._offset = 0  # end of the last complete message consumed
        self._head_bytes = b""  # magic-less schema message, to decode later spans
        self._dicts = _decode.Dictionaries()  # what a later span needs before it
        self._layout: fr.Layout | None = None  # schema and dictionary ids of the file last read
        self._delivered = 0
        self._last_key: tuple[Any, ...] | None = None

    @property
    def delivered(self) -> int:
        """Events the polls delivered since the last reset: the file's events as a viewer holds them."""
        return self._delivered

    def _empty(self) -> Update:
        schema = self._schema if self._schema is not None else _V1_SCHEMA
        return Update(pa.Table.from_batches([], schema=schema).select(list(s.COLUMNS)), False)

    def poll(self) -> Update:
        """Events appended since the last poll (see the class docstring for replacement and truncation)."""
        name = os.fspath(self.path)
        try:
            if not stat.S_ISREG(os.stat(name).st_mode):  # a FIFO would block open(); a directory is no run
                raise s.LossFormatError(f"{name}: not a regular file, so not a lossfmt file")
            f = open(name, "rb")  # noqa: SIM115 (closed below; identity and bytes must come from one handle)
        except FileNotFoundError:
            return self._empty()
        except OSError as exc:
            raise s.LossFormatError(f"{name}: cannot read ({exc.strerror or exc})") from None
        with f:
            st = os.fstat(f.fileno())
            identity = (st.st_dev, st.st_ino)
            stamp = (st.st_size, st.st_mtime_ns)
            if identity == self._identity:
                if stamp == self._stamp:
                    return self._empty()
                if st.st_size >= self._offset and self._same_header(f):
                    return self._append(f, stamp)
            return self._reread(f, identity, stamp)

    def _same_header(self, f: BinaryIO) -> bool:
        """The file still starts with the schema message read before (same run_id): not rewritten in place
        by another run that happens to reuse the inode."""
        head = s.MAGIC + self._head_bytes
        return f.read(len(head)) == head

    def _append(self, f: BinaryIO, stamp: tuple[int, int]) -> Update:
        """Decode the complete messages after the consumed offset (the common case: the writer flushed).

        An incomplete last message is left for a later poll: the file's size or mtime changes when the writer
        completes it, and only then are the bytes from the offset read again.
        """
        assert self._schema is not None and self._layout is not None  # set by _reread with the identity
        f.seek(self._offset)
        data = f.read(stamp[0] - self._offset)
        if data.endswith(fr.TRAILING_MAGIC):  # a footer appended in place: check it against the whole file
            f.seek(0)
            return self._reread(f, self._identity or (0, 0), stamp)
        name = os.fspath(self.path)
        required = (self._schema.metadata or {}).get(fr.KEY_CHECKSUM.encode()) is not None
        try:
            messages, end, _ = fr.scan_messages(
                data, pa.py_buffer(data), name, 0, required=required, base=self._offset
            )
            batches = _decode.decode_span(
                self._head_bytes, self._dicts, self._layout, data, messages, name, self._offset
            )
        except s.LossFormatError:
            # Not a continuation: the file was replaced by a new one of the same run (a compaction, then a
            # resume) that reuses the inode number. Read it whole; damage there is raised as before.
            return self._reread(f, self._identity or (0, 0), stamp)
        # Only now: after a corruption error the state is as before, so the next poll reports it again.
        self._stamp = stamp
        self.closed = False  # it changed and does not end with a footer
        if not messages:
            return self._empty()
        self._dicts.track(data, messages)
        self._offset += end
        table = _read._tidy(pa.Table.from_batches(batches, schema=self._schema)).select(list(s.COLUMNS))
        self._note_delivered(table)
        return Update(table, False)

    def _note_delivered(self, table: pa.Table) -> None:
        if table.num_rows:
            self._delivered += table.num_rows
            self._last_key = _row_key(table, table.num_rows - 1)

    def _reread(self, f: BinaryIO, identity: tuple[int, int], stamp: tuple[int, int]) -> Update:
        """Read the whole file: first poll, replacement (compaction, recreation) or truncation."""
        name = os.fspath(self.path)
        f.seek(0)
        data = f.read()
        try:
            result, layout = _read.scan_layout(data, name)
        except s.LossFormatError:
            if fr.is_unfinished_header(data):
                return self._empty()  # a writer is creating the file; its header is not complete yet
            raise
        info = s.run_info(result.schema)
        table = result.table.select(list(s.COLUMNS))
        had = self._identity is not None
        same_run = (
            had
            and self.info is not None
            and info.get("run_id") == self.info.get("run_id")
            and table.num_rows >= self._delivered
            and (self._delivered == 0 or _row_key(table, self._delivered - 1) == self._last_key)
        )
        if same_run:
            table = table.slice(self._delivered)
        else:
            self._delivered = 0
        self._schema = result.schema
        self.info = info
        self.closed = result.closed
        self._identity = identity
        self._offset = result.end
        self._stamp = stamp
        self._head_bytes = data[len(s.MAGIC) : layout.schema_end]
        self._layout = layout
        self._dicts = _decode.Dictionaries()
        self._dicts.track(data, layout.messages)
        self._note_delivered(table)
        return Update(table, had and not same_run)


def follow(path: PathLike) -> Follower:
    """A Follower for `path` (the file need not exist yet)."""
    return Follower(path)
