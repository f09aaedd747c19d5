"""Edges of spec/FORMAT.md found by an independent implementation's files: a torn tail that ends with the
trailing magic's bytes, an empty closed file with dictionaries, duplicate columns, malformed metadata."""

from __future__ import annotations

import struct
import warnings

import pyarrow as pa
import pytest
from filebytes import batch_ends, message_ends, unverified

from lossfmt import LossFormatError, LossWriter, read, reader, schema


def _cut_after_magic_bytes(tmp_path):
    """A live file whose second flush (a new tag ending in "ARROW1", stored raw) is cut just after those
    bytes, as a crash may leave it; and the end of its first, complete flush."""
    path = tmp_path / "run.arrow"
    w = LossWriter(path, flush_secs=3600)
    w.add(0, 1.0)
    w.flush()
    first = path.stat().st_size
    w.add(1, 2.0, tag="val/ARROW1")
    w.flush()
    data = path.read_bytes()
    w.close()
    at = data.rfind(b"ARROW1")
    assert at > first, "the tag's bytes are in the second flush"
    path.write_bytes(data[: at + 6])
    return path, first


def test_a_torn_tail_ending_with_the_trailing_magics_bytes_is_a_torn_tail_not_a_closed_file(tmp_path):
    """A file is closed when it ends with ARROW1 after a footer that follows an EOS marker; a torn flush
    that happens to end with those six bytes made the whole run unreadable (and a resume refused)."""
    path, first = _cut_after_magic_bytes(tmp_path)
    scanned = reader.scan(path)
    assert not scanned.closed and scanned.end == first
    assert scanned.table.column("step").to_pylist() == [0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the torn tail is told
        with LossWriter(path) as w:
            w.add(2, 3.0)
    assert read(path).column("step").to_pylist() == [0, 2]


def test_a_closed_file_with_a_damaged_footer_still_fails_as_closed(tmp_path):
    """The EOS marker the footer length points past is what makes a file closed: damage to the footer of such
    a file stays an error, never a silent prefix."""
    path = tmp_path / "run.arrow"
    with LossWriter(path) as w:
        for step in range(5):
            w.add(step, float(step))
    data = bytearray(path.read_bytes())
    data[batch_ends(bytes(data))[-1] + 12] ^= 0xFF  # inside the footer flatbuffer
    path.write_bytes(bytes(data))
    with pytest.raises(LossFormatError, match="corrupt at byte"):
        read(path)


def test_a_tag_table_of_only_the_magics_bytes_reads_in_a_closed_file(tmp_path):
    path = tmp_path / "run.arrow"
    with LossWriter(path) as w:
        w.add(0, 1.0, tag="ARROW1")
    assert read(path).column("tag").to_pylist() == ["ARROW1"]
    assert pa.ipc.open_file(path).read_all().num_rows == 1


def _empty_closed_with_dictionaries() -> bytes:
    """An empty closed file that holds its dictionaries (spec §1.1 allows at most one per id before EOS):
    pyarrow's file of one zero-row batch, with the batch message and its footer block taken out."""
    sch = unverified(schema.make_schema("run"))
    sink = pa.BufferOutputStream()
    empty = pa.record_batch([pa.array([], f.type) for f in sch], schema=sch)
    with pa.ipc.new_file(sink, sch) as writer:
        writer.write_batch(empty)
    data = sink.getvalue().to_pybytes()
    batch_end = batch_ends(data)[0]
    batch_start = message_ends(data)[-2]  # (the last dictionary's end)
    eos = len(data) - 10 - struct.unpack_from("<i", data, len(data) - 10)[0] - 8
    footer = bytearray(data[eos + 8 : len(data) - 10])
    root = struct.unpack_from("<I", footer, 0)[0]
    table = root - struct.unpack_from("<i", footer, root)[0]
    field = root + struct.unpack_from("<H", footer, table + 4 + 2 * 3)[0]  # Footer.recordBatches
    struct.pack_into("<I", footer, field + struct.unpack_from("<I", footer, field)[0], 0)  # no blocks
    stream = data[:batch_start] + data[batch_end : eos + 8]
    return stream + bytes(footer) + struct.pack("<i", len(footer)) + schema.TRAILING_MAGIC


def test_an_empty_closed_file_holding_its_dictionaries_reads_as_empty_and_closed(tmp_path):
    """§1.1 allows dictionaries before the EOS of an empty closed file; the reader called it corrupt ("does
    not end with EOS after its last batch") while pyarrow, pandas and the JS reader read it."""
    path = tmp_path / "empty.arrow"
    path.write_bytes(_empty_closed_with_dictionaries())
    assert pa.ipc.open_file(path).read_all().num_rows == 0
    scanned = reader.scan(path)
    assert scanned.closed and scanned.table.num_rows == 0
    data = path.read_bytes()
    assert scanned.end == len(data) - 10 - struct.unpack_from("<i", data, len(data) - 10)[0] - 8  # the EOS


def test_a_closed_file_whose_footer_length_is_damaged_is_corruption_not_a_live_file(tmp_path):
    """Its stream ends with EOS and the file with ARROW1: closed, whatever the damaged length says."""
    path = tmp_path / "run.arrow"
    with LossWriter(path) as w:
        w.add(0, 1.0)
    data = bytearray(path.read_bytes())
    struct.pack_into("<i", data, len(data) - 10, struct.unpack_from("<i", data, len(data) - 10)[0] - 8)
    path.write_bytes(bytes(data))
    with pytest.raises(LossFormatError, match="footer length does not match"):
        read(path)


def test_a_file_with_a_column_twice_says_so(tmp_path):
    """Two `step` fields read as "column 'step' is missing" (and the JS reader took the first one)."""
    sch = schema.make_schema("run")
    doubled = pa.schema([*sch, sch.field("step")], metadata=sch.metadata)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, doubled):
        pass
    path = tmp_path / "twice.arrow"
    path.write_bytes(sink.getvalue().to_pybytes())
    with pytest.raises(LossFormatError, match="column 'step' is there 2 times"):
        read(path)


