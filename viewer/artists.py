"""The artists of one (run, tag) curve in a ``LossPlot``: its raw and smoothed lines, its band, and the
marks and note that show where its values are non-finite (created once, then updated in place); and the
entries of a comparison's compact legend (one per run, one per tag).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import matplotlib.patheffects as patheffects
import matplotlib.transforms as mtransforms
import numpy as np
from matplotlib.axes import Axes
from matplotlib.collections import PathCollection
from matplotlib.font_manager import FontProperties
from matplotlib.lines import Line2D
from matplotlib.markers import MarkerStyle
from matplotlib.textpath import TextToPath

from lossfmt import transforms
from lossview.view import Curve, View

if TYPE_CHECKING:
    from matplotlib.artist import Artist
    from matplotlib.collections import FillBetweenPolyCollection
    from matplotlib.text import Annotation
    from matplotlib.typing import LineStyleType

#: tab10 with red moved last: red marks non-finite values.
COLORS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#bcbd22",
    "#7f7f7f",
    "#d62728",
)
LINESTYLES: tuple[LineStyleType, ...] = ("-", "--", ":", "-.", (0, (5, 1, 1, 1)), (0, (1, 3)))
#: The marker of each round of COLORS: the first ten curves mark short curves only ("o"), later rounds
#: mark every curve along its line, so no two drawn curves look alike. The later runs of a ``--label``
#: group (one colour) take the markers after their round's.
ROUND_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
#: Markers along a long line of a shape (markevery: its drawn points over this).
ROUND_MARKS = 14
NONFINITE_COLOR = "#d62728"
#: Points between the lines of non-finite notes stacked because their marks are close.
NOTE_STEP = 10
RAW_WIDTH, RAW_ALPHA = 0.6, 0.25  # the raw curve: faint context
BOLD_WIDTH = 1.5  # the smoothed (or only) curve
#: Where non-finite marks sit (axes fraction): NaN and +inf at the top, -inf at the bottom.
TOP, BOTTOM = 0.97, 0.03
_TEXT = TextToPath()  # text widths without a renderer


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
    #: Triangles beside the marks of +inf (above) and -inf (below): a bare mark is NaN.
    infinite: tuple[PathCollection, PathCollection]
    band: FillBetweenPolyCollection | None = None
    full: dict[Line2D, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    band_data: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    #: What each line shows now: (version, index window, bins), to skip redrawing the same.
    drawn: dict[Line2D, tuple[int, tuple[int, int], int]] = field(default_factory=dict)
    version: int = 0
    curve: Curve | None = None
    key: tuple[str, str] = ("", "")
    #: Its marker along the line (ROUND_MARKERS; 0: none, dots on a short curve): its round of COLORS (0 for
    #: the first ten), after it the run's place in its --label group.
    shape: int = 0

    @property
    def main(self) -> Line2D:
        """The line the legend shows: the smoothed one, or the raw one when nothing is smoothed."""
        return self.smooth if self.curve is not None and self.curve.smoothed is not None else self.raw


def new(ax: Axes, key: tuple[str, str], style: tuple[str, LineStyleType, int], label: str) -> SeriesArtists:
    """Add a curve's (still empty) artists to ``ax``, of ``style`` (colour, line style, shape)."""
    color, linestyle, shape = style
    raw = Line2D([], [], color=color, linewidth=RAW_WIDTH, alpha=RAW_ALPHA, linestyle=linestyle, zorder=2)
    smooth = Line2D([], [], color=color, linewidth=BOLD_WIDTH, linestyle=linestyle, label=label, zorder=3)
    ax.add_line(raw)
    ax.add_line(smooth)
    top = mtransforms.blended_transform_factory(ax.transData, ax.transAxes)
    marks = Line2D([], [], transform=top, linestyle="none", marker="x", markersize=7, markeredgewidth=1.8,
                   color=NONFINITE_COLOR, clip_on=False, zorder=5)  # fmt: skip
    ax.add_line(marks)
    marks.set_in_layout(False)
    note = ax.annotate("", xy=(0, TOP), xycoords=top, xytext=(4, -12), textcoords="offset points",
                       fontsize="x-small", color=NONFINITE_COLOR, annotation_clip=False,
                       bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none",
                             "alpha": 0.8},
                       arrowprops={"arrowstyle": "-", "color": NONFINITE_COLOR, "linewidth": 0.6,
                                   "shrinkA": 0, "shrinkB": 4})  # fmt: skip
    note.set_in_layout(False)
    unfinished = Line2D([], [], linestyle="none", marker="o", markersize=8, markerfacecolor="white",
                        markeredgecolor=color, markeredgewidth=1.6, zorder=6)  # fmt: skip
    ax.add_line(unfinished)
    infinite = (_triangles(ax, top, "^", 7.0), _triangles(ax, top, "v", -7.0))
    return SeriesArtists(ax, raw, smooth, marks, note, unfinished, infinite, key=key, shape=shape)


