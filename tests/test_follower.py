"""lossfmt.Follower: each poll returns only new events, whatever the writer does to the file."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time

import pyarrow as pa
import pytest
from filebytes import batch_ends, closed_bytes, live_bytes, message_ends
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lossfmt import LossFormatError, LossWriter, follow, read, schema

T0_US = 1_700_000_000_000_000


def _batch(sch: pa.Schema, start: int, n: int, tags: tuple[str, ...] = ("loss",)) -> pa.RecordBatch:
    steps = list(range(start, start + n))
    names = sorted(set(tags))
    return pa.record_batch(
        [
            pa.array(steps, pa.int64()),
            pa.DictionaryArray.from_arrays(
                pa.array([names.index(tags[i % len(tags)]) for i in range(n)], pa.int32()), names
            ),
            pa.array([s / 4 for s in steps], pa.float64()),
            pa.array([1] * n, pa.int64()),
            pa.array([None] * n, pa.int64()),
            pa.array([T0_US + s for s in steps], pa.int64()).cast(schema.WALL_TIME_TYPE),
            pa.DictionaryArray.from_arrays(pa.array([0] * n, pa.int8()), ["mean"]),
        ],
        schema=sch,
    )


def _replace(path, data: bytes) -> None:
    """Atomically replace `path`, as the writer's compaction does."""
    tmp = path.with_name(path.name + ".x.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _append(path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


def _steps(table: pa.Table) -> list[int]:
    return table.column("step").to_pylist()


@pytest.fixture
def sch() -> pa.Schema:
    return schema.make_schema("follow")


def test_missing_file_gives_empty_updates_until_it_appears(tmp_path, sch):
    path = tmp_path / "run.arrow"
    follower = follow(path)
    update = follower.poll()
    assert update.table.num_rows == 0 and not update.reset and follower.info is None
    path.write_bytes(live_bytes(sch, [_batch(sch, 0, 3)]))
    update = follower.poll()
    assert _steps(update.table) == [0, 1, 2] and not update.reset
    assert follower.info["run"] == "follow"


def test_each_poll_returns_only_what_was_appended(tmp_path, sch):
    data = live_bytes(sch, [_batch(sch, 0, 2), _batch(sch, 2, 3, ("loss", "val")), _batch(sch, 5, 1)])
    ends = batch_ends(data)
    path = tmp_path / "run.arrow"
    path.write_bytes(data[: ends[0]])  # schema, dictionaries, first batch
    follower = follow(path)
    assert _steps(follower.poll().table) == [0, 1]
    assert follower.poll().table.num_rows == 0
    _append(path, data[ends[0] : ends[1]])  # a new dictionary (a new tag), then a batch
    update = follower.poll()
    assert _steps(update.table) == [2, 3, 4]
    assert update.table.column("tag").to_pylist() == ["loss", "val", "loss"]
    assert update.table.schema.field("tag").type == schema.TAG_TYPE
    _append(path, data[ends[1] :])
    assert _steps(follower.poll().table) == [5]


def test_poll_reads_only_new_bytes(tmp_path, sch):
    data = live_bytes(sch, [_batch(sch, 0, 2), _batch(sch, 2, 2)])
    schema_end, first, _ = (message_ends(data)[0], *batch_ends(data))
    path = tmp_path / "run.arrow"
    path.write_bytes(data[:first])
    follower = follow(path)
    assert _steps(follower.poll().table) == [0, 1]
    # Scribble over the consumed bytes (same inode and size): a follower re-reading them would fail.
    with open(path, "r+b") as f:
        f.seek(schema_end)
        f.write(b"\x00" * (first - schema_end))
    _append(path, data[first:])
    update = follower.poll()
    assert _steps(update.table) == [2, 3] and not update.reset


def test_torn_tail_is_delivered_once_it_completes(tmp_path, sch):
    data = live_bytes(sch, [_batch(sch, 0, 2), _batch(sch, 2, 2)])
    ends = batch_ends(data)
    path = tmp_path / "run.arrow"
    half = (ends[0] + ends[1]) // 2
    path.write_bytes(data[:half])
    follower = follow(path)
    assert _steps(follower.poll().table) == [0, 1]
    assert follower.poll().table.num_rows == 0
    _append(path, data[half:])
    assert _steps(follower.poll().table) == [2, 3]


def test_compaction_on_close_continues_without_duplicates_or_loss(tmp_path, sch):
    batches = [_batch(sch, 0, 3), _batch(sch, 3, 2, ("loss", "val")), _batch(sch, 5, 4)]
    path = tmp_path / "run.arrow"
    path.write_bytes(live_bytes(sch, batches[:2]))
    follower = follow(path)
    assert _steps(follower.poll().table) == [0, 1, 2, 3, 4]
    _replace(path, closed_bytes(sch, batches))  # the last flush landed just before compaction
    update = follower.poll()
    assert _steps(update.table) == [5, 6, 7, 8] and not update.reset
    assert follower.closed
    assert follower.poll().table.num_rows == 0


def test_resuming_a_closed_file_continues_the_same_run(tmp_path, sch):
    path = tmp_path / "run.arrow"
    closed = closed_bytes(sch, [_batch(sch, 0, 2)])
    path.write_bytes(closed)
    follower = follow(path)
    assert _steps(follower.poll().table) == [0, 1]
    assert follower.closed
    # A resuming writer truncates just before the EOS marker and appends new messages.
    eos = closed.rindex(schema.EOS, 0, len(closed) - 10)
    more = live_bytes(sch, [_batch(sch, 0, 2), _batch(sch, 2, 3)])
    with open(path, "r+b") as f:
        f.truncate(eos)
    _append(path, more[message_ends(more)[0] :])  # its dictionaries and batches, not its schema
    update = follower.poll()
    assert _steps(update.table) == [0, 1, 2, 3, 4] and not update.reset  # the resumed run logged 0,1 again
    assert not follower.closed


def test_truncation_resets_to_everything(tmp_path, sch):
    data = live_bytes(sch, [_batch(sch, 0, 2), _batch(sch, 2, 2)])
    path = tmp_path / "run.arrow"
    path.write_bytes(data)
    follower = follow(path)
    assert follower.poll().table.num_rows == 4
    with open(path, "r+b") as f:
        f.truncate(batch_ends(data)[0])
    update = follower.poll()
    assert update.reset and _steps(update.table) == [0, 1]


def test_deletion_is_quiet_and_a_new_run_resets(tmp_path, sch):
    path = tmp_path / "run.arrow"
    path.write_bytes(live_bytes(sch, [_batch(sch, 0, 3)]))
    follower = follow(path)
    assert follower.poll().table.num_rows == 3
    first_run = follower.info["run_id"]
    path.unlink()
    update = follower.poll()
    assert update.table.num_rows == 0 and not update.reset
    other = schema.make_schema("follow")
    path.write_bytes(live_bytes(other, [_batch(other, 0, 1)]))
    update = follower.poll()
    assert update.reset and _steps(update.table) == [0]
    assert follower.info["run_id"] != first_run


def test_a_file_rewritten_in_place_by_another_run_resets(tmp_path, sch):
    path = tmp_path / "run.arrow"
    path.write_bytes(live_bytes(sch, [_batch(sch, 0, 1)]))
    follower = follow(path)
    assert follower.poll().table.num_rows == 1
    other = schema.make_schema("other")
    path.write_bytes(live_bytes(other, [_batch(other, 0, 5), _batch(other, 5, 5)]))  # same inode, larger
    update = follower.poll()
    assert update.reset and _steps(update.table) == list(range(10))
    assert follower.info["run"] == "other"


def test_file_being_created_is_not_an_error(tmp_path, sch):
    path = tmp_path / "run.arrow"
    data = live_bytes(sch, [_batch(sch, 0, 1)])
    follower = follow(path)
    for size in (0, 3, len(schema.MAGIC), message_ends(data)[0] - 1):
        path.write_bytes(data[:size])
        assert follower.poll().table.num_rows == 0
    path.write_bytes(data)
    assert _steps(follower.poll().table) == [0]


def test_a_file_that_is_not_lossfmt_raises(tmp_path):
    path = tmp_path / "notes.arrow"
    path.write_text("hello, not arrow")
    with pytest.raises(LossFormatError, match=r"notes\.arrow: not a lossfmt file"):
        follow(path).poll()


def test_a_fifo_or_directory_is_an_error_not_a_hang(tmp_path):
    fifo = tmp_path / "pipe.arrow"
    os.mkfifo(fifo)
    with pytest.raises(LossFormatError, match="not a regular file"):
        follow(fifo).poll()
    with pytest.raises(LossFormatError, match="not a regular file"):
        follow(tmp_path).poll()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    sizes=st.lists(st.integers(1, 4), min_size=1, max_size=6),
    new_tag=st.lists(st.booleans(), min_size=6, max_size=6),
    cuts=st.lists(st.floats(0, 1), max_size=8),
    compact=st.booleans(),
)
def test_any_sequence_of_partial_appends_delivers_every_event_once(tmp_path, sizes, new_tag, cuts, compact):
    sch = schema.make_schema("prop")
    batches, start, tags = [], 0, ["loss"]
    for size, new in zip(sizes, new_tag, strict=False):
        if new:
            tags.append(f"t{len(tags)}")
        batches.append(_batch(sch, start, size, tuple(tags)))
        start += size
    data = live_bytes(sch, batches)
    path = tmp_path / "prop.arrow"
    path.unlink(missing_ok=True)
    follower = follow(path)
    got: list[pa.Table] = []
    written = 0
    for cut in [*sorted(round(c * len(data)) for c in cuts), len(data)]:
        if written:
            _append(path, data[written:cut])
        else:
            path.write_bytes(data[:cut])
        written = cut
        update = follower.poll()
        assert not update.reset
        got.append(update.table)
    if compact:
        _replace(path, closed_bytes(sch, batches))
        update = follower.poll()
        assert not update.reset and update.table.num_rows == 0
    delivered = pa.concat_tables(got).combine_chunks()
    expected = read(path)
    assert delivered.column("step").to_pylist() == list(range(start))
    assert delivered.column("tag").to_pylist() == expected.column("tag").to_pylist()
    assert delivered.column("value").to_pylist() == expected.column("value").to_pylist()


