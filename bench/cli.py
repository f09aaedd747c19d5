"""Command line of the suite: pick benchmarks and sizes, run them, write the markdown report."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from bench import add_cost, closing, export, livefile, read, size, sustained, tax, throughput, verify, viewer
from bench.common import Config, Section, Workspace, log, machine_load
from bench.report import render

ROOT = Path(__file__).resolve().parents[1]

#: Every benchmark, in report order: name -> function(config, workspace) -> Section.
BENCHMARKS: dict[str, Callable[[Config, Workspace], Section]] = {
    "add": add_cost.run,
    "sustained": sustained.run,
    "throughput": throughput.run,
    "closing": closing.run,
    "tax": tax.run,
    "size": size.run,
    "livefile": livefile.run,
    "read": read.run,
    "verify": verify.run,
    "export": export.run,
    "render": viewer.run_render,
    "follow": viewer.run_follow,
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark lossfmt against list.append, TensorBoard, tensorboardX, CSV and tbparse, "
        "and write a markdown report with PASS/MISS for each goal.",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run of every code path")
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help=f"run only these benchmarks (repeatable or comma-separated): {', '.join(BENCHMARKS)}",
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=1,
        metavar="N",
        help="run the selected benchmarks N times in this process (inputs shared) and state every goal's "
        "result in each run; the tables are the last run's (publish with N >= 3)",
    )
    parser.add_argument(
        "--out",
        help="report path, or - for stdout (default: BENCHMARKS.md at the repo root for a full run of every "
        "benchmark, stdout with --quick or --only so a partial run never replaces the published report)",
    )
    args = parser.parse_args(argv)
    names = [n.strip() for item in args.only or [] for n in item.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    args.names = names or list(BENCHMARKS)
    if args.out is None:
        args.out = "-" if (args.quick or names) else str(ROOT / "BENCHMARKS.md")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the selected benchmarks; 0 if every one ran (missed goals are reported, not errors), else 1."""
    args = parse_args(argv)
    cfg = Config.quick_run() if args.quick else Config.full()
    command = shlex.join(["python", "-m", "bench", *(sys.argv[1:] if argv is None else argv)])
    started = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    load_start = os.getloadavg()
    t_start = time.perf_counter()
    ws = Workspace()
    runs: list[list[Section]] = []
    log(f"machine: {machine_load()}")
    _compile_packages()
    try:
        for r in range(args.runs):
            if args.runs > 1:
                log(f"=== run {r + 1} of {args.runs}")
            runs.append([_run_one(name, cfg, ws) for name in args.names])
    finally:
        ws.cleanup()
    sections = runs[-1]
    text = render(
        sections, cfg, command, ROOT, (load_start, os.getloadavg()), started, time.perf_counter() - t_start
    )
    if args.runs > 1:
        text = text.replace(
            "\n## Goals\n", "\n" + "\n".join(across_runs(runs)) + "\n## Goals (the last run)\n", 1
        )
    if args.out == "-":
        sys.stdout.write(text)
    else:
        Path(args.out).write_text(text)
        log(f"wrote {args.out}")
    return 1 if any(s.error for run in runs for s in run) else 0


def _compile_packages() -> None:
    """Bytecode for lossfmt and lossview, as `pip install` of the wheel writes it: the subprocess rows
    (`lossview ...` commands) measure what users run, not a recompile of every module from source
    (0.1 s per command where PYTHONDONTWRITEBYTECODE is set, as on this project's machines, and the
    checkout has no __pycache__)."""
    import compileall

    import lossfmt
    import lossview

    for package in (lossfmt, lossview):
        compileall.compile_dir(os.path.dirname(package.__file__), quiet=1)


def _run_one(name: str, cfg: Config, ws: Workspace) -> Section:
    log(f"== {name}")
    t0 = time.perf_counter()
    try:
        sec = BENCHMARKS[name](cfg, ws)
    except Exception as exc:  # one broken benchmark must not hide the others' results
        log(traceback.format_exc())
        sec = Section(name, name, error=f"{type(exc).__name__}: {exc}")
    sec.seconds = time.perf_counter() - t0
    sec.load = machine_load()
    log(f"{name}: {sec.seconds:.0f} s, {sec.load}")
    for goal in sec.goals:
        log(goal.line())
    return sec


def across_runs(runs: list[list[Section]]) -> list[str]:
    """Each goal with its result in every full run: the spread a published figure must state."""
    lines = [
        f"## Goals across {len(runs)} runs",
        "",
        "Each goal, how many runs met it, and every run's figure.",
        "",
    ]
    results: dict[str, list[str]] = {}
    for run in runs:
        for sec in run:
            for goal in sec.goals:
                results.setdefault(goal.text, []).append(
                    f"{'PASS' if goal.passed else 'MISS'} {goal.measured}"
                )
    for text, got in results.items():
        passed = sum(g.startswith("PASS") for g in got)
        lines.append(f"- **{text}**: met in {passed} of {len(got)} runs")
        lines += [f"  - run {i + 1}: {g}" for i, g in enumerate(got)]
    return [*lines, ""]
