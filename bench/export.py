"""`python -m bench.export`: Parquet export and DuckDB/Polars queries over a sweep, beside lossfmt.dataset.

A sweep of closed runs (300 by default) is exported with `lossfmt.export_parquet` (in full, then again
with nothing changed, then with one run grown), and one query (best validation loss per run) is timed on
the Parquet side (DuckDB `read_parquet`, Polars `scan_parquet`) and through lossfmt (DuckDB over
`lossfmt.dataset`, Polars over `lossfmt.scan_polars`). Every figure is repeated (cases interleaved) and
reported as min / median / max seconds, with the machine's load average before and after, since a shared
machine's other work shows up in wall times. Prints a markdown table for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.common import Config, Section, Workspace, interleaved, log, realistic_losses, table

QUERY = "SELECT run, min(value) AS best FROM {source} WHERE tag = 'val_loss' GROUP BY run ORDER BY run"


def write_sweep(directory: Path, runs: int, events: int) -> None:
    """`runs` closed run files of `events` training losses plus a val_loss every 100 steps, with hparams."""
    import lossfmt

    values = realistic_losses(events)
    for i in range(runs):
        meta = {"lr": [1e-3, 3e-4, 1e-4][i % 3], "seed": i, "batch_size": 32}
        with lossfmt.LossWriter(directory / f"run-{i:04d}.arrow", meta=meta) as writer:
            for step, value in enumerate(values):
                writer.add(step, value * (1 + i * 1e-4), count=32)
                if step % 100 == 99:
                    writer.add(step, value * 1.1, "val_loss", count=1000)


def timed(fn: Callable[[], object], setup: Callable[[], None] | None = None) -> Callable[[], float]:
    """A case: run `setup` untimed, then time `fn`."""

    def case() -> float:
        if setup is not None:
            setup()
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    return case


def cases(
    root: Path, runs_dir: Path
) -> tuple[dict[str, Callable[[], float]], dict[str, Callable[[], object]]]:
    """The timed cases, and the queries whose results must agree."""
    import duckdb
    import polars as pl

    import lossfmt

    kept = root / "kept"
    lossfmt.export_parquet(runs_dir, kept)
    fresh = iter(range(1 << 30))
    grown = runs_dir / "run-0000.arrow"
    steps = iter(range(1 << 40, 1 << 41))

    def grow() -> None:  # one run resumed, one more event, closed again: its mtime and size change
        with lossfmt.LossWriter(grown) as writer:
            writer.add(next(steps), 0.5, count=32)

    parquet = f"read_parquet('{kept}/**/*.parquet')"
    queries: dict[str, Callable[[], object]] = {
        "DuckDB on the Parquet export": lambda: duckdb.sql(QUERY.format(source=parquet)).fetchall(),
        "DuckDB on lossfmt.dataset()": lambda: duckdb_on_dataset(runs_dir),
        "Polars scan_parquet on the export": lambda: polars_best(pl.scan_parquet(f"{kept}/**/*.parquet")),
        "Polars on lossfmt.scan_polars()": lambda: polars_best(lossfmt.scan_polars(runs_dir)),
    }
    timings = {
        "export_parquet, full (new directory)": timed(
            lambda: lossfmt.export_parquet(runs_dir, root / f"full-{next(fresh)}")
        ),
        "export_parquet, nothing changed": timed(lambda: lossfmt.export_parquet(runs_dir, kept)),
        "export_parquet, one run changed": timed(lambda: lossfmt.export_parquet(runs_dir, kept), setup=grow),
        **{name: timed(query) for name, query in queries.items()},
    }
    return timings, queries


def duckdb_on_dataset(runs_dir: Path) -> list[tuple]:
    import duckdb

    import lossfmt

    runs = lossfmt.dataset(runs_dir)  # noqa: F841 (DuckDB finds the variable by name)
    return duckdb.sql(QUERY.format(source="runs")).fetchall()


def polars_best(frame: object) -> list[tuple]:
    import polars as pl

    best = frame.filter(pl.col("tag") == "val_loss").group_by("run").agg(pl.col("value").min().alias("best"))
    return best.sort("run").collect().rows()


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} CPUs"


def measure(root: Path, runs: int, events: int, repeats: int) -> dict[str, list[float]]:
    """Write the sweep under `root`, check the four queries agree, and time every case, interleaved."""
    runs_dir = root / "runs"
    runs_dir.mkdir()
    write_sweep(runs_dir, runs, events)
    timings, queries = cases(root, runs_dir)
    answers = {name: query() for name, query in queries.items()}
    first = next(iter(answers.values()))
    for name, answer in answers.items():
        if [(r, round(v, 12)) for r, v in answer] != [(r, round(v, 12)) for r, v in first]:
            raise SystemExit(f"{name} disagrees with the others: the comparison is void")
    return interleaved(timings, repeats)


def run(cfg: Config, ws: Workspace) -> Section:
    """The suite's section: a 300-run sweep (10 in --quick), exported and queried beside lossfmt.dataset."""
    sec = Section("export", "A sweep for DuckDB, Spark and Polars: Parquet export and queries")
    runs, events = (10, 500) if cfg.quick else (300, 10_000)
    repeats = max(3, cfg.slow_repeats + 2)
    log(f"export: {runs} runs of {events:,} events, {repeats} repeats, interleaved")
    root = ws.path("export")
    root.mkdir()
    res = measure(root, runs, events, repeats)
    rows = [
        [name, f"{min(xs):.3f}", f"{statistics.median(xs):.3f}", f"{max(xs):.3f}"] for name, xs in res.items()
    ]
    n = runs * (events + events // 100)
    sec.add(
        f"{runs} closed runs, {n:,} events in all, with hparams. `lossfmt.export_parquet(runs, OUT)` "
        "writes one Parquet file per run (one file per run, hparams as columns); a second export "
        "with nothing changed, and one after one run grew, rewrite only what changed. The query (best "
        "`val_loss` per run) is timed on the export (DuckDB `read_parquet`, Polars `scan_parquet`) and "
        "through lossfmt (DuckDB over `lossfmt.dataset`, Polars over `lossfmt.scan_polars`); all four "
        "answers are checked equal. Seconds; standalone: `python -m bench.export`.",
        "",
        *table(["case", "min s", "median s", "max s"], rows),
    )
    return sec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.export", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300, help="runs in the sweep (default 300)")
    parser.add_argument("--events", type=int, default=10_000, help="training events per run (default 10000)")
    parser.add_argument("--repeats", type=int, default=5, help="repeats of every figure (default 5)")
    ns = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="lossfmt-bench-export-"))
    try:
        print(f"writing {ns.runs} runs of {ns.events} events ... ({load()})", flush=True)
        before = load()
        results = measure(root, ns.runs, ns.events, ns.repeats)
        after = load()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    events = ns.runs * (ns.events + ns.events // 100)
    print(f"\n{ns.runs}-run sweep, {events:,} events; {ns.repeats} repeats, interleaved")
    print(f"before: {before}\nafter:  {after}\n")
    rows = [
        [name, f"{min(xs):.3f}", f"{statistics.median(xs):.3f}", f"{max(xs):.3f}"]
        for name, xs in results.items()
    ]
    print("\n".join(table(["case", "min s", "median s", "max s"], rows)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
