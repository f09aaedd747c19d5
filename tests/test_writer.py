"""LossWriter: what add/flush/close guarantee, resume, locking, errors, fork safety, compaction."""

from __future__ import annotations

import errno
import itertools
import math
import os
import random
import re
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.feather as feather
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lossfmt
from lossfmt import LossWriter, _file, _recompact, compact, reader
from lossfmt import schema as s


def stream_table(path) -> pa.Table:
    """Decode a file's bytes as MAGIC + Arrow IPC stream, independently of lossfmt's reader."""
    data = path.read_bytes()
    assert data[:8] == s.MAGIC
    with pa.ipc.open_stream(pa.py_buffer(data[8:] + s.EOS)) as stream:
        return stream.read_all()


def rows(table: pa.Table) -> list[tuple]:
    cols = [table.column(c).to_pylist() for c in ("step", "tag", "value", "count", "epoch", "reduction")]
    return list(zip(*cols, strict=True))


def same_values(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(
        x == y or (math.isnan(x) and math.isnan(y)) for x, y in zip(a, b, strict=True)
    )


# --- round trips and the closed file ------------------------------------------------------------------------


def test_events_round_trip_and_close_leaves_a_standard_arrow_file(tmp_path):
    path = tmp_path / "run.arrow"
    t0 = time.time()
    with LossWriter(path, meta={"lr": 0.1}) as w:
        w.add(0, 2.5)
        w.add(1, np.float32(0.5), "val", epoch=0)
        w.add(2, 7, count=32, reduction="sum")
        w.add_many(3, {"loss": math.inf, "aux": math.nan}, epoch=1)
        w.add(np.int64(4), -1.0)
    t1 = time.time()
    assert w.closed
    table = lossfmt.read(path)
    assert rows(table)[:4] == [
        (0, "loss", 2.5, 1, None, "mean"),
        (1, "val", 0.5, 1, 0, "mean"),
        (2, "loss", 7.0, 32, None, "sum"),
        (3, "loss", math.inf, 1, 1, "mean"),
    ]
    assert math.isnan(table["value"][4].as_py()) and rows(table)[5] == (4, "loss", -1.0, 1, None, "mean")
    wall = table["wall_time"].cast(pa.int64()).to_numpy() / 1e6
    assert (t0 - 1e-3 <= wall).all() and (wall <= t1 + 1e-3).all()

    import pandas as pd
    import polars as pl

    for other in (pa.ipc.open_file(path).read_all(), ds.dataset(path, format="arrow").to_table()):
        assert rows(other)[:4] == rows(table)[:4]
    frame = pd.read_feather(path)
    assert frame["tag"].tolist() == ["loss", "val", "loss", "loss", "aux", "loss"]
    assert pl.read_ipc(path)["step"].to_list() == [0, 1, 2, 3, 3, 4]
    info = s.run_info(pa.ipc.open_file(path).schema)
    assert info["run"] == "run" == w.run and info["run_id"] == w.run_id and info["meta"] == {"lr": 0.1}


def test_close_is_idempotent_and_use_after_close_raises(tmp_path):
    w = LossWriter(tmp_path / "run.arrow")
    w.add(0, 1.0)
    w.close()
    w.close()
    with pytest.raises(RuntimeError, match="closed"):
        w.add(1, 1.0)
    with pytest.raises(RuntimeError, match="closed"):
        w.add_many(1, {"a": 1.0})
    with pytest.raises(RuntimeError, match="closed"):
        w.flush()
    assert lossfmt.read(tmp_path / "run.arrow").num_rows == 1


def test_an_empty_run_closes_to_an_empty_readable_file(tmp_path):
    path = tmp_path / "empty.arrow"
    LossWriter(path, run="nothing").close()
    table = pa.ipc.open_file(path).read_all()
    assert table.num_rows == 0 and table.column_names == list(s.COLUMNS)
    assert s.run_info(table.schema)["run"] == "nothing"


def test_compaction_consolidates_one_batch_per_flush(tmp_path, monkeypatch):
    """A slow run (one flush per event) ends, after close, as small as its events written in one batch."""
    monkeypatch.setattr(_recompact, "FIRST_BYTES", math.inf)  # the live file keeps every flush as written
    n = 3000
    slow, one_go = tmp_path / "slow.arrow", tmp_path / "one_go.arrow"
    with LossWriter(slow) as w:
        for i in range(n):
            w.add(i, 1.0 / (i + 1))
            w.flush()
        live_size = slow.stat().st_size
    table = lossfmt.read(slow)
    options = pa.ipc.IpcWriteOptions(compression="zstd")
    with pa.ipc.new_file(one_go, table.schema, options=options) as out:
        out.write_table(table.combine_chunks(), max_chunksize=n)
    assert live_size > 20 * slow.stat().st_size  # the live file held one message per flush
    assert slow.stat().st_size <= 1.02 * one_go.stat().st_size
    assert pa.ipc.open_file(slow).num_record_batches == 1
    assert table["value"].to_pylist() == [1.0 / (i + 1) for i in range(n)]


def test_numpy_and_python_numbers_are_logged_as_floats_with_and_without_options(tmp_path):
    path = tmp_path / "run.arrow"
    numbers = [
        np.float16(0.5),
        np.float32(0.25),
        np.float64(-1.5),
        np.longdouble(2),
        np.int8(-3),
        np.uint64(7),
        9,
    ]
    with LossWriter(path) as w:
        for i, v in enumerate(numbers):
            w.add(i, v)
            w.add(i, v, "val", count=2)
        for bad in (np.bool_(True), np.complex64(1), True):
            with pytest.raises(TypeError, match="real number"):
                w.add(99, bad)
    assert lossfmt.read(path)["value"].to_pylist() == [float(v) for v in numbers for _ in (1, 2)]


def test_tags_enter_the_dictionary_in_order_of_first_use_with_and_without_options(tmp_path):
    path = tmp_path / "run.arrow"
    with LossWriter(path) as w:
        w.add(0, 1.0, "val", count=4, epoch=0, reduction="sum")  # one flush: options first, then defaults
        w.add(1, 2.0)
        w.add(2, 3.0, "aux")
        w.add(3, 4.0, "val", 2, 1)  # options may be passed by position too
        w.flush()
        live = lossfmt.read(path)
        w.add(4, 5.0)
        w.add(5, 6.0, "new", epoch=2)
    for table in (live, lossfmt.read(path)):
        assert table["tag"].chunk(0).dictionary.to_pylist()[:3] == ["val", "loss", "aux"]
    assert rows(lossfmt.read(path)) == [
        (0, "val", 1.0, 4, 0, "sum"),
        (1, "loss", 2.0, 1, None, "mean"),
        (2, "aux", 3.0, 1, None, "mean"),
        (3, "val", 4.0, 2, 1, "mean"),
        (4, "loss", 5.0, 1, None, "mean"),
        (5, "new", 6.0, 1, 2, "mean"),
    ]


def test_a_tag_that_is_not_text_is_refused_at_the_call_and_its_neighbours_are_kept(tmp_path):
    path = tmp_path / "run.arrow"
    with LossWriter(path, flush_secs=3600) as w:
        w.add(0, 1.0, "good")
        for call in (
            lambda: w.add(1, 2.0, "bad\udcff"),
            lambda: w.add(1, 2.0, "bad\udcff", count=2),
            lambda: w.add_many(1, {"ok": 2.0, "bad\udcff": 3.0}),
        ):
            with pytest.raises(ValueError, match="cannot be stored as UTF-8"):
                call()
        w.add(2, 4.0, "good", epoch=0)
        w.flush()
        assert rows(stream_table(path)) == [(0, "good", 1.0, 1, None, "mean"), (2, "good", 4.0, 1, 0, "mean")]
    assert rows(lossfmt.read(path)) == [(0, "good", 1.0, 1, None, "mean"), (2, "good", 4.0, 1, 0, "mean")]


def message_sizes(path, kind: str) -> list[int]:
    """Sizes (metadata + body) of the messages of type `kind` in a file, from pyarrow's message reader."""
    data = pa.py_buffer(path.read_bytes())[len(s.MAGIC) :]
    source = pa.BufferReader(data)
    sizes = []
    while source.tell() < data.size:
        message = pa.ipc.read_message(source)
        if message.type == kind:
            sizes.append(message.metadata.size + message.body.size)
    return sizes


def test_many_new_tags_in_one_flush_are_linear(tmp_path):
    """100,000 per-parameter tags in one flush (a quadratic dictionary rebuild took minutes)."""
    path = tmp_path / "run.arrow"
    n = 100_000
    tags = [f"layer{i}.weight/grad_norm" for i in range(n)]
    with LossWriter(path, flush_secs=3600) as w:
        start = time.perf_counter()
        for i, tag in enumerate(tags):
            w.add(i, 1.0, tag, epoch=0)
        w.flush()
        elapsed = time.perf_counter() - start
        assert lossfmt.read(path)["tag"].to_pylist() == tags
    assert elapsed < 60, elapsed  # a sanity bound only: the speed goal is a benchmark
    assert lossfmt.read(path)["tag"].to_pylist() == tags


def test_new_tags_over_many_flushes_write_linear_dictionary_bytes(tmp_path):
    """Each flush that brings a new tag appends it as a delta dictionary (not the whole dictionary again)."""

    def dictionary_bytes(k: int) -> int:
        path = tmp_path / f"k{k}.arrow"
        tags = [f"block{i:05d}/{i * 7919 % 10007:05d}/grad_norm" for i in range(k)]
        with LossWriter(path, flush_secs=3600) as w:
            for i, tag in enumerate(tags):
                w.add(i, 1.0, tag)
                w.add(i, 2.0)  # a tag seen before, in the same flush
                w.flush()
            total = sum(message_sizes(path, "dictionary"))
            assert lossfmt.read(path)["tag"].to_pylist() == [t for tag in tags for t in (tag, "loss")]
            assert lossfmt.follow(path).poll().table["tag"].to_pylist()[-2:] == [tags[-1], "loss"]
        closed = pa.ipc.open_file(path)
        assert closed.get_batch(0)["tag"].dictionary.to_pylist() == [tags[0], "loss", *tags[1:]]
        return total

    small, large = dictionary_bytes(100), dictionary_bytes(400)
    assert large < 4.5 * small, (small, large)  # linear: 4x; the whole dictionary in every flush: ~16x


def test_several_tags_share_one_dictionary_after_close(tmp_path):
    path = tmp_path / "run.arrow"
    with LossWriter(path) as w:
        for i in range(50):
            w.add(i, float(i), ["a", "b", "c"][i % 3] if i > 10 else "a")
            if i % 7 == 0:
                w.flush()
    f = pa.ipc.open_file(path)
    assert f.num_record_batches == 1
    tags = f.get_batch(0).column("tag")
    assert tags.dictionary.to_pylist() == ["a", "c", "b"]  # in order of first appearance (11 % 3 == 2)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    events=st.lists(
        st.tuples(
            st.integers(-(2**63), 2**63 - 1),
            st.floats(allow_nan=True, allow_infinity=True),
            st.sampled_from(["loss", "val_loss", "λ/aux", "x" * 40]),
            st.just(1) | st.integers(1, 2**40),
            st.none() | st.integers(-(2**63), 2**63 - 1),
            st.sampled_from(["mean", "sum"]),
            st.booleans(),
            st.booleans(),
        ),
        max_size=60,
    )
)
def test_random_events_round_trip_exactly(tmp_path_factory, events):
    """Events with and without options (two row shapes in the writer's buffer), mixed within flushes."""
    path = tmp_path_factory.mktemp("prop") / "run.arrow"
    with LossWriter(path, flush_secs=60) as w:
        for step, value, tag, count, epoch, reduction, flush, defaults in events:
            if defaults:
                w.add(step, value)
            else:
                w.add(step, value, tag, count=count, epoch=epoch, reduction=reduction)
            if flush:
                w.flush()
    events = [e if not e[7] else (e[0], e[1], "loss", 1, None, "mean") for e in events]
    table = lossfmt.read(path)
    got = rows(table)
    assert [r[:2] + r[3:] for r in got] == [(e[0], e[2], e[3], e[4], e[5]) for e in events]
    assert same_values([r[2] for r in got], [e[1] for e in events])


