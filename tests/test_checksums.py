"""Checksum verification of many spans at once (spec/FORMAT.md §1.6, issue 14): every span of a live file of
many flushes is verified, and the first damage in file order is reported at its batch's offset.

Files of many batches are built by repeating one sealed batch message: after a batch, a batch's span is the
message alone, so each copy carries a valid checksum wherever it lies.
"""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow as pa
import pytest
from filebytes import batch_ends, live_bytes, message_ends, unverified

from lossfmt import LossFormatError, _checksums, _framing, read, schema

SEED = 20261202


def _batch(sch: pa.Schema, start: int, n: int, rng: random.Random | None = None) -> pa.RecordBatch:
    values = [rng.random() if rng else 0.5 for _ in range(n)]
    return pa.record_batch(
        [
            pa.array(range(start, start + n), pa.int64()),
            pa.DictionaryArray.from_arrays(pa.array([0] * n, pa.int32()), ["loss"]),
            pa.array(values),
            pa.array([1] * n, pa.int64()),
            pa.array([None] * n, pa.int64()),
            pa.array([0] * n, schema.WALL_TIME_TYPE),
            pa.DictionaryArray.from_arrays(pa.array([0] * n, pa.int8()), ["mean", "sum"]),
        ],
        schema=sch,
    )


def _repeated(n: int) -> tuple[bytes, list[int]]:
    """A live file of `n` batches of 2 events (the last n-1 one message repeated), and each batch's offset."""
    sch = schema.make_schema("many")
    data = live_bytes(sch, [_batch(sch, 0, 2), _batch(sch, 2, 2)])
    ends = message_ends(data)
    first, second = batch_ends(data)
    size = second - first
    return data[:first] + data[first:second] * (n - 1), [
        ends[ends.index(first) - 1],
        *range(first, first + (n - 1) * size, size),
    ]


def _unsealed_message(sch: pa.Schema) -> bytes:
    """A record batch message of the v1 columns without a checksum key (as an older writer wrote it)."""
    data = live_bytes(unverified(sch), [_batch(sch, 0, 2), _batch(sch, 2, 2)])
    first, second = batch_ends(data)
    return data[first:second]


def _sealed_without_promise(n: int, gap: int) -> tuple[bytes, list[int]]:
    """A live file whose schema does not promise checksums (spec §1.6: each batch that carries one is
    verified) of n batches that carry one except the batch at `gap`; and each batch's offset."""
    sch = unverified(schema.make_schema("mixed"))
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, sch, options=pa.ipc.IpcWriteOptions(compression="zstd")) as writer:
        for start in (0, 2):
            writer.write_batch(_batch(sch, start, 2), custom_metadata=_framing.BATCH_METADATA)
    data = _framing.Sealer().seal(schema.MAGIC + sink.getvalue().to_pybytes()[: -len(schema.EOS)])
    first, second = batch_ends(data)
    sealed, unsealed = data[first:second], _unsealed_message(sch)
    messages = [unsealed if i == gap else sealed for i in range(1, n)]
    offsets = [first + sum(map(len, messages[:i])) for i in range(n - 1)]
    ends = message_ends(data)
    return data[:first] + b"".join(messages), [ends[ends.index(first) - 1], *offsets]


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x10]) + data[at + 1 :]


def _error_offset(data: bytes) -> tuple[int, str]:
    with pytest.raises(LossFormatError) as info:
        _framing.walk(data, "run.arrow")
    assert info.value.offset is not None
    return info.value.offset, str(info.value)


@pytest.fixture(scope="module")
def many() -> tuple[bytes, list[int]]:
    return _repeated(100_000)


def test_every_batch_of_a_file_of_100000_flushes_verifies_and_reads(tmp_path: Path, many) -> None:
    data, starts = many
    layout = _framing.walk(data, "run.arrow")
    assert [m.start for m in layout.messages if m.kind == _framing.RECORD_BATCH] == starts
    path = tmp_path / "run.arrow"
    path.write_bytes(data)
    assert read(path).num_rows == 200_000


@pytest.mark.parametrize("where", ["body", "digits"])
def test_a_flip_in_the_last_of_100000_batches_is_reported_at_its_offset(many, where: str) -> None:
    data, starts = many
    last = _framing.walk(data, "x").messages[-1]
    at = last.end - 1 if where == "body" else last.crc_at + 7
    offset, message = _error_offset(_flip(data, at))
    assert offset == starts[-1] == last.start
    assert f"run.arrow: corrupt at byte {starts[-1]}: record batch does not match its checksum" == message


def test_a_flip_in_the_first_batch_is_reported_at_its_offset(many) -> None:
    data, starts = many
    first = _framing.walk(data, "x").messages[0]  # the tag's dictionary message: part of the first span
    assert first.kind == _framing.DICTIONARY
    assert _error_offset(_flip(data, first.end - 1))[0] == starts[0]


