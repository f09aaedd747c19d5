"""Bytes of lossfmt files built with pyarrow alone, per spec/FORMAT.md, for reader and follower tests."""

from __future__ import annotations

import pyarrow as pa

from lossfmt import schema


def live_bytes(sch: pa.Schema, batches: list[pa.RecordBatch], *, deltas: bool = False) -> bytes:
    """The bytes of a live (footerless) file as the writer makes them: magic, then a stream without EOS."""
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression="zstd", emit_dictionary_deltas=deltas)
    with pa.ipc.new_stream(sink, sch, options=options) as writer:
        for b in batches:
            writer.write_batch(b)
    return schema.MAGIC + sink.getvalue().to_pybytes()[: -len(schema.EOS)]


def closed_bytes(sch: pa.Schema, batches: list[pa.RecordBatch]) -> bytes:
    """The bytes of a closed file: one Arrow IPC file with a footer, as compaction writes it."""
    sink = pa.BufferOutputStream()
    table = pa.Table.from_batches(batches, schema=sch).combine_chunks()
    with pa.ipc.new_file(sink, sch, options=pa.ipc.IpcWriteOptions(compression="zstd")) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def message_ends(data: bytes, kind: str | None = None) -> list[int]:
    """Offsets where the messages (of `kind`, if given) of a live file end; the schema's end comes first."""
    r = pa.BufferReader(pa.py_buffer(data))
    r.seek(len(schema.MAGIC))
    ends = []
    while True:
        try:
            msg = pa.ipc.read_message(r)
        except (EOFError, OSError, pa.ArrowInvalid):
            return ends
        if kind is None or msg.type == kind:
            ends.append(r.tell())


def batch_ends(data: bytes) -> list[int]:
    """Where each record batch message of a live file ends."""
    return message_ends(data, "record batch")
