"""The checks of LossWriter's arguments (its slow path and its constructor), with the errors users see.

`event_options` (from `as_int`, `check_int64`, `check_reduction`): add()'s step, count, epoch and reduction;
`value_of_tag`: add_many's error for one of its values. `writer_options`: the constructor's flush_secs,
max_pending, meta and run. `writer_path`, `make_parent`: the file's path and its directories. `checked_meta`:
the run metadata, stored as JSON (TypeError for anything else, naming where). `run_name`: the run's name,
which the file stores as UTF-8. `resumed_events`: what a resume learns of the run; `started_over`,
`warn_torn_tail`: what it tells the user (a warning: nothing is refused). `unwritable_directory` (saying
`kept_live` or `NOT_RESUMED`): the error of a close(), resume or compaction that must write beside a file
whose directory is not writable or whose disk is full.
"""

from __future__ import annotations

import contextlib
import errno
import numbers
import operator
import os
import sys
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from lossfmt import _values
from lossfmt import schema as s
from lossfmt._errors import LossfmtError

__all__ = [
    "NOT_RESUMED",
    "NOT_RESUMED_FULL",
    "Resumed",
    "as_int",
    "check_int64",
    "check_reduction",
    "checked_meta",
    "event_options",
    "kept_live",
    "make_parent",
    "resumed_events",
    "run_name",
    "started_over",
    "unwritable_directory",
    "user_stacklevel",
    "value_of_tag",
    "warn_left_live",
    "warn_torn_tail",
    "writer_options",
    "writer_path",
]

_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1


def as_int(name: str, value: Any) -> int:
    """`value` as an int: Python ints and integer types with __index__ (numpy, torch); never bool or float."""
    if type(value) is int:
        return value
    if isinstance(value, bool) or not hasattr(type(value), "__index__"):
        raise TypeError(f"{name} must be an int, got {_values.type_name(value)}: {value!r:.80}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {_values.type_name(value)}: {value!r:.80}") from None


def check_int64(name: str, value: int) -> None:
    if not _INT64_MIN <= value <= _INT64_MAX:
        shown = value if value.bit_length() <= 256 else f"of {value.bit_length()} bits"
        raise ValueError(f"{name} {shown} is outside the int64 range")


def check_reduction(reduction: Any) -> None:
    if not isinstance(reduction, str) or reduction not in s.REDUCTIONS:
        raise ValueError(f"reduction must be one of {s.REDUCTIONS}, got {reduction!r:.80}")


def value_of_tag(exc: BaseException, tag: Any) -> BaseException:
    """add_many's error for the value of `tag`: add()'s TypeError / ValueError (which says "value ...")
    naming the tag, since one call passes many values; any other error as it is."""
    if type(exc) not in (TypeError, ValueError):
        return exc
    text, named = str(exc), f"value of tag {tag!r:.80}"
    return type(exc)(named + text[5:] if text.startswith("value ") else f"{named}: {text}")


def _check_text(text: str, what: str) -> None:
    """ValueError unless `text` can be stored as UTF-8 (a lone surrogate cannot: JSON writers then fail)."""
    try:
        text.encode()
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"{what} is not valid text (UTF-8), got {text!r:.60}: {exc.reason} at position {exc.start}; "
            "a lone surrogate usually comes from decoding bytes with errors='surrogateescape'"
        ) from None


