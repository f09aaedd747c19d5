"""What a drawn figure of a run with a loss and a decaying lr shows under --logy, --ylim and --size, how its
y labels fit their panels, and the words of its warnings, labels and summary table."""

from __future__ import annotations

import struct
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from test_plot import curves, events

from lossfmt import LossWriter
from lossview import cli, plot
from lossview.view import View

N = 1000


def warmup_cosine() -> pa.Table:
    """A loss falling from 2.5 to 0.4 and an lr warming up to 3e-4, then decaying to 1e-11 (a cosine)."""
    step = np.arange(N)
    loss = 0.4 + 2.1 * np.exp(-step / 200)
    cosine = 0.5 * (1 + np.cos(np.pi * (step - 50) / (N - 50)))
    lr = 3e-4 * np.where(step < 50, (step + 1) / 50, cosine)
    lr[-1] = 1e-11
    val = 1.05 * loss[::50]
    return pa.concat_tables(
        [
            events(loss, tag="train/loss", run="r"),
            events(lr, tag="lr", run="r"),
            events(val, steps=step[::50], tag="val/loss", run="r"),
        ]
    )


def drawn(style: plot.Style, view: View | None = None, table: pa.Table | None = None) -> plot.LossPlot:
    """The plot of ``table`` (else warmup_cosine()) at ``style``'s size, drawn once by Agg (the layout and
    the labels' extents are known only after a draw)."""
    view = view or View(smooth="none")
    fig = Figure(figsize=(style.width, style.height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    lp = plot.LossPlot(fig, view, style, plot.NoOutput())
    lp.update(curves(warmup_cosine() if table is None else table, view))
    fig.canvas.draw()
    return lp


def tags_of(lp: plot.LossPlot, ax: Axes) -> list[str]:
    return sorted(k[1] for k, s in lp.series.items() if s.ax is ax)


def png_size(path: Path) -> tuple[int, int]:
    width, height = struct.unpack(">II", path.read_bytes()[16:24])
    return width, height


# ------------------------------------------------------------------------------------ --logy and --ylim


def test_under_logy_the_lr_keeps_a_panel_of_its_own_and_the_loss_fills_its_axes():
    """--logy put every tag on one axes: an lr decaying to 1e-11 stretched it over twelve decades and
    squashed the loss into a thin band at its top."""
    lp = drawn(plot.Style(logy=True))
    top, bottom = lp.axes.values()
    assert tags_of(lp, top) == ["train/loss", "val/loss"] and tags_of(lp, bottom) == ["lr"]
    assert top.get_yscale() == bottom.get_yscale() == "log"
    low, high = top.get_ylim()
    assert 0.2 < low < 0.4 and 2.5 < high < 4  # the loss's range, not 1e-11..1e1
    assert bottom.get_ylim()[0] < 1e-10


def test_ylim_fixes_the_loss_panel_and_the_lr_keeps_its_range():
    """--ylim put every tag on one axes: the lr (3e-4) was outside 0.3..1, not drawn, yet in the legend."""
    lp = drawn(plot.Style(ylim=(0.3, 1.0)))
    top, bottom = lp.axes.values()
    assert tags_of(lp, top) == ["train/loss", "val/loss"] and tags_of(lp, bottom) == ["lr"]
    assert top.get_ylim() == pytest.approx((0.3, 1.0))
    low, high = bottom.get_ylim()
    assert low <= 0 and 3e-4 <= high < 1e-3  # the whole lr is inside its own axes


def test_ylim_with_split_fixes_the_panels_of_the_loss_scale_tags_only():
    """With --split as without it, --ylim is the range of the loss-scale tags, not of the lr."""
    lp = drawn(plot.Style(split=True, ylim=(0.3, 1.0)))
    assert lp.axes["train/loss"].get_ylim() == pytest.approx((0.3, 1.0))
    assert lp.axes["val/loss"].get_ylim() == pytest.approx((0.3, 1.0))
    assert lp.axes["lr"].get_ylim()[1] < 1e-3


def test_ylim_with_one_axes_fixes_the_one_axes():
    lp = drawn(plot.Style(panels=False, ylim=(0.3, 1.0)))
    (ax,) = lp.axes.values()
    assert tags_of(lp, ax) == ["lr", "train/loss", "val/loss"] and ax.get_ylim() == pytest.approx((0.3, 1.0))


def test_a_followed_run_s_loss_panel_keeps_its_ylim_when_the_panels_are_made_anew():
    """While an lr is still at 0 it is on the loss's panel; once it has a scale, the panels are made anew
    and the new loss panel has the --ylim range, the lr's panel its own."""
    view = View(smooth="none")
    lp = plot.LossPlot(Figure(), view, plot.Style(ylim=(0.3, 1.0)), plot.NoOutput())
    zero = pa.concat_tables([events([2.0, 1.0], tag="loss", run="r"), events([0.0, 0.0], tag="lr", run="r")])
    lp.update(curves(zero, view))
    assert [tags_of(lp, ax) for ax in lp.axes.values()] == [["loss", "lr"]]
    lp.update(curves(pa.concat_tables([zero, events([3e-4], steps=[2], tag="lr", run="r")]), view))
    top, bottom = lp.axes.values()
    assert tags_of(lp, bottom) == ["lr"]
    assert top.get_ylim() == pytest.approx((0.3, 1.0)) and bottom.get_ylim()[1] < 1e-3


# -------------------------------------------------------------------------------------------- --size


def test_an_explicit_size_is_the_size_of_the_png_whatever_its_panels(tmp_path):
    """--size 4 3 gave a 4 x 5.4 in figure as soon as the lr had a panel of its own."""
    style = plot.Style(width=4.0, height=3.0, fixed_size=True)
    out = tmp_path / "out.png"
    fig = Figure(figsize=(4.0, 3.0), layout="constrained")
    lp = plot.LossPlot(fig, View(), style, plot.FileOutput(out, dpi=100))
    lp.update(curves(warmup_cosine()))
    assert len(lp.axes) == 2 and png_size(out) == (400, 300)


def test_the_default_size_grows_for_a_second_panel(tmp_path):
    out = tmp_path / "out.png"
    lp = plot.LossPlot(Figure(figsize=(8.0, 4.5)), View(), plot.Style(), plot.FileOutput(out, dpi=100))
    lp.update(curves(warmup_cosine()))
    assert png_size(out) == (800, 540)


# ---------------------------------------------------------------------------------------------- labels


@pytest.mark.parametrize(
    ("size", "per"), [((8.0, 4.5), "epoch"), ((8.0, 4.5), 100_000), ((4.0, 3.0), "epoch"), ((6.0, 2.5), 20)]
)
def test_every_y_label_fits_its_panel_and_the_panels_labels_are_aligned(size, per):
    """--normalize per-item --per epoch: `value (per item, mean per epoch)` was taller than its panel and ran
    past the axes; the two panels' y labels stood at different distances from their axes."""
    table = pa.concat_tables([warmup_cosine(), events([0.5], steps=[N], tag="train/loss", run="r")])
    epochs = pa.array(np.asarray(table.column("step")) // 100, pa.int64())
    table = table.set_column(table.column_names.index("epoch"), "epoch", epochs)
    style = plot.Style(width=size[0], height=size[1], fixed_size=True)
    lp = drawn(style, View(normalize="per-item", per=per, band="minmax"), table)
    renderer = lp.fig.canvas.get_renderer()
    boxes = []
    for ax in lp.axes.values():
        label, frame = ax.yaxis.label.get_window_extent(renderer), ax.get_window_extent(renderer)
        assert frame.y0 - 1 <= label.y0 and label.y1 <= frame.y1 + 1, ax.get_ylabel()
        boxes.append(label)
    assert len(boxes) == 2 and boxes[0].x0 == pytest.approx(boxes[1].x0, abs=1)


def test_a_bucket_of_many_steps_is_written_as_the_ticks_write_it():
    """--per 100000 was `loss (mean per 100000 steps)`; the ticks say 100k."""
    view = View(per=100_000, band="minmax", smooth="none")
    table = events(np.linspace(2, 1, 300), steps=np.arange(300) * 1000, run="r")
    lp = drawn(plot.Style(), view, table)
    (ax,) = lp.axes.values()
    assert ax.get_ylabel() == "loss (mean per 100k steps)"
    legend = ax.get_legend()
    assert legend is not None and legend.get_title().get_text() == "shade: min..max in each 100k steps"


# ------------------------------------------------------------------------------------ warnings, summary


def test_a_single_value_a_log_axis_leaves_out_is_said_in_the_singular():
    """`--logy: 1 values of ... are zero or negative`."""
    view = View(smooth="none")
    lp = plot.LossPlot(Figure(), view, plot.Style(logy=True), plot.NoOutput())
    said = (
        r"^--logy: 1 value of loss is zero or negative \(the first at step 2\): a log axis does not draw it$"
    )
    with pytest.warns(UserWarning, match=said):
        lp.update(curves(events([1.0, 0.5, 0.0, 0.2]), view))


def test_the_summary_table_gives_the_step_of_the_max_as_of_the_min(tmp_path, capsys):
    """The table showed `min @step max` and no step for the max (only --json had max_step)."""
    with LossWriter(tmp_path / "run.arrow") as w:
        for step, value in enumerate([2.0, 5.0, 1.0, 3.0]):
            w.add(step * 10, value)
    assert cli.main(["summary", str(tmp_path / "run.arrow"), "--smooth", "none"]) == 0
    header, _, row = capsys.readouterr().out.splitlines()
    at = header.split().index("min")
    assert header.split()[at : at + 4] == ["min", "@step", "max", "@step"]
    assert row.split()[at : at + 4] == ["1", "20", "5", "10"]


def _png_size(path: Path) -> tuple[int, int]:
    width, height = struct.unpack(">II", path.read_bytes()[16:24])
    return width, height


def test_a_size_given_on_the_command_line_is_the_pngs_size_with_an_lr_panel(tmp_path: Path) -> None:
    """`lossview run.arrow --size 4 3 -o out.png` wrote a 4 x 5.4 in image once the lr had a panel."""
    run = tmp_path / "run.arrow"
    with LossWriter(run) as w:
        for step in range(200):
            w.add(step, 2.0 / (1 + step), "loss")
            w.add(step, 3e-4 * (1 - step / 200) + 1e-6, "lr")
    assert cli.main([str(run), "--size", "4", "3", "--dpi", "100", "-o", str(tmp_path / "small.png")]) == 0
    assert _png_size(tmp_path / "small.png") == (400, 300)
    assert cli.main([str(run), "--dpi", "100", "-o", str(tmp_path / "default.png")]) == 0
    assert _png_size(tmp_path / "default.png") == (800, 540)


def _train_step() -> None:
    warnings.warn("lr too high for this batch size", UserWarning, stacklevel=1)


@pytest.mark.parametrize("logy", [False, True])
def test_a_redraw_does_not_make_the_programs_own_warnings_repeat(tmp_path: Path, logy: bool) -> None:
    """Each redraw entered warnings.catch_warnings(), which resets Python's once-per-place memory for every
    thread: with lossview.live() drawing on its own thread, a training loop's warning came at each redraw."""
    lp = plot.LossPlot(Figure(), View(), plot.Style(logy=logy), plot.FileOutput(tmp_path / "x.png", dpi=50))
    table = events(list(np.linspace(2.0, 0.5, 50)))
    if logy:  # and a tag with no positive value (a log-likelihood), on a log axis of its own
        table = pa.concat_tables([table, events(list(-np.linspace(200.0, 50.0, 50)), tag="loglik")])
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("default")
        for _ in range(3):
            _train_step()
            lp.update(curves(table))
    said = [str(w.message) for w in shown if "--logy" not in str(w.message)]  # (lossview's own, said once)
    assert said == ["lr too high for this batch size"]


def test_values_across_the_whole_float_range_are_drawn_without_a_traceback(tmp_path: Path, capsys) -> None:
    """Values alternating +-1e308 (a diverged run) made matplotlib's ticker fail ("arange: cannot compute
    length"): a traceback, exit 1, for the image and lossview.figure; --term raised a ValueError too."""
    run = tmp_path / "huge.arrow"
    with LossWriter(run) as w:
        for step in range(200):
            w.add(step, 1.0 if step < 100 else (1e308 if step % 2 else -1e308))
    assert cli.main([str(run), "-o", str(tmp_path / "huge.png"), "--dpi", "50"]) == 0
    assert cli.main([str(run), "--term"]) == 0
    err = capsys.readouterr().err
    assert err == "", err  # (numpy's overflow warnings neither)


def _restarting_without_epochs(path: Path) -> Path:
    """The seeds' loop logging `enumerate(loader)` as the step and no epoch: three epochs of steps 0..9."""
    with LossWriter(path) as w:
        for epoch in range(3):
            for batch in range(10):
                w.add(batch, float(epoch * 10 + batch), count=4)
    return path


@pytest.mark.parametrize("command", ["plot", "summary", "export"])
def test_events_hidden_as_a_rewinds_orphans_are_said_once_naming_where(tmp_path, capsys, command):
    """Two of three epochs were hidden without a word (drawn, summarized and exported as 10 events of 30)."""
    path = str(_restarting_without_epochs(tmp_path / "ep.arrow"))

    def args(out: str) -> list[str]:
        if command == "plot":
            return [path, "-o", str(tmp_path / f"{out}.png")]
        return ["summary", path] if command == "summary" else ["export", path, str(tmp_path / f"{out}.csv")]

    assert cli.main(args("first")) == 0
    err = capsys.readouterr().err
    said = "ep.arrow: 'loss' goes back from step 9 to 0: the events that rewind orphans are hidden"
    assert err.count("lossview: warning: ") == 1 and said in err.replace(": ep: ", ": ep.arrow: "), err
    assert "--keep-rewound" in err and "epoch=" in err
    assert cli.main([*args("again"), "--keep-rewound"]) == 0
    assert "goes back" not in capsys.readouterr().err


def test_a_run_whose_steps_never_go_back_says_nothing_of_rewinds(tmp_path, capsys):
    path = tmp_path / "ok.arrow"
    with LossWriter(path) as w:
        for epoch in range(3):
            for batch in range(10):
                w.add(batch, 1.0, epoch=epoch)  # restarting steps with epochs: drawn run-wide, nothing hidden
    assert cli.main([str(path), "-o", str(tmp_path / "ok.png")]) == 0
    assert "goes back" not in capsys.readouterr().err
