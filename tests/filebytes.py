"""Bytes of lossfmt files built with pyarrow alone, per spec/FORMAT.md, for reader and follower tests.

A schema from `schema.make_schema` promises checksums (spec §1.6): its batches are written with the
placeholder and sealed, as the writer does. `unverified(schema)` drops the promise (an older writer's file).
"""

from __future__ import annotations

import pyarrow as pa

from lossfmt import _framing, schema


def unverified(sch: pa.Schema) -> pa.Schema:
    """`sch` without the checksum keys: files written with it carry no checksums."""
    metadata = dict(sch.metadata or {})
    for key in (schema.KEY_CHECKSUM, schema.KEY_SCHEMA_CHECKSUM):
        metadata.pop(key.encode(), None)
    return sch.with_metadata(metadata)


def _sealed(sch: pa.Schema) -> bool:
    return schema.KEY_CHECKSUM.encode() in (sch.metadata or {})


def _write(writer: pa.ipc.RecordBatchStreamWriter, sch: pa.Schema, batch: pa.RecordBatch) -> None:
    if _sealed(sch):
        writer.write_batch(batch, custom_metadata=_framing.BATCH_METADATA)
    else:
        writer.write_batch(batch)


def live_bytes(sch: pa.Schema, batches: list[pa.RecordBatch], *, deltas: bool = False) -> bytes:
    """The bytes of a live (footerless) file as the writer makes them: magic, then a stream without EOS."""
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression="zstd", emit_dictionary_deltas=deltas)
    with pa.ipc.new_stream(sink, sch, options=options) as writer:
        for b in batches:
            _write(writer, sch, b)
    data = schema.MAGIC + sink.getvalue().to_pybytes()[: -len(schema.EOS)]
    return _framing.Sealer().seal(data)


def closed_bytes(sch: pa.Schema, batches: list[pa.RecordBatch]) -> bytes:
    """The bytes of a closed file: one Arrow IPC file with a footer, as compaction writes it."""
    sink = pa.BufferOutputStream()
    table = pa.Table.from_batches(batches, schema=sch).combine_chunks()
    with pa.ipc.new_file(sink, sch, options=pa.ipc.IpcWriteOptions(compression="zstd")) as writer:
        for b in table.to_batches():
            _write(writer, sch, b)
    return _framing.Sealer().seal(sink.getvalue().to_pybytes())


def _messages(data: bytes) -> list[tuple[int, int, str]]:
    """(start, end, type) of each message of a live file after the magic, the schema first."""
    r = pa.BufferReader(pa.py_buffer(data))
    r.seek(len(schema.MAGIC))
    found = []
    while True:
        start = r.tell()
        try:
            msg = pa.ipc.read_message(r)
        except (EOFError, OSError, pa.ArrowInvalid):
            return found
        found.append((start, r.tell(), msg.type))


def message_ends(data: bytes, kind: str | None = None) -> list[int]:
    """Offsets where the messages (of `kind`, if given) of a live file end; the schema's end comes first."""
    return [end for _, end, type_ in _messages(data) if kind is None or type_ == kind]


def message_starts(data: bytes, kind: str | None = None) -> list[int]:
    """Offsets where the messages (of `kind`, if given) of a live file start."""
    return [start for start, _, type_ in _messages(data) if kind is None or type_ == kind]


def batch_ends(data: bytes) -> list[int]:
    """Where each record batch message of a live file ends."""
    return message_ends(data, "record batch")
