"""What every benchmark shares: sizes, interleaved repeated timing, test data, shared files, report pieces."""

from __future__ import annotations

import dataclasses
import gc
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np


@dataclasses.dataclass(frozen=True)
class Config:
    """Problem sizes and repeat counts; `full()` is the published run, `quick()` a seconds-long smoke run."""

    quick: bool
    repeats: int  # repeats of every fast figure (medians are reported)
    slow_repeats: int  # repeats of figures that take seconds each (tbparse, renders)
    add_n: int  # add() calls per repeat for the cheap callers (below the flusher's early wake at 65,536)
    add_n_slow: int  # calls per repeat for the expensive callers (TensorBoard, tensorboardX)
    e2e_n: int  # events per end-to-end run
    mem_ns: tuple[int, int]  # events produced in the memory test (small, large)
    tax_steps: int  # training steps per timed block
    tax_rounds: int  # rounds of (one block per logger)
    size_n: int  # events in the size runs
    size_tb_n: int  # events in the tfevents runs (size and tbparse reads)
    slow_n: int  # events in the slow run (one flush per event)
    read_ns: tuple[int, int]  # events in the read/render files
    follow_samples: int  # add()-to-PNG latency samples per mode
    follow_flush_secs: float
    sustained_n: int  # events per sustained add() repeat (the flusher runs throughout)
    live_steps: int  # simulated 60 ms training steps in the live-file size run
    live_scale: float  # time compression of that run (1 = real time)
    close_ns: tuple[int, ...]  # events per close() memory child
    tags_n: int  # distinct tags in the many-tag flush
    verify_n: int  # events of the file read with and without checksum verification

    @classmethod
    def full(cls) -> Config:
        return cls(
            quick=False,
            repeats=7,
            slow_repeats=3,
            add_n=50_000,
            add_n_slow=5_000,
            e2e_n=1_000_000,
            mem_ns=(500_000, 2_000_000),
            tax_steps=25,
            tax_rounds=60,
            size_n=500_000,
            size_tb_n=100_000,
            slow_n=2_000,
            read_ns=(1_000_000, 10_000_000),
            follow_samples=20,
            follow_flush_secs=1.0,
            sustained_n=1_000_000,
            live_steps=3_000,
            live_scale=10.0,
            close_ns=(1_000_000, 10_000_000, 30_000_000),
            tags_n=100_000,
            verify_n=10_000_000,
        )

    @classmethod
    def quick_run(cls) -> Config:
        return cls(
            quick=True,
            repeats=2,
            slow_repeats=1,
            add_n=2_000,
            add_n_slow=200,
            e2e_n=5_000,
            mem_ns=(20_000, 40_000),
            tax_steps=3,
            tax_rounds=3,
            size_n=5_000,
            size_tb_n=1_000,
            slow_n=20,
            read_ns=(5_000, 20_000),
            follow_samples=2,
            follow_flush_secs=0.2,
            sustained_n=20_000,
            live_steps=60,
            live_scale=100.0,
            close_ns=(10_000, 30_000),
            tags_n=2_000,
            verify_n=20_000,
        )


@dataclasses.dataclass
class Goal:
    """One goal of the benchmarks issue, checked against this run's medians."""

    text: str
    passed: bool
    measured: str

    def line(self) -> str:
        return f"{'PASS' if self.passed else 'MISS'}  {self.text}: {self.measured}"


@dataclasses.dataclass
class Section:
    """A benchmark's share of the report: markdown body and the goals it checks."""

    key: str
    title: str
    body: list[str] = dataclasses.field(default_factory=list)
    goals: list[Goal] = dataclasses.field(default_factory=list)
    seconds: float = 0.0
    load: str = ""  # the machine's load when the section ended (machine_load())
    error: str | None = None

    def add(self, *lines: str) -> None:
        self.body.extend(lines)

    def goal(self, text: str, passed: bool, measured: str) -> None:
        self.goals.append(Goal(text, bool(passed), measured))


