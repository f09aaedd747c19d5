"""The exception tree: one base users can catch, and specific errors that also inherit the builtin a caller
might already catch (so adding a subclass never breaks an existing ``except ValueError``)."""

from __future__ import annotations

__all__ = [
    "FileReplacedError",
    "LossFormatError",
    "LossfmtError",
    "NoSuchFileError",
    "UnreadableValueError",
    "WriterBusyError",
    "WriterClosedError",
    "corrupt",
]


class LossfmtError(Exception):
    """Base of every error lossfmt raises on purpose; the message names the file and what to do."""


class LossFormatError(LossfmtError, ValueError):
    """A file is not a readable lossfmt file (foreign, corrupt, or of an unsupported version)."""

    #: For damage found in a file's messages: the byte offset of the damaged message (the verified prefix
    #: ends there at the latest); None otherwise.
    offset: int | None = None


def corrupt(name: str, pos: int, what: str) -> LossFormatError:
    """The error for damage at byte `pos` of the file `name`, with `offset` set to `pos`."""
    exc = LossFormatError(f"{name}: corrupt at byte {pos}: {what}")
    exc.offset = pos
    return exc


class NoSuchFileError(LossFormatError, FileNotFoundError):
    """A path or URL to read does not exist (an ``except FileNotFoundError`` catches it too)."""


class WriterBusyError(LossfmtError, RuntimeError):
    """Another LossWriter (in this or another process) holds the file."""


class WriterClosedError(LossfmtError, RuntimeError):
    """The LossWriter was closed (or belongs to the parent of this forked process)."""


class FileReplacedError(LossfmtError, FileNotFoundError):
    """The file was removed or replaced under a running LossWriter."""


class UnreadableValueError(LossfmtError, ValueError):
    """A logged value that could only be read on the flusher thread (a tensor on an accelerator) could not
    be read there: that event was not written; every other event was."""
