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


def test_ctrl_c_while_close_waits_for_the_flusher_never_closes_the_file_under_it(tmp_path):
    """A KeyboardInterrupt in close()'s wait for the flusher thread closed the descriptor while the thread
    still wrote: its batches went to whatever file reused the descriptor (a checkpoint), or were lost. Now
    the interrupt is raised once the thread has ended, with every event in the closed file."""
    path = tmp_path / "run.arrow"
    w = LossWriter(path, flush_secs=3600)
    for step in range(N):
        w.add(step, float(step))
    flusher = w._flusher
    writing, write = threading.Event(), flusher._write_batch

    def slow_write(batch: pa.RecordBatch) -> None:  # the thread is writing when the interrupt comes
        writing.set()
        time.sleep(0.3)
        write(batch)

    flusher._write_batch = slow_write  # type: ignore[method-assign]
    thread, joins = flusher._thread, []
    join = thread.join

    def interrupted_join(timeout: float | None = None) -> None:
        joins.append(timeout)
        if len(joins) == 1:
            assert writing.wait(10)
            raise KeyboardInterrupt  # what Ctrl-C does to a join on the main thread
        join(timeout)

    thread.join = interrupted_join  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        w.close()
    assert not thread.is_alive() and len(joins) >= 2
    assert _closed_steps(path) == list(range(N))


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
