"""Smoothing (lossfmt._smooth, lossfmt._averages through lossfmt.transforms): TensorBoard's EMA, the moving
average, the step-aware default and resuming a growing series."""

from __future__ import annotations

import bisect
import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lossfmt.transforms import DEFAULT_SMOOTH, ema, moving_average, parse_smooth, step_ema

# --- helpers ----------------------------------------------------------------------------------------------


def tb_smooth(values: list[float], weight: float) -> list[float]:
    """TensorBoard's scalar smoothing, transcribed line by line as the reference.

    Checked against tensorflow/tensorboard: `resmoothDataset` in
    tensorboard/components/vz_line_chart2/line-chart.ts (commit 00bd827c4d958710a8c67f5e240c24c8cf1498f4) and
    `classicSmoothing` in tensorboard/webapp/widgets/line_chart_v2/data_transformer.ts
    (commit 412c86e54f5611fff1237f175f13dd490a9246a4): last = 0; numAccum = 0; isConstant = every value ==
    the first (#786); a constant series or a non-finite value is returned as is, otherwise
    last = last*w + (1-w)*v; numAccum++; value = last / (1 - w**numAccum) (debiasWeight 1 when w == 1).
    """
    is_constant = all(v == values[0] for v in values)
    last, num_accum, out = 0.0, 0, []
    for v in values:
        if is_constant or not math.isfinite(v):
            out.append(v)
            continue
        last = last * weight + (1 - weight) * v
        num_accum += 1
        debias = 1.0 if weight == 1 else 1 - weight**num_accum
        out.append(last / debias)
    return out


def assert_smoothing_close(got: np.ndarray, want: list[float], scale: list[float], rtol: float) -> None:
    """Equal where non-finite; elsewhere within rtol of the same smoothing applied to |values| (the size of
    the terms summed): the error any float evaluation order has, even where terms cancel to ~0."""
    want_a, scale_a = np.asarray(want), np.asarray(scale)
    assert got.shape == want_a.shape
    finite = np.isfinite(want_a)
    np.testing.assert_array_equal(got[~finite], want_a[~finite])
    assert np.all(np.abs(got[finite] - want_a[finite]) <= rtol * scale_a[finite] + 1e-300)


finite_floats = st.floats(min_value=-1e100, max_value=1e100, allow_nan=False, allow_infinity=False)
any_floats = st.one_of(finite_floats, st.sampled_from([math.nan, math.inf, -math.inf]))
weights = st.floats(min_value=0.0, max_value=0.999)


# --- EMA ----------------------------------------------------------------------------------------------------


def test_ema_matches_a_hand_computed_example() -> None:
    # w = 0.5: last = 0.5, 1.25, 2.125; debias 0.5, 0.75, 0.875.
    np.testing.assert_allclose(
        ema(np.array([1.0, 2.0, 3.0]), 0.5), [1.0, 1.25 / 0.75, 2.125 / 0.875], rtol=1e-15
    )


@settings(max_examples=300, deadline=None)
@given(st.lists(any_floats, max_size=60), weights)
def test_ema_equals_tensorboard_smoothing(values: list[float], weight: float) -> None:
    got = ema(np.array(values, dtype=np.float64), weight)
    scale = tb_smooth([abs(v) for v in values], weight) if values else []
    assert_smoothing_close(got, tb_smooth(values, weight), scale, rtol=1e-9)


@pytest.mark.parametrize("spike", [1e100, 1e300])
@pytest.mark.parametrize("finite", [False, True])
@pytest.mark.parametrize("weight", [1e-12, 0.3, 0.6, 0.9, 0.99, 0.999, 0.99999])
def test_ema_equals_tensorboard_over_many_chunks(weight: float, finite: bool, spike: float) -> None:
    rng = np.random.default_rng(7)
    values = rng.normal(3.0, 2.0, 30_001) * np.exp(rng.normal(0, 5, 30_001))
    if not finite:
        values[[5, 777, 20_000]] = [math.nan, math.inf, -math.inf]
    values[1000] = spike  # a huge spike must neither overflow nor swamp the values after it
    got = ema(values, weight)
    want = tb_smooth(values.tolist(), weight)
    assert_smoothing_close(got, want, tb_smooth(np.abs(values).tolist(), weight), rtol=1e-9)


