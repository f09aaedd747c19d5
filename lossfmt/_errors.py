"""The exception tree: one base users can catch, and specific errors that also inherit the builtin a caller
might already catch (so adding a subclass never breaks an existing ``except ValueError``)."""

from __future__ import annotations

__all__ = [
    "FileReplacedError",
    "LossFormatError",
    "LossfmtError",
    "WriterBusyError",
    "WriterClosedError",
]


class LossfmtError(Exception):
    """Base of every error lossfmt raises on purpose; the message names the file and what to do."""


class LossFormatError(LossfmtError, ValueError):
    """A file is not a readable lossfmt file (foreign, corrupt, or of an unsupported version)."""


class WriterBusyError(LossfmtError, RuntimeError):
    """Another LossWriter (in this or another process) holds the file."""


class WriterClosedError(LossfmtError, RuntimeError):
    """The LossWriter was closed (or belongs to the parent of this forked process)."""


class FileReplacedError(LossfmtError, FileNotFoundError):
    """The file was removed or replaced under a running LossWriter."""
