"""Rows grouped into (run, tag) series, the grouping every read-time transform shares, and the small
table helpers the transforms use (column checks, numpy columns, which events are sum-reduced, replacing a
column). Private: `lossfmt.transforms` re-exports `series`."""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import pyarrow as pa

from lossfmt import _arrow, schema


def _require(table: pa.Table, *names: str) -> None:
    missing = [name for name in names if name not in table.column_names]
    if missing:
        listed = ", ".join(repr(m) for m in missing)
        raise ValueError(f"table has no {listed} column (expected events as lossfmt.read returns them)")


def _codes(column: pa.ChunkedArray[Any]) -> tuple[np.ndarray, list[Any]]:
    """Integer code per row and the distinct labels in dictionary order, for a dictionary or plain column."""
    one = _one_label(column)
    if one is not None:  # one tag (or run) in every chunk: nothing to unify, combine or look up
        return np.broadcast_to(np.int64(0), (len(column),)), one  # read-only zeros, nothing allocated
    if pa.types.is_dictionary(column.type):
        column = column.unify_dictionaries()  # one dictionary for all chunks, so indices agree
    arr = column.combine_chunks()
    if not pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_encode()
    encoded = cast("pa.DictionaryArray[Any, Any]", arr)  # dictionary-encoded either way by now
    labels = encoded.dictionary.to_pylist()
    indices = _arrow.to_numpy(encoded.indices).astype(np.int64)
    distinct = list(dict.fromkeys(labels))
    if len(distinct) == len(labels):
        return indices, labels
    position = {label: i for i, label in enumerate(distinct)}  # a dictionary may repeat a label
    return np.array([position[label] for label in labels], dtype=np.int64)[indices], distinct


def _one_label(column: pa.ChunkedArray[Any]) -> list[Any] | None:
    """[label] when a dictionary column holds one label in every chunk (the common one-tag run), else None."""
    if not pa.types.is_dictionary(column.type) or not column.num_chunks or column.null_count:
        return None
    dictionaries = [cast("pa.DictionaryArray[Any, Any]", chunk).dictionary for chunk in column.chunks]
    if any(len(d) != 1 for d in dictionaries):
        return None
    label = dictionaries[0][0].as_py()
    return [label] if all(d[0].as_py() == label for d in dictionaries[1:]) else None


class _Series:
    """Rows grouped by (run, tag): a code per row, plus each code's run and tag labels."""

    def __init__(self, table: pa.Table) -> None:
        _require(table, schema.TAG)
        tag_codes, self.tags = _codes(table.column(schema.TAG))
        if schema.RUN in table.column_names:
            run_codes, self.runs = _codes(table.column(schema.RUN))
        else:
            run_codes, self.runs = np.zeros(table.num_rows, np.int64), [None]
        self.n_tags = max(1, len(self.tags))
        self.codes = run_codes * self.n_tags + tag_codes if len(self.runs) > 1 else tag_codes
        self.size = len(self.runs) * self.n_tags
        self.has_run = schema.RUN in table.column_names

    def groups(self) -> list[np.ndarray]:
        """Row indices of each non-empty series, each in file order."""
        return _group_rows(self.codes, self.size)

    def run_column(self, codes: np.ndarray) -> pa.Array[Any]:
        return _arrow.strings(self.runs).take(_arrow.array(codes // self.n_tags, pa.int64()))

    def tag_column(self, codes: np.ndarray) -> pa.DictionaryArray[Any, Any]:
        """Tag labels for `codes`, dictionary-encoded like the format's tag column."""
        indices = _arrow.array(codes % self.n_tags, pa.int32())
        return pa.DictionaryArray.from_arrays(indices, _arrow.strings(self.tags))


def series(table: pa.Table) -> list[tuple[str | None, str, np.ndarray]]:
    """(run, tag, row indices) of each non-empty (run, tag) series, rows in file order; run is None when
    the table has no `run` column. The grouping that smoothing and bucketing use, for callers that draw."""
    groups = _Series(table)
    out = []
    for rows in groups.groups():
        code = int(groups.codes[rows[0]])
        out.append((groups.runs[code // groups.n_tags], groups.tags[code % groups.n_tags], rows))
    return out


def one_series(table: pa.Table) -> tuple[str | None, str] | None:
    """(run, tag) when every row of `table` is in one series, read from the dictionaries alone (the common
    one-tag run: no per-row codes, no row indices); None when there may be several (then use `series`) or
    no rows. run is None when the table has no `run` column."""
    _require(table, schema.TAG)
    tag = _one_label(table.column(schema.TAG)) if table.num_rows else None
    if tag is None:
        return None
    if schema.RUN not in table.column_names:
        return None, tag[0]
    run = _one_label(table.column(schema.RUN))
    return None if run is None else (run[0], tag[0])


def _stable_argsort(codes: np.ndarray, size: int) -> np.ndarray | None:
    """Row order grouping equal codes (0 <= code < size), file order within a group; None when the rows
    already are in that order (the common case of one series, or of sorted buckets)."""
    if size == 1 or bool(np.all(codes[1:] >= codes[:-1])):
        return None
    if size <= 8:  # a few series (tags): one scan per code beats any sort
        return np.concatenate([np.flatnonzero(codes == code) for code in range(size)])
    keys = codes.astype(np.uint16) if size <= 1 << 16 else codes  # numpy radix-sorts 16-bit keys
    return np.argsort(keys, kind="stable")


def _group_rows(codes: np.ndarray, size: int) -> list[np.ndarray]:
    """Row indices of each non-empty group, each in file order."""
    if codes.size == 0:
        return []
    if size == 1:
        return [np.arange(codes.size)]
    order = _stable_argsort(codes, size)
    rows = np.arange(codes.size) if order is None else order
    bounds = np.cumsum(np.bincount(codes, minlength=size))[:-1]
    return [group for group in np.split(rows, bounds) if group.size]


def _numpy(table: pa.Table, name: str, dtype: type[np.generic]) -> np.ndarray:
    return _arrow.to_numpy(table.column(name)).astype(dtype, copy=False)


def _is_sum(table: pa.Table) -> np.ndarray:
    """True for each sum-reduced event."""
    codes, labels = _codes(table.column(schema.REDUCTION))
    unknown = sorted(set(labels) - set(schema.REDUCTIONS), key=str)
    if unknown:
        raise ValueError(f"unknown reduction {unknown[0]!r}: expected one of {schema.REDUCTIONS}")
    if schema.SUM not in labels:
        return np.zeros(table.num_rows, dtype=bool)
    is_sum: np.ndarray = codes == labels.index(schema.SUM)
    return is_sum


def _replace(table: pa.Table, name: str, array: pa.Array[Any]) -> pa.Table:
    index = table.schema.get_field_index(name)
    return table.set_column(index, table.schema.field(index).with_type(array.type), array)