# --- flush, threads, backpressure ---------------------------------------------------------------------------


def test_after_flush_a_new_reader_sees_every_earlier_add(tmp_path):
    path = tmp_path / "run.arrow"
    with LossWriter(path, flush_secs=3600) as w:
        n = 0
        for burst in (1, 5, 1000, 1, 70000):
            for _ in range(burst):
                w.add(n, n * 0.5)
                n += 1
            w.flush()
            assert stream_table(path)["step"].to_pylist() == list(range(n))
            assert lossfmt.read(path).num_rows == n


def test_flush_covers_adds_made_by_other_threads(tmp_path):
    path = tmp_path / "run.arrow"
    with LossWriter(path, flush_secs=3600) as w:
        added = threading.Event()
        t = threading.Thread(target=lambda: (w.add(1, 1.0, "other"), added.set()))
        t.start()
        added.wait()
        w.flush()
        assert rows(stream_table(path)) == [(1, "other", 1.0, 1, None, "mean")]
        t.join()


def test_threads_adding_at_once_lose_and_duplicate_nothing(tmp_path):
    path = tmp_path / "run.arrow"
    n_threads, n_events = 6, 20000
    start = threading.Barrier(n_threads)
    with LossWriter(path, flush_secs=0.01, max_pending=5000) as w:

        def produce(k: int) -> None:
            start.wait()
            for i in range(n_events):
                w.add(i, float(k), f"t{k}")

        threads = [threading.Thread(target=produce, args=(k,)) for k in range(n_threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    table = lossfmt.read(path)
    assert table.num_rows == n_threads * n_events
    for k in range(n_threads):
        mine = table.filter(pa.compute.equal(table["tag"].cast(pa.string()), f"t{k}"))
        assert mine["step"].to_pylist() == list(range(n_events))  # each thread's events in its order
        assert set(mine["value"].to_pylist()) == {float(k)}


def _stall_inside_lossfmt(rng: random.Random) -> Callable[..., Any]:
    """A trace function that makes this thread pause at random lines of lossfmt's code: a closing thread then
    runs at every point of add(), including between its checks and its append (real threads, no hooks)."""

    def line(frame: Any, event: str, arg: Any) -> Any:
        if event == "line" and rng.random() < 0.05:
            time.sleep(rng.random() * 0.002)  # a perturbation that widens the window, not a synchronization
        return line

    def call(frame: Any, event: str, arg: Any) -> Any:
        return line if frame.f_globals.get("__name__", "").startswith("lossfmt") else None

    return call


def _add_until_closed(w: LossWriter, form: int, returned: list[int], started: threading.Event) -> None:
    """Add events in one of three forms until add raises WriterClosedError; count the events that returned."""
    adds = (
        lambda i: w.add(i, 1.0),
        lambda i: w.add(i, 2.0, "opt", count=3, epoch=i),
        lambda i: w.add_many(i, {"a": 3.0, "b": 4.0}),
    )
    add, per_call = adds[form], (1, 1, 2)[form]
    sys.settrace(_stall_inside_lossfmt(random.Random(form)))
    try:
        for i in itertools.count():
            if i == 20:
                started.set()
            try:
                add(i)
            except lossfmt.WriterClosedError:
                return
            returned[form] += per_call
    finally:
        sys.settrace(None)
        started.set()


def test_an_add_racing_close_is_in_the_file_or_raises(tmp_path):
    """Threads add while another closes: an add() that returned normally is in the file, one that raised is
    not (never an event lost silently). The adding threads pause at random points inside lossfmt, so close()
    lands at every point of add(); many short runs, bounded in time."""
    deadline = time.monotonic() + 15
    for attempt in itertools.count():
        if attempt >= 60 or time.monotonic() > deadline:
            break
        path = tmp_path / f"race{attempt}.arrow"
        w = LossWriter(path, flush_secs=0.002 if attempt % 2 else 3600)
        returned = [0, 0, 0]
        started = [threading.Event() for _ in range(3)]
        threads = [
            threading.Thread(target=_add_until_closed, args=(w, form, returned, started[form]))
            for form in range(3)
        ]
        for t in threads:
            t.start()
        for e in started:
            e.wait()
        w.close()
        for t in threads:
            t.join()
        tags = lossfmt.read(path)["tag"].to_pylist()
        got = [tags.count("loss"), tags.count("opt"), tags.count("a") + tags.count("b")]
        assert got == returned, (attempt, got, returned)
    assert attempt >= 10


def test_a_producer_that_outruns_the_disk_is_held_back_never_dropped(tmp_path, monkeypatch):
    """Backpressure: pending rows never exceed max_pending; add() waits for the (slowed) flusher."""
    real_append = _file.LiveFile.append

    def slow_disk(self, data, rows=0):
        time.sleep(0.002)  # simulates a slow disk, not a wait for a thread
        real_append(self, data, rows)

    monkeypatch.setattr(_file.LiveFile, "append", slow_disk)
    max_pending, n = 64, 5000
    path = tmp_path / "run.arrow"
    peak = 0
    with LossWriter(path, flush_secs=3600, max_pending=max_pending) as w:
        for i in range(n):
            w.add(i, float(i))
            peak = max(peak, w.pending)
            assert w.pending <= max_pending
    assert peak >= max_pending // 2  # the producer did outrun the flusher
    assert lossfmt.read(path)["step"].to_pylist() == list(range(n))


# --- errors of the background thread ------------------------------------------------------------------------


def flusher_thread(w: LossWriter) -> threading.Thread:
    """The writer's background thread, found by its documented name (`lossfmt-flusher[<file name>]`)."""
    (thread,) = [t for t in threading.enumerate() if t.name == f"lossfmt-flusher[{w.path.name}]"]
    return thread


def _disk_full(self, data, rows=0):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_flusher_error_is_raised_by_the_next_flush_and_the_lock_is_released(tmp_path, monkeypatch):
    path = tmp_path / "run.arrow"
    w = LossWriter(path, flush_secs=3600)
    w.add(0, 1.0)
    w.flush()
    monkeypatch.setattr(_file.LiveFile, "append", _disk_full)
    w.add(1, 2.0)
    with pytest.raises(OSError, match="No space left"):
        w.flush()
    with pytest.raises(OSError, match="No space left"):
        w.add(2, 3.0)
    with pytest.warns(UserWarning, match="left without its footer after the write error raised earlier"):
        w.close()  # already reported: close releases the file without raising again, and says how it is
    monkeypatch.undo()
    with LossWriter(path) as again:  # the lock was released; the flushed event survived
        again.add(5, 5.0)
    assert lossfmt.read(path)["step"].to_pylist() == [0, 5]


def test_a_flusher_error_is_raised_by_the_next_add(tmp_path, monkeypatch):
    monkeypatch.setattr(_file.LiveFile, "append", _disk_full)
    w = LossWriter(tmp_path / "run.arrow", flush_secs=0.01)
    w.add(0, 1.0)  # the periodic flush fails; nobody is waiting for it
    thread = flusher_thread(w)
    thread.join(timeout=60)  # the thread ends with the error
    assert not thread.is_alive()
    with pytest.raises(OSError, match="No space left"):
        w.add(9, 1.0)
    with pytest.warns(UserWarning, match="left without its footer"):
        w.close()


def test_an_unreported_flusher_error_is_raised_by_close(tmp_path, monkeypatch):
    monkeypatch.setattr(_file.LiveFile, "append", _disk_full)
    w = LossWriter(tmp_path / "run.arrow", flush_secs=3600)
    w.add(0, 1.0)
    with pytest.raises(OSError, match="No space left"):
        w.close()
    assert w.closed
    w.close()


def test_a_failing_last_write_at_close_is_raised_and_leaves_the_live_file_as_it_was(tmp_path, monkeypatch):
    """The last flush of close() fails: close raises it, so do later calls, and the file keeps every flushed
    event, uncompacted (a compaction after a failed write would be made of a file that lost events)."""
    path = tmp_path / "run.arrow"
    w = LossWriter(path, flush_secs=3600)
    w.add(0, 1.0)
    w.flush()
    flushed = path.read_bytes()
    w.add(1, 2.0)
    monkeypatch.setattr(_file.LiveFile, "append", _disk_full)
    with pytest.raises(OSError, match="No space left"):
        w.close()
    monkeypatch.undo()
    assert w.closed and path.read_bytes() == flushed
    with pytest.raises(OSError, match="No space left"):
        w.add(2, 3.0)
    assert lossfmt.read(path)["step"].to_pylist() == [0]


def test_removing_the_file_under_a_running_writer_is_reported(tmp_path):
    path = tmp_path / "run.arrow"
    w = LossWriter(path, flush_secs=3600)
    w.add(0, 1.0)
    w.flush()
    path.unlink()
    w.add(1, 1.0)
    with pytest.raises(FileNotFoundError, match="was removed while LossWriter was writing it"):
        w.flush()
    w.close()
    assert not path.exists()  # close did not recreate or compact anything


def test_moving_the_directory_away_is_reported(tmp_path):
    run_dir = tmp_path / "runs"
    run_dir.mkdir()
    w = LossWriter(run_dir / "run.arrow", flush_secs=3600)
    w.add(0, 1.0)
    w.flush()
    run_dir.rename(tmp_path / "elsewhere")
    w.add(1, 1.0)
    with pytest.raises(FileNotFoundError, match="nothing is at this path now"):
        w.close()


FILE_SIZE_LIMIT = textwrap.dedent(
    """
    import resource, signal, sys
    from lossfmt import LossWriter
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
    w = LossWriter(sys.argv[1], flush_secs=3600)
    resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))
    try:
        for i in range(100000):
            w.add(i, float(i))
            if i % 100 == 99:
                w.flush()
    except OSError as exc:
        print(i, exc.errno, flush=True)
    w.close()  # already reported: releases the file
    """
)


def test_a_real_write_error_is_raised_from_the_next_call(tmp_path):
    """A real failing write (the process's file size limit, like a full disk) surfaces as OSError."""
    path = tmp_path / "run.arrow"
    cmd = [sys.executable, "-c", FILE_SIZE_LIMIT, str(path)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    failed_at, code = map(int, out.stdout.split())
    assert code == errno.EFBIG and 0 < failed_at < 100000
    flushed = lossfmt.read(path)["step"].to_pylist()  # the live file stays readable
    assert flushed == list(range(failed_at + 1 - 100))  # every flush before the failing one


# --- bad input ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"value": "1.0"}, TypeError, "got str"),
        ({"value": None}, TypeError, "got NoneType"),
        ({"value": True}, TypeError, "got bool"),
        ({"value": 1j}, TypeError, "got complex"),
        ({"value": np.array([1.0, 2.0])}, ValueError, "2 elements"),
        ({"step": 1.0}, TypeError, "step must be an int, got float"),
        ({"step": "1"}, TypeError, "step must be an int, got str"),
        ({"step": True}, TypeError, "step must be an int, got bool"),
        ({"step": None}, TypeError, "step must be an int"),
        ({"step": 2**63}, ValueError, "outside the int64 range"),
        ({"step": -(2**63) - 1}, ValueError, "outside the int64 range"),
        ({"tag": ""}, ValueError, "non-empty"),
        ({"tag": 3}, TypeError, "tag must be a str"),
        ({"tag": None}, TypeError, "tag must be a str"),
        ({"count": 0}, ValueError, "count must be >= 1"),
        ({"count": -2}, ValueError, "count must be >= 1"),
        ({"count": 0, "epoch": 0}, ValueError, "count must be >= 1"),
        ({"count": 1.0}, TypeError, "count must be an int"),
        ({"count": True}, TypeError, "count must be an int"),
        ({"count": 2**63}, ValueError, "int64"),
        ({"epoch": 1.0}, TypeError, "epoch must be an int"),
        ({"epoch": "1"}, TypeError, "epoch must be an int"),
        ({"reduction": "max"}, ValueError, "reduction must be one of"),
        ({"reduction": None}, ValueError, "reduction must be one of"),
        ({"tag": "bad\udcff"}, ValueError, "cannot be stored as UTF-8"),
        ({"tag": "\ud800"}, ValueError, "cannot be stored as UTF-8"),
        ({"value": 10**400}, ValueError, "too large for a float64"),
        ({"value": -(10**400)}, ValueError, "too large for a float64"),
        ({"value": Fraction(10**400, 3)}, ValueError, "too large for a float64"),
        ({"value": np.longdouble("1e400")}, ValueError, "too large for a float64"),
        ({"value": np.timedelta64(5, "s")}, TypeError, "real number, got numpy.timedelta64"),
        ({"value": np.array([np.timedelta64(5, "s")])}, TypeError, "real number, got numpy.timedelta64"),
    ],
)
def test_bad_input_fails_at_the_call_and_records_nothing(tmp_path, kwargs, error, match):
    args = {"step": 1, "value": 1.0, **kwargs}
    step, value = args.pop("step"), args.pop("value")
    with LossWriter(tmp_path / "run.arrow") as w:
        with pytest.raises(error, match=match) as one:
            w.add(step, value, **args)
        with pytest.raises(error, match=match) as many:
            w.add_many(step, {args.pop("tag", "loss"): value, "ok": 1.0}, **args)
        assert w.pending == 0
    assert lossfmt.read(tmp_path / "run.arrow").num_rows == 0
    for raised in (one.value, many.value):  # one error, not the same one twice ("During handling of ...")
        assert raised.__context__ is None or raised.__suppress_context__, raised.__context__


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"flush_secs": 0}, ValueError, "flush_secs"),
        ({"flush_secs": "1"}, TypeError, "flush_secs must be a number of seconds, not str '1'"),
        ({"flush_secs": None}, TypeError, "flush_secs must be a number"),
        ({"flush_secs": True}, TypeError, "flush_secs must be a number"),
        ({"flush_secs": -1.0}, ValueError, "flush_secs must be a positive"),
        ({"flush_secs": 1e9}, ValueError, r"flush_secs must be a positive number of seconds below 1e9"),
        ({"flush_secs": math.inf}, ValueError, "flush_secs"),
        ({"max_pending": 0}, ValueError, "max_pending must be an int >= 1"),
        ({"max_pending": 1.5}, TypeError, "max_pending must be an int, not float 1.5"),
        ({"max_pending": "10"}, TypeError, "max_pending must be an int, not str"),
        ({"max_pending": True}, TypeError, "max_pending must be an int, not bool"),
        ({"run": 3}, TypeError, "run must be a string, not int 3"),
        ({"meta": [1]}, TypeError, "mapping"),
        ({"meta": {"f": object()}}, TypeError, r"JSON-serializable.*meta\['f'\] is object"),
        ({"meta": {"opt": {"betas": [0.9, np.int64(2)]}}}, TypeError, r"meta\['opt'\]\['betas'\]\[1\]"),
        ({"meta": {1: "a", "b": 2}}, TypeError, "meta keys must be str, got int 1"),
        ({"meta": {"sub": {None: 1}}}, TypeError, r"keys must be str, got NoneType None in meta\['sub'\]"),
        (
            {"meta": {"a": {"$float": "NaN"}}},
            ValueError,
            r"meta\['a'\] is .*reserved spelling of a non-finite",
        ),
        ({"meta": {"$float": "Infinity"}}, ValueError, "reserved spelling"),
        ({"run": ""}, ValueError, "non-empty"),
        ({"run": "x\udcff"}, ValueError, "run must be valid text"),
        ({"close_on_signal": "no"}, TypeError, "close_on_signal must be True or False"),
    ],
)
def test_bad_options_fail_before_any_file_is_created(tmp_path, kwargs, error, match):
    path = tmp_path / "run.arrow"
    with pytest.raises(error, match=match):
        LossWriter(path, **kwargs)
    assert not path.exists()