def test_ema_handles_values_near_the_float_limit() -> None:
    values = np.array([1e308, -1e308, 1.7e308, 3.0, 1e-300])
    got = ema(values, 0.9)
    assert np.isfinite(got).all()
    assert_smoothing_close(
        got, tb_smooth(values.tolist(), 0.9), tb_smooth(np.abs(values).tolist(), 0.9), 1e-9
    )


def test_ema_passes_non_finite_through_without_poisoning_later_points() -> None:
    values = np.array([1.0, math.nan, 3.0, math.inf, 5.0, -math.inf, 7.0])
    got = ema(values, 0.6)
    np.testing.assert_array_equal(got[[1, 3, 5]], values[[1, 3, 5]])
    np.testing.assert_allclose(got[[0, 2, 4, 6]], ema(np.array([1.0, 3.0, 5.0, 7.0]), 0.6), rtol=1e-15)


@settings(deadline=None)
@given(finite_floats, st.integers(0, 50), weights)
def test_ema_of_a_constant_is_that_constant(value: float, n: int, weight: float) -> None:
    np.testing.assert_array_equal(ema(np.full(n, value), weight), np.full(n, value))


@settings(deadline=None)
@given(st.lists(any_floats, max_size=40), weights)
def test_smoothing_keeps_the_length(values: list[float], weight: float) -> None:
    x = np.array(values, dtype=np.float64)
    assert ema(x, weight).shape == x.shape
    assert moving_average(x, 5).shape == x.shape


def test_ema_weight_zero_is_identity_and_input_is_not_modified() -> None:
    values = np.array([3.0, 1.0, math.nan, 2.0])
    before = values.copy()
    np.testing.assert_array_equal(ema(values, 0.0), values)
    ema(values, 0.9)
    np.testing.assert_array_equal(values, before)


@pytest.mark.parametrize("weight", [1.0, 1.5, -0.1, math.nan, math.inf])
def test_ema_rejects_weights_outside_zero_to_one(weight: float) -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        ema(np.array([1.0, 2.0]), weight)


def test_ema_rejects_non_numbers_and_2d_input() -> None:
    with pytest.raises(TypeError):
        ema(np.array([1.0, 2.0]), True)
    with pytest.raises(TypeError):
        ema(np.array([1.0, 2.0]), "0.6")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="1-D"):
        ema(np.ones((2, 2)), 0.5)


# --- moving average -----------------------------------------------------------------------------------------


def reference_moving_average(values: list[float], window: int) -> tuple[list[float], list[float]]:
    """Mean of the last `window` finite values (and of their magnitudes, for the tolerance)."""
    out, scale, seen = [], [], []
    for v in values:
        if not math.isfinite(v):
            out.append(v)
            scale.append(0.0)
            continue
        seen.append(v)
        tail = seen[-window:]
        out.append(math.fsum(tail) / len(tail))
        scale.append(math.fsum(abs(t) for t in tail) / len(tail))
    return out, scale


@settings(max_examples=200, deadline=None)
@given(st.lists(any_floats, max_size=80), st.integers(1, 30))
def test_moving_average_is_trailing_and_skips_non_finite(values: list[float], window: int) -> None:
    want, scale = reference_moving_average(values, window)
    assert_smoothing_close(moving_average(np.array(values, dtype=np.float64), window), want, scale, 1e-12)


def test_moving_average_first_points_average_what_is_available() -> None:
    got = moving_average(np.array([2.0, 4.0, 6.0, 8.0, 10.0]), 3)
    np.testing.assert_allclose(got, [2.0, 3.0, 4.0, 6.0, 8.0])


