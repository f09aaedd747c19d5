"""The before/after and peers reports: the peers summary's arithmetic, and a smoke run of bench.baseline.

No timing assertions (a smoke run's figures mean nothing). The baseline smoke run builds an earlier
revision into a venv, so it is marked slow and needs the git history that holds that revision."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAIN = "'__main__'"


def _bench(module: str, *args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    code = f"import runpy, sys; sys.path.append({str(ROOT)!r}); runpy.run_module({module!r}, run_name={MAIN})"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        env={**os.environ, "MPLBACKEND": "Agg"},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _run(path: Path, ns: dict[str, list[float]], failed: dict[str, str] | None = None) -> Path:
    path.write_text(json.dumps({"ns": ns, "failed": failed or {}, "load": f"load of {path.stem}"}))
    return path


def test_peers_summary_takes_the_median_of_each_runs_median_and_the_ratio_per_run(tmp_path: Path) -> None:
    runs = [
        _run(
            tmp_path / "a.json", {"floor": [50, 60], "lossfmt": [100, 100, 300], "trackio": [1000, 3000, 900]}
        ),
        _run(tmp_path / "b.json", {"floor": [50], "lossfmt": [200], "trackio": [1000]}),
        _run(
            tmp_path / "c.json",
            {"floor": [50], "lossfmt": [400], "trackio": [8000]},
            failed={"aim": "RuntimeError: no repo"},
        ),
    ]
    out = tmp_path / "summary.md"
    proc = _bench("bench.peers", "--summarize", *map(str, runs), "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = out.read_text().splitlines()
    assert "load of a; load of b; load of c" in "\n".join(lines)
    row = {line.split(" | ")[0].lstrip("| "): line for line in lines if line.startswith("| ")}
    # trackio's medians 1000, 1000, 8000 against lossfmt's 100, 200, 400: ratios 10, 5, 20 per run.
    assert row["trackio `trackio.log({'loss': v})`"].endswith("| 1,000 | 1,000-8,000 | 10.0x (5.0-20.0) |")
    assert "| 200 | 100-400 | 1.0x (1.0-1.0) |" in row["**lossfmt** `LossWriter.add(step, value)`"]
    assert "0 of 3 runs" in row["aim `Run.track(v, name='loss', step=i)`"]
    assert "RuntimeError: no repo; not installed" in row["aim `Run.track(v, name='loss', step=i)`"]


def test_peers_run_writes_the_json_its_summary_reads(tmp_path: Path) -> None:
    data, out = tmp_path / "run.json", tmp_path / "run.md"
    proc = _bench("bench.peers", "--quick", "--json", str(data), "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = json.loads(data.read_text())
    assert len(run["ns"]["lossfmt"]) == 2 and all(ns > 0 for ns in run["ns"]["lossfmt"])
    assert run["load"].startswith("load ") and run["load"] in out.read_text()
    summary = _bench("bench.peers", "--summarize", str(data), cwd=tmp_path)
    assert summary.returncode == 0, summary.stderr[-3000:]
    assert "| **lossfmt** `LossWriter.add(step, value)` |" in summary.stdout


def _has_commit(rev: str) -> bool:
    proc = subprocess.run(
        ["git", "-C", str(ROOT), "cat-file", "-e", f"{rev}^{{commit}}"], capture_output=True
    )
    return proc.returncode == 0


@pytest.mark.slow
def test_baseline_quick_run_builds_the_old_revision_and_compares_both_sides(tmp_path: Path) -> None:
    if not _has_commit("379f98c"):
        pytest.skip("the checkout's git history lacks 379f98c (a shallow clone)")
    out, pngs = tmp_path / "baseline.md", tmp_path / "png"
    proc = _bench(
        "bench.baseline", "--quick", "--png-dir", str(pngs), "--out", str(out), cwd=tmp_path, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = out.read_text()
    old = next(line for line in report.splitlines() if line.startswith("- old: "))
    new = next(line for line in report.splitlines() if line.startswith("- new: "))
    assert "/old/lib/" in old and "/new/lib/" in new  # each side installed in its own throwaway venv
    assert str(ROOT) not in old + new  # neither imports the checkout's source directly
    for case in (
        "`add(step, float)`",
        "`add(step, loss, count=32, epoch=e)`",
        "`add_many(step, 4 tags), per event`",
    ):
        assert f"| {case} |" in report
    assert report.count("| `lossview FILE -o out.png`") == 2
    assert "| --smooth ema:0.6, 20,000 events |" in report
    assert "old identical; new identical" in report  # each side renders the same PNG every time
    assert len(list(pngs.glob("*.png"))) == 4
