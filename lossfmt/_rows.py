"""The pending-row layout, defined once: what `add()` appends and how the flusher turns rows into a batch.

Every event is one bytes object of `ROW.size` (45) bytes, packed on the caller's thread: step, value, time,
count, epoch, tag id, flags. A bytes object is never tracked by the garbage collector (a list of a million
tuples is revisited by every collection the training loop's allocations trigger), and a batch converts with
one `b"".join` and a numpy structured view. `PLAIN` packs an event with every option at its default into the
same 45 bytes from three arguments: the zero bytes mean count 1, no epoch, the default tag, mean.

Tags are interned on the caller's thread (`tag_id`: one dict lookup; `intern` validates and numbers a new
tag). Ids are process-wide and never reused; each stream's `Encoder` maps them to its own dictionary codes in
order of first appearance, and the dictionary only grows, so the live stream writes each new tag once (a
delta dictionary message), whatever the number of tags and flushes.

An event whose value is a deferred device scalar (see `_values.scalar`) is the pair `(row, handle)`: the
flusher reads all handles of a batch at once (`_values.read_values`) and fills their values in.
"""

from __future__ import annotations

import functools
import os
import struct
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

from lossfmt import _arrow, _checks, _compiled, _values
from lossfmt import schema as s
from lossfmt._errors import UnreadableValueError

__all__ = ["EPOCH", "PLAIN", "ROW", "ROW_ERRORS", "SUM", "Encoder", "intern", "pack_many", "row", "tag_id"]

ROW = struct.Struct("<qddqqiB")  # step, value, time, count, epoch, tag id, flags
PLAIN = struct.Struct("<qdd21x")  # step, value, time; the rest zero (count 1, no epoch, tag id 0, mean)
#: Flags: the epoch field holds an epoch (else none), the reduction is "sum" (else "mean").
EPOCH, SUM = 1, 2
_DTYPE = np.dtype(
    [
        ("step", "<i8"),
        ("value", "<f8"),
        ("time", "<f8"),
        ("count", "<i8"),
        ("epoch", "<i8"),
        ("tag", "<i4"),
        ("flags", "u1"),
    ]
)
assert _DTYPE.itemsize == ROW.size == PLAIN.size

# The process's interned tags: id -> name (append-only), name -> id. Id 0 is the default tag.
_names: list[str] = [s.DEFAULT_TAG]
_ids: dict[str, int] = {s.DEFAULT_TAG: 0}
_intern_lock = threading.Lock()
# A fork while another thread interns: the child gets the tables whole and the lock free (not held forever).
os.register_at_fork(
    before=_intern_lock.acquire, after_in_parent=_intern_lock.release, after_in_child=_intern_lock.release
)
#: The id of an interned tag, or None: the caller's one lookup per tagged event.
tag_id = _ids.get


def intern(tag: Any) -> int:
    """The id of `tag`, interning a new one; TypeError / ValueError for a tag a file cannot hold."""
    if type(tag) is not str:
        if not isinstance(tag, str):
            raise TypeError(f"tag must be a str, got {_values.type_name(tag)}: {tag!r:.80}")
        tag = str(tag)  # a str subclass: interned as the plain string it equals
    if not tag:
        raise ValueError("tag must be a non-empty string")
    try:
        tag.encode()
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"tag {tag!r:.80} is not valid text: it cannot be stored as UTF-8 ({exc.reason} at "
            f"position {exc.start}); a lone surrogate usually comes from decoding bytes with "
            "errors='surrogateescape'"
        ) from None
    with _intern_lock:
        found = _ids.get(tag)
        if found is None:
            _names.append(tag)  # before the id is published: whoever sees the id finds the name
            found = _ids[tag] = len(_names) - 1
    return found


_pack = ROW.pack
_CONVERTERS = _values.CONVERTERS
_scalar: Callable[[Any], Any] = _values.scalar
#: What packing an unchecked argument may raise: the writer's fast paths leave it to the slow path's checks.
ROW_ERRORS = (TypeError, ValueError, struct.error)


