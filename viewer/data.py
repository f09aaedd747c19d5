"""From event tables to curves: the read-time pipeline shared by plotting, ``summary`` and ``export``.

Everything here is numpy/pyarrow and goes through ``lossfmt``'s public reader and transforms; matplotlib is
never imported, so the data flow can be tested without rendering.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import glob
import math
import os
import warnings
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

import lossfmt
from lossfmt import _arrow, schema, transforms

X_AXES = ("step", "epoch", "time", "relative")
DEFAULT_SMOOTH = "ema:0.6"
#: The default smoothing skips series this short (per-epoch validation curves): an EMA over a handful of
#: points only makes them lag. An explicit --smooth applies to every series.
FEW_POINTS = 60
BANDS = ("minmax", "std")
_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class View:
    """What to show: tag selection, read-time transforms, x axis and bands (the plotting/export options)."""

    tags: tuple[str, ...] = ()
    smooth: str | None = DEFAULT_SMOOTH
    #: False when the smoothing is the default: then bucketed and short series are drawn unsmoothed.
    smooth_explicit: bool = True
    per: str | int | None = None
    normalize: str | None = None
    x: str = "step"
    band: str | None = None
    mean_runs: bool = False
    keep_rewound: bool = False

    def check(self) -> None:
        """Raise ValueError with a readable message if the options don't fit together."""
        transforms.parse_smooth(self.smooth)
        if self.per is not None:
            transforms.parse_per(self.per)
        if self.normalize not in (None, "per-item"):
            raise ValueError(f"--normalize must be 'per-item', not {self.normalize!r}")
        if self.x not in X_AXES:
            raise ValueError(f"--x must be one of {', '.join(X_AXES)}, not {self.x!r}")
        if self.band is not None:
            if self.band not in BANDS:
                raise ValueError(f"--band must be one of {', '.join(BANDS)}, not {self.band!r}")
            if self.per is None and not self.mean_runs:
                raise ValueError("--band shades a spread: use it with --per epoch|N or --mean-runs")

    def columns(self) -> tuple[str, ...]:
        """The file columns that ``apply`` and ``curves`` read for this view, in file order: reading only
        these (``load(paths, columns=...)``) skips decompressing the rest."""
        needed = {schema.STEP, schema.TAG, schema.VALUE}
        if self.per is not None:  # buckets carry counts, epochs and times along
            needed |= {schema.COUNT, schema.EPOCH, schema.WALL_TIME}
        if self.normalize is not None:
            needed |= {schema.COUNT, schema.REDUCTION}
        if self.x == "epoch":
            needed.add(schema.EPOCH)
        elif self.x in ("time", "relative"):
            needed.add(schema.WALL_TIME)
        return tuple(c for c in schema.COLUMNS if c in needed)


@dataclass
class Curve:
    """One (run, tag) series ready to draw: x positions, raw values, optional smoothed values and band."""

    run: str
    tag: str
    #: float64, or on a step axis the int64 steps themselves (``step``: no float copy of 10M steps).
    x: np.ndarray
    y: np.ndarray
    step: np.ndarray
    smoothed: np.ndarray | None = None
    lo: np.ndarray | None = None
    hi: np.ndarray | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.run, self.tag)


# ---------------------------------------------------------------------------------------------- sources


def expand(args: Sequence[str], *, must_exist: bool = True) -> list[Path]:
    """Turn FILE arguments (files, globs, directories) into a sorted, de-duplicated list of paths.

    With ``must_exist`` a plain path that is missing, a glob matching nothing or a directory without
    ``.arrow`` files raises FileNotFoundError naming it; otherwise (follow mode) they are simply skipped.
    """
    paths: list[Path] = []
    for arg in args:
        if _GLOB_CHARS & set(arg):
            found = [Path(p) for p in sorted(glob.glob(arg, recursive=True)) if os.path.isfile(p)]
            if not found and must_exist:
                raise FileNotFoundError(f"{arg}: no file matches this pattern")
        elif os.path.isdir(arg):
            found = sorted(p for p in Path(arg).glob("*.arrow") if p.is_file())
            if not found and must_exist:
                raise FileNotFoundError(f"{arg}: directory has no .arrow files")
        else:
            found = [Path(arg)]
            if must_exist and not found[0].exists():
                raise FileNotFoundError(f"{arg}: no such file")
        for p in found:
            if p not in paths:
                paths.append(p)
    return paths


