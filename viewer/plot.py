"""Figure building and updating: artists are created once per (run, tag), then updated with set_data.

``LossPlot.update(curves)`` is the only entry point for data; after drawing it hands the figure to an
``Output`` (a file written atomically, a GUI canvas, or a fake in tests). Long series are decimated to the
axes' pixel width keeping every pixel column's min and max, and re-decimated at full resolution for the
visible x range whenever it changes (zooming in a window).
"""

from __future__ import annotations

import math
import os
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.dates as mdates
import matplotlib.patheffects as patheffects
import matplotlib.ticker as mticker
import matplotlib.transforms as mtransforms
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.gridspec import GridSpec
from matplotlib.lines import Line2D

from lossfmt import transforms
from lossview.data import FEW_POINTS, Curve, View

FORMATS = ("png", "svg", "pdf")
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
LINESTYLES = ("-", "--", ":", "-.", (0, (5, 1, 1, 1)), (0, (1, 3)))
NONFINITE_COLOR = "#d62728"
RAW_WIDTH, RAW_ALPHA = 0.6, 0.25  # the raw curve: faint context
BOLD_WIDTH = 1.5  # the smoothed (or only) curve


class Output(ABC):
    """Where the figure goes after each update (the seam tests replace with a fake)."""

    @abstractmethod
    def refresh(self, fig: Figure) -> None:
        """Make the current state of ``fig`` visible (write a file, schedule a canvas draw, ...)."""


class FileOutput(Output):
    """Render to PNG/SVG/PDF; each render replaces the file atomically (temp file + os.replace)."""

    def __init__(self, path: str | os.PathLike[str], *, dpi: int = 150) -> None:
        self.path = Path(path)
        self.format = self.path.suffix.lower().lstrip(".")
        if self.format not in FORMATS:
            raise ValueError(f"{self.path}: output must end in .png, .svg or .pdf")
        self.dpi = dpi
        self.renders = 0

    def refresh(self, fig: Figure) -> None:
        directory = self.path.parent if str(self.path.parent) else Path(".")
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "wb") as fh:
                fig.savefig(fh, format=self.format, dpi=self.dpi)
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self.renders += 1


class NoOutput(Output):
    """Nothing to do: the caller shows or saves the figure itself (notebooks, ``lossview.figure``)."""

    def refresh(self, fig: Figure) -> None:
        pass


class CanvasOutput(Output):
    """An interactive canvas (window or WebAgg): ask for a redraw at the GUI's next idle moment."""

    def refresh(self, fig: Figure) -> None:
        fig.canvas.draw_idle()


