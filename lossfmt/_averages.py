"""The numeric averages behind smoothing, vectorized with numpy (no Python loop over points): TensorBoard's
EMA, the EMA over steps and the trailing moving average. Non-finite values are returned as they are and
skipped by every average, so a NaN does not poison later points."""

from __future__ import annotations

import math

import numpy as np

# EMA chunks: within a chunk of L points the closed form scales values by up to 2**_EMA_EXP (weight**-j, or
# e**t over steps). That keeps every product finite for |value| <= 2**_EMA_PEAK (larger values are first
# scaled by an exact power of two), and bounding L bounds the cumulative-sum rounding error to about L ulps.
_EMA_EXP = 600
_EMA_PEAK = 400
_EMA_MAX_CHUNK = 4096
# A gap of more than this many time constants leaves the earlier points a weight below e**-60 (nothing at
# float64 precision): gaps are capped there so that a huge gap cannot overflow the closed form.
_MAX_GAP = 60.0
# The EMA over steps works through long series in blocks of this many points (see _step_ema_run).
_BLOCK = 1 << 19


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
        return x.copy()
    low, high = float(x.min()), float(x.max())  # NaN if any value is: then the masked path below
    if math.isfinite(low) and math.isfinite(high):  # the common case, without a mask over the values
        return x.copy() if low == high else _ema_finite(x, w, max(high, -low))
    if bool(np.all(x == x[0])):
        return x.copy()
    finite = np.isfinite(x)
    out = x.copy()
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
        return x.copy()
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
    out = x.copy()
    out[finite] = _moving_average_finite(x[finite], n_window)
    return out