def test_meta_that_only_resembles_a_spelt_float_is_stored_as_given(tmp_path):
    meta = {"a": {"$float": "x"}, "b": {"$float": "NaN", "other": 1}, "c": [{"$float": 1}], "nan": math.nan}
    with LossWriter(tmp_path / "run.arrow", meta=meta):
        pass
    stored = s.run_info(tmp_path / "run.arrow")["meta"]
    assert {k: v for k, v in stored.items() if k != "nan"} == {k: v for k, v in meta.items() if k != "nan"}
    assert math.isnan(stored["nan"])


def test_numpy_numbers_are_taken_as_writer_options(tmp_path):
    """flush_secs and max_pending are checked by kind (a wrong type is a TypeError, a bad value a ValueError),
    so a numpy number from a config is taken (np.int64 was refused as not an int)."""
    with LossWriter(tmp_path / "run.arrow", flush_secs=np.float32(0.5), max_pending=np.int64(4)) as w:
        for step in range(10):
            w.add(step, 1.0)
    assert lossfmt.read(tmp_path / "run.arrow").num_rows == 10


def test_json_metadata_is_stored_as_given(tmp_path):
    meta = {"lr": 0.1, "nested": {"betas": [0.9, 0.999], "name": "adam"}, "tuple": (1, 2), "none": None}
    with LossWriter(tmp_path / "run.arrow", meta=meta):
        pass
    stored = s.run_info(pa.ipc.open_file(tmp_path / "run.arrow").schema)["meta"]
    assert stored == {**meta, "tuple": [1, 2]}


