"""Per-item normalization and bucketing (per epoch or per N steps) of events, with the parsing of those
choices. Private: `lossfmt.transforms` re-exports every public name here."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pyarrow as pa

from lossfmt import _arrow, schema
from lossfmt._series import _is_sum, _numpy, _replace, _require, _Series, _stable_argsort

PER_ITEM = "per-item"

Per = Literal["epoch"] | int


def parse_per(per: str | int | None) -> Per | None:
    """Validate a bucketing choice: "epoch", a positive number of steps (int or digit string, as the CLI
    passes it), or None (no bucketing). Returns "epoch", an int, or None."""
    if per is None:
        return None
    if isinstance(per, str):
        text = per.strip().lower()
        if text == "epoch":
            return "epoch"
        if text.isdecimal() and 1 <= int(text) <= _MAX_PER:
            return int(text)
    elif isinstance(per, (int, np.integer)) and not isinstance(per, bool) and 1 <= per <= _MAX_PER:
        return int(per)
    raise ValueError(
        f"bad per {per!r}: expected 'epoch' or a whole number of steps from 1 to {_MAX_PER} (e.g. per=100)"
    )


_MAX_PER = 2**63 - 1  # steps are int64


def parse_normalize(normalize: str | None) -> str | None:
    """Validate a normalization choice: None (values as logged) or "per-item" (per-item means)."""
    if normalize is None:
        return None
    if isinstance(normalize, str) and normalize.strip().lower() == PER_ITEM:
        return PER_ITEM
    raise ValueError(f"bad normalize {normalize!r}: expected 'per-item' or None")


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


@np.errstate(invalid="ignore", over="ignore")  # non-finite values are data here: they make NaN/inf buckets
def bucket(table: pa.Table, per: Per, *, normalize: str | None = None) -> pa.Table:
    """Aggregate events per (run, tag, bucket); a bucket is an epoch (per="epoch") or `per` steps
    (bucket = step // per). One row per bucket, series in the table's order of runs and tags, buckets
    ascending within a series, with columns [run], tag, step (the bucket's largest step), epoch (its latest
    epoch, or null), value, count (sum of counts), events, min, max, std (population std of the events'
    values, weighted by count with normalize="per-item": the spread for a shaded band), wall_time (latest).

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
    table, codes, key = _keys(table, series.codes, per_)
    b = _Buckets(table, codes, series.size, key)
    value = b.column(schema.VALUE, np.float64)
    count = b.column(schema.COUNT, np.int64)
    count_sum = b.reduce(np.add, count)
    if count.size and int(count.max()) > np.iinfo(np.int64).max // int(b.events.max()):  # it may wrap around
        past = b.reduce(np.add, count.astype(np.float64)) >= 2.0**63
        if past.any():
            raise ValueError(
                f"the counts of a bucket sum past the largest int64 ({int(count.max()):,} per event)"
            )
    per_item, total = _per_item(table, norm, b.order, value, count)
    events = b.events
    bucket_mean = b.reduce(np.add, per_item) / events  # mean of the events' (per-item) values
    center, weights = bucket_mean, events
    if norm == PER_ITEM:  # every item weighs the same: the spread around the per-item mean, by count
        center, weights = b.reduce(np.add, total) / count_sum, count_sum
    deviation = per_item - np.repeat(center, events)
    squares = deviation * deviation * count if norm == PER_ITEM else deviation * deviation
    std = np.sqrt(b.reduce(np.add, squares) / weights)
    low, high = b.reduce(np.fmin, per_item), b.reduce(np.fmax, per_item)
    std[(low == high) & np.isfinite(std)] = 0.0  # one value (or equal ones): no rounding residue of the mean
    wall_time = table.column(schema.WALL_TIME)
    out = {}
    if series.has_run:
        out[schema.RUN] = series.run_column(codes[b.first])
    out[schema.TAG] = series.tag_column(codes[b.first])
    out[schema.STEP] = _arrow.array(b.reduce(np.maximum, b.column(schema.STEP, np.int64)), pa.int64())
    out[schema.EPOCH] = _key_epoch(b) if per_ == "epoch" else _latest_epoch(b)
    out[schema.VALUE] = _arrow.array(center, pa.float64())
    out[schema.COUNT] = _arrow.array(count_sum, pa.int64())
    out["events"] = _arrow.array(events, pa.int64())
    out["min"] = _arrow.array(low, pa.float64())
    out["max"] = _arrow.array(high, pa.float64())
    out["std"] = _arrow.array(std, pa.float64())
    wall_us = _arrow.to_numpy(wall_time).view(np.int64)
    wall_us = wall_us if b.order is None else wall_us[b.order]
    out[schema.WALL_TIME] = _arrow.array(b.reduce(np.maximum, wall_us), pa.int64()).cast(wall_time.type)
    return pa.table(out)


def _keys(table: pa.Table, codes: np.ndarray, per: Per) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    """The rows that take part (per="epoch": those with an epoch), their series codes and bucket keys."""
    if per != "epoch":
        return table, codes, _numpy(table, schema.STEP, np.int64) // per
    epoch_valid = table.column(schema.EPOCH).is_valid()
    if table.num_rows and table.column(schema.EPOCH).null_count == table.num_rows:
        raise ValueError("per='epoch': no event has an epoch; log epoch=... with add() or use per=N steps")
    table = table.filter(epoch_valid)
    codes = codes[_arrow.to_numpy(epoch_valid)]
    return table, codes, _numpy(table, schema.EPOCH, np.int64)


class _Buckets:
    """The rows of a table in (series, bucket key) order: `order` (None: already in it), each bucket's
    `starts` in that order, its first row in the table and its number of events; columns and reductions
    per bucket."""

    def __init__(self, table: pa.Table, codes: np.ndarray, size: int, key: np.ndarray) -> None:
        self.table, self.key = table, key
        self.order, self.starts = _sorted_groups(codes, size, key)
        self.events = np.diff(np.append(self.starts, key.size))
        self.first = self.starts if self.order is None else self.order[self.starts]

    def column(self, name: str, dtype: type[np.generic]) -> np.ndarray:
        """A column in bucket order."""
        values = _numpy(self.table, name, dtype)
        return values if self.order is None else values[self.order]

    def reduce(self, ufunc: np.ufunc, values: np.ndarray) -> np.ndarray:
        """`ufunc` over each bucket of `values` (in bucket order)."""
        return ufunc.reduceat(values, self.starts) if self.key.size else values[:0]


def _per_item(
    table: pa.Table, norm: str | None, order: np.ndarray | None, value: np.ndarray, count: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each event's value for the bucket's statistics (per item with normalize="per-item") and its total
    (value times count; a sum-reduced value already is one), in bucket order."""
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
    return per_item, total


def _key_epoch(b: _Buckets) -> pa.Array[Any]:
    """per="epoch": each bucket's epoch is its key."""
    return _arrow.array(b.key[b.first], pa.int64())


def _latest_epoch(b: _Buckets) -> pa.Array[Any]:
    """Each bucket's latest epoch among its events that have one (null when none has)."""
    epoch_col = b.table.column(schema.EPOCH)
    if epoch_col.null_count == 0:
        return _arrow.array(b.reduce(np.maximum, b.column(schema.EPOCH, np.int64)), pa.int64())
    valid = _arrow.to_numpy(epoch_col.is_valid())
    epoch = np.where(valid, _arrow.to_numpy(epoch_col, fill=0), np.iinfo(np.int64).min)
    if b.order is not None:
        valid, epoch = valid[b.order], epoch[b.order]
    has_epoch = b.reduce(np.add, valid.astype(np.int64)) > 0
    return _arrow.array(b.reduce(np.maximum, epoch), pa.int64(), mask=~has_epoch)


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
