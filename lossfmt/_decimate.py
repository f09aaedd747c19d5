"""Decimation for drawing: a long curve reduced to screen resolution with every bin's minimum and maximum
(and its first non-finite value) kept, so no spike or divergence disappears. numpy only."""

from __future__ import annotations

import math

import numpy as np

from lossfmt._averages import _as_1d_float


def decimate(x: np.ndarray, y: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Reduce a long curve to screen resolution without losing a spike: the x range (x sorted ascending,
    finite) is cut into `bins` equal-width bins, bin i = [x0 + i*w, x0 + (i+1)*w) with w = (x[-1] - x0)/bins
    (the last one closed), and each bin keeps its lowest and highest finite y plus its first non-finite y
    (NaN or ±inf, kept so a viewer can mark where a run diverged); the first and last points are always kept.
    Returns (x, y) subsets in x order, at most 3*bins + 2 points; a short curve is returned whole."""
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ValueError(f"decimate: bins must be a whole number >= 1, got {bins!r}")
    x = np.asarray(x)
    y = _as_1d_float(y)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"decimate: x and y must be 1-D of the same length, got {x.shape} and {y.shape}")
    n = x.size
    xs = x.view(np.int64) if np.issubdtype(x.dtype, np.datetime64) else x
    if n and not (np.isfinite(xs[0]) and np.isfinite(xs[-1]) and _ascending(xs)):
        raise ValueError("decimate: x must be finite and sorted ascending (drop or sort non-finite x first)")
    if n <= 3 * bins + 2:
        return x.copy(), y.copy()

    starts = _distinct(np.concatenate(([0], np.searchsorted(xs, _bin_edges(xs, bins)))))
    keep = [0, n - 1]
    # A loop over a few thousand bins costs less than the passes a vectorized arg-min per bin would need.
    # No finiteness mask either: argmin/argmax land on a NaN or an infinity whenever a bin holds one, so
    # only such bins are searched again with their non-finite values set aside.
    for lo, hi in zip(starts.tolist(), [*starts[1:].tolist(), n], strict=True):
        part = y[lo:hi]
        low, high = int(part.argmin()), int(part.argmax())
        if math.isfinite(part[low]) and math.isfinite(part[high]):
            keep += (lo + low, lo + high)
            continue
        finite = np.isfinite(part)
        keep.append(lo + int(finite.argmin()))  # the bin's first non-finite value
        if finite.any():
            keep.append(lo + int(np.where(finite, part, np.inf).argmin()))
            keep.append(lo + int(np.where(finite, part, -np.inf).argmax()))
    index = _distinct(np.sort(np.array(keep)))
    return x[index], y[index]


def _distinct(ascending: np.ndarray) -> np.ndarray:
    """The distinct values of a sorted array: np.unique without its sort, nor its import of numpy.ma (15 ms
    of a one-frame command)."""
    if ascending.size < 2:
        return ascending
    return ascending[np.concatenate(([True], ascending[1:] != ascending[:-1]))]


def all_finite(values: np.ndarray) -> bool:
    """True if no value is NaN or infinite. Usually one pass and no mask as long as the values: a finite sum
    proves every value finite (a NaN or an infinity always makes the sum non-finite); only a non-finite sum
    (also finite values overflowing it) falls back to np.isfinite."""
    with np.errstate(over="ignore", invalid="ignore"):
        total = values.sum()
    return math.isfinite(total) or bool(np.isfinite(values).all())


def _ascending(x: np.ndarray) -> bool:
    """True if x never decreases (NaN compares as a decrease), compared in blocks so that the temporary
    stays small however long x is."""
    block = 1 << 20
    for start in range(0, x.size - 1, block):
        part = x[start : start + block + 1]
        if not bool(np.all(part[1:] >= part[:-1])):
            return False
    return True


def _bin_edges(x: np.ndarray, bins: int) -> np.ndarray:
    """The inner edges x0 + i*(x[-1] - x0)/bins, i = 1..bins-1, of decimate's bins, for sorted numeric x
    (integer x gets the smallest integer at or above each edge, which splits it the same way)."""
    x0, x1 = float(x[0]), float(x[-1])
    edges = x0 + (x1 - x0) * (np.arange(1, bins, dtype=np.float64) / bins)
    if np.issubdtype(x.dtype, np.integer):
        return np.ceil(edges).astype(x.dtype)
    return edges
