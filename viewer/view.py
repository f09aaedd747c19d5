"""From options to curves: which files and tags, which read-time transforms, which x axis.

Every rule about data lives in ``lossfmt`` (paths, run labels, tag selection, rewinds, normalization,
bucketing, smoothing, the mean across runs); this module only chains them, per run, into one ``Curve`` per
(run, tag). matplotlib is never imported here, so the data flow is testable without rendering.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa

import lossfmt
from lossfmt import transforms
from lossfmt.dataset import footer_schema
from lossfmt.transforms import select_tags
from lossfmt.transforms import to_arrow as array
from lossview.axes import RunAxis, relative_x, sort_by_x
from lossview.labels import check_label as check_label  # (labels.py: run labels by hyperparameter)
from lossview.labels import hparam as hparam
from lossview.labels import relabel as relabel
from lossview.rewinds import drop_rewound as drop_rewound  # (rewinds.py: saying what was hidden)
from lossview.smoothing import FEW_POINTS as FEW_POINTS  # (smoothing.py: what the default smooths)
from lossview.smoothing import smooth as smooth
from lossview.tables import column as column  # re-exported: `view.column` etc. predate tables.py
from lossview.tables import seconds as seconds
from lossview.tables import tag_groups as tag_groups
from lossview.tables import tag_names as tag_names

#: x axes: items seen (cumulative ``count``), step, epoch, wall time and time since the run started.
X_AXES = ("step", "items", "epoch", "time", "relative")
DEFAULT_SMOOTH = transforms.DEFAULT_SMOOTH
BANDS = ("minmax", "std")
T = TypeVar("T", "list[Curve]", pa.Table)  # what each_run makes of a run: curves, or a table
#: The file columns, in file order.
COLUMNS = ("step", "tag", "value", "count", "epoch", "wall_time", "reduction")


class ViewerError(Exception):
    """Something the user can fix (no matching tag, a busy port, a missing extra): one line, exit 1."""


class OptionError(ViewerError, ValueError):
    """Options that do not fit together: a usage error (the command line exits 2)."""


class NoDataError(ViewerError, ValueError):
    """The files hold nothing to show for these options (no events yet, no tag matches)."""


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
    #: A run metadata key (a hyperparameter such as ``lr``) that labels and colours the runs.
    label: str | None = None

    def __post_init__(self) -> None:
        tags = (self.tags,) if isinstance(self.tags, str) else tuple(self.tags)  # one tag, not its characters
        object.__setattr__(self, "tags", tags)
        # One spelling of per ("EPOCH", " 100 " -> "epoch", 100) for every later comparison; check() reports
        # a bad one.
        with contextlib.suppress(TypeError, ValueError):
            object.__setattr__(self, "per", transforms.parse_per(self.per))

    def check(self) -> None:
        """Raise OptionError with a readable message if the options don't fit together."""
        try:
            transforms.parse_smooth(self.smooth)
            transforms.parse_per(self.per)
            transforms.parse_normalize(self.normalize)
        except (TypeError, ValueError) as exc:
            raise OptionError(str(exc)) from None
        if self.x not in X_AXES:
            raise OptionError(f"--x must be one of {', '.join(X_AXES)}, not {self.x!r}")
        if self.band is not None:
            if self.band not in BANDS:
                raise OptionError(f"--band must be one of {', '.join(BANDS)}, not {self.band!r}")
            if self.per is None and not self.mean_runs:
                raise OptionError("--band shades a spread: use it with --per epoch|N or --mean-runs")

    def columns(self) -> tuple[str, ...]:
        """The file columns this view reads, in file order (reading only these skips decompressing others)."""
        # epoch too: a run whose steps restart each epoch is told apart from a rewind by its epochs
        needed = {"step", "tag", "value", "epoch"}
        if self.per is not None:  # buckets carry counts, epochs and times along
            needed |= {"count", "epoch", "wall_time"}
        if self.normalize is not None:
            needed |= {"count", "reduction"}
        needed |= {"items": {"count"}, "time": {"wall_time"}, "relative": {"wall_time"}}.get(self.x, set())
        return tuple(c for c in COLUMNS if c in needed)

    def smoothing(self) -> str | None:
        """The legend's words for the smoothing drawn (``EMA 2% of span``), None when nothing is smoothed."""
        smoother = transforms.parse_smooth(self.smooth)
        return None if smoother is None else smoother.label


