"""The price of checksum verification (issue 14) on read: `lossfmt.read` with and without it, interleaved.

The "without" side is `lossfmt.read(path, verify=False)` when the reader offers that switch, else plain
`pyarrow.ipc` decoding of the same file (what reading costs with no lossfmt work at all: an upper bound
of the verification's share). Three files: a closed run, a live one (the same kind of run before close()),
and a live file of many tiny flushes (2 events each, issue 14 item 7: per-message work dominates there)."""

from __future__ import annotations

import gc
import inspect
import math
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa

from bench.common import (
    Config,
    Section,
    Stopwatch,
    Workspace,
    cpus,
    log,
    machine_load,
    min_med_max,
    realistic_losses,
    table,
    walls,
)

#: The goal of issue 14: verification costs at most 10% of read time.
LIMIT = 1.10


def _ratio(ratios: list[float]) -> str:
    return f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}–{max(ratios):.2f})"


def _tiny_flushes(ws: Workspace, flushes: int) -> tuple[Path, object]:
    """A live file of `flushes` flushes of 2 events each, its writer kept open (the caller closes it).

    The writer re-compacts such a file into large batches as it grows (lossfmt/_recompact.py); the worst
    case a reader still meets (a crashed run of an older writer, another implementation's writer, a file
    whose rewrite failed for lack of space) keeps every flush, so re-compaction is off while it is written.
    """
    from lossfmt import LossWriter, _recompact

    path = ws.path(f"tiny{flushes}.arrow")
    first = _recompact.FIRST_BYTES
    _recompact.FIRST_BYTES = math.inf  # type: ignore[assignment]
    try:
        writer = LossWriter(path, flush_secs=1e6)
        values = realistic_losses(2 * flushes)
        for i in range(flushes):
            writer.add(2 * i, values[2 * i])
            writer.add(2 * i + 1, values[2 * i + 1])
            writer.flush()
    finally:
        _recompact.FIRST_BYTES = first
    return path, writer


def _timed(read: Callable[[], int], n: int) -> Callable[[], Stopwatch]:
    """A case: wall time and the process's CPU time (all threads: Arrow decodes on several) of one read."""

    def case() -> Stopwatch:
        with Stopwatch(time.process_time) as watch:
            rows = read()
        if rows != n:
            raise RuntimeError(f"read {rows:,} rows, expected {n:,}")
        return watch

    return case


def _paired(
    cases: dict[str, Callable[[], Stopwatch]], kinds: list[str], repeats: int
) -> dict[str, list[Stopwatch]]:
    """Each repeat reads every file both ways back to back, the files in rotating order and the two reads of
    a file in alternating order: the first read after another file's pays for fresh memory (about 0.1 s for
    a 10M-event file on this VM), so a fixed order would charge it to one side."""
    results: dict[str, list[Stopwatch]] = {name: [] for name in cases}
    for case in cases.values():  # untimed: the first read in a process pays for first use of everything
        case()
    for r in range(repeats):
        for i, kind in enumerate(kinds[r % len(kinds) :] + kinds[: r % len(kinds)]):
            pair = [f"{kind}/verified", f"{kind}/unverified"]
            for name in pair if (r + i) % 2 == 0 else pair[::-1]:
                gc.collect()  # every read starts from the same garbage-collector state
                results[name].append(cases[name]())
    return results


def _walk_cost(path: Path, repeats: int) -> list[float]:
    """CPU seconds that verification adds to walking the file's bytes, one per pair of walks with and
    without it (which one first alternating): `lossfmt._framing.walk` is all that `verify=` switches in a
    read, so this is the verification's own cost, without the noise of two whole reads."""
    from lossfmt import _framing

    data, name = path.read_bytes(), str(path)
    extra = []
    for r in range(repeats):
        took = {}
        for verify in (True, False) if r % 2 == 0 else (False, True):
            t0 = time.process_time()
            _framing.walk(data, name, verify)
            took[verify] = time.process_time() - t0
        extra.append(took[True] - took[False])
    return extra


def _pyarrow_read(path: Path, closed: bool) -> Callable[[], int]:
    def read() -> int:
        with pa.OSFile(str(path)) as f:
            if closed:
                return pa.ipc.open_file(f).read_all().num_rows
            f.seek(8)  # a live file: the Arrow magic and padding, then a stream (spec/FORMAT.md)
            return pa.ipc.open_stream(f).read_all().num_rows

    return read


