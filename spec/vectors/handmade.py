"""The conformance vectors that no lossfmt writer makes on purpose, built from spec/FORMAT.md with pyarrow.

Each is deterministic (fixed metadata, fixed wall times); `generate.py` writes them with their JSON.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import google_crc32c
import pyarrow as pa

MAGIC = b"ARROW1\x00\x00"
EOS = b"\xff\xff\xff\xff\x00\x00\x00\x00"
T0_US = 1_700_000_000_000_000
PLACEHOLDER = {"lossfmt.crc32c": "00000000"}

DESCRIPTIONS = {
    "closed": "a closed file (real writer): tags, both reductions, epochs and nulls, NaN and ±inf, a rewind",
    "live": "a live file: a writer killed after several flushes, each ending on a message boundary",
    "torn": "`live` cut inside its last record batch: reads as `live` minus that batch",
    "magic_tail": "a live file cut just after a new tag's bytes `ARROW1`: a torn tail, not a closed file",
    "restarting": "steps restart each epoch (lr logged without one) and one epoch rewinds: run-wide steps",
    "resumed": "killed mid-run (torn tail), resumed by a new writer (steps rewind), then closed",
    "resumed_killed": "killed, resumed by a second writer (a second stream, full dictionaries), killed again",
    "delta": "a live file whose new tags arrive as delta dictionaries (isDelta = true)",
    "lz4": "a closed file compressed with LZ4_FRAME (readers MUST support it)",
    "uncompressed": "a live file without body compression",
    "per_buffer_uncompressed": "ZSTD bodies whose buffers are stored raw (length prefix -1)",
    "extra_column": "a live file with an extra nullable column `rank` first: readers locate columns by name",
    "empty_closed": "a closed file with no events (schema, EOS, footer)",
    "header_only": "a live file of magic and schema only: no events, end = the schema's end",
    "eos_no_footer": "a stream ending with EOS but no footer: every event, not closed, end = EOS offset",
    "minimal_metadata": "only lossfmt.version in the metadata (run name falls back to the file name)",
    "undecodable": "no checksums; the 2nd batch is complete but its body does not decompress: an error",
    "checksummed": "a live file with checksums; `checksums` lists each batch's span and CRC-32C (spec §1.6)",
    "checksum_mismatch": "`checksummed` with one bit of the 2nd batch's body flipped: an error at that batch",
    "length_grown": "`checksummed`, its 2nd batch's metadata length past the end: damage, not a torn tail",
    "null_dictionary": "the tag dictionary holds an unused null (checksums intact): an error at that message",
}


class Made(NamedTuple):
    data: bytes
    rows: list[list[Any]]
    run: str | None
    run_id: str | None
    end: int | None
    closed: bool | None
    error: dict[str, Any] | None
    extra: dict[str, Any] | None


FIELDS = [
    pa.field("step", pa.int64(), nullable=False),
    pa.field("tag", pa.dictionary(pa.int32(), pa.string()), nullable=False),
    pa.field("value", pa.float64(), nullable=False),
    pa.field("count", pa.int64(), nullable=False),
    pa.field("epoch", pa.int64(), nullable=True),
    pa.field("wall_time", pa.timestamp("us", tz="UTC"), nullable=False),
    pa.field("reduction", pa.dictionary(pa.int8(), pa.string()), nullable=False),
]
EXTRA = pa.field("rank", pa.int32(), nullable=True)

# (step, tag, value, count, epoch, reduction) per event; one list per flush.
FLUSHES: list[list[tuple[Any, ...]]] = [
    [(0, "loss", 2.0, 4, 0, "mean"), (0, "acc", 0.25, 4, 0, "mean")],
    [(1, "loss", 1.5, 4, 0, "mean"), (1, "grad/l1", 0.125, 1, None, "sum")],
    [(2, "loss", math.nan, 4, 1, "mean"), (2, "grad/l2", -0.0, 1, None, "sum")],
    [(3, "loss", 1.0, 4, 1, "mean"), (3, "acc", 0.5, 4, 1, "mean")],
]


def _metadata(run: str, checksums: bool, minimal: bool = False) -> dict[str, str]:
    if minimal:
        return {"lossfmt.version": "1"}
    metadata = {
        "lossfmt.version": "1",
        "lossfmt.run": run,
        "lossfmt.run_id": f"{abs(hash_name(run)):032x}"[:32],
        "lossfmt.created": "2026-12-01T00:00:00.000000+00:00",
        "lossfmt.host": "vectors",
        "lossfmt.pid": "1",
        "lossfmt.meta": '{"lr": 0.01, "seed": 7}',
    }
    if checksums:
        metadata["lossfmt.checksum"] = "crc32c"
        metadata["lossfmt.schema_crc32c"] = "00000000"
    return metadata


def hash_name(run: str) -> int:
    """A deterministic 128-bit id from the run name (not Python's salted hash)."""
    crc = 0
    out = 0
    for i in range(4):
        crc = google_crc32c.extend(crc, f"{run}:{i}".encode())
        out = (out << 32) | crc
    return out


def _tables(flushes: list[list[tuple[Any, ...]]], fields: list[pa.Field]) -> list[pa.RecordBatch]:
    batches, tick, tags = [], 0, []
    for flush in flushes:
        for event in flush:
            if event[1] not in tags:
                tags.append(event[1])
        n = len(flush)
        columns = {
            "step": pa.array([e[0] for e in flush], pa.int64()),
            "tag": pa.DictionaryArray.from_arrays(
                pa.array([tags.index(e[1]) for e in flush], pa.int32()), pa.array(list(tags), pa.string())
            ),
            "value": pa.array([float(e[2]) for e in flush], pa.float64()),
            "count": pa.array([e[3] for e in flush], pa.int64()),
            "epoch": pa.array([e[4] for e in flush], pa.int64()),
            "wall_time": pa.array(
                [T0_US + 250_000 * (tick + i) for i in range(n)], pa.timestamp("us", tz="UTC")
            ),
            "reduction": pa.DictionaryArray.from_arrays(
                pa.array([("mean", "sum").index(e[5]) for e in flush], pa.int8()), pa.array(["mean", "sum"])
            ),
            "rank": pa.array([None] * n, pa.int32()),
        }
        tick += n
        batches.append(pa.record_batch([columns[f.name] for f in fields], schema=pa.schema(fields)))
    return batches


def rows(flushes: list[list[tuple[Any, ...]]]) -> list[list[Any]]:
    out, tick = [], 0
    for flush in flushes:
        for step, tag, value, count, epoch, reduction in flush:
            v = float(value)
            js: Any = (
                "NaN"
                if math.isnan(v)
                else ("Infinity" if v == math.inf else ("-Infinity" if v == -math.inf else v))
            )
            out.append([step, tag, js, count, epoch, T0_US + 250_000 * tick, reduction])
            tick += 1
    return out


def _stream(
    schema: pa.Schema,
    batches: list[pa.RecordBatch],
    *,
    compression: str | None,
    deltas: bool,
    checksums: bool,
) -> bytes:
    from lossfmt import _framing  # the reference Sealer (spec §1.6)

    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression=compression, emit_dictionary_deltas=deltas)
    with pa.ipc.new_stream(sink, schema, options=options) as w:
        for b in batches:
            w.write_batch(b, custom_metadata=PLACEHOLDER if checksums else None)
    data = MAGIC + sink.getvalue().to_pybytes()
    return _framing.Sealer().seal(data) if checksums else data


