"""Caller-thread cost of one logged event: LossWriter.add() vs list.append, TensorBoard, tensorboardX, CSV."""

from __future__ import annotations

import csv
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from bench.common import Config, Section, Workspace, have, interleaved, log, median, spread, table


def _loop_floor(n: int, value: Any) -> float:
    buf: list[tuple[int, Any]] = []
    append = buf.append
    t0 = time.perf_counter()
    for i in range(n):
        append((i, value))
    return time.perf_counter() - t0


def _loop_empty(n: int, value: Any) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        pass
    return time.perf_counter() - t0


def _lossfmt(ws: Workspace, n: int, value: Any) -> Callable[[], float]:
    from lossfmt import LossWriter

    def case() -> float:
        writer = LossWriter(ws.path("add.arrow"))
        add = writer.add
        t0 = time.perf_counter()
        for i in range(n):
            add(i, value)
        elapsed = time.perf_counter() - t0
        writer.close()
        return elapsed

    return case


def _torch_item(n: int, value: Any) -> float:
    item = value.item
    t0 = time.perf_counter()
    for _ in range(n):
        item()
    return time.perf_counter() - t0


def _summary_writer(ws: Workspace, n: int, value: float, module: str) -> Callable[[], float]:
    if module == "torch":
        from torch.utils.tensorboard import SummaryWriter
    else:
        from tensorboardX import SummaryWriter

    def case() -> float:
        writer = SummaryWriter(log_dir=str(ws.path(f"add-{module}")))
        add_scalar = writer.add_scalar
        t0 = time.perf_counter()
        for i in range(n):
            add_scalar("loss", value, i)
        elapsed = time.perf_counter() - t0
        writer.close()
        return elapsed

    return case


def _csv(ws: Workspace, n: int, value: float) -> Callable[[], float]:
    def case() -> float:
        with open(ws.path("add.csv"), "w", newline="") as f:
            writerow = csv.writer(f).writerow
            now = time.time
            t0 = time.perf_counter()
            for i in range(n):
                writerow((i, value, now()))
            elapsed = time.perf_counter() - t0
        return elapsed

    return case


def measure(cfg: Config, ws: Workspace) -> dict[str, tuple[list[float], int]]:
    """Seconds per repeat and events per repeat for every caller (used by the end-to-end figure too)."""
    n, n_slow = cfg.add_n, cfg.add_n_slow
    value = 0.6931471805599453
    cases: dict[str, Callable[[], float]] = {
        "floor": lambda: _loop_floor(n, value),
        "empty": lambda: _loop_empty(n, value),
        "float": _lossfmt(ws, n, value),
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
    log(f"add(): {len(cases)} callers x {cfg.repeats} repeats, interleaved")
    results = interleaved(cases, cfg.repeats)
    return {name: (secs, sizes[name]) for name, secs in results.items()}


LABELS = {
    "empty": "empty `for` loop (the loop overhead)",
    "floor": "floor: `list.append((step, value))`",
    "float": "**lossfmt** `add(step, float)`",
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
    ns = {name: median(secs) / n * 1e9 for name, (secs, n) in res.items()}
    floor = ns["floor"]
    rows = []
    for name in LABELS:
        if name not in res:
            continue
        secs, n = res[name]
        ratio = f"{ns[name] / floor:.1f}x" if name != "empty" else ""
        rows.append([LABELS[name], f"{ns[name]:,.0f}", spread(secs, 1e9 / n), ratio, f"{n:,}"])
    sec.add(
        "Wall time of the calling thread per event: what a training loop pays per logged value. Each "
        "repeat is a fresh writer and fewer events than the flusher's early wake-up (65,536 pending), so "
        "this is the hot path alone; the flusher's share of the work (and of the GIL) is in the "
        "end-to-end figure below. Median of the repeats; range = min–max; ratios against the floor "
        "measured in the same process, interleaved. The loop overhead is included in every row.",
        "",
        *table(["caller", "ns/event (median)", "range", "x floor", "events/repeat"], rows),
    )
    for name in ("tb", "tbx"):
        if name not in ns:
            sec.add(f"- {LABELS[name]}: not installed, not measured.")
    sec.goal(
        "add() of a Python float <= 5x the list.append floor",
        ns["float"] <= 5 * floor,
        f"{ns['float']:.0f} ns = {ns['float'] / floor:.1f}x floor ({floor:.0f} ns)",
    )
    if "tb" in ns:
        sec.goal(
            "add() of a Python float >= 100x cheaper than TensorBoard add_scalar",
            ns["tb"] >= 100 * ns["float"],
            f"TensorBoard {ns['tb'] / 1000:.1f} µs = {ns['tb'] / ns['float']:.0f}x lossfmt",
        )
    return sec
