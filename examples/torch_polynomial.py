"""Seed 004's third-order polynomial fit of sin(x), logged to lossfmt instead of redrawn with ``plt.ion()``.

The criterion is ``MSELoss(reduction='sum')``: each value is a sum over the 2000 points, so it is logged with
``reduction="sum"`` and ``count=2000``. The raw curve is exactly what the loop computed, and the per-point
error is one read-time option away, comparable with any mean-reduced run.

    python examples/torch_polynomial.py runs/poly.arrow
    lossview runs/poly.arrow --follow --logy                         # replaces the seed's plt.ion() loop
    lossview runs/poly.arrow --normalize per-item --per 100 --logy   # mean squared error per point

About 10 s on a CPU (a short sleep per step keeps the live curve moving); ``--fast`` runs 200 steps.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

from lossfmt import LossWriter


class Polynomial3(torch.nn.Module):
    """y = a x^3 + b x^2 + c x + d with four learnable scalars (the seed's model)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Parameter(torch.randn(()))
        self.b = torch.nn.Parameter(torch.randn(()))
        self.c = torch.nn.Parameter(torch.randn(()))
        self.d = torch.nn.Parameter(torch.randn(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.d + self.c * x + self.b * x**2 + self.a * x**3


def train(path: Path, *, steps: int, sleep: float, seed: int) -> Polynomial3:
    """Fit sin(x) on [-pi, pi] by full-batch SGD for `steps`, logging the summed squared error per step."""
    torch.manual_seed(seed)
    x = torch.linspace(-math.pi, math.pi, 2000)
    y = torch.sin(x)
    model = Polynomial3()
    criterion = torch.nn.MSELoss(reduction="sum")
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-6)
    path.parent.mkdir(parents=True, exist_ok=True)
    with LossWriter(
        path, meta={"model": "Polynomial3", "lr": 1e-6, "points": len(x), "seed": seed}
    ) as writer:
        for t in range(steps):
            loss = criterion(model(x), y)
            writer.add(t, loss, count=len(x), reduction="sum")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if sleep:
                time.sleep(sleep)
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "path", nargs="?", default="runs/poly.arrow", help="output file (default: %(default)s)"
    )
    parser.add_argument("--steps", type=int, default=2000, help="SGD steps (default: %(default)s)")
    parser.add_argument(
        "--sleep", type=float, default=0.004, help="seconds to pause per step (default: %(default)s)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument("--fast", action="store_true", help="200 steps, no sleep: for tests and CI")
    args = parser.parse_args(argv)
    if args.fast:
        args.steps, args.sleep = 200, 0.0
    torch.set_num_threads(1)
    path = Path(args.path)
    sys.stderr.write(f"training; watch it with: lossview {path} --follow --logy\n")
    model = train(path, steps=args.steps, sleep=args.sleep, seed=args.seed)
    a, b, c, d = (p.item() for p in (model.a, model.b, model.c, model.d))
    sys.stderr.write(f"done: {path}; y = {d:.4f} + {c:.4f} x + {b:.4f} x^2 + {a:.4f} x^3\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
