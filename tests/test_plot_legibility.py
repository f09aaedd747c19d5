"""What a reader can tell apart in a drawn figure: every legend entry (or a count of those left out),
every curve past the palette's ten colours, NaN from ±inf, plain log and step tick labels; and an epoch
axis computed as before, without sorting a run that is already in step order."""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lossview import artists, axes, plot
from lossview.view import Curve, View


class FakeOutput(plot.Output):
    def refresh(self, fig: Figure) -> None:
        pass


def drawn(curves: list[Curve], view: View | None = None, style: plot.Style | None = None) -> plot.LossPlot:
    """A LossPlot of ``curves`` on an 8 x 4.5 in constrained figure, drawn once by Agg (tick labels and
    the layout are only known after a draw)."""
    fig = Figure(figsize=(8, 4.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    lp = plot.LossPlot(fig, view or View(), style or plot.Style(), FakeOutput())
    lp.update(curves)
    fig.canvas.draw()
    return lp


def curve(run: str, tag: str, y: np.ndarray, *, tag_index: int = 0, steps: np.ndarray | None = None) -> Curve:
    step = np.arange(len(y)) if steps is None else steps
    return Curve(
        run, tag, step, np.asarray(y, float), step, smoothed=np.asarray(y, float), tag_index=tag_index
    )


def sweep(runs: int, tags: tuple[str, ...] = ("loss", "lr", "val")) -> list[Curve]:
    """``runs`` runs named like a learning-rate sweep, each logging ``tags`` for 100 steps."""
    y = np.linspace(3, 1, 100)
    return [curve(f"lr0.00{r}_seed{r % 3}", tag, y * (1 + r / 10), tag_index=i) for r in range(runs)
            for i, tag in enumerate(tags)]  # fmt: skip


def tick_labels(ax_axis) -> list[str]:
    """The non-empty tick labels of an axis inside its view (major and minor), bottom to top."""
    lo, hi = sorted(ax_axis.get_view_interval())
    ticks = [*ax_axis.get_major_ticks(), *ax_axis.get_minor_ticks()]
    found = [
        (t.get_loc(), t.label1.get_text()) for t in ticks if lo <= t.get_loc() <= hi and t.label1.get_text()
    ]
    return [text for _, text in sorted(found)]


# ------------------------------------------------------------------------------------------- 1. epochs


def reference_epochs(events: pa.Table, epoch: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """RunAxis.epochs as it was written first (dense ranks, np.unique of every column): the answer to keep."""
    ev_epoch = np.asarray(events.column("epoch").to_numpy(zero_copy_only=False), np.float64)
    ok = np.isfinite(ev_epoch)
    ev_e, ev_s = ev_epoch[ok].astype(np.int64), np.asarray(events.column("step"), np.int64)[ok]
    out = np.full(len(steps), np.nan)
    epochs_u, steps_u = np.unique(ev_e), np.unique(ev_s)
    width = len(steps_u) + 1

    def key(e: np.ndarray, s: np.ndarray) -> np.ndarray:
        return np.searchsorted(epochs_u, e) * width + np.searchsorted(steps_u, s)

    pairs = np.unique(key(ev_e, ev_s))
    pair_epoch = epochs_u[pairs // width]
    starts = np.r_[0, np.flatnonzero(np.diff(pair_epoch)) + 1]
    counts = np.diff(np.r_[starts, len(pairs)])
    group = np.repeat(np.arange(len(starts)), counts)
    position = pair_epoch + (np.arange(len(pairs)) - starts[group] + 1.0) / counts[group]
    q = np.isfinite(epoch)
    qk = key(epoch[q].astype(np.int64), steps[q])
    at = np.minimum(np.searchsorted(pairs, qk), len(pairs) - 1)
    out[q] = np.where(pairs[at] == qk, position[at], np.nan)
    return out


def random_run(rng: np.random.Generator, *, ordered: bool, far_steps: bool, missing: bool) -> pa.Table:
    """Events of two tags (the second logged at some of the first's steps), epochs of 7-40 steps."""
    n = int(rng.integers(50, 400))
    steps = np.cumsum(rng.integers(0 if ordered else 1, 3, n)) + int(rng.integers(-5, 5))
    if far_steps:  # steps further apart than 2**31: ranked, not offset
        steps = steps * (1 << 33)
    epochs = np.cumsum(rng.random(n) < 1 / rng.integers(7, 40))
    extra = rng.random(n) < 0.2
    steps, epochs = np.r_[steps, steps[extra]], np.r_[epochs, epochs[extra]]
    if not ordered:
        order = rng.permutation(len(steps))
        steps, epochs = steps[order], epochs[order]
    mask = rng.random(len(epochs)) < 0.1 if missing else None
    return pa.table({"step": pa.array(steps, pa.int64()), "epoch": pa.array(epochs, pa.int64(), mask=mask)})


@pytest.mark.parametrize("ordered", [True, False])
@pytest.mark.parametrize("far_steps", [False, True])
@pytest.mark.parametrize("missing", [False, True])
def test_the_epoch_axis_is_the_one_computed_before_on_random_runs(ordered, far_steps, missing):
    rng = np.random.default_rng([ordered, far_steps, missing])
    for _ in range(20):
        events = random_run(rng, ordered=ordered, far_steps=far_steps, missing=missing)
        epoch = np.asarray(events.column("epoch").to_numpy(zero_copy_only=False), np.float64)
        steps = np.asarray(events.column("step"), np.int64)
        run = axes.RunAxis(events, events, None)
        for rows in (np.arange(len(steps)), np.flatnonzero(rng.random(len(steps)) < 0.3)):  # a tag's rows
            expected = reference_epochs(events, epoch[rows], steps[rows])
            np.testing.assert_array_equal(run.epochs(epoch[rows], steps[rows]), expected)


def test_the_epoch_axis_of_a_run_in_step_order_sorts_and_hashes_nothing(monkeypatch):
    steps = np.repeat(np.arange(1000), 2)[:-1]  # two tags at most steps: pairs logged twice
    events = pa.table({"step": pa.array(steps, pa.int64()), "epoch": pa.array(steps // 100, pa.int64())})
    for name in ("unique", "sort", "argsort", "lexsort"):  # np.unique hashes: 50 s on 10M steps
        monkeypatch.setattr(np, name, lambda *a, _name=name, **k: pytest.fail(f"np.{_name} called"))
    x = axes.RunAxis(events, events, None).epochs(steps.astype(float) // 100, steps)
    assert x[0] == pytest.approx(0.01) and x[199] == pytest.approx(1.0) and x[-1] == pytest.approx(10.0)


# ------------------------------------------------------------------------------------------- 2. legend


def test_a_sweep_s_legend_lists_every_entry_inside_the_figure_and_leaves_the_axes_their_height():
    lp = drawn(sweep(9), style=plot.Style(compare=True))
    legend = lp.fig.axes[0].get_legend()
    texts = [t.get_text() for t in legend.get_texts()]
    assert len(texts) == 12 and texts[0] == "lr0.000_seed0" and texts[-3:] == ["loss", "lr", "val"]
    renderer = lp.fig.canvas.get_renderer()
    figure = lp.fig.bbox
    for t in legend.get_texts():
        box = t.get_window_extent(renderer)
        assert figure.x0 <= box.x0 and box.x1 <= figure.x1 and figure.y0 <= box.y0 and box.y1 <= figure.y1
    position = lp.fig.axes[0].get_position()
    assert position.height > 0.7 and position.width > 0.5  # the axes keep most of the figure


def test_a_legend_with_more_entries_than_fit_says_how_many_it_leaves_out():
    lp = drawn(sweep(90, ("loss",)), style=plot.Style(compare=True))
    legend = lp.fig.axes[0].get_legend()
    texts = [t.get_text() for t in legend.get_texts()]
    left_out = re.fullmatch(r"… and (\d+) more, not listed", texts[-1])
    assert left_out is not None and len(texts) - 1 + int(left_out.group(1)) == 90
    renderer = lp.fig.canvas.get_renderer()
    assert legend.get_window_extent(renderer).y0 >= lp.fig.bbox.y0
    assert set(lp.legend_entries.values()) == set(list(lp.series)[: len(texts) - 1])  # listed ones toggle


def test_a_comparison_of_several_tags_lists_each_run_and_each_tag_once_and_their_entries_toggle_groups():
    """9 runs x 2 tags listed 18 entries, of which a panel beside the axes showed 10: 5 runs named of 9.
    Runs are told by colour and tags by line style, so the legend lists each once; a run's entry hides all
    its curves, a tag's entry that tag in every run."""
    lp = drawn(sweep(9, ("loss", "val")), style=plot.Style(compare=True))
    legend = lp.fig.axes[0].get_legend()
    texts = [t.get_text() for t in legend.get_texts()]
    assert texts == [f"lr0.00{r}_seed{r % 3}" for r in range(9)] + ["loss", "val"]
    by_label = {a.get_text(): a for a in lp.legend_groups if hasattr(a, "get_text")}  # (the entries' texts)
    lp.toggle_all(lp.legend_groups[by_label["val"]])
    assert lp.hidden == {(f"lr0.00{r}_seed{r % 3}", "val") for r in range(9)}
    lp.toggle_all(lp.legend_groups[by_label["lr0.003_seed0"]])
    assert ("lr0.003_seed0", "loss") in lp.hidden
    lp.toggle_all(lp.legend_groups[by_label["val"]])  # all hidden: shown again
    assert lp.hidden == {("lr0.003_seed0", "loss")}


# ------------------------------------------------------------------------------------------ 3. palette


def looks(lp: plot.LossPlot) -> list[tuple[object, ...]]:
    """What tells each drawn curve apart: colour, dashes and the markers along its main line."""
    return [
        (s.main.get_color(), str(s.main.get_linestyle()), s.main.get_marker()) for s in lp.series.values()
    ]


@pytest.mark.parametrize(("runs", "tags"), [(17, ("loss",)), (23, ("loss", "val"))])
def test_every_curve_of_a_comparison_past_ten_runs_looks_different(runs, tags):
    lp = drawn(sweep(runs, tags), style=plot.Style(compare=True))
    assert len(set(looks(lp))) == runs * len(tags)
    eleventh = lp.series[("lr0.0010_seed1", "loss")]
    assert eleventh.main.get_color() == lp.series[("lr0.000_seed0", "loss")].main.get_color()
    assert len(eleventh.main.get_xdata()) // eleventh.main.get_markevery() >= 5  # markers all along


def test_a_run_with_more_tags_than_colours_draws_each_tag_differently_and_keeps_its_colour_alone():
    tags = tuple(f"t{i}" for i in range(13))
    lp = drawn([curve("r", t, np.linspace(2, 1, 100), tag_index=i) for i, t in enumerate(tags)])
    assert len(set(looks(lp))) == 13
    alone = drawn([curve("r", "t11", np.linspace(2, 1, 100), tag_index=11)])
    assert looks(alone) == [looks(lp)[11]]


# ------------------------------------------------------------------------------------------ 4. non-finite


def test_nan_and_infinities_are_marked_differently_and_the_note_points_at_its_own_mark():
    y = np.linspace(2, 1, 100)
    y[[50, 51]], y[70], y[85] = np.nan, np.inf, -np.inf
    lp = drawn([curve("r", "loss", y)], View(smooth="none"))
    s = lp.series[("r", "loss")]
    assert s.marks.get_xdata().tolist() == [50, 70, 85]  # where each stretch starts
    up, down = (t.get_offsets().tolist() for t in s.infinite)
    assert up == [[70, artists.TOP]] and down == [[85, artists.BOTTOM]]  # a bare mark is the NaN
    title = lp.fig.axes[0].get_legend().get_title().get_text()
    assert "× NaN" in title and "×▲ +inf" in title and "×▼ -inf" in title
    assert s.note.get_text() == "NaN at step 50 (4 non-finite)" and tuple(s.note.xy) == (50, artists.TOP)
    assert s.note.arrow_patch is not None and s.note.arrow_patch.get_visible()  # a leader line to it
    assert s.note.get_horizontalalignment() == "left"  # towards the empty right, not over the curve's past


def test_a_note_in_the_middle_of_ten_million_steps_reads_away_from_the_spike_before_it():
    steps = np.arange(0, 10_000_000, 1000)
    y = np.full(len(steps), 1.0)
    y[3333], y[5000], y[7777] = 40.0, np.nan, np.inf
    lp = drawn([curve("r", "loss", y, steps=steps)])
    s, ax = lp.series[("r", "loss")], lp.fig.axes[0]
    text = s.note.get_window_extent(lp.fig.canvas.get_renderer())
    mark, spike = (ax.transData.transform((x, 0))[0] for x in (5_000_000, 3_333_000))
    assert spike < mark < text.x0 < mark + 20  # it starts at its own mark, clear of the spike before it
    assert s.note.get_text() == "NaN at step 5,000,000 (2 non-finite)"


def test_an_empty_note_draws_no_leader_line():
    lp = drawn([curve("r", "loss", np.linspace(2, 1, 100))])
    s = lp.series[("r", "loss")]
    assert s.note.get_text() == "" and (s.note.arrow_patch is None or not s.note.arrow_patch.get_visible())


# ------------------------------------------------------------------------------------------ 5. log ticks


@pytest.mark.parametrize(
    ("lo", "hi", "expected"),
    [
        (1.0, 50.0, ["1", "2", "5", "10", "20", "50"]),
        (0.3, 3.0, ["0.5", "1", "2"]),
        (1.0, 1000.0, ["1", "10", "100", "1000"]),
    ],
)
def test_a_log_axis_over_few_decades_has_plain_labels(lo, hi, expected):
    lp = drawn([curve("r", "loss", np.geomspace(lo, hi, 100))], View(smooth="none"), plot.Style(logy=True))
    ax = lp.fig.axes[0]
    ax.set_ylim(lo, hi)
    lp.fig.canvas.draw()
    assert tick_labels(ax.yaxis) == expected


def test_a_log_axis_over_a_narrow_range_still_has_three_plain_labels():
    lp = drawn([curve("r", "loss", np.linspace(2.8, 1.2, 100))], View(smooth="none"), plot.Style(logy=True))
    labels = tick_labels(lp.fig.axes[0].yaxis)
    assert len(labels) >= 3 and all(re.fullmatch(r"\d+(\.\d+)?", t) for t in labels), labels


def test_a_log_axis_over_many_decades_keeps_powers_of_ten():
    lp = drawn([curve("r", "loss", np.geomspace(1e-9, 1.0, 100))], View(smooth="none"), plot.Style(logy=True))
    labels = tick_labels(lp.fig.axes[0].yaxis)
    assert labels and all("10^{" in t for t in labels), labels


# ------------------------------------------------------------------------------------------ 6. step ticks


@pytest.mark.parametrize("n", [1, 2, 5])
def test_a_short_run_s_step_ticks_are_whole_numbers(n):
    """(one step, a followed run's first frame, read "-40m 0 40m": milli-steps)"""
    lp = drawn([curve("r", "loss", np.linspace(2, 1, n))], View(smooth="none"))
    labels = tick_labels(lp.fig.axes[0].xaxis)
    assert labels and all(re.fullmatch(r"−?\d+", t) for t in labels), labels


def test_a_ten_million_step_axis_reads_in_millions():
    steps = np.arange(0, 10_000_001, 10_000)
    lp = drawn([curve("r", "loss", np.linspace(2, 1, len(steps)), steps=steps)], View(smooth="none"))
    assert tick_labels(lp.fig.axes[0].xaxis) == ["0", "2M", "4M", "6M", "8M", "10M"]


def test_each_change_of_non_finite_kind_is_marked_and_the_axes_reach_a_last_non_finite_point():
    """Epoch means NaN, 1.08, +inf, -inf, NaN: the -inf right after +inf got no mark (one stretch), and the
    x axis stopped at the last mark drawn, leaving the last two epochs off the plot."""
    steps = np.array([399, 799, 1199, 1599, 1999])
    c = curve("r", "loss", np.array([np.nan, 1.08, np.inf, -np.inf, np.nan]), steps=steps)
    c.smoothed = None
    lp = drawn([c])
    s = lp.series[("r", "loss")]
    assert np.asarray(s.marks.get_xdata()).tolist() == [399, 1199, 1599, 1999]
    assert artists.nonfinite_key(lp.series.values()) == "× NaN, ×▲ +inf, ×▼ -inf"
    assert lp.fig.axes[0].get_xlim()[1] >= 1999


def test_a_run_that_diverges_for_good_is_drawn_to_its_last_step():
    y = np.r_[np.linspace(2, 1, 50), np.full(50, np.nan)]
    c = curve("r", "loss", y)
    lp = drawn([c])
    assert np.asarray(lp.series[("r", "loss")].marks.get_xdata()).tolist() == [50, 99]
    assert lp.fig.axes[0].get_xlim()[1] >= 99


@pytest.mark.parametrize(("runs", "compact"), [(2, False), (3, True)])
def test_from_three_runs_of_several_tags_the_legend_names_runs_and_tags_once(runs, compact):
    """(a mean per --label value of loss and val: 'lr=0.0001: mean of 10 runs: loss' six times over)"""
    lp = drawn(sweep(runs, ("loss", "val")), style=plot.Style(compare=True))
    texts = [t.get_text() for t in lp.fig.axes[0].get_legend().get_texts()]
    names = [f"lr0.00{r}_seed{r % 3}" for r in range(runs)]
    if compact:
        assert texts == [*names, "loss", "val"]
    else:
        assert texts == [f"{n}: {t}" for n in names for t in ("loss", "val")]
