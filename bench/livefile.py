"""Live-file bytes per event at a realistic flush rate, against the closed file of the same run.

A training step of 60 ms logging 4 train tags with count and epoch, `flush_secs=1`: about 17 steps (68
events) per flush. Waiting 60 ms per step for real would take minutes, so time runs `live_scale` times
faster: steps of 60/scale ms and `flush_secs=1/scale`, which keeps the events per flush (what each flush
repeats: dictionaries, message headers, timestamps) while the wall-time deltas shrink by the same factor
(a few bits of the timestamp column; the closed file sees the same timestamps). The writer re-compacts the
live file between flushes (`lossfmt/_recompact.py`): the figure depends on where in that cycle the run
ends (1.0-1.3x of the last rewrite's bytes per event)."""

from __future__ import annotations

import os
import time

from bench.common import Config, Section, Workspace, log, median, min_med_max, table
from bench.sustained import TAGS

STEP_SECS = 0.060
FLUSH_SECS = 1.0
BATCH = 32
STEPS_PER_EPOCH = 500


def _one_run(ws: Workspace, steps: int, scale: float) -> tuple[int, int, int]:
    """(events, live bytes just before close(), closed bytes) of one simulated run."""
    from bench.common import realistic_losses
    from lossfmt import LossWriter

    path = ws.path("live.arrow")
    losses = realistic_losses(steps * len(TAGS), seed=3)
    step_secs = STEP_SECS / scale
    writer = LossWriter(path, flush_secs=FLUSH_SECS / scale)
    start = time.perf_counter()
    k = 0
    for step in range(steps):
        # The simulated training step: the loop's own work, done when its time slot ends.
        deadline = start + (step + 1) * step_secs
        epoch = step // STEPS_PER_EPOCH
        for tag in TAGS:
            writer.add(step, losses[k], tag, count=BATCH, epoch=epoch)
            k += 1
        pause = deadline - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
    writer.flush()
    live = os.path.getsize(path)
    writer.close()
    return k, live, os.path.getsize(path)


def run(cfg: Config, ws: Workspace) -> Section:
    sec = Section("livefile", "Live-file bytes at a realistic flush rate")
    repeats = 3
    log(f"live file: {cfg.live_steps:,} steps of {STEP_SECS * 1e3 / cfg.live_scale:.1f} ms x {repeats} runs")
    runs = [_one_run(ws, cfg.live_steps, cfg.live_scale) for _ in range(repeats)]
    events = runs[0][0]
    live = [r[1] / r[0] for r in runs]
    closed = [r[2] / r[0] for r in runs]
    ratio = [lv / cl for lv, cl in zip(live, closed, strict=True)]
    flushes = cfg.live_steps * STEP_SECS / FLUSH_SECS
    sec.add(
        f"{cfg.live_steps:,} steps x {len(TAGS)} tags = {events:,} events, `count={BATCH}`, an epoch every "
        f"{STEPS_PER_EPOCH} steps, about {flushes:,.0f} flushes (one per simulated second; time scaled "
        f"{cfg.live_scale:g}x). Live = the file after the last flush, before close(); closed = after it.",
        "",
        *table(
            ["file", "min B/event", "median B/event", "max B/event"],
            [
                ["live (footerless: flushes, re-compacted while written)", *min_med_max(live, fmt="{:.1f}")],
                ["closed (compacted by close())", *min_med_max(closed, fmt="{:.1f}")],
                ["ratio live / closed", *min_med_max(ratio, fmt="{:.2f}")],
            ],
        ),
    )
    sec.goal(
        "live file at a realistic flush rate <= 1.5x the closed file's bytes/event",
        median(ratio) <= 1.5,
        f"{median(live):.1f} vs {median(closed):.1f} B/event = {median(ratio):.2f}x "
        f"(range {min(ratio):.2f}-{max(ratio):.2f}x)",
    )
    return sec
