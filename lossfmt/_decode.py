"""Decoding walked messages into record batches, with the value checks of spec/FORMAT.md §1.7.

`_framing` finds and verifies the messages; this module hands their bytes to Arrow's readers (or, for a
live file's many small v1 batches, to `_columns`) and checks what Arrow does not (nulls in non-nullable
columns, null dictionary values, the reduction dictionary), so every failure is a LossFormatError naming the
file and offset.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Iterator, Sequence
from typing import BinaryIO

import pyarrow as pa

from lossfmt import _columns
from lossfmt import _framing as fr
from lossfmt._errors import LossFormatError, NoSuchFileError, corrupt

__all__ = ["Dictionaries", "decode", "decode_span", "iter_batches"]

# Arrow errors for bytes that do not decode or validate.
_DECODE_ERRORS = (pa.ArrowException, OSError, ValueError, EOFError, IndexError, TypeError)
_REDUCTIONS = {"mean", "sum"}
#: Bytes read per window by iter_batches (a live file may be far larger than memory should hold).
WINDOW = 8 << 20
#: Rows per batch iter_batches yields from a live file's many small flushes: bounds the decoded memory
#: (about 24 MB per 2^19 v1 rows) whatever the run's length (issue 9); compaction rebatches to the same size.
ROWS = 1 << 19
#: Batches of fewer rows than this on average come combined (each costs its consumer per-batch work); larger
#: ones come as decoded, sparing a copy of the whole group.
SMALL = 4096


def _options(fields: Sequence[int] | None) -> pa.ipc.IpcReadOptions | None:
    return None if fields is None else pa.ipc.IpcReadOptions(included_fields=list(fields))


def check_values(batches: Sequence[pa.RecordBatch], name: str, where: int) -> None:
    """Nulls only in nullable v1 columns; reduction dictionary entries only mean/sum (§1.7)."""
    for batch in batches:
        for i, field in enumerate(batch.schema):
            column = batch.column(i)
            if field.name != "epoch" and field.name in _V1_NAMES and column.null_count:
                raise corrupt(name, where, f"nulls in column {field.name!r}")
            if field.name == "reduction" and isinstance(column, pa.DictionaryArray):
                values = set(column.dictionary.to_pylist())
                if not values <= _REDUCTIONS:
                    bad = sorted(str(v) for v in values - _REDUCTIONS)[0]
                    raise corrupt(name, where, f"unknown reduction {bad!r}")


_V1_NAMES = {"step", "tag", "value", "count", "epoch", "wall_time", "reduction"}


def _check_dictionaries(data: bytes, messages: Sequence[fr.Message], name: str, base: int = 0) -> None:
    """No null value in any dictionary message of `messages` (§1.1, §1.7.3), which Arrow's readers accept;
    `base` is the offset of `data` in the file. The column decoder checks its own messages."""
    bad = _columns.null_dictionary(data, messages)
    if bad is not None:
        raise corrupt(name, base + bad.start, "a null dictionary value")


def _locate(
    stream: pa.Buffer, fields: Sequence[int] | None, offsets: Sequence[int], name: str
) -> LossFormatError:
    """Decode batch by batch to name the first message that does not decode or validate."""
    i = 0
    try:
        reader = pa.ipc.open_stream(stream, options=_options(fields))
        for i in range(len(offsets)):  # noqa: B007 (i names the failing batch below)
            reader.read_next_batch().validate(full=True)
    except _DECODE_ERRORS as exc:
        where = offsets[i] if offsets else 8
        return corrupt(name, where, f"record batch does not decode ({exc})")
    return LossFormatError(f"{name}: corrupt: the batches do not decode as a whole")


def _arrow_decode(
    source: pa.Buffer, fields: Sequence[int] | None, offsets: Sequence[int], name: str, closed: bool
) -> list[pa.RecordBatch]:
    try:
        if closed:  # the footer agrees with the stream: Arrow's file reader decodes columns in parallel
            table = pa.ipc.open_file(source, options=_options(fields)).read_all()
        else:
            table = pa.ipc.open_stream(source, options=_options(fields)).read_all()
        table.validate(full=True)
    except _DECODE_ERRORS:
        stream = source.slice(len(fr.MAGIC)) if closed else source
        raise _locate(stream, fields, offsets, name) from None
    return table.to_batches()


def decode(
    data: bytes, layout: fr.Layout, name: str, fields: Sequence[int] | None = None
) -> list[pa.RecordBatch]:
    """The record batches of a walked file (only the columns at `fields`, if given), fully validated."""
    batch_msgs = [m for m in layout.messages if m.kind == fr.RECORD_BATCH]
    offsets = [m.start for m in batch_msgs]
    # Many small batches (a live file) decode column by column; so do a closed file's few large ones, into
    # one array per column that callers use without concatenating 20 chunks (fresh 80 MB copies cost more
    # than the decode itself).
    many = len(batch_msgs) >= _columns.MIN_BATCHES if not layout.closed else len(batch_msgs) > 1
    if many and _columns.applicable(layout.schema, layout.messages):
        batches = _columns.decode(data, layout, name, fields, offsets)
    else:
        _check_dictionaries(data, layout.messages, name)
        buf = pa.py_buffer(data)
        source = buf if layout.closed else buf.slice(len(fr.MAGIC), layout.end - len(fr.MAGIC))
        batches = _arrow_decode(source, fields, offsets, name, layout.closed)
    check_values(batches, name, offsets[0] if offsets else layout.schema_end)
    return batches


class Dictionaries:
    """Per dictionary id, the last full dictionary message and the deltas after it: what a span of a stream
    needs before it to decode on its own (§1.2)."""

    def __init__(self) -> None:
        self._by_id: dict[int, list[tuple[bytes, fr.Message]]] = {}

    def track(self, data: bytes, messages: Sequence[fr.Message]) -> None:
        for m in messages:
            if m.kind != fr.DICTIONARY:
                continue
            entry = (data[m.start : m.end], _shift(m, -m.start))
            if m.is_delta:
                self._by_id.setdefault(m.dict_id, []).append(entry)
            else:
                self._by_id[m.dict_id] = [entry]

    def prefix(self) -> tuple[list[bytes], list[fr.Message]]:
        raws, messages, pos = [], [], 0
        for entries in self._by_id.values():
            for raw, m in entries:
                raws.append(raw)
                messages.append(_shift(m, pos))
                pos += len(raw)
        return raws, messages


def _shift(m: fr.Message, by: int) -> fr.Message:
    def moved(pos: int) -> int:
        return pos + by if pos >= 0 else -1

    return m._replace(
        start=m.start + by,
        end=m.end + by,
        body=m.body + by,
        crc_at=moved(m.crc_at),
        nodes_at=moved(m.nodes_at),
        buffers_at=moved(m.buffers_at),
    )


def decode_span(
    head: bytes,
    dicts: Dictionaries,
    layout: fr.Layout,
    data: bytes,
    messages: Sequence[fr.Message],
    name: str,
    base: int = 0,
    fields: Sequence[int] | None = None,
) -> list[pa.RecordBatch]:
    """Decode verified `messages` of `data` (a part of a file starting at offset `base`), after the schema
    message `head` and the dictionaries in effect before them; `layout` gives schema and dictionary ids."""
    if not messages:
        return []
    raws, prefixed = dicts.prefix()
    start = messages[0].start
    shift = sum(len(r) for r in raws) - start
    combined = b"".join([*raws, data[start : messages[-1].end]])
    span = fr.Layout(
        layout.schema,
        0,
        [*prefixed, *(_shift(m, shift) for m in messages)],
        len(combined),
        False,
        layout.dict_ids,
    )
    offsets = [base + m.start for m in messages if m.kind == fr.RECORD_BATCH]
    if len(offsets) >= _columns.MIN_BATCHES and _columns.applicable(layout.schema, span.messages):
        batches = _columns.decode(combined, span, name, fields, offsets)
    else:
        _check_dictionaries(data, messages, name, base)
        batches = _arrow_decode(pa.py_buffer(head + combined), fields, offsets, name, False)
    check_values(batches, name, offsets[0] if offsets else base)
    return batches


def iter_batches(
    path: str | os.PathLike[str], end: int | None = None
) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """See `_framing.iter_batches`."""
    name = os.fspath(path)
    try:
        f = open(name, "rb")  # noqa: SIM115 (closed by the generator, or below)
    except FileNotFoundError:
        raise NoSuchFileError(f"{name}: no such file") from None
    except OSError as exc:
        raise LossFormatError(f"{name}: cannot read ({exc.strerror or exc})") from None
    try:
        size = os.fstat(f.fileno()).st_size
        limit = size if end is None else min(end, size)
        f.seek(max(limit - len(fr.TRAILING_MAGIC), 0))
        closed = end is None and f.read(len(fr.TRAILING_MAGIC)) == fr.TRAILING_MAGIC
        f.seek(0)
        if closed:  # the footer is checked against the whole stream before any batch is decoded
            data = f.read(limit)
            f.close()
            layout = fr.walk(data, name)
            return layout.schema, _closed_batches(data, layout, name)
        data = f.read(min(limit, WINDOW))
        while fr.is_unfinished_header(data) and len(data) < limit:
            data += f.read(min(limit - len(data), len(data)))
        schema, schema_end, required, dict_ids = fr.head(data, pa.py_buffer(data), name)
    except BaseException:
        f.close()
        raise
    layout = fr.Layout(schema, schema_end, [], schema_end, False, dict_ids)
    batches = _windows(f, name, data, layout, required, limit)
    # Also when the generator is dropped before it started (no finally); not at exit, where it would close
    # the file under a compaction a daemon thread is finishing (the process closes it anyway).
    weakref.finalize(batches, f.close).atexit = False
    return schema, batches


def _closed_batches(data: bytes, layout: fr.Layout, name: str) -> Iterator[pa.RecordBatch]:
    """A walked closed file's record batches, decoded and validated one at a time."""
    if not layout.closed:  # the trailing magic without a footer that agrees: walk read it as a stream
        yield from decode(data, layout, name)
        return
    _check_dictionaries(data, layout.messages, name)
    offsets = [m.start for m in layout.messages if m.kind == fr.RECORD_BATCH]
    i = 0
    try:
        reader = pa.ipc.open_file(pa.py_buffer(data))
        for i in range(reader.num_record_batches):
            batch = reader.get_batch(i)
            batch.validate(full=True)
            check_values([batch], name, offsets[i])
            yield batch
    except _DECODE_ERRORS as exc:
        where = offsets[i] if offsets else layout.schema_end
        raise corrupt(name, where, f"record batch does not decode ({exc})") from None


