"""Quick-start demo: a numpy-only multi-task MLP whose losses you can watch live.

Logs, to an Arrow file (default ``runs/demo.arrow``):

- every batch: the total loss (tag ``loss``) and its two task losses (``cls``, ``reg``), with the batch
  size as ``count`` (the last batch of each epoch is smaller) and the epoch;
- every epoch: the validation loss (tag ``val``) over the whole validation set.

Run it, and watch it in another terminal (the curves redraw as the file grows)::

    python examples/demo.py runs/demo.arrow
    lossview runs/demo.arrow --follow
    lossview runs/demo.arrow --normalize per-item --per epoch     # exact per-item epoch means

It takes about 15 s (a short sleep per step keeps the curves moving); ``--fast`` finishes in about a second.
Only numpy and lossfmt are needed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from lossfmt import LossWriter


def make_data(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two interleaved spirals (class label) plus a smooth regression target on the same inputs."""
    t = rng.uniform(0.25, 3.0, n)
    label = rng.integers(0, 2, n)
    angle = t * 2.5 + np.pi * label
    x = np.stack([t * np.cos(angle), t * np.sin(angle)], axis=1) + rng.normal(0.0, 0.08, (n, 2))
    target = np.sin(x[:, 0]) + 0.3 * x[:, 1] ** 2
    return x, label, target


class MultiTaskMLP:
    """One shared tanh hidden layer, a 2-class softmax head and a regression head, trained with Adam."""

    def __init__(self, hidden: int, rng: np.random.Generator, lr: float = 0.01) -> None:
        self.params = {
            "w1": rng.normal(0.0, 0.7, (2, hidden)),
            "b1": np.zeros(hidden),
            "w_cls": rng.normal(0.0, 0.3, (hidden, 2)),
            "b_cls": np.zeros(2),
            "w_reg": rng.normal(0.0, 0.3, hidden),
            "b_reg": np.zeros(()),
        }
        self.lr = lr
        self.m = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.v = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.t = 0

    def losses(self, x: np.ndarray, label: np.ndarray, target: np.ndarray) -> tuple[float, float, dict]:
        """Mean cross-entropy and mean squared error over the batch, and what backward() needs."""
        p = self.params
        h = np.tanh(x @ p["w1"] + p["b1"])
        logits = h @ p["w_cls"] + p["b_cls"]
        logits -= logits.max(axis=1, keepdims=True)
        log_prob = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        ce = -log_prob[np.arange(len(x)), label].mean()
        pred = h @ p["w_reg"] + p["b_reg"]
        mse = ((pred - target) ** 2).mean()
        return (
            float(ce),
            float(mse),
            {"x": x, "h": h, "log_prob": log_prob, "label": label, "err": pred - target},
        )

    def step(self, cache: dict) -> None:
        """Backpropagate the summed task losses and take one Adam step."""
        p, n = self.params, len(cache["x"])
        d_logits = np.exp(cache["log_prob"])
        d_logits[np.arange(n), cache["label"]] -= 1.0
        d_logits /= n
        d_pred = 2.0 * cache["err"] / n
        h = cache["h"]
        d_h = (d_logits @ p["w_cls"].T + np.outer(d_pred, p["w_reg"])) * (1.0 - h**2)
        grads = {
            "w_cls": h.T @ d_logits,
            "b_cls": d_logits.sum(axis=0),
            "w_reg": h.T @ d_pred,
            "b_reg": d_pred.sum(),
            "w1": cache["x"].T @ d_h,
            "b1": d_h.sum(axis=0),
        }
        self.t += 1
        for k, g in grads.items():
            self.m[k] = 0.9 * self.m[k] + 0.1 * g
            self.v[k] = 0.999 * self.v[k] + 0.001 * g**2
            m_hat = self.m[k] / (1 - 0.9**self.t)
            v_hat = self.v[k] / (1 - 0.999**self.t)
            self.params[k] = self.params[k] - self.lr * m_hat / (np.sqrt(v_hat) + 1e-8)


def train(path: Path, *, epochs: int, batch_size: int, sleep: float, seed: int) -> None:
    """Train for `epochs`, logging per-batch train losses and per-epoch validation loss to `path`."""
    rng = np.random.default_rng(seed)
    x, label, target = make_data(1000, rng)
    x_val, label_val, target_val = make_data(250, rng)
    model = MultiTaskMLP(hidden=32, rng=rng)
    meta = {"model": "MultiTaskMLP", "hidden": 32, "lr": model.lr, "batch_size": batch_size, "seed": seed}
    path.parent.mkdir(parents=True, exist_ok=True)
    step = 0
    with LossWriter(path, meta=meta) as writer:
        for epoch in range(epochs):
            order = rng.permutation(len(x))
            for start in range(0, len(x), batch_size):
                idx = order[start : start + batch_size]
                ce, mse, cache = model.losses(x[idx], label[idx], target[idx])
                model.step(cache)
                writer.add_many(step, {"loss": ce + mse, "cls": ce, "reg": mse}, count=len(idx), epoch=epoch)
                step += 1
                if sleep:
                    time.sleep(sleep)
            val_ce, val_mse, _ = model.losses(x_val, label_val, target_val)
            writer.add(step - 1, val_ce + val_mse, "val", count=len(x_val), epoch=epoch)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "path", nargs="?", default="runs/demo.arrow", help="output file (default: %(default)s)"
    )
    parser.add_argument("--epochs", type=int, default=30, help="epochs to train (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=64, help="batch size (default: %(default)s)")
    parser.add_argument(
        "--sleep", type=float, default=0.03, help="seconds to pause per step (default: %(default)s)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument("--fast", action="store_true", help="3 epochs, no sleep: for tests and CI")
    parser.add_argument(
        "--quiet", action="store_true", help="no hint on how to watch it (make demo shows it already)"
    )
    args = parser.parse_args(argv)
    if args.fast:
        args.epochs, args.sleep = 3, 0.0
    path = Path(args.path)
    if not args.quiet:
        sys.stderr.write(f"training; watch it with: {_lossview()} {path} --follow{_where()}\n")
    train(path, epochs=args.epochs, batch_size=args.batch_size, sleep=args.sleep, seed=args.seed)
    sys.stderr.write(f"done: {path}\n")
    return 0


def _lossview() -> str:
    """The lossview command beside this Python (``.venv/bin/lossview`` for ``make demo``), else on PATH."""
    beside = Path(sys.executable).parent / "lossview"
    if not beside.exists():
        return "lossview"
    try:
        return str(beside.relative_to(Path.cwd()))
    except ValueError:
        return str(beside)


def _where() -> str:
    """` --term` where no window can open (an SSH session, a container); else nothing."""
    if sys.platform in ("darwin", "win32") or os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return ""
    return " --term"


if __name__ == "__main__":
    sys.exit(main())
