"""Framing of Arrow IPC messages in lossfmt files: the one module that knows the bytes.

Contract used by the writer side (flusher, compaction) and the reader side (read, follow, resume):

- `BATCH_METADATA`: the custom metadata every record batch is written with (a placeholder checksum that
  `Sealer.seal` fills in).
- `Sealer().seal(chunk)`: given bytes an Arrow stream or file writer emitted (whole encapsulated messages,
  optionally preceded by the magic and schema, optionally followed by EOS and footer), returns the same
  bytes with each record batch's checksum filled in (spec/FORMAT.md §1.6). State (where the current span
  started) carries across calls, so one Sealer seals one stream written in many chunks.
- `iter_batches(path)`: every verified record batch of a file's content, decoded one at a time (bounded
  memory), with the schema first.

(Stub for the redesign: checksums are not computed yet; the reader side fills this in.)
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pyarrow as pa

from lossfmt import schema as s

__all__ = ["BATCH_METADATA", "Sealer", "iter_batches"]

#: Key of a record batch's checksum in its Message.custom_metadata; the value is 8 lowercase hex digits.
CHECKSUM_KEY = "lossfmt.crc32c"
#: What a writer passes as `write_batch(batch, custom_metadata=...)`; `Sealer.seal` replaces the zeros.
BATCH_METADATA = {CHECKSUM_KEY: "00000000"}


class Sealer:
    """Fills in the checksums of one stream's record batches as its bytes are written (see module doc)."""

    def seal(self, chunk: bytes) -> bytes:
        """`chunk` with each record batch message's checksum filled in."""
        return chunk


def iter_batches(
    path: str | os.PathLike[str], end: int | None = None
) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """The schema and an iterator over the record batches of the file's content (up to `end` if given)."""
    if end is None:  # stub: the scan finds where the content ends (a torn tail is dropped)
        from lossfmt import reader

        end = reader.scan(path).end
    with open(path, "rb") as f:
        data = f.read() if end is None else f.read(end)
    reader = pa.ipc.open_stream(pa.py_buffer(data)[len(s.MAGIC) :])
    return reader.schema, iter(reader)
