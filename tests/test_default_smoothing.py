"""The default smoothing smooths noisy curves only: a learning-rate schedule or a noise-free decline drawn
through an EMA only lags (a cosine lr ended 10x above its raw value on a log axis)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lossfmt import LossWriter
from lossview import summary
from lossview import view as lv
from lossview.smoothing import SMOOTH_REVERSALS, reversals


def _run(path, n=1000):
    rng = np.random.default_rng(0)
    with LossWriter(path) as w:
        for step in range(n):
            w.add(step, 2.0 * math.exp(-step / 300) + rng.normal(0, 0.05), "loss")
            w.add(step, 1e-3 * 0.5 * (1 + math.cos(math.pi * step / n)) + 1e-6, "lr")  # cosine schedule
            w.add(step, 3.0 - step / n, "clean")  # a noise-free decline
    return path


def test_the_default_smooths_noisy_tags_and_leaves_schedules_and_clean_curves_raw(tmp_path):
    path = _run(tmp_path / "r.arrow")
    view = lv.View(smooth_explicit=False)
    curves = {c.tag: c for c in lv.curves(lv.load([path], view), view)}
    assert curves["loss"].smoothed is not None
    assert curves["lr"].smoothed is None and curves["clean"].smoothed is None
    rows = {r["tag"]: r for r in summary.summarize(lv.load([path], summary.summary_view(view)), view)}
    assert rows["lr"]["last_smoothed"] is None and rows["loss"]["last_smoothed"] is not None


def test_an_explicit_smoothing_smooths_every_tag(tmp_path):
    path = _run(tmp_path / "r.arrow")
    view = lv.View(smooth="span:0.02")
    assert all(c.smoothed is not None for c in lv.curves(lv.load([path], view), view))


def test_a_tag_noisy_in_one_run_is_smoothed_in_every_run(tmp_path):
    rng = np.random.default_rng(1)
    for name, noise in [("a", 0.0), ("b", 0.1)]:
        with LossWriter(tmp_path / f"{name}.arrow") as w:
            for step in range(500):
                w.add(step, 1.0 - step / 1000 + noise * rng.normal(), "loss")
    view = lv.View(smooth_explicit=False)
    assert all(c.smoothed is not None for c in lv.curves(lv.load([tmp_path], view), view))


@pytest.mark.parametrize("n", [100, 300_000])
def test_reversals_tell_noise_from_trends_at_any_length(n):
    rng = np.random.default_rng(2)
    t = np.arange(n, dtype=np.float64)
    assert reversals(np.exp(-t / n) + rng.normal(0, 0.01, n)) > 0.4
    assert reversals(np.exp(-t / n)) == 0.0
    steps = np.repeat([1e-3, 1e-4, 1e-5], math.ceil(n / 3))[:n]  # a step schedule: flat, then drops
    assert reversals(steps) < SMOOTH_REVERSALS
    with_nan = np.exp(-t / n)
    with_nan[n // 2] = np.nan
    assert reversals(with_nan) < SMOOTH_REVERSALS


def test_noise_held_for_several_steps_or_broken_by_nans_is_still_noise():
    """A loss logged per micro-step under gradient accumulation repeats each value; one with a NaN every few
    steps has non-finite changes: both scored 0 reversals and lost their trend line."""
    rng = np.random.default_rng(3)
    noisy = 2.0 + rng.normal(0, 0.1, 500)
    assert reversals(np.repeat(noisy, 4)) > 0.4
    with_nans = noisy.copy()
    with_nans[::3] = np.nan
    assert reversals(with_nans) > 0.4
    schedule = np.repeat([1e-3, 5e-4, 1e-4], 300)
    assert reversals(schedule) == 0.0
