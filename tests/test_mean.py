"""--mean-runs on runs that log different steps: one grid per tag, so the mean never zig-zags."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import lossfmt
import lossview
from lossfmt import LossWriter
from lossfmt.dataset import mean_across
from lossview import view as lv


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """r1 logs steps 0..99 (value 1), r2 steps 0..49 (value 3), r3 the even steps (value 5)."""
    for name, steps, value in [
        ("r1", range(100), 1.0),
        ("r2", range(50), 3.0),
        ("r3", range(0, 100, 2), 5.0),
    ]:
        with LossWriter(tmp_path / f"{name}.arrow") as w:
            for step in steps:
                w.add(step, value, epoch=step // 10)
    return tmp_path


def drawn(source: Path, **options: object) -> np.ndarray:
    fig = lossview.figure(source, mean_runs=True, smooth="none", **options)
    (line,) = [ln for ln in fig.axes[0].lines if len(ln.get_xdata())]
    return np.asarray(line.get_xydata())


@pytest.mark.parametrize("per", [10, "epoch", "EPOCH", "10"])
def test_mean_runs_with_per_is_one_point_per_bucket(sweep, per):
    xy = drawn(sweep, per=per)
    assert xy[:, 0].tolist() == [float(b * 10 + 9) for b in range(10)]  # each bucket at its last step
    assert xy[:, 1].tolist() == [3.0] * 10  # (1+3+5)/3 while r2 runs, then (1+5)/2


def test_mean_runs_without_per_averages_on_the_union_of_steps(sweep):
    xy = drawn(sweep)
    assert xy[:, 0].tolist() == [float(s) for s in range(100)]  # one point per step, no zig-zag
    # r3 (even steps) counts at odd steps too, interpolated; step 99 is past r3's last step (98).
    assert xy[:-1, 1].tolist() == [3.0] * 99
    assert xy[-1, 1] == 1.0


def test_mean_runs_interpolates_within_each_run_only(tmp_path):
    with LossWriter(tmp_path / "a.arrow") as w:
        for step, value in [(0, 0.0), (10, 10.0)]:
            w.add(step, value)
    with LossWriter(tmp_path / "b.arrow") as w:
        for step in (4, 20):
            w.add(step, 100.0)
    view = lv.View(smooth="none", mean_runs=True, band="minmax")
    (mean,) = lv.curves(lv.load([tmp_path], view), view)
    assert mean.step.tolist() == [0, 4, 10, 20]
    assert mean.y.tolist() == [0.0, 52.0, 55.0, 100.0]  # a at 4 is 4.0; a is absent past its step 10
    assert mean.lo.tolist() == [0.0, 4.0, 10.0, 100.0] and mean.hi.tolist() == [0.0, 100.0, 100.0, 100.0]


def test_a_diverged_run_keeps_the_mean_non_finite(tmp_path):
    for name, values in [("a", [1.0, 2.0, 3.0]), ("b", [1.0, math.nan, 3.0])]:
        with LossWriter(tmp_path / f"{name}.arrow") as w:
            for step, value in enumerate(values):
                w.add(step, value)
    view = lv.View(smooth="none", mean_runs=True)
    (mean,) = lv.curves(lv.load([tmp_path], view), view)
    assert mean.y[0] == 1.0 and math.isnan(mean.y[1]) and mean.y[2] == 3.0


def labels(source: Path, **options: object) -> list[str]:
    view = lv.View(smooth="none", mean_runs=True, **options)
    return [c.run for c in lv.curves(lv.load([source], view), view)]


def test_the_label_says_where_fewer_than_all_runs_are_averaged(sweep, tmp_path):
    # Where a run ends the mean jumps by its difference to the others: the label says so, and where.
    assert labels(sweep) == ["mean of 3 runs (all 3 at steps 0-49, fewer elsewhere)"]
    assert labels(sweep, per=10) == ["mean of 3 runs (all 3 at steps 9-49, fewer elsewhere)"]
    apart = tmp_path / "apart"
    apart.mkdir()
    for name, steps in [("a", range(0, 10)), ("b", range(20, 30))]:
        with LossWriter(apart / f"{name}.arrow") as w:
            for step in steps:
                w.add(step, 1.0)
    assert labels(apart) == ["mean of 2 runs (at most 1 at one step)"]
    together = tmp_path / "together"
    together.mkdir()
    for name in ("a", "b"):
        with LossWriter(together / f"{name}.arrow") as w:
            for step in range(30):
                w.add(step, 1.0)
    assert labels(together) == ["mean of 2 runs"]


def test_mean_runs_with_label_averages_the_runs_of_each_hyperparameter_value_apart(tmp_path):
    """--mean-runs --label lr averaged every run into one curve and ignored --label (a sweep's settings mixed
    into one meaningless mean and band): one mean per value, named by it."""
    for lr, seed, value in [(0.1, 0, 1.0), (0.1, 1, 3.0), (0.01, 0, 10.0), (0.01, 1, 20.0), (0.01, 2, 30.0)]:
        with LossWriter(tmp_path / f"lr{lr}_s{seed}.arrow", meta={"lr": lr, "seed": seed}) as w:
            for step in range(10):
                w.add(step, value)
    view = lv.View(mean_runs=True, label="lr", smooth="none")
    curves = lv.curves(lv.load([tmp_path], view), view)
    means = {c.run: c.y.tolist() for c in curves}
    assert means == {"lr=0.01: mean of 3 runs": [20.0] * 10, "lr=0.1: mean of 2 runs": [2.0] * 10}
    assert {c.group for c in curves} == {"lr=0.01", "lr=0.1"}


def write_micro_batches(directory: Path) -> None:
    """a and b log two micro-batches per optimizer step (values 1 and 9 in a, 3 and 11 in b)."""
    for name, offset in (("a", 0.0), ("b", 2.0)):
        with LossWriter(directory / f"{name}.arrow") as w:
            for step in range(5):
                for value in (1.0, 9.0):
                    w.add(step, value + offset, count=16)


def test_mean_runs_averages_the_events_of_a_step_logged_more_than_once(tmp_path):
    """A step logged twice (micro-batches under gradient accumulation) kept only its last event: the mean was
    10 (9 and 11), above both runs' step means 5 and 7. A step is its events' mean, as --per 1 has it."""
    write_micro_batches(tmp_path)
    fig = lossview.figure(tmp_path, mean_runs=True, band="minmax")
    (line,) = [ln for ln in fig.axes[0].lines if len(ln.get_xdata())]
    assert np.asarray(line.get_ydata()).tolist() == [6.0] * 5
    assert drawn(tmp_path, per=1)[:, 1].tolist() == [6.0] * 5
    view = lv.View(mean_runs=True, band="minmax", smooth="none")
    (mean,) = lv.curves(lv.load([tmp_path], view), view)
    assert mean.step.tolist() == [0, 1, 2, 3, 4] and mean.y.tolist() == [6.0] * 5
    assert mean.lo.tolist() == [5.0] * 5 and mean.hi.tolist() == [7.0] * 5
    # Smoothed, a step is the smoothed value after its last event (which averages all of them).
    smoothed = lv.View(mean_runs=True, band="minmax", smooth="steps:2")
    (mean,) = lv.curves(lv.load([tmp_path], smoothed), smoothed)
    assert mean.lo == pytest.approx([5.0] * 5) and mean.hi == pytest.approx([7.0] * 5)


def test_mean_runs_and_mean_across_give_one_mean_for_restarts_resumes_and_micro_batches(tmp_path):
    """--mean-runs and lossfmt.dataset.mean_across (the recipe for a sweep) disagreed: mean_across mixed the
    epochs of steps that restart each epoch, kept a resume's orphaned events and took every event of a step
    as a member. Both now apply the same read-time rules per run, then average the runs."""
    with LossWriter(tmp_path / "restarts.arrow") as w:
        for epoch in range(2):
            for step in range(5):
                w.add(step, 10.0 * epoch, epoch=epoch)
    with LossWriter(tmp_path / "resumed.arrow") as w:
        for step in range(10):
            w.add(step, 5.0)
    with LossWriter(tmp_path / "resumed.arrow") as w:
        for step in range(5, 10):
            w.add(step, 3.0)
    with LossWriter(tmp_path / "micro.arrow") as w:
        for step in range(10):
            for value in (0.0, 4.0):
                w.add(step, value)
    table = mean_across(lossfmt.read(tmp_path), over="run")
    view = lv.View(mean_runs=True, smooth="none")
    with pytest.warns(UserWarning, match="restart each epoch"):
        (mean,) = lv.curves(lv.load([tmp_path], view), view)
    assert table["step"].to_pylist() == mean.step.tolist() == list(range(10))
    expected = [(0.0 + 5.0 + 2.0) / 3] * 5 + [(10.0 + 3.0 + 2.0) / 3] * 5
    np.testing.assert_allclose(table["value"].to_numpy(), expected)
    np.testing.assert_allclose(mean.y, expected)
    assert table["n"].to_pylist() == [3] * 10


def test_mean_runs_per_item_weighs_the_micro_batches_of_a_step_by_their_counts(tmp_path):
    """--mean-runs --normalize per-item without --per averaged a step's micro-batches unweighted (6.0),
    where --per 1 and mean_across(normalize="per-item") weigh them by their counts (6.25)."""
    with lossfmt.LossWriter(tmp_path / "a.arrow") as w:
        for s in range(5):
            w.add(s, 1.0 + s, count=1)
            w.add(s, 3.0 + s, count=3)
    with lossfmt.LossWriter(tmp_path / "b.arrow") as w:
        for s in range(5):
            w.add(s, 10.0 + s, count=2)
    want = [((1.0 + s) * 1 + (3.0 + s) * 3) / 4 / 2 + (10.0 + s) / 2 for s in range(5)]
    table = lossfmt.read(tmp_path / "*.arrow")
    np.testing.assert_allclose(mean_across(table, over="run", normalize="per-item")["value"], want)
    for per in (None, 1):
        fig = lossview.figure(
            tmp_path / "*.arrow", mean_runs=True, normalize="per-item", per=per, smooth="none"
        )
        (line,) = [ln for ln in fig.axes[0].get_lines() if len(ln.get_xdata()) and ln.get_label()[0] != "_"]
        np.testing.assert_allclose(line.get_ydata(), want)
