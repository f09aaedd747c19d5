"""Parquet export (lossfmt.export_parquet) read back by the real DuckDB and Polars, incremental re-export."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from urllib.parse import quote

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import lossfmt
from lossfmt import LossFormatError, export_parquet

duckdb = pytest.importorskip("duckdb")
pl = pytest.importorskip("polars")


def write_run(path: Path, n: int = 5, meta: dict | None = None, run: str | None = None) -> None:
    with lossfmt.LossWriter(path, meta=meta, run=run) as writer:
        for step in range(n):
            writer.add(step, 1.0 / (step + 1), count=32, epoch=step // 2)
        writer.add(n - 1, 0.5, "val_loss", count=100)


def sweep(directory: Path, n: int = 4) -> None:
    for i in range(n):
        write_run(directory / f"lr{i}.arrow", meta={"lr": 10.0**-i, "seed": i, "opt": "adam"})


def stamps(out: Path) -> dict[str, tuple[int, int]]:
    """Each run file's (inode, mtime_ns): unchanged when the export did not rewrite it."""
    return {p.stem: (p.stat().st_ino, p.stat().st_mtime_ns) for p in sorted(out.glob("run-*.parquet"))}


def manifest_text(out: Path) -> str:
    """The JSON of a directory export's manifest (in the key-value metadata of a Parquet file of no rows)."""
    return pq.read_schema(out / "_lossfmt_export.parquet").metadata[b"lossfmt.export.manifest"].decode()


def query(sql: str) -> list[tuple]:
    return duckdb.sql(sql).fetchall()


def test_duckdb_reads_a_directory_export_by_path_with_runs_and_hparams(tmp_path):
    sweep(tmp_path / "runs")
    summary = export_parquet(tmp_path / "runs", tmp_path / "out")
    assert summary == lossfmt.ExportSummary(runs=4, written=4, removed=0, rows=4 * 6)
    glob = f"{tmp_path}/out/**/*.parquet"
    for hive in ("true", "false"):
        rows = query(
            f"SELECT run, lr, seed, opt, count(*), min(value) FROM read_parquet('{glob}', "
            f"hive_partitioning={hive}) WHERE tag = 'loss' GROUP BY ALL ORDER BY run"
        )
        assert rows == [(f"lr{i}", 10.0**-i, float(i), "adam", 5, 0.2) for i in range(4)]
    exported = duckdb.sql(f"SELECT * EXCLUDE (run, run_id, lr, seed, opt) FROM '{glob}' WHERE run = 'lr2'")
    original = lossfmt.read(tmp_path / "runs" / "lr2.arrow")
    assert exported.arrow().read_all().to_pylist() == original.cast(exported_schema(original)).to_pylist()
    run_ids = dict(query(f"SELECT DISTINCT run, run_id FROM '{glob}'"))
    assert run_ids["lr2"] == lossfmt.run_info(original.schema)["run_id"]


def exported_schema(table: pa.Table) -> pa.Schema:
    """The file schema with dictionary columns as strings, as the export writes them."""
    fields = [
        pa.field(f.name, pa.string() if pa.types.is_dictionary(f.type) else f.type) for f in table.schema
    ]
    return pa.schema(fields)


def test_duckdb_column_types_are_the_engines_own(tmp_path):
    sweep(tmp_path / "runs", 1)
    export_parquet(tmp_path / "runs", tmp_path / "out")
    types = dict(query(f"SELECT column_name, column_type FROM (DESCRIBE '{tmp_path}/out/**/*.parquet')"))
    assert types == {
        "run": "VARCHAR",
        "run_id": "VARCHAR",
        "step": "BIGINT",
        "tag": "VARCHAR",
        "value": "DOUBLE",
        "count": "BIGINT",
        "epoch": "BIGINT",
        "wall_time": "TIMESTAMP WITH TIME ZONE",
        "reduction": "VARCHAR",
        "lr": "DOUBLE",
        "opt": "VARCHAR",
        "seed": "DOUBLE",
    }


