"""Bytes per event of the closed file (one tag, three tags, a slow run) against tfevents and CSV."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from bench.common import (
    Config,
    Section,
    Workspace,
    file_size,
    have,
    log,
    random_float64,
    realistic_losses,
    table,
)


def _write(path: Path, values: list[float]) -> int:
    from lossfmt import LossWriter

    with LossWriter(path) as writer:
        add = writer.add
        for step, value in enumerate(values):
            add(step, value)
    return file_size(path)


def _write_three_tags(path: Path, steps: int) -> int:
    from lossfmt import LossWriter

    total, cls, box = realistic_losses(steps, 0), realistic_losses(steps, 1), realistic_losses(steps, 2)
    with LossWriter(path) as writer:
        for step in range(steps):
            writer.add_many(step, {"loss/total": total[step], "loss/cls": cls[step], "loss/box": box[step]})
    return file_size(path)


def _write_csv(path: Path, values: list[float]) -> int:
    now = time.time
    with open(path, "w", newline="") as f:
        writerow = csv.writer(f).writerow
        writerow(("step", "value", "wall_time"))
        for step, value in enumerate(values):
            writerow((step, value, now()))
    return file_size(path)


def _one_batch_size(path: Path, out: Path) -> int:
    """Size of the same events rewritten as one record batch (the best a fast run's compaction can do)."""
    table_ = pa.ipc.open_file(path).read_all().combine_chunks()
    options = pa.ipc.IpcWriteOptions(compression="zstd")
    with pa.OSFile(str(out), "wb") as sink, pa.ipc.new_file(sink, table_.schema, options=options) as w:
        w.write_table(table_)
    return file_size(out)


def _column_bytes(path: Path) -> list[tuple[str, float]]:
    """Compressed bytes/event of each column alone (zstd IPC file, minus an empty file's overhead)."""
    table_ = pa.ipc.open_file(path).read_all().combine_chunks()
    options = pa.ipc.IpcWriteOptions(compression="zstd")

    def size(t: pa.Table) -> int:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_file(sink, t.schema, options=options) as w:
            w.write_table(t)
        return sink.getvalue().size

    out = []
    for name in table_.column_names:
        one = table_.select([name])
        out.append((name, (size(one) - size(one.slice(0, 0))) / len(table_)))
    return out


def run(cfg: Config, ws: Workspace) -> Section:
    from lossfmt import LossWriter

    sec = Section("size", "Bytes per event")
    n = cfg.size_n
    log(f"size: {n:,}-event runs, slow run of {cfg.slow_n:,} flushes")
    real, rand = realistic_losses(n), random_float64(n)
    one_real = _write(p_real := ws.path("size-real.arrow"), real) / n
    one_rand = _write(ws.path("size-rand.arrow"), rand) / n
    steps3 = n // 3
    three = _write_three_tags(ws.path("size-3tags.arrow"), steps3) / (3 * steps3)
    csv_real = _write_csv(ws.path("size-real.csv"), real) / n
    csv_rand = _write_csv(ws.path("size-rand.csv"), rand) / n

    # The slow run: one event per flush, so the live file holds one record batch per event until close().
    slow_path = ws.path("size-slow.arrow")
    writer = LossWriter(slow_path)
    for step, value in enumerate(realistic_losses(cfg.slow_n)):
        writer.add(step, value)
        writer.flush()
    slow_live = file_size(slow_path) / cfg.slow_n
    writer.close()
    slow_closed = file_size(slow_path) / cfg.slow_n
    slow_one_batch = _one_batch_size(slow_path, ws.path("size-slow-one-batch.arrow")) / cfg.slow_n
    fast_same_n = _write(ws.path("size-fast-small.arrow"), realistic_losses(cfg.slow_n)) / cfg.slow_n

    fast_cols, slow_cols = _column_bytes(p_real), _column_bytes(slow_path)
    wall = pa.ipc.open_file(slow_path).read_all().column("wall_time").cast(pa.int64()).to_numpy()
    spacing_ms = float(np.median(np.diff(wall))) / 1e3 if len(wall) > 1 else 0.0

    tb = None
    if have("torch") and have("tensorboard"):
        tb_n = min(cfg.size_tb_n, n)
        tb = file_size(ws.tfevents_dir(tb_n)) / tb_n

    def vs_tb(b: float) -> str:
        if not tb:
            return "n/a"
        smaller = b <= tb
        ratio = tb / b if smaller else b / tb
        return f"{ratio:.{1 if ratio >= 2 else 2}f}x {'smaller' if smaller else 'larger'}"

    rows = [
        [
            f"**lossfmt** closed, one tag, float32-precision losses (`loss.item()`), {n:,} events",
            f"{one_real:.2f}",
            vs_tb(one_real),
        ],
        [
            f"**lossfmt** closed, one tag, random full-precision float64 values, {n:,} events",
            f"{one_rand:.2f}",
            vs_tb(one_rand),
        ],
        [
            f"**lossfmt** closed, 3 tags per step (`add_many`), float32-precision, {3 * steps3:,} events",
            f"{three:.2f}",
            vs_tb(three),
        ],
        [
            f"**lossfmt** slow run, {cfg.slow_n:,} events, one flush per event: live file before close()",
            f"{slow_live:.1f}",
            "",
        ],
        [
            f"**lossfmt** slow run, {cfg.slow_n:,} events, one flush per event: after close()",
            f"{slow_closed:.2f}",
            vs_tb(slow_closed),
        ],
        [
            f"same {cfg.slow_n:,} events rewritten as one record batch (reference)",
            f"{slow_one_batch:.2f}",
            "",
        ],
        [
            f"**lossfmt** fast run, {cfg.slow_n:,} events, no explicit flush, after close()",
            f"{fast_same_n:.2f}",
            "",
        ],
        [
            f"CSV `step,value,wall_time`, float32-precision losses, {n:,} events",
            f"{csv_real:.2f}",
            vs_tb(csv_real),
        ],
        [f"CSV `step,value,wall_time`, random float64, {n:,} events", f"{csv_rand:.2f}", vs_tb(csv_rand)],
    ]
    if tb:
        rows.append(
            [
                f"TensorBoard tfevents (`SummaryWriter.add_scalar`, stores float32), {tb_n:,} events",
                f"{tb:.2f}",
                "1.0x",
            ]
        )
    sec.add(
        "File size divided by the number of events (schema, metadata and footer included). Each event holds "
        "step, tag, value, count, epoch, wall_time and reduction; wall times come from a tight loop, so "
        "they are closer together (and compress better) than in a real run.",
        "",
        *table(["file", "bytes/event", "vs tfevents"], rows),
        "Compressed bytes/event of each column alone, for the one-tag float32-precision file (events added "
        f"in a tight loop) and for the slow run (events {spacing_ms:.2f} ms apart, median), whose wall times "
        "are more like a real run's:",
        "",
        *table(
            ["column", f"one tag, {n:,} events", f"slow run, {cfg.slow_n:,} events"],
            [
                [c, f"{b:.2f}", f"{b_slow:.2f}"]
                for (c, b), (_, b_slow) in zip(fast_cols, slow_cols, strict=True)
            ],
        ),
    )
    sec.goal(
        "closed file <= 12 bytes/event, one tag (float32-precision losses)",
        one_real <= 12,
        f"{one_real:.2f} B/event",
    )
    sec.goal(
        "closed file <= 12 bytes/event, one tag (random full-precision float64, stricter than the goal)",
        one_rand <= 12,
        f"{one_rand:.2f} B/event",
    )
    if tb:
        sec.goal(
            "closed file >= 3.5x smaller than tfevents (one tag, float32-precision)",
            tb / one_real >= 3.5,
            f"{tb:.1f} vs {one_real:.2f} B/event = {tb / one_real:.1f}x",
        )
    sec.goal(
        "slow run (one event per flush) after close no larger than the same events in one batch",
        slow_closed <= slow_one_batch * 1.01 + 0.01,
        f"{slow_closed:.2f} vs {slow_one_batch:.2f} B/event (fast run of the same length: {fast_same_n:.2f})",
    )
    return sec
