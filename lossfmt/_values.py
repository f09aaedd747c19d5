"""Turning any framework's scalar into a float without importing the framework.

`scalar(value)` runs on the caller's thread at `add()`: it validates the value (a number, exactly one element)
and returns either a Python float or a *deferred handle*, a framework object whose number is read later by
`read_values()` on the flusher thread. Frameworks are recognized through `sys.modules` (a framework that was
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
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["CONVERTERS", "TENSOR", "read_values", "scalar", "type_name"]


def type_name(value: Any) -> str:
    """The name of `value`'s type for error messages: `float`, `numpy.ndarray`, `torch.Tensor`."""
    cls = type(value)
    return cls.__name__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def _describe(value: Any) -> str:
    if type(value) is int and value.bit_length() > 64:  # str() of a huge int is slow, or refused
        return f"an int of {value.bit_length()} bits"
    return f"{type_name(value)}: {value!r:.80}"


def _not_a_number(value: Any) -> TypeError:
    return TypeError(f"value must be a real number, got {_describe(value)}")


def _too_large(value: Any) -> ValueError:
    return ValueError(
        f"value is too large for a float64 (largest: {sys.float_info.max:.4g}), got {_describe(value)}; "
        "log it scaled (e.g. its log) or pass math.inf if infinity is meant"
    )


def _int(value: int) -> float:
    try:
        return float(value)
    except OverflowError:
        raise _too_large(value) from None


def _wide_float(value: Any) -> float:
    """A float wider than float64 (numpy.longdouble): an overflow to infinity is an error, not a value."""
    number = float(value)
    if math.isinf(number) and not np.isinf(value):
        raise _too_large(value)
    return number


#: The writer's hot path looks a value's exact type up here (one dict lookup) and calls the function, which
#: returns what `scalar` returns: Python int, numpy's integer and floating scalars, and (added when the first
#: one is seen) torch tensor types. bool, numpy.bool_ and numpy.timedelta64 are not numbers and are absent.
CONVERTERS: dict[type, Callable[[Any], Any]] = {
    int: _int,
    **{
        t: _wide_float if np.finfo(t).bits > 64 else float
        for t in set(np.sctypeDict.values())
        if issubclass(t, np.floating)
    },
    **{
        t: float
        for t in set(np.sctypeDict.values())
        if issubclass(t, np.integer) and not issubclass(t, np.timedelta64)
    },
}


class _NotLoaded:
    """Stands for torch.Tensor until torch is seen: no value's type is this class."""


#: torch.Tensor once a torch tensor was converted (else a class no value has). The writer's `add()` reads an
#: exact torch.Tensor on the CPU inline (`value.is_cpu`, then `value.item()`, any other result left to
#: `scalar`): the converter call it skips is 5-10% of that add() (bench/hotpath.py).
TENSOR: type[Any] = _NotLoaded


def _check_one(value: Any, size: int) -> None:
    if size != 1:
        raise ValueError(
            f"value must be a single number, got {type_name(value)} with {size} elements; "
            "log a reduction (e.g. loss.mean()) or one tag per element"
        )


def _torch(value: Any) -> float | Any:
    """A torch tensor: read at the call on the CPU, else cloned for the flusher (no device sync here)."""
    # is_cpu: a flag read, an order of magnitude cheaper than tensor.device. item() alone then checks the size
    # and gives the type: each further tensor attribute read would cost ~50 ns.
    if value.is_cpu:
        try:
            number = value.item()
        except RuntimeError:
            number = None  # (checked outside the except: one error, not torch's chained before ours)
        if number is None:
            _check_one(value, value.numel())
            number = value.item()
        if type(number) is float:
            return number
        if type(number) is int:
            return float(number)  # at most 64 bits
        raise _not_a_number(value)  # bool or complex
    _check_one(value, value.numel())
    if value.dtype is sys.modules["torch"].bool or value.is_complex():
        raise _not_a_number(value)
    if value.is_meta:
        raise ValueError(
            f"value is a tensor on the meta device, which holds no number ({_describe(value)}); log a "
            "tensor on the CPU or an accelerator"
        )
    return value.detach().clone()