def test_polars_scan_parquet_reads_the_export(tmp_path):
    sweep(tmp_path / "runs")
    export_parquet(tmp_path / "runs", tmp_path / "out")
    best = (
        pl.scan_parquet(tmp_path / "out" / "**" / "*.parquet", hive_partitioning=True)
        .filter(pl.col("tag") == "val_loss")
        .group_by("run", "lr")
        .agg(pl.col("value").min())
        .sort("run")
        .collect()
    )
    assert best.rows() == [(f"lr{i}", 10.0**-i, 0.5) for i in range(4)]


def test_run_names_that_need_escaping_stay_one_file_each_and_come_back_verbatim(tmp_path):
    names = ["grouped/loss_val", "lr=0.1", "007", "a b%", "_x", ".y"]
    for i, name in enumerate(names):
        write_run(tmp_path / "runs" / f"r{i}.arrow", run=name)
    export_parquet(tmp_path / "runs", tmp_path / "out")
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == ["_lossfmt_export.parquet", *sorted(f"run-{quote(n, safe='')}.parquet" for n in names)]
    for hive in ("true", "false"):
        got = query(
            f"SELECT DISTINCT run FROM read_parquet('{tmp_path}/out/**/*.parquet', hive_partitioning={hive})"
        )
        assert sorted(r for (r,) in got) == sorted(names)
    frame = pl.scan_parquet(tmp_path / "out" / "**" / "*.parquet").select("run").unique().collect()
    assert sorted(frame["run"].to_list()) == sorted(names)


def test_only_new_or_changed_runs_are_rewritten(tmp_path):
    sweep(tmp_path / "runs", 3)
    live = lossfmt.LossWriter(tmp_path / "runs" / "live.arrow")
    live.add(0, 3.0)
    live.flush()
    out = tmp_path / "out"
    assert export_parquet(tmp_path / "runs", out).written == 4
    before = stamps(out)
    assert export_parquet(tmp_path / "runs", out) == lossfmt.ExportSummary(4, 0, 0, 0)
    assert stamps(out) == before

    live.add(1, 2.0)
    live.flush()
    write_run(tmp_path / "runs" / "new.arrow")
    assert export_parquet(tmp_path / "runs", out) == lossfmt.ExportSummary(5, 2, 0, 2 + 6)
    after = stamps(out)
    assert {k: v for k, v in after.items() if k.startswith("run-lr")} == before_lr(before)
    assert after["run-live"] != before["run-live"]
    live.close()
    assert export_parquet(tmp_path / "runs", out).written == 1  # closing (compaction) changed the file
    assert query(f"SELECT count(*) FROM '{out}/**/*.parquet' WHERE run = 'live'") == [(2,)]


