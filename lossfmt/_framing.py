"""Framing of Arrow IPC messages in lossfmt files: the one module that knows the bytes (spec/FORMAT.md §1).

Contract used by the writer side (flusher, compaction, import) and the reader side (read, follow, resume):

- `BATCH_METADATA`: the custom metadata every record batch is written with (a placeholder checksum that
  `Sealer.seal` fills in).
- `Sealer().seal(chunk)`: given bytes an Arrow stream or file writer emitted (whole encapsulated messages,
  optionally preceded by the magic, optionally followed by EOS and footer), returns the same bytes with each
  record batch's checksum (and the schema's, §1.6) filled in. State (where the current span started)
  carries across calls, so one Sealer seals one stream written in many chunks. `SealingFile` wraps a binary
  file for `pa.ipc.new_file`/`new_stream`, whose writes are pieces of messages.
- `walk(data, name)`: the verified message layout of a file's bytes (torn tail vs corruption, §1.2).
- `iter_batches(path)`: every verified record batch of a file's content, a bounded window at a time.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from typing import BinaryIO, NamedTuple

import google_crc32c
import pyarrow as pa

from lossfmt import _flatbuf as fb
from lossfmt._errors import LossFormatError
from lossfmt._flatbuf import DICTIONARY, MAX_METADATA, RECORD_BATCH, SCHEMA, Message, i32

__all__ = [
    "BATCH_METADATA",
    "CHECKSUM_KEY",
    "DICTIONARY",
    "RECORD_BATCH",
    "SCHEMA_CHECKSUM_KEY",
    "Layout",
    "Message",
    "Sealer",
    "SealingFile",
    "iter_batches",
    "walk",
]

#: Key of a record batch's checksum in its Message.custom_metadata; the value is 8 lowercase hex digits.
CHECKSUM_KEY = "lossfmt.crc32c"
#: Key of the schema message's own checksum, in the schema's custom metadata (same 8-digit encoding).
SCHEMA_CHECKSUM_KEY = "lossfmt.schema_crc32c"
#: Schema metadata key promising that every record batch carries CHECKSUM_KEY; its one defined value.
KEY_CHECKSUM = "lossfmt.checksum"
CRC32C = "crc32c"
#: What a writer passes as `write_batch(batch, custom_metadata=...)`; `Sealer.seal` replaces the zeros.
BATCH_METADATA = {CHECKSUM_KEY: "00000000"}

MAGIC = b"ARROW1\x00\x00"
TRAILING_MAGIC = b"ARROW1"
EOS = b"\xff\xff\xff\xff\x00\x00\x00\x00"
CONTINUATION = b"\xff\xff\xff\xff"
PLACEHOLDER = b"00000000"


class Layout(NamedTuple):
    """The verified structure of a file's bytes (spec/FORMAT.md §1.2)."""

    schema: pa.Schema
    schema_end: int
    """Offset just after the schema message."""
    messages: list[Message]
    """The content messages after the schema, up to and including the last complete record batch."""
    end: int
    """End of the last complete record batch message (or of the schema message): the resume point."""
    closed: bool
    """The stream ends with EOS at `end` followed by a footer that agrees with it."""
    dict_ids: dict[str, int]
    """The dictionary id the schema message declares for each dictionary-encoded column."""


# --- checksums ------------------------------------------------------------------------------------------

_COPY_SPAN = 1 << 16  # spans shorter than this are hashed from slices (copies), longer ones through views


def _crc(data: bytes, buf: pa.Buffer, start: int, crc_at: int, end: int, crc: int = 0) -> bytes:
    """The CRC-32C, as 8 lowercase hex digits, of data[start:end] with the 8 bytes at crc_at read as '0'.
    (`buf` is `data` as an Arrow buffer: large spans are hashed through it without a copy.)"""
    if end - start < _COPY_SPAN:
        crc = google_crc32c.extend(crc, data[start:crc_at])
        crc = google_crc32c.extend(crc, PLACEHOLDER)
        crc = google_crc32c.extend(crc, data[crc_at + 8 : end])
    else:
        crc = google_crc32c.extend(crc, buf.slice(start, crc_at - start))
        crc = google_crc32c.extend(crc, PLACEHOLDER)
        crc = google_crc32c.extend(crc, buf.slice(crc_at + 8, end - crc_at - 8))
    return b"%08x" % crc


