"""Read-time transforms: per-item buckets (seed 002), smoothing tables, rewinds, epoch x, decimation (the
smoothers themselves: test_smooth.py)."""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lossfmt import schema
from lossfmt.transforms import (
    DEFAULT_SMOOTH,
    all_finite,
    bucket,
    decimate,
    drop_rewound,
    ema,
    epoch_positions,
    first_rewind,
    normalize_events,
    one_series,
    parse_normalize,
    parse_per,
    run_wide_steps,
    select_tags,
    series,
    smooth_table,
    step_ema,
)

# --- helpers ----------------------------------------------------------------------------------------------


def events(
    steps: list[int],
    values: list[float],
    *,
    tags: list[str] | str = "loss",
    counts: list[int] | int = 1,
    epochs: list[int | None] | int | None = None,
    reduction: list[str] | str = "mean",
    runs: list[str] | None = None,
) -> pa.Table:
    """An events table with the format's column types (as lossfmt.read returns it)."""
    n = len(steps)

    def per_row(x: object) -> list:
        return list(x) if isinstance(x, list) else [x] * n

    columns = {
        schema.STEP: pa.array(steps, pa.int64()),
        schema.TAG: pa.array(per_row(tags)).dictionary_encode().cast(schema.TAG_TYPE),
        schema.VALUE: pa.array(values, pa.float64()),
        schema.COUNT: pa.array(per_row(counts), pa.int64()),
        schema.EPOCH: pa.array(per_row(epochs), pa.int64()),
        schema.WALL_TIME: pa.array(np.arange(n) * 1_000_000, schema.WALL_TIME_TYPE),
        schema.REDUCTION: pa.array(per_row(reduction)).dictionary_encode().cast(schema.REDUCTION_TYPE),
    }
    table = pa.table(columns)
    if runs is not None:
        table = table.append_column(schema.RUN, pa.array(runs, pa.string()))
    return table


finite_floats = st.floats(min_value=-1e100, max_value=1e100, allow_nan=False, allow_infinity=False)
any_floats = st.one_of(finite_floats, st.sampled_from([math.nan, math.inf, -math.inf]))


# --- parsing ------------------------------------------------------------------------------------------------


def test_parse_per_and_normalize_accept_cli_strings_and_reject_the_rest() -> None:
    assert parse_per("epoch") == "epoch"
    assert parse_per("100") == 100
    assert parse_per(7) == 7
    assert parse_per(None) is None
    for bad in (0, -5, "0", "ten", 2.5, True, "epochs", 2**63, str(10**30)):  # (int64 steps: an overflow)
        with pytest.raises(ValueError, match="'epoch' or a whole number"):
            parse_per(bad)  # type: ignore[arg-type]
    assert parse_normalize("per-item") == "per-item"
    assert parse_normalize(None) is None
    with pytest.raises(ValueError, match="'per-item'"):
        parse_normalize("per-batch")


# --- seed 002: per-item means whatever the batch size -------------------------------------------------------

ITEM_LOSSES = [4.0, 5.0, 2.0, 4.0, 3.0, 2.0, 3.0, 1.0]  # they sum to 24 (the post's "23.0" is a slip)


def batches(sizes: list[int], reduction: str) -> pa.Table:
    """One epoch of the seed's eight items in batches of `sizes`, logged as the loss function returns them."""
    values, start = [], 0
    for size in sizes:
        items = ITEM_LOSSES[start : start + size]
        values.append(sum(items) if reduction == "sum" else sum(items) / size)
        start += size
    n = len(sizes)
    return events(list(range(n)), values, counts=sizes, epochs=0, reduction=reduction)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("sizes", [[2, 2, 2, 2], [4, 4], [3, 3, 2]], ids=["batch2", "batch4", "ragged332"])
def test_per_item_mean_ignores_batch_size(sizes: list[int], reduction: str) -> None:
    for per in ("epoch", 8):
        out = bucket(batches(sizes, reduction), per, normalize="per-item")
        assert out.column("value").to_pylist() == [pytest.approx(3.0, rel=1e-15)]
        assert out.column("count").to_pylist() == [8]
        assert out.column("events").to_pylist() == [len(sizes)]


def test_plain_mean_of_batch_means_is_not_the_per_item_mean_for_a_ragged_last_batch() -> None:
    plain = bucket(batches([3, 3, 2], "mean"), "epoch").column("value")[0].as_py()
    assert plain == pytest.approx((11 / 3 + 3.0 + 2.0) / 3)
    assert abs(plain - 3.0) > 0.1