def before_lr(before: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
    return {k: v for k, v in before.items() if k.startswith("run-lr")}


def test_a_run_gone_from_the_source_is_removed_from_the_export(tmp_path):
    sweep(tmp_path / "runs", 3)
    out = tmp_path / "out"
    export_parquet(tmp_path / "runs", out)
    (tmp_path / "runs" / "lr1.arrow").unlink()
    assert export_parquet(tmp_path / "runs", out) == lossfmt.ExportSummary(2, 0, 1, 0)
    assert not (out / "run-lr1.parquet").exists()
    assert query(f"SELECT DISTINCT run FROM '{out}/**/*.parquet' ORDER BY run") == [("lr0",), ("lr2",)]


def test_a_new_hparam_rewrites_every_run_so_all_files_share_one_schema(tmp_path):
    sweep(tmp_path / "runs", 2)
    out = tmp_path / "out"
    export_parquet(tmp_path / "runs", out)
    write_run(tmp_path / "runs" / "warm.arrow", meta={"lr": 0.5, "warmup": True})
    assert export_parquet(tmp_path / "runs", out).written == 3
    schemas = {str(pq.read_schema(p).remove_metadata()) for p in out.glob("*.parquet")}  # manifest too
    assert len(schemas) == 1
    # DuckDB's default reads every file with the first one's columns: all of them have warmup.
    assert query(f"SELECT run, warmup FROM '{out}/**/*.parquet' WHERE tag = 'val_loss' ORDER BY run") == [
        ("lr0", None),
        ("lr1", None),
        ("warm", True),
    ]


def test_hparam_kinds_map_to_boolean_double_varchar_or_json_text(tmp_path):
    meta = {"amp": True, "bs": 32, "layers": [1, math.inf], "mixed": 1}
    write_run(tmp_path / "runs" / "a.arrow", meta=meta)
    write_run(tmp_path / "runs" / "b.arrow", meta={"amp": False, "bs": 0.5, "mixed": "x", "step": 7})
    export_parquet(tmp_path / "runs", tmp_path / "one.parquet")
    table = pq.read_table(tmp_path / "one.parquet")
    types = {name: table.schema.field(name).type for name in ("amp", "bs", "layers", "mixed", "meta.step")}
    assert types == {
        "amp": pa.bool_(),
        "bs": pa.float64(),
        "layers": pa.string(),
        "mixed": pa.string(),
        "meta.step": pa.float64(),
    }
    rows = {r["run"]: r for r in table.filter(pa.compute.equal(table["tag"], "val_loss")).to_pylist()}
    # JSON text is strict JSON: a non-finite float spelt as the file's own metadata spells it
    layers = '[1, {"$float": "Infinity"}]'
    assert (rows["a"]["bs"], rows["a"]["layers"], rows["a"]["mixed"]) == (32.0, layers, "1")
    assert (rows["b"]["layers"], rows["b"]["mixed"], rows["b"]["meta.step"]) == (None, '"x"', 7.0)
    assert table["step"].to_pylist()[:6] == [0, 1, 2, 3, 4, 4]  # the event column is not the hparam


def test_a_single_file_export_is_one_parquet_file_duckdb_reads(tmp_path):
    sweep(tmp_path / "runs")
    out = tmp_path / "sweep.parquet"
    assert export_parquet(str(tmp_path / "runs" / "*.arrow"), out).rows == 24
    assert query(f"SELECT run, count(*) FROM '{out}' GROUP BY run ORDER BY run") == [
        (f"lr{i}", 6) for i in range(4)
    ]
    write_run(tmp_path / "runs" / "lr9.arrow")
    assert export_parquet(tmp_path / "runs", out).written == 5  # a previous export is replaced whole
    assert pl.read_parquet(out)["run"].n_unique() == 5


def test_foreign_files_and_directories_are_never_overwritten(tmp_path):
    sweep(tmp_path / "runs", 1)
    foreign = tmp_path / "mine.parquet"
    pq.write_table(pa.table({"x": [1]}), foreign)
    before = foreign.read_bytes()
    with pytest.raises(FileExistsError, match=r"mine\.parquet: exists and was not written by lossfmt"):
        export_parquet(tmp_path / "runs", foreign)
    assert foreign.read_bytes() == before
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match=r"notes: directory is not empty"):
        export_parquet(tmp_path / "runs", tmp_path / "notes")
    assert [p.name for p in (tmp_path / "notes").iterdir()] == ["todo.txt"]


def test_a_damaged_manifest_is_a_clear_error_and_nothing_is_touched(tmp_path):
    sweep(tmp_path / "runs", 1)
    out = tmp_path / "out"
    export_parquet(tmp_path / "runs", out)
    for damage in (b"{not json", b"PAR1 torn"):
        (out / "_lossfmt_export.parquet").write_bytes(damage)
        before = stamps(out)
        with pytest.raises(LossFormatError, match=r"_lossfmt_export\.parquet: unreadable export manifest"):
            export_parquet(tmp_path / "runs", out)
        assert stamps(out) == before


