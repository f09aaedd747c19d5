"""A writer killed with SIGKILL loses nothing it flushed, and its file can be resumed."""

from __future__ import annotations

import math
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