@dataclass
class _Series:
    """The artists of one (run, tag) and the full-resolution data behind them."""

    ax: Axes
    raw: Line2D
    smooth: Line2D
    marks: Line2D
    note: object
    band: object = None
    full: dict[Line2D, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    band_data: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    drawn: dict[Line2D, tuple] = field(default_factory=dict)
    version: int = 0


@dataclass(frozen=True)
class Style:
    """Figure-level options from the command line."""

    split: bool = False
    compare: bool = False
    logy: bool = False
    ylim: tuple[float, float] | None = None
    title: str | None = None
    width: float = 8.0
    height: float = 4.5


class LossPlot:
    """A loss figure that grows in place: new (run, tag) series add artists, known ones get set_data."""

    def __init__(self, fig: Figure, view: View, style: Style, output: Output) -> None:
        self.fig, self.view, self.style, self.output = fig, view, style, output
        self.axes: dict[str, Axes] = {}
        self.series: dict[tuple[str, str], _Series] = {}
        self._colors: dict[str, str] = {}
        self._styles: dict[str, object] = {}
        self._runs: list[str] = []
        self._x_scale = 1.0
        self._busy = False
        self._legend_keys: dict[Axes, tuple] = {}
        self.updates = 0

    # ------------------------------------------------------------------------------------------ public

    def update(self, curves: Sequence[Curve]) -> None:
        """Show exactly ``curves`` (series absent from it are emptied), then refresh the output."""
        for c in curves:
            if c.run not in self._runs:
                self._runs.append(c.run)
        self._x_scale, unit = self._time_unit(curves)
        seen = set()
        for c in curves:
            s = self.series.get(c.key) or self._add(c)
            self._set(s, c)
            seen.add(c.key)
        for key, s in self.series.items():
            if key not in seen:
                self._set_empty(s)
        for ax in self.axes.values():
            self._label(ax, unit)
            self._legend(ax)
            self._decimate_view(ax, everything=True)  # limits must see every min and max
            ax.relim()
            ax.autoscale_view()
            self._decimate_view(ax)
        for s in self.series.values():
            self._place_note(s)
        if self.style.title:
            self.fig.suptitle(self.style.title)
        elif self._runs and not self.style.compare:
            self.fig.suptitle(self._runs[0])
        elif self._runs:
            self.fig.suptitle(f"{len(self._runs)} runs")
        self.updates += 1
        self.output.refresh(self.fig)

    def visible(self, key: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
        """The (x, y) currently drawn for a series' main (smoothed, else raw) line."""
        s = self.series[key]
        line = s.smooth if s.smooth.get_visible() else s.raw
        return np.asarray(line.get_xdata(), dtype=float), np.asarray(line.get_ydata(), dtype=float)

    # ------------------------------------------------------------------------------------------ layout

    def _axes_for(self, tag: str) -> Axes:
        name = tag if self.style.split else ""
        ax = self.axes.get(name)
        if ax is not None:
            return ax
        n = len(self.axes) + 1
        if self.style.split:
            self.fig.set_size_inches(self.style.width, max(self.style.height, 0.6 + 2.4 * n))
        gs = GridSpec(n, 1, figure=self.fig)
        for i, existing in enumerate(self.axes.values()):
            existing.set_subplotspec(gs[i, 0])
        first = next(iter(self.axes.values()), None)
        ax = self.fig.add_subplot(gs[n - 1, 0], sharex=first)
        self.axes[name] = ax
        ax.grid(True, which="major", alpha=0.3, linewidth=0.6)
        ax.spines[["top", "right"]].set_visible(False)
        if self.style.logy:
            ax.set_yscale("log")
        if self.style.ylim:
            ax.set_ylim(*self.style.ylim)
            ax.set_autoscaley_on(False)
        if self.view.x == "step":  # 200k, 1.5M rather than an offset like "1e7"
            ax.xaxis.set_major_formatter(mticker.EngFormatter(sep=""))
        if self.view.x == "time":
            locator = mdates.AutoDateLocator()
            ax.xaxis.set_major_locator(locator)
            ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        if self.style.split:
            ax.set_title(tag, loc="left", fontsize="medium")
            for other in self.axes.values():
                if other is not ax:
                    other.tick_params(labelbottom=False)
                    other.set_xlabel("")
        ax.callbacks.connect("xlim_changed", self._on_xlim)
        return ax

    def _label(self, ax: Axes, unit: str) -> None:
        last = list(self.axes.values())[-1]
        if ax is last:
            ax.set_xlabel(
                {"step": "step", "epoch": "epoch", "time": "wall time (UTC)"}.get(
                    self.view.x, f"time since start ({unit})"
                )
            )
        tags = {t for (_, t) in self.series if (self.axes.get(t if self.style.split else "") is ax)}
        ylabel = next(iter(tags)) if len(tags) == 1 else "value"
        if self.view.normalize == "per-item":
            ylabel += " (per item)"
        if self.view.per is not None:
            ylabel += (
                " (mean per epoch)" if self.view.per == "epoch" else f" (mean per {self.view.per} steps)"
            )
        ax.set_ylabel(ylabel)

    def _legend(self, ax: Axes) -> None:
        handles = [s.smooth if s.smooth.get_visible() else s.raw for s in self.series.values() if s.ax is ax]
        labels = tuple(h.get_label() for h in handles)
        # The handles' style is part of the key: a line that gained or lost its markers needs a new legend.
        key = tuple((id(h), h.get_label(), h.get_marker(), h.get_alpha()) for h in handles)
        if self._legend_keys.get(ax) == key:
            return
        self._legend_keys[ax] = key
        if len(handles) <= 1 and not self.style.compare:
            if ax.get_legend():
                ax.get_legend().remove()
            return
        kw = {"frameon": True, "framealpha": 0.85, "fontsize": "small", "handlelength": 2.5}
        if len(handles) > 8:
            ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, **kw)
        else:
            ax.legend(handles, labels, loc="best", **kw)

    # ----------------------------------------------------------------------------------------- artists

    def _color(self, c: Curve) -> str:
        key = c.run if self.style.compare else c.tag
        if key not in self._colors:
            self._colors[key] = COLORS[len(self._colors) % len(COLORS)]
        return self._colors[key]

    def _linestyle(self, c: Curve) -> object:
        if not self.style.compare or self.style.split:
            return "-"
        if c.tag not in self._styles:
            self._styles[c.tag] = LINESTYLES[len(self._styles) % len(LINESTYLES)]
        return self._styles[c.tag]

    def _add(self, c: Curve) -> _Series:
        ax = self._axes_for(c.tag)
        color, ls = self._color(c), self._linestyle(c)
        label = (c.run if self.style.split else f"{c.run}: {c.tag}") if self.style.compare else c.tag
        raw = Line2D([], [], color=color, linewidth=RAW_WIDTH, alpha=RAW_ALPHA, linestyle=ls, zorder=2)
        smooth = Line2D([], [], color=color, linewidth=BOLD_WIDTH, linestyle=ls, label=label, zorder=3)
        ax.add_line(raw)
        ax.add_line(smooth)
        top = mtransforms.blended_transform_factory(ax.transData, ax.transAxes)
        marks = Line2D(
            [],
            [],
            transform=top,
            linestyle="none",
            marker="x",
            markersize=7,
            markeredgewidth=1.8,
            color=NONFINITE_COLOR,
            clip_on=False,
            zorder=5,
        )
        ax.add_line(marks)
        marks.set_in_layout(False)
        note = ax.annotate(
            "",
            xy=(0, 0.97),
            xycoords=top,
            xytext=(4, -12),
            textcoords="offset points",
            fontsize="x-small",
            color=NONFINITE_COLOR,
            annotation_clip=False,
        )
        note.set_in_layout(False)
        s = _Series(ax, raw, smooth, marks, note)
        self.series[c.key] = s
        return s

    def _set(self, s: _Series, c: Curve) -> None:
        x = c.x if self._x_scale == 1.0 else c.x / self._x_scale
        has_smooth = c.smoothed is not None
        s.version += 1
        s.full = {s.raw: (x, c.y)}
        if has_smooth:
            s.full[s.smooth] = (x, c.smoothed)
        main = s.smooth if has_smooth else s.raw
        s.smooth.set_visible(has_smooth)
        s.raw.set_label(s.smooth.get_label() if not has_smooth else "_raw")
        s.raw.set_alpha(RAW_ALPHA if has_smooth else 1.0)
        s.raw.set_linewidth(RAW_WIDTH if has_smooth else BOLD_WIDTH)
        s.raw.set_zorder(2 if has_smooth else 3)
        few = 1 <= len(x) <= FEW_POINTS
        if has_smooth:  # a growing series switches its main line from raw to smoothed: plain raw line again
            s.raw.set_marker("None")
            s.raw.set_path_effects([])
        main.set_marker("o" if few else "None")
        main.set_markersize(4.0)
        main.set_markeredgecolor("white")
        main.set_markeredgewidth(0.6)
        # Sparse (validation) curves sit on top of dense ones, with a white halo to stand out from them.
        main.set_zorder(4 if few else 3)
        main.set_path_effects(
            [patheffects.withStroke(linewidth=BOLD_WIDTH + 1.6, foreground="white", alpha=0.9)] if few else []
        )
        self._set_band(s, x, c)
        self._set_nonfinite(s, x, c)

    def _set_empty(self, s: _Series) -> None:
        empty = np.empty(0)
        s.version += 1
        s.full = {s.raw: (empty, empty), s.smooth: (empty, empty)}
        s.marks.set_data([], [])
        s.note.set_text("")
        s.band_data = None
        if s.band is not None:
            s.band.set_visible(False)

    def _set_band(self, s: _Series, x: np.ndarray, c: Curve) -> None:
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

    def _set_nonfinite(self, s: _Series, x: np.ndarray, c: Curve) -> None:
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
        s.note.set_text(f"{kind} at step {int(c.step[first])}{more}")

    @staticmethod
    def _place_note(s: _Series) -> None:
        """Keep a non-finite note inside the axes: left of its mark when the mark is in the right half."""
        if not s.note.get_text():
            return
        x0, x1 = s.ax.get_xlim()
        mx, my = s.note.xy
        right = (mx - x0) > 0.5 * (x1 - x0)
        s.note.set_horizontalalignment("right" if right else "left")
        s.note.set_position((-4 if right else 4, -12 if my > 0.5 else 6))

    # -------------------------------------------------------------------------------------- decimation

    def _on_xlim(self, ax: Axes) -> None:
        if not self._busy:
            for other in ax.get_shared_x_axes().get_siblings(ax):
                self._decimate_view(other)

    def _decimate_view(self, ax: Axes, *, everything: bool = False) -> None:
        """Draw the visible x range of every series on ``ax`` at screen resolution (min+max per pixel)."""
        self._busy = True
        try:
            x0, x1 = (-np.inf, np.inf) if everything else sorted(ax.get_xlim())
            bins = max(int(ax.bbox.width), 100)
            for s in self.series.values():
                if s.ax is not ax:
                    continue
                for line, (x, y) in s.full.items():
                    window = _window(x, x0, x1)
                    key = (s.version, window, bins)
                    if s.drawn.get(line) == key:  # same data, same range: nothing to redo
                        continue
                    s.drawn[line] = key
                    line.set_data(*_visible(x, y, window, bins))
                if s.band is not None and s.band_data is not None:
                    bx, lo, hi = _envelope(*s.band_data, x0, x1, bins)
                    s.band.set_data(bx, lo, hi)
        finally:
            self._busy = False

    def _time_unit(self, curves: Sequence[Curve]) -> tuple[float, str]:
        """Scale for x: days for --x time (matplotlib dates), s/min/h for --x relative, 1 otherwise."""
        if self.view.x == "time":
            return 86400.0, "days"
        if self.view.x != "relative":
            return 1.0, ""
        span = max((float(np.nanmax(c.x)) for c in curves if len(c.x)), default=0.0)
        if span > 2 * 3600:
            return 3600.0, "h"
        if span > 120:
            return 60.0, "min"
        return 1.0, "s"


def _window(x: np.ndarray, x0: float, x1: float) -> tuple[int, int]:
    """Index range of the points inside [x0, x1] plus one point each side (lines leave the axes cleanly)."""
    i0 = max(_search(x, x0, "left") - 1, 0)
    i1 = min(_search(x, x1, "right") + 1, len(x))
    return i0, i1


def _search(x: np.ndarray, bound: float, side: str) -> int:
    """``np.searchsorted(x, bound, side)`` for sorted x; integer x (steps) is searched with the integer
    bound of the same meaning, as numpy would otherwise convert all of x to float for a float bound."""
    if x.dtype.kind not in "iu" or not len(x):
        return int(np.searchsorted(x, bound, side=side))
    if bound < x[0] or (side == "left" and bound == x[0]):  # every element is at or above it
        return 0
    if bound > x[-1] or (side == "right" and bound == x[-1]):
        return len(x)
    edge = math.ceil(bound) if side == "left" else math.floor(bound)  # within x's range: no overflow
    return int(np.searchsorted(x, x.dtype.type(edge), side=side))


def _visible(
    x: np.ndarray, y: np.ndarray, window: tuple[int, int], bins: int
) -> tuple[np.ndarray, np.ndarray]:
    """The points of ``window``, min/max decimated to ``bins`` pixel columns when there are more."""
    xs, ys = x[window[0] : window[1]], y[window[0] : window[1]]
    if len(xs) <= 2 * bins:
        return xs, ys
    return transforms.decimate(xs, ys, bins)


def _envelope(
    x: np.ndarray, lo: np.ndarray, hi: np.ndarray, x0: float, x1: float, bins: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A band reduced to ``bins`` columns: the lowest ``lo`` and highest ``hi`` of each column."""
    if len(x) <= 2 * bins:
        return x, lo, hi
    i0, i1 = _window(x, x0, x1)
    x, lo, hi = x[i0:i1], lo[i0:i1], hi[i0:i1]
    if len(x) <= 2 * bins:
        return x, lo, hi
    edges = np.linspace(x[0], x[-1], bins + 1)[:-1]
    if x.dtype.kind in "iu":  # the first integer at or above each edge (a float edge would convert all of x)
        edges = np.ceil(edges).astype(x.dtype)
    edges = np.searchsorted(x, edges, side="left")
    edges = np.unique(edges)
    return x[edges], np.fmin.reduceat(lo, edges), np.fmax.reduceat(hi, edges)
