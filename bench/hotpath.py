"""Caller-thread cost of every add() form, sustained (the flusher running), against the floor, side by side.

A quick standalone measurement for work on the writer's hot path (`python -m bench.hotpath`); the published
figures come from `python -m bench`. Each case adds `--n` events to a fresh writer (enough for the flusher to
run many times meanwhile), then closes it. Cases run interleaved, `--repeats` times; the ratio to the floor
(`list.append((step, v))`) is taken per repeat and its median, min and max are printed, so a load change
between repeats moves both sides. The flusher's CPU time per event (the process's CPU time minus the
caller's, over the loop and a final flush() that has the flusher write the rest: an upper bound on its GIL
time; close() is left out) is printed beside the caller's. The machine load is printed before and after.

`--before REV` adds every writer case again with the LossWriter of git revision REV (its lossfmt/_writer.py,
loaded next to this tree's other modules, so REV must not predate what it imports), interleaved with the
current one: a before/after comparison in one process.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

VALUE = 0.6931471805599453
TAGS = ("loss", "grad_norm", "lr", "acc")


Loop = Callable[[Any, int], None]


def _floor(_: Any, n: int) -> None:
    buf: list[Any] = []
    append = buf.append
    for i in range(n):
        append((i, VALUE))


def _float(w: Any, n: int) -> None:
    add = w.add
    for i in range(n):
        add(i, VALUE)


def _options(w: Any, n: int) -> None:
    add = w.add
    for i in range(n):
        add(i, VALUE, count=32, epoch=i >> 10)


def _many(w: Any, n: int) -> None:
    add_many = w.add_many
    values = dict.fromkeys(TAGS, VALUE)
    for i in range(n // len(TAGS)):
        add_many(i, values)


def _torch_case(loss: Any) -> tuple[Loop, Loop]:
    def item(_: Any, n: int) -> None:
        get = loss.item
        for _ in range(n):
            get()

    def add(w: Any, n: int) -> None:
        add = w.add
        for i in range(n):
            add(i, loss)

    return item, add


def writer_at(rev: str) -> type:
    """The LossWriter class of git revision `rev`, loaded as a module beside the current lossfmt."""
    root = Path(__file__).resolve().parent.parent
    source = subprocess.run(
        ["git", "show", f"{rev}:lossfmt/_writer.py"], cwd=root, check=True, capture_output=True, text=True
    ).stdout
    name = "lossfmt._writer_before"
    spec = importlib.util.spec_from_loader(name, loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    exec(compile(source, f"{rev}:lossfmt/_writer.py", "exec"), module.__dict__)
    return module.LossWriter  # type: ignore[no-any-return]


def run_case(loop: Loop, n: int, directory: Path, writer: type | None) -> tuple[float, float, float]:
    """Seconds of wall and thread CPU time of the caller, and the flusher's CPU seconds, for one repeat."""
    w = writer(directory / "hot.arrow") if writer is not None else None
    p0, c0, t0 = time.process_time(), time.thread_time(), time.perf_counter()
    loop(w, n)
    t1, c1 = time.perf_counter(), time.thread_time()
    if w is not None:
        w.flush()
    flusher = time.process_time() - p0 - (time.thread_time() - c0)
    if w is not None:
        w.close()
        (directory / "hot.arrow").unlink()
    return t1 - t0, c1 - c0, max(0.0, flusher)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="events per case and repeat")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--cases", default="", help="comma-separated subset of the case names")
    parser.add_argument("--before", metavar="REV", help="also run the writer cases with REV's LossWriter")
    args = parser.parse_args(argv)
    from lossfmt import LossWriter

    cases: dict[str, tuple[Loop, type | None]] = {
        "floor": (_floor, None),
        "add(step, float)": (_float, LossWriter),
        "add(step, v, count=32, epoch=e)": (_options, LossWriter),
        "add_many(step, 4 tags) per event": (_many, LossWriter),
    }
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        x = torch.ones((), requires_grad=True)
        item, add = _torch_case((x * VALUE).sum())
        cases["loss.item()"] = (item, None)
        cases["add(step, torch scalar with grad)"] = (add, LossWriter)
    if args.cases:
        keep = {"floor", "loss.item()", *args.cases.split(",")}
        cases = {k: v for k, v in cases.items() if k in keep}
    if args.before:
        before = writer_at(args.before)
        cases.update({f"{k} @{args.before}": (loop, before) for k, (loop, w) in list(cases.items()) if w})
    print(f"load average before: {os.getloadavg()}; n={args.n:,}, repeats={args.repeats}")
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in cases}
    names = list(cases)
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for name in names[r % len(names) :] + names[: r % len(names)]:  # rotated: drift hits all alike
                loop, writer = cases[name]
                results[name].append(run_case(loop, args.n, Path(tmp), writer))
    print(f"load average after:  {os.getloadavg()}")
    floor = [r[0] for r in results["floor"]]
    item = "loss.item()" in results
    width = max(map(len, results))
    head = f"{'ns/event':>9} {'x floor (med, min-max)':>24} {'cpu ns':>7} {'flusher cpu ns':>14}"
    print(f"{'case':{width}} {head}")
    for name, rs in results.items():
        ratios = sorted(r[0] / f for r, f in zip(rs, floor, strict=True))
        wall = statistics.median(r[0] for r in rs) / args.n * 1e9
        cpu = statistics.median(r[1] for r in rs) / args.n * 1e9
        flush = statistics.median(r[2] for r in rs) / args.n * 1e9
        ratio = f"{statistics.median(ratios):.2f} ({ratios[0]:.2f}-{ratios[-1]:.2f})"
        print(f"{name:{width}} {wall:9.0f} {ratio:>24} {cpu:7.0f} {flush:14.0f}")
        if "torch" in name and item:
            for kind, at in (("wall", 0), ("cpu", 1)):
                vs = sorted(r[at] / i[at] for r, i in zip(rs, results["loss.item()"], strict=True))
                ratio = f"{statistics.median(vs):.2f} ({vs[0]:.2f}-{vs[-1]:.2f})"
                print(f"{f'  ... x loss.item(), {kind}':{width}} {'':9} {ratio:>24}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