def run_names(paths: Sequence[Path], names: Sequence[str | None]) -> list[str]:
    """Run names for files: the run metadata (or the stem), disambiguated by the file stem when repeated."""
    base = [n or p.stem for p, n in zip(paths, names, strict=False)]
    out = []
    for p, n in zip(paths, base, strict=False):
        out.append(n if base.count(n) == 1 or n == p.stem else f"{n} ({p.stem})")
    return out


def load(paths: Sequence[Path], columns: Sequence[str] | None = None) -> pa.Table:
    """Read every file (lossfmt.read) into one table with a dictionary-encoded ``run`` column; only
    ``columns`` (file columns, e.g. ``View.columns()``) when given, else all of them."""

    def read(path: Path) -> pa.Table:
        return lossfmt.read(os.fspath(path), columns=columns)

    if len(paths) > 1:  # decoding is C++ that releases the GIL: several files read in parallel
        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1, len(paths))) as pool:
            tables = list(pool.map(read, paths))
    else:
        tables = [read(p) for p in paths]
    names = run_names(paths, [schema.run_info(t.schema).get("run") for t in tables])
    return pa.concat_tables([with_run(t, name) for t, name in zip(tables, names, strict=True)])


def with_run(table: pa.Table, name: str) -> pa.Table:
    """``table`` without its file metadata, plus a constant dictionary-encoded ``run`` column (cheap)."""
    zeros = np.zeros(table.num_rows, dtype=np.int32)  # untouched pages until read: costs no memory
    # Zeros into a one-entry dictionary are valid by construction: no bounds check reading every index.
    run = pa.DictionaryArray.from_arrays(_arrow.array(zeros), _arrow.strings([name]), safe=False)
    return table.replace_schema_metadata(None).append_column("run", run)


# -------------------------------------------------------------------------------------------- pipeline


def select_tags(table: pa.Table, patterns: Sequence[str]) -> pa.Table:
    """Keep the rows whose tag matches one of the fnmatch patterns (all rows when there are none)."""
    if not patterns or table.num_rows == 0:
        return table
    codes, names = _coded(table, "tag")
    wanted = [i for i, name in enumerate(names) if any(fnmatch.fnmatchcase(name, p) for p in patterns)]
    return table.filter(_arrow.array(np.isin(codes, np.asarray(wanted, dtype=codes.dtype))))


def apply(table: pa.Table, view: View) -> pa.Table:
    """Tag selection, rewind handling, per-item normalization and bucketing; no smoothing yet."""
    table = select_tags(table, view.tags)
    if not view.keep_rewound and table.num_rows:
        table = transforms.drop_rewound(table)
    if view.per is not None:
        return transforms.bucket(table, transforms.parse_per(view.per), normalize=view.normalize)
    if view.normalize == "per-item":
        return transforms.normalize_events(table)
    return table


def export_table(table: pa.Table, view: View) -> pa.Table:
    """The table ``lossview export`` writes: the same rows the plot draws, with a ``smoothed`` column."""
    out = apply(table, view)
    if view.smooth not in (None, "none") and (view.smooth_explicit or view.per is None):
        out = transforms.smooth_table(out, view.smooth)
    return out