class Sealer:
    """Fills in the checksums of one stream's messages as its bytes are written (see the module doc)."""

    def __init__(self) -> None:
        self._crc = 0  # CRC-32C of the current span so far (dictionary messages since the last batch)
        self._started = False
        self._after_eos = False
        self._templates = fb.Templates()

    def seal(self, chunk: bytes) -> bytes:
        """`chunk` (whole messages) with each record batch's and the schema's checksum filled in."""
        out, used = self._seal(bytes(chunk))
        if used != len(chunk):
            raise ValueError(f"Sealer.seal: the chunk ends inside a message (byte {used} of {len(chunk)})")
        return out

    def _seal(self, data: bytes) -> tuple[bytes, int]:
        """Seal the complete messages at the start of `data`; return them and how many bytes they are."""
        out = bytearray(data)
        buf = pa.py_buffer(data)
        pos = 0
        if not data:
            return b"", 0
        if not self._started:
            if len(data) < len(MAGIC) and MAGIC.startswith(data):
                return b"", 0
            pos = len(MAGIC) if data.startswith(MAGIC) else 0
            self._started = True
        size = len(data)
        while pos < size and not self._after_eos:
            if size - pos < 8:
                break
            meta_len = i32(data, pos + 4)[0]
            if data[pos : pos + 4] != CONTINUATION or meta_len < 0:
                raise ValueError(f"Sealer: not an encapsulated IPC message at byte {pos}")
            if meta_len == 0:
                self._after_eos = True
                pos += 8
                break
            if pos + 8 + meta_len > size:
                break
            try:
                m = self._templates.message(data, pos, meta_len)
            except (fb.Bad, struct.error) as exc:
                raise ValueError(f"Sealer: unparsable message at byte {pos}: {exc}") from None
            kind, crc_at, end = m.kind, m.crc_at, m.end
            if end > size:
                break
            if kind == SCHEMA:
                if crc_at >= 0:
                    out[crc_at : crc_at + 8] = _crc(data, buf, pos, crc_at, end)
                self._crc = 0
            elif kind == DICTIONARY:
                self._crc = google_crc32c.extend(self._crc, buf.slice(pos, end - pos))
            else:
                if crc_at >= 0:
                    out[crc_at : crc_at + 8] = _crc(data, buf, pos, crc_at, end, self._crc)
                self._crc = 0
            pos = end
        if self._after_eos:
            pos = size  # the footer (and trailing magic) pass through unchanged
        return bytes(out[:pos]), pos


class SealingFile:
    """A write-only binary file for `pa.ipc.new_file`/`new_stream` that seals whole messages into `raw`.

    Arrow's writers emit each message in several small writes; this buffers until a message is complete,
    seals it and writes it to `raw`. Call `finish()` after the Arrow writer is closed.
    """

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.closed = False
        self._sealer = Sealer()
        self._pending = b""

    def write(self, data: bytes | memoryview) -> int:
        self._pending += bytes(data)
        if len(self._pending) >= 1 << 16 or self._sealer._after_eos:
            self._drain()
        return len(data)

    def _drain(self) -> None:
        sealed, used = self._sealer._seal(self._pending)
        self.raw.write(sealed)
        self._pending = self._pending[used:]

    def flush(self) -> None:
        self._drain()

    def close(self) -> None:
        self.closed = True

    def finish(self) -> None:
        """Write what remains; ValueError if the bytes written so far end inside a message."""
        self._drain()
        if self._pending:
            raise ValueError("SealingFile: the stream ended inside a message")


# --- the framing walk -----------------------------------------------------------------------------------


def _corrupt(name: str, pos: int, what: str) -> LossFormatError:
    """The error for damage at byte `pos`; its `offset` says where the verified prefix ends at the latest."""
    exc = LossFormatError(f"{name}: corrupt at byte {pos}: {what}")
    exc.offset = pos
    return exc


def is_unfinished_header(data: bytes) -> bool:
    """True for an empty file, a prefix of the magic, or the magic plus an incomplete schema message (a writer
    is creating the file)."""
    size = len(data)
    if data[: min(size, 8)] != MAGIC[: min(size, 8)]:
        return False
    rest = data[8:16]
    if len(rest) < 8:
        return rest[:4] == CONTINUATION[: min(4, len(rest))]
    meta_len = i32(rest, 4)[0]
    return rest[:4] == CONTINUATION and meta_len > 0 and 16 + meta_len > size


