"""close() against other threads and interrupts: a second close(), Ctrl-C while the last rows are written,
and a signal that arrives while another writer's file is being opened or released (found by a fault attack).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
import time

import pyarrow as pa
import pytest

from lossfmt import LossWriter

N = 50_000


def _closed_steps(path) -> list[int]:
    """The steps of a closed (footer'd) file, read by pyarrow's file reader alone."""
    return pa.ipc.open_file(path).read_all()["step"].to_pylist()


def test_a_close_called_while_another_thread_closes_returns_once_the_file_is_closed(tmp_path):
    """The second close() returned at once (the first had only begun): the program went on, or exited, with
    the file live, locked and short of events (10 of 10 runs of a daemon-thread close lost events)."""
    path = tmp_path / "run.arrow"
    w = LossWriter(path, flush_secs=3600)
    for step in range(N):
        w.add(step, float(step))
    inside = threading.Event()
    stop = w._flusher.stop

    def slow_stop() -> None:  # the first close() is inside stop() when the second one is called
        inside.set()
        time.sleep(0.3)
        stop()

    w._flusher.stop = slow_stop  # type: ignore[method-assign]
    first = threading.Thread(target=w.close)
    first.start()
    assert inside.wait(10)
    w.close()
    assert _closed_steps(path) == list(range(N))  # closed, every event in, before the second returned
    first.join()
    with LossWriter(path):  # and unlocked
        pass


CTRL_C_IN_CLOSE = textwrap.dedent(
    """
    import sys, time
    from lossfmt import LossWriter

    w = LossWriter(sys.argv[1], flush_secs=3600, max_pending=10**8)
    for step in range(int(sys.argv[2])):
        w.add(step, float(step))
    write = w._flusher._write_batch
    def slow_write(batch):  # the flusher is still writing when the Ctrl-C comes
        print("writing", flush=True)
        time.sleep(0.5)
        write(batch)
    w._flusher._write_batch = slow_write
    try:
        w.close()
        print("close returned", flush=True)
    except KeyboardInterrupt:
        with open(sys.argv[1] + ".ckpt", "wb") as f:  # a descriptor closed under the flusher is reused here
            f.write(b"c" * 1_000_000)
        print("KeyboardInterrupt", flush=True)
    """
)


def test_ctrl_c_while_close_waits_for_the_flusher_never_closes_the_file_under_it(tmp_path):
    """A real Ctrl-C in close()'s wait for the flusher thread closed the descriptor while the thread still
    wrote (on CPython <= 3.12 an interrupted join() even reports the thread ended): batches went to the file
    that reused the descriptor (a checkpoint), events were lost or doubled. Now the interrupt is raised once
    the thread has ended, with every event in the closed file."""
    path = tmp_path / "run.arrow"
    child = subprocess.Popen(
        [sys.executable, "-c", CTRL_C_IN_CLOSE, str(path), str(N)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "writing"
    time.sleep(0.1)
    child.send_signal(signal.SIGINT)  # Python's default handler: KeyboardInterrupt on the main thread
    out, _ = child.communicate(timeout=120)
    assert out.strip() == "KeyboardInterrupt"
    assert _closed_steps(path) == list(range(N))
    assert (tmp_path / "run.arrow.ckpt").read_bytes() == b"c" * 1_000_000


SIGNAL_IN_OPEN = textwrap.dedent(
    """
    import os, signal, sys
    from lossfmt import LossWriter

    w = LossWriter(sys.argv[1], flush_secs=3600, close_on_signal=True)
    for i in range(100):
        w.add(i, 1.0)
    real = os.open
    def signalled_open(*args, **kwargs):  # the SIGTERM arrives while lossfmt holds its descriptor lock
        os.open = real
        os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)
    os.open = signalled_open
    LossWriter(sys.argv[2])  # opening another writer
    print("not reached: the process ends by the signal once the open let go of the lock", flush=True)
    """
)


def test_a_signal_while_another_writer_is_opened_closes_the_first_and_ends_the_process(tmp_path):
    """The handler's close() waited for the descriptor lock the interrupted open held: a hang (about 4% of
    SIGTERMs in a loop of opens), and a scheduler's SIGKILL then lost the pending events."""
    path = tmp_path / "run.arrow"
    try:
        done = subprocess.run(
            [sys.executable, "-c", SIGNAL_IN_OPEN, str(path), str(tmp_path / "aux.arrow")],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the handler waited for a lock its own thread held: the process hung")
    assert done.returncode == -signal.SIGTERM, done.stderr
    assert done.stdout == ""
    assert _closed_steps(path) == list(range(100))


def _child(code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-c", textwrap.dedent(code), *args]
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail("the process hung")


def test_sigterm_while_another_thread_compacts_waits_for_the_closed_file(tmp_path):
    """The writer was unregistered when its flusher stopped, before compaction: a SIGTERM then found no
    writer to wait for and killed the process mid-compaction, the file left live (5 of 5 runs)."""
    path = tmp_path / "run.arrow"
    done = _child(
        """
        import os, signal, sys, threading, time
        from lossfmt import LossWriter
        w = LossWriter(sys.argv[1], flush_secs=3600, close_on_signal=True)
        for step in range(200_000):
            w.add(step, float(step))
        w.flush()
        compact = w._run.file.close
        def signalled_close(*args, **kwargs):  # the SIGTERM arrives as the other thread begins compacting
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.2)
            return compact(*args, **kwargs)
        w._run.file.close = signalled_close
        worker = threading.Thread(target=w.close)
        worker.start()
        worker.join()
        time.sleep(1)
        print("not reached: the process ends by the signal once the file is closed", flush=True)
        """,
        str(path),
    )
    assert done.returncode == -signal.SIGTERM, done.stderr
    assert _closed_steps(path) == list(range(200_000))


def test_a_close_begun_in_a_daemon_thread_completes_before_the_program_exits(tmp_path):
    """close() detached the exit finalizer before it began: a program ending meanwhile killed the daemon
    thread mid-close, the file left live with most events lost (9 of 9 runs)."""
    path = tmp_path / "run.arrow"
    done = _child(
        """
        import sys, threading, time
        from lossfmt import LossWriter
        w = LossWriter(sys.argv[1], flush_secs=3600)
        for step in range(300_000):
            w.add(step, float(step))
        threading.Thread(target=w.close, daemon=True).start()
        time.sleep(0.001)
        """,
        str(path),
    )
    assert done.returncode == 0, done.stderr
    assert _closed_steps(path) == list(range(300_000))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_the_last_writers_close_reaches_the_handler_installed_before(tmp_path, signum):
    """A signal deferred while the last close_on_signal writer closed was passed on after close() had
    restored the handlers: to the default action, so the user's SIGTERM handler never ran and SIGINT
    killed the process instead of raising KeyboardInterrupt."""
    path = tmp_path / "run.arrow"
    done = _child(
        """
        import os, signal, sys
        from lossfmt import LossWriter
        signum = int(sys.argv[2])
        if signum == signal.SIGTERM:
            signal.signal(signum, lambda *a: print("user handler", flush=True))
        w = LossWriter(sys.argv[1], flush_secs=3600, close_on_signal=True)
        for step in range(100):
            w.add(step, 1.0)
        stop = w._flusher.stop
        def signalled_stop():  # arrives inside close(): deferred until it ends
            os.kill(os.getpid(), signum)
            stop()
        w._flusher.stop = signalled_stop
        try:
            w.close()
            print("closed", flush=True)
        except KeyboardInterrupt:
            print("KeyboardInterrupt", flush=True)
        """,
        str(path),
        str(int(signum)),
    )
    assert done.returncode == 0, done.stderr
    expected = ["user handler", "closed"] if signum == signal.SIGTERM else ["KeyboardInterrupt"]
    assert done.stdout.split("\n")[:-1] == expected
    assert _closed_steps(path) == list(range(100))


def test_a_signal_while_a_writer_registers_does_not_wait_for_another_threads_close(tmp_path):
    """The handler, run inside register() (which held the signal module's lock), waited for a close in
    another thread, whose unregistering waited for that lock: a hang."""
    done = _child(
        """
        import os, signal, sys, threading, time
        import lossfmt._signals as signals
        from lossfmt import LossWriter
        w1 = LossWriter(sys.argv[1], flush_secs=3600, close_on_signal=True)
        for step in range(300_000):
            w1.add(step, float(step))
        worker = threading.Thread(target=w1.close)
        worker.start()
        time.sleep(0.01)  # the worker is inside w1.close()
        install = signals._install
        def signalled_install():  # the SIGTERM arrives while register() holds the module's lock
            signals._install = install
            os.kill(os.getpid(), signal.SIGTERM)
            install()
        signals._install = signalled_install
        LossWriter(sys.argv[2], close_on_signal=True)
        print("not reached", flush=True)
        """,
        str(tmp_path / "w1.arrow"),
        str(tmp_path / "w2.arrow"),
        timeout=30,
    )
    assert done.returncode == -signal.SIGTERM, done.stderr
    assert _closed_steps(tmp_path / "w1.arrow") == list(range(300_000))


def test_a_writer_dropped_in_a_cycle_and_collected_on_the_flusher_thread_is_still_closed(tmp_path):
    """The finalizer ran on the flusher thread (a garbage collection there) and waited for that thread to
    end: the process exited with the file live and every pending event lost (4 of 60 runs, no error)."""
    path = tmp_path / "run.arrow"
    done = _child(
        """
        import gc, sys, time
        from lossfmt import LossWriter
        w = LossWriter(sys.argv[1], flush_secs=0.2)
        for step in range(20_000):
            w.add(step, float(step))
        class Trainer:
            pass
        t = Trainer()
        t.self, t.w = t, w  # a young cycle holding the writer
        del w, t
        junk = []
        while gc.get_count()[0] < gc.get_threshold()[0] - 5:
            junk.append([])  # the next allocations, the flusher's, collect the cycle on its thread
        time.sleep(1.5)
        """,
        str(path),
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert _closed_steps(path) == list(range(20_000))


def test_two_signals_in_one_close_are_both_handled(tmp_path):
    """Only the first signal deferred in a critical stretch was handled: a SIGTERM after a SIGINT was
    swallowed (the process went on instead of dying by it)."""
    path = tmp_path / "run.arrow"
    done = _child(
        """
        import os, signal, sys
        from lossfmt import LossWriter
        w = LossWriter(sys.argv[1], flush_secs=3600, close_on_signal=True)
        for step in range(100):
            w.add(step, 1.0)
        stop = w._flusher.stop
        def signalled_stop():
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGTERM)
            stop()
        w._flusher.stop = signalled_stop
        try:
            w.close()
        except KeyboardInterrupt:
            pass
        print("not reached: the SIGTERM ends the process", flush=True)
        """,
        str(path),
    )
    assert done.returncode == -signal.SIGTERM and done.stdout == "", done.stderr
    assert _closed_steps(path) == list(range(100))


def test_a_signal_inside_register_leaves_no_writer_registered(tmp_path):
    """The deferred handler closed the writer before LossWriter kept its release: it stayed registered and
    lossfmt's handler was never restored."""
    done = _child(
        """
        import os, signal, sys
        import lossfmt._signals as signals
        from lossfmt import LossWriter
        calls = []
        signal.signal(signal.SIGTERM, lambda *a: calls.append(a[0]))
        first = LossWriter(sys.argv[1] + ".first", close_on_signal=True)  # lossfmt's handler installed
        install = signals._install
        def signalled_install():
            signals._install = install
            os.kill(os.getpid(), signal.SIGTERM)
            install()
        signals._install = signalled_install
        w = LossWriter(sys.argv[1], close_on_signal=True)
        closed = w.closed
        first.close()
        ours = signal.getsignal(signal.SIGTERM) is signals._handle
        print(closed, len(calls), len(signals._closers), ours)
        """,
        str(tmp_path / "run.arrow"),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "1", "0", "False"]


CTRL_C_IN_COMPACTION = textwrap.dedent(
    """
    import os, signal, sys
    import lossfmt._file
    from lossfmt import LossWriter

    w = LossWriter(sys.argv[1], flush_secs=3600)
    for step in range(int(sys.argv[2])):
        w.add(step, float(step))
    write = lossfmt._file._write_rebatched
    def interrupted(*args):  # a real Ctrl-C (Python's default handler) while close() compacts
        lossfmt._file._write_rebatched = write
        os.kill(os.getpid(), signal.SIGINT)
        return write(*args)
    lossfmt._file._write_rebatched = interrupted
    try:
        w.close()
    except KeyboardInterrupt:
        print("KeyboardInterrupt", flush=True)
    if sys.argv[3] == "again":
        w.close()
        print("closed" if w.closed else "open", flush=True)
    """
)


@pytest.mark.parametrize("then", ["again", "exit"])
def test_ctrl_c_while_close_compacts_leaves_a_close_to_finish(tmp_path, then):
    """A Ctrl-C during close()'s compaction left the file live for good: the writer counted as closed, so a
    second close() (or the exit) did nothing, and pandas, Polars and pyarrow could not open the run. Now the
    writer keeps its file locked and whole, and close() called again, or the program's exit, compacts it."""
    path = tmp_path / "run.arrow"
    child = subprocess.run(
        [sys.executable, "-c", CTRL_C_IN_COMPACTION, str(path), str(N), then],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == 0, child.stderr
    expected = "KeyboardInterrupt\nclosed" if then == "again" else "KeyboardInterrupt"
    assert child.stdout.strip() == expected
    assert _closed_steps(path) == list(range(N))
    assert [p.name for p in tmp_path.iterdir()] == ["run.arrow"]  # no temp file left beside it
    with LossWriter(path):  # and unlocked
        pass
