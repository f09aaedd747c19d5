"""Files from other Arrow writers read alike on every decode path (`_decode`: Arrow's readers for a few
batches, `_columns` for many): spec/FORMAT.md §2 (readers do not rely on the schema's nullable flags) and
§1.1/§1.7.3 (a dictionary holding a null value is corrupt, whichever path or columns a reader uses).

Files are built with plain pyarrow: live ones as a stream after the magic (`filebytes.live_bytes`), closed
ones with `pa.ipc.new_file`, each shape on both sides of `_columns.MIN_BATCHES`.
"""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa
import pytest
from filebytes import live_bytes, message_starts

from lossfmt import LossFormatError, _columns, _decode, _framing, follow, read, schema

T0_US = 1_700_000_000_000_000
TAGS = ["loss", "val"]
REDUCTIONS = ["mean", "sum"]
#: (kind, record batches): the Arrow path and the column decoder, for live and closed files.
SHAPES = [
    ("live", _columns.MIN_BATCHES - 1),
    ("live", _columns.MIN_BATCHES + 8),
    ("closed", 1),
    ("closed", 3),
]
SHAPE_IDS = [f"{kind}{n}" for kind, n in SHAPES]


def _schema(nullable: dict[str, bool] | None = None) -> pa.Schema:
    """The v1 schema with fresh metadata, each field's nullable flag from `nullable` (default: canonical)."""
    sch = schema.make_schema("interop")
    flags = nullable or {}
    fields = [pa.field(f.name, f.type, flags.get(f.name, f.nullable)) for f in schema.FIELDS]
    return pa.schema(fields, metadata=sch.metadata)