def test_a_file_name_that_is_not_utf8_is_written_at_that_exact_name(tmp_path):
    name = os.fsdecode(b"\xffrun.arrow")  # how Python sees a file name that is not UTF-8
    path = tmp_path / name
    with LossWriter(path) as w:
        assert w.run == "\ufffdrun"
        w.add(0, 1.0)
        w.flush()
        assert os.listdir(os.fsencode(tmp_path)) == [b"\xffrun.arrow"]
        assert stream_table(path)["value"].to_pylist() == [1.0]
    table = lossfmt.read(path)
    assert table["value"].to_pylist() == [1.0] and s.run_info(table.schema)["run"] == "\ufffdrun"


def test_an_unhashable_tag_is_a_type_error_naming_its_type(tmp_path):
    with LossWriter(tmp_path / "run.arrow") as w:
        for kwargs in ({}, {"count": 2}, {"epoch": 1}):
            with pytest.raises(TypeError, match="tag must be a str, got list"):
                w.add(0, 1.0, ["loss"], **kwargs)
    assert lossfmt.read(tmp_path / "run.arrow").num_rows == 0


def test_add_many_of_no_values_still_checks_its_step_and_epoch(tmp_path):
    with LossWriter(tmp_path / "run.arrow") as w:
        w.add_many(5, {})  # nothing to record: fine
        with pytest.raises(ValueError, match="step"):
            w.add_many(2**70, {})
        with pytest.raises(ValueError, match="epoch"):
            w.add_many(5, {}, epoch=2**70)
        w.add(6, 1.0)
    assert lossfmt.read(tmp_path / "run.arrow")["step"].to_pylist() == [6]