@dataclass(frozen=True)
class Run:
    """One file's events (as read for a view), its label and its metadata (``meta``: the hyperparameters)."""

    label: str
    table: pa.Table
    meta: dict[str, Any] = field(default_factory=dict)
    path: str = ""
    #: The file has no footer yet (a writer is on it, or it crashed): its last epoch may be unfinished.
    live: bool = False


@dataclass
class Curve:
    """One (run, tag) series ready to draw: x positions, raw values, optional smoothed values and band."""

    run: str
    tag: str
    #: float64, or on a step axis the int64 steps themselves (no float copy of 10M steps).
    x: np.ndarray
    y: np.ndarray
    step: np.ndarray
    smoothed: np.ndarray | None = None
    lo: np.ndarray | None = None
    hi: np.ndarray | None = None
    #: The tag's place in the order tags first appeared in the files: its stable colour or line style.
    tag_index: int = 0
    #: What colours the run in a comparison (the run label, or a hyperparameter's value).
    group: str = ""
    #: A bucketed (--per epoch) curve's epochs: the mean across runs averages by bucket.
    bucket: np.ndarray | None = None
    #: Per point, the step of its first non-finite event (a bucket's, not the bucket's last step); None: step.
    event_step: np.ndarray | None = None
    #: Its last point is an epoch a live run is still logging (--per epoch).
    unfinished: bool = False
    #: Per point, the items its event summarizes (with --normalize, unbucketed): what weighs micro-batches.
    count: np.ndarray | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.run, self.tag)


# ---------------------------------------------------------------------------------------------- reading


def load(source: Sequence[str | os.PathLike[str]], view: View, *, every_column: bool = False) -> list[Run]:
    """Read every run ``source`` names (files, globs, directories) with the tags and (unless
    ``every_column``) only the columns ``view`` needs.

    Raises lossfmt.LossFormatError naming a path that matches nothing or a file that is not lossfmt.
    """
    paths = lossfmt.run_paths([os.fspath(s) for s in source])
    tags = None if view.x == "items" else list(view.tags) or None  # items: counted over every tag
    columns = None if every_column else view.columns()

    def read(path: str) -> pa.Table:
        return lossfmt.read(path, columns=columns, tags=tags)

    if len(paths) > 1:  # decoding is C++ that releases the GIL: several files read in parallel
        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1, len(paths))) as pool:
            tables = list(pool.map(read, paths))
    else:
        tables = [read(p) for p in paths]
    return runs(paths, tables, live=[_live(p) for p in paths])


def _live(path: str) -> bool:
    """The file has no footer (a writer is on it, or it crashed); a URL names a closed run."""
    with contextlib.suppress(lossfmt.LossfmtError, OSError):  # (replaced since it was read: not live)
        return "://" not in path and footer_schema(path) is None
    return False


def require_tags(source: Sequence[str | os.PathLike[str]], view: View, runs_: Sequence[Run]) -> None:
    """NoDataError when the view's tags match no event but the files do hold events (of other tags); runs
    without any event yet pass (a notebook polls a run that has not logged)."""
    if not view.tags or any(filter_tags(r.table, view).num_rows for r in runs_):
        return
    names: dict[str, None] = {}
    for path in lossfmt.run_paths([os.fspath(s) for s in source]):
        names.update(dict.fromkeys(tag_names(lossfmt.read(path, columns=["tag"]))))
    if names:
        raise NoDataError(f"no tag matches {' '.join(view.tags)}; the runs have {', '.join(names)}")


