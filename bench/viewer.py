"""The viewer: rendering a long run to PNG, and follow latency from add() to the re-rendered image."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bench.common import Config, Section, Workspace, interleaved, log, median, spread, table

LOSSVIEW = [sys.executable, "-m", "lossview"]


def _run_cli(args: list[str], timeout: float = 300) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run([*LOSSVIEW, *args], capture_output=True, text=True, timeout=timeout)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(
            f"lossview {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}"
        )
    return elapsed


def run_render(cfg: Config, ws: Workspace) -> Section:
    from lossview.cli import main as lossview_main

    sec = Section("render", "Viewer: rendering a run to PNG")
    rows = []
    render_secs: dict[int, float] = {}
    term_secs: dict[int, float] = {}
    items_ratio: dict[int, list[float]] = {}  # --x items / the default render, each repeat side by side
    startup = interleaved({"help": lambda: _run_cli(["--help"])}, cfg.slow_repeats)["help"]
    rows.append(
        [
            "`lossview --help` (interpreter start and the CLI's own imports)",
            "",
            "subprocess",
            f"{median(startup):.2f}",
            spread(startup, 1, "{:.2f}"),
        ]
    )
    for n in cfg.read_ns:
        path = ws.run_file(n)
        out = ws.path(f"render{n}.png")
        repeats = cfg.slow_repeats + 2  # a render's time varies with the VM's memory: more repeats
        log(f"render: {n:,} events x {repeats} repeats (subprocess and in-process)")

        def in_process(path: Path = path, out: Path = out) -> float:
            t0 = time.perf_counter()
            status = lossview_main([str(path), "-o", str(out)])
            elapsed = time.perf_counter() - t0
            if status not in (0, None):
                raise RuntimeError(f"lossview main() returned {status} for {path}")
            return elapsed

        in_process()  # warm the imports and font cache once; the subprocess rows pay them every time
        res = interleaved(
            {
                "cli": lambda path=path, out=out: _run_cli([str(path), "-o", str(out)]),
                "main": in_process,
                "term": lambda path=path: _run_cli([str(path), "--term"]),
                "items": lambda path=path, out=out: _run_cli([str(path), "--x", "items", "-o", str(out)]),
            },
            repeats,
        )
        term_secs[n] = median(res["term"])
        if not out.exists() or out.stat().st_size == 0:
            raise RuntimeError(f"lossview wrote no image for {n} events")
        render_secs[n] = median(res["cli"])
        rows.append(
            [
                f"`lossview FILE -o out.png`, {n:,} events",
                f"{n:,}",
                "subprocess",
                f"{median(res['cli']):.2f}",
                spread(res["cli"], 1, "{:.2f}"),
            ]
        )
        items_ratio[n] = [i / c for i, c in zip(res["items"], res["cli"], strict=True)]
        rows.append(
            [
                f"`lossview FILE --x items -o out.png`, {n:,} events",
                f"{n:,}",
                "subprocess",
                f"{median(res['items']):.2f}",
                spread(res["items"], 1, "{:.2f}"),
            ]
        )
        rows.append(
            [
                f"`lossview FILE --term` (one terminal frame, no TTY), {n:,} events",
                f"{n:,}",
                "subprocess",
                f"{median(res['term']):.2f}",
                spread(res["term"], 1, "{:.2f}"),
            ]
        )
        rows.append(
            [
                f"`lossview.cli.main([FILE, '-o', 'out.png'])`, {n:,} events",
                f"{n:,}",
                "in-process, warm",
                f"{median(res['main']):.2f}",
                spread(res["main"], 1, "{:.2f}"),
            ]
        )
    sec.add(
        "The closed single-tag runs of the read benchmark, default options (step-aware smoothing, raw curve "
        "faint). "
        "The subprocess figure is what a user waits for at the shell, interpreter start and imports "
        "included.",
        "",
        *table(["command", "events", "how", "seconds (median)", "range (s)"], rows),
    )
    largest = cfg.read_ns[-1]
    sec.goal(
        f"render {largest:,} events to PNG <= 2 s (whole `lossview` command)",
        render_secs[largest] <= 2.0,
        f"{render_secs[largest]:.2f} s",
    )
    ratios = items_ratio[largest]
    sec.goal(
        f"render {largest:,} events with `--x items` <= 1.5x the default render (whole command)",
        median(ratios) <= 1.5,
        f"{median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}x over {len(ratios)} repeats)",
    )
    sec.goal(
        f"one `--term` frame of {largest:,} events < 1 s (whole `lossview` command)",
        term_secs[largest] < 1.0,
        f"{term_secs[largest]:.2f} s",
    )
    return sec


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _wait_change(path: Path, before: tuple[int, int, int] | None, timeout: float) -> float | None:
    """perf_counter() time at which `path` was seen replaced or rewritten, or None after `timeout`."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        sig = _signature(path)
        if sig is not None and sig != before:
            return time.perf_counter()
        time.sleep(0.002)
    return None


