"""close_on_signal: SIGTERM/SIGINT close the writer, then the signal goes on; and what a plain script gets."""

from __future__ import annotations

import importlib.util
import signal
import subprocess
import sys
import textwrap
import threading
import warnings

import pyarrow as pa
import pytest

import lossfmt
from lossfmt import LossWriter

CHILD = textwrap.dedent(
    """
    import signal, sys, time
    from lossfmt import LossWriter

    path, option, before = sys.argv[1], sys.argv[2] == "on", sys.argv[3]
    if before == "exit7":
        def previous(signum, frame):
            print("previous handler ran", flush=True)
            sys.exit(7)
        signal.signal(signal.SIGTERM, previous)
    w = LossWriter(path, flush_secs=3600, close_on_signal=option)
    for i in range(1000):
        w.add(i, i / 2, epoch=i // 100)
        if i == 599:
            w.flush()
    try:
        print("ready", flush=True)  # 600 events flushed, 400 pending in memory
        time.sleep(120)
    except KeyboardInterrupt:
        print("KeyboardInterrupt", flush=True)
        sys.exit(130)
    """
)


def _signal_child(path, sig: int, *, option: bool, before: str = "") -> subprocess.CompletedProcess[str]:
    """Run CHILD, send it `sig` once it has added its events, and return how it ended."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), "on" if option else "off", before or "-"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
        proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _closed_steps(path) -> list[int]:
    """The steps of a closed (footer'd) file, read by pyarrow's file reader alone."""
    return pa.ipc.open_file(path).read_all()["step"].to_pylist()


def test_sigterm_closes_the_writer_and_the_process_still_dies_by_it(tmp_path):
    path = tmp_path / "run.arrow"
    done = _signal_child(path, signal.SIGTERM, option=True)
    assert done.returncode == -signal.SIGTERM, done.stderr
    assert _closed_steps(path) == list(range(1000))  # every event added before the signal, compacted


SIGNAL_INSIDE = textwrap.dedent(
    """
    import os, signal, sys
    from lossfmt import LossWriter

    w = LossWriter(sys.argv[1], flush_secs=3600, close_on_signal=True)
    for i in range(100):
        w.add(i, 1.0)
    cond = w._flusher._cond
    wait = cond.wait
    def signalled_wait(timeout=None):  # the SIGTERM arrives while flush() holds the flusher's lock
        os.kill(os.getpid(), signal.SIGTERM)
        return wait(timeout)
    cond.wait = signalled_wait
    w.flush()
    print("not reached: the process ends by the signal once flush() let go of the lock", flush=True)
    """
)


def test_a_signal_while_flush_holds_the_writer_s_lock_closes_it_once_released(tmp_path):
    path = tmp_path / "run.arrow"
    try:
        done = subprocess.run(
            [sys.executable, "-c", SIGNAL_INSIDE, str(path)], capture_output=True, text=True, timeout=30
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the handler waited for a lock its own thread held: the process hung")
    assert done.returncode == -signal.SIGTERM, done.stderr
    assert done.stdout == ""
    assert _closed_steps(path) == list(range(100))


def test_sigint_closes_the_writer_then_raises_keyboard_interrupt(tmp_path):
    path = tmp_path / "run.arrow"
    done = _signal_child(path, signal.SIGINT, option=True)
    assert (done.returncode, done.stdout.strip()) == (130, "KeyboardInterrupt"), done.stderr
    assert _closed_steps(path) == list(range(1000))


def test_sigterm_runs_the_handler_installed_before(tmp_path):
    path = tmp_path / "run.arrow"
    done = _signal_child(path, signal.SIGTERM, option=True, before="exit7")
    assert (done.returncode, done.stdout.strip()) == (7, "previous handler ran"), done.stderr
    assert _closed_steps(path) == list(range(1000))


def test_without_the_option_sigterm_keeps_only_the_flushed_events(tmp_path):
    """The default, as the README says: the events since the last flush are lost, the flushed ones kept."""
    path = tmp_path / "run.arrow"
    done = _signal_child(path, signal.SIGTERM, option=False)
    assert done.returncode == -signal.SIGTERM
    assert lossfmt.read(path)["step"].to_pylist() == list(range(600))


def test_a_signal_in_process_closes_the_writer_and_calls_the_previous_handler(tmp_path):
    calls = []

    def previous(signum, frame):
        calls.append(signum)

    old = signal.signal(signal.SIGTERM, previous)
    try:
        w = LossWriter(tmp_path / "run.arrow", flush_secs=3600, close_on_signal=True)
        w.add(0, 1.0)
        w.add(1, 2.0, "val", count=4)
        signal.raise_signal(signal.SIGTERM)
        assert calls == [signal.SIGTERM] and w.closed
        assert signal.getsignal(signal.SIGTERM) is previous  # restored: the only writer closed
        with pytest.raises(lossfmt.WriterClosedError):
            w.add(2, 3.0)
    finally:
        signal.signal(signal.SIGTERM, old)
    assert _closed_steps(tmp_path / "run.arrow") == [0, 1]


def test_handlers_are_installed_by_the_first_writer_and_restored_when_the_last_closes(tmp_path):
    sigs = (signal.SIGTERM, signal.SIGINT)
    before = [signal.getsignal(s) for s in sigs]
    plain = LossWriter(tmp_path / "plain.arrow")
    assert [signal.getsignal(s) for s in sigs] == before  # opt-in only
    a = LossWriter(tmp_path / "a.arrow", close_on_signal=True)
    ours = signal.getsignal(signal.SIGTERM)
    assert ours is not before[0] and signal.getsignal(signal.SIGINT) is ours
    b = LossWriter(tmp_path / "b.arrow", close_on_signal=True)
    a.close()
    assert signal.getsignal(signal.SIGTERM) is ours  # b still needs it
    b.close()
    plain.close()
    assert [signal.getsignal(s) for s in sigs] == before


def test_a_handler_installed_after_ours_is_left_in_place(tmp_path):
    old = signal.getsignal(signal.SIGTERM)
    w = LossWriter(tmp_path / "run.arrow", close_on_signal=True)
    ours = signal.getsignal(signal.SIGTERM)
    calls = []

    def later(signum, frame):
        calls.append(signum)
        ours(signum, frame)  # chains to ours, which chains to the default: not raised here

    signal.signal(signal.SIGTERM, later)
    try:
        w.close()
        assert signal.getsignal(signal.SIGTERM) is later
        signal.signal(signal.SIGTERM, ours)  # `later` removed: ours is active again, and restored at the end
        LossWriter(tmp_path / "again.arrow", close_on_signal=True).close()
        assert signal.getsignal(signal.SIGTERM) is old
    finally:
        signal.signal(signal.SIGTERM, old)


def test_outside_the_main_thread_the_option_warns_and_the_writer_still_works(tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    caught: list[warnings.WarningMessage] = []
    steps: list[int] = []

    def open_in_thread() -> None:
        with warnings.catch_warnings(record=True) as got:
            warnings.simplefilter("always")
            with LossWriter(tmp_path / "run.arrow", close_on_signal=True) as w:
                w.add(0, 1.0)
        caught.extend(got)
        steps.extend(lossfmt.read(tmp_path / "run.arrow")["step"].to_pylist())

    t = threading.Thread(target=open_in_thread)
    t.start()
    t.join()
    assert [w.category for w in caught] == [RuntimeWarning]
    assert "main thread" in str(caught[0].message)
    assert signal.getsignal(signal.SIGTERM) is before and steps == [0]


def test_the_integrations_turn_the_option_on(tmp_path):
    pytest.importorskip("torch")
    from lossfmt.integrations.torch_distributed import rank_writer

    before = signal.getsignal(signal.SIGTERM)
    w = rank_writer(tmp_path / "run.rank{rank}.arrow", rank=0, world_size=1)
    assert signal.getsignal(signal.SIGTERM) is not before
    w.close()
    assert signal.getsignal(signal.SIGTERM) is before
    with rank_writer(tmp_path / "off.rank{rank}.arrow", rank=0, world_size=1, close_on_signal=False):
        assert signal.getsignal(signal.SIGTERM) is before
    if importlib.util.find_spec("lightning") is not None:
        from lossfmt.integrations.lightning import LossfmtLogger

        logger = LossfmtLogger(tmp_path / "lightning.arrow")
        logger.log_metrics({"loss": 1.0}, step=0)
        assert signal.getsignal(signal.SIGTERM) is not before
        logger.finalize("success")
        assert signal.getsignal(signal.SIGTERM) is before
