"""Real faults, each bounded in time: kills during close(), full disks, files removed, replaced or made
read-only under a writer, racing threads, and live readers through a whole write + close."""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import lossfmt
from lossfmt import FileReplacedError, LossWriter, _recompact
from lossfmt._locking import TEMP_SUFFIX

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="fork, SIGKILL and tmpfs mounts")

EVENTS = 300_000


def value(i: int) -> float:
    return i * 0.25


def check_events(path, n: int) -> None:
    """The file holds exactly the events 0..n-1 the writers below add."""
    table = lossfmt.read(path)
    steps = np.arange(n)
    assert np.array_equal(table["step"].to_numpy(), steps)
    assert np.array_equal(table["value"].to_numpy(), steps * 0.25)
    tags = table["tag"].to_numpy()  # categorical indices resolved to strings
    assert list(tags[:: n // 7]) == [("loss" if i % 10 else "val") for i in range(0, n, n // 7)]


@pytest.fixture(scope="module")
def live_run(tmp_path_factory) -> bytes:
    """The bytes of a live (flushed, not closed) file of EVENTS events in 40 flushes."""
    path = tmp_path_factory.mktemp("live") / "run.arrow"
    w = LossWriter(path, flush_secs=3600)
    for i in range(EVENTS):
        w.add(i, value(i), "loss" if i % 10 else "val")
        if (i + 1) % (EVENTS // 40) == 0:
            w.flush()
    data = path.read_bytes()
    w.close()
    return data


def close_in_child(path) -> tuple[int, int]:
    """Fork a child that resumes `path` and closes it (compaction); return (pid, fd that reads b"x" once the
    child is about to call close())."""
    r, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            os.close(r)
            w = LossWriter(path)
            os.write(wfd, b"x")
            w.close()
            code = 0
        finally:
            os._exit(code)
    os.close(wfd)
    return pid, r


def kill_during_close(path, delay: float) -> tuple[int, float]:
    """Start close() in a child, SIGKILL it `delay` seconds later; the child's exit status, and how long its
    close() ran (until it exited or was killed)."""
    pid, r = close_in_child(path)
    try:
        assert os.read(r, 1) == b"x"
        start = time.monotonic()
        # Wait `delay` (the moment of the fault) unless the child exits first (its end of the pipe closes).
        finished, _, _ = select.select([r], [], [], delay)
        if not finished:
            os.kill(pid, signal.SIGKILL)
        elapsed = time.monotonic() - start
    finally:
        os.close(r)
    return os.waitpid(pid, 0)[1], elapsed


def temp_files(directory) -> list[str]:
    return [name for name in os.listdir(directory) if name.endswith(".lossfmt-tmp")]


def sigkill_moments(tmp_path, live_run: bytes, moments: int) -> None:
    durations = []
    for i in range(2):
        measure = tmp_path / f"measure{i}.arrow"
        measure.write_bytes(live_run)
        status, elapsed = kill_during_close(measure, 60.0)
        assert status == 0  # not killed: it closed
        durations.append(elapsed)
    duration = min(durations)
    killed = attempts = 0
    while killed < moments:
        attempts += 1
        assert attempts <= 3 * moments, f"only {killed} of {attempts} kills landed during close()"
        directory = tmp_path / f"kill{attempts}"
        directory.mkdir()
        path = directory / "run.arrow"
        path.write_bytes(live_run)
        # Moments spread over close() (golden-ratio steps: every part of it, in no fixed order).
        status, _ = kill_during_close(path, duration * ((attempts * 0.618034) % 1.0))
        killed += os.WIFSIGNALED(status)
        check_events(path, EVENTS)  # live or closed, every flushed event is there
        assert lossfmt.read(directory).num_rows == EVENTS  # a stale temp file does not break a directory read
        with LossWriter(path) as w:  # the next writer works, and removes what the kill left
            w.add(EVENTS, value(EVENTS), "val")
        assert os.listdir(directory) == ["run.arrow"]  # no temp file of any name left
        check_events(path, EVENTS + 1)


def test_sigkill_at_spread_moments_during_close_loses_nothing(tmp_path, live_run):
    sigkill_moments(tmp_path, live_run, 6)


@pytest.mark.slow
def test_sigkill_at_thirty_moments_during_close_loses_nothing(tmp_path, live_run):
    sigkill_moments(tmp_path, live_run, 32)


def test_a_fork_during_close_does_not_keep_the_run_locked(tmp_path, live_run):
    """A worker forked while close() is compacting (the temp file open) must not inherit its lock."""
    path = tmp_path / "run.arrow"
    path.write_bytes(live_run)
    w = LossWriter(path)
    children: list[int] = []
    stop = threading.Event()

    def fork_when_compacting() -> None:
        while not stop.is_set() and not children:
            if temp_files(tmp_path):
                pid = os.fork()
                if pid == 0:
                    time.sleep(30)  # a long-lived worker
                    os._exit(0)
                children.append(pid)

    forker = threading.Thread(target=fork_when_compacting)
    forker.start()
    try:
        w.close()
        stop.set()
        forker.join()
        assert children, "no fork happened while the temp file existed"
        with LossWriter(path) as again:  # while the child still lives
            again.add(EVENTS, value(EVENTS), "val")
        check_events(path, EVENTS + 1)
    finally:
        stop.set()
        forker.join()
        for pid in children:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


# --- full disks -----------------------------------------------------------------------------------------


@pytest.fixture
def tiny_disk(tmp_path):
    """A real tmpfs of 256 KiB, mounted for the test (root only) and unmounted after."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(directory, leave: int) -> os.PathLike:
    """Fill the disk, then free `leave` bytes (whole pages) at the end of the filler file."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        with contextlib.suppress(OSError):
            while os.write(fd, b"\0" * 4096):
                pass
    finally:
        os.close(fd)
    os.truncate(filler, max(0, filler.stat().st_size - leave))
    return filler


def test_a_short_header_write_raises_at_the_constructor_and_leaves_no_file(tiny_disk):
    fill(tiny_disk, 4096)  # one page free: the header below takes three
    path = tiny_disk / "run.arrow"
    with pytest.raises(OSError, match=r"run\.arrow"):
        LossWriter(path, meta={"note": "x" * 10_000})
    assert not path.exists()  # no half header for later flushes to land after
    os.unlink(tiny_disk / "filler")
    with LossWriter(path, meta={"note": "x" * 10_000}) as w:
        w.add(0, 1.0)
    assert lossfmt.read(path).num_rows == 1


def test_a_full_disk_is_raised_by_the_next_call_and_every_flushed_event_stays(tiny_disk):
    path = tiny_disk / "run.arrow"
    w = LossWriter(path, flush_secs=3600)
    flushed = 0
    with pytest.raises(OSError, match="No space left"):
        for i in range(10_000_000):
            w.add(i, value(i), "loss" if i % 10 else "val")
            if i % 1000 == 999:
                w.flush()
                flushed = i + 1
    assert flushed > 0
    with pytest.raises(OSError):
        w.add(0, 1.0)  # the error stays: the writer cannot continue
    with pytest.warns(UserWarning, match=r"left without its footer .* `lossview compact "):
        w.close()  # it says the file is still live, and how to finish it
    check_events(path, flushed)
    assert temp_files(tiny_disk) == []


def _live_run(path: Path) -> tuple[LossWriter, int]:
    """A writer of `path` whose live file has passed 100 kB, and the events it flushed."""
    w = LossWriter(path, flush_secs=3600)
    n = 0
    while path.stat().st_size < 100_000:
        for i in range(n, n + 2000):
            w.add(i, value(i), "loss" if i % 10 else "val")
        n += 2000
        w.flush()
    return w, n


def test_a_close_that_cannot_fit_its_compaction_keeps_the_live_file(tiny_disk):
    path = tiny_disk / "run.arrow"
    w, n = _live_run(path)
    filler = fill(tiny_disk, 8192)  # room for flushes, not for a compacted copy
    live = path.read_bytes()
    with pytest.raises(OSError, match="No space left"):
        w.close()
    assert path.read_bytes() == live
    assert temp_files(tiny_disk) == []
    check_events(path, n)
    os.unlink(filler)
    lossfmt.compact(path)  # with room again, the run closes
    check_events(path, n)


def test_a_full_disk_at_close_and_at_compact_names_the_run_file_and_how_to_finish_it(tiny_disk):
    """close(), lossfmt.compact and `lossview compact` on a full disk named the hidden temp file ("writing
    .run.arrow.<hex>.lossfmt-tmp"), not the run file, whose events are all kept in it."""
    path = tiny_disk / "run.arrow"
    w, n = _live_run(path)
    filler = fill(tiny_disk, 4096)  # no room for a compacted copy
    live = path.read_bytes()
    full = rf"No space left on device: {re.escape(str(path))}: no room on its disk for a copy, so "
    finish = rf"`lossview compact {re.escape(str(path))}` "
    with pytest.raises(
        OSError,
        match=full + rf"close\(\) could not compact it: its {n} events are kept in the live file \(lossfmt "
        rf"reads it\); {finish}makes it a plain Arrow file once the disk has room$",
    ):
        w.close()
    with pytest.raises(
        OSError, match=full + rf"it cannot be compacted .*: left as is; {finish}once the disk"
    ):
        lossfmt.compact(path)
    cli = subprocess.run(
        [sys.executable, "-m", "lossview", "compact", str(path)], capture_output=True, text=True, timeout=120
    )
    assert cli.returncode == 1 and f"{path}: no room on its disk" in cli.stderr, cli.stderr
    assert TEMP_SUFFIX not in cli.stderr
    assert path.read_bytes() == live and temp_files(tiny_disk) == []
    os.unlink(filler)
    lossfmt.compact(path)
    check_events(path, n)


def test_a_resume_on_a_full_disk_names_the_run_file_and_tells_of_no_dropped_tail(tiny_disk, tmp_path):
    """A resume that must replace its file (a torn tail) on a full disk named the temp file, and first warned
    that it "dropped its last ... bytes" though the file was left unchanged."""
    source = tmp_path / "source.arrow"
    with LossWriter(source, flush_secs=3600) as w:
        for i in range(1000):
            w.add(i, value(i), "loss" if i % 10 else "val")
            if i % 100 == 99:
                w.flush()
        data = source.read_bytes()  # live, before close() compacts it
    path = tiny_disk / "run.arrow"
    path.write_bytes(data[:-5])  # the last flush torn
    filler = fill(tiny_disk, 0)
    with warnings.catch_warnings(record=True) as told:
        warnings.simplefilter("always")
        with pytest.raises(
            OSError,
            match=rf"No space left on device: {re.escape(str(path))}: no room on its disk for a copy, so it "
            r"cannot be resumed .*; the file is left as it is, every event kept: free space on the disk",
        ):
            LossWriter(path)
    assert [str(t.message) for t in told] == []
    assert path.read_bytes() == data[:-5] and temp_files(tiny_disk) == []
    os.unlink(filler)
    with pytest.warns(UserWarning, match="dropped its last"), LossWriter(path) as w:  # room again: resumed
        w.add(900, value(900), "val")
    check_events(path, 901)


def test_a_full_disk_during_a_recompaction_leaves_the_file_and_the_writer_going(tiny_disk):
    """The live file's rewrite (re-compaction) finds no room: the file stays the one being appended to, no
    event is lost, no temp file is left, and the rewrite happens later, once there is room."""
    path = tiny_disk / "run.arrow"
    w = LossWriter(path, flush_secs=3600)
    original = os.open(path, os.O_RDONLY)  # held open: a replacement cannot reuse its inode
    n = 0

    def slow_flushes(until: int) -> None:  # 68 events a flush: a slow training loop
        nonlocal n
        while path.stat().st_size < until:
            for i in range(n, n + 68):
                w.add(i, value(i), "loss" if i % 10 else "val", count=32, epoch=i // 1000)
            n += 68
            w.flush()
        w.flush()  # the flusher's rewrite after the last flush has ended

    try:
        slow_flushes(_recompact.FIRST_BYTES - 8192)
        filler = fill(tiny_disk, 12288)  # room for a few flushes, not for the rewritten file
        slow_flushes(_recompact.FIRST_BYTES + 2048)
        assert os.fstat(original).st_nlink == 1 and temp_files(tiny_disk) == []  # the rewrite failed
        check_events(path, n)
        os.unlink(filler)
        slow_flushes(int(path.stat().st_size * _recompact.RETRY) + 4096)
        assert os.fstat(original).st_nlink == 0  # rewritten (and renamed over the path) once there was room
        check_events(path, n)
    finally:
        os.close(original)
        w.close()
    check_events(path, n)
    assert temp_files(tiny_disk) == []


def test_a_file_made_read_only_mid_run_keeps_every_event_and_its_mode(tmp_path):
    path = tmp_path / "run.arrow"
    w = LossWriter(path, flush_secs=3600)
    w.add(0, value(0), "val")
    w.flush()
    path.chmod(0o444)
    for i in range(1, 1000):
        w.add(i, value(i), "loss" if i % 10 else "val")
    w.close()
    check_events(path, 1000)
    assert path.stat().st_mode & 0o777 == 0o444


@pytest.fixture
def read_only_later(tmp_path):
    """A directory, and a function that remounts it read-only (a read-only bind mount over it; root only)."""
    if os.geteuid() != 0:
        pytest.skip("bind mounts need root (CI runs as root)")
    directory = tmp_path / "runs"
    directory.mkdir()
    mounted = []

    def make_read_only() -> None:
        subprocess.run(["mount", "--bind", str(directory), str(directory)], check=True)
        mounted.append(directory)
        subprocess.run(["mount", "-o", "remount,bind,ro", str(directory)], check=True)

    yield directory, make_read_only
    for d in mounted:
        subprocess.run(["umount", "-l", str(d)], check=True)


def test_a_directory_made_read_only_mid_run_fails_close_and_keeps_the_live_file(read_only_later):
    directory, make_read_only = read_only_later
    path = directory / "run.arrow"
    w = LossWriter(path, flush_secs=3600)
    for i in range(1000):
        w.add(i, value(i), "loss" if i % 10 else "val")
    w.flush()
    make_read_only()
    w.add(1000, value(1000), "val")
    with pytest.raises(OSError, match="Read-only"):
        w.close()  # its last flush lands; the compacted copy cannot be created
    check_events(path, 1001)
    with pytest.raises(pa.ArrowInvalid):
        pa.ipc.open_file(path)  # still the live file, not a closed one
    assert temp_files(directory) == []


# --- files removed or replaced, racing threads ------------------------------------------------------------


def test_a_file_replaced_mid_run_is_reported_and_the_replacement_left_alone(tmp_path):
    path = tmp_path / "run.arrow"
    w = LossWriter(path, flush_secs=3600)
    w.add(0, 1.0)
    w.flush()
    other = tmp_path / "other.arrow"
    with LossWriter(other) as o:
        o.add(0, 2.0, "other")
    os.replace(other, path)
    replacement = path.read_bytes()
    w.add(1, 1.0)
    with pytest.raises(FileReplacedError, match="removed or replaced"):
        w.flush()
    w.close()
    assert path.read_bytes() == replacement


def test_a_file_removed_mid_run_is_reported_as_removed_with_what_is_lost(tmp_path):
    path = tmp_path / "run.arrow"
    w = LossWriter(path, flush_secs=3600)
    for step in range(10):
        w.add(step, 1.0)
    w.flush()
    os.unlink(path)
    for step in range(10, 5000):
        w.add(step, 1.0)  # accepted: the writer learns of the removal at its next write
    with pytest.raises(
        FileReplacedError,
        match=r"run\.arrow: the file was removed while LossWriter was writing it \(nothing is at this path "
        r"now\): the 10 events written to it, and any added since, are in no file",
    ):
        w.flush()
    w.close()
    assert not path.exists()


def test_a_file_renamed_mid_run_is_reported_as_moved_with_its_events_in_it(tmp_path):
    path, moved = tmp_path / "run.arrow", tmp_path / "kept.arrow"
    w = LossWriter(path, flush_secs=3600)
    for step in range(10):
        w.add(step, 1.0)
    w.flush()
    os.rename(path, moved)
    for step in range(10, 50):
        w.add(step, 1.0)
    with pytest.raises(
        FileReplacedError,
        match=r"run\.arrow: the file was moved or renamed while LossWriter was writing it \(nothing is at "
        r"this path now\): its 50 events so far are in it, under its new name",
    ):
        w.flush()
    w.close()
    assert lossfmt.read(moved)["step"].to_pylist() == list(range(50)) and not path.exists()


def test_sixteen_threads_adding_while_another_flushes_and_closes_lose_nothing(tmp_path):
    path = tmp_path / "run.arrow"
    w = LossWriter(path, flush_secs=0.01, max_pending=5000)
    per_thread = 5000
    added = threading.Barrier(17)

    def producer(t: int) -> None:
        for i in range(per_thread):
            w.add(t * per_thread + i, value(t * per_thread + i), f"t{t}")
        added.wait()

    threads = [threading.Thread(target=producer, args=(t,)) for t in range(16)]
    for t in threads:
        t.start()
    for _ in range(20):
        w.flush()
    added.wait()
    w.close()
    for t in threads:
        t.join()
    table = pa.ipc.open_file(path).read_all()
    assert sorted(table["step"].to_pylist()) == list(range(16 * per_thread))
    pairs = list(zip(table["tag"].to_pylist(), table["step"].to_pylist(), strict=True))
    for t in range(16):  # every thread's events, in its own order
        assert [s for tag, s in pairs if tag == f"t{t}"] == list(range(t * per_thread, (t + 1) * per_thread))


# --- live readers through a whole write + close ------------------------------------------------------------


WRITER = """
import sys
from lossfmt import LossWriter
w = LossWriter(sys.argv[1], flush_secs=0.005)
for i in range(int(sys.argv[2])):
    w.add(i, i * 0.25, "loss" if i % 10 else "val")
    if i % 5000 == 4999:
        w.flush()
w.close()
"""


def test_a_follower_and_lossview_follow_run_through_a_whole_write_and_close(tmp_path):
    path, png = tmp_path / "run.arrow", tmp_path / "out.png"
    n = 200_000
    LossWriter(path).close()  # the file exists before the watchers start
    view = subprocess.Popen(
        [sys.executable, "-m", "lossview", str(path), "--follow", "-o", str(png)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(n)])
    try:
        follower = lossfmt.follow(path)
        seen: list[int] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            done = writer.poll() is not None
            update = follower.poll()
            steps = update.table["step"].to_pylist() if update.table.num_rows else []
            if update.reset:
                seen = steps
            else:
                seen += steps
            if done and len(seen) >= n:
                break
        assert writer.wait(timeout=60) == 0
        assert seen == list(range(n))  # no duplicate, no gap, in order
        final = follower.poll()
        assert final.table.num_rows == 0 or (final.reset and final.table.num_rows == n)
    finally:
        writer.kill()
        writer.wait()
        # The first PNG is drawn inside lossview's signal handlers: until then SIGTERM kills it (rc -15).
        ready = time.monotonic() + 60
        while not (png.exists() and png.stat().st_size) and view.poll() is None and time.monotonic() < ready:
            time.sleep(0.05)
        view.send_signal(signal.SIGTERM)
        _, err = view.communicate(timeout=60)
    assert view.returncode == 0, err
    assert "Traceback" not in err
    assert png.exists() and png.stat().st_size > 0
