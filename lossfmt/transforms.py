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

from typing import Any, Literal, cast

import numpy as np
import pyarrow as pa

from lossfmt import _arrow, schema
from lossfmt._averages import ema, moving_average
from lossfmt._decimate import all_finite, decimate
from lossfmt._smooth import DEFAULT_SMOOTH, Smoother, SmoothState, parse_smooth
from lossfmt._sources import select_tags
from lossfmt._step_ema import step_ema

# Arrow <-> numpy through buffers: `pa.array()` and `.to_numpy()` import pandas on first use in pyarrow 26
# (half a second of every lossview command). Public here so the viewer needs no private name.
to_arrow = _arrow.array
to_numpy = _arrow.to_numpy

PER_ITEM = "per-item"

Per = Literal["epoch"] | int

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
    "parse_normalize",
    "parse_per",
    "parse_smooth",
    "select_tags",
    "series",
    "smooth_table",
    "step_ema",
    "to_arrow",
    "to_numpy",
]

# --- parsing and validation ---------------------------------------------------------------------------------


def parse_per(per: str | int | None) -> Per | None:
    """Validate a bucketing choice: "epoch", a positive number of steps (int or digit string, as the CLI
    passes it), or None (no bucketing). Returns "epoch", an int, or None."""
    if per is None:
        return None
    if isinstance(per, str):
        text = per.strip().lower()
        if text == "epoch":
            return "epoch"
        if text.isdecimal() and int(text) >= 1:
            return int(text)
    elif isinstance(per, (int, np.integer)) and not isinstance(per, bool) and per >= 1:
        return int(per)
    raise ValueError(f"bad per {per!r}: expected 'epoch' or a whole number of steps >= 1 (e.g. per=100)")


def parse_normalize(normalize: str | None) -> str | None:
    """Validate a normalization choice: None (values as logged) or "per-item" (per-item means)."""
    if normalize is None:
        return None
    if isinstance(normalize, str) and normalize.strip().lower() == PER_ITEM:
        return PER_ITEM
    raise ValueError(f"bad normalize {normalize!r}: expected 'per-item' or None")


# --- series (run, tag) helpers ------------------------------------------------------------------------------


def _require(table: pa.Table, *names: str) -> None:
    missing = [name for name in names if name not in table.column_names]
    if missing:
        listed = ", ".join(repr(m) for m in missing)
        raise ValueError(f"table has no {listed} column (expected events as lossfmt.read returns them)")


def _codes(column: pa.ChunkedArray[Any]) -> tuple[np.ndarray, list[Any]]:
    """Integer code per row and the distinct labels in dictionary order, for a dictionary or plain column."""
    if pa.types.is_dictionary(column.type):
        column = column.unify_dictionaries()  # one dictionary for all chunks, so indices agree
    arr = column.combine_chunks()
    if not pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_encode()
    encoded = cast("pa.DictionaryArray[Any, Any]", arr)  # dictionary-encoded either way by now
    labels = encoded.dictionary.to_pylist()
    indices = _arrow.to_numpy(encoded.indices).astype(np.int64)
    distinct = list(dict.fromkeys(labels))
    if len(distinct) == len(labels):
        return indices, labels
    position = {label: i for i, label in enumerate(distinct)}  # a dictionary may repeat a label
    return np.array([position[label] for label in labels], dtype=np.int64)[indices], distinct


