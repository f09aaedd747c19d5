"""Readers never map a file a writer may truncate (issue 14.3): a reading process racing a process that
resumes (truncates in place, then appends) and closes (compacts) the same file is never killed by a signal."""

from __future__ import annotations

import subprocess
import sys

import pytest

_WRITER = """
import sys, time
from lossfmt import LossWriter
path, seconds = sys.argv[1], float(sys.argv[2])
# Big metadata makes a big footer: resuming truncates ~0.5 MB (the EOS marker and footer) in place.
with LossWriter(path, meta={"notes": "x" * 500_000}) as w:
    for step in range(200_000):
        w.add(step, 0.5, tag=("loss", "acc", "lr")[step % 3])
print("ready", flush=True)
deadline = time.monotonic() + seconds
cycles = 0
while time.monotonic() < deadline:
    # Resuming truncates the closed file in place (its footer goes); close() compacts it back.
    LossWriter(path).close()
    cycles += 1
print(cycles)
"""

_READER = """
import sys, time
import lossfmt
path, seconds = sys.argv[1], float(sys.argv[2])
deadline = time.monotonic() + seconds
reads = 0
while time.monotonic() < deadline:
    try:
        table = lossfmt.read(path)
        follower = lossfmt.follow(path)
        follower.poll()
    except lossfmt.LossFormatError:
        continue  # a read that overlapped a truncation may see a transient mix; never a signal
    reads += 1
print(reads)
"""


@pytest.mark.parametrize("seconds", [4.0])
def test_a_reader_racing_resume_and_compaction_is_never_killed_by_a_signal(tmp_path, seconds):
    path = tmp_path / "race.arrow"
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
    reader = subprocess.Popen(
        [sys.executable, "-c", _READER, str(path), str(seconds)], stdout=subprocess.PIPE
    )
    reader_out, _ = reader.communicate(timeout=seconds + 60)
    writer_out, _ = writer.communicate(timeout=seconds + 60)
    assert writer.returncode == 0
    assert reader.returncode == 0, f"the reader died with {reader.returncode} (negative: killed by a signal)"
    assert int(reader_out) > 0 and int(writer_out.split()[-1]) > 0


def test_no_reader_maps_the_file(tmp_path, monkeypatch):
    """The deterministic half: read, scan, follow and iter_batches never call pyarrow's memory_map (a page
    of a mapped file that a resuming writer truncates kills the reader with SIGBUS when touched)."""
    import pyarrow as pa

    from lossfmt import LossWriter, _framing, follow, read, reader

    path = tmp_path / "run.arrow"
    with LossWriter(path) as w:
        w.add(0, 1.0)
        w.flush()
        live = path.read_bytes()
    (tmp_path / "live.arrow").write_bytes(live)

    def refuse(*args, **kwargs):
        raise AssertionError("a reader memory-mapped the file")

    monkeypatch.setattr(pa, "memory_map", refuse)
    for p in (path, tmp_path / "live.arrow"):
        assert read(p).num_rows == 1
        assert reader.scan(p).table.num_rows == 1
        assert follow(p).poll().table.num_rows == 1
        assert sum(len(b) for b in _framing.iter_batches(p)[1]) == 1
