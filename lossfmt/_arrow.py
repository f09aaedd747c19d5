"""Arrow arrays straight from numpy buffers.

Faster than `pa.array()`, which in pyarrow 26 also imports pandas on its first call whenever pandas is
installed: built this way, logging (the writer's thread) never loads pandas.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

_NUMPY = {
    pa.int8(): np.int8,
    pa.int32(): np.int32,
    pa.int64(): np.int64,
    pa.float64(): np.float64,
}


def array(data: np.ndarray, type_: pa.DataType | None = None, *, mask: np.ndarray | None = None) -> pa.Array:
    """`data` as an Arrow array of `type_` (default: from its dtype); `mask` marks nulls, as in pa.array."""
    data = np.asarray(data)
    validity = None if mask is None else pa.py_buffer(np.packbits(~np.asarray(mask, bool), bitorder="little"))
    if data.dtype == np.bool_ or type_ == pa.bool_():
        values = np.packbits(data.astype(bool, copy=False), bitorder="little")
        return pa.Array.from_buffers(pa.bool_(), len(data), [validity, pa.py_buffer(values)])
    if type_ is None:
        type_ = pa.from_numpy_dtype(data.dtype)
    dtype = np.int64 if pa.types.is_timestamp(type_) else _NUMPY[type_]
    values = np.ascontiguousarray(data, dtype=dtype)
    return pa.Array.from_buffers(type_, len(values), [validity, pa.py_buffer(values)])


def strings(values: Sequence[str]) -> pa.Array:
    """A pa.string() array of `values`."""
    encoded = [v.encode() for v in values]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int32)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    return pa.Array.from_buffers(
        pa.string(), len(encoded), [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))]
    )
