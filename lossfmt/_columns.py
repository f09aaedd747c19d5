"""Decoding v1 record batches column by column into one array per column: cost proportional to bytes.

A live file holds one small record batch per flush. Arrow's reader decodes them one by one (a codec
context per buffer: 100,000 flushes take half a minute). Here each column's buffers are gathered across
all batches with numpy and decompressed in one call (a concatenation of ZSTD frames is one ZSTD input), so
a file of 100,000 flushes decodes in a fraction of a second. A closed file's few large batches go through
here too (`_decode.decode` says when): one array per column is what lossview and read_pandas use, where
Arrow's 20 chunks of a 10M-event file cost them a concatenated copy. Used only for the exact v1 columns with
ZSTD or uncompressed bodies; anything else goes through Arrow's reader (`_decode`). The checks are those of
spec/FORMAT.md §1.7; every failure is a LossFormatError naming the file and the batch's offset.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import numpy as np
import pyarrow as pa

from lossfmt import _framing as fr
from lossfmt import schema as s
from lossfmt._arrow import to_buffer, to_memoryview
from lossfmt._errors import corrupt

__all__ = ["MIN_BATCHES", "applicable", "decode", "null_dictionary"]

#: Below this many batches Arrow's reader is as fast.
MIN_BATCHES = 32
_ZSTD = 1
_V1_TYPES = [f.type for f in s.FIELDS]
#: Per v1 column: numpy dtype of its values buffer (buffer 2*i+1; buffer 2*i is its validity).
_DTYPES = (np.int64, np.int32, np.float64, np.int64, np.int64, np.int64, np.int8)
_EPOCH = s.COLUMNS.index(s.EPOCH)
_ZSTD_CODEC: pa.Codec | None = None
#: Files of at least this many rows decode their columns on several threads.
_PARALLEL_ROWS = 1 << 20
_THREADS = min(os.cpu_count() or 1, 8)


class _Corrupt(Exception):
    def __init__(self, index: int, what: str, message: fr.Message | None = None) -> None:
        super().__init__(what)
        self.index, self.what, self.message = index, what, message


def _codec() -> pa.Codec:
    global _ZSTD_CODEC
    if _ZSTD_CODEC is None:
        _ZSTD_CODEC = pa.Codec("zstd")
    return _ZSTD_CODEC


def applicable(schema: pa.Schema, messages: Sequence[fr.Message]) -> bool:
    """The file has exactly the v1 columns, in order, and only ZSTD or uncompressed bodies."""
    if [f.name for f in schema] != list(s.COLUMNS) or [f.type for f in schema] != _V1_TYPES:
        return False
    return all(m.codec in (-1, _ZSTD) for m in messages)


def null_dictionary(data: bytes, messages: Sequence[fr.Message]) -> fr.Message | None:
    """The first dictionary message of `messages` with a null value (§1.1 forbids them; Arrow's reader takes
    them), from its field node's null count: nothing is decoded, so unused dictionaries are checked too."""
    dicts = [m for m in messages if m.kind == fr.DICTIONARY and m.n_nodes and m.nodes_at >= 0]
    nulls = _structs(np.frombuffer(data, np.uint8), [m.nodes_at for m in dicts], 1)[:, 0, 1]
    return next((m for m, k in zip(dicts, nulls.tolist(), strict=True) if k), None)


