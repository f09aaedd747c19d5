"""`python -m bench.peers`: the caller's cost of logging one scalar, lossfmt against its peers.

trackio, aim, wandb (offline), MLflow (local file store), TensorBoard and tensorboardX, each measured on
the training thread with every other case interleaved in one process, against `list.append` and
`LossWriter.add`. `make bench-peers` runs it in its own venv (`.venv-peers`) so the peers' pins never
touch the development venv; a peer that is not installed, or fails to start, gets a row saying so."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.common import have, machine_load, median, min_med_max, table

VALUE = 0.6931471805599453

# name -> (label, module to look for, events per repeat: the slow peers log fewer)
PEERS: dict[str, tuple[str, str, int]] = {
    "floor": ("floor: `list.append((step, value))`", "", 50_000),
    "lossfmt": ("**lossfmt** `LossWriter.add(step, value)`", "lossfmt", 50_000),
    "trackio": ("trackio `trackio.log({'loss': v})`", "trackio", 5_000),
    "aim": ("aim `Run.track(v, name='loss', step=i)`", "aim", 1_000),
    "wandb": ("wandb offline `run.log({'loss': v}, step=i)`", "wandb", 1_000),
    "mlflow": ("MLflow `mlflow.log_metric('loss', v, step=i)` (SQLite store)", "mlflow", 1_000),
    "tensorboard": ("TensorBoard `torch.utils.tensorboard.SummaryWriter.add_scalar`", "torch", 5_000),
    "tensorboardX": ("tensorboardX `SummaryWriter.add_scalar`", "tensorboardX", 5_000),
}


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Peers print banners and progress on setup and teardown; the report stays readable."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def _open(name: str, root: Path) -> tuple[Callable[[int, float], Any], Callable[[], Any]]:
    """(log(step, value), close()) of a fresh run of peer `name` under `root`."""
    if name == "floor":
        buf: list[tuple[int, float]] = []
        return (lambda i, v: buf.append((i, v))), buf.clear
    if name == "lossfmt":
        from lossfmt import LossWriter

        writer = LossWriter(root / "run.arrow")
        # Through an adapter like every other case: the bound method alone would skip the frame they pay.
        return (lambda i, v: writer.add(i, v)), writer.close
    if name == "trackio":
        import trackio

        trackio.init(project=f"bench-{root.name}")
        return (lambda i, v: trackio.log({"loss": v}, step=i)), trackio.finish
    if name == "aim":
        from aim import Run

        run = Run(repo=str(root), experiment="bench")
        return (lambda i, v: run.track(v, name="loss", step=i)), run.close
    if name == "wandb":
        import wandb

        wrun = wandb.init(project="bench", mode="offline", dir=str(root))
        return (lambda i, v: wrun.log({"loss": v}, step=i)), wrun.finish
    if name == "mlflow":
        import mlflow

        # The file store is in maintenance mode (MLflow 3 refuses new runs there): a local SQLite store.
        mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
        mlflow.start_run()
        return (lambda i, v: mlflow.log_metric("loss", v, step=i)), mlflow.end_run
    if name in ("tensorboard", "tensorboardX"):
        if name == "tensorboard":
            from torch.utils.tensorboard import SummaryWriter
        else:
            from tensorboardX import SummaryWriter
        sw = SummaryWriter(log_dir=str(root))
        return (lambda i, v: sw.add_scalar("loss", v, i)), sw.close
    raise ValueError(name)


def _case(name: str, n: int, scratch: Path) -> float:
    """Seconds per logged scalar on this thread for one fresh run (setup and teardown untimed)."""
    root = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=scratch))
    with _quiet():
        log, close = _open(name, root)
    t0 = time.perf_counter()
    for i in range(n):
        log(i, VALUE)
    elapsed = time.perf_counter() - t0
    with _quiet():
        close()
    return elapsed / n


def measure(repeats: int, scale: int) -> tuple[dict[str, list[float]], dict[str, str]]:
    """({peer: ns per logged scalar, one per repeat}, {peer: why it failed}), every peer interleaved."""
    with tempfile.TemporaryDirectory(prefix="lossfmt-peers-") as tmp:
        scratch = Path(tmp)
        os.environ.setdefault("WANDB_SILENT", "true")
        os.environ.setdefault("TRACKIO_DIR", str(scratch / "trackio"))
        os.environ.setdefault("HF_HOME", str(scratch / "hf"))
        names = [k for k, (_, module, _) in PEERS.items() if not module or have(module)]
        results: dict[str, list[float]] = {k: [] for k in names}
        failed: dict[str, str] = {}
        for r in range(repeats):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                if name in failed:
                    continue
                try:
                    results[name].append(_case(name, max(1, PEERS[name][2] // scale), scratch) * 1e9)
                except Exception as exc:  # a peer that cannot start is reported, not fatal
                    failed[name] = f"{type(exc).__name__}: {exc}".splitlines()[0][:120]
    return results, failed


def _versions() -> list[str]:
    from importlib.metadata import version

    import lossfmt

    out = [f"lossfmt {version('lossfmt')} (from {Path(lossfmt.__file__).parent})"]
    for module in ("trackio", "aim", "wandb", "mlflow", "torch", "tensorboard", "tensorboardX"):
        with contextlib.suppress(Exception):
            out.append(f"{module} {version(module)}")
    return out


def run_table(results: dict[str, list[float]], failed: dict[str, str], scale: int) -> list[str]:
    """One run's table: min/median/max ns per peer, x floor and x lossfmt (of the medians)."""
    floor, ours = median(results["floor"]), median(results["lossfmt"])
    rows = []
    for name, (label, _, n) in PEERS.items():
        if name in failed:
            rows.append([label, "failed", "", "", "", "", f"`{failed[name]}`"])
        elif name not in results:
            rows.append([label, "not installed", "", "", "", "", ""])
        else:
            ns = results[name]
            rows.append(
                [
                    label,
                    *min_med_max(ns, fmt="{:,.0f}"),
                    f"{median(ns) / floor:,.1f}x",
                    f"{median(ns) / ours:,.1f}x",
                    f"{max(1, n // scale):,}",
                ]
            )
    return table(["logger", "min ns", "median ns", "max ns", "x floor", "x lossfmt", "events/repeat"], rows)


