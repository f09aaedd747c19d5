"""The report: machine, versions, command, goals summary, each benchmark's tables, and the GPU note."""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

from bench.common import Config, Section

PACKAGES = (
    "lossfmt",
    "pyarrow",
    "numpy",
    "pandas",
    "polars",
    "matplotlib",
    "torch",
    "tensorboard",
    "tensorboardX",
    "tbparse",
)

GPU_NOTE = """\
## GPU note (design; to be measured on a GPU machine)

`loss.item()` on a CUDA tensor blocks the training thread until the GPU has finished every kernel queued
before it (a device-to-host sync), which is why logging every step with `.item()` can stall a GPU run.
`LossWriter.add()` never does that: for a CUDA (or JAX) scalar it keeps a deferred, *detached clone* of the
value (`detach()` drops the autograd graph; the clone is an asynchronous device-side copy on the current
stream, so a later in-place update of the loss buffer cannot change what was logged: the value stored is the
value at `add()`). The flusher thread materializes all deferred values of one flush in one batched transfer
(stack, then one copy to host), so the sync happens off the training thread, once per flush instead of once
per step. `python -m bench.gpu_sync` measures it on a machine with a CUDA GPU, unchanged: the caller's
cost per step of `add(loss_cuda)` against `loss_cuda.item()` on top of the same queued kernels, and the
device synchronizations on the caller's thread (`torch.cuda.set_sync_debug_mode`; it exits non-zero on
any). Without a GPU it says so and exits 0. None of the figures above involve CUDA.
"""


def machine() -> list[str]:
    """CPU model, cores, RAM, OS and load, read from /proc where available."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = f"{int(line.split()[1]) / 1024**2:.1f} GiB"
                break
    except OSError:
        pass
    return [f"- CPU: {cpu}, {os.cpu_count()} logical cores", f"- RAM: {ram}", f"- OS: {platform.platform()}"]


def versions() -> list[str]:
    parts = [f"python {platform.python_version()}"]
    for name in PACKAGES:
        try:
            parts.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{name} (not installed)")
    return ["- " + ", ".join(parts)]


def revision(root: Path) -> str:
    """The git commit the suite ran on, marked dirty if the tree had changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            # The report rewrites BENCHMARKS.md: an earlier run's output is not a change to what is measured.
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!BENCHMARKS.md"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head}{' (with uncommitted changes)' if dirty else ''}"


def shared_note(load: tuple[tuple[float, ...], tuple[float, ...]]) -> list[str]:
    """A warning when other processes competed for the CPU during the run (load above half the cores)."""
    cores = os.cpu_count() or 1
    if max(load[0][0], load[1][0], load[1][1]) <= cores / 2:
        return []
    return [
        "- **The machine was shared during this run** (see the load average): absolute times are inflated "
        "and noisy; ratios measured side by side hold better. Rerun on a quiet machine for absolute figures."
    ]


def notes(root: Path) -> list[str]:
    """The hand-written findings (bench/NOTES.md): what holds missed goals back and the proposed fixes."""
    path = root / "bench" / "NOTES.md"
    return ["", path.read_text().strip(), ""] if path.exists() else []


def render(
    sections: Sequence[Section],
    cfg: Config,
    command: str,
    root: Path,
    load: tuple[tuple[float, ...], tuple[float, ...]],
    started: str,
    total_secs: float,
) -> str:
    """The whole markdown report."""
    goals = [g for s in sections for g in s.goals]
    lines = [
        "# lossfmt benchmarks",
        "",
        "Produced by the project's benchmark suite (`bench/`); rerun it to check every figure below. Each "
        "figure is the median of repeats measured in one process, side by side with its floor or competitor "
        "(interleaved), so ratios hold even when the machine is noisy; absolute times vary more.",
        "",
        f"- Command: `{command}`" + (" (quick smoke sizes: the figures mean nothing)" if cfg.quick else ""),
        f"- Ran: {started} UTC for {total_secs:.0f} s, at git revision {revision(root)}",
        *machine(),
        f"- Load average (1/5/15 min) at start: {' / '.join(f'{x:.2f}' for x in load[0])}; at end: "
        f"{' / '.join(f'{x:.2f}' for x in load[1])}, on {os.cpu_count()} CPUs",
        *versions(),
        *shared_note(load),
        "",
        "## Goals",
        "",
        "```",
        *(g.line() for g in goals),
        "```",
        "",
    ]
    errors = [s for s in sections if s.error]
    if errors:
        lines += ["Benchmarks that failed (their goals are not listed):", ""]
        lines += [f"- {s.key}: `{s.error}`" for s in errors]
        lines.append("")
    for s in sections:
        lines += [f"## {s.title}", ""]
        if s.error:
            lines += [f"Failed: `{s.error}`", ""]
            continue
        lines += s.body
        lines += ["", f"_({s.seconds:.0f} s; at its end: {s.load})_", ""]
    lines.append(GPU_NOTE)
    lines += notes(root)
    return "\n".join(lines).replace("\n\n\n", "\n\n")