def _batch(
    sch: pa.Schema,
    start: int,
    n: int = 3,
    tags: list[str | None] = TAGS,
    reductions: list[str | None] = REDUCTIONS,
) -> pa.RecordBatch:
    """n events from step `start`, some with a null epoch; every batch holds the same dictionaries."""
    steps = range(start, start + n)
    return pa.RecordBatch.from_arrays(
        [
            pa.array(steps, pa.int64()),
            pa.DictionaryArray.from_arrays(
                pa.array([i % 2 for i in steps], pa.int32()), pa.array(tags, pa.string())
            ),
            pa.array([0.5 * i for i in steps], pa.float64()),
            pa.array([1 + i % 4 for i in steps], pa.int64()),
            pa.array([i // 4 if i % 3 else None for i in steps], pa.int64()),
            pa.array([T0_US + i for i in steps], schema.WALL_TIME_TYPE),
            pa.DictionaryArray.from_arrays(
                pa.array([i % 2 for i in steps], pa.int8()), pa.array(reductions, pa.string())
            ),
        ],
        schema=sch,
    )


def _closed_bytes(sch: pa.Schema, batches: list[pa.RecordBatch]) -> bytes:
    """A closed file of exactly these record batches (Arrow's file writer: dictionaries once, a footer)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, sch, options=pa.ipc.IpcWriteOptions(compression="zstd")) as writer:
        for b in batches:
            writer.write_batch(b, custom_metadata=_framing.BATCH_METADATA)
    return _framing.Sealer().seal(sink.getvalue().to_pybytes())


def _put(path: Path, kind: str, sch: pa.Schema, batches: list[pa.RecordBatch]) -> Path:
    path.write_bytes(live_bytes(sch, batches) if kind == "live" else _closed_bytes(sch, batches))
    return path


def _batches(sch: pa.Schema, n: int, **dictionaries: list[str | None]) -> list[pa.RecordBatch]:
    return [_batch(sch, 3 * i, **dictionaries) for i in range(n)]


def _dictionary_offsets(data: bytes) -> list[int]:
    """Where each dictionary message starts (pyarrow writes them in field order: tag, then reduction)."""
    return message_starts(data, "dictionary")


# Every field nullable (what pyarrow, pandas and Polars schemas give by default), none, each one flipped.
FLAGS = {
    "all_nullable": {f.name: True for f in schema.FIELDS},
    "none_nullable": {f.name: False for f in schema.FIELDS},
    "all_flipped": {f.name: not f.nullable for f in schema.FIELDS},
}


@pytest.mark.parametrize("flags", FLAGS.values(), ids=FLAGS.keys())
@pytest.mark.parametrize(("kind", "n"), SHAPES, ids=SHAPE_IDS)
def test_read_gives_the_same_events_whatever_the_nullable_flags(tmp_path, flags, kind, n):
    canonical, odd = _schema(), _schema(flags)
    want = read(_put(tmp_path / "canonical.arrow", kind, canonical, _batches(canonical, n)))
    got = read(_put(tmp_path / "odd.arrow", kind, odd, _batches(odd, n)))
    assert got.to_pydict() == want.to_pydict()
    assert got.num_rows == 3 * n and got.column("epoch").null_count == want.column("epoch").null_count > 0
    # Either decoder gives the file's own fields, as Arrow's reader does: a canonical file's are canonical.
    assert list(want.schema) == list(schema.FIELDS)
    assert list(got.schema) == list(odd)


@pytest.mark.parametrize(("kind", "n"), SHAPES, ids=SHAPE_IDS)
def test_iter_batches_concatenate_whatever_the_nullable_flags(tmp_path, kind, n):
    sch = _schema(FLAGS["all_nullable"])
    path = _put(tmp_path / "odd.arrow", kind, sch, _batches(sch, n))
    file_schema, batches = _decode.iter_batches(path)
    table = pa.Table.from_batches(list(batches), schema=file_schema)
    assert table.column("step").to_pylist() == list(range(3 * n))


def test_a_follower_reads_many_new_flushes_whatever_the_nullable_flags(tmp_path):
    sch = _schema(FLAGS["all_nullable"])
    n = _columns.MIN_BATCHES + 8
    first, whole = live_bytes(sch, _batches(sch, 2)), live_bytes(sch, _batches(sch, 2 + n))
    assert whole.startswith(first)
    path = tmp_path / "odd.arrow"
    path.write_bytes(first)
    follower = follow(path)
    assert follower.poll().table.num_rows == 6
    with path.open("ab") as f:
        f.write(whole[len(first) :])
    assert follower.poll().table.column("step").to_pylist() == list(range(6, 6 + 3 * n))


# A null entry (unused: no index points at it) in the tag or the reduction dictionary.
NULL_ENTRY = {"tag": {"tags": [*TAGS, None]}, "reduction": {"reductions": [*REDUCTIONS, None]}}


def _null_dictionary_file(tmp_path: Path, column: str, kind: str, n: int) -> tuple[Path, str]:
    """A file whose `column` dictionary holds a null, and the error naming that dictionary message."""
    sch = _schema()
    path = _put(tmp_path / "nulldict.arrow", kind, sch, _batches(sch, n, **NULL_ENTRY[column]))
    at = _dictionary_offsets(path.read_bytes())[list(NULL_ENTRY).index(column)]
    return path, re.escape(f"{path}: corrupt at byte {at}: a null dictionary value")


@pytest.mark.parametrize("column", NULL_ENTRY)
@pytest.mark.parametrize(("kind", "n"), SHAPES, ids=SHAPE_IDS)
def test_a_null_dictionary_value_is_corruption_on_every_path(tmp_path, column, kind, n):
    path, error = _null_dictionary_file(tmp_path, column, kind, n)
    with pytest.raises(LossFormatError, match=error) as info:
        read(path)
    with pytest.raises(LossFormatError, match=error) as info_iter:
        list(_decode.iter_batches(path)[1])
    at = _dictionary_offsets(path.read_bytes())[list(NULL_ENTRY).index(column)]
    assert info.value.offset == info_iter.value.offset == at


@pytest.mark.parametrize("column", NULL_ENTRY)
@pytest.mark.parametrize(("kind", "n"), SHAPES, ids=SHAPE_IDS)
def test_a_null_dictionary_value_is_corruption_where_its_column_is_not_decoded(tmp_path, column, kind, n):
    path, error = _null_dictionary_file(tmp_path, column, kind, n)
    with pytest.raises(LossFormatError, match=error):  # §1.7: whichever columns a reader returns
        read(path, columns=["step", "value"])


def test_a_null_dictionary_value_in_new_flushes_is_corruption_for_a_follower(tmp_path):
    sch = _schema()
    n = _columns.MIN_BATCHES + 8
    good = live_bytes(sch, _batches(sch, 2))
    bad_tags = [*TAGS, None]
    # The first flushes' dictionary, then a replacement holding a null before many more batches.
    whole = live_bytes(sch, [*_batches(sch, 2), *_batches(sch, n, tags=bad_tags)])
    assert whole.startswith(good)
    path = tmp_path / "nulldict.arrow"
    path.write_bytes(good)
    follower = follow(path)
    assert follower.poll().table.num_rows == 6
    with path.open("ab") as f:
        f.write(whole[len(good) :])
    at = _dictionary_offsets(whole)[2]
    with pytest.raises(LossFormatError, match=re.escape(f"corrupt at byte {at}: a null dictionary value")):
        follower.poll()
