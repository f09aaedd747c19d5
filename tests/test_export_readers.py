"""A directory export read by each engine's obvious one-liner (pandas, pyarrow, Polars, DuckDB): the same
rows and run names from all of them, and an export made before the directory layout changed updated."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

import lossfmt
from lossfmt import export_parquet

duckdb = pytest.importorskip("duckdb")
pd = pytest.importorskip("pandas")
pl = pytest.importorskip("polars")

#: Names a path escapes or an engine would type from a path: spaces, "/", "=", "%", unicode, a leading "_"
#: or "." (files engines skip), and names that look like integers.
ESCAPED = ["plain", "a b", "grouped/loss_val", "lr=0.1", "x%y", "ünï ✓", "_under", ".dot", "007"]
NUMERIC = ["007", "1", "2"]
COLUMNS = ["run", "step", "tag", "value", "lr"]


def export(tmp_path: Path, names: list[str]) -> tuple[Path, list[tuple[Any, ...]]]:
    """A sweep of runs with `names`, exported to a directory; and its rows as lossfmt reads them."""
    for i, name in enumerate(names):
        with lossfmt.LossWriter(tmp_path / "runs" / f"r{i}.arrow", run=name, meta={"lr": 0.1 * i}) as w:
            w.add(0, 1.0 + i)
            w.add(1, 0.5, "val_loss")
    out = tmp_path / "out"
    export_parquet(tmp_path / "runs", out)
    events = lossfmt.read(tmp_path / "runs").to_pylist()
    lrs = dict(zip(names, (0.1 * i for i in range(len(names))), strict=True))
    return out, sorted((e["run"], e["step"], e["tag"], e["value"], lrs[e["run"]]) for e in events)


def readers(out: Path) -> dict[str, Any]:
    """Each engine's one-liner on the export, as a callable giving rows of COLUMNS."""
    glob = f"{out}/**/*.parquet"
    cols = ", ".join(COLUMNS)

    def arrow_rows(table: Any) -> list[tuple[Any, ...]]:
        return list(zip(*(table.column(c).to_pylist() for c in COLUMNS), strict=True))

    return {
        "pandas.read_parquet(OUT)": lambda: list(pd.read_parquet(out)[COLUMNS].itertuples(index=False)),
        "pyarrow.parquet.read_table(OUT)": lambda: arrow_rows(pq.read_table(out)),
        "pyarrow.dataset(OUT, hive)": lambda: arrow_rows(
            ds.dataset(out, format="parquet", partitioning="hive").to_table()
        ),
        "polars.read_parquet(OUT)": lambda: pl.read_parquet(out).select(COLUMNS).rows(),
        "polars.scan_parquet(OUT)": lambda: pl.scan_parquet(out).select(COLUMNS).collect().rows(),
        "polars.read_parquet(glob)": lambda: pl.read_parquet(glob).select(COLUMNS).rows(),
        "polars.scan_parquet(glob)": lambda: pl.scan_parquet(glob).select(COLUMNS).collect().rows(),
        "polars.scan_parquet(glob, hive)": lambda: (
            pl.scan_parquet(glob, hive_partitioning=True).select(COLUMNS).collect().rows()
        ),
        "duckdb read_parquet(glob)": lambda: duckdb.sql(
            f"SELECT {cols} FROM read_parquet('{glob}')"
        ).fetchall(),
        **{
            f"duckdb read_parquet(glob, hive={hive})": lambda hive=hive: duckdb.sql(
                f"SELECT {cols} FROM read_parquet('{glob}', hive_partitioning={hive})"
            ).fetchall()
            for hive in ("true", "false")
        },
    }


@pytest.mark.parametrize("names", [ESCAPED, NUMERIC], ids=["escaped", "numeric"])
def test_every_engines_one_liner_on_a_directory_export_gives_the_same_rows_and_run_names(tmp_path, names):
    """pandas.read_parquet(OUT) and pyarrow.parquet.read_table(OUT) failed ("Unable to merge: Field run has
    incompatible types": a Hive directory run=<name> typed as a dictionary, or int32 for 007, beside the
    string column), pyarrow.dataset with hive partitioning failed on names like 007, and Polars on OUT
    failed on the JSON manifest in it."""
    out, expected = export(tmp_path, names)
    failed = {}
    for name, read_rows in readers(out).items():
        try:
            rows = sorted(tuple(row) for row in read_rows())
        except Exception as exc:  # every engine is tried, so the report names all that fail
            failed[name] = f"{type(exc).__name__}: {exc}"
            continue
        if rows != expected:
            failed[name] = f"rows differ: {rows[:3]}..."
    assert not failed, failed
    assert sorted({row[0] for row in expected}) == sorted(names)


def to_old_layout(out: Path) -> None:
    """Turn a directory export into the layout of exports made before this one: each run's file in a Hive
    directory ``run=<name>/part-0.parquet``, the manifest as JSON in ``_lossfmt_export.json``."""
    manifest = json.loads(
        pq.read_schema(out / "_lossfmt_export.parquet").metadata[b"lossfmt.export.manifest"]
    )
    for entry in manifest["runs"].values():
        old = f"run={entry['file'].removeprefix('run-').removesuffix('.parquet')}/part-0.parquet"
        (out / old).parent.mkdir()
        shutil.move(out / entry["file"], out / old)
        entry["file"] = old
    (out / "_lossfmt_export.parquet").unlink()
    (out / "_lossfmt_export.json").write_text(json.dumps(manifest))


def test_an_export_in_the_old_hive_layout_is_updated_to_one_every_engine_reads(tmp_path):
    """The export changed its layout (and its manifest's name and format): a directory an earlier export
    made is still taken as an export, and exporting again moves its runs into the new layout."""
    out, expected = export(tmp_path, ESCAPED)
    to_old_layout(out)
    summary = export_parquet(tmp_path / "runs", out)
    assert (summary.runs, summary.written, summary.removed) == (len(ESCAPED), len(ESCAPED), 0)
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith("run-")) == [
        "_lossfmt_export.parquet"
    ]
    assert sorted(tuple(r) for r in readers(out)["pandas.read_parquet(OUT)"]()) == expected
    assert export_parquet(tmp_path / "runs", out).written == 0  # now incremental again
