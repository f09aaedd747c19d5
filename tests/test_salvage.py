"""salvage() on closed files: every verified record batch before the first damaged byte is kept, the damaged
file is left byte for byte, and a file with nothing to keep says so."""

from __future__ import annotations

import hashlib
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

import lossfmt
from lossfmt import LossFormatError, LossWriter, _framing, read

COMPACT_ROWS = 1 << 19  # rows per record batch of a closed file (spec/FORMAT.md)
TAGS = ["loss", "val_loss", "lr"]


def closed_run(path, n):
    """A closed file of `n` events written by LossWriter (three tags, epochs), and its bytes."""
    with LossWriter(path, flush_secs=3600, meta={"lr": 0.1}) as w:
        for i in range(n):
            w.add(i, i / 7, TAGS[i % 3], epoch=i // 1000)
    return path.read_bytes()


def damaged_copy(tmp_path, data, at):
    """A copy of `data` with the byte at `at` XORed, and its sha256."""
    bad = bytearray(data)
    bad[at] ^= 0x55
    path = tmp_path / "damaged.arrow"
    path.write_bytes(bytes(bad))
    return path, hashlib.sha256(bad).hexdigest()


def footer_parts(data):
    """(eos, footer start, footer length offset) of a closed file's bytes."""
    length_at = len(data) - 10
    start = length_at - struct.unpack_from("<i", data, length_at)[0]
    return start - 8, start, length_at


def batch_starts(data):
    return [m.start for m in _framing.walk(data, "run").messages if m.kind == _framing.RECORD_BATCH]


def events(table):
    """The events of a table as plain columns (dictionaries compared by value)."""
    return {name: table.column(name).to_pylist() for name in ("step", "tag", "value", "epoch", "reduction")}


@pytest.mark.parametrize("where", ["footer", "footer length", "EOS marker", "EOS length"])
def test_salvage_of_a_closed_file_damaged_after_its_last_batch_keeps_every_event(tmp_path, where):
    """A closed file's whole-file check names the damage at once: salvage re-raised it and kept nothing."""
    original = tmp_path / "run.arrow"
    data = closed_run(original, 1000)
    eos, _, length_at = footer_parts(data)
    at = {"footer": len(data) - 30, "footer length": length_at, "EOS marker": eos, "EOS length": eos + 6}
    path, digest = damaged_copy(tmp_path, data, at[where])
    with pytest.raises(LossFormatError, match=r"corrupt at byte \d+"):
        lossfmt.read(path)
    out = tmp_path / "saved.arrow"
    assert lossfmt.salvage(path, out) == 1000
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    saved = lossfmt.read(out)
    assert events(saved) == events(lossfmt.read(original))
    assert lossfmt.run_info(saved.schema)["meta"] == {"lr": 0.1}


@pytest.mark.parametrize("damaged", [1, 2])
def test_salvage_of_a_closed_file_damaged_in_a_later_batch_keeps_the_batches_before_it(tmp_path, damaged):
    """A closed file's damaged middle or last record batch: salvage kept nothing instead of the batches
    before it."""
    original = tmp_path / "run.arrow"
    data = closed_run(original, 2 * COMPACT_ROWS + 1000)  # three record batches
    starts = batch_starts(data)
    assert len(starts) == 3
    path, digest = damaged_copy(tmp_path, data, starts[damaged] + 300)
    out = tmp_path / "saved.arrow"
    assert lossfmt.salvage(path, out) == damaged * COMPACT_ROWS
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    saved, whole = lossfmt.read(out), lossfmt.read(original).slice(0, damaged * COMPACT_ROWS)
    for name in ("step", "value", "epoch", "wall_time"):
        assert saved.column(name).combine_chunks().equals(whole.column(name).combine_chunks()), name
    assert saved.column("tag").to_pylist() == whole.column("tag").to_pylist()


def test_salvage_of_a_closed_file_whose_only_batch_is_damaged_keeps_an_empty_run(tmp_path):
    """As for a live file damaged in its first batch: 0 events and the run's metadata, where salvage raised
    the raw corruption."""
    data = closed_run(tmp_path / "run.arrow", 1000)
    path, digest = damaged_copy(tmp_path, data, batch_starts(data)[0] + 300)
    out = tmp_path / "saved.arrow"
    assert lossfmt.salvage(path, out) == 0
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    saved = lossfmt.read(out)
    assert saved.num_rows == 0 and lossfmt.run_info(saved.schema)["meta"] == {"lr": 0.1}


def test_salvage_of_a_closed_file_with_a_damaged_schema_says_nothing_can_be_kept(tmp_path):
    """Damage in the header leaves nothing to keep: the error says so (not just the raw corruption)."""
    data = closed_run(tmp_path / "run.arrow", 1000)
    path, digest = damaged_copy(tmp_path, data, data.index(b"lossfmt.run") + 20)
    out = tmp_path / "saved.arrow"
    with pytest.raises(LossFormatError) as error:
        lossfmt.salvage(path, out)
    assert str(error.value) == (
        f"{path}: corrupt at byte 8: the schema message does not match its checksum; "
        f"nothing before it can be kept ({out} not written)"
    )
    assert error.value.offset == 8
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest and not out.exists()


def lossview(*args):
    return subprocess.run(
        [sys.executable, "-m", "lossview", *args], capture_output=True, text=True, timeout=120
    )


def test_lossview_compact_salvage_of_a_closed_file_prints_one_line(tmp_path):
    """`lossview compact --salvage` on a closed file with a damaged footer failed with the raw corruption;
    on one with a damaged schema it says in one line that nothing can be kept."""
    data = closed_run(tmp_path / "run.arrow", 1000)
    footer, _ = damaged_copy(tmp_path, data, len(data) - 30)
    done = lossview("compact", str(footer), "--salvage", str(tmp_path / "saved.arrow"))
    assert done.returncode == 0 and done.stdout == "", done.stderr
    saved = tmp_path / "saved.arrow"
    assert done.stderr == f"{saved}: 1000 events recovered from {footer} (which is left as it was)\n"
    schema, _ = damaged_copy(tmp_path, data, data.index(b"lossfmt.run") + 20)
    refused = lossview("compact", str(schema), "--salvage", str(tmp_path / "none.arrow"))
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1, refused.stderr
    assert "nothing before it can be kept" in refused.stderr and "Traceback" not in refused.stderr
    assert not (tmp_path / "none.arrow").exists()


def test_salvage_refuses_what_is_not_a_regular_file_at_once(tmp_path):
    """A FIFO blocked salvage for ever (every other entry point refused it); /dev/zero read as "empty"."""
    fifo = tmp_path / "fifo.arrow"
    os.mkfifo(fifo)
    for source in (fifo, Path("/dev/zero"), tmp_path):
        with pytest.raises(LossFormatError, match="not a regular file"):
            lossfmt.salvage(source, tmp_path / "out.arrow")
    assert not (tmp_path / "out.arrow").exists()


def test_salvage_names_an_out_that_is_no_file_and_creates_missing_directories(tmp_path):
    path = tmp_path / "run.arrow"
    with LossWriter(path) as w:
        w.add(0, 1.0)
    for out in ("", f"{tmp_path}/adir/"):
        with pytest.raises(ValueError, match=f"salvage: out {out!r} names no file"):
            lossfmt.salvage(path, out)
    assert lossfmt.salvage(path, tmp_path / "new" / "dir" / "s.arrow") == 1  # as a LossWriter would
    assert read(tmp_path / "new" / "dir" / "s.arrow").num_rows == 1


def test_compact_refuses_a_directory_naming_no_writer(tmp_path):
    error = f"^{tmp_path}: not a regular file \\(a directory\\), so not a lossfmt file$"
    with pytest.raises(LossFormatError, match=error):
        lossfmt.compact(tmp_path)