def test_malformed_run_information_reads_as_missing_not_as_a_corrupt_file(tmp_path):
    """A pid that is not decimal made the whole file unreadable ("corrupt lossfmt metadata"); run
    information that is malformed is read as missing (spec §3), the events as they are."""
    sch = schema.make_schema("run")
    metadata = {
        **sch.metadata,
        schema.KEY_PID.encode(): b"abc",
        schema.KEY_META.encode(): b"",
        schema.KEY_RUN.encode(): b"",
        schema.KEY_HOST.encode(): b"",
    }
    odd = unverified(sch.with_metadata(metadata))
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, odd) as writer:
        writer.write_table(pa.table({f.name: pa.array([], f.type) for f in odd}, schema=odd))
    path = tmp_path / "odd.arrow"
    path.write_bytes(sink.getvalue().to_pybytes())
    info = schema.run_info(read(path).schema)
    assert "pid" not in info and "run" not in info and "host" not in info and info["meta"] == {}
    assert schema.run_info(path)["run"] == "odd"  # the file name, as read() of several files names it


def test_resuming_an_empty_closed_file_with_dictionaries_drops_them_and_appends_readably(tmp_path):
    """Its `end` is after the dictionaries, and the resume kept them: the appended batch's checksum span then
    started before them and close() failed ("does not match its checksum"), the run unreadable."""
    path = tmp_path / "empty.arrow"
    path.write_bytes(_empty_closed_with_dictionaries())
    with LossWriter(path) as w:
        w.add(0, 1.0, tag="new")
    assert read(path).column("tag").to_pylist() == ["new"]


def test_a_torn_tail_whose_last_bytes_point_at_eos_like_bytes_without_a_footer_is_still_a_torn_tail(
    tmp_path,
):
    """The footer length of a torn tail ending in ARROW1 may point just past 8 bytes that happen to read as
    an EOS marker (steps -1, 0 hold FF FF FF FF 00 00 00 00): a closed file needs a footer there whose blocks
    end at that EOS, else the run was unreadable and its resume refused."""
    path = tmp_path / "run.arrow"
    with LossWriter(path, flush_secs=3600) as w:
        w.add(0, 1.0)
        w.flush()
        live = path.read_bytes()
        w.add(1, 2.0)
    junk = b"\x11" * 20
    planted = b"\xff\xff\xff\xff" + struct.pack("<i", 200) + b"\0" * 16 + schema.EOS + junk
    pointer = struct.pack("<i", len(junk))  # size - 10 - L is just past the planted EOS bytes
    path.write_bytes(live + planted + pointer + schema.TRAILING_MAGIC)
    scanned = reader.scan(path)
    assert not scanned.closed and scanned.end == len(live)
    assert scanned.table.column("step").to_pylist() == [0]