def head(
    data: bytes, buf: pa.Buffer, name: str, verify: bool = True
) -> tuple[pa.Schema, int, bool, dict[str, int]]:
    """Check the magic and decode the schema message: (schema, its end, whether every batch must carry a
    checksum, the dictionary ids); `verify` false skips the schema's own checksum."""
    size = len(data)
    if size == 0:
        raise LossFormatError(
            f"{name}: empty file (a writer that just started has not written its header yet)"
        )
    if data[: min(size, 8)] != MAGIC[: min(size, 8)]:
        raise LossFormatError(f"{name}: not a lossfmt file (no Arrow magic at byte 0)")
    if is_unfinished_header(data):
        raise LossFormatError(f"{name}: truncated inside the schema ({size} bytes)")
    meta_len = i32(data, 12)[0] if size >= 16 else -1
    if data[8:12] != CONTINUATION or meta_len <= 0 or meta_len > fb.MAX_SCHEMA_METADATA:
        raise LossFormatError(f"{name}: not a lossfmt file (no schema message at byte 8)")
    end = 16 + meta_len
    try:
        parsed = fb.parse(data, 16, end)
        kind, crc_at = parsed.kind, parsed.crc_at
    except (fb.Bad, struct.error) as exc:
        raise LossFormatError(f"{name}: not a lossfmt file (unreadable schema message: {exc})") from None
    if kind != SCHEMA:
        raise LossFormatError(
            f"{name}: not a lossfmt file (first message is a {fb.KINDS[kind]}, not a schema)"
        )
    # The placeholder means a writer did not seal its header (its checksum is optional): not verified.
    sealed = crc_at >= 0 and data[crc_at : crc_at + 8] != PLACEHOLDER
    if verify and sealed and _crc(data, buf, 8, crc_at, end) != data[crc_at : crc_at + 8]:
        raise _corrupt(name, 8, "the schema message does not match its checksum")
    try:
        schema = pa.ipc.read_schema(buf.slice(8, end - 8))
    except (pa.ArrowException, ValueError, OSError) as exc:
        raise LossFormatError(f"{name}: not a lossfmt file (unreadable schema: {exc})") from None
    declared = (schema.metadata or {}).get(KEY_CHECKSUM.encode())
    if declared is not None and declared != CRC32C.encode():
        raise LossFormatError(
            f"{name}: checksum {declared.decode(errors='replace')!r} is not supported (lossfmt knows crc32c)"
        )
    if declared is not None and crc_at < 0:
        raise _corrupt(name, 8, f"the schema declares checksums but has no {SCHEMA_CHECKSUM_KEY}")
    return schema, end, declared is not None, dict(parsed.extra)


def walk(data: bytes, name: str, verify: bool = True) -> Layout:
    """The verified layout of a lossfmt file's bytes; LossFormatError naming `name` and the byte offset for
    anything but a torn tail (an incomplete final message of a file without footer). `verify` false skips
    the checksums (the structure is still checked)."""
    buf = pa.py_buffer(data)
    schema, schema_end, required, dict_ids = head(data, buf, name, verify)
    claims_closed = len(data) >= schema_end + 18 and data.endswith(TRAILING_MAGIC)
    messages, end, eos = scan_messages(
        data, buf, name, schema_end, required=required, verify=verify, closed=claims_closed
    )
    if claims_closed:
        _check_footer(data, buf, name, schema, eos, end, messages)
    return Layout(schema, schema_end, messages, end, claims_closed, dict_ids)


def scan_messages(
    data: bytes,
    buf: pa.Buffer,
    name: str,
    start: int,
    *,
    required: bool,
    verify: bool = True,
    closed: bool = False,
    final: bool = True,
    base: int = 0,
) -> tuple[list[Message], int, int]:
    """(messages, end, eos) of the complete content messages in data[start:], checksums verified.

    `end`: the end of the last record batch (where the next batch's span starts); `eos`: the offset of the
    EOS marker or -1. A batch without a checksum is corruption if the schema `required` one; `verify` false
    skips checksums. An incomplete final message is the torn tail, unless the file is `closed`; with `final`
    false, `data` is a window of a longer file. Offsets are relative to `data`, plus `base` in errors.
    """
    size, message, ext = len(data), fb.Templates().message, google_crc32c.extend
    messages: list[Message] = []
    pos = end = start
    n_content, eos = 0, -1  # messages up to the last record batch; the EOS marker
    while pos < size:
        meta_len = i32(data, pos + 4)[0] if size - pos >= 8 else -1
        if meta_len < 0 or size - pos < 8 + meta_len:
            _check_incomplete(data, name, pos, meta_len, closed and final, base)
            break  # the torn tail (or the end of a window)
        if data[pos : pos + 4] != CONTINUATION or meta_len > MAX_METADATA or meta_len % 8:
            raise _corrupt(name, base + pos, "not an IPC message (bad marker or metadata length)")
        if meta_len == 0:
            eos = pos
            break
        try:
            m = message(data, pos, meta_len)
        except (fb.Bad, struct.error) as exc:
            raise _corrupt(name, base + pos, f"unparsable message ({exc})") from None
        if m.end > size:
            _check_incomplete(data, name, pos, meta_len, closed and final, base)
            break
        if m.kind == RECORD_BATCH:
            crc_at = m.crc_at
            if verify and (crc_at >= 0 or required):
                if crc_at < 0:
                    raise _corrupt(name, base + pos, f"record batch without its {CHECKSUM_KEY} checksum")
                if m.end - end >= _COPY_SPAN:
                    crc = _crc(data, buf, end, crc_at, m.end)
                else:  # `_crc` inlined, in 2 calls (a live file has a batch per flush)
                    crc = b"%08x" % ext(ext(0, data[end:crc_at] + PLACEHOLDER), data[crc_at + 8 : m.end])
                if not data.startswith(crc, crc_at):
                    raise _corrupt(name, base + pos, "record batch does not match its checksum")
            end = m.end
            n_content = len(messages) + 1
        elif m.kind == SCHEMA:
            raise _corrupt(name, base + pos, "a second schema message")
        messages.append(m)
        pos = m.end
    del messages[n_content:]  # dictionary messages no batch follows belong to a torn flush
    return messages, end, eos


