"""Regression tests for issues 10 and 11: lossview agrees with lossfmt, and its commands fail alike."""

from __future__ import annotations

import ast
import contextlib
import json
import math
import os
import select
import subprocess
import sys
from pathlib import Path

import pytest

import lossfmt
from lossfmt import LossWriter
from lossview import cli

ENV = {**os.environ, "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"}
VIEWER = Path(__file__).resolve().parents[2] / "viewer"


def write(
    path: Path, n: int = 20, *, tags: tuple[str, ...] = ("loss",), run: str | None = None, **meta
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with LossWriter(path, run=run, meta=meta or None) as w:
        for step in range(n):
            for i, tag in enumerate(tags):
                w.add(step, 1.0 / (step + 1) + i, tag)
    return path


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    status = cli.main(args)
    out, err = capsys.readouterr()
    return status, out, err


# ------------------------------------------------------------------------------------- one owner (10)


def test_two_files_named_seed_in_different_directories_are_two_runs_in_summary(tmp_path, capsys):
    write(tmp_path / "a" / "seed.arrow", 10)
    write(tmp_path / "b" / "seed.arrow", 10)
    files = [str(tmp_path / "a" / "seed.arrow"), str(tmp_path / "b" / "seed.arrow")]
    status, out, _ = run_cli(["summary", *files, "--json"], capsys)
    rows = json.loads(out)
    assert status == 0 and [r["events"] for r in rows] == [10, 10]
    assert len({r["run"] for r in rows}) == 2
    want = lossfmt.read_pandas(files)["run"].unique().tolist()  # lossview labels runs as lossfmt does
    assert sorted(r["run"] for r in rows) == sorted(want)


def test_a_tag_with_glob_characters_is_found_by_its_name(tmp_path, capsys):
    path = write(tmp_path / "run.arrow", 10, tags=("a[1]", "b"))
    status, out, _ = run_cli(["summary", str(path), "--tag", "a[1]", "--json"], capsys)
    assert status == 0 and [r["tag"] for r in json.loads(out)] == ["a[1]"]
    png = tmp_path / "a.png"
    status, _, err = run_cli([str(path), "--tag", "a[1]", "-o", str(png)], capsys)
    assert status == 0 and png.exists(), err


def test_figure_with_one_tag_as_a_string_draws_that_tag(tmp_path):
    import lossview

    path = write(tmp_path / "run.arrow", 10, tags=("loss", "val"))
    fig = lossview.figure(path, tags="loss", smooth="none")
    (ax,) = fig.axes
    drawn = [line for line in ax.lines if len(line.get_ydata())]
    assert len(drawn) == 1 and ax.get_ylabel() == "loss"
    assert list(drawn[0].get_ydata()) == [1.0 / (s + 1) for s in range(10)]


def _private_lossfmt_imports(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("lossfmt") and "._" in a.name]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lossfmt"):
            module = node.module or ""
            if "._" in module or module.startswith("lossfmt._"):
                found.append(module)
            found += [f"{module}.{a.name}" for a in node.names if a.name.startswith("_")]
        elif isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            base = node.value
            while isinstance(base, ast.Attribute):
                base = base.value
            if isinstance(base, ast.Name) and base.id == "lossfmt":
                found.append(ast.unparse(node))
    return found


def test_viewer_code_imports_no_private_lossfmt_name():
    offenders = {}
    for path in sorted(VIEWER.glob("*.py")):
        names = _private_lossfmt_imports(path.read_text())
        if names:
            offenders[path.name] = names
    assert offenders == {}


def test_the_private_import_check_catches_each_form():
    source = "\n".join(
        [
            "import lossfmt._arrow",
            "from lossfmt import _sources",
            "from lossfmt.reader import _expand",
            "lossfmt._x.y",
        ]
    )
    assert len(_private_lossfmt_imports(source)) == 4
    assert _private_lossfmt_imports("import lossfmt\nfrom lossfmt import transforms\nlossfmt.read") == []


# ------------------------------------------------------------------------------------------ errors (10)


def test_per_beyond_int64_is_a_usage_error(tmp_path, capsys):
    path = write(tmp_path / "run.arrow")
    status, _, err = run_cli([str(path), "--per", str(2**64), "-o", str(tmp_path / "a.png")], capsys)
    assert status == 2 and "Traceback" not in err and "--per" in err


def test_an_unexpected_exception_is_a_traceback_not_a_one_line_error(tmp_path):
    path = write(tmp_path / "run.arrow")
    code = (
        "import sys\nfrom lossview import summary, cli\n"
        "def boom(*a, **k): raise ZeroDivisionError('a bug')\n"
        "summary.summarize = boom\n"
        f"sys.exit(cli.main(['summary', {str(path)!r}]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=ENV)
    assert out.returncode == 1 and "Traceback" in out.stderr and "ZeroDivisionError: a bug" in out.stderr


# ------------------------------------------------------------------------------------- consistent (11)


def test_summary_with_no_matching_tag_fails_like_the_plot(tmp_path, capsys):
    path = write(tmp_path / "run.arrow")
    plot = run_cli([str(path), "--tag", "nosuch", "-o", str(tmp_path / "a.png")], capsys)
    summary = run_cli(["summary", str(path), "--tag", "nosuch"], capsys)
    assert plot[0] == summary[0] == 1
    # (the tags there are, to save a second command: a one-shot read said only what matched nothing)
    assert plot[2] == summary[2] == "lossview: error: no tag matches nosuch; the runs have loss\n"


def test_export_to_a_missing_directory_fails_like_plot_output(tmp_path, capsys):
    path = write(tmp_path / "run.arrow")
    missing = tmp_path / "nowhere"
    plot = run_cli([str(path), "-o", str(missing / "a.png")], capsys)
    export = run_cli(["export", str(path), str(missing / "a.csv")], capsys)
    assert plot[0] == export[0] == 1
    assert plot[2] == export[2] == f"lossview: error: {missing}: no such directory\n"


def test_web_port_out_of_range_is_a_usage_error(tmp_path, capsys):
    status, _, err = run_cli([str(write(tmp_path / "run.arrow")), "--web", "99999"], capsys)
    assert status == 2 and "65535" in err and "Traceback" not in err


def test_a_mistyped_subcommand_suggests_the_right_one(capsys):
    status, _, err = run_cli(["sumary", "x.arrow"], capsys)
    assert status == 2 and "did you mean 'summary'" in err and err.count("\n") == 1


def test_import_tb_over_an_existing_file_mentions_the_option(tmp_path, capsys):
    tensorboardX = pytest.importorskip("tensorboardX")
    pytest.importorskip("tensorboard")
    logdir = tmp_path / "tb"
    writer = tensorboardX.SummaryWriter(str(logdir))
    writer.add_scalar("loss", 1.0, 0)
    writer.close()
    out = tmp_path / "out.arrow"
    assert run_cli(["import-tb", str(logdir), str(out)], capsys)[0] == 0
    status, _, err = run_cli(["import-tb", str(logdir), str(out)], capsys)
    assert status == 1 and "--overwrite" in err and "overwrite=True" not in err and err.count("\n") == 1


def _follow(args: list[str], until: str, timeout: float = 60) -> tuple[subprocess.Popen[str], str]:
    """Start ``lossview ARGS --follow`` and read its stderr until a line contains ``until``."""
    proc = subprocess.Popen([sys.executable, "-m", "lossview", *args, "--follow"], env=ENV, text=True,
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)  # fmt: skip
    assert proc.stderr is not None
    ready, _, _ = select.select([proc.stderr], [], [], timeout)
    line = proc.stderr.readline() if ready else ""
    if until not in line:
        proc.kill()
        raise AssertionError(f"expected {until!r}, got {line!r}")
    return proc, line


def test_follow_a_missing_path_says_it_is_waiting_then_draws_it(tmp_path):
    path, png = tmp_path / "runs" / "x.arrow", tmp_path / "live.png"
    proc, line = _follow([str(path), "-o", str(png)], "waiting for")
    try:
        assert line == f"lossview: waiting for {path}\n" and not png.exists()
        write(path, 5)
        for _ in range(600):  # the viewer is another process: look for its output, at most a minute
            if png.exists():
                break
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.1)  # returns early only if the viewer died
        assert png.exists()
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0


def test_follow_with_no_matching_tag_says_so_instead_of_a_blank_image(tmp_path):
    path, png = write(tmp_path / "run.arrow", 5), tmp_path / "live.png"
    proc, line = _follow([str(path), "--tag", "nosuch", "-o", str(png)], "no tag matches")
    try:
        assert line == "lossview: no tag matches nosuch yet\n" and not png.exists()
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0


# ------------------------------------------------------------------------------------ hyperparameters


def test_summary_shows_each_runs_hyperparameters_as_columns_and_in_json(tmp_path, capsys):
    a = write(tmp_path / "a.arrow", 5, run="a", lr=0.1, batch=32)
    b = write(tmp_path / "b.arrow", 5, run="b", lr=0.01)
    status, out, _ = run_cli(["summary", str(a), str(b)], capsys)
    header, _, row_a, row_b = out.splitlines()
    assert status == 0 and header.split()[:4] == ["run", "tag", "batch", "lr"]
    assert row_a.split()[:4] == ["a", "loss", "32", "0.1"]
    assert row_b.split()[:4] == ["b", "loss", "-", "0.01"]
    rows = json.loads(run_cli(["summary", str(a), str(b), "--json"], capsys)[1])
    assert [r["hparams"] for r in rows] == [{"lr": 0.1, "batch": 32}, {"lr": 0.01}]


def test_label_names_and_colours_runs_by_a_hyperparameter(tmp_path):
    import lossview

    runs = [write(tmp_path / f"s{i}.arrow", 5, run=f"s{i}", lr=lr) for i, lr in enumerate((0.1, 0.1, 0.01))]
    fig = lossview.figure(runs, smooth="none", label="lr")
    (ax,) = fig.axes
    entries = zip(ax.get_legend().get_texts(), ax.get_legend().get_lines(), strict=True)
    legend = {text.get_text(): line.get_color() for text, line in entries}
    assert set(legend) == {"lr=0.1 (s0): loss", "lr=0.1 (s1): loss", "lr=0.01: loss"}
    assert legend["lr=0.1 (s0): loss"] == legend["lr=0.1 (s1): loss"] != legend["lr=0.01: loss"]


def test_hparam_values_survive_nan_free_json(tmp_path, capsys):
    path = write(tmp_path / "a.arrow", 3, run="a", note="x y")
    rows = json.loads(run_cli(["summary", str(path), "--json"], capsys)[1])
    assert rows[0]["hparams"] == {"note": "x y"} and not math.isnan(rows[0]["last"])
