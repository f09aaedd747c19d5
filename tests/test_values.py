"""lossfmt.values: every framework's scalar becomes the float that was logged, without importing it."""

from __future__ import annotations

import math
import subprocess
import sys
import types
from fractions import Fraction

import numpy as np
import pytest

import lossfmt
from lossfmt import _values as values

torch = pytest.importorskip("torch")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.25, 0.25),
        (3, 3.0),
        (-(2**53), -(2.0**53)),
        (Fraction(1, 4), 0.25),
        (np.float32(0.5), 0.5),
        (np.float64(-1.5), -1.5),
        (np.int64(7), 7.0),
        (np.uint8(255), 255.0),
        (np.float16(2.0), 2.0),
        (np.array(1.25), 1.25),
        (np.array([1.25]), 1.25),
        (np.array([[4]], dtype=np.int32), 4.0),
        (np.array(0.5, dtype=object), 0.5),
    ],
)
def test_python_and_numpy_numbers_become_floats(value, expected):
    result = values.scalar(value)
    assert type(result) is float
    assert result == expected


def test_the_writers_converters_give_what_scalar_gives():
    assert int in values.CONVERTERS and np.float32 in values.CONVERTERS and np.uint64 in values.CONVERTERS
    for cls in [t for t in values.CONVERTERS if issubclass(t, (int, np.generic))]:
        value = cls(3)
        assert values.scalar(value) == values.CONVERTERS[cls](value) == 3.0
    for not_a_number in (bool, np.bool_, np.complex64, np.str_, np.datetime64, np.timedelta64):
        assert not_a_number not in values.CONVERTERS


def test_a_torch_tensor_type_joins_the_converters_once_seen():
    class Loss(torch.Tensor):
        pass

    loss = torch.tensor(0.5).as_subclass(Loss)
    assert values.scalar(loss) == 0.5
    assert values.CONVERTERS[Loss](loss) == 0.5
    with pytest.raises(TypeError, match="real number"):
        values.CONVERTERS[Loss](torch.tensor(True).as_subclass(Loss))
    with pytest.raises(ValueError, match="single number"):
        values.CONVERTERS[Loss](torch.ones(2).as_subclass(Loss))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (math.nan, math.nan),
        (math.inf, math.inf),
        (-math.inf, -math.inf),
        (np.float32("nan"), math.nan),
        (np.array([-np.inf]), -math.inf),
        (torch.tensor([math.inf]), math.inf),
    ],
)
def test_non_finite_values_are_kept(value, expected):
    result = values.scalar(value)
    assert type(result) is float
    assert result == expected or (math.isnan(result) and math.isnan(expected))


@pytest.mark.parametrize(
    ("value", "type_name"),
    [
        (True, "bool"),
        (np.bool_(False), "numpy.bool"),
        ("1.0", "str"),
        (None, "NoneType"),
        (1 + 2j, "complex"),
        (np.complex64(1), "numpy.complex64"),
        (object(), "object"),
        ([1.0], "list"),
        (np.array(["a"]), "numpy.str_"),
        (np.array([True]), "numpy.bool"),
    ],
)
def test_non_numbers_raise_type_error_naming_the_type(value, type_name):
    with pytest.raises(TypeError, match=f"real number, got {type_name}"):
        values.scalar(value)


@pytest.mark.parametrize(
    "value", [np.array([1.0, 2.0]), np.zeros((2, 2)), np.array([]), torch.ones(3), torch.zeros(0)]
)
def test_more_or_fewer_than_one_element_raises_value_error(value):
    with pytest.raises(ValueError, match="single number"):
        values.scalar(value)


def test_cpu_tensors_with_requires_grad_become_floats():
    w = torch.tensor(2.0, requires_grad=True)
    loss = (w * 3.0) ** 2  # part of an autograd graph
    assert values.scalar(loss) == 36.0
    assert values.scalar(torch.tensor([[1.5]])) == 1.5
    assert values.scalar(torch.tensor(5, dtype=torch.int64)) == 5.0
    assert values.scalar(torch.tensor(0.5, dtype=torch.bfloat16)) == 0.5
    assert math.isnan(values.scalar(torch.tensor(float("nan"))))
    loss.backward()  # logging did not break the graph
    assert w.grad.item() == 36.0


def test_bool_and_complex_tensors_are_not_numbers():
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        values.scalar(torch.tensor(True))
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        values.scalar(torch.tensor(1 + 1j))