def _triangles(ax: Axes, transform: mtransforms.Transform, marker: str, dy: float) -> PathCollection:
    """Red triangles ``dy`` points from where they are placed (beside a non-finite mark, towards the edge
    the value went to); a collection, not a line: the axes' lines stay the curves' own."""
    style = MarkerStyle(marker)
    path = style.get_path().transformed(
        style.get_transform() + mtransforms.Affine2D().scale(5).translate(0, dy)
    )
    triangles = PathCollection(
        [path], sizes=[1.0], offsets=np.empty((0, 2)), offset_transform=transform,
        facecolors=NONFINITE_COLOR, edgecolors="none", clip_on=False, zorder=5,
    )  # fmt: skip
    triangles.set_transform(mtransforms.IdentityTransform())  # path in points (sizes=1: points to pixels)
    ax.add_collection(triangles, autolim=False)
    triangles.set_in_layout(False)
    return triangles


def overlays(s: SeriesArtists) -> list[Artist]:
    """The curve's artists other than its lines and band: shown and hidden with it."""
    return [s.marks, *s.infinite, s.note, s.unfinished]


def set_lines(s: SeriesArtists, x: np.ndarray, c: Curve, few: bool) -> None:
    """The curve's data and its lines' look: a faint raw line under a bold smoothed one, or the raw line
    bold; markers on short curves (``few``) and on every curve of a shape (past the first round of colours,
    a --label group's later runs)."""
    has_smooth = c.smoothed is not None
    s.version += 1
    s.curve = c
    s.full = {s.raw: (x, c.y)}
    if c.smoothed is not None:  # has_smooth
        s.full[s.smooth] = (x, c.smoothed)
    main = s.main
    s.raw.set_label(s.smooth.get_label() if not has_smooth else "_raw")
    s.raw.set_alpha(RAW_ALPHA if has_smooth else 1.0)
    s.raw.set_linewidth(RAW_WIDTH if has_smooth else BOLD_WIDTH)
    s.raw.set_zorder(2 if has_smooth else 3)
    if has_smooth:  # a growing series switches its main line from raw to smoothed: plain raw line again
        s.raw.set_marker("None")
        s.raw.set_path_effects([])
    main.set_marker(ROUND_MARKERS[s.shape % len(ROUND_MARKERS)] if few or s.shape else "None")
    main.set_markersize(4.0)
    main.set_markeredgecolor("white")
    main.set_markeredgewidth(0.6)
    # Sparse (validation) curves sit on top of dense ones, with a white halo to stand out from them.
    main.set_zorder(4 if few else 3)
    main.set_path_effects(
        [patheffects.withStroke(linewidth=BOLD_WIDTH + 1.6, foreground="white", alpha=0.9)] if few else []
    )


