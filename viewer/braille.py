"""The cell renderer of ``lossview --term``: curves as a frame of Unicode braille cells (2x4 dots each),
with y ticks, an x axis, a legend and a row of ``×`` marks over non-finite values.

Every dot column keeps its bucket's minimum and maximum (``lossfmt.transforms.decimate`` picks them), so a
one-step spike among 10M events stays visible; the smoothed curve is drawn bold over the faint raw one. Pure
text in, text out: `term` reads the files and drives it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from lossfmt import transforms

BRAILLE = 0x2800
# Dot bit of (row 0-3, column 0-1) inside a braille cell.
_DOT = np.array([[0x01, 0x08], [0x02, 0x10], [0x04, 0x20], [0x40, 0x80]], dtype=np.uint8)
_PALETTE = (33, 208, 40, 196, 129, 94, 205, 244, 142, 45)  # 256-colour codes, tab10-like
_Y_LABEL = 9  # characters left of the plot for the y tick labels


@dataclass
class Series:
    """One (run, tag) curve as drawn: steps, raw values and their smoothing (with its state)."""

    label: str
    steps: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    values: np.ndarray = field(default_factory=lambda: np.empty(0))
    smoothed: np.ndarray | None = None
    state: transforms.SmoothState | None = None


def render(
    series: Sequence[Series],
    width: int,
    height: int,
    *,
    color: bool,
    title: str = "",
    logy: bool = False,
    ylim: tuple[float, float] | None = None,
) -> str:
    """One frame of `width` x `height` characters (lines joined by newlines, no trailing newline). With
    `logy` the y axis is logarithmic (values <= 0 are not drawn); `ylim` fixes its range (values beyond it
    are drawn on its edge)."""
    shown = [s for s in series if s.steps.size]
    cols, rows = max(width - _Y_LABEL - 6, 8), max(height - 4, 2)  # " step"; title, NaN row, x axis, legend
    if not shown:
        return "\n".join([title[:width], "(no events yet)"])
    x0 = min(int(s.steps[0]) for s in shown)
    x1 = max(int(s.steps[-1]) for s in shown)
    if logy:
        shown = [_log10(s) for s in shown]
        if not any(np.isfinite(s.values).any() for s in shown):
            return "\n".join([title[:width], "(no values above 0 to draw on a log axis)"])
    if ylim is None:
        y_lo, y_hi = _y_range(shown)
    else:
        y_lo, y_hi = (math.log10(ylim[0]), math.log10(ylim[1])) if logy else ylim
    canvas = _Canvas(cols, rows, x0, x1, y_lo, y_hi)
    for i, s in enumerate(shown):
        # Without colours "faint" is the outline: only each column's extremes, so the line stands out.
        canvas.plot(s.steps, s.values, layer=2 * i, outline=not color and s.smoothed is not None)
    for i, s in enumerate(shown):
        if s.smoothed is not None:
            canvas.plot(s.steps, s.smoothed, layer=2 * i + 1, mark=not logy)  # (log: <= 0 is NaN)
    lines = [_fit(title, width)]
    lines.append(" " * (_Y_LABEL + 1) + canvas.nan_row(color))
    ticks = _log_ticks(y_lo, y_hi, rows) if logy else _ticks(y_lo, y_hi, rows)
    for r, body in enumerate(canvas.lines(color, _layer_style)):
        label = ticks.get(r, "")
        lines.append(f"{label:>{_Y_LABEL}}{'┤' if label else '│'}{body}")
    lines.append(" " * _Y_LABEL + "└" + _x_axis(x0, x1, cols))
    lines.append(_legend(shown, width, color))
    return "\n".join(lines[:height])


def _layer_style(layer: int) -> str:
    """SGR parameters of a layer: even layers are raw (dim), odd ones smoothed (bold), one colour a series."""
    code = _PALETTE[(layer // 2) % len(_PALETTE)]
    return f"38;5;{code}" + (";1" if layer % 2 else ";2")


class _Canvas:
    """A grid of braille cells; each plot() ORs dots in and claims its cells' colour for its layer."""

    def __init__(self, cols: int, rows: int, x0: int, x1: int, y_lo: float, y_hi: float) -> None:
        self.cols, self.rows = cols, rows
        self.x0, self.x1, self.y_lo, self.y_hi = x0, x1, y_lo, y_hi
        self.bits = np.zeros((rows, cols), np.uint8)
        self.layer = np.full((rows, cols), -1, np.int64)
        self.nan = np.zeros(cols, bool)

    def plot(
        self, steps: np.ndarray, values: np.ndarray, *, layer: int, outline: bool = False, mark: bool = True
    ) -> None:
        """Draw a curve: per dot column from its lowest to its highest value (joined to the next column);
        with `outline` only each column's lowest and highest dot; `mark`: its non-finite values are marked."""
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
        rows_px = 4 * self.rows
        scale = (rows_px - 1) / (self.y_hi - self.y_lo) if self.y_hi > self.y_lo else 0.0
        py = np.clip(np.rint((self.y_hi - y) * scale), 0, rows_px - 1).astype(np.int64)
        top = np.full(px, rows_px, np.int64)
        bottom = np.full(px, -1, np.int64)
        np.minimum.at(top, col, py)
        np.maximum.at(bottom, col, py)
        last = np.full(px, -1, np.int64)
        last[col] = py  # the last point of each column wins (x order)
        # A line: columns without a point get the line between their neighbours, and each column also
        # reaches to the previous column's last value.
        used = col[np.concatenate(([True], col[1:] != col[:-1]))]  # distinct (col ascends); np.unique
        # would import numpy.ma: 15 ms of a one-frame command
        span_cols = np.arange(used[0], used[-1] + 1)
        empty = span_cols[bottom[span_cols] < 0]
        if empty.size:
            fill = np.rint(np.interp(empty, used, last[used])).astype(np.int64)
            top[empty] = bottom[empty] = last[empty] = fill
        prev, nxt = span_cols[:-1], span_cols[1:]
        top[nxt] = np.minimum(top[nxt], last[prev])
        bottom[nxt] = np.maximum(bottom[nxt], last[prev])
        for c in span_cols.tolist():
            if outline:
                self._dots(c, int(top[c]), int(top[c]), layer)
                self._dots(c, int(bottom[c]), int(bottom[c]), layer)
            else:
                self._dots(c, int(top[c]), int(bottom[c]), layer)

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
    if lo == hi:
        return lo - 0.5, hi + 0.5
    return lo, hi