def _as_json(value: Any, where: str, depth: int = 0) -> Any:
    """`value` as plain JSON data (every mapping a dict, every tuple a list), or TypeError naming where it is
    not JSON: only dicts (any Mapping) with str keys, lists/tuples, str, int, float, bool and None are. (The
    encoder would otherwise store the ``repr`` of a mapping that is not a dict.) ValueError for a str that is
    not valid UTF-8, key or value: the file stores it as UTF-8."""
    if isinstance(value, str):
        _check_text(value, where)
        return value
    if value is None or isinstance(value, (int, float)):  # bool is an int
        return value
    if depth > 100:
        raise TypeError(f"meta is nested too deeply (or refers to itself) at {where}")
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(
                    f"meta keys must be str, got {_values.type_name(key)} {key!r:.40} in {where}; "
                    "JSON objects have string keys"
                )
            _check_text(key, f"meta key {key!r:.40} in {where}")
            out[key] = _as_json(item, f"{where}[{key!r:.40}]", depth + 1)
        if s.spells_float(out):  # it would read back as the float
            raise ValueError(
                f"meta: {where} is {out!r:.60}, the reserved spelling of a non-finite float in the file "
                f"(spec/FORMAT.md, lossfmt.meta); store the float itself or rename the key"
            )
        return out
    if isinstance(value, (list, tuple)):
        return [_as_json(item, f"{where}[{k}]", depth + 1) for k, item in enumerate(value)]
    raise TypeError(
        f"meta must be JSON-serializable (str, int, float, bool, None, lists and dicts of them): "
        f"{where} is {_values.type_name(value)} {value!r:.60}; convert it (e.g. float(x), str(x))"
    )