def _numpy(value: Any) -> float:
    if isinstance(value, np.ndarray):
        _check_one(value, value.size)
        if isinstance(value, np.ma.MaskedArray) and np.ma.is_masked(value):
            raise ValueError("a masked value is no number to log (numpy.ma: its data is not the value)")
        value = np.asarray(value).reshape(())[()]  # a subclass such as np.matrix keeps its own shape
        if not isinstance(value, np.generic):  # an object array holding some other scalar
            return scalar(value)
    convert = CONVERTERS.get(type(value))
    if convert is not None:
        return convert(value)  # type: ignore[no-any-return]
    if isinstance(value, (np.integer, np.floating)) and not isinstance(value, np.timedelta64):
        return _wide_float(value)  # a subclass of a numpy number
    raise _not_a_number(value)


def _array_api(value: Any) -> Any:
    """JAX / TensorFlow: check size and dtype from metadata (no device access), keep the immutable array."""
    _check_one(value, math.prod(value.shape))
    dtype = np.dtype(getattr(value.dtype, "as_numpy_dtype", value.dtype))  # tf.DType -> numpy type
    if dtype.kind not in "iuf" and "float" not in dtype.name:  # bfloat16 (ml_dtypes) has kind "V"
        raise _not_a_number(value)
    return value


def scalar(value: Any) -> float | Any:
    """Validate one logged value; return it as a float, or as a deferred handle for `read_values`.

    TypeError for anything that is not a real number (bool, str, None, complex, timedelta, other objects),
    naming its type; ValueError for an array or tensor with more than one element, or a number beyond the
    float64 range (an int or Fraction over ~1.8e308, a long double that would become inf). NaN and +-inf
    are valid.
    """
    cls = type(value)
    if cls is float:
        return value
    convert = CONVERTERS.get(cls)
    if convert is not None:
        return convert(value)
    return _other(value, cls)


def _other(value: Any, cls: type) -> float | Any:
    """`scalar` of a value whose type is not in CONVERTERS (yet: a torch tensor type is added to it)."""
    if cls is bool:
        raise _not_a_number(value)
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        global TENSOR
        TENSOR = torch.Tensor
        CONVERTERS[cls] = _torch  # the next tensor of this type takes the writer's one-lookup path
        return _torch(value)
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
    if isinstance(value, numbers.Real):
        try:
            return float(value)
        except OverflowError:  # a huge Fraction or int subclass
            raise _too_large(value) from None
    raise _not_a_number(value)


def _one_float(array: Any) -> float:
    return float(np.asarray(array, dtype=np.float64).reshape(()))


def read_values(values: Sequence[Any]) -> tuple[list[float], dict[int, BaseException]]:
    """`values` as floats, and the error of each position whose handle could not be read (its float is NaN
    there: the caller drops it). One transfer per device; where that fails, each handle alone, so one bad
    handle costs only its own event."""
    out = list(values)
    failed: dict[int, BaseException] = {}
    groups: dict[Any, list[int]] = {}
    # Any: the frameworks' modules, when loaded (untyped; this module never imports them)
    torch: Any = sys.modules.get("torch")
    jax: Any = sys.modules.get("jax")
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
        try:
            floats = _read_group(key, handles, torch, jax)
        except Exception:
            floats = []
            for i, h in zip(idx, handles, strict=True):
                try:
                    floats.extend(_read_group(key, [h], torch, jax))
                except Exception as exc:
                    failed[i] = exc
                    floats.append(math.nan)
        for i, f in zip(idx, floats, strict=True):
            out[i] = f
    return out, failed


def _read_group(key: Any, handles: list[Any], torch: Any, jax: Any) -> list[float]:
    """The floats of handles of one kind (one device): one transfer."""
    if key == "jax":
        return [_one_float(x) for x in jax.device_get(handles)]
    if key == "other":
        return [_one_float(h) for h in handles]
    device = key[1]
    if device.type == "cuda":
        # The clones were queued on the caller's stream; wait for them here, on the flusher's thread.
        torch.cuda.synchronize(device)
    floats: list[float] = torch.stack([h.reshape(()) for h in handles]).double().cpu().tolist()
    return floats
