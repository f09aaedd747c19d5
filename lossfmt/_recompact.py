"""Re-compaction of a live file while its run goes on: when it pays, and what a failure leaves.

A flush of a few dozen events (a slow training step, `flush_secs=1`) repeats a few hundred bytes of message
metadata and compresses poorly on its own: such a live file is about 3x its closed size. Between flushes, on
the flusher thread, `Recompaction.after_flush` has the file rewritten with the same events in the same order
in large batches (`_compact.recompact`) and renamed over the path (`LiveFile.replace_by`), still live, once
it is `RATIO` times what its events took after the last rewrite (spec/FORMAT.md §1.3). The file must grow by
a fixed fraction of that compacted size before the next rewrite, so a run's rewrites cost O(its final size)
in all. A run whose flushes are large (`SMALL_FLUSH` rows or more on average) is never rewritten: its live
file is about as small as its closed one.
"""

from __future__ import annotations

import os

from lossfmt import _compact
from lossfmt._errors import FileReplacedError, LossFormatError
from lossfmt._file import LiveFile
from lossfmt._locking import changed_outside

__all__ = ["FIRST_BYTES", "RATIO", "Recompaction"]

#: Rewrite once the file is this many times the bytes per event of its last rewrite (re-compacted size).
#: The live file then stays within 1.0-1.3x of that; the closer to 1, the more often it is rewritten.
RATIO = 1.3
#: Files below this size are never rewritten (what they would save is a few disk blocks).
FIRST_BYTES = 64 << 10
#: Flushes of this many rows on average leave little to gain: such a run is not rewritten.
SMALL_FLUSH = 4096
#: After a failed rewrite (a full disk, a read-only directory) the next try waits for the file to grow by
#: this factor: the writer goes on appending, and the failed tries also cost O(the final size).
RETRY = 1.25


class Recompaction:
    """When `file` is rewritten; `after_flush` is the flusher's hook between flushes."""

    def __init__(self, file: LiveFile) -> None:
        self.file = file
        #: Bytes per event of the file as last rewritten (committed or not); None before the first try.
        self.bytes_per_event: float | None = None
        self.floor: float = FIRST_BYTES  # no try below this size
        self.rewrites = 0  # committed rewrites
        self._rows_before = file.rows  # the file's rows when its flushes began to be counted

    def due(self) -> bool:
        """The file is large, made of small flushes, and `RATIO` times its size when last rewritten."""
        file = self.file
        flushed = file.rows - self._rows_before
        if file.size < self.floor or not file.flushes or flushed >= SMALL_FLUSH * file.flushes:
            return False
        return self.bytes_per_event is None or file.size > RATIO * self.bytes_per_event * file.rows

    def after_flush(self) -> None:
        """Rewrite the file if `due()`. A failure to write the new file leaves the file as it was and the
        writer appending (tried again later); FileReplacedError if the file is not this writer's any more,
        LossFormatError if it was changed from outside (the flusher's error: it is written no more)."""
        if not self.due():
            return
        file, size = self.file, self.file.size
        file.check_identity()
        try:
            temp, seed = _compact.recompact(
                file.target, file.header, file.dictionaries, expect_rows=file.rows, end=size, name=file.path
            )
        except LossFormatError as exc:  # its events do not read back as written: damaged from outside
            file.check_identity()  # (truncated or overwritten: it says so)
            raise changed_outside(file.path, "events that do not read back as written", file.rows, 0) from exc
        except FileReplacedError:
            raise
        except OSError:
            self.floor = size * RETRY
            return
        new_size = os.fstat(temp.fd).st_size
        self.bytes_per_event = new_size / file.rows
        if new_size * RATIO > size:  # the file is about as small as it gets: keep it
            temp.discard()
            return
        try:
            file.replace_by(temp, seed)
        except FileReplacedError:
            raise
        except OSError:
            self.floor = size * RETRY
            return
        self._rows_before = file.rows
        self.rewrites += 1
