"""Framing of Arrow IPC messages in lossfmt files: the one module that walks the bytes (spec/FORMAT.md §1).

Contract used by the writer side (flusher, compaction, import) and the reader side (read, follow, resume):

- `walk(data, name)`: the verified message layout of a file's bytes (torn tail vs corruption, §1.2).
- `scan_messages(...)`: the walk of the content messages of a file or a window of it, spans verified.
- `iter_batches(path)`: every verified record batch of a file's content, a bounded window at a time.
- Re-exported from `_checksums` (which computes and compares what this module finds): `BATCH_METADATA`,
  the custom metadata every record batch is written with (a placeholder checksum); `Sealer`, which fills
  the checksums in as a stream's bytes are written; `SealingFile`, a file for pyarrow's writers that seals.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from typing import NamedTuple

import pyarrow as pa

from lossfmt import _flatbuf as fb
from lossfmt._checksums import (
    BATCH_METADATA,
    CHECKSUM_KEY,
    CRC32C,
    KEY_CHECKSUM,
    PLACEHOLDER,
    SCHEMA_CHECKSUM_KEY,
    Sealer,
    SealingFile,
    first_mismatch,
    span_crc,
)
from lossfmt._errors import LossFormatError, corrupt
from lossfmt._flatbuf import CONTINUATION, DICTIONARY, MAX_METADATA, RECORD_BATCH, SCHEMA, Message, i32
from lossfmt._torn import check_incomplete

__all__ = [
    "BATCH_METADATA",
    "CHECKSUM_KEY",
    "CONTINUATION",
    "DICTIONARY",
    "KEY_CHECKSUM",
    "RECORD_BATCH",
    "SCHEMA_CHECKSUM_KEY",
    "Layout",
    "Message",
    "Sealer",
    "SealingFile",
    "ends_closed",
    "iter_batches",
    "scan_messages",
    "walk",
]

MAGIC = b"ARROW1\x00\x00"
TRAILING_MAGIC = b"ARROW1"
EOS = b"\xff\xff\xff\xff\x00\x00\x00\x00"


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


# --- the framing walk -----------------------------------------------------------------------------------

#: Message layouts seen by this process's walks: the files of a sweep (and the flushes of one file) share
#: them, so each message after the first of a layout costs a few slice comparisons, not a full parse.
_LAYOUTS = fb.Templates(limit=256)


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
    if verify and sealed and span_crc(data, buf, 8, crc_at, end) != data[crc_at : crc_at + 8]:
        raise corrupt(name, 8, "the schema message does not match its checksum")
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
        raise corrupt(name, 8, f"the schema declares checksums but has no {SCHEMA_CHECKSUM_KEY}")
    return schema, end, declared is not None, dict(parsed.extra)


def ends_closed(data: bytes, schema_end: int) -> bool:
    """Whether `data` ends as a closed file does: ``ARROW1`` after a footer length that points just past an
    EOS marker (§1.2). A live file whose torn last message happens to end with the bytes ``ARROW1`` (a tag)
    does not: its footer length points at no EOS. (A file whose stream ends with EOS and that ends with
    ``ARROW1`` is closed too, whatever its footer length says: `walk`.)"""
    size = len(data)
    if size < schema_end + 18 or not data.endswith(TRAILING_MAGIC):
        return False
    footer_start = size - 10 - i32(data, size - 10)[0]
    if not (schema_end + 8 <= footer_start < size - 10 and data[footer_start - 8 : footer_start] == EOS):
        return False
    try:  # and a footer there whose blocks end at that EOS (bytes that only look like one, in a torn tail)
        blocks = fb.footer_blocks(data, footer_start, size - 10)
    except (fb.Bad, struct.error):
        return False  # (a damaged footer after a stream that ends with EOS is still closed: `walk`)
    ends = [offset + meta_len + body for listed in blocks.values() for offset, meta_len, body in listed]
    return bool(max(ends, default=schema_end) == footer_start - 8)


def walk(data: bytes, name: str, verify: bool = True) -> Layout:
    """The verified layout of a lossfmt file's bytes; LossFormatError naming `name` and the byte offset for
    anything but a torn tail (an incomplete final message of a file without footer). `verify` false skips
    the checksums (the structure is still checked)."""
    buf = pa.py_buffer(data)
    schema, schema_end, required, dict_ids = head(data, buf, name, verify)
    claims_closed = ends_closed(data, schema_end)
    messages, end, eos = scan_messages(
        data, buf, name, schema_end, required=required, verify=verify, closed=claims_closed
    )
    if eos >= 0 and data.endswith(TRAILING_MAGIC):  # EOS, then a footer whose length was damaged
        claims_closed = True
    if claims_closed:
        if messages and all(m.kind == DICTIONARY for m in messages):  # an empty closed file's dictionaries
            end = _single_dictionaries(name, messages, eos)
        _check_footer(data, buf, name, schema, dict_ids, eos, end, messages)
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
    The first damage in file order is reported, whether its checksum or its structure shows it.
    """
    starts: list[int] = []
    checked: list[Message] = []
    every = verify and required  # every batch is checked, so the spans tile: no list of their starts
    damage: LossFormatError | None = None
    try:
        messages, end, eos = _walk_content(
            data, name, start, every, verify, (closed and final, final), base, starts, checked
        )
    except LossFormatError as exc:
        damage = exc  # the spans before it are verified first: a mismatch there comes earlier in the file
    # All spans at once: a live file has a batch per flush, and per-batch Python work would cost more than
    # hashing the bytes.
    bad = first_mismatch(data, buf, start if every else starts, checked)
    if bad >= 0:
        m = checked[bad]
        what = "does not match its checksum" if m.crc_at >= 0 else f"without its {CHECKSUM_KEY} checksum"
        raise corrupt(name, base + m.start, f"record batch {what}")
    if damage is not None:
        raise damage
    return messages, end, eos