def test_add_many_rejects_a_non_mapping(tmp_path):
    with LossWriter(tmp_path / "run.arrow") as w, pytest.raises(TypeError, match="mapping"):
        w.add_many(0, [1.0, 2.0])


# --- values from frameworks ---------------------------------------------------------------------------------


def test_a_device_value_is_stored_as_it_was_at_add(tmp_path, monkeypatch):
    """The CUDA path (clone at add, batched read in the flusher) with CPU tensors made to take it."""
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.Tensor, "is_cpu", property(lambda tensor: False))  # as a CUDA tensor
    path = tmp_path / "run.arrow"
    total = torch.zeros(())
    with LossWriter(path, flush_secs=3600) as w:
        for i in range(5):
            total += 1.0
            w.add(i, total)
            w.add(i, float(i), "plain")
            w.add(i, -float(i))  # a packed row in the same batch as the deferred ones
        total.fill_(-1.0)
    table = lossfmt.read(path)
    assert table["value"].to_pylist() == [v for i in range(5) for v in (i + 1.0, float(i), -float(i))]
    assert table["tag"].to_pylist() == ["loss", "plain", "loss"] * 5


def _unreadable_tensor(torch):
    """A (CPU-forced) device scalar that is cloned at add() but cannot be read on the flusher thread, as a
    CUDA tensor after a device fault."""

    class Unreadable(torch.Tensor):
        @classmethod
        def __torch_function__(cls, func, types, args=(), kwargs=None):
            if getattr(func, "__name__", "") == "reshape":  # what the flusher's read starts with
                raise RuntimeError("device-side assert triggered")
            return super().__torch_function__(func, types, args, kwargs or {})

    return torch.tensor(7.0).as_subclass(Unreadable)


