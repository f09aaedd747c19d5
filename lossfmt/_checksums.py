"""The CRC-32C checksums of lossfmt files (spec/FORMAT.md §1.6): sealing messages as they are written and
verifying spans as they are read. `_framing` finds the spans; this module computes and compares.

- `span_crc`: the one definition of a span's checksum (with its 8 stored digits read as ASCII '0').
- `first_mismatch`: which of many spans does not match its stored digits, at a cost proportional to bytes:
  one `google_crc32c` call per small span over its bytes as they are (digits included), and the digits'
  part of each CRC computed with numpy tables, since a CRC is affine in its input (see `_effect`).
- `Sealer` and `SealingFile`: fill in the checksums of the messages an Arrow writer emits.
"""

from __future__ import annotations

import functools
import operator
import struct
from collections.abc import Sequence
from typing import BinaryIO

import google_crc32c
import numpy as np
import pyarrow as pa

from lossfmt import _flatbuf as fb
from lossfmt._flatbuf import CONTINUATION, DICTIONARY, SCHEMA, Message, i32
from lossfmt.schema import MAGIC

__all__ = [
    "BATCH_METADATA",
    "CHECKSUM_KEY",
    "CRC32C",
    "KEY_CHECKSUM",
    "PLACEHOLDER",
    "SCHEMA_CHECKSUM_KEY",
    "Sealer",
    "SealingFile",
    "first_mismatch",
    "span_crc",
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
PLACEHOLDER = b"00000000"

#: Spans shorter than this are hashed from slices (copies), longer ones through views.
COPY_SPAN = 1 << 16
_MASK = 0xFFFFFFFF
_END, _CRC_AT = (operator.itemgetter(Message._fields.index(f)) for f in ("end", "crc_at"))
#: From this many spans on, `first_mismatch` works on arrays.
_BATCHED = 16


def span_crc(data: bytes, buf: pa.Buffer, start: int, crc_at: int, end: int, crc: int = 0) -> bytes:
    """The CRC-32C, as 8 lowercase hex digits, of data[start:end] with the 8 bytes at crc_at read as '0'.
    (`buf` is `data` as an Arrow buffer: large spans are hashed through it without a copy.)"""
    if end - start < COPY_SPAN:
        crc = google_crc32c.extend(crc, data[start:crc_at])
        crc = google_crc32c.extend(crc, PLACEHOLDER)
        crc = google_crc32c.extend(crc, data[crc_at + 8 : end])
    else:
        crc = google_crc32c.extend(crc, buf.slice(start, crc_at - start))
        crc = google_crc32c.extend(crc, PLACEHOLDER)
        crc = google_crc32c.extend(crc, buf.slice(crc_at + 8, end - crc_at - 8))
    return b"%08x" % crc


# --- many spans at once ---------------------------------------------------------------------------------
#
# With `upd(s, x)` the CRC register after feeding bytes x from state s (google_crc32c's `extend(c, x)` is
# upd(c ^ M, x) ^ M, M = 0xffffffff), upd is linear in (s, x) together. A span hashed as it is, with stored
# digits d where '0's were hashed at sealing, differs from the sealed CRC by upd(0, (d ^ '0') + t zero bytes),
# t the bytes after the digits: `_effect` computes that with table lookups (t in 4 hex digits, each a table).


def _byte_tables(basis: np.ndarray) -> np.ndarray:
    """uint32[m, 256]: the values at every byte of m GF(2)-linear maps of a byte, given at its 8 bits."""
    bits = (np.arange(256)[:, None] >> np.arange(8)) & 1
    tables: np.ndarray = np.bitwise_xor.reduce(np.where(bits == 1, basis[:, None, :], 0), axis=2)
    return tables.astype(np.uint32)


@functools.cache
def _hex_pairs() -> np.ndarray:
    """int64[65536]: the byte two lowercase hex digits (read as a little-endian uint16) spell, else -1."""
    nibble = np.full(256, -1, np.int64)
    nibble[np.frombuffer(b"0123456789abcdef", np.uint8)] = np.arange(16)
    hi, lo = nibble[np.arange(65536) & 0xFF], nibble[np.arange(65536) >> 8]
    pairs: np.ndarray = np.where((hi >= 0) & (lo >= 0), hi << 4 | lo, -1)
    return pairs


@functools.cache
def _digit() -> np.ndarray:
    """uint32[8, 256]: upd(0, 8 zero bytes but byte j = b) at [j, b]."""
    zero8 = google_crc32c.value(bytes(8))
    one = [
        google_crc32c.value(bytes(j) + bytes([1 << i]) + bytes(7 - j)) ^ zero8
        for j in range(8)
        for i in range(8)
    ]
    return _byte_tables(np.array(one, np.int64).reshape(8, 8))


@functools.cache
def _level(k: int) -> np.ndarray:
    """uint32[16, 4, 256]: upd(b << 8j, d * 16**k zero bytes) at [d, j, b] (built when first needed)."""
    one = [
        google_crc32c.extend((1 << i) ^ _MASK, bytes(d * 16**k)) ^ _MASK for d in range(16) for i in range(32)
    ]
    return _byte_tables(np.array(one, np.int64).reshape(64, 8)).reshape(16, 4, 256)


def _advance(crc: np.ndarray, k: int, d: int | np.ndarray) -> np.ndarray:
    """upd(crc, d * 16**k zero bytes) (d: one count, or one per element of crc)."""
    level = _level(k)
    out: np.ndarray = level[d, 0, crc & 0xFF]
    for j in range(1, 4):
        out ^= level[d, j, (crc >> (8 * j)) & 0xFF]
    return out


def _effect(diff: np.ndarray, after: np.ndarray) -> np.ndarray:
    """upd(0, diff[i] followed by after[i] zero bytes) of each row of `diff` (uint8[n, 8]; after < 16**4).
    A count of zeros shared by every row is folded into the per-byte tables before they are looked up."""
    table, varying = _digit(), []
    for k in range(4):
        d = (after >> (4 * k)) & 15
        if d.min() != d.max():
            varying.append((k, d))
        elif d[0]:
            table = _advance(table, k, int(d[0]))
    crc = table[0][diff[:, 0]]
    for j in range(1, 8):
        crc ^= table[j][diff[:, j]]
    for k, d in varying:
        crc = _advance(crc, k, d)
    effect: np.ndarray = crc
    return effect


def _matches(data: bytes, buf: pa.Buffer, start: int, batch: Message) -> bool:
    """The span data[start : batch.end] matches its batch's digits (one span, as sealing computes it)."""
    crc_at = batch.crc_at
    return crc_at >= 0 and data.startswith(span_crc(data, buf, start, crc_at, batch.end), crc_at)


def first_mismatch(data: bytes, buf: pa.Buffer, starts: int | list[int], batches: Sequence[Message]) -> int:
    """The index of the first span data[starts[i] : batches[i].end] whose checksum is not the 8 lowercase hex
    digits at batches[i].crc_at (or that has none: crc_at -1), or -1 when all match (`buf`: `data` as a
    buffer). `starts` an int: the first span's start, each other starting where the batch before ended."""
    n = len(batches)
    if n < _BATCHED:  # a few (a follower's poll): the tables and arrays cost more than they save
        froms = [starts, *(m.end for m in batches[:-1])] if isinstance(starts, int) else starts
        return next((i for i in range(n) if not _matches(data, buf, froms[i], batches[i])), -1)
    end = np.fromiter(map(_END, batches), np.int64, n)
    ends = end.tolist()
    froms = [starts, *ends[:-1]] if isinstance(starts, int) else starts
    begin = np.fromiter(froms, np.int64, n)
    at = np.fromiter(map(_CRC_AT, batches), np.int64, n)
    words = np.ndarray((len(data) - 7,), "<u8", data, 0, (1,))[at]  # each batch's 8 digits
    pairs = _hex_pairs()[words.view("<u2").reshape(n, 4)]
    stored = pairs[:, 0] << 24 | pairs[:, 1] << 16 | pairs[:, 2] << 8 | pairs[:, 3]
    bad = (stored < 0) | (at < 0)  # a pair that is not hex digits is -1, all bits set
    diff = (words ^ 0x3030303030303030).view(np.uint8).reshape(n, 8)  # the digits, less the '0's sealed
    small = end - begin < COPY_SPAN
    some: slice | np.ndarray = slice(None) if small.all() else np.flatnonzero(small)
    if small.any():
        lists = (froms, ends) if small.all() else (begin[some].tolist(), end[some].tolist())
        spans = map(data.__getitem__, map(slice, *lists))
        raw = np.fromiter(map(google_crc32c.value, spans), np.int64, len(lists[0]))
        bad[some] |= raw != stored[some] ^ _effect(diff[some], (end - at - 8)[some])
    for i in np.flatnonzero(~small).tolist():  # large spans: hashed around the digits, through views
        bad[i] |= not _matches(data, buf, froms[i], batches[i])
    return int(np.argmax(bad)) if bad.any() else -1


# --- sealing --------------------------------------------------------------------------------------------


class Sealer:
    """Fills in the checksums of one stream's messages as its bytes are written.

    `seal(chunk)`: given bytes an Arrow stream or file writer emitted (whole encapsulated messages, optionally
    preceded by the magic, optionally followed by EOS and footer), returns the same bytes with each record
    batch's checksum (and the schema's, §1.6) filled in. State (where the current span started) carries
    across calls, so one Sealer seals one stream written in many chunks.
    """

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
                    out[crc_at : crc_at + 8] = span_crc(data, buf, pos, crc_at, end)
                self._crc = 0
            elif kind == DICTIONARY:
                self._crc = google_crc32c.extend(self._crc, buf.slice(pos, end - pos))
            else:
                if crc_at >= 0:
                    out[crc_at : crc_at + 8] = span_crc(data, buf, pos, crc_at, end, self._crc)
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
