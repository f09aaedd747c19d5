"""Sustained add(): the calls real training loops make, over a stream long enough that the flusher runs.

Each repeat is a fresh writer fed `sustained_n` events (>= 1M in the full run: about 15 early flushes at
65,536 pending, so the caller shares the GIL with the flusher as in a real run), every form of the call and
its floor interleaved in one process. The caller's wall time is what a training loop pays. The flusher
thread's own CPU time (its POSIX thread clock) during the loop and a final flush() bounds the GIL time it
takes from the caller and is compared with the caller's CPU time; the CPU time of every other thread
(process CPU minus the caller's: the flusher plus Arrow's compression pool, which runs without the GIL) is
reported next to it. close() (compaction: once per run, not the flusher's work) has its own column."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from bench.common import Config, Section, Workspace, have, interleaved, log, median, min_med_max, table

VALUE = 0.6931471805599453
TAGS = ("loss/cls", "loss/box", "loss/obj", "loss/total")


class Sample:
    """One repeat: the caller's wall and CPU time, the CPU time of the thread whose clock is `flusher` (a
    POSIX thread clock id) and of every other thread."""

    def __init__(self, events: int, flusher: int | None = None) -> None:
        self.events = events
        self.wall = self.caller_cpu = self.other_cpu = self.flusher_cpu = self.close_cpu = 0.0
        self._clock = flusher

    def __enter__(self) -> Sample:
        self._w, self._t, self._p = time.perf_counter(), time.thread_time(), time.process_time()
        self._f = 0.0 if self._clock is None else time.clock_gettime(self._clock)
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._w
        self.caller_cpu = time.thread_time() - self._t
        self.other_cpu = max(0.0, time.process_time() - self._p - self.caller_cpu)
        if self._clock is not None:
            self.flusher_cpu = time.clock_gettime(self._clock) - self._f


def flusher_clock(path: Any) -> int:
    """The CPU clock of the flusher thread of the writer of `path` (lossfmt names it after the file)."""
    name = f"lossfmt-flusher[{path.name}]"
    (thread,) = [t for t in threading.enumerate() if t.name == name]
    assert thread.ident is not None
    return time.pthread_getcpuclockid(thread.ident)


def _floor(n: int) -> Sample:
    buf: list[tuple[int, float]] = []
    append = buf.append
    with Sample(n) as s:
        for i in range(n):
            append((i, VALUE))
    return s


def _writer_case(
    ws: Workspace, n: int, loop: Callable[[Any, int], None], events: int
) -> Callable[[], Sample]:
    """A fresh writer per repeat. The caller's wall and CPU time are the add() loop's; the flusher's share is
    its thread's CPU time (and the other threads') during the loop and a flush() that has the flusher write
    the rest; close() (compaction, once per run) is measured apart."""
    from lossfmt import LossWriter

    def case() -> Sample:
        path = ws.path("sustained.arrow")
        writer = LossWriter(path)
        clock = flusher_clock(path)
        with Sample(events, clock) as s:
            loop(writer, n)
        wall, caller = s.wall, s.caller_cpu
        with Sample(events, clock) as tail:
            writer.flush()  # the flusher's thread writes what is pending; the caller only waits
        s.wall, s.caller_cpu = wall, caller
        s.other_cpu += tail.other_cpu
        s.flusher_cpu += tail.flusher_cpu
        with Sample(events) as closing:
            writer.close()
        s.close_cpu = closing.caller_cpu + closing.other_cpu
        return s

    return case


def _add_float(writer: Any, n: int) -> None:
    add = writer.add
    for i in range(n):
        add(i, VALUE)


def _add_readme(writer: Any, n: int) -> None:
    add = writer.add
    for i in range(n):
        add(i, VALUE, count=32, epoch=i >> 10)


def _add_many(writer: Any, n: int) -> None:
    add_many = writer.add_many
    values = dict.fromkeys(TAGS, VALUE)
    for i in range(n // len(TAGS)):
        add_many(i, values)


def cases(cfg: Config, ws: Workspace) -> tuple[dict[str, Callable[[], Sample]], dict[str, str]]:
    n = cfg.sustained_n
    found: dict[str, Callable[[], Sample]] = {
        "floor": lambda: _floor(n),
        "float": _writer_case(ws, n, _add_float, n),
        "readme": _writer_case(ws, n, _add_readme, n),
        "add_many": _writer_case(ws, n, _add_many, n // len(TAGS) * len(TAGS)),
    }
    if have("torch"):
        import torch

        x = torch.ones((), requires_grad=True)
        loss = (x * VALUE).sum()  # a float32 scalar with a grad_fn, like a real loss

        def add_torch(writer: Any, n: int) -> None:
            add = writer.add
            for i in range(n):
                add(i, loss)

        def item() -> Sample:
            get = loss.item
            with Sample(n) as s:
                for _ in range(n):
                    get()
            return s

        found["torch"] = _writer_case(ws, n, add_torch, n)
        found["torch_item"] = item
    return found, LABELS


COLUMNS = [
    "call",
    "min ns",
    "median ns",
    "max ns",
    "x floor",
    "caller CPU ns",
    "flusher thread CPU ns",
    "all other threads CPU ns",
    "close() CPU ns",
]
LABELS = {
    "floor": "floor: `list.append((step, value))`",
    "float": "**lossfmt** `add(step, float)`",
    "readme": "**lossfmt** `add(step, loss, count=32, epoch=e)` (the README loop)",
    "add_many": f"**lossfmt** `add_many(step, {{{len(TAGS)} tags}})`, per event",
    "torch": "**lossfmt** `add(step, loss)` (CPU torch scalar, requires_grad)",
    "torch_item": "reference: `loss.item()` alone",
}


def _cpu_ratio(res: dict[str, list[Sample]], key: str, base: str) -> str:
    """The caller's CPU time over `base`'s, per repeat (median, min-max): what the load inflates least."""
    ratios = sorted(a.caller_cpu / b.caller_cpu for a, b in zip(res[key], res[base], strict=True))
    return f"caller CPU {median(ratios):.1f}x ({ratios[0]:.1f}-{ratios[-1]:.1f}x)"


def run(cfg: Config, ws: Workspace) -> Section:
    sec = Section("sustained", "Sustained add(): the flusher running")
    found, labels = cases(cfg, ws)
    repeats = max(3, cfg.repeats)
    log(f"sustained: {len(found)} cases x {cfg.sustained_n:,} events x {repeats} repeats, interleaved")
    res = interleaved(found, repeats)
    ns = {k: [s.wall / s.events * 1e9 for s in v] for k, v in res.items()}
    floor = median(ns["floor"])
    rows = []
    for key, samples in res.items():
        caller_cpu = median([s.caller_cpu / s.events * 1e9 for s in samples])
        other_cpu = median([s.other_cpu / s.events * 1e9 for s in samples])
        flusher_cpu = median([s.flusher_cpu / s.events * 1e9 for s in samples])
        close_cpu = median([s.close_cpu / s.events * 1e9 for s in samples])
        rows.append(
            [
                labels[key],
                *min_med_max(ns[key]),
                f"{median(ns[key]) / floor:.1f}x",
                f"{caller_cpu:.0f}",
                f"{flusher_cpu:.0f}" if key not in ("floor", "torch_item") else "",
                f"{other_cpu:.0f}" if key not in ("floor", "torch_item") else "",
                f"{close_cpu:.0f}" if key not in ("floor", "torch_item") else "",
            ]
        )
    sec.add(
        f"{cfg.sustained_n:,} events per repeat, a fresh writer each (default `flush_secs=1`, early flush "
        "at 65,536 pending), every case interleaved in one process. ns/event = the caller's wall time of "
        "the add() loop / events. The flusher thread CPU column is that thread's own CPU time (its POSIX "
        "thread clock) during the loop and a final flush(): an upper bound on the GIL time it takes from the "
        "caller. The all-other-threads column (process CPU minus the caller's) adds Arrow's compression "
        "pool, which compresses the flushed columns without the GIL. The close() column is the CPU time of "
        "close() per event (compaction into the closed file, once per run).",
        "",
        *table(COLUMNS, rows),
    )
    for key in ("float", "readme", "add_many", "torch"):
        if key not in ns:
            continue
        ratio = median(ns[key]) / floor
        sec.goal(
            f"sustained {labels[key]} <= 5x the floor",
            ratio <= 5,
            f"{median(ns[key]):.0f} ns = {ratio:.1f}x floor ({floor:.0f} ns), range "
            f"{min(ns[key]) / floor:.1f}-{max(ns[key]) / floor:.1f}x; {_cpu_ratio(res, key, 'floor')}",
        )
    if "torch" in ns:
        ratio = median(ns["torch"]) / median(ns["torch_item"])
        sec.goal(
            "add() of a torch scalar (CPU, requires_grad) <= 2.5x `loss.item()` alone",
            ratio <= 2.5,
            f"{median(ns['torch']):.0f} ns vs {median(ns['torch_item']):.0f} ns = {ratio:.1f}x; "
            f"{_cpu_ratio(res, 'torch', 'torch_item')}",
        )
    caller = median([s.caller_cpu / s.events for s in res["float"]])
    flusher = median([s.flusher_cpu / s.events for s in res["float"]])
    others = median([s.other_cpu / s.events for s in res["float"]])
    sec.goal(
        "the flusher's CPU (GIL) time per event <= the caller's, add(step, float)",
        flusher <= caller,
        f"flusher thread {flusher * 1e9:.0f} ns vs caller {caller * 1e9:.0f} ns (all other threads, "
        f"compression pool included: {others * 1e9:.0f} ns)",
    )
    return sec
