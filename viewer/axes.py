"""x positions that are a function of an event's place in its run, the same for every tag of the run.

A tag's own counts or its own events per epoch would put two tags logged at one step at different x (a
validation loss logged once per epoch would sit at the epoch's end, the train loss at its start). So:

- a bucket (``--per``) is drawn at the run's bucket end: the largest step any of the run's tags logged in it;
- ``--x items`` is the run's items seen by that step: the cumulative count of the run's events of one
  tag, whatever ``--tag`` draws: the one with the most events (the training loss, logged every step; a
  validation loss logged now and then with ``count=len(val_set)`` has more items but counts no training),
  then the most items, then the first by name; at its last event at or before the step (0 before its
  first);
- ``--x epoch`` places step s of epoch e at e + k/n, where the run logged n distinct steps with epoch e
  (any tag) and s is the k-th of them: an epoch's last step sits at e + 1, where the epoch ends.
"""

from __future__ import annotations

import math
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from lossfmt import transforms
from lossfmt.transforms import to_numpy

if TYPE_CHECKING:
    from lossview.view import Curve


def _column(table: pa.Table, name: str, dtype: type) -> np.ndarray:
    return np.asarray(to_numpy(table.column(name), fill=math.nan), dtype=dtype)


class _Ranks:
    """Integers 0..size-1 ordered as a column's values are, so that a pair's key (first * size + second)
    fits int64: offsets from the least value, or ranks among the distinct values when those span more
    than 2**31 (steps far apart)."""

    def __init__(self, values: np.ndarray) -> None:
        self.lo = int(values.min())
        span = int(values.max()) - self.lo + 1
        self.distinct: np.ndarray | None = None
        if span > 1 << 31:
            self.distinct = _distinct(np.sort(values))
        self.size = span if self.distinct is None else len(self.distinct)

    def rank(self, v: np.ndarray) -> np.ndarray:
        """The ranks of ``v``, values of the column (anything else: see ``known``); ``v`` itself when they
        are (steps and epochs counted from 0: no copy of 10M of them)."""
        if self.distinct is not None:
            return np.searchsorted(self.distinct, v)
        return np.subtract(v, self.lo) if self.lo else v

    def known(self, v: np.ndarray, r: np.ndarray) -> np.ndarray:
        """Which of ``v`` (ranked ``r``) the column could hold: in its range, or among its values."""
        if self.distinct is None:
            return (r >= 0) & (r < self.size)
        logged: np.ndarray = self.distinct[np.minimum(r, self.size - 1)] == v
        return logged

    def value(self, r: np.ndarray) -> np.ndarray:
        """The values of ranks ``r``."""
        return r + self.lo if self.distinct is None else self.distinct[r]


def _distinct(ordered: np.ndarray) -> np.ndarray:
    """The distinct values of an ascending array (numpy 2's np.unique hashes: 10x slower on 10M steps)."""
    return ordered[np.r_[True, ordered[1:] != ordered[:-1]]] if len(ordered) else ordered


def _positions(pair_epoch: np.ndarray) -> np.ndarray:
    """e + k/n for the k-th (from 1) of the n pairs of each epoch e, the pairs' epochs in ascending order."""
    starts = np.flatnonzero(np.r_[True, pair_epoch[1:] != pair_epoch[:-1]])
    counts = np.diff(np.r_[starts, len(pair_epoch)])
    out = np.arange(1.0, len(pair_epoch) + 1.0)
    out -= np.repeat(starts.astype(np.float64), counts)
    out /= np.repeat(counts.astype(np.float64), counts)
    out += pair_epoch
    return out