def set_markevery(s: SeriesArtists, line: Line2D, drawn: int) -> None:
    """A shape's markers along its main line (``drawn`` points now): about ROUND_MARKS of them."""
    if s.shape and line is s.main:
        line.set_markevery(max(1, drawn // ROUND_MARKS))


def set_empty(s: SeriesArtists) -> None:
    """Show nothing (the curve left the picture); the artists stay for when it comes back."""
    empty = np.empty(0)
    s.version += 1
    s.curve = None
    s.full = {s.raw: (empty, empty), s.smooth: (empty, empty)}
    s.marks.set_data([], [])
    for triangles in s.infinite:
        triangles.set_offsets(np.empty((0, 2)))
    _set_note(s, "")
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
    """Mark where each stretch of non-finite values starts (a diverged run is one mark, not thousands):
    NaN and +inf at the top of the axes, -inf at the bottom, an infinity with a triangle towards its edge.
    The note names the first mark, with a leader line to it."""
    bad = np.empty(0, np.intp) if transforms.all_finite(c.y) else np.flatnonzero(~np.isfinite(c.y))
    kind = np.where(np.isnan(c.y[bad]), 0, np.sign(c.y[bad]))  # a new mark where the kind changes too
    starts = bad[np.r_[True, (np.diff(bad) > 1) | (np.diff(kind) != 0)]] if len(bad) else bad
    if len(bad) and bad[-1] == len(c.y) - 1 and starts[-1] != bad[-1]:
        starts = np.append(starts, bad[-1])  # a run ending non-finite: the axes reach its last point
    y = np.where(c.y[starts] == -np.inf, BOTTOM, TOP)
    s.marks.set_data(x[starts], y)
    for triangles, sign in zip(s.infinite, (np.inf, -np.inf), strict=True):
        at = c.y[starts] == sign
        triangles.set_offsets(np.column_stack([x[starts][at], y[at]]))
    if not len(bad):
        _set_note(s, "")
        return
    first = bad[0]
    more = f" ({len(bad):,} non-finite)" if len(bad) > 1 else ""
    _set_note(s, f"{_kind(float(c.y[first]))} at {_where(c, first, view)}{more}", (x[first], y[0]))


def _set_note(s: SeriesArtists, text: str, xy: tuple[float, float] | None = None) -> None:
    """The note's text, and the mark its leader line points to (no line without a text)."""
    s.note.set_text(text)
    if xy is not None:
        s.note.xy = xy
    if s.note.arrow_patch is not None:
        s.note.arrow_patch.set_visible(bool(text))


def _kind(v: float) -> str:
    """How a note names a non-finite value."""
    return "NaN" if np.isnan(v) else ("+inf" if v > 0 else "-inf")


def _where(c: Curve, i: int, view: View) -> str:
    """Where value ``i`` of ``c`` was logged: its step, and its epoch where x does not show the step."""
    step = c.step if c.event_step is None else c.event_step
    where = f"step {int(step[i]):,}"
    if c.bucket is not None:  # per epoch: the mark is at its epoch's end, the step inside it
        where += f" (epoch {int(c.bucket[i])})"
    elif view.x == "epoch" and view.per is None:  # x is the event's own (fractional) epoch
        where += f" (epoch {float(c.x[i]):g})"
    return where


def nonfinite_key(series: Iterable[SeriesArtists]) -> str | None:
    """What the non-finite marks drawn mean, for the legend (only the kinds drawn), or None."""
    counts = [
        (np.size(s.marks.get_xdata()), *(len(np.asarray(t.get_offsets())) for t in s.infinite))
        for s in series
    ]
    nan = any(marks > up + down for marks, up, down in counts)
    up, down = (any(c[i] for c in counts) for i in (1, 2))
    words = [w for w, shown in (("× NaN", nan), ("×▲ +inf", up), ("×▼ -inf", down)) if shown]
    return ", ".join(words) or None


def text_width(text: str, size: str) -> float:
    """The width of ``text`` in points at font ``size``, without a renderer."""
    return float(_TEXT.get_text_width_height_descent(text, FontProperties(size=size), ismath=False)[0])


def place_notes(series: Iterable[SeriesArtists]) -> None:
    """Keep non-finite notes inside the axes (right of their mark, left where the text would leave the
    axes), and stack notes whose marks are close on one axes edge, so their texts never overprint. Where
    an axes shows several curves, each note starts with its curve's legend label (they share the red)."""
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
        width = s.ax.bbox.width * 72 / s.ax.figure.dpi  # points; before the layout, a little wider
        right = (mx - x0) / (x1 - x0) * width + 14 + text_width(s.note.get_text(), "x-small") > width
        top = my > 0.5
        near = sum(1 for ax, x, t in placed if ax is s.ax and t == top and abs(mx - x) < 0.3 * (x1 - x0))
        placed.append((s.ax, float(mx), top))
        shift = NOTE_STEP * near
        s.note.set_horizontalalignment("right" if right else "left")
        s.note.set_position((-10 if right else 10, -16 - shift if top else 10 + shift))


def compact_legend(
    mine: list[tuple[tuple[str, str], SeriesArtists]],
) -> tuple[list[Line2D], list[str], list[list[tuple[str, str]]]]:
    """A comparison's legend as one entry per run (its colour and marker) and one per tag (its line style, in
    grey), with the series keys each entry toggles: 9 runs x 2 tags are 11 entries, not 18."""
    runs: dict[str, list[tuple[str, str]]] = {}
    tags: dict[str, list[tuple[str, str]]] = {}
    look: dict[str, Line2D] = {}
    for key, s in mine:
        runs.setdefault(key[0], []).append(key)
        tags.setdefault(key[1], []).append(key)
        look.setdefault(key[0], s.main)
        look.setdefault("\0" + key[1], s.main)
    handles = [
        Line2D([], [], color=look[r].get_color(), marker=look[r].get_marker(), markersize=4) for r in runs
    ]
    handles += [Line2D([], [], color="0.35", linestyle=look["\0" + t].get_linestyle()) for t in tags]
    return handles, [*runs, *tags], [*runs.values(), *tags.values()]
