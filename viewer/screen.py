"""Long curves at screen resolution: the points of a zoom window, min/max decimated to pixel columns.

Steps stay int64 (no float copy of 10M steps), so windows are cut with integer bounds of the same meaning.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

from lossfmt import transforms


def window(x: np.ndarray, x0: float, x1: float) -> tuple[int, int]:
    """Index range of the points inside [x0, x1] plus one point each side (lines leave the axes cleanly)."""
    i0 = max(search(x, x0, "left") - 1, 0)
    i1 = min(search(x, x1, "right") + 1, len(x))
    return i0, i1


def search(x: np.ndarray, bound: float, side: Literal["left", "right"]) -> int:
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


def visible(
    x: np.ndarray, y: np.ndarray, window: tuple[int, int], bins: int
) -> tuple[np.ndarray, np.ndarray]:
    """The points of ``window``, min/max decimated to ``bins`` pixel columns when there are more."""
    xs, ys = x[window[0] : window[1]], y[window[0] : window[1]]
    if len(xs) <= 2 * bins:
        return xs, ys
    return transforms.decimate(xs, ys, bins)


def envelope(
    x: np.ndarray, lo: np.ndarray, hi: np.ndarray, x0: float, x1: float, bins: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A band reduced to ``bins`` columns: the lowest ``lo`` and highest ``hi`` of each column."""
    if len(x) <= 2 * bins:
        return x, lo, hi
    i0, i1 = window(x, x0, x1)
    x, lo, hi = x[i0:i1], lo[i0:i1], hi[i0:i1]
    if len(x) <= 2 * bins:
        return x, lo, hi
    edges = np.linspace(x[0], x[-1], bins + 1)[:-1]
    if x.dtype.kind in "iu":  # the first integer at or above each edge (a float edge would convert all of x)
        edges = np.ceil(edges).astype(x.dtype)
    edges = np.searchsorted(x, edges, side="left")
    edges = np.unique(edges)
    return x[edges], np.fmin.reduceat(lo, edges), np.fmax.reduceat(hi, edges)