def row(step: int, value: Any, now: float, count: int, epoch: int, code: int, flags: int) -> Any:
    """The pending row of one checked event: packed bytes, or `(bytes, handle)` for a deferred value."""
    if type(value) is float:
        return _pack(step, value, now, count, epoch, code, flags)
    return _pack(step, 0.0, now, count, epoch, code, flags), value


def pack_many(step: int, values: dict[str, Any], count: int, epoch: int, flags: int) -> list[Any] | None:
    """add_many's rows, one per tag, stamped with one time; None if a tag is new or an argument needs the
    writer's slow path (its checks raise the errors; also for no values, whose step nothing packs)."""
    if not values:
        return None
    now = time.time()
    rows: list[Any] = []
    append = rows.append
    try:
        for tag, value in values.items():
            code = _ids.get(tag)
            if code is None:
                return None
            if type(value) is not float:
                value = _CONVERTERS.get(type(value), _scalar)(value)
                if type(value) is not float:  # a deferred device scalar
                    append((_pack(step, 0.0, now, count, epoch, code, flags), value))
                    continue
            append(_pack(step, value, now, count, epoch, code, flags))
    except ROW_ERRORS:
        return None
    return rows


@functools.cache
def _reduction_dictionary() -> pa.Array[Any]:
    return _arrow.strings(list(s.REDUCTIONS))


class Encoder:
    """Turns pending rows into record batches of one stream, keeping the stream's tag dictionary."""

    def __init__(
        self, schema: pa.Schema, path: os.PathLike[str] | str = "", resumed: _checks.Resumed | None = None
    ) -> None:
        self.schema, self.path = schema, path
        #: A resumed file's first event and step range, until the first batch is checked against it;
        #: what that check finds is warned of by the next raise_unread(), on the caller's thread.
        self._resumed = resumed
        self._notice: str | None = None
        self._code = np.full(16, -1, dtype=np.int32)  # tag id -> code in this stream's dictionary
        self._dictionary_names: list[str] = []
        self._dictionary = _arrow.strings([])
        #: Events dropped because their deferred value could not be read: (step, tag, error) of the first
        #: few, and how many in all; taken (and raised) by the writer's next flush() or close().
        self._unread: list[tuple[int, str, BaseException]] = []
        self._unread_count = 0
        self._unread_lock = threading.Lock()

    def raise_unread(self) -> None:
        """UnreadableValueError if events were dropped since the last call because their value (a deferred
        tensor) could not be read on the flusher thread: how many, the first ones and why. Before that, the
        warning of a run started over (`_checks.started_over`), once."""
        notice, self._notice = self._notice, None
        if notice is not None:
            warnings.warn(notice, UserWarning, stacklevel=_checks.user_stacklevel())
        with self._unread_lock:
            count, first = self._unread_count, self._unread
            self._unread_count, self._unread = 0, []
        if not count:
            return
        where = ", ".join(f"step {n} ({tag!r}): {type(exc).__name__}: {_line(exc)}" for n, tag, exc in first)
        raise UnreadableValueError(
            f"{os.fspath(self.path)}: {count} logged value{'s' if count > 1 else ''} could not be read on "
            f"the flusher thread and {'were' if count > 1 else 'was'} not written (first: {where}); every "
            "other event was"
        ) from first[0][2]

    def batch(self, rows: list[Any], n: int) -> pa.RecordBatch:
        """A record batch of the first `n` rows (producers may append more meanwhile)."""
        try:
            row = _fields(rows, n)
        except TypeError:  # some rows carry a deferred value
            packed, at, handles = _split_deferred(rows, n)
            row = np.frombuffer(packed, _DTYPE)
            values = row["value"].copy()
            floats, failed = _values.read_values(handles)
            values[at] = floats
            if failed:  # drop only the events whose value could not be read, and say so at flush/close
                bad = at[list(failed)]
                self._note_unread(row[bad], list(failed.values()))
                keep = np.ones(n, bool)
                keep[bad] = False
                row, values, n = row[keep], values[keep], int(keep.sum())
        else:
            values = row["value"]
        counts = row["count"]
        if not counts.all():  # a plain row's zero count means 1
            counts = np.where(counts == 0, 1, counts)
        flags = row["flags"]
        has_epoch = (flags & EPOCH).astype(bool)
        if has_epoch.all():
            epochs: pa.Array[Any] = _arrow.array(row["epoch"])
        elif has_epoch.any():
            epochs = _arrow.array(row["epoch"], pa.int64(), mask=~has_epoch)
        else:
            epochs = pa.nulls(n, pa.int64())
        if self._resumed is not None and n:
            epoch = int(row["epoch"][0]) if has_epoch[0] else None  # the resumed writer's first event
            self._notice = _checks.started_over(self.path, int(row["step"][0]), epoch, self._resumed)
            self._resumed = None
        reduction_index = (flags & SUM).view(np.int8) >> 1
        wall_us = np.rint(row["time"] * 1e6).astype(np.int64)
        return pa.RecordBatch.from_arrays(
            [
                _arrow.array(row["step"]),
                pa.DictionaryArray.from_arrays(_arrow.array(self._codes(row["tag"])), self._dictionary),
                _arrow.array(values),
                _arrow.array(counts),
                epochs,
                _arrow.array(wall_us, s.WALL_TIME_TYPE),
                pa.DictionaryArray.from_arrays(_arrow.array(reduction_index), _reduction_dictionary()),
            ],
            schema=self.schema,
        )

    def _note_unread(self, rows: np.ndarray, errors: list[BaseException]) -> None:
        with self._unread_lock:
            self._unread_count += len(errors)
            room = max(0, 3 - len(self._unread))
            for r, exc in zip(rows[:room], errors[:room], strict=True):
                self._unread.append((int(r["step"]), _names[int(r["tag"])], exc))

    def _codes(self, ids: np.ndarray) -> np.ndarray:
        """Dictionary codes of tag `ids`; new tags are appended to the dictionary in order of first event."""
        top = int(ids.max()) if len(ids) else 0
        if top >= len(self._code):
            grown = np.full(max(top + 1, 2 * len(self._code)), -1, dtype=np.int32)
            grown[: len(self._code)] = self._code
            self._code = grown
        codes: np.ndarray = self._code[ids]
        new = codes < 0
        if new.any():
            fresh, first = np.unique(ids[new], return_index=True)
            fresh = fresh[np.argsort(first)]
            names = self._dictionary_names
            self._code[fresh] = np.arange(len(names), len(names) + len(fresh), dtype=np.int32)
            names.extend(_names[i] for i in fresh.tolist())
            self._dictionary = _arrow.strings(names)
            codes = self._code[ids]
        return codes


