"""The benchmark scripts keep running: a tiny run of the cheap benchmarks, the peers table and the GPU script.

No timing assertions: the figures of a smoke run mean nothing, only that the code paths still work. The
expensive sections (training-loop tax, TensorBoard reads, renders, follow latency) are left to the full
bench the lead runs; they share the report code checked here. `bench` lives in the checkout, not the
wheel: it is appended to sys.path (after site-packages), so in CI it benchmarks the installed lossfmt."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAIN = "'__main__'"
CHEAP = ("add", "sustained", "livefile", "closing", "verify")
SECTIONS = (
    "## Goals",
    "## Caller-thread cost of add()",
    "## Sustained add(): the flusher running",
    "## Live-file bytes at a realistic flush rate",
    "### close(): peak extra memory and time per event",
    "### Many distinct tags",
    "## Reading with and without checksum verification",
    "## GPU note",
)


def _bench(module: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    code = f"import runpy, sys; sys.path.append({str(ROOT)!r}); runpy.run_module({module!r}, run_name={MAIN})"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        env={**os.environ, "MPLBACKEND": "Agg"},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_quick_run_of_the_cheap_benchmarks_writes_their_sections_goals_and_load(tmp_path: Path) -> None:
    out = tmp_path / "bench.md"
    proc = _bench("bench", "--quick", "--only", ",".join(CHEAP), "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = out.read_text()
    for heading in SECTIONS:
        assert heading in report, f"missing {heading!r}"
    assert "Failed:" not in report
    assert f"- Command: `python -m bench --quick --only {','.join(CHEAP)} --out" in report
    assert report.count("at its end: load ") == len(CHEAP)  # the machine's load with every section
    goal_lines = [line for line in report.splitlines() if line.startswith(("PASS  ", "MISS  "))]
    assert len(goal_lines) >= 9, goal_lines
    assert "machine: load " in proc.stderr


def test_several_runs_state_every_goal_once_per_run(tmp_path: Path) -> None:
    out = tmp_path / "bench.md"
    proc = _bench("bench", "--quick", "--only", "livefile", "--runs", "2", "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = out.read_text()
    assert "## Goals across 2 runs" in report
    goal = "- **live file at a realistic flush rate <= 1.5x the closed file's bytes/event**: met in "
    assert report.count(goal) == 1
    assert "  - run 1: " in report and "  - run 2: " in report


def test_peers_table_lists_every_peer_installed_or_not(tmp_path: Path) -> None:
    out = tmp_path / "peers.md"
    proc = _bench("bench.peers", "--quick", "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = out.read_text()
    for peer in ("trackio", "aim", "wandb", "MLflow", "TensorBoard", "tensorboardX", "**lossfmt**", "floor"):
        assert f"| {peer}" in report, peer
    lossfmt_row = next(line for line in report.splitlines() if line.startswith("| **lossfmt**"))
    assert "not installed" not in lossfmt_row and "failed" not in lossfmt_row


def test_peers_call_lossfmt_through_an_adapter_like_the_floor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The table once called lossfmt's bound add() directly and every other case through a lambda, which put
    # lossfmt below the floor (the floor paid one Python frame more).
    monkeypatch.setattr(sys, "path", [*sys.path, str(ROOT)])
    from bench import peers

    for name in ("floor", "lossfmt"):
        log, close = peers._open(name, tmp_path)
        assert isinstance(log, types.FunctionType), name
        log(0, 0.5)
        close()


def test_sustained_flusher_column_is_the_flusher_threads_own_cpu_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The goal "the flusher's GIL time <= the caller's" was measured as the CPU time of every thread but the
    # caller's, which counts Arrow's compression pool (no GIL) as the flusher's. Now it is the flusher
    # thread's clock: bounded by the other threads' CPU, and what a busy flusher thread spends.
    monkeypatch.setattr(sys, "path", [*sys.path, str(ROOT)])
    from bench import sustained
    from bench.common import Workspace

    ws = Workspace()
    ws.root = tmp_path
    sample = sustained._writer_case(ws, 200_000, sustained._add_float, 200_000)()
    assert 0 < sample.flusher_cpu <= sample.other_cpu + 0.02
    assert sample.caller_cpu > 0

    import threading
    import time

    def spin() -> None:
        end = time.thread_time() + 0.2
        while time.thread_time() < end:
            pass

    from lossfmt import LossWriter

    with LossWriter(tmp_path / "spin.arrow") as writer:
        clock = sustained.flusher_clock(tmp_path / "spin.arrow")
        before = time.clock_gettime(clock)
        spinner = threading.Thread(target=spin)
        spinner.start()
        spinner.join()
        writer.add(0, 1.0)
        # another thread's 0.2 s of CPU is not the flusher's
        assert time.clock_gettime(clock) - before < 0.1


def test_gpu_sync_says_when_there_is_no_gpu_and_runs_its_loops_on_cpu(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    import torch

    proc = _bench("bench.gpu_sync", "--quick", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    if not torch.cuda.is_available():
        assert "no CUDA GPU present" in proc.stdout
    cpu = _bench("bench.gpu_sync", "--quick", "--cpu", cwd=tmp_path)
    assert cpu.returncode == 0, cpu.stdout + cpu.stderr[-3000:]
    assert "PASS: no synchronization in add(); every logged value is the loss at its add()" in cpu.stdout


def test_partial_runs_never_replace_the_published_report(tmp_path: Path) -> None:
    code = (
        "from bench.cli import ROOT, parse_args\n"
        "assert parse_args(['--quick']).out == '-'\n"
        "assert parse_args(['--only', 'size']).out == '-'\n"
        "assert parse_args([]).out == str(ROOT / 'BENCHMARKS.md')\n"
        "assert parse_args(['--only', 'add,read', '--only', 'follow']).names == ['add', 'read', 'follow']\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path.append({str(ROOT)!r})\n{code}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr


def test_unknown_benchmark_is_a_usage_error(tmp_path: Path) -> None:
    proc = _bench("bench", "--only", "nope", cwd=tmp_path)
    assert proc.returncode == 2
    assert "unknown benchmark nope" in proc.stderr