def summary(paths: list[Path]) -> str:
    """The summary of several runs' --json files: per peer, the median and range of the runs' medians, and
    the ratio to lossfmt (taken per run: both measured side by side in it) with its range."""
    runs = [json.loads(p.read_text()) for p in paths]
    rows = []
    for name, (label, _, _) in PEERS.items():
        meds = [median(run["ns"][name]) for run in runs if run["ns"].get(name)]
        if len(meds) < len(runs):
            why = {run["failed"].get(name, "not installed") for run in runs if not run["ns"].get(name)}
            rows.append([label, f"{len(meds)} of {len(runs)} runs", "", f"`{'; '.join(sorted(why))}`"])
            continue
        ratios = sorted(median(run["ns"][name]) / median(run["ns"]["lossfmt"]) for run in runs)
        rows.append(
            [
                label,
                f"{median(meds):,.0f}",
                f"{min(meds):,.0f}-{max(meds):,.0f}",
                f"{median(ratios):,.1f}x ({ratios[0]:,.1f}-{ratios[-1]:,.1f})",
            ]
        )
    headers = [
        "logger",
        "median of the medians (ns)",
        "range of the medians (ns)",
        "x lossfmt: median (range)",
    ]
    loads = "; ".join(run["load"] for run in runs)
    return "\n".join(
        [
            f"### Summary of {len(runs)} runs of `python -m bench.peers`",
            "",
            f"Each run's median over its repeats; machine load at the end of each run: {loads}.",
            "",
            *table(headers, rows),
        ]
    )


def run_report(quick: bool, repeats: int, load: str, rows: list[str]) -> str:
    """One run's markdown: the command, the load, the peers' versions and the table."""
    return "\n".join(
        [
            "## Peers: the caller's cost of logging one scalar",
            "",
            f"`python -m bench.peers{' --quick' if quick else ''}` (its own venv: `make bench-peers`), "
            f"{repeats} repeats, every peer interleaved in one process, a fresh run each; {load}. "
            "ns per logged scalar on the training thread (setup and teardown untimed). Every logger is "
            "called the same way, `log(step, value)` through a small adapter (the floor too), so the "
            "floor here includes one Python call more than the main suite's add() table.",
            "",
            f"- Versions: {', '.join(_versions())}",
            "",
            *rows,
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="-", help="markdown report path, or - for stdout")
    parser.add_argument("--json", type=Path, help="also write the measurements here (for --summarize)")
    parser.add_argument("--summarize", nargs="+", type=Path, metavar="JSON", help="summarize earlier runs")
    args = parser.parse_args(argv)
    if args.summarize:
        text = summary(args.summarize)
    else:
        repeats, scale = (2, 50) if args.quick else (args.repeats, 1)
        results, failed = measure(repeats, scale)
        load = machine_load()
        if args.json:
            args.json.write_text(json.dumps({"ns": results, "failed": failed, "load": load}))
        text = run_report(args.quick, repeats, load, run_table(results, failed, scale))
    if args.out == "-":
        sys.stdout.write(text + "\n")
    else:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
