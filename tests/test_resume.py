"""Resume: an existing file is appended to without ever losing, truncating in place or rewriting its data.

Only an incomplete final message is a torn tail (dropped); anything else that does not decode is corruption:
LossFormatError naming the file and the byte offset, and the file left byte-for-byte as it was.
"""

from __future__ import annotations

import fcntl
import gc
import hashlib
import json
import os
import re
import warnings

import pyarrow as pa
import pytest
from filebytes import batch_ends, closed_bytes, live_bytes, message_ends

import lossfmt
from lossfmt import LossFormatError, LossWriter
from lossfmt import schema as s


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def live_file(path, n: int = 300, flushes: int = 3) -> bytes:
    """A live file of `n` events in `flushes` flushes, as a writer leaves it when killed (copied mid-run)."""
    w = LossWriter(path.with_name("source.arrow"), flush_secs=3600)
    for i in range(n):
        w.add(i, float(i), "loss" if i % 3 else f"tag{i % 7}")
        if (i + 1) % (n // flushes) == 0:
            w.flush()
    data = w.path.read_bytes()
    w.close()
    path.write_bytes(data)
    return data


def steps(path) -> list[int]:
    return lossfmt.read(path)["step"].to_pylist()


def v1_batch(n: int, start: int = 0) -> pa.RecordBatch:
    tags = pa.DictionaryArray.from_arrays(pa.array([0] * n, pa.int32()), pa.array(["loss"]))
    reductions = pa.DictionaryArray.from_arrays(pa.array([0] * n, pa.int8()), pa.array(["mean"]))
    return pa.RecordBatch.from_arrays(
        [
            pa.array(range(start, start + n), pa.int64()),
            tags,
            pa.array([float(i) for i in range(n)]),
            pa.array([1] * n, pa.int64()),
            pa.nulls(n, pa.int64()),
            pa.array([0] * n, s.WALL_TIME_TYPE),
            reductions,
        ],
        schema=pa.schema(s.FIELDS),
    )


def test_a_live_file_ending_on_a_record_batch_is_appended_in_place(tmp_path):
    path = tmp_path / "run.arrow"
    live_file(path)
    inode = os.stat(path).st_ino
    with LossWriter(path) as w:
        assert os.stat(path).st_ino == inode  # nothing to drop: no copy, no replace
        w.add(300, 1.0)
    assert steps(path) == list(range(301))


def test_resuming_a_closed_file_replaces_it_keeping_its_mode_and_a_reader_keeps_the_old_bytes(tmp_path):
    path = tmp_path / "run.arrow"
    with LossWriter(path) as w:
        for i in range(100):
            w.add(i, float(i))
    path.chmod(0o640)
    before = path.read_bytes()
    with open(path, "rb") as old:  # a reader that opened the closed file
        with LossWriter(path) as w:
            assert os.stat(path).st_ino != os.fstat(old.fileno()).st_ino
            w.add(100, 1.0)
        assert old.read() == before  # never truncated in place under it
    assert steps(path) == list(range(101))
    assert path.stat().st_mode & 0o777 == 0o640  # the replacement keeps the file's mode


def test_a_torn_tail_is_dropped_by_an_atomic_replace_and_every_complete_event_kept(tmp_path):
    path = tmp_path / "run.arrow"
    data = live_file(path)
    ends = batch_ends(data)
    path.write_bytes(data[: ends[-1] - 5])  # the last flush torn mid-message
    torn = ends[-1] - 5 - ends[-2]
    with open(path, "rb") as old, pytest.warns(UserWarning) as told, LossWriter(path) as w:
        assert os.stat(path).st_ino != os.fstat(old.fileno()).st_ino
        w.add(1000, 1.0)
    assert steps(path) == [*range(200), 1000]
    assert [str(t.message) for t in told] == [
        f"lossfmt: resuming {path} dropped its last {torn:,} bytes, an unfinished flush (a crash while "
        "writing, or a copy cut short); every complete event is kept"
    ]


def test_dictionaries_of_a_torn_flush_are_dropped(tmp_path):
    """A flush whose dictionary messages are complete but whose record batch never reached the disk."""
    path = tmp_path / "run.arrow"
    with LossWriter(tmp_path / "source.arrow", flush_secs=3600) as w:
        w.add(0, 0.0)
        w.flush()
        w.add(1, 1.0, "fresh")  # a new tag: this flush starts with a dictionary message
        w.flush()
        data = w.path.read_bytes()
    first_batch_end = batch_ends(data)[0]
    dictionary_ends = [e for e in message_ends(data, "dictionary") if e > first_batch_end]
    assert dictionary_ends, "the second flush carries dictionary messages"
    path.write_bytes(data[: dictionary_ends[-1]])
    with LossWriter(path) as w:
        w.add(2, 2.0, "new")
    table = lossfmt.read(path)
    assert table["step"].to_pylist() == [0, 2]
    assert table["tag"].to_pylist() == ["loss", "new"]


def damaged(path, how: str) -> None:
    """Damage a file the way users' files get damaged; the damage is in a complete message or a footer."""
    if how.startswith("closed"):
        with LossWriter(path) as w:
            for i in range(3000):
                w.add(i, float(i) / 7, f"t{i % 5}")
        data = bytearray(path.read_bytes())
        pos = len(data) // 3 if how == "closed body" else len(data) - 20
    else:
        data = bytearray(live_file(path, n=3000, flushes=3))
        ends = batch_ends(bytes(data))
        pos = (ends[0] + ends[1]) // 2  # inside the second flush's messages, a complete one follows
    data[pos] ^= 0x5A
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["live middle batch", "closed body", "closed footer"])
def test_a_corrupt_file_is_refused_naming_file_and_offset_and_left_byte_for_byte(tmp_path, how):
    path = tmp_path / "run.arrow"
    damaged(path, how)
    digest, fds = sha256(path), open_fds()
    with pytest.raises(LossFormatError, match=rf"{re.escape(str(path.name))}.*\b\d+\b"):
        LossWriter(path)
    assert sha256(path) == digest
    assert open_fds() == fds  # nothing leaked: no descriptor, no lock
    with open(path, "rb") as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_salvage_recovers_the_decodable_prefix_of_a_corrupt_file_into_a_new_file(tmp_path):
    path, out = tmp_path / "run.arrow", tmp_path / "salvaged.arrow"
    damaged(path, "live middle batch")
    digest = sha256(path)
    assert lossfmt.salvage(path, out) == 1000
    assert sha256(path) == digest
    table = pa.ipc.open_file(out).read_all()
    assert table["step"].to_pylist() == list(range(1000))
    assert lossfmt.read(out).num_rows == 1000
    with pytest.raises(FileExistsError):
        lossfmt.salvage(path, out)


