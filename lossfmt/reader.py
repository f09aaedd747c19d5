"""Reading lossfmt files: whole-file reads (closed, live or crashed), torn tails, the incremental follower.

A file is MAGIC followed by an Arrow IPC stream. The reader walks the stream message by message (the
framing scan) and keeps every message before the first one that is incomplete or unparsable: that is the
file's content, whether the writer closed it, is still appending, or was killed mid-write.
"""

from __future__ import annotations

import os
import stat
import struct
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, NamedTuple

import numpy as np
import pyarrow as pa

from lossfmt import _arrow, _sources
from lossfmt import schema as s

if TYPE_CHECKING:
    import pandas

__all__ = ["Follower", "Scan", "Update", "follow", "read", "read_pandas", "scan"]

PathLike = str | os.PathLike[str]

#: Live files hold one small record batch per flush; tables made of smaller chunks than this are consolidated.
_COMBINE_BELOW_ROWS = 1 << 16
_V1_SCHEMA = pa.schema(s.FIELDS)
_CONTINUATION = b"\xff\xff\xff\xff"
#: Live files with at least this many record batches are decoded in parallel spans.
_PARALLEL_MIN_BATCHES = 256
_DECODE_THREADS = min(os.cpu_count() or 1, 8)
# Arrow errors for bytes that are not (yet) a complete, valid message or batch.
_DECODE_ERRORS = (pa.ArrowException, OSError, ValueError, EOFError)


class Scan(NamedTuple):
    """The result of reading one file: its schema, every complete event, where its content ends, and state."""

    schema: pa.Schema
    """The file's schema, with its lossfmt metadata."""
    table: pa.Table
    """Every complete event in file order (all columns the file has; dictionaries unified)."""
    end: int
    """Byte offset just after the last complete message before EOS/footer/torn tail (a resuming writer
    truncates here)."""
    closed: bool
    """The file has its Arrow IPC footer (the writer closed it)."""


class Update(NamedTuple):
    """What one `Follower.poll()` found."""

    table: pa.Table
    """New events (or, if `reset`, every event of the file)."""
    reset: bool
    """True: discard what earlier polls delivered; `table` is the whole file."""


class _Msg(NamedTuple):
    start: int
    end: int
    kind: str  # "dictionary" or "record batch"
    dict_id: int
    is_delta: bool


class _Frames(NamedTuple):
    messages: list[_Msg]
    end: int  # end of the last complete message (or start, if none)
    eos: int  # offset of the EOS marker, or -1 if the stream stops without one


# --- the framing scan ---------------------------------------------------------------------------------------


def _u16(b: bytes, o: int) -> int:
    return struct.unpack_from("<H", b, o)[0]


def _i32(b: bytes, o: int) -> int:
    return struct.unpack_from("<i", b, o)[0]


def _fb_field(b: bytes, table: int, index: int) -> int | None:
    """Position of field `index` of the flatbuffer table at `table`, or None if absent (default value)."""
    vtable = table - _i32(b, table)
    if 4 + 2 * index >= _u16(b, vtable):
        return None
    off = _u16(b, vtable + 4 + 2 * index)
    return table + off if off else None


def _dictionary_key(metadata: bytes) -> tuple[int, bool]:
    """(id, isDelta) of a dictionary message (Message.header is DictionaryBatch{id, data, isDelta})."""
    root = struct.unpack_from("<I", metadata, 0)[0]
    header = _fb_field(metadata, root, 2)
    if header is None:
        raise ValueError("dictionary message without header")
    table = header + struct.unpack_from("<I", metadata, header)[0]
    id_pos = _fb_field(metadata, table, 0)
    delta_pos = _fb_field(metadata, table, 2)
    dict_id = struct.unpack_from("<q", metadata, id_pos)[0] if id_pos is not None else 0
    return dict_id, bool(metadata[delta_pos]) if delta_pos is not None else False


