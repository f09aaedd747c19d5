"""lossfmt.reader: every complete event of closed, live and crashed files; LossFormatError for the rest."""

from __future__ import annotations

import math
import os
import sys

import numpy as np
import pyarrow as pa
import pytest
from filebytes import batch_ends, closed_bytes, live_bytes, message_ends, unverified
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lossfmt
from lossfmt import (
    LossFormatError,
    LossWriter,
    _arrow,
    _columns,
    _decode,
    _read,
    follow,
    read,
    read_pandas,
    reader,
    schema,
)
from lossfmt.dataset import footer_schema

T0_US = 1_700_000_000_000_000


def _batch(sch: pa.Schema, rows: list[tuple]) -> pa.RecordBatch:
    """A record batch from (step, tag, value, count, epoch, reduction) rows, tags dictionary-encoded."""
    tags = sorted({r[1] for r in rows})
    reductions = sorted({r[5] for r in rows})
    return pa.record_batch(
        [
            pa.array([r[0] for r in rows], pa.int64()),
            pa.DictionaryArray.from_arrays(pa.array([tags.index(r[1]) for r in rows], pa.int32()), tags),
            pa.array([r[2] for r in rows], pa.float64()),
            pa.array([r[3] for r in rows], pa.int64()),
            pa.array([r[4] for r in rows], pa.int64()),
            pa.array([T0_US + r[0] for r in rows], pa.int64()).cast(schema.WALL_TIME_TYPE),
            pa.DictionaryArray.from_arrays(
                pa.array([reductions.index(r[5]) for r in rows], pa.int8()), reductions
            ),
        ],
        schema=sch,
    )


def _rows(n: int, start: int = 0, tags: tuple[str, ...] = ("loss",)) -> list[tuple]:
    return [(start + i, tags[i % len(tags)], float(start + i) / 2, 1, None, "mean") for i in range(n)]


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def _events(table: pa.Table) -> list[tuple]:
    cols = [table.column(c).to_pylist() for c in ("step", "tag", "value", "count", "epoch", "reduction")]
    return list(zip(*cols, strict=True))


@pytest.fixture
def sch() -> pa.Schema:
    return schema.make_schema("demo", {"lr": 0.1})


def test_closed_and_live_files_hold_the_same_events(tmp_path, sch):
    batches = [
        _batch(sch, _rows(3)),
        _batch(sch, _rows(2, 3, ("loss", "val"))),
        _batch(sch, _rows(1, 5, ("acc",))),
    ]
    live = reader.scan(_write(tmp_path / "live.arrow", live_bytes(sch, batches)))
    closed = reader.scan(_write(tmp_path / "closed.arrow", closed_bytes(sch, batches)))
    assert not live.closed and closed.closed
    expected = [e for b in batches for e in _events(pa.Table.from_batches([b]))]
    assert _events(live.table) == _events(closed.table) == expected
    assert live.end == (tmp_path / "live.arrow").stat().st_size
    assert schema.run_info(live.schema)["meta"] == {"lr": 0.1}


def test_closed_file_end_is_where_its_eos_marker_starts(tmp_path, sch):
    data = closed_bytes(sch, [_batch(sch, _rows(4))])
    result = reader.scan(_write(tmp_path / "c.arrow", data))
    assert data[result.end : result.end + len(schema.EOS)] == schema.EOS
    assert data.endswith(schema.TRAILING_MAGIC)


def test_single_file_read_keeps_run_metadata_and_has_no_run_column(tmp_path, sch):
    table = read(_write(tmp_path / "a.arrow", live_bytes(sch, [_batch(sch, _rows(2))])))
    assert table.column_names == list(schema.COLUMNS)
    assert schema.run_info(table.schema)["run"] == "demo"
    assert table.schema.field("tag").type == schema.TAG_TYPE