# --- against the real writer ------------------------------------------------------------------------------


def test_follows_a_writer_thread_through_flushes_and_close(tmp_path):
    path = tmp_path / "live.arrow"
    writer = LossWriter(path, flush_secs=60)
    follower = follow(path)
    delivered: list[int] = []
    for chunk in range(5):
        for i in range(chunk * 100, chunk * 100 + 100):
            writer.add(i, float(i), tag="loss" if i % 3 else "val")
        writer.flush()
        update = follower.poll()
        assert not update.reset
        delivered += _steps(update.table)
        assert delivered == list(range(chunk * 100 + 100))
    writer.add(500, 1.0)
    writer.close()
    update = follower.poll()
    assert not update.reset and follower.closed
    delivered += _steps(update.table)
    assert delivered == list(range(501))


def test_polling_while_another_thread_writes_never_duplicates_or_loses(tmp_path):
    path = tmp_path / "race.arrow"
    n = 5_000
    done = threading.Event()

    def produce():
        with LossWriter(path, flush_secs=0.01) as writer:
            for i in range(n):
                writer.add(i, float(i))
                if i % 500 == 0:
                    writer.flush()
        done.set()

    thread = threading.Thread(target=produce, name="test-producer")
    thread.start()
    follower = follow(path)
    delivered: list[int] = []
    while True:
        finished = done.is_set()  # once the writer has closed, one more poll must bring the rest
        update = follower.poll()
        assert not update.reset
        delivered += _steps(update.table)
        if finished:
            break
    thread.join()
    assert follower.closed
    assert delivered == list(range(n))


