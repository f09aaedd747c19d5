"""The reader follows spec/FORMAT.md where the text decides (issue 12, items 1-10; issue 9, bug 9).

Torn tail vs corruption, codecs, footer vs stream, the resume point, `ordered`, nulls, reductions, the
`lossfmt.meta` encoding, the bytes-level entry and the bounded `iter_batches`.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pyarrow as pa
import pytest
from filebytes import batch_ends, closed_bytes, live_bytes, message_ends, unverified

from lossfmt import LossFormatError, LossWriter, _decode, _flatbuf, _framing, follow, read, reader, schema

T0_US = 1_700_000_000_000_000


def _batch(
    sch: pa.Schema, start: int, n: int, tags: tuple[str, ...] = ("loss",), epoch=None
) -> pa.RecordBatch:
    tag_type = sch.field("tag").type
    return pa.record_batch(
        [
            pa.array(range(start, start + n), pa.int64()),
            pa.DictionaryArray.from_arrays(
                pa.array([i % len(tags) for i in range(n)], pa.int32()), list(tags), ordered=tag_type.ordered
            ),
            pa.array([0.5 * i for i in range(start, start + n)]),
            pa.array([1] * n, pa.int64()),
            pa.array([epoch] * n, pa.int64()),
            pa.array([T0_US + i for i in range(n)], schema.WALL_TIME_TYPE),
            pa.DictionaryArray.from_arrays(pa.array([0] * n, pa.int8()), ["mean", "sum"]),
        ],
        schema=sch,
    )


def _put(path, data: bytes):
    path.write_bytes(data)
    return path


@pytest.fixture
def sch() -> pa.Schema:
    return schema.make_schema("rules", {"lr": 0.1})


def test_a_complete_undecodable_message_is_corruption_not_a_torn_tail(tmp_path, sch):
    sch = unverified(sch)  # without checksums the decoder itself must notice
    data = bytearray(live_bytes(sch, [_batch(sch, 0, 3), _batch(sch, 3, 3), _batch(sch, 6, 3)]))
    ends = batch_ends(bytes(data))
    second_start = ends[0]  # no dictionary message in between: the second batch starts where the first ends
    data[ends[1] - 40 : ends[1]] = bytes(40)
    path = _put(tmp_path / "bad.arrow", bytes(data))
    with pytest.raises(LossFormatError, match=rf"bad\.arrow: corrupt at byte {second_start}"):
        read(path)
    assert path.read_bytes() == bytes(data)


def test_a_closed_file_whose_footer_schema_differs_from_the_stream_is_a_format_error(tmp_path, sch):
    data = closed_bytes(sch, [_batch(sch, 0, 4)])
    footer_at = data.rindex(b"rules")  # the run name's copy in the footer's schema
    assert footer_at > data.index(schema.EOS)
    damaged = data[:footer_at] + b"ruleZ" + data[footer_at + 5 :]
    with pytest.raises(LossFormatError, match=r"corrupt at byte \d+: the footer's schema differs"):
        reader.scan(_put(tmp_path / "footer.arrow", damaged))


def _footer_version_at(data: bytes) -> int:
    """Where a closed file's footer holds its metadata version (a short; V5 is 4)."""
    start = len(data) - 10 - int.from_bytes(data[-10:-6], "little")
    return _flatbuf.field(data, start, len(data) - 10, _flatbuf.ref(data, start, len(data) - 10, start), 0)


@pytest.mark.parametrize("version", [0, 3, 5, 12])
def test_a_footer_of_another_metadata_version_is_a_format_error(tmp_path, sch, version):
    """pyarrow reads such a footer; the JS reader refused it and lossfmt read it (the readers disagreed)."""
    data = bytearray(closed_bytes(sch, [_batch(sch, 0, 4)]))
    at = _footer_version_at(bytes(data))
    assert data[at : at + 2] == b"\x04\x00"
    data[at : at + 2] = version.to_bytes(2, "little")
    with pytest.raises(LossFormatError, match=rf"the footer's metadata version is {version + 1}, not V5"):
        read(_put(tmp_path / "version.arrow", bytes(data)))


def test_a_footer_whose_blocks_do_not_match_the_stream_is_a_format_error(tmp_path, sch):
    data = bytearray(closed_bytes(unverified(sch), [_batch(unverified(sch), 0, 4)]))
    offset = message_ends(bytes(data), "dictionary")[-1]  # the record batch starts here
    at = bytes(data).rindex(offset.to_bytes(8, "little"))
    data[at] ^= 0x08  # the footer now points 8 bytes off
    with pytest.raises(LossFormatError, match="footer's record batch blocks do not match"):
        reader.scan(_put(tmp_path / "blocks.arrow", bytes(data)))