def test_nan_and_infinities_are_kept_exactly(tmp_path, sch):
    values = [math.nan, math.inf, -math.inf, -0.0, 5e-324]
    rows = [(i, "loss", v, 1, None, "mean") for i, v in enumerate(values)]
    got = read(_write(tmp_path / "n.arrow", live_bytes(sch, [_batch(sch, rows)]))).column("value").to_pylist()
    assert math.isnan(got[0]) and got[1:3] == [math.inf, -math.inf]
    assert math.copysign(1, got[3]) == -1 and got[4] == 5e-324


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    sizes=st.lists(st.integers(1, 5), min_size=1, max_size=6),
    new_tags=st.lists(st.booleans(), min_size=6, max_size=6),
    cut_fraction=st.floats(0, 1),
    parallel=st.booleans(),
)
def test_random_truncation_yields_an_exact_prefix_of_whole_batches(
    tmp_path, monkeypatch, sizes, new_tags, cut_fraction, parallel
):
    if parallel:  # decoded column by column (the many-flushes path) even for these few batches
        monkeypatch.setattr(_columns, "MIN_BATCHES", 1)
    sch = schema.make_schema("t")
    batches, start, tags = [], 0, ["loss"]
    for size, new_tag in zip(sizes, new_tags, strict=False):
        if new_tag:
            tags.append(f"tag{len(tags)}")  # forces a replacement dictionary message before this batch
        batches.append(_batch(sch, _rows(size, start, tuple(tags))))
        start += size
    data = live_bytes(sch, batches)
    cut = round(cut_fraction * len(data))
    path = _write(tmp_path / "cut.arrow", data[:cut])
    schema_end = message_ends(data)[0]
    if cut < schema_end:
        with pytest.raises(LossFormatError, match=r"cut\.arrow"):
            reader.scan(path)
        return
    result = reader.scan(path)
    complete = [b for b, end in zip(batches, batch_ends(data), strict=True) if end <= cut]
    assert _events(result.table) == [e for b in complete for e in _events(pa.Table.from_batches([b]))]
    assert result.end <= cut and result.end in message_ends(data)
    assert not result.closed


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=300), with_magic=st.booleans())
def test_random_bytes_read_or_raise_loss_format_error(tmp_path, data, with_magic):
    path = _write(tmp_path / "junk.arrow", (schema.MAGIC if with_magic else b"") + data)
    try:
        table = read(path)
    except LossFormatError as exc:
        assert "junk.arrow" in str(exc)
    else:
        assert table.column_names == list(schema.COLUMNS)
    try:
        update = follow(path).poll()
    except LossFormatError as exc:
        assert "junk.arrow" in str(exc)
    else:
        assert update.table.column_names == list(schema.COLUMNS)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)), min_size=1, max_size=4)
)
def test_corrupted_bytes_never_crash_the_reader(tmp_path, flips):
    sch = schema.make_schema("c")
    data = bytearray(live_bytes(sch, [_batch(sch, _rows(4)), _batch(sch, _rows(3, 4, ("loss", "val")))]))
    for where, xor in flips:
        data[len(schema.MAGIC) + int(where * (len(data) - len(schema.MAGIC)))] ^= xor
    path = _write(tmp_path / "flipped.arrow", bytes(data))
    try:
        table = read(path)
    except LossFormatError as exc:
        assert "flipped.arrow" in str(exc)
    else:
        table.validate(full=True)
        assert table.num_rows <= 7


@pytest.mark.parametrize("deltas", [False, True])
@pytest.mark.parametrize("checksums", [False, True])
def test_many_flushes_decode_to_the_same_events_and_a_bad_middle_batch_is_an_error(
    tmp_path, sch, deltas, checksums
):
    sch = sch if checksums else unverified(sch)
    tags: list[str] = []
    batches = []
    for i in range(400):
        if i % 37 == 0:
            tags.append(f"t{i}")
        batches.append(_batch(sch, _rows(3, 3 * i, tuple(tags))))
    data = live_bytes(sch, batches, deltas=deltas)
    expected = [e for b in batches for e in _events(pa.Table.from_batches([b]))]
    assert _events(read(_write(tmp_path / "many.arrow", data))) == expected
    cut = batch_ends(data)[300] - 5  # torn inside batch 301: the spans after it must not count
    assert _events(read(_write(tmp_path / "torn.arrow", data[:cut]))) == expected[: 3 * 300]
    end = batch_ends(data)[150]
    corrupt = bytearray(data)
    corrupt[end - 16 : end] = bytes(16)  # batch 151 is complete but the end of its body is garbage
    path = _write(tmp_path / "corrupt.arrow", bytes(corrupt))
    start = batch_ends(data)[149]  # batch 151's span starts where batch 150 ends
    with pytest.raises(LossFormatError, match=r"corrupt\.arrow: corrupt at byte \d+") as raised:
        reader.scan(path)
    assert start <= int(str(raised.value).split("byte ")[1].split(":")[0]) < end
    assert path.read_bytes() == bytes(corrupt)