def test_device_tensors_are_cloned_at_add_and_read_in_one_batch(monkeypatch):
    """The deferred path of CUDA tensors, exercised with real CPU tensors (no GPU here): the handle is a
    detached clone, so a later in-place change can't alter the logged value, and read_values reads a batch of
    handles with one stacked copy. What this cannot check: that no device sync happens on the caller's thread.
    """
    monkeypatch.setattr(torch.Tensor, "is_cpu", property(lambda tensor: False))  # as a CUDA tensor
    w = torch.tensor(1.0, requires_grad=True)
    running = torch.zeros(1)
    handles = []
    for i in range(3):
        running += i + 1.0  # the caller's accumulator, changed in place after each log
        handles.append(values.scalar(running))
    loss = w * 4.0
    handles.append(values.scalar(loss))
    assert all(isinstance(h, torch.Tensor) for h in handles)
    assert not handles[-1].requires_grad and handles[-1].grad_fn is None
    stacked = []
    real_stack = torch.stack
    monkeypatch.setattr(
        torch, "stack", lambda ts, *a, **k: stacked.append(len(ts)) or real_stack(ts, *a, **k)
    )
    assert values.read_values([0.5, *handles, 2.5]) == ([0.5, 1.0, 3.0, 6.0, 4.0, 2.5], {})
    assert stacked == [4]  # one transfer for the four handles of one device


class _FakeJaxArray:
    """Stands in for jax.Array: shape and dtype are metadata; the number is only read through device_get."""

    def __init__(self, x, dtype=np.float32):
        self._x, self.shape, self.dtype = x, np.shape(x), np.dtype(dtype)

    def __float__(self):
        raise AssertionError("read on the caller's thread")


def test_jax_arrays_are_kept_and_read_in_the_flusher(monkeypatch):
    """Checks the dispatch and the protocol we rely on (jax.Array, .shape, .dtype, jax.device_get), with a
    fake `jax` module: JAX itself is not installed here."""
    got = []
    fake = types.SimpleNamespace(
        Array=_FakeJaxArray, device_get=lambda xs: got.append(len(xs)) or [np.float32(x._x) for x in xs]
    )
    monkeypatch.setitem(sys.modules, "jax", fake)
    a, b = _FakeJaxArray(0.5), _FakeJaxArray([[2.0]])
    assert values.scalar(a) is a
    with pytest.raises(ValueError, match="2 elements"):
        values.scalar(_FakeJaxArray([1.0, 2.0]))
    with pytest.raises(TypeError, match="real number"):
        values.scalar(_FakeJaxArray(1, dtype=bool))
    assert values.read_values([a, 1.0, b]) == ([0.5, 1.0, 2.0], {})
    assert got == [2]


def test_tensorflow_variables_are_snapshotted_and_tensors_kept(monkeypatch):
    """Dispatch only, with a fake `tensorflow` module (TF is not installed here): a Variable is mutable, so
    its value at the call (read_value) is what gets logged; an eager tensor is immutable and kept."""

    class Tensor:
        def __init__(self, x):
            self.x, self.shape = x, np.shape(x)
            self.dtype = types.SimpleNamespace(as_numpy_dtype=np.float32)

        def __array__(self, dtype=None, copy=None):
            return np.asarray(self.x, dtype=dtype)

    class Variable:
        def __init__(self, x):
            self.x = x

        def read_value(self):
            return Tensor(self.x)

    monkeypatch.setitem(sys.modules, "tensorflow", types.SimpleNamespace(Tensor=Tensor, Variable=Variable))
    var = Variable(1.5)
    handle = values.scalar(var)
    var.x = 99.0
    assert isinstance(handle, Tensor)
    assert values.read_values([handle]) == ([1.5], {})


def test_import_never_imports_a_framework():
    code = (
        "import sys, lossfmt, lossfmt._values, lossfmt._writer; "
        "bad = {'torch', 'jax', 'tensorflow', 'pandas', 'matplotlib'} & set(sys.modules); "
        "sys.exit(sorted(bad) or 0)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_numpy_array_subclasses_give_their_one_value_and_a_masked_one_is_refused():
    assert values.scalar(np.matrix([[2.0]])) == 2.0  # it kept its 2-D shape through reshape: RecursionError
    assert values.scalar(np.ma.masked_array([3.0], mask=[False])) == 3.0
    for masked in (np.ma.masked_array([1.0], mask=[True]), np.ma.masked):
        with pytest.raises(ValueError, match="a masked value is no number to log"):
            values.scalar(masked)


def test_a_torch_tensor_of_several_elements_is_one_error_not_torchs_chained_before_it(tmp_path):
    """add(1, torch.ones(2)) printed torch's RuntimeError, 'During handling of the above exception', then
    lossfmt's ValueError."""
    with lossfmt.LossWriter(tmp_path / "run.arrow") as w:
        for value in (torch.ones(2), torch.ones(2, requires_grad=True), torch.zeros(0)):
            with pytest.raises(ValueError, match="elements") as raised:
                w.add(1, value)
            assert raised.value.__context__ is None or raised.value.__suppress_context__
        assert w.pending == 0