def _closed(schema: pa.Schema, batches: list[pa.RecordBatch], compression: str) -> bytes:
    from lossfmt import _framing

    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression=compression)
    table = pa.Table.from_batches(batches, schema=schema).unify_dictionaries().combine_chunks()
    with pa.ipc.new_file(sink, schema, options=options) as w:
        for b in table.to_batches():
            w.write_batch(b, custom_metadata=PLACEHOLDER)
    return _framing.Sealer().seal(sink.getvalue().to_pybytes())


def _layout(data: bytes) -> Any:
    from lossfmt import _framing

    return _framing.walk(data, "vector")


def _batch_messages(data: bytes) -> list[Any]:
    from lossfmt import _framing

    return [m for m in _layout(data).messages if m.kind == _framing.RECORD_BATCH]


def _made(
    data: bytes,
    rows_: list[list[Any]],
    run: str | None,
    *,
    error: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Made:
    if error is not None:
        return Made(data, [], run, None, None, None, error, extra)
    layout = _layout(data)
    run_id = dict(layout.schema.metadata or {}).get(b"lossfmt.run_id")
    return Made(data, rows_, run, run_id.decode() if run_id else None, layout.end, layout.closed, None, extra)


def _without_eos(data: bytes) -> bytes:
    assert data.endswith(EOS)
    return data[: -len(EOS)]


def _raw_buffers(schema: pa.Schema, batches: list[pa.RecordBatch]) -> bytes:
    """ZSTD bodies whose every buffer is stored raw (length prefix -1), as Arrow writers may do when
    compression would not shrink a buffer: a ZSTD stream with each buffer decompressed in place and the
    metadata's buffer offsets and body length patched (same metadata size), then sealed again."""
    import struct

    from lossfmt import _flatbuf, _framing

    data = _stream(schema, batches, compression="zstd", deltas=False, checksums=True)
    zstd = pa.Codec("zstd")
    layout = _layout(data)
    out = [data[: layout.schema_end]]
    for m in layout.messages:
        meta = bytearray(data[m.start : m.body])
        values: dict[str, tuple[int, int]] = {}
        _flatbuf.parse(bytes(meta), 8, len(meta), values)
        body = bytearray()
        for i in range(m.n_buffers):
            off, length = struct.unpack_from("<qq", data, m.buffers_at + 16 * i)
            piece = data[m.body + off : m.body + off + length]
            if length:
                size = int.from_bytes(piece[:8], "little", signed=True)
                raw = zstd.decompress(piece[8:], size, asbytes=True) if size >= 0 else piece[8:]
                piece = (-1).to_bytes(8, "little", signed=True) + raw
            struct.pack_into("<qq", meta, m.buffers_at - m.start + 16 * i, len(body), len(piece))
            body += piece + bytes(-len(piece) % 8)
        struct.pack_into("<q", meta, values["length"][0], len(body))
        out.append(bytes(meta) + bytes(body))
    out.append(data[layout.end :])
    return _framing.Sealer().seal(b"".join(out))


def build() -> dict[str, Made]:
    v1 = pa.schema(FIELDS)
    out: dict[str, Made] = {}

    def schema(run: str, fields: list[pa.Field] = FIELDS, **kw: Any) -> pa.Schema:
        return pa.schema(fields, metadata=_metadata(run, **kw))

    sch = schema("delta", checksums=True)
    data = _without_eos(
        _stream(sch, _tables(FLUSHES, FIELDS), compression="zstd", deltas=True, checksums=True)
    )
    out["delta"] = _made(data, rows(FLUSHES), "delta")

    sch = schema("lz4", checksums=True)
    out["lz4"] = _made(_closed(sch, _tables(FLUSHES, FIELDS), "lz4"), rows(FLUSHES), "lz4")

    sch = schema("uncompressed", checksums=True)
    data = _without_eos(
        _stream(sch, _tables(FLUSHES, FIELDS), compression=None, deltas=False, checksums=True)
    )
    out["uncompressed"] = _made(data, rows(FLUSHES), "uncompressed")

    sch = schema("per_buffer_uncompressed", checksums=True)
    data = _without_eos(_raw_buffers(sch, _tables(FLUSHES, FIELDS)))
    out["per_buffer_uncompressed"] = _made(data, rows(FLUSHES), "per_buffer_uncompressed")

    fields = [EXTRA, *FIELDS]
    sch = schema("extra_column", fields, checksums=True)
    data = _without_eos(
        _stream(sch, _tables(FLUSHES, fields), compression="zstd", deltas=False, checksums=True)
    )
    out["extra_column"] = _made(data, rows(FLUSHES), "extra_column")

    sch = schema("empty_closed", checksums=True)
    out["empty_closed"] = _made(_closed(sch, [], "zstd"), [], "empty_closed")

    sch = schema("header_only", checksums=True)
    out["header_only"] = _made(
        _without_eos(_stream(sch, [], compression="zstd", deltas=False, checksums=True)), [], "header_only"
    )

    sch = schema("eos_no_footer", checksums=True)
    data = _stream(sch, _tables(FLUSHES, FIELDS), compression="zstd", deltas=False, checksums=True)
    out["eos_no_footer"] = _made(data, rows(FLUSHES), "eos_no_footer")

    sch = schema("minimal", checksums=False, minimal=True)
    data = _without_eos(
        _stream(sch, _tables(FLUSHES, FIELDS), compression="zstd", deltas=False, checksums=False)
    )
    out["minimal_metadata"] = _made(data, rows(FLUSHES), None)

    sch = schema("undecodable", checksums=False)
    data = bytearray(
        _without_eos(
            _stream(sch, _tables(FLUSHES, FIELDS), compression="zstd", deltas=False, checksums=False)
        )
    )
    second = _batch_messages(bytes(data))[1]
    body = second.end - second.body
    data[second.body + 8 : second.end] = bytes(body - 8)  # complete, but its first buffer is no ZSTD frame
    out["undecodable"] = _made(
        bytes(data), [], "undecodable", error={"offset": second.start, "message": "does not decode"}
    )

    sch = schema("checksummed", checksums=True)
    data = _without_eos(
        _stream(sch, _tables(FLUSHES, FIELDS), compression="zstd", deltas=False, checksums=True)
    )
    layout = _layout(data)
    spans, start = [], layout.schema_end
    for m in _batch_messages(data):
        spans.append(
            {
                "offset": m.start,
                "span": [start, m.end],
                "crc32c": data[m.crc_at : m.crc_at + 8].decode(),
                "value_at": m.crc_at,
            }
        )
        start = m.end
    out["checksummed"] = _made(data, rows(FLUSHES), "checksummed", extra={"checksums": spans})

    second = _batch_messages(data)[1]
    damaged = bytearray(data)
    damaged[second.end - 12] ^= 0x10
    out["checksum_mismatch"] = _made(
        bytes(damaged), [], "checksummed", error={"offset": second.start, "message": "checksum"}
    )
    grown = bytearray(data)  # `checksummed`: its 2nd batch's length grown by 2^16, whole messages after it
    grown[second.start + 6] ^= 1
    assert second.start + 8 + int.from_bytes(grown[second.start + 4 : second.start + 8], "little") > len(data)
    out["length_grown"] = _made(
        bytes(grown), [], "checksummed", error={"offset": second.start, "message": "whole messages follow"}
    )

    sch = schema("null_dictionary", checksums=True)
    tables = _tables(FLUSHES, FIELDS)
    tag = tables[0].column(1)
    with_null = pa.DictionaryArray.from_arrays(
        tag.indices, pa.concat_arrays([tag.dictionary, pa.nulls(1, pa.string())])
    )
    tables[0] = tables[0].set_column(1, FIELDS[1], with_null)
    data = _without_eos(_stream(sch, tables, compression="zstd", deltas=False, checksums=True))
    first_dictionary = next(m for m in _layout(data).messages if m.kind != _batch_messages(data)[0].kind)
    out["null_dictionary"] = _made(
        data,
        [],
        "null_dictionary",
        error={"offset": first_dictionary.start, "message": "null dictionary value"},
    )
    del v1
    return out
