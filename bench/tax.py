"""The training-loop tax: a CPU-bound toy training loop timed with and without logging every step."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from bench.common import Config, Section, Workspace, have, interleaved, log, median, table


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


def _block(steps: int, train_step: Callable[[], Any], make_logger: Callable[[], Any] | None) -> float:
    """Seconds for `steps` training steps, logging each step's loss if a logger factory is given."""
    if make_logger is None:
        t0 = time.perf_counter()
        for _ in range(steps):
            train_step()
        return time.perf_counter() - t0
    logger, log_fn, close = make_logger()
    t0 = time.perf_counter()
    for step in range(steps):
        log_fn(step, train_step())
    elapsed = time.perf_counter() - t0
    close()
    del logger
    return elapsed


def run(cfg: Config, ws: Workspace) -> Section:
    from lossfmt import LossWriter

    sec = Section("tax", "Training-loop tax")

    def lossfmt_logger() -> tuple[Any, Callable[[int, Any], None], Callable[[], None]]:
        w = LossWriter(ws.path("tax.arrow"))
        return w, w.add, w.close

    def tb_logger() -> tuple[Any, Callable[[int, Any], None], Callable[[], None]]:
        from torch.utils.tensorboard import SummaryWriter

        w = SummaryWriter(log_dir=str(ws.path("tax-tb")))
        return w, lambda step, loss: w.add_scalar("loss", loss, step), w.close

    mlp = _NumpyMLP()
    steps = cfg.tax_steps
    loops: dict[str, tuple[Callable[[], Any], str]] = {"numpy": (mlp.step, "numpy MLP, logs `float` loss")}
    if have("torch"):
        import torch

        torch.set_num_threads(1)  # like the numpy loop: one core, stable step time
        loops["torch"] = (_torch_loop(), "torch MLP + SGD, logs the loss tensor itself (requires_grad)")
    cases: dict[str, Callable[[], float]] = {}
    for name, (train_step, _) in loops.items():
        train_step()  # warm up (first BLAS call, torch allocator)
        cases[f"{name}/none"] = lambda s=train_step: _block(steps, s, None)
        cases[f"{name}/lossfmt"] = lambda s=train_step: _block(steps, s, lossfmt_logger)
        if have("tensorboard"):
            cases[f"{name}/tb"] = lambda s=train_step: _block(steps, s, tb_logger)
    log(f"training tax: {len(cases)} loops x {steps} steps x {cfg.repeats} repeats, interleaved")
    res = interleaved(cases, cfg.repeats)

    rows = []
    tax: dict[str, float] = {}
    for name, (_, label) in loops.items():
        base = res[f"{name}/none"]
        for logger in ("none", "lossfmt", "tb"):
            key = f"{name}/{logger}"
            if key not in res:
                continue
            # Pair each block with the baseline block of the same repeat (run next to it) to cancel drift.
            pct = median([(t / b - 1) * 100 for t, b in zip(res[key], base, strict=True)])
            tax[key] = pct
            who = {
                "none": "no logging",
                "lossfmt": "**lossfmt** add() every step",
                "tb": "TensorBoard add_scalar every step",
            }[logger]
            ms = median(res[key]) / steps * 1e3
            rows.append(
                [
                    label if logger == "none" else "",
                    who,
                    f"{ms:.2f}",
                    "" if logger == "none" else f"{pct:+.2f}%",
                ]
            )
    sec.add(
        f"{steps} training steps per block; blocks with and without logging interleaved, "
        f"{cfg.repeats} repeats. "
        "Slowdown = median over repeats of (block with logging / baseline block of the same repeat - 1). "
        "Writer construction and close() are outside the timed block. The loops run single-threaded "
        "(OPENBLAS_NUM_THREADS=1, torch.set_num_threads(1)) so the step time is stable on this 2-core "
        "machine; the slowdown is then what our flusher thread takes from the training thread (GIL).",
        "",
        *table(["loop", "logging", "ms/step (median)", "slowdown"], rows),
    )
    worst = max(v for k, v in tax.items() if k.endswith("/lossfmt"))
    sec.goal(
        "training-loop tax <= 3% at one event per step",
        worst <= 3.0,
        ", ".join(f"{k.split('/')[0]} {v:+.2f}%" for k, v in tax.items() if k.endswith("/lossfmt")),
    )
    return sec
