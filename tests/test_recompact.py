"""A live file written at a slow flush rate is re-compacted while the run goes on (issue 13): the same events
in the same order in large batches, still live, replaced atomically; readers, followers and resume go on."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time

import pyarrow as pa

import lossfmt
from lossfmt import LossWriter, _file, _framing, _locking, _recompact, reader
from lossfmt import schema as s

TAGS = ("train/loss", "train/acc", "train/lr", "train/grad_norm")
STEPS_PER_FLUSH = 17  # a 60 ms step, flush_secs=1: 68 events per flush


def value(i: int) -> float:
    return 2.0 / (1 + i / 500) + (i * 7919 % 101) / 1000


def log_steps(w: LossWriter, start: int, stop: int, tags: tuple[str, ...] = TAGS) -> None:
    """Steps [start, stop) of every tag, flushed every STEPS_PER_FLUSH steps (as the slow loop would)."""
    for step in range(start, stop):
        for tag in tags:
            w.add(step, value(step), tag, count=32, epoch=step // 500)
        if step % STEPS_PER_FLUSH == STEPS_PER_FLUSH - 1:
            w.flush()
    w.flush()
    w.flush()  # the flusher's re-compaction after the first flush has ended before this one returns


def expected(steps: range, tags: tuple[str, ...] = TAGS) -> list[tuple]:
    return [(step, tag, value(step), 32, step // 500) for step in steps for tag in tags]


def rows(table: pa.Table) -> list[tuple]:
    return list(zip(*(table[c].to_pylist() for c in ("step", "tag", "value", "count", "epoch")), strict=True))


def messages(path) -> list[tuple[str, bool, int]]:
    """(kind, is a delta, rows or dictionary values) of each content message, as lossfmt's walk finds them."""
    kinds = {_framing.DICTIONARY: "dictionary", _framing.RECORD_BATCH: "batch"}
    walked = _framing.walk(path.read_bytes(), str(path)).messages
    return [(kinds[m.kind], m.is_delta, m.rows) for m in walked]


def batch_count(path) -> int:
    """Record batches in the file, counted by pyarrow's stream reader (which applies delta dictionaries)."""
    data = path.read_bytes()[len(s.MAGIC) :]
    return sum(1 for _ in pa.ipc.open_stream(pa.py_buffer(data)))


def test_a_slow_flush_rate_keeps_the_live_file_within_1_5x_its_closed_size(tmp_path):
    path = tmp_path / "run.arrow"
    with LossWriter(path, flush_secs=3600) as w:
        log_steps(w, 0, 3000)
        live = path.stat().st_size
        check_live(path, live)
    assert live <= 1.5 * path.stat().st_size


def check_live(path, live: int) -> None:
    """The live file (`live` bytes) holds 3000 steps in a few large batches; lossfmt and pyarrow agree."""
    scanned = reader.scan(path)
    assert not scanned.closed and scanned.end == live  # still a live file that appends continue on
    assert rows(lossfmt.read(path, verify=True)) == expected(range(3000))
    flushes = 3000 // STEPS_PER_FLUSH + 1
    assert batch_count(path) < flushes / 4  # the head was rewritten into large batches
    assert rows(pa.ipc.open_stream(path.read_bytes()[8:]).read_all()) == expected(range(3000))


def test_flushes_after_a_rewrite_append_only_what_is_new(tmp_path):
    """The rewritten head holds the stream's dictionaries in the stream's order: the next flush without new
    tags writes no dictionary, and a new tag is a delta (pyarrow reads the file and its deltas)."""
    path = tmp_path / "run.arrow"
    with LossWriter(path, flush_secs=3600) as w:
        log_steps(w, 0, 1500)
        head = messages(path)
        assert head[2][2] > 1000  # rewritten: the first batch (after two dictionaries) holds many flushes
        w.add(1500, 1.0, "train/loss")
        w.flush()
        w.add(1501, 2.0, "val/loss")
        w.flush()
        assert messages(path)[: len(head)] == head and messages(path)[len(head) :] == [
            ("batch", False, 1),
            ("dictionary", True, 1),  # a delta of the one new tag
            ("batch", False, 1),
        ]
        table = lossfmt.read(path)
        assert rows(table)[-2:] == [(1500, "train/loss", 1.0, 1, None), (1501, "val/loss", 2.0, 1, None)]
        assert rows(pa.ipc.open_stream(path.read_bytes()[8:]).read_all()) == rows(table)
    assert rows(lossfmt.read(path)) == rows(table)