def test_any_damage_to_a_closed_file_is_an_error_never_a_prefix(tmp_path, sch):
    data = closed_bytes(sch, [_batch(sch, 0, 4)])
    eos = data.rindex(schema.EOS, 0, len(data) - 10)
    cut_inside = data[: eos - 16] + data[eos:]  # a message now runs into the footer
    with pytest.raises(LossFormatError, match="corrupt"):
        reader.scan(_put(tmp_path / "c.arrow", cut_inside))


def test_a_codec_the_reader_lacks_is_an_error_naming_it(tmp_path, sch, monkeypatch):
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression="lz4")
    plain = unverified(sch)
    with pa.ipc.new_stream(sink, plain, options=options) as w:
        w.write_batch(_batch(plain, 0, 3))
    path = _put(tmp_path / "lz4.arrow", schema.MAGIC + sink.getvalue().to_pybytes())
    assert read(path).num_rows == 3
    available = _flatbuf.codec_available  # a pyarrow built without LZ4 (ours has it: simulated here)
    monkeypatch.setattr(_flatbuf, "codec_available", lambda name: name != "lz4" and available(name))
    # the layouts parsed above (with LZ4 there) are cached: a pyarrow without LZ4 never had them
    monkeypatch.setattr(_framing, "_LAYOUTS", _flatbuf.Templates())
    with pytest.raises(
        LossFormatError, match=r"lz4\.arrow: corrupt at byte \d+: .*LZ4, which this pyarrow lacks"
    ):
        read(path)


def test_end_is_after_the_last_batch_so_a_torn_flushs_dictionary_is_dropped(tmp_path, sch):
    data = live_bytes(sch, [_batch(sch, 0, 2), _batch(sch, 2, 2, ("loss", "new"))])
    ends = batch_ends(data)
    dictionary_end = max(e for e in message_ends(data, "dictionary") if e > ends[0])
    path = _put(tmp_path / "t.arrow", data[: dictionary_end + 5])  # the new tag's dictionary, then 5 bytes
    result = reader.scan(path)
    assert result.end == ends[0] and result.table.num_rows == 2


def test_resume_after_a_torn_flush_keeps_every_complete_event(tmp_path):
    path = tmp_path / "r.arrow"
    with LossWriter(path) as w:
        for i in range(5):
            w.add(i, float(i))
    with LossWriter(path) as w:
        w.add(5, 5.0, tag="new")
        w.flush()
        live = path.read_bytes()
    torn = live[: batch_ends(live)[-1] - 3]
    _put(path, torn)
    with LossWriter(path) as w:
        w.add(6, 6.0)
    assert read(path).column("step").to_pylist() == [0, 1, 2, 3, 4, 6]


def test_a_corrupt_file_is_refused_by_a_resuming_writer_and_left_untouched(tmp_path, sch):
    data = bytearray(live_bytes(sch, [_batch(sch, 0, 3), _batch(sch, 3, 3)]))
    data[batch_ends(bytes(data))[0] - 12] ^= 0x01
    path = _put(tmp_path / "keep.arrow", bytes(data))
    with pytest.raises(LossFormatError, match="checksum"):
        LossWriter(path)
    assert path.read_bytes() == bytes(data)


def test_an_ordered_dictionary_flag_is_ignored(tmp_path):
    fields = [
        pa.field(f.name, pa.dictionary(f.type.index_type, f.type.value_type, ordered=True), nullable=False)
        if pa.types.is_dictionary(f.type) and f.name == "tag"
        else f
        for f in schema.FIELDS
    ]
    sch = pa.schema(fields, metadata={"lossfmt.version": "1"})
    path = _put(tmp_path / "o.arrow", live_bytes(sch, [_batch(sch, 0, 2)]))
    assert read(path).column("tag").to_pylist() == ["loss", "loss"]


def test_nulls_in_a_non_nullable_column_are_corruption(tmp_path):
    sch = pa.schema(
        [pa.field(f.name, f.type, nullable=True) for f in schema.FIELDS], metadata={"lossfmt.version": "1"}
    )
    good = _batch(sch, 0, 2)
    bad = good.set_column(3, "count", pa.array([1, None], pa.int64()))
    path = _put(tmp_path / "n.arrow", live_bytes(sch, [good, bad]))
    with pytest.raises(LossFormatError, match=r"n\.arrow: corrupt at byte \d+: nulls in .*count") as info:
        read(path)
    _assert_offset_named(info.value, path)


