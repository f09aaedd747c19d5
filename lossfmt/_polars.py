"""Polars over a directory of runs, closed and live: ``lossfmt.scan_polars("runs/")``.

Polars' own ``scan_ipc`` needs the Arrow IPC footer that a closed run has and a live or crashed one lacks, so
one live run fails the whole glob. Here closed local files go to ``scan_ipc`` (memory-mapped, lazy, with
projection and predicate pushdown), and only footerless files are read through lossfmt's torn-tail-tolerant
reader (a snapshot of their complete events). Polars is imported only when this is called.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, cast

import pyarrow as pa

from lossfmt import _sources
from lossfmt import schema as s
from lossfmt.dataset import DATASET_SCHEMA, dataset, footer_schema, read_footerless
from lossfmt.reader import read

if TYPE_CHECKING:
    import polars

__all__ = ["scan_polars"]

_LIVE_POLICIES = ("read", "skip", "error")
_PATH = "__lossfmt_path"


def scan_polars(source: _sources.Source, *, live: str = "read", verify: bool = True) -> polars.LazyFrame:
    """A Polars ``LazyFrame`` over every run of `source` (a directory, glob, path, URL or list, as
    `lossfmt.read` takes), with a leading ``run`` column named as `lossfmt.read` names runs.

    Closed local runs are scanned lazily by Polars itself; live or crashed runs (no footer) contribute their
    complete events as of this call (`live="read"`, the default), are left out (``"skip"``) or raise
    LossFormatError (``"error"``). Runs at URLs are scanned through ``lossfmt.dataset``. ``tag`` and
    ``reduction`` are Categorical, ``wall_time`` is ``Datetime("us", "UTC")``. `verify` (default) reads
    each file once now to check its checksums, as `lossfmt.dataset` does: Polars does not know them.
    """
    try:
        import polars as pl
    except ImportError:
        raise ImportError(
            "lossfmt.scan_polars needs polars, which is not installed: pip install polars"
        ) from None
    if live not in _LIVE_POLICIES:
        raise ValueError(f"live must be one of {_LIVE_POLICIES}, not {live!r}")
    paths, _ = _sources.expand(source)
    names: dict[str, str] = {}
    snapshots: dict[str, pa.Table] = {}
    for path in paths:
        file_schema = footer_schema(path, verify=verify)
        if file_schema is None or not _sources.utf8(path):  # (a name Polars cannot open: read by lossfmt)
            if file_schema is None and not read_footerless(
                path, live, "use lossfmt.scan_polars(..., live='read')"
            ):
                continue
            snapshots[path] = read(path, verify=verify)
            file_schema = snapshots[path].schema
        names[path] = s.run_info(file_schema).get("run") or Path(_sources._local_form(path)).stem
    labels = dict(zip(names, _sources.run_labels(list(names), list(names.values())), strict=True))
    order = [s.RUN, *s.COLUMNS]
    frames: list[pl.LazyFrame] = []
    local = [p for p in labels if p not in snapshots and not _sources.is_url(p)]
    if local:
        # The paths are files already: a '[' or '*' in a run's name is no glob, a directory no hive key.
        frame = pl.scan_ipc(local, glob=False, hive_partitioning=False, include_file_paths=_PATH)
        run = pl.col(_PATH).replace_strict({p: labels[p] for p in local}, return_dtype=pl.String)
        frames.append(frame.with_columns(run.alias(s.RUN)).select(order))
    remote = [p for p in labels if p not in snapshots and _sources.is_url(p)]
    if remote:  # dataset() labels these among themselves: map to the labels among all runs
        own = _sources.run_labels(remote, [names[p] for p in remote])
        run = pl.col(s.RUN).replace_strict(
            dict(zip(own, [labels[p] for p in remote], strict=True)), return_dtype=pl.String
        )
        remote_runs = dataset(remote, verify=False)  # (verified above)
        frames.append(pl.scan_pyarrow_dataset(remote_runs).with_columns(run).select(order))
    # pl.from_arrow is typed DataFrame | Series for every input; a Table always gives a DataFrame
    for path, table in snapshots.items():
        events = table.select(list(s.COLUMNS)).replace_schema_metadata(None)
        snapshot = cast("polars.DataFrame", pl.from_arrow(events))
        frames.append(
            snapshot.lazy().with_columns(pl.lit(labels[path], pl.String).alias(s.RUN)).select(order)
        )
    if not frames:
        return cast("polars.DataFrame", pl.from_arrow(DATASET_SCHEMA.empty_table())).lazy()
    return pl.concat(frames, how="vertical")
