"""`python -m bench.gpu_sync`: on a CUDA machine, add() of a CUDA loss must never synchronize the device.

Measures, in one process with the loops interleaved, the training thread's cost per step of
`writer.add(step, loss)` on a CUDA scalar against `loss.item()` (which waits for every queued kernel), both
on top of the same queued matmul work, and counts device synchronizations on the caller's thread with
`torch.cuda.set_sync_debug_mode` around the add() loop. Exit status: 0 when no add() synchronized (or when
no GPU is present, said so on stdout), 1 when one did, 2 when the logged values are wrong.

The debug mode is process-wide, so the flusher (which makes the one batched device-to-host copy per flush,
by design) must not run inside it: the loops stay below the flusher's early wake-up (65,536 pending) with
a long `flush_secs`, and flush() happens after the mode is reset."""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any


def _no_gpu_reason() -> str | None:
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return "torch.cuda.is_available() is False"
    return None


def _loop(
    torch: Any, mats: tuple[Any, Any], n: int, log: Any = None, item: bool = False
) -> tuple[float, list[Any]]:
    """n training steps: one queued matmul and a scalar loss each, then log it (or .item() it)."""
    a, b = mats
    kept = []
    t0 = time.perf_counter()
    for step in range(n):
        loss = (a @ b).mean() * (1.0 + step * 1e-3)
        if log is not None:
            log(step, loss)
            kept.append(loss.detach())  # no sync: a view on the device, for the check afterwards
        elif item:
            loss.item()
    return time.perf_counter() - t0, kept


def _count_syncs(torch: Any, mats: tuple[Any, Any], n: int, add: Any) -> tuple[int, str]:
    """Synchronizations in an add() loop: counted in "warn" mode, then gated in "error" mode."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            _loop(torch, mats, n, add)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = sum("synchroniz" in str(w.message).lower() for w in caught)
    torch.cuda.set_sync_debug_mode("error")
    try:
        _loop(torch, mats, n, add)
        error = ""
    except RuntimeError as exc:
        error = str(exc).splitlines()[0]
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return syncs, error


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_sync", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10_000, help="steps per loop (< 65,536: see the doc)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", type=int, default=2048, help="the queued matmul's matrix size")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run)")
    parser.add_argument(
        "--cpu",
        action="store_true",
        help="the same loops on small CPU tensors: checks the script, counts nothing",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.repeats, args.size = 200, 2, 256
    if args.cpu:
        args.size = min(args.size, 32)
    print(f"machine: load {' / '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    reason = None if args.cpu else _no_gpu_reason()
    if reason is not None:
        print(f"no CUDA GPU present ({reason}): nothing measured, nothing to check.")
        return 0

    import torch

    from lossfmt import LossWriter, read

    device = torch.device("cpu" if args.cpu else "cuda")
    name = "CPU (--cpu)" if args.cpu else torch.cuda.get_device_name(device)
    print(f"device: {name}, torch {torch.__version__}")
    sync = (lambda: None) if args.cpu else torch.cuda.synchronize
    w = torch.randn(args.size, args.size, device=device, requires_grad=True)
    mats = (w, torch.randn(args.size, args.size, device=device))
    n = args.steps
    with tempfile.TemporaryDirectory() as tmp:
        times: dict[str, list[float]] = {"work only": [], "work + add(loss)": [], "work + loss.item()": []}
        for r in range(args.repeats):
            writer = LossWriter(Path(tmp) / f"gpu{r}.arrow", flush_secs=1e6)
            cases = {
                "work only": {},
                "work + add(loss)": {"log": writer.add},
                "work + loss.item()": {"item": True},
            }
            for name in list(cases)[r % 3 :] + list(cases)[: r % 3]:
                sync()
                times[name].append(_loop(torch, mats, n, **cases[name])[0])
            sync()
            writer.close()

        path = Path(tmp) / "check.arrow"
        writer = LossWriter(path, flush_secs=1e6)
        syncs, error = (0, "") if args.cpu else _count_syncs(torch, mats, n, writer.add)
        _, kept = _loop(torch, mats, n, writer.add)
        t0 = time.perf_counter()
        writer.flush()
        flush_secs = time.perf_counter() - t0
        writer.close()
        expected = torch.stack(kept).float().cpu().numpy()
        got = read(path).column("value").to_numpy()[-n:]
    base = statistics.median(times["work only"])
    print(f"\n{n:,} steps per loop, {args.repeats} repeats interleaved; µs per step above the work alone:\n")
    print("| loop | median µs/step | min | max |\n|---|---|---|---|")
    for name, secs in times.items():
        extra = [(s - base) / n * 1e6 for s in secs] if name != "work only" else [s / n * 1e6 for s in secs]
        print(f"| {name} | {statistics.median(extra):.2f} | {min(extra):.2f} | {max(extra):.2f} |")
    print(f"\nflush() of {n:,} deferred scalars: {flush_secs * 1e3:.1f} ms (one batched transfer)")
    print(f"synchronizations during {n:,} add() calls: {syncs} (sync debug mode 'warn')")
    if error or syncs:
        print(f"FAIL: add() synchronized the device (sync debug mode 'error': {error or 'no error'})")
        return 1
    if len(got) != n or not (abs(got - expected) <= 1e-6 * abs(expected).max()).all():
        print("FAIL: the logged values differ from the losses at add() time")
        return 2
    print("PASS: no synchronization in add(); every logged value is the loss at its add()")
    return 0


if __name__ == "__main__":
    sys.exit(main())