def test_per_item_bucket_spread_is_over_the_events_per_item_values_weighted_by_count() -> None:
    out = bucket(batches([3, 3, 2], "sum"), "epoch", normalize="per-item")
    per_item, sizes = np.array([11 / 3, 3.0, 2.0]), [3, 3, 2]
    assert out.column("value")[0].as_py() == pytest.approx(3.0)  # 24 over 8 items
    assert out.column("min")[0].as_py() == pytest.approx(2.0)
    assert out.column("max")[0].as_py() == pytest.approx(11 / 3)
    # every item weighs the same: a batch of 2 counts for less than one of 3, around the per-item mean
    spread = np.sqrt(np.average((per_item - 3) ** 2, weights=sizes))
    assert out.column("std")[0].as_py() == pytest.approx(spread)


def test_normalize_events_makes_sum_reduced_values_per_item() -> None:
    table = events([0, 1, 2], [9.0, 4.5, 6.0], counts=[2, 2, 3], reduction=["sum", "mean", "sum"])
    out = normalize_events(table)
    assert out.column("value").to_pylist() == [4.5, 4.5, 2.0]
    assert out.column("reduction").to_pylist() == ["mean"] * 3
    assert out.schema == table.schema
    assert normalize_events(out).equals(out)
    # bucketing the normalized events per item gives what bucketing the raw ones does
    raw = bucket(table, 10, normalize="per-item").column("value")[0].as_py()
    assert bucket(out, 10, normalize="per-item").column("value")[0].as_py() == pytest.approx(raw)


# --- buckets ------------------------------------------------------------------------------------------------


def test_bucket_per_steps_groups_by_run_and_tag_with_the_last_step_and_epoch() -> None:
    table = events(
        [0, 0, 5, 5, 10, 12, 0],
        [1.0, 10.0, 3.0, 30.0, 5.0, 7.0, 100.0],
        tags=["a", "b", "a", "b", "a", "a", "a"],
        epochs=[0, 0, 0, 0, 1, 1, None],
        runs=["r1", "r1", "r1", "r1", "r1", "r1", "r2"],
    )
    out = bucket(table, 10).to_pylist()
    rows = [(r["run"], r["tag"], r["step"], r["epoch"], r["value"], r["count"], r["events"]) for r in out]
    assert rows == [
        ("r1", "a", 5, 0, 2.0, 2, 2),
        ("r1", "a", 12, 1, 6.0, 2, 2),
        ("r1", "b", 5, 0, 20.0, 2, 2),
        ("r2", "a", 0, None, 100.0, 1, 1),
    ]
    assert [c for c in bucket(table, 10).column_names] == [
        "run", "tag", "step", "epoch", "value", "count", "events", "min", "max", "std", "wall_time"
    ]  # fmt: skip
    assert bucket(table, 10).schema.field("tag").type == schema.TAG_TYPE
    assert out[0]["wall_time"] == table.column("wall_time")[2].as_py()


def test_bucket_and_smoothing_accept_chunks_with_different_tag_dictionaries() -> None:
    # lossfmt.read may return several record batches, each with its own dictionary.
    first = events([0, 1], [1.0, 3.0], tags=["loss", "loss"])
    second = events([2, 3], [10.0, 5.0], tags=["val", "loss"])
    table = pa.concat_tables([first, second])
    assert table.column("tag").num_chunks == 2
    out = bucket(table, 100)
    assert list(zip(out.column("tag").to_pylist(), out.column("value").to_pylist(), strict=True)) == [
        ("loss", 3.0),
        ("val", 10.0),
    ]
    smoothed = smooth_table(table, "ma:2").column("smoothed").to_pylist()
    assert smoothed == [1.0, 2.0, 10.0, 4.0]


def test_bucket_per_epoch_skips_events_without_epoch_and_explains_when_none_has_one() -> None:
    table = events([0, 1, 2, 3], [1.0, 2.0, 3.0, 50.0], epochs=[0, 0, 1, None])
    out = bucket(table, "epoch")
    assert out.column("epoch").to_pylist() == [0, 1]
    assert out.column("value").to_pylist() == [1.5, 3.0]
    with pytest.raises(ValueError, match="no event has an epoch"):
        bucket(events([0, 1], [1.0, 2.0]), "epoch")


def test_bucket_marks_a_diverged_bucket() -> None:
    out = bucket(events([0, 1, 2, 3], [1.0, math.nan, 2.0, 4.0]), 2)
    value = out.column("value").to_pylist()
    assert math.isnan(value[0]) and value[1] == 3.0
    assert out.column("min").to_pylist()[0] == 1.0  # min/max skip NaN
    assert math.isnan(out.column("std").to_pylist()[0])


def test_the_spread_of_a_bucket_of_one_value_is_exactly_zero() -> None:
    # 0.1 * 3 / 3 is not 0.1 in floats: the per-item mean's rounding must not read as a spread
    one = bucket(events([0], [0.7], counts=[3], epochs=0), "epoch", normalize="per-item")
    same = bucket(events([0, 1, 2], [0.2] * 3, counts=[3, 5, 7], epochs=0), "epoch", normalize="per-item")
    assert one.column("std").to_pylist() == same.column("std").to_pylist() == [0.0]
    diverged = bucket(events([0, 1], [0.7, math.nan], counts=[3, 7], epochs=0), "epoch", normalize="per-item")
    assert math.isnan(diverged.column("std")[0].as_py())