def test_live_file_with_delta_dictionaries_reads(tmp_path, sch):
    batches = [
        _batch(sch, _rows(2)),
        _batch(sch, _rows(3, 2, ("loss", "val"))),
        _batch(sch, _rows(2, 5, ("x",))),
    ]
    data = live_bytes(sch, batches, deltas=True)
    table = read(_write(tmp_path / "d.arrow", data))
    assert table.column("tag").to_pylist() == ["loss", "loss", "loss", "val", "loss", "x", "x"]
    assert table.column("tag").num_chunks == 1


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "empty file"),
        (b"PAR1\x00\x00\x00\x00garbage", r"not a lossfmt file \(no Arrow magic at byte 0\)"),
        (schema.MAGIC[:5], "truncated inside the schema"),
        (schema.MAGIC + b"\xff\xff\xff\xff\x00\x10\x00\x00abc", "truncated inside the schema"),
        (schema.MAGIC + b"\x01\x02\x03\x04\x05\x06\x07\x08\x09", "not a lossfmt file"),
    ],
)
def test_unreadable_bytes_raise_loss_format_error_naming_the_file(tmp_path, content, problem):
    path = _write(tmp_path / "run.arrow", content)
    with pytest.raises(LossFormatError, match=problem) as info:
        read(path)
    assert str(info.value).startswith(f"{path}: ")


def test_arrow_file_without_lossfmt_metadata_is_rejected(tmp_path):
    path = tmp_path / "other.arrow"
    with pa.ipc.new_file(path, pa.schema([("x", pa.int64())])) as writer:
        writer.write_table(pa.table({"x": [1, 2]}))
    with pytest.raises(LossFormatError, match=r"other\.arrow: not a lossfmt file"):
        read(path)


def test_future_format_version_is_rejected_with_upgrade_hint(tmp_path, sch):
    future = sch.with_metadata({**sch.metadata, b"lossfmt.version": b"2"})
    data = live_bytes(future, [_batch(future, _rows(1))])
    with pytest.raises(LossFormatError, match=r"version 2 is not supported.*upgrade"):
        read(_write(tmp_path / "future.arrow", data))


def test_a_version_that_is_not_text_is_a_format_error(tmp_path, sch):
    garbled = sch.with_metadata({**sch.metadata, b"lossfmt.version": b"\xb1"})
    data = live_bytes(garbled, [_batch(garbled, _rows(1))])
    with pytest.raises(LossFormatError, match=r"version \ufffd is not supported"):
        read(_write(tmp_path / "garbled.arrow", data))


@pytest.mark.parametrize(
    "call",
    [
        lossfmt.read,
        lossfmt.read_pandas,
        lossfmt.dataset,
        lossfmt.compact,
        lossfmt.reader.scan,
        lambda path: lossfmt.read([path]),
        lambda path: footer_schema(os.fspath(path)),
    ],
    ids=["read", "read_pandas", "dataset", "compact", "scan", "read_list", "footer_schema"],
)
def test_a_missing_file_is_a_file_not_found_error_too(tmp_path, call):
    with pytest.raises(FileNotFoundError, match=r"nope\.arrow: no such file") as caught:
        call(tmp_path / "nope.arrow")
    assert isinstance(caught.value, lossfmt.LossFormatError)  # as it always was
    assert isinstance(caught.value, lossfmt.NoSuchFileError)


def test_missing_file_and_directory_without_runs_raise(tmp_path):
    with pytest.raises(LossFormatError, match=r"nope\.arrow: no such file"):
        read(tmp_path / "nope.arrow")
    with pytest.raises(LossFormatError, match=r"no \.arrow files"):
        read(tmp_path)
    with pytest.raises(LossFormatError, match="no files match"):
        read(str(tmp_path / "*.arrow"))
    os.mkfifo(tmp_path / "pipe.arrow")
    with pytest.raises(LossFormatError, match="not a regular file"):
        read(tmp_path / "pipe.arrow")


def test_unknown_columns_and_metadata_keys_are_ignored(tmp_path, sch):
    wider = sch.append(pa.field("rank", pa.int32())).with_metadata({**sch.metadata, b"lossfmt.future": b"x"})
    base = _batch(sch, _rows(3))
    batch = pa.record_batch([*base.columns, pa.array([0, 0, 1], pa.int32())], schema=wider)
    path = _write(tmp_path / "w.arrow", live_bytes(wider, [batch]))
    assert read(path).column_names == list(schema.COLUMNS)
    assert "rank" in reader.scan(path).table.column_names


