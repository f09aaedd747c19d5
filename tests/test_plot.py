"""lossview's data flow, from event tables to drawn artists, checked through a fake Output (no rendering)."""

from __future__ import annotations

import itertools
import json
import warnings

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.figure import Figure

from lossfmt import schema
from lossview import artists, plot, screen, summary
from lossview import view as lv
from lossview.view import View
from lossview.view import curves as curves_of


class FakeOutput(plot.Output):
    """Records each refresh instead of rendering."""

    def __init__(self) -> None:
        self.refreshes = 0

    def refresh(self, fig: Figure) -> None:
        self.refreshes += 1


def events(
    values,
    *,
    steps=None,
    tag="loss",
    counts=None,
    epochs=None,
    reduction="mean",
    t0=1_700_000_000.0,
    dt=1.0,
    run=None,
) -> pa.Table:
    """A table with the v1 columns (plus `run` if given), as lossfmt.read returns it."""
    n = len(values)
    steps = list(range(n)) if steps is None else list(steps)
    tags = [tag] * n if isinstance(tag, str) else list(tag)
    cols = {
        "step": pa.array(steps, pa.int64()),
        "tag": pa.array(tags).dictionary_encode().cast(schema.TAG_TYPE),
        "value": pa.array(values, pa.float64()),
        "count": pa.array(counts or [1] * n, pa.int64()),
        "epoch": pa.array(epochs if epochs is not None else [None] * n, pa.int64()),
        "wall_time": pa.array((np.arange(n) * dt + t0) * 1e6, pa.float64())
        .cast(pa.int64())
        .cast(schema.WALL_TIME_TYPE),
        "reduction": pa.array([reduction] * n).dictionary_encode().cast(schema.REDUCTION_TYPE),
    }
    table = pa.table(cols)
    if run is not None:
        table = table.add_column(0, "run", pa.array([run] * n, pa.string()))
    return table


def runs_of(table: pa.Table) -> list[lv.Run]:
    """A table of events, split into runs by its `run` column (one unnamed run without one)."""
    if "run" not in table.column_names:
        return [lv.Run("", table)]
    names = table.column("run").to_pylist()
    out = []
    for name in dict.fromkeys(names):
        rows = [i for i, n in enumerate(names) if n == name]
        out.append(lv.Run(name, table.take(pa.array(rows, pa.int64())).drop_columns(["run"])))
    return out


def curves(table: pa.Table, view=None) -> list[lv.Curve]:
    return lv.curves(runs_of(table), view or View())


def make_plot(view=None, style=None, *, dpi=100):
    fig = Figure(figsize=(8, 4.5), dpi=dpi, layout="constrained")
    out = FakeOutput()
    return plot.LossPlot(fig, view or View(), style or plot.Style(), out), out


def draw(table, view=None, style=None):
    view = view or View()
    lp, out = make_plot(view, style)
    lp.update(curves(table, view))
    return lp, out


# ------------------------------------------------------------------------------------------- data flow


def test_raw_is_faint_and_smoothed_is_bold_with_tensorboard_ema():
    y = [1.0, 0.5, 0.8, 0.2, 0.4]
    lp, out = draw(events(y, run="r"), View(smooth="ema:0.6"))
    s = lp.series[("r", "loss")]
    assert out.refreshes == 1
    np.testing.assert_allclose(s.raw.get_ydata(), y)
    # TensorBoard's debiased EMA with weight 0.6.
    last, expected = 0.0, []
    for i, v in enumerate(y, 1):
        last = last * 0.6 + 0.4 * v
        expected.append(last / (1 - 0.6**i))
    np.testing.assert_allclose(s.smooth.get_ydata(), expected, rtol=1e-12)
    assert s.raw.get_alpha() < 0.5 and s.smooth.get_linewidth() > s.raw.get_linewidth()


def test_no_smoothing_draws_the_raw_curve_opaque():
    lp, _ = draw(events([3.0, 2.0, 1.0], run="r"), View(smooth="none"))
    s = lp.series[("r", "loss")]
    assert not s.smooth.get_visible() and s.raw.get_alpha() == 1.0
    assert s.raw.get_label() == "loss"


def test_update_reuses_artists_and_adds_new_tags():
    lp, out = make_plot()
    view = View()
    lp.update(curves(events([1.0, 0.9], run="r"), view))
    first = lp.series[("r", "loss")]
    raw_line, n_lines = first.raw, len(lp.fig.axes[0].lines)
    grown = pa.concat_tables(
        [events([1.0, 0.9, 0.8, 0.7], run="r"), events([1.5, 1.2], steps=[1, 3], tag="val", run="r")]
    )
    lp.update(curves(grown, view))
    assert lp.series[("r", "loss")].raw is raw_line  # set_data, not a new artist
    assert len(lp.fig.axes) == 1 and len(lp.fig.axes[0].lines) == n_lines + 4  # raw, smooth, marks, ring
    np.testing.assert_allclose(raw_line.get_xdata(), [0, 1, 2, 3])
    assert out.refreshes == 2
    assert lp.series[("r", "val")].smooth.get_color() != lp.series[("r", "loss")].smooth.get_color()