def test_an_unreadable_device_value_costs_its_own_event_and_is_raised_at_flush(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.Tensor, "is_cpu", property(lambda tensor: False))  # as a CUDA tensor
    path = tmp_path / "run.arrow"
    with LossWriter(path, flush_secs=3600) as w:
        for i in range(10):
            w.add(i, _unreadable_tensor(torch) if i == 5 else torch.tensor(float(i)))
            w.add(i, -float(i), "plain")
        with pytest.raises(
            lossfmt.UnreadableValueError,
            match=r"1 logged value could not be read on the flusher thread and was not written "
            r"\(first: step 5 \('loss'\): RuntimeError: device-side assert triggered\); every other event",
        ):
            w.flush()
        assert lossfmt.read(path).num_rows == 19  # on disk already, the bad one left out
        w.add(10, torch.tensor(10.0))  # the writer goes on
        w.flush()  # said once: nothing new to raise
    table = lossfmt.read(path)
    tags = table["tag"].to_pylist()
    loss = [v for v, t in zip(table["value"].to_pylist(), tags, strict=True) if t == "loss"]
    assert loss == [float(i) for i in range(11) if i != 5]
    assert table.num_rows == 20


def test_unreadable_values_not_yet_raised_are_raised_by_close_and_the_file_is_closed(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.Tensor, "is_cpu", property(lambda tensor: False))
    path = tmp_path / "run.arrow"
    unreadable = pytest.raises(lossfmt.UnreadableValueError, match="3 logged values could not be read")
    with unreadable, LossWriter(path, flush_secs=3600) as w:
        for i in range(3):
            w.add(i, _unreadable_tensor(torch))  # a batch of nothing but unreadable values
    assert lossfmt.read(path).num_rows == 0
    assert pa.ipc.open_file(path).num_record_batches == 0  # closed: a footer, readable by any Arrow tool
    with LossWriter(path) as w:  # and resumable
        w.add(3, 1.0)
    assert lossfmt.read(path)["step"].to_pylist() == [3]


def test_a_close_again_after_a_ctrl_c_in_compaction_still_raises_the_unreadable_values(tmp_path, monkeypatch):
    """The close() cut short by the interrupt never reached its UnreadableValueError, and the close() that
    finished the compaction did not raise it: the lost events went unsaid."""
    import lossfmt._file

    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.Tensor, "is_cpu", property(lambda tensor: False))
    write = lossfmt._file._write_rebatched

    def interrupted(*args):
        monkeypatch.setattr(lossfmt._file, "_write_rebatched", write)
        raise KeyboardInterrupt  # as Python's SIGINT handler raises it, here inside the compaction

    path = tmp_path / "run.arrow"
    w = LossWriter(path, flush_secs=3600)
    w.add(0, _unreadable_tensor(torch))
    w.add(1, 1.0)
    monkeypatch.setattr(lossfmt._file, "_write_rebatched", interrupted)
    with pytest.raises(KeyboardInterrupt):
        w.close()
    with pytest.raises(lossfmt.UnreadableValueError, match="1 logged value could not be read"):
        w.close()
    assert pa.ipc.open_file(path).read_all()["step"].to_pylist() == [1]  # compacted, the bad one left out


def test_a_meta_tensor_is_refused_at_add(tmp_path):
    torch = pytest.importorskip("torch")
    with LossWriter(tmp_path / "run.arrow") as w:
        with pytest.raises(ValueError, match="meta device"):
            w.add(0, torch.empty((), device="meta"))
        w.add(1, 1.0)
    assert lossfmt.read(tmp_path / "run.arrow")["step"].to_pylist() == [1]


def test_device_values_are_read_by_the_flusher_in_one_transfer_per_flush(tmp_path, monkeypatch):
    """Every torch call on a (CPU-forced) device scalar, recorded with the thread it ran on: the caller's
    thread never reads a number (no item(), cpu(), tolist(): on CUDA those wait for the device), and the
    flusher reads each flush's device scalars with one stack and one copy, never one item() per event."""
    torch = pytest.importorskip("torch")
    calls: list[tuple[str, bool]] = []
    caller = threading.get_ident()

    class Recorded(torch.Tensor):
        @classmethod
        def __torch_function__(cls, func, types, args=(), kwargs=None):
            name = getattr(func, "__name__", None) or getattr(func, "__qualname__", repr(func))
            calls.append((name, threading.get_ident() == caller))
            return super().__torch_function__(func, types, args, kwargs or {})

    monkeypatch.setattr(torch.Tensor, "is_cpu", property(lambda tensor: False))  # as a CUDA tensor
    path = tmp_path / "run.arrow"
    losses = [torch.tensor(i / 4).as_subclass(Recorded) for i in range(100)]
    with LossWriter(path, flush_secs=3600) as w:
        for flush in range(2):
            for i in range(50):
                w.add(flush * 50 + i, losses[flush * 50 + i], count=2)
            w.add_many(flush, {"a": losses[0], "b": 1.0})
            calls_at_add = [name for name, on_caller in calls if on_caller]
            w.flush()
    assert lossfmt.read(path)["value"].to_pylist()[:51] == [i / 4 for i in range(50)] + [0.0]
    reads = {"item", "cpu", "tolist", "__float__", "numpy", "synchronize", "stack"}
    assert not reads & set(calls_at_add)
    in_flusher = [name for name, on_caller in calls if not on_caller]
    assert "item" not in in_flusher and "__float__" not in in_flusher
    assert in_flusher.count("stack") == 2 and in_flusher.count("cpu") == 2  # one transfer per flush


def test_torch_tensors_with_grad_are_logged(tmp_path):
    torch = pytest.importorskip("torch")
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    loss = (x**2).mean()
    with LossWriter(tmp_path / "run.arrow") as w:
        w.add(0, loss)
    loss.backward()
    assert lossfmt.read(tmp_path / "run.arrow")["value"].to_pylist() == [2.5]


def test_torch_tensors_at_add_give_what_values_scalar_gives(tmp_path):
    """add() reads a CPU torch.Tensor inline (lossfmt._values.TENSOR): every dtype and shape it meets is
    logged or refused exactly as lossfmt._values.scalar says, and a refused value leaves the writer usable."""
    torch = pytest.importorskip("torch")
    from lossfmt import _values

    logged = [
        torch.tensor(0.25),
        torch.tensor([[1.5]]),
        torch.tensor(5, dtype=torch.int64),
        torch.tensor(0.5, dtype=torch.bfloat16),
        torch.tensor(-2.0, dtype=torch.float16),
        torch.tensor(float("inf")),
        (torch.tensor(2.0, requires_grad=True) * 3.0) ** 2,
    ]
    refused = [torch.tensor(True), torch.tensor(1 + 1j), torch.ones(3), torch.zeros(0)]
    path = tmp_path / "run.arrow"
    with LossWriter(path) as w:
        for i, value in enumerate(logged):
            w.add(i, value)
        for value in refused:
            with pytest.raises((TypeError, ValueError)) as raised:
                _values.scalar(value)
            with pytest.raises(raised.type, match=r"^" + re.escape(str(raised.value)) + r"$"):
                w.add(99, value)
        w.add(len(logged), 7.0)
    assert lossfmt.read(path)["value"].to_pylist() == [0.25, 1.5, 5.0, 0.5, -2.0, math.inf, 36.0, 7.0]