def test_bucket_of_no_events_is_empty_with_the_same_columns() -> None:
    out = bucket(events([], []), 10)
    assert out.num_rows == 0
    assert "value" in out.column_names and "std" in out.column_names


def test_bucket_rejects_a_missing_per() -> None:
    with pytest.raises(ValueError, match="per"):
        bucket(events([0], [1.0]), None)  # type: ignore[arg-type]


event_rows = st.lists(
    st.tuples(
        st.integers(-50, 200),  # step
        st.sampled_from(["loss", "val", "aux"]),
        any_floats,
        st.integers(1, 64),  # count
        st.sampled_from(["mean", "sum"]),
    ),
    max_size=60,
)


@settings(max_examples=100, deadline=None)
@given(event_rows, st.integers(1, 40), st.sampled_from([None, "per-item"]))
def test_bucket_totals_conserve_counts_and_events(rows: list[tuple], per: int, normalize: str | None) -> None:
    steps, tags, values, counts, reductions = ([r[i] for r in rows] for i in range(5))
    table = events(steps, values, tags=tags, counts=counts, reduction=reductions)
    out = bucket(table, per, normalize=normalize)
    assert sum(out.column("count").to_pylist()) == sum(counts)
    assert sum(out.column("events").to_pylist()) == len(rows)
    expected_groups = {(tag, step // per) for step, tag in zip(steps, tags, strict=True)}
    assert out.num_rows == len(expected_groups)


def _spread(values: list[float], weights: list[int], center: float) -> float:
    if not all(map(math.isfinite, values)):
        return math.nan
    return math.sqrt(sum(w * (v - center) ** 2 for v, w in zip(values, weights, strict=True)) / sum(weights))


def reference_buckets(rows: list[tuple], per: int | str, normalize: str | None) -> dict[tuple, dict]:
    """bucket() written plainly: rows are (run, step, tag, value, count, reduction, epoch, wall_time)."""
    groups: dict[tuple, list[tuple]] = {}
    for row in rows:
        run, step, tag, _, _, _, epoch, _ = row
        if per == "epoch" and epoch is None:
            continue
        groups.setdefault((run, tag, epoch if per == "epoch" else step // per), []).append(row)
    out = {}
    for key, members in groups.items():
        values = [
            v / c if normalize and red == "sum" else v for _, _, _, v, c, red, _, _ in members
        ]  # per-event (per-item) values
        counts = [m[4] for m in members]
        if normalize:
            totals = [v if red == "sum" else v * c for _, _, _, v, c, red, _, _ in members]
            value = sum(totals) / sum(counts)
        else:
            value = sum(values) / len(values)
        finite = [v for v in values if not math.isnan(v)]
        epochs = [m[6] for m in members if m[6] is not None]
        out[key] = {
            "value": value,
            "count": sum(counts),
            "events": len(members),
            "min": min(finite) if finite else math.nan,
            "max": max(finite) if finite else math.nan,
            "std": _spread(values, counts if normalize else [1] * len(values), value),
            "step": max(m[1] for m in members),
            "epoch": max(epochs) if epochs else None,
            "wall_time": max(m[7] for m in members),
        }
    return out


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["r1", "r2"]),
            st.integers(-30, 100),  # steps in any order: exercises the sorting path
            st.sampled_from(["loss", "val"]),
            st.one_of(st.floats(-1e6, 1e6), st.sampled_from([math.nan, math.inf])),
            st.integers(1, 64),
            st.sampled_from(["mean", "sum"]),
            st.one_of(st.none(), st.integers(0, 3)),
        ),
        min_size=1,
        max_size=50,
    ),
    st.one_of(st.integers(1, 30), st.just("epoch")),
    st.sampled_from([None, "per-item"]),
)
def test_bucket_matches_a_plain_python_group_by(rows: list[tuple], per: int | str, normalize: str | None):
    rows = [(*row, i) for i, row in enumerate(rows)]  # wall_time: µs since the epoch, increasing
    assume(per != "epoch" or any(row[6] is not None for row in rows))
    runs, steps, tags, values, counts, reductions, epochs, _ = ([r[i] for r in rows] for i in range(8))
    table = events(steps, values, tags=tags, counts=counts, epochs=epochs, reduction=reductions, runs=runs)
    want = reference_buckets(rows, per, normalize)
    got = bucket(table, per, normalize=normalize).to_pylist()
    assert len(got) == len(want)
    keys = [(r["run"], r["tag"]) for r in got]
    assert keys == sorted(keys, key=lambda k: (runs.index(k[0]), tags.index(k[1])))  # first-seen order
    for row in got:
        key_step = row["epoch"] if per == "epoch" else row["step"] // per
        expected = want[(row["run"], row["tag"], key_step)]
        for name in ("count", "events", "step", "epoch"):
            assert row[name] == expected[name], name
        assert row["wall_time"] == table.column("wall_time")[expected["wall_time"]].as_py()
        for name in ("value", "min", "max", "std"):
            assert row[name] == pytest.approx(expected[name], rel=1e-9, abs=1e-6, nan_ok=True), name