def _frame(buf: pa.Buffer, start: int) -> _Frames:
    """Walk the messages from `start` to EOS, the end of the bytes, or the first incomplete/unparsable one."""
    reader = pa.BufferReader(buf)
    reader.seek(start)
    messages: list[_Msg] = []
    pos = start
    while True:
        try:
            msg = pa.ipc.read_message(reader)
        except EOFError:
            # Either the EOS marker (the reader moved past it) or simply no more bytes.
            eos = pos if reader.tell() > pos else -1
            return _Frames(messages, pos, eos)
        except _DECODE_ERRORS:
            return _Frames(messages, pos, -1)
        end = reader.tell()
        if msg.type == "dictionary":
            try:
                dict_id, is_delta = _dictionary_key(msg.metadata.to_pybytes())
            except (struct.error, ValueError, IndexError):
                return _Frames(messages, pos, -1)
        elif msg.type == "record batch":
            dict_id, is_delta = -1, False
        else:  # a second schema, a tensor...: not part of a lossfmt stream
            return _Frames(messages, pos, -1)
        messages.append(_Msg(pos, end, msg.type, dict_id, is_delta))
        pos = end


def _has_footer(buf: pa.Buffer, eos: int) -> bool:
    """True if the bytes after the EOS marker are an Arrow IPC footer, its length and the trailing magic."""
    size = buf.size
    after = eos + len(s.EOS)
    if size < after + 10 or buf.slice(size - 6, 6).to_pybytes() != s.TRAILING_MAGIC:
        return False
    footer_len = _i32(buf.slice(size - 10, 4).to_pybytes(), 0)
    return after + footer_len + 10 == size


def _head(buf: pa.Buffer, name: str) -> tuple[pa.Schema, int]:
    """Check the magic and decode the schema message; return the schema and the offset just after it."""
    if buf.size == 0:
        raise s.LossFormatError(
            f"{name}: empty file (a writer that just started has not written its header yet)"
        )
    if buf.slice(0, min(buf.size, len(s.MAGIC))).to_pybytes() != s.MAGIC[: buf.size]:
        raise s.LossFormatError(f"{name}: not a lossfmt file (no Arrow magic at byte 0)")
    if buf.size <= len(s.MAGIC):
        raise s.LossFormatError(f"{name}: truncated inside the schema ({buf.size} bytes)")
    reader = pa.BufferReader(buf)
    reader.seek(len(s.MAGIC))
    try:
        msg = pa.ipc.read_message(reader)
    except _DECODE_ERRORS as exc:
        if _schema_incomplete(buf):
            raise s.LossFormatError(f"{name}: truncated inside the schema ({buf.size} bytes)") from None
        raise s.LossFormatError(f"{name}: not a lossfmt file (unreadable schema message: {exc})") from None
    if msg.type != "schema":
        raise s.LossFormatError(f"{name}: not a lossfmt file (first message is a {msg.type}, not a schema)")
    try:
        schema = pa.ipc.read_schema(msg)
    except _DECODE_ERRORS as exc:
        raise s.LossFormatError(f"{name}: not a lossfmt file (unreadable schema: {exc})") from None
    s.check_schema(schema, name)
    try:
        s.run_info(schema)
    except (UnicodeDecodeError, ValueError, TypeError) as exc:
        raise s.LossFormatError(f"{name}: corrupt lossfmt metadata ({exc})") from None
    return schema, reader.tell()


def _schema_incomplete(buf: pa.Buffer) -> bool:
    """True if the bytes after the magic are a strict prefix of an encapsulated message (a torn schema)."""
    rest = buf.slice(len(s.MAGIC)).to_pybytes()[:8] if buf.size > len(s.MAGIC) else b""
    if len(rest) < 4:
        return rest == _CONTINUATION[: len(rest)]
    if rest[:4] != _CONTINUATION:
        return False
    if len(rest) < 8:
        return True
    length = _i32(rest, 4)
    return length > 0 and len(s.MAGIC) + 8 + length > buf.size


