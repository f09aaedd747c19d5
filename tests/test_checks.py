"""LossWriter's argument checks (lossfmt/_checks.py), through the writer: what meta stores or refuses."""

from __future__ import annotations

import collections
import types
from collections.abc import Iterator, Mapping
from typing import Any

import pyarrow as pa
import pytest

from lossfmt import LossWriter, run_info


class Params(Mapping[str, Any]):
    """A Mapping that is not a dict (as config libraries hand out), with a repr unlike its contents."""

    def __init__(self, **items: Any) -> None:
        self._items = items

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return "Params(...)"


def stored_meta(path) -> Any:
    return run_info(pa.ipc.open_file(path).schema)["meta"]


def test_mappings_that_are_not_dicts_are_stored_as_json_objects_not_their_repr(tmp_path):
    meta = {
        "opt": Params(lr=0.1, betas=(0.9, 0.99)),
        "frozen": types.MappingProxyType({"seed": 1}),
        "ordered": collections.OrderedDict(a=1),
    }
    with LossWriter(tmp_path / "run.arrow", meta=meta):
        pass
    expected = {"opt": {"lr": 0.1, "betas": [0.9, 0.99]}, "frozen": {"seed": 1}, "ordered": {"a": 1}}
    assert stored_meta(tmp_path / "run.arrow") == expected


def test_a_resumed_writer_stores_its_new_meta_as_json_objects_too(tmp_path):
    path = tmp_path / "run.arrow"
    with LossWriter(path, meta={"seed": 1}) as w:
        w.add(0, 1.0)
    with LossWriter(path, meta={"opt": Params(lr=0.05)}) as w:
        w.add(1, 1.0)
    assert stored_meta(path) == {"seed": 1, "opt": {"lr": 0.05}}


@pytest.mark.parametrize(
    ("meta", "match"),
    [
        ({"blob": b"x"}, r"meta\['blob'\] is bytes"),
        ({"ids": {1, 2}}, r"meta\['ids'\] is set"),
        ({"ids": frozenset()}, r"meta\['ids'\] is frozenset"),
        ({"grid": {(1, 2): 0.5}}, r"meta keys must be str, got tuple \(1, 2\) in meta\['grid'\]"),
        ({"layers": {1: 64}}, r"meta keys must be str, got int 1 in meta\['layers'\]"),
        ({"flags": {True: 1}}, r"meta keys must be str, got bool True in meta\['flags'\]"),
        ({"opt": Params(when=object())}, r"meta\['opt'\]\['when'\] is object"),
        ({"opt": Params(**{"x": {2: 0}})}, r"got int 2 in meta\['opt'\]\['x'\]"),
        (types.MappingProxyType({"blob": b"x"}), r"meta\['blob'\] is bytes"),
    ],
)
def test_values_json_cannot_hold_are_refused_naming_where_before_any_file(tmp_path, meta, match):
    path = tmp_path / "run.arrow"
    with pytest.raises(TypeError, match=match):
        LossWriter(path, meta=meta)
    assert not path.exists()


def test_a_refused_meta_on_resume_leaves_the_file_as_it_was(tmp_path):
    path = tmp_path / "run.arrow"
    with LossWriter(path, meta={"seed": 1}) as w:
        w.add(0, 1.0)
    before = path.read_bytes()
    with pytest.raises(TypeError, match=r"meta\['blob'\] is bytes"):
        LossWriter(path, meta={"blob": b"x"})
    assert path.read_bytes() == before