def _log10(s: Series) -> Series:
    """`s` on a log axis: log10 of its values; those <= 0 (and -inf) left out, NaN and +inf kept (marked)."""
    keep = ~(s.values <= 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        smoothed = (
            None if s.smoothed is None else np.log10(np.where(s.smoothed > 0, s.smoothed, np.nan))[keep]
        )
        return Series(s.label, s.steps[keep], np.log10(s.values[keep]), smoothed)


def _ticks(lo: float, hi: float, rows: int) -> dict[int, str]:
    """y tick labels by cell row: round numbers, about one every four rows."""
    return _place(((value, _fmt(value)) for value in _nice(lo, hi, max(2, rows // 4))), lo, hi, rows)


def _log_ticks(lo: float, hi: float, rows: int) -> dict[int, str]:
    """y tick labels of a log axis (`lo`, `hi`: log10 of its range): powers of ten, or 1-2-5 steps within
    a decade or two, or round numbers of the range itself within less."""
    n = max(2, rows // 4)
    every = max(1, math.ceil((math.floor(hi) - math.ceil(lo) + 1) / n))  # (a decade is one label at most)
    decades = [float(k) for k in range(math.ceil(lo), math.floor(hi) + 1, every)]
    picks = [math.log10(m) + k for k in range(math.floor(lo), math.floor(hi) + 1) for m in (1, 2, 5)]
    steps = [p for p in picks if lo <= p <= hi]
    if len(decades) < 2 and len(steps) >= 2:
        decades = steps
    elif len(decades) < 2:
        decades = [math.log10(v) for v in _nice(10**lo, 10**hi, n) if v > 0]
    return _place(((p, _fmt(float(f"{10**p:.3g}"))) for p in decades), lo, hi, rows)


def _place(ticks: Iterable[tuple[float, str]], lo: float, hi: float, rows: int) -> dict[int, str]:
    """Tick labels by the cell row their value lands on (as _Canvas.plot places dots); one per row."""
    out: dict[int, str] = {}
    for value, label in ticks:
        r = int(np.rint((hi - value) * (4 * rows - 1) / (hi - lo))) // 4 if hi > lo else 0
        if 0 <= r < rows and r not in out:
            out[r] = label[:_Y_LABEL]
    return out


def _nice(lo: float, hi: float, n: int) -> list[float]:
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= size and float(value / size).is_integer():
            return f"{value / size:g}{unit}"
    return f"{value:.4g}"


def _x_axis(x0: int, x1: int, cols: int) -> str:
    """The x axis line with step labels under ticks, as one line: '─' with labels written into it."""
    axis = ["─"] * cols
    for value in _nice(float(x0), float(x1), max(2, cols // 14)) if x1 > x0 else [float(x0)]:
        c = round((value - x0) / (x1 - x0) * (cols - 1)) if x1 > x0 else 0
        text = "┴" + _fmt(value)
        if c >= 0 and c + len(text) <= cols and all(ch == "─" for ch in axis[c : c + len(text) + 1]):
            axis[c : c + len(text)] = list(text)
    return "".join(axis) + " step"


def _legend(series: Sequence[Series], width: int, color: bool) -> str:
    """One entry per series in its colour, as many as fit in `width` ("…" for the rest)."""
    parts, used = [], 0
    for i, s in enumerate(series):
        plain = ("━━ " if s.smoothed is not None else "── ") + s.label
        if used + len(plain) + 3 > width and i < len(series) - 1:
            parts.append("…")
            break
        parts.append(f"\x1b[0;{_layer_style(2 * i + 1)}m{plain[:2]}\x1b[0m{plain[2:]}" if color else plain)
        used += len(plain) + 2
    return "  ".join(parts)


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"