def run(cfg: Config, ws: Workspace) -> Section:
    import lossfmt

    sec = Section("verify", "Reading with and without checksum verification")
    n = cfg.verify_n
    flushes = 500 if cfg.quick else 100_000
    switch = "verify" in inspect.signature(lossfmt.read).parameters
    log(f"verify: writing a live {n:,}-event file and one of {flushes:,} flushes of 2 events")
    live, writer = ws.live_file(n)
    tiny, tiny_writer = _tiny_flushes(ws, flushes)
    files = {"closed": (ws.run_file(n), n), "live": (live, n), "tiny flushes": (tiny, 2 * flushes)}
    cases: dict[str, Callable[[], Stopwatch]] = {}
    for kind, (path, rows) in files.items():
        cases[f"{kind}/verified"] = _timed(lambda p=path: lossfmt.read(p).num_rows, rows)
        if switch:
            unverified = lambda p=path: lossfmt.read(p, verify=False).num_rows  # noqa: E731
        else:
            unverified = _pyarrow_read(path, kind == "closed")
        cases[f"{kind}/unverified"] = _timed(unverified, rows)
    sizes = {kind: os.path.getsize(path) for kind, (path, _) in files.items()}  # (before close())
    repeats = max(3, cfg.repeats)
    log(f"verify: 3 files x 2 readers x {repeats} repeats, paired, order alternating; {machine_load()}")
    try:
        res = _paired(cases, list(files), repeats)
        # (before close(): it compacts the live files into closed ones of a few batches)
        extras = {kind: _walk_cost(path, 3 * repeats) for kind, (path, _) in files.items()} if switch else {}
    finally:
        writer.close()  # type: ignore[attr-defined]
        tiny_writer.close()  # type: ignore[attr-defined]
    without = "`lossfmt.read(path, verify=False)`" if switch else "`pyarrow.ipc` decoding of the same bytes"
    rows, own = [], []
    for kind, (_, events) in files.items():
        v, u = res[f"{kind}/verified"], res[f"{kind}/unverified"]
        # Each repeat reads both ways back to back: the ratio of a pair sees the same machine load.
        wall = [a / b for a, b in zip(walls(v), walls(u), strict=True)]
        cpu = [a / b for a, b in zip(cpus(v), cpus(u), strict=True)]
        what = f"{kind} ({events:,} events, {sizes[kind] / 1e6:,.1f} MB)"
        rows.append([f"{what}: `lossfmt.read(path)`", *min_med_max(walls(v), 1e3), "", ""])
        rows.append([f"{what}: {without}", *min_med_max(walls(u), 1e3), _ratio(wall), _ratio(cpu)])
        read_cpu = statistics.median(cpus(v))
        if not switch:
            sec.goal(
                f"verification <= 10% of read time, {kind} file (verified read / pyarrow's, process CPU)",
                statistics.median(cpu) <= LIMIT,
                f"CPU {_ratio(cpu)}, wall {_ratio(wall)} over {repeats} repeats",
            )
            continue
        extra = extras[kind]
        share = statistics.median(extra) / read_cpu
        ms = statistics.median(extra) * 1e3
        spread = f"{min(extra) * 1e3:,.1f}–{max(extra) * 1e3:,.1f}"
        own.append([kind, f"{ms:,.1f}", spread, f"{read_cpu * 1e3:,.0f}", f"{share:.1%}", _ratio(cpu)])
        sec.goal(
            f"verification <= 10% of read time, {kind} file (its own CPU time, median of {3 * repeats} "
            "paired walks, over the verified read's median CPU time)",
            share <= LIMIT - 1,
            f"{share:.1%} ({ms:,.1f} ms of {read_cpu * 1e3:,.0f} ms); whole reads paired: CPU {_ratio(cpu)}",
        )
    sec.add(
        f"`add(step, float)` runs, one tag: a closed file, the same kind of run before close() (live), and a "
        f"live file of {flushes:,} `flush()` calls of 2 events each. Times in ms; the ratio is verified / "
        "without, per repeat (both reads back to back, which one first alternating), median and range, of "
        "wall time and of the process's CPU time (all threads), which leaves out the time the OS gave to "
        "other processes: on "
        "this shared machine wall-time pairs swing either way with the others' load, so the goal reads CPU.",
        "",
        *table(["read", "min ms", "median ms", "max ms", "verified / without (wall)", "(CPU)"], rows),
    )
    if own:
        sec.add(
            "The goal reads the verification's own cost: the CPU time it adds to `lossfmt._framing.walk` "
            "(all that `verify=` switches in a read), per pair of walks of the same bytes, over the verified "
            "read's median CPU time. The whole-read ratios above are the end-to-end check; two reads of "
            "0.4-1.2 s each swing by a third either way on this VM (fresh memory), more than the bound.",
            "",
            *table(["file", "verification ms (median)", "range ms", "verified read CPU ms", "share",
                    "whole reads paired (CPU)"], own),
        )  # fmt: skip
    if not switch:
        sec.add(
            "`lossfmt.read` has no `verify=` switch in this revision: the without side is pyarrow alone, "
            "so the ratio also counts lossfmt's own work (schema checks, dictionary handling)."
        )
    return sec
