"""The cell renderer of ``lossview --term``: curves as a frame of Unicode braille cells (2x4 dots each),
with y ticks, an x axis, a legend and a row of ``×`` marks over non-finite values.

Every dot column keeps its bucket's minimum and maximum (``lossfmt.transforms.decimate`` picks them), so a
one-step spike among 10M events stays visible; the smoothed curve is drawn bold over the faint raw one. As
in the matplotlib view, a tag 50x or more apart in scale (an lr beside a loss) gets a panel of its own
(``lossview.panels``), panels stacked over one x axis, and several runs get a colour each, their tags told
apart by dashes. Pure text in, text out: `term` reads the files and drives it.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from lossfmt import transforms
from lossview import panels, termaxes
from lossview.view import Curve

BRAILLE = 0x2800
# Dot bit of (row 0-3, column 0-1) inside a braille cell.
_DOT = np.array([[0x01, 0x08], [0x02, 0x10], [0x04, 0x20], [0x40, 0x80]], dtype=np.uint8)
#: 256-colour codes: the matplotlib view's tab10 (red last: red marks non-finite values), then tab20's light
#: ten, so 20 runs get a colour each.
_PALETTE = (33, 208, 40, 129, 94, 205, 45, 142, 244, 196, 117, 215, 120, 183, 137, 218, 123, 186, 250, 210)
#: A comparison's tags: dash patterns by dot column ("0": a gap) and their legend glyphs (bold, faint).
_DASHES = ("1", "111100", "1000", "111100100")
_GLYPHS = (("━━", "──"), ("╍╍", "╌╌"), ("┉┉", "┈┈"), ("━┉", "─┈"))
_Y_LABEL = termaxes.Y_LABEL
_MIN_ROWS = 2  # cell rows a panel needs; a frame too low for every panel draws one
_NONFINITE_KEY = "× non-finite"
_MIN_COLS = 8  # cell columns of the narrowest plot drawn
_MIN_WIDTH = _Y_LABEL + 6 + _MIN_COLS  # a frame's narrowest width: its x axis line (gutter, "└", " step")
#: Dot rows a value beyond the y range is placed at, at most, off the canvas: far enough that a line to it
#: leaves the canvas within a dot column, near enough that rows stay exact int64 (1e308 * scale overflows).
_FAR = 1 << 40


@dataclass
class Series:
    """One (run, tag) curve as drawn: steps, raw values and their smoothing (with its state). Its `tag`
    (default: the label) chooses its panel; its `run` its colour where several runs are drawn."""

    label: str
    steps: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    values: np.ndarray = field(default_factory=lambda: np.empty(0))
    smoothed: np.ndarray | None = None
    state: transforms.SmoothState | None = None
    tag: str = ""
    run: str = ""
    #: Its run's colour slot where runs are compared (first come, kept as runs come and go); -1: by order.
    slot: int = -1

    def __post_init__(self) -> None:
        self.tag = self.tag or self.label


#: How a series looks: its colour (a 256-colour code) and its dashes (an index of _DASHES).
_Look = tuple[int, int]


def render(
    series: Sequence[Series],
    width: int,
    height: int,
    *,
    color: bool,
    title: str = "",
    logy: bool = False,
    ylim: tuple[float, float] | None = None,
    compare: bool | None = None,
) -> str:
    """One frame of `width` x `height` characters (lines joined by newlines, no trailing newline). Tags 50x
    or more apart in scale are drawn in panels of their own (`lossview.panels.layout`, as the matplotlib
    view), stacked over one x axis. With `logy` the y axes are logarithmic (values <= 0 are not drawn);
    `ylim` fixes the range of the top panel, the loss's; as in the matplotlib view the lines are clipped to it
    (a value beyond it is not drawn, a line to it is drawn up to the edge). The title
    ends with the key of the ``×`` marks when a mark is drawn. `compare`: colour by run (default: where
    several runs are drawn)."""
    if width < _MIN_WIDTH:  # the gutter, the fewest columns and the axis' unit: the lines would wrap
        return _too_narrow(width)
    shown = [s for s in series if s.steps.size]
    if not shown:
        return "\n".join([_fit(title, width), _fit("(no events yet)", width)])
    x0 = min(int(s.steps[0]) for s in shown)
    x1 = max(int(s.steps[-1]) for s in shown)
    looks = _looks(shown, compare)
    legend = _legend(shown, looks, width, 1 + (height >= 20) + (height >= 40), color)
    room = height - 2 - len(legend)  # less the title and the x axis
    groups = _panels(shown, room)
    if logy:
        shown = [_log10(s) for s in shown]
        if not any(np.isfinite(s.values).any() for s in shown):
            return "\n".join([_fit(title, width), _fit("(no values above 0 to draw on a log axis)", width)])
    cols, n = width - _Y_LABEL - 6, len(groups)  # (the x axis line: gutter, corner, cols, " step")
    each = max((room - n) // n, _MIN_ROWS)
    body, marked = [], False
    for k, group in enumerate(groups):
        rows = each + (max(room - n - n * each, 0) if k == 0 else 0)  # the top panel: what is left over
        tags = list(dict.fromkeys(shown[i].tag for i in group))
        name = tags[0] if n > 1 and len(tags) == 1 else ""
        grid = (cols, rows, x0, x1)
        lines, marks = _panel(
            [(shown[i], looks[i]) for i in group], grid, name, color, logy, ylim if k == 0 else None
        )
        body += lines
        marked = marked or marks
    key = " · ".join(t for t in (title, _NONFINITE_KEY if marked else "") if t)
    lines = [_fit(key, width), *body, " " * _Y_LABEL + "└" + termaxes.x_axis(x0, x1, cols), *legend]
    return "\n".join(lines[:height])


def _too_narrow(width: int) -> str:
    """The frame of a terminal narrower than `_MIN_WIDTH`: one line saying so, as much as fits."""
    for text in (
        f"terminal too narrow for --term: {width} columns, it needs {_MIN_WIDTH}",
        f"too narrow: needs {_MIN_WIDTH} columns",
        f"needs {_MIN_WIDTH} columns",
    ):
        if len(text) <= width:
            return text
    return _fit("too narrow", width)


def _panels(shown: Sequence[Series], room: int) -> list[list[int]]:
    """Indices of `shown` by panel, top first: tags of one scale together, one 50x or more apart on its own
    (`lossview.panels.layout`, the matplotlib view's rule); all on one where `room` lines cannot hold every
    panel's row of marks and `_MIN_ROWS` cell rows."""
    if len({s.tag for s in shown}) < 2:  # one panel
        return [list(range(len(shown)))]
    placed = panels.layout([Curve(s.run, s.tag, s.steps, s.values, s.steps) for s in shown])
    names = list(dict.fromkeys(placed.values()))
    if len(names) < 2 or room < len(names) * (_MIN_ROWS + 1):
        return [list(range(len(shown)))]
    return [[i for i, s in enumerate(shown) if placed[s.tag] == name] for name in names]


def _panel(
    group: Sequence[tuple[Series, _Look]],
    grid: tuple[int, int, int, int],
    name: str,
    color: bool,
    logy: bool,
    ylim: tuple[float, float] | None,
) -> tuple[list[str], bool]:
    """One panel's lines: its row of non-finite marks (led by `name`: its tag where a frame has several
    panels), then its cell rows with y ticks; and whether a mark was drawn. `grid`: its columns, rows and
    x range."""
    cols, rows, x0, x1 = grid
    if ylim is None:
        y_lo, y_hi = _y_range([s for s, _ in group])
    else:
        y_lo, y_hi = (math.log10(ylim[0]), math.log10(ylim[1])) if logy else ylim
    canvas = _Canvas(cols, rows, x0, x1, y_lo, y_hi)
    for i, (s, (_, dashes)) in enumerate(group):
        # Without colours "faint" is the outline: only each column's extremes, so the line stands out.
        main = _DASHES[dashes] if s.smoothed is None else "1"  # (the faint raw under a smoothed one: solid)
        canvas.plot(s.steps, s.values, layer=2 * i, outline=not color and s.smoothed is not None, dashes=main)
    for i, (s, (_, dashes)) in enumerate(group):
        if s.smoothed is not None:  # (log: <= 0 is NaN, not marked)
            canvas.plot(s.steps, s.smoothed, layer=2 * i + 1, mark=not logy, dashes=_DASHES[dashes])
    codes = [code for _, (code, _) in group]

    def style(layer: int) -> str:
        """SGR parameters of a layer: even layers are raw (dim), odd ones smoothed (bold)."""
        return f"38;5;{codes[layer // 2]}" + (";1" if layer % 2 else ";2")

    label = _fit(name, _Y_LABEL)
    lines = [" " * (_Y_LABEL - _width(label)) + label + " " + canvas.nan_row(color)]
    ticks = termaxes.log_ticks(y_lo, y_hi, rows) if logy else termaxes.ticks(y_lo, y_hi, rows)
    for r, body in enumerate(canvas.lines(color, style)):
        label = ticks.get(r, "")
        lines.append(f"{label:>{_Y_LABEL}}{'┤' if label else '│'}{body}")
    return lines, bool(canvas.nan.any())


def _looks(shown: Sequence[Series], compare: bool | None = None) -> list[_Look]:
    """Each series' colour and dashes, as the matplotlib view chooses them (`lossview.plot`): where runs are
    compared a colour per run (its slot, else first come) and dashes per tag, else a colour per tag."""
    runs = {run: i for i, run in enumerate(dict.fromkeys(s.run for s in shown))}
    tags = {tag: i for i, tag in enumerate(dict.fromkeys(s.tag for s in shown))}
    if len(runs) > 1 if compare is None else compare:
        slot = {s.run: s.slot if s.slot >= 0 else runs[s.run] for s in shown}
        return [(_PALETTE[slot[s.run] % len(_PALETTE)], tags[s.tag] % len(_DASHES)) for s in shown]
    return [(_PALETTE[tags[s.tag] % len(_PALETTE)], 0) for s in shown]


def _legend(shown: Sequence[Series], looks: Sequence[_Look], width: int, most: int, color: bool) -> list[str]:
    """The legend, in at most `most` lines of `width`: an entry per series; with more than two runs and
    several tags (as the matplotlib view's compact legend) one per run in its colour, then one per tag with
    its dashes. What does not fit is counted ("… 5 more"); a tag's entry is never left out for a run's."""

    def entry(code: int, dashes: int, text: str, bold: bool) -> tuple[str, int]:
        glyph = _GLYPHS[dashes][0 if bold else 1]
        drawn = f"\x1b[0;38;5;{code};1m{glyph}\x1b[0m" if color and code else glyph
        text = _fit(text, max(12, width // 2 - 4), middle=True)  # a long run name: both ends, not none
        return f"{drawn} {text}", len(glyph) + 1 + _width(text)

    runs = {s.run: look for s, look in zip(shown, looks, strict=True)}
    tags = {s.tag: look for s, look in zip(shown, looks, strict=True)}
    bold = any(s.smoothed is not None for s in shown)
    if len(runs) > 2 and len(tags) > 1:
        cut = [entry(code, 0, run, bold) for run, (code, _) in runs.items()]
        kept, what = [entry(0, dashes, tag, bold) for tag, (_, dashes) in tags.items()], " runs"
    else:
        cut = [entry(c, d, s.label, s.smoothed is not None) for s, (c, d) in zip(shown, looks, strict=True)]
        kept, what = [], ""
    for k in range(len(cut), -1, -1):
        note = f"… {len(cut) - k} more{what}"
        laid = _wrap([*cut[:k], *([(note, len(note))] if k < len(cut) else []), *kept], width, most)
        if laid is not None:
            return laid
    return [_fit(f"… {len(cut) + len(kept)} entries", width)]


def _wrap(entries: Sequence[tuple[str, int]], width: int, most: int) -> list[str] | None:
    """`entries` (text, its width on screen) in lines of `width`, two spaces apart; None if that takes more
    than `most` lines."""
    lines: list[list[str]] = [[]]
    used = 0
    for text, size in entries:
        if size > width:
            return None
        if lines[-1] and used + 2 + size > width:
            lines.append([])
            used = 0
        used += size + (2 if lines[-1] else 0)
        lines[-1].append(text)
    return ["  ".join(line) for line in lines] if len(lines) <= most else None


class _Canvas:
    """A grid of braille cells; each plot() ORs dots in and claims its cells' colour for its layer."""

    def __init__(self, cols: int, rows: int, x0: int, x1: int, y_lo: float, y_hi: float) -> None:
        self.cols, self.rows = cols, rows
        self.x0, self.x1, self.y_lo, self.y_hi = x0, x1, y_lo, y_hi
        self.bits = np.zeros((rows, cols), np.uint8)
        self.layer = np.full((rows, cols), -1, np.int64)
        self.nan = np.zeros(cols, bool)

    def plot(
        self,
        steps: np.ndarray,
        values: np.ndarray,
        *,
        layer: int,
        outline: bool = False,
        mark: bool = True,
        dashes: str = "1",
    ) -> None:
        """Draw a curve: per dot column from its lowest to its highest value (joined to the next column);
        with `outline` only each column's lowest and highest dot; `mark`: its non-finite values are marked.
        `dashes` leaves out the dot columns of its "0"s, but a raw layer's column spanning more than a cell
        keeps its extremes there (a spike stays visible)."""
        px = 2 * self.cols
        x, y = transforms.decimate(steps, values, px)
        span = max(self.x1 - self.x0, 1)
        col = np.minimum(((x - self.x0) * (px / span)).astype(np.int64), px - 1)
        bad = ~np.isfinite(y)
        if mark and bad.any():
            self.nan[col[bad] // 2] = True
        col, y = col[~bad], y[~bad]
        if not col.size:
            return
        top, bottom, span_cols = self._extents(col, y)
        for c in span_cols.tolist():
            # Clipped to the range, as matplotlib clips a line to its axes: a column wholly beyond it is
            # not drawn, one crossing its edge up to the edge (never a flat run along the edge).
            t, b = max(int(top[c]), 0), min(int(bottom[c]), 4 * self.rows - 1)
            if t > b:
                continue
            if dashes[c % len(dashes)] == "0":
                if layer % 2 == 0 and b - t >= 4:
                    self._dots(c, t, t, layer)
                    self._dots(c, b, b, layer)
            elif outline:
                self._dots(c, t, t, layer)
                self._dots(c, b, b, layer)
            else:
                self._dots(c, t, b, layer)

    def _extents(self, col: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per dot column the line's highest and lowest dot row, not clipped to the canvas (rows beyond
        it are above 0 or past its last row), and the columns from the curve's first to its last: columns
        without a point get the line between their neighbours, and each column also reaches to the
        previous column's last value."""
        rows_px = 4 * self.rows
        scale = (rows_px - 1) / (self.y_hi - self.y_lo) if self.y_hi > self.y_lo else 0.0
        with np.errstate(over="ignore", invalid="ignore"):  # (a value far beyond a --ylim: +-inf, bounded)
            fy = (self.y_hi - y) * scale if scale else np.zeros_like(y)
            py = np.rint(np.clip(fy, -_FAR, _FAR)).astype(np.int64)
        px = 2 * self.cols
        top = np.full(px, _FAR, np.int64)
        bottom = np.full(px, -_FAR, np.int64)
        np.minimum.at(top, col, py)
        np.maximum.at(bottom, col, py)
        last = np.zeros(px, np.int64)
        last[col] = py  # the last point of each column wins (x order)
        used = col[np.concatenate(([True], col[1:] != col[:-1]))]  # distinct (col ascends); np.unique
        # would import numpy.ma: 15 ms of a one-frame command
        span_cols = np.arange(used[0], used[-1] + 1)
        has = np.zeros(px, bool)
        has[used] = True
        empty = span_cols[~has[span_cols]]
        if empty.size:
            fill = np.rint(np.interp(empty, used, last[used])).astype(np.int64)
            top[empty] = bottom[empty] = last[empty] = fill
        prev, nxt = span_cols[:-1], span_cols[1:]
        top[nxt] = np.minimum(top[nxt], last[prev])
        bottom[nxt] = np.maximum(bottom[nxt], last[prev])
        return top, bottom, span_cols

    def _dots(self, c: int, top: int, bottom: int, layer: int) -> None:
        """Set the dots of dot column `c` from `top` to `bottom`. A cell shows one layer's colour, so a
        smoothed layer (odd) takes over a cell from raw ones: their dots are cleared, and the line stays
        visible inside the raw band."""
        rr = np.arange(top, bottom + 1)
        cell_rows, dot_rows = rr // 4, rr % 4
        column, layers = self.bits[:, c // 2], self.layer[:, c // 2]
        cells = np.arange(top // 4, bottom // 4 + 1)  # the distinct cell_rows
        under = cells[(layers[cells] < 0) | (layers[cells] % 2 < layer % 2)]
        column[under] = 0
        np.bitwise_or.at(column, cell_rows, _DOT[dot_rows, c % 2])
        layers[cells] = layer

    def lines(self, color: bool, style: Callable[[int], str]) -> list[str]:
        out = []
        for r in range(self.rows):
            parts, current = [], None
            for c in range(self.cols):
                ch = chr(BRAILLE + int(self.bits[r, c])) if self.bits[r, c] else " "
                sgr = style(int(self.layer[r, c])) if color and self.bits[r, c] else None
                if color and sgr != current:
                    parts.append(f"\x1b[0;{sgr}m" if sgr else "\x1b[0m")
                    current = sgr
                parts.append(ch)
            if color and current:
                parts.append("\x1b[0m")
            out.append("".join(parts))
        return out

    def nan_row(self, color: bool) -> str:
        marks = "".join("×" if bad else " " for bad in self.nan)
        if color and self.nan.any():
            return marks.replace("×", "\x1b[1;31m×\x1b[0m")
        return marks


def _y_range(series: Sequence[Series]) -> tuple[float, float]:
    lo, hi = math.inf, -math.inf
    for s in series:
        if not s.values.size:
            continue
        low, high = float(s.values.min()), float(s.values.max())
        if not (math.isfinite(low) and math.isfinite(high)):  # the copy without NaN/inf only when needed
            finite = s.values[np.isfinite(s.values)]
            if not finite.size:
                continue
            low, high = float(finite.min()), float(finite.max())
        lo, hi = min(lo, low), max(hi, high)
    if not math.isfinite(lo):
        return 0.0, 1.0
    lo, hi = max(lo, -4e307), min(hi, 4e307)  # a finite span (+-1e308 apart: the rest clipped)
    if lo == hi:  # a constant: a range around it on its own scale (an lr of 1e-3 is no 0..1)
        pad = abs(lo) * 0.05 or 0.5
        return lo - pad, hi + pad
    return lo, hi


def _log10(s: Series) -> Series:
    """`s` on a log axis: log10 of its values; those <= 0 (and -inf) left out, NaN and +inf kept (marked)."""
    keep = ~(s.values <= 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        smoothed = (
            None if s.smoothed is None else np.log10(np.where(s.smoothed > 0, s.smoothed, np.nan))[keep]
        )
        return Series(s.label, s.steps[keep], np.log10(s.values[keep]), smoothed, tag=s.tag, run=s.run)


def _width(text: str) -> int:
    """Columns `text` takes on a terminal: East Asian wide characters take two."""
    return len(text) + sum(unicodedata.east_asian_width(ch) in "WF" for ch in text if ord(ch) > 0x1000)


def _fit(text: str, width: int, *, middle: bool = False) -> str:
    """`text` cut to `width` columns with "…" at its end (`middle`: in its middle, a run name's ends kept)."""
    if _width(text) <= width:
        return text
    room = max(width - 1, 0)
    head = (room + 1) // 2 if middle else room
    tail = room - head
    while head + tail and _width(text[:head]) + _width(text[len(text) - tail :] if tail else "") > room:
        head, tail = (head - 1, tail) if head >= tail else (head, tail - 1)  # (wide characters take two)
    return text[:head] + "…" + (text[len(text) - tail :] if tail else "")
