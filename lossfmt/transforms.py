"""Read-time transforms shared by read_pandas and the viewer: per-item normalization, bucketing, smoothing
(TensorBoard's EMA, moving average), rewind handling, epoch positions and decimation for drawing.

Everything is vectorized with numpy / pyarrow compute so that a 10M-event run stays interactive. A "series" is
one (run, tag) pair; the `run` column is optional (present when several files were read together). Series are
processed in file order: row order is the order the events were logged.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Literal

import numpy as np
import pyarrow as pa

from lossfmt import _arrow, schema

PER_ITEM = "per-item"

Smoother = Callable[[np.ndarray], np.ndarray]
Per = Literal["epoch"] | int

# EMA chunks: within a chunk of L points the closed form scales values by weight**-j, j < L. Bounding
# weight**-L by 2**_EMA_EXP keeps every product finite for |value| <= 2**_EMA_PEAK (larger values are first
# scaled by an exact power of two), and bounding L bounds the cumulative-sum rounding error to about L ulps.
_EMA_EXP = 600
_EMA_PEAK = 400
_EMA_MAX_CHUNK = 4096


# --- parsing and validation ---------------------------------------------------------------------------------


def parse_smooth(spec: str | None) -> Smoother | None:
    """Turn a smoothing spec into a function on a 1-D float array: "ema:W" (TensorBoard's EMA, 0 <= W < 1),
    "ma:N" (trailing moving average over N points), or "none"/None (no smoothing -> None)."""
    if spec is None:
        return None
    if not isinstance(spec, str):
        raise TypeError(f"smoothing spec must be a string like 'ema:0.6', 'ma:50' or 'none', got {spec!r}")
    kind, sep, arg = spec.strip().lower().partition(":")
    if kind == "none" and not sep:
        return None
    if kind == "ema" and sep:
        try:
            weight = float(arg)
        except ValueError:
            raise ValueError(
                f"bad smoothing spec {spec!r}: EMA weight {arg!r} is not a number (e.g. ema:0.6)"
            ) from None
        _check_weight(weight, spec)
        return functools.partial(ema, weight=weight)
    if kind == "ma" and sep:
        try:
            window = int(arg)
        except ValueError:
            raise ValueError(
                f"bad smoothing spec {spec!r}: window {arg!r} is not a whole number of points (e.g. ma:50)"
            ) from None
        _check_window(window, spec)
        return functools.partial(moving_average, window=window)
    raise ValueError(
        f"bad smoothing spec {spec!r}: expected 'ema:W' with 0 <= W < 1 (e.g. ema:0.6), "
        "'ma:N' with a whole number N >= 1 (e.g. ma:50), or 'none'"
    )


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


def _check_weight(weight: float, spec: str | None = None) -> float:
    where = f"bad smoothing spec {spec!r}: " if spec is not None else ""
    if isinstance(weight, bool) or not isinstance(weight, (int, float, np.floating, np.integer)):
        raise TypeError(f"{where}EMA weight must be a number in [0, 1), got {weight!r}")
    weight = float(weight)
    if not 0.0 <= weight < 1.0:
        # TensorBoard accepts 1 but then draws every finite point at 0 (the average never moves).
        raise ValueError(
            f"{where}EMA weight must be in [0, 1), got {weight!r} (0 = no smoothing, 0.99 = heavy)"
        )
    return weight


def _check_window(window: int, spec: str | None = None) -> int:
    where = f"bad smoothing spec {spec!r}: " if spec is not None else ""
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)):
        raise TypeError(f"{where}moving-average window must be a whole number of points, got {window!r}")
    if window < 1:
        raise ValueError(f"{where}moving-average window must be >= 1, got {window!r}")
    return int(window)


def _as_1d_float(values: np.ndarray) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"expected a 1-D array of values, got shape {arr.shape}")
    return arr


# --- smoothing ----------------------------------------------------------------------------------------------


def ema(values: np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard's debiased exponential moving average (its scalar dashboard's smoothing), with its
    numbers up to float rounding. Non-finite points are returned as they are and skipped by the average, so a
    NaN does not poison later points; a series whose values all equal the first is returned unchanged, as
    TensorBoard does. `weight` in [0, 1): 0 returns the values, larger is smoother."""
    w = _check_weight(weight)
    x = _as_1d_float(values)
    if x.size == 0 or w == 0.0:
        return x.copy()
    low, high = float(x.min()), float(x.max())  # NaN if any value is: then the masked path below
    if math.isfinite(low) and math.isfinite(high):  # the common case, without a mask over the values
        return x.copy() if low == high else _ema_finite(x, w, max(high, -low))
    if bool(np.all(x == x[0])):
        return x.copy()
    finite = np.isfinite(x)
    out = x.copy()
    out[finite] = _ema_finite(x[finite], w)
    return out


def _ema_finite(x: np.ndarray, w: float, peak: float | None = None) -> np.ndarray:
    """The debiased EMA of finite values, 0 < w < 1, without a Python loop over points; `peak` is the
    largest |value| when the caller knows it.

    With last_0 = 0 and last_k = w*last_{k-1} + (1-w)*x_k, inside a chunk of L points that starts after
    carry E: last_j = (1-w) * w**j * (cumsum_i(w**-i * x_i) + w*E/(1-w)). The chunk ends obey the same
    recurrence with weight w**L, solved first by a doubling scan over the chunks. Smoothed value k (1-based)
    is last_k / (1 - w**k), TensorBoard's debiasing.
    """
    n = x.size
    if n == 0:
        return x.copy()
    log_w = math.log(w)
    length = max(1, min(n, _EMA_MAX_CHUNK, int(_EMA_EXP * math.log(2.0) / -log_w)))
    chunks, whole = -(-n // length), n // length
    if peak is None:
        peak = max(float(x.max()), -float(x.min()))
    exponent = math.frexp(peak)[1] if peak > 2.0**_EMA_PEAK else 0
    if exponent:  # an exact power of two keeps huge values finite once scaled by w**-j (a rare extra pass)
        x = np.ldexp(x, -exponent)
    j = np.arange(length, dtype=np.float64)
    scale = np.power(w, -j)  # applied while copying the values into the grid
    padded = np.empty(chunks * length)
    grid = padded.reshape(chunks, length)
    np.multiply(x[: whole * length].reshape(whole, length), scale, out=grid[:whole])
    if whole < chunks:
        np.multiply(x[whole * length :], scale[: n - whole * length], out=padded[whole * length : n])
        padded[n:] = 0.0

    # Each chunk's own last, without carry: (1-w) * w**(L-1-j) * x_j summed, from the scaled values (a sum,
    # not a matrix product: OpenBLAS's threads would spin on the core that the viewer's imports use).
    ends = grid.sum(axis=1)
    ends *= (1.0 - w) * w ** (length - 1.0)
    shift, factor = 1, w**length
    while shift < chunks and factor > 0.0:
        ends[shift:] += factor * ends[:-shift]  # numpy buffers the overlapping operands: old values are read
        shift, factor = shift * 2, factor * factor
    grid[1:, 0] += (w / (1.0 - w)) * ends[:-1]
    np.cumsum(grid, axis=1, out=grid)
    grid *= (1.0 - w) * np.power(w, j)

    flat = padded[:n]
    # Beyond k0 points w**k < 2**-60 and 1 - w**k rounds to 1: only the head needs dividing.
    k0 = min(n, int(64 * math.log(2.0) / -log_w) + 2)
    flat[:k0] /= 1.0 - np.power(w, np.arange(1, k0 + 1, dtype=np.float64))
    if exponent:
        np.ldexp(flat, exponent, out=flat)
    return flat


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average with the input's length: point k is the mean of the last `window` finite
    values up to k (fewer at the start). Non-finite points are returned as they are and skipped by the
    average, so they do not poison later windows. `window` 1 returns the values."""
    n_window = _check_window(window)
    x = _as_1d_float(values)
    finite = np.isfinite(x)
    if finite.all():
        return _moving_average_finite(x, n_window)
    out = x.copy()
    out[finite] = _moving_average_finite(x[finite], n_window)
    return out


def _moving_average_finite(x: np.ndarray, window: int) -> np.ndarray:
    """Window sums from prefix sums restarted every `window` points (a window spans at most two blocks: the
    suffix of one plus the prefix of the next), so a huge value never cancels badly in far-away windows."""
    n = x.size
    if n == 0 or window == 1:
        return x.copy()
    window = min(window, n)
    blocks = -(-n // window)
    grid = np.zeros(blocks * window)
    grid[:n] = x
    grid = grid.reshape(blocks, window)
    total = np.cumsum(grid, axis=1)
    suffix = np.cumsum(grid[:, ::-1], axis=1)[:, ::-1]
    total[1:, :-1] += suffix[:-1, 1:]
    flat = total.reshape(-1)[:n]
    flat[:window] /= np.arange(1, window + 1, dtype=np.float64)
    flat[window:] /= window
    return flat


# --- series (run, tag) helpers ------------------------------------------------------------------------------


def _require(table: pa.Table, *names: str) -> None:
    missing = [name for name in names if name not in table.column_names]
    if missing:
        listed = ", ".join(repr(m) for m in missing)
        raise ValueError(f"table has no {listed} column (expected events as lossfmt.read returns them)")


def _codes(column: pa.ChunkedArray) -> tuple[np.ndarray, list]:
    """Integer code per row and the distinct labels in dictionary order, for a dictionary or plain column."""
    if pa.types.is_dictionary(column.type):
        column = column.unify_dictionaries()  # one dictionary for all chunks, so indices agree
    arr = column.combine_chunks()
    if not pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_encode()
    labels = arr.dictionary.to_pylist()
    indices = _arrow.to_numpy(arr.indices).astype(np.int64)
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

    def run_column(self, codes: np.ndarray) -> pa.Array:
        return _arrow.strings(self.runs).take(_arrow.array(codes // self.n_tags, pa.int64()))

    def tag_column(self, codes: np.ndarray) -> pa.DictionaryArray:
        """Tag labels for `codes`, dictionary-encoded like the format's tag column."""
        indices = _arrow.array(codes % self.n_tags, pa.int32())
        return pa.DictionaryArray.from_arrays(indices, _arrow.strings(self.tags))


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


def _numpy(table: pa.Table, name: str, dtype: type) -> np.ndarray:
    return _arrow.to_numpy(table.column(name)).astype(dtype, copy=False)


def _is_sum(table: pa.Table) -> np.ndarray:
    """True for each sum-reduced event."""
    codes, labels = _codes(table.column(schema.REDUCTION))
    unknown = sorted(set(labels) - set(schema.REDUCTIONS), key=str)
    if unknown:
        raise ValueError(f"unknown reduction {unknown[0]!r}: expected one of {schema.REDUCTIONS}")
    if schema.SUM not in labels:
        return np.zeros(table.num_rows, dtype=bool)
    return codes == labels.index(schema.SUM)


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


def _replace(table: pa.Table, name: str, array: pa.Array) -> pa.Table:
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
        has_epoch = table.column(schema.EPOCH).is_valid()
        if table.num_rows and table.column(schema.EPOCH).null_count == table.num_rows:
            raise ValueError(
                "per='epoch': no event has an epoch; log epoch=... with add() or use per=N steps"
            )
        table = table.filter(has_epoch)
        codes = codes[_arrow.to_numpy(has_epoch)]
        key = _numpy(table, schema.EPOCH, np.int64)
    else:
        key = _numpy(table, schema.STEP, np.int64) // per_

    order, starts = _sorted_groups(codes, series.size, key)
    events = np.diff(np.append(starts, key.size))

    def column(name: str, dtype: type) -> np.ndarray:
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


def smooth_table(table: pa.Table, spec: str | None, column: str = schema.VALUE) -> pa.Table:
    """Add (or replace) a float64 `smoothed` column: `column` smoothed per (run, tag) series in file order
    with parse_smooth(spec); with spec "none"/None it is a copy of `column`."""
    smoother = parse_smooth(spec)
    _require(table, column)
    values = _numpy(table, column, np.float64)
    if smoother is None:
        smoothed = values.copy()
    else:
        smoothed = np.empty_like(values)
        for rows in _Series(table).groups():
            smoothed[rows] = smoother(values[rows])
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


def _never_decreases(column: pa.ChunkedArray) -> bool:
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
    position = epochs + (rank + 1.0) / counts[codes]
    if all_have:
        return position
    out[has_epoch] = position
    return out


# --- drawing ------------------------------------------------------------------------------------------------


def decimate(x: np.ndarray, y: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Reduce a long curve to screen resolution without losing a spike: the x range (x sorted ascending,
    finite) is cut into `bins` equal-width bins, bin i = [x0 + i*w, x0 + (i+1)*w) with w = (x[-1] - x0)/bins
    (the last one closed), and each bin keeps its lowest and highest finite y plus its first non-finite y
    (NaN or ±inf, kept so a viewer can mark where a run diverged); the first and last points are always kept.
    Returns (x, y) subsets in x order, at most 3*bins + 2 points; a short curve is returned whole."""
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ValueError(f"decimate: bins must be a whole number >= 1, got {bins!r}")
    x = np.asarray(x)
    y = _as_1d_float(y)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"decimate: x and y must be 1-D of the same length, got {x.shape} and {y.shape}")
    n = x.size
    xs = x.view(np.int64) if np.issubdtype(x.dtype, np.datetime64) else x
    if n and not (np.isfinite(xs[0]) and np.isfinite(xs[-1]) and _ascending(xs)):
        raise ValueError("decimate: x must be finite and sorted ascending (drop or sort non-finite x first)")
    if n <= 3 * bins + 2:
        return x.copy(), y.copy()

    starts = np.unique(np.concatenate(([0], np.searchsorted(xs, _bin_edges(xs, bins)))))
    keep = [0, n - 1]
    # A loop over a few thousand bins costs less than the passes a vectorized arg-min per bin would need.
    # No finiteness mask either: argmin/argmax land on a NaN or an infinity whenever a bin holds one, so
    # only such bins are searched again with their non-finite values set aside.
    for lo, hi in zip(starts.tolist(), [*starts[1:].tolist(), n], strict=True):
        part = y[lo:hi]
        low, high = int(part.argmin()), int(part.argmax())
        if math.isfinite(part[low]) and math.isfinite(part[high]):
            keep += (lo + low, lo + high)
            continue
        finite = np.isfinite(part)
        keep.append(lo + int(finite.argmin()))  # the bin's first non-finite value
        if finite.any():
            keep.append(lo + int(np.where(finite, part, np.inf).argmin()))
            keep.append(lo + int(np.where(finite, part, -np.inf).argmax()))
    index = np.unique(np.array(keep))
    return x[index], y[index]


def all_finite(values: np.ndarray) -> bool:
    """True if no value is NaN or infinite. Usually one pass and no mask as long as the values: a finite sum
    proves every value finite (a NaN or an infinity always makes the sum non-finite); only a non-finite sum
    (also finite values overflowing it) falls back to np.isfinite."""
    with np.errstate(over="ignore", invalid="ignore"):
        total = values.sum()
    return math.isfinite(total) or bool(np.isfinite(values).all())


def _ascending(x: np.ndarray) -> bool:
    """True if x never decreases (NaN compares as a decrease), compared in blocks so that the temporary
    stays small however long x is."""
    block = 1 << 20
    for start in range(0, x.size - 1, block):
        part = x[start : start + block + 1]
        if not bool(np.all(part[1:] >= part[:-1])):
            return False
    return True


def _bin_edges(x: np.ndarray, bins: int) -> np.ndarray:
    """The inner edges x0 + i*(x[-1] - x0)/bins, i = 1..bins-1, of decimate's bins, for sorted numeric x
    (integer x gets the smallest integer at or above each edge, which splits it the same way)."""
    x0, x1 = float(x[0]), float(x[-1])
    edges = x0 + (x1 - x0) * (np.arange(1, bins, dtype=np.float64) / bins)
    if np.issubdtype(x.dtype, np.integer):
        return np.ceil(edges).astype(x.dtype)
    return edges