def _options(fields: Sequence[int] | None) -> pa.ipc.IpcReadOptions | None:
    """Read options decoding only the columns at `fields` (schema positions); None decodes every column."""
    return None if fields is None else pa.ipc.IpcReadOptions(included_fields=list(fields))


def _decode(stream: pa.Buffer, fields: Sequence[int] | None = None) -> tuple[list[pa.RecordBatch], bool]:
    """Decode every record batch of an IPC stream (only the columns at `fields`, if given); stop at the first
    one that fails to decode or validate.

    Returns the batches and whether the whole stream decoded. Full validation keeps a corrupt file from ever
    handing out arrays that could crash a later computation (the columns not decoded are never handed out).
    """
    try:
        # The common case, in C++ without the GIL.
        table = pa.ipc.open_stream(stream, options=_options(fields)).read_all()
        table.validate(full=True)
        return table.to_batches(), True
    except _DECODE_ERRORS:
        pass
    batches: list[pa.RecordBatch] = []  # find the longest good prefix, batch by batch
    try:
        reader = pa.ipc.open_stream(stream, options=_options(fields))
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                return batches, True
            batch.validate(full=True)
            batches.append(batch)
    except _DECODE_ERRORS:
        return batches, False


def _decode_file(
    buf: pa.Buffer, fields: Sequence[int] | None = None
) -> tuple[list[pa.RecordBatch], bool] | None:
    """A closed file through its footer: Arrow's file reader decompresses columns in parallel (only those at
    `fields`, if given). None if that fails (the stream path then finds the good prefix)."""
    try:
        table = pa.ipc.open_file(buf, options=_options(fields)).read_all()
        table.validate(full=True)
    except _DECODE_ERRORS:
        return None
    return table.to_batches(), True


def _update_dicts(state: dict[int, list[bytes]], buf: pa.Buffer, messages: Iterable[_Msg]) -> None:
    """Track, per dictionary id, the last full dictionary message and the deltas after it."""
    for msg in messages:
        if msg.kind != "dictionary":
            continue
        raw = buf.slice(msg.start, msg.end - msg.start).to_pybytes()
        if msg.is_delta:
            state.setdefault(msg.dict_id, []).append(raw)
        else:
            state[msg.dict_id] = [raw]