def test_a_followed_series_that_starts_smoothing_drops_its_raw_markers_in_plot_and_legend():
    view = View(smooth_explicit=False)  # the CLI's default: short series stay unsmoothed
    lp, _ = make_plot(view)
    val = events([1.5, 1.2], steps=[10, 30], tag="val", run="r")
    lp.update(curves(pa.concat_tables([events(np.linspace(2, 1, 20), run="r"), val]), view))
    loss = lp.series[("r", "loss")]
    assert loss.raw.get_marker() == "o"  # few points: unsmoothed, with markers
    noisy = np.linspace(2, 1, 200) + 0.05 * (-1.0) ** np.arange(200)  # (a noise-free one stays raw)
    lp.update(curves(pa.concat_tables([events(noisy, run="r"), val]), view))
    assert loss.smooth.get_visible()
    assert loss.raw.get_marker() == "None" and loss.raw.get_path_effects() == []
    legend = lp.fig.axes[0].get_legend()
    assert [h.get_marker() for h in legend.legend_handles] == ["None", "o"]  # loss smoothed, val sparse


def test_comparing_runs_one_colour_per_run_legend_run_tag():
    table = pa.concat_tables(
        [
            events([1.0, 0.5], run="a"),
            events([2.0, 1.0], tag="val", run="a"),
            events([1.1, 0.6], run="b"),
            events([2.1, 1.1], tag="val", run="b"),
        ]
    )
    lp, _ = draw(table, style=plot.Style(compare=True))
    color = {k: s.smooth.get_color() for k, s in lp.series.items()}
    assert color[("a", "loss")] == color[("a", "val")] != color[("b", "loss")] == color[("b", "val")]
    style = {k: s.smooth.get_linestyle() for k, s in lp.series.items()}
    assert style[("a", "loss")] != style[("a", "val")]
    labels = [t.get_text() for t in lp.fig.axes[0].get_legend().get_texts()]
    assert labels == ["a: loss", "a: val", "b: loss", "b: val"]
    assert lp.fig.get_suptitle() == "2 runs"


def test_the_title_counts_the_runs_drawn_now_not_every_run_ever_drawn():
    a, b, c = events([1.0, 0.5], run="a"), events([2.0, 1.0], run="b"), events([3.0, 2.0], run="c")
    lp, _ = make_plot(style=plot.Style(compare=True))
    lp.update(curves(pa.concat_tables([a, b, c]), View()))
    assert lp.fig.get_suptitle() == "3 runs"
    lp.update(curves(pa.concat_tables([a, b]), View()))  # run c's file left the followed directory
    assert lp.fig.get_suptitle() == "2 runs"
    lp.update(curves(a, View()))  # and b's: the one run left is drawn as it is alone, named
    assert lp.fig.get_suptitle() == "a"
    lp.update([])
    assert lp.fig.get_suptitle() == ""


def test_split_gives_one_axes_per_tag_sharing_x():
    table = pa.concat_tables([events([1.0, 0.5], run="r"), events([3.0, 2.0], tag="acc", run="r")])
    lp, _ = draw(table, style=plot.Style(split=True))
    assert len(lp.fig.axes) == 2
    assert [ax.get_title(loc="left") for ax in lp.fig.axes] == ["loss", "acc"]
    assert lp.fig.axes[0].get_shared_x_axes().joined(lp.fig.axes[0], lp.fig.axes[1])
    assert [ax.get_ylabel() for ax in lp.fig.axes] == ["", ""]  # the titles name the tags
    view = View(per=2, normalize="per-item")
    lp, _ = draw(table, view, style=plot.Style(split=True))
    assert [ax.get_ylabel() for ax in lp.fig.axes] == ["per item\nmean per 2 steps"] * 2  # short: no overlap


def test_tag_globs_select_series():
    table = pa.concat_tables(
        [
            events([1.0], tag="train/loss", run="r"),
            events([2.0], tag="val/loss", run="r"),
            events([3.0], tag="lr", run="r"),
        ]
    )
    lp, _ = draw(table, View(tags=("*/loss",)))
    assert set(lp.series) == {("r", "train/loss"), ("r", "val/loss")}


def test_decimation_keeps_every_spike_and_zoom_restores_full_resolution():
    n = 200_000
    y = np.full(n, 1.0)
    y[123_457] = 50.0  # one spike: TensorBoard's 1000-point sampling loses it
    y[7] = -3.0
    lp, _ = draw(events(y, run="r"), View(smooth="none"))
    s = lp.series[("r", "loss")]
    drawn = np.asarray(s.raw.get_ydata())
    assert len(drawn) < 5_000
    assert drawn.max() == 50.0 and drawn.min() == -3.0
    ax = lp.fig.axes[0]
    ax.set_xlim(123_400, 123_500)  # zoom: the xlim callback re-decimates the visible range
    xs, ys = np.asarray(s.raw.get_xdata()), np.asarray(s.raw.get_ydata())
    np.testing.assert_array_equal(xs, np.arange(123_399, 123_502))
    assert ys[xs == 123_457][0] == 50.0


