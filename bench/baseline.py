"""`python -m bench.baseline [--rev REV]`: this tree against an earlier revision, side by side in one run.

Issue 10 asks that the redesign leave the hot path and the render no slower and every PNG unchanged or
better. REV (default 379f98c, the last commit before the redesign; `git archive`) and this working tree
(its files, uncommitted changes included) are each installed with `pip install --no-deps` into a throwaway
venv made with `--system-site-packages`, whose only other packages are this interpreter's site-packages, by
path: the dev venv is never touched, and both sides import alike (neither through an editable finder).
Then both sides are measured in the same run, interleaved round by round (the order alternates), each
measurement a fresh subprocess:

- the hot path: ns per call on the caller's thread of `add(step, float)`, the README loop
  `add(step, loss, count=32, epoch=e)`, `add_many` of 4 tags (per event) and `add` of a torch scalar
  with grad, each sustained (`--n` events to a fresh writer, the flusher running), with the new/old ratio
  taken per round (median and min-max over the rounds; wall and thread-CPU time);
- the render: `lossview FILE -o out.png` (default options, and `--smooth ema:0.6`, REV's default spelled
  out) of a 1M- and a 10M-event file that this tree's LossWriter wrote; wall and CPU seconds of the
  whole command;
- the PNGs: both sides' images of the same command, compared pixel by pixel.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DEFAULT_REV = "379f98c"
VALUE = 0.6931471805599453
TAGS = ("loss", "grad_norm", "lr", "acc")
HOT_CASES = (
    "floor",
    "add(step, float)",
    "add(step, loss, count=32, epoch=e)",
    "add_many(step, 4 tags), per event",
    "loss.item()",
    "add(step, torch scalar with grad)",
)
# (label, extra lossview arguments): REV's default smoothing was ema:0.6, this tree's is span:0.02.
RENDERS = (("default options", ()), ("--smooth ema:0.6", ("--smooth", "ema:0.6")))
REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ the child: runs on either side's lossfmt


def _hot_loop(case: str, writer: Any, n: int, loss: Any) -> None:
    """The timed loop of one hot-path case (the same code for both sides)."""
    if case == "floor":
        buf: list[Any] = []
        append = buf.append
        for i in range(n):
            append((i, VALUE))
    elif case == "add(step, float)":
        add = writer.add
        for i in range(n):
            add(i, VALUE)
    elif case == "add(step, loss, count=32, epoch=e)":
        add = writer.add
        for i in range(n):
            add(i, VALUE, count=32, epoch=i >> 10)
    elif case == "add_many(step, 4 tags), per event":
        add_many = writer.add_many
        values = dict.fromkeys(TAGS, VALUE)
        for i in range(n // len(TAGS)):
            add_many(i, values)
    elif case == "loss.item()":
        get = loss.item
        for _ in range(n):
            get()
    else:
        add = writer.add
        for i in range(n):
            add(i, loss)


def child_hotpath(n: int, directory: Path, inner: int) -> dict[str, list[float]]:
    """{case: [wall ns, thread-CPU ns] per call}: the fastest of `inner` runs of each case (the others were
    slowed by other processes on a shared machine), each on a fresh writer, closed untimed."""
    import torch

    from lossfmt import LossWriter

    loss = (torch.ones((), requires_grad=True) * VALUE).sum()
    out: dict[str, list[float]] = {}
    for _ in range(inner):
        for case in HOT_CASES:
            writer = None if case in ("floor", "loss.item()") else LossWriter(directory / "hot.arrow")
            c0, t0 = time.thread_time(), time.perf_counter()
            _hot_loop(case, writer, n, loss)
            t1, c1 = time.perf_counter(), time.thread_time()
            if writer is not None:
                writer.close()
                (directory / "hot.arrow").unlink()
            wall, cpu = (t1 - t0) / n * 1e9, (c1 - c0) / n * 1e9
            best = out.setdefault(case, [wall, cpu])
            out[case] = [min(best[0], wall), min(best[1], cpu)]
    return out


# ------------------------------------------------------------------ the parent: builds REV, runs both sides


def _sh(*cmd: str | Path, **kw: Any) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        raise SystemExit(f"bench.baseline: {' '.join(map(str, cmd))} failed: {proc.stderr.strip()[-800:]}")
    return proc


def _venv(src: Path, venv: Path) -> Path:
    """The python of a fresh venv at `venv` holding `src`'s lossfmt and lossview (installed, not editable)."""
    import site

    _sh(sys.executable, "-m", "venv", "--system-site-packages", venv)
    python = venv / "bin" / "python"
    purelib = _sh(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip()
    # This interpreter's packages (pyarrow, numpy, matplotlib, torch...) by path, after the venv's own: its
    # .pth files are not run, so an editable lossfmt there stays invisible.
    Path(purelib, "zz-bench-baseline.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    _sh(python, "-m", "pip", "install", "-q", "--no-deps", "--disable-pip-version-check", src)
    return python


def _untar(producer: list[str], dest: Path) -> None:
    dest.mkdir()
    proc = subprocess.Popen(producer, stdout=subprocess.PIPE, cwd=REPO)
    _sh("tar", "-x", "-C", dest, stdin=proc.stdout)
    if proc.wait() != 0:
        raise SystemExit(f"bench.baseline: {' '.join(producer)} failed")


def build_rev(rev: str, root: Path) -> tuple[str, Path]:
    """(full sha, python of a venv holding REV's lossfmt and lossview) built under `root`."""
    sha = _sh("git", "-C", REPO, "rev-parse", "--verify", f"{rev}^{{commit}}").stdout.strip()
    _untar(["git", "archive", sha], root / "old-src")
    return sha, _venv(root / "old-src", root / "old")


def build_tree(root: Path) -> Path:
    """The python of a venv holding this working tree (uncommitted changes included), installed the same
    way as REV: both sides then import from a plain site-packages, neither through an editable finder."""
    files = "git ls-files -z --cached --others --exclude-standard | tar --null -T - -c"
    _untar(["sh", "-c", files], root / "new-src")
    return _venv(root / "new-src", root / "new")


def _where(python: Path | str, cwd: Path) -> str:
    code = "import lossfmt, lossview; print(lossfmt.__file__, lossview.__file__)"
    return _sh(python, "-c", code, cwd=cwd).stdout.strip()


def run_hot(
    sides: dict[str, Path | str], n: int, inner: int, rounds: int, scratch: Path
) -> dict[str, list[Any]]:
    """{side: [one child_hotpath() result per round]}, the sides' order alternating round by round."""
    from bench.common import log

    code = f"import runpy; runpy.run_path({str(Path(__file__).resolve())!r}, run_name='__main__')"
    results: dict[str, list[Any]] = {side: [] for side in sides}
    names = list(sides)
    for r in range(rounds):
        for side in names if r % 2 == 0 else names[::-1]:
            log(f"hot path: round {r + 1}/{rounds}, {side}")
            proc = _sh(
                sides[side], "-c", code, "--child-hotpath", str(n), str(inner), str(scratch), cwd=scratch
            )
            results[side].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return results


def write_run(n: int, path: Path) -> Path:
    """A closed file of `n` realistic single-tag events written by this tree's LossWriter."""
    from bench.common import realistic_losses
    from lossfmt import LossWriter

    values = realistic_losses(n)
    with LossWriter(path) as writer:
        add = writer.add
        for step, value in enumerate(values):
            add(step, value)
    return path


def run_render(
    sides: dict[str, Path | str], files: dict[int, Path], rounds: int, scratch: Path
) -> tuple[dict[tuple[str, int, str], list[tuple[float, float]]], dict[tuple[str, int, str], list[Path]]]:
    """[wall, CPU] seconds of `lossview FILE -o out.png [extra]` per (side, events, render label), and the
    PNGs. CPU is the child's user + system time (all its threads): less moved by other processes' load."""
    import resource

    from bench.common import log

    env = {**os.environ, "MPLBACKEND": "Agg"}
    secs: dict[tuple[str, int, str], list[tuple[float, float]]] = {}
    pngs: dict[tuple[str, int, str], list[Path]] = {}
    names = list(sides)
    for r in range(rounds):
        for n, path in files.items():
            for label, extra in RENDERS:
                for side in names if r % 2 == 0 else names[::-1]:
                    log(f"render: round {r + 1}/{rounds}, {n:,} events, {label}, {side}")
                    key = (side, n, label)
                    out = scratch / f"{side}-{n}-{len(pngs.get(key, []))}-{label[:2].strip('-')}.png"
                    cmd = [sides[side], "-m", "lossview", path, "-o", out, *extra]
                    r0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
                    _sh(*cmd, cwd=scratch, env=env, timeout=600)
                    wall, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_CHILDREN)
                    cpu = r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime
                    secs.setdefault(key, []).append((wall, cpu))
                    pngs.setdefault(key, []).append(out)
    return secs, pngs


def compare_png(a: Path, b: Path) -> str:
    """'identical', or how many pixels differ and where (the bounding box of the differences)."""
    import numpy as np
    from matplotlib import image

    x, y = image.imread(a), image.imread(b)
    if x.shape != y.shape:
        return f"sizes differ: {x.shape[1]}x{x.shape[0]} vs {y.shape[1]}x{y.shape[0]}"
    diff = np.any(x != y, axis=-1)
    count = int(diff.sum())
    if count == 0:
        return "identical"
    rows, cols = np.nonzero(diff)
    box = f"x {cols.min()}-{cols.max()}, y {rows.min()}-{rows.max()}"
    return f"{count:,} of {diff.size:,} pixels differ ({count / diff.size:.2%}; within {box})"


def _ratio_cells(new: list[float], old: list[float]) -> str:
    from bench.common import median

    ratios = sorted(a / b for a, b in zip(new, old, strict=True))
    return f"{median(ratios):.2f} ({ratios[0]:.2f}-{ratios[-1]:.2f})"


def _per_floor(rounds: list[Any], case: str) -> list[float]:
    """The case's CPU ns over the floor's in the same subprocess, per round: a slow subprocess (other
    processes' load, a busy core) slows its floor too, so this ratio moves less than the ns do."""
    return [r[case][1] / r["floor"][1] for r in rounds]


def hot_table(hot: dict[str, list[Any]]) -> list[str]:
    from bench.common import median, table

    rows = []
    for case in HOT_CASES:
        old = [r[case] for r in hot["old"]]
        new = [r[case] for r in hot["new"]]
        rows.append(
            [
                f"`{case}`",
                f"{median([w for w, _ in old]):.0f}",
                f"{median([w for w, _ in new]):.0f}",
                _ratio_cells([w for w, _ in new], [w for w, _ in old]),
                _ratio_cells([c for _, c in new], [c for _, c in old]),
                _ratio_cells(_per_floor(hot["new"], case), _per_floor(hot["old"], case)),
            ]
        )
    headers = [
        "call",
        "old ns (median)",
        "new ns (median)",
        "new/old wall: median (min-max)",
        "new/old CPU",
        "new/old of x floor (CPU)",
    ]
    return table(headers, rows)


def render_tables(
    secs: dict[Any, list[tuple[float, float]]], pngs: dict[Any, list[Path]], files: dict[int, Path]
) -> list[str]:
    from bench.common import median, spread, table

    rows, cmp_rows = [], []
    for n in files:
        for label, _ in RENDERS:
            old = [w for w, _ in secs[("old", n, label)]]
            new = [w for w, _ in secs[("new", n, label)]]
            old_cpu = [c for _, c in secs[("old", n, label)]]
            new_cpu = [c for _, c in secs[("new", n, label)]]
            rows.append(
                [
                    f"`lossview FILE -o out.png`, {label}",
                    f"{n:,}",
                    f"{median(old):.2f} ({spread(old, 1, '{:.2f}')})",
                    f"{median(new):.2f} ({spread(new, 1, '{:.2f}')})",
                    _ratio_cells(new, old),
                    f"{median(old_cpu):.2f} / {median(new_cpu):.2f}",
                    _ratio_cells(new_cpu, old_cpu),
                ]
            )
            po, pn = pngs[("old", n, label)], pngs[("new", n, label)]
            cmp_rows.append(
                [
                    f"{label}, {n:,} events",
                    compare_png(po[-1], pn[-1]),
                    f"old {compare_png(po[0], po[-1])}; new {compare_png(pn[0], pn[-1])}",
                ]
            )
    headers = [
        "command",
        "events",
        "old s: median (range)",
        "new s: median (range)",
        "new/old wall: median (min-max)",
        "CPU s old / new (median)",
        "new/old CPU",
    ]
    return [
        *table(headers, rows),
        "PNG comparison (the last round's images of each side; the last column compares each side's "
        "first and last round, to show the render is deterministic):",
        "",
        *table(["render", "old vs new", "same side, first vs last round"], cmp_rows),
    ]


def _head() -> str:
    sha = _sh("git", "-C", REPO, "rev-parse", "--short", "HEAD").stdout.strip()
    dirty = _sh("git", "-C", REPO, "status", "--porcelain", "--untracked-files=no").stdout.strip()
    return sha + (" with uncommitted changes" if dirty else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.baseline", description=__doc__.splitlines()[0])
    parser.add_argument("--rev", default=DEFAULT_REV, help=f"the earlier revision (default {DEFAULT_REV})")
    parser.add_argument("--n", type=int, default=300_000, help="events per hot-path case and round")
    parser.add_argument("--rounds", type=int, default=7, help="hot-path rounds (>= 5)")
    parser.add_argument("--render-rounds", type=int, default=3, help="render rounds (>= 3)")
    parser.add_argument("--sizes", default="1000000,10000000", help="events of the rendered files")
    parser.add_argument("--png-dir", type=Path, help="keep the last round's PNGs here")
    parser.add_argument("--out", default="-", help="markdown report path, or - for stdout")
    parser.add_argument(
        "--inner", type=int, default=3, help="runs of each case per subprocess (the min counts)"
    )
    parser.add_argument("--child-hotpath", nargs=3, metavar=("N", "INNER", "DIR"), help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="a smoke run: tiny sizes, 2 rounds, 1 render")
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.inner, args.rounds, args.render_rounds, args.sizes = 2_000, 1, 2, 1, "20000"
    elif args.rounds < 5 or args.render_rounds < 3:
        parser.error("--rounds must be >= 5 and --render-rounds >= 3 (or --quick for a smoke run)")
    args.command = shlex.join(["python", "-m", "bench.baseline", *(sys.argv[1:] if argv is None else argv)])
    if args.child_hotpath:
        n, inner, directory = args.child_hotpath
        print(json.dumps(child_hotpath(int(n), Path(directory), int(inner))))
        return 0
    return report(args)


def report(args: argparse.Namespace) -> int:
    from bench.common import log, machine_load

    started, load_before = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), machine_load()
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="lossfmt-baseline-") as tmp:
        scratch = Path(tmp)
        log(f"building {args.rev} and this tree into throwaway venvs")
        sha, old_python = build_rev(args.rev, scratch)
        sides: dict[str, Path | str] = {"old": old_python, "new": build_tree(scratch)}
        where = {side: _where(python, scratch) for side, python in sides.items()}
        hot = run_hot(sides, args.n, args.inner, args.rounds, scratch)
        log(f"writing the render files ({', '.join(f'{n:,}' for n in sizes)} events)")
        files = {n: write_run(n, scratch / f"run{n}.arrow") for n in sizes}
        secs, pngs = run_render(sides, files, args.render_rounds, scratch)
        body = render_tables(secs, pngs, files)
        if args.png_dir:
            args.png_dir.mkdir(parents=True, exist_ok=True)
            for (side, n, label), paths in pngs.items():
                shutil.copy(paths[-1], args.png_dir / f"{side}-{n}-{label.strip('-').replace(' ', '-')}.png")
    text = "\n".join(
        [
            f"## Before/after: this tree ({_head()}) against {args.rev} ({sha[:10]})",
            "",
            f"`{args.command}` (--n {args.n}, --inner {args.inner}, --rounds {args.rounds}, --render-rounds "
            f"{args.render_rounds}), started {started}; Python {sys.version.split()[0]}.",
            f"Machine: {load_before} at the start, {machine_load()} at the end.",
            f"- old: {where['old']}",
            f"- new: {where['new']}",
            "",
            f"### Hot path: ns per call on the caller's thread, {args.n:,} calls per case (sustained: the "
            f"flusher runs), a fresh subprocess per side and round (the fastest of {args.inner} runs of "
            f"each case in it), {args.rounds} rounds interleaved",
            "",
            *hot_table(hot),
            f"### Render: seconds of the whole `lossview` command (a subprocess), {args.render_rounds} "
            "rounds interleaved; files written by this tree's LossWriter",
            "",
            *body,
        ]
    )
    if args.out == "-":
        sys.stdout.write(text + "\n")
    else:
        Path(args.out).write_text(text + "\n")
    log("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
