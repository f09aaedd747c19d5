"""lossview's follow machinery: the watchdog handler only signals, one loop reads, redraws are coalesced."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest
from watchdog.events import FileClosedNoWriteEvent, FileModifiedEvent, FileMovedEvent, FileOpenedEvent

from lossfmt import LossWriter
from lossview import follow
from lossview import view as lv
from lossview.view import View


class FakeWatcher:
    """A Watcher stand-in: a change flag and a fixed look-anyway interval, no threads."""

    def __init__(self, timeout: float = 3600.0) -> None:
        self.changed = threading.Event()
        self._timeout = timeout

    def rescan(self) -> bool:
        return True

    def timeout(self, complete: bool) -> float:
        return self._timeout


class FakeSources:
    def __init__(self) -> None:
        self.polls = 0
        self.new_data = True
        self.errors: dict[Path, str] = {}

    def poll(self) -> bool:
        self.polls += 1
        return self.new_data


def test_handler_only_signals_for_followed_paths(tmp_path):
    changed = threading.Event()
    target = str(tmp_path / "run.arrow")
    handler = follow.ChangeHandler(lambda p: p == target, changed)
    handler.dispatch(FileModifiedEvent(str(tmp_path / "other.arrow")))
    assert not changed.is_set()
    handler.dispatch(FileOpenedEvent(target))  # our own reads open the file: must not loop
    handler.dispatch(FileClosedNoWriteEvent(target))
    assert not changed.is_set()
    handler.dispatch(FileModifiedEvent(target))
    assert changed.is_set()
    changed.clear()
    # The writer's compaction renames a temp file over the run: the destination is what matters.
    handler.dispatch(FileMovedEvent(str(tmp_path / "run.arrow.x1.tmp"), target))
    assert changed.is_set()


def test_sources_match_files_directories_and_globs(tmp_path):
    (tmp_path / "runs").mkdir()
    s = follow.Sources(
        [str(tmp_path / "one.arrow"), str(tmp_path / "runs"), str(tmp_path / "sweep" / "s*.arrow")]
    )
    assert s.wanted(str(tmp_path / "one.arrow"))
    assert s.wanted(str(tmp_path / "runs" / "new.arrow"))
    assert not s.wanted(str(tmp_path / "runs" / "notes.txt"))
    assert s.wanted(str(tmp_path / "sweep" / "s3.arrow"))
    assert not s.wanted(str(tmp_path / "sweep" / "x3.arrow"))
    assert not s.wanted(str(tmp_path / "out.png"))
    dirs = s.directories()
    assert set(dirs) == {tmp_path, tmp_path / "runs", tmp_path / "sweep"}


def test_a_burst_of_changes_costs_one_read_and_one_redraw():
    sources, watcher, redraws = FakeSources(), FakeWatcher(), []
    loop = follow.FollowLoop(sources, watcher, lambda: redraws.append(1), min_interval=3600.0)
    for _ in range(100):
        watcher.changed.set()  # what the watchdog thread does per file event
    assert loop.tick() is True
    assert sources.polls == 1 and redraws == [1]
    watcher.changed.set()
    assert loop.tick() is False  # read, but the redraw waits for the rate limit
    assert sources.polls == 2 and redraws == [1]


def test_nothing_is_read_while_nothing_changes():
    sources, watcher, redraws = FakeSources(), FakeWatcher(), []
    loop = follow.FollowLoop(sources, watcher, lambda: redraws.append(1), min_interval=0.0)
    loop.tick()  # the first tick always looks
    sources.new_data = False
    for _ in range(10):
        loop.tick()
    assert sources.polls == 1 and redraws == [1]


def test_poll_mode_reads_every_interval_without_events():
    sources, watcher, redraws = FakeSources(), FakeWatcher(timeout=0.0), []
    loop = follow.FollowLoop(sources, watcher, lambda: redraws.append(1), min_interval=0.0)
    loop.tick()
    loop.tick()
    assert sources.polls == 2 and redraws  # the second redraw may wait for the rate limit


def test_run_returns_when_stopped():
    sources, watcher = FakeSources(), FakeWatcher()
    stop = threading.Event()
    loop = follow.FollowLoop(sources, watcher, stop.set, min_interval=0.0)
    loop.run(stop)  # the first redraw sets stop
    assert stop.is_set()


def _write(path: Path, values, **kw) -> None:
    with LossWriter(path, **kw) as w:
        for i, v in enumerate(values):
            w.add(i, v)


def test_sources_wait_for_missing_files_then_follow_growth_and_replacement(tmp_path):
    path = tmp_path / "run.arrow"
    s = follow.Sources([str(path)])
    assert s.poll() is False and s.runs() == []  # no file yet: nothing, no error
    w = LossWriter(path, flush_secs=3600)
    try:
        w.add(0, 1.0)
        w.flush()
        assert s.poll() is True
        assert s.runs()[0][1].table.column("value").to_pylist() == [1.0]
        w.add(1, 0.5)
        w.flush()
        assert s.poll() is True
        assert s.runs()[0][1].table.column("value").to_pylist() == [1.0, 0.5]
        assert [r.label for _, r, _ in s.runs()] == ["run"]
    finally:
        w.close()  # compaction replaces the file: nothing new, nothing lost
    s.poll()
    assert s.runs()[0][1].table.column("value").to_pylist() == [1.0, 0.5]
    path.unlink()
    _write(path, [7.0])  # a new run at the same path
    assert s.poll() is True
    assert s.runs()[0][1].table.column("value").to_pylist() == [7.0]


def test_directory_sources_pick_up_new_runs(tmp_path):
    s = follow.Sources([str(tmp_path)])
    _write(tmp_path / "a.arrow", [1.0])
    assert s.poll() is True
    _write(tmp_path / "b.arrow", [2.0, 3.0])
    assert s.poll() is True
    got = [(r.label, r.table.column("value").to_pylist()) for _, r, _ in s.runs()]
    assert sorted(got) == [("a", [1.0]), ("b", [2.0, 3.0])]


def test_watcher_signals_a_file_created_after_start(tmp_path):
    path = tmp_path / "sub" / "run.arrow"
    s = follow.Sources([str(path)])
    watcher = follow.Watcher(s)
    watcher.start()
    try:
        assert watcher.rescan() is False  # parent directory does not exist yet
        path.parent.mkdir()
        assert watcher.rescan() is True
        watcher.changed.clear()
        path.write_bytes(b"x")
        assert watcher.changed.wait(10.0), "no file event within 10 s"
    finally:
        watcher.stop()


def test_watcher_in_poll_mode_starts_no_thread(tmp_path):
    before = threading.active_count()
    watcher = follow.Watcher(follow.Sources([str(tmp_path / "r.arrow")]), poll=0.5)
    watcher.start()
    assert threading.active_count() == before
    assert watcher.timeout(True) == 0.5
    watcher.stop()


def test_truncated_and_rewritten_file_shows_only_the_new_content(tmp_path):
    path = tmp_path / "run.arrow"
    _write(path, [1.0, 2.0, 3.0])
    s = follow.Sources([str(path)])
    s.poll()
    other = tmp_path / "other.arrow"
    _write(other, [9.0, 8.0])
    with open(path, "r+b") as fh:  # truncate in place (same inode), then write another run's bytes
        fh.truncate(0)
        fh.write(other.read_bytes())
    s.poll()
    assert s.runs()[0][1].table.column("value").to_pylist() == [9.0, 8.0]


def test_identical_rewrite_does_not_duplicate_events(tmp_path):
    path = tmp_path / "run.arrow"
    _write(path, [1.0, 2.0, 3.0])
    s = follow.Sources([str(path)])
    s.poll()
    path.write_bytes(path.read_bytes())
    s.poll()
    assert s.runs()[0][1].table.column("value").to_pylist() == [1.0, 2.0, 3.0]


def test_unreadable_file_is_an_error_at_first_then_a_warning(tmp_path):
    bad, good = tmp_path / "bad.arrow", tmp_path / "good.arrow"
    bad.write_text("not arrow\n")
    s = follow.Sources([str(bad)])
    loop = follow.FollowLoop(s, FakeWatcher(), lambda: None, min_interval=0.0)
    with pytest.raises(ValueError, match=r"bad\.arrow"):
        loop.tick()

    _write(good, [1.0, 2.0])
    s = follow.Sources([str(good)])
    watcher = FakeWatcher()
    loop = follow.FollowLoop(s, watcher, lambda: None, min_interval=0.0)
    loop.tick()
    good.write_text("damaged\n")
    watcher.changed.set()
    with pytest.warns(UserWarning, match=r"good\.arrow"):
        loop.tick()
    assert s.runs()[0][1].table.column("value").to_pylist() == [1.0, 2.0]  # the last good events stay


def test_curve_cache_recomputes_only_the_files_that_changed(tmp_path, monkeypatch):
    _write(tmp_path / "a.arrow", [1.0, 0.5])
    _write(tmp_path / "b.arrow", [2.0, 1.0])
    s = follow.Sources([str(tmp_path)])
    s.poll()
    cache = follow.CurveCache(View(smooth="none"))
    computed = []
    real = follow.curves
    monkeypatch.setattr(
        follow, "curves", lambda r, v: computed.append(sum(x.table.num_rows for x in r)) or real(r, v)
    )
    first = cache.curves(s)
    assert sorted((c.run, c.y.tolist()) for c in first) == [("a", [1.0, 0.5]), ("b", [2.0, 1.0])]
    assert computed == [2, 2]
    _write(tmp_path / "c.arrow", [3.0])
    s.poll()
    assert len(cache.curves(s)) == 3
    assert computed == [2, 2, 1]  # a and b came from the cache


def test_curve_cache_means_across_runs(tmp_path):
    _write(tmp_path / "a.arrow", [1.0, 3.0])
    _write(tmp_path / "b.arrow", [3.0, 5.0])
    s = follow.Sources([str(tmp_path)])
    s.poll()
    (mean,) = follow.CurveCache(View(smooth="none", mean_runs=True)).curves(s)
    assert mean.y.tolist() == [2.0, 4.0] and mean.run == "mean of 2 runs"


@pytest.mark.parametrize(
    "view",
    [
        View(),
        View(smooth="ma:5"),
        View(smooth="none"),
        View(smooth="ema:0.9", smooth_explicit=False),
        View(x="time", normalize="per-item"),
    ],
    ids=["ema", "ma", "none", "default-rule", "time-per-item"],
)
def test_growing_run_is_extended_with_the_same_numbers_as_a_full_recompute(tmp_path, view):
    import numpy as np

    path = tmp_path / "run.arrow"
    rng = np.random.default_rng(7)
    values = rng.random(300) + 1.0
    values[[40, 41, 170]] = [np.nan, np.inf, np.nan]
    s = follow.Sources([str(path)])
    cache = follow.CurveCache(view)
    w = LossWriter(path, flush_secs=3600)
    try:
        for lo, hi in ((0, 30), (30, 100), (100, 300)):  # the default rule smooths from 60 points on
            for step in range(lo, hi):
                w.add(step, float(values[step]), count=2)
                if step % 50 == 49:
                    w.add(step, float(values[step]) / 2, "val")
            w.flush()
            s.poll()
            incremental = {c.key: c for c in cache.curves(s)}
    finally:
        w.close()
    full = {c.key: c for c in lv.curves(lv.load([path], view, every_column=True), view)}
    assert incremental.keys() == full.keys()
    for key, c in full.items():
        got = incremental[key]
        np.testing.assert_array_equal(got.x, c.x)
        np.testing.assert_array_equal(got.y, c.y)
        assert (got.smoothed is None) == (c.smoothed is None), key
        if c.smoothed is not None:
            np.testing.assert_allclose(got.smoothed, c.smoothed, rtol=1e-9, atol=0)


def test_following_per_epoch_rings_the_epoch_in_progress_until_the_run_closes(tmp_path):
    path = tmp_path / "run.arrow"
    s = follow.Sources([str(path)])
    cache = follow.CurveCache(View(per="epoch"))
    with LossWriter(path, flush_secs=3600) as w:
        for step in range(15):
            w.add(step, 1.0, epoch=step // 10)
        w.flush()
        s.poll()
        (live,) = cache.curves(s)
    s.poll()  # closed: compacted, read again whole
    (closed,) = cache.curves(s)
    assert (live.unfinished, closed.unfinished) == (True, False)
    assert closed.bucket.tolist() == [0, 1]


def test_a_rewind_falls_back_to_a_full_recompute(tmp_path):
    path = tmp_path / "run.arrow"
    s = follow.Sources([str(path)])
    cache = follow.CurveCache(View(smooth="none"))
    with LossWriter(path, flush_secs=3600) as w:
        for step in range(5):
            w.add(step, float(step))
        w.flush()
        s.poll()
        cache.curves(s)
        w.add(2, 20.0)  # resumed from step 2: events at steps 3 and 4 are orphaned
        w.flush()
        s.poll()
        (c,) = cache.curves(s)
    assert c.step.tolist() == [0, 1, 2] and c.y.tolist() == [0.0, 1.0, 20.0]


def test_notebook_display_redraws_as_the_run_grows(tmp_path):
    import asyncio

    from lossview import notebook

    path = tmp_path / "run.arrow"
    shown: list[tuple[bytes, bool]] = []
    live = notebook.LiveDisplay(path, interval=0.01, show=lambda png, first: shown.append((png, first)))
    assert live.refresh() is False and shown == []  # no file yet
    w = LossWriter(path, flush_secs=3600)
    try:
        w.add(0, 1.0)
        w.flush()
        assert live.refresh() is True
        w.add(1, 0.5)
        w.flush()

        async def follow_once() -> None:
            live.start()
            while len(shown) < 2:
                await asyncio.sleep(0.01)
            live.stop()

        asyncio.run(asyncio.wait_for(follow_once(), 10))
    finally:
        w.close()
    assert [first for _, first in shown] == [True, False]
    assert all(png.startswith(b"\x89PNG") for png, _ in shown) and shown[0][0] != shown[1][0]
    with pytest.raises(RuntimeError, match="event loop"):
        live.start()


def test_figure_for_a_file(tmp_path):
    import lossview

    _write(tmp_path / "r.arrow", [3.0, 2.0, 1.0])
    fig = lossview.figure(tmp_path / "r.arrow", smooth="none")
    (ax,) = fig.axes
    assert [list(line.get_ydata()) for line in ax.lines if len(line.get_ydata())] == [[3.0, 2.0, 1.0]]


def test_per_epoch_on_a_run_without_epochs_warns_once_naming_the_file(tmp_path):
    _write(tmp_path / "a.arrow", [1.0, 2.0])
    s = follow.Sources([str(tmp_path / "a.arrow")])
    s.poll()
    with pytest.warns(UserWarning) as caught:
        assert follow.CurveCache(View(per="epoch")).curves(s) == []
    (message,) = [str(w.message) for w in caught]
    assert message.count("a.arrow") == 1 and "--per epoch" in message, message


# --- what happens to the files while they are followed ------------------------------------------------------


def _loop(sources: follow.Sources) -> tuple[follow.FollowLoop, FakeWatcher]:
    watcher = FakeWatcher()
    return follow.FollowLoop(sources, watcher, lambda: None, min_interval=0.0), watcher


def test_a_stray_arrow_file_in_a_followed_directory_is_skipped_with_one_warning(tmp_path):
    import pyarrow as pa
    import pyarrow.feather

    (tmp_path / "early.arrow").write_bytes(b"ARROW1\0\0x")  # there before the first look: skipped too
    _write(tmp_path / "a.arrow", [1.0, 2.0])
    s = follow.Sources([str(tmp_path)])
    loop, watcher = _loop(s)
    with pytest.warns(UserWarning, match=r"early\.arrow: not a lossfmt file .*: skipped$"):
        loop.tick()
    stray = tmp_path / "c.arrow"
    pyarrow.feather.write_feather(pa.table({"x": [1]}), stray)  # what pandas' to_feather writes
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # every warning issued, not only Python's first of each
        for _ in range(3):
            watcher.changed.set()
            loop.tick()
    assert [str(w.message) for w in caught] == [
        f"{stray}: not a lossfmt file (Arrow file without lossfmt metadata): skipped"
    ]
    assert [r.label for _, r, _ in s.runs()] == ["a"]  # the other runs keep drawing
    _write(tmp_path / "c.tmp", [5.0])
    os.replace(tmp_path / "c.tmp", stray)  # it becomes a run: read from then on
    watcher.changed.set()
    loop.tick()
    assert sorted(r.label for _, r, _ in s.runs()) == ["a", "c"]


@pytest.mark.parametrize("arg", ["{d}", "{d}/*.arrow"], ids=["directory", "glob"])
def test_a_run_that_leaves_a_followed_directory_or_glob_is_dropped(tmp_path, arg):
    for name in ("a", "b", "c"):
        _write(tmp_path / f"{name}.arrow", [1.0, 2.0])
    s = follow.Sources([arg.format(d=tmp_path)])
    cache = follow.CurveCache(View(smooth="none"))
    s.poll()
    assert sorted(c.run for c in cache.curves(s)) == ["a", "b", "c"]
    (tmp_path / "b.arrow").rename(tmp_path / "b.arrow.bak")  # renamed away
    (tmp_path / "c.arrow").rename(tmp_path / "d.arrow")  # renamed within: the same run (stored name "c")
    assert s.poll() is True and s.dropped == {tmp_path / "b.arrow", tmp_path / "c.arrow"}
    assert sorted((c.run, c.y.tolist()) for c in cache.curves(s)) == [("a", [1.0, 2.0]), ("c", [1.0, 2.0])]
    for name in ("a", "d"):
        (tmp_path / f"{name}.arrow").unlink()
    assert s.poll() is True
    assert cache.curves(s) == []  # nothing left: the picture empties (None means nothing arrived yet)
    (tmp_path / "b.arrow.bak").rename(tmp_path / "b.arrow")  # back: followed again
    assert s.poll() is True and [c.run for c in cache.curves(s)] == ["b"]


def test_a_named_file_that_disappears_is_gone_with_a_notice_until_it_is_back(tmp_path):
    path = tmp_path / "run.arrow"
    _write(path, [1.0, 2.0])
    s = follow.Sources([str(path)])
    loop, watcher = _loop(s)
    loop.tick()
    path.rename(tmp_path / "moved.arrow")
    watcher.changed.set()
    with pytest.warns(UserWarning, match=r"run\.arrow: file gone, waiting for it"):
        loop.tick()
    assert s.gone == {path}
    assert s.runs()[0][1].table.column("value").to_pylist() == [1.0, 2.0]  # its last events stay
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once, not at every look
        watcher.changed.set()
        loop.tick()
    _write(path, [7.0])  # a new run at the path
    assert s.poll() is True and s.gone == set()
    assert s.runs()[0][1].table.column("value").to_pylist() == [7.0]


def test_runs_are_labelled_by_their_stored_name_whatever_the_file_is_called(tmp_path):
    _write(tmp_path / "nested" / "x.arrow", [1.0], run="nested")
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "link.arrow").symlink_to(tmp_path / "nested" / "x.arrow")
    shutil.copy(tmp_path / "nested" / "x.arrow", tmp_path / "g" / "renamed.arrow")
    s = follow.Sources([str(tmp_path / "g")])
    s.poll()
    read = lv.load([tmp_path / "g"], View())
    assert [r.label for _, r, _ in s.runs()] == [r.label for r in read]
    assert list(s.labels(list(s.followers)).values()) == [r.label for r in read]
    assert sorted(r.label for r in read) == ["nested (link)", "nested (renamed)"]


def test_following_to_an_image_warns_once_of_a_stray_file_and_of_a_named_file_gone(tmp_path):
    runs, named, image, err = (
        tmp_path / "g2",
        tmp_path / "named.arrow",
        tmp_path / "live.png",
        tmp_path / "err",
    )
    _write(runs / "a.arrow", [1.0, 2.0])
    _write(named, [3.0, 4.0])
    command = [sys.executable, "-m", "lossview", str(runs), str(named), "--follow", "-o", str(image)]
    with err.open("w") as stderr:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)

    def wait_for(done) -> None:
        deadline = time.monotonic() + 30
        while not done():
            assert proc.poll() is None, err.read_text()
            assert time.monotonic() < deadline, err.read_text()
            time.sleep(0.05)  # another process's files: nothing to wait on but them

    try:
        wait_for(image.exists)
        (runs / "c.arrow").write_bytes(b"ARROW1\0\0x")
        wait_for(lambda: "c.arrow" in err.read_text())
        named.rename(tmp_path / "moved.arrow")
        wait_for(lambda: "file gone" in err.read_text())
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # (watchdog itself may log a line of its own as its thread stops: only lossview's lines are checked)
    assert [line for line in err.read_text().splitlines() if line.startswith("lossview:")] == [
        f"lossview: warning: {runs / 'c.arrow'}: not a lossfmt file (no schema message at byte 8): skipped",
        f"lossview: warning: {named}: file gone, waiting for it (its last events stay)",
    ]


def test_following_a_run_whose_steps_restart_says_so_once_not_at_every_redraw(tmp_path):
    """A live image or window printed "its steps restart each epoch" once per redraw (15 lines for 600
    steps): each redraw's catch_warnings() reset Python's once-per-place registry."""
    path, image, err = tmp_path / "run.arrow", tmp_path / "live.png", tmp_path / "err"
    writer = LossWriter(path, flush_secs=3600)
    command = [sys.executable, "-m", "lossview", str(path), "--follow", "-o", str(image)]
    with err.open("w") as stderr:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        for epoch in range(4):
            for step in range(50):  # the steps restart each epoch
                writer.add(step, 1.0 / (1 + step + 50 * epoch), epoch=epoch)
            writer.flush()
            shown = image.stat().st_mtime_ns if image.exists() else 0
            deadline = time.monotonic() + 30
            while not image.exists() or image.stat().st_mtime_ns == shown:  # redrawn for this flush
                assert proc.poll() is None and time.monotonic() < deadline, err.read_text()
                time.sleep(0.05)  # another process's image: nothing to wait on but it
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        writer.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    said = [line for line in err.read_text().splitlines() if line.startswith("lossview:")]
    assert said == ["lossview: warning: run: its steps restart each epoch: drawn run-wide"]


def test_a_notebook_display_whose_thread_ended_starts_following_again(tmp_path):
    """start() saw the thread object of a display whose polling had ended (a Ctrl-C in stop()'s join, an
    error while drawing) and did nothing: the plot stayed stale for good."""
    import asyncio

    from lossview import notebook

    path = tmp_path / "run.arrow"
    shown: list[bytes | str] = []
    live = notebook.LiveDisplay(path, interval=0.01, show=lambda png, first: shown.append(png))
    with LossWriter(path, flush_secs=3600) as w:
        w.add(0, 1.0)
        w.flush()

        async def restart() -> bool:
            live.start()
            assert live._thread is not None
            live._stopping.set()  # its polling ends (as after an error), the thread object stays
            live._thread.join()
            live.start()
            alive = live._thread.is_alive()
            live.stop()
            return alive

        assert asyncio.run(asyncio.wait_for(restart(), 10))


def test_a_followed_file_cut_short_in_place_says_so_and_a_new_run_at_its_path_does_not(tmp_path):
    """A closed run truncated in place (a copy over it, part-way) was drawn as empty axes without a word."""
    path = tmp_path / "run.arrow"
    with LossWriter(path) as w:
        for step in range(30):
            w.add(step, float(step))
    s = follow.Sources([str(path)])
    s.poll()
    os.truncate(path, path.stat().st_size // 2)
    with pytest.warns(UserWarning, match=r"run\.arrow: holds 0 of the 30 events drawn before \(cut short"):
        s.poll()
    path.unlink()
    with LossWriter(path) as w:  # another run at the path: a reset, as expected, and nothing to say
        w.add(0, 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s.poll()
    ((_, run, _),) = s.runs()
    assert run.table.num_rows == 1


def test_a_file_a_directory_names_and_named_itself_is_one_run_and_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write(tmp_path / "g" / "a.arrow", [1.0])
    _write(tmp_path / "g" / "b.arrow", [2.0])
    s = follow.Sources(["g", str(tmp_path / "g" / "a.arrow")])  # as lossfmt.run_paths: a file once
    s.poll()
    assert [r.label for _, r, _ in s.runs()] == ["a", "b"]
    (tmp_path / "g" / "a.arrow").unlink()
    with pytest.warns(UserWarning, match="file gone"):
        s.poll()
    assert s.gone == {Path("g/a.arrow")} and not s.dropped  # named: kept, with its notice


def _svg_look(image: Path) -> tuple[list[str], list[str]]:
    """The texts of a lossview SVG (matplotlib writes each as a comment) and its line colours."""
    svg = image.read_text()
    return re.findall(r"<!-- (.*?) -->", svg), sorted(set(re.findall(r"stroke: (#[0-9a-f]{6})", svg)))


def test_a_followed_directory_of_one_live_run_is_drawn_as_its_one_shot_picture(tmp_path):
    """Following a directory of one live run drew title '1 run', legend 'live: loss' / 'live: lr' in one
    colour; its one-shot picture (and following the file itself) has title 'live', legend 'loss' / 'lr'."""
    runs, live, once, err = tmp_path / "r4", tmp_path / "live.svg", tmp_path / "once.svg", tmp_path / "err"
    runs.mkdir()
    options = ["--per", "10", "--smooth", "ma:2"]
    writer = LossWriter(runs / "live.arrow", flush_secs=3600)
    with err.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lossview", str(runs), "--follow", "-o", str(live), *options],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )

    def drawn(title: str) -> tuple[list[str], list[str]]:
        deadline = time.monotonic() + 30
        while not live.exists() or _svg_look(live)[0][-1:] != [title]:  # (the title is the last text)
            shown = _svg_look(live)[0][-1:] if live.exists() else "nothing"
            assert proc.poll() is None and time.monotonic() < deadline, (
                f"{shown}, not {title}: {err.read_text()}"
            )
            time.sleep(0.05)  # another process's image: nothing to wait on but it
        return _svg_look(live)

    try:
        for step in range(100):
            writer.add(step, 1.0 + 1.0 / (1 + step), "loss")
            writer.add(step, 1e-3, "lr")
        writer.flush()
        followed = drawn("live")
        subprocess.run([sys.executable, "-m", "lossview", str(runs), "-o", str(once), *options], check=True)
        assert followed == _svg_look(once)
        _write(runs / "second.arrow", [2.0, 1.5])  # a second run: now runs are compared
        texts, _ = drawn("2 runs")
        assert "live: loss" in texts and "second: loss" in texts
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        writer.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
