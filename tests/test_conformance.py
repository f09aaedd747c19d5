"""The conformance vectors of spec/vectors/: our reader returns exactly the rows each JSON file lists."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from lossfmt import follow, read, reader, schema, transforms

VECTORS = Path(__file__).resolve().parent.parent / "spec" / "vectors"
NAMES = sorted(p.stem for p in VECTORS.glob("*.json"))
READABLE = [n for n in NAMES if json.loads((VECTORS / f"{n}.json").read_text())["error"] is None]
ERRORS = [n for n in NAMES if n not in READABLE]
REQUIRED = {  # issue 12's list, and the integrity vectors of spec §1.6
    "closed",
    "live",
    "torn",
    "resumed",
    "delta",
    "lz4",
    "uncompressed",
    "extra_column",
    "empty_closed",
    "header_only",
    "eos_no_footer",
    "resumed_killed",
    "minimal_metadata",
    "undecodable",
    "checksummed",
    "checksum_mismatch",
    "restarting",  # the run-wide steps of spec §5.2
    "magic_tail",  # a torn tail that ends with the trailing magic's bytes (spec §1.2)
}


def _float_key(v: float | str) -> str:
    """Compare floats bit for bit in spirit: NaN equals NaN, -0.0 differs from 0.0."""
    if isinstance(v, str):
        v = float(v.replace("Infinity", "inf"))
    return "NaN" if math.isnan(v) else float(v).hex()


def _normalized(rows: list[list]) -> list[tuple]:
    return [(s, t, _float_key(v), c, e, w, r) for s, t, v, c, e, w, r in rows]


def _table_rows(table: pa.Table) -> list[tuple]:
    wall = table.column("wall_time").cast(pa.int64()).to_pylist()
    cols = [table.column(c).to_pylist() for c in ("step", "tag", "value", "count", "epoch")]
    reduction = table.column("reduction").to_pylist()
    return _normalized([[*r, w, red] for *r, w, red in zip(*cols, wall, reduction, strict=True)])


def _expected(name: str) -> dict:
    return json.loads((VECTORS / f"{name}.json").read_text())


def test_every_vector_is_present_and_small():
    assert set(NAMES) >= REQUIRED
    for name in NAMES:
        assert (VECTORS / f"{name}.arrow").stat().st_size < 8192
        assert _expected(name)["columns"] == list(schema.COLUMNS)
        assert _expected(name)["description"]


def test_generate_py_rebuilds_every_vector_byte_for_byte(tmp_path):
    """The vectors are what spec/vectors/generate.py makes with the writer installed (it broke unnoticed
    when the writer's metadata code changed: the committed vectors could no longer be rebuilt)."""
    for script in VECTORS.glob("*.py"):
        shutil.copy(script, tmp_path)
    subprocess.run([sys.executable, "-W", "ignore", str(tmp_path / "generate.py")], check=True, timeout=120)
    made = sorted(p.name for p in tmp_path.iterdir() if p.suffix in (".arrow", ".json"))
    assert made == sorted(p.name for p in VECTORS.iterdir() if p.suffix in (".arrow", ".json"))
    for name in made:
        assert (tmp_path / name).read_bytes() == (VECTORS / name).read_bytes(), name


@pytest.mark.parametrize("name", READABLE)
def test_reader_returns_exactly_the_expected_rows(name):
    expected = _expected(name)
    result = reader.scan(VECTORS / f"{name}.arrow")
    assert result.closed is expected["closed"]
    assert result.end == expected["end"]
    assert _table_rows(read(VECTORS / f"{name}.arrow")) == _normalized(expected["rows"])
    info = schema.run_info(result.schema)
    assert info["version"] == expected["format_version"]
    assert {k: info.get(k) for k in expected["metadata"]} == expected["metadata"]


@pytest.mark.parametrize("name", ERRORS)
def test_corrupt_vectors_are_an_error_naming_the_file_and_offset(name):
    error = _expected(name)["error"]
    path = VECTORS / f"{name}.arrow"
    before = path.read_bytes()
    pattern = rf"{name}\.arrow: corrupt at byte {error['offset']}: .*{error['message']}"
    with pytest.raises(schema.LossFormatError, match=pattern):
        read(path)
    with pytest.raises(schema.LossFormatError, match=pattern):
        follow(path).poll()
    assert path.read_bytes() == before


def test_the_checksummed_vector_lists_crc32c_values_anyone_can_recompute():
    import google_crc32c

    data = (VECTORS / "checksummed.arrow").read_bytes()
    checksums = _expected("checksummed")["checksums"]
    assert len(checksums) == 4
    for entry in checksums:
        start, end = entry["span"]
        at = entry["value_at"]
        span = data[start:at] + b"00000000" + data[at + 8 : end]
        assert f"{google_crc32c.value(span):08x}" == entry["crc32c"] == data[at : at + 8].decode()


@pytest.mark.parametrize("name", READABLE)
def test_dropping_rewound_events_gives_the_expected_curve(name):
    table = transforms.drop_rewound(read(VECTORS / f"{name}.arrow"))
    assert _table_rows(table) == _normalized(_expected(name)["rows_without_rewound"])


@pytest.mark.parametrize("name", READABLE)
def test_a_follower_sees_the_same_rows(name):
    update = follow(VECTORS / f"{name}.arrow").poll()
    assert not update.reset
    assert _table_rows(update.table) == _normalized(_expected(name)["rows"])


@pytest.mark.parametrize("name", [n for n in READABLE if _expected(n)["closed"] and _expected(n)["rows"]])
def test_closed_vectors_open_with_standard_arrow_readers(name):
    pd = pytest.importorskip("pandas")
    path = VECTORS / f"{name}.arrow"
    expected = _normalized(_expected(name)["rows"])
    assert _table_rows(pa.ipc.open_file(pa.memory_map(str(path))).read_all()) == expected
    frame = pd.read_feather(path)
    assert len(frame) == len(expected)
    assert frame["tag"].astype(str).tolist() == [row[1] for row in expected]
    assert [_float_key(v) for v in frame["value"]] == [row[2] for row in expected]


@pytest.mark.parametrize("name", [n for n in READABLE if not _expected(n)["closed"]])
def test_footerless_vectors_are_not_arrow_files_but_a_stream_after_the_magic(name):
    path = VECTORS / f"{name}.arrow"
    with pytest.raises(pa.ArrowInvalid):
        pa.ipc.open_file(pa.memory_map(str(path)))
    end = _expected(name)["end"]
    stream = pa.py_buffer(path.read_bytes()[len(schema.MAGIC) : end])
    got = pa.ipc.open_stream(stream).read_all().select(list(schema.COLUMNS))
    assert _table_rows(got) == _normalized(_expected(name)["rows"])


def test_every_cut_of_the_live_vector_reads_a_prefix_of_whole_flushes(tmp_path):
    data = (VECTORS / "live.arrow").read_bytes()
    rows = _normalized(_expected("live")["rows"])
    flush_ends = {0, 2, 4, 6, 8}  # LIVE_FLUSHES in generate.py: four flushes of two events
    head = pa.BufferReader(pa.py_buffer(data))
    head.seek(len(schema.MAGIC))
    pa.ipc.read_message(head)
    schema_end = head.tell()
    cut_path = tmp_path / "cut.arrow"
    previous = 0
    for cut in [*range(0, len(data), 7), len(data)]:
        cut_path.write_bytes(data[:cut])
        if cut < schema_end:
            with pytest.raises(schema.LossFormatError, match=r"cut\.arrow"):
                reader.scan(cut_path)
            continue
        result = reader.scan(cut_path)
        got = _table_rows(result.table)
        assert got == rows[: len(got)] and len(got) in flush_ends
        assert previous <= len(got) and result.end <= cut
        previous = len(got)
    assert previous == len(rows)
