"""Arrow arrays straight from numpy buffers.

Faster than `pa.array()`, which in pyarrow 26 also imports pandas on its first call whenever pandas is
installed: built this way, logging (the writer's thread) never loads pandas.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import pyarrow as pa


def to_buffer(data: np.ndarray | bytes) -> pa.Buffer:
    """A zero-copy Arrow buffer over `data` (pyarrow-stubs do not list ndarray as a buffer provider)."""
    return pa.py_buffer(cast("bytes", data))


def to_memoryview(buffer: pa.Buffer) -> memoryview:
    """A zero-copy memoryview of an Arrow buffer, for np.frombuffer (the stubs do not list pa.Buffer)."""
    return memoryview(cast("bytes", buffer))


_NUMPY = {
    pa.int8(): np.int8,
    pa.int32(): np.int32,
    pa.int64(): np.int64,
    pa.float64(): np.float64,
}


def array(
    data: np.ndarray, type_: pa.DataType | None = None, *, mask: np.ndarray | None = None
) -> pa.Array[Any]:
    """`data` as an Arrow array of `type_` (default: from its dtype); `mask` marks nulls, as in pa.array."""
    data = np.asarray(data)
    validity = None if mask is None else to_buffer(np.packbits(~np.asarray(mask, bool), bitorder="little"))
    if data.dtype == np.bool_ or type_ == pa.bool_():
        values = np.packbits(data.astype(bool, copy=False), bitorder="little")
        return pa.Array.from_buffers(pa.bool_(), len(data), [validity, to_buffer(values)])
    if type_ is None:
        type_ = pa.from_numpy_dtype(data.dtype)
    dtype = np.int64 if pa.types.is_timestamp(type_) else _NUMPY[type_]
    values = np.ascontiguousarray(data, dtype=dtype)
    return pa.Array.from_buffers(type_, len(values), [validity, to_buffer(values)])


def strings(values: Sequence[str]) -> pa.Array[Any]:
    """A pa.string() array of `values`."""
    encoded = [v.encode() for v in values]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int32)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    return pa.Array.from_buffers(
        pa.string(), len(encoded), [None, to_buffer(offsets), to_buffer(b"".join(encoded))]
    )


_WIDTHS = {
    pa.int8(): np.int8,
    pa.int16(): np.int16,
    pa.int32(): np.int32,
    pa.int64(): np.int64,
    pa.uint8(): np.uint8,
    pa.uint32(): np.uint32,
    pa.uint64(): np.uint64,
    pa.float32(): np.float32,
    pa.float64(): np.float64,
}


def to_numpy(data: pa.Array[Any] | pa.ChunkedArray[Any], *, fill: float | None = None) -> np.ndarray:
    """A primitive column as numpy, zero-copy for one chunk without nulls; timestamps as int64; nulls
    replaced by `fill` when given.

    Reads the buffers directly: `to_numpy()` imports pandas in pyarrow 26, which costs every `lossview`
    command half a second. Columns with nulls and no `fill` fall back to pyarrow's conversion.
    """
    if isinstance(data, pa.ChunkedArray):
        if data.num_chunks == 1:
            return to_numpy(data.chunk(0), fill=fill)
        if data.num_chunks == 0:
            return to_numpy(pa.Array.from_buffers(data.type, 0, [None, None]), fill=fill)
        return np.concatenate([to_numpy(chunk, fill=fill) for chunk in data.chunks])
    type_ = data.type
    primitive = type_ in _WIDTHS or pa.types.is_timestamp(type_) or type_ == pa.bool_()
    if not primitive or (data.null_count and fill is None):
        return data.to_numpy(zero_copy_only=False)
    n, offset = len(data), data.offset
    validity, buffer = data.buffers()[:2]
    if type_ == pa.bool_():
        values = _bits(buffer, offset, n)
    else:
        dtype = np.dtype(np.int64 if pa.types.is_timestamp(type_) else _WIDTHS[type_])
        if buffer is None:
            values = np.zeros(0, dtype)
        else:
            values = np.frombuffer(to_memoryview(buffer), dtype, n, offset * dtype.itemsize)
    if data.null_count:
        assert fill is not None  # (nulls without a fill took pyarrow's conversion above)
        return np.where(_bits(validity, offset, n), values, fill)
    return values


def _bits(buffer: pa.Buffer | None, offset: int, n: int) -> np.ndarray:
    if buffer is None:
        return np.zeros(0, dtype=bool)
    bits = np.unpackbits(np.frombuffer(to_memoryview(buffer), np.uint8), bitorder="little")
    return bits[offset : offset + n].astype(bool)
