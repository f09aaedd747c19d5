"""Turning any framework's scalar into a float without importing the framework.

`scalar(value)` runs on the caller's thread at `add()`: it validates the value (a number, exactly one element)
and returns either a Python float or a *deferred handle*, a framework object whose number is read later by
`materialize()` on the flusher thread. Frameworks are recognized through `sys.modules` (a framework that was
never imported cannot have produced the value), so importing lossfmt never imports one (numpy is a
dependency of lossfmt and is used directly).

- Python float/int, numbers.Real, numpy scalars and 1-element arrays: converted at the call.
- torch tensors on the CPU: `.item()` at the call (cheap, no device; works with requires_grad).
- torch tensors on an accelerator (CUDA, ...): `detach().clone()` at the call. The clone is queued on the
  device, so the caller's thread never waits for the device, and a later in-place change to the caller's
  tensor cannot alter the logged value. The flusher reads all such handles in one batched transfer per device.
- JAX arrays and TensorFlow eager tensors are immutable: a reference is kept and read in the flusher.
"""

from __future__ import annotations

import math
import numbers
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["FLOAT_TYPES", "materialize", "scalar", "type_name"]

#: Exact types whose value `scalar` returns as `float(value)`: Python int and numpy's integer and floating
#: scalars. The writer's hot path looks a value's type up here (one dict lookup) before calling `scalar`.
#: bool and numpy.bool_ are not numbers and are absent.
FLOAT_TYPES: dict[type, type[float]] = dict.fromkeys(
    [
        int,
        *(
            t
            for t in set(np.sctypeDict.values())
            if issubclass(t, (np.integer, np.floating)) and t is not np.timedelta64
        ),
    ],
    float,
)


def type_name(value: Any) -> str:
    """The name of `value`'s type for error messages: `float`, `numpy.ndarray`, `torch.Tensor`."""
    cls = type(value)
    return cls.__name__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def _not_a_number(value: Any) -> TypeError:
    return TypeError(f"value must be a real number, got {type_name(value)}: {value!r:.80}")


def _check_one(value: Any, size: int) -> None:
    if size != 1:
        raise ValueError(
            f"value must be a single number, got {type_name(value)} with {size} elements; "
            "log a reduction (e.g. loss.mean()) or one tag per element"
        )


def _defer_torch(tensor: Any) -> bool:
    """True if reading this tensor would wait for a device: keep a clone and read it in the flusher."""
    return not tensor.is_cpu  # is_cpu: a flag read, an order of magnitude cheaper than tensor.device


def _torch(value: Any, torch: Any) -> float | Any:
    if not _defer_torch(value):
        # item() alone checks the size and gives the type: each tensor attribute read costs ~100 ns.
        try:
            number = value.item()
        except RuntimeError:
            _check_one(value, value.numel())
            raise
        if type(number) is float or type(number) is int:
            return float(number)
        raise _not_a_number(value)  # bool or complex
    _check_one(value, value.numel())
    if value.dtype == torch.bool or value.is_complex():
        raise _not_a_number(value)
    return value.detach().clone()


def _numpy(value: Any) -> float:
    if isinstance(value, np.ndarray):
        _check_one(value, value.size)
        value = value.reshape(())[()]
        if not isinstance(value, np.generic):  # an object array holding some other scalar
            return scalar(value)  # type: ignore[return-value]
    if isinstance(value, (np.integer, np.floating)):
        return float(value)
    raise _not_a_number(value)


def _array_api(value: Any) -> Any:
    """JAX / TensorFlow: check size and dtype from metadata (no device access), keep the immutable array."""
    _check_one(value, math.prod(value.shape))
    dtype = np.dtype(getattr(value.dtype, "as_numpy_dtype", value.dtype))  # tf.DType -> numpy type
    if dtype.kind not in "iuf" and "float" not in dtype.name:  # bfloat16 (ml_dtypes) has kind "V"
        raise _not_a_number(value)
    return value


def scalar(value: Any) -> float | Any:
    """Validate one logged value; return it as a float, or as a deferred handle for `materialize`.

    TypeError for anything that is not a real number (bool, str, None, complex, other objects), naming its
    type; ValueError for an array or tensor with more than one element. NaN and ±inf are valid.
    """
    cls = type(value)
    if cls is float:
        return value
    if cls is bool:
        raise _not_a_number(value)
    if cls is int:
        return float(value)
    if isinstance(value, (np.floating, np.integer)):  # the most common non-float (np.bool_ is neither)
        return float(value)
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        return _torch(value, torch)
    if isinstance(value, (np.ndarray, np.generic)):
        return _numpy(value)
    jax = sys.modules.get("jax")
    if jax is not None and isinstance(value, jax.Array):
        return _array_api(value)
    tf = sys.modules.get("tensorflow")
    if tf is not None and isinstance(value, tf.Variable):
        value = value.read_value()  # a Variable is mutable: log a snapshot
    if tf is not None and isinstance(value, tf.Tensor):
        return _array_api(value)
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    raise _not_a_number(value)


def _one_float(array: Any) -> float:
    return float(np.asarray(array, dtype=np.float64).reshape(()))


def materialize(values: Sequence[Any]) -> list[float]:
    """Return `values` as floats, reading deferred handles (see `scalar`) in as few transfers as possible."""
    out = list(values)
    groups: dict[Any, list[int]] = {}
    torch = sys.modules.get("torch")
    jax = sys.modules.get("jax")
    for i, v in enumerate(out):
        if type(v) is float:
            continue
        if torch is not None and isinstance(v, torch.Tensor):
            key: Any = ("torch", v.device)
        elif jax is not None and isinstance(v, jax.Array):
            key = "jax"
        else:
            key = "other"
        groups.setdefault(key, []).append(i)
    for key, idx in groups.items():
        handles = [out[i] for i in idx]
        if key == "jax":
            floats = [_one_float(x) for x in jax.device_get(handles)]
        elif key == "other":
            floats = [_one_float(h) for h in handles]
        else:
            device = key[1]
            if device.type == "cuda":
                # The clones were queued on the caller's stream; wait for them here, on the flusher's thread.
                torch.cuda.synchronize(device)
            floats = torch.stack([h.reshape(()) for h in handles]).double().cpu().tolist()
        for i, f in zip(idx, floats, strict=True):
            out[i] = f
    return out