def _wait_quiet(path: Path, quiet: float, timeout: float) -> None:
    """Return once `path` has not changed for `quiet` seconds (a coalesced redraw may still be pending)."""
    deadline = time.perf_counter() + timeout
    sig, since = _signature(path), time.perf_counter()
    while time.perf_counter() < deadline:
        time.sleep(0.01)
        now = _signature(path)
        if now != sig:
            sig, since = now, time.perf_counter()
        elif time.perf_counter() - since >= quiet:
            return


def run_follow(cfg: Config, ws: Workspace) -> Section:
    from lossfmt import LossWriter

    sec = Section("follow", "Viewer: follow latency")
    flush_secs = cfg.follow_flush_secs
    data, img = ws.path("follow.arrow"), ws.path("follow.png")
    writer = LossWriter(data, flush_secs=flush_secs)
    step = 0
    for value in np.linspace(2.0, 1.0, 1000).tolist():
        writer.add(step, value)
        step += 1
    writer.flush()
    stderr_path = ws.path("follow.stderr")
    with open(stderr_path, "w") as stderr:
        proc = subprocess.Popen(
            [*LOSSVIEW, str(data), "--follow", "-o", str(img)], stdout=stderr, stderr=stderr
        )
    latencies: dict[str, list[float]] = {"add": [], "flush": []}
    missed = 0
    rng = random.Random(0)
    try:
        if _wait_change(img, None, 60) is None:
            raise RuntimeError(f"lossview --follow wrote no image in 60 s: {stderr_path.read_text()[-500:]}")
        _wait_quiet(img, 0.5, 10)
        log(f"follow: {cfg.follow_samples} samples x 2 modes, flush_secs={flush_secs}")
        for mode in ("add", "flush"):
            for _ in range(cfg.follow_samples):
                # A random phase against the flusher's timer: uniform over a whole flush interval.
                time.sleep(rng.uniform(0.0, flush_secs) if mode == "add" else rng.uniform(0.05, 0.3))
                before = _signature(img)
                t0 = time.perf_counter()
                writer.add(step, 1.0 + 0.5 * rng.random())
                step += 1
                if mode == "flush":
                    writer.flush()
                seen = _wait_change(img, before, flush_secs + 10)
                if seen is None:
                    missed += 1
                    continue
                latencies[mode].append(seen - t0)
                _wait_quiet(img, 0.3, 10)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            status = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            status = proc.wait()
        writer.close()
    rows = []
    p95 = {}
    for mode, label in (
        ("add", "`add()` only (the writer flushes every flush_secs)"),
        ("flush", "`add()` + `flush()` (the viewer's own latency)"),
    ):
        lat = latencies[mode]
        if not lat:
            rows.append([label, "0", "", "", ""])
            continue
        p95[mode] = float(np.percentile(lat, 95))
        rows.append(
            [
                label,
                str(len(lat)),
                f"{float(np.percentile(lat, 50)) * 1e3:.0f}",
                f"{p95[mode] * 1e3:.0f}",
                f"{max(lat) * 1e3:.0f}",
            ]
        )
    sec.add(
        f"`lossview FILE --follow -o img.png` in a subprocess; the benchmark process writes with "
        f"`LossWriter(flush_secs={flush_secs})`, one event at a time at random moments, and polls the PNG "
        "(inode/mtime/size, every 2 ms) until it is replaced. Latency = add() call to the new image on disk.",
        "",
        *table(["mode", "samples", "p50 (ms)", "p95 (ms)", "max (ms)"], rows),
        f"Samples with no re-render within flush_secs + 10 s: {missed}. "
        f"Viewer exit status after SIGINT: {status}.",
        "",
    )
    target = flush_secs + 0.5
    sec.goal(
        f"follow latency p95 <= flush_secs + 0.5 s = {target:.1f} s (add() only)",
        "add" in p95 and p95["add"] <= target and missed == 0,
        f"p95 {p95.get('add', float('nan')):.2f} s, {missed} missed",
    )
    return sec
