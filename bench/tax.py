"""The training-loop tax: a CPU-bound toy training loop timed with and without logging every step."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from bench.common import Config, Section, Workspace, have, log, median, table


class _NumpyMLP:
    """A two-layer MLP trained by hand-written backprop on a fixed batch: a few ms of BLAS per step."""

    def __init__(self, batch: int = 256, dim: int = 384, hidden: int = 384) -> None:
        rng = np.random.default_rng(0)
        self.x = rng.standard_normal((batch, dim)).astype(np.float32)
        self.y = rng.standard_normal((batch, 1)).astype(np.float32)
        self.w1 = (rng.standard_normal((dim, hidden)) / np.sqrt(dim)).astype(np.float32)
        self.w2 = (rng.standard_normal((hidden, 1)) / np.sqrt(hidden)).astype(np.float32)

    def step(self) -> float:
        h = self.x @ self.w1
        a = np.maximum(h, 0)
        err = a @ self.w2 - self.y
        loss = float((err * err).mean())
        g_out = 2 * err / len(err)
        g_h = (g_out @ self.w2.T) * (h > 0)
        self.w2 -= 1e-3 * (a.T @ g_out)
        self.w1 -= 1e-3 * (self.x.T @ g_h)
        return loss


def _torch_loop() -> Callable[[], Any]:
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(384, 384), torch.nn.ReLU(), torch.nn.Linear(384, 1))
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    x, y = torch.randn(256, 384), torch.randn(256, 1)

    def step() -> Any:
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        return loss

    return step


def _block(steps: int, train_step: Callable[[], Any], log_fn: Callable[[int, Any], None] | None) -> float:
    """Seconds for `steps` training steps, logging each step's loss if `log_fn` is given."""
    if log_fn is None:
        t0 = time.perf_counter()
        for _ in range(steps):
            train_step()
        return time.perf_counter() - t0
    t0 = time.perf_counter()
    for step in range(steps):
        log_fn(step, train_step())
    return time.perf_counter() - t0


LOGGERS = {
    "none": "no logging",
    "lossfmt": "**lossfmt** add() every step",
    "tb": "TensorBoard add_scalar every step",
}


def run(cfg: Config, ws: Workspace) -> Section:
    from lossfmt import LossWriter

    sec = Section("tax", "Training-loop tax")
    mlp = _NumpyMLP()
    steps, rounds = cfg.tax_steps, cfg.tax_rounds
    loops: dict[str, tuple[Callable[[], Any], str]] = {"numpy": (mlp.step, "numpy MLP, logs `float` loss")}
    if have("torch"):
        import torch

        torch.set_num_threads(1)  # like the numpy loop: one core, stable step time
        loops["torch"] = (_torch_loop(), "torch MLP + SGD, logs the loss tensor itself (requires_grad)")
    rng = random.Random(0)
    rows = []
    tax: dict[str, float] = {}
    for name, (train_step, label) in loops.items():
        train_step()  # warm up (first BLAS call, torch allocator)
        # One writer per logger for the whole series, as in a real run; its flushes land in the blocks.
        writer = LossWriter(ws.path(f"tax-{name}.arrow"))
        log_fns: dict[str, Callable[[int, Any], None] | None] = {"none": None, "lossfmt": writer.add}
        closers = [writer.close]
        if have("torch") and have("tensorboard"):
            from torch.utils.tensorboard import SummaryWriter

            tb = SummaryWriter(log_dir=str(ws.path(f"tax-tb-{name}")))
            log_fns["tb"] = lambda step, loss, tb=tb: tb.add_scalar("loss", loss, step)
            closers.append(tb.close)
        log(f"training tax, {name}: {rounds} rounds x {len(log_fns)} blocks of {steps} steps, shuffled")
        res: dict[str, list[float]] = {k: [] for k in log_fns}
        for _ in range(rounds):
            order = list(log_fns)
            rng.shuffle(order)
            for k in order:
                res[k].append(_block(steps, train_step, log_fns[k]))
        for close in closers:
            close()
        for k, secs in res.items():
            # Each block is compared with the baseline block of its own round (seconds apart): drift cancels.
            pct = median([(t / b - 1) * 100 for t, b in zip(secs, res["none"], strict=True)])
            total = (sum(secs) / sum(res["none"]) - 1) * 100
            if k == "lossfmt":
                tax[name] = pct
            rows.append(
                [
                    label if k == "none" else "",
                    LOGGERS[k],
                    f"{median(secs) / steps * 1e3:.3f}",
                    "" if k == "none" else f"{pct:+.2f}%",
                    "" if k == "none" else f"{total:+.2f}%",
                ]
            )
    sec.add(
        f"Rounds of {steps}-step blocks, one block per logger in a shuffled order, {rounds} rounds; one "
        "writer per logger stays open for the whole series (its periodic flushes land inside the blocks). "
        "Slowdown = median over rounds of (block time / the same round's no-logging block - 1); the "
        "last column is the ratio of total times, which counts rare stalls but also the machine's noise. "
        "The loops run single-threaded (OPENBLAS_NUM_THREADS=1, torch.set_num_threads(1)) so the step time "
        "is stable on this 2-core machine; the slowdown is what logging takes from the training thread.",
        "",
        *table(["loop", "logging", "ms/step (median)", "slowdown (median)", "slowdown (totals)"], rows),
    )
    sec.goal(
        "training-loop tax <= 3% at one event per step",
        max(tax.values()) <= 3.0,
        ", ".join(f"{k} {v:+.2f}%" for k, v in tax.items()),
    )
    return sec