def test_non_finite_values_are_marked_where_they_happened():
    y = [1.0, 0.9, np.nan, 0.8, np.inf, np.inf, -np.inf, 0.7]
    lp, _ = draw(events(y, steps=range(10, 18), run="r"))
    s = lp.series[("r", "loss")]
    xs, ys = s.marks.get_data()
    assert list(xs) == [12.0, 14.0, 16.0]  # where a stretch starts, or its kind changes (+inf then -inf)
    assert list(ys) == [0.97, 0.97, artists.BOTTOM]
    assert s.note.get_text() == "NaN at step 12 (4 non-finite)"
    # The smoothed curve is not poisoned by the NaN.
    assert np.isfinite(np.asarray(s.smooth.get_ydata())[-1])


def test_per_epoch_buckets_with_band_show_min_max():
    table = events([4, 5, 2, 4, 3, 2, 3, 1], epochs=[0, 0, 0, 0, 1, 1, 1, 1], run="r")
    view = View(per="epoch", band="minmax", smooth="none")
    lp, _ = draw(table, view)
    s = lp.series[("r", "loss")]
    np.testing.assert_allclose(s.raw.get_ydata(), [3.75, 2.25])
    np.testing.assert_allclose(s.raw.get_xdata(), [3, 7])  # --x step: a bucket sits at its last step
    assert s.band is not None and s.band.get_visible()
    assert lp.fig.axes[0].get_ylabel() == "loss (mean per epoch)"
    assert lp.fig.axes[0].get_legend().get_title().get_text() == "shade: min..max in each epoch"


