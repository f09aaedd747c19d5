"""lossview's non-plot commands on the files users meet: plain Arrow, junk, several bad files, empty runs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.feather as feather
import pytest

import lossfmt
from lossfmt import LossWriter
from lossview import cli, commands
from lossview import view as v


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = cli.main(args)
    out, err = capsys.readouterr()
    return status, out, err


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def closed_run(path: Path, n: int = 5) -> Path:
    with LossWriter(path) as w:
        for step in range(n):
            w.add(step, 1.0 / (step + 1))
    return path


def crashed_copies(tmp_path: Path) -> tuple[Path, Path]:
    """A live file's bytes as a crash leaves them (no footer), and a copy damaged inside its second flush."""
    live = tmp_path / "live" / "run.arrow"
    live.parent.mkdir()
    with LossWriter(live, flush_secs=3600) as w:
        for step in range(4):
            w.add(step, float(step))
            w.flush()
            if step == 0:
                one_flush = live.stat().st_size
        data = bytearray(live.read_bytes())
    crashed = tmp_path / "b_crashed.arrow"
    crashed.write_bytes(bytes(data))
    data[one_flush + 40] ^= 0xFF
    corrupt = tmp_path / "a_corrupt.arrow"
    corrupt.write_bytes(bytes(data))
    return corrupt, crashed


# ---------------------------------------------------------------------------------------------- compact


def test_compact_of_a_plain_arrow_file_is_one_line_not_lossfmt_and_leaves_it(tmp_path, capsys):
    path = tmp_path / "p.arrow"
    feather.write_feather(pa.table({"a": [1]}), path)
    before = digest(path)
    for args in (["compact", str(path)], ["compact", str(path), "--salvage", str(tmp_path / "o.arrow")]):
        status, out, err = run_cli(args, capsys)
        assert status == 1 and out == "", err
        assert err == f"lossview: error: {path}: not a lossfmt file (Arrow file without lossfmt metadata)\n"
    assert digest(path) == before and not (tmp_path / "o.arrow").exists()


def test_compact_reports_each_bad_file_and_still_compacts_the_others(tmp_path, capsys):
    corrupt, crashed = crashed_copies(tmp_path)
    junk = tmp_path / "c_junk.arrow"
    junk.write_bytes(b"junk\n")
    damaged = digest(corrupt)
    status, _, err = run_cli(["compact", str(corrupt), str(junk), str(crashed)], capsys)
    lines = err.splitlines()
    assert status == 1 and len(lines) == 3, err
    assert lines[0].startswith(f"lossview: error: {corrupt}: ") and "corrupt" in lines[0]
    assert lines[1].startswith("lossview: error: ") and "c_junk.arrow: not a lossfmt file" in lines[1]
    assert lines[2].startswith(f"{crashed}: ") and lines[2].endswith(" bytes")
    assert lossfmt.reader.scan(crashed).closed and lossfmt.read(crashed).num_rows == 4
    assert digest(corrupt) == damaged  # a refused file is left as it was


def test_compact_of_a_directory_goes_on_past_its_first_bad_file(tmp_path, capsys):
    _, crashed = crashed_copies(tmp_path)  # a directory's runs are sorted: the corrupt one comes first
    status, _, err = run_cli(["compact", str(tmp_path)], capsys)
    assert status == 1 and err.count("lossview: error: ") == 1, err
    assert lossfmt.reader.scan(crashed).closed and lossfmt.read(crashed).num_rows == 4


def test_salvage_of_junk_gives_the_reason_plain_compact_gives(tmp_path, capsys):
    junk = tmp_path / "junk.arrow"
    junk.write_bytes(b"junk\n")
    _, _, plain = run_cli(["compact", str(junk)], capsys)
    status, _, err = run_cli(["compact", str(junk), "--salvage", str(tmp_path / "o.arrow")], capsys)
    assert status == 1 and err.count("\n") == 1 and "no Arrow magic at byte 0" in err, err
    assert "no Arrow magic at byte 0" in plain and "empty file" not in err


@pytest.mark.parametrize("name", ["x.csv", "x", "x.feather"])
def test_salvage_refuses_an_output_that_is_not_an_arrow_file(tmp_path, capsys, name):
    corrupt, _ = crashed_copies(tmp_path)
    status, _, err = run_cli(["compact", str(corrupt), "--salvage", str(tmp_path / name)], capsys)
    assert status == 2 and err == f"lossview: error: {tmp_path / name}: output must end in .arrow\n"
    assert not (tmp_path / name).exists()


# ---------------------------------------------------------------------------------------- export parquet


@pytest.mark.parametrize(
    ("view", "named"),
    [
        (v.View(tags=("loss",), smooth_explicit=False), "--tag is"),
        (v.View(per="epoch", smooth_explicit=False), "--per is"),
        (v.View(smooth="none"), "--smooth is"),
        (v.View(normalize="per-item", per=10, smooth_explicit=False), "--per, --normalize are"),
    ],
)
def test_the_parquet_export_refuses_row_options_rather_than_ignoring_them(tmp_path, view, named):
    run = closed_run(tmp_path / "run.arrow")
    with pytest.raises(v.OptionError, match=f"--format parquet exports every event as logged.*: {named}"):
        commands.export_parquet([str(run)], str(tmp_path / "out"), view)
    assert not (tmp_path / "out").exists()
    assert commands.export_parquet([str(run)], str(tmp_path / "out"), v.View(smooth_explicit=False)) == 0