class _Series:
    """Rows grouped by (run, tag): a code per row, plus each code's run and tag labels."""

    def __init__(self, table: pa.Table) -> None:
        _require(table, schema.TAG)
        tag_codes, self.tags = _codes(table.column(schema.TAG))
        if schema.RUN in table.column_names:
            run_codes, self.runs = _codes(table.column(schema.RUN))
        else:
            run_codes, self.runs = np.zeros(table.num_rows, np.int64), [None]
        self.n_tags = max(1, len(self.tags))
        self.codes = run_codes * self.n_tags + tag_codes if len(self.runs) > 1 else tag_codes
        self.size = len(self.runs) * self.n_tags
        self.has_run = schema.RUN in table.column_names

    def groups(self) -> list[np.ndarray]:
        """Row indices of each non-empty series, each in file order."""
        return _group_rows(self.codes, self.size)

    def run_column(self, codes: np.ndarray) -> pa.Array[Any]:
        return _arrow.strings(self.runs).take(_arrow.array(codes // self.n_tags, pa.int64()))

    def tag_column(self, codes: np.ndarray) -> pa.DictionaryArray[Any, Any]:
        """Tag labels for `codes`, dictionary-encoded like the format's tag column."""
        indices = _arrow.array(codes % self.n_tags, pa.int32())
        return pa.DictionaryArray.from_arrays(indices, _arrow.strings(self.tags))


def series(table: pa.Table) -> list[tuple[str | None, str, np.ndarray]]:
    """(run, tag, row indices) of each non-empty (run, tag) series, rows in file order; run is None when
    the table has no `run` column. The grouping that smoothing and bucketing use, for callers that draw."""
    groups = _Series(table)
    out = []
    for rows in groups.groups():
        code = int(groups.codes[rows[0]])
        out.append((groups.runs[code // groups.n_tags], groups.tags[code % groups.n_tags], rows))
    return out


def _stable_argsort(codes: np.ndarray, size: int) -> np.ndarray | None:
    """Row order grouping equal codes (0 <= code < size), file order within a group; None when the rows
    already are in that order (the common case of one series, or of sorted buckets)."""
    if size == 1 or bool(np.all(codes[1:] >= codes[:-1])):
        return None
    if size <= 8:  # a few series (tags): one scan per code beats any sort
        return np.concatenate([np.flatnonzero(codes == code) for code in range(size)])
    keys = codes.astype(np.uint16) if size <= 1 << 16 else codes  # numpy radix-sorts 16-bit keys
    return np.argsort(keys, kind="stable")


def _group_rows(codes: np.ndarray, size: int) -> list[np.ndarray]:
    """Row indices of each non-empty group, each in file order."""
    if codes.size == 0:
        return []
    order = _stable_argsort(codes, size)
    rows = np.arange(codes.size) if order is None else order
    bounds = np.cumsum(np.bincount(codes, minlength=size))[:-1]
    return [group for group in np.split(rows, bounds) if group.size]


def _numpy(table: pa.Table, name: str, dtype: type[np.generic]) -> np.ndarray:
    return _arrow.to_numpy(table.column(name)).astype(dtype, copy=False)


def _is_sum(table: pa.Table) -> np.ndarray:
    """True for each sum-reduced event."""
    codes, labels = _codes(table.column(schema.REDUCTION))
    unknown = sorted(set(labels) - set(schema.REDUCTIONS), key=str)
    if unknown:
        raise ValueError(f"unknown reduction {unknown[0]!r}: expected one of {schema.REDUCTIONS}")
    if schema.SUM not in labels:
        return np.zeros(table.num_rows, dtype=bool)
    is_sum: np.ndarray = codes == labels.index(schema.SUM)
    return is_sum


# --- per-item normalization and bucketing -------------------------------------------------------------------


def normalize_events(table: pa.Table) -> pa.Table:
    """Make every event's value a per-item mean: a sum-reduced value becomes value/count, a mean-reduced one
    is kept. Every reduction becomes "mean", so normalizing again, or bucketing with normalize="per-item",
    stays correct."""
    _require(table, schema.VALUE, schema.COUNT, schema.REDUCTION)
    is_sum = _is_sum(table)
    if not is_sum.any():
        return table
    value = _numpy(table, schema.VALUE, np.float64)
    count = _numpy(table, schema.COUNT, np.float64)
    per_item = np.where(is_sum, value / count, value)
    reduction_type = table.schema.field(schema.REDUCTION).type
    mean = pa.DictionaryArray.from_arrays(
        _arrow.array(np.zeros(table.num_rows, dtype=np.int8)), _arrow.strings([schema.MEAN])
    )
    table = _replace(table, schema.VALUE, _arrow.array(per_item, pa.float64()))
    return _replace(table, schema.REDUCTION, mean.cast(reduction_type))


def _replace(table: pa.Table, name: str, array: pa.Array[Any]) -> pa.Table:
    index = table.schema.get_field_index(name)
    return table.set_column(index, table.schema.field(index).with_type(array.type), array)


@np.errstate(invalid="ignore", over="ignore")  # non-finite values are data here: they make NaN/inf buckets
def bucket(table: pa.Table, per: Per, *, normalize: str | None = None) -> pa.Table:
    """Aggregate events per (run, tag, bucket); a bucket is an epoch (per="epoch") or `per` steps
    (bucket = step // per). One row per bucket, series in the table's order of runs and tags, buckets
    ascending within a series, with columns [run], tag, step (the bucket's largest step), epoch (its latest
    epoch, or null), value, count (sum of counts), events, min, max, std (population std of the events'
    values: the spread for a shaded band), wall_time (latest).

    value is the mean of the events' values, or with normalize="per-item" the mean per item whatever the
    batch sizes: sum(value*count)/sum(count) for mean-reduced events, sum(value)/sum(count) for sum-reduced
    ones; min/max/std are then over the events' per-item values. A non-finite event makes value and std
    non-finite (a diverged bucket is never drawn as a normal point); min/max skip NaN.
    per="epoch" skips events logged without an epoch and raises ValueError if none has one.
    """
    per_ = parse_per(per)
    if per_ is None:
        raise ValueError("bucket needs per='epoch' or a whole number of steps >= 1")
    norm = parse_normalize(normalize)
    _require(table, schema.STEP, schema.TAG, schema.VALUE, schema.COUNT, schema.EPOCH, schema.WALL_TIME)
    series = _Series(table)  # before any filtering: series keep the order of the whole table
    codes = series.codes
    if per_ == "epoch":
        epoch_valid = table.column(schema.EPOCH).is_valid()
        if table.num_rows and table.column(schema.EPOCH).null_count == table.num_rows:
            raise ValueError(
                "per='epoch': no event has an epoch; log epoch=... with add() or use per=N steps"
            )
        table = table.filter(epoch_valid)
        codes = codes[_arrow.to_numpy(epoch_valid)]
        key = _numpy(table, schema.EPOCH, np.int64)
    else:
        key = _numpy(table, schema.STEP, np.int64) // per_

    order, starts = _sorted_groups(codes, series.size, key)
    events = np.diff(np.append(starts, key.size))

    def column(name: str, dtype: type[np.generic]) -> np.ndarray:
        values = _numpy(table, name, dtype)
        return values if order is None else values[order]

    value = column(schema.VALUE, np.float64)
    count = column(schema.COUNT, np.int64)
    count_sum = np.add.reduceat(count, starts) if key.size else count[:0]
    per_item = total = value
    if norm == PER_ITEM:
        _require(table, schema.REDUCTION)
        is_sum = _is_sum(table)
        if is_sum.any():
            is_sum = is_sum if order is None else is_sum[order]
            per_item = np.where(is_sum, value / count, value)
            total = np.where(is_sum, value, value * count)
        else:
            total = value * count

    def reduce(ufunc: np.ufunc, values: np.ndarray) -> np.ndarray:
        return ufunc.reduceat(values, starts) if key.size else values[:0]

    first = starts if order is None else order[starts]  # each bucket's first row in the table
    epoch_col = table.column(schema.EPOCH)
    if per_ == "epoch":
        epoch_max = _arrow.array(key[first], pa.int64())
    elif epoch_col.null_count == 0:
        epoch_max = _arrow.array(reduce(np.maximum, column(schema.EPOCH, np.int64)), pa.int64())
    else:  # the latest epoch among the bucket's events that have one
        valid = _arrow.to_numpy(epoch_col.is_valid())
        epoch = np.where(valid, _arrow.to_numpy(epoch_col, fill=0), np.iinfo(np.int64).min)
        if order is not None:
            valid, epoch = valid[order], epoch[order]
        has_epoch = reduce(np.add, valid.astype(np.int64)) > 0
        epoch_max = _arrow.array(reduce(np.maximum, epoch), pa.int64(), mask=~has_epoch)
    wall_time = table.column(schema.WALL_TIME)
    wall_us = _arrow.to_numpy(wall_time).view(np.int64)
    wall_us = wall_us if order is None else wall_us[order]

    bucket_mean = reduce(np.add, per_item) / events  # mean of the events' (per-item) values
    deviation = per_item - np.repeat(bucket_mean, events)
    std = np.sqrt(reduce(np.add, deviation * deviation) / events)
    out = {}
    if series.has_run:
        out[schema.RUN] = series.run_column(codes[first])
    out[schema.TAG] = series.tag_column(codes[first])
    out[schema.STEP] = _arrow.array(reduce(np.maximum, column(schema.STEP, np.int64)), pa.int64())
    out[schema.EPOCH] = epoch_max
    out[schema.VALUE] = _arrow.array(
        reduce(np.add, total) / count_sum if norm == PER_ITEM else bucket_mean, pa.float64()
    )
    out[schema.COUNT] = _arrow.array(count_sum, pa.int64())
    out["events"] = _arrow.array(events, pa.int64())
    out["min"] = _arrow.array(reduce(np.fmin, per_item), pa.float64())
    out["max"] = _arrow.array(reduce(np.fmax, per_item), pa.float64())
    out["std"] = _arrow.array(std, pa.float64())
    out[schema.WALL_TIME] = _arrow.array(reduce(np.maximum, wall_us), pa.int64()).cast(wall_time.type)
    return pa.table(out)


def _sorted_groups(codes: np.ndarray, size: int, key: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
    """Order rows by (series code, bucket key), stably, and return it (None: already in order) with the
    start of each (series, key) group in that order."""
    low = int(key.min()) if key.size else 0
    span = int(key.max()) - low + 1 if key.size else 1
    new = np.ones(key.size, dtype=bool)
    if size * span < 1 << 62:  # one integer per (series, bucket)
        combined = codes * span + (key - low) if size > 1 else key - low
        # Grouping by series alone (a radix sort of a few codes) suffices when each series' buckets come in
        # order, as they do unless a run rewound.
        order = _stable_argsort(codes, size)
        in_order = combined if order is None else combined[order]
        if not bool(np.all(in_order[1:] >= in_order[:-1])):
            order = _stable_argsort(combined, size * span)
            in_order = combined[order]
        new[1:] = in_order[1:] != in_order[:-1]
    else:
        order = np.lexsort((key, codes))  # stable
        sorted_codes, sorted_key = codes[order], key[order]
        new[1:] = (sorted_codes[1:] != sorted_codes[:-1]) | (sorted_key[1:] != sorted_key[:-1])
    return order, np.flatnonzero(new)


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
    """Drop the events a resume orphaned, as TensorBoard purges them: an event is dropped when a later event
    of the same run and tag has a strictly smaller step. Repeated steps are kept; row order is kept."""
    _require(table, schema.STEP, schema.TAG)
    if _never_decreases(table.column(schema.STEP)):  # nothing can be orphaned
        return table
    steps = _numpy(table, schema.STEP, np.int64)
    keep = np.ones(steps.size, dtype=bool)
    for rows in _Series(table).groups():
        step = steps[rows]
        later_min = np.minimum.accumulate(step[::-1])[::-1]
        keep[rows[:-1]] = step[:-1] <= later_min[1:]
    return table.filter(_arrow.array(keep))


def _never_decreases(column: pa.ChunkedArray[Any]) -> bool:
    """True if the column's values never decrease, checked chunk by chunk (no concatenated copy)."""
    last = None
    for chunk in column.chunks:
        values = _arrow.to_numpy(chunk)
        if not values.size:
            continue
        if (last is not None and values[0] < last) or not bool(np.all(values[1:] >= values[:-1])):
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
