"""Bugs a user attack found in `lossview`: exports that destroy inputs, tracebacks for user errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import lossfmt
from lossfmt import LossWriter
from lossview import cli

ENV_PY = [sys.executable, "-m", "lossview"]


def write(path: Path, n: int = 50, *, epochs: bool = False, value: float | None = None) -> Path:
    with LossWriter(path, meta={"lr": 0.1}) as w:
        for step in range(n):
            y = 1.0 / (step + 1) if value is None else value
            if epochs:
                w.add(step, y, "loss", epoch=step // 10)
            else:
                w.add(step, y, "loss")
    return path


def events(path: Path) -> list[float]:
    return lossfmt.read(path).column("value").to_pylist()


def one_error(capsys: pytest.CaptureFixture[str]) -> str:
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("lossview: error: "), err
    return err


@pytest.fixture
def dl(tmp_path: Path) -> Path:
    for i, name in enumerate("abc"):
        write(tmp_path / f"{name}.arrow", 20 + i)
    return tmp_path


def test_export_refuses_an_unquoted_glob_that_makes_the_last_run_its_output(dl, capsys):
    before = events(dl / "c.arrow")
    argv = ["export", *sorted(str(p) for p in dl.glob("*.arrow"))]  # what the shell makes of dl/*.arrow
    assert cli.main(argv) == 2
    assert "c.arrow" in one_error(capsys)
    assert events(dl / "c.arrow") == before
    assert cli.main([*argv, "--overwrite"]) == 2  # --overwrite never replaces a run
    one_error(capsys)
    assert events(dl / "c.arrow") == before


def test_export_refuses_its_own_input_as_output(dl, capsys):
    a = str(dl / "a.arrow")
    before = (dl / "a.arrow").read_bytes()
    for extra in ([], ["--overwrite"]):
        assert cli.main(["export", a, a, *extra]) == 2
        assert "input" in one_error(capsys)
    link = dl / "same.arrow"
    link.symlink_to(dl / "a.arrow")
    assert cli.main(["export", str(link), str(dl / "a.arrow"), "--overwrite"]) == 2  # same file, other name
    one_error(capsys)
    assert (dl / "a.arrow").read_bytes() == before


def test_export_keeps_an_existing_file_unless_overwrite(dl, capsys):
    out = dl / "out.csv"
    out.write_text("mine\n")
    assert cli.main(["export", str(dl / "a.arrow"), str(out)]) == 1
    assert "--overwrite" in one_error(capsys)
    assert out.read_text() == "mine\n"
    assert cli.main(["export", str(dl / "a.arrow"), str(out), "--overwrite"]) == 0
    assert out.read_text().startswith('"step"')


def test_export_refuses_arrow_output_and_says_feather(dl, capsys):
    assert cli.main(["export", str(dl / "a.arrow"), str(dl / "new.arrow")]) == 2
    assert "feather" in one_error(capsys)
    assert not (dl / "new.arrow").exists()


def test_export_parquet_format_refuses_a_run_as_output(dl, capsys):
    before = events(dl / "b.arrow")
    assert cli.main(["export", "--format", "parquet", str(dl / "a.arrow"), str(dl / "b.arrow")]) == 2
    one_error(capsys)
    assert events(dl / "b.arrow") == before


def test_per_epoch_without_epochs_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    run = str(write(tmp_path / "r.arrow"))
    png = str(tmp_path / "o.png")
    for argv in (
        [run, "--per", "epoch", "-o", png],
        [run, "--per", "epoch", "--x", "epoch", "-o", png],
        ["export", run, str(tmp_path / "o.csv"), "--per", "epoch"],
    ):
        assert cli.main(argv) == 1, argv
        err = one_error(capsys)
        assert "r.arrow" in err and "epoch" in err
    assert not (tmp_path / "o.png").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["--dpi", "0"],
        ["--dpi", "-1"],
        ["--dpi", "100000"],
        ["--size", "0", "0"],
        ["--size", "-3", "2"],
        ["--size", "1e9", "1e9"],
        ["--size", "nan", "2"],
        ["--size", "150", "150"],
    ],
)
def test_bad_dpi_and_size_are_usage_errors(tmp_path, capsys, args):
    run = str(write(tmp_path / "r.arrow", 5))
    assert cli.main([run, *args, "-o", str(tmp_path / "o.png")]) == 2
    _, err = capsys.readouterr()
    assert "Traceback" not in err and ("--dpi" in err or "--size" in err), err
    assert not (tmp_path / "o.png").exists()


def test_import_tb_of_several_runs_into_one_file_is_one_line(tmp_path):
    tb = pytest.importorskip("torch.utils.tensorboard")
    for name in ("r1", "r2"):
        with tb.SummaryWriter(str(tmp_path / "logs" / name)) as w:
            w.add_scalar("loss", 1.0, 0)
    result = subprocess.run(
        [*ENV_PY, "import-tb", str(tmp_path / "logs"), str(tmp_path / "one.arrow")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert "directory" in result.stderr and not (tmp_path / "one.arrow").exists()