def test_moving_average_is_not_poisoned_by_a_far_away_huge_value() -> None:
    values = np.concatenate([[1e100], np.ones(10_000)])
    got = moving_average(values, 10)
    np.testing.assert_array_equal(got[20:], 1.0)


@settings(deadline=None)
@given(st.lists(any_floats, max_size=50))
def test_moving_average_with_window_one_is_identity(values: list[float]) -> None:
    x = np.array(values, dtype=np.float64)
    np.testing.assert_array_equal(moving_average(x, 1), x)


@pytest.mark.parametrize("window", [0, -3])
def test_moving_average_rejects_empty_windows(window: int) -> None:
    with pytest.raises(ValueError, match=">= 1"):
        moving_average(np.ones(3), window)


# --- parsing ------------------------------------------------------------------------------------------------


def test_parse_smooth_builds_the_named_smoother() -> None:
    x = np.array([1.0, 5.0, 2.0, 8.0])
    ema_fn, ma_fn = parse_smooth("ema:0.6"), parse_smooth(" MA:2 ")
    assert ema_fn is not None and ma_fn is not None
    np.testing.assert_array_equal(ema_fn(x), ema(x, 0.6))
    np.testing.assert_array_equal(ma_fn(x), moving_average(x, 2))
    assert parse_smooth("none") is None
    assert parse_smooth(None) is None


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("ema:1", r"\[0, 1\)"),
        ("ema:abc", "not a number"),
        ("ma:0", ">= 1"),
        ("ma:2.5", "whole number"),
        ("ema", "expected 'span:F'"),
        ("gauss:3", "expected 'span:F'"),
        ("", "expected 'span:F'"),
    ],
)
def test_parse_smooth_names_the_bad_spec(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        parse_smooth(spec)
    assert repr(spec) in str(info.value) or spec == ""


# --- the EMA over steps (the default) -----------------------------------------------------------------------


def reference_step_ema(values: list[float], steps: list[int], tau: float) -> tuple[list, list]:
    """The definition, one point at a time in step order: with d the distance to the previous point's step
    and h to the previous distinct step (the first step: the next distinct step's h), the weight is
    c = 1 - e**-(h/tau) for a finite value and 0 for a non-finite one (returned as it is), S = e**-(d/tau) *
    S + c*v, W = e**-(d/tau) * W + c, point = S / W (d/tau and h/tau capped at 60); and the same of |v|."""
    out, scale = list(values), [0.0] * len(values)
    distinct = sorted(set(steps))
    first_h = distinct[1] - distinct[0] if len(distinct) > 1 else 1
    s = w = a = 0.0
    last = None
    for i in sorted(range(len(values)), key=lambda i: steps[i]):
        v = values[i]
        decay = 1.0 if last is None else math.exp(-min((steps[i] - last) / tau, 60.0))
        last = steps[i]
        s, w, a = decay * s, decay * w, decay * a
        if not math.isfinite(v):
            continue
        below = bisect.bisect_left(distinct, steps[i])
        c = -math.expm1(-min((steps[i] - distinct[below - 1] if below else first_h) / tau, 60.0))
        s, w, a = s + c * v, w + c, a + c * abs(v)
        out[i], scale[i] = s / w, a / w
    return out, scale


@st.composite
def stepped_series(draw: st.DrawFn, *, sorted_steps: bool = True, min_size: int = 0) -> tuple[list, list]:
    """(values, steps): gaps of 0 (several events per step), 1 or a few, and now and then a huge one."""
    gaps = draw(st.lists(st.sampled_from([0, 0, 1, 1, 1, 2, 7, 100, 10**6]), min_size=min_size, max_size=60))
    steps = np.cumsum(gaps).tolist()
    if not sorted_steps:
        steps = draw(st.permutations(steps))
    values = draw(st.lists(any_floats, min_size=len(steps), max_size=len(steps)))
    return values, steps


@settings(max_examples=300, deadline=None)
@given(stepped_series(sorted_steps=False), st.floats(0.01, 1e7))
def test_step_ema_matches_its_definition(series: tuple[list, list], tau: float) -> None:
    values, steps = series
    want, scale = reference_step_ema(values, steps, tau)
    got = step_ema(np.array(values, dtype=np.float64), np.array(steps, dtype=np.int64), tau)
    assert_smoothing_close(got, want, scale, rtol=1e-9)


@pytest.mark.parametrize("tau", [0.3, 2.0, 50.0, 5000.0])
def test_step_ema_over_one_event_per_step_is_tensorboards_ema(tau: float) -> None:
    rng = np.random.default_rng(1)
    values = rng.normal(size=20_000)
    got = step_ema(values, np.arange(20_000) * 3, tau * 3)
    np.testing.assert_allclose(got, ema(values, math.exp(-1.0 / tau)), rtol=1e-9, atol=1e-12)


def test_step_ema_over_many_chunks_with_huge_gaps_and_values_matches_its_definition() -> None:
    rng = np.random.default_rng(2)
    n = 30_000
    steps = np.cumsum(rng.choice([0, 1, 3, 10_000], n, p=[0.2, 0.5, 0.28, 0.02]))
    values = rng.normal(3.0, 2.0, n) * np.exp(rng.normal(0, 5, n))
    values[[5, 777, 20_000]] = [math.nan, math.inf, -math.inf]
    values[1000] = 1e300
    for tau in (0.5, 40.0, 1e6):
        want, scale = reference_step_ema(values.tolist(), steps.tolist(), tau)
        assert_smoothing_close(step_ema(values, steps, tau), want, scale, rtol=1e-9)


def test_several_events_per_step_average_without_shortening_the_time_constant() -> None:
    # Eight ranks merged: eight events per step. At each step's last event the curve is the one of the
    # per-step means, with the same time constant in steps (an EMA per point would be 8x shorter).
    rng = np.random.default_rng(3)
    means = np.cumsum(rng.normal(size=500))
    ranks = means[:, None] + rng.normal(size=(500, 8))
    steps = np.repeat(np.arange(500) * 10, 8)
    got = step_ema(ranks.reshape(-1), steps, 200.0)[7::8]
    want = step_ema(ranks.mean(axis=1), np.arange(500) * 10, 200.0)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


def test_the_default_follows_steps_whatever_the_logging_interval() -> None:
    # One curve logged every step for 2000 steps and then every 25 steps, against the same curve logged
    # every step throughout: compared at the common steps, the step-aware default agrees, an EMA per point
    # (TensorBoard's 0.99, similar in the dense part) does not.
    steps = np.arange(100_000)
    curve = np.exp(-steps / 20_000.0) + 0.3 * np.sin(steps / 3_000.0)
    sparse = np.concatenate([steps[:2000], steps[2000::25]])
    default = parse_smooth(DEFAULT_SMOOTH)
    dense_s, sparse_s = default(curve, steps), default(curve[sparse], sparse)
    assert np.max(np.abs(dense_s[sparse] - sparse_s)) < 0.01
    per_point = ema(curve, 0.99)[sparse] - ema(curve[sparse], 0.99)
    assert np.max(np.abs(per_point)) > 0.1


@settings(deadline=None)
@given(finite_floats, stepped_series(), st.sampled_from(["span:0.01", "span:1", "steps:3", "steps:1e9"]))
def test_smoothing_a_constant_over_steps_gives_that_constant(value: float, series: tuple, spec: str) -> None:
    _, steps = series
    smoother = parse_smooth(spec)
    assert smoother is not None
    np.testing.assert_array_equal(smoother(np.full(len(steps), value), np.array(steps)), value)


@settings(deadline=None)
@given(stepped_series(sorted_steps=False), st.floats(0.001, 1.0))
def test_span_smoothing_keeps_the_length_and_passes_non_finite_through(
    series: tuple, fraction: float
) -> None:
    values, steps = series
    smoother = parse_smooth(f"span:{fraction!r}")
    assert smoother is not None
    x = np.array(values, dtype=np.float64)
    got = smoother(x, np.array(steps, dtype=np.int64))
    assert got.shape == x.shape
    np.testing.assert_array_equal(got[~np.isfinite(x)], x[~np.isfinite(x)])
    assert np.isfinite(got[np.isfinite(x)]).all()


@settings(max_examples=200, deadline=None)
@given(stepped_series(min_size=2), st.sampled_from([10, 1000, 12345]), st.floats(0.001, 1.0))
def test_span_smoothing_does_not_depend_on_the_step_scale(
    series: tuple, factor: int, fraction: float
) -> None:
    # A 10k-step run and a 10M-step run of the same shape (steps x1000) get the same curve.
    values, steps = series
    x, s = np.array(values, dtype=np.float64), np.array(steps, dtype=np.int64)
    smoother = parse_smooth(f"span:{fraction!r}")
    assert smoother is not None
    _, scale = reference_step_ema(values, steps, max(fraction * float(s[-1] - s[0]), 1e-300))
    assert_smoothing_close(smoother(x, s * factor), smoother(x, s).tolist(), scale, rtol=1e-9)


def test_span_is_a_fraction_of_the_shown_span_and_zooming_in_refines_it() -> None:
    smoother = parse_smooth("span:0.01")
    assert smoother is not None
    rng = np.random.default_rng(4)
    values, steps = rng.normal(size=10_000), np.arange(10_000) * 4
    np.testing.assert_allclose(smoother(values, steps), step_ema(values, steps, 0.01 * 39_996), rtol=1e-12)
    np.testing.assert_allclose(smoother(values, steps, span=4000), step_ema(values, steps, 40.0), rtol=1e-12)
    assert smoother.time_constant(4000) == 40.0
    # Without steps, positions stand in for them.
    np.testing.assert_allclose(smoother(values), step_ema(values, np.arange(10_000), 99.99), atol=1e-12)


def test_a_single_step_averages_its_events() -> None:
    smoother = parse_smooth("span:0.01")
    assert smoother is not None
    np.testing.assert_allclose(smoother(np.array([1.0, 3.0, 5.0]), np.array([7, 7, 7])), [1.0, 2.0, 3.0])
    assert smoother(np.array([]), np.array([], dtype=np.int64)).shape == (0,)


# --- resuming a growing series ------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    stepped_series(),
    st.lists(st.integers(0, 60), max_size=4),
    st.sampled_from(["span:0.05", "steps:4", "steps:1e6", "ema:0.6", "ema:0.99", "ema:0", "ma:1", "ma:5"]),
)
def test_smoothing_piece_by_piece_equals_smoothing_at_once(series: tuple, cuts: list[int], spec: str) -> None:
    values, steps = series
    x, s = np.array(values, dtype=np.float64), np.array(steps, dtype=np.int64)
    smoother = parse_smooth(spec)
    assert smoother is not None
    span = float(s[-1] - s[0]) if s.size else 0.0
    whole = smoother(x, s, span=span)
    pieces, state = [], None
    bounds = sorted({0, x.size, *(c for c in cuts if c <= x.size)})
    for lo, hi in itertools.pairwise(bounds):
        piece, state = smoother.run(x[lo:hi], s[lo:hi], span=span, state=state)
        pieces.append(piece)
    got = np.concatenate(pieces) if pieces else x[:0]
    if spec.startswith("ma"):
        _, scale = reference_moving_average(values, int(spec[3:]))
    elif spec.startswith("ema"):
        scale = tb_smooth([abs(v) for v in values], float(spec[4:])) if values else []
    else:
        _, scale = reference_step_ema(values, steps, max(smoother.time_constant(span), 1e-300))
    assert_smoothing_close(got, whole.tolist(), scale, rtol=1e-9)
    if state is not None:
        assert state.count == x.size