def checked_meta(meta: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """`meta` as plain JSON data (None if empty), checked at the constructor: the file stores it as JSON."""
    if not meta:
        return None
    converted: dict[str, Any] = _as_json(meta, "meta")
    return converted


#: What a path ending in one of these names: a directory.
_SEPARATORS = tuple(sep for sep in (os.sep, os.altsep) if sep)


def writer_path(path: Any) -> Path:
    """The absolute path of the file to write (absolute: a notebook's %cd or Hydra's chdir mid-run must not
    lose it). TypeError for what is not a str or os.PathLike of one (bytes too: as lossfmt.read), ValueError
    for the empty path and for one naming a directory (ending in a separator, or in . or ..)."""
    name = os.fspath(path) if isinstance(path, (str, os.PathLike)) else path
    if not isinstance(name, str):
        decode = "; decode it first: os.fsdecode(path)" if isinstance(name, (bytes, bytearray)) else ""
        raise TypeError(
            f"path must be a str or os.PathLike naming a file, not {_values.type_name(path)} {path!r:.80}"
            f"{decode}"
        )
    if not name:
        raise ValueError("path is empty: pass the path of a new or existing .arrow file")
    if name.endswith(_SEPARATORS) or os.path.basename(name) in (".", ".."):
        raise ValueError(
            f"path {name!r:.80} names a directory, not a file; pass the path of a file in it, e.g. "
            f"{os.path.join(name, 'run.arrow')!r:.90}"
        )
    return Path(name).absolute()


def make_parent(path: Path) -> None:
    """Create `path`'s missing parent directories; NotADirectoryError naming the one that is not a directory
    (a file where a directory is needed), nothing created."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        for parent in reversed(path.parents):
            if os.path.lexists(parent) and not os.path.isdir(parent):
                raise NotADirectoryError(
                    f"{os.fspath(path)}: cannot be created: {os.fspath(parent)} is not a directory; pass a "
                    "path whose parent is a directory (or can be created as one)"
                ) from None
        raise


def run_name(run: str | None, path: Path) -> str:
    """The run's name: `run`, which must be text, or the file's stem made valid UTF-8 (a file name on POSIX
    is bytes: undecodable ones reach Python as lone surrogates, shown here as U+FFFD)."""
    if run is None:
        try:
            return os.fsencode(path.stem).decode("utf-8", "replace")
        except UnicodeEncodeError:
            return path.stem.encode("utf-8", "replace").decode()
    try:
        run.encode()
    except UnicodeEncodeError as exc:
        raise ValueError(f"run must be valid text (UTF-8), got {run!r:.80}: {exc.reason}") from None
    return run


def event_options(step: Any, count: Any, epoch: Any, reduction: Any) -> tuple[int, int, int | None]:
    """add()'s step, count and epoch as ints (epoch may be None), once each argument is checked."""
    step = as_int("step", step)
    check_int64("step", step)
    count = as_int("count", count)
    if count < 1:
        raise ValueError(f"count must be >= 1 (the number of items the value summarizes), got {count}")
    check_int64("count", count)
    if epoch is not None:
        epoch = as_int("epoch", epoch)
        check_int64("epoch", epoch)
    check_reduction(reduction)
    return step, count, epoch


def writer_options(
    flush_secs: Any, max_pending: Any, meta: Any, run: Any, close_on_signal: Any = False
) -> tuple[float, int]:
    """Check LossWriter's options before anything is created; return flush_secs and max_pending as a Python
    float and int (a numpy number is taken)."""
    if not isinstance(close_on_signal, bool):  # a truthy "no" must not mean True
        raise TypeError(f"close_on_signal must be True or False, not {close_on_signal!r}")
    if isinstance(flush_secs, bool) or not isinstance(flush_secs, numbers.Real):
        raise TypeError(
            f"flush_secs must be a number of seconds, not {type(flush_secs).__name__} {flush_secs!r}"
        )
    if not 0 < float(flush_secs) < 1e9:
        raise ValueError(
            f"flush_secs must be a positive number of seconds below 1e9 (about 31 years), got {flush_secs!r}"
        )
    if isinstance(max_pending, bool) or not isinstance(max_pending, numbers.Integral):
        raise TypeError(f"max_pending must be an int, not {type(max_pending).__name__} {max_pending!r}")
    if max_pending < 1:
        raise ValueError(f"max_pending must be an int >= 1, got {max_pending!r}")
    if meta is not None and not isinstance(meta, Mapping):
        raise TypeError(f"meta must be a mapping (e.g. of hyperparameters), got {type(meta).__name__}")
    if run is not None and not isinstance(run, str):
        raise TypeError(f"run must be a string, not {type(run).__name__} {run!r}")
    if run == "":
        raise ValueError("run must be a non-empty string, got ''")
    return float(flush_secs), int(max_pending)


#: A resumed file's first event (step, epoch or None), and the lowest and highest step it holds.
Resumed = tuple[tuple[int, int | None], int, int]


def resumed_events(path: Path, end: int) -> tuple[int, Resumed | None]:
    """How many events the verified content up to `end` holds, its first (step, epoch) and its step range:
    decoded a bounded window at a time, so resuming a long run takes memory independent of its length."""
    from lossfmt import _framing  # (it decodes: kept out of the checks every writer imports)

    rows, first, low, high = 0, None, None, None
    for batch in _framing.iter_batches(path, end)[1]:
        if not len(batch):
            continue
        steps = batch.column(s.STEP).to_numpy()
        if first is None:
            first = (int(steps[0]), batch.column(s.EPOCH)[0].as_py())
        rows += len(batch)
        low = int(steps.min()) if low is None else min(low, int(steps.min()))
        high = int(steps.max()) if high is None else max(high, int(steps.max()))
    return rows, None if first is None or low is None or high is None else (first, low, high)


def started_over(path: os.PathLike[str] | str, step: int, epoch: int | None, resumed: Resumed) -> str | None:
    """What to tell when a resumed writer's first event is at or before the file's first (a script run again
    on the same path; positions compared by (epoch, step) where both have an epoch), else None."""
    (first, first_epoch), low, high = resumed
    by_epoch = epoch is not None and first_epoch is not None
    if (epoch, step) > (first_epoch, first) if by_epoch else step > first:
        return None
    return (
        f"lossfmt: {os.fspath(path)} already held steps {low}-{high} of a run; this writer started "
        f"again at step {step}, so it resumed that run: viewers now hide the earlier events of each tag it "
        f"logs again, from step {step} on (they stay in the file). Use a new path for a separate run."
    )


def warn_torn_tail(path: Path, dropped: int) -> None:
    """Resuming a file without footer drops the bytes after its last complete event (spec §1.2)."""
    warnings.warn(
        f"lossfmt: resuming {os.fspath(path)} dropped its last {dropped:,} bytes, an unfinished flush (a "
        "crash while writing, or a copy cut short); every complete event is kept",
        UserWarning,
        stacklevel=user_stacklevel(),
    )


def warn_left_live(path: Path, error: BaseException) -> None:
    """close() after a write error already raised (a full disk): the file keeps its flushed events without a
    footer; say so, and how to finish it (nothing to finish when the file itself was removed or replaced)."""
    if isinstance(error, OSError) and not isinstance(error, LossfmtError):
        warnings.warn(
            f"lossfmt: {os.fspath(path)} was left without its footer after the write error raised earlier "
            f"({error.strerror or error}): every event flushed before it reads with lossfmt; "
            f"`lossview compact {os.fspath(path)}` makes it a plain Arrow file once the disk has room",
            UserWarning,
            stacklevel=user_stacklevel(),
        )


#: What creating a file in a directory that is not writable raises (a read-only mount: EROFS).
_UNWRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)
#: What writing a copy beside a file raises when its disk (or the user's quota) is full.
_FULL = (errno.ENOSPC, errno.EDQUOT)