def _decode_content(
    buf: pa.Buffer, schema_end: int, messages: list[_Msg], fields: Sequence[int] | None = None
) -> tuple[list[pa.RecordBatch], bool]:
    """Decode the content messages of a file. A live file of many small flushes is split into spans at batch
    boundaries, each decoded on its own thread (decompression is most of the cost and releases the GIL)."""
    end = messages[-1].end if messages else schema_end
    n_batches = sum(m.kind == "record batch" for m in messages)
    workers = _DECODE_THREADS
    if workers < 2 or n_batches < _PARALLEL_MIN_BATCHES:
        return _decode(buf.slice(len(s.MAGIC), end - len(s.MAGIC)), fields)
    head = buf.slice(len(s.MAGIC), schema_end - len(s.MAGIC)).to_pybytes()
    per_span = -(-n_batches // workers)
    streams, state, first, seen = [], {}, 0, 0
    for i, msg in enumerate(messages):
        seen += msg.kind == "record batch"
        if seen == per_span or i == len(messages) - 1:
            prefix = [head, *(raw for raws in state.values() for raw in raws)]
            start = messages[first].start
            span = buf.slice(start, msg.end - start).to_pybytes()
            streams.append(pa.py_buffer(b"".join([*prefix, span])))
            _update_dicts(state, buf, messages[first : i + 1])
            first, seen = i + 1, 0
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lossfmt-decode") as pool:
        results = list(pool.map(_decode, streams, [fields] * len(streams)))
    batches: list[pa.RecordBatch] = []
    for span_batches, complete in results:
        batches += span_batches
        if not complete:
            return batches, False
    return batches, True


def _truncate_at_batch(messages: list[_Msg], n_good: int) -> int:
    """Index of the first message not covered by the first `n_good` record batches."""
    seen = 0
    for i, msg in enumerate(messages):
        if msg.kind == "record batch":
            if seen == n_good:
                return i
            seen += 1
    return len(messages)


def _tidy(table: pa.Table) -> pa.Table:
    """Unify dictionaries across chunks; consolidate a table made of many small (live, per-flush) batches."""
    if table.num_columns == 0 or table.column(0).num_chunks <= 1:
        return table
    if table.num_rows < _COMBINE_BELOW_ROWS * table.column(0).num_chunks:
        return table.combine_chunks()
    return table.unify_dictionaries()


class _Layout(NamedTuple):
    scan: Scan
    schema_end: int
    messages: list[_Msg]  # the complete messages of the content, after the schema


def _scan_buffer(buf: pa.Buffer, name: str, columns: Sequence[str] | None = None) -> _Layout:
    """Scan a file's bytes; with `columns` (names the v1 schema has), decode and return only those."""
    schema, schema_end = _head(buf, name)
    frames = _frame(buf, schema_end)
    messages, end = frames.messages, frames.end
    footer = frames.eos >= 0 and frames.eos == end and _has_footer(buf, frames.eos)
    fields = None if columns is None else [schema.get_field_index(c) for c in columns]
    batches, complete = (footer and _decode_file(buf, fields)) or _decode_content(
        buf, schema_end, messages, fields
    )
    if not complete:
        messages = messages[: _truncate_at_batch(messages, len(batches))]
        end = messages[-1].end if messages else schema_end
    closed = complete and footer
    decoded = schema
    if fields is not None:  # the batches hold only these columns, in the file's order
        decoded = pa.schema([schema.field(i) for i in sorted(fields)], metadata=schema.metadata)
    table = _tidy(pa.Table.from_batches(batches, schema=decoded))
    return _Layout(Scan(schema, table, end, closed), schema_end, messages)


def _name(path: PathLike) -> str:
    return os.fspath(path)


def scan(path: PathLike) -> Scan:
    """Read one file whatever its state (closed, live, crashed with a torn tail); LossFormatError if not v1.

    The file is memory-mapped: reading costs decompression, not copies through Python.
    """
    return _scan(path, None)


def _scan(path: PathLike, columns: Sequence[str] | None) -> Scan:
    """`scan`, decoding only `columns` (v1 column names) when given: the table then holds just those."""
    name = _name(path)
    if _sources.is_url(name):  # a run on object storage (engines hook: to port into _read._scan)
        return _sources.scan_url(name, columns)
    try:
        if not stat.S_ISREG(os.stat(name).st_mode):
            raise s.LossFormatError(f"{name}: not a regular file, so not a lossfmt file")
        source = pa.memory_map(name, "r")
    except FileNotFoundError:
        raise s.LossFormatError(f"{name}: no such file") from None
    except OSError as exc:
        raise s.LossFormatError(f"{name}: cannot read ({exc.strerror or exc})") from None
    with source:
        return _scan_buffer(source.read_buffer(), name, columns).scan


# --- read / read_pandas ------------------------------------------------------------------------------------


def _check_columns(columns: Sequence[str] | str | None) -> tuple[str, ...] | None:
    """The requested column names as a tuple (None: all), or ValueError naming what is wrong."""
    if columns is None:
        return None
    wanted = (columns,) if isinstance(columns, str) else tuple(columns)
    known = (*s.COLUMNS, s.RUN)
    for name in wanted:
        if name not in known:
            raise ValueError(
                f"unknown column {name!r}: lossfmt files have {', '.join(s.COLUMNS)} "
                f"(and {s.RUN} when several files are read)"
            )
    if not wanted:
        raise ValueError(f"columns is empty: name at least one of {', '.join(known)}")
    repeated = sorted({c for c in wanted if wanted.count(c) > 1})
    if repeated:
        raise ValueError(f"column {repeated[0]!r} is listed twice in columns")
    return wanted


def _read(
    source: PathLike | Iterable[PathLike],
    tags: Sequence[str] | str | None,
    run_type: pa.DataType,
    columns: Sequence[str] | str | None = None,
) -> pa.Table:
    wanted = _check_columns(columns)
    paths, multi = _sources.expand(source)
    if wanted is not None and s.RUN in wanted and not multi:
        raise ValueError(
            f"{paths[0]}: a single file has no {s.RUN!r} column (it is added when a list, glob or directory "
            "of files is read); drop it from columns"
        )
    stored = list(s.COLUMNS) if wanted is None else [c for c in wanted if c != s.RUN]
    decode = stored if tags is None or s.TAG in stored else [*stored, s.TAG]
    # Something must be decoded to count the rows of a file of which only `run` is wanted.
    decode = decode or [s.REDUCTION]
    tables: list[pa.Table] = []
    runs: list[str] = []
    for path in paths:
        result = _scan(path, decode)
        table = result.table.select(decode)
        if tags is not None:
            table = _sources.select_tags(table, tags)
        tables.append(table.select(stored))
        runs.append(s.run_info(result.schema).get("run") or Path(path).stem)
    if not multi:
        return tables[0]
    if wanted is not None and s.RUN not in wanted:
        return pa.concat_tables([t.replace_schema_metadata(None) for t in tables]).unify_dictionaries()
    labels = _sources.run_labels(paths, runs)
    with_run = []
    for table, label in zip(tables, labels, strict=True):
        run = pa.DictionaryArray.from_arrays(
            _arrow.array(np.zeros(table.num_rows, np.int32)), _arrow.strings([label])
        )
        if run_type == pa.string():
            run = run.cast(pa.string())
        # (in this order: a table of no columns, when only `run` is wanted, keeps its length)
        with_run.append(table.add_column(0, s.RUN, run).replace_schema_metadata(None))
    table = pa.concat_tables(with_run).unify_dictionaries()
    return table if wanted is None else table.select(list(wanted))


def read(
    source: PathLike | Iterable[PathLike],
    *,
    tags: Sequence[str] | str | None = None,
    columns: Sequence[str] | str | None = None,
) -> pa.Table:
    """Every complete event of a lossfmt file (closed, live or crashed), or of several with a `run` column.

    A single path gives its events (schema metadata kept; `schema.run_info(table.schema)` decodes it). A list,
    a glob pattern or a directory (every *.arrow inside, sorted) gives all their events with a leading `run`
    column (the run name from each file's metadata). `tags` keeps tags equal to or fnmatch-matching any entry.
    `columns` returns only the named columns, in that order (`run` only when several files are read); only
    those are decompressed, so reading what a plot needs (step, tag, value) costs a fraction of everything.
    Unknown names raise ValueError. Tag and reduction columns are dictionary-encoded with unified
    dictionaries. Raises LossFormatError, naming the file, for anything that is not a readable lossfmt file.
    """
    return _read(source, tags, pa.string(), columns)


def _to_pandas(table: pa.Table) -> pandas.DataFrame:
    import pandas as pd

    for name in (s.RUN, s.TAG, s.REDUCTION):  # labels become Categoricals (free for dictionary columns)
        if name in table.column_names and not pa.types.is_dictionary(table.schema.field(name).type):
            index = table.schema.get_field_index(name)
            table = table.set_column(index, name, table.column(name).dictionary_encode())
    epoch = table.column(s.EPOCH) if s.EPOCH in table.column_names else None
    df = table.to_pandas()
    if epoch is not None:
        values = epoch.fill_null(0).to_numpy().astype(np.int64, copy=False)
        mask = epoch.is_null().to_numpy()
        df[s.EPOCH] = pd.arrays.IntegerArray(values, mask)
    return df


def read_pandas(
    source: PathLike | Iterable[PathLike],
    *,
    tags: Sequence[str] | str | None = None,
    per: str | int | None = None,
    normalize: str | None = None,
    smooth: str | None = None,
) -> pandas.DataFrame:
    """`read()` as a tidy pandas DataFrame (one row per event, or per bucket with `per`).

    `normalize="per-item"` makes values per-item means (see lossfmt.transforms); `per="epoch"` or `per=N`
    aggregates into buckets with their spread; `smooth="ema:W"|"ma:N"` adds a `smoothed` column. tag,
    reduction and run are pandas Categoricals, epoch is nullable Int64, wall_time is datetime64[us, UTC].
    """
    try:
        import pandas  # noqa: F401
    except ImportError:
        raise ImportError(
            "lossfmt.read_pandas needs pandas, which is not installed; install it with: "
            "pip install 'lossfmt[pandas]'   (or use lossfmt.read() for a pyarrow Table)"
        ) from None
    from lossfmt import transforms

    per_ = transforms.parse_per(per)
    norm = transforms.parse_normalize(normalize)
    transforms.parse_smooth(smooth)  # a bad spec fails before any file is read
    table = _read(source, tags, pa.dictionary(pa.int32(), pa.string()))
    if per_ is not None:
        table = transforms.bucket(table, per_, normalize=norm)
    elif norm is not None:
        table = transforms.normalize_events(table)
    if smooth is not None:
        table = transforms.smooth_table(table, smooth)
    return _to_pandas(table)


# --- the follower ------------------------------------------------------------------------------------------


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
        self._dicts: dict[int, list[bytes]] = {}  # dictionary id -> last full message + later deltas
        self._delivered = 0
        self._last_key: tuple[Any, ...] | None = None

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
        assert self._schema is not None  # set together with the identity by _reread
        f.seek(self._offset)
        buf = pa.py_buffer(f.read(stamp[0] - self._offset))
        frames = _frame(buf, 0)
        self._stamp = stamp
        self.closed = frames.eos >= 0 and frames.eos == frames.end and _has_footer(buf, frames.eos)
        if not frames.messages:
            return self._empty()
        prefix = [self._head_bytes, *(m for msgs in self._dicts.values() for m in msgs)]
        span = buf.slice(0, frames.end).to_pybytes()
        batches, complete = _decode(pa.py_buffer(b"".join([*prefix, span])))
        messages = frames.messages
        if not complete:
            messages = messages[: _truncate_at_batch(messages, len(batches))]
            self.closed = False
        _update_dicts(self._dicts, buf, messages)
        self._offset += messages[-1].end if messages else 0
        table = _tidy(pa.Table.from_batches(batches, schema=self._schema)).select(list(s.COLUMNS))
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
        buf = pa.py_buffer(f.read())
        try:
            layout = _scan_buffer(buf, name)
        except s.LossFormatError:
            if _is_unfinished_header(buf):
                return self._empty()  # a writer is creating the file; its header is not complete yet
            raise
        result = layout.scan
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
        self._head_bytes = buf.slice(len(s.MAGIC), layout.schema_end - len(s.MAGIC)).to_pybytes()
        self._dicts = {}
        _update_dicts(self._dicts, buf, layout.messages)
        self._note_delivered(table)
        return Update(table, had and not same_run)


def _is_unfinished_header(buf: pa.Buffer) -> bool:
    """True for an empty file, a prefix of the magic, or the magic plus an incomplete schema message."""
    head = buf.slice(0, min(buf.size, len(s.MAGIC))).to_pybytes()
    return head == s.MAGIC[: len(head)] and _schema_incomplete(buf)


def follow(path: PathLike) -> Follower:
    """A Follower for `path` (the file need not exist yet)."""
    return Follower(path)
