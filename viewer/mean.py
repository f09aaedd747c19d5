"""The mean across runs (``--mean-runs``): the runs' curves put on one grid, then lossfmt's mean and spread.

Runs rarely log the same steps (a seed logs every step, another every second one, one stops early), so an
average at each exact step would mix different sets of runs from one step to the next and zig-zag. The grid:

- with ``--per``, the bucket (``step // N``, or the epoch): one point per bucket, the mean of the runs that
  have that bucket, drawn at the bucket's last step (the largest step any run logged in it);
- without, the union of the runs' steps: each run contributes, within its own first..last step, its value
  at that step, linearly interpolated between the steps it logged (never extrapolated beyond them). A step
  a run logged more than once (micro-batches) is the mean of its events (with ``--normalize per-item``, per
  item: weighed by their counts), as ``--per 1`` has it; smoothed, the smoothed value after its last event
  (which averages all of them).

Where a run ends early or starts late, fewer runs are averaged and the mean moves by their difference: the
curve's label says where all of them are (``mean of 3 runs (all 3 at steps 0-49, fewer elsewhere)``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from lossfmt import transforms
from lossview.axes import sort_by_x
from lossview.view import Curve, View


def mean_across_runs(series: Sequence[Curve], view: View) -> list[Curve]:
    """One curve per tag: lossfmt's mean across runs on the common grid, the runs' spread as the band; with
    ``--label KEY``, one per tag and value of KEY (the seeds of each setting of a sweep averaged apart).

    The spread is that of the curves as drawn (smoothed when smoothing is on, else raw), so seeds of a sweep
    show a band of the trend rather than of per-step noise.
    """
    if view.label is None:
        return _mean(series, view)
    out = []
    for group in dict.fromkeys(c.group for c in series):
        for c in _mean([c for c in series if c.group == group], view):
            c.run, c.group = f"{group}: {c.run}", group
            out.append(c)
    return out


def _mean(series: Sequence[Curve], view: View) -> list[Curve]:
    """`mean_across_runs` of one group of runs."""
    from lossfmt.dataset import mean_across

    series = [c for c in series if len(c.y)]
    if not series:
        return []
    tags = list(dict.fromkeys(c.tag for c in series))
    parts = [_aligned(c, [o for o in series if o.tag == c.tag], view) for c in series]
    n = sum(len(p[0]) for p in parts)

    def across(which: int) -> pa.Table:
        table = pa.table(
            {
                "run": pa.array(np.repeat([c.run for c in series], [len(p[0]) for p in parts])),
                "tag": pa.array(np.repeat([c.tag for c in series], [len(p[0]) for p in parts])),
                "step": pa.array(np.concatenate([p[0] for p in parts]), pa.int64()),
                "value": pa.array(np.concatenate([p[which] for p in parts]), pa.float64()),
                "count": pa.array(np.ones(n, np.int64)),
                "epoch": pa.nulls(n, pa.int64()),
                "wall_time": pa.array(np.zeros(n, np.int64)).cast(pa.timestamp("us", tz="UTC")),
            }
        )
        return mean_across(table, over="run")

    drawn, raw, xs = across(1), across(2).column("value").to_numpy(), across(3)
    x_column = "max" if view.x == "step" else "value"  # a bucket is drawn at its last step
    members = {t: sum(1 for c in series if c.tag == t) for t in tags}
    first = {c.tag: c for c in reversed(series)}
    tag_of = drawn.column("tag").to_numpy(zero_copy_only=False)
    out = []
    for tag in tags:
        rows = np.flatnonzero(tag_of == tag)
        x = xs.column(x_column).to_numpy()[rows]
        step = xs.column("max").to_numpy()[rows].astype(np.int64) if view.x == "step" else None
        if step is None:
            step = _steps(drawn.column("step").to_numpy()[rows], [c for c in series if c.tag == tag], view)
        averaged = drawn.column("n").to_numpy()[rows]  # runs in the mean at each point
        label = _label(members[tag], averaged, step) if members[tag] > 1 else first[tag].run
        c = Curve(label, tag, x, raw[rows], step, tag_index=first[tag].tag_index, group=label)
        mean = drawn.column("value").to_numpy()[rows]
        if any(s.smoothed is not None for s in series if s.tag == tag):
            c.smoothed = mean
        if view.band == "std":
            std = drawn.column("std").to_numpy()[rows]
            c.lo, c.hi = mean - std, mean + std
        elif view.band == "minmax":
            c.lo, c.hi = drawn.column("min").to_numpy()[rows], drawn.column("max").to_numpy()[rows]
        sort_by_x(c)
        out.append(c)
    return out


def _label(members: int, n: np.ndarray, step: np.ndarray) -> str:
    """ "mean of N runs", saying where fewer than all N are averaged: where one run ends or starts later
    than the others, the mean moves by their difference, which is no change of the loss."""
    full = n == members
    if full.all():
        return f"mean of {members} runs"
    if not full.any():
        return f"mean of {members} runs (at most {int(n.max())} at one step)"
    at = step[full]
    lo, hi = int(at.min()), int(at.max())
    if np.count_nonzero((step >= lo) & (step <= hi)) == np.count_nonzero(full):  # one stretch
        return f"mean of {members} runs (all {members} at steps {lo:,}-{hi:,}, fewer elsewhere)"
    return f"mean of {members} runs (all {members} at {int(full.sum()):,} of {len(n):,} points)"


def _aligned(c: Curve, members: Sequence[Curve], view: View) -> tuple[np.ndarray, ...]:
    """(grid key, drawn value, raw value, x) of one run's curve on its tag's common grid."""
    drawn = c.y if c.smoothed is None else c.smoothed
    x = np.asarray(c.step if view.x == "step" else c.x, np.float64)
    if view.per is not None:
        key = _buckets(c, view)
        return key, drawn, c.y, np.asarray(c.x, np.float64)
    order = np.argsort(c.step, kind="stable")
    step = c.step[order]
    drawn, raw, x = (np.asarray(v, np.float64)[order] for v in (drawn, c.y, x))
    if not bool(np.all(step[1:] > step[:-1])):  # a step logged more than once (micro-batches, a kept rewind)
        last = np.append(step[1:] != step[:-1], True)
        count = None if c.count is None else c.count[order]
        step, raw = step[last], _step_means(c.tag, step, raw, count)
        # a smoothed curve's value after the step's last event already averages all of them
        drawn, x = (raw if c.smoothed is None else drawn[last]), x[last]
    grid = np.unique(np.concatenate([m.step for m in members]))
    grid = grid[(grid >= step[0]) & (grid <= step[-1])]
    drawn, raw, x = (np.interp(grid, step, v) for v in (drawn, raw, x))
    return grid, drawn, raw, (grid.astype(np.float64) if view.x == "step" else x)


def _step_means(tag: str, step: np.ndarray, values: np.ndarray, count: np.ndarray | None) -> np.ndarray:
    """One value per step (`step` ascending): the mean of that step's events, as lossfmt's ``bucket(per=1)``
    (``--per 1``) combines them; with their `count` (``--normalize per-item``), the mean per item."""
    n = step.size
    events = pa.table(
        {
            "tag": pa.DictionaryArray.from_arrays(
                transforms.to_arrow(np.zeros(n, np.int32)), pa.array([tag])
            ),
            "step": transforms.to_arrow(step, pa.int64()),
            "value": transforms.to_arrow(values, pa.float64()),
            "count": transforms.to_arrow(np.ones(n, np.int64) if count is None else count),
            "epoch": pa.nulls(n, pa.int64()),
            "wall_time": transforms.to_arrow(np.zeros(n, np.int64)).cast(pa.timestamp("us", tz="UTC")),
            # (the values are per-item already: weighed by their counts as means)
            "reduction": pa.DictionaryArray.from_arrays(
                transforms.to_arrow(np.zeros(n, np.int8)), pa.array(["mean"])
            ),
        }
    )
    normalize = None if count is None else "per-item"
    return transforms.to_numpy(transforms.bucket(events, 1, normalize=normalize).column("value"))


def _buckets(c: Curve, view: View) -> np.ndarray:
    """A bucketed curve's bucket numbers: its epochs (``per="epoch"``) or ``step // per``."""
    if view.per == "epoch":
        return c.bucket if c.bucket is not None else c.step
    per = transforms.parse_per(view.per)
    assert isinstance(per, int)  # callers bucket (per is not None), and not by epoch (above)
    return c.step // per


def _steps(keys: np.ndarray, members: Sequence[Curve], view: View) -> np.ndarray:
    """The step each mean point stands for on a non-step axis: the grid step, or a bucket's last step."""
    if view.per is None:
        return keys.astype(np.int64)
    last: dict[int, int] = {}
    for c in members:
        for k, s in zip(_buckets(c, view).tolist(), c.step.tolist(), strict=True):
            last[k] = max(last.get(k, s), s)
    return np.array([last[int(k)] for k in keys], np.int64)