# --- per-series transforms ----------------------------------------------------------------------------------


def test_smooth_table_smooths_each_run_and_tag_in_file_order() -> None:
    rng = np.random.default_rng(3)
    n = 300
    tags = rng.choice(["loss", "val"], n).tolist()
    runs = rng.choice(["a", "b"], n).tolist()
    values = rng.normal(size=n)
    table = events(list(range(n)), values.tolist(), tags=tags, runs=runs)
    out = smooth_table(table, "ema:0.8")
    smoothed = out.column("smoothed").to_numpy()
    for run in ("a", "b"):
        for tag in ("loss", "val"):
            rows = [i for i in range(n) if runs[i] == run and tags[i] == tag]
            np.testing.assert_allclose(smoothed[rows], ema(values[rows], 0.8), rtol=1e-13)
    assert out.column_names == [*table.column_names, "smoothed"]
    assert smooth_table(out, "none").column("smoothed").to_pylist() == values.tolist()


def test_smooth_table_works_on_buckets() -> None:
    table = bucket(events(list(range(40)), list(np.arange(40.0))), 10)
    out = smooth_table(table, "ma:2")
    assert out.column("smoothed").to_pylist() == [4.5, 9.5, 19.5, 29.5]


def test_drop_rewound_drops_events_a_resume_orphaned_per_tag() -> None:
    # loss: steps 0 1 2 3, resumed at step 2: 2 3 4. The first 2 and 3 are orphaned (the resume logged its
    # own step 2); val never goes back; a step logged twice in a row stays twice.
    table = events(
        [0, 0, 1, 2, 3, 5, 2, 3, 4, 4],
        [0.0, 9.0, 1.0, 2.0, 3.0, 9.5, 20.0, 30.0, 40.0, 41.0],
        tags=["loss", "val", "loss", "loss", "loss", "val", "loss", "loss", "loss", "loss"],
    )
    out = drop_rewound(table)
    assert list(zip(out.column("tag").to_pylist(), out.column("value").to_pylist(), strict=True)) == [
        ("loss", 0.0), ("val", 9.0), ("loss", 1.0), ("val", 9.5), ("loss", 20.0), ("loss", 30.0),
        ("loss", 40.0), ("loss", 41.0)
    ]  # fmt: skip


def test_drop_rewound_tells_steps_apart_beyond_float_precision() -> None:
    big = 2**62
    table = events([big, big + 1, big, big + 2], [1.0, 2.0, 3.0, 4.0])  # a rewind to `big`; big + 1 is
    assert drop_rewound(table).column("value").to_pylist() == [3.0, 4.0]  # no float64 apart from it


def test_a_script_run_again_on_its_path_hides_the_whole_earlier_run() -> None:
    # the same 10-step epoch logged twice: only the second run counts, at step 0 too
    table = events([*range(10), *range(10)], [1.0] * 10 + [2.0] * 10, epochs=[0] * 20)
    assert drop_rewound(table).column("value").to_pylist() == [2.0] * 10


def test_drop_rewound_keeps_runs_apart_and_returns_monotonic_tables_untouched() -> None:
    table = events([5, 6, 1, 2], [1.0, 2.0, 3.0, 4.0], runs=["a", "a", "b", "b"])
    assert drop_rewound(table) is not None and drop_rewound(table).num_rows == 4
    steady = events([0, 1, 1, 2], [1.0, 2.0, 3.0, 4.0])
    assert drop_rewound(steady) is steady


def test_drop_rewound_sees_a_rewind_between_chunks_that_are_each_in_order() -> None:
    table = events([0, 1, 2, 3, 1, 2], [float(i) for i in range(6)])
    table = pa.concat_tables([table.slice(0, 4), table.slice(4)])
    assert drop_rewound(table).column("step").to_pylist() == [0, 1, 2]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 20), st.sampled_from(["a", "b"])), max_size=40),
    st.lists(st.integers(0, 40), max_size=3),
)
def test_drop_rewound_matches_its_definition(rows: list[tuple[int, str]], cuts: list[int]) -> None:
    steps, tags = ([r[0] for r in rows], [r[1] for r in rows])
    table = events(steps, [float(i) for i in range(len(rows))], tags=tags)
    bounds = [0, *sorted(min(c, len(rows)) for c in cuts), len(rows)]  # chunks as a multi-batch file has them
    table = pa.concat_tables([table.slice(a, b - a) for a, b in itertools.pairwise(bounds)])
    kept: dict[str, list[int]] = {}  # TensorBoard's purge, event by event: a step back drops steps >= it
    for i, (step, tag) in enumerate(rows):
        series = kept.setdefault(tag, [])
        if series and step < max(steps[j] for j in series):
            series[:] = [j for j in series if steps[j] < step]
        series.append(i)
    expected = sorted(i for series in kept.values() for i in series)
    assert drop_rewound(table).column("value").to_pylist() == [float(i) for i in expected]


