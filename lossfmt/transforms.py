"""Read-time transforms shared by read_pandas and the viewer: per-item normalization, bucketing, smoothing
(the step-aware default, TensorBoard's EMA, moving average; resumable), rewind handling, epoch positions and
decimation for drawing.

Smoothing specs ("span:F", the default `DEFAULT_SMOOTH`; "steps:N"; "ema:W"; "ma:N"; "none") are described in
`parse_smooth`; `Smoother.run` with a `SmoothState` continues a growing series where it stopped.

Everything is vectorized with numpy / pyarrow compute so that a 10M-event run stays interactive. A "series" is
one (run, tag) pair; the `run` column is optional (present when several files were read together). Series are
processed in file order: row order is the order the events were logged.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from lossfmt import _arrow, schema
from lossfmt._averages import ema, moving_average
from lossfmt._bucket import PER_ITEM, bucket, normalize_events, parse_normalize, parse_per
from lossfmt._bucket import Per as Per  # the type of bucket()'s `per`
from lossfmt._decimate import _ascending, all_finite, decimate
from lossfmt._series import _numpy, _replace, _require, _Series, _stable_argsort, one_series, series
from lossfmt._smooth import DEFAULT_SMOOTH, Smoother, SmoothState, parse_smooth
from lossfmt._sources import select_tags
from lossfmt._step_ema import step_ema

# Arrow <-> numpy through buffers: `pa.array()` and `.to_numpy()` import pandas on first use in pyarrow 26
# (half a second of every lossview command). Public here so the viewer needs no private name.
to_arrow = _arrow.array
to_numpy = _arrow.to_numpy

__all__ = [
    "DEFAULT_SMOOTH",
    "PER_ITEM",
    "SmoothState",
    "Smoother",
    "all_finite",
    "bucket",
    "decimate",
    "drop_rewound",
    "ema",
    "epoch_positions",
    "moving_average",
    "normalize_events",
    "one_series",
    "parse_normalize",
    "parse_per",
    "parse_smooth",
    "run_wide_steps",
    "select_tags",
    "series",
    "smooth_table",
    "step_ema",
    "to_arrow",
    "to_numpy",
]


# --- per-series transforms ----------------------------------------------------------------------------------


def smooth_table(
    table: pa.Table, spec: str | None, column: str = schema.VALUE, *, span: float | None = None
) -> pa.Table:
    """Add (or replace) a float64 `smoothed` column: `column` smoothed per (run, tag) series in file order
    with parse_smooth(spec), over the `step` column; with spec "none"/None it is a copy of `column`. "span:F"
    takes F of `span`, by default the table's whole step range, so every series gets the same time constant
    (as in one plot)."""
    smoother = parse_smooth(spec)
    _require(table, column)
    values = _numpy(table, column, np.float64)
    if smoother is None:
        smoothed = values.copy()
    else:
        steps = _numpy(table, schema.STEP, np.int64) if schema.STEP in table.column_names else None
        if span is None and steps is not None and steps.size:
            span = float(steps.max()) - float(steps.min())
        smoothed = np.empty_like(values)
        for rows in _Series(table).groups():
            smoothed[rows] = smoother(values[rows], None if steps is None else steps[rows], span=span)
    array = _arrow.array(smoothed, pa.float64())
    if "smoothed" in table.column_names:
        return _replace(table, "smoothed", array)
    return table.append_column(pa.field("smoothed", pa.float64()), array)


def drop_rewound(table: pa.Table) -> pa.Table:
    """Drop the events a resume orphaned: an event is dropped when a later event of the same run and tag has
    a strictly smaller position, its step, or (epoch, step) where every event of the tag has an epoch (a loop
    ``for step, batch in enumerate(loader)`` restarts its steps each epoch). Repeated positions are kept,
    and so, unlike TensorBoard's purge, are the earlier events at the restart position itself (the format
    spec's rewind rule); row order is kept."""
    _require(table, schema.STEP, schema.TAG)
    if _never_decreases(table.column(schema.STEP)):  # nothing can be orphaned
        return table
    steps = _numpy(table, schema.STEP, np.int64)
    epochs = None
    if schema.EPOCH in table.column_names:
        epochs = _arrow.to_numpy(table.column(schema.EPOCH), fill=np.nan).astype(np.float64, copy=False)
    keep = np.ones(steps.size, dtype=bool)
    for rows in _Series(table).groups():
        position = steps[rows]
        if epochs is not None and not np.isnan(epoch := epochs[rows]).any():
            position = _ranks(epoch, position)
        later_min = np.minimum.accumulate(position[::-1])[::-1]
        keep[rows[:-1]] = position[:-1] <= later_min[1:]
    return table.filter(_arrow.array(keep))


