"""The artists of one (run, tag) curve in a ``LossPlot``: its raw and smoothed lines, its band, and the
marks and note that show where its values are non-finite (created once, then updated in place).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import matplotlib.transforms as mtransforms
import numpy as np
from matplotlib.axes import Axes
from matplotlib.lines import Line2D

from lossfmt import transforms
from lossview.view import Curve, View

if TYPE_CHECKING:
    from matplotlib.collections import FillBetweenPolyCollection
    from matplotlib.text import Annotation
    from matplotlib.typing import LineStyleType

NONFINITE_COLOR = "#d62728"
#: Points between the lines of non-finite notes stacked because their marks are close.
NOTE_STEP = 10
RAW_WIDTH, RAW_ALPHA = 0.6, 0.25  # the raw curve: faint context
BOLD_WIDTH = 1.5  # the smoothed (or only) curve


@dataclass
class SeriesArtists:
    """The artists of one (run, tag) and the full-resolution data behind them."""

    ax: Axes
    raw: Line2D
    smooth: Line2D
    marks: Line2D
    note: Annotation
    #: A hollow ring on the last point of a per-epoch curve whose epoch is not finished (a live file).
    unfinished: Line2D
    band: FillBetweenPolyCollection | None = None
    full: dict[Line2D, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    band_data: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    #: What each line shows now: (version, index window, bins), to skip redrawing the same.
    drawn: dict[Line2D, tuple[int, tuple[int, int], int]] = field(default_factory=dict)
    version: int = 0
    curve: Curve | None = None
    key: tuple[str, str] = ("", "")

    @property
    def main(self) -> Line2D:
        """The line the legend shows: the smoothed one, or the raw one when nothing is smoothed."""
        return self.smooth if self.curve is not None and self.curve.smoothed is not None else self.raw


def new(ax: Axes, key: tuple[str, str], color: str, linestyle: LineStyleType, label: str) -> SeriesArtists:
    """Add a curve's (still empty) artists to ``ax``."""
    raw = Line2D([], [], color=color, linewidth=RAW_WIDTH, alpha=RAW_ALPHA, linestyle=linestyle, zorder=2)
    smooth = Line2D([], [], color=color, linewidth=BOLD_WIDTH, linestyle=linestyle, label=label, zorder=3)
    ax.add_line(raw)
    ax.add_line(smooth)
    top = mtransforms.blended_transform_factory(ax.transData, ax.transAxes)
    marks = Line2D([], [], transform=top, linestyle="none", marker="x", markersize=7, markeredgewidth=1.8,
                   color=NONFINITE_COLOR, clip_on=False, zorder=5)  # fmt: skip
    ax.add_line(marks)
    marks.set_in_layout(False)
    note = ax.annotate("", xy=(0, 0.97), xycoords=top, xytext=(4, -12), textcoords="offset points",
                       fontsize="x-small", color=NONFINITE_COLOR, annotation_clip=False)  # fmt: skip
    note.set_in_layout(False)
    unfinished = Line2D([], [], linestyle="none", marker="o", markersize=8, markerfacecolor="white",
                        markeredgecolor=color, markeredgewidth=1.6, zorder=6)  # fmt: skip
    ax.add_line(unfinished)
    return SeriesArtists(ax, raw, smooth, marks, note, unfinished, key=key)


def set_empty(s: SeriesArtists) -> None:
    """Show nothing (the curve left the picture); the artists stay for when it comes back."""
    empty = np.empty(0)
    s.version += 1
    s.curve = None
    s.full = {s.raw: (empty, empty), s.smooth: (empty, empty)}
    s.marks.set_data([], [])
    s.note.set_text("")
    s.unfinished.set_data([], [])
    s.band_data = None
    if s.band is not None:
        s.band.set_visible(False)


def set_unfinished(s: SeriesArtists, x: np.ndarray, c: Curve) -> None:
    """Ring the curve's last point when it is an epoch still being logged (the mean of it so far)."""
    y = c.y if c.smoothed is None else c.smoothed
    if c.unfinished and len(x):
        s.unfinished.set_data(x[-1:], y[-1:])
    else:
        s.unfinished.set_data([], [])


def set_band(s: SeriesArtists, x: np.ndarray, c: Curve) -> None:
    """The shaded band of a bucketed curve (its data: drawn at screen resolution by the plot), or none."""
    if c.lo is None or c.hi is None or not len(x):
        s.band_data = None
        if s.band is not None:
            s.band.set_visible(False)
        return
    s.band_data = (x, c.lo, c.hi)
    if s.band is None:
        s.band = s.ax.fill_between(
            x[:2], c.lo[:2], c.hi[:2], color=s.raw.get_color(), alpha=0.18, linewidth=0, zorder=1
        )
    s.band.set_visible(True)


def set_nonfinite(s: SeriesArtists, x: np.ndarray, c: Curve, view: View) -> None:
    """Mark the curve's non-finite values on the axes edge and name the first in a note."""
    bad = np.empty(0, np.intp) if transforms.all_finite(c.y) else np.flatnonzero(~np.isfinite(c.y))
    if not len(bad):
        s.marks.set_data([], [])
        s.note.set_text("")
        return
    # Mark where each stretch of non-finite values starts (a diverged run is one mark, not thousands);
    # NaN and +inf at the top of the axes, -inf at the bottom.
    starts = bad[np.r_[True, np.diff(bad) > 1]]
    y = np.where(c.y[starts] == -np.inf, 0.03, 0.97)
    s.marks.set_data(x[starts], y)
    first = bad[0]
    v = c.y[first]
    kind = "NaN" if np.isnan(v) else ("+inf" if v > 0 else "-inf")
    more = f" ({len(bad)} non-finite)" if len(bad) > 1 else ""
    s.note.xy = (x[first], y[0])
    step = c.step if c.event_step is None else c.event_step
    where = f"step {int(step[first])}"
    if c.bucket is not None:  # per epoch: the mark is at its epoch's end, the step inside it
        where += f" (epoch {int(c.bucket[first])})"
    elif view.x == "epoch" and view.per is None:  # x is the event's own (fractional) epoch
        where += f" (epoch {float(c.x[first]):g})"
    s.note.set_text(f"{kind} at {where}{more}")


def place_notes(series: Iterable[SeriesArtists]) -> None:
    """Keep non-finite notes inside the axes (left of their mark when it is in the right half), and
    stack notes whose marks are close on one axes edge, so their texts never overprint. Where an axes
    shows several curves, each note starts with its curve's legend label (runs and tags share the red)."""
    series = list(series)
    placed: list[tuple[Axes, float, bool]] = []
    shown: dict[Axes, int] = {}
    for s in series:
        shown[s.ax] = shown.get(s.ax, 0) + (s.curve is not None)
    notes = [s for s in series if s.note.get_text()]
    for s in notes:
        if shown[s.ax] > 1:
            s.note.set_text(f"{s.smooth.get_label()}: {s.note.get_text()}")
    for s in sorted(notes, key=lambda s: float(s.note.xy[0])):
        x0, x1 = s.ax.get_xlim()
        mx, my = s.note.xy
        right, top = (mx - x0) > 0.5 * (x1 - x0), my > 0.5
        near = sum(1 for ax, x, t in placed if ax is s.ax and t == top and abs(mx - x) < 0.3 * (x1 - x0))
        placed.append((s.ax, float(mx), top))
        shift = NOTE_STEP * near
        s.note.set_horizontalalignment("right" if right else "left")
        s.note.set_position((-4 if right else 4, -12 - shift if top else 6 + shift))