def test_add_never_reads_a_device_tensor_on_the_callers_thread(tmp_path, monkeypatch):
    """The inline CPU read in add() checks the device first: a tensor that is not on the CPU is never read
    with item() on the caller's thread (on CUDA, that waits for the device)."""
    torch = pytest.importorskip("torch")
    caller = threading.get_ident()
    items_on_caller = []
    item = torch.Tensor.item

    def recorded_item(tensor):
        items_on_caller.append(threading.get_ident() == caller)
        return item(tensor)

    with LossWriter(tmp_path / "warm.arrow") as w:
        w.add(0, torch.tensor(1.0))  # torch is now known to lossfmt: the inline path is armed
    monkeypatch.setattr(torch.Tensor, "item", recorded_item)
    monkeypatch.setattr(torch.Tensor, "is_cpu", property(lambda tensor: False))  # as a CUDA tensor
    with LossWriter(tmp_path / "run.arrow", flush_secs=3600) as w:
        for i in range(10):
            w.add(i, torch.tensor(i / 2))
    assert True not in items_on_caller
    assert lossfmt.read(tmp_path / "run.arrow")["value"].to_pylist() == [i / 2 for i in range(10)]


# --- resume -------------------------------------------------------------------------------------------------


def test_opening_a_closed_file_appends_and_keeps_its_identity(tmp_path):
    path = tmp_path / "run.arrow"
    with LossWriter(path, meta={"lr": 0.1, "seed": 1}) as w:
        for i in range(10):
            w.add(i, float(i), "a" if i % 2 else "b")
    first_id = w.run_id
    with LossWriter(path, meta={"lr": 0.05}, run="ignored") as w2:
        assert w2.run_id == first_id and w2.run == "run"
        w2.add(5, -1.0, "c")  # a rewind: kept, in file order
        w2.add(6, -2.0, "a")
    table = pa.ipc.open_file(path).read_all()
    assert table["step"].to_pylist() == [*range(10), 5, 6]
    assert table["tag"].to_pylist()[-3:] == ["a", "c", "a"]
    info = s.run_info(table.schema)
    assert info["run_id"] == first_id and info["meta"] == {"lr": 0.05, "seed": 1}


def _live_file_with_torn_tail(tmp_path):
    """A file as a crash leaves it: two flushed batches of 10 events, then the start of a third message."""
    path = tmp_path / "run.arrow"
    with LossWriter(path, flush_secs=3600) as w:
        for i in range(30):
            w.add(i, i / 2)
            if i == 9:
                w.flush()
                first = path.read_bytes()
            if i == 19:
                w.flush()
                second = path.read_bytes()
    torn = second[len(first) :][:50]  # the start of a record batch message
    path.write_bytes(second + torn)
    return path


def test_resuming_a_crashed_file_drops_the_torn_tail_and_keeps_earlier_events(tmp_path):
    path = _live_file_with_torn_tail(tmp_path)
    before = lossfmt.read(path)
    assert before["step"].to_pylist() == list(range(20))
    with LossWriter(path) as w:
        assert w.run == "run"
        w.add(20, 100.0)
    after = pa.ipc.open_file(path).read_all()
    assert after["step"].to_pylist() == [*range(20), 20]
    assert after["value"].to_pylist() == [i / 2 for i in range(20)] + [100.0]


def test_a_file_that_is_not_lossfmt_is_refused_and_left_untouched(tmp_path):
    path = tmp_path / "notes.arrow"
    path.write_bytes(b"hello, this is not arrow at all")
    with pytest.raises(lossfmt.LossFormatError, match=r"notes\.arrow"):
        LossWriter(path)
    assert path.read_bytes() == b"hello, this is not arrow at all"
    other = tmp_path / "other.arrow"
    feather.write_feather(pa.table({"x": [1, 2]}), other)
    data = other.read_bytes()
    with pytest.raises(lossfmt.LossFormatError, match=r"other\.arrow"):
        LossWriter(other)
    assert other.read_bytes() == data
    LossWriter(path.with_name("fresh.arrow")).close()  # nothing stayed locked


def test_a_file_with_columns_this_writer_does_not_know_is_refused_and_left_untouched(tmp_path):
    path = tmp_path / "later.arrow"
    # A later revision's file written by another tool: no checksums (they would need sealing).
    metadata = s.make_schema("later").metadata
    unsealed = {k: v for k, v in metadata.items() if b"crc32c" not in k and b"checksum" not in k}
    extended = s.make_schema("later").with_metadata(unsealed).append(pa.field("lr", pa.float64()))
    columns = {f.name: pa.array([1.5] if f.name == "lr" else [None], f.type) for f in extended}
    columns.update(step=pa.array([0], pa.int64()), value=pa.array([1.0]), count=pa.array([1], pa.int64()))
    columns["tag"] = pa.array(["loss"]).dictionary_encode()
    columns["reduction"] = pa.DictionaryArray.from_arrays(pa.array([0], pa.int8()), pa.array(["mean"]))
    columns["wall_time"] = pa.array([0], s.WALL_TIME_TYPE)
    table = pa.table([columns[f.name] for f in extended], schema=extended)
    with pa.ipc.new_file(path, extended) as f:
        f.write_table(table)
    data = path.read_bytes()
    refused = r"later\.arrow: has columns .*'lr'.*refusing to resume"
    with pytest.raises(lossfmt.LossFormatError, match=refused):
        LossWriter(path)
    assert path.read_bytes() == data


def test_a_relative_path_survives_a_change_of_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with LossWriter("rel.arrow") as w:
        w.add(0, 1.0)
        w.flush()
        monkeypatch.chdir(tmp_path.parent)
        w.add(1, 2.0)
        w.flush()
    assert lossfmt.read(tmp_path / "rel.arrow")["value"].to_pylist() == [1.0, 2.0]


# --- one writer per file ------------------------------------------------------------------------------------


def test_a_second_writer_on_an_open_file_gets_a_clear_error_and_the_first_is_unharmed(tmp_path):
    path = tmp_path / "run.arrow"
    with LossWriter(path) as first:
        first.add(0, 1.0)
        first.flush()
        with pytest.raises(
            RuntimeError,
            match=rf"run\.arrow: already open by another LossWriter \(pid {os.getpid()}\): this process's",
        ):
            LossWriter(path)
        first.add(1, 2.0)
    assert lossfmt.read(path)["value"].to_pylist() == [1.0, 2.0]


