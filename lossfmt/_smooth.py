"""Smoothing specs and smoothing a growing series: `parse_smooth` turns a spec string into a `Smoother`,
whose `run` continues from the `SmoothState` of the points before (incremental follow).

Specs: "span:F" (the default, `DEFAULT_SMOOTH`): an exponential moving average over steps whose time constant
is the fraction F of the shown step span, so a 10k-step and a 10M-step run of the same shape look the same
and zooming in refines the curve; "steps:N": the same with a fixed time constant of N steps; "ema:W":
TensorBoard's EMA, weight W per point; "ma:N": the trailing mean of N points; "none".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lossfmt._averages import (
    _as_1d_float,
    _check_positive,
    _check_weight,
    _check_window,
    _copy,
    _ema_finite,
    ema,
    moving_average,
)
from lossfmt._step_ema import _as_steps, _step_ema_run

#: The smoothing lossview draws unless told otherwise: an EMA over steps with a time constant of 2% of the
#: shown step span (for a 100-step run about TensorBoard's default ema:0.6).
DEFAULT_SMOOTH = "span:0.02"

_SPEC_HELP = (
    "expected 'span:F' with 0 < F <= 1 (EMA over steps, time constant F of the step span; e.g. span:0.01), "
    "'steps:N' (time constant N steps), 'ema:W' with 0 <= W < 1 (e.g. ema:0.6), "
    "'ma:N' with a whole number N >= 1 (e.g. ma:50), or 'none'"
)

# --- specs, and smoothing a growing series ------------------------------------------------------------------


@dataclass(frozen=True)
class SmoothState:
    """Where smoothing a growing series stopped: `Smoother.run` returns it, and given back with the points
    logged next it continues as if the whole series had been smoothed at once (up to float rounding, for
    steps that never decrease)."""

    #: The time constant in steps ("span", "steps"), the EMA weight ("ema") or the window ("ma").
    param: float
    #: Points seen so far (their positions stand in for steps when none are given).
    count: int = 0
    #: Over steps: (smoothed value, decayed weight, step, step interval) at the last finite point. For "ema":
    #: (TensorBoard's undebiased `last`, finite points so far, the value every point so far equals, or NaN).
    carry: tuple[float, ...] | None = None
    #: "ma": the last window-1 finite values.
    tail: tuple[float, ...] = ()


class Smoother:
    """A parsed smoothing spec (see `parse_smooth`). Call it on a whole series, or `run` it on a growing one
    piece by piece with the state of the previous piece."""

    def __init__(self, kind: str, param: float, spec: str) -> None:
        self.kind = kind
        self.param = param
        #: The spec in its canonical spelling, e.g. "span:0.01".
        self.spec = spec

    def __repr__(self) -> str:
        return f"Smoother({self.spec!r})"

    @property
    def label(self) -> str:
        """What the smoothing is, for a legend: "EMA 1% of span", "EMA 500 steps", "EMA 0.6", "mean of 50"."""
        if self.kind == "span":
            return f"EMA {self.param * 100:g}% of span"
        if self.kind == "steps":
            return f"EMA {self.param:g} steps"
        if self.kind == "ema":
            return f"EMA {self.param:g}"
        return f"mean of {int(self.param)}"

    def time_constant(self, span: float) -> float:
        """The time constant in steps this smoother uses for a shown step span (over steps only)."""
        return self.param * span if self.kind == "span" else self.param

    def stale(self, state: SmoothState, *, span: float) -> bool:
        """True when the shown step span has changed so much (by over 10%) that `state`'s time constant no
        longer fits it: smooth the whole series again instead of continuing. False unless kind is "span"."""
        if self.kind != "span":
            return False
        wanted = self.time_constant(span)
        return not (wanted / 1.1 <= state.param <= wanted * 1.1)

    def __call__(
        self, values: np.ndarray, steps: np.ndarray | None = None, *, span: float | None = None
    ) -> np.ndarray:
        """The smoothed series (same length; non-finite values returned as they are). `steps` (default: the
        positions 0, 1, ...) place the values for the EMAs over steps; `span` is the shown step span that
        "span:F" takes its fraction of (default: the range of `steps`). "ema"/"ma" ignore both."""
        return self.run(values, steps, span=span)[0]

    def run(
        self,
        values: np.ndarray,
        steps: np.ndarray | None = None,
        *,
        span: float | None = None,
        state: SmoothState | None = None,
    ) -> tuple[np.ndarray, SmoothState]:
        """Smooth `values` logged after the points behind `state` (None: a new series), returning them
        smoothed and the state after them. With a state, its time constant is kept (`span` is ignored)."""
        x = _as_1d_float(values)
        count = 0 if state is None else state.count
        s = _as_steps(steps, x.size, count)
        carry: tuple[float, ...] | None
        if self.kind == "ema":
            out, carry = _ema_run(x, self.param, None if state is None else state.carry)
            return out, SmoothState(self.param, count + x.size, carry)
        if self.kind == "ma":
            tail = () if state is None else state.tail
            out, tail = _ma_run(x, int(self.param), tail)
            return out, SmoothState(self.param, count + x.size, tail=tail)
        if state is not None:
            tau = state.param
        elif self.kind == "steps":
            tau = self.param
        else:
            if span is None:
                span = float(s.max()) - float(s.min()) if s.size else 0.0
            tau = self.param * float(span)
        carry = None if state is None else state.carry
        if tau > 0 and math.isfinite(tau):
            out, carry = _step_ema_run(x, s, tau, carry)
        else:  # no span (one step): only events at the same step average together
            out, carry = _step_ema_run(x, s, 1e-300, carry)
        return out, SmoothState(tau, count + x.size, carry)


def _ema_run(
    x: np.ndarray, w: float, carry: tuple[float, ...] | None
) -> tuple[np.ndarray, tuple[float, float, float]]:
    """TensorBoard's EMA of `x` after the points behind `carry` = (last, finite points, constant or NaN)."""
    if carry is None and x.size:
        low, high = float(x.min()), float(x.max())  # NaN if any value is
        if math.isfinite(low) and math.isfinite(high):  # the common case: no mask, no copy of the values
            out = _copy(x) if w == 0.0 or low == high else _ema_finite(x, w, max(high, -low))  # = ema(x, w)
            n = x.size
            constant = low if low == high else math.nan
            return out, (float(out[-1]) * (1.0 - w**n), float(n), constant)
    finite = np.isfinite(x)
    if carry is None:
        out = ema(x, w)
        v, n_old, last_old, constant = out[finite], 0, 0.0, float(x[0]) if x.size else math.nan
        if x.size and not bool(np.all(x == x[0])):
            constant = math.nan
    else:
        last_old, n_old, constant = carry[0], int(carry[1]), carry[2]
        if not bool(np.all(x == constant)):
            constant = math.nan
        out = x.copy()
        v = x[finite]
        if v.size and w > 0 and math.isnan(constant):  # a constant series stays as it is (TensorBoard)
            k = np.arange(1, v.size + 1, dtype=np.float64)
            from_zero = _ema_finite(v, w) * (1.0 - w**k)  # undebiased EMA of v alone, started at 0
            v = (w**k * last_old + from_zero) / (1.0 - w ** (n_old + k))
            out[finite] = v
    if not v.size:
        return out, (last_old, float(n_old), constant)
    n = n_old + v.size
    return out, (float(v[-1]) * (1.0 - w**n), float(n), constant)