def test_salvage_of_a_file_damaged_in_its_first_batch_leaves_no_file_unclosed(tmp_path):
    path, out = tmp_path / "run.arrow", tmp_path / "salvaged.arrow"
    data = bytearray(live_file(path, n=3000, flushes=3))
    data[(message_ends(bytes(data))[0] + batch_ends(bytes(data))[0]) // 2] ^= 0x5A  # inside the first batch
    path.write_bytes(bytes(data))
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        assert lossfmt.salvage(path, out) == 0
        gc.collect()
    assert [w for w in said if issubclass(w.category, ResourceWarning)] == []
    assert lossfmt.read(out).num_rows == 0


def test_a_file_with_only_the_required_metadata_resumes_with_defaults(tmp_path):
    path = tmp_path / "minimal.arrow"
    schema = pa.schema(s.FIELDS, metadata={s.KEY_VERSION: "1"})
    path.write_bytes(live_bytes(schema, [v1_batch(5)]))
    with LossWriter(path) as w:
        assert w.run == "minimal"  # the file's stem, as for a new run
        assert w.run_id is None  # not invented: the file never had one
        w.add(5, 1.0)
    assert steps(path) == list(range(6))
    info = lossfmt.run_info(pa.ipc.open_file(path).schema)
    assert "run_id" not in info and info["version"] == 1
    with LossWriter(path) as w:  # and again: nothing was leaked by the first
        w.add(6, 1.0)
    assert steps(path) == list(range(7))


def test_a_failed_constructor_releases_its_descriptor_lock_and_thread(tmp_path):
    path = tmp_path / "run.arrow"
    schema = pa.schema([*s.FIELDS, pa.field("extra", pa.int64())], metadata={s.KEY_VERSION: "1"})
    batch = pa.RecordBatch.from_arrays([*v1_batch(3).columns, pa.array([1, 2, 3])], schema=schema)
    path.write_bytes(live_bytes(schema, [batch]))
    fds = open_fds()
    with pytest.raises(LossFormatError, match="refusing to resume"):
        LossWriter(path)
    assert open_fds() == fds
    with open(path, "rb") as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the lock was released


@pytest.mark.parametrize("meta", [None, {"lr": 0.1}])
def test_user_metadata_that_is_not_an_object_survives_resume_and_close(tmp_path, meta):
    path = tmp_path / "run.arrow"
    schema = pa.schema(s.FIELDS, metadata={s.KEY_VERSION: "1", s.KEY_META: json.dumps([1, 2])})
    path.write_bytes(closed_bytes(schema, [v1_batch(2)]))
    with LossWriter(path, meta=meta) as w:
        w.add(2, 1.0)
    stored = lossfmt.run_info(pa.ipc.open_file(path).schema)["meta"]
    assert stored == ([1, 2] if meta is None else {"previous_meta": [1, 2], "lr": 0.1})
    assert steps(path) == [0, 1, 2]


def test_a_script_run_again_on_the_same_path_is_told_it_resumed_the_earlier_run(tmp_path):
    path = tmp_path / "run.arrow"
    for lr in (0.1, 0.01):  # the same training script, run twice
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with LossWriter(path, meta={"lr": lr}) as w:
                for step in range(100):
                    w.add(step, lr * (100 - step))
        told = [str(c.message) for c in caught if "started again" in str(c.message)]
        assert told == ([] if lr == 0.1 else [
            f"lossfmt: {path} already held steps 0-99 of a run; this writer started again at step 0, so it "
            "resumed that run: viewers now hide the earlier events of each tag it logs again, from step 0 on "
            "(they stay in the file). Use a new path for a separate run."
        ])  # fmt: skip
    assert lossfmt.read(path).num_rows == 200  # nothing lost


def test_a_resume_from_a_checkpoint_is_not_told_anything(tmp_path):
    path = tmp_path / "run.arrow"
    with LossWriter(path) as w:
        for step in range(10, 100):
            w.add(step, 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with LossWriter(path) as w:  # back to the checkpoint at step 50, and on
            for step in range(50, 150):
                w.add(step, 1.0)
        with LossWriter(path) as w:  # and a plain continuation
            w.add(150, 1.0)
    assert lossfmt.read(path).num_rows == 191


def test_the_started_again_warning_comes_on_the_caller_s_thread_and_never_stops_the_writer(tmp_path):
    path = tmp_path / "run.arrow"
    with LossWriter(path) as w:
        for step in range(10):
            w.add(step, 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # as under pytest -W error: a warning is an exception
        w = LossWriter(path)
        for step in range(10):
            w.add(step, 2.0)
        with pytest.raises(UserWarning, match="this writer started again at step 0"):
            w.flush()  # the flusher thread wrote the batch; the caller is told
        w.add(10, 2.0)  # still usable: nothing broke on the flusher thread
        w.close()  # told once
    assert lossfmt.read(path).num_rows == 21
    assert lossfmt.reader.scan(path).closed


def test_a_resume_of_steps_that_restart_each_epoch_is_told_only_when_run_again(tmp_path):
    path = tmp_path / "loader.arrow"

    def train(epochs, start=0):
        with LossWriter(path) as w:
            for epoch in epochs:
                for step in range(start if epoch == epochs[0] else 0, 10):
                    w.add(step, 1.0, epoch=epoch)

    train(range(3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train(range(1, 3), start=4)  # from the checkpoint at epoch 1, step 4: its steps are below 9
    with pytest.warns(UserWarning, match="started again at step 0"):
        train(range(3))  # the script run again


def test_resume_warnings_name_the_user_s_line_under_with_and_without(tmp_path):
    path = tmp_path / "run.arrow"
    with LossWriter(path) as w:
        w.add(0, 1.0)
    with pytest.warns(UserWarning, match="started again") as told, LossWriter(path) as w:
        w.add(0, 2.0)  # closed by __exit__, inside lossfmt
    assert [(t.filename, t.lineno) for t in told] == [(__file__, told[0].lineno)]
    with pytest.warns(UserWarning, match="started again") as told:
        w = LossWriter(path)
        w.add(0, 3.0)
        w.close()
    assert told[0].filename == __file__
    data = live_file(path)
    ends = batch_ends(data)
    path.write_bytes(data[: ends[-1] - 5])
    with pytest.warns(UserWarning, match="dropped its last") as told:
        w = LossWriter(path)
    w.close()
    assert told[0].filename == __file__
