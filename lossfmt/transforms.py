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
    "fill_epochs",
    "first_rewind",
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
    """Drop the events a resume orphaned, as TensorBoard purges them: where a tag's step goes back (below
    a step logged before it, and not itself orphaned), every earlier event of that run and tag at that step
    or later is dropped. Steps are run-wide (`run_wide_steps`) in a run whose steps restart each epoch.
    A step logged twice in a row is kept twice; row order is kept (spec/FORMAT.md, rewinds)."""
    _require(table, schema.STEP, schema.TAG)
    if _never_decreases(table.column(schema.STEP)):  # nothing can be orphaned
        return table
    run_wide = run_wide_steps(table)
    steps = _numpy(table if run_wide is None else run_wide, schema.STEP, np.int64)
    keep = np.ones(steps.size, dtype=bool)
    for rows in _Series(table).groups():
        keep[rows] = _kept(steps[rows])
    return table.filter(_arrow.array(keep))


def first_rewind(table: pa.Table) -> tuple[str, int, int] | None:
    """Where a tag's step first goes back, in file order, read as `drop_rewound` reads steps (run-wide):
    (tag, the largest step before it, the step it goes back to); None where no step goes back."""
    _require(table, schema.STEP, schema.TAG)
    if _never_decreases(table.column(schema.STEP)):
        return None
    run_wide = run_wide_steps(table)
    steps = _numpy(table if run_wide is None else run_wide, schema.STEP, np.int64)
    groups, first = _Series(table), None
    for rows in groups.groups():
        step = steps[rows]
        back = np.flatnonzero(step[1:] < np.maximum.accumulate(step)[:-1])
        if back.size and (first is None or rows[back[0] + 1] < first[0]):
            i = back[0] + 1
            tag = groups.tags[int(groups.codes[rows[i]]) % groups.n_tags]
            first = (int(rows[i]), tag, int(step[:i].max()), int(step[i]))
    return None if first is None else first[1:]


def _kept(step: np.ndarray) -> np.ndarray:
    """Which events of one series (file order) no rewind orphans: an event is orphaned by a later smaller
    step, or by a later equal step with a larger one between them (the run went on, then back to it)."""
    kept = np.ones(step.size, dtype=bool)
    if step.size < 2:
        return kept
    after = np.minimum.accumulate(step[::-1])[::-1][1:]  # the smallest step after each event
    kept[:-1] = step[:-1] <= after
    again = np.flatnonzero(step[:-1] == after)  # nothing after is smaller, the same step comes again
    if again.size:
        seen = np.flatnonzero(np.isin(step, step[again]))  # every event at one of those steps, in order
        order = np.lexsort((seen, step[seen]))  # grouped by step, in file order within each
        grouped = step[seen][order]
        ends = np.r_[np.flatnonzero(grouped[1:] != grouped[:-1]) + 1, grouped.size]
        end = np.repeat(ends, np.diff(np.r_[0, ends]))  # each grouped position's group end
        rank = np.empty(seen.size, np.int64)
        rank[order] = np.arange(seen.size)
        at = rank[np.searchsorted(seen, again)]
        last = seen[order][end[at] - 1]  # the step's last event
        repeats = end[at] - 1 - at  # how many events at that step follow
        kept[again] = last - again == repeats  # nothing but the step itself up to its last repeat
    return kept


def run_wide_steps(table: pa.Table) -> pa.Table | None:
    """`table` with each step made run-wide in the runs whose steps restart each epoch (a loop ``for step,
    batch in enumerate(loader)`` inside an epoch loop): where the epoch goes up, in file order, the step
    never goes up, and at least once it goes back to the run's lowest step. Epoch e's steps then follow
    those of the epochs before it, offset by their largest step plus one; an event logged without an epoch
    is in the epoch of the run's event before it (after it, where its step is below that one's). None when
    no run of `table` restarts its steps (a resume, where the epoch goes back, is not a restart)."""
    if schema.EPOCH not in table.column_names or table.num_rows < 2:
        return None
    epoch_column = table.column(schema.EPOCH)
    if epoch_column.null_count == table.num_rows or _never_decreases(table.column(schema.STEP)):
        return None
    steps = _numpy(table, schema.STEP, np.int64)
    epochs = _arrow.to_numpy(epoch_column, fill=np.nan).astype(np.float64, copy=False)
    if schema.RUN not in table.column_names:  # one run: no row indices (a 10M-event run's cost)
        wide = _run_wide(steps, epochs)
        return None if wide is None else _replace(table, schema.STEP, _arrow.array(wide))
    out, changed = steps.copy(), False
    for rows in _group_by_run(table):
        wide = _run_wide(steps[rows], epochs[rows])
        if wide is not None:
            out[rows], changed = wide, True
    return _replace(table, schema.STEP, _arrow.array(out)) if changed else None


def _run_wide(steps: np.ndarray, epochs: np.ndarray) -> np.ndarray | None:
    """One run's run-wide steps (file order), or None if its steps do not restart each epoch."""
    missing = np.isnan(epochs)
    filled = epochs
    if missing.any():
        have = np.flatnonzero(~missing)
        if have.size < 2:
            return None
        filled = _fill_epochs(steps, epochs, have)
    up = np.flatnonzero(filled[1:] > filled[:-1])
    # an epoch that goes on counting is a global step; a restart goes back to the first step at least once
    if not up.size or (steps[up + 1] > steps[up]).any() or not (steps[up + 1] == steps.min()).any():
        return None
    epoch = filled.astype(np.int64)
    if not (filled[1:] < filled[:-1]).any():  # epochs in order (no resume): each epoch one stretch of rows
        starts = np.r_[0, up + 1]
        last = np.maximum.reduceat(steps, starts)
        offsets = np.r_[0, np.cumsum(last[:-1] + 1)]
        return np.asarray(steps + np.repeat(offsets, np.diff(np.r_[starts, steps.size])), np.int64)
    known, at = np.unique(epoch, return_inverse=True)
    last = np.full(known.size, np.iinfo(np.int64).min)
    np.maximum.at(last, at, steps)
    offsets = np.r_[0, np.cumsum(last[:-1] + 1)]
    return np.asarray(offsets[at] + steps, np.int64)


def fill_epochs(steps: np.ndarray, epochs: np.ndarray) -> np.ndarray:
    """Each event's epoch (float64, file order; NaN where `epochs` has none), as `run_wide_steps` fills
    those logged without one; all NaN when none has one."""
    have = np.flatnonzero(~np.isnan(epochs))
    return epochs if have.size in (0, epochs.size) else _fill_epochs(steps, epochs, have)


def _fill_epochs(steps: np.ndarray, epochs: np.ndarray, have: np.ndarray) -> np.ndarray:
    """Each event's epoch; one logged without is in the epoch of the event with one before it, unless its
    step is below that event's (the steps restarted: then it is in the epoch of the next event with one)."""
    i = np.arange(steps.size)
    before = np.searchsorted(have, i, side="right") - 1  # index into `have`, -1 if none
    after = np.minimum(np.searchsorted(have, i, side="left"), have.size - 1)
    prev, nxt = have[np.maximum(before, 0)], have[after]
    use_next = (before < 0) | (steps < steps[prev])
    filled: np.ndarray = np.where(use_next, epochs[nxt], epochs[prev])
    return filled


def _group_by_run(table: pa.Table) -> list[np.ndarray]:
    groups = _Series(table)
    codes = groups.codes // groups.n_tags
    order = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    return np.split(order, bounds)


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
