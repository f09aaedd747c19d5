"""Caller-thread cost of one logged event: LossWriter.add() vs list.append, TensorBoard, tensorboardX, CSV."""

from __future__ import annotations

import csv
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from bench.common import (
    Config,
    Section,
    Stopwatch,
    Workspace,
    cpus,
    have,
    interleaved,
    log,
    median,
    spread,
    table,
    walls,
)


def _loop_floor(n: int, value: Any) -> Stopwatch:
    buf: list[tuple[int, Any]] = []
    append = buf.append
    with Stopwatch() as sw:
        for i in range(n):
            append((i, value))
    return sw


def _loop_empty(n: int, value: Any) -> Stopwatch:
    with Stopwatch() as sw:
        for _ in range(n):
            pass
    return sw


def _lossfmt(ws: Workspace, n: int, value: Any) -> Callable[[], Stopwatch]:
    from lossfmt import LossWriter

    def case() -> Stopwatch:
        writer = LossWriter(ws.path("add.arrow"))
        add = writer.add
        with Stopwatch() as sw:
            for i in range(n):
                add(i, value)
        writer.close()
        return sw

    return case


def _lossfmt_options(ws: Workspace, n: int, value: Any) -> Callable[[], Stopwatch]:
    """The README's training loop: the batch size and the epoch with every event."""
    from lossfmt import LossWriter

    def case() -> Stopwatch:
        writer = LossWriter(ws.path("add.arrow"))
        add = writer.add
        with Stopwatch() as sw:
            for i in range(n):
                add(i, value, count=32, epoch=i >> 10)
        writer.close()
        return sw

    return case


def _torch_item(n: int, value: Any) -> Stopwatch:
    item = value.item
    with Stopwatch() as sw:
        for _ in range(n):
            item()
    return sw


def _summary_writer(ws: Workspace, n: int, value: float, module: str) -> Callable[[], Stopwatch]:
    if module == "torch":
        from torch.utils.tensorboard import SummaryWriter
    else:
        from tensorboardX import SummaryWriter

    def case() -> Stopwatch:
        writer = SummaryWriter(log_dir=str(ws.path(f"add-{module}")))
        add_scalar = writer.add_scalar
        with Stopwatch() as sw:
            for i in range(n):
                add_scalar("loss", value, i)
        writer.close()
        return sw

    return case


def _csv(ws: Workspace, n: int, value: float) -> Callable[[], Stopwatch]:
    def case() -> Stopwatch:
        with open(ws.path("add.csv"), "w", newline="") as f:
            writerow = csv.writer(f).writerow
            now = time.time
            with Stopwatch() as sw:
                for i in range(n):
                    writerow((i, value, now()))
        return sw

    return case


def measure(cfg: Config, ws: Workspace) -> dict[str, tuple[list[Stopwatch], int]]:
    """Timings per repeat and events per repeat for every caller."""
    n, n_slow = cfg.add_n, cfg.add_n_slow
    value = 0.6931471805599453
    cases: dict[str, Callable[[], Stopwatch]] = {
        "floor": lambda: _loop_floor(n, value),
        "empty": lambda: _loop_empty(n, value),
        "float": _lossfmt(ws, n, value),
        "float_options": _lossfmt_options(ws, n, value),
        "numpy": _lossfmt(ws, n, np.float32(value)),
        "csv": _csv(ws, n, value),
    }
    sizes = dict.fromkeys(cases, n)
    if have("torch"):
        import torch

        x = torch.ones((), requires_grad=True)
        loss = (x * value).sum()  # a float32 scalar with a grad_fn, like a real loss
        cases["torch"] = _lossfmt(ws, n, loss)
        cases["torch_item"] = lambda: _torch_item(n, loss)
        sizes["torch"] = sizes["torch_item"] = n
        if have("tensorboard"):
            cases["tb"] = _summary_writer(ws, n_slow, value, "torch")
            sizes["tb"] = n_slow
    if have("tensorboardX"):
        cases["tbx"] = _summary_writer(ws, n_slow, value, "tensorboardX")
        sizes["tbx"] = n_slow
    repeats = 2 * cfg.repeats + 1  # the cheapest figures, the most exposed to noise
    log(f"add(): {len(cases)} callers x {repeats} repeats, interleaved")
    results = interleaved(cases, repeats)
    return {name: (secs, sizes[name]) for name, secs in results.items()}


LABELS = {
    "empty": "empty `for` loop (the loop overhead)",
    "floor": "floor: `list.append((step, value))`",
    "float": "**lossfmt** `add(step, float)`",
    "float_options": "**lossfmt** `add(step, float, count=32, epoch=e)`",
    "numpy": "**lossfmt** `add(step, np.float32)`",
    "torch": "**lossfmt** `add(step, loss)` (CPU torch tensor, requires_grad)",
    "torch_item": "reference: `loss.item()` alone (CPU torch tensor)",
    "csv": "`csv.writer.writerow((step, value, time()))`",
    "tb": "TensorBoard `torch.utils.tensorboard.SummaryWriter.add_scalar`",
    "tbx": "tensorboardX `SummaryWriter.add_scalar`",
}


def run(cfg: Config, ws: Workspace) -> Section:
    sec = Section("add", "Caller-thread cost of add()")
    res = measure(cfg, ws)
    ns = {name: median(walls(sws)) / n * 1e9 for name, (sws, n) in res.items()}
    cpu_ns = {name: median(cpus(sws)) / n * 1e9 for name, (sws, n) in res.items()}
    floor = ns["floor"]
    rows = []
    for name in LABELS:
        if name not in res:
            continue
        sws, n = res[name]
        ratio = f"{ns[name] / floor:.1f}x" if name != "empty" else ""
        rows.append(
            [
                LABELS[name],
                f"{ns[name]:,.0f}",
                spread(walls(sws), 1e9 / n),
                ratio,
                f"{cpu_ns[name]:,.0f}",
                f"{n:,}",
            ]
        )
    sec.add(
        "Wall time of the calling thread per event: what a training loop pays per logged value. Each "
        "repeat is a fresh writer and fewer events than the flusher's early wake-up (65,536 pending), so "
        "this is the hot path alone; the flusher's share of the work (and of the GIL) is in the "
        "end-to-end figure below. The `count=32, epoch=e` row is the README's training loop: options take "
        "the writer's general path. Median of the repeats; range = min–max; ratios against the floor "
        "measured in the same process, interleaved. The loop overhead is included in every row. The CPU "
        "column (thread CPU time, leaving out time the OS gave to other processes) is a check on a shared "
        "machine; a caller that waits for its own background thread (TensorBoard's full queue) shows less "
        "CPU than wall time.",
        "",
        *table(
            [
                "caller",
                "ns/event (median)",
                "range",
                "x floor",
                "CPU ns/event (this thread)",
                "events/repeat",
            ],
            rows,
        ),
    )
    for name in ("tb", "tbx"):
        if name not in ns:
            sec.add(f"- {LABELS[name]}: not installed, not measured.")
    sec.goal(
        "add() of a Python float <= 5x the list.append floor",
        ns["float"] <= 5 * floor,
        f"{ns['float']:.0f} ns = {ns['float'] / floor:.1f}x floor ({floor:.0f} ns); CPU time: "
        f"{cpu_ns['float'] / cpu_ns['floor']:.1f}x",
    )
    if "tb" in ns:
        sec.goal(
            "add() of a Python float >= 100x cheaper than TensorBoard add_scalar",
            ns["tb"] >= 100 * ns["float"],
            f"TensorBoard {ns['tb'] / 1000:.1f} µs = {ns['tb'] / ns['float']:.0f}x lossfmt",
        )
    return sec