def test_an_unknown_reduction_is_corruption(tmp_path):
    sch = pa.schema(schema.FIELDS, metadata={"lossfmt.version": "1"})
    batch = _batch(sch, 0, 2)
    odd = pa.DictionaryArray.from_arrays(pa.array([0, 0], pa.int8()), ["median"])
    field = pa.field("reduction", odd.type, nullable=False)
    path = _put(tmp_path / "r.arrow", live_bytes(sch, [batch.set_column(6, field, odd)]))
    with pytest.raises(LossFormatError, match="unknown reduction 'median'") as info:
        read(path)
    _assert_offset_named(info.value, path)


def _assert_offset_named(error: LossFormatError, path: Path) -> None:
    """The error's `offset` is the byte its message names, where a record batch of `path` starts."""
    named = int(re.search(r"corrupt at byte (\d+)", str(error)).group(1))
    assert error.offset == named
    messages = _framing.walk(path.read_bytes(), "f").messages
    assert named in [m.start for m in messages if m.kind == _framing.RECORD_BATCH]


def test_non_finite_meta_is_rfc_json_and_old_tokens_still_read(tmp_path):
    sch = schema.make_schema("m", {"lr": math.nan, "clip": [math.inf, -math.inf], "ok": 1.5})
    text = sch.metadata[b"lossfmt.meta"].decode()
    json.loads(text, parse_constant=lambda token: pytest.fail(f"non-RFC token {token} in lossfmt.meta"))
    meta = schema.run_info(sch)["meta"]
    assert math.isnan(meta["lr"]) and meta["clip"] == [math.inf, -math.inf] and meta["ok"] == 1.5
    old = unverified(sch).with_metadata({b"lossfmt.version": b"1", b"lossfmt.meta": b'{"lr": NaN}'})
    path = _put(tmp_path / "old.arrow", live_bytes(old, [_batch(old, 0, 1)]))
    assert math.isnan(schema.run_info(reader.scan(path).schema)["meta"]["lr"])


def test_scan_bytes_reads_a_file_from_memory_and_names_it_in_errors(tmp_path, sch):
    data = closed_bytes(sch, [_batch(sch, 0, 5)])
    result = reader.scan_bytes(data, "s3://bucket/run.arrow", columns=["step", "value"])
    assert result.closed and result.table.column_names == ["step", "value"]
    assert result.table.column("step").to_pylist() == [0, 1, 2, 3, 4]
    at = message_ends(data, "record batch")[0] - 10  # inside the batch's body
    with pytest.raises(LossFormatError, match=r"s3://bucket/run\.arrow: corrupt at byte \d+"):
        reader.scan_bytes(data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :], "s3://bucket/run.arrow")


@pytest.mark.parametrize("deltas", [False, True])
def test_iter_batches_yields_every_verified_event_a_window_at_a_time(tmp_path, sch, monkeypatch, deltas):
    monkeypatch.setattr(_decode, "WINDOW", 4096)  # many windows even for this small file
    batches, tags = [], ["loss"]
    for i in range(120):
        if i % 25 == 0:
            tags.append(f"t{i}")
        batches.append(_batch(sch, 3 * i, 3, tuple(tags), epoch=i if i % 2 else None))
    data = live_bytes(sch, batches, deltas=deltas)
    path = _put(tmp_path / "w.arrow", data)
    got_schema, it = _framing.iter_batches(path)
    got = pa.Table.from_batches(list(it)).unify_dictionaries().combine_chunks()
    assert got_schema.equals(reader.scan(path).schema, check_metadata=True)
    assert got.to_pylist() == read(path).to_pylist()
    assert got.column("step").to_pylist() == list(range(360))
    end = batch_ends(data)[59]
    _, it = _framing.iter_batches(path, end)
    assert sum(len(b) for b in it) == 180
    damaged = bytearray(data)
    damaged[batch_ends(data)[100] - 10] ^= 0x20
    _, it = _framing.iter_batches(_put(tmp_path / "bad.arrow", bytes(damaged)))
    with pytest.raises(LossFormatError, match="checksum"):
        list(it)


