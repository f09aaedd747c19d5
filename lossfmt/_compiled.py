"""The compiled add() (lossfmt/_fastadd.c) where the installed package has it, else the pure-Python one.

`Base` is the class `LossWriter` derives from: the extension's `WriterBase`, or `object`. `WriterBase` holds
the attributes add() reads on every call (`_pending`, `_wake_at`, `_ok`) as C members, and its C `add` and
`add_many` take the calls the Python methods' fast paths take (the same rules) and hand every other call to
the Python method, which `install` keeps as `_add_py` / `_add_many_py`: the two differ only in speed, and
the suite runs both ways (CI sets `LOSSFMT_PURE_PYTHON=1` for the second run). `transpose_rows` is the
flusher's side (None without the extension): the first n pending rows as one bytes object, column by
column, which lossfmt._rows views as contiguous numpy columns (the pure-Python path joins the rows and views
their fields strided).

The extension is optional: a build without a C compiler (or on a big-endian machine) installs without it,
and `LOSSFMT_PURE_PYTHON=1` in the environment before lossfmt is imported turns it off.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

__all__ = ["COMPILED", "PURE_ENV", "Base", "install", "transpose_rows"]

#: The environment variable that turns the compiled add() off.
PURE_ENV = "LOSSFMT_PURE_PYTHON"


def _extension() -> Any:
    """The configured extension module, or None (turned off, not built, or not this row layout)."""
    if os.environ.get(PURE_ENV, "").strip() not in ("", "0"):
        return None
    try:
        from lossfmt import _fastadd
    except ImportError:
        return None
    return _fastadd


_module = _extension()
if TYPE_CHECKING:
    Base = object
else:
    Base = object if _module is None else _module.WriterBase

#: True when LossWriter.add is the compiled one.
COMPILED: bool = _module is not None

transpose_rows: Callable[[list[Any], int], bytes] | None = None if _module is None else _module.transpose_rows


def install(cls: type) -> None:
    """Make the extension's add and add_many `cls`'s; the Python ones stay as `cls._add_py` and
    `cls._add_many_py`, for every other call. Either way a writer refuses to be copied or pickled."""
    for name in ("__copy__", "__deepcopy__", "__reduce_ex__"):
        type.__setattr__(cls, name, _refuse_copy)
    if _module is None:
        return
    from lossfmt import _rows, _values  # _rows imports this module
    from lossfmt import schema as s

    python_add, python_add_many = cls.__dict__["add"], cls.__dict__["add_many"]
    _module.configure(
        _rows._ids,
        _values.CONVERTERS,
        vars(_values),
        s.DEFAULT_TAG,
        s.MEAN,
        s.SUM,
        1,
        _rows.ROW.format,
        python_add.__doc__ or "",
        python_add_many.__doc__ or "",
    )
    for name, method in (("add", python_add), ("add_many", python_add_many)):
        type.__setattr__(cls, f"_{name}_py", method)
        type.__delattr__(cls, name)


def _refuse_copy(self: Any, *args: Any) -> Any:
    """A copy would share the file and the flusher thread with the writer (its close() would end both)."""
    raise TypeError(
        "a LossWriter cannot be copied or pickled: it owns its file and its flusher thread; pass the writer "
        "itself around, or open one per process (with the rank or pid in the path)"
    )
