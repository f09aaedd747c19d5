"""Integrity (spec/FORMAT.md §1.6, issue 14): a damaged byte is detected, never read as a different loss.

Seeded fuzz over files a real LossWriter wrote (live and closed): a flipped bit inside any message body is
always a LossFormatError; a flip, cut or appended garbage anywhere else gives the original events (or, for a
live file, a prefix of them in whole batches) or a LossFormatError; never another exception, never a hang,
never a different value.
"""

from __future__ import annotations

import math
import random
import struct
from pathlib import Path

import pyarrow as pa
import pytest
from filebytes import closed_bytes, live_bytes, unverified

from lossfmt import LossFormatError, LossWriter, _framing, follow, read, reader, schema

SEED = 20261201


def _events(table: pa.Table) -> list[tuple]:
    """Rows with floats compared bit for bit (NaN payloads, -0.0)."""
    cols = [table.column(c).to_pylist() for c in schema.COLUMNS]
    rows = []
    for step, tag, value, count, epoch, wall, red in zip(*cols, strict=True):
        rows.append((step, tag, struct.pack("<d", value), count, epoch, wall, red))
    return rows


def _write_run(tmp_path: Path) -> tuple[bytes, bytes]:
    """(live bytes after several flushes, closed bytes after close) of one real run with awkward values."""
    path = tmp_path / "run.arrow"
    values = [2.5, math.nan, -0.0, math.inf, -math.inf, 1e-300, 3.25]
    with LossWriter(path, meta={"lr": 0.1, "name": "fuzz"}) as w:
        for flush in range(6):
            for i in range(5):
                step = flush * 5 + i
                w.add(step, values[step % len(values)], count=step + 1, epoch=flush if i % 2 else None)
                w.add(step, 0.5 * step, tag=f"tag{flush}", reduction="sum")
            w.flush()
        live = path.read_bytes()
    return live, path.read_bytes()


@pytest.fixture(scope="module")
def run_files(tmp_path_factory) -> dict[str, bytes]:
    live, closed = _write_run(tmp_path_factory.mktemp("run"))
    return {"live": live, "closed": closed}