def _run_file(path, run: str, rows: list[tuple]):
    sch = schema.make_schema(run)
    return _write(path, closed_bytes(sch, [_batch(sch, rows)]))


def test_several_files_get_a_run_column_from_list_glob_or_directory(tmp_path):
    _run_file(tmp_path / "a.arrow", "alpha", _rows(2))
    _run_file(tmp_path / "b.arrow", "beta", _rows(3, 0, ("loss", "val")))
    (tmp_path / "notes.txt").write_text("not a run")
    for source in ([tmp_path / "a.arrow", tmp_path / "b.arrow"], str(tmp_path / "*.arrow"), tmp_path):
        table = read(source)
        assert table.column_names == ["run", *schema.COLUMNS]
        assert table.column("run").to_pylist() == ["alpha"] * 2 + ["beta"] * 3
        assert table.schema.field("run").type == pa.string()
        assert table.column("tag").to_pylist() == ["loss", "loss", "loss", "val", "loss"]


def test_runs_with_the_same_name_are_told_apart_by_path(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    _run_file(tmp_path / "x" / "r.arrow", "same", _rows(1))
    _run_file(tmp_path / "y" / "r.arrow", "same", _rows(1))
    _run_file(tmp_path / "x" / "q.arrow", "other", _rows(1))
    table = read([tmp_path / "x" / "r.arrow", tmp_path / "y" / "r.arrow", tmp_path / "x" / "q.arrow"])
    assert table.column("run").to_pylist() == ["same (x/r)", "same (y/r)", "other"]


def test_tags_select_exact_names_and_globs(tmp_path, sch):
    rows = _rows(6, 0, ("train/loss", "val/loss", "loss[0]"))
    path = _write(tmp_path / "t.arrow", live_bytes(sch, [_batch(sch, rows)]))
    assert set(read(path, tags=["val/loss"]).column("tag").to_pylist()) == {"val/loss"}
    assert set(read(path, tags="*/loss").column("tag").to_pylist()) == {"train/loss", "val/loss"}
    assert read(path, tags=["loss[0]"]).column("step").to_pylist() == [2, 5]
    assert read(path, tags=["nothing"]).num_rows == 0


def _file_states(tmp_path, sch, batches) -> dict[str, object]:
    """The same batches as a closed file, a live one and a crashed one (torn inside its last batch)."""
    live = live_bytes(sch, batches)
    return {
        "closed": _write(tmp_path / "closed.arrow", closed_bytes(sch, batches)),
        "live": _write(tmp_path / "live.arrow", live),
        "crashed": _write(tmp_path / "crashed.arrow", live[: batch_ends(live)[-1] - 3]),
    }


@pytest.mark.parametrize("parallel", [False, True])
def test_columns_returns_exactly_those_columns_in_that_order_for_every_file_state(
    tmp_path, sch, monkeypatch, parallel
):
    if parallel:  # a live file decoded column by column (the many-flushes path)
        monkeypatch.setattr(_columns, "MIN_BATCHES", 1)
    batches = [_batch(sch, _rows(3)), _batch(sch, _rows(2, 3, ("loss", "val"))), _batch(sch, _rows(2, 5))]
    for state, path in _file_states(tmp_path, sch, batches).items():
        full = read(path)
        for columns in (
            ["value", "step"],
            ["tag"],
            ["wall_time", "epoch", "reduction"],
            list(schema.COLUMNS),
        ):
            table = read(path, columns=columns)
            assert table.column_names == columns, state
            assert table.equals(full.select(columns)), (state, columns)
            assert schema.run_info(table.schema)["run"] == "demo"
        assert read(path, columns="value").column_names == ["value"]
        assert full.num_rows == (5 if state == "crashed" else 7)


def test_columns_decodes_only_the_named_columns(tmp_path, sch, monkeypatch):
    seen = []
    options = _decode._options

    def spy(fields):
        seen.append(fields)
        return options(fields)

    monkeypatch.setattr(_decode, "_options", spy)
    path = _write(tmp_path / "c.arrow", closed_bytes(sch, [_batch(sch, _rows(4))]))
    read(path, columns=["value", "step"])
    read(path)
    assert seen == [[sch.get_field_index("value"), sch.get_field_index("step")], list(range(len(sch)))]


def test_columns_of_a_file_with_extra_columns_are_found_by_name(tmp_path, sch):
    wider = pa.schema([pa.field("rank", pa.int32()), *sch]).with_metadata(sch.metadata)
    base = _batch(sch, _rows(3))
    batch = pa.record_batch([pa.array([0, 0, 1], pa.int32()), *base.columns], schema=wider)
    path = _write(tmp_path / "w.arrow", live_bytes(wider, [batch]))
    assert read(path, columns=["value", "step"]).to_pydict() == {"value": [0.0, 0.5, 1.0], "step": [0, 1, 2]}


def test_columns_with_several_files_include_run_only_where_named(tmp_path):
    _run_file(tmp_path / "a.arrow", "alpha", _rows(2))
    _run_file(tmp_path / "b.arrow", "beta", _rows(3, 0, ("loss", "val")))
    for source in ([tmp_path / "a.arrow", tmp_path / "b.arrow"], str(tmp_path / "*.arrow"), tmp_path):
        table = read(source, columns=["step", "run"])
        assert table.column_names == ["step", "run"]
        assert table.column("run").to_pylist() == ["alpha"] * 2 + ["beta"] * 3
        assert table.column("step").to_pylist() == [0, 1, 0, 1, 2]
        assert read(source, columns=["tag", "value"]).equals(read(source).select(["tag", "value"]))
        only_run = read(source, columns=["run"])
        assert only_run.column_names == ["run"] and only_run.num_rows == 5


def test_columns_combine_with_tags_even_without_the_tag_column(tmp_path, sch):
    path = _write(tmp_path / "t.arrow", live_bytes(sch, [_batch(sch, _rows(6, 0, ("loss", "val")))]))
    assert read(path, tags="val", columns=["step"]).to_pydict() == {"step": [1, 3, 5]}
    (tmp_path / "runs").mkdir()
    _run_file(tmp_path / "runs" / "a.arrow", "a", _rows(4, 0, ("loss", "val")))
    assert read(tmp_path / "runs", tags="loss", columns=["run"]).to_pydict() == {"run": ["a", "a"]}


@pytest.mark.parametrize(
    ("columns", "problem"),
    [
        (["step", "loss"], r"unknown column 'loss': lossfmt files have step, tag, value, count, epoch"),
        ([], "columns is empty"),
        (["value", "step", "value"], "column 'value' is listed twice"),
        (["run", "value"], r"c\.arrow: a single file has no 'run' column"),
    ],
)
def test_bad_columns_raise_value_error_saying_what_is_wrong(tmp_path, sch, columns, problem):
    path = _write(tmp_path / "c.arrow", closed_bytes(sch, [_batch(sch, _rows(2))]))
    with pytest.raises(ValueError, match=problem):
        read(path, columns=columns)


@pytest.mark.parametrize("columns", [5, b"value", None.__class__])
def test_columns_of_the_wrong_type_are_a_type_error_naming_it(tmp_path, sch, columns):
    """`columns=5` was a raw "'int' object is not iterable"; bytes were iterated as ints."""
    path = _write(tmp_path / "c.arrow", closed_bytes(sch, [_batch(sch, _rows(2))]))
    with pytest.raises(TypeError, match="columns must be a column name or a list of them, got "):
        read(path, columns=columns)


def test_unknown_columns_are_rejected_before_any_file_is_read(tmp_path):
    with pytest.raises(ValueError, match="unknown column 'Value'"):
        read(tmp_path / "missing.arrow", columns=["Value"])


def test_read_pandas_gives_categoricals_nullable_epoch_and_utc_microseconds(tmp_path, sch):
    rows = [(0, "loss", 1.0, 2, 0, "mean"), (1, "val", 2.0, 1, None, "sum"), (2, "loss", 3.0, 1, 1, "mean")]
    df = read_pandas(_write(tmp_path / "p.arrow", live_bytes(sch, [_batch(sch, rows)])))
    assert str(df["tag"].dtype) == "category" and str(df["reduction"].dtype) == "category"
    assert str(df["epoch"].dtype) == "Int64"
    assert df["epoch"].isna().tolist() == [False, True, False]
    assert str(df["wall_time"].dtype) == "datetime64[us, UTC]"
    assert df["step"].tolist() == [0, 1, 2]


@pytest.mark.parametrize("closed", [True, False])
def test_every_column_of_read_pandas_can_be_assigned_to(tmp_path, closed):
    # A frame is the user's to change. A live file of many flushes and a closed file of several batches
    # decode column by column into one array each; pandas then took 1-byte dictionary indices as zero-copy
    # Categorical codes of a read-only buffer (df.loc[0, "reduction"] = ...: "destination is read-only").
    path = tmp_path / "run.arrow"
    w = LossWriter(path, flush_secs=3600)
    n = (1 << 19) + 10 if closed else 2 * _columns.MIN_BATCHES
    for step in range(n):
        w.add(step, step * 0.5, "loss" if step % 3 else "val", count=2, epoch=step // 10, reduction="mean")
        if not closed:
            w.flush()  # one record batch per flush
    if closed:
        w.close()
    try:
        df = read_pandas(path)
        for name in df.columns:
            df.loc[0, name] = df[name].iloc[1]
            assert df[name].iloc[0] == df[name].iloc[1], name
    finally:
        w.close()


def test_read_pandas_of_several_runs_has_a_categorical_run(tmp_path):
    _run_file(tmp_path / "a.arrow", "alpha", _rows(2))
    _run_file(tmp_path / "b.arrow", "beta", _rows(1))
    df = read_pandas(tmp_path)
    assert str(df["run"].dtype) == "category"
    assert df["run"].tolist() == ["alpha", "alpha", "beta"]


def test_read_pandas_without_pandas_says_how_to_install_it(tmp_path, sch, monkeypatch):
    path = _write(tmp_path / "p.arrow", live_bytes(sch, [_batch(sch, _rows(1))]))
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match=r"pip install 'lossfmt\[pandas\]'"):
        read_pandas(path)


def test_many_small_live_batches_come_back_as_one_chunk(tmp_path, sch):
    batches = [_batch(sch, _rows(2, 2 * i, ("a", "b") if i % 2 else ("b",))) for i in range(50)]
    table = read(_write(tmp_path / "many.arrow", live_bytes(sch, batches)))
    assert table.num_rows == 100
    assert all(table.column(c).num_chunks == 1 for c in table.column_names)
    assert table.column("step").to_pylist() == list(range(100))


def test_a_large_closed_file_reads_whole(tmp_path, sch):
    n = 200_000
    steps = np.arange(n, dtype=np.int64)
    batch = pa.record_batch(
        [
            pa.array(steps),
            pa.DictionaryArray.from_arrays(pa.array((steps % 2).astype(np.int32)), ["loss", "val"]),
            pa.array(np.random.default_rng(0).random(n)),
            pa.array(np.ones(n, np.int64)),
            pa.nulls(n, pa.int64()),
            pa.array(T0_US + steps).cast(schema.WALL_TIME_TYPE),
            pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int8)), ["mean"]),
        ],
        schema=sch,
    )
    path = _write(tmp_path / "big.arrow", closed_bytes(sch, [batch]))
    assert os.path.getsize(path) / n < 12
    table = read(path)
    assert table.num_rows == n and table.column("step").to_numpy()[-1] == n - 1


