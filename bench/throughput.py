"""End-to-end throughput (N add() + close()) and peak memory while the producer outruns the writer."""

from __future__ import annotations

import json
import subprocess
import time

from bench.common import (
    Config,
    Section,
    Stopwatch,
    Workspace,
    child,
    cpus,
    interleaved,
    log,
    median,
    rate,
    spread,
    table,
    walls,
)


def run(cfg: Config, ws: Workspace) -> Section:
    from lossfmt import LossWriter

    sec = Section("throughput", "End-to-end throughput")
    n = cfg.e2e_n
    value = 0.6931471805599453

    close_secs: list[float] = []

    def lossfmt_case() -> Stopwatch:
        writer = LossWriter(ws.path("e2e.arrow"))
        add = writer.add
        with Stopwatch(time.process_time) as sw:
            for i in range(n):
                add(i, value)
            t1 = time.perf_counter()
            writer.close()
            close_secs.append(time.perf_counter() - t1)
        return sw

    def options_case() -> Stopwatch:
        writer = LossWriter(ws.path("e2e-options.arrow"))
        add = writer.add
        with Stopwatch(time.process_time) as sw:
            for i in range(n):
                add(i, value, count=32, epoch=i >> 10)
            writer.close()
        return sw

    def floor_case() -> Stopwatch:
        buf: list[tuple[int, float]] = []
        append = buf.append
        with Stopwatch(time.process_time) as sw:
            for i in range(n):
                append((i, value))
        return sw

    repeats = cfg.repeats + 2  # each repeat is about a second; more of them steady the median
    log(f"end-to-end: {n:,} events x {repeats} repeats")
    res = interleaved({"lossfmt": lossfmt_case, "options": options_case, "floor": floor_case}, repeats)
    ns = {k: median(walls(v)) / n * 1e9 for k, v in res.items()}
    cpu_ns = {k: median(cpus(v)) / n * 1e9 for k, v in res.items()}
    rows = []
    for key, label in (
        ("lossfmt", "**lossfmt** add() x N + close()"),
        ("options", "**lossfmt** add(step, float, count=32, epoch=e) x N + close() (not a goal)"),
        ("floor", "floor: `list.append((step, value))` x N"),
    ):
        rows.append(
            [
                label,
                rate(n, median(walls(res[key]))),
                f"{ns[key]:.0f}",
                spread(walls(res[key]), 1e3),
                f"{ns[key] / ns['floor']:.1f}x",
                f"{cpu_ns[key]:.0f}",
            ]
        )
    sec.add(
        f"{n:,} `add(step, float)` calls then `close()` (flush, compaction to the footer'd file, fsync, "
        "rename), timed from the first add() to close() returning: everything the writer does for these "
        "events, including the flusher thread's conversion and I/O, which share the GIL with the producer. "
        f"Of the median, `close()` took {median(close_secs) * 1e3:,.0f} ms. An event with every option at "
        "its default is buffered packed into 24 bytes; the options row (the README's training loop) "
        "takes the general 7-tuple path. CPU = process CPU time (all threads), which leaves out time the "
        "OS gave to other processes.",
        "",
        *table(["what", "events/s (median)", "ns/event", "range (ms)", "x floor", "CPU ns/event"], rows),
    )
    sec.goal(
        "end-to-end (add + close) per event <= 8x the floor",
        ns["lossfmt"] <= 8 * ns["floor"],
        f"{ns['lossfmt']:.0f} ns/event = {ns['lossfmt'] / ns['floor']:.1f}x floor; CPU time: "
        f"{cpu_ns['lossfmt'] / cpu_ns['floor']:.1f}x",
    )
    _memory(cfg, ws, sec)
    return sec


# Producer children: (label, max_pending or None for "a plain list keeping every event").
_MEMORY_CASES = (
    (1 << 12, "max_pending=4,096"),
    (1 << 18, "max_pending=262,144 (default)"),
    (None, "plain list"),
)


def _memory(cfg: Config, ws: Workspace, sec: Section) -> None:
    rows = []
    peak: dict[tuple[int | None, int], float] = {}
    base: dict[tuple[int | None, int], float] = {}
    for max_pending, label in _MEMORY_CASES:
        for n in cfg.mem_ns:
            log(f"memory: {label}, {n:,} events (subprocess)")
            args = child("bench.memory", str(ws.path("mem.arrow")), str(n))
            if max_pending is not None:
                args.append(str(max_pending))
            out = subprocess.run(args, capture_output=True, text=True, check=True, timeout=600)
            r = json.loads(out.stdout)
            peak[(max_pending, n)] = r["produce_peak_mib"]
            base[(max_pending, n)] = r["baseline_mib"]
            rows.append(
                [
                    label,
                    f"{n:,}",
                    f"{r['baseline_mib']:.0f}",
                    f"{r['produce_peak_mib']:.0f}",
                    f"{r['produce_peak_mib'] - r['baseline_mib']:.0f}",
                    "" if r["close_peak_mib"] is None else f"{r['close_peak_mib']:.0f}",
                    rate(n, r["produce_secs"]),
                ]
            )
    sec.add(
        "### Peak memory while the producer outruns the writer",
        "",
        "Each row is a fresh subprocess adding N events as fast as one thread can, with the flusher starved "
        "of the GIL (`sys.setswitchinterval(0.05)`) so the producer outruns it. Peak RSS (VmHWM, reset "
        "between phases through /proc/self/clear_refs) while producing, and during `close()` (compaction). "
        "The plain-list row is what a buffer without backpressure holds when the disk falls behind.",
        "",
        *table(
            [
                "buffer",
                "events",
                "RSS before (MiB)",
                "peak producing (MiB)",
                "growth (MiB)",
                "peak in close() (MiB)",
                "producer rate",
            ],
            rows,
        ),
    )
    small, large = cfg.mem_ns
    default = 1 << 18
    grow_small = peak[(default, small)] - base[(default, small)]
    grow_large = peak[(default, large)] - base[(default, large)]
    list_small = peak[(None, small)] - base[(None, small)]
    list_large = peak[(None, large)] - base[(None, large)]
    sec.add(
        f"A buffer without backpressure grows with the events: {list_small:.0f} -> {list_large:.0f} MiB "
        f"for {small:,} -> {large:,} events. With backpressure the peak depends on max_pending, not on the "
        "number of events (pending rows plus the batch being converted).",
        "",
    )
    sec.goal(
        f"bounded memory under overload (default max_pending: peak growth at {large:,} events < 2x the "
        f"growth at {small:,}; without backpressure it is {large / small:.0f}x)",
        grow_large < 2 * grow_small,
        f"+{grow_small:.0f} MiB -> +{grow_large:.0f} MiB "
        f"(plain list: +{list_small:.0f} -> +{list_large:.0f} MiB)",
    )