def _walk_content(
    data: bytes,
    name: str,
    start: int,
    every: bool,
    verify: bool,
    ends: tuple[bool, bool],
    base: int,
    starts: list[int],
    checked: list[Message],
) -> tuple[list[Message], int, int]:
    """`scan_messages`' walk; each record batch whose checksum must be verified is appended to `checked`:
    `every` one (the schema requires them), else, with `verify`, each that has one (its span's start to
    `starts`). `ends`: (the data is a closed file, the data ends where the file does)."""
    closed = ends[0]
    # The shared layouts only where checksums cover every message's metadata: a layout reused skips some of
    # a full parse's checks, so without checksums each walk starts with none (the same checks every time).
    size, message = len(data), (_LAYOUTS if every else fb.Templates()).message
    messages: list[Message] = []
    pos = end = start
    n_content, eos = 0, -1  # messages up to the last record batch; the EOS marker
    while pos < size:
        meta_len = i32(data, pos + 4)[0] if size - pos >= 8 else -1
        if meta_len < 0 or size - pos < 8 + meta_len:
            check_incomplete(data, name, pos, meta_len, ends, base)
            break  # the torn tail (or the end of a window)
        if data[pos : pos + 4] != CONTINUATION or meta_len > MAX_METADATA or meta_len % 8:
            raise corrupt(name, base + pos, "not an IPC message (bad marker or metadata length)")
        if meta_len == 0:
            eos = pos
            break
        try:
            m = message(data, pos, meta_len)
        except (fb.Bad, struct.error) as exc:
            raise corrupt(name, base + pos, f"unparsable message ({exc})") from None
        if m.end > size:
            check_incomplete(data, name, pos, meta_len, ends, base)
            break
        if m.kind == RECORD_BATCH:
            if every:
                checked.append(m)
            elif verify and m.crc_at >= 0:
                starts.append(end)
                checked.append(m)
            end = m.end
            n_content = len(messages) + 1
        elif m.kind == SCHEMA:
            raise corrupt(name, base + pos, "a second schema message")
        messages.append(m)
        pos = m.end
    if n_content or not closed:  # (an empty closed file's dictionaries stay: its footer lists them, §1.1)
        del messages[n_content:]  # dictionary messages no batch follows belong to a torn flush
    return messages, end, eos


def _single_dictionaries(name: str, messages: list[Message], eos: int) -> int:
    """The EOS offset, the `end` of an empty closed file holding dictionaries if it has at most one per id
    (§1.1); else LossFormatError."""
    ids = [m.dict_id for m in messages]
    if len(set(ids)) != len(ids):
        raise corrupt(name, messages[-1].start, "an empty closed file with two dictionaries of one id")
    return eos if eos >= 0 else messages[-1].end


def _check_footer(
    data: bytes,
    buf: pa.Buffer,
    name: str,
    schema: pa.Schema,
    dict_ids: dict[str, int],
    eos: int,
    end: int,
    messages: list[Message],
) -> None:
    """A closed file's stream ends with EOS after its last batch, and its footer lists exactly the stream's
    messages and repeats its schema, dictionary ids too (§1.3): the footer cannot say anything the verified
    stream does not."""
    size = len(data)
    if eos < 0 or eos != end:
        raise corrupt(name, end, "a closed file's stream does not end with EOS after its last batch")
    footer_len = i32(data, size - 10)[0]
    start = eos + 8
    if footer_len <= 0 or start + footer_len + 10 != size:
        raise corrupt(name, size - 10, "the footer length does not match the stream")
    try:
        blocks = fb.footer_blocks(data, start, start + footer_len)
        version, footer_ids, keys = fb.footer_schema_ids(data, start, start + footer_len)
    except (fb.Bad, struct.error) as exc:
        raise corrupt(name, start, f"unparsable footer ({exc})") from None
    if version != fb.V5:
        raise corrupt(name, start, f"the footer's metadata version is {version + 1}, not V5")
    for kind in (DICTIONARY, RECORD_BATCH):
        stream = [(m.start, m.end) for m in messages if m.kind == kind]
        listed = [(offset, offset + meta_len + body) for offset, meta_len, body in blocks[kind]]
        if listed != stream:
            raise corrupt(name, start, f"the footer's {fb.KINDS[kind]} blocks do not match the stream")
    try:
        footer_schema = pa.ipc.open_file(buf).schema
    except (pa.ArrowException, ValueError, OSError) as exc:
        raise corrupt(name, start, f"unreadable footer ({exc})") from None
    # The footer's copy of the schema checksum is not meaningful (a file writer writes its schema argument).
    ours, theirs = dict(schema.metadata or {}), dict(footer_schema.metadata or {})
    ours.pop(SCHEMA_CHECKSUM_KEY.encode(), None)
    theirs.pop(SCHEMA_CHECKSUM_KEY.encode(), None)
    same = footer_ids == dict_ids and footer_schema.remove_metadata().equals(schema.remove_metadata(), True)
    rest = [key for key in keys if key != SCHEMA_CHECKSUM_KEY.encode()]
    same = same and len(rest) == len(set(rest))  # (a key twice: pyarrow keeps its first value, JS its last)
    if ours != theirs or not same:
        raise corrupt(name, start, "the footer's schema differs from the stream's")


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