def test_epoch_positions_line_up_per_step_and_per_epoch_curves() -> None:
    # train: 4 steps per epoch; val: once per epoch, at its end; an event without epoch has no position.
    tags = ["train"] * 4 + ["val"] + ["train"] * 4 + ["val"] + ["train"]
    epochs = [0] * 5 + [1] * 5 + [None]
    table = events(list(range(len(tags))), [1.0] * len(tags), tags=tags, epochs=epochs)
    x = epoch_positions(table)
    np.testing.assert_allclose(x[:10], [0.25, 0.5, 0.75, 1.0, 1.0, 1.25, 1.5, 1.75, 2.0, 2.0])
    assert math.isnan(x[10])
    assert np.isnan(epoch_positions(events([0, 1], [1.0, 2.0]))).all()


def test_epoch_positions_count_each_run_separately() -> None:
    table = events([0, 1, 0], [1.0, 1.0, 1.0], epochs=[3, 3, 3], runs=["a", "a", "b"])
    np.testing.assert_allclose(epoch_positions(table), [3.5, 4.0, 4.0])


# --- decimation ---------------------------------------------------------------------------------------------


def bin_of(x: np.ndarray, bins: int) -> np.ndarray:
    """Equal-width bins as decimate's docstring defines them: bin i = [x0 + i*w, x0 + (i+1)*w)."""
    edges = x[0] + (x[-1] - x[0]) * (np.arange(1, bins) / bins)
    return np.searchsorted(edges, x, side="right")


@settings(max_examples=150, deadline=None)
@given(st.data(), st.integers(1, 200), st.integers(1, 40))
def test_decimate_keeps_endpoints_every_bins_min_and_max_and_marks_non_finite(
    data: st.DataObject, n: int, bins: int
) -> None:
    x = np.sort(data.draw(hnp.arrays(np.float64, n, elements=st.floats(-1e6, 1e6))))
    y = data.draw(hnp.arrays(np.float64, n, elements=any_floats))
    assume(x[-1] - x[0] < 1e12)
    dx, dy = decimate(x, y, bins)
    assert dx.size <= 3 * bins + 2
    assert np.all(np.diff(dx) >= 0)
    points = set(zip(x.tolist(), y.view(np.int64).tolist(), strict=True))
    kept = list(zip(dx.tolist(), dy.view(np.int64).tolist(), strict=True))
    assert set(kept) <= points  # a subset of the input, never an invented point
    assert kept[0] == (x[0], y[:1].view(np.int64)[0]) and kept[-1] == (x[-1], y[-1:].view(np.int64)[0])
    which, kept_which = bin_of(x, bins), bin_of(dx, bins)
    for b in np.unique(which):
        in_bin, kept_in_bin = which == b, dy[kept_which == b]
        finite = y[in_bin & np.isfinite(y)]
        if finite.size:
            assert finite.min() in kept_in_bin and finite.max() in kept_in_bin
        if not np.isfinite(y[in_bin]).all():
            assert not np.isfinite(kept_in_bin).all()


def test_decimate_keeps_a_single_spike_among_a_million_points() -> None:
    x = np.arange(1_000_000)
    y = np.sin(x / 1000.0)
    y[123_457] = 50.0
    y[654_321] = math.nan
    dx, dy = decimate(x, y, 500)
    assert dx.size <= 3 * 500 + 2
    assert 50.0 in dy and 123_457 in dx
    assert 654_321 in dx and np.isnan(dy[dx == 654_321]).all()
    assert np.nanmin(dy) == y[np.isfinite(y)].min() and np.nanmax(dy) == 50.0


def test_decimate_returns_short_curves_whole_and_supports_datetimes() -> None:
    x = np.arange(5)
    y = np.array([1.0, 2.0, math.inf, 4.0, 5.0])
    dx, dy = decimate(x, y, 10)
    np.testing.assert_array_equal(dx, x)
    np.testing.assert_array_equal(dy, y)
    t = np.datetime64("2026-01-01T00:00:00", "us") + np.arange(10_000).astype("timedelta64[s]")
    dt, _ = decimate(t, np.random.default_rng(0).normal(size=10_000), 50)
    assert dt.dtype == t.dtype and dt[0] == t[0] and dt[-1] == t[-1]