def _bodies(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of every content message's metadata and body, after its 8-byte prefix (a flipped length
    in the prefix may make a message look torn: a prefix of the events, checked by the test of any bit)."""
    layout = _framing.walk(data, "clean")
    return [(m.start + 8, m.end) for m in layout.messages]


def _outcome(path: Path) -> list[tuple] | None:
    """The events `read` returns, or None for a LossFormatError naming the file (anything else fails)."""
    try:
        table = read(path)
    except LossFormatError as exc:
        assert path.name in str(exc)
        return None
    table.validate(full=True)
    return _events(table)


def _check_prefix(got: list[tuple] | None, original: list[tuple], closed: bool) -> None:
    if got is None:
        return
    if closed:
        assert got == original
    else:
        assert got == original[: len(got)]


def test_every_batch_of_a_writers_file_carries_a_verified_checksum(run_files):
    for data in run_files.values():
        layout = _framing.walk(data, "run")
        batches = [m for m in layout.messages if m.kind == _framing.RECORD_BATCH]
        assert batches and all(m.crc_at > 0 for m in batches)
        assert all(data[m.crc_at : m.crc_at + 8] != b"00000000" for m in batches)
        assert schema.run_info(layout.schema)["checksum"] == "crc32c"


@pytest.mark.parametrize("state", ["live", "closed"])
def test_a_flipped_bit_inside_any_message_is_always_an_error(tmp_path, run_files, state):
    data = run_files[state]
    rng = random.Random(SEED)
    spans = _bodies(data)
    original = _events(read(_put(tmp_path / "clean.arrow", data)))
    path = tmp_path / "flipped.arrow"
    for _ in range(1200):
        start, end = spans[rng.randrange(len(spans))]
        bit = rng.randrange(8 * start, 8 * end)
        got = _outcome(_put(path, _flip(data, bit)))
        assert got is None, f"bit {bit} flipped inside a message read without error"
    assert original


@pytest.mark.parametrize("state", ["live", "closed"])
def test_a_flipped_bit_anywhere_never_reads_as_a_different_value(tmp_path, run_files, state):
    data = run_files[state]
    rng = random.Random(SEED + 1)
    original = _events(read(_put(tmp_path / "clean.arrow", data)))
    meta = schema.run_info(reader.scan(tmp_path / "clean.arrow").schema)
    path = tmp_path / "flipped.arrow"
    for _ in range(600):
        bit = rng.randrange(8 * len(data))
        _put(path, _flip(data, bit))
        got = _outcome(path)
        _check_prefix(got, original, closed=state == "closed" and bit // 8 >= 8)
        if got is not None:
            assert schema.run_info(reader.scan(path).schema) == meta, f"bit {bit} changed the metadata"


@pytest.mark.parametrize("state", ["live", "closed"])
def test_cuts_and_appended_garbage_give_a_prefix_or_an_error(tmp_path, run_files, state):
    data = run_files[state]
    rng = random.Random(SEED + 2)
    original = _events(read(_put(tmp_path / "clean.arrow", data)))
    path = tmp_path / "damaged.arrow"
    for _ in range(150):
        cut = rng.randrange(len(data))
        got = _outcome(_put(path, data[:cut]))
        _check_prefix(got, original, closed=False)
        garbage = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))
        got = _outcome(_put(path, data + garbage))
        _check_prefix(got, original, closed=False)


@pytest.mark.parametrize("state", ["live", "closed"])
def test_damage_never_modifies_the_file_and_the_follower_agrees(tmp_path, run_files, state):
    data = run_files[state]
    rng = random.Random(SEED + 3)
    spans = _bodies(data)
    path = tmp_path / "flipped.arrow"
    for _ in range(100):
        start, end = spans[rng.randrange(len(spans))]
        damaged = _flip(data, rng.randrange(8 * start, 8 * end))
        _put(path, damaged)
        with pytest.raises(LossFormatError, match=r"flipped\.arrow: corrupt at byte \d+"):
            follow(path).poll()
        with pytest.raises(LossFormatError):
            reader.scan(path)
        assert path.read_bytes() == damaged


def test_the_error_names_the_batch_whose_span_was_damaged(tmp_path, run_files):
    data = run_files["live"]
    layout = _framing.walk(data, "clean")
    batches = [m for m in layout.messages if m.kind == _framing.RECORD_BATCH]
    target = batches[3]
    damaged = bytearray(data)
    damaged[target.end - 20] ^= 0x04  # inside the fourth batch's body
    path = _put(tmp_path / "one.arrow", bytes(damaged))
    with pytest.raises(LossFormatError, match=rf"one\.arrow: corrupt at byte {target.start}: .*checksum"):
        read(path)


def test_a_resumed_file_keeps_verifying_across_both_streams(tmp_path):
    path = tmp_path / "resumed.arrow"
    with LossWriter(path) as w:
        w.add(0, 1.0)
    with LossWriter(path) as w:
        w.add(1, 2.0, tag="new")
        w.flush()
        live = path.read_bytes()
    assert read(path).column("step").to_pylist() == [0, 1]
    layout = _framing.walk(live, "live")
    assert not layout.closed and len([m for m in layout.messages if m.kind == _framing.RECORD_BATCH]) == 2
    last = layout.messages[-1]
    damaged = bytearray(live)
    damaged[last.end - 9] ^= 1
    with pytest.raises(LossFormatError, match="checksum"):
        read(_put(tmp_path / "bad.arrow", bytes(damaged)))


@pytest.mark.parametrize("state", ["live", "closed"])
def test_verify_false_reads_damage_that_verification_catches(tmp_path, run_files, state):
    data = run_files[state]
    original = _events(read(_put(tmp_path / "clean.arrow", data)))
    path = tmp_path / "flipped.arrow"
    changed = 0
    for start, end in _bodies(data):
        for bit in range(8 * max(start, end - 64), 8 * end):  # the end of each body: values, not lengths
            _put(path, _flip(data, bit))
            try:
                got = _events(read(path, verify=False))
            except LossFormatError:
                continue  # damage the structure or decoding catches anyway
            with pytest.raises(LossFormatError, match=r"flipped\.arrow: corrupt at byte \d+: .*checksum"):
                read(path)
            changed += got != original
        if changed:
            break
    assert changed, "no flip read back as different values without verification"
    assert reader.scan(path, verify=False).table.num_rows == len(original)


def test_verify_false_still_reads_a_file_with_a_wrong_checksum_everywhere(tmp_path, run_files):
    pytest.importorskip("pandas")
    from lossfmt import read_pandas

    data = bytearray(run_files["live"])
    for m in _framing.walk(bytes(data), "clean").messages:
        if m.crc_at >= 0:
            data[m.crc_at : m.crc_at + 8] = b"%08x" % (int(data[m.crc_at : m.crc_at + 8], 16) ^ 1)
    path = _put(tmp_path / "wrong.arrow", bytes(data))
    for call in (read, read_pandas, reader.scan):
        with pytest.raises(LossFormatError, match="checksum"):
            call(path)
    clean = _events(read(_put(tmp_path / "clean.arrow", run_files["live"])))
    assert _events(read(path, verify=False)) == clean
    assert _events(reader.scan(path, verify=False).table) == clean
    assert len(read_pandas(path, verify=False)) == len(clean)


def test_verify_false_still_checks_the_structure(tmp_path, run_files):
    data = run_files["closed"]
    cut = _put(tmp_path / "cut.arrow", data[:-40] + data[-6:])  # inside the footer, trailing magic kept
    with pytest.raises(LossFormatError, match=r"cut\.arrow: corrupt"):
        read(cut, verify=False)
    assert cut.read_bytes() == data[:-40] + data[-6:]


@pytest.mark.parametrize("bad", ["no", 0, None, 1.0])
def test_verify_must_be_a_bool(tmp_path, run_files, bad):
    pytest.importorskip("pandas")
    from lossfmt import read_pandas

    path = _put(tmp_path / "run.arrow", run_files["closed"])
    for call in (read, read_pandas, reader.scan):
        with pytest.raises(TypeError, match="verify must be True or False"):
            call(path, verify=bad)


def test_files_without_checksums_still_read(tmp_path):
    sch = unverified(schema.make_schema("old"))
    batch = _batch(sch, 3)
    for data in (live_bytes(sch, [batch, batch]), closed_bytes(sch, [batch])):
        table = read(_put(tmp_path / "old.arrow", data))
        assert table.num_rows in (3, 6)
        assert b"lossfmt.crc32c" not in data


def test_a_missing_checksum_in_a_file_that_promises_them_is_an_error(tmp_path):
    sch = schema.make_schema("p")
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, sch) as w:
        w.write_batch(_batch(sch, 2))  # no placeholder: this batch has no checksum
    data = _framing.Sealer().seal(schema.MAGIC + sink.getvalue().to_pybytes())
    with pytest.raises(LossFormatError, match=r"without its lossfmt\.crc32c checksum"):
        read(_put(tmp_path / "p.arrow", data))


def test_an_unknown_checksum_algorithm_is_refused(tmp_path):
    sch = unverified(schema.make_schema("x"))
    sch = sch.with_metadata({**sch.metadata, b"lossfmt.checksum": b"xxh3"})
    with pytest.raises(LossFormatError, match="checksum 'xxh3' is not supported"):
        read(_put(tmp_path / "x.arrow", live_bytes(sch, [_batch(sch, 1)])))


def test_sealing_file_output_equals_sealing_the_whole_stream(tmp_path):
    sch = schema.make_schema("s")
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, sch) as w:
        w.write_batch(_batch(sch, 4), custom_metadata=_framing.BATCH_METADATA)
    whole = _framing.Sealer().seal(sink.getvalue().to_pybytes())
    with open(tmp_path / "piecewise.arrow", "wb") as f:
        sealing = _framing.SealingFile(f)
        with pa.ipc.new_file(sealing, sch) as w:
            w.write_batch(_batch(sch, 4), custom_metadata=_framing.BATCH_METADATA)
        sealing.finish()
    piecewise = (tmp_path / "piecewise.arrow").read_bytes()
    assert piecewise == whole
    assert reader.scan(tmp_path / "piecewise.arrow").closed


def _batch(sch: pa.Schema, n: int) -> pa.RecordBatch:
    return pa.record_batch(
        [
            pa.array(range(n), pa.int64()),
            pa.array(["loss"] * n).dictionary_encode(),
            pa.array([0.5] * n),
            pa.array([1] * n, pa.int64()),
            pa.array([None] * n, pa.int64()),
            pa.array([0] * n, schema.WALL_TIME_TYPE),
            pa.DictionaryArray.from_arrays(pa.array([0] * n, pa.int8()), pa.array(["mean", "sum"])),
        ],
        schema=sch,
    )


def _flip(data: bytes, bit: int) -> bytes:
    damaged = bytearray(data)
    damaged[bit // 8] ^= 1 << (bit % 8)
    return bytes(damaged)


def _put(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.slow
def test_many_more_flips_cuts_and_garbage_on_a_resumed_many_flush_file(tmp_path):
    """The long version: 6,000 single-bit flips and 600 cuts/appends on a file of 60 flushes, resumed once."""
    path = tmp_path / "long.arrow"
    for part in range(2):
        with LossWriter(path, meta={"part": part}) as w:
            for flush in range(30):
                for i in range(4):
                    w.add(part * 1000 + flush * 4 + i, math.sin(i) * 1e6, tag=f"t{flush % 7}", epoch=flush)
                w.flush()
            live = path.read_bytes()
    closed = path.read_bytes()
    rng = random.Random(SEED + 9)
    target = tmp_path / "damaged.arrow"
    for state, data in (("live", live), ("closed", closed)):
        original = _events(read(_put(tmp_path / "clean.arrow", data)))
        spans = _bodies(data)
        for _ in range(2000):
            start, end = spans[rng.randrange(len(spans))]
            assert _outcome(_put(target, _flip(data, rng.randrange(8 * start, 8 * end)))) is None
        for _ in range(1000):
            bit = rng.randrange(8 * len(data))
            got = _outcome(_put(target, _flip(data, bit)))
            _check_prefix(got, original, closed=state == "closed" and bit // 8 >= 8)
        for _ in range(150):
            _check_prefix(_outcome(_put(target, data[: rng.randrange(len(data))])), original, closed=False)
            garbage = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
            _check_prefix(_outcome(_put(target, data + garbage)), original, closed=False)


def test_a_sealer_accepts_empty_chunks_before_the_stream_starts():
    sch = schema.make_schema("e")
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, sch) as w:
        w.write_batch(_batch(sch, 2), custom_metadata=_framing.BATCH_METADATA)
    data = schema.MAGIC + sink.getvalue().to_pybytes()
    sealer = _framing.Sealer()
    assert sealer.seal(b"") == b""
    assert sealer.seal(data) == _framing.Sealer().seal(data)


def test_a_length_flipped_to_look_torn_is_reported_once_more_bytes_follow(tmp_path):
    """spec §1.2's known limit: a last message whose prefix length grew looks like a torn tail (the reader
    returns the batches before it), but later flushes complete it, and then it fails its checksum."""
    path = tmp_path / "run.arrow"
    w = LossWriter(path, flush_secs=3600)
    ends = []
    for i in range(5):
        w.add(i, 1.0)
        w.flush()
        ends.append(path.stat().st_size)
    data = bytearray(path.read_bytes())
    meta_len = struct.unpack_from("<i", data, ends[-2] + 4)[0]
    struct.pack_into("<i", data, ends[-2] + 4, meta_len + 512)
    with open(path, "r+b") as f:
        f.write(data)
    assert read(path).num_rows == 4  # indistinguishable from a crash inside the last flush
    for i in range(5, 40):
        w.add(i, 1.0)
        w.flush()
    with pytest.raises(LossFormatError, match=rf"run\.arrow: corrupt at byte {ends[-2]}: .*checksum"):
        read(path)
    with pytest.raises(LossFormatError, match=rf"corrupt at byte {ends[-2]}"):
        w.close()
    assert w.closed


def _footer_span(data: bytes) -> tuple[int, int]:
    """(start, end) of a closed file's footer flatbuffer (before its length and the trailing magic)."""
    length = struct.unpack_from("<i", data, len(data) - 10)[0]
    return len(data) - 10 - length, len(data) - 10