def test_live_runs_are_read_skipped_or_refused(tmp_path):
    sweep(tmp_path / "runs", 1)
    with lossfmt.LossWriter(tmp_path / "runs" / "live.arrow") as writer:
        writer.add(0, 1.0)
        writer.flush()
        assert export_parquet(tmp_path / "runs", tmp_path / "all.parquet").runs == 2
        assert export_parquet(tmp_path / "runs", tmp_path / "closed.parquet", live="skip").runs == 1
        with pytest.raises(LossFormatError, match=r"live\.arrow: no footer"):
            export_parquet(tmp_path / "runs", tmp_path / "x.parquet", live="error")
    with pytest.raises(ValueError, match="live must be one of"):
        export_parquet(tmp_path / "runs", tmp_path / "x.parquet", live="maybe")
    assert not (tmp_path / "x.parquet").exists()


def test_runs_sharing_a_name_get_their_own_files(tmp_path):
    for sub in ("a", "b"):
        write_run(tmp_path / sub / "exp.arrow")
    out = tmp_path / "out"
    export_parquet([tmp_path / "a" / "exp.arrow", tmp_path / "b" / "exp.arrow"], out)
    runs = sorted(r for (r,) in query(f"SELECT DISTINCT run FROM '{out}/**/*.parquet'"))
    assert runs == sorted(
        lossfmt.read([tmp_path / "a" / "exp.arrow", tmp_path / "b" / "exp.arrow"])["run"].unique().to_pylist()
    )
    assert len(runs) == 2
    assert len(json.loads(manifest_text(out))["runs"]) == 2