_CHILD = textwrap.dedent(
    """
    import sys, time
    from lossfmt import LossWriter
    w = LossWriter(sys.argv[1], flush_secs=0.05)
    i = 0
    while True:
        w.add(i, float(i))
        i += 1
        if i % 50 == 0:
            w.flush()
            print(i, flush=True)
        time.sleep(0.0005)
    """
)


def test_follows_a_killed_writer_and_its_resumption(tmp_path):
    path = tmp_path / "crash.arrow"
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        follower = follow(path)
        delivered: list[int] = []
        deadline = time.monotonic() + 30
        while len(delivered) < 200 and time.monotonic() < deadline:
            delivered += _steps(follower.poll().table)
            time.sleep(0.01)  # polling another process's file, as a viewer does
        assert len(delivered) >= 200
    finally:
        child.kill()
        child.wait()
    delivered += _steps(follower.poll().table)
    on_disk = read(path)
    assert delivered == on_disk.column("step").to_pylist() == list(range(len(delivered)))
    with LossWriter(path) as writer:  # resume: drops any torn tail, appends
        writer.add(0, -1.0, tag="resumed")
    update = follower.poll()
    assert not update.reset
    assert update.table.column("tag").to_pylist() == ["resumed"]


def test_a_replacement_of_the_same_run_that_reuses_the_inode_is_read_whole(tmp_path):
    # close() compacts into a new file, a resume replaces that one again: the new inode number can be the
    # one the follower last read (freed numbers are reused), so identity and header say "appended to".
    path, first = tmp_path / "run.arrow", tmp_path / "first.arrow"
    with LossWriter(path, flush_secs=3600) as w:
        for step in range(4):
            w.add(step, float(step))
        w.flush()
        os.link(path, first)  # the live file's inode stays alive as `first`, followed from here
        follower = follow(first)
        assert _steps(follower.poll().table) == [0, 1, 2, 3]
        w.add(4, 4.0)
        w.add(5, 5.0)
    with LossWriter(path, flush_secs=3600) as w:  # resumed from step 3: its file replaced again, live
        w.add(3, 103.0)
        w.flush()
        with open(first, "r+b") as f:  # that file's bytes at the inode the follower knows
            f.write(path.read_bytes())
            f.truncate()
        update = follower.poll()
    assert not update.reset and _steps(update.table) == [4, 5, 3]  # no "corrupt at byte", nothing twice
    assert not follower.closed
