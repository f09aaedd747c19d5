"""The resources of one open writer (its live file and flusher thread) and their release: start, close.

`lossfmt._writer.LossWriter` holds one `Run`; the `Run` holds no reference to the writer, so a writer dropped
without close() is still finalized (flushed and compacted) by its weakref finalizer.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from lossfmt import _checks, _recompact, _rows, _signals
from lossfmt import schema as s
from lossfmt._file import LiveFile
from lossfmt._flusher import Flusher

__all__ = ["Run"]


class Run:
    """The resources of one open writer: the file and its flusher. Holds no reference to the LossWriter, so
    a writer dropped without close() is still finalized (flushed and compacted) by its weakref finalizer."""

    def __init__(self, file: LiveFile, flusher: Flusher, name: str, run_id: str | None) -> None:
        self.file, self.flusher, self.name, self.run_id = file, flusher, name, run_id
        self.pid = os.getpid()
        self.finished = False
        self._closing = threading.RLock()  # (reentrant: a close_on_signal handler on the closing thread)
        #: Called once the file is closed (compacted, unlocked), e.g. to unregister its signal handler.
        self.on_closed: Callable[[], None] | None = None

    @classmethod
    def start(
        cls,
        file: LiveFile,
        new_name: str,
        pending: list[Any],
        on_error: Callable[[BaseException], None],
        *,
        flush_secs: float,
        max_pending: int,
    ) -> Run:
        """Start the flusher of the opened `file`, which drains `pending`. A failure releases everything taken
        (thread, flock, descriptor): the next writer on this path must work."""
        flusher = None
        try:
            info = s.run_info(file.schema)
            flusher = Flusher(
                pending,
                _rows.Encoder(file.schema, file.path, file.resumed),
                file.write_batch,
                on_error,
                between=_recompact.Recompaction(file).after_flush,
                flush_secs=flush_secs,
                max_pending=max_pending,
                name=f"lossfmt-flusher[{file.path.name}]",
            )
            # A file with only the metadata the spec requires: named as a new run; no run_id is invented.
            return cls(file, flusher, info.get("run") or new_name, info.get("run_id"))
        except BaseException:
            try:
                if flusher is not None:
                    flusher.stop()
            finally:
                file.close(compact=False)
            raise

    @property
    def done(self) -> bool:
        """Closed for good: False before close(), and after a close() cut short while it compacted."""
        return self.finished and not self.file.cut

    def close(self) -> None:
        """Stop the flusher, write the last rows, compact, unlock. Idempotent: a close() called meanwhile (in
        another thread) returns once this one has closed the file; one called after a close() that Ctrl-C cut
        short as it compacted compacts again. A no-op in a forked child."""
        if os.getpid() != self.pid:
            return
        flusher = self.flusher
        if flusher.is_own_thread():  # a finalizer run by a collection on the flusher thread: it cannot stop
            threading.Thread(target=self.close, name="lossfmt-close", daemon=False).start()  # itself
            return
        with _signals.critical, self._closing:  # a SIGTERM meanwhile is handled once the file is closed
            if self.finished:
                if self.file.cut:  # (the cut close() raised before it could say of unreadable values)
                    self._close_file(compact=True)
                    flusher.encoder.raise_unread()
                return
            self.finished = True
            try:
                flusher.stop()
            finally:
                # Never close a descriptor the flusher may still write to (a join cut short): it stays open.
                self._close_file(compact=flusher.error is None, file=not flusher.running)
            if not flusher.reported:
                flusher.raise_error()
            elif flusher.error is not None:
                _checks.warn_left_live(self.file.path, flusher.error)
            flusher.encoder.raise_unread()

    def _close_file(self, *, compact: bool, file: bool = True) -> None:
        path, rows = self.file.path, self.file.rows
        kept, full = _checks.kept_live(path, rows), _checks.kept_live(path, rows, "the disk has room")
        try:
            if file:
                with _checks.unwritable_directory(path, kept, full=full):
                    self.file.close(compact=compact)
        finally:
            # (a signal meanwhile found this writer to wait for)
            if self.on_closed is not None and not self.file.cut:
                on_closed, self.on_closed = self.on_closed, None
                on_closed()