def _moving_average_finite(x: np.ndarray, window: int) -> np.ndarray:
    """Window sums from prefix sums restarted every `window` points (a window spans at most two blocks: the
    suffix of one plus the prefix of the next), so a huge value never cancels badly in far-away windows."""
    n = x.size
    if n == 0 or window == 1:
        return x.copy()
    window = min(window, n)
    blocks = -(-n // window)
    grid = np.zeros(blocks * window)
    grid[:n] = x
    grid = grid.reshape(blocks, window)
    total = np.cumsum(grid, axis=1)
    suffix = np.cumsum(grid[:, ::-1], axis=1)[:, ::-1]
    total[1:, :-1] += suffix[:-1, 1:]
    flat = total.reshape(-1)[:n]
    flat[:window] /= np.arange(1, window + 1, dtype=np.float64)
    flat[window:] /= window
    return flat


# --- the EMA over steps -------------------------------------------------------------------------------------


def step_ema(values: np.ndarray, steps: np.ndarray, time_constant: float) -> np.ndarray:
    """An exponential moving average over steps, not points: each finite value's weight decays by e per
    `time_constant` steps, so irregular logging intervals, gaps and several events per step (duplicates
    average with equal weight) do not change how much of the curve's history a point reflects. Debiased:
    point k is the weighted mean of the finite values up to k (the first point is itself). Non-finite values
    are returned as they are and skipped. Steps in any order are smoothed in step order (stable)."""
    tau = _check_positive(time_constant, "time constant (steps)")
    out, _ = _step_ema_run(_as_1d_float(values), _as_steps(steps, len(values)), tau, None)
    return out


def _as_steps(steps: np.ndarray | None, n: int, first: int = 0) -> np.ndarray:
    if steps is None:
        return np.arange(first, first + n, dtype=np.float64)
    arr = np.asarray(steps)
    if arr.shape != (n,):
        raise ValueError(f"steps must be 1-D with one step per value ({n}), got shape {arr.shape}")
    return arr


def _step_ema_run(
    x: np.ndarray, steps: np.ndarray, tau: float, carry: tuple[float, ...] | None
) -> tuple[np.ndarray, tuple[float, ...] | None]:
    """step_ema of `x` continuing from `carry` = (mean, weight, step, interval) of the points before (None:
    none); returns the smoothed values and the carry after them.

    A long series goes through in blocks of _BLOCK points, each continuing from the previous one's carry:
    the same numbers, but the temporaries are a few MB that the allocator reuses instead of fresh 80 MB
    arrays for 10M points (their first-touch page faults cost more than the arithmetic)."""
    n = x.size
    if n <= _BLOCK:
        return _step_ema_block(x, steps, tau, carry)
    order = None if _ascending(steps) else np.argsort(steps, kind="stable")
    if order is not None:
        x, steps = x[order], steps[order]
    out = np.empty(n)
    for lo in range(0, n, _BLOCK):
        out[lo : lo + _BLOCK], carry = _step_ema_block(
            x[lo : lo + _BLOCK], steps[lo : lo + _BLOCK], tau, carry
        )
    if order is None:
        return out, carry
    unsorted = np.empty(n)
    unsorted[order] = out
    return unsorted, carry


def _ascending(x: np.ndarray) -> bool:
    """True if x never decreases, compared in blocks so that the temporary stays small."""
    for start in range(0, x.size - 1, _BLOCK):
        part = x[start : start + _BLOCK + 1]
        if not bool(np.all(part[1:] >= part[:-1])):
            return False
    return True


def _step_ema_block(
    x: np.ndarray, steps: np.ndarray, tau: float, carry: tuple[float, ...] | None
) -> tuple[np.ndarray, tuple[float, ...] | None]:
    """_step_ema_run on one block. Non-finite points keep their place in the step sequence (their steps
    still decay the average) with no weight, so the usual evenly spaced steps stay evenly spaced around a
    NaN."""
    n = x.size
    if not n:
        return x.copy(), carry
    low, high = float(x.min()), float(x.max())  # NaN if any value is
    valid = None if math.isfinite(low) and math.isfinite(high) else np.isfinite(x)
    before = None if carry is None else carry[2]
    gaps = _gaps(steps, before)
    order = None
    if n > 1 and float(gaps[1:].min()) < 0:  # out of step order: smooth in step order, stably
        order = np.argsort(steps, kind="stable")
        gaps, x = _gaps(steps[order], before), x[order]
        valid = None if valid is None else valid[order]
    mean0, weight0, interval0 = (0.0, 0.0, 0.0) if carry is None else (carry[0], carry[1], carry[3])
    weights, unit, interval = _interval_weights(gaps, interval0, tau, first=carry is None)
    if interval0 == 0.0 and interval > 0.0:  # the carried weight was counted in points: now in intervals
        weight0 *= unit if weights is None else float(weights[0])
    last = float(steps[-1]) if order is None else float(steps[order[-1]])
    np.multiply(gaps, 1.0 / tau, out=gaps)
    np.minimum(gaps, _MAX_GAP, out=gaps)
    raw = x
    if valid is not None:
        kept = x[valid]
        low, high = (float(kept.min()), float(kept.max())) if kept.size else (0.0, 0.0)
        x = np.where(valid, x, 0.0)
    peak = max(abs(low), abs(high), abs(mean0))
    smoothed, weight = _decayed_mean(x, gaps, mean0, weight0 / unit, peak, weights, valid)
    weight *= unit
    mean = float(smoothed[-1]) if weight > 0 else 0.0  # S/W: the same at a trailing NaN as before it
    if not math.isfinite(mean):
        mean, weight = 0.0, 0.0
    if low == high and (carry is None or weight0 == 0.0 or mean0 == low):  # a constant stays that constant
        smoothed[:] = low
        mean = low if weight > 0 else mean
    if valid is not None:
        smoothed[~valid] = raw[~valid]
    if order is None:
        return smoothed, (mean, weight, last, interval)
    out = np.empty_like(smoothed)
    out[order] = smoothed
    return out, (mean, weight, last, interval)


def _interval_weights(
    gaps: np.ndarray, interval0: float, tau: float, *, first: bool
) -> tuple[np.ndarray | None, float, float]:
    """Each point's weight: the decayed length of the step interval it stands for, 1 - e**-(h/tau) with h
    the distance from the previous distinct step (the events of one step share their step's interval; the
    first step takes the next interval, or the carried one). So a stretch logged every 25 steps weighs as
    much as one logged every step. Returns (weights, None if all equal), the common weight (1 when all
    equal), and the last interval (0 while no two distinct steps were seen: weights are then counted in
    points)."""
    positive = gaps > 0
    if first:
        positive[0] = False
    if positive[1:].all() and (positive[0] or gaps.size > 1):  # no repeated step: each its own interval
        h = gaps.copy()
        if not positive[0]:
            h[0] = interval0 if interval0 > 0 else gaps[1]
    elif not positive.any():
        if interval0 == 0.0:
            return None, 1.0, 0.0
        h = np.full(gaps.size, interval0)
    else:
        intervals = gaps[positive]
        lead = interval0 if interval0 > 0 else float(intervals[0])
        if float(intervals.min()) == float(intervals.max()) == lead:  # e.g. every rank logs every k steps
            return None, -math.expm1(-min(lead / tau, _MAX_GAP)), lead
        index = np.where(positive, np.arange(gaps.size), -1)
        np.maximum.accumulate(index, out=index)
        h = np.where(index >= 0, gaps[np.maximum(index, 0)], lead)
    low, high, last = float(h.min()), float(h.max()), float(h[-1])
    if low == high:
        return None, -math.expm1(-min(low / tau, _MAX_GAP)), last
    np.multiply(h, -1.0 / tau, out=h)
    np.maximum(h, -_MAX_GAP, out=h)
    weights = np.expm1(h, out=h)
    np.negative(weights, out=weights)
    return weights, 1.0, last


def _gaps(steps: np.ndarray, before: float | None) -> np.ndarray:
    """Float step differences, the first from `before` (0 without one, or when `before` is later: a rewind
    continues as if at that step)."""
    gaps = np.empty(steps.size)
    np.subtract(steps[1:], steps[:-1], out=gaps[1:])
    gaps[0] = 0.0 if before is None else max(0.0, float(steps[0]) - before)
    return gaps


def _decayed_mean(
    x: np.ndarray,
    g: np.ndarray,
    mean0: float,
    weight0: float,
    peak: float,
    c: np.ndarray | None = None,
    valid: np.ndarray | None = None,
) -> tuple[np.ndarray, float]:
    """out_i = S_i / W_i with S_i = e**-g_i * S_{i-1} + c_i*x_i and W_i = e**-g_i * W_{i-1} + c_i (c = 1 when
    None; 0 < c <= 1; c = 0 where `valid` is False), started from S = mean0*weight0 and W = weight0 (finite
    x, |x| and |mean0| <= peak, 0 <= g <= _MAX_GAP); also returns the final W. NaN where W is still 0.

    Inside a chunk whose points sit at decay times t_j (t = 0 at its first point), S_j = e**-t_j * (carry +
    cumsum(e**t * x)_j) and the same for W with x = 1: their ratio needs no e**-t. The chunks' ends obey the
    same recurrence with a per-chunk decay, solved by a doubling scan over the chunks. Chunks are kept short
    enough that e**t stays below 2**_EMA_EXP; evenly spaced steps (the usual case) share one row of e**t.
    """
    n = x.size
    exponent = _peak_exponent(x, peak)
    if exponent:
        x, mean0 = np.ldexp(x, -exponent), math.ldexp(mean0, -exponent)
    limit = _EMA_EXP * math.log(2.0)
    even = c is None and n > 2 and float(g[1:].min()) == float(g[1:].max())
    length = min(n, _EMA_MAX_CHUNK)
    if even and g[1] > 0:
        length = max(1, min(length, int(limit / g[1])))
    while True:
        chunks = -(-n // length)
        start_gap = g[::length].copy()  # each chunk's gap from the previous chunk's last point
        if even:
            t = np.arange(length, dtype=np.float64) * g[min(1, n - 1)]
            span = np.full(chunks, t[-1])
            if chunks * length > n:
                span[-1] = t[n - (chunks - 1) * length - 1]
            q_row = np.exp(t)
            break
        t = np.empty(chunks * length)
        t[:n] = g
        t[n:] = 0.0
        t = t.reshape(chunks, length)
        t[:, 0] = 0.0
        np.cumsum(t, axis=1, out=t)
        span = t[:, -1].copy()  # padding adds nothing: a chunk's last real point has the same t
        if float(span.max()) <= limit or length == 1:
            break
        length = max(1, length // 8)  # a run of huge gaps: shorter chunks (rare)

    flat = np.empty(chunks * length)
    values = flat.reshape(chunks, length)
    whole = n // length
    q = None  # the weights e**t * c per point; None: one row q_row for every chunk
    if even and valid is not None:
        q = np.zeros((chunks, length))
        q.reshape(-1)[:n] = valid
        q *= q_row
    elif not even:
        q = np.exp(t, out=t)
        q.reshape(-1)[n:] = 0.0
        if c is not None:
            q.reshape(-1)[:n] *= c
        if valid is not None:
            q.reshape(-1)[:n] *= valid
    if q is None:
        np.multiply(x[: whole * length].reshape(whole, length), q_row, out=values[:whole])
        np.multiply(x[whole * length :], q_row[: n - whole * length], out=flat[whole * length : n])
        flat[n:] = 0.0
        q_sum = np.full(chunks, float(q_row.sum()))
        if chunks * length > n:
            q_sum[-1] = float(q_row[: n - (chunks - 1) * length].sum())
    else:
        np.multiply(x, q.reshape(-1)[:n], out=flat[:n])
        flat[n:] = 0.0
        q_sum = q.sum(axis=1)
    decay_end = np.exp(-span)
    end_s = values.sum(axis=1) * decay_end  # each chunk's S and W at its last point, without carry
    end_w = q_sum * decay_end
    step_decay = np.exp(-(start_gap + span))  # from one chunk's last point to the next one's
    end_s[0] += step_decay[0] * mean0 * weight0
    end_w[0] += step_decay[0] * weight0
    shift, a = 1, step_decay.copy()
    while shift < chunks and bool(a[shift:].any()):
        end_s[shift:] += a[shift:] * end_s[:-shift]  # numpy buffers overlapping operands: old values read
        end_w[shift:] += a[shift:] * end_w[:-shift]
        a[shift:] *= a[:-shift]
        shift *= 2
    carry_s = np.exp(-start_gap) * np.concatenate(([mean0 * weight0], end_s[:-1]))
    carry_w = np.exp(-start_gap) * np.concatenate(([weight0], end_w[:-1]))
    values[:, 0] += carry_s
    np.cumsum(values, axis=1, out=values)
    with np.errstate(invalid="ignore", divide="ignore"):  # W = 0 before the first valid point: NaN
        if q is None:
            values /= np.add.outer(carry_w, np.cumsum(q_row))
        else:
            np.cumsum(q, axis=1, out=q)
            q += carry_w[:, None]
            values /= q
    out = flat[:n]
    if exponent:
        np.ldexp(out, exponent, out=out)
    return out, float(end_w[-1])