def test_a_resumed_run_is_rewritten_with_the_tags_of_both_writers(tmp_path):
    path = tmp_path / "run.arrow"
    with LossWriter(path, flush_secs=3600) as w:
        log_steps(w, 0, 200, ("old/a", "old/b"))
    run_id = s.run_info(lossfmt.read(path).schema)["run_id"]
    want = (
        expected(range(200), ("old/a", "old/b"))
        + expected(range(200, 2000))
        + expected(range(2000, 2100), ("old/b", "new/c"))
    )
    with LossWriter(path, flush_secs=3600) as w:  # its stream's dictionary knows only its own tags
        log_steps(w, 200, 2000)
        assert messages(path)[2][2] > 400  # rewritten: one batch holds both writers' events
        log_steps(w, 2000, 2100, ("old/b", "new/c"))  # after rewrites: an old tag back, a new one
        table = lossfmt.read(path)
        assert rows(table) == want and s.run_info(table.schema)["run_id"] == run_id
        assert rows(pa.ipc.open_stream(path.read_bytes()[8:]).read_all()) == want
    assert rows(lossfmt.read(path)) == want


def test_a_run_that_flushes_large_batches_is_never_rewritten(tmp_path):
    path = tmp_path / "run.arrow"
    w = LossWriter(path, flush_secs=3600)
    original = os.open(path, os.O_RDONLY)  # held open: the inode cannot be reused by a replacement
    try:
        for f in range(40):
            for i in range(_recompact.SMALL_FLUSH):
                w.add(f * _recompact.SMALL_FLUSH + i, value(i), TAGS[i % 4])
            w.flush()
        w.flush()
        assert path.stat().st_size > 10 * _recompact.FIRST_BYTES
        assert _locking.same_file(path, original)
    finally:
        os.close(original)
        w.close()


def test_a_follower_polling_through_rewrites_gets_every_event_once_without_reset(tmp_path):
    path = tmp_path / "run.arrow"
    w = LossWriter(path, flush_secs=3600)
    follower = lossfmt.follow(path)
    seen: list[tuple] = []
    resets = 0
    done = threading.Event()

    def poll() -> None:
        nonlocal resets
        while True:
            finished = done.is_set()
            update = follower.poll()
            resets += update.reset
            seen.extend(rows(update.table))
            if finished:
                return

    thread = threading.Thread(target=poll)
    thread.start()
    original = os.open(path, os.O_RDONLY)
    try:
        log_steps(w, 0, 3000)
        assert not _locking.same_file(path, original)  # replaced while the follower polled
    finally:
        os.close(original)
        done.set()
        thread.join()
        w.close()
    assert resets == 0
    assert seen == expected(range(3000))
    final = follower.poll()
    assert not final.reset and final.table.num_rows == 0 and follower.closed


