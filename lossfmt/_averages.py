"""The numeric averages behind smoothing, vectorized with numpy (no Python loop over points): TensorBoard's
EMA and the trailing moving average (the EMA over steps is in _step_ema), and the checks that smoothing
specs share. Non-finite values are returned as they are and skipped by every average, so a NaN does not
poison later points."""

from __future__ import annotations

import math

import numpy as np

# EMA chunks: within a chunk of L points the closed form scales values by up to 2**_EMA_EXP (weight**-j,
# or e**t over steps in _step_ema). That keeps every product finite for |value| <= 2**_EMA_PEAK (larger
# values are first scaled by an exact power of two), and bounding L bounds the cumulative-sum rounding
# error to about L ulps.
_EMA_EXP = 600
_EMA_PEAK = 400
_EMA_MAX_CHUNK = 4096


# --- checks -------------------------------------------------------------------------------------------------


def _check_weight(weight: float, spec: str | None = None) -> float:
    where = f"bad smoothing spec {spec!r}: " if spec is not None else ""
    if isinstance(weight, bool) or not isinstance(weight, (int, float, np.floating, np.integer)):
        raise TypeError(f"{where}EMA weight must be a number in [0, 1), got {weight!r}")
    weight = float(weight)
    if not 0.0 <= weight < 1.0:
        # TensorBoard accepts 1 but then draws every finite point at 0 (the average never moves).
        raise ValueError(
            f"{where}EMA weight must be in [0, 1), got {weight!r} (0 = no smoothing, 0.99 = heavy)"
        )
    return weight


def _check_window(window: int, spec: str | None = None) -> int:
    where = f"bad smoothing spec {spec!r}: " if spec is not None else ""
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)):
        raise TypeError(f"{where}moving-average window must be a whole number of points, got {window!r}")
    if window < 1:
        raise ValueError(f"{where}moving-average window must be >= 1, got {window!r}")
    return int(window)


def _check_positive(value: float, what: str, spec: str | None = None, *, at_most: float = math.inf) -> float:
    where = f"bad smoothing spec {spec!r}: " if spec is not None else ""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{where}{what} must be a number, got {value!r}")
    value = float(value)
    if not (0.0 < value <= at_most and math.isfinite(value)):
        bound = f"in (0, {at_most:g}]" if math.isfinite(at_most) else "> 0 and finite"
        raise ValueError(f"{where}{what} must be {bound}, got {value!r}")
    return value


def _copy(x: np.ndarray) -> np.ndarray:
    """A copy of `x`, typed: numpy's stubs make ndarray.copy() return Any under mypy."""
    copied: np.ndarray = x.copy()
    return copied


def _as_1d_float(values: np.ndarray) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"expected a 1-D array of values, got shape {arr.shape}")
    return arr


# --- TensorBoard's EMA and the moving average ---------------------------------------------------------------