# --- with the real writer ---------------------------------------------------------------------------------


def test_a_live_file_reads_the_same_before_and_after_close(tmp_path):
    path = tmp_path / "run.arrow"
    with LossWriter(path, flush_secs=60) as writer:
        for i in range(300):
            writer.add(i, 1.0 / (i + 1), tag="loss" if i % 4 else "val", epoch=i // 100)
            if i % 50 == 49:
                writer.flush()
        writer.flush()
        live = reader.scan(path)
        assert not live.closed
    closed = reader.scan(path)
    assert closed.closed
    assert _events(live.table) == _events(closed.table)
    assert closed.table.column("step").to_pylist() == list(range(300))


def test_read_pandas_per_item_means_do_not_depend_on_batch_size(tmp_path):
    items = [4.0, 5.0, 2.0, 4.0, 3.0, 2.0, 3.0, 1.0]  # seed 002: 24 in total, 3.0 per item
    for batch_sizes in ([2, 2, 2, 2], [4, 4], [3, 3, 2]):
        path = tmp_path / f"bs{batch_sizes[0]}.arrow"
        with LossWriter(path) as writer:
            start = 0
            for step, size in enumerate(batch_sizes):
                batch = items[start : start + size]
                writer.add(step, sum(batch) / size, count=size, epoch=0)
                start += size
        df = read_pandas(path, per="epoch", normalize="per-item")
        assert df["value"].tolist() == [3.0]
        assert df["count"].tolist() == [8]


def test_read_pandas_smooths_each_tag_into_a_smoothed_column(tmp_path):
    path = tmp_path / "s.arrow"
    with LossWriter(path) as writer:
        for i in range(10):
            writer.add_many(i, {"loss": 2.0, "val": float(i)})
    df = read_pandas(path, smooth="ema:0.6", tags=["loss"])
    assert df["smoothed"].tolist() == pytest.approx([2.0] * 10)
    assert set(df["tag"]) == {"loss"}


def test_read_pandas_rejects_bad_options_before_reading_anything(tmp_path):
    with pytest.raises(ValueError, match="per"):
        read_pandas(tmp_path / "missing.arrow", per="fortnight")
    with pytest.raises(ValueError, match="normalize"):
        read_pandas(tmp_path / "missing.arrow", normalize="per-batch")
    with pytest.raises(ValueError, match="smooth"):
        read_pandas(tmp_path / "missing.arrow", smooth="gaussian")


def test_only_the_version_key_is_required(tmp_path):
    bare = pa.schema(schema.FIELDS, metadata={"lossfmt.version": "1", "other.tool": "x"})
    path = _write(tmp_path / "bare.arrow", live_bytes(bare, [_batch(bare, _rows(2))]))
    assert read(path).num_rows == 2
    _run_file(tmp_path / "named.arrow", "named", _rows(1))
    assert read([path, tmp_path / "named.arrow"]).column("run").to_pylist() == ["bare", "bare", "named"]


def test_read_pandas_columns_that_share_arrow_memory_are_separate_in_the_frame():
    # read_pandas takes the numbers lossfmt decoded as they are; one buffer backing two columns (as a
    # transform could leave it) must still give two columns, so assigning to one leaves the other.
    values = _arrow.array(np.arange(4, dtype=np.float64))
    frame = _read._to_pandas(pa.table({"value": values, "min": values, "step": _arrow.array(np.arange(4))}))
    frame.loc[0, "value"] = 9.0
    frame.loc[0, "step"] = 7
    assert frame["min"].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert frame["value"].tolist() == [9.0, 1.0, 2.0, 3.0]
    assert frame["step"].tolist() == [7, 1, 2, 3]


def _epochless_batches(sch: pa.Schema, n: int, bad: int | None) -> list[pa.RecordBatch]:
    """`n` batches of 4 events without epochs; in batch `bad`, a row's validity bit says not null."""
    batches = []
    for b in range(n):
        batch = _batch(sch, _rows(4, 4 * b))
        if b == bad:
            buffers = [pa.py_buffer(b"\x02"), pa.py_buffer(bytes(32))]
            batch = batch.set_column(4, "epoch", pa.Array.from_buffers(pa.int64(), 4, buffers, 4))
        batches.append(batch)
    return batches


def test_an_epochless_run_is_read_without_its_epoch_values_but_still_checked(tmp_path, sch):
    # A run that logs no epochs has an all-null epoch column: its values are never decompressed, yet its
    # bitmaps must agree with the null counts (spec §1.7).
    n = _columns.MIN_BATCHES
    good = read(_write(tmp_path / "good.arrow", live_bytes(sch, _epochless_batches(sch, n, None))))
    assert good["epoch"].null_count == good.num_rows == 4 * n
    assert good["step"].to_pylist() == list(range(4 * n))
    damaged = _write(tmp_path / "bad.arrow", live_bytes(sch, _epochless_batches(sch, n, 5)))
    with pytest.raises(LossFormatError, match="a null count differs from its validity bitmap"):
        read(damaged)


def test_run_info_takes_a_path_or_a_schema_and_refuses_anything_else(tmp_path):
    import lossfmt

    path = tmp_path / "run.arrow"
    with lossfmt.LossWriter(path, meta={"lr": 0.1}) as w:
        w.add(0, 1.0)
    by_path, by_schema = lossfmt.run_info(str(path)), lossfmt.run_info(lossfmt.read(path).schema)
    assert by_path == by_schema and by_path["meta"] == {"lr": 0.1} and lossfmt.run_info(path) == by_path
    with pytest.raises(TypeError, match="run_info takes a file's path or its pyarrow Schema, not dict"):
        lossfmt.run_info({"lr": 0.1})
