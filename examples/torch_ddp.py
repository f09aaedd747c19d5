"""Every rank of a ``torch.distributed`` job logs: one file per rank, plus rank 0's global loss.

A DistributedDataParallel linear regression on 2 CPU processes (gloo backend), started with
``torch.multiprocessing.spawn`` or by ``torchrun --standalone --nproc-per-node 2 examples/torch_ddp.py``
(``rank_writer`` finds the rank either way). The two ways to log, side by side:

- per rank: each rank writes its local batch loss to ``<out>/rank<r>.arrow`` (run name ``<out>``'s name,
  ``rank`` in the metadata);
- rank 0 only: the loss over the global batch (summed across ranks with ``all_reduce``) to ``<out>.arrow``;
  the other ranks' ``rank_writer(..., rank0_only=True)`` records nothing.

    python examples/torch_ddp.py runs/ddp
    lossview 'runs/ddp/rank*.arrow'                      # one curve per rank
    lossview 'runs/ddp/rank*.arrow' --mean-runs --band   # mean across ranks, spread shaded
    lossview runs/ddp.arrow                              # the global loss

    from lossfmt.dataset import mean_across, read_ranks
    mean_across(read_ranks("runs/ddp/rank*.arrow"))      # per step: mean, min, max, std over ranks

A few seconds on a CPU; ``--fast`` runs 40 steps.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from lossfmt.integrations.torch_distributed import rank_writer


def worker(rank: int, world_size: int, port: int | None, out: str, steps: int, sleep: float) -> None:
    """One rank: join the process group, train on its shard of the data, log, leave.

    `port` None: started by torchrun, which passes the rendezvous in the environment.
    """
    torch.set_num_threads(1)
    if port is None:
        dist.init_process_group("gloo")
    else:
        os.environ["MASTER_ADDR"] = "127.0.0.1"
        os.environ["MASTER_PORT"] = str(port)
        dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        torch.manual_seed(0)
        model = nn.parallel.DistributedDataParallel(nn.Linear(4, 1))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
        generator = torch.Generator().manual_seed(100 + rank)  # each rank sees different data
        true_w = torch.tensor([[1.0, -2.0, 0.5, 3.0]])
        meta = {"lr": 0.05}
        with (
            rank_writer(os.path.join(out, "rank{rank}.arrow"), meta=meta) as per_rank,
            rank_writer(f"{out}.arrow", rank0_only=True, meta=meta) as global_loss,
        ):
            for step in range(steps):
                x = torch.randn(16 + 8 * rank, 4, generator=generator)
                y = x @ true_w.T + 0.1 * torch.randn(len(x), 1, generator=generator)
                loss = nn.functional.mse_loss(model(x), y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                per_rank.add(step, loss, count=len(x))
                # Sum of squared errors and samples over all ranks: the exact global per-sample mean.
                totals = torch.stack([loss.detach() * len(x), torch.tensor(float(len(x)))])
                dist.all_reduce(totals)
                global_loss.add(step, totals[0] / totals[1], count=int(totals[1]))
                if sleep:
                    time.sleep(sleep)
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "out",
        nargs="?",
        default="runs/ddp",
        help="directory for the rank files; OUT.arrow for the global loss",
    )
    parser.add_argument("--world-size", type=int, default=2, help="processes (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=300, help="steps (default: %(default)s)")
    parser.add_argument("--sleep", type=float, default=0.01, help="pause per step (default: %(default)s)")
    parser.add_argument("--fast", action="store_true", help="40 steps, no sleep: for tests and CI")
    args = parser.parse_args(argv)
    if args.fast:
        args.steps, args.sleep = 40, 0.0
    out = args.out.rstrip("/")
    Path(out).mkdir(parents=True, exist_ok=True)
    if "TORCHELASTIC_RUN_ID" in os.environ:  # this process is one rank started by torchrun
        worker(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), None, out, args.steps, args.sleep)
        return 0
    sys.stderr.write(f"{args.world_size} ranks; watch them: lossview '{out}/rank*.arrow' --follow\n")
    mp.spawn(
        worker,
        args=(args.world_size, free_port(), out, args.steps, args.sleep),
        nprocs=args.world_size,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