def test_a_source_that_is_not_lossfmt_is_an_error_naming_it(tmp_path):
    sweep(tmp_path / "runs", 1)
    (tmp_path / "runs" / "junk.arrow").write_bytes(b"not arrow")
    with pytest.raises(LossFormatError, match=r"junk\.arrow"):
        export_parquet(tmp_path / "runs", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_the_export_benchmark_runs_and_its_queries_agree(tmp_path):
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    result = subprocess.run(
        [sys.executable, "-m", "bench.export", "--runs", "3", "--events", "200", "--repeats", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=root,
        env={**os.environ, "TMPDIR": str(tmp_path)},  # the benchmark's scratch files go under tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "| export_parquet, one run changed |" in result.stdout
    assert "| DuckDB on lossfmt.dataset() |" in result.stdout


def test_a_live_run_is_exported_with_its_name_and_hparams(tmp_path):
    with lossfmt.LossWriter(tmp_path / "runs" / "live.arrow", run="warmup-run", meta={"lr": 0.3}) as writer:
        writer.add(0, 1.5)
        writer.flush()
        export_parquet(tmp_path / "runs", tmp_path / "live.parquet")
    rows = pq.read_table(tmp_path / "live.parquet", columns=["run", "lr", "value"]).to_pylist()
    assert rows == [{"run": "warmup-run", "lr": 0.3, "value": 1.5}]


def test_the_manifest_is_strict_json_with_non_finite_hparams_spelt_as_the_format_spells_them(tmp_path):
    meta = {"lr": float("nan"), "clip": float("inf"), "range": [float("-inf"), 1.0]}
    write_run(tmp_path / "runs" / "a.arrow", meta=meta)
    export_parquet(tmp_path / "runs", tmp_path / "out")

    def refuse(token: str) -> None:
        raise AssertionError(f"bare {token} in the manifest")

    manifest = json.loads(manifest_text(tmp_path / "out"), parse_constant=refuse)
    (entry,) = manifest["runs"].values()
    assert entry["meta"] == {
        "lr": {"$float": "NaN"},
        "clip": {"$float": "Infinity"},
        "range": [{"$float": "-Infinity"}, 1.0],
    }
    again = export_parquet(tmp_path / "runs", tmp_path / "out")  # read back as the floats: nothing changed
    assert (again.written, again.rows) == (0, 0)
    assert query(f"SELECT DISTINCT isnan(lr), clip FROM '{tmp_path}/out/**/*.parquet'") == [(True, math.inf)]


def test_an_integer_beyond_a_doubles_range_is_exported_as_exact_json_text(tmp_path):
    """An integer hparam float() cannot convert (10**400, which the writer accepts) made hparams() and
    export_parquet raise a raw OverflowError; it is JSON text now, the type of what DOUBLE cannot hold."""
    write_run(tmp_path / "runs" / "big.arrow", meta={"n": 10**400, "m": 2**1023})
    write_run(tmp_path / "runs" / "small.arrow", meta={"n": 3})
    table = lossfmt.hparams(tmp_path / "runs")
    assert table.schema.field("n").type == pa.string() and table.schema.field("m").type == pa.float64()
    assert dict(zip(table["run"].to_pylist(), table["n"].to_pylist(), strict=True)) == {
        "big": str(10**400),
        "small": "3",
    }
    export_parquet(tmp_path / "runs", tmp_path / "one.parquet")
    got = query(f"SELECT DISTINCT run, n::JSON, m FROM '{tmp_path}/one.parquet' ORDER BY run")
    assert got == [("big", str(10**400), 2.0**1023), ("small", "3", None)]


def test_hparams_differing_from_a_column_or_each_other_only_in_case_get_their_own_names(tmp_path):
    """`RUN` and `Step` were columns beside `run` and `step` (DuckDB's `SELECT RUN` gave the run's name);
    `lr` and `LR` were two columns DuckDB tells apart only by renaming one."""
    write_run(
        tmp_path / "runs" / "r.arrow", meta={"RUN": "baseline", "Step": 7, "PATH": "/x", "lr": 1, "LR": 2}
    )
    table = lossfmt.hparams(tmp_path / "runs")
    assert table.column_names == ["run", "run_id", "path", "LR", "meta.PATH", "meta.RUN", "meta.Step", "lr_1"]
    export_parquet(tmp_path / "runs", tmp_path / "out")
    glob = f"{tmp_path}/out/**/*.parquet"
    names = [name for (name,) in query(f"SELECT column_name FROM (DESCRIBE '{glob}')")][9:]
    assert names == ["LR", "PATH", "meta.RUN", "meta.Step", "lr_1"]
    row = query(f"SELECT RUN, \"meta.RUN\", \"meta.Step\", LR, lr_1 FROM '{glob}' WHERE tag = 'val_loss'")
    assert row == [("r", "baseline", 7.0, 2.0, 1.0)]


def test_hparams_live_error_names_the_hparams_call_to_retry(tmp_path):
    """hparams(live='error') told the user to "export with live='read'" (export_parquet's hint)."""
    with lossfmt.LossWriter(tmp_path / "runs" / "live.arrow") as writer:
        writer.add(0, 1.0)
        writer.flush()
        with pytest.raises(
            LossFormatError, match=r"live\.arrow: no footer.*call lossfmt\.hparams\(\.\.\., live='read'\)$"
        ):
            lossfmt.hparams(tmp_path / "runs", live="error")


def test_hparams_of_a_run_whose_file_name_is_not_utf8_names_its_path_readably(tmp_path):
    """A Latin-1 file name made `hparams` fail with a raw UnicodeEncodeError (an Arrow string is UTF-8)."""
    path = os.fsdecode(os.fsencode(tmp_path) + b"/caf\xe9.arrow")
    with lossfmt.LossWriter(path, meta={"lr": 0.1}) as w:
        w.add(0, 1.0)
    (row,) = lossfmt.hparams(tmp_path).to_pylist()
    assert row["path"] == f"{tmp_path}/caf\ufffd.arrow" and row["lr"] == 0.1