@pytest.mark.parametrize(("window", "most"), [(4096, 251), (1 << 20, 8)])
def test_iter_batches_bounds_the_rows_of_each_batch_whatever_the_file_size(
    tmp_path, sch, monkeypatch, window, most
):
    """Issue 9: close() streams the file, so no batch may hold more than ROWS rows of small flushes (a live
    file small enough for one window used to decode as one batch)."""
    monkeypatch.setattr(_decode, "WINDOW", window)
    monkeypatch.setattr(_decode, "ROWS", 60)
    sizes = [1] * 100 + [150] + [1] * 100 + [2] * 50
    batches, step = [], 0
    for i, n in enumerate(sizes):
        batches.append(_batch(sch, step, n, ("loss", f"t{i // 40}")))
        step += n
    path = _put(tmp_path / "w.arrow", live_bytes(sch, batches, deltas=True))
    got = list(_framing.iter_batches(path)[1])
    assert [len(b) for b in got if len(b) > 60] == [150]  # a flush larger than ROWS comes as written
    assert len(got) <= most  # small flushes come combined (within a window)
    table = pa.Table.from_batches(got).unify_dictionaries().combine_chunks()
    assert table.to_pylist() == read(path).to_pylist()
    assert table.column("step").to_pylist() == list(range(step))


def test_iter_batches_yields_the_verified_prefix_before_raising_for_damage(tmp_path, sch):
    """Salvage keeps what iter_batches yields before the error: every batch before the damaged one."""
    data = live_bytes(sch, [_batch(sch, 3 * i, 3) for i in range(50)])
    damaged = bytearray(data)
    damaged[batch_ends(data)[30] - 10] ^= 0x20  # inside batch 30's body
    _, it = _framing.iter_batches(_put(tmp_path / "bad.arrow", bytes(damaged)))
    got = []
    with pytest.raises(LossFormatError, match=rf"corrupt at byte {batch_ends(data)[29]}: .*checksum"):
        got.extend(it)
    assert sum(len(b) for b in got) == 90


def test_iter_batches_of_a_closed_file_checks_its_footer(tmp_path, sch):
    path = _put(tmp_path / "c.arrow", closed_bytes(sch, [_batch(sch, 0, 7)]))
    _, it = _framing.iter_batches(path)
    assert [len(b) for b in it] == [7]


def test_the_follower_reports_corruption_in_appended_bytes(tmp_path, sch):
    data = live_bytes(sch, [_batch(sch, 0, 2), _batch(sch, 2, 2)])
    first = batch_ends(data)[0]
    path = _put(tmp_path / "f.arrow", data[:first])
    follower = follow(path)
    assert follower.poll().table.num_rows == 2
    damaged = bytearray(data)
    damaged[len(data) - 12] ^= 0x01
    _put(path, bytes(damaged))
    for _ in range(2):  # reported at every poll, not once and then silently skipped
        with pytest.raises(LossFormatError, match=rf"f\.arrow: corrupt at byte {first}"):
            follower.poll()


def test_the_follower_reports_an_undecodable_append_at_every_poll(tmp_path, sch):
    plain = unverified(sch)  # no checksums: the decoder is what finds it
    data = live_bytes(plain, [_batch(plain, 0, 2), _batch(plain, 2, 2)])
    first = batch_ends(data)[0]
    path = _put(tmp_path / "u.arrow", data[:first])
    follower = follow(path)
    assert follower.poll().table.num_rows == 2
    _put(path, data[: len(data) - 40] + bytes(40))
    for _ in range(2):
        with pytest.raises(LossFormatError, match=rf"u\.arrow: corrupt at byte {first}"):
            follower.poll()


@pytest.mark.parametrize("many", [False, True])
def test_unused_dictionary_entries_are_allowed_and_never_shift_a_tag(tmp_path, sch, many):
    batches = []
    for i in range(40 if many else 2):  # 40 batches: the column-by-column path; 2: Arrow's reader
        tags = pa.DictionaryArray.from_arrays(pa.array([2, 0], pa.int32()), ["loss", "unused", "val"])
        batches.append(_batch(sch, 2 * i, 2).set_column(1, sch.field("tag"), tags))
    table = read(_put(tmp_path / "u.arrow", live_bytes(sch, batches)))
    assert table.column("tag").to_pylist() == ["val", "loss"] * len(batches)