def test_a_batch_without_its_checksum_among_many_is_reported_at_its_offset() -> None:
    data, starts = _repeated(2_000)
    sch = _framing.walk(data, "x").schema
    k = 1_500
    size = starts[2] - starts[1]
    unsealed = data[: starts[k]] + _unsealed_message(sch) + data[starts[k] + size :]
    offset, message = _error_offset(unsealed)
    assert offset == starts[k]
    assert "record batch without its lossfmt.crc32c checksum" in message
    # A damaged batch before it comes first in the file, so it is the one reported; one after it is not.
    assert _error_offset(_flip(unsealed, starts[k - 1] + size - 1))[0] == starts[k - 1]
    assert _error_offset(_flip(unsealed, starts[k + 300] + size - 1))[0] == starts[k]


def test_the_first_damage_in_file_order_is_reported_whatever_shows_it() -> None:
    data, starts = _repeated(2_000)
    size = starts[2] - starts[1]
    not_a_message = b"\x00" * 4  # the continuation marker of a message, overwritten
    for early, late in ((10, 1_700), (1_700, 1_999)):
        flipped = _flip(data, starts[early] + size - 1)
        broken = flipped[: starts[late]] + not_a_message + flipped[starts[late] + 4 :]
        offset, message = _error_offset(broken)
        assert offset == starts[early] and "does not match its checksum" in message
        broken = data[: starts[early]] + not_a_message + data[starts[early] + 4 :]
        offset, message = _error_offset(_flip(broken, starts[late] + size - 1))
        assert offset == starts[early] and "not an IPC message" in message


def _varied() -> tuple[bytes, list[int], int]:
    """A live file of batches of many sizes (so the bytes after the digits differ from batch to batch), two
    of them larger than `_checksums.COPY_SPAN`, and its batch offsets and rows."""
    sch = schema.make_schema("varied")
    rng = random.Random(SEED)
    sizes = [rng.choice([1, 2, 3, 5, 17, 100, 999, 4000]) for _ in range(300)]
    sizes[40] = sizes[200] = 30_000  # random float64s: about 240 KB compressed
    batches, step = [], 0
    for n in sizes:
        batches.append(_batch(sch, step, n, rng))
        step += n
    data = live_bytes(sch, batches)
    layout = _framing.walk(data, "x")
    starts = [m.start for m in layout.messages if m.kind == _framing.RECORD_BATCH]
    return data, starts, step


def test_spans_of_varied_lengths_are_each_verified(tmp_path: Path) -> None:
    data, starts, rows = _varied()
    layout = _framing.walk(data, "x")
    batches = [m for m in layout.messages if m.kind == _framing.RECORD_BATCH]
    span_starts = [layout.schema_end, *[m.end for m in batches[:-1]]]
    spans = [m.end - a for a, m in zip(span_starts, batches, strict=True)]
    assert max(spans) >= _checksums.COPY_SPAN > min(spans)
    assert len({m.end - m.crc_at for m in batches}) > 10  # the bytes after the digits
    path = tmp_path / "run.arrow"
    path.write_bytes(data)
    assert read(path).num_rows == rows
    rng = random.Random(SEED)
    for k in [0, 39, 40, 41, 199, 200, 201, 299, *rng.sample(range(300), 20)]:
        m = batches[k]
        for at in (m.end - 1, m.crc_at, m.crc_at + 7, rng.randrange(m.start + 8, m.end)):
            assert _error_offset(_flip(data, at))[0] == starts[k], (k, at)


@pytest.mark.parametrize("digits", ["upper", "not hex"])
def test_checksum_digits_are_8_lowercase_hex_digits(digits: str) -> None:
    data, starts = _repeated(300)
    batches = [m for m in _framing.walk(data, "x").messages if m.kind == _framing.RECORD_BATCH]
    # the first batch whose digits have a letter (true of most): uppercase spells the same number
    k, m = next(
        (i, m) for i, m in enumerate(batches) if i > 100 and not data[m.crc_at : m.crc_at + 8].isdigit()
    )
    stored = data[m.crc_at : m.crc_at + 8]
    other = stored.upper() if digits == "upper" else b"g" + stored[1:]
    damaged = data[: m.crc_at] + other + data[m.crc_at + 8 :]
    assert _error_offset(damaged)[0] == starts[k]


def test_verification_makes_one_crc_call_per_small_batch(monkeypatch) -> None:
    data, starts = _repeated(5_000)
    calls = []

    class Counting:
        @staticmethod
        def value(chunk: bytes) -> int:
            calls.append(len(chunk))
            return real.value(chunk)

        @staticmethod
        def extend(crc: int, chunk: bytes) -> int:
            calls.append(len(chunk))
            return real.extend(crc, chunk)

    real = _checksums.google_crc32c
    _framing.walk(data, "x")  # the tables are built once per process, from google_crc32c too
    monkeypatch.setattr(_checksums, "google_crc32c", Counting)
    _framing.walk(data, "x")
    assert len(calls) <= len(starts) + 3  # the schema message's own checksum: 3 calls
    assert sum(calls) <= len(data)  # each byte hashed once


def test_a_batch_without_a_checksum_that_is_not_promised_starts_the_next_span_after_it(tmp_path) -> None:
    data, starts = _sealed_without_promise(60, 30)
    path = tmp_path / "run.arrow"
    path.write_bytes(data)
    assert read(path).num_rows == 120
    size = starts[2] - starts[1]
    assert _error_offset(_flip(data, starts[31] + size - 1))[0] == starts[31]
    assert _error_offset(_flip(data, starts[29] + size - 1))[0] == starts[29]