#: What a resume refused by `unwritable_directory` says.
NOT_RESUMED = (
    "it cannot be resumed (resuming it writes a copy beside it, renamed over it); the file is left as it is: "
    "write the resumed run to another path, or make the directory writable"
)
#: What a resume refused by a full disk says.
NOT_RESUMED_FULL = (
    "it cannot be resumed (resuming it writes a copy beside it, renamed over it); the file is left as it is, "
    "every event kept: free space on the disk, or write the resumed run to another path"
)


def kept_live(path: Path, rows: int, once: str = "the directory is writable") -> str:
    """What a close() refused by `unwritable_directory` says: nothing is lost, and how to finish the file
    `once` it can be."""
    return (
        f"close() could not compact it: its {rows} events are kept in the live file (lossfmt reads it); "
        f"`lossview compact {os.fspath(path)}` makes it a plain Arrow file once {once}"
    )


@contextlib.contextmanager
def unwritable_directory(path: Path, consequence: str, *, full: str | None = None) -> Iterator[None]:
    """An OSError inside, when `path`'s directory is not writable (a temp file beside `path` could not be
    created) or its disk is full (the temp file could not be written), raised as one naming `path`, not the
    temp file, and saying `consequence` (for a full disk: `full`; by default `consequence` and to compact
    the file once the disk has room)."""
    try:
        yield
    except OSError as exc:
        if exc.errno in _FULL:
            said = full or f"{consequence}; `lossview compact {os.fspath(path)}` once the disk has room"
            raise type(exc)(
                exc.errno,
                f"{os.strerror(exc.errno)}: {os.fspath(path)}: no room on its disk for a copy, so {said}",
            ) from None
        effective = os.access in os.supports_effective_ids  # (as the writer's own process is allowed)
        beside = Path(os.path.realpath(path)).parent  # where the temp file goes (a symlink's target's)
        if exc.errno not in _UNWRITABLE or os.access(beside, os.W_OK | os.X_OK, effective_ids=effective):
            raise
        raise type(exc)(
            exc.errno, f"{exc.strerror}: {os.fspath(path)}: its directory is not writable, so {consequence}"
        ) from None


_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def warn_gone(gone: list[str], listed: int) -> None:
    """Tell the files of a sweep that left between its listing and their reading (they were skipped)."""
    names = ", ".join(gone[:3]) + (f" and {len(gone) - 3} more" if len(gone) > 3 else "")
    warnings.warn(
        f"lossfmt: {len(gone)} of {listed} files went away while they were read (moved or removed), skipped: "
        f"{names}",
        UserWarning,
        stacklevel=user_stacklevel(),
    )


def user_stacklevel() -> int:
    """The ``warnings.warn`` stacklevel, from its caller, of the first frame outside lossfmt: a warning names
    the user's line (``LossWriter(...)``, ``w.close()``, the ``with`` block), whatever path inside lossfmt
    (``__exit__``, integrations) led to it."""
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    return level
