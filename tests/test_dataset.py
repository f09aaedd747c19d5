"""Many runs as one dataset, and the docs/recipes.md recipes run against real files (200 runs)."""

from __future__ import annotations

import os
import re
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pytest

import lossfmt
from lossfmt import transforms
from lossfmt.dataset import dataset, mean_across, read_ranks
from lossfmt.schema import LossFormatError

#: The module (``lossfmt.dataset`` is the function it exports).
DATASET_MODULE = sys.modules["lossfmt.dataset"]
RECIPES = Path(__file__).resolve().parent.parent / "docs" / "recipes.md"
N_RUNS = 200
STEPS = 40  # per-batch events per run, plus one val_loss per 4 steps: 50 events per run


def recipe(name: str) -> str:
    """The code of the ```python block of docs/recipes.md that starts with `# recipe: <name>`."""
    blocks = re.findall(r"```python\n(# recipe: ([\w-]+)\n.*?)```", RECIPES.read_text(), flags=re.S)
    found = [code for code, block_name in blocks if block_name == name]
    assert len(found) == 1, f"docs/recipes.md has {len(found)} recipes named {name!r}"
    return found[0]


def run_recipe(name: str, cwd: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    monkeypatch.chdir(cwd)
    namespace: dict = {}
    exec(compile(recipe(name), f"recipes.md:{name}", "exec"), namespace)
    return namespace


def assert_best(got: dict[str, tuple[float, int]], expected: dict[str, tuple[float, int]]) -> None:
    assert got.keys() == expected.keys()
    for run, (value, step) in expected.items():
        assert got[run] == (pytest.approx(value), step), run


def val_losses(i: int) -> np.ndarray:
    """Run i's validation curve: falls, then overfits from a run-specific epoch on."""
    epochs = np.arange(STEPS // 4)
    turn = i % 7 + 2
    return 1.0 / (epochs + 1) + 0.02 * np.maximum(epochs - turn, 0) ** 2 + i * 1e-4


def write_sweep(directory: Path, n: int) -> dict[str, tuple[float, int]]:
    """n closed run files; returns each run's (best val_loss, its step)."""
    directory.mkdir()
    best = {}
    for i in range(n):
        run = f"sweep-{i:03d}"
        val = val_losses(i)
        with lossfmt.LossWriter(directory / f"{run}.arrow", meta={"lr": [0.1, 0.01][i % 2], "seed": i}) as w:
            for step in range(STEPS):
                w.add(step, 2.0 / (step + 1), count=32, epoch=step // 4)
                if step % 4 == 3:
                    w.add(step, val[step // 4], "val_loss", count=100, epoch=step // 4)
        k = int(np.argmin(val))
        best[run] = (float(val[k]), 4 * k + 3)
    return best


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> tuple[Path, dict[str, tuple[float, int]]]:
    root = tmp_path_factory.mktemp("sweep")
    return root, write_sweep(root / "runs", N_RUNS)


def test_a_directory_of_runs_is_one_dataset_with_a_run_column(sweep):
    root, best = sweep
    runs = dataset(root / "runs")
    assert isinstance(runs, ds.Dataset)
    assert runs.schema.names == ["run", *lossfmt.schema.COLUMNS]
    assert runs.count_rows() == N_RUNS * 50
    table = runs.to_table(columns=["run", "tag"])
    assert set(table["run"].to_pylist()) == set(best)
    one = runs.to_table(filter=pc.field("run") == "sweep-007")
    assert one.num_rows == 50
    expected = lossfmt.read(root / "runs" / "sweep-007.arrow").to_pylist()
    assert one.drop_columns(["run"]).to_pylist() == expected


def test_recipe_pyarrow_filter(sweep, monkeypatch):
    root, _ = sweep
    val = run_recipe("dataset-filter", root, monkeypatch)["val"]
    assert val.column_names == ["run", "step", "value"]
    assert val.num_rows == N_RUNS * STEPS // 4


def test_recipe_duckdb_best_validation_loss_per_run(sweep, monkeypatch):
    pytest.importorskip("duckdb")
    pytest.importorskip("pandas")
    root, best = sweep
    frame = run_recipe("duckdb-best-val", root, monkeypatch)["best"]
    assert len(frame) == N_RUNS
    assert_best({row.run: (row.best_val, row.best_step) for row in frame.itertuples()}, best)
    assert list(frame["best_val"]) == sorted(frame["best_val"])
    assert set(frame["evals"]) == {STEPS // 4}


def test_recipe_duckdb_joins_hyperparameters(sweep, monkeypatch):
    pytest.importorskip("duckdb")
    pytest.importorskip("pandas")
    root, best = sweep
    frame = run_recipe("duckdb-hparams", root, monkeypatch)["by_lr"]
    assert list(frame["lr"]) == [0.01, 0.1]
    assert list(frame["runs"]) == [N_RUNS // 2, N_RUNS // 2]
    odd = np.mean([best[f"sweep-{i:03d}"][0] for i in range(1, N_RUNS, 2)])
    assert frame["mean_best_val"].iloc[0] == pytest.approx(odd)


def test_the_duckdb_hparams_recipe_counts_a_live_run_and_runs_that_share_a_name(tmp_path, monkeypatch):
    pytest.importorskip("duckdb")
    pytest.importorskip("pandas")
    best = write_sweep(tmp_path / "runs", 4)
    with lossfmt.LossWriter(tmp_path / "runs" / "dup.arrow", run="sweep-000", meta={"lr": 0.1}) as w:
        w.add(0, 0.25, "val_loss")  # a second run named sweep-000 (the dataset tells them apart by path)
    with lossfmt.LossWriter(tmp_path / "runs" / "live.arrow", meta={"lr": 0.5}, flush_secs=3600) as live:
        live.add(0, 0.5, "val_loss")
        live.flush()  # still running: no footer
        frame = run_recipe("duckdb-hparams", tmp_path, monkeypatch)["by_lr"]
        table = lossfmt.hparams(tmp_path / "runs")
    assert list(frame["lr"]) == [0.01, 0.1, 0.5]
    assert list(frame["runs"]) == [2, 3, 1]
    mean = (best["sweep-000"][0] + best["sweep-002"][0] + 0.25) / 3
    assert frame["mean_best_val"].iloc[1] == pytest.approx(mean)
    named = set(dataset(tmp_path / "runs").to_table()["run"].to_pylist())
    assert sorted(table.column("run").to_pylist()) == sorted(named)
    assert table.schema.names == ["run", "run_id", "path", "lr", "seed"]


def test_recipe_export_to_parquet_then_duckdb_by_path(sweep, monkeypatch):
    pytest.importorskip("duckdb")
    pytest.importorskip("pandas")
    root, best = sweep
    frame = run_recipe("export-duckdb", root, monkeypatch)["by_lr"]
    assert list(frame["lr"]) == [0.01, 0.1]
    assert list(frame["runs"]) == [N_RUNS // 2, N_RUNS // 2]
    odd = np.mean([best[f"sweep-{i:03d}"][0] for i in range(1, N_RUNS, 2)])
    assert frame["mean_best_val"].iloc[0] == pytest.approx(odd)
    assert len(list((root / "sweep-parquet").glob("run-*.parquet"))) == N_RUNS


def test_recipe_polars_scan_ipc_reads_closed_files_directly(sweep, monkeypatch):
    pytest.importorskip("polars")
    root, best = sweep
    frame = run_recipe("polars-scan", root, monkeypatch)["best"]
    rows = frame.iter_rows(named=True)
    assert_best({row["run"]: (row["best_val"], row["best_step"]) for row in rows}, best)


def test_polars_reads_the_dictionary_columns_as_categoricals(sweep):
    pl = pytest.importorskip("polars")
    root, _ = sweep
    frame = pl.read_ipc(root / "runs" / "sweep-000.arrow")
    assert frame.schema["tag"] == pl.Categorical
    assert frame.schema["reduction"] == pl.Categorical
    assert frame.schema["wall_time"] == pl.Datetime("us", "UTC")
    assert sorted(frame["tag"].unique().to_list()) == ["loss", "val_loss"]


def test_live_file_policies(tmp_path):
    write_sweep(tmp_path / "runs", 2)
    with lossfmt.LossWriter(tmp_path / "runs" / "live.arrow") as writer:
        writer.add(0, 1.5, "val_loss")
        writer.flush()
        runs = set(dataset(tmp_path / "runs").to_table()["run"].to_pylist())
        assert runs == {"sweep-000", "sweep-001", "live"}
        snapshot = dataset(tmp_path / "runs").to_table(filter=pc.field("run") == "live")
        assert snapshot["value"].to_pylist() == [1.5]
        assert dataset(tmp_path / "runs", live="skip").count_rows() == 2 * 50
        with pytest.raises(LossFormatError, match=r"live\.arrow: no footer"):
            dataset(tmp_path / "runs", live="error")
    assert dataset(tmp_path / "runs", live="error").count_rows() == 2 * 50 + 1


def test_recipe_polars_with_live_files_goes_through_lossfmt(tmp_path, monkeypatch):
    pl = pytest.importorskip("polars")
    write_sweep(tmp_path / "runs", 3)
    with lossfmt.LossWriter(tmp_path / "runs" / "live.arrow") as writer:
        writer.add(0, 0.25, "val_loss")
        writer.flush()
        # The documented limitation: scan_ipc needs the footer a running writer has not written yet.
        with pytest.raises(pl.exceptions.ComputeError):
            pl.scan_ipc(tmp_path / "runs" / "*.arrow").collect()
        best = run_recipe("polars-live", tmp_path, monkeypatch)["best"]
    assert dict(best.iter_rows()) == pytest.approx(
        {"live": 0.25, **{f"sweep-{i:03d}": float(val_losses(i).min()) for i in range(3)}}
    )


def test_crashed_file_with_a_torn_tail_contributes_its_complete_events(tmp_path):
    write_sweep(tmp_path / "runs", 1)
    with lossfmt.LossWriter(tmp_path / "crash.arrow") as writer:
        for step in range(5):
            writer.add(step, float(step))
        writer.flush()
        crashed = (tmp_path / "crash.arrow").read_bytes()
    # A writer killed mid-write: its last flush's bytes only partly on disk.
    (tmp_path / "runs" / "crash.arrow").write_bytes(crashed + b"\xff\xff\xff\xff\x40\x00\x00\x00partial")
    table = dataset(tmp_path / "runs").to_table(filter=pc.field("run") == "crash")
    assert table["value"].to_pylist() == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_runs_sharing_a_name_are_told_apart_as_read_does(tmp_path):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        with lossfmt.LossWriter(tmp_path / sub / "exp.arrow") as writer:
            writer.add(0, 1.0)
    paths = [tmp_path / "a" / "exp.arrow", tmp_path / "b" / "exp.arrow"]
    names = sorted(dataset(paths).to_table()["run"].to_pylist())
    assert names == sorted(lossfmt.read(paths)["run"].to_pylist())
    assert len(set(names)) == 2


def test_a_glob_and_a_list_work_like_a_directory(sweep):
    root, _ = sweep
    files = sorted((root / "runs").glob("sweep-00*.arrow"))
    assert dataset(files).count_rows() == dataset(str(root / "runs" / "sweep-00*.arrow")).count_rows() == 500


def test_a_file_that_is_not_lossfmt_is_an_error_naming_it(tmp_path):
    write_sweep(tmp_path / "runs", 1)
    (tmp_path / "runs" / "junk.arrow").write_bytes(b"not arrow at all")
    with pytest.raises(LossFormatError, match=r"junk\.arrow"):
        dataset(tmp_path / "runs")
    plain = pa.table({"x": [1]})
    with pa.ipc.new_file(tmp_path / "runs" / "junk.arrow", plain.schema) as writer:
        writer.write_table(plain)
    with pytest.raises(LossFormatError, match=r"junk\.arrow: not a lossfmt file"):
        dataset(tmp_path / "runs")


def test_recipe_ranks_merges_rank_files(tmp_path, monkeypatch):
    from lossfmt.integrations.torch_distributed import rank_writer

    (tmp_path / "runs" / "ddp").mkdir(parents=True)
    for rank in (0, 1):
        with rank_writer(tmp_path / "runs" / "ddp" / "rank{rank}.arrow", rank=rank, world_size=2) as writer:
            for step in range(3):
                writer.add(step, float(step + 10 * rank), count=8)
    per_step = run_recipe("ranks", tmp_path, monkeypatch)["per_step"]
    assert per_step["run"].to_pylist() == ["ddp"] * 3
    assert per_step["value"].to_pylist() == [5.0, 6.0, 7.0]
    assert per_step["std"].to_pylist() == [5.0, 5.0, 5.0]
    assert per_step["count"].to_pylist() == [16, 16, 16]


def test_mean_across_needs_the_column_it_averages_over():
    table = pa.table({"tag": ["loss"], "step": [0], "value": [1.0]})
    with pytest.raises(ValueError, match="no 'rank' column"):
        mean_across(table)


def test_mean_across_of_something_else_than_a_table_is_a_type_error():
    """A pandas DataFrame gave "AttributeError: 'DataFrame' object has no attribute 'column_names'"."""
    frame = pa.table({"tag": ["loss"], "step": [0], "value": [1.0], "rank": [0]}).to_pandas()
    with pytest.raises(TypeError, match=r"mean_across takes a pyarrow Table .* not DataFrame"):
        mean_across(frame)


def test_read_ranks_selects_tags_alike_in_every_rank_file(tmp_path):
    """A tag named `a[1]` in one rank's file was a glob in another's, which it matched as `a1`: an unrelated
    tag merged into the series. As in lossfmt.read, a pattern that is a tag of any file is that tag in all."""
    for rank, tags in ((0, ["a[1]", "a1"]), (1, ["a1"])):
        with lossfmt.LossWriter(tmp_path / f"rank{rank}.arrow", meta={"rank": rank}) as w:
            for tag in tags:
                w.add(0, float(rank), tag)
    chosen = read_ranks(tmp_path / "rank*.arrow", tags="a[1]")
    assert chosen.select(["rank", "tag"]).to_pylist() == [{"rank": 0, "tag": "a[1]"}]
    assert read_ranks(tmp_path / "rank*.arrow", tags="a*").num_rows == 3


@pytest.mark.parametrize("hold", [True, False])
def test_a_run_whose_file_name_is_not_utf8_is_in_the_dataset_and_polars_frame(tmp_path, monkeypatch, hold):
    """pyarrow and Polars take paths as UTF-8: a Latin-1 file name (which lossfmt.read reads) made dataset(),
    scan_polars() and every lossview picture of its directory fail with a raw UnicodeEncodeError."""
    if not hold:  # a file too large to hold is scanned from disk, where pyarrow would need its name
        monkeypatch.setattr(DATASET_MODULE, "HOLD_FILE_BYTES", 0)
    runs = tmp_path / "runs"
    latin = os.fsdecode(os.fsencode(runs) + b"/caf\xe9.arrow")
    for path, value in ((latin, 1.0), (runs / "plain.arrow", 2.0)):
        with lossfmt.LossWriter(path) as w:
            w.add(0, value)
    table = dataset(runs).to_table().sort_by("value")
    assert table.column("value").to_pylist() == [1.0, 2.0]
    assert table.column("run").to_pylist() == [lossfmt.run_info(latin)["run"], "plain"]
    frame = lossfmt.scan_polars(runs).collect().sort("value")
    assert frame["value"].to_list() == [1.0, 2.0]


def test_runs_sharing_a_name_in_directories_whose_names_are_not_utf8_are_told_apart(tmp_path):
    """Runs sharing a name are labelled by a path suffix: one of Latin-1 bytes made read, dataset,
    scan_polars, hparams and export fail with a raw UnicodeEncodeError."""
    root = os.fsencode(tmp_path)
    for directory, value in ((b"seed1", 1.0), (b"s\xe9ed2", 2.0)):
        with lossfmt.LossWriter(os.fsdecode(root + b"/" + directory + b"/run.arrow")) as w:
            w.add(0, value)
    source = str(tmp_path / "*" / "run.arrow")
    expected = {"run (seed1/run)": 1.0, "run (s\ufffded2/run)": 2.0}
    table = lossfmt.read(source)
    assert dict(zip(table["run"].to_pylist(), table["value"].to_pylist(), strict=True)) == expected
    scanned = dataset(source).to_table()
    assert dict(zip(scanned["run"].to_pylist(), scanned["value"].to_pylist(), strict=True)) == expected
    assert sorted(lossfmt.scan_polars(source).collect()["run"].to_list()) == sorted(expected)
    assert sorted(lossfmt.hparams(source)["run"].to_pylist()) == sorted(expected)
    lossfmt.export_parquet(source, tmp_path / "out")


def test_mean_across_refuses_counts_whose_sum_would_wrap_around():
    big = 2**62
    table = pa.table(
        {
            "rank": [0, 1, 0, 1],
            "tag": ["loss"] * 4,
            "step": [0, 0, 1, 1],
            "value": [1.0, 3.0, 1.0, 3.0],
            "count": [big, big, 1, big],
            "epoch": [None] * 4,
            "wall_time": pa.array([0] * 4, pa.timestamp("us", tz="UTC")),
        }
    )
    with pytest.raises(ValueError, match="sum past the largest int64"):
        mean_across(table)  # step 0's counts sum to 2**63
    fits = mean_across(table.slice(2))
    assert fits["count"].to_pylist() == [big + 1]


def test_copying_closed_runs_elsewhere_keeps_them_readable_by_plain_pyarrow(sweep, tmp_path):
    root, _ = sweep
    shutil.copy(root / "runs" / "sweep-001.arrow", tmp_path / "copy.arrow")
    table = ds.dataset(tmp_path / "copy.arrow", format="arrow").to_table()
    assert table.num_rows == 50


def test_recipe_notebook_live_display_redraws_while_training_runs(tmp_path, monkeypatch):
    pytest.importorskip("lossview")
    from matplotlib.figure import Figure

    shown: list[Figure] = []

    class Handle:
        def update(self, figure: Figure) -> None:
            shown.append(figure)

    def display(figure: Figure, display_id: bool = False) -> Handle:
        shown.append(figure)
        return Handle()

    # IPython is not a test dependency: the recipe only needs display(..., display_id=True).update(...).
    ipython_display = types.ModuleType("IPython.display")
    ipython_display.display = display
    ipython = types.ModuleType("IPython")
    ipython.version_info = (9, 0)  # matplotlib looks at it when IPython is loaded
    monkeypatch.setitem(sys.modules, "IPython", ipython)
    monkeypatch.setitem(sys.modules, "IPython.display", ipython_display)
    (tmp_path / "runs").mkdir()
    namespace = run_recipe("notebook-live", tmp_path, monkeypatch)

    assert namespace["writer"].closed
    assert len(shown) >= 3
    assert all(isinstance(f, Figure) for f in shown)
    final = shown[-1].axes[0]
    assert max(len(line.get_xdata()) for line in final.get_lines()) == 150


def test_a_plain_arrow_file_with_the_lossfmt_columns_but_no_lossfmt_metadata_is_an_error(tmp_path):
    write_sweep(tmp_path / "runs", 2)
    # The same columns as the runs before it (their check is shared), but not a lossfmt file.
    plain = lossfmt.read(tmp_path / "runs" / "sweep-000.arrow").replace_schema_metadata(None)
    with pa.ipc.new_file(tmp_path / "runs" / "sweep-002.arrow", plain.schema) as writer:
        writer.write_table(plain)
    with pytest.raises(LossFormatError, match=r"sweep-002\.arrow: not a lossfmt file"):
        dataset(tmp_path / "runs")


def test_small_closed_files_are_read_once_and_scanned_from_their_bytes(tmp_path, monkeypatch):
    write_sweep(tmp_path / "runs", 3)
    expected = dataset(tmp_path / "runs").to_table().sort_by([("run", "ascending"), ("step", "ascending")])
    held = sum((tmp_path / "runs" / f"sweep-00{i}.arrow").stat().st_size for i in (0, 1))
    monkeypatch.setattr(DATASET_MODULE, "HOLD_TOTAL_BYTES", held)  # room for the first two of the three
    runs = dataset(tmp_path / "runs")
    for path in (tmp_path / "runs").iterdir():  # held files never go back to disk; the third one does
        path.rename(tmp_path / path.name)
    with pytest.raises(OSError, match=r"sweep-002\.arrow"):
        runs.to_table()
    for path in tmp_path.glob("*.arrow"):
        path.rename(tmp_path / "runs" / path.name)
    table = runs.to_table().sort_by([("run", "ascending"), ("step", "ascending")])
    assert table.equals(expected)
    assert [f.path for f in runs.get_fragments()][-1] == str(tmp_path / "runs" / "sweep-002.arrow")


def test_closed_files_larger_than_the_hold_limit_are_scanned_lazily_from_disk(tmp_path, monkeypatch):
    write_sweep(tmp_path / "runs", 2)
    monkeypatch.setattr(DATASET_MODULE, "HOLD_FILE_BYTES", 100)
    runs = dataset(tmp_path / "runs")
    files = sorted(str(p) for p in (tmp_path / "runs").iterdir())
    assert sorted(f.path for f in runs.get_fragments()) == files
    assert runs.count_rows(filter=pc.field("run") == "sweep-001") == 50


def _silently_damaged(tmp_path: Path) -> tuple[Path, list[float]]:
    """A closed run with one flipped bit that pyarrow reads as other numbers (found by trying offsets)."""
    path = tmp_path / "runs" / "damaged.arrow"
    with lossfmt.LossWriter(path) as w:
        for step in range(2000):
            w.add(step, step * 0.5)
    good = [step * 0.5 for step in range(2000)]
    data = path.read_bytes()
    for offset in range(len(data) // 3, len(data)):
        path.write_bytes(data[:offset] + bytes([data[offset] ^ 0x20]) + data[offset + 1 :])
        try:
            values = dataset(path, verify=False).to_table().column("value").to_pylist()
        except Exception:
            continue
        if values != good:
            return path, good
    raise AssertionError("no offset reads as other numbers")


def test_a_damaged_closed_file_is_an_error_in_dataset_and_scan_polars_not_other_losses(tmp_path):
    path, _ = _silently_damaged(tmp_path)
    with pytest.raises(LossFormatError, match=r"damaged\.arrow.*checksum"):
        lossfmt.read(path)
    with pytest.raises(LossFormatError, match=r"damaged\.arrow.*checksum"):
        dataset(path.parent)
    pytest.importorskip("polars")
    with pytest.raises(LossFormatError, match=r"damaged\.arrow.*checksum"):
        lossfmt.scan_polars(path.parent)
    with pytest.raises(TypeError, match="verify must be True or False"):
        dataset(path.parent, verify="no")  # type: ignore[arg-type]


def test_mean_across_runs_makes_steps_that_restart_each_epoch_run_wide(tmp_path):
    """Steps that restart each epoch mixed the epochs: every step was 5.5 over n=4 events. As --mean-runs
    draws them, each run's steps are run-wide (epoch 1 at steps 5-9); a table already so transformed (as
    lossfmt.transforms gives it) comes out the same."""
    for seed in (0, 1):
        with lossfmt.LossWriter(tmp_path / f"s{seed}.arrow") as w:
            for epoch in range(2):
                for step in range(5):
                    w.add(step, 10.0 * epoch + seed, epoch=epoch)
    events = lossfmt.read(tmp_path / "*.arrow")
    per_step = mean_across(events, over="run")
    assert per_step["step"].to_pylist() == list(range(10))
    assert per_step["value"].to_pylist() == [0.5] * 5 + [10.5] * 5
    assert per_step["n"].to_pylist() == [2] * 10
    assert per_step["epoch"].to_pylist() == [0] * 5 + [1] * 5
    transformed = transforms.drop_rewound(transforms.run_wide_steps(events) or events)
    assert mean_across(transformed, over="run").equals(per_step)


def test_mean_across_runs_drops_the_events_a_resume_orphaned(tmp_path):
    """A resumed seed's orphaned events were members of the mean: steps 5-9 of two runs read 3.0 (max 5.0,
    n 3). They are dropped, as --mean-runs and TensorBoard drop them."""
    with lossfmt.LossWriter(tmp_path / "a.arrow") as w:
        for step in range(10):
            w.add(step, 1.0)
    with lossfmt.LossWriter(tmp_path / "b.arrow") as w:
        for step in range(10):
            w.add(step, 5.0)
    with lossfmt.LossWriter(tmp_path / "b.arrow") as w:  # resumed from its step 5 checkpoint
        for step in range(5, 10):
            w.add(step, 3.0)
    per_step = mean_across(lossfmt.read(tmp_path / "*.arrow"), over="run")
    assert per_step["value"].to_pylist() == [3.0] * 5 + [2.0] * 5
    assert per_step["max"].to_pylist() == [5.0] * 5 + [3.0] * 5
    assert per_step["n"].to_pylist() == [2] * 10


def test_mean_across_counts_members_not_events_at_a_step(tmp_path):
    """Two events of one step (micro-batches) were two members: n was 4 for two runs, min/max those of the
    micro-batches. Each member's step is its events' mean (per item with normalize="per-item")."""
    for name, offset in (("a", 0.0), ("b", 2.0)):
        with lossfmt.LossWriter(tmp_path / f"{name}.arrow") as w:
            for step in range(3):
                w.add(step, 1.0 + offset, count=48)
                w.add(step, 9.0 + offset, count=16)
    events = lossfmt.read(tmp_path / "*.arrow")
    per_step = mean_across(events, over="run")
    assert per_step["n"].to_pylist() == [2] * 3
    assert per_step["value"].to_pylist() == [6.0] * 3
    assert per_step["min"].to_pylist() == [5.0] * 3 and per_step["max"].to_pylist() == [7.0] * 3
    assert per_step["count"].to_pylist() == [128] * 3
    per_item = mean_across(events, over="run", normalize="per-item")
    assert per_item["value"].to_pylist() == [4.0] * 3  # (48 * 1 + 16 * 9) / 64 = 3, and 5 for b
    with pytest.raises(ValueError, match="bad normalize"):
        mean_across(events, over="run", normalize="per-batch")
    with lossfmt.LossWriter(tmp_path / "summed" / "a.arrow") as w:  # one event per step, a sum of 16
        w.add(0, 32.0, count=16, reduction="sum")
    summed = mean_across(lossfmt.read(tmp_path / "summed"), over="run", normalize="per-item")
    assert summed["value"].to_pylist() == [2.0]


def test_mean_across_runs_of_rank_files_takes_each_run_once_per_step(tmp_path):
    """Averaging the runs of read_ranks' table took every rank's event as a member; and each rank file is
    its own file for the rewind rule (rank 1 following rank 0 is no rewind)."""
    for run, base in (("x", 0.0), ("y", 10.0)):
        for rank in (0, 1):
            with lossfmt.LossWriter(tmp_path / f"{run}.rank{rank}.arrow", run=run, meta={"rank": rank}) as w:
                for step in range(3):
                    w.add(step, base + 2.0 * rank)
    events = read_ranks(tmp_path / "*.arrow")
    per_step = mean_across(events, over="run")
    assert per_step["value"].to_pylist() == [6.0] * 3  # x: 1, y: 11
    assert per_step["n"].to_pylist() == [2] * 3
    per_rank = mean_across(events, over="rank")
    assert per_rank["run"].to_pylist() == ["x"] * 3 + ["y"] * 3
    assert per_rank["value"].to_pylist() == [1.0] * 3 + [11.0] * 3


def test_mean_across_ranks_refuses_rank_files_without_a_rank(tmp_path):
    """Two rank files of run "exp" without meta["rank"] were taken for one rank whose steps restart: the
    second file's events dropped the first's as rewound, and the 'mean' was rank 1 alone (n=1)."""
    for r in (0, 1):
        with lossfmt.LossWriter(tmp_path / f"rank{r}.arrow", run="exp") as w:
            for s in range(3):
                w.add(s, 10.0 * r + s)
    table = read_ranks(tmp_path / "rank*.arrow")
    with pytest.raises(ValueError, match=r"6 events have no rank .*meta=\{'rank': r\}"):
        mean_across(table, over="rank")
    for r in (0, 1):  # written with their ranks, they average
        with lossfmt.LossWriter(tmp_path / "ranked" / f"rank{r}.arrow", run="exp", meta={"rank": r}) as w:
            for s in range(3):
                w.add(s, 10.0 * r + s)
    means = mean_across(read_ranks(tmp_path / "ranked" / "rank*.arrow"), over="rank")
    assert means["value"].to_pylist() == [5.0, 6.0, 7.0] and means["n"].to_pylist() == [2, 2, 2]