def run_wide_steps(table: pa.Table) -> pa.Table | None:
    """`table` (one run's events) with each step made run-wide where its steps restart each epoch (every
    event has an epoch, and wherever the step goes down in file order the epoch goes up): epoch e's steps
    follow those of the epochs before it, offset by their largest step plus one. None for any other run."""
    if schema.EPOCH not in table.column_names or table.column(schema.EPOCH).null_count or table.num_rows < 2:
        return None
    steps = _numpy(table, schema.STEP, np.int64)
    down = np.flatnonzero(steps[1:] < steps[:-1])
    if not down.size:
        return None
    epochs = _numpy(table, schema.EPOCH, np.int64)
    if not (epochs[down + 1] > epochs[down]).all() or (np.diff(epochs) < 0).any():
        return None
    known, at = np.unique(epochs, return_inverse=True)
    last = np.full(known.size, np.iinfo(np.int64).min)
    np.maximum.at(last, at, steps)
    offsets = np.r_[0, np.cumsum(last[:-1] + 1)]
    return _replace(table, schema.STEP, _arrow.array(offsets[at] + steps))


def _ranks(epoch: np.ndarray, step: np.ndarray) -> np.ndarray:
    """Each (epoch, step) pair's rank in lexicographic order (equal pairs, equal ranks)."""
    order = np.lexsort((step, epoch))
    e, s = epoch[order], step[order]
    ranks = np.empty(step.size, np.int64)
    ranks[order] = np.cumsum(np.r_[True, (e[1:] != e[:-1]) | (s[1:] != s[:-1])])
    return ranks


def _never_decreases(column: pa.ChunkedArray[Any]) -> bool:
    """True if the column's values never decrease, checked chunk by chunk (no concatenated copy) and block
    by block (no mask as long as the column)."""
    last = None
    for chunk in column.chunks:
        values = _arrow.to_numpy(chunk)
        if not values.size:
            continue
        if (last is not None and values[0] < last) or not _ascending(values):
            return False
        last = values[-1]
    return True


def epoch_positions(table: pa.Table) -> np.ndarray:
    """A fractional epoch for each event, for an epoch x axis: within a (run, tag) series the k-th of the n
    events logged with epoch e (file order, k = 1..n) sits at e + k/n. An epoch's last event, and so a
    once-per-epoch event such as a validation loss, sits at e + 1 where that epoch ends, so a per-step train
    curve and a per-epoch validation curve line up. Events without an epoch get NaN."""
    _require(table, schema.TAG, schema.EPOCH)
    epoch_col = table.column(schema.EPOCH)
    has_epoch = _arrow.to_numpy(epoch_col.is_valid())
    out = np.full(table.num_rows, np.nan)
    if not has_epoch.any():
        return out
    series = _Series(table)
    epochs = _arrow.to_numpy(epoch_col, fill=0).astype(np.int64, copy=False)
    all_have = bool(has_epoch.all())
    series_codes = series.codes if all_have else series.codes[has_epoch]
    if not all_have:
        epochs = epochs[has_epoch]
    low = int(epochs.min())
    span = int(epochs.max()) - low + 1
    if series.size * span <= 1 << 20:  # the usual case: a small dense (series, epoch) key
        codes = series_codes * span + (epochs - low)
        order = _stable_argsort(codes, series.size * span)
        counts = np.bincount(codes, minlength=series.size * span)
    else:
        order = np.lexsort((epochs, series_codes))  # stable
        new = np.ones(order.size, dtype=bool)
        new[1:] = (np.diff(series_codes[order]) != 0) | (np.diff(epochs[order]) != 0)
        codes = np.empty(order.size, dtype=np.int64)
        codes[order] = np.cumsum(new) - 1
        counts = np.diff(np.append(np.flatnonzero(new), order.size))
    starts = np.cumsum(counts) - counts
    if order is None:
        rank = np.arange(codes.size) - starts[codes]
    else:
        rank = np.empty(codes.size, dtype=np.int64)
        rank[order] = np.arange(codes.size) - starts[codes[order]]
    position: np.ndarray = epochs + (rank + 1.0) / counts[codes]
    if all_have:
        return position
    out[has_epoch] = position
    return out
