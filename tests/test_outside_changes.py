"""A live file changed in place by another program (same inode: truncated, overwritten, a copy over it): the
writer notices at its next flush (or re-compaction, or close), says so naming the file and what is lost, and
never writes into that file again."""

from __future__ import annotations

import os
import shutil
import time

import pytest

import lossfmt
from lossfmt import LossFormatError, LossWriter, _recompact

CHANGED = r"run\.arrow: the file was changed from outside while LossWriter was writing it"


def flushed_writer(path, n: int = 1000, flush_secs: float = 3600) -> LossWriter:
    w = LossWriter(path, flush_secs=flush_secs)
    for i in range(n):
        w.add(i, 1.0, "loss" if i % 10 else "val")
    w.flush()
    return w


def test_a_live_file_truncated_in_place_fails_the_next_flush_and_is_never_written_again(tmp_path):
    """A `: > run.arrow` under a writer went unnoticed: it kept appending into a headerless file until
    close() said "not a lossfmt file", every later event lost."""
    path = tmp_path / "run.arrow"
    w = flushed_writer(path)
    open(path, "w").close()  # a stray open(path, "w"): same inode, 0 bytes
    for i in range(1000, 1500):
        w.add(i, 2.0)
    with pytest.raises(
        LossFormatError,
        match=CHANGED
        + r" \(truncated or overwritten in place: it has 0 bytes where it had [\d,]+\); it is left "
        r"as it is, with what that change left of the 1000 events written to it; the 500 events not yet "
        r"written to it, and any added since, are written nowhere",
    ):
        w.flush()
    with pytest.raises(LossFormatError, match=CHANGED):
        w.add(1500, 2.0)  # the writer cannot go on
    w.close()  # (already raised)
    assert path.stat().st_size == 0  # never written into


def test_a_live_file_cut_to_half_is_reported_at_the_next_add_from_the_flusher(tmp_path):
    """A truncation to half was reported only by close() ("corrupt at byte ..."), the run's later events
    appended after a cut message: the flusher's error now reaches add() as every background error does."""
    path = tmp_path / "run.arrow"
    w = flushed_writer(path, flush_secs=0.01)  # the flusher writes on its own, every 10 ms
    os.truncate(path, path.stat().st_size // 2)
    cut = path.read_bytes()
    deadline = time.monotonic() + 30
    with pytest.raises(LossFormatError, match=CHANGED + r" \(truncated or overwritten in place: it has"):
        i = 1000
        while time.monotonic() < deadline:  # add() raises once the flusher found the change
            w.add(i, 2.0)
            i += 1
    w.close()
    assert path.read_bytes() == cut


def test_a_copy_of_another_run_over_the_live_file_keeps_that_run_intact(tmp_path):
    """shutil.copyfile over a live file (same inode) made the writer's later loss events read back as the
    other run's tags (dictionary ids reused), silently until close()."""
    other = tmp_path / "other.arrow"
    with LossWriter(other) as o:
        for i in range(8020):
            o.add(i, 3.0, "val/acc")
    path = tmp_path / "run.arrow"
    w = flushed_writer(path)
    inode = path.stat().st_ino
    shutil.copyfile(other, path)
    assert path.stat().st_ino == inode  # overwritten in place, not replaced
    w.add(1000, 2.0)
    with pytest.raises(LossFormatError, match=CHANGED):
        w.flush()
    w.close()
    assert path.read_bytes() == other.read_bytes()
    assert set(lossfmt.read(path)["tag"].to_pylist()) == {"val/acc"}


def test_a_close_with_nothing_pending_says_the_file_was_changed_from_outside(tmp_path):
    """close() of a truncated live file said "not a lossfmt file", not what happened."""
    path = tmp_path / "run.arrow"
    w = flushed_writer(path)
    open(path, "w").close()
    with pytest.raises(LossFormatError, match=CHANGED + r" .* events added from now on are written nowhere"):
        w.close()
    assert path.stat().st_size == 0
    w.close()  # closed for good


def test_a_live_file_damaged_in_its_middle_stops_the_writer_at_its_recompaction(tmp_path):
    """Damage that keeps the size and header (bytes overwritten mid-file) is seen by the re-compaction, which
    left the writer appending to the damaged file (`floor = math.inf`) until close() reported it."""
    path = tmp_path / "run.arrow"
    w = LossWriter(path, flush_secs=3600)
    n = 0

    def slow_flushes(until: int) -> None:  # 68 events a flush: the small flushes a re-compaction rewrites
        nonlocal n
        while path.stat().st_size < until:
            for i in range(n, n + 68):
                w.add(i, 0.25 * i, "loss" if i % 10 else "val", count=32)
            n += 68
            w.flush()

    slow_flushes(_recompact.FIRST_BYTES // 2)
    with open(path, "r+b") as f:  # a byte of a record batch's body flipped: its checksum fails
        f.seek(path.stat().st_size // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(
        LossFormatError, match=CHANGED + r" \(truncated or overwritten in place: it has events"
    ):
        slow_flushes(2 * _recompact.FIRST_BYTES)
        w.flush()  # the flusher's rewrite after the last flush has ended
    damaged = path.read_bytes()
    with pytest.raises(LossFormatError):
        w.add(n, 1.0)
    w.close()
    assert path.read_bytes() == damaged  # nothing written after the error