def curves(table: pa.Table, view: View) -> list[Curve]:
    """Split a prepared table (see ``apply``) into one Curve per (run, tag), smoothed, with x positions."""
    smooth = transforms.parse_smooth(view.smooth)
    bucketed = view.per is not None
    if view.x == "epoch" and not (bucketed and view.per == "epoch"):
        xs_all = np.asarray(transforms.epoch_positions(table), dtype=np.float64)
    else:
        xs_all = None
    out: list[Curve] = []
    skipped: list[str] = []
    for run, tag, idx in groups(table):
        sub = table.take(_arrow.array(idx, pa.int64())) if idx is not None else table
        step = _np(sub, "step", np.int64)
        y = _np(sub, "value", np.float64)
        if view.x == "step":
            x = step
        elif view.x == "epoch":
            x = _np(sub, "epoch", np.float64) if xs_all is None else (xs_all if idx is None else xs_all[idx])
        else:
            x = _seconds(sub)
        if view.x == "epoch":  # events logged without an epoch have no place on an epoch axis
            placed = np.isfinite(x)
            if not placed.all():
                x, y, step, sub = x[placed], y[placed], step[placed], sub.filter(_arrow.array(placed))
            if not len(x):
                skipped.append(f"{run}: {tag}" if run else tag)
                continue
        curve = Curve(run, tag, x, y, step)
        if bucketed and view.band == "minmax":
            curve.lo, curve.hi = _np(sub, "min", np.float64), _np(sub, "max", np.float64)
        elif bucketed and view.band == "std":
            std = np.nan_to_num(_np(sub, "std", np.float64))
            curve.lo, curve.hi = y - std, y + std
        if smooth is not None and len(y) and (view.smooth_explicit or (not bucketed and len(y) > FEW_POINTS)):
            curve.smoothed = smooth(y)
        out.append(curve)
    if view.x == "relative":
        starts: dict[str, float] = {}
        for c in out:
            if len(c.x):
                starts[c.run] = min(starts.get(c.run, math.inf), float(np.nanmin(c.x)))
        for c in out:
            c.x = c.x - starts.get(c.run, 0.0)
    if skipped and not out:
        raise ValueError("--x epoch: no event has an epoch; log epoch=... with add() or use --x step")
    if skipped:
        warnings.warn(f"--x epoch: not drawn, logged without an epoch: {', '.join(skipped)}", stacklevel=2)
    if not (view.x == "step" and not view.keep_rewound):  # without rewinds, steps never decrease
        for c in out:
            _sort_by_x(c)
    if view.mean_runs:
        out = mean_across_runs(out, band=view.band)
    return out


def extend(old: Sequence[Curve], new: pa.Table, view: View) -> list[Curve] | None:
    """``old`` curves continued with events appended after them, without recomputing the old part.

    Same numbers as ``curves`` on everything (up to float rounding): the EMA continues from its state, a
    moving average from its last window. None when that is not possible (bucketing, an epoch axis, time
    relative to the start, a rewind, a change in what is smoothed): the caller recomputes.
    """
    if view.per is not None or view.x not in ("step", "time") or view.mean_runs:
        return None
    new = select_tags(new, view.tags)
    if not view.keep_rewound and transforms.drop_rewound(new).num_rows != new.num_rows:
        return None
    if view.normalize == "per-item":
        new = transforms.normalize_events(new)
    raw_view = dataclasses.replace(view, smooth=None, smooth_explicit=True, band=None)
    out = {c.key: c for c in old}
    for f in curves(new, raw_view):
        o = out.get(f.key)
        if o is None:
            if (view.smooth_explicit or len(f.y) > FEW_POINTS) and transforms.parse_smooth(view.smooth):
                f.smoothed = transforms.parse_smooth(view.smooth)(f.y)
            out[f.key] = f
            continue
        if len(o.x) and (f.x[0] < o.x[-1] or f.step[0] < o.step[-1]):
            return None
        total = len(o.y) + len(f.y)
        smooth = view.smooth not in (None, "none") and (view.smooth_explicit or total > FEW_POINTS)
        if smooth != (o.smoothed is not None):
            return None
        joined = Curve(o.run, o.tag, np.concatenate([o.x, f.x]), np.concatenate([o.y, f.y]),
                       np.concatenate([o.step, f.step]))  # fmt: skip
        if smooth:
            joined.smoothed = np.concatenate([o.smoothed, _continue_smoothing(o, f.y, str(view.smooth))])
        out[f.key] = joined
    return list(out.values())