def _renumber_reduction_dictionary(data: bytes, new_id: int) -> bytes:
    """`data` with the reduction dictionary's id (1, as pyarrow numbers it) changed to `new_id` in the
    schema message and in its dictionary messages (same size: int64 fields patched in place), resealed."""
    import struct

    from lossfmt import _flatbuf

    out = bytearray(data)
    meta_len = struct.unpack_from("<i", data, 12)[0]
    lo, hi = 16, 16 + meta_len
    root = _flatbuf.ref(data, lo, hi, lo)
    header = _flatbuf.ref(data, lo, hi, _flatbuf.field(data, lo, hi, root, 2))
    start, n = _flatbuf.vector(data, lo, hi, _flatbuf.field(data, lo, hi, header, 1), 4)
    patched = 0
    for i in range(n):
        table = _flatbuf.ref(data, lo, hi, start + 4 * i)
        encoding_at = _flatbuf.field(data, lo, hi, table, 4)
        if encoding_at:
            id_at = _flatbuf.field(data, lo, hi, _flatbuf.ref(data, lo, hi, encoding_at), 0)
            if id_at and struct.unpack_from("<q", data, id_at)[0] == 1:
                struct.pack_into("<q", out, id_at, new_id)
                patched += 1
    for m in _framing.walk(data, "x").messages:
        if m.kind == _framing.DICTIONARY and m.dict_id == 1:
            mlo, mhi = m.start + 8, m.body
            mroot = _flatbuf.ref(data, mlo, mhi, mlo)
            mheader = _flatbuf.ref(data, mlo, mhi, _flatbuf.field(data, mlo, mhi, mroot, 2))
            struct.pack_into("<q", out, _flatbuf.field(data, mlo, mhi, mheader, 0), new_id)
            patched += 1
    assert patched >= 2
    return _framing.Sealer().seal(bytes(out))


@pytest.mark.parametrize("many", [False, True])
def test_dictionaries_are_matched_by_the_ids_the_schema_declares(tmp_path, sch, many):
    batches = [_batch(sch, 2 * i, 2) for i in range(40 if many else 2)]
    data = _renumber_reduction_dictionary(live_bytes(sch, batches), 7)
    path = _put(tmp_path / "ids.arrow", data)
    assert _framing.walk(data, "ids").dict_ids == {"tag": 0, "reduction": 7}
    table = read(path)
    assert table.column("reduction").to_pylist() == ["mean"] * 2 * len(batches)
    assert table.column("tag").to_pylist() == ["loss"] * 2 * len(batches)


def test_an_impossible_metadata_length_at_the_end_is_corruption_not_a_torn_tail(tmp_path, sch):
    data = live_bytes(sch, [_batch(sch, 0, 2), _batch(sch, 2, 2)])
    last = batch_ends(data)[0]  # the second batch's message starts here
    for bad in (1 << 24, 1004):  # above 2^20, or not a multiple of 8: no writer announces these
        damaged = data[: last + 4] + bad.to_bytes(4, "little") + data[last + 8 :]
        with pytest.raises(LossFormatError, match=rf"corrupt at byte {last}: impossible metadata length"):
            read(_put(tmp_path / "m.arrow", damaged))


def test_the_layout_cache_is_bounded_and_parses_as_a_fresh_parse():
    cache = _flatbuf.Templates(limit=3)
    for n in [*range(1, 7), 2, 5]:  # six layouts through a cache of three, then two seen before
        plain = pa.schema([(f"c{i}", pa.int64()) for i in range(n)])
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, plain) as w:
            w.write_batch(pa.record_batch([pa.array([n, 2 * n])] * n, schema=plain))
        data = sink.getvalue().to_pybytes()
        pos = 8 + _flatbuf.i32(data, 4)[0]  # the record batch after the schema message
        meta_len = _flatbuf.i32(data, pos + 4)[0]
        assert cache.message(data, pos, meta_len) == _flatbuf.Templates().message(data, pos, meta_len)
        assert sum(map(len, cache._by_length.values())) <= 3


def test_a_layout_seen_in_another_file_does_not_hide_damage_to_this_one(tmp_path, sch):
    data = closed_bytes(sch, [_batch(sch, 0, 4)])
    assert read(_put(tmp_path / "good.arrow", data)).num_rows == 4  # its layout is now cached
    key = data.rindex(_flatbuf.CHECKSUM_KEY)  # the record batch's checksum key
    damaged = data[:key] + b"L" + data[key + 1 :]
    with pytest.raises(LossFormatError, match=r"corrupt at byte \d+: record batch without its lossfmt\.crc"):
        read(_put(tmp_path / "bad.arrow", damaged))


def test_without_checksums_a_damaged_buffer_is_rejected_whatever_was_read_before(tmp_path, sch):
    plain = unverified(sch)  # an older writer's file: nothing covers its metadata
    data = live_bytes(plain, [_batch(plain, 0, 6)])
    assert read(_put(tmp_path / "good.arrow", data)).num_rows == 6  # its layout seen first
    batch = next(
        m for m in _framing.walk(data, "good", verify=False).messages if m.kind == _flatbuf.RECORD_BATCH
    )
    damaged = bytearray(data)
    damaged[batch.buffers_at : batch.buffers_at + 8] = (1 << 40).to_bytes(
        8, "little"
    )  # the first buffer's offset
    with pytest.raises(LossFormatError, match="a buffer lies outside the message body"):
        read(_put(tmp_path / "bad.arrow", bytes(damaged)))
