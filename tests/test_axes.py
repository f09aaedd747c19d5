"""Every tag of a run puts one step at one x (--x epoch, --x items, --per on a step axis)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lossfmt import LossWriter
from lossview import view as lv


@pytest.fixture
def run(tmp_path: Path) -> Path:
    """loss every step (32 items, 10 steps per epoch); val/loss at each epoch's first step (8 items)."""
    path = tmp_path / "r.arrow"
    with LossWriter(path) as w:
        for step in range(100):
            w.add(step, 1.0, "loss", count=32, epoch=step // 10)
            if step % 10 == 0:
                w.add(step, 2.0, "val/loss", count=8, epoch=step // 10)
    return path


def x_at(path: Path, **options: object) -> dict[str, dict[int, float]]:
    """{tag: {step: x}} as drawn."""
    view = lv.View(smooth="none", **options)
    drawn = lv.curves(lv.load([path], view), view)
    return {c.tag: dict(zip(c.step.tolist(), c.x.tolist(), strict=True)) for c in drawn}


def test_epoch_axis_puts_one_step_at_one_x(run):
    x = x_at(run, x="epoch")
    assert x["loss"][70] == x["val/loss"][70] == pytest.approx(7.1)
    assert x["loss"][79] == pytest.approx(8.0)  # an epoch's last step is where it ends


def test_per_epoch_buckets_of_all_tags_sit_at_the_run_s_bucket_end(run):
    x = x_at(run, per="epoch")
    assert x["loss"][79] == x["val/loss"][70] == 79


@pytest.mark.parametrize("per", [None, 10])
def test_items_axis_counts_the_run_s_items_not_the_tag_s(run, per):
    x = x_at(run, x="items", per=per)
    if per is None:
        assert x["val/loss"][70] == x["loss"][70] == 71 * 32
    else:
        assert x["val/loss"][70] == x["loss"][79] == 80 * 32


def test_per_steps_on_an_epoch_axis_is_consistent_across_tags(run):
    x = x_at(run, x="epoch", per=10)
    assert x["val/loss"][70] == x["loss"][79] == pytest.approx(8.0)
