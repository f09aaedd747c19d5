"""TensorBoard migration on event files written by the real torch.utils.tensorboard.SummaryWriter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

pytest.importorskip("tensorboard")
torch_tb = pytest.importorskip("torch.utils.tensorboard")

import lossfmt  # noqa: E402
from lossfmt.integrations.tensorboard import NotAnImportError, TooManyRunsError, import_tb  # noqa: E402
from lossfmt.schema import run_info  # noqa: E402

T0 = 1_700_000_000.0


def write_run(logdir: Path, n: int = 100, *, tag: str = "Loss/train", start: int = 0) -> None:
    """n scalars of `tag` (value 1/(step+1), wall time T0 + step ms) through the real SummaryWriter."""
    with torch_tb.SummaryWriter(str(logdir)) as writer:
        for step in range(start, start + n):
            writer.add_scalar(tag, 1.0 / (step + 1), step, walltime=T0 + step / 1000)


def test_every_point_is_kept_with_its_step_tag_and_wall_time(tmp_path):
    logdir = tmp_path / "tb" / "exp1"
    # More points than TensorBoard's EventAccumulator keeps per tag by default (10,000).
    n = 12_000
    with torch_tb.SummaryWriter(str(logdir)) as writer:
        for step in range(n):
            writer.add_scalar("Loss/train", 1.0 / (step + 1), step, walltime=T0 + step / 1000)
            if step % 100 == 0:
                writer.add_scalar("Loss/val", 2.0 / (step + 1), step, walltime=T0 + step / 1000)
        writer.add_scalar("tf2_style", 3.5, 7, walltime=T0, new_style=True)
        writer.add_histogram("weights", np.arange(10.0), 0)
        writer.add_text("note", "not a scalar", 0)

    out = tmp_path / "exp1.arrow"
    assert import_tb(logdir, out) == n + n // 100 + 1

    table = lossfmt.read(out)
    assert run_info(table.schema)["run"] == "exp1"
    train = table.filter(pa.compute.equal(table["tag"].cast(pa.string()), "Loss/train"))
    steps = np.arange(n)
    assert train["step"].to_pylist() == steps.tolist()
    # TensorBoard stores float32: the values are exactly what it stored, widened to float64.
    np.testing.assert_array_equal(train["value"].to_numpy(), (1.0 / (steps + 1)).astype(np.float32))
    micros = train["wall_time"].cast(pa.int64()).to_numpy()
    np.testing.assert_array_equal(micros, np.round((T0 + steps / 1000) * 1e6).astype(np.int64))
    assert set(train["count"].to_pylist()) == {1}
    assert set(train["reduction"].cast(pa.string()).to_pylist()) == {"mean"}
    assert train["epoch"].null_count == n
    tags = table["tag"].cast(pa.string()).to_pylist()
    assert tags.count("Loss/val") == n // 100
    tf2 = table.filter(pa.compute.equal(table["tag"].cast(pa.string()), "tf2_style"))
    assert tf2["value"].to_pylist() == [3.5]
    assert not {"weights", "note"} & set(tags)


def test_output_is_a_closed_arrow_file_other_tools_read(tmp_path):
    write_run(tmp_path / "tb", n=50)
    out = tmp_path / "run.arrow"
    import_tb(tmp_path / "tb", out)
    with pa.ipc.open_file(out) as reader:
        assert reader.read_all().num_rows == 50


def test_imported_files_are_written_by_the_writers_closed_file_code_with_checksums(tmp_path):
    """One writer of closed files: import_tb's output carries the per-batch checksums (spec §1.6), so a
    flipped byte in it is an error, not a different loss."""
    write_run(tmp_path / "tb", n=50)
    out = tmp_path / "run.arrow"
    import_tb(tmp_path / "tb", out)
    assert run_info(lossfmt.read(out).schema).get("checksum") == "crc32c"
    data = bytearray(out.read_bytes())
    data[len(data) // 2] ^= 0x01
    out.write_bytes(bytes(data))
    with pytest.raises(lossfmt.LossFormatError):
        lossfmt.read(out)


def test_restarted_run_concatenates_its_event_files_in_time_order(tmp_path):
    logdir = tmp_path / "tb" / "exp"
    write_run(logdir, n=30)
    write_run(logdir, n=20, start=30)
    assert len(list(logdir.iterdir())) == 2
    import_tb(logdir, tmp_path / "exp.arrow")
    assert lossfmt.read(tmp_path / "exp.arrow")["step"].to_pylist() == list(range(50))


def test_a_directory_of_runs_gives_one_file_per_run(tmp_path):
    tb = tmp_path / "tb"
    write_run(tb / "lr0.1", n=10)
    write_run(tb / "lr0.01", n=20)
    with torch_tb.SummaryWriter(str(tb / "grouped")) as writer:
        writer.add_scalars("loss", {"train": 1.0, "val": 2.0}, 3)
    out = tmp_path / "runs"
    assert import_tb(tb, out) == 32
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.arrow"))
    assert files == ["grouped/loss_train.arrow", "grouped/loss_val.arrow", "lr0.01.arrow", "lr0.1.arrow"]
    both = lossfmt.read(out)
    assert sorted(set(both["run"].to_pylist())) == ["lr0.01", "lr0.1"]
    assert run_info(lossfmt.read(out / "grouped" / "loss_val.arrow").schema)["run"] == "grouped/loss_val"


def test_nested_runs_that_log_one_tag_named_like_their_directory_stay_runs(tmp_path):
    """import-tb once folded subdirectories logging one tag `T` under a directory named `T_x` into their
    parent's tags `T/x` (what add_scalars writes): a sweep `lr_0.1`, `lr_0.01` logging `lr` lost its runs.
    Which subdirectory add_scalars wrote cannot be told from the files: every run stays a run."""
    with torch_tb.SummaryWriter(str(tmp_path / "tb" / "sweep")) as writer:
        writer.add_scalar("loss", 1.0, 0)
    for lr in ("0.1", "0.01"):
        write_run(tmp_path / "tb" / "sweep" / f"lr_{lr}", n=3, tag="lr")
    out = tmp_path / "runs"
    import_tb(tmp_path / "tb" / "sweep", out)
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.arrow"))
    assert files == ["lr_0.01.arrow", "lr_0.1.arrow", "sweep.arrow"]
    assert lossfmt.read(out / "sweep.arrow").column("tag").to_pylist() == ["loss"]


def test_one_output_file_for_several_runs_is_a_lossfmt_error_listing_them(tmp_path):
    for name in ("a", "b", "c"):
        write_run(tmp_path / "tb" / name, n=5)
    with pytest.raises(TooManyRunsError) as caught:
        import_tb(tmp_path / "tb", tmp_path / "out.arrow")
    assert isinstance(caught.value, lossfmt.LossfmtError) and isinstance(caught.value, ValueError)
    assert str(caught.value).endswith(
        "holds 3 TensorBoard runs (a, b, c); give a directory as OUT to write one .arrow file per run"
    )
    assert not (tmp_path / "out.arrow").exists()


def test_a_refusal_for_many_runs_says_how_many_it_does_not_list(tmp_path):
    for k in range(7):
        write_run(tmp_path / "tb" / f"r{k}", n=2)
    with pytest.raises(TooManyRunsError, match=r"7 TensorBoard runs \(r0, r1, r2, r3, r4 and 2 more\);"):
        import_tb(tmp_path / "tb", tmp_path / "out.arrow")
    assert not (tmp_path / "out.arrow").exists()


def test_existing_output_is_kept_unless_overwrite(tmp_path):
    write_run(tmp_path / "tb", n=5)
    out = tmp_path / "run.arrow"
    import_tb(tmp_path / "tb", out)
    with pytest.raises(FileExistsError, match=r"run\.arrow"):
        import_tb(tmp_path / "tb", out)
    write_run(tmp_path / "tb", n=3, start=5)  # the run went on: importing it again replaces the import
    assert import_tb(tmp_path / "tb", out, overwrite=True) == 8
    assert lossfmt.read(out).num_rows == 8


def training_run(path: Path, n: int = 1000) -> bytes:
    """A run written by LossWriter itself (what a training script leaves), returning its bytes."""
    with lossfmt.LossWriter(path, meta={"lr": 0.1}) as writer:
        for step in range(n):
            writer.add(step, 1.0)
    return path.read_bytes()


def test_overwrite_never_replaces_a_training_run_or_a_foreign_file(tmp_path):
    """overwrite=True replaced any existing file: a 1000-step LossWriter run named as OUT became the
    10-event import. It replaces only what an import wrote; anything else is refused and kept."""
    write_run(tmp_path / "tb", n=10)
    run = tmp_path / "lr0.001_s0.arrow"
    kept = training_run(run)
    foreign = tmp_path / "notes.arrow"
    foreign.write_bytes(b"precious")
    for out, said in [(run, "a lossfmt run that no TensorBoard import wrote"), (foreign, "not a readable")]:
        with pytest.raises(NotAnImportError, match=said) as caught:
            import_tb(tmp_path / "tb", out, overwrite=True)
        assert isinstance(caught.value, FileExistsError) and isinstance(caught.value, lossfmt.LossfmtError)
        assert str(caught.value).startswith(f"{out}: ")
    assert run.read_bytes() == kept and foreign.read_bytes() == b"precious"
    assert lossfmt.read(run).num_rows == 1000


def test_overwrite_never_replaces_an_import_that_training_resumed(tmp_path):
    """An imported run resumed with LossWriter (training continued in it) keeps the import's header, so
    overwrite=True replaced its 1000 new steps with the 5 imported ones."""
    write_run(tmp_path / "tb", n=5)
    out = tmp_path / "one.arrow"
    assert import_tb(tmp_path / "tb", out) == 5
    assert import_tb(tmp_path / "tb", out, overwrite=True) == 5  # an import alone is replaced
    with lossfmt.LossWriter(out) as w:
        for step in range(5, 1005):
            w.add(step, 0.5, tag="Loss/train")
    kept = out.read_bytes()
    with pytest.raises(NotAnImportError, match="holds 1,005 events where its import wrote 5"):
        import_tb(tmp_path / "tb", out, overwrite=True)
    assert out.read_bytes() == kept and lossfmt.read(out).num_rows == 1005


def test_a_directory_import_over_a_training_run_writes_nothing(tmp_path):
    """`lossview import-tb tb runs --overwrite` replaced runs/exp2.arrow, a LossWriter run, by the import of
    tb/exp2: every target is checked first, and one that is no earlier import refuses the whole import (the
    run before it in the order of writing, exp1, is not written either)."""
    for name in ("exp1", "exp2"):
        write_run(tmp_path / "tb" / name, n=10)
    runs = tmp_path / "runs"
    runs.mkdir()
    kept = training_run(runs / "exp2.arrow")
    done = subprocess.run(
        [sys.executable, "-m", "lossview", "import-tb", str(tmp_path / "tb"), str(runs), "--overwrite"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert f"{runs / 'exp2.arrow'}: a lossfmt run that no TensorBoard import wrote" in done.stderr
    assert (runs / "exp2.arrow").read_bytes() == kept
    assert not (runs / "exp1.arrow").exists()


def test_an_out_that_is_neither_a_dot_arrow_file_nor_a_directory_is_an_error(tmp_path, capsys):
    """import-tb took every OUT not ending in .arrow for a directory: a typo `out.arow` (or `x.csv`) made a
    directory out.arow/exp1.arrow and reported success."""
    from lossview import cli

    write_run(tmp_path / "tb" / "exp1", n=10)
    (tmp_path / "notes.txt").write_text("kept\n")
    for name in ("out.arow", "x.csv", "notes.txt"):
        out = tmp_path / name
        assert cli.main(["import-tb", str(tmp_path / "tb"), str(out)]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"{out}: OUT must be a .arrow file or a directory" in err, err
        with pytest.raises(ValueError, match=r"OUT must be a \.arrow file or a directory"):
            import_tb(tmp_path / "tb", out)
    assert not (tmp_path / "out.arow").exists() and not (tmp_path / "x.csv").exists()
    assert (tmp_path / "notes.txt").read_text() == "kept\n"
    # A directory: an existing one whatever its name, or a new one named with a trailing slash.
    (tmp_path / "sweep.v2").mkdir()
    assert import_tb(tmp_path / "tb", tmp_path / "sweep.v2") == 10
    assert import_tb(tmp_path / "tb", f"{tmp_path / 'runs.v3'}/") == 10
    assert (tmp_path / "sweep.v2" / "exp1.arrow").is_file() and (
        tmp_path / "runs.v3" / "exp1.arrow"
    ).is_file()


def test_import_tb_names_the_file_it_wrote(tmp_path, capsys):
    """It said `runs: 10 events imported` of a run written to runs/exp1.arrow; for several files: how many."""
    from lossview import cli

    write_run(tmp_path / "tb" / "exp1", n=10)
    assert cli.main(["import-tb", str(tmp_path / "tb"), str(tmp_path / "runs")]) == 0
    assert (
        capsys.readouterr().err
        == f"{tmp_path / 'runs' / 'exp1.arrow'}: 10 events imported from {tmp_path / 'tb'}\n"
    )
    write_run(tmp_path / "tb" / "exp2", n=5)
    assert cli.main(["import-tb", str(tmp_path / "tb"), str(tmp_path / "more")]) == 0
    assert (
        capsys.readouterr().err
        == f"{tmp_path / 'more'}: 2 files, 15 events imported from {tmp_path / 'tb'}\n"
    )


def test_a_directory_without_event_files_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no TensorBoard event files"):
        import_tb(tmp_path, tmp_path / "out")


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_without_tensorboard_the_import_error_names_the_extra():
    # sys.modules[name] = None makes `import name` fail, as if TensorBoard were not installed.
    result = run_python(
        "import sys\n"
        "sys.modules['tensorboard'] = None\n"
        "try:\n"
        "    import lossfmt.integrations.tensorboard\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    assert "pip install 'lossfmt[tensorboard]'" in result.stdout, result.stderr


def test_importing_lossfmt_loads_no_integration():
    result = run_python(
        "import sys, lossfmt\n"
        "print(sorted(m for m in sys.modules if m.startswith(('lossfmt.integrations', 'tensorboard'))))\n"
    )
    assert result.stdout.strip() == "[]", result.stderr


def test_add_hparams_becomes_the_run_metadata_not_a_run_of_its_own(tmp_path):
    logdir = tmp_path / "tb" / "exp1"
    with torch_tb.SummaryWriter(str(logdir)) as writer:
        for step in range(10):
            writer.add_scalar("loss", 1.0 / (step + 1), step)
        writer.add_hparams({"lr": 0.1, "bs": 32, "opt": "adam", "amp": True}, {"hparam/accuracy": 0.9})
    assert len([d for d in logdir.iterdir() if d.is_dir()]) == 1  # what add_hparams does: a subdirectory
    out = tmp_path / "runs"
    assert import_tb(tmp_path / "tb", out) == 10
    assert [p.relative_to(out).as_posix() for p in out.rglob("*.arrow")] == ["exp1.arrow"]
    table = lossfmt.read(out / "exp1.arrow")
    meta = run_info(table.schema)["meta"]
    assert {k: meta[k] for k in ("lr", "bs", "opt", "amp")} == {
        "lr": 0.1,
        "bs": 32,
        "opt": "adam",
        "amp": True,
    }
    assert meta["hparam_metrics"] == {"hparam/accuracy": pytest.approx(0.9)}
    assert set(table["tag"].cast(pa.string()).to_pylist()) == {"loss"}
    # One run again, so a single output file is accepted.
    assert import_tb(logdir, tmp_path / "exp1.arrow") == 10


def test_tensorboardx_add_hparams_is_carried_too(tmp_path):
    tensorboardx = pytest.importorskip("tensorboardX")
    logdir = tmp_path / "tb" / "run"
    with tensorboardx.SummaryWriter(str(logdir)) as writer:
        writer.add_scalar("loss", 2.0, 0)
        writer.add_scalar("loss", 1.0, 1)
        writer.add_hparams({"lr": 0.01, "layers": 4}, {"val_loss": 0.5})
    import_tb(tmp_path / "tb", tmp_path / "run.arrow")
    table = lossfmt.read(tmp_path / "run.arrow")
    meta = run_info(table.schema)["meta"]
    assert (meta["lr"], meta["layers"], meta["hparam_metrics"]) == (0.01, 4, {"val_loss": 0.5})
    assert table["value"].to_pylist() == [2.0, 1.0]


def test_a_sweep_of_add_hparams_calls_alone_keeps_one_run_per_trial_with_its_hparams(tmp_path):
    with torch_tb.SummaryWriter(str(tmp_path / "tb" / "sweep")) as writer:
        for lr in (0.1, 0.01):
            writer.add_hparams({"lr": lr}, {"hparam/loss": lr * 10}, run_name=f"lr{lr}")
    out = tmp_path / "runs"
    import_tb(tmp_path / "tb", out)
    files = sorted(out.rglob("*.arrow"))
    assert [p.relative_to(out).as_posix() for p in files] == ["sweep/lr0.01.arrow", "sweep/lr0.1.arrow"]
    lrs = [run_info(lossfmt.read(p).schema)["meta"]["lr"] for p in files]
    assert lrs == [0.01, 0.1]


def test_import_tb_of_a_file_that_is_no_event_file_or_of_no_scalars_is_an_error_line(tmp_path):
    text = tmp_path / "notes.arrow"
    text.write_text("not an event file\n")
    scalarless = tmp_path / "tb"
    with torch_tb.SummaryWriter(str(scalarless)) as writer:
        writer.add_text("note", "no scalars here", 0)
    for source, said in [(text, "not a TensorBoard event file"), (scalarless, "hold no scalars")]:
        out = tmp_path / "out.arrow"
        done = subprocess.run(
            [sys.executable, "-m", "lossview", "import-tb", str(source), str(out)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 1 and done.stderr.count("\n") == 1 and said in done.stderr, done.stderr
        assert not out.exists()


def test_import_tb_says_how_to_view_runs_it_wrote_into_subdirectories(tmp_path, capsys):
    """add_scalars (and nested runs) become files below OUT, which `lossview OUT/` does not read: the
    command says so, with the glob that reads them all."""
    from lossview import cli

    with torch_tb.SummaryWriter(str(tmp_path / "tb" / "exp")) as writer:
        writer.add_scalars("loss", {"train": 1.0, "val": 2.0}, 0)
    out = tmp_path / "runs"
    assert cli.main(["import-tb", str(tmp_path / "tb"), str(out)]) == 0
    assert f"view them all with lossview '{out}/**/*.arrow'" in capsys.readouterr().err
    assert (
        cli.main(["import-tb", str(tmp_path / "tb"), f"{tmp_path / 'slash'}/"]) == 0
    )  # (it said 'slash//**')
    assert f"view them all with lossview '{tmp_path / 'slash'}/**/*.arrow'" in capsys.readouterr().err
    write_run(tmp_path / "flat" / "a", n=3)
    write_run(tmp_path / "flat" / "b", n=3)
    assert cli.main(["import-tb", str(tmp_path / "flat"), str(tmp_path / "flat_out")]) == 0
    assert "subdirectories" not in capsys.readouterr().err


def test_an_output_in_a_directory_that_does_not_exist_is_refused_not_created(tmp_path, capsys):
    """import-tb created every missing directory of OUT (a typo made a tree; export refuses the same)."""
    from lossview import cli

    write_run(tmp_path / "tb", n=3)
    missing = tmp_path / "nope" / "deeper" / "run.arrow"
    assert cli.main(["import-tb", str(tmp_path / "tb"), str(missing)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope/deeper" in err and "no such directory" in err.lower(), err
    assert not (tmp_path / "nope").exists()
    assert cli.main(["import-tb", str(tmp_path / "tb"), str(tmp_path / "out")]) == 0  # OUT itself is made