def test_lossview_follow_keeps_drawing_through_rewrites(tmp_path):
    path, png = tmp_path / "run.arrow", tmp_path / "out.png"
    writer = textwrap.dedent(
        """
        import sys, time
        from lossfmt import LossWriter
        w = LossWriter(sys.argv[1], flush_secs=3600)
        for step in range(3000):
            for tag in ("train/loss", "train/acc", "train/lr", "train/grad_norm"):
                w.add(step, 1.0 / (step + 1), tag, count=32, epoch=step // 500)
            if step % 17 == 16:
                w.flush()
                time.sleep(0.01)
        w.close()
        """
    )
    LossWriter(path).close()
    view = subprocess.Popen(
        [sys.executable, "-m", "lossview", str(path), "--follow", "-o", str(png)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert subprocess.run([sys.executable, "-c", writer, str(path)], timeout=120).returncode == 0
        drawn = png.stat().st_mtime_ns if png.exists() else 0
        deadline = time.monotonic() + 60
        while view.poll() is None and time.monotonic() < deadline:  # a frame after the run closed
            if png.exists() and png.stat().st_mtime_ns != drawn and png.stat().st_size:
                break
            time.sleep(0.05)
    finally:
        view.terminate()
        _, err = view.communicate(timeout=60)
    assert view.returncode == 0, err
    assert "Traceback" not in err
    assert png.stat().st_size > 0
    assert lossfmt.read(path).num_rows == 3000 * len(TAGS)


def test_a_rewrite_that_would_not_pay_is_discarded(tmp_path):
    """Flushes that already compress like a closed file (one distinct tag per event): the trial rewrite
    at FIRST_BYTES is dropped, and the file stays the one the writer created."""
    path = tmp_path / "run.arrow"
    w = LossWriter(path, flush_secs=3600)
    original = os.open(path, os.O_RDONLY)
    try:
        i = 0
        for _ in range(40):
            for _ in range(500):
                w.add(i, 1.0, f"param{i:07d}/grad_norm/{i * 2654435761 % 2**32:08x}")
                i += 1
            w.flush()
        w.flush()
        assert path.stat().st_size > 3 * _recompact.FIRST_BYTES
        assert _locking.same_file(path, original)
        assert lossfmt.read(path).num_rows == i
    finally:
        os.close(original)
        w.close()


def test_write_live_writes_no_eos_and_a_sealed_verified_file(tmp_path):
    path = tmp_path / "run.arrow"
    with LossWriter(path) as w:
        w.add(0, 1.0)
    table = lossfmt.read(path)
    schema = s.make_schema("r", {})
    header = _file._framing.Sealer().seal(s.MAGIC + schema.serialize().to_pybytes())
    out = tmp_path / "live.arrow"
    temp = _locking.TempFile(out)
    assert _file.write_live(temp, header, schema, table.to_batches()) == 1
    temp.commit(None)
    _locking.release(temp.fd)
    data = out.read_bytes()
    assert not data.endswith(s.EOS)
    scanned = reader.scan(out)
    assert not scanned.closed and scanned.end == len(data) and rows(scanned.table) == rows(table)


def test_the_rewrites_of_a_run_cost_a_bounded_multiple_of_its_size(tmp_path, monkeypatch):
    """Geometric: each rewrite waits for the file to grow by a fixed fraction of its compacted size, so the
    bytes rewritten over the whole run are a small multiple of the final file, not quadratic."""
    rewritten: list[int] = []
    real = _file.write_live

    def counting(temp, header, schema, batches):
        n = real(temp, header, schema, batches)
        rewritten.append(os.fstat(temp.fd).st_size)
        return n

    monkeypatch.setattr(_file, "write_live", counting)
    path = tmp_path / "run.arrow"
    w = LossWriter(path, flush_secs=3600)
    log_steps(w, 0, 6000)
    final = path.stat().st_size
    w.close()
    assert len(rewritten) >= 3
    assert sum(rewritten) < 10 * final


def test_re_compaction_and_close_never_load_pandas_into_the_training_process(tmp_path):
    """pa.array() imports pandas on its first call in pyarrow 26: the flusher's rewrites (and close's
    compaction) build their arrays from numpy buffers instead."""
    code = textwrap.dedent(
        """
        import sys
        from lossfmt import LossWriter
        w = LossWriter(sys.argv[1], flush_secs=3600)
        for step in range(3000):
            for tag in ("a", "b", "c", "d"):
                w.add(step, 1.0 / (step + 1), tag, count=32, epoch=step // 500)
            if step % 17 == 16:
                w.flush()
        w.flush()
        w.flush()
        assert "pandas" not in sys.modules, "the rewrite loaded pandas"
        w.close()
        assert "pandas" not in sys.modules, "close() loaded pandas"
        """
    )
    path = tmp_path / "run.arrow"
    subprocess.run([sys.executable, "-c", code, str(path)], check=True, timeout=120)
    assert lossfmt.read(path).num_rows == 12_000
