"""The compiled add() (lossfmt/_fastadd.c) against the Python one it stands for, and the switch between them.

The suite runs twice in CI: with the extension (`LOSSFMT_REQUIRE_COMPILED=1`: a wheel built without it fails
here) and with `LOSSFMT_PURE_PYTHON=1` on the write side's tests. The comparisons below need both adds in one
process, so they run only where the extension is loaded; the first test makes sure that is every run that
is not the pure one.
"""

from __future__ import annotations

import inspect
import itertools
import math
import os
import subprocess
import sys
import threading
import tracemalloc
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lossfmt import LossWriter, _compiled, _rows
from lossfmt import schema as s

needs_extension = pytest.mark.skipif(
    not _compiled.COMPILED, reason="the pure-Python run (LOSSFMT_PURE_PYTHON=1): no compiled add to compare"
)


def test_the_extension_is_loaded_unless_the_pure_run_asked_otherwise():
    pure = os.environ.get(_compiled.PURE_ENV, "") not in ("", "0")
    if pure:
        assert not _compiled.COMPILED
        assert LossWriter.add.__qualname__ == "LossWriter.add"  # the Python method
    elif os.environ.get("LOSSFMT_REQUIRE_COMPILED") == "1":
        assert _compiled.COMPILED, (
            "the installed lossfmt has no lossfmt._fastadd: the extension did not build"
        )
    if _compiled.COMPILED:
        assert type(LossWriter.add).__name__ == "method_descriptor"