@pytest.mark.parametrize("name", ["z.csv", "z.feather", "z.arrow", "z.pq"])
def test_the_parquet_export_refuses_an_out_with_a_file_suffix(tmp_path, capsys, name):
    run = closed_run(tmp_path / "run.arrow")
    status, _, err = run_cli(["export", str(run), str(tmp_path / name), "--format", "parquet"], capsys)
    assert status == 2 and err.count("\n") == 1, err
    assert "--format parquet writes OUT.parquet (one file) or a directory OUT/" in err
    assert not (tmp_path / name).exists()


def test_the_parquet_export_takes_a_directory_whatever_its_name_and_a_trailing_slash(tmp_path, capsys):
    run = closed_run(tmp_path / "run.arrow")
    (tmp_path / "sweep.v1").mkdir()
    for out in (str(tmp_path / "sweep.v1"), f"{tmp_path / 'z.csv'}/", str(tmp_path / "plain")):
        status, _, err = run_cli(["export", str(run), out, "--format", "parquet"], capsys)
        assert status == 0 and "1 run, 1 written" in err, err
        assert (Path(out) / "_lossfmt_export.parquet").is_file()


# ------------------------------------------------------------------------------------------ empty runs


def test_summary_lists_a_run_without_events_with_zero_and_says_why(tmp_path, capsys):
    with LossWriter(tmp_path / "empty.arrow"):
        pass
    status, out, err = run_cli(["summary", str(tmp_path / "empty.arrow")], capsys)
    assert status == 0 and err == "", err
    _, _, row, _, note = out.splitlines()
    assert row.split() == ["empty", "-", "0", "-", "-", "-", "-", "-", "-", "-", "-", "0", "-", "-"]
    assert note == f"{tmp_path / 'empty.arrow'}: no events in the file"
    status, out, _ = run_cli(["summary", str(tmp_path / "empty.arrow"), "--json"], capsys)
    (entry,) = json.loads(out)
    assert status == 0 and (entry["run"], entry["tag"], entry["events"]) == ("empty", None, 0)
    assert entry["note"] == note and entry["hparams"] == {}


def test_summary_of_a_live_run_not_flushed_yet_says_so(tmp_path, capsys):
    with LossWriter(tmp_path / "new.arrow", flush_secs=3600, meta={"lr": 0.1}) as w:
        status, out, _ = run_cli(["summary", str(tmp_path / "new.arrow"), "--json"], capsys)
        (entry,) = json.loads(out)
        assert status == 0 and entry["events"] == 0 and entry["hparams"] == {"lr": 0.1}
        assert entry["note"] == f"{tmp_path / 'new.arrow'}: no events in the file yet"
        w.add(0, 1.0)


def test_a_directory_summary_lists_its_empty_run_like_a_summary_of_that_file(tmp_path, capsys):
    closed_run(tmp_path / "a.arrow")
    with LossWriter(tmp_path / "b.arrow"):
        pass
    _, out, _ = run_cli(["summary", str(tmp_path), "--json"], capsys)
    rows = json.loads(out)
    assert [(r["run"], r["events"]) for r in rows] == [("a", 5), ("b", 0)]
    _, alone, _ = run_cli(["summary", str(tmp_path / "b.arrow"), "--json"], capsys)
    assert json.loads(alone) == [rows[1]]
    status, text, _ = run_cli(["summary", str(tmp_path)], capsys)
    assert status == 0 and text.splitlines()[-1] == f"{tmp_path / 'b.arrow'}: no events in the file"
    status, _, err = run_cli(["summary", str(tmp_path / "b.arrow"), "--tag", "loss"], capsys)
    assert status == 1 and err == "lossview: error: no tag matches loss\n"  # a wrong --tag is still an error


@pytest.mark.parametrize(
    "options", [[], ["--per", "10"], ["--smooth", "ema:0.5"], ["--normalize", "per-item"]]
)
def test_export_of_runs_without_events_writes_the_columns_and_no_row(tmp_path, capsys, options):
    with LossWriter(tmp_path / "empty.arrow"):
        pass
    out = tmp_path / "o.csv"
    status, _, err = run_cli(["export", str(tmp_path / "empty.arrow"), str(out), *options], capsys)
    assert status == 0 and err == f"{out}: 0 rows ({tmp_path / 'empty.arrow'}: no events in the file)\n"
    header, *rows = out.read_text().splitlines()
    assert rows == [] and {'"step"', '"tag"', '"value"'} <= set(header.split(","))


@pytest.mark.parametrize(
    "options", [[], ["--tag", "val"], ["--smooth", "none"], ["--normalize", "per-item"], ["--per", "10"]]
)
def test_an_export_always_has_the_smoothed_column_unsmoothed_series_repeating_their_value(
    tmp_path, capsys, options
):
    """It was left out when no series was smoothed (a short or noise-free run, --tag of one, --per): a
    script reading it over many exported runs failed on some."""
    path = tmp_path / "run.arrow"
    with LossWriter(path) as w:
        for step in range(300):
            w.add(step, 1.0 + (step * 7919 % 13) / 13, count=4)  # noisy: the default smooths it
            w.add(step, 2.0, tag="val")  # constant: never smoothed
    out = tmp_path / "o.feather"
    status, _, err = run_cli(["export", str(path), str(out), *options], capsys)
    assert status == 0, err
    table = feather.read_table(out)
    assert table.column_names[-1] == "smoothed"
    val = table.filter(pc.equal(table.column("tag").cast(pa.string()), "val"))
    assert val.num_rows == (30 if "--per" in options else 300)
    assert val.column("smoothed").equals(val.column("value"))