def _continue_smoothing(old: Curve, values: np.ndarray, spec: str) -> np.ndarray:
    """The smoothed values of ``values`` logged right after ``old`` (whose smoothing is known)."""
    kind, _, arg = spec.strip().lower().partition(":")
    smoother = transforms.parse_smooth(spec)
    if kind == "ma":  # a trailing window: rerun over the old values still inside the window
        keep = int(arg) - 1  # old finite values still inside the window of the first new value
        finite = np.flatnonzero(np.isfinite(old.y))
        start = len(old.y) if keep == 0 else (int(finite[-keep]) if len(finite) >= keep else 0)
        tail = old.y[start:]
        return smoother(np.concatenate([tail, values]))[len(tail) :]
    # TensorBoard's EMA: last = w*last + (1-w)*v over finite values, shown debiased: last / (1 - w**n).
    w = float(arg)
    finite_old = np.isfinite(old.y)
    n_old = int(finite_old.sum())
    last_old = float(old.smoothed[finite_old][-1]) * (1.0 - w**n_old) if n_old else 0.0
    out = np.array(values, dtype=np.float64)
    finite = np.isfinite(out)
    v = out[finite]
    if len(v):
        k = np.arange(1, len(v) + 1, dtype=np.float64)
        from_zero = transforms.ema(v, w) * (1.0 - w**k)  # undebiased EMA of v alone, started at 0
        out[finite] = (w**k * last_old + from_zero) / (1.0 - w ** (n_old + k))
    return out


def mean_across_runs(series: Sequence[Curve], *, band: str | None = None) -> list[Curve]:
    """One curve per tag: the mean across runs at each x, with the runs' spread as the band.

    The spread is that of the curves as drawn (smoothed when smoothing is on, else raw), so seeds of a sweep
    show a band of the trend rather than of per-step noise. Runs contribute at the x positions they logged.
    """
    by_tag: dict[str, list[Curve]] = {}
    for c in series:
        by_tag.setdefault(c.tag, []).append(c)
    out = []
    for tag, group in by_tag.items():
        x = np.concatenate([c.x for c in group])
        if not len(x):
            continue
        ux, inv = np.unique(x, return_inverse=True)
        raw = np.concatenate([c.y for c in group])
        drawn = np.concatenate([c.smoothed if c.smoothed is not None else c.y for c in group])
        steps = np.zeros(len(ux), dtype=np.int64)
        steps[inv] = np.concatenate([c.step for c in group])
        n = np.bincount(inv, minlength=len(ux)).astype(np.float64)
        mean_raw = np.bincount(inv, weights=raw, minlength=len(ux)) / n
        mean_drawn = np.bincount(inv, weights=drawn, minlength=len(ux)) / n
        label = f"mean of {len(group)} runs" if len(group) > 1 else group[0].run
        curve = Curve(label, tag, ux, mean_raw, steps)
        curve.smoothed = mean_drawn if any(c.smoothed is not None for c in group) else None
        if band == "std":
            var = np.bincount(inv, weights=drawn**2, minlength=len(ux)) / n - mean_drawn**2
            std = np.sqrt(np.clip(var, 0.0, None))
            curve.lo, curve.hi = mean_drawn - std, mean_drawn + std
        elif band == "minmax":
            order = np.argsort(inv, kind="stable")
            starts = np.flatnonzero(np.r_[True, np.diff(inv[order]) != 0])
            curve.lo = np.minimum.reduceat(drawn[order], starts)
            curve.hi = np.maximum.reduceat(drawn[order], starts)
        out.append(curve)
    return out


# --------------------------------------------------------------------------------------------- summary

SUMMARY_COLUMNS = (
    "run",
    "tag",
    "events",
    "first_step",
    "last_step",
    "first",
    "last",
    "min",
    "min_step",
    "last_smoothed",
    "non_finite",
    "events_per_s",
    "duration_s",
)


def summary_columns(view: View) -> tuple[str, ...]:
    """The file columns ``summarize`` reads for ``view``: the events' plot columns plus wall_time (rates)."""
    needed = {*View(normalize=view.normalize).columns(), schema.WALL_TIME}
    return tuple(c for c in schema.COLUMNS if c in needed)