def runs(
    paths: Sequence[str],
    tables: Sequence[pa.Table],
    infos: Sequence[dict[str, Any]] | None = None,
    live: Sequence[bool] | None = None,
) -> list[Run]:
    """Label each file's table as lossfmt labels runs (metadata name, told apart by path when repeated);
    ``infos`` are the files' ``lossfmt.run_info`` when the tables no longer carry their schema metadata,
    ``live`` whether each file has no footer yet."""
    infos = [lossfmt.run_info(t.schema) for t in tables] if infos is None else infos
    labels = lossfmt.run_labels(
        paths, [i.get("run") or Path(p).stem for i, p in zip(infos, paths, strict=True)]
    )
    live = [False] * len(paths) if live is None else live
    return [
        Run(label, table.replace_schema_metadata(None), dict(info.get("meta") or {}), os.fspath(path), on)
        for label, table, info, path, on in zip(labels, tables, infos, paths, live, strict=True)
    ]


def filter_tags(table: pa.Table, view: View) -> pa.Table:
    """``table`` with only the view's tags (every row when it names none)."""
    return select_tags(table, list(view.tags)) if view.tags and table.num_rows else table


def prepare(table: pa.Table, view: View, name: str = "") -> pa.Table:
    """Rewind handling, per-item normalization and bucketing of one run's events; no smoothing yet.

    Raises NoDataError for ``--per epoch`` on a run (``name``) logged without epochs."""
    table = transforms.run_wide_steps(table) or table  # as drawn: steps that restart each epoch run-wide
    if not view.keep_rewound and table.num_rows:
        table = drop_rewound(table, name)
    per = transforms.parse_per(view.per)
    if per is not None:
        if per == "epoch" and table.num_rows and table.column("epoch").null_count == table.num_rows:
            raise NoDataError(
                f"{name or 'run'}: --per epoch: no event has an epoch; log epoch=... or use --per N"
            )
        bucketed = transforms.bucket(table, per, normalize=view.normalize)
        if per == "epoch" and table.column("epoch").null_count:  # tags without any epoch have no bucket
            lost = sorted(_tag_names(table) - _tag_names(bucketed))
            if lost:
                said = ", ".join(f"{name}: {tag}" if name else tag for tag in lost)
                warnings.warn(f"--per epoch: not drawn, logged without an epoch: {said}", stacklevel=2)
        return bucketed
    if view.normalize is not None:
        return transforms.normalize_events(table)
    return table


def prepare_runs(runs_: Sequence[Run], view: View) -> list[tuple[Run, pa.Table]]:
    """Each run with its `prepare`d table (runs logged without epochs left out as `each_run` says)."""
    return each_run(runs_, lambda run: prepare(run.table, view, run.path or run.label))


def each_run(runs_: Sequence[Run], fn: Callable[[Run], T]) -> list[tuple[Run, T]]:
    """``fn(run)`` per run; --per epoch leaves out runs of a sweep without epochs (warned; if all: raised)."""
    out, no_epochs = [], []
    for run in runs_:
        try:
            out.append((run, fn(run)))
        except NoDataError:
            if len(runs_) == 1:
                raise
            no_epochs.append(run.label)
    drawn = any(len(made) if isinstance(made, list) else made.num_rows for _, made in out)  # (empty runs: no)
    _not_drawn("--per epoch", no_epochs, everything=not drawn, fix="or use --per N")
    return out


def _tag_names(table: pa.Table) -> set[str]:
    return {tag for _, tag, _ in transforms.series(table)} if table.num_rows else set()


# ----------------------------------------------------------------------------------------------- curves


def curves(runs_: Iterable[Run], view: View) -> list[Curve]:
    """One Curve per (run, tag) of the runs' events, transformed, smoothed, with x positions and bands."""
    runs_ = list(runs_)
    check_label(runs_, view)
    skipped: list[str] = []  # --x epoch: tags logged without an epoch
    order: dict[str, int] = {}
    made = each_run(runs_, lambda run: _run_curves(run, view, order, skipped))
    out = [curve for _, run_curves in made for curve in run_curves]
    _not_drawn("--x epoch", skipped, everything=not out, fix="with add() or use --x step")
    if view.x == "relative":
        relative_x(out)
    smooth(out, view)
    if view.mean_runs:
        from lossview.mean import mean_across_runs

        return mean_across_runs(out, view)
    relabel(out, view)
    return out


