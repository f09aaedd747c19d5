"""Reading a run back: lossfmt to pyarrow and pandas against tbparse and TensorBoard's EventAccumulator."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from bench.common import Config, Section, Workspace, have, interleaved, log, median, rate, spread, table


def _timed(fn: Callable[[], int], counts: dict[str, int], key: str) -> Callable[[], float]:
    def case() -> float:
        t0 = time.perf_counter()
        counts[key] = fn()
        return time.perf_counter() - t0

    return case


def _lossfmt_cases(path: Path, counts: dict[str, int], n: int) -> dict[str, Callable[[], float]]:
    import lossfmt

    cases = {
        f"read/{n}": _timed(lambda: lossfmt.read(path).num_rows, counts, f"read/{n}"),
        f"read_pandas/{n}": _timed(lambda: len(lossfmt.read_pandas(path)), counts, f"read_pandas/{n}"),
    }
    if have("pandas"):
        import pandas as pd

        cases[f"read_feather/{n}"] = _timed(lambda: len(pd.read_feather(path)), counts, f"read_feather/{n}")
    if have("polars"):
        import polars as pl

        cases[f"polars/{n}"] = _timed(lambda: pl.read_ipc(path).height, counts, f"polars/{n}")
    return cases


def _tb_cases(logdir: Path, counts: dict[str, int]) -> dict[str, Callable[[], float]]:
    cases: dict[str, Callable[[], float]] = {}
    if have("tbparse"):
        from tbparse import SummaryReader

        cases["tbparse"] = _timed(lambda: len(SummaryReader(str(logdir)).scalars), counts, "tbparse")
    if have("tensorboard"):
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        def accumulate(size_guidance: dict[str, int] | None) -> int:
            kwargs = {"size_guidance": size_guidance} if size_guidance is not None else {}
            acc = EventAccumulator(str(logdir), **kwargs)
            acc.Reload()
            return len(acc.Scalars("loss"))

        cases["ea_default"] = _timed(lambda: accumulate(None), counts, "ea_default")
        cases["ea_all"] = _timed(lambda: accumulate({"scalars": 0}), counts, "ea_all")
    return cases


def run(cfg: Config, ws: Workspace) -> Section:
    sec = Section("read", "Reading a run")
    counts: dict[str, int] = {}
    rows = []
    pandas_rates = []
    for n in cfg.read_ns:
        path = ws.run_file(n)
        repeats = cfg.repeats if n == cfg.read_ns[0] else cfg.slow_repeats + 2
        log(f"read: {n:,} events x {repeats} repeats")
        res = interleaved(_lossfmt_cases(path, counts, n), repeats)
        labels = {
            "read": "**lossfmt** `read()` -> pyarrow.Table",
            "read_pandas": "**lossfmt** `read_pandas()` -> DataFrame",
            "read_feather": "`pandas.read_feather` (closed file, as is)",
            "polars": "`polars.read_ipc` (closed file, as is)",
        }
        for key, secs in res.items():
            what = key.split("/")[0]
            if counts[key] != n:
                raise RuntimeError(f"{key} returned {counts[key]} rows, expected {n}")
            rows.append(
                [
                    labels[what],
                    f"{n:,}",
                    f"{n:,}",
                    f"{median(secs) * 1e3:,.1f}",
                    spread(secs, 1e3),
                    rate(n, median(secs)),
                ]
            )
            if what == "read_pandas":
                pandas_rates.append((n, n / median(secs)))
    tb_rate = None
    if have("torch") and have("tensorboard"):
        tb_n = cfg.size_tb_n
        logdir = ws.tfevents_dir(tb_n)
        log(f"read: tfevents {tb_n:,} events x {cfg.slow_repeats} repeats")
        res = interleaved(_tb_cases(logdir, counts), cfg.slow_repeats)
        labels = {
            "tbparse": "tbparse `SummaryReader(dir).scalars` -> DataFrame",
            "ea_default": "TensorBoard `EventAccumulator`, default size_guidance",
            "ea_all": "TensorBoard `EventAccumulator`, size_guidance={'scalars': 0} (keep all)",
        }
        for key, secs in res.items():
            rows.append(
                [
                    labels[key],
                    f"{tb_n:,}",
                    f"{counts[key]:,}",
                    f"{median(secs) * 1e3:,.1f}",
                    spread(secs, 1e3),
                    rate(tb_n, median(secs)),
                ]
            )
            if key == "tbparse":
                tb_rate = tb_n / median(secs)
    sec.add(
        f"Whole-file reads of closed single-tag runs: {cfg.read_ns[0]:,} realistic float32-precision losses "
        f"written by LossWriter, and the {cfg.read_ns[-1]:,}-event file made of that run repeated (steps and "
        "times shifted) in the layout close() writes; tfevents written by "
        "`torch.utils.tensorboard.SummaryWriter`. Events/s counts the events in "
        "the file, whether or not the reader kept them.",
        "",
        *table(
            ["reader", "events in file", "events returned", "ms (median)", "range (ms)", "events/s"], rows
        ),
    )
    if "ea_default" in counts:
        sec.add(
            f"EventAccumulator's default size_guidance keeps {counts['ea_default']:,} of {cfg.size_tb_n:,} "
            "scalars (reservoir sampling); every lossfmt reader returns every event.",
            "",
        )
    if tb_rate is not None:
        worst_n, worst = min(pandas_rates, key=lambda x: x[1])
        sec.goal(
            "read to pandas >= 200x faster than tbparse (events/s, slower of the lossfmt files)",
            worst >= 200 * tb_rate,
            f"read_pandas {worst / 1e6:.1f} M/s ({worst_n:,} events) vs tbparse {tb_rate / 1e3:.1f} k/s "
            f"= {worst / tb_rate:.0f}x",
        )
    return sec
