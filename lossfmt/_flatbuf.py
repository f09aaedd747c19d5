"""Bounds-checked parsing of the Arrow IPC flatbuffers lossfmt reads (Message, Schema, Footer).

Every offset is checked against the metadata's bounds, so damaged bytes raise `Bad` (turned by `_framing`
into a LossFormatError with the message's offset), never an IndexError, a wrapped negative index or a hang.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any, Literal, NamedTuple

import pyarrow as pa

CHECKSUM_KEY = b"lossfmt.crc32c"
SCHEMA_CHECKSUM_KEY = b"lossfmt.schema_crc32c"
# Message header types (Schema.fbs MessageHeader) and the one metadata version lossfmt writes (V5).
SCHEMA, DICTIONARY, RECORD_BATCH = 1, 2, 3
KINDS = {SCHEMA: "schema", DICTIONARY: "dictionary", RECORD_BATCH: "record batch"}
V5 = 4
_FLOATING_POINT = 3  # Schema.fbs Type
#: Codecs of BodyCompression.codec; readers support both and uncompressed bodies (§1.1).
CODECS: dict[int, Literal["lz4", "zstd"]] = {0: "lz4", 1: "zstd"}
#: A content message's metadata is a few hundred bytes; a length beyond this is damage, not a torn tail.
MAX_METADATA = 1 << 20
MAX_SCHEMA_METADATA = 1 << 28
#: Every encapsulated IPC message starts with this marker, then its int32 metadata length.
CONTINUATION = b"\xff\xff\xff\xff"

_u8 = struct.Struct("<B").unpack_from
_u16 = struct.Struct("<H").unpack_from
i32 = _i32 = struct.Struct("<i").unpack_from
_u32 = struct.Struct("<I").unpack_from
_i64 = struct.Struct("<q").unpack_from


def codec_available(name: Literal["lz4", "zstd"]) -> bool:
    """Whether this pyarrow has the codec (a reader that lacks one reports it by name, spec §1.1)."""
    return bool(pa.Codec.is_available(name))


class Bad(Exception):
    """Malformed bytes inside a complete message (turned into LossFormatError with the message's offset)."""


def field(b: bytes, lo: int, hi: int, table: int, index: int) -> int:
    """Absolute position of field `index` of the flatbuffer table at `table`, or 0 if absent."""
    if table < lo or table + 4 > hi:
        raise Bad("table outside the metadata")
    vtable = table - _i32(b, table)[0]
    if vtable < lo or vtable + 4 > hi:
        raise Bad("vtable outside the metadata")
    size = _u16(b, vtable)[0]
    slot = 4 + 2 * index
    if slot + 2 > size:
        return 0
    if vtable + slot + 2 > hi:
        raise Bad("vtable outside the metadata")
    off = _u16(b, vtable + slot)[0]
    if off and table + off >= hi:
        raise Bad("field outside the metadata")
    return table + off if off else 0


def ref(b: bytes, lo: int, hi: int, pos: int) -> int:
    """Follow the uoffset at `pos` (a table, vector or string)."""
    if pos + 4 > hi:
        raise Bad("offset outside the metadata")
    target: int = pos + _u32(b, pos)[0]
    if target + 4 > hi:
        raise Bad("offset outside the metadata")
    return target


def vector(b: bytes, lo: int, hi: int, pos: int, item: int) -> tuple[int, int]:
    """(start of elements, count) of the vector referenced at `pos`, each element `item` bytes."""
    vec = ref(b, lo, hi, pos)
    n = _u32(b, vec)[0]
    if vec + 4 + n * item > hi:
        raise Bad("vector outside the metadata")
    return vec + 4, n


def footer_blocks(b: bytes, lo: int, hi: int) -> dict[int, list[tuple[int, int, int]]]:
    """(offset, metadata length, body length) of each Block of the Footer table in b[lo:hi], by kind
    (DICTIONARY, RECORD_BATCH)."""
    root = ref(b, lo, hi, lo)
    blocks: dict[int, list[tuple[int, int, int]]] = {}
    for index, kind in ((2, DICTIONARY), (3, RECORD_BATCH)):
        pos = field(b, lo, hi, root, index)
        items: list[tuple[int, int, int]] = []
        if pos:
            first, n = vector(b, lo, hi, pos, 24)
            for i in range(n):
                offset, meta_len, _, body = struct.unpack_from("<qiiq", b, first + 24 * i)
                items.append((offset, meta_len, body))
        blocks[kind] = items
    return blocks


def footer_schema_ids(b: bytes, lo: int, hi: int) -> tuple[int, dict[str, int], list[bytes]]:
    """The Footer's metadata version in b[lo:hi] (V5 is 4), its schema's dictionary id per field (pyarrow
    maps dictionaries by them; its Schema equality ignores ids) and metadata keys, repeats kept."""
    root = ref(b, lo, hi, lo)
    version_pos, schema_pos = field(b, lo, hi, root, 0), field(b, lo, hi, root, 1)
    version = _u16(b, version_pos)[0] if version_pos else 0
    schema = ref(b, lo, hi, schema_pos) if schema_pos else 0
    keys = [key for key, _, _ in _keyvalues(b, lo, hi, field(b, lo, hi, schema, 2))] if schema else []
    return version, dict(_dictionary_ids(b, lo, hi, schema)) if schema else {}, keys


def _keyvalues(
    b: bytes, lo: int, hi: int, pos: int, *, reverse: bool = False
) -> Iterator[tuple[bytes, int, int]]:
    """(key, value start, value length) of each KeyValue in the vector referenced at `pos` (last first with
    `reverse`: lossfmt appends its checksum key, so a lookup of it stops at once)."""
    if not pos:
        return
    start, n = vector(b, lo, hi, pos, 4)
    for i in range(n - 1, -1, -1) if reverse else range(n):
        kv = ref(b, lo, hi, start + 4 * i)
        key_pos, value_pos = field(b, lo, hi, kv, 0), field(b, lo, hi, kv, 1)
        if not key_pos or not value_pos:
            continue
        k_start, k_len = vector(b, lo, hi, key_pos, 1)
        v_start, v_len = vector(b, lo, hi, value_pos, 1)
        yield b[k_start : k_start + k_len], v_start, v_len


class Parsed(NamedTuple):
    kind: int
    body_length: int
    dict_id: int
    is_delta: bool
    crc_at: int
    rows: int
    nodes_at: int
    n_nodes: int
    buffers_at: int
    n_buffers: int
    codec: int  # -1: uncompressed bodies; else a key of CODECS
    extra: tuple[Any, ...] = ()  # a schema's (field name, dictionary id) pairs


def check_spans(buffers: tuple[int, ...], body_length: int) -> None:
    """The buffers lie inside the body, and the body ends at the last one (padded to a multiple of 8)."""
    last = 0
    for i in range(0, len(buffers), 2):
        off, length = buffers[i], buffers[i + 1]
        if off < 0 or length < 0 or off + length > body_length:
            raise Bad("a buffer lies outside the message body")
        if off + length > last:
            last = off + length
    if body_length < 0 or body_length - last >= 64 or body_length % 8:
        raise Bad(f"body length {body_length} does not match its buffers (end {last})")


def _batch_header(
    b: bytes, lo: int, hi: int, batch: int, values: dict[str, tuple[int, int]], body_length: int
) -> tuple[int, int, int, int, int, int]:
    """(rows, nodes_at, n_nodes, buffers_at, n_buffers, codec) of a RecordBatch table, its buffers checked
    against the body; records its scalar regions in `values`."""
    rows_pos = field(b, lo, hi, batch, 0)
    rows = _i64(b, rows_pos)[0] if rows_pos else 0
    if rows_pos:
        values["rows"] = (rows_pos, 8)
    found: list[tuple[int, int]] = []
    for index, what in ((1, "nodes"), (2, "buffers")):
        pos = field(b, lo, hi, batch, index)
        if not pos:
            found.append((-1, 0))
            continue
        start, n = vector(b, lo, hi, pos, 16)
        found.append((start, n))
        values[what] = (start, 16 * n)
    buffers_at, n_buffers = found[1]
    check_spans(struct.unpack_from(f"<{2 * n_buffers}q", b, buffers_at) if n_buffers else (), body_length)
    codec = -1
    compression = field(b, lo, hi, batch, 3)
    if compression:
        table = ref(b, lo, hi, compression)
        codec_pos = field(b, lo, hi, table, 0)
        codec = _u8(b, codec_pos)[0] if codec_pos else 0
        if codec not in CODECS:
            raise Bad(f"unknown compression codec {codec}")
        if not codec_available(CODECS[codec]):
            raise Bad(f"compressed with {CODECS[codec].upper()}, which this pyarrow lacks")
    return rows, found[0][0], found[0][1], buffers_at, n_buffers, codec


def parse(b: bytes, start: int, hi: int, values: dict[str, tuple[int, int]] | None = None) -> Parsed:
    """The Message metadata in b[start:hi], bounds-checked. `values` collects the regions holding scalars
    (lengths, buffers, the checksum), which may differ between messages of one layout (see Templates).

    For a schema message `crc_at` is the offset of SCHEMA_CHECKSUM_KEY's value in the schema metadata.
    """
    lo = start
    values = {} if values is None else values
    root = ref(b, lo, hi, start)
    version_pos = field(b, lo, hi, root, 0)
    version = _u16(b, version_pos)[0] if version_pos else 0
    if version != V5:
        raise Bad(f"metadata version {version + 1}, not V5")
    kind_pos, header_pos = field(b, lo, hi, root, 1), field(b, lo, hi, root, 2)
    kind = _u8(b, kind_pos)[0] if kind_pos else 0
    if kind not in KINDS or not header_pos:
        raise Bad(f"message of type {kind}: not a schema, dictionary or record batch")
    header = ref(b, lo, hi, header_pos)
    length_pos = field(b, lo, hi, root, 3)
    body_length = _i64(b, length_pos)[0] if length_pos else 0
    if length_pos:
        values["length"] = (length_pos, 8)
    dict_id, is_delta, crc_at = -1, False, -1
    if kind == SCHEMA:
        if body_length:
            raise Bad("a schema message with a body")
        endian_pos = field(b, lo, hi, header, 0)
        if endian_pos and _u16(b, endian_pos)[0] != 0:
            raise Bad("big-endian data (lossfmt files are little-endian)")
        schema_kvs = _keyvalues(b, lo, hi, field(b, lo, hi, header, 2), reverse=True)  # the last one counts
        crc_at = next((at for key, at, n in schema_kvs if key == SCHEMA_CHECKSUM_KEY and n == 8), -1)
        return Parsed(kind, 0, -1, False, crc_at, 0, -1, 0, -1, 0, -1, _dictionary_ids(b, lo, hi, header))
    batch = header
    if kind == DICTIONARY:
        id_pos, delta_pos = field(b, lo, hi, header, 0), field(b, lo, hi, header, 2)
        dict_id = _i64(b, id_pos)[0] if id_pos else 0
        is_delta = bool(_u8(b, delta_pos)[0]) if delta_pos else False
        data_pos = field(b, lo, hi, header, 1)
        if not data_pos:
            raise Bad("dictionary message without data")
        batch = ref(b, lo, hi, data_pos)
    rows, nodes_at, n_nodes, buffers_at, n_buffers, codec = _batch_header(
        b, lo, hi, batch, values, body_length
    )
    for key, v_start, v_len in _keyvalues(b, lo, hi, field(b, lo, hi, root, 4)):
        if key == CHECKSUM_KEY:
            if v_len != 8:
                raise Bad("lossfmt.crc32c is not 8 hex digits")
            crc_at = v_start
            values["crc"] = (v_start, 8)
    return Parsed(
        kind, body_length, dict_id, is_delta, crc_at, rows, nodes_at, n_nodes, buffers_at, n_buffers, codec
    )


def _dictionary_ids(b: bytes, lo: int, hi: int, schema: int) -> tuple[Any, ...]:
    """(field name, dictionary id) of each top-level dictionary-encoded field of a Schema table; Bad for a
    float precision outside the enum (pyarrow reads it as a double: damage it would let through)."""
    fields_pos = field(b, lo, hi, schema, 1)
    if not fields_pos:
        return ()
    start, n = vector(b, lo, hi, fields_pos, 4)
    ids = []
    for i in range(n):
        table = ref(b, lo, hi, start + 4 * i)
        kind_pos, type_pos = field(b, lo, hi, table, 2), field(b, lo, hi, table, 3)
        if kind_pos and type_pos and _u8(b, kind_pos)[0] == _FLOATING_POINT:
            precision_pos = field(b, lo, hi, ref(b, lo, hi, type_pos), 0)
            if precision_pos and _u16(b, precision_pos)[0] > 2:  # HALF, SINGLE, DOUBLE
                raise Bad(f"float precision {_u16(b, precision_pos)[0]} of field {i}")
        name_pos, encoding_pos = field(b, lo, hi, table, 0), field(b, lo, hi, table, 4)
        if not name_pos or not encoding_pos:
            continue
        n_start, n_len = vector(b, lo, hi, name_pos, 1)
        encoding = ref(b, lo, hi, encoding_pos)
        id_pos = field(b, lo, hi, encoding, 0)
        ids.append(
            (b[n_start : n_start + n_len].decode("utf-8", "replace"), _i64(b, id_pos)[0] if id_pos else 0)
        )
    return tuple(ids)


class Message(NamedTuple):
    """One complete encapsulated message of a file."""

    start: int
    """Offset of its continuation marker."""
    end: int
    """Offset just after its body."""
    body: int
    """Offset of its body (the buffers' offsets are relative to it)."""
    kind: int
    """SCHEMA, DICTIONARY or RECORD_BATCH."""
    dict_id: int
    """The dictionary id of a dictionary message, else -1."""
    is_delta: bool
    """A delta dictionary (values appended to the id's dictionary)."""
    crc_at: int
    """Offset of the 8 checksum characters in the data, or -1 if the message carries none."""
    rows: int
    """The RecordBatch length (rows; for a dictionary message, its values)."""
    nodes_at: int
    """Offset of its FieldNode structs (int64 length, int64 null_count each), -1 if none."""
    n_nodes: int
    buffers_at: int
    """Offset of its Buffer structs (int64 offset relative to `body`, int64 length each), -1 if none."""
    n_buffers: int
    codec: int
    """-1 for uncompressed bodies, else a key of CODECS."""


class _Template(NamedTuple):
    """A parsed message's layout: its structural bytes (everything but its scalars) and where those are."""

    size: int  # the metadata length
    segments: tuple[tuple[int, int, bytes], ...]  # (start, end) offsets from the metadata start, the bytes
    parsed: Parsed
    length_at: int  # offsets from the metadata start, -1 if absent
    rows_at: int
    nodes_at: int
    buffers_at: int
    crc_at: int
    last_buffer_at: int  # offset of the last Buffer struct, -1 if none


class Templates:
    """Parses messages, reusing the layout of an earlier message whose structural bytes are identical.

    A writer emits thousands of messages of one layout that differ only in scalars (lengths, buffer
    offsets, the checksum). Identical structural bytes (vtables, offsets, strings) mean an identical
    flatbuffer tree, so only the scalars are read again: a few slice comparisons instead of a full parse.
    """

    def __init__(self, limit: int = 64) -> None:
        self._by_length: dict[int, list[_Template]] = {}
        self._last: _Template | None = None
        self._limit, self._count = limit, 0  # layouts kept in all; past the limit the cache starts over

    def message(self, b: bytes, pos: int, meta_len: int) -> Message:
        """The message whose 8-byte prefix is at `pos` (its metadata complete in `b`); Bad if malformed."""
        start = pos + 8
        t = self._last
        if t is None or t.size != meta_len or not _matches(t, b, start):
            t = self._find(b, start, meta_len)
            if t is None:
                values: dict[str, tuple[int, int]] = {}
                p = parse(b, start, start + meta_len, values)
                if p.kind != SCHEMA:
                    self._remember(b, start, start + meta_len, p, values)
                body = start + meta_len
                return Message(
                    pos, body + p.body_length, body, p.kind, p.dict_id, p.is_delta, p.crc_at, p.rows,
                    p.nodes_at, p.n_nodes, p.buffers_at, p.n_buffers, p.codec,
                )  # fmt: skip
            self._last = t
        p = t.parsed
        body_length = _i64(b, start + t.length_at)[0] if t.length_at >= 0 else 0
        # Cheap checks here (Arrow writers write buffers in order); every buffer's bounds are checked where
        # it is decoded (by Arrow, or by _columns).
        last = sum(_LAST(b, start + t.last_buffer_at)) if t.last_buffer_at >= 0 else 0
        if body_length % 8 or not 0 <= body_length - last < 64:
            raise Bad(f"body length {body_length} does not match its buffers (end {last})")
        body = start + meta_len
        return Message(
            pos, body + body_length, body, p.kind, p.dict_id, p.is_delta,
            start + t.crc_at if t.crc_at >= 0 else -1,
            _i64(b, start + t.rows_at)[0] if t.rows_at >= 0 else 0,
            start + t.nodes_at if t.nodes_at >= 0 else -1, p.n_nodes,
            start + t.buffers_at if t.buffers_at >= 0 else -1, p.n_buffers, p.codec,
        )  # fmt: skip

    def _find(self, b: bytes, start: int, meta_len: int) -> _Template | None:
        for t in self._by_length.get(meta_len, ()):
            if _matches(t, b, start):
                return t
        return None

    def _remember(self, b: bytes, start: int, hi: int, p: Parsed, values: dict[str, tuple[int, int]]) -> None:
        if self._count >= self._limit:
            self._by_length, self._count = {}, 0
        templates = self._by_length.setdefault(hi - start, [])
        self._count += 1
        segments, pos = [], start
        for v_start, v_len in sorted(values.values()):
            if v_start > pos:
                segments.append((pos - start, v_start - start, b[pos:v_start]))
            pos = max(pos, v_start + v_len)
        if hi > pos:
            segments.append((pos - start, hi - start, b[pos:hi]))
        at = {
            k: values[k][0] - start if k in values else -1
            for k in ("length", "rows", "nodes", "buffers", "crc")
        }
        last_buffer = at["buffers"] + 16 * (p.n_buffers - 1) if p.n_buffers else -1
        t = _Template(
            hi - start, tuple(segments), p,
            at["length"], at["rows"], at["nodes"], at["buffers"], at["crc"], last_buffer,
        )  # fmt: skip
        templates.append(t)
        self._last = t


def _matches(t: _Template, b: bytes, start: int) -> bool:
    for lo, hi, seg in t.segments:  # noqa: SIM110 (a loop: all() over a generator is slower on this hot path)
        if b[start + lo : start + hi] != seg:
            return False
    return True


_LAST = struct.Struct("<qq").unpack_from