def _line(exc: BaseException) -> str:
    text = str(exc).strip().split("\n", 1)[0]
    return text if len(text) <= 200 else text[:199] + "…"


_transpose = _compiled.transpose_rows


def _fields(rows: list[Any], n: int) -> Any:
    """The fields of the first `n` rows by name, as numpy arrays; TypeError if one carries a deferred value.

    With the extension, contiguous columns of one transposed copy; else a structured view of the joined rows
    (joined from a copy of the list's head: bytes.join turns an iterator into a list itself, more slowly).
    """
    if _transpose is None:
        return np.frombuffer(b"".join(rows[:n]), _DTYPE)
    data = _transpose(rows, n)
    fields = {}
    offset = 0
    for name in _DTYPE.names or ():
        dtype = _DTYPE.fields[name][0]  # type: ignore[index]
        fields[name] = np.frombuffer(data, dtype, n, offset)
        offset += dtype.itemsize * n
    return fields


def _split_deferred(rows: list[Any], n: int) -> tuple[bytes, np.ndarray, list[Any]]:
    """The packed bytes of the first `n` rows, and the positions and handles of their deferred values."""
    head = rows[:n]
    at = np.flatnonzero(np.fromiter(map(len, head), np.int64, n) != ROW.size)
    handles = []
    for i in at.tolist():
        head[i], handle = head[i]
        handles.append(handle)
    return b"".join(head), at, handles