def test_figure_takes_band_true_as_the_command_line_s_band(tmp_path):
    import lossfmt
    import lossview

    path = tmp_path / "run.arrow"
    with lossfmt.LossWriter(path) as w:
        for step in range(40):
            w.add(step, float(step % 7), epoch=step // 10)
    figures = [lossview.figure(path, per="epoch", band=b) for b in (True, "std", False)]
    shaded = [len(fig.axes[0].collections) for fig in figures]
    assert shaded[0] == shaded[1] > shaded[2]
    assert figures[1].axes[0].get_legend().get_title().get_text() == "shade: mean ± 1 std in each epoch"
    with pytest.raises(ValueError, match="must be one of minmax, std"):
        lossview.figure(path, per="epoch", band="spread")


def test_a_live_run_s_epoch_in_progress_ends_its_per_epoch_curve_in_a_ring(tmp_path):
    import lossfmt

    path = tmp_path / "run.arrow"
    view = View(per="epoch")
    with lossfmt.LossWriter(path, flush_secs=3600) as w:
        for step in range(25):  # epochs 0 and 1 done (each ends with its validation loss), epoch 2 half
            w.add(step, 1.0 / (step + 1), epoch=step // 10)
            if step % 10 == 9:
                w.add(step, 0.5, "val", epoch=step // 10)
        w.flush()
        live = {c.tag: c.unfinished for c in curves_of(lv.load([path], view), view)}
        lp, _ = make_plot(view)
        lp.update(curves_of(lv.load([path], view), view))
        ring = lp.series[("run", "loss")].unfinished
        assert ring.get_xdata().tolist() == [24] and ring.get_visible()
        assert "ring: the epoch so far" in lp.fig.axes[0].get_legend().get_title().get_text()
    assert live == {"loss": True, "val": False}  # val's last epoch (1) is finished
    closed = {c.tag: c.unfinished for c in curves_of(lv.load([path], view), view)}
    assert closed == {"loss": False, "val": False}  # a closed run's last epoch is what it logged


def test_seed_002_per_item_mean_is_three_for_any_batch_size():
    items = [4, 5, 2, 4, 3, 2, 3, 1]
    for sizes in ([2, 2, 2, 2], [4, 4], [3, 3, 2]):
        values, start = [], 0
        for size in sizes:
            values.append(sum(items[start : start + size]) / size)
            start += size
        table = events(values, counts=sizes, epochs=[0] * len(sizes))
        out = lv.prepare(table, View(per="epoch", normalize="per-item"))
        assert out.column("value").to_pylist() == [pytest.approx(3.0)]


def test_mean_runs_draws_mean_with_across_run_band():
    table = pa.concat_tables(
        [
            events([1.0, 2.0, 3.0], run="s1"),
            events([3.0, 4.0, 5.0], run="s2"),
            events([2.0, 3.0, 4.0], run="s3"),
        ]
    )
    view = View(smooth="none", mean_runs=True, band="minmax")
    lp, _ = draw(table, view)
    assert list(lp.series) == [("mean of 3 runs", "loss")]
    s = lp.series[("mean of 3 runs", "loss")]
    np.testing.assert_allclose(s.raw.get_ydata(), [2.0, 3.0, 4.0])
    assert lp.fig.axes[0].get_legend().get_title().get_text() == "shade: min..max across runs"
    (curve,) = curves(table, view)
    np.testing.assert_allclose(curve.lo, [1.0, 2.0, 3.0])
    np.testing.assert_allclose(curve.hi, [3.0, 4.0, 5.0])


@pytest.mark.parametrize(
    ("view", "bad", "x"),
    [
        (View(per="epoch", x="epoch", band="minmax"), 52, 6.0),  # drawn at its epoch's end, named by step
        (View(per="epoch", band="std"), 52, 59.0),
        (View(per=7), 40, 41.0),
    ],
)
def test_a_bucketed_non_finite_note_names_the_step_of_the_event(view, bad, x):
    y = [np.inf if step == 52 else np.nan if step == 40 and bad == 40 else 1.0 for step in range(100)]
    lp, _ = draw(events(y, epochs=[step // 10 for step in range(100)], run="r"), view)
    s = lp.series[("r", "loss")]
    epoch = " (epoch 5)" if view.per == "epoch" else ""
    assert s.note.get_text() == f"{'NaN' if bad == 40 else '+inf'} at step {bad}{epoch}" + (
        " (2 non-finite)" if bad == 40 else ""
    )
    assert s.marks.get_data()[0][0] == x


def test_a_non_finite_note_on_an_epoch_axis_names_step_and_epoch():
    y = [np.nan if step == 52 else 1.0 for step in range(100)]
    lp, _ = draw(events(y, epochs=[step // 10 for step in range(100)], run="r"), View(x="epoch"))
    assert lp.series[("r", "loss")].note.get_text() == "NaN at step 52 (epoch 5.3)"


def test_close_non_finite_notes_do_not_overprint():
    n = 100
    y = [np.nan if step == 40 + i else 1.0 for step in range(n) for i in range(2)]
    tags = ["loss", "val/loss"] * n
    lp, _ = draw(events(y, steps=[step for step in range(n) for _ in range(2)], tag=tags, run="r"))
    notes = [lp.series[("r", t)].note for t in ("loss", "val/loss")]
    assert [n.get_text() for n in notes] == ["loss: NaN at step 40", "val/loss: NaN at step 41"]
    assert notes[0].get_position() != notes[1].get_position()


def test_rewound_events_are_dropped_unless_kept():
    # A resumed run: steps 0..3 logged, then training resumed from a checkpoint at step 1 (next step 2).
    table = events([1.0, 0.9, 0.8, 0.7, 0.85, 0.75], steps=[0, 1, 2, 3, 2, 3], run="r")
    (curve,) = curves(table, View())
    # Steps 2 and 3 of the first run are orphaned: the resumed run logged them again (spec 5.2).
    assert curve.step.tolist() == [0, 1, 2, 3] and curve.y.tolist() == [1.0, 0.9, 0.85, 0.75]
    kept = lv.prepare(table.drop_columns(["run"]), View(keep_rewound=True))
    assert kept.num_rows == 6


def test_x_axes_relative_time_epoch():
    table = events([1.0, 0.9, 0.8], dt=90.0, run="r", epochs=[0, 0, 1])
    lp, _ = draw(table, View(x="relative", smooth="none"))
    np.testing.assert_allclose(lp.series[("r", "loss")].raw.get_xdata(), [0, 1.5, 3.0])  # minutes
    assert lp.fig.axes[0].get_xlabel() == "time since start (min)"
    lp, _ = draw(table, View(x="time", smooth="none"))
    assert lp.fig.axes[0].get_xlabel() == "wall time (UTC)"
    np.testing.assert_allclose(lp.series[("r", "loss")].raw.get_xdata()[0], 1_700_000_000 / 86400)
    lp, _ = draw(table, View(x="epoch", smooth="none"))
    assert lp.fig.axes[0].get_xlabel() == "epoch"


def test_logy_ylim_title():
    style = plot.Style(logy=True, ylim=(0.01, 10.0), title="my run")
    lp, _ = draw(events([1.0, 0.1], run="r"), style=style)
    ax = lp.fig.axes[0]
    assert ax.get_yscale() == "log" and ax.get_ylim() == pytest.approx((0.01, 10.0))
    assert lp.fig.get_suptitle() == "my run"


def test_logy_leaves_a_gap_for_values_at_or_below_zero_and_says_so_once():
    values = [1.0, 0.5, 0.0, -0.5, 0.2, float("-inf")]
    style = plot.Style(logy=True)
    view = View(smooth="none")
    lp, _ = make_plot(view, style)
    said = r"--logy: 2 values of loss are zero or negative \(the first at step 2\)"
    with pytest.warns(UserWarning, match=said):
        lp.update(curves(events(values), view))
    ax = lp.fig.axes[0]
    lp.fig.canvas.draw()
    # masked, not clipped: the drawn path breaks at the two values instead of diving to the bottom edge
    (series,) = lp.series.values()
    ys = ax.transData.transform_path(series.raw.get_path()).vertices[:, 1]
    assert (~np.isfinite(ys)).sum() == 3  # 0, -0.5 and -inf have no position (clipped, they would)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lp.update(curves(events(values), view))  # once per series, not on every redraw of a followed run


def test_series_that_disappear_are_emptied_not_left_stale():
    lp, _ = make_plot()
    view = View()
    lp.update(curves(events([1.0, 0.5], run="r"), view))
    lp.update(curves(events([2.0], tag="other", run="r"), view))
    assert len(lp.series[("r", "loss")].raw.get_xdata()) == 0


def test_band_requires_a_spread_source():
    with pytest.raises(ValueError, match="--band"):
        View(band="minmax").check()
    with pytest.raises(ValueError):
        View(smooth="bogus").check()


# ----------------------------------------------------------------------------------------------- output


@pytest.mark.parametrize("fmt,magic", [("png", b"\x89PNG"), ("svg", b"<?xml"), ("pdf", b"%PDF")])
def test_file_output_is_replaced_atomically(tmp_path, fmt, magic):
    path = tmp_path / f"out.{fmt}"
    out = plot.FileOutput(path, dpi=50)
    fig = Figure(figsize=(2, 2))
    fig.add_subplot().plot([0, 1], [1, 0])
    out.refresh(fig)
    first = path.stat().st_ino
    out.refresh(fig)
    assert path.read_bytes().startswith(magic)
    assert path.stat().st_ino != first  # a new file was renamed over the old one
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left behind


def test_file_output_rejects_unknown_format(tmp_path):
    with pytest.raises(ValueError, match="png"):
        plot.FileOutput(tmp_path / "out.jpg")


def test_one_series_is_found_from_the_dictionaries_and_chunks_with_other_single_tags_are_not():
    one = pa.concat_tables([events([1.0, 2.0]), events([3.0])])
    assert one.column("tag").num_chunks == 2
    assert lv.tag_groups(one) == [("loss", None)]
    # Each chunk's dictionary has a single tag, but not the same one.
    two = pa.concat_tables([events([1.0, 2.0], tag="a"), events([3.0], tag="b")])
    assert [(t, list(i)) for t, i in lv.tag_groups(two)] == [("a", [0, 1]), ("b", [2])]


# ---------------------------------------------------------------------------------------------- summary


def test_summary_numbers():
    table = events([4.0, 3.0, np.nan, 1.0, 2.0], steps=[10, 11, 12, 13, 14], dt=0.5, run="r")
    (row,) = summary.summarize(runs_of(table), View(smooth="none"))
    assert row == {
        "run": "r",
        "tag": "loss",
        "events": 5,
        "first_step": 10,
        "last_step": 14,
        "first": 4.0,
        "last": 2.0,
        "min": 1.0,
        "min_step": 13,
        "max": 4.0,
        "max_step": 10,
        "last_smoothed": None,
        "non_finite": 1,
        "events_per_s": 2.5,
        "duration_s": 2.0,
        "hparams": {},
    }
    text = summary.format_summary([row])
    assert "10..14" in text and "2.5" in text and "2.0s" in text
    header, _, line = text.splitlines()[:3]
    assert header.split()[6:10] == ["min", "@step", "max", "@step"]
    assert line.split()[6:10] == ["1", "13", "4", "10"]
    json.dumps(row)


def test_split_grows_an_axes_for_a_new_tag_and_keeps_the_old_artists():
    lp, _ = make_plot(style=plot.Style(split=True))
    view = View()
    lp.update(curves(events([1.0, 0.5], run="r"), view))
    first_ax, first_line = lp.fig.axes[0], lp.series[("r", "loss")].raw
    grown = pa.concat_tables([events([1.0, 0.5, 0.2], run="r"), events([0.1, 0.2], tag="acc", run="r")])
    lp.update(curves(grown, view))
    assert len(lp.fig.axes) == 2 and lp.fig.axes[0] is first_ax
    assert lp.series[("r", "loss")].raw is first_line
    assert lp.series[("r", "acc")].ax is lp.fig.axes[1]
    assert first_ax.get_xlabel() == "" and lp.fig.axes[1].get_xlabel() == "step"


# ------------------------------------------------------------------------------- reading only what is drawn


def _sweep(tmp_path) -> list:
    """Two runs with every column in use: two tags, epochs, batch sizes, sum reductions and a rewind."""
    from lossfmt import LossWriter

    paths = []
    for seed in (1, 2):
        path = tmp_path / f"seed{seed}.arrow"
        with LossWriter(path, run=f"seed{seed}") as w:
            for step in [*range(120), *range(100, 150)]:  # a resume at step 100 orphans 100..119
                w.add(step, 1.0 / (step + seed), count=1 + step % 3, epoch=step // 50)
                if step % 10 == 9:
                    w.add(step, 2.0 * step, "val", count=4, epoch=step // 50, reduction="sum")
        paths.append(path)
    return paths


VIEWS = [
    View(),
    View(smooth="ma:5", tags=("val",)),
    View(normalize="per-item"),
    View(per="epoch", band="minmax"),
    View(per=25, normalize="per-item", band="std", x="epoch"),
    View(x="epoch"),
    View(x="time"),
    View(x="relative", keep_rewound=True),
    View(mean_runs=True, band="std"),
]


@pytest.mark.parametrize("view", VIEWS, ids=repr)
def test_curves_from_the_view_columns_equal_curves_from_every_column(tmp_path, view):
    paths = _sweep(tmp_path)
    for files in (paths[:1], paths):
        want = lv.curves(lv.load(files, view, every_column=True), view)
        runs = lv.load(files, view)
        assert all(r.table.column_names == list(view.columns()) for r in runs)
        got = lv.curves(runs, view)
        assert [c.key for c in got] == [c.key for c in want]
        for g, w in zip(got, want, strict=True):
            for name in ("x", "y", "step", "smoothed", "lo", "hi"):
                np.testing.assert_array_equal(getattr(g, name), getattr(w, name), err_msg=f"{view} {name}")


def test_view_columns_are_step_tag_value_epoch_unless_an_option_needs_more():
    # epoch always: it tells a run whose steps restart each epoch from a resumed one
    assert View().columns() == ("step", "tag", "value", "epoch")
    assert View(x="time").columns() == ("step", "tag", "value", "epoch", "wall_time")
    assert View(normalize="per-item").columns() == ("step", "tag", "value", "count", "epoch", "reduction")
    assert View(per="epoch").columns() == ("step", "tag", "value", "count", "epoch", "wall_time")


@pytest.mark.parametrize("normalize", [None, "per-item"])
def test_summary_from_its_columns_equals_summary_from_every_column(tmp_path, normalize):
    paths = _sweep(tmp_path)
    view = View(normalize=normalize)
    want = summary.summarize(lv.load(paths, view, every_column=True), view)
    assert summary.summarize(lv.load(paths, summary.summary_view(view)), view) == want


def test_a_step_axis_draws_the_int64_steps_without_a_float_copy():
    (c,) = curves(events([1.0, 2.0, 3.0], steps=[5, 6, 9], run="r"), View())
    assert c.x is c.step and c.x.dtype == np.int64


@pytest.mark.parametrize(
    ("smooth", "arrays", "extra"), [("ema:0.6", 1, 0.1), (None, 1, 0.5), ("none", 0, 0.06)]
)
def test_the_curve_of_a_long_series_allocates_its_smoothed_values_and_little_else(smooth, arrays, extra):
    # A cold 10M-event render pays for every fresh array it touches: x, y and steps are the table's own
    # buffers, the smoothing allocates its result (the EMA over steps also 12 MB of blocks), the checks
    # that steps are sorted no mask as long as them, the drawing about a screen's worth (`extra`: what
    # else may be allocated, in arrays as long as the values; a copy of them is 1, a mask 0.125).
    import tracemalloc

    n = 1 << 22
    rng = np.random.default_rng(5)
    table = pa.table(
        {
            "step": pa.array(np.arange(n)),
            "tag": pa.DictionaryArray.from_arrays(np.zeros(n, np.int32), ["loss"]).cast(schema.TAG_TYPE),
            "value": pa.array(np.cumsum(rng.normal(size=n)) + 5.0),
        }
    )
    view = View(smooth=smooth or lv.DEFAULT_SMOOTH, smooth_explicit=smooth is not None)
    runs = runs_of(table)
    lp, _ = make_plot(view)
    tracemalloc.start()
    try:
        (c,) = lv.curves(runs, view)
        data_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        lp.update([c])
        current, draw_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (c.smoothed is not None) == bool(arrays)
    assert data_peak < (arrays + extra) * 8 * n
    assert draw_peak - current < 0.1 * 8 * n


# ------------------------------------------------------------------------------------------ issue 11


def test_the_legend_says_what_is_drawn_and_which_smoothing():
    lp, _ = draw(events(np.linspace(2, 1, 100)), View(smooth="ema:0.6"))
    legend = lp.fig.axes[0].get_legend()
    assert legend is not None and legend.get_title().get_text() == "bold: smoothed (EMA 0.6), faint: raw"
    lp, _ = draw(events(np.linspace(2, 1, 100)))  # the default says which fraction of the span
    assert lp.fig.axes[0].get_legend().get_title().get_text() == "bold: smoothed (EMA 2% of span), faint: raw"
    lp, _ = draw(events(np.linspace(2, 1, 100)), View(smooth="none"))
    assert lp.fig.axes[0].get_legend() is None  # one raw curve: nothing to explain


def test_a_tag_keeps_its_colour_when_others_are_filtered_out_or_appear_later():
    table = pa.concat_tables([events([1.0, 0.9], tag="a", run="r"), events([2.0, 1.9], tag="b", run="r")])
    both, _ = draw(table, View(smooth="none"))
    only_b, _ = draw(table, View(smooth="none", tags=("b",)))
    assert both.series[("r", "b")].raw.get_color() == only_b.series[("r", "b")].raw.get_color()
    assert both.series[("r", "a")].raw.get_color() != both.series[("r", "b")].raw.get_color()
    lp, _ = make_plot(View(smooth="none"))
    lp.update(curves(events([1.0], tag="a", run="r")))
    colour = lp.series[("r", "a")].raw.get_color()
    lp.update(curves(table))
    assert lp.series[("r", "a")].raw.get_color() == colour


def test_labels_have_no_doubled_parentheses_and_name_the_one_tag():
    table = events([1.0, 2.0, 3.0, 4.0], counts=[2, 2, 2, 2], epochs=[0, 0, 1, 1])
    lp, _ = draw(table, View(per="epoch", normalize="per-item"))
    assert lp.fig.axes[0].get_ylabel() == "loss (per item, mean per epoch)"


def test_an_epoch_axis_has_integer_ticks():
    lp, _ = draw(events([1.0, 0.9, 0.8], epochs=[0, 1, 2]), View(x="epoch", smooth="none"))
    ax = lp.fig.axes[0]
    ax.set_xlim(0.5, 3.2)
    ticks = ax.xaxis.get_major_locator()()
    assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks)


def test_items_axis_is_the_cumulative_count():
    lp, _ = draw(events([1.0, 0.9, 0.8], counts=[32, 32, 16]), View(x="items", smooth="none"))
    assert lp.series[("", "loss")].raw.get_xdata().tolist() == [32, 64, 80]
    assert lp.fig.axes[0].get_xlabel() == "items seen (cumulative count)"


def test_short_and_long_runs_of_one_tag_are_drawn_alike():
    table = pa.concat_tables(
        [events(np.linspace(2, 1, 30), run="short"), events(np.linspace(2, 1, 300), run="long")]
    )
    lp, _ = draw(table, View(), plot.Style(compare=True))
    short, long_ = lp.series[("short", "loss")], lp.series[("long", "loss")]
    assert short.curve.smoothed is not None and long_.curve.smoothed is not None
    assert short.main.get_marker() == long_.main.get_marker() == "None"


def test_hover_reads_every_visible_curve_and_a_legend_click_hides_one():
    from matplotlib.backend_bases import MouseEvent
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from lossview.interact import Interaction

    table = pa.concat_tables([events([1.0, 0.5, 0.25], tag="a"), events([3.0, 2.0, 1.0], tag="b")])
    lp, _ = draw(table, View(smooth="ema:0.5"))
    fig = lp.fig
    FigureCanvasAgg(fig)  # a real canvas with a renderer, as a window has
    fig.canvas.draw()
    hover = Interaction(lp)
    ax = fig.axes[0]
    x, y = ax.transData.transform((1.1, 1.0))
    hover.on_move(MouseEvent("motion_notify_event", fig.canvas, x, y))
    text = hover.readout[ax].get_text().splitlines()
    assert text[0].startswith("a  step 1  raw 0.5  smoothed ") and text[1].startswith(
        "b  step 1  raw 2  smoothed "
    )
    entry = next(e for e, k in lp.legend_entries.items() if k == ("", "b") and hasattr(e, "get_text"))
    box = entry.get_window_extent(fig.canvas.get_renderer())

    def click() -> None:  # a real button press on the legend label, as the canvas delivers it
        press = MouseEvent("button_press_event", fig.canvas, *box.get_points().mean(axis=0), button=1)
        fig.canvas.callbacks.process("button_press_event", press)

    click()
    assert not lp.series[("", "b")].smooth.get_visible() and not lp.series[("", "b")].raw.get_visible()
    hover.on_move(MouseEvent("motion_notify_event", fig.canvas, x, y))
    assert [line.split()[0] for line in hover.readout[ax].get_text().splitlines()] == ["a"]
    lp.update(curves(table, View(smooth="ema:0.5")))  # still hidden as the run grows
    assert not lp.series[("", "b")].raw.get_visible()
    click()
    assert lp.series[("", "b")].smooth.get_visible()


BOUNDS = st.integers(-50, 50).map(lambda i: i / 2) | st.floats(allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(-20, 20) | st.integers(-(2**40), 2**40), min_size=1, max_size=60).map(sorted),
    BOUNDS,
    BOUNDS,
)
def test_integer_steps_are_cut_as_their_float_values_would_be(steps, a, b):
    """A step axis keeps x as int64 (no float copy); zoom windows and bands must cut it exactly the same."""
    x = np.asarray(steps, dtype=np.int64)
    xf = x.astype(np.float64)
    x0, x1 = sorted((a, b))
    assert screen.window(x, x0, x1) == screen.window(xf, x0, x1)
    for side, bound in itertools.product(("left", "right"), (a, b, float(x[0]), float(x[-1]))):
        assert screen.search(x, bound, side) == np.searchsorted(xf, bound, side=side)
    lo, hi = np.arange(len(x), dtype=np.float64), np.arange(len(x), dtype=np.float64) + 1
    for got, want in zip(
        screen.envelope(x, lo, hi, x0, x1, 4), screen.envelope(xf, lo, hi, x0, x1, 4), strict=True
    ):
        np.testing.assert_array_equal(got, want)


def test_wall_time_in_the_local_time_zone_on_request(monkeypatch):
    import time as _time

    monkeypatch.setenv("TZ", "Asia/Kolkata")  # UTC+5:30, no daylight saving: a fixed, visible offset
    _time.tzset()
    try:
        table = events([1.0, 0.9], t0=1_700_000_000.0, dt=60.0)
        utc, _ = draw(table, View(x="time", smooth="none"))
        local, _ = draw(table, View(x="time", smooth="none"), plot.Style(local_time=True))
        assert utc.fig.axes[0].get_xlabel() == "wall time (UTC)"
        assert local.fig.axes[0].get_xlabel() == "wall time (local)"
        fmt_utc = utc.fig.axes[0].xaxis.get_major_formatter()
        fmt_local = local.fig.axes[0].xaxis.get_major_formatter()
        x = 1_700_000_000.0 / 86400
        assert fmt_utc.format_data_short(x).startswith("2023-11-14 22:13")
        assert fmt_local.format_data_short(x).startswith("2023-11-15 03:43")
    finally:
        monkeypatch.delenv("TZ")
        _time.tzset()


@pytest.mark.parametrize("tags", [("loss",), ("loss", "val")])
def test_runs_of_one_label_value_share_its_colour_and_are_told_apart_in_plot_and_legend(tmp_path, tags):
    """--label seed drew two runs of seed=1 in the same orange, solid and unmarked: their legend entries
    ('seed=1 (lr0.0003_s1)', 'seed=1 (lr0.001_s1)') could not be matched to their curves."""
    import lossfmt
    import lossview

    paths = []
    for lr, seed, base in [(0.0003, 0, 1.5), (0.0003, 1, 1.55), (0.001, 1, 0.8)]:
        paths.append(tmp_path / f"lr{lr}_s{seed}.arrow")
        with lossfmt.LossWriter(paths[-1], meta={"lr": lr, "seed": seed}) as w:
            for step in range(200):
                for i, tag in enumerate(tags):
                    w.add(step, base + i + 0.5 * np.exp(-step / 50), tag)
    fig = lossview.figure(paths, label="seed", smooth="none")
    (ax,) = fig.axes
    entries = zip(ax.get_legend().get_texts(), ax.get_legend().get_lines(), strict=True)
    looks = {text.get_text(): (line.get_color(), line.get_marker()) for text, line in entries}
    suffix = ": loss" if len(tags) == 1 else ""  # (several tags: the compact legend, an entry per run)
    a, b, c = (looks[f"{run}{suffix}"] for run in ("seed=0", "seed=1 (lr0.0003_s1)", "seed=1 (lr0.001_s1)"))
    assert b[0] == c[0] != a[0] and b != c  # a colour per seed, its two runs told apart
    drawn = {line.get_marker() for line in ax.lines if len(line.get_xdata()) and line.get_label()[0] != "_"}
    assert drawn == {a[1], b[1], c[1]}  # and the curves drawn as their entries show them


def test_no_two_runs_of_a_label_with_more_values_than_colours_look_alike(tmp_path):
    """Past ten --label values, the 11th value's first run and the 1st value's second run got one colour and
    one marker (a marker from the round of colours plus one from the place in the group)."""
    import lossfmt
    import lossview

    for i in range(25):
        with lossfmt.LossWriter(tmp_path / f"r{i:02}.arrow", meta={"k": i % 12}) as w:
            for step in range(50):
                w.add(step, 1.0 / (step + 1) + i)
    fig = lossview.figure(tmp_path, label="k")
    looks: dict[tuple[str, str, str], list[str]] = {}
    for line in fig.axes[0].get_lines():
        if len(line.get_xdata()) and not line.get_label().startswith("_"):
            looks.setdefault((line.get_color(), line.get_marker(), line.get_linestyle()), []).append(
                line.get_label()
            )
    assert sum(map(len, looks.values())) == 25
    assert {k: v for k, v in looks.items() if len(v) > 1} == {}