def _gather(u8: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The bytes u8[starts[i] : starts[i] + lengths[i]] of every i, concatenated."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, np.uint8)
    if total > 512 * len(starts):  # few large pieces: copy slices rather than index every byte
        return np.concatenate([u8[a : a + n] for a, n in zip(starts.tolist(), lengths.tolist(), strict=True)])
    out_starts = np.cumsum(lengths) - lengths
    return u8[np.repeat(starts - out_starts, lengths) + np.arange(total)]


def _pieces(
    u8: np.ndarray, starts: np.ndarray, lengths: np.ndarray, compressed: np.ndarray
) -> tuple[Any, Any]:
    """(bytes, offsets) of the decompressed buffers at `starts`/`lengths` (compressed[i]: an IPC compressed
    buffer, an 8-byte length prefix then ZSTD output, or -1 then raw bytes)."""
    framed, prefix, usize = _sizes(u8, starts, lengths, compressed)
    zstd = framed & (prefix >= 0)
    payload = starts + 8 * framed
    sizes = lengths - 8 * framed
    offsets = np.concatenate([[0], np.cumsum(usize)])
    if not zstd.any():
        return _gather(u8, payload, sizes), offsets
    if zstd[sizes > 0].all():
        frames = _gather(u8, payload, sizes)
        try:
            out = _codec().decompress(to_buffer(frames), decompressed_size=int(offsets[-1]))
        except (pa.ArrowException, ValueError, OSError):
            pass  # find which buffer: decompressed one by one below
        else:
            return np.frombuffer(to_memoryview(out), np.uint8), offsets
    parts = []
    for i in range(len(starts)):
        piece = u8[payload[i] : payload[i] + sizes[i]]
        if zstd[i]:
            try:
                piece = np.frombuffer(
                    to_memoryview(_codec().decompress(to_buffer(piece), int(prefix[i]))), np.uint8
                )
            except (pa.ArrowException, ValueError, OSError) as exc:
                raise _Corrupt(i, f"a buffer does not decompress ({exc})") from None
        parts.append(piece)
    return np.concatenate(parts) if parts else np.zeros(0, np.uint8), offsets


def _sizes(
    u8: np.ndarray, starts: np.ndarray, lengths: np.ndarray, compressed: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(framed, prefix, decompressed size) of the buffers at `starts`/`lengths`, from their prefixes alone."""
    framed = compressed & (lengths > 0)
    if np.any(lengths[framed] < 8):
        raise _Corrupt(int(np.argmax(framed & (lengths < 8))), "a compressed buffer shorter than its prefix")
    prefix = np.full(len(starts), -1, np.int64)
    if framed.any():
        prefix[framed] = u8[starts[framed][:, None] + np.arange(8)].view("<i8").ravel()
    if np.any(prefix < -1):
        raise _Corrupt(int(np.argmax(prefix < -1)), "a negative uncompressed buffer length")
    return framed, prefix, np.where(framed & (prefix >= 0), prefix, lengths - 8 * framed)


def _fixed(blob: np.ndarray, offsets: np.ndarray, need: np.ndarray) -> np.ndarray:
    """From each piece, its first `need` bytes, concatenated (a piece may be padded)."""
    have = np.diff(offsets)
    if np.any(have < need):
        raise _Corrupt(int(np.argmax(have < need)), "a buffer is shorter than its column needs")
    if np.array_equal(have, need):
        return blob
    return _gather(blob, offsets[:-1], need)


def _structs(u8: np.ndarray, positions: list[int], n: int) -> np.ndarray:
    """The n (int64, int64) structs at each position, as an array of shape (len(positions), n, 2)."""
    at = np.array(positions, np.int64)
    if not n or not len(at):
        return np.zeros((len(at), n, 2), np.int64)
    if not np.any(at % 8):  # flatbuffers align these structs to 8 bytes, and messages are 8-aligned
        words = u8[: len(u8) // 8 * 8].view("<i8")
        aligned: np.ndarray = words[at[:, None] // 8 + np.arange(2 * n)].reshape(len(at), n, 2)
        return aligned
    raw: np.ndarray = u8[at[:, None] + np.arange(16 * n)]
    return raw.view("<i8").reshape(len(at), n, 2)


class _Batches:
    """The buffers of one kind of message (record batches, or dictionary batches), as arrays."""

    def __init__(self, u8: np.ndarray, messages: list[fr.Message], n_buffers: int, n_nodes: int) -> None:
        self.u8 = u8
        self.rows = np.array([m.rows for m in messages], np.int64)
        if any(m.n_nodes != n_nodes or m.n_buffers != n_buffers for m in messages):
            bad = next(i for i, m in enumerate(messages) if m.n_nodes != n_nodes or m.n_buffers != n_buffers)
            raise _Corrupt(bad, "not the v1 columns")
        nodes = _structs(u8, [m.nodes_at for m in messages], n_nodes)
        buffers = _structs(u8, [m.buffers_at for m in messages], n_buffers)
        self.nodes = nodes
        body = np.array([m.body for m in messages], np.int64)
        body_length = np.array([m.end - m.body for m in messages], np.int64)
        off, length = buffers[:, :, 0], buffers[:, :, 1]
        bad = np.any((off < 0) | (length < 0) | (off + length > body_length[:, None]), axis=1)
        if bad.any():
            raise _Corrupt(int(np.argmax(bad)), "a buffer lies outside the message body")
        wrong = np.any(nodes[:, :, 0] != self.rows[:, None], axis=1) | (self.rows < 0)
        if wrong.any():
            raise _Corrupt(int(np.argmax(wrong)), "a column's length differs from the batch's")
        self.starts = body[:, None] + off
        self.lengths = length
        self.compressed = np.array([m.codec == _ZSTD for m in messages], bool)

    def sizes(self, index: int) -> np.ndarray:
        """The decompressed length of buffer `index` of every message, read from the prefixes only."""
        return _sizes(self.u8, self.starts[:, index], self.lengths[:, index], self.compressed)[2]

    def buffer(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(bytes, offsets per message) of buffer `index` of every message, decompressed."""
        return _pieces(self.u8, self.starts[:, index], self.lengths[:, index], self.compressed)


def _strings(batches: _Batches) -> pa.Array[Any]:
    """The values of every dictionary message, in order, as one string array (nulls were refused before)."""
    n = batches.rows
    off_blob, off_offsets = batches.buffer(1)
    offsets = _fixed(off_blob, off_offsets, 4 * (n + 1) * (n > 0)).view("<i4").astype(np.int64)
    data, data_offsets = batches.buffer(2)
    firsts = np.cumsum(n + 1) - (n + 1)
    has = n > 0
    if np.any(offsets[firsts[has]] != 0):
        raise _Corrupt(int(np.argmax(has)), "dictionary offsets do not start at 0")
    lasts = offsets[(firsts + n)[has]]
    used = np.zeros(len(n), np.int64)
    used[has] = lasts
    data = _fixed(data, data_offsets, used)
    base = np.cumsum(used) - used
    keep = np.ones(len(offsets), bool)
    keep[(firsts + n)[has]] = False  # each message's last offset is the next one's first
    global_offsets = np.concatenate([(offsets + np.repeat(base, n + 1 - ~has))[keep], [used.sum()]])
    if np.any(np.diff(global_offsets) < 0) or global_offsets[-1] > 2**31 - 1:
        raise _Corrupt(-1, "dictionary offsets decrease")
    array = pa.Array.from_buffers(
        pa.string(),
        len(global_offsets) - 1,
        [None, to_buffer(global_offsets.astype(np.int32)), to_buffer(data)],
    )
    try:
        array.validate(full=True)
    except pa.ArrowInvalid as exc:
        raise _Corrupt(-1, f"a dictionary value is not UTF-8 ({exc})") from None
    return array


def _effective(
    kinds: np.ndarray, ids: np.ndarray, deltas: np.ndarray, counts: np.ndarray, dict_id: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per record batch: (base, size) of dictionary `dict_id` in effect there, as positions in the
    concatenation of that id's dictionary messages (a full message starts a new dictionary, deltas extend
    it). The arrays describe every message of the file in order."""
    mine = np.flatnonzero((kinds == fr.DICTIONARY) & (ids == dict_id))
    batches = np.flatnonzero(kinds == fr.RECORD_BATCH)
    if not len(mine):
        return np.zeros(len(batches), np.int64), np.zeros(len(batches), np.int64)
    rows = counts[mine]
    through = np.cumsum(rows)
    before = through - rows
    full = ~deltas[mine]
    gen = np.maximum.accumulate(np.where(full, np.arange(len(mine)), -1))
    base_k = np.where(gen >= 0, before[np.maximum(gen, 0)], 0)
    size_k = through - base_k
    last = np.searchsorted(mine, batches) - 1  # the last dictionary message of this id before each batch
    has = last >= 0
    base = np.where(has, base_k[np.maximum(last, 0)], 0)
    size = np.where(has, size_k[np.maximum(last, 0)], 0)
    return base, size


def _check_indices(local: np.ndarray, rows: np.ndarray, sizes: np.ndarray) -> None:
    """Every index is >= 0 and below the size of the dictionary in effect at its batch."""
    if not len(local):
        return
    if local.min() >= 0 and local.max() < sizes.min(initial=np.iinfo(np.int64).max, where=rows > 0):
        return  # the common case: two passes
    starts = (np.cumsum(rows) - rows)[rows > 0]
    high = np.maximum.reduceat(local, starts) >= sizes[rows > 0]
    low = np.minimum.reduceat(local, starts) < 0
    bad = np.flatnonzero(rows > 0)[high | low]
    if len(bad):
        raise _Corrupt(int(bad[0]), "a dictionary index out of range")


def _dictionary_column(
    u8: np.ndarray,
    messages: Sequence[fr.Message],
    table: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    dict_id: int,
    local: np.ndarray,
    rows: np.ndarray,
    out: pa.DictionaryType[Any, Any, Any],
) -> pa.Array[Any]:
    """A dictionary column: indices checked against the dictionary in effect at each batch, then mapped into
    one dictionary of unique values (replacements may repeat values)."""
    kinds, ids, deltas, counts = table
    mine = [messages[i] for i in np.flatnonzero((kinds == fr.DICTIONARY) & (ids == dict_id)).tolist()]
    values = _strings(_Batches(u8, mine, 3, 1)) if mine else pa.array([], pa.string())
    bases, sizes = _effective(kinds, ids, deltas, counts, dict_id)
    _check_indices(local, rows, sizes)
    unique: dict[str | None, int] = {}
    mapping = np.array([unique.setdefault(v, len(unique)) for v in values.to_pylist()], np.int64)
    identity = len(unique) == len(mapping) and not bases.any()
    indices = local if identity else mapping[np.repeat(bases, rows) + local]
    dictionary = values if identity else pa.array(list(unique), pa.string())
    index_type = out.index_type
    numpy_type = np.int32 if index_type == pa.int32() else np.int8
    return pa.DictionaryArray.from_arrays(
        pa.Array.from_buffers(
            index_type, len(indices), [None, to_buffer(indices.astype(numpy_type, copy=False))]
        ),
        dictionary,
    )


def _decode(data: bytes, layout: fr.Layout, fields: Sequence[int] | None) -> pa.RecordBatch:
    u8 = np.frombuffer(data, np.uint8)
    batch_msgs = [m for m in layout.messages if m.kind == fr.RECORD_BATCH]
    batches = _Batches(u8, batch_msgs, 2 * len(s.FIELDS), len(s.FIELDS))
    rows = batches.rows
    n = int(rows.sum())
    nulls = batches.nodes[:, :, 1]
    non_nullable = np.ones(len(s.FIELDS), bool)
    non_nullable[_EPOCH] = False
    bad = np.any(nulls[:, non_nullable] != 0, axis=1) | (nulls[:, _EPOCH] > rows) | (nulls[:, _EPOCH] < 0)
    if bad.any():
        raise _Corrupt(int(np.argmax(bad)), "nulls in a non-nullable column")
    wanted = range(len(s.FIELDS)) if fields is None else sorted(fields)
    msgs = layout.messages
    table = (
        np.array([m.kind for m in msgs], np.int8),
        np.array([m.dict_id for m in msgs], np.int64),
        np.array([m.is_delta for m in msgs], bool),
        np.array([m.rows for m in msgs], np.int64),
    )
    # Every dictionary message, whichever columns are wanted (§1.7): selected through the array, not a loop.
    bad_dictionary = null_dictionary(data, [msgs[i] for i in np.flatnonzero(table[0] == fr.DICTIONARY)])
    if bad_dictionary is not None:
        raise _Corrupt(-1, "a null dictionary value", bad_dictionary)

    def column(i: int) -> pa.Array[Any]:
        field = s.FIELDS[i]
        dtype = np.dtype(_DTYPES[i])
        if i == _EPOCH and n and bool(np.all(nulls[:, _EPOCH] == rows)):
            return _all_null(batches, rows)
        blob, offsets = batches.buffer(2 * i + 1)
        values = _fixed(blob, offsets, rows * dtype.itemsize).view(dtype)
        if pa.types.is_dictionary(field.type):
            dict_id = layout.dict_ids.get(field.name, -1)
            return _dictionary_column(u8, layout.messages, table, dict_id, values, rows, field.type)
        if i == _EPOCH:
            return _with_nulls(batches, values, rows, nulls[:, _EPOCH])
        return pa.Array.from_buffers(field.type, n, [None, to_buffer(values)])

    # Decompression and numpy's copies release the GIL: large files decode their columns in parallel.
    if n >= _PARALLEL_ROWS and _THREADS > 1:
        with ThreadPoolExecutor(min(_THREADS, len(wanted)), thread_name_prefix="lossfmt-decode") as pool:
            arrays = list(pool.map(column, wanted))
    else:
        arrays = [column(i) for i in wanted]
    # The file's own fields (its nullable flags too: §2, not relied on), as Arrow's reader gives them.
    out_fields = [layout.schema.field(i) for i in wanted]
    # pyarrow-stubs type `metadata` as an invariant dict[bytes | str, bytes | str], which Schema.metadata's
    # dict[bytes, bytes] is not (pa.schema accepts any mapping of bytes or str).
    metadata = cast("dict[bytes | str, bytes | str] | None", layout.schema.metadata)
    schema = pa.schema(out_fields, metadata=metadata)
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _all_null(batches: _Batches, rows: np.ndarray) -> pa.Array[Any]:
    """The epoch column of a run that logs no epochs: every batch all null. The values under nulls mean
    nothing, so their buffers are checked long enough but not decompressed (as for a column not asked for:
    checksums cover their bytes); fresh zeros stand in, which the OS maps lazily."""
    n = int(rows.sum())
    short = batches.sizes(2 * _EPOCH + 1) < 8 * rows
    if short.any():
        raise _Corrupt(int(np.argmax(short)), "a buffer is shorter than its column needs")
    blob, offsets = batches.buffer(2 * _EPOCH)
    short = np.diff(offsets) * 8 < rows
    if short.any():
        raise _Corrupt(int(np.argmax(short)), "a validity bitmap is shorter than its column")
    if blob.any():  # (padding bits may be set; rows' bits may not)
        bits = np.unpackbits(blob, bitorder="little")
        starts = (8 * offsets[:-1]).tolist()
        if any(bits[a : a + k].any() for a, k in zip(starts, rows.tolist(), strict=True)):
            raise _Corrupt(-1, "a null count differs from its validity bitmap")
    validity = to_buffer(np.zeros((n + 7) // 8, np.uint8))
    return pa.Array.from_buffers(pa.int64(), n, [validity, to_buffer(np.zeros(n, np.int64))], null_count=n)


def _with_nulls(batches: _Batches, values: np.ndarray, rows: np.ndarray, nulls: np.ndarray) -> pa.Array[Any]:
    """The epoch column: values with the validity bitmaps of the batches that have nulls."""
    n = len(values)
    if not nulls.any():
        return pa.Array.from_buffers(pa.int64(), n, [None, to_buffer(values)])
    blob, offsets = batches.buffer(2 * _EPOCH)
    sel = nulls > 0
    have = np.diff(offsets)
    short = sel & (have * 8 < rows)
    if short.any():
        raise _Corrupt(int(np.argmax(short)), "a validity bitmap is shorter than its column")
    bits = np.unpackbits(blob, bitorder="little")
    row_start = np.cumsum(rows) - rows
    sel_rows = rows[sel]
    rel = np.arange(int(sel_rows.sum())) - np.repeat(np.cumsum(sel_rows) - sel_rows, sel_rows)
    valid = np.ones(n, bool)
    valid[np.repeat(row_start[sel], sel_rows) + rel] = bits[np.repeat(8 * offsets[:-1][sel], sel_rows) + rel]
    if int(n - valid.sum()) != int(nulls.sum()):
        raise _Corrupt(-1, "a null count differs from its validity bitmap")
    validity = to_buffer(np.packbits(valid, bitorder="little"))
    return pa.Array.from_buffers(pa.int64(), n, [validity, to_buffer(values)], null_count=int(nulls.sum()))


def decode(
    data: bytes, layout: fr.Layout, name: str, fields: Sequence[int] | None, offsets: Sequence[int]
) -> list[pa.RecordBatch]:
    """The record batches of `layout` as one batch (only the columns at `fields`, if given); `offsets` are
    the batches' offsets in the file, for error messages."""
    try:
        return [_decode(data, layout, fields)]
    except _Corrupt as exc:
        where = offsets[exc.index] if 0 <= exc.index < len(offsets) else (offsets[0] if offsets else 8)
        if exc.message is not None and offsets:  # data[i] is at offset i + offsets[0] - (first batch's start)
            first = next(m for m in layout.messages if m.kind == fr.RECORD_BATCH)
            where = exc.message.start + offsets[0] - first.start
        raise corrupt(name, where, exc.what) from None
