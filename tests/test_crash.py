"""A writer killed with SIGKILL loses nothing it flushed, and its file can be resumed."""

from __future__ import annotations

import fcntl
import math
import os
import signal
import subprocess
import sys
import textwrap

import pyarrow as pa
import pytest

import lossfmt
from lossfmt import LossWriter

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")

# Adds events forever; after every `flush()` prints how many events it had added before that flush.
TRAINER = textwrap.dedent(
    """
    import math, sys
    from lossfmt import LossWriter

    def value(i):
        return (math.nan, math.inf, -math.inf)[i % 3] if i % 97 == 0 else 1.0 / (i + 1)

    w = LossWriter(sys.argv[1], flush_secs=float(sys.argv[2]))
    i = 0
    while True:
        w.add(i, value(i), "loss" if i % 5 else "val", count=1 + i % 4, epoch=i // 1000)
        i += 1
        if i % 500 == 0:
            w.flush()
            print(i, flush=True)
    """
)


def value(i: int) -> float:
    return (math.nan, math.inf, -math.inf)[i % 3] if i % 97 == 0 else 1.0 / (i + 1)


def expected_rows(n: int) -> list[tuple]:
    return [(i, "loss" if i % 5 else "val", 1 + i % 4, i // 1000) for i in range(n)]


def check_prefix(table: pa.Table, n: int) -> None:
    """The file holds the first `n` events exactly (and possibly some more, all in order)."""
    assert table.num_rows >= n
    head = table.slice(0, n)
    got = list(zip(*(head[c].to_pylist() for c in ("step", "tag", "count", "epoch")), strict=True))
    assert got == expected_rows(n)
    for i, v in enumerate(head["value"].to_pylist()):
        assert v == value(i) or (math.isnan(v) and math.isnan(value(i))), i
    assert table["step"].to_pylist() == list(range(table.num_rows))


@pytest.mark.parametrize("flush_secs", [3600.0, 0.005])
def test_sigkill_keeps_every_flushed_event(tmp_path, flush_secs):
    """Killed mid-run (explicit flushes only, or the flusher also writing every 5 ms): every flushed event
    reads back exactly, and a new writer resumes the file. (A kill does not tear a write here: the kernel
    finishes a small write() first; torn tails are tested with synthetic files in test_writer.py.)"""
    path = tmp_path / "run.arrow"
    proc = subprocess.Popen(
        [sys.executable, "-c", TRAINER, str(path), str(flush_secs)], stdout=subprocess.PIPE, text=True
    )
    try:
        flushed = 0
        while flushed < 5000:
            line = proc.stdout.readline()
            assert line, f"trainer exited early with status {proc.wait()}"
            flushed = int(line)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    crashed = lossfmt.read(path)
    check_prefix(crashed, flushed)

    with LossWriter(path) as w:
        w.add(crashed.num_rows, 42.0, "resumed")
    resumed = pa.ipc.open_file(path).read_all()
    assert resumed.num_rows == crashed.num_rows + 1
    check_prefix(resumed.slice(0, crashed.num_rows), crashed.num_rows)
    assert resumed["tag"][-1].as_py() == "resumed" and resumed["value"][-1].as_py() == 42.0


# Resumes the file, says so, then closes it (compaction).
CLOSER = textwrap.dedent(
    """
    import sys
    from lossfmt import LossWriter

    w = LossWriter(sys.argv[1])
    print("closing", flush=True)
    w.close()
    """
)


def test_a_kill_during_close_leaves_a_hidden_temp_file_that_the_next_writer_removes(tmp_path):
    path = tmp_path / "run.arrow"
    w = LossWriter(tmp_path / "source.arrow", flush_secs=3600)
    for i in range(300_000):
        w.add(i, value(i), "loss" if i % 5 else "val", count=1 + i % 4, epoch=i // 1000)
        if i % 10_000 == 9_999:
            w.flush()
    path.write_bytes(w.path.read_bytes())
    w.close()
    os.unlink(tmp_path / "source.arrow")
    proc = subprocess.Popen([sys.executable, "-c", CLOSER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "closing\n"
        temps: list[str] = []
        while not temps and proc.poll() is None:  # kill it while its temp file exists
            temps = [n for n in os.listdir(tmp_path) if n.endswith(".lossfmt-tmp")]
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL, "close() finished before its temp file was seen"
    assert temps and all(n.startswith(".run.arrow.") for n in temps)  # hidden: globs and readers skip it
    check_prefix(lossfmt.read(tmp_path), 300_000)
    assert lossfmt.run_paths(str(tmp_path / "*")) == [str(path)]
    with LossWriter(path) as w:
        assert sorted(os.listdir(tmp_path)) == ["run.arrow"]  # the dead process's temp file is gone
        w.add(300_000, 1.0, "resumed")
    assert lossfmt.read(path).num_rows == 300_001


def test_compact_removes_a_stale_temp_file_but_never_a_live_ones(tmp_path):
    path = tmp_path / "run.arrow"
    with LossWriter(path) as w:
        w.add(0, 1.0)
    stale = tmp_path / ".run.arrow.0123abcd.lossfmt-tmp"
    stale.write_bytes(b"")  # a 0-byte temp file, as a kill right after its creation leaves
    live = tmp_path / ".run.arrow.89abcdef.lossfmt-tmp"
    with open(live, "wb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # a process that is alive and holds it
        lossfmt.compact(path)
        assert not stale.exists() and live.exists()


# Logs 68 events per flush (a slow training loop) until the flusher's re-compaction reaches `moment`, where
# it prints "paused" and waits to be killed; after every flush it prints how many events it had added.
RECOMPACTING = textwrap.dedent(
    """
    import math, sys, time
    from lossfmt import LossWriter, _file, _locking

    moment = sys.argv[2]
    real_write, real_commit = _file.write_live, _locking.TempFile.commit

    def pause():
        print("paused", flush=True)
        time.sleep(3600)

    def write_live(temp, header, schema, batches):
        if moment == "header":  # the temp file holds only the header
            _locking.write_all(temp.fd, header, temp.path)
            pause()
        rows = real_write(temp, header, schema, batches)
        if moment == "written":  # complete, not renamed yet
            pause()
        return rows

    def commit(self, held):
        real_commit(self, held)
        if moment == "renamed":  # over the path; the writer still appends to the old file's descriptor
            pause()

    _file.write_live, _locking.TempFile.commit = write_live, commit

    def value(i):
        return (math.nan, math.inf, -math.inf)[i % 3] if i % 97 == 0 else 1.0 / (i + 1)

    w = LossWriter(sys.argv[1], flush_secs=3600)
    i = 0
    while True:
        for _ in range(68):
            w.add(i, value(i), "loss" if i % 5 else "val", count=1 + i % 4, epoch=i // 1000)
            i += 1
        w.flush()
        print(i, flush=True)
    """
)


@pytest.mark.parametrize("moment", ["header", "written", "renamed"])
def test_sigkill_during_a_recompaction_keeps_every_flushed_event_and_the_run_resumes(tmp_path, moment):
    path = tmp_path / "run.arrow"
    proc = subprocess.Popen(
        [sys.executable, "-c", RECOMPACTING, str(path), moment], stdout=subprocess.PIPE, text=True
    )
    try:
        flushed = 0
        while (line := proc.stdout.readline()) != "paused\n":
            assert line, f"the writer exited early with status {proc.wait()}"
            flushed = int(line)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    temps = [n for n in os.listdir(tmp_path) if n.endswith(".lossfmt-tmp")]
    assert len(temps) == (0 if moment == "renamed" else 1)
    crashed = lossfmt.read(path)  # the old file, or the complete new one: every flushed event either way
    assert crashed.num_rows == flushed
    check_prefix(crashed, flushed)
    with LossWriter(path) as w:
        assert sorted(os.listdir(tmp_path)) == ["run.arrow"]  # the dead writer's temp file is gone
        w.add(flushed, 42.0, "resumed")
    resumed = lossfmt.read(path)
    assert resumed.num_rows == flushed + 1 and resumed["tag"][-1].as_py() == "resumed"
    check_prefix(resumed.slice(0, flushed), flushed)