def test_decimate_rejects_unsorted_x_and_bad_bins() -> None:
    with pytest.raises(ValueError, match="sorted"):
        decimate(np.array([0.0, 2.0, 1.0] * 10), np.zeros(30), 2)
    with pytest.raises(ValueError, match="sorted"):
        decimate(np.array([0.0, math.nan] * 10), np.zeros(20), 2)
    with pytest.raises(ValueError, match="bins"):
        decimate(np.arange(3.0), np.zeros(3), 0)


@pytest.mark.parametrize("at", [1, (1 << 20) - 1, 1 << 20, (1 << 20) + 1, 2_500_000 - 2])
def test_decimate_finds_a_step_back_anywhere_in_a_long_x(at: int) -> None:
    x = np.arange(2_500_000)
    x[at] = x[at - 1] - 1  # x is checked in blocks: a decrease at or next to a block's edge counts too
    with pytest.raises(ValueError, match="sorted"):
        decimate(x, np.zeros(x.size), 100)
    x[at] = x[at - 1]  # a repeated x is sorted
    assert decimate(x, np.zeros(x.size), 100)[0].size <= 302


@settings(max_examples=200, deadline=None)
@given(hnp.arrays(np.float64, st.integers(0, 30), elements=any_floats))
def test_all_finite_agrees_with_isfinite(values: np.ndarray) -> None:
    assert all_finite(values) == bool(np.isfinite(values).all())
    assert all_finite(np.array([1.7e308, 1.7e308, -1e308]))  # a sum that overflows proves nothing
    assert not all_finite(np.array([math.inf, -math.inf, 1.0]))


def test_epoch_positions_handle_sparse_huge_epoch_numbers() -> None:
    epochs = [0, 0, 10**12, 10**12, 10**12, 0]
    table = events(list(range(6)), [1.0] * 6, tags=["a", "a", "a", "a", "a", "b"], epochs=epochs)
    np.testing.assert_allclose(epoch_positions(table), [0.5, 1.0, 1e12 + 1 / 3, 1e12 + 2 / 3, 1e12 + 1, 1.0])


