"""close() compacts in bounded memory, verifies before replacing, and touches only the file it holds."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
import textwrap

import pyarrow as pa
import pyarrow.feather as feather
import pytest

import lossfmt
from lossfmt import FileReplacedError, LossFormatError, LossWriter

COMPACT_ROWS = 1 << 19  # rows per record batch of a closed file (spec/FORMAT.md)


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_close_writes_bounded_checksummed_batches_sharing_one_dictionary_per_column(tmp_path):
    path = tmp_path / "run.arrow"
    n = COMPACT_ROWS + 1000
    tags = ["loss", "val", "grad/0", "grad/1"]
    with LossWriter(path, flush_secs=3600) as w:
        for i in range(n):
            w.add(i, 0.5, tags[(i // 100_000) % 4], reduction="sum" if i % 2 else "mean")
    f = pa.ipc.open_file(path)
    assert [f.get_batch(i).num_rows for i in range(f.num_record_batches)] == [COMPACT_ROWS, 1000]
    assert f.schema.metadata[b"lossfmt.checksum"] == b"crc32c"
    for i in range(f.num_record_batches):
        batch, custom = f.get_batch_with_custom_metadata(i)
        assert set(custom) == {b"lossfmt.crc32c"} and len(custom[b"lossfmt.crc32c"]) == 8
        assert batch.column("tag").dictionary.to_pylist() == tags  # one dictionary, in order of first use
        assert batch.column("reduction").dictionary.to_pylist() == ["mean", "sum"]
    table = lossfmt.read(path)
    assert table["step"].to_pylist() == list(range(n))
    assert table["tag"].to_pylist()[::100_000] == [tags[i % 4] for i in range(6)]


def test_a_closed_file_of_several_batches_reads_as_one_chunk_per_column(tmp_path):
    """read() gives each column of a closed multi-batch file as one array, equal to Arrow's own reading, so
    lossview and read_pandas use it as it is (a concatenated copy per column costs more than the read)."""
    path = tmp_path / "run.arrow"
    n = COMPACT_ROWS + 10
    with LossWriter(path, flush_secs=3600) as w:
        for i in range(n):
            w.add(i, i * 0.25, "loss" if i % 3 else "val", count=i % 7 + 1, epoch=None if i % 5 else i // 5)
    arrow = pa.ipc.open_file(path).read_all()
    for columns in (None, ["step", "tag", "value"], ["epoch"]):
        table = lossfmt.read(path, columns=columns)
        assert [table.column(c).num_chunks for c in table.column_names] == [1] * table.num_columns
        for name in table.column_names:
            assert table.column(name).to_pylist() == arrow.column(name).to_pylist(), name


# Writes N events (several tags), then reports the RSS high-water mark before and after close().
MEMORY = textwrap.dedent(
    """
    import resource, sys
    from lossfmt import LossWriter

    n = int(sys.argv[2])
    w = LossWriter(sys.argv[1], flush_secs=3600)
    for i in range(n):
        w.add(i, i * 0.5, "loss" if i % 10 else "val")
    w.flush()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    w.close()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(before, after)
    """
)


def close_extra_memory_mb(path, n: int) -> float:
    out = subprocess.run(
        [sys.executable, "-c", MEMORY, str(path), str(n)], capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr
    before, after = map(int, out.stdout.split())
    assert lossfmt.read(path, columns=["step"]).num_rows == n
    return (after - before) / 1024  # ru_maxrss is in KiB on Linux


def test_close_of_a_million_events_stays_within_the_memory_bound(tmp_path):
    assert close_extra_memory_mb(tmp_path / "run.arrow", 1_000_000) <= 256


@pytest.mark.slow
def test_close_of_ten_million_events_stays_within_the_memory_bound(tmp_path):
    assert close_extra_memory_mb(tmp_path / "run.arrow", 10_000_000) <= 256


# The RSS high-water mark (kB) before and after a resume. VmHWM, not ru_maxrss: the latter carries the
# parent's peak across fork and exec, and the test process has just written millions of events.
RESUME_MEMORY = textwrap.dedent(
    """
    import sys, warnings
    from lossfmt import LossWriter

    def peak():
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))

    warnings.simplefilter("ignore")  # (the resume warns that it started again at step 0)
    before = peak()
    w = LossWriter(sys.argv[1], flush_secs=3600)
    after = peak()
    w.add(0, 1.0)
    w.close()
    print(before, after)
    """
)


@pytest.mark.slow
def test_resuming_a_long_run_stays_within_the_memory_bound(tmp_path):
    """A resume decoded the whole run to count its events and steps (47 bytes per event: 568 MiB for 12M);
    it now reads a bounded window at a time."""
    path, n = tmp_path / "run.arrow", 6_000_000
    with LossWriter(path, flush_secs=3600) as w:
        for i in range(n):
            w.add(i, i * 0.5, "loss" if i % 10 else "val", count=32, epoch=i // 10_000)
    out = subprocess.run(
        [sys.executable, "-c", RESUME_MEMORY, str(path)], capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr
    before, after = map(int, out.stdout.split())
    assert (after - before) / 1024 <= 160  # MiB; the whole run decoded took 280
    assert lossfmt.read(path, columns=["step"]).num_rows == n + 1


def test_close_refuses_a_file_truncated_from_outside_and_leaves_it(tmp_path):
    """A copytruncate log rotation halves the live file: the next flush says so (nothing lands after the
    cut), and close() replaces it by no closed file missing events."""
    path = tmp_path / "run.arrow"
    w = LossWriter(path, flush_secs=3600)
    for i in range(50_000):
        w.add(i, float(i))
        if i % 5000 == 4999:
            w.flush()
    os.truncate(path, path.stat().st_size // 2)
    digest = sha256(path)
    for i in range(50_000, 50_100):
        w.add(i, float(i))
    with pytest.raises(LossFormatError, match=r"run\.arrow: the file was changed from outside"):
        w.flush()
    with contextlib.suppress(LossFormatError):
        w.close()
    assert sha256(path) == digest  # nothing written after the cut, and not replaced
    assert w.closed
    assert not [p for p in os.listdir(tmp_path) if p != "run.arrow"]  # no temp file left


def test_close_refuses_a_file_whose_first_batch_was_damaged(tmp_path):
    path = tmp_path / "run.arrow"
    w = LossWriter(path, flush_secs=3600)
    for i in range(5000):
        w.add(i, float(i))
    w.flush()
    size = path.stat().st_size
    with open(path, "r+b") as f:  # a flipped bit in the first batch's body
        f.seek(size - 100)
        byte = f.read(1)
        f.seek(size - 100)
        f.write(bytes([byte[0] ^ 0x10]))
    for i in range(5000, 6000):
        w.add(i, float(i))
    w.flush()
    digest = sha256(path)
    with pytest.raises(LossFormatError, match=r"run\.arrow"):
        w.close()
    assert sha256(path) == digest


@pytest.mark.parametrize("pending", [False, True])
def test_close_of_a_removed_file_never_touches_the_next_run_at_that_path(tmp_path, pending):
    path = tmp_path / "run.arrow"
    a = LossWriter(path, flush_secs=3600)
    a.add(0, 1.0, "a")
    a.flush()
    os.unlink(path)  # a user cleans runs/
    b = LossWriter(path, flush_secs=3600)
    b.add(0, 2.0, "b")
    b.flush()
    digest = sha256(path)
    if pending:
        a.add(1, 1.0, "a")
    with pytest.raises(FileReplacedError, match="removed"):
        a.close()
    assert sha256(path) == digest  # B's live, locked file is left alone
    b.add(1, 2.0, "b")
    b.close()
    assert lossfmt.read(path)["tag"].to_pylist() == ["b", "b"]


def test_a_symlinked_path_compacts_the_target_and_keeps_the_link(tmp_path):
    target = tmp_path / "store" / "real.arrow"
    target.parent.mkdir()
    link = tmp_path / "run.arrow"
    link.symlink_to(target)
    for start in (0, 10):  # a new run, then a resumed one
        with LossWriter(link) as w:
            for i in range(start, start + 10):
                w.add(i, float(i))
        assert link.is_symlink() and os.readlink(link) == str(target)
        assert pa.ipc.open_file(target).read_all()["step"].to_pylist() == list(range(start + 10))
    assert sorted(os.listdir(target.parent)) == ["real.arrow"]


def test_a_fifo_is_refused_at_the_constructor_without_hanging(tmp_path):
    fifo = tmp_path / "run.arrow"
    os.mkfifo(fifo)
    code = textwrap.dedent(
        """
        import sys
        import lossfmt
        for call in (lambda: lossfmt.LossWriter(sys.argv[1]), lambda: lossfmt.compact(sys.argv[1])):
            try:
                call()
            except lossfmt.LossFormatError as exc:
                print(exc)
        """
    )
    out = subprocess.run([sys.executable, "-c", code, str(fifo)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 2 and all("run.arrow: not a regular file (a FIFO)" in line for line in lines)


def test_compact_writes_meta_and_verifies_an_already_closed_file(tmp_path):
    path = tmp_path / "run.arrow"
    with LossWriter(path, meta={"lr": 0.1}) as w:
        w.add(0, 1.0)
    digest = sha256(path)
    lossfmt.compact(path)
    assert sha256(path) == digest  # a closed file is left as is
    assert json.loads(pa.ipc.open_file(path).schema.metadata[b"lossfmt.meta"]) == {"lr": 0.1}


def plain_arrow_files(tmp_path):
    """A Feather (Arrow file, with footer) and an Arrow stream (no footer), neither of them lossfmt."""
    table = pa.table({"a": [1]})
    plain = tmp_path / "plain.arrow"
    feather.write_feather(table, plain)
    stream = tmp_path / "stream.arrow"
    with pa.OSFile(str(stream), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return [plain, stream]


def test_compact_and_salvage_refuse_a_plain_arrow_file_as_read_does_and_leave_it(tmp_path):
    for path in plain_arrow_files(tmp_path):
        digest = sha256(path)
        with pytest.raises(LossFormatError) as read_error:
            lossfmt.read(path)
        with pytest.raises(LossFormatError, match=r"not a lossfmt file") as compact_error:
            lossfmt.compact(path)
        assert str(compact_error.value).split(": ", 1)[1] == str(read_error.value).split(": ", 1)[1]
        with pytest.raises(LossFormatError, match=r"not a lossfmt file"):
            lossfmt.salvage(path, tmp_path / "out.arrow")
        assert sha256(path) == digest and not (tmp_path / "out.arrow").exists()


@pytest.mark.parametrize("junk", [b"junk\n", b"ARROW1\x00\x00junk\x00\x00\x00\x00"])
def test_salvage_of_a_file_without_magic_or_schema_says_what_read_says(tmp_path, junk):
    """Not "empty file", nor (the offset in "no Arrow magic at byte 0" taken for damage) "nothing before it
    can be kept": the reason `read` gives."""
    path = tmp_path / "junk.arrow"
    path.write_bytes(junk)
    with pytest.raises(LossFormatError) as read_error:
        lossfmt.read(path)
    with pytest.raises(LossFormatError) as salvage_error:
        lossfmt.salvage(path, tmp_path / "out.arrow")
    assert str(salvage_error.value) == str(read_error.value)
    assert "not a lossfmt file (no " in str(read_error.value)
    assert path.read_bytes() == junk and not (tmp_path / "out.arrow").exists()


