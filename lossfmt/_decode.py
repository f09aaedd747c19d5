"""Decoding verified message layouts into record batches, with the checks of spec/FORMAT.md §1.7.

`_framing` finds and verifies the messages; this module hands their bytes to Arrow's readers and checks
what Arrow does not (nulls in non-nullable columns, the reduction dictionary), so every failure is a
LossFormatError naming the file and the message's byte offset.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import pyarrow as pa

from lossfmt import _framing as fr
from lossfmt._errors import LossFormatError

__all__ = ["decode", "iter_batches"]

# Arrow errors for bytes that do not decode or validate.
_DECODE_ERRORS = (pa.ArrowException, OSError, ValueError, EOFError, IndexError, TypeError)
_REDUCTIONS = {"mean", "sum"}
#: Bytes read per window by iter_batches (a live file may be far larger than memory should hold).
WINDOW = 32 << 20


def _options(fields: Sequence[int] | None) -> pa.ipc.IpcReadOptions | None:
    return None if fields is None else pa.ipc.IpcReadOptions(included_fields=list(fields))


def check_values(batches: list[pa.RecordBatch], schema: pa.Schema, name: str, where: str) -> None:
    """Nulls only where the schema allows them; reduction values only mean/sum (LossFormatError otherwise)."""
    for batch in batches:
        for i, field in enumerate(batch.schema):
            column = batch.column(i)
            if not field.nullable and column.null_count:
                raise LossFormatError(f"{name}: corrupt {where}: nulls in non-nullable column {field.name!r}")
            if field.name == "reduction" and len(column):
                values = set(column.dictionary.to_pylist())
                if not values <= _REDUCTIONS:
                    bad = sorted(str(v) for v in values - _REDUCTIONS)
                    raise LossFormatError(f"{name}: corrupt {where}: unknown reduction {bad[0]!r}")


def _batch_offsets(layout: fr.Layout, base: int) -> list[int]:
    return [base + m.start for m in layout.messages if m.kind == fr.RECORD_BATCH]


def _locate(
    stream: pa.Buffer, fields: Sequence[int] | None, offsets: list[int], name: str
) -> LossFormatError:
    """Decode batch by batch to name the first message that does not decode or validate."""
    reader = None
    i = 0
    try:
        reader = pa.ipc.open_stream(stream, options=_options(fields))
        for i in range(len(offsets)):
            reader.read_next_batch().validate(full=True)
    except _DECODE_ERRORS as exc:
        where = offsets[i] if offsets else 8
        return LossFormatError(f"{name}: corrupt at byte {where}: record batch does not decode ({exc})")
    return LossFormatError(f"{name}: corrupt: the batches do not decode as a whole")


def decode(
    data: bytes, buf: pa.Buffer, layout: fr.Layout, name: str, fields: Sequence[int] | None = None
) -> list[pa.RecordBatch]:
    """The record batches of a walked file (only the columns at `fields`, if given), fully validated."""
    options = _options(fields)
    stream = buf.slice(len(fr.MAGIC), layout.end - len(fr.MAGIC))
    try:
        if (
            layout.closed
        ):  # the footer agrees with the stream: Arrow's file reader decodes columns in parallel
            table = pa.ipc.open_file(buf, options=options).read_all()
        else:
            table = pa.ipc.open_stream(stream, options=options).read_all()
        table.validate(full=True)
    except _DECODE_ERRORS:
        raise _locate(stream, fields, _batch_offsets(layout, 0), name) from None
    batches = table.to_batches()
    check_values(batches, table.schema, name, "record batch")
    return batches


def _dictionary_prefix(dicts: dict[int, list[bytes]]) -> list[bytes]:
    return [raw for raws in dicts.values() for raw in raws]


def track_dictionaries(dicts: dict[int, list[bytes]], data: bytes, messages: Sequence[fr.Message]) -> None:
    """Keep, per dictionary id, the last full dictionary message and the deltas after it (to decode later
    spans on their own, §1.2)."""
    for m in messages:
        if m.kind != fr.DICTIONARY:
            continue
        raw = data[m.start : m.end]
        if m.is_delta:
            dicts.setdefault(m.dict_id, []).append(raw)
        else:
            dicts[m.dict_id] = [raw]


def decode_span(
    head: bytes,
    dicts: dict[int, list[bytes]],
    data: bytes,
    messages: Sequence[fr.Message],
    name: str,
    base: int,
) -> list[pa.RecordBatch]:
    """Decode the verified messages of data[:end of the last one] after the schema `head` and `dicts`."""
    if not messages:
        return []
    end = messages[-1].end
    stream = pa.py_buffer(b"".join([head, *_dictionary_prefix(dicts), data[messages[0].start : end]]))
    offsets = [base + m.start for m in messages if m.kind == fr.RECORD_BATCH]
    try:
        table = pa.ipc.open_stream(stream).read_all()
        table.validate(full=True)
    except _DECODE_ERRORS:
        raise _locate(stream, None, offsets, name) from None
    batches = table.to_batches()
    check_values(batches, table.schema, name, "record batch")
    return batches


def iter_batches(
    path: str | os.PathLike[str], end: int | None = None
) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """See `_framing.iter_batches`."""
    name = os.fspath(path)
    try:
        f = open(name, "rb")  # noqa: SIM115 (closed by the generator, or below on error)
    except FileNotFoundError:
        raise LossFormatError(f"{name}: no such file") from None
    try:
        size = os.fstat(f.fileno()).st_size
        limit = size if end is None else min(end, size)
        f.seek(max(limit - len(fr.TRAILING_MAGIC), 0))
        closed = end is None and f.read(len(fr.TRAILING_MAGIC)) == fr.TRAILING_MAGIC
        f.seek(0)
        data = f.read(limit if closed else min(limit, WINDOW))
        if len(data) == limit:
            layout = fr.walk(data, name)
            batches = decode(data, pa.py_buffer(data), layout, name)
            f.close()
            return layout.schema, iter(batches)
        while fr.is_unfinished_header(data) and len(data) < limit:
            data += f.read(min(limit - len(data), len(data)))
        schema, schema_end, verify = fr.head(data, pa.py_buffer(data), name)
    except BaseException:
        f.close()
        raise
    return schema, _windows(f, name, data, schema_end, verify, limit)


def _windows(
    f: object, name: str, data: bytes, schema_end: int, verify: bool, limit: int
) -> Iterator[pa.RecordBatch]:
    """The batches of a live file a window at a time; each window's batches come as one batch."""
    with f:  # type: ignore[attr-defined]
        head = data[len(fr.MAGIC) : schema_end]
        dicts: dict[int, list[bytes]] = {}
        base = schema_end
        window = data[schema_end:]
        while True:
            final = base + len(window) >= limit
            buf = pa.py_buffer(window)
            messages, end, eos = fr.scan_messages(window, buf, name, 0, verify=verify, final=final, base=base)
            batches = decode_span(head, dicts, window, messages, name, base)
            if batches:
                yield from pa.Table.from_batches(batches).unify_dictionaries().combine_chunks().to_batches()
            track_dictionaries(dicts, window, messages)
            if final or eos >= 0:
                return
            more = f.read(min(WINDOW if end else max(WINDOW, len(window)), limit - base - len(window)))  # type: ignore[attr-defined]
            window = window[end:] + more
            base += end