def ema(values: np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard's debiased exponential moving average (its scalar dashboard's smoothing), with its
    numbers up to float rounding. Non-finite points are returned as they are and skipped by the average, so a
    NaN does not poison later points; a series whose values all equal the first is returned unchanged, as
    TensorBoard does. `weight` in [0, 1): 0 returns the values, larger is smoother."""
    w = _check_weight(weight)
    x = _as_1d_float(values)
    if x.size == 0 or w == 0.0:
        return _copy(x)
    low, high = float(x.min()), float(x.max())  # NaN if any value is: then the masked path below
    if math.isfinite(low) and math.isfinite(high):  # the common case, without a mask over the values
        return _copy(x) if low == high else _ema_finite(x, w, max(high, -low))
    if bool(np.all(x == x[0])):
        return _copy(x)
    finite = np.isfinite(x)
    out: np.ndarray = x.copy()
    out[finite] = _ema_finite(x[finite], w)
    return out


def _peak_exponent(x: np.ndarray, peak: float | None) -> int:
    """The power of two to scale `x` down by so that |x| <= 2**_EMA_PEAK (0: no scaling needed)."""
    if peak is None:
        peak = max(float(x.max()), -float(x.min())) if x.size else 0.0
    return math.frexp(peak)[1] if peak > 2.0**_EMA_PEAK else 0


def _ema_finite(x: np.ndarray, w: float, peak: float | None = None) -> np.ndarray:
    """The debiased EMA of finite values, 0 < w < 1, without a Python loop over points; `peak` is the
    largest |value| when the caller knows it.

    With last_0 = 0 and last_k = w*last_{k-1} + (1-w)*x_k, inside a chunk of L points that starts after
    carry E: last_j = (1-w) * w**j * (cumsum_i(w**-i * x_i) + w*E/(1-w)). The chunk ends obey the same
    recurrence with weight w**L, solved first by a doubling scan over the chunks. Smoothed value k (1-based)
    is last_k / (1 - w**k), TensorBoard's debiasing.
    """
    n = x.size
    if n == 0:
        return _copy(x)
    log_w = math.log(w)
    length = max(1, min(n, _EMA_MAX_CHUNK, int(_EMA_EXP * math.log(2.0) / -log_w)))
    chunks, whole = -(-n // length), n // length
    exponent = _peak_exponent(x, peak)
    if exponent:  # an exact power of two keeps huge values finite once scaled by w**-j (a rare extra pass)
        x = np.ldexp(x, -exponent)
    j = np.arange(length, dtype=np.float64)
    scale = np.power(w, -j)  # applied while copying the values into the grid
    padded = np.empty(chunks * length)
    grid = padded.reshape(chunks, length)
    np.multiply(x[: whole * length].reshape(whole, length), scale, out=grid[:whole])
    if whole < chunks:
        np.multiply(x[whole * length :], scale[: n - whole * length], out=padded[whole * length : n])
        padded[n:] = 0.0

    # Each chunk's own last, without carry: (1-w) * w**(L-1-j) * x_j summed, from the scaled values (a sum,
    # not a matrix product: OpenBLAS's threads would spin on the core that the viewer's imports use).
    ends = grid.sum(axis=1)
    ends *= (1.0 - w) * w ** (length - 1.0)
    shift, factor = 1, w**length
    while shift < chunks and factor > 0.0:
        ends[shift:] += factor * ends[:-shift]  # numpy buffers the overlapping operands: old values are read
        shift, factor = shift * 2, factor * factor
    grid[1:, 0] += (w / (1.0 - w)) * ends[:-1]
    np.cumsum(grid, axis=1, out=grid)
    grid *= (1.0 - w) * np.power(w, j)

    flat = padded[:n]
    # Beyond k0 points w**k < 2**-60 and 1 - w**k rounds to 1: only the head needs dividing.
    k0 = min(n, int(64 * math.log(2.0) / -log_w) + 2)
    flat[:k0] /= 1.0 - np.power(w, np.arange(1, k0 + 1, dtype=np.float64))
    if exponent:
        np.ldexp(flat, exponent, out=flat)
    return flat


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average with the input's length: point k is the mean of the last `window` finite
    values up to k (fewer at the start). Non-finite points are returned as they are and skipped by the
    average, so they do not poison later windows. `window` 1 returns the values."""
    n_window = _check_window(window)
    x = _as_1d_float(values)
    finite = np.isfinite(x)
    if finite.all():
        return _moving_average_finite(x, n_window)
    out: np.ndarray = x.copy()
    out[finite] = _moving_average_finite(x[finite], n_window)
    return out


def _moving_average_finite(x: np.ndarray, window: int) -> np.ndarray:
    """Window sums from prefix sums restarted every `window` points (a window spans at most two blocks: the
    suffix of one plus the prefix of the next), so a huge value never cancels badly in far-away windows."""
    n = x.size
    if n == 0 or window == 1:
        return _copy(x)
    window = min(window, n)
    blocks = -(-n // window)
    grid: np.ndarray = np.zeros(blocks * window)
    grid[:n] = x
    grid = grid.reshape(blocks, window)
    total = np.cumsum(grid, axis=1)
    suffix = np.cumsum(grid[:, ::-1], axis=1)[:, ::-1]
    total[1:, :-1] += suffix[:-1, 1:]
    flat = total.reshape(-1)[:n]
    flat[:window] /= np.arange(1, window + 1, dtype=np.float64)
    flat[window:] /= window
    return flat