def test_the_environment_variable_turns_the_extension_off():
    code = "import lossfmt, lossfmt._compiled as c; print(c.COMPILED, type(lossfmt.LossWriter.add).__name__)"
    env = {**os.environ, _compiled.PURE_ENV: "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "function"]


def _parameters(function: Any) -> list[tuple[str, Any, Any]]:
    """Names, kinds and defaults (a C signature carries no annotations; type checkers read the .py)."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


@pytest.mark.parametrize("name", ["add", "add_many"])
def test_both_versions_have_one_signature_and_docstring(name):
    method = getattr(LossWriter, name)
    python = getattr(LossWriter, f"_{name}_py", method)
    assert _parameters(method) == _parameters(python)
    assert inspect.getdoc(method) == inspect.getdoc(python)
    assert "Record one event" in (inspect.getdoc(method) or "")


_TIME = slice(16, 24)  # the wall-time field of a packed row: the only bytes the two adds may differ in


def _outcome(call: Any) -> tuple[str, Any]:
    try:
        call()
    except Exception as exc:
        return "raised", (type(exc), str(exc))
    return "ok", None


def _rows_of(rows: list[Any]) -> list[Any]:
    """Rows with their wall time zeroed (a deferred row is (bytes, handle): the handle compared by value)."""
    out = []
    for row in rows:
        data, handle = (row, None) if type(row) is bytes else row
        out.append(
            (data[: _TIME.start] + bytes(8) + data[_TIME.stop :], None if handle is None else float(handle))
        )
    return out


_steps = st.one_of(
    st.integers(0, 2**20),
    st.integers(-(2**64), 2**64),
    st.just(True),
    st.floats(allow_nan=False),
    st.just("3"),
)
_values = st.one_of(
    st.floats(),
    st.floats(width=32).map(np.float32),
    st.integers(-(2**1030), 2**1030),
    st.integers(-(2**63), 2**63 - 1).map(np.int64),
    st.sampled_from([True, "x", None, np.ones(2)]),
)
_tags = st.one_of(st.sampled_from([s.DEFAULT_TAG, "train", "", 3]), st.text(max_size=3))
_counts = st.one_of(st.integers(1, 64), st.integers(-2, 2**64), st.sampled_from([2.0, None]))
_epochs = st.one_of(st.none(), st.integers(0, 99), st.integers(-(2**64), 2**64), st.just(1.5))
_reductions = st.sampled_from(["mean", "sum", "".join(["s", "um"]), "max", 1])


def _compare(w: LossWriter, args: list[Any], kwargs: dict[str, Any], name: str = "add") -> None:
    """The compiled method and the Python one on one call: same rows (but for the clock), or same error."""
    compiled = _outcome(lambda: getattr(w, name)(*args, **kwargs))
    compiled_rows = _rows_of(w._pending)
    w._pending.clear()
    python = _outcome(lambda: getattr(LossWriter, f"_{name}_py")(w, *args, **kwargs))
    python_rows = _rows_of(w._pending)
    w._pending.clear()
    assert (compiled, compiled_rows) == (python, python_rows), (args, kwargs)


@needs_extension
def test_every_accepted_form_packs_the_row_the_python_add_packs(tmp_path):
    """Each combination of the arguments the fast path takes, positional and by keyword."""
    _rows.intern("train")
    omitted = object()
    values = [0.5, -0.0, math.nan, math.inf, np.float32(0.25), np.float64(2.5), 3, 2**70]
    options = {
        "tag": [omitted, s.DEFAULT_TAG, "train", "never-seen-before"],
        "count": [omitted, 1, 32, 2**40],
        "epoch": [omitted, None, 0, 7, 2**40],
        "reduction": [omitted, "mean", "sum"],
    }
    with LossWriter(tmp_path / "run.arrow", flush_secs=3600) as w:
        for value, *chosen in itertools.product(values, *options.values()):
            given_options = {k: v for k, v in zip(options, chosen, strict=True) if v is not omitted}
            _compare(w, [2**40 + 1, value], given_options)
            if list(given_options) == list(options)[: len(given_options)]:  # also positionally
                _compare(w, [2**40 + 1, value, *given_options.values()], {})


@needs_extension
@settings(max_examples=400, deadline=None)
@given(
    step=_steps,
    value=_values,
    tag=_tags,
    count=_counts,
    epoch=_epochs,
    reduction=_reductions,
    passed=st.sets(st.sampled_from(["tag", "count", "epoch", "reduction"])),
    positional=st.integers(2, 6),
)
def test_the_compiled_add_records_and_raises_exactly_what_the_python_add_does(
    tmp_path_factory, step, value, tag, count, epoch, reduction, passed, positional
):
    """Same rows (but for the clock) or the same exception, for any arguments, positional or keyword."""
    _rows.intern("train")
    names = ["step", "value", "tag", "count", "epoch", "reduction"]
    given_values = {
        "step": step,
        "value": value,
        "tag": tag,
        "count": count,
        "epoch": epoch,
        "reduction": reduction,
    }
    args = [given_values[n] for n in names[:positional]]
    kwargs = {n: given_values[n] for n in names[positional:] if n in passed}
    with LossWriter(tmp_path_factory.mktemp("w") / "run.arrow", flush_secs=3600) as w:
        _compare(w, args, kwargs)


@needs_extension
def test_every_accepted_add_many_packs_the_rows_the_python_add_many_packs(tmp_path):
    _rows.intern("train")
    _rows.intern("val")
    omitted = object()
    mappings = [
        {},
        {"train": 0.5},
        {"train": 0.5, "val": np.float32(0.25), s.DEFAULT_TAG: 3},
        {"train": math.nan, "val": -math.inf},
        {"train": 0.5, "new-in-add-many": 1.0},  # a new tag: the Python path interns it
        {"train": 0.5, "val": "x"},  # all or nothing: the error, and no row
        {"train": 0.5, 3: 1.0},
    ]
    options = {
        "count": [omitted, 1, 32, 0, 2**64],
        "epoch": [omitted, None, 0, 7, 1.5],
        "reduction": [omitted, "mean", "sum", "".join(["su", "m"]), "max"],
    }
    with LossWriter(tmp_path / "run.arrow", flush_secs=3600) as w:
        for values, *chosen in itertools.product(mappings, *options.values()):
            given_options = {k: v for k, v in zip(options, chosen, strict=True) if v is not omitted}
            _compare(w, [2**40 + 1, dict(values)], given_options, "add_many")
        for args, kwargs in [
            ([1, {"train": 0.5}, 2], {}),  # count is keyword-only
            ([1], {"values": {"train": 0.5}}),
            ([1, {"train": 0.5}], {"tag": "train"}),
            ([True, {"train": 0.5}], {}),
            ([1, [("train", 0.5)]], {}),
        ]:
            _compare(w, args, kwargs, "add_many")


@needs_extension
@settings(max_examples=300, deadline=None)
@given(
    step=_steps,
    values=st.dictionaries(_tags.filter(lambda t: t != ""), _values, max_size=4),
    count=_counts,
    epoch=_epochs,
    reduction=_reductions,
)
def test_the_compiled_add_many_matches_the_python_one(
    tmp_path_factory, step, values, count, epoch, reduction
):
    _rows.intern("train")
    with LossWriter(tmp_path_factory.mktemp("w") / "run.arrow", flush_secs=3600) as w:
        _compare(w, [step, values], {"count": count, "epoch": epoch, "reduction": reduction}, "add_many")


@needs_extension
def test_keyword_mistakes_raise_the_python_error(tmp_path):
    with LossWriter(tmp_path / "run.arrow") as w:
        with pytest.raises(TypeError, match="unexpected keyword argument 'bogus'"):
            w.add(1, 0.5, bogus=1)
        with pytest.raises(TypeError, match="multiple values for argument 'tag'"):
            w.add(1, 0.5, "a", tag="b")
        with pytest.raises(TypeError, match="missing 1 required positional argument"):
            w.add(1)
        w.add(step=2, value=0.25, tag="kw")
    assert lossfmt_rows(tmp_path / "run.arrow") == [(2, "kw", 0.25)]


def lossfmt_rows(path: Any) -> list[tuple[Any, ...]]:
    import lossfmt

    t = lossfmt.read(path)
    return list(zip(*(t.column(c).to_pylist() for c in ("step", "tag", "value")), strict=True))


@needs_extension
def test_torch_scalars_take_the_compiled_path_and_device_tensors_are_deferred(tmp_path):
    torch = pytest.importorskip("torch")
    x = torch.ones((), requires_grad=True)
    loss = (x * 0.75).sum()
    with LossWriter(tmp_path / "run.arrow", flush_secs=3600) as w:
        w.add(0, loss)  # the first tensor teaches _values its type (Python path)
        w.add(1, loss)  # then the compiled path reads item() itself
        w.add(2, torch.tensor(3))  # an int tensor: the Python path's rules (a float)
        with pytest.raises(TypeError, match="real number"):
            w.add(3, torch.tensor(True))
        with pytest.raises(ValueError, match="2 elements"):
            w.add(3, torch.ones(2))
        assert all(type(r) is bytes for r in w._pending)
    assert lossfmt_rows(tmp_path / "run.arrow") == [(0, "loss", 0.75), (1, "loss", 0.75), (2, "loss", 3.0)]


@needs_extension
def test_the_compiled_add_keeps_no_reference_and_frees_its_rows(tmp_path):
    """No leak: refcounts of everything passed are unchanged, and rows written are freed."""
    torch = pytest.importorskip("torch")
    loss = torch.ones((), requires_grad=True) * 0.5
    step, tag, epoch = 10**6 + 1, "train", 10**6 + 3
    _rows.intern(tag)
    with LossWriter(tmp_path / "run.arrow", flush_secs=3600) as w:
        w.add(0, loss, tag, count=32, epoch=epoch)
        counts = [sys.getrefcount(o) for o in (loss, tag, step, epoch)]
        for _ in range(10_000):
            w.add(step, loss, tag, count=32, epoch=epoch)
            w.add(step, 0.5)
        assert [sys.getrefcount(o) for o in (loss, tag, step, epoch)] == counts
        w.flush()
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            for _ in range(5):
                for i in range(20_000):
                    w.add(i, 0.5, tag, count=2)
                w.flush()
            grown = tracemalloc.get_traced_memory()[0] - base
        finally:
            tracemalloc.stop()
    assert grown < 2_000_000, grown  # 100,000 rows of 45 bytes (+ object headers) were freed once written


@needs_extension
def test_transpose_rows_gives_each_field_as_a_column():
    rows = [_rows.ROW.pack(i, i / 7, 1e9 + i, i + 1, -i, i % 5, i % 4) for i in range(1000)]
    rows.append(_rows.PLAIN.pack(5, 0.5, 2.0))
    fields = _rows._fields(rows, len(rows) - 3)
    structured = np.frombuffer(b"".join(rows[:-3]), _rows._DTYPE)
    for name in _rows._DTYPE.names or ():
        assert fields[name].flags.c_contiguous
        np.testing.assert_array_equal(fields[name], structured[name])
    with pytest.raises(TypeError):
        _compiled.transpose_rows([*rows[:3], (rows[0], 1.0)], 4)  # type: ignore[misc]
    with pytest.raises(ValueError):
        _compiled.transpose_rows(rows, len(rows) + 1)  # type: ignore[misc]


@needs_extension
def test_a_subclass_may_override_add_and_call_the_compiled_one(tmp_path):
    seen = []

    class Logged(LossWriter):
        def add(self, step: int, value: Any, *args: Any, **kwargs: Any) -> None:
            seen.append(step)
            super().add(step, value, *args, **kwargs)

    with Logged(tmp_path / "run.arrow") as w:
        w.add(1, 0.5, "a", count=2)
    assert seen == [1]
    assert lossfmt_rows(tmp_path / "run.arrow") == [(1, "a", 0.5)]


@needs_extension
def test_concurrent_compiled_adds_lose_nothing(tmp_path):
    n, threads = 20_000, 4
    path = tmp_path / "run.arrow"
    with LossWriter(path, flush_secs=0.01, max_pending=1000) as w:

        def work(k: int) -> None:
            for i in range(n):
                w.add(i, float(k), f"t{k}", count=1 + k)

        pool = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
    import lossfmt

    table = lossfmt.read(path)
    assert table.num_rows == n * threads
    pairs = list(zip(table.column("step").to_pylist(), table.column("tag").to_pylist(), strict=True))
    for k in range(threads):
        assert [step for step, tag in pairs if tag == f"t{k}"] == list(range(n))