class Workspace:
    """A scratch directory plus the expensive inputs several benchmarks share (big runs, tfevents dirs)."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="lossfmt-bench-"))
        self._runs: dict[int, Path] = {}
        self._tfevents: dict[int, Path] = {}
        self._counter = 0

    def path(self, name: str) -> Path:
        """A fresh path in the scratch directory (never reused within a run)."""
        self._counter += 1
        return self.root / f"{self._counter:04d}-{name}"

    def run_file(self, n: int) -> Path:
        """A closed lossfmt file of `n` realistic single-tag events, written once by LossWriter.

        Every benchmark that reads or renders a run uses a file the writer really produced (issue 13: a
        tiled copy has another batch layout and dictionary than what users read)."""
        if n not in self._runs:
            from lossfmt import LossWriter

            path = self.path(f"run{n}.arrow")
            values = realistic_losses(n)
            with LossWriter(path) as writer:
                add = writer.add
                for step, value in enumerate(values):
                    add(step, value)
            self._runs[n] = path
        return self._runs[n]

    def live_file(self, n: int) -> tuple[Path, Any]:
        """A live (footerless) file of `n` realistic single-tag events, like `run_file(n)` before close(),
        and its writer, kept open (the caller closes it)."""
        from lossfmt import LossWriter

        path = self.path(f"live{n}.arrow")
        writer = LossWriter(path, flush_secs=1e6)
        add = writer.add
        for step, value in enumerate(realistic_losses(n)):
            add(step, value)
        writer.flush()
        return path, writer

    def tfevents_dir(self, n: int) -> Path:
        """A TensorBoard log dir holding `n` realistic `loss` scalars written by SummaryWriter."""
        if n not in self._tfevents:
            from torch.utils.tensorboard import SummaryWriter

            logdir = self.path(f"tb{n}")
            writer = SummaryWriter(log_dir=str(logdir))
            for step, value in enumerate(realistic_losses(n)):
                writer.add_scalar("loss", value, step)
            writer.close()
            self._tfevents[n] = logdir
        return self._tfevents[n]

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def realistic_losses(n: int, seed: int = 0) -> list[float]:
    """Losses as a float32 model reports them (`loss.item()`): a noisy decaying curve, float32 precision."""
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=np.float64)
    curve = 2.3 * np.exp(-t / max(n / 5, 1.0)) + 0.05 + 0.1 * rng.standard_normal(n) * np.exp(-t / max(n, 1))
    return np.abs(curve).astype(np.float32).astype(np.float64).tolist()


def random_float64(n: int, seed: int = 1) -> list[float]:
    """Random values using all 52 mantissa bits: the worst case for compression."""
    return (np.random.default_rng(seed).random(n) * 3.0).tolist()


T = TypeVar("T")


def interleaved(cases: dict[str, Callable[[], T]], repeats: int) -> dict[str, list[T]]:
    """Run every case once per repeat, rotating the order, so drift and noise hit all cases alike.

    Each case returns what it measured, seconds or a Stopwatch (its setup and teardown stay outside)."""
    names = list(cases)
    results: dict[str, list[T]] = {name: [] for name in names}
    for r in range(repeats):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            gc.collect()  # every case starts from the same garbage-collector state
            results[name].append(cases[name]())
    return results


class Stopwatch:
    """Wall time and CPU time of a block. Wall time is what a caller waits; CPU time (of this thread, or of
    every thread of the process) leaves out the time the OS gave to other processes on a shared machine."""

    def __init__(self, cpu: Callable[[], float] = time.thread_time) -> None:
        self._cpu = cpu
        self.wall = self.cpu = 0.0

    def __enter__(self) -> Stopwatch:
        self._w0, self._c0 = time.perf_counter(), self._cpu()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self._w0, self._cpu() - self._c0


def walls(xs: Sequence[Stopwatch]) -> list[float]:
    return [x.wall for x in xs]


def cpus(xs: Sequence[Stopwatch]) -> list[float]:
    return [x.cpu for x in xs]


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def min_med_max(xs: Sequence[float], scale: float = 1.0, fmt: str = "{:.0f}") -> list[str]:
    """Three table cells: min, median and max of the repeats, scaled (issue 13 publishes all three)."""
    return [fmt.format(min(xs) * scale), fmt.format(median(xs) * scale), fmt.format(max(xs) * scale)]


def machine_load() -> str:
    """The load average and the CPU count, printed with every run and every section (a shared machine)."""
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f} / {five:.2f} / {fifteen:.2f} (1/5/15 min) on {os.cpu_count()} CPUs"


def spread(xs: Sequence[float], scale: float = 1.0, fmt: str = "{:.0f}") -> str:
    """`min–max` of the repeats, scaled, for the tables."""
    return f"{fmt.format(min(xs) * scale)}–{fmt.format(max(xs) * scale)}"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """A markdown table; numbers are expected already formatted."""
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return [*out, ""]


def rate(events: float, seconds: float) -> str:
    """Events per second, human scaled."""
    per_s = events / seconds if seconds > 0 else float("inf")
    if per_s >= 1e6:
        return f"{per_s / 1e6:.1f} M/s"
    if per_s >= 1e3:
        return f"{per_s / 1e3:.1f} k/s"
    return f"{per_s:.0f} /s"


def child(module: str, *args: str) -> list[str]:
    """The command line of a benchmark child process `python -m MODULE ARGS` that finds `bench` from any
    working directory: the checkout is appended to sys.path, after site-packages, so an installed lossfmt
    (CI's wheel) is the one measured rather than the checkout's source."""
    root = str(Path(__file__).resolve().parents[1])
    code = f"import runpy, sys; sys.path.append({root!r}); runpy.run_module({module!r}, run_name='__main__')"
    return [sys.executable, "-c", code, *args]


def log(message: str) -> None:
    """Progress on stderr (the report goes to its own file)."""
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


def have(module: str) -> bool:
    """Whether an optional competitor is installed (without importing it)."""
    import importlib.util

    return importlib.util.find_spec(module) is not None


def file_size(path: Path) -> int:
    """Bytes of a file, or of every file under a directory."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return os.path.getsize(path)
