"""Seed 000's PyTorch RNN training loop, logging to lossfmt instead of collecting a list for matplotlib.

The loop is the seed's (an ``nn.RNN`` + linear head, cross-entropy, Adam, batches of 32 over 1000
sequences, so the last batch of each epoch has 8), with a learnable target and a validation split added.
Instead of accumulating ``loss.item() * len(batch)`` by hand, every batch is logged with its size as
``count``; the exact per-item epoch average is then a read-time option. The loss tensor is passed as is:
the writer detaches it and never keeps the autograd graph.

    python examples/torch_rnn.py runs/rnn.arrow
    lossview runs/rnn.arrow --follow                                 # live, raw + smoothed
    lossview runs/rnn.arrow --normalize per-item --per epoch --band  # the seed's per-epoch curve
    lossview runs/rnn.arrow --x epoch                                # train and val on one epoch axis

About 10 s on a CPU; ``--fast`` runs 2 epochs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import nn

from lossfmt import LossWriter


class MockRNN(nn.Module):
    """The seed's model: an Elman RNN over the sequence, classifying from the last hidden state."""

    def __init__(self, input_size: int, hidden_size: int, output_size: int) -> None:
        super().__init__()
        self.rnn = nn.RNN(input_size, hidden_size, batch_first=True)
        self.fc = nn.Linear(hidden_size, output_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.fc(out[:, -1, :])


def make_data(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequences of 5 steps x 10 features; the class is a fixed projection of their mean (learnable)."""
    x = torch.rand(n, 5, 10, generator=generator)
    projection = torch.randn(10, 5, generator=torch.Generator().manual_seed(1234))
    return x, (x.mean(dim=1) @ projection).argmax(dim=1)


def train(path: Path, *, epochs: int, batch_size: int, sleep: float, seed: int) -> None:
    """Train; log each batch's mean loss (count = batch size) and each epoch's validation loss."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    inputs, targets = make_data(1000, generator)
    val_inputs, val_targets = make_data(200, generator)
    model = MockRNN(input_size=10, hidden_size=20, output_size=5)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    meta = {"model": "MockRNN", "hidden_size": 20, "lr": 0.01, "batch_size": batch_size, "seed": seed}
    path.parent.mkdir(parents=True, exist_ok=True)
    step = 0
    with LossWriter(path, meta=meta) as writer:
        for epoch in range(epochs):
            model.train()
            order = torch.randperm(len(inputs), generator=generator)
            for i in range(0, len(inputs), batch_size):
                idx = order[i : i + batch_size]
                optimizer.zero_grad()
                loss = criterion(model(inputs[idx]), targets[idx])
                loss.backward()
                optimizer.step()
                writer.add(step, loss, count=len(idx), epoch=epoch)
                step += 1
                if sleep:
                    time.sleep(sleep)
            model.eval()
            with torch.no_grad():
                val_loss = criterion(model(val_inputs), val_targets)
            writer.add(step - 1, val_loss, "val", count=len(val_inputs), epoch=epoch)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "path", nargs="?", default="runs/rnn.arrow", help="output file (default: %(default)s)"
    )
    parser.add_argument("--epochs", type=int, default=20, help="epochs (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=32, help="batch size (default: %(default)s)")
    parser.add_argument(
        "--sleep", type=float, default=0.01, help="seconds to pause per step (default: %(default)s)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument("--fast", action="store_true", help="2 epochs, no sleep: for tests and CI")
    args = parser.parse_args(argv)
    if args.fast:
        args.epochs, args.sleep = 2, 0.0
    # A model this small runs faster on one thread than on several.
    torch.set_num_threads(1)
    path = Path(args.path)
    sys.stderr.write(f"training; watch it with: lossview {path} --follow\n")
    train(path, epochs=args.epochs, batch_size=args.batch_size, sleep=args.sleep, seed=args.seed)
    sys.stderr.write(f"done: {path}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
