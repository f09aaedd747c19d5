"""The flusher thread: at least every `flush_secs` it turns the pending rows into one record batch and has the
file append it, so a reader (or a crash) sees every flushed event.

It gets what it needs, not the writer: the pending list (producers append to it without a lock: list.append
is atomic under the GIL), the row encoder, the function that appends a batch to the file, what to do between
flushes (the file's re-compaction, `_recompact`), and an error callback. An error in the thread is kept and
raised on the caller's next call; it is never swallowed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from lossfmt._rows import Encoder
from lossfmt._signals import critical

__all__ = ["Flusher"]


class Flusher:
    """The background thread that drains `pending` into the file; `flush()` and `stop()` are its contract."""

    def __init__(
        self,
        pending: list[Any],
        encoder: Encoder,
        write_batch: Callable[[pa.RecordBatch], None],
        on_error: Callable[[BaseException], None],
        *,
        between: Callable[[], None] | None = None,
        flush_secs: float,
        max_pending: int,
        name: str,
    ) -> None:
        self.pending = pending  # packed plain events (bytes) and full tuples, see lossfmt._rows
        self.encoder = encoder
        self.flush_secs = flush_secs
        self.max_pending = max_pending
        self.error: BaseException | None = None
        self.reported = False  # the error was raised to the user (close() then doesn't raise it again)
        self._write_batch = write_batch
        self._between = between
        self._on_error = on_error
        self._cond = threading.Condition()
        self._wake = threading.Event()
        self._requested = 0
        self._done = 0
        self._stopping = False
        #: Set once stop() returned or failed: no row appended after that is ever written.
        self.stopped = threading.Event()
        #: Called on this thread after each drain of `pending` (the writer re-arms its early wake-up).
        self.on_drain: Callable[[], None] | None = None
        #: Set by the thread as it ends. Not Thread.is_alive(): on CPython <= 3.12 a KeyboardInterrupt in
        #: join() leaves is_alive() False while the thread still runs.
        self._ended = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # Called from the writer's threads.

    def overflow(self) -> None:
        """Wake the flusher early; block while `max_pending` rows are pending (backpressure, never a drop)."""
        with critical:  # a signal handler closing the writer meanwhile would wait for these locks
            if not self._wake.is_set():
                self._wake.set()
            if len(self.pending) < self.max_pending:
                return
            with self._cond:
                while len(self.pending) >= self.max_pending and self.error is None and self.running:
                    self._wake.set()
                    self._cond.wait(1.0)
        self.raise_error()

    def flush(self) -> None:
        """Return once every row pending at the call is written to the file (or raise the thread's error,
        or the encoder's UnreadableValueError for rows dropped as unreadable)."""
        with critical, self._cond:
            self._requested += 1
            ticket = self._requested
            self._wake.set()
            while self._done < ticket and self.error is None and self.running:
                self._cond.wait(1.0)
        self.raise_error()
        with critical:
            self.encoder.raise_unread()

    def raise_error(self) -> None:
        """Raise the thread's error, if any (every call does: the writer cannot continue after it)."""
        if self.error is not None:
            self.reported = True
            raise self.error

    def stop(self) -> None:
        """Stop the thread and write the rows added meanwhile; a thread's error stays in `error`.

        An error of that last write is raised here and kept in `error` too (then the file is not compacted).
        A KeyboardInterrupt while waiting for the thread is raised once it has ended, never while it writes.
        """
        interrupted: BaseException | None = None
        try:
            with self._cond:
                self._stopping = True
                self._wake.set()
            while not self._ended.is_set():
                try:
                    self._ended.wait()
                except KeyboardInterrupt as exc:  # Ctrl-C in close(): the thread is still writing; end first
                    interrupted = exc
            try:
                self._thread.join()  # (it has ended its work: only its last bytecodes are left)
            except KeyboardInterrupt as exc:
                interrupted = exc
            if self.error is None:
                try:
                    self.write_pending()  # rows added by other threads while the thread stopped
                except BaseException as exc:
                    self.error, self.reported = exc, True
                    raise
        finally:
            self.stopped.set()
        if interrupted is not None:
            raise interrupted

    def is_own_thread(self) -> bool:
        """Whether the caller is the flusher thread (a finalizer a garbage collection runs on it)."""
        return threading.current_thread() is self._thread

    @property
    def running(self) -> bool:
        """Whether the thread may still write (a `stop` cut short before it ended)."""
        return not self._ended.is_set()

    # The thread.

    def _run(self) -> None:
        try:
            while True:
                self._wake.wait(self.flush_secs)
                self._wake.clear()
                with self._cond:
                    ticket, stopping = self._requested, self._stopping
                self.write_pending()
                with self._cond:
                    self._done = ticket
                    self._cond.notify_all()
                if stopping:
                    return
                if self._between is not None:  # after flush() callers were released: they never wait for it
                    self._between()
        except BaseException as exc:
            self.error = exc
            self._on_error(exc)
            with self._cond:
                self._cond.notify_all()
        finally:
            self._ended.set()

    def write_pending(self) -> None:
        """Write the rows pending now as one record batch."""
        n = len(self.pending)
        if not n:
            return
        # Converted in place, not from a copy: a young list of n rows would be traversed by every garbage
        # collection the producer's allocations trigger meanwhile (measured: 100-200 ns per event).
        batch = self.encoder.batch(self.pending, n)
        del self.pending[:n]
        if self.on_drain is not None:
            self.on_drain()
        with self._cond:
            self._cond.notify_all()  # unblock producers waiting in overflow()
        if batch.num_rows:  # (none when every event's value was unreadable: the encoder kept their errors)
            self._write_batch(batch)
