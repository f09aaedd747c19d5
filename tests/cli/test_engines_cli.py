"""`lossview export --format parquet` and `lossview compact --salvage`, as a user runs them (subprocesses)."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest

import lossfmt
from lossfmt import LossWriter

LOSSVIEW = [sys.executable, "-m", "lossview"]


def lossview(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LOSSVIEW, *args], capture_output=True, text=True, timeout=120)


def test_export_parquet_writes_a_directory_duckdb_reads_with_hparams(tmp_path):
    duckdb = pytest.importorskip("duckdb")
    runs = tmp_path / "runs"
    for lr in (0.1, 0.01):
        with LossWriter(runs / f"lr{lr}.arrow", meta={"lr": lr}) as w:
            for step in range(50):
                w.add(step, 1.0 / (step + 1) + lr)
    out = tmp_path / "export"
    done = lossview("export", str(runs), str(out), "--format", "parquet")
    assert done.returncode == 0, done.stderr
    assert "2 runs, 2 written" in done.stderr
    rows = duckdb.sql(
        f"SELECT lr, count(*) AS n FROM read_parquet('{out}/**/*.parquet') GROUP BY lr ORDER BY lr"
    ).fetchall()
    assert rows == [(0.01, 50), (0.1, 50)]
    again = lossview("export", str(runs), str(out), "--format", "parquet")
    assert again.returncode == 0 and "0 written" in again.stderr  # incremental: nothing changed
    # ("2 runs, 0 written, 0 removed, 0 events" read as an export of no events)
    assert again.stderr.strip() == f"{out}: 2 runs, 0 written (0 events), 0 removed"


def test_compact_salvage_copies_the_readable_prefix_and_leaves_the_damaged_file(tmp_path):
    live, path, out = tmp_path / "live.arrow", tmp_path / "run.arrow", tmp_path / "saved.arrow"
    with LossWriter(live, flush_secs=3600) as w:
        for step in range(6):
            w.add(step, float(step))
            w.flush()
            if step == 2:
                three_flushes = live.stat().st_size
        data = bytearray(live.read_bytes())  # the live file (no footer), as a crash leaves it
    data[three_flushes + 40] ^= 0xFF  # inside the fourth flush; complete messages follow it
    path.write_bytes(bytes(data))
    digest = hashlib.sha256(data).hexdigest()
    refused = lossview("compact", str(path))
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1, refused.stderr
    done = lossview("compact", str(path), "--salvage", str(out))
    assert done.returncode == 0, done.stderr
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    assert lossfmt.read(out).column("step").to_pylist() == [0, 1, 2]
    twice = lossview("compact", str(path), "--salvage", str(out))
    assert twice.returncode == 1 and "already exists" in twice.stderr and twice.stderr.count("\n") == 1