def test_smooth_table_gives_every_series_the_time_constant_of_the_tables_step_span() -> None:
    # One plot, one time constant: a short run is smoothed like the start of a long one.
    rng = np.random.default_rng(5)
    short, long = rng.normal(size=100), rng.normal(size=10_000)
    steps = [*range(100), *range(10_000)]
    runs = ["short"] * 100 + ["long"] * 10_000
    out = smooth_table(events(steps, [*short, *long], runs=runs), "span:0.01")
    smoothed = out.column("smoothed").to_numpy()
    np.testing.assert_allclose(smoothed[:100], step_ema(short, np.arange(100), 99.99), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(
        smoothed[100:], step_ema(long, np.arange(10_000), 99.99), rtol=1e-9, atol=1e-12
    )
    wider = smooth_table(events(steps, [*short, *long], runs=runs), "span:0.01", span=1e6)
    np.testing.assert_allclose(
        wider.column("smoothed").to_numpy()[:100], step_ema(short, np.arange(100), 1e4)
    )


def test_read_pandas_smooths_with_the_step_aware_default(tmp_path) -> None:
    import lossfmt

    path = tmp_path / "run.arrow"
    rng = np.random.default_rng(6)
    values = rng.normal(size=3000)
    with lossfmt.LossWriter(path) as w:
        for step, value in enumerate(values):
            w.add(step * 10, float(value))
    df = lossfmt.read_pandas(path, smooth=DEFAULT_SMOOTH)
    want = step_ema(values, np.arange(3000) * 10, 0.02 * 29_990)
    np.testing.assert_allclose(df["smoothed"].to_numpy(), want, rtol=1e-12)


def test_series_lists_each_run_and_tag_with_its_rows_in_file_order() -> None:
    table = events(
        [0, 0, 1, 1, 2], [1.0, 2.0, 3.0, 4.0, 5.0], tags=["a", "b", "a", "b", "a"], runs=list("xxyyx")
    )
    got = [(run, tag, rows.tolist()) for run, tag, rows in series(table)]
    assert sorted(got) == [("x", "a", [0, 4]), ("x", "b", [1]), ("y", "a", [2]), ("y", "b", [3])]
    assert [(r, t, i.tolist()) for r, t, i in series(events([0, 1], [1.0, 2.0]))] == [(None, "loss", [0, 1])]


def test_series_of_chunks_with_one_label_each_tells_different_labels_apart() -> None:
    # Each chunk's tag dictionary holds one label: the same label in every chunk is one series, and
    # a different one in a later chunk is a second series (not merged into the first).
    same = pa.concat_tables([events([0, 1], [1.0, 2.0], tags=["a", "a"]), events([2], [3.0], tags=["a"])])
    assert [(t, rows.tolist()) for _, t, rows in series(same)] == [("a", [0, 1, 2])]
    mixed = pa.concat_tables([events([0, 1], [1.0, 2.0], tags=["a", "a"]), events([2], [3.0], tags=["b"])])
    assert sorted((t, rows.tolist()) for _, t, rows in series(mixed)) == [("a", [0, 1]), ("b", [2])]


def test_one_series_names_the_only_series_and_agrees_with_series() -> None:
    # The shortcut for the usual one-tag run: (run, tag) without row indices, None whenever series() could
    # give more than one group (or none).
    same = pa.concat_tables([events([0, 1], [1.0, 2.0], tags=["a", "a"]), events([2], [3.0], tags=["a"])])
    assert one_series(same) == (None, "a") and [(r, t) for r, t, _ in series(same)] == [(None, "a")]
    mixed = pa.concat_tables([events([0, 1], [1.0, 2.0], tags=["a", "a"]), events([2], [3.0], tags=["b"])])
    assert one_series(mixed) is None and len(series(mixed)) == 2
    assert one_series(events([0, 1], [1.0, 2.0], tags=["a", "b"])) is None
    one_run = events([0, 1], [1.0, 2.0], tags=["a", "a"])
    one_run = one_run.append_column("run", pa.array(["x", "x"]).dictionary_encode())  # as read() gives it
    assert one_series(one_run) == ("x", "a")
    assert one_series(events([0, 1], [1.0, 2.0], tags=["a", "a"], runs=["x", "y"])) is None
    assert one_series(events([0, 1], [1.0, 2.0], tags=["a", "a"], runs=["x", "x"])) is None  # plain strings
    assert one_series(events([], [])) is None


def test_select_tags_is_the_one_tag_rule_of_lossfmt() -> None:
    table = events([0, 1, 2], [1.0, 2.0, 3.0], tags=["loss", "val/a[1]", "val/b"])
    assert select_tags(table, "val/a[1]").column("step").to_pylist() == [1]  # the name itself first
    assert select_tags(table, ["loss", "val/*"]).num_rows == 3


def test_read_pandas_views_drop_what_a_resume_orphaned_as_lossview_does(tmp_path) -> None:
    import lossfmt
    from lossfmt import LossWriter

    path = tmp_path / "resumed.arrow"
    with LossWriter(path) as w:  # ran to step 149, then resumed from the checkpoint at step 100
        for step in range(150):
            w.add(step, 5.0, count=4, epoch=step // 50)
    with LossWriter(path) as w:
        for step in range(100, 150):
            w.add(step, 1.0, count=4, epoch=step // 50)
    per_epoch = lossfmt.read_pandas(path, per="epoch", normalize="per-item")
    epoch2 = per_epoch[per_epoch.epoch == 2].iloc[0]
    # the old steps 100-149 are dropped (the spec's rewind rule): epoch 2 is the resumed run's alone
    assert (epoch2["count"], epoch2.value) == (200, pytest.approx(1.0))
    kept = lossfmt.read_pandas(path, per="epoch", normalize="per-item", keep_rewound=True)
    assert kept[kept.epoch == 2].iloc[0].value == pytest.approx(3.0)
    smoothed = lossfmt.read_pandas(path, smooth="ma:5")
    assert len(smoothed) == 150 and smoothed.smoothed.max() == pytest.approx(5.0)
    assert len(lossfmt.read_pandas(path)) == 200  # no view: every event, as read()
    with pytest.raises(TypeError, match="keep_rewound must be True or False"):
        lossfmt.read_pandas(path, per="epoch", keep_rewound="no")


def test_read_pandas_per_epoch_names_what_it_leaves_out_for_lack_of_an_epoch(tmp_path) -> None:
    import lossfmt

    path = tmp_path / "run.arrow"
    with lossfmt.LossWriter(path) as w:
        for step in range(20):
            w.add(step, 1.0, epoch=step // 10)
            if step % 10 == 9:
                w.add(step, 2.0, "val")  # logged without an epoch
    with pytest.warns(UserWarning, match="left out, logged without an epoch: val") as told:
        df = lossfmt.read_pandas(path, per="epoch")
    assert df.tag.tolist() == ["loss", "loss"] and told[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lossfmt.read_pandas(path, per="epoch", tags="loss")  # nothing left out: nothing said


def test_bucket_counts_that_would_wrap_around_int64_are_an_error_not_a_negative_mean() -> None:
    table = events([0, 1], [1.0, 2.0], counts=[2**62, 2**62], epochs=0)
    with pytest.raises(ValueError, match="the counts of a bucket sum past the largest int64"):
        bucket(table, "epoch", normalize="per-item")
    near = bucket(events([0, 1], [1.0, 2.0], counts=[2**62, 2**61], epochs=0), "epoch")
    assert near.column("count")[0].as_py() == 3 * 2**61  # checked, and it fits


def test_steps_that_restart_each_epoch_are_not_a_rewind_but_a_resume_within_them_is() -> None:
    # for step, batch in enumerate(loader) inside an epoch loop: steps 0-9 in each of three epochs
    steps, epochs = [s for _ in range(3) for s in range(10)], [e for e in range(3) for _ in range(10)]
    table = events(steps, [1.0] * 30, epochs=epochs)
    assert drop_rewound(table).num_rows == 30
    # killed in epoch 2 at step 5, resumed from the checkpoint at epoch 1 step 4
    resumed = events(
        [*steps[:26], *range(4, 10), *range(10)], [1.0] * 42, epochs=[*epochs[:26], *[1] * 6, *[2] * 10]
    )
    kept = drop_rewound(resumed)
    old = list(zip(steps[:14], epochs[:14], strict=True))  # up to (epoch 1, step 4), logged again
    new = [(s, 1) for s in range(4, 10)] + [(s, 2) for s in range(10)]
    assert (
        list(zip(kept.column("step").to_pylist(), kept.column("epoch").to_pylist(), strict=True)) == old + new
    )
    # without epochs the step alone is the position, as before
    assert drop_rewound(events(steps, [1.0] * 30)).num_rows == 10


def test_run_wide_steps_continue_each_epoch_after_the_ones_before() -> None:
    steps, epochs = [s for _ in range(3) for s in range(10)], [e for e in range(3) for _ in range(10)]
    out = run_wide_steps(events(steps, [1.0] * 30, epochs=epochs))
    assert out is not None and out.column("step").to_pylist() == list(range(30))
    assert run_wide_steps(events(list(range(30)), [1.0] * 30, epochs=epochs)) is None  # global steps
    assert run_wide_steps(events(steps, [1.0] * 30)) is None  # no epochs: a rewind, not a restart
    assert run_wide_steps(events([5, 3], [1.0, 1.0], epochs=[1, 1])) is None  # down without a new epoch


def test_read_pandas_per_epoch_of_steps_that_restart_each_epoch_keeps_every_event(tmp_path) -> None:
    import lossfmt

    path = tmp_path / "loader.arrow"
    with lossfmt.LossWriter(path) as w:
        for epoch in range(3):
            for step in range(10):
                w.add(step, float(epoch), count=4, epoch=epoch)
    df = lossfmt.read_pandas(path, per="epoch", normalize="per-item")
    assert df[["epoch", "value", "count", "events"]].values.tolist() == [[e, e, 40, 10] for e in range(3)]


def test_a_global_step_resume_with_its_epoch_counter_back_at_zero_keeps_the_history() -> None:
    # global_step came back from the checkpoint (250), `for epoch in range(E)` started over at 0
    steps = [*range(300), *range(250, 400)]
    epochs = [s // 100 for s in range(300)] + [(s - 250) // 100 for s in range(250, 400)]
    kept = drop_rewound(events(steps, [1.0] * len(steps), epochs=epochs))
    assert kept.column("step").to_pylist() == [*range(250), *range(250, 400)]  # only 250-299 orphaned
    assert run_wide_steps(events(steps, [1.0] * len(steps), epochs=epochs)) is None


def test_tags_without_epochs_in_a_run_whose_steps_restart_each_epoch_are_placed_in_their_epoch() -> None:
    # lr logged without an epoch, before the loss, at every step of three epochs of steps 0-9
    steps = [s for _ in range(3) for s in range(10) for _ in range(2)]
    epochs = [None if i % 2 == 0 else e for e in range(3) for s in range(10) for i in range(2)]
    tags = ["lr", "loss"] * 30
    table = events(steps, [1.0] * 60, tags=tags, epochs=epochs)
    assert drop_rewound(table).num_rows == 60  # nothing taken for a rewind
    wide = run_wide_steps(table)
    assert wide is not None and wide.column("step").to_pylist() == [s for s in range(30) for _ in range(2)]


def test_first_rewind_names_the_first_tag_to_go_back_on_run_wide_steps():
    assert first_rewind(events([0, 1, 2], [1.0] * 3)) is None
    # val goes back first (row 3), loss later (row 4); each is named with its own largest step before
    table = events([0, 5, 6, 3, 2, 7], [1.0] * 6, tags=["loss", "val", "loss", "val", "loss", "loss"])
    assert first_rewind(table) == ("val", 5, 3)
    # steps that restart each epoch are run-wide: only the resume inside epoch 1 goes back (to 1 after 3)
    restarting = events([0, 1, 0, 1, 2, 3, 1, 2], [1.0] * 8, epochs=[0, 0, 1, 1, 1, 1, 1, 1])
    assert first_rewind(restarting) == ("loss", 5, 3)
    assert drop_rewound(restarting).num_rows < restarting.num_rows
