"""lossfmt.scan_polars: one Polars LazyFrame over closed, live and crashed runs, with the run column."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import lossfmt
from lossfmt import LossFormatError, scan_polars

pl = pytest.importorskip("polars")


def write_run(path: Path, values: list[float], tag: str = "val_loss") -> None:
    with lossfmt.LossWriter(path) as writer:
        for step, value in enumerate(values):
            writer.add(step, value, tag, count=8)


def best(frame: pl.LazyFrame) -> dict[str, float]:
    return dict(frame.group_by("run").agg(pl.col("value").min()).collect().rows())


def test_a_run_named_like_a_glob_is_read_as_that_file(tmp_path):
    """Polars expanded the listed paths as globs again: `lr[1].arrow` read as `lr1.arrow` (that run counted
    twice, this one lost); alone it failed with "incomplete mapping specified for replace_strict"."""
    for name, value in (("lr[1]", 1.0), ("lr1", 2.0), ("a*b", 3.0), ("axb", 4.0)):
        write_run(tmp_path / "runs" / "lr=3" / f"{name}.arrow", [value])
    assert best(scan_polars(tmp_path / "runs" / "lr=3")) == {"lr[1]": 1.0, "lr1": 2.0, "a*b": 3.0, "axb": 4.0}
    assert best(scan_polars(tmp_path / "runs" / "lr=3" / "lr[[]1].arrow")) == {"lr[1]": 1.0}


def test_a_live_run_no_longer_fails_the_whole_directory(tmp_path):
    write_run(tmp_path / "runs" / "a.arrow", [3.0, 1.0, 2.0])
    write_run(tmp_path / "runs" / "b.arrow", [4.0, 0.5])
    with lossfmt.LossWriter(tmp_path / "runs" / "live.arrow") as writer:
        writer.add(0, 0.25, "val_loss")
        writer.flush()
        # What users hit with Polars alone: one footerless file fails the glob.
        with pytest.raises(pl.exceptions.ComputeError):
            pl.scan_ipc(tmp_path / "runs" / "*.arrow").collect()
        frame = scan_polars(tmp_path / "runs")
        assert isinstance(frame, pl.LazyFrame)
        assert best(frame) == {"a": 1.0, "b": 0.5, "live": 0.25}


def test_schema_and_rows_match_lossfmt_read(tmp_path):
    write_run(tmp_path / "runs" / "a.arrow", [3.0, 1.0])
    with lossfmt.LossWriter(tmp_path / "runs" / "live.arrow") as writer:
        writer.add(5, 2.0, count=4, epoch=1)
        writer.flush()
        frame = scan_polars(tmp_path / "runs").collect()
        expected = pl.from_arrow(lossfmt.read(tmp_path / "runs"))
    assert frame.columns == ["run", *lossfmt.schema.COLUMNS]
    assert frame.schema["tag"] == pl.Categorical
    assert frame.schema["wall_time"] == pl.Datetime("us", "UTC")
    assert frame.sort("run", "step").rows() == expected.sort("run", "step").rows()


def test_a_crashed_run_contributes_its_complete_events(tmp_path):
    write_run(tmp_path / "runs" / "a.arrow", [1.0])
    with lossfmt.LossWriter(tmp_path / "crash.arrow") as writer:
        for step in range(3):
            writer.add(step, float(step))
        writer.flush()
        data = (tmp_path / "crash.arrow").read_bytes()
    (tmp_path / "runs" / "crash.arrow").write_bytes(data + b"\xff\xff\xff\xff\x40\x00\x00\x00torn")
    frame = scan_polars(tmp_path / "runs").filter(pl.col("run") == "crash").collect()
    assert frame["value"].to_list() == [0.0, 1.0, 2.0]


def test_live_runs_can_be_skipped_or_refused(tmp_path):
    write_run(tmp_path / "runs" / "a.arrow", [1.0])
    with lossfmt.LossWriter(tmp_path / "runs" / "live.arrow") as writer:
        writer.add(0, 1.0)
        writer.flush()
        assert scan_polars(tmp_path / "runs", live="skip").collect()["run"].unique().to_list() == ["a"]
        with pytest.raises(LossFormatError, match=r"live\.arrow: no footer"):
            scan_polars(tmp_path / "runs", live="error")
        with pytest.raises(ValueError, match="live must be one of"):
            scan_polars(tmp_path / "runs", live="sometimes")
        assert scan_polars(tmp_path / "runs" / "live.arrow", live="skip").collect().height == 0


def test_runs_sharing_a_name_are_told_apart_as_read_does(tmp_path):
    paths = [tmp_path / sub / "exp.arrow" for sub in ("a", "b")]
    for i, path in enumerate(paths):
        write_run(path, [float(i)])
    names = sorted(scan_polars(paths).collect()["run"].to_list())
    assert names == sorted(lossfmt.read(paths)["run"].to_pylist())
    assert len(set(names)) == 2


def test_projection_and_filters_stay_lazy_over_many_closed_runs(tmp_path):
    for i in range(30):
        write_run(tmp_path / "runs" / f"r{i:02d}.arrow", [float(i), float(i) / 2])
    frame = (
        scan_polars(str(tmp_path / "runs" / "r1*.arrow")).filter(pl.col("step") == 1).select("run", "value")
    )
    assert frame.collect().sort("run").rows() == [(f"r{i}", i / 2) for i in range(10, 20)]


def test_without_polars_the_error_says_what_to_install(tmp_path):
    write_run(tmp_path / "a.arrow", [1.0])
    code = (
        "import sys\nsys.modules['polars'] = None\nimport lossfmt\n"
        f"try:\n    lossfmt.scan_polars({str(tmp_path / 'a.arrow')!r})\n"
        "except ImportError as exc:\n    print(exc)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "pip install polars" in result.stdout, result.stderr
