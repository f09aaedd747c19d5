"""What grows with the run (issue 9): close()'s peak extra memory and time per event at 1M/10M/30M events,
and the flush of many distinct tags (per-parameter metrics), with the live file's dictionary growth."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import time

from bench.common import Config, Section, Workspace, child, log, median, min_med_max, table

CLOSE_MEMORY_GOAL_MIB = 256
MANY_TAGS_GOAL_SECS = 2.0
GROWTH_FLUSHES = 10


def _close_child(ws: Workspace, n: int) -> dict[str, float]:
    path = ws.path(f"close{n}.arrow")
    proc = subprocess.run(
        child("bench.memory", "close", str(path), str(n)),
        capture_output=True,
        text=True,
        check=True,
    )
    os.unlink(path)
    return json.loads(proc.stdout)


def _close_rows(cfg: Config, ws: Workspace, sec: Section) -> None:
    rows, extra, per_event = [], {}, {}
    for n in cfg.close_ns:
        log(f"close(): {n:,} events (a subprocess)")
        res = _close_child(ws, n)
        extra[n], per_event[n] = res["close_extra_mib"], res["close_secs"] / n * 1e9
        rows.append(
            [
                f"{n:,}",
                f"{res['before_mib']:,.0f}",
                f"{res['close_extra_mib']:,.0f}",
                f"{res['close_secs']:,.2f}",
                f"{per_event[n]:.0f}",
                f"{res['bytes'] / n:.1f}",
            ]
        )
    sec.add(
        "### close(): peak extra memory and time per event",
        "",
        "One child process per size writes the events with `add(step, float)`, flushes, then closes: the "
        "extra memory is the peak RSS during close() minus the RSS just before it (Linux VmHWM, reset "
        "before close()); sizes measured one after another in one run.",
        "",
        *table(
            ["events", "RSS before (MiB)", "close() extra (MiB)", "close() s", "ns/event", "B/event"], rows
        ),
    )
    worst = max(extra.values())
    sec.goal(
        f"close() peak extra memory <= {CLOSE_MEMORY_GOAL_MIB} MB at every size",
        worst <= CLOSE_MEMORY_GOAL_MIB,
        ", ".join(f"{n:,}: {extra[n]:,.0f} MiB" for n in cfg.close_ns),
    )
    first, last = cfg.close_ns[0], cfg.close_ns[-1]
    sec.goal(
        "close() time per event does not grow with the run (largest <= 1.5x smallest)",
        per_event[last] <= 1.5 * per_event[first],
        ", ".join(f"{n:,}: {per_event[n]:.0f} ns" for n in cfg.close_ns),
    )


def _tags_flush(ws: Workspace, k: int) -> tuple[float, float]:
    """Seconds of (add() of k new tags + flush(), flush() alone)."""
    from lossfmt import LossWriter

    writer = LossWriter(ws.path("tags.arrow"), flush_secs=1e6)  # only the explicit flush writes
    t0 = time.perf_counter()
    for i in range(k):
        writer.add(0, 1.0, f"grad_norm/layer{i:06d}")
    t1 = time.perf_counter()
    writer.flush()
    t2 = time.perf_counter()
    writer.close()
    return t2 - t0, t2 - t1


def _many_tags(cfg: Config, ws: Workspace, sec: Section) -> None:
    from lossfmt import LossWriter

    k = cfg.tags_n
    # A tenth of the tags first: a writer whose new tags cost quadratic time (issue 9: 16,000 took 14 s)
    # would take hours at 100,000, so the full size runs only if the trial says it fits.
    trial_k = max(1, k // 10)
    trial = _tags_flush(ws, trial_k)[0]
    if trial * 10 > 20 * MANY_TAGS_GOAL_SECS:
        sec.add(
            "### Many distinct tags",
            "",
            f"Not run at {k:,} tags: {trial_k:,} tags took {trial:.1f} s (add + flush), so {k:,} would take "
            f"over {trial * 10:.0f} s even if linear.",
            "",
        )
        sec.goal(
            f"{k:,} distinct tags flush in < {MANY_TAGS_GOAL_SECS:g} s", False, f"{trial_k:,}: {trial:.1f} s"
        )
        return
    totals, flushes = [], []
    for _ in range(3):
        total, flush = _tags_flush(ws, k)
        totals.append(total)
        flushes.append(flush)
    # Dictionary growth: the same number of new tags in each of several flushes. Linear growth means
    # every flush adds about the same bytes; a rebuilt dictionary makes each flush larger than the last.
    per_flush = max(1, k // (10 * GROWTH_FLUSHES))
    path = ws.path("growth.arrow")
    sizes = [0]
    with LossWriter(path, flush_secs=1e6) as writer:
        for f in range(GROWTH_FLUSHES):
            for i in range(per_flush):
                writer.add(f, 1.0, f"flush{f:03d}/param{i:06d}")
            writer.flush()
            sizes.append(os.path.getsize(path))
    grew = [b - a for a, b in itertools.pairwise(sizes)][1:]  # the first flush also carries the schema
    sec.add(
        "### Many distinct tags",
        "",
        f"{k:,} new tags (one event each) added, then `flush()`: the whole add + flush, and flush() alone "
        "(the flusher may start early at 65,536 pending, so part of the work can land in the adds). Then "
        f"{GROWTH_FLUSHES} flushes of {per_flush:,} new tags each: the live file's bytes per flush.",
        "",
        *table(
            ["what", "min s", "median s", "max s"],
            [
                [f"add() x {k:,} tags + flush()", *min_med_max(totals, fmt="{:.3f}")],
                ["flush() alone", *min_med_max(flushes, fmt="{:.3f}")],
            ],
        ),
        f"Bytes per flush of {per_flush:,} new tags, flushes 2-{GROWTH_FLUSHES}: "
        + ", ".join(f"{b:,}" for b in grew),
        "",
    )
    sec.goal(
        f"{k:,} distinct tags flush in < {MANY_TAGS_GOAL_SECS:g} s",
        median(totals) < MANY_TAGS_GOAL_SECS,
        f"add + flush {median(totals):.3f} s (flush alone {median(flushes):.3f} s)",
    )
    sec.goal(
        "the live file's dictionary bytes grow linearly (last flush <= 1.5x the second)",
        grew[-1] <= 1.5 * grew[0],
        f"{grew[0]:,} -> {grew[-1]:,} bytes per flush",
    )


def run(cfg: Config, ws: Workspace) -> Section:
    sec = Section("closing", "Costs that grow with the run")
    _close_rows(cfg, ws, sec)
    _many_tags(cfg, ws, sec)
    return sec