HOLDER = textwrap.dedent(
    """
    import sys
    from lossfmt import LossWriter
    w = LossWriter(sys.argv[1])
    w.add(0, 1.0)
    w.flush()
    print("ready", flush=True)
    sys.stdin.readline()
    w.add(1, 2.0)
    w.close()
    """
)


def test_a_writer_in_another_process_holds_the_file(tmp_path):
    path = tmp_path / "run.arrow"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        with pytest.raises(RuntimeError, match=rf"already open by another LossWriter \(pid {proc.pid}\)"):
            LossWriter(path)
        with pytest.raises(RuntimeError, match="already open"):
            compact(path)
        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
        proc.wait()
    with LossWriter(path) as w:
        w.add(2, 3.0)
    assert lossfmt.read(path)["value"].to_pylist() == [1.0, 2.0, 3.0]


# --- fork, exit, garbage collection -------------------------------------------------------------------------

FORKER = textwrap.dedent(
    """
    import os, sys
    from lossfmt import LossWriter, read
    path = sys.argv[1]
    w = LossWriter(path, flush_secs=3600)
    w.add(0, 1.0)
    w.flush()
    w.add(1, 2.0)  # pending (not flushed) at the fork: the parent writes it, the child drops its copy
    pid = os.fork()
    if pid == 0:
        try:
            w.add(2, 99.0)
        except RuntimeError as exc:
            assert "forked process" in str(exc) and "per process" in str(exc), exc
        else:
            sys.exit(3)
        assert w.closed
        w.close()  # a no-op in the child
        sys.exit(0)  # a normal exit: atexit and finalizers run, and must not touch the parent's file
    size = os.stat(path).st_size
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, status
    assert os.stat(path).st_size == size, "the child's exit changed the file"
    w.add(3, 4.0)
    w.close()
    print(read(path)["step"].to_pylist())
    """
)


def test_a_forked_child_cannot_use_the_parents_writer_nor_touch_its_file(tmp_path):
    path = tmp_path / "run.arrow"
    out = subprocess.run(
        [sys.executable, "-c", FORKER, str(path)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[0, 1, 3]"


FORK_WHILE_INTERNING = textwrap.dedent(
    """
    import os, sys, threading, time
    from lossfmt import LossWriter, _rows

    held = threading.Event()
    def interning():  # another thread inside intern() (its lock held) while the main thread forks
        with _rows._intern_lock:
            held.set()
            time.sleep(0.3)
    threading.Thread(target=interning).start()
    held.wait()
    pid = os.fork()
    if pid == 0:
        with LossWriter(sys.argv[1] + ".child") as w:
            w.add(0, 1.0, "a tag new in the child")  # interns: the lock must be free
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    print(os.waitstatus_to_exitcode(status))
    """
)


def test_a_fork_while_another_thread_interns_a_tag_leaves_the_child_able_to_intern(tmp_path):
    path = tmp_path / "run.arrow"
    try:
        out = subprocess.run(
            [sys.executable, "-c", FORK_WHILE_INTERNING, str(path)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the child waited forever for the tag table's lock, held by a thread it does not have")
    assert out.stdout.strip() == "0", out.stderr
    assert lossfmt.read(f"{path}.child")["tag"].to_pylist() == ["a tag new in the child"]


EXITER = textwrap.dedent(
    """
    import sys
    from lossfmt import LossWriter
    w = LossWriter(sys.argv[1], flush_secs=3600)
    for i in range(100):
        w.add(i, float(i))
    """
)


ADD_AFTER_EXIT_CLOSE = textwrap.dedent(
    """
    import atexit, sys
    from lossfmt import LossWriter, WriterClosedError

    def late():  # registered before the writer: runs after the finalizer closed it at exit
        try:
            log.add(99, 9.9)
            print("accepted")
        except WriterClosedError:
            print("WriterClosedError", log.closed)
    atexit.register(late)
    log = LossWriter(sys.argv[1])
    log.add(0, 1.0)
    """
)


def test_an_add_after_the_exit_time_close_is_refused_not_lost(tmp_path):
    path = tmp_path / "run.arrow"  # (make test runs it compiled, make test-pure pure-Python)
    out = subprocess.run(
        [sys.executable, "-c", ADD_AFTER_EXIT_CLOSE, str(path)], capture_output=True, text=True, timeout=60
    )
    assert out.stdout.strip() == "WriterClosedError True", out.stderr
    assert lossfmt.read(path)["step"].to_pylist() == [0]


def test_a_writer_refuses_to_be_copied_or_pickled_in_both_modes(tmp_path):
    import copy
    import pickle

    with LossWriter(tmp_path / "run.arrow") as w:
        w.add(0, 1.0)
        for make in (copy.copy, copy.deepcopy, pickle.dumps):
            with pytest.raises(TypeError, match="a LossWriter cannot be copied or pickled"):
                make(w)
        w.add(1, 2.0)  # untouched by the attempts
    assert lossfmt.read(tmp_path / "run.arrow")["step"].to_pylist() == [0, 1]


def test_a_writer_is_closed_at_interpreter_exit(tmp_path):
    path = tmp_path / "run.arrow"
    subprocess.run([sys.executable, "-c", EXITER, str(path)], check=True, timeout=120)
    assert pa.ipc.open_file(path).read_all()["step"].to_pylist() == list(range(100))


def test_a_dropped_writer_is_closed_by_its_finalizer(tmp_path):
    import gc

    path = tmp_path / "run.arrow"
    w = LossWriter(path, flush_secs=3600)
    w.add(0, 1.0)
    thread = flusher_thread(w)
    del w
    gc.collect()
    assert not thread.is_alive()
    assert pa.ipc.open_file(path).read_all().num_rows == 1


# --- compact() ----------------------------------------------------------------------------------------------


def test_compact_turns_a_crashed_file_into_a_closed_one(tmp_path):
    path = _live_file_with_torn_tail(tmp_path)
    run_id = s.run_info(reader.scan(path).schema)["run_id"]
    compact(path)
    table = pa.ipc.open_file(path).read_all()
    assert table["step"].to_pylist() == list(range(20))
    assert s.run_info(table.schema)["run_id"] == run_id
    data = path.read_bytes()
    compact(path)  # already closed: left as is
    assert path.read_bytes() == data
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"] == []


def test_compact_refuses_what_it_cannot_compact(tmp_path):
    with pytest.raises(lossfmt.LossFormatError, match="no such file"):
        compact(tmp_path / "missing.arrow")
    bad = tmp_path / "bad.arrow"
    bad.write_bytes(b"garbage")
    with pytest.raises(lossfmt.LossFormatError):
        compact(bad)
    assert bad.read_bytes() == b"garbage"
    with LossWriter(tmp_path / "open.arrow") as w, pytest.raises(RuntimeError, match="already open"):
        compact(w.path)
