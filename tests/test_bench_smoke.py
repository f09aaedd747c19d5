"""The benchmark suite keeps running: a tiny-size run of every benchmark writes every report section.

No timing assertions: the figures of a smoke run mean nothing, only that every code path still works."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SECTIONS = (
    "## Goals",
    "## Caller-thread cost of add()",
    "## End-to-end throughput",
    "### Peak memory while the producer outruns the writer",
    "## Training-loop tax",
    "## Bytes per event",
    "## Reading a run",
    "## Viewer: rendering a run to PNG",
    "## Viewer: follow latency",
    "## GPU note",
)


def test_quick_run_writes_every_section_and_goal(tmp_path: Path) -> None:
    out = tmp_path / "bench.md"
    env = {**os.environ, "MPLBACKEND": "Agg"}
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = out.read_text()
    for heading in SECTIONS:
        assert heading in report, f"missing {heading!r}"
    assert "Failed:" not in report
    assert "- Command: `python -m bench --quick --out" in report
    goal_lines = [line for line in report.splitlines() if line.startswith(("PASS  ", "MISS  "))]
    assert len(goal_lines) >= 9, goal_lines  # 12 with torch, tensorboard and tbparse installed


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_partial_runs_never_replace_the_published_report() -> None:
    code = (
        "from bench.cli import ROOT, parse_args\n"
        "assert parse_args(['--quick']).out == '-'\n"
        "assert parse_args(['--only', 'size']).out == '-'\n"
        "assert parse_args([]).out == str(ROOT / 'BENCHMARKS.md')\n"
        "assert parse_args(['--only', 'add,read', '--only', 'follow']).names == ['add', 'read', 'follow']\n"
    )
    proc = _python(code)
    assert proc.returncode == 0, proc.stderr


def test_unknown_benchmark_is_a_usage_error() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--only", "nope"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "unknown benchmark nope" in proc.stderr