def _check_incomplete(data: bytes, name: str, pos: int, meta_len: int, closed: bool, base: int) -> None:
    """The message at `pos` runs past the end of `data`: a torn tail, unless it cannot be the start of a
    message or the file is closed (LossFormatError)."""
    size = len(data)
    if data[pos : pos + 4] != CONTINUATION[: min(4, size - pos)]:
        raise _corrupt(name, base + pos, "not an IPC message (no continuation marker)")
    if size - pos >= 8 and (meta_len < 0 or meta_len > MAX_METADATA or meta_len % 8):
        raise _corrupt(name, base + pos, f"impossible metadata length {meta_len}")
    if closed:
        raise _corrupt(name, base + pos, "a message runs past the end of a closed file")


def _check_footer(
    data: bytes, buf: pa.Buffer, name: str, schema: pa.Schema, eos: int, end: int, messages: list[Message]
) -> None:
    """A closed file's stream ends with EOS after its last batch, and its footer lists exactly the stream's
    messages and repeats its schema (§1.3): the footer cannot say anything the verified stream does not."""
    size = len(data)
    if eos < 0 or eos != end:
        raise _corrupt(name, end, "a closed file's stream does not end with EOS after its last batch")
    footer_len = i32(data, size - 10)[0]
    start = eos + 8
    if footer_len <= 0 or start + footer_len + 10 != size:
        raise _corrupt(name, size - 10, "the footer length does not match the stream")
    try:
        blocks = fb.footer_blocks(data, start, start + footer_len)
    except (fb.Bad, struct.error) as exc:
        raise _corrupt(name, start, f"unparsable footer ({exc})") from None
    for kind in (DICTIONARY, RECORD_BATCH):
        stream = [(m.start, m.end) for m in messages if m.kind == kind]
        listed = [(offset, offset + meta_len + body) for offset, meta_len, body in blocks[kind]]
        if listed != stream:
            raise _corrupt(name, start, f"the footer's {fb.KINDS[kind]} blocks do not match the stream")
    try:
        footer_schema = pa.ipc.open_file(buf).schema
    except (pa.ArrowException, ValueError, OSError) as exc:
        raise _corrupt(name, start, f"unreadable footer ({exc})") from None
    # The footer's copy of the schema checksum is not meaningful (a file writer writes its schema argument).
    if not _without_checksum(footer_schema).equals(_without_checksum(schema), check_metadata=True):
        raise _corrupt(name, start, "the footer's schema differs from the stream's")


def _without_checksum(schema: pa.Schema) -> pa.Schema:
    metadata = dict(schema.metadata or {})
    metadata.pop(SCHEMA_CHECKSUM_KEY.encode(), None)
    return schema.with_metadata(metadata)


def iter_batches(
    path: str | os.PathLike[str], end: int | None = None
) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """The schema and an iterator over the verified record batches of the file's content (up to `end`).

    Reads bytes (no memory map: a writer may truncate the file) a bounded window at a time and yields batches
    of at most `_decode.ROWS` rows (a larger flush as written), so memory stays bounded whatever the run's
    length (issue 9). LossFormatError for corruption, as `walk`, after the batches before the damage.
    """
    from lossfmt import _decode  # decoding needs the layout defined here

    return _decode.iter_batches(path, end)
