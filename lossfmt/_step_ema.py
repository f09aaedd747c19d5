"""The EMA over steps, the default smoothing's average: each finite value weighs the step interval it stands
for and decays by e per time constant of steps, so gaps, irregular logging and several events per step
do not change how much history a point reflects. Vectorized with numpy (no Python loop over points)."""

from __future__ import annotations

import math

import numpy as np

from lossfmt._averages import _EMA_EXP, _EMA_MAX_CHUNK, _as_1d_float, _check_positive, _peak_exponent

# A gap of more than this many time constants leaves the earlier points a weight below e**-60 (nothing at
# float64 precision): gaps are capped there so that a huge gap cannot overflow the closed form.
_MAX_GAP = 60.0
# Long series go through in blocks of this many points (see _step_ema_run).
_BLOCK = 1 << 19


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
        head = float(gaps[0]) if positive[0] else (interval0 if interval0 > 0 else float(gaps[1]))
        rest = gaps[1:]
        low = min(head, float(rest.min())) if rest.size else head
        high = max(head, float(rest.max())) if rest.size else head
        if low == high:  # evenly spaced steps: no weights array at all
            return None, -math.expm1(-min(low / tau, _MAX_GAP)), low
        h = gaps.copy()
        h[0] = head
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
    even = c is None and n > 2 and float(g[1:].min()) == float(g[1:].max())
    length, t, span, start_gap = _chunk_layout(g, even=even)
    chunks = span.size
    q_row = np.exp(t) if even else None

    flat, values, q, q_sum = _weighted(x, t, q_row, chunks, length, c, valid)
    carry_s, carry_w, end_w = _chunk_carries(values.sum(axis=1), q_sum, span, start_gap, mean0, weight0)
    values[:, 0] += carry_s
    np.cumsum(values, axis=1, out=values)
    with np.errstate(invalid="ignore", divide="ignore"):  # W = 0 before the first valid point: NaN
        if q is None:
            assert q_row is not None  # q is None only for even steps
            values /= np.add.outer(carry_w, np.cumsum(q_row))
        else:
            np.cumsum(q, axis=1, out=q)
            q += carry_w[:, None]
            values /= q
    out = flat[:n]
    if exponent:
        np.ldexp(out, exponent, out=out)
    return out, end_w


def _weighted(
    x: np.ndarray,
    t: np.ndarray,
    q_row: np.ndarray | None,
    chunks: int,
    length: int,
    c: np.ndarray | None,
    valid: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
    """The points laid out in chunks, weighted: e**t * c*x per point (`flat`, and as a (chunks, L) grid,
    zero-padded), the weights e**t * c (None: one row `q_row` for every chunk, when steps are even and all
    points valid; else a grid, computed in `t`'s buffer) and each chunk's weight sum."""
    n = x.size
    even = q_row is not None
    flat = np.empty(chunks * length)
    values = flat.reshape(chunks, length)
    whole = n // length
    q = None  # the weights e**t * c per point; None: one row q_row for every chunk
    if even and valid is not None:
        q = np.zeros((chunks, length))
        q.reshape(-1)[:n] = valid
        assert q_row is not None  # even
        q *= q_row
    elif not even:
        q = np.exp(t, out=t)
        q.reshape(-1)[n:] = 0.0
        if c is not None:
            q.reshape(-1)[:n] *= c
        if valid is not None:
            q.reshape(-1)[:n] *= valid
    if q is None:
        assert q_row is not None  # q is None only for even steps
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
    return flat, values, q, q_sum


def _chunk_layout(g: np.ndarray, *, even: bool) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """Chunk length, decay times t inside the chunks (one row of length L when `even`: the same for every
    chunk; else a (chunks, L) grid, t = 0 at each chunk's first point), each chunk's span (t at its last
    real point) and its start gap (from the previous chunk's last point). Chunks are short enough that
    e**t stays below 2**_EMA_EXP."""
    n = g.size
    limit = _EMA_EXP * math.log(2.0)
    length = min(n, _EMA_MAX_CHUNK)
    if even and g[1] > 0:
        length = max(1, min(length, int(limit / g[1])))
    while True:
        chunks = -(-n // length)
        start_gap = g[::length].copy()
        if even:
            t = np.arange(length, dtype=np.float64) * g[min(1, n - 1)]
            span = np.full(chunks, t[-1])
            if chunks * length > n:
                span[-1] = t[n - (chunks - 1) * length - 1]
            return length, t, span, start_gap
        t = np.empty(chunks * length)
        t[:n] = g
        t[n:] = 0.0
        t = t.reshape(chunks, length)
        t[:, 0] = 0.0
        np.cumsum(t, axis=1, out=t)
        span = t[:, -1].copy()  # padding adds nothing: a chunk's last real point has the same t
        if float(span.max()) <= limit or length == 1:
            return length, t, span, start_gap
        length = max(1, length // 8)  # a run of huge gaps: shorter chunks (rare)


def _chunk_carries(
    sums: np.ndarray, q_sum: np.ndarray, span: np.ndarray, start_gap: np.ndarray, mean0: float, weight0: float
) -> tuple[np.ndarray, np.ndarray, float]:
    """What each chunk starts from: the S and W carried into its first point, from the chunks' own sums
    of e**t * c*x and e**t * c; and the final W. The chunk ends obey S_end = decay * S_end_before + own,
    solved by a doubling scan over the chunks."""
    decay_end = np.exp(-span)
    end_s = sums * decay_end  # each chunk's S and W at its last point, without carry
    end_w = q_sum * decay_end
    step_decay = np.exp(-(start_gap + span))  # from one chunk's last point to the next one's
    end_s[0] += step_decay[0] * mean0 * weight0
    end_w[0] += step_decay[0] * weight0
    shift, a = 1, step_decay.copy()
    while shift < span.size and bool(a[shift:].any()):
        end_s[shift:] += a[shift:] * end_s[:-shift]  # numpy buffers overlapping operands: old values read
        end_w[shift:] += a[shift:] * end_w[:-shift]
        a[shift:] *= a[:-shift]
        shift *= 2
    into = np.exp(-start_gap)
    carry_s = into * np.concatenate(([mean0 * weight0], end_s[:-1]))
    carry_w = into * np.concatenate(([weight0], end_w[:-1]))
    return carry_s, carry_w, float(end_w[-1])