def test_meta_merged_on_resume_stays_strict_json_with_non_finite_floats_tagged(tmp_path):
    path = tmp_path / "run.arrow"
    with LossWriter(path, meta={"seed": 1}) as w:
        w.add(0, 1.0)
    with LossWriter(path, meta={"lr": float("nan"), "clip": float("-inf")}) as w:  # resumes, merges meta
        w.add(1, 1.0)
    schema = pa.ipc.open_file(path).schema
    text = schema.metadata[b"lossfmt.meta"].decode()
    assert json.loads(text, parse_constant=lambda token: pytest.fail(f"bare {token}")) == {
        "clip": {"$float": "-Infinity"},
        "lr": {"$float": "NaN"},
        "seed": 1,
    }
    meta = lossfmt.run_info(schema)["meta"]
    assert meta["seed"] == 1 and meta["clip"] == float("-inf") and meta["lr"] != meta["lr"]


def test_a_crashed_run_whose_file_name_is_not_utf8_compacts(tmp_path):
    """pyarrow opens paths as UTF-8: `lossfmt.compact` of a crashed `live\\xe9.arrow` (a Latin-1 name, which
    the writer and lossfmt.read handle) raised a raw UnicodeEncodeError: the run could not be closed."""
    path = os.fsdecode(os.fsencode(tmp_path) + b"/live\xe9.arrow")
    code = "import os, sys, lossfmt\nw = lossfmt.LossWriter(os.fsdecode(sys.argv[1].encode('latin-1')))\n"
    code += "for i in range(10):\n    w.add(i, float(i))\nw.flush()\nos.kill(os.getpid(), 9)\n"
    subprocess.run([sys.executable, "-c", code, os.fsencode(path).decode("latin-1")], timeout=60)

    def footer_steps() -> list[int]:
        with open(path, "rb") as f:
            return pa.ipc.open_file(pa.py_buffer(f.read())).read_all()["step"].to_pylist()

    with pytest.raises(pa.ArrowInvalid):
        footer_steps()  # crashed: no footer
    lossfmt.compact(path)
    assert footer_steps() == list(range(10))