def _run_curves(run: Run, view: View, order: dict[str, int], skipped: list[str]) -> list[Curve]:
    """One run's curves; its tags logged without an epoch (on an epoch axis) are added to `skipped`."""
    every = run.table  # every tag: --x items counts the training loss whatever --tag draws
    if (run_wide := transforms.run_wide_steps(every)) is not None:
        every = run_wide
        if view.x == "step":
            warnings.warn(f"{run.label}: its steps restart each epoch: drawn run-wide", stacklevel=3)
    if not view.keep_rewound and every.num_rows:
        every = drop_rewound(every, run.label)
    events = filter_tags(every, view)
    table = prepare(events, replace(view, keep_rewound=True), run.path or run.label)
    axis = RunAxis(events, table, view.per, counted=every)
    for name in tag_names(run.table):
        order.setdefault(name, len(order))
    group = run.label if view.label is None else hparam(run, view.label)
    out = []
    for tag, idx in tag_groups(table):
        curve = _curve(run.label, tag, table, idx, view, axis)
        if curve is None:
            skipped.append(f"{run.label}: {tag}")
            continue
        curve.tag_index, curve.group = order.get(tag, len(order)), group
        if view.per is not None and not transforms.all_finite(curve.y):
            curve.event_step = axis.nonfinite_steps(tag, curve.step, curve.bucket)
        out.append(curve)
    if run.live and view.per == "epoch":
        _ring_latest_epoch(out, every)
    return out


def _ring_latest_epoch(curves_: list[Curve], events: pa.Table) -> None:
    """A live run is still logging its latest epoch: the curves whose last bucket it is end in a ring."""
    import pyarrow.compute as pc  # (60-80 ms to import: only for per-epoch views of live runs)

    latest = pc.max(events.column("epoch")).as_py()
    for c in curves_:
        c.unfinished = (
            latest is not None and c.bucket is not None and len(c.bucket) > 0 and c.bucket[-1] == latest
        )


def _not_drawn(option: str, names: list[str], *, everything: bool, fix: str) -> None:
    """NoDataError when nothing has an epoch for `option`, else a warning naming what is left out."""
    if names and everything:
        raise NoDataError(f"{option}: no event has an epoch; log epoch=... {fix}")
    if names:
        warnings.warn(f"{option}: not drawn, logged without an epoch: {', '.join(names)}", stacklevel=3)


def _curve(
    run: str, tag: str, table: pa.Table, idx: np.ndarray | None, view: View, axis: RunAxis
) -> Curve | None:
    """One tag's curve; x from ``axis``, so every tag of the run puts one step at one x."""
    sub = table if idx is None else table.take(array(idx, pa.int64()))
    step = column(sub, "step", np.int64)
    y = column(sub, "value", np.float64)
    bucketed = view.per is not None
    if view.x == "step":
        x = axis.steps(sub) if bucketed else step  # the steps themselves: no copy of 10M steps
    elif view.x == "items":
        x = axis.items(axis.steps(sub))
    elif view.x == "epoch":
        if view.per == "epoch":  # at the epoch's end (e + 1), where its last step is on this axis
            x = axis.epochs(column(sub, "epoch", np.float64), axis.steps(sub))
        elif bucketed:
            ends = axis.steps(sub)
            x = axis.epochs(axis.epoch_of(ends), ends)
        else:
            x = axis.epochs(column(sub, "epoch", np.float64), step)
        placed = np.isfinite(x)  # events logged without an epoch have no place on an epoch axis
        if not placed.any():
            return None
        if not placed.all():
            x, y, step, sub = x[placed], y[placed], step[placed], sub.filter(array(placed))
    else:
        x = seconds(sub)
    curve = Curve(run, tag, x, y, step)
    if view.normalize is not None and not bucketed:
        curve.count = column(sub, "count", np.int64)
    if view.per == "epoch":
        curve.bucket = column(sub, "epoch", np.int64)
    if bucketed and view.band == "minmax":
        curve.lo, curve.hi = column(sub, "min", np.float64), column(sub, "max", np.float64)
    elif bucketed and view.band == "std":
        std = np.nan_to_num(column(sub, "std", np.float64))
        curve.lo, curve.hi = y - std, y + std
    sort_by_x(curve)
    return curve