def _groups(messages: Sequence[fr.Message]) -> Iterator[Sequence[fr.Message]]:
    """`messages` (ending with a record batch) cut into runs of at most ROWS rows of record batches (a larger
    batch alone); the dictionary messages before a batch stay with it."""
    start = rows = 0
    cut = 0  # just after the last record batch of the current run
    for i, m in enumerate(messages):
        if m.kind != fr.RECORD_BATCH:
            continue
        if rows and rows + m.rows > ROWS:
            yield messages[start:cut]
            start, rows = cut, 0
        rows += m.rows
        cut = i + 1
    if cut > start:
        yield messages[start:cut]


def _combined(batches: list[pa.RecordBatch]) -> list[pa.RecordBatch]:
    """Small batches combined into one (each costs its consumer per-batch work); large ones as they are."""
    if len(batches) > 1 and sum(map(len, batches)) < SMALL * len(batches):
        return pa.Table.from_batches(batches).unify_dictionaries().combine_chunks().to_batches()
    return batches


def _scan(
    window: bytes, name: str, start: int, required: bool, final: bool, base: int
) -> tuple[list[fr.Message], int, int, LossFormatError | None]:
    """`_framing.scan_messages` of a window; for damage, the messages before it and the error to raise once
    their batches are yielded (salvage keeps them)."""
    try:
        return (
            *fr.scan_messages(
                window, pa.py_buffer(window), name, start, required=required, final=final, base=base
            ),
            None,
        )
    except LossFormatError as exc:
        at = getattr(exc, "offset", None)
        if not isinstance(at, int) or at - base <= start:
            raise
        prefix = window[: at - base]
        messages, end, eos = fr.scan_messages(
            prefix, pa.py_buffer(prefix), name, start, required=required, final=False, base=base
        )
        return messages, end, eos, exc


def _windows(
    f: BinaryIO, name: str, data: bytes, layout: fr.Layout, required: bool, limit: int
) -> Iterator[pa.RecordBatch]:
    """The batches of a live file a window of bytes at a time; the small batches of many flushes come
    combined into batches of at most ROWS rows (a flush of more rows comes as it was written)."""
    with f:
        head = data[len(fr.MAGIC) : layout.schema_end]
        dicts = Dictionaries()
        window, base, start = data, 0, layout.schema_end  # window[start:] is content, at offset base + start
        del data
        while True:
            final = base + len(window) >= limit
            messages, end, eos, damage = _scan(window, name, start, required, final, base)
            for group in _groups(messages):
                yield from _combined(decode_span(head, dicts, layout, window, group, name, base))
                dicts.track(window, group)
                # Hand the decoded group's memory back to the OS (the pool keeps freed pages otherwise):
                # what bounds close()'s peak RSS on a long run, not only what is allocated at a time.
                pa.default_memory_pool().release_unused()
            if damage is not None:
                raise damage
            if final or eos >= 0:
                return
            want = WINDOW if end > start else max(WINDOW, 2 * (len(window) - start))
            window = window[end:] + f.read(min(want, limit - base - len(window)))
            base, start = base + end, 0