def test_a_state_keeps_its_time_constant_until_the_span_has_moved_on() -> None:
    smoother = parse_smooth("span:0.01")
    assert smoother is not None
    _, state = smoother.run(np.ones(100), np.arange(100), span=1000)
    assert state.param == 10.0
    _, later = smoother.run(np.ones(100), np.arange(100, 200), span=5000, state=state)
    assert later.param == 10.0  # a state keeps its time constant
    assert not smoother.stale(state, span=1050)
    assert smoother.stale(state, span=1200) and smoother.stale(state, span=800)
    ema_smoother = parse_smooth("ema:0.6")
    assert ema_smoother is not None and not ema_smoother.stale(state, span=10**9)


# --- specs --------------------------------------------------------------------------------------------------


def test_specs_have_a_canonical_spelling_and_a_legend_label() -> None:
    cases = {
        " SPAN:0.010 ": ("span:0.01", "EMA 1% of span"),
        "steps:500": ("steps:500", "EMA 500 steps"),
        "ema:0.6": ("ema:0.6", "EMA 0.6"),
        "ma:50": ("ma:50", "mean of 50"),
    }
    for spec, (canonical, label) in cases.items():
        smoother = parse_smooth(spec)
        assert smoother is not None
        assert (smoother.spec, smoother.label) == (canonical, label)
    assert DEFAULT_SMOOTH == "span:0.02"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("span:0", r"in \(0, 1\]"),
        ("span:1.5", r"in \(0, 1\]"),
        ("span:nan", r"in \(0, 1\]"),
        ("span:x", "not a number"),
        ("steps:0", "> 0 and finite"),
        ("steps:inf", "> 0 and finite"),
        ("span", "expected 'span:F'"),
    ],
)
def test_parse_smooth_rejects_bad_step_specs(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        parse_smooth(spec)
    assert repr(spec) in str(info.value)


def test_step_ema_rejects_mismatched_steps_and_bad_time_constants() -> None:
    with pytest.raises(ValueError, match="one step per value"):
        step_ema(np.ones(3), np.arange(4), 1.0)
    with pytest.raises(ValueError, match="> 0"):
        step_ema(np.ones(3), np.arange(3), 0.0)
    with pytest.raises(TypeError):
        step_ema(np.ones(3), np.arange(3), "1")  # type: ignore[arg-type]


@pytest.mark.parametrize("shuffled", [False, True])
def test_a_series_longer_than_one_block_matches_the_definition(shuffled: bool) -> None:
    # Long series go through in blocks of 2**19 points (small temporaries): the numbers must not change.
    rng = np.random.default_rng(7)
    n = (1 << 19) + 5000
    steps = np.cumsum(rng.choice([0, 1, 1, 2, 500], n))
    values = rng.normal(size=n)
    values[[10, (1 << 19) - 1, 1 << 19, n - 1]] = [math.nan, math.inf, math.nan, -math.inf]
    if shuffled:
        order = rng.permutation(n)
        steps, values = steps[order], values[order]
    want, scale = reference_step_ema(values.tolist(), steps.tolist(), 3000.0)
    assert_smoothing_close(step_ema(values, steps, 3000.0), want, scale, rtol=1e-9)


@pytest.mark.parametrize("spec", ["ema:0.6", "ema:0"])
def test_tensorboards_ema_of_a_finite_series_allocates_only_its_result(spec: str) -> None:
    # A cold 10M-point render pays for every fresh array (first touch of new memory): smoothing a finite
    # series allocates its result and no mask or gathered copy of the values (those were 18 bytes a point).
    import tracemalloc

    n = 1 << 20
    values, steps = np.cumsum(np.random.default_rng(3).normal(size=n)), np.arange(n)
    smoother = parse_smooth(spec)
    assert smoother is not None
    tracemalloc.start()
    try:
        out, state = smoother.run(values, steps)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1.25 * values.nbytes
    assert state.carry is not None and state.carry[1] == n and math.isnan(state.carry[2])
    weight = float(spec[4:])
    assert state.carry[0] == pytest.approx(float(out[-1]) * (1.0 - weight**n))
