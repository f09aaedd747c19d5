"""The pending-row layout, defined once: what `add()` appends and how the flusher turns rows into a batch.

A pending row is one of two shapes:
- **packed**: `ROW.pack(step, value, time)`, 24 bytes, for an event with every option at its default and a
  float value (the common `add(step, loss)`). A bytes object is never tracked by the garbage collector, and a
  batch of them converts with one `b"".join` and a numpy structured view.
- **full**: the 7-tuple `(step, value, tag, count, epoch, reduction, time)`, for events with options or with a
  deferred (device) value that `_values.materialize` reads in the flusher.
"""

from __future__ import annotations

import functools
import operator
import struct
from itertools import islice
from operator import itemgetter
from typing import Any

import numpy as np
import pyarrow as pa

from lossfmt import _arrow, _values
from lossfmt import schema as s

__all__ = ["FULL_LEN", "ROW", "Encoder"]

ROW = struct.Struct("<qdd")  # step, value, time
#: Length of a full row; a packed row is a bytes object of ROW.size (24) bytes.
FULL_LEN = 7
_ROW_DTYPE = np.dtype([("step", "<i8"), ("value", "<f8"), ("time", "<f8")])
_STEP, _VALUE, _TIME = itemgetter(0), itemgetter(1), itemgetter(6)
_TAG, _COUNT, _EPOCH, _REDUCTION = itemgetter(2), itemgetter(3), itemgetter(4), itemgetter(5)
_NOT_NONE = functools.partial(operator.is_not, None)
_DEFAULT_TAG = s.DEFAULT_TAG
_MEAN = s.MEAN


@functools.cache
def _reduction_dictionary() -> pa.Array:
    return _arrow.strings(list(s.REDUCTIONS))


class Encoder:
    """Turns pending rows into record batches of one stream, keeping the stream's tag dictionary."""

    def __init__(self, schema: pa.Schema) -> None:
        self.schema = schema
        #: A deferred (device) value was added: batches materialize their values from now on.
        self.deferred = False
        self._tag_codes: dict[str, int] = {}
        self._tag_dictionary = _arrow.strings([])

    def batch(self, rows: list[Any], n: int) -> pa.RecordBatch:
        """A record batch of the first `n` rows (producers may append more meanwhile).

        A row is a packed plain event (`ROW`: step, value, time, every option at its default) or the
        7-tuple in column order.
        """
        try:
            packed = b"".join(islice(rows, n))
        except TypeError:  # some rows are 7-tuples
            columns = self._mixed_columns(rows, n)
        else:
            plain = np.frombuffer(packed, _ROW_DTYPE)
            columns = (
                plain["step"].copy(),
                plain["value"].copy(),
                plain["time"],
                np.full(n, self._tag_code(_DEFAULT_TAG), dtype=np.int32),
                np.ones(n, dtype=np.int64),
                pa.nulls(n, pa.int64()),
                np.zeros(n, dtype=np.int8),
            )
        steps, vals, wall, tag_index, counts, epochs, reduction_index = columns
        wall_us = np.rint(wall * 1e6).astype(np.int64)
        return pa.RecordBatch.from_arrays(
            [
                _arrow.array(steps),
                pa.DictionaryArray.from_arrays(_arrow.array(tag_index), self._tag_dictionary),
                _arrow.array(vals),
                _arrow.array(counts),
                epochs,
                _arrow.array(wall_us, s.WALL_TIME_TYPE),
                pa.DictionaryArray.from_arrays(_arrow.array(reduction_index), _reduction_dictionary()),
            ],
            schema=self.schema,
        )

    def _mixed_columns(self, rows: list[Any], n: int) -> tuple[Any, ...]:
        """Steps, values, times, tag codes, counts, epochs and reduction codes of the first `n` rows, some
        packed and some 7-tuples (the only rows that carry options or deferred values)."""
        is_full = np.fromiter(map(len, rows), np.int16, n) == 7  # a packed row has 24 bytes
        optioned = np.flatnonzero(is_full)
        plain_at = np.flatnonzero(~is_full)
        # Tuples, not lists: a collection untracks them (their rows hold no containers) instead of revisiting.
        full = tuple(map(rows.__getitem__, optioned.tolist()))
        m = len(full)
        steps = np.empty(n, dtype=np.int64)
        vals = np.empty(n, dtype=np.float64)
        wall = np.empty(n, dtype=np.float64)
        if len(plain_at):
            plain = np.frombuffer(b"".join(map(rows.__getitem__, plain_at.tolist())), _ROW_DTYPE)
            steps[plain_at], vals[plain_at], wall[plain_at] = plain["step"], plain["value"], plain["time"]
        steps[optioned] = np.fromiter(map(_STEP, full), np.int64, m)
        if self.deferred:
            vals[optioned] = _values.materialize(list(map(_VALUE, full)))
        else:
            vals[optioned] = np.fromiter(map(_VALUE, full), np.float64, m)
        wall[optioned] = np.fromiter(map(_TIME, full), np.float64, m)
        tags = list(map(_TAG, full))
        # New tags enter the dictionary in the order of their first event.
        first = {t: int(optioned[tags.index(t)]) for t in dict.fromkeys(tags) if t not in self._tag_codes}
        if m < n:
            first[_DEFAULT_TAG] = min(first.get(_DEFAULT_TAG, n), int(plain_at[0]))
        for tag in sorted(first, key=first.__getitem__):
            self._tag_code(tag)
        codes = self._tag_codes
        tag_index = np.full(n, codes[_DEFAULT_TAG] if m < n else 0, dtype=np.int32)
        if tags.count(tags[0]) == m:  # C-speed check for the common single-tag batch
            tag_index[optioned] = codes[tags[0]]
        else:
            tag_index[optioned] = np.fromiter(map(codes.__getitem__, tags), np.int32, m)
        counts = np.ones(n, dtype=np.int64)
        counts[optioned] = np.fromiter(map(_COUNT, full), np.int64, m)
        epoch_list = list(map(_EPOCH, full))
        missing = epoch_list.count(None)
        if missing == m:
            epochs = pa.nulls(n, pa.int64())
        else:
            valid = np.zeros(n, dtype=bool)
            epoch_values = np.zeros(n, dtype=np.int64)
            if missing == 0:
                valid[optioned] = True
                epoch_values[optioned] = np.fromiter(epoch_list, np.int64, m)
            else:
                valid[optioned] = np.fromiter(map(_NOT_NONE, epoch_list), bool, m)
                epoch_values[optioned] = np.fromiter((0 if e is None else e for e in epoch_list), np.int64, m)
            epochs = _arrow.array(epoch_values, pa.int64(), mask=~valid)
        reduction_index = np.zeros(n, dtype=np.int8)
        reductions = list(map(_REDUCTION, full))
        if reductions.count(_MEAN) != m:
            reduction_index[optioned] = np.fromiter(map(s.REDUCTIONS.index, reductions), np.int8, m)
        return steps, vals, wall, tag_index, counts, epochs, reduction_index

    def _tag_code(self, tag: str) -> int:
        """Index of `tag` in the live dictionary; a new tag grows it (one replacement dictionary message)."""
        code = self._tag_codes.get(tag)
        if code is None:
            code = self._tag_codes[tag] = len(self._tag_codes)
            self._tag_dictionary = _arrow.strings(list(self._tag_codes))
        return code
