"""Compaction: a live (or crashed) file becomes a closed one, streamed in bounded memory; and salvage.

Two passes over the file's verified batches (`_framing.iter_batches`, one batch in memory at a time): the
first collects the values every dictionary column uses, in order of first use; the second remaps each
batch's indices to that one dictionary per column and hands the batches to `_file.write_closed_locked`,
which rebatches them into `COMPACT_ROWS`-row record batches. Peak memory is a few closed batches plus the
dictionaries, whatever the run's length.
"""

from __future__ import annotations

import itertools
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import numpy as np
import pyarrow as pa

from lossfmt import _arrow, _checks, _file, _framing, _locking, _sources
from lossfmt import schema as s
from lossfmt._errors import LossFormatError, NoSuchFileError

__all__ = ["compact", "compact_locked", "salvage"]

_V1 = pa.schema(s.FIELDS)
#: Key under which a resumed file's user metadata that is not a JSON object is kept when `meta` is merged.
PREVIOUS_META = "previous_meta"


class _Dictionaries:
    """One dictionary per dictionary column, built from the values the batches use, in order of first use."""

    def __init__(self) -> None:
        self.columns = [i for i, f in enumerate(_V1) if pa.types.is_dictionary(f.type)]
        self.codes: dict[int, dict[Any, int]] = {i: {} for i in self.columns}
        self.arrays: dict[int, pa.Array[Any]] = {}

    @staticmethod
    def _used(column: pa.DictionaryArray[Any, Any]) -> tuple[pa.Array[Any], list[Any]]:
        import pyarrow.compute as pc  # only when compacting: importing it costs 60-80 ms (lossview's startup)

        used = pc.unique(column.indices.drop_null())
        return used, column.dictionary.take(used).to_pylist()

    def seed(self, dictionaries: dict[int, pa.Array[Any]]) -> None:
        """Start each column's dictionary with every value of `dictionaries[column]`, in its order."""
        for i, dictionary in dictionaries.items():
            codes = self.codes[i]
            for value in dictionary.to_pylist():
                codes.setdefault(value, len(codes))

    def empty_batch(self) -> pa.RecordBatch:
        """A zero-row batch with the frozen dictionaries: what a stream writer that follows them must know."""
        columns = [
            pa.DictionaryArray.from_arrays(pa.nulls(0, f.type.index_type), self.arrays[i])
            if i in self.arrays
            else pa.nulls(0, f.type)
            for i, f in enumerate(_V1)
        ]
        return pa.RecordBatch.from_arrays(columns, schema=_V1)

    def collect(self, batch: pa.RecordBatch) -> None:
        for i in self.columns:
            codes = self.codes[i]
            for value in self._used(_dictionary_column(batch, i))[1]:
                codes.setdefault(value, len(codes))

    def freeze(self) -> None:
        for i in self.columns:
            self.arrays[i] = _arrow.strings(list(self.codes[i]))  # v1's dictionaries are of strings

    def remap(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        import pyarrow.compute as pc

        columns = batch.columns
        for i in self.columns:
            column = _dictionary_column(batch, i)
            used, values = self._used(column)
            codes = _arrow.array(np.array([self.codes[i][v] for v in values]), column.indices.type)
            indices = codes.take(pc.index_in(column.indices, value_set=used))
            columns[i] = pa.DictionaryArray.from_arrays(indices, self.arrays[i])
        return pa.RecordBatch.from_arrays(columns, schema=_V1)


def _dictionary_column(batch: pa.RecordBatch, i: int) -> pa.DictionaryArray[Any, Any]:
    """Column `i` of `batch`, one of `_V1`'s dictionary columns (the stubs cannot know it is one)."""
    return cast("pa.DictionaryArray[Any, Any]", batch.column(i))


def _open(
    path: Path, name: Path, *, end: int | None = None, stop_at_damage: bool = False
) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """The file's schema, and the v1 columns of every verified batch up to `end` (only its decodable prefix
    if `stop_at_damage`). LossFormatError, as `read` says it, if the schema is not lossfmt v1 (a plain Arrow
    file has no v1 columns to select)."""
    schema, batches = _framing.iter_batches(path, end)
    s.check_schema(schema, name)
    return schema, _columns(batches, name, stop_at_damage)


def _columns(batches: Iterator[pa.RecordBatch], name: Path, stop_at_damage: bool) -> Iterator[pa.RecordBatch]:
    try:
        for batch in batches:
            yield batch.select(list(s.COLUMNS))
    except LossFormatError:
        if not stop_at_damage:
            raise
    except (pa.ArrowException, OSError) as exc:
        # Decoding errors the framing did not name (Arrow reports a failed decompression as an OSError
        # without errno) are still corruption; a real I/O error (with errno) is not.
        if isinstance(exc, OSError) and exc.errno is not None:
            raise
        if not stop_at_damage:
            raise LossFormatError(f"{os.fspath(name)}: corrupt record batch ({exc})") from None


def _merged_meta(schema: pa.Schema, meta: dict[str, Any] | None) -> pa.Schema:
    """`schema` with v1 fields, its metadata, and `meta` merged into the user metadata (if given).

    A file's user metadata that is not a JSON object (another tool wrote a list, say) is kept as it is when
    there is nothing to merge, and otherwise kept under the key `previous_meta` of the merged object.
    """
    metadata = dict(schema.metadata or {})
    if meta:
        old = s.run_info(schema)["meta"]
        merged = {**old, **meta} if isinstance(old, dict) else {PREVIOUS_META: old, **meta}
        metadata[s.KEY_META.encode()] = s.encode_meta(merged).encode()  # RFC 8259: non-finite floats tagged
    # the stubs type `metadata` as an invariant dict[bytes | str, bytes | str]; dict[bytes, bytes] is valid
    return pa.schema(s.FIELDS, metadata=metadata)  # type: ignore[arg-type]


def compact_locked(
    path: Path,
    held: int,
    meta: dict[str, Any] | None = None,
    *,
    expect_rows: int | None = None,
    end: int | None = None,
    name: Path | None = None,
) -> int:
    """Rewrite the file at `path` (locked by `held`) as a closed file, atomically; return its row count.

    LossFormatError, and the file left as it is, if it is corrupt, or if it holds other than `expect_rows`
    rows (given by a writer that knows how many it wrote), or if it changed between the two passes. `end`:
    where the content ends, if the caller knows (a writer's own file ends on its last record batch).
    """
    name = name or path
    dictionaries = _Dictionaries()
    schema, rows = _counted(path, name, end, expect_rows, dictionaries)
    remapped = (dictionaries.remap(batch) for batch in _open(path, name, end=end)[1])
    return _file.write_closed_locked(path, _merged_meta(schema, meta), remapped, held=held, expect_rows=rows)


def _counted(
    path: Path, name: Path, end: int | None, expect_rows: int | None, dictionaries: _Dictionaries
) -> tuple[pa.Schema, int]:
    """The first pass: the schema and rows, and the values every dictionary column uses (then frozen);
    LossFormatError if `expect_rows` is given and differs."""
    rows = 0
    schema, batches = _open(path, name, end=end)
    for batch in batches:
        dictionaries.collect(batch)
        rows += batch.num_rows
    if expect_rows is not None and rows != expect_rows:
        raise LossFormatError(
            f"{os.fspath(name)}: holds {rows} events where {expect_rows} were written (the file was "
            "truncated or damaged from outside); it is left as it is, not compacted"
        )
    dictionaries.freeze()
    return schema, rows


def recompact(
    path: Path,
    header: bytes,
    dictionaries: dict[int, pa.Array[Any]],
    *,
    expect_rows: int,
    end: int,
    name: Path,
) -> tuple[_locking.TempFile, pa.RecordBatch]:
    """The live file at `path` (locked by the caller; content up to `end`) rewritten, not yet committed, into
    a locked temp file: `header`, then the same events in the same order in large batches, still live.

    Each column's one dictionary starts with `dictionaries` (the stream's state, so the next flush is a
    delta), then the other values used; returned as a zero-row batch to seed the stream writer with.
    LossFormatError (temp removed) unless the file holds `expect_rows` rows in both passes.
    """
    unified = _Dictionaries()
    unified.seed(dictionaries)
    schema, _ = _counted(path, name, end, expect_rows, unified)
    remapped = (unified.remap(batch) for batch in _open(path, name, end=end)[1])
    temp = _locking.TempFile(path)
    try:
        rows = _file.write_live(temp, header, schema, remapped)
        if rows != expect_rows:
            raise LossFormatError(f"{os.fspath(name)}: changed while being re-compacted; left as it is")
    except BaseException:
        temp.discard()
        raise
    return temp, unified.empty_batch()


def compact(path: str | os.PathLike[str]) -> None:
    """Turn a live or crashed (footerless) file into a closed, compact one; a closed file is left as is.

    A torn tail is dropped. WriterBusyError if a LossWriter has the file open; LossFormatError if the file is
    not lossfmt or is corrupt (then it is left byte-for-byte as it was: see `salvage`).
    """
    shown = Path(path)
    _regular(shown)
    final = _locking.target(shown.absolute())
    fd, _ = _locking.open_locked(final, shown)
    try:
        _locking.remove_stale_temps(final)
        try:
            with _sources.open_file(os.fspath(final)) as f, pa.ipc.open_file(f):
                closed = True  # it has a footer
        except (pa.ArrowException, OSError):
            closed = False
        if closed:  # verified, not rewritten
            for _ in _open(final, shown)[1]:
                pass
            return
        cannot = "it cannot be compacted (compaction writes a copy beside it, renamed over it): left as is"
        with _checks.unwritable_directory(shown, cannot):
            compact_locked(final, fd, name=shown)
    finally:
        _locking.release(fd)


def _damage_offset(exc: LossFormatError) -> int | None:
    """The byte offset a corruption error names (where the readable prefix ends at the latest), if any; not
    the place a file that is not lossfmt lacks its magic or schema ("not a lossfmt file (... at byte 0)")."""
    return exc.offset


def salvage(path: str | os.PathLike[str], out: str | os.PathLike[str]) -> int:
    """Copy the decodable, verified prefix of a (possibly corrupt) file into a NEW closed file `out`.

    For a file that `read` or a resuming writer reject as corrupt, live or closed (a damaged footer too):
    every record batch before the first damaged message is kept, with the run's metadata (0 events if the
    damage is in the first batch). `path` is never modified. Returns the number of events recovered.
    FileExistsError if `out` exists; LossFormatError, and no `out` written, if even the header is unreadable.
    """
    source, dest = Path(path), Path(out)
    _regular(source)  # (a FIFO would block the read for ever)
    if not os.fspath(out) or os.fspath(out).endswith(os.sep):
        raise ValueError(f"salvage: out {os.fspath(out)!r} names no file; name the new file, e.g. OUT.arrow")
    if os.path.lexists(dest):
        raise FileExistsError(f"{os.fspath(dest)}: already exists; salvage writes only a new file")
    dest.parent.mkdir(parents=True, exist_ok=True)  # as a LossWriter does
    schema, dictionaries, good, end = _verified_prefix(source, dest)
    dictionaries.freeze()
    kept = itertools.islice(_open(source, source, end=end, stop_at_damage=True)[1], good)
    return _file.write_closed(dest, _merged_meta(schema, None), (dictionaries.remap(b) for b in kept))


def _regular(path: Path) -> None:
    """NoSuchFileError, or LossFormatError for what is not a regular file (a FIFO, a directory, a device)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise NoSuchFileError(f"{os.fspath(path)}: no such file") from None
    if not stat.S_ISREG(mode):
        what = _locking.kind(mode)
        raise LossFormatError(f"{os.fspath(path)}: not a regular file ({what}), so not a lossfmt file")


def _verified_prefix(source: Path, dest: Path) -> tuple[pa.Schema, _Dictionaries, int, int | None]:
    """Salvage's first pass: the schema, the values the kept batches use, how many batches are kept, and
    where the bytes read end (None: the whole file). Damage names its offset (a closed file's whole-file check
    at once, a live file's windows while reading): the walk is retried on the bytes before it."""
    end: int | None = None
    first: LossFormatError | None = None  # the first damage found: the reason, if nothing can be kept
    while True:
        dictionaries, good = _Dictionaries(), 0
        try:
            schema, batches = _open(source, source, end=end)
            for batch in batches:
                dictionaries.collect(batch)
                good += 1
            return schema, dictionaries, good, end
        except LossFormatError as exc:
            offset = _damage_offset(exc)
            if offset is None and good:
                return schema, dictionaries, good, end  # damage without an offset: keep the batches before it
            if offset is None or (end is not None and offset >= end):
                if first is None:  # not a lossfmt file, or no prefix left to retry on
                    raise
                # nothing before the damage decodes: say why, not "empty file"
                kept = f"nothing before it can be kept ({os.fspath(dest)} not written)"
                nothing = LossFormatError(f"{first}; {kept}")
                nothing.offset = first.offset
                raise nothing from None
            first, end = first or exc, offset
