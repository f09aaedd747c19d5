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


def test_per_epoch_on_an_epoch_axis_is_where_the_epoch_s_last_step_is(run):
    per_step, per_epoch = x_at(run, x="epoch"), x_at(run, x="epoch", per="epoch")
    assert per_epoch["loss"][79] == per_epoch["val/loss"][70] == per_step["loss"][79] == pytest.approx(8.0)


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


def test_items_axis_of_one_tag_counts_every_event_through_its_step(tmp_path: Path) -> None:
    # One tag: the run's own steps are the query (the fast path), and a step logged twice (a second event
    # at step 2, out of order) gives both events the count through the later one.
    rising, repeated = tmp_path / "rising.arrow", tmp_path / "repeated.arrow"
    with LossWriter(rising) as w:
        for step in range(5):
            w.add(step, 1.0, count=step + 1)
    with LossWriter(repeated) as w:
        for step, count in [(0, 1), (1, 2), (2, 3), (3, 4), (2, 10)]:
            w.add(step, 1.0, count=count)
    assert x_at(rising, x="items")["loss"] == {0: 1, 1: 3, 2: 6, 3: 10, 4: 15}
    assert x_at(repeated, x="items", keep_rewound=True)["loss"] == {0: 1, 1: 3, 2: 16, 3: 20}


def test_items_axis_follows_the_tag_logged_most_not_a_large_validation_set(tmp_path: Path) -> None:
    path = tmp_path / "val.arrow"
    with LossWriter(path) as w:  # the eval set (10,000 items a pass) has more items than training
        for step in range(1000):
            w.add(step, 1.0, "loss", count=32)
            if step % 100 == 99:
                w.add(step, 2.0, "val_loss", count=10_000)
    x = x_at(path, x="items")
    assert x["loss"][0] == 32 and x["loss"][999] == x["val_loss"][999] == 32_000


def test_items_axis_of_tags_with_equal_events_follows_the_most_items_then_the_name(tmp_path: Path) -> None:
    counts, ties = {"z": 1, "b": 2, "a": 1}, {"z": 2, "a": 2}  # "z" first in the file, every tag every step
    for name, of in (("most.arrow", counts), ("tie.arrow", ties)):
        with LossWriter(tmp_path / name) as w:
            for step in range(10):
                for tag, count in of.items():
                    w.add(step, 1.0, tag, count=count)
    assert x_at(tmp_path / "most.arrow", x="items")["z"][3] == 8  # b's items through step 3 (z's: 4)
    assert x_at(tmp_path / "tie.arrow", x="items")["z"][3] == 8  # equal: a's, the first by name


def test_per_steps_on_an_epoch_axis_leaves_out_a_run_without_epochs(tmp_path: Path) -> None:
    with LossWriter(tmp_path / "none.arrow") as w:
        for step in range(30):
            w.add(step, 1.0)
    with LossWriter(tmp_path / "some.arrow") as w:
        for step in range(30):
            w.add(step, 1.0, epoch=step // 10)
    view = lv.View(smooth="none", x="epoch", per=7)
    with pytest.warns(UserWarning, match="logged without an epoch: none: loss"):
        drawn = lv.curves(lv.load([tmp_path], view), view)
    assert [c.run for c in drawn] == ["some"]
    assert drawn[0].x.tolist() == pytest.approx([0.7, 1.4, 2.1, 2.8, 3.0])


def test_per_epoch_says_which_tags_it_leaves_out_for_want_of_an_epoch(tmp_path: Path) -> None:
    path = tmp_path / "r.arrow"
    with LossWriter(path) as w:
        for step in range(30):
            w.add(step, 1.0, "loss", epoch=step // 10)
            w.add(step, 0.1, "lr")  # logged without an epoch
    view = lv.View(smooth="none", per="epoch")
    with pytest.warns(UserWarning, match=r"--per epoch: not drawn, logged without an epoch: .*r\.arrow: lr"):
        drawn = lv.curves(lv.load([path], view), view)
    assert [c.tag for c in drawn] == ["loss"]


def test_steps_that_restart_each_epoch_are_drawn_run_wide_on_a_step_axis(tmp_path: Path) -> None:
    path = tmp_path / "loader.arrow"
    with LossWriter(path) as w:  # the README's loop: for step, (x, y) in enumerate(loader), per epoch
        for epoch in range(3):
            for step in range(10):
                w.add(step, 1.0, "loss", count=4, epoch=epoch)
            w.add(9, 2.0, "val/loss", epoch=epoch)
    with pytest.warns(UserWarning, match="loader: its steps restart each epoch: drawn run-wide"):
        x = x_at(path)
    assert list(x["loss"].values()) == list(range(30)) and list(x["val/loss"].values()) == [9, 19, 29]
    by_epoch = x_at(path, x="epoch")  # every epoch drawn, none taken for a rewind
    assert len(by_epoch["loss"]) == 30 and by_epoch["val/loss"][29] == pytest.approx(3.0)


def test_a_resume_of_a_run_whose_steps_restart_each_epoch_is_drawn_run_wide(tmp_path: Path) -> None:
    path = tmp_path / "loader.arrow"
    with LossWriter(path) as w:
        for epoch in range(3):
            for step in range(10):
                w.add(step, float(epoch), "loss", epoch=epoch)
    with LossWriter(path) as w:  # resumed from the checkpoint at epoch 1, step 4, and on to the end
        for epoch, steps in ((1, range(4, 10)), (2, range(10))):
            for step in steps:
                w.add(step, 5.0, "loss", epoch=epoch)
    with pytest.warns(UserWarning, match="drawn run-wide"):
        x = x_at(path)
    assert list(x["loss"].values()) == list(range(30))  # the old epoch 1 to step 4, then the resumed run


def test_items_axis_counts_the_training_loss_whatever_tag_is_drawn(tmp_path: Path) -> None:
    path = tmp_path / "val.arrow"
    with LossWriter(path) as w:
        for step in range(1000):
            w.add(step, 1.0, "loss", count=32)
            w.add(step, 1e-3, "lr")  # every step too, without a count: fewer items than the loss
            if step % 100 == 99:
                w.add(step, 2.0, "val_loss", count=10_000)
    assert x_at(path, x="items", tags=("val_loss",))["val_loss"][999] == 32_000


def test_a_run_whose_steps_restart_each_epoch_with_an_lr_logged_without_epochs(tmp_path: Path) -> None:
    path = tmp_path / "mixed.arrow"
    with LossWriter(path) as w:
        for epoch in range(3):
            for step in range(10):
                w.add(step, 1e-3, "lr")  # no epoch
                w.add(step, 1.0, "loss", count=4, epoch=epoch)
            w.add(9, 2.0, "val", epoch=epoch)
    with LossWriter(path) as w:  # resumed from the checkpoint at epoch 1, step 4
        for epoch, steps in ((1, range(4, 10)), (2, range(10))):
            for step in steps:
                w.add(step, 1e-3, "lr")
                w.add(step, 5.0, "loss", count=4, epoch=epoch)
            w.add(9, 6.0, "val", epoch=epoch)
    with pytest.warns(UserWarning, match="drawn run-wide"):
        x = x_at(path)
    assert list(x["loss"]) == list(x["lr"]) == list(range(30)) and list(x["val"]) == [9, 19, 29]
    assert list(x_at(path, tags=("loss",))["loss"]) == list(range(30))  # the same whatever --tag draws
