"""Regenerate the README's pictures of a long run: docs/images/long_run.png and docs/images/term.txt.

Logs a 10M-step run with LossWriter (a noisy decaying loss, one spike, one NaN, a validation tag every 100k
steps), then runs lossview on it as a user would::

    lossview long.arrow -o docs/images/long_run.png        # the default step-aware smoothing
    lossview long.arrow --term                              # one terminal frame, plain text (no TTY)

Usage: ``python scripts/long_run_images.py [--steps N] [--out DIR]`` (default 10,000,000 steps into
docs/images/; takes about a minute).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from lossfmt import LossWriter

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"


def log_run(path: Path, steps: int) -> None:
    rng = np.random.default_rng(0)
    t = np.arange(steps)
    # Heavy-tailed noise (a scaled chi-square) whose largest of 10M draws stays well below the spike.
    loss = 2.0 * np.exp(-t / (steps / 6)) + 0.3 + 0.1 * rng.standard_normal(steps) ** 2
    loss[int(steps * 0.31)] = 8.0  # one spike: every pixel column keeps its max, so it stays visible
    loss[int(steps * 0.47)] = np.nan  # a diverged step, marked where it happened
    with LossWriter(path, flush_secs=5.0) as w:
        for step, value in zip(t.tolist(), loss.tolist(), strict=True):
            w.add(step, value)
            if step % 100_000 == 99_999:
                w.add(step, float(np.mean(loss[step - 999 : step + 1])) * 0.95, "val")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10_000_000)
    parser.add_argument("--out", type=Path, default=IMAGES, help="directory for long_run.png and term.txt")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    lossview = [sys.executable, "-m", "lossview"]
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / f"run_{args.steps // 1_000_000}M.arrow"
        log_run(path, args.steps)
        subprocess.run([*lossview, str(path), "-o", str(args.out / "long_run.png")], check=True)
        env = {**os.environ, "COLUMNS": "100", "LINES": "24"}
        frame = subprocess.run(
            [*lossview, str(path), "--term"], check=True, capture_output=True, text=True, env=env
        ).stdout
        (args.out / "term.txt").write_text(frame, encoding="utf-8")
    print(f"wrote {args.out / 'long_run.png'} and {args.out / 'term.txt'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
