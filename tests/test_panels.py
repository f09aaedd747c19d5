"""Tags of very different scales get panels of their own (a learning rate beside a loss was a flat line at
zero on the shared axes); tags of one scale share theirs, with --logy and --ylim too; --one-axes keeps one
axes."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute
import pytest
from test_plot import draw, events, make_plot

from lossview import cli, plot
from lossview.view import View
from lossview.view import curves as curves_of


def _run(lr_scale: float = 1e-3) -> pa.Table:
    n = 100
    loss = 2.0 * np.exp(-np.arange(n) / 50)
    return pa.concat_tables(
        [
            events(loss, run="r"),
            events(loss * 1.1, tag="val", run="r"),
            events(lr_scale * np.linspace(1, 0.1, n), tag="lr", run="r"),
        ]
    )


def _tags_per_axes(lp: plot.LossPlot) -> list[list[str]]:
    return [sorted(k[1] for k, s in lp.series.items() if s.ax is ax) for ax in lp.axes.values()]


def test_a_tag_orders_of_magnitude_apart_gets_its_own_panel_with_its_name():
    lp, _ = draw(_run())
    assert _tags_per_axes(lp) == [["loss", "val"], ["lr"]]
    top, bottom = lp.axes.values()
    assert bottom.get_ylabel() == "lr" and top.get_ylabel() == "value"
    assert [t.get_text() for t in top.get_xticklabels() if t.get_visible() and t.get_text()] == []
    assert bottom.get_xlabel() == "step"
    _, high = bottom.get_ylim()
    assert high < 0.01  # its own range: a curve, not a flat line at zero


def test_tags_of_one_scale_share_the_axes():
    lp, _ = draw(_run(lr_scale=0.5))  # 0.5 beside a loss of ~1: within 50x
    assert _tags_per_axes(lp) == [["loss", "lr", "val"]]


def test_one_axes_keeps_every_tag_together():
    lp, _ = draw(_run(), style=plot.Style(panels=False))
    assert _tags_per_axes(lp) == [["loss", "lr", "val"]]


@pytest.mark.parametrize("style", [plot.Style(logy=True), plot.Style(ylim=(0.0, 3.0))])
def test_a_log_axis_or_a_fixed_range_keeps_the_lr_on_a_panel_of_its_own(style):
    """--logy and --ylim kept every tag on one axes: the lr squashed the loss on a log axis, or was outside
    the range yet listed in the legend."""
    lp, _ = draw(_run(), style=style)
    assert _tags_per_axes(lp) == [["loss", "val"], ["lr"]]


def test_the_axes_are_kept_while_the_layout_holds_and_made_anew_when_a_tag_changes_scale():
    """Following a run, the first frame decided the panels for good: an lr warming up from 0 stayed on the
    loss's axes as a flat line, a transient put a tag on a panel it no longer belonged to. Each frame is
    placed as a plot of the file so far would be; the axes are rebuilt only when a tag changes panel."""
    view = View()
    lp, _ = make_plot(view)
    lp.update(curves_of_table(_run(), view))
    kept = {k: s.ax for k, s in lp.series.items()}
    lp.update(curves_of_table(_run(), view))
    assert {k: s.ax for k, s in lp.series.items()} == kept  # same layout: same artists
    lp.update(curves_of_table(_run(lr_scale=1.0), view))  # the lr's scale is now the loss's
    assert _tags_per_axes(lp) == [["loss", "lr", "val"]] and len(lp.fig.axes) == 1


def test_a_tag_at_zero_so_far_joins_its_panel_once_it_has_a_scale():
    view = View()
    lp, _ = make_plot(view)
    warmup = pa.concat_tables([_run().slice(0, 100), events([0.0] * 100, tag="lr", run="r")])
    lp.update(curves_of_table(warmup, view))
    assert _tags_per_axes(lp) == [["loss", "lr"]]  # no scale yet: on the top panel
    lp.update(curves_of_table(_run(), view))
    assert _tags_per_axes(lp) == [["loss", "val"], ["lr"]]


def test_the_loss_panel_is_on_top_whatever_tag_came_first():
    table = _run()
    lr_first = pa.concat_tables([table.filter(pa.compute.equal(table["tag"], "lr")), table])
    lp, _ = draw(lr_first.filter(pa.compute.invert(pa.compute.equal(lr_first["tag"], "val"))))
    assert _tags_per_axes(lp) == [["loss"], ["lr"]]


def test_a_tag_without_finite_values_stays_on_the_main_panel():
    table = pa.concat_tables([_run(), events([np.nan] * 100, tag="broken", run="r")])
    lp, _ = draw(table)
    assert _tags_per_axes(lp) == [["broken", "loss", "val"], ["lr"]]


def test_split_and_one_axes_together_is_a_usage_error(tmp_path, capsys):
    assert cli.main(["x.arrow", "--split", "--one-axes", "-o", str(tmp_path / "x.png")]) == 2
    assert "choose one of --split and --one-axes" in capsys.readouterr().err


def curves_of_table(table: pa.Table, view: View):
    from test_plot import runs_of

    return curves_of(runs_of(table), view)
