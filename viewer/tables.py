"""One run's table as the viewer reads it: its tags in file order, the rows of each tag, and columns as
numpy arrays (nulls as NaN, wall time as seconds). No matplotlib, no transforms: `view` builds curves on it.
"""

from __future__ import annotations

import math
from typing import Any, cast

import numpy as np
import pyarrow as pa

from lossfmt.transforms import to_numpy


def tag_names(table: pa.Table) -> list[str]:
    """The tags of a table in the order they first appeared in its file (its dictionary order)."""
    col = table.column("tag")
    if col.num_chunks == 0:
        return []
    if not pa.types.is_dictionary(col.type):
        return [str(v) for v in dict.fromkeys(col.to_pylist())]
    names: dict[str, None] = {}
    # each chunk's dictionary extends the previous one (IPC delta dictionaries)
    for chunk in cast("list[pa.DictionaryArray[Any, Any]]", col.chunks):
        names.update(dict.fromkeys(str(v) for v in chunk.dictionary.to_pylist()))
    return list(names)


def tag_groups(table: pa.Table) -> list[tuple[str, np.ndarray | None]]:
    """(tag, row indices) per tag present, in order of first appearance; indices None = every row."""
    if table.num_rows == 0:
        return []
    col = table.column("tag")
    only = _only_label(col)
    if only is not None:  # one series: no codes to read
        return [(only, None)]
    if not pa.types.is_dictionary(col.type):
        col = col.dictionary_encode()
    combined = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col  # unifies dictionaries
    combined = cast("pa.DictionaryArray[Any, Any]", combined)  # dictionary-encoded above
    codes = to_numpy(combined.indices)
    names = [str(v) for v in combined.dictionary.to_pylist()]
    present = to_numpy(combined.indices.unique())  # in order of first appearance
    if len(present) == 1:
        return [(names[int(present[0])], None)]
    return [(names[int(k)], np.flatnonzero(codes == k)) for k in present]


def _only_label(col: pa.ChunkedArray[Any]) -> str | None:
    """The tag of every row when all chunks share one one-entry dictionary (known without reading indices)."""
    if not pa.types.is_dictionary(col.type) or col.num_chunks == 0:
        return None
    first = cast("pa.DictionaryArray[Any, Any]", col.chunk(0)).dictionary  # a dictionary column
    if len(first) != 1 or col.null_count:
        return None
    rest = cast("list[pa.DictionaryArray[Any, Any]]", col.chunks[1:])
    if any(not c.dictionary.equals(first) for c in rest):
        return None
    return str(first.to_pylist()[0])


def column(table: pa.Table, name: str, dtype: type) -> np.ndarray:
    """A column as a numpy array of ``dtype`` (nulls as NaN)."""
    return np.asarray(to_numpy(table.column(name), fill=math.nan), dtype=dtype)


def seconds(table: pa.Table) -> np.ndarray:
    """wall_time as float seconds since the Unix epoch."""
    col = table.column("wall_time").cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
    return np.asarray(to_numpy(col), dtype=np.float64) / 1e6


def logy_hidden(name: str, steps: np.ndarray, values: np.ndarray) -> str | None:
    """What a log axis leaves out of a series (its zero and negative values; -inf is marked as non-finite
    already), in the words every view (window, file, terminal) warns with; None if nothing."""
    out = (values <= 0) & np.isfinite(values)
    below = int(np.count_nonzero(out))
    if not below:
        return None
    first = int(steps[np.argmax(out)])
    said = f"1 value of {name} is" if below == 1 else f"{below:,} values of {name} are"
    return (
        f"--logy: {said} zero or negative (the first at step {first:,}): "
        f"a log axis does not draw {'it' if below == 1 else 'them'}"
    )