class RunAxis:
    """The x positions of one run: ``events`` its (tag-selected, rewind-dropped) events, ``points`` the
    rows drawn from them (the events themselves, or their buckets with ``per``)."""

    def __init__(
        self, events: pa.Table, points: pa.Table, per: str | int | None, counted: pa.Table | None = None
    ) -> None:
        self.events, self.points, self.per = events, points, transforms.parse_per(per)
        #: The run's events of every tag (``--x items`` counts the training loss whatever --tag draws).
        self.counted = events if counted is None else counted
        self._ends: tuple[np.ndarray, np.ndarray] | None = None
        self._rows: dict[int, dict[str, np.ndarray | None]] = {}  # by id() of events or counted

    def _key(self, table: pa.Table) -> np.ndarray:
        if self.per == "epoch":
            return _column(table, "epoch", np.int64)
        assert isinstance(self.per, int)  # keys exist only when bucketed: by epoch (above) or by steps
        return _column(table, "step", np.int64) // self.per

    def steps(self, sub: pa.Table) -> np.ndarray:
        """Where each row of ``sub`` (a tag's points) sits as a step: its step, or its run's bucket end."""
        if self.per is None:
            return _column(sub, "step", np.int64)
        if self._ends is None:
            keys, inverse = np.unique(self._key(self.points), return_inverse=True)
            ends = np.full(len(keys), np.iinfo(np.int64).min)
            np.maximum.at(ends, inverse.ravel(), _column(self.points, "step", np.int64))
            self._ends = (keys, ends)
        keys, ends = self._ends
        return ends[np.searchsorted(keys, self._key(sub))]

    def _tag_rows(self, table: pa.Table | None = None) -> dict[str, np.ndarray | None]:
        """Each tag's rows (file order) of ``table`` (the events by default), from the tag dictionary's
        codes: no string per event (a 10M-event run's tags as Python strings cost seconds). None: every
        event is of that one tag."""
        table = self.events if table is None else table
        cached = self._rows.get(id(table))
        if cached is None:
            one = transforms.one_series(table)
            cached = {one[1]: None} if one else {tag: rows for _, tag, rows in transforms.series(table)}
            self._rows[id(table)] = cached
        return cached

    def _of(self, tag: str) -> np.ndarray:
        """A mask of the events of `tag`."""
        rows = self._tag_rows().get(tag, np.empty(0, np.int64))
        if rows is None:
            return np.ones(self.events.num_rows, bool)
        mask = np.zeros(self.events.num_rows, bool)
        mask[rows] = True
        return mask

    def nonfinite_steps(self, tag: str, steps: np.ndarray, bucket: np.ndarray | None) -> np.ndarray:
        """Per point of a bucketed curve of ``tag`` (its ``steps``, and epochs ``bucket`` with per="epoch"),
        the step of the bucket's first non-finite event (else the point's step): a marker names where the
        run diverged, not where its bucket ends."""
        bad = self._of(tag) & ~np.isfinite(_column(self.events, "value", np.float64))
        step = _column(self.events, "step", np.int64)[bad]
        if self.per == "epoch":
            assert bucket is not None  # a curve bucketed by epoch carries its epochs
            key, keys = _column(self.events, "epoch", np.float64)[bad], bucket
        else:
            assert isinstance(self.per, int)  # only bucketed curves are asked (by epoch above, or by steps)
            key, keys = step // self.per, steps // self.per
        first: dict[int, int] = {}
        for k, s in zip(key.tolist(), step.tolist(), strict=True):
            if k == k:  # an event without an epoch is in no epoch bucket
                first.setdefault(int(k), s)
        return np.array([first.get(int(k), s) for k, s in zip(keys, steps.tolist(), strict=True)], np.int64)

    def items(self, steps: np.ndarray) -> np.ndarray:
        """The run's items seen by each of ``steps`` (float64)."""
        count = _column(self.counted, "count", np.float64)
        step = _column(self.counted, "step", np.int64)
        rows = self._tag_rows(self.counted)
        if not rows:
            return np.zeros(len(steps))

        # The tag with the most events, then items, then the first by name (whatever the file order).
        def rank(t: str) -> tuple[int, float, str]:
            mine = count if rows[t] is None else count[rows[t]]
            return (-len(mine), -float(mine.sum()), t)

        ref = min(rows, key=rank)
        if rows[ref] is not None:
            step, count = step[rows[ref]], count[rows[ref]]
        rising = bool(np.all(step[1:] > step[:-1]))  # the usual run: one event a step, in step order
        order = None if rising else np.argsort(step, kind="stable")
        seen = np.cumsum(count if order is None else count[order])
        if rising and len(steps) == len(step) and np.array_equal(steps, step):  # the tag's own steps
            return seen
        at = np.searchsorted(step if order is None else step[order], steps, side="right") - 1
        return np.where(at >= 0, seen[np.maximum(at, 0)], 0.0)

    def epochs(self, epoch: np.ndarray, steps: np.ndarray) -> np.ndarray:
        """The fractional epoch of each (epoch, step); NaN where the epoch is missing (NaN) or the run never
        logged that pair."""
        out = np.full(len(steps), np.nan)
        q = np.isfinite(epoch)
        if self._epoch_pairs is None or not q.any():
            return out
        pairs, position, epochs, steps_ = self._epoch_pairs
        every = bool(q.all())
        qe, qs = (epoch if every else epoch[q]).astype(np.int64), steps if every else steps[q]
        er, sr = epochs.rank(qe), steps_.rank(qs)
        qk = er * steps_.size
        qk += sr
        known = epochs.known(qe, er) & steps_.known(qs, sr)
        if np.array_equal(qk, pairs):  # a tag logged at each of the run's pairs (the training loss)
            out[q] = np.where(known, position, np.nan)
            return out
        at = np.minimum(np.searchsorted(pairs, qk), len(pairs) - 1)
        out[q] = np.where(known & (pairs[at] == qk), position[at], np.nan)
        return out

    @cached_property
    def _epoch_pairs(self) -> tuple[np.ndarray, np.ndarray, _Ranks, _Ranks] | None:
        """The run's distinct (epoch, step) pairs as ascending keys (epoch rank * steps + step rank), each
        pair's fractional epoch, and the ranks of epochs and steps (computed once: every tag of the run
        asks). Sorted only when the events are out of order, without np.unique (50 s on 10M events)."""
        ev_s = _column(self.events, "step", np.int64)
        if self.events.column("epoch").null_count:  # the events with an epoch
            ev_epoch = _column(self.events, "epoch", np.float64)
            ok = np.isfinite(ev_epoch)
            ev_e, ev_s = ev_epoch[ok].astype(np.int64), ev_s[ok]
        else:
            ev_e = _column(self.events, "epoch", np.int64)
        if not len(ev_s):
            return None
        epochs, steps = _Ranks(ev_e), _Ranks(ev_s)
        keys = epochs.rank(ev_e) * steps.size
        keys += steps.rank(ev_s)  # in place: 10M events take 80 MB an array
        if _ascending(keys):  # the usual run: no sort, and the pairs' epochs are their events'
            new = keys[1:] != keys[:-1]
            if not new.all():  # the same pair twice (two tags logged at one step): keep the first
                keep = np.r_[True, new]
                keys, ev_e = keys[keep], ev_e[keep]
            pairs, pair_epoch = keys, ev_e
        else:
            pairs = _distinct(np.sort(keys))
            pair_epoch = epochs.value(pairs // steps.size)
        return pairs, _positions(pair_epoch), epochs, steps

    def epoch_of(self, steps: np.ndarray) -> np.ndarray:
        """The epoch the run was in at each step (of its last event at or before it with an epoch)."""
        ev_epoch = _column(self.events, "epoch", np.float64)
        ok = np.isfinite(ev_epoch)
        if not ok.any():  # a run logged without epochs has no place on an epoch axis
            return np.full(len(steps), np.nan)
        step = _column(self.events, "step", np.int64)[ok]
        order = np.argsort(step, kind="stable")
        at = np.searchsorted(step[order], steps, side="right") - 1
        return np.where(at >= 0, ev_epoch[ok][order][np.maximum(at, 0)], np.nan)


def relative_x(out: list[Curve]) -> None:
    """--x relative: each run's x from its own first point (time since that run started)."""
    starts: dict[str, float] = {}
    for c in out:
        if len(c.x):
            starts[c.run] = min(starts.get(c.run, math.inf), float(np.nanmin(c.x)))
    for c in out:
        c.x = c.x - starts.get(c.run, 0.0)


def sort_by_x(c: Curve) -> None:
    """Order a curve by x (a kept rewind, clock steps): lines and zoom windows need ascending x."""
    if len(c.x) < 2 or _ascending(c.x):
        return
    order = np.argsort(c.x, kind="stable")
    c.x, c.y, c.step = c.x[order], c.y[order], c.step[order]
    for name in ("lo", "hi", "bucket", "event_step", "count"):
        arr = getattr(c, name)
        if arr is not None:
            setattr(c, name, arr[order])


def _ascending(x: np.ndarray) -> bool:
    """True if x never decreases (NaN counts as a decrease), compared in blocks of 1M: a mask as long as x
    would be fresh memory, which a cold render pays for page by page."""
    for start in range(0, len(x) - 1, 1 << 20):
        part = x[start : start + (1 << 20) + 1]
        if not bool(np.all(part[1:] >= part[:-1])):
            return False
    return True