def summarize(table: pa.Table, view: View) -> list[dict[str, object]]:
    """Per run and tag: events, step range, first/last/min values, last smoothed, non-finite count, rate."""
    table = apply(table, View(tags=view.tags, normalize=view.normalize, keep_rewound=view.keep_rewound))
    smooth = transforms.parse_smooth(view.smooth)
    rows: list[dict[str, object]] = []
    for run, tag, idx in groups(table):
        sub = table.take(_arrow.array(idx, pa.int64())) if idx is not None else table
        step = _np(sub, "step", np.int64)
        y = _np(sub, "value", np.float64)
        t = _seconds(sub)
        finite = np.isfinite(y)
        i_min = int(np.flatnonzero(finite)[np.argmin(y[finite])]) if finite.any() else None
        duration = float(t.max() - t.min()) if len(t) else 0.0
        sm = smooth(y) if smooth is not None else None
        sm_finite = sm[np.isfinite(sm)] if sm is not None else None
        rows.append(
            {
                "run": run,
                "tag": tag,
                "events": len(y),
                "first_step": int(step[0]),
                "last_step": int(step[-1]),
                "first": float(y[0]),
                "last": float(y[-1]),
                "min": float(y[i_min]) if i_min is not None else math.nan,
                "min_step": int(step[i_min]) if i_min is not None else None,
                # The trend where the run last had one (a diverged run ends in NaN; "last" shows that).
                "last_smoothed": float(sm_finite[-1]) if sm_finite is not None and len(sm_finite) else None,
                "non_finite": int((~finite).sum()),
                "events_per_s": len(y) / duration if duration > 0 else None,
                "duration_s": duration,
            }
        )
    return rows


# ----------------------------------------------------------------------------------------------- utils


def groups(table: pa.Table) -> Iterable[tuple[str, str, np.ndarray | None]]:
    """Yield (run, tag, row indices) per group in order of first appearance; indices None = every row."""
    if table.num_rows == 0:
        return
    only_tag = _only_label(table.column("tag"))
    only_run = _only_label(table.column("run")) if "run" in table.column_names else ""
    if only_tag is not None and only_run is not None:  # one series: no codes to read
        yield only_run, only_tag, None
        return
    tag_codes, tag_names = _coded(table, "tag")
    if "run" in table.column_names:
        run_codes, run_names_ = _coded(table, "run")
    else:
        run_codes, run_names_ = np.zeros(table.num_rows, dtype=np.int32), [""]
    width = len(tag_names)
    if len(run_names_) == 1 and width == 1:
        yield run_names_[0], tag_names[0], None
        return
    key = run_codes.astype(np.int64) * width + tag_codes
    present = _arrow.to_numpy(_arrow.array(key).unique())  # hash-based, in order of first appearance
    if len(present) == 1:
        k = int(present[0])
        yield run_names_[k // width], tag_names[k % width], None
        return
    for k in present:
        k = int(k)
        yield run_names_[k // width], tag_names[k % width], np.flatnonzero(key == k)


def _only_label(col: pa.ChunkedArray) -> str | None:
    """The label of every row of a dictionary column whose chunks all have the same one-entry dictionary
    (a single tag or run: known without reading the indices); None otherwise."""
    if not pa.types.is_dictionary(col.type) or col.num_chunks == 0:
        return None
    first = col.chunk(0).dictionary
    if len(first) != 1 or col.null_count or any(not c.dictionary.equals(first) for c in col.chunks[1:]):
        return None
    return str(first.to_pylist()[0])


def _coded(table: pa.Table, name: str) -> tuple[np.ndarray, list[str]]:
    """Integer codes and the names they index, for a (dictionary or plain) string column."""
    col = table.column(name)
    if not pa.types.is_dictionary(col.type):
        col = col.dictionary_encode()
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()  # unifies the chunks' dictionaries
    codes = _arrow.to_numpy(col.indices)
    return codes, [str(v) for v in col.dictionary.to_pylist()]


def _np(table: pa.Table, name: str, dtype: type) -> np.ndarray:
    return np.asarray(_arrow.to_numpy(table.column(name), fill=math.nan), dtype=dtype)


def _seconds(table: pa.Table) -> np.ndarray:
    """wall_time as float seconds since the Unix epoch."""
    col = table.column("wall_time").cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
    return np.asarray(_arrow.to_numpy(col), dtype=np.float64) / 1e6


def _sort_by_x(c: Curve) -> None:
    if len(c.x) > 1 and np.any(np.diff(c.x) < 0):
        order = np.argsort(c.x, kind="stable")
        c.x, c.y, c.step = c.x[order], c.y[order], c.step[order]
        for name in ("smoothed", "lo", "hi"):
            arr = getattr(c, name)
            if arr is not None:
                setattr(c, name, arr[order])
