"""The axes of a ``lossview --term`` frame: y tick labels (round numbers, or decades on a log axis) by the
cell row they land on, and the x axis line with its step labels. Numbers in, text out (`braille` draws the
rest)."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

__all__ = ["Y_LABEL", "fmt", "log_ticks", "ticks", "x_axis"]

Y_LABEL = 9  # characters left of the plot for the y tick labels


def ticks(lo: float, hi: float, rows: int) -> dict[int, str]:
    """y tick labels by cell row: round numbers, about one every four rows, with the digits that tell them
    apart (1.00001, 1.00002: four digits wrote "1" for each)."""
    values = _nice(lo, hi, max(2, rows // 4))
    size = max(abs(lo), abs(hi))  # enough digits for the span (1.00002, not "1")
    fine = math.ceil(math.log10(size / (hi - lo))) + 2 if hi > lo and size > 0 else 4
    for digits in range(min(max(4, fine), 8), 9):
        labels = [fmt(value, digits) for value in values]
        if len(set(labels)) == len(labels):
            break
    return _place(zip(values, labels, strict=True), lo, hi, rows)


def log_ticks(lo: float, hi: float, rows: int) -> dict[int, str]:
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
    return _place(((p, fmt(float(f"{10**p:.3g}"))) for p in decades), lo, hi, rows)


def _place(ticks: Iterable[tuple[float, str]], lo: float, hi: float, rows: int) -> dict[int, str]:
    """Tick labels by the cell row their value lands on (as _Canvas.plot places dots); one per row."""
    out: dict[int, str] = {}
    for value, label in ticks:
        r = int(np.rint((hi - value) / (hi - lo) * (4 * rows - 1))) // 4 if hi > lo else 0  # (no overflow)
        if 0 <= r < rows and r not in out:
            out[r] = label[:Y_LABEL]
    return out


def _nice(lo: float, hi: float, n: int) -> list[float]:
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def fmt(value: float, digits: int = 4) -> str:
    """A tick label: 1k, 1.5k, 2.5M as the matplotlib view writes steps (EngFormatter), else `digits`
    significant digits."""
    if value == 0:
        return "0"
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if 1e12 > abs(value) >= size:  # (beyond, 1e+15 rather than 1e+06G)
            return f"{value / size:.{digits}g}{unit}"
    return f"{value:.{digits}g}"


def x_axis(x0: int, x1: int, cols: int) -> str:
    """The x axis line with step labels under ticks, as one line: '─' with labels written into it."""
    axis = ["─"] * cols
    for value in _nice(float(x0), float(x1), max(2, cols // 14)) if x1 > x0 else [float(x0)]:
        c = round((value - x0) / (x1 - x0) * (cols - 1)) if x1 > x0 else 0
        text = "┴" + fmt(value)
        if c >= 0 and c + len(text) <= cols and all(ch == "─" for ch in axis[c : c + len(text) + 1]):
            axis[c : c + len(text)] = list(text)
    return "".join(axis) + " step"
