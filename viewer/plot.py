"""Figure building and updating: artists are created once per (run, tag), then updated with set_data.

``LossPlot.update(curves)`` is the only entry point for data; after drawing it hands the figure to an
``Output`` (a file written atomically, a GUI canvas, or a fake in tests). Long series are decimated to the
axes' pixel width keeping every pixel column's min and max, and re-decimated at full resolution for the
visible x range whenever it changes (zooming in a window).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.gridspec import GridSpec
from matplotlib.lines import Line2D

from lossview import artists, captions, panels, screen, ticks
from lossview.artists import COLORS, LINESTYLES, SeriesArtists
from lossview.labels import group_member
from lossview.output import CanvasOutput, FileOutput, NoOutput, Output
from lossview.tables import logy_hidden
from lossview.view import FEW_POINTS, Curve, View

if TYPE_CHECKING:
    from matplotlib.artist import Artist
    from matplotlib.typing import LineStyleType

__all__ = ["COLORS", "CanvasOutput", "FileOutput", "LossPlot", "NoOutput", "Output", "Style"]

#: The most of the figure's width a legend beside the axes takes (more entries: the first, and a count).
LEGEND_SHARE = 0.42


#: The widest y range drawn: +-_EDGE spans a finite float64 (values beyond are drawn at the edge).
_EDGE = 4e307


@dataclass(frozen=True)
class Style:
    """Figure-level options from the command line."""

    split: bool = False
    #: The arguments compare runs (lossview.sources.compared): the picture does while it draws several.
    compare: bool = False
    logy: bool = False
    ylim: tuple[float, float] | None = None
    title: str | None = None
    width: float = 8.0
    height: float = 4.5
    #: --x time in the local time zone instead of UTC.
    local_time: bool = False
    #: Tags of very different scales on panels of their own (lossview.panels); False: ``--one-axes``.
    panels: bool = True
    #: ``--size`` given: the figure stays width x height; else its height grows for a second panel.
    fixed_size: bool = False


class LossPlot:
    """A loss figure that grows in place: new (run, tag) series add artists, known ones get set_data."""

    def __init__(self, fig: Figure, view: View, style: Style, output: Output) -> None:
        self.fig, self.view, self.style, self.output = fig, view, style, output
        self.axes: dict[str, Axes] = {}
        self.series: dict[tuple[str, str], SeriesArtists] = {}
        self._slots: dict[str, int] = {}  # a run's (or --label group's) place in COLORS, first come
        self._members: dict[str, dict[str, int]] = {}  # --label group -> its runs' marks, first come
        self._compare = style.compare  # runs compared now (a colour each, named in the legend)
        self._panel_of: dict[str, str] = {}  # tag -> its panel (lossview.panels.layout)
        self._runs: list[str] = []
        self._x_scale = 1.0
        self._busy = False
        self._legend_keys: dict[Axes, tuple[object, ...]] = {}
        self._fixed: set[Axes] = set()  # the axes --ylim fixed
        #: Series hidden by a click on their legend entry (they stay hidden as the run grows).
        self.hidden: set[tuple[str, str]] = set()
        #: Legend entries (handles) -> the series key they toggle; rebuilt with each legend.
        self.legend_entries: dict[Artist, tuple[str, str]] = {}
        #: Entries of a compact legend (a run, or a tag) -> the series keys they toggle together.
        self.legend_groups: dict[Artist, list[tuple[str, str]]] = {}
        #: Series already warned about values a log axis cannot show (once each, also while following).
        self._warned_logy: set[tuple[str, str]] = set()

    # ------------------------------------------------------------------------------------------ public

    def update(self, curves: Sequence[Curve]) -> None:
        """Show exactly ``curves`` (series absent from it are emptied), then refresh the output."""
        self._runs = list(dict.fromkeys(c.run for c in curves))  # a run that left a followed directory goes
        # One run drawn looks as it does alone, however many the arguments could name (a directory)
        compare = self.style.compare and (len(self._runs) > 1 or self.view.mean_runs)
        if compare != self._compare:
            self._compare = compare
            self._reset()
        self._x_scale, unit = captions.time_unit(self.view, curves)
        # Markers for a tag's series only when all of them are short: runs of one comparison look alike.
        long_tags = {c.tag for c in curves if len(c.x) > FEW_POINTS}
        if self.style.panels and not self.style.split:
            curves = self._place(curves)
        seen = set()
        for c in curves:
            s = self.series.get(c.key) or self._add(c)
            self._set(s, c, len(c.x) >= 1 and c.tag not in long_tags)
            seen.add(c.key)
            if self.style.logy:
                self._warn_logy(c)
        for key, s in self.series.items():
            if key not in seen:
                artists.set_empty(s)
        self._fix_ylim(curves)
        for ax in self.axes.values():
            self._label(ax, unit)
            self._legend(ax)
            self._decimate_view(ax, everything=True)  # limits must see every min and max
            ax.relim()
            if ticks.no_positive(ax) and ax.get_autoscaley_on():  # (matplotlib warns at each autoscale
                ax.set_ylim(1, 10, auto=None)  # and draw of one: a decade instead, _warn_logy said why)
                ax.autoscale_view(scaley=False)
            else:
                with np.errstate(over="ignore", invalid="ignore"):  # (its margins of a +-1e308 range)
                    ax.autoscale_view()
            lo, hi = map(float, ax.get_ylim())
            if not math.isfinite(hi - lo):  # values across float64's range (+-1e308): matplotlib cannot tick
                ax.set_ylim(max(lo, -_EDGE), min(hi, _EDGE), auto=None)  # that span; the rest on the edge
            self._decimate_view(ax)
        self.fig.align_ylabels(list(self.axes.values()))
        artists.place_notes(self.series.values())
        if self.style.title is not None:  # (--title '': no title)
            self.fig.suptitle(self.style.title)
        elif self._runs and not self._compare:
            self.fig.suptitle(self._runs[0])
        else:
            n = len(self._runs)
            self.fig.suptitle(f"{n} run{'' if n == 1 else 's'}" if n else "")
        self.output.refresh(self.fig)

    def toggle(self, key: tuple[str, str]) -> None:
        """Hide a shown series or show a hidden one (a click on its legend entry), then refresh."""
        self.toggle_all([key])

    def toggle_all(self, keys: Sequence[tuple[str, str]]) -> None:
        """Hide the series `keys` (a run's or a tag's entry in a compact legend), or show them if all are
        hidden, then refresh."""
        self.hidden = (self.hidden - set(keys)) if set(keys) <= self.hidden else (self.hidden | set(keys))
        for k in keys:
            self._show(self.series[k])
        for handle, k in self.legend_entries.items():
            handle.set_alpha(0.25 if k in self.hidden else 1.0)
        for handle, ks in self.legend_groups.items():
            handle.set_alpha(0.25 if set(ks) <= self.hidden else 1.0)
        self.output.refresh(self.fig)

    def x_scale(self) -> float:
        """What curve x positions are divided by on the axes (days for wall time, minutes or hours)."""
        return self._x_scale

    # ------------------------------------------------------------------------------------------ layout

    def _axes_for(self, tag: str) -> Axes:
        name = tag if self.style.split else self._panel_of.get(tag, "")
        ax = self.axes.get(name)
        if ax is not None:
            return ax
        n = len(self.axes) + 1
        if n > 1 and not self.style.fixed_size:
            self.fig.set_size_inches(self.style.width, max(self.style.height, 0.6 + 2.4 * n))
        gs = GridSpec(n, 1, figure=self.fig)
        for i, existing in enumerate(self.axes.values()):
            existing.set_subplotspec(gs[i, 0])
        first = next(iter(self.axes.values()), None)
        ax = self.fig.add_subplot(gs[n - 1, 0], sharex=first)
        self.axes[name] = ax
        ax.grid(True, which="major", alpha=0.3, linewidth=0.6)
        ax.spines[["top", "right"]].set_visible(False)
        ticks.configure(ax, self.view.x, logy=self.style.logy, local_time=self.style.local_time)
        if self.style.split:
            ax.set_title(tag, loc="left", fontsize="medium")
        if n > 1:  # (split, or a tag of another scale on its own panel: the bottom one has the x labels)
            for other in self.axes.values():
                if other is not ax:
                    other.tick_params(labelbottom=False)
                    other.set_xlabel("")
        ax.callbacks.connect("xlim_changed", self._on_xlim)
        return ax

    def _place(self, curves: Sequence[Curve]) -> list[Curve]:
        """Put each tag on its scale's panel, `curves` in panel order (the top panel's axes made first); when
        a tag changes panel (its scale known only later, a transient gone), every axes is made anew."""
        placed = panels.layout(curves)
        if any(self._panel_of.get(tag, name) != name for tag, name in placed.items()):
            self._reset()
        self._panel_of.update(placed)
        rank = {name: i for i, name in enumerate(dict.fromkeys(placed.values()))}
        return sorted(curves, key=lambda c: rank[placed[c.tag]])

    def _reset(self) -> None:
        """No axes, no artists, made anew (a tag changed panel, runs began or ceased to be compared)."""
        for ax in self.axes.values():
            ax.remove()
        self.axes.clear()
        self.series.clear()
        self._legend_keys.clear()
        self._fixed.clear()
        self.fig.set_size_inches(self.style.width, self.style.height)
        self._panel_of = {}

    def _fix_ylim(self, curves: Sequence[Curve]) -> None:
        """``--ylim`` on the axes of the tags on the loss's scale (the top panel of lossview.panels.layout,
        with --split too; the one axes with --one-axes): an lr keeps its own range. Set when an axes joins
        or leaves them, so a zoom in a followed run's window stays."""
        if not self.style.ylim:
            return
        top = {""} if not self.style.split else {t for t, name in panels.layout(curves).items() if name == ""}
        for name, ax in self.axes.items():
            fixed = not self.style.panels or name in top
            if fixed != (ax in self._fixed):
                ax.set_autoscaley_on(not fixed)
                if fixed:
                    ax.set_ylim(*self.style.ylim)
                self._fixed.symmetric_difference_update({ax})

    def _warn_logy(self, c: Curve) -> None:
        """Say once per series how many of its values a log axis leaves out (zero and negative)."""
        if c.key in self._warned_logy:
            return
        name = f"{c.run}: {c.tag}" if self._compare else c.tag
        if (note := logy_hidden(name, c.step, c.y)) is not None:
            self._warned_logy.add(c.key)
            warnings.warn(note, stacklevel=2)

    def _label(self, ax: Axes, unit: str) -> None:
        if ax is list(self.axes.values())[-1]:
            ax.set_xlabel(captions.xlabel(self.view, unit, local_time=self.style.local_time))
        tags = list(dict.fromkeys(k[1] for k, s in self.series.items() if s.ax is ax and s.curve is not None))
        room = captions.panel_height(self.fig, len(self.axes))
        ax.set_ylabel(captions.ylabel(tags, self.view, split=self.style.split, room=room))

    def _legend(self, ax: Axes) -> None:
        mine = [(k, s) for k, s in self.series.items() if s.ax is ax and s.curve is not None]
        smoothed = any(s.curve is not None and s.curve.smoothed is not None for _, s in mine)
        handles = [s.main for _, s in mine]
        labels = cast("list[str]", [h.get_label() for h in handles])  # typed object; every line has a str
        notes = []
        if smoothed:  # say what the bold and the faint lines are, and which smoothing
            notes.append(f"bold: smoothed ({self.view.smoothing()}), faint: raw")
        if any(s.band_data is not None for _, s in mine):  # what the shade spans
            spread = "min..max" if self.view.band == "minmax" else "mean ± 1 std"
            each = "across runs" if self.view.mean_runs else f"in each {captions.bucket(self.view)}"
            notes.append(f"shade: {spread} {each}")
        if any(s.curve is not None and s.curve.unfinished for _, s in mine):
            notes.append("ring: the epoch so far (not finished)")
        if marks := artists.nonfinite_key(s for _, s in mine):
            notes.append(marks)
        title = "\n".join(notes) or None  # a line each: a legend beside the axes stays narrow
        # The handles' style is part of the key: a line that gained or lost its markers needs a new legend.
        key = (title, *((id(h), h.get_label(), h.get_marker(), h.get_alpha()) for h in handles))
        if self._legend_keys.get(ax) == key:
            return
        self._legend_keys[ax] = key
        if len(handles) <= 1 and not self._compare and title is None:
            old = ax.get_legend()
            if old:
                old.remove()
            return
        kw: dict[str, Any] = {"frameon": True, "framealpha": 0.85, "handlelength": 2.5}
        kw["title"], kw["title_fontsize"] = title, "x-small"
        groups: list[list[tuple[str, str]]] = [[k] for k, _ in mine]  # what each entry's click toggles
        runs, tags = len({k[0] for k, _ in mine}), len({k[1] for k, _ in mine})
        if self._compare and tags > 1 and runs > 2:
            handles, labels, groups = artists.compact_legend(mine)  # R + T entries, not R x T
        if len(handles) > 8:  # beside the axes, in columns, as many as fit
            listed, kw["ncols"], kw["fontsize"] = self._legend_fit(labels, title)
            shown: list[Artist] = [*handles[:listed]]
            if listed < len(handles):
                shown.append(Line2D([], [], linestyle="none"))
                labels = [*labels[:listed], f"… and {len(handles) - listed} more, not listed"]
            legend = ax.legend(
                shown, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, **kw
            )
        else:
            listed = len(handles)
            legend = ax.legend(handles, labels, loc="best", fontsize="small", **kw)
        entries = zip(legend.get_lines()[:listed], legend.get_texts()[:listed], groups[:listed], strict=True)
        for entry, text, keys in entries:
            for artist in (entry, text):  # a click on the line or its label toggles the series
                artist.set_picker(5)
                artist.set_alpha(0.25 if set(keys) <= self.hidden else 1.0)
                if len(keys) == 1:
                    self.legend_entries[artist] = keys[0]
                else:
                    self.legend_groups[artist] = keys

    def _legend_fit(self, labels: list[str], title: str | None) -> tuple[int, int, str]:
        """(entries listed, columns, font size) of a legend beside the axes: every entry, in as few columns
        as the axes' height needs, a smaller font if that fits them all; the first ones (the last line
        counts the rest) where even that would take more than LEGEND_SHARE of the figure's width."""
        width = float(self.fig.get_size_inches()[0]) * 72
        room = captions.panel_height(self.fig, len(self.axes))
        if title:  # its lines, in x-small
            room -= 1.3 * FontProperties(size="x-small").get_size_in_points() * (title.count("\n") + 1)
        fit = (0, 1, "small")
        for size in ("small", "x-small"):
            pt = FontProperties(size=size).get_size_in_points()
            rows = max(1, int(room // (1.75 * pt)))  # a label and the space to the next
            text = max(artists.text_width(label, size) for label in labels)
            columns = max(1, int(LEGEND_SHARE * width // (text + 5.5 * pt)))  # handle, pads, spacing
            if len(labels) <= rows * columns:
                return len(labels), -(-len(labels) // rows), size
            fit = max(fit, (rows * columns - 1, columns, size))
        return fit

    # ----------------------------------------------------------------------------------------- artists

    def _style(self, c: Curve) -> tuple[str, LineStyleType, int]:
        """Colour, line style and marks. The colour: a run's in a comparison (first come, first served; a
        --label group's, its runs told apart by their marks), else the tag's stable one (its place in the
        order tags appeared in the files, so filtering or new tags never recolour it). The line style: the
        tag's where runs share an axes. Past ten colours, and for a group's later runs, markers along the
        line (artists.ROUND_MARKERS)."""
        slot, member = c.tag_index, 0
        if self._compare:
            slot = self._slots.setdefault(c.group or c.run, len(self._slots))
            member = group_member(c, self.view, self._members)
        by_tag = self._compare and not self.style.split
        linestyle = LINESTYLES[c.tag_index % len(LINESTYLES)] if by_tag else "-"
        rounds = slot // len(COLORS) + member  # (paired, so that no round and member give another's marks)
        return COLORS[slot % len(COLORS)], linestyle, rounds * (rounds + 1) // 2 + member

    def _add(self, c: Curve) -> SeriesArtists:
        ax = self._axes_for(c.tag)
        label = (c.run if self.style.split else f"{c.run}: {c.tag}") if self._compare else c.tag
        s = artists.new(ax, c.key, self._style(c), label)
        self.series[c.key] = s
        return s

    def _set(self, s: SeriesArtists, c: Curve, few: bool) -> None:
        x = c.x if self._x_scale == 1.0 else c.x / self._x_scale
        artists.set_lines(s, x, c, few)
        artists.set_band(s, x, c)
        artists.set_nonfinite(s, x, c, self.view)
        artists.set_unfinished(s, x, c)
        self._show(s)

    def _show(self, s: SeriesArtists) -> None:
        """Line visibility from the data and the legend clicks."""
        shown = s.key not in self.hidden
        s.smooth.set_visible(shown and s.curve is not None and s.curve.smoothed is not None)
        s.raw.set_visible(shown)
        for artist in artists.overlays(s):
            artist.set_visible(shown)
        if s.band is not None:
            s.band.set_visible(shown and s.band_data is not None)

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
                    window = screen.window(x, x0, x1)
                    key = (s.version, window, bins)
                    if s.drawn.get(line) == key:  # same data, same range: nothing to redo
                        continue
                    s.drawn[line] = key
                    xs, ys = screen.visible(x, y, window, bins)
                    line.set_data(xs, ys)
                    artists.set_markevery(s, line, len(xs))
                if s.band is not None and s.band_data is not None:
                    bx, lo, hi = screen.envelope(*s.band_data, x0, x1, bins)
                    s.band.set_data(bx, lo, hi)
        finally:
            self._busy = False