def test_a_closed_file_read_despite_a_flipped_footer_bit_opens_in_pyarrow_as_the_same_events(
    tmp_path, run_files
):
    """Other tools read a closed file through its footer (pandas, Polars and DuckDB through Arrow's file
    readers), lossfmt through the stream it checks the footer against: whatever footer damage lossfmt reads
    through, pyarrow's file reader reads as the same events too (spec/js checks the JS reader agrees)."""
    data = run_files["closed"]
    original = _outcome(_put(tmp_path / "clean.arrow", data))
    path = tmp_path / "flipped.arrow"
    start, end = _footer_span(data)
    for bit in range(8 * start, 8 * end):
        got = _outcome(_put(path, _flip(data, bit)))
        if got is None:
            continue
        assert got == original, f"bit {bit} of the footer changed the events"
        try:
            theirs = pa.ipc.open_file(pa.py_buffer(path.read_bytes())).read_all()
        except (pa.ArrowException, OSError, ValueError) as exc:
            pytest.fail(f"bit {bit} of the footer: lossfmt reads the file, pyarrow cannot ({exc})")
        assert _events(theirs) == original, f"bit {bit} of the footer: pyarrow reads other events"


def test_a_length_grown_past_the_end_mid_file_is_corruption_and_resume_and_compact_keep_every_byte(
    tmp_path, run_files
):
    """A flipped bit made a message's metadata length run past the end of a crashed run's file: readers took
    everything from it on for a torn tail, and a resume or compact() cut it off, deleting the complete,
    checksummed flushes after it (the resume warning said every complete event was kept). Whole messages
    follow it: it is damage, and nothing modifies the file."""
    from lossfmt import compact

    data = run_files["live"]
    layout = _framing.walk(data, "clean")
    for m in layout.messages[:-2]:  # every message but the last flush's (whose bytes a crash may cut)
        damaged = bytearray(data)
        damaged[m.start + 6] ^= 1  # the metadata length grows by 65536: past the end of the file
        assert m.start + 8 + struct.unpack_from("<i", damaged, m.start + 4)[0] > len(data)
        path = _put(tmp_path / "run.arrow", bytes(damaged))
        error = rf"run\.arrow: corrupt at byte {m.start}: .*whole messages follow it"
        with pytest.raises(LossFormatError, match=error):
            read(path)
        with pytest.raises(LossFormatError, match=error):
            LossWriter(path).close()
        with pytest.raises(LossFormatError, match=error):
            compact(path)
        assert path.read_bytes() == bytes(damaged)


def test_a_torn_message_cut_inside_a_long_run_of_ff_bytes_is_looked_at_once_per_run(
    tmp_path, monkeypatch, run_files
):
    """An uncompressed flush of many equal values holds long runs of FF bytes; cut inside one, the reader
    looked for whole messages after the cut at every 8th byte of the run, each a Python call (7 s for a 90 MB
    file, 0.07 s otherwise). A message starts only where a run of FF ends; the next flush is still found."""
    from lossfmt import _torn

    data = run_files["live"]
    layout = _framing.walk(data, "clean")
    m = layout.messages[1]  # a complete message with whole messages after it
    torn = struct.pack("<ii", -1, 1 << 20) + b"\xff" * (1 << 19)  # its length runs past the end
    damaged = data[: m.start] + torn + data[m.end :]
    calls: list[int] = []
    tiles = _torn._tiles
    monkeypatch.setattr(_torn, "_tiles", lambda d, at: calls.append(at) or tiles(d, at))
    assert _torn._messages_after(damaged, m.start) == m.start + len(torn)
    assert calls == [m.start + len(torn)]
    with pytest.raises(LossFormatError, match=rf"corrupt at byte {m.start}: .*whole messages follow it"):
        read(_put(tmp_path / "run.arrow", damaged))