def _ma_run(x: np.ndarray, window: int, tail: tuple[float, ...]) -> tuple[np.ndarray, tuple[float, ...]]:
    """The moving average of `x` after the finite values `tail` (the last window-1 of them)."""
    out = moving_average(np.concatenate([np.asarray(tail, dtype=np.float64), x]), window)[len(tail) :]
    if window == 1:
        return out, ()
    finite = x[np.isfinite(x)][-(window - 1) :]
    return out, (*tail, *finite.tolist())[-(window - 1) :]


def parse_smooth(spec: str | None) -> Smoother | None:
    """Turn a smoothing spec into a `Smoother`: "span:F" (0 < F <= 1; the default, `DEFAULT_SMOOTH`),
    "steps:N" (N > 0), "ema:W" (TensorBoard's EMA, 0 <= W < 1), "ma:N" (trailing mean of N points), or
    "none"/None (no smoothing -> None). See the module docstring."""
    if spec is None:
        return None
    if not isinstance(spec, str):
        raise TypeError(f"smoothing spec must be a string like 'span:0.01' or 'none', got {spec!r}")
    kind, sep, arg = spec.strip().lower().partition(":")
    if kind == "none" and not sep:
        return None
    if kind in ("span", "steps", "ema") and sep:
        try:
            number = float(arg)
        except ValueError:
            raise ValueError(f"bad smoothing spec {spec!r}: {arg!r} is not a number; {_SPEC_HELP}") from None
        if kind == "ema":
            _check_weight(number, spec)
        elif kind == "span":
            _check_positive(number, "span fraction", spec, at_most=1.0)
        else:
            _check_positive(number, "time constant (steps)", spec)
        return Smoother(kind, number, f"{kind}:{np.format_float_positional(number, trim='-')}")
    if kind == "ma" and sep:
        try:
            window = int(arg)
        except ValueError:
            raise ValueError(
                f"bad smoothing spec {spec!r}: window {arg!r} is not a whole number of points (e.g. ma:50)"
            ) from None
        _check_window(window, spec)
        return Smoother(kind, window, f"ma:{window}")
    raise ValueError(f"bad smoothing spec {spec!r}: {_SPEC_HELP}")
