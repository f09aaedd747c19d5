"""Bugs a user attack found in `lossview`: exports that destroy inputs, tracebacks for user errors."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import warnings
from pathlib import Path

import numpy as np
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from matplotlib.figure import Figure

import lossfmt
import lossview
from lossfmt import LossWriter
from lossview import cli, commands
from lossview import view as lv
from lossview.output import FileOutput

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


def test_export_into_a_directory_asks_for_a_file_name(dl, capsys):
    assert cli.main(["export", str(dl / "a.arrow"), str(dl), "--overwrite"]) == 2
    assert "is a directory" in one_error(capsys)


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


def test_per_epoch_over_a_sweep_draws_the_runs_with_epochs_and_names_the_one_without(tmp_path, capsys):
    with_epochs = str(write(tmp_path / "a.arrow", epochs=True))
    without = str(write(tmp_path / "b.arrow"))
    png, csv = tmp_path / "o.png", tmp_path / "o.csv"
    assert cli.main([with_epochs, without, "--per", "epoch", "-o", str(png)]) == 0
    err = capsys.readouterr().err
    assert png.exists() and "not drawn, logged without an epoch: b" in err and "Traceback" not in err
    assert cli.main(["export", with_epochs, without, str(csv), "--per", "epoch"]) == 0
    assert "logged without an epoch: b" in capsys.readouterr().err
    assert set(pacsv.read_csv(csv).column("run").to_pylist()) == {"a"}
    assert cli.main([without, without, "--per", "epoch", "-o", str(png)]) == 1  # none has one: an error
    with LossWriter(tmp_path / "empty.arrow"):
        pass
    empty = str(tmp_path / "empty.arrow")
    for argv in (
        [without, empty, "--per", "epoch", "-o", str(png)],
        ["export", without, empty, str(tmp_path / "e.csv"), "--per", "epoch"],
    ):
        assert cli.main(argv) == 1, argv  # nothing left to draw: not a blank picture
        assert "--per epoch: no event has an epoch" in capsys.readouterr().err


def test_the_parquet_export_refuses_options_that_select_or_change_rows(dl, capsys):
    out = dl / "pq"
    options = (["--tag", "loss"], ["--per", "epoch"], ["--smooth", "ema:0.5"], ["--normalize", "per-item"],
               ["--keep-rewound"])  # fmt: skip
    for option in options:
        assert cli.main(["export", "--format", "parquet", str(dl / "a.arrow"), str(out), *option]) == 2
        assert option[0] in one_error(capsys)
    assert not out.exists()


@pytest.mark.parametrize(
    "args",
    [
        ["--dpi", "0"],
        ["--dpi", "-1"],
        ["--dpi", "100000"],
        ["--dpi", "1"],  # accepted once: FreeType failed in savefig with a traceback (1 to 5 did)
        ["--dpi", "5"],
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


def test_the_smallest_dpi_accepted_renders(tmp_path, capsys):
    from lossview.options import MIN_DPI

    run = str(write(tmp_path / "r.arrow", 5))
    assert cli.main([run, "--dpi", str(MIN_DPI), "-o", str(tmp_path / "o.png")]) == 0, capsys.readouterr()
    assert (tmp_path / "o.png").read_bytes()[:4] == b"\x89PNG"


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


def test_label_without_such_hyperparameter_names_those_that_exist(dl, capsys, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    png = dl / "o.png"
    assert cli.main([str(dl / "a.arrow"), str(dl / "b.arrow"), "--label", "nosuch", "-o", str(png)]) == 2
    err = one_error(capsys)
    assert "nosuch" in err and "lr" in err
    assert not png.exists()
    with pytest.raises(ValueError, match=r"nosuch.*lr"):
        lossview.figure(dl, label="nosuch")
    assert cli.main([str(dl / "a.arrow"), str(dl / "b.arrow"), "--label", "lr", "-o", str(png)]) == 0


def summary_of(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert cli.main(["summary", *argv]) == 0
    return capsys.readouterr().out


def test_summary_hparams_named_like_its_columns_get_a_prefix(tmp_path, capsys):
    meta = {"events": 3, "min": 9.0, "tag": "t", "steps": "s", "lr": 0.1}
    with LossWriter(tmp_path / "r.arrow", meta=meta) as w:
        for step in range(5):
            w.add(step, 2.0 - step / 10)
    header, _, row = summary_of([str(tmp_path / "r.arrow")], capsys).splitlines()
    names, cells = header.split(), row.split()
    assert names.count("events") == 1 and names.count("min") == 1 and names.count("tag") == 1
    assert {"hp.events", "hp.min", "hp.tag", "hp.steps", "lr"} <= set(names)
    assert cells[names.index("events")] == "5" and cells[names.index("hp.events")] == "3"
    assert cells[names.index("min")] == "1.6" and cells[names.index("hp.min")] == "9.0"


def test_summary_json_is_valid_json_with_non_finite_values(tmp_path, capsys):
    with LossWriter(tmp_path / "r.arrow", meta={"best": float("inf")}) as w:
        for step, value in enumerate([float("nan"), float("inf"), float("nan")]):
            w.add(step, value)
    text = summary_of([str(tmp_path / "r.arrow"), "--json"], capsys)

    def reject(constant: str) -> None:
        raise AssertionError(f"invalid JSON constant {constant}")

    (row,) = json.loads(text, parse_constant=reject)
    assert row["first"] is None and row["last"] is None and row["min"] is None
    assert row["non_finite"] == 3 and row["hparams"] == {"best": None}


def test_summary_and_export_smooth_like_the_plot(tmp_path, capsys):
    with LossWriter(tmp_path / "r.arrow") as w:
        for step in range(200):
            w.add(step, 1.0 + (step % 7) / 10, "loss")
            if step % 50 == 49:
                w.add(step, 2.0 - step / 1000, "val")  # 4 points: the plot leaves them raw
    view = lv.View(smooth=lv.DEFAULT_SMOOTH, smooth_explicit=False)
    plotted = {c.tag: c for c in lv.curves(lv.load([tmp_path / "r.arrow"], view), view)}
    assert plotted["val"].smoothed is None and plotted["loss"].smoothed is not None
    rows = {r["tag"]: r for r in json.loads(summary_of([str(tmp_path / "r.arrow"), "--json"], capsys))}
    assert rows["val"]["last_smoothed"] is None
    assert rows["loss"]["last_smoothed"] == pytest.approx(float(plotted["loss"].smoothed[-1]))
    out = tmp_path / "e.parquet"
    assert cli.main(["export", str(tmp_path / "r.arrow"), str(out)]) == 0
    table = pq.read_table(out)
    tags = np.array(table.column("tag").to_pylist())
    smoothed, value = table.column("smoothed").to_numpy(), table.column("value").to_numpy()
    np.testing.assert_allclose(smoothed[tags == "loss"], plotted["loss"].smoothed)
    np.testing.assert_array_equal(smoothed[tags == "val"], value[tags == "val"])


def test_summary_and_export_numbers_of_a_run_do_not_depend_on_the_other_files_named(tmp_path, capsys):
    """A 30-point run was smoothed next to a long one (with 2% of the other's step span), and a long run's
    smoothed value moved with its neighbours: each run is summarized and exported by itself."""
    short, long = tmp_path / "short.arrow", tmp_path / "long.arrow"
    with LossWriter(short) as w:
        for step in range(30):
            w.add(step, 1.0 / (step + 1), "loss")
    with LossWriter(long) as w:
        for step in range(0, 20_000, 10):
            w.add(step, 1.0 + (step % 70) / 100, "loss")

    def last_smoothed(*paths: Path) -> dict[str, float | None]:
        rows = json.loads(summary_of([*map(str, paths), "--json"], capsys))
        return {r["run"]: r["last_smoothed"] for r in rows}

    alone = {**last_smoothed(short), **last_smoothed(long)}
    assert alone["short"] is None  # a short series stays raw
    assert last_smoothed(short, long) == alone
    out = tmp_path / "both.parquet"
    assert cli.main(["export", str(short), str(long), str(out)]) == 0
    both = pq.read_table(out).to_pandas()
    shown = both[both["run"] == "short"]
    assert (shown["smoothed"] == shown["value"]).all()
    assert both[both["run"] == "long"]["smoothed"].iloc[-1] == pytest.approx(alone["long"])


def test_summary_help_offers_no_per(capsys):
    assert cli.main(["summary", "--help"]) == 0
    text = capsys.readouterr().out
    assert "--per" not in text and "--normalize" in text


def test_figure_tags_none_is_every_tag_and_an_unmatched_tag_raises(tmp_path):
    path = write(tmp_path / "r.arrow")
    fig = lossview.figure(path, tags=None, smooth="none")
    assert [len(ln.get_xdata()) for ln in fig.axes[0].lines if len(ln.get_xdata())] == [50]
    with pytest.raises(ValueError, match="no tag matches nosuch; the runs have loss"):
        lossview.figure(path, tags=["nosuch"])
    with LossWriter(tmp_path / "empty.arrow"):
        pass
    empty = lossview.figure(tmp_path / "empty.arrow", tags=["loss"])  # no events yet: no error
    assert empty.get_figwidth() == 8.0 and not any(ax.lines for ax in empty.axes)


def test_unwritable_outputs_name_out_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    run = str(write(tmp_path / "r.arrow", 5))
    for argv, out in (
        ([run, "-o", "/sys/lossview-test.png"], "/sys/lossview-test.png"),  # EACCES even for root
        (["export", run, "/sys/lossview-test.csv"], "/sys/lossview-test.csv"),
        (["export", run, "/proc/lossview-test.feather"], "/proc/lossview-test.feather"),
    ):
        assert cli.main(argv) == 1, argv
        err = one_error(capsys)
        assert err.startswith(f"lossview: error: {out}: ") and "Errno" not in err and ".tmp" not in err, err


def serve(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*ENV_PY, *args],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_web_errors_are_one_line_with_context(tmp_path):
    run = str(write(tmp_path / "r.arrow", 5))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        taken = serve(run, "--web", port)
        _, err = taken.communicate(timeout=120)
    assert taken.returncode == 1 and err.count("\n") == 1, err
    assert "already in use" in err and "unclosed" not in err
    nohost = serve(run, "--web", str(free_port()), "--host", "nosuch.invalid")
    _, err = nohost.communicate(timeout=120)
    assert nohost.returncode == 1 and err.count("\n") == 1, err
    assert "--host nosuch.invalid" in err and "Errno" not in err, err


def test_web_requests_are_not_logged_to_stderr(tmp_path):
    run = str(write(tmp_path / "r.arrow", 5))
    port = free_port()
    proc = serve(run, "--web", str(port))
    try:
        line = proc.stderr.readline()
        assert "serving on" in line, line
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/nosuch", timeout=30)
        assert missing.value.code == 404
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as page:
            assert page.status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        out, rest = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert "404" not in rest and "GET" not in rest, rest
    assert (
        out == ""
    )  # lossview's line alone: WebAgg's "To view figure, visit ..." and "Press Ctrl+C" repeated it


def test_a_file_cut_inside_its_first_flush_says_so_not_just_no_events(tmp_path, capsys):
    png = str(tmp_path / "x.png")  # a plot of a run without events is an error (summary lists it)
    data = write(tmp_path / "whole.arrow", 2000).read_bytes()
    (tmp_path / "cut.arrow").write_bytes(data[:3000])  # a partial copy of a closed run
    with LossWriter(tmp_path / "new.arrow", flush_secs=3600) as w:  # a writer that has not flushed yet
        assert cli.main([str(tmp_path / "new.arrow"), "-o", png]) == 1
        assert "new.arrow: no events in the file yet" in one_error(capsys)
        w.add(0, 1.0)
    with LossWriter(tmp_path / "closed.arrow"):  # closed before it logged anything: nothing is cut short
        pass
    assert cli.main([str(tmp_path / "closed.arrow"), "-o", png]) == 1
    assert one_error(capsys).endswith("closed.arrow: no events in the file\n")
    assert cli.main([str(tmp_path / "cut.arrow"), "-o", png]) == 1
    header = lossfmt.reader.scan(tmp_path / "cut.arrow").end
    assert (
        f"cut.arrow: no complete event: {3000 - header:,} of its 3,000 bytes are an unfinished"
        in one_error(capsys)
    )


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["run.arrow", "--per", "foo"], "argument --per: must be 'epoch'"),
        (["run.arrow", "--dpi", "0"], "argument --dpi"),
        (["run.arrow", "--size", "0", "1"], "argument --size"),
        ([], "the following arguments are required: FILE"),
        (["export", "run.arrow"], "the following arguments are required: OUT"),
        (["summary", "--bogus", "run.arrow"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_usage_is_one_line_and_status_2_without_the_usage_banner(argv, says, tmp_path):
    """argparse printed a usage banner before its error (three lines); every other user error is one."""
    proc = subprocess.run([*ENV_PY, *argv], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("lossview"), proc.stderr
    assert says in proc.stderr and "--help)" in proc.stderr


def test_spread_without_band_is_refused_not_ignored(tmp_path, capsys):
    path = write(tmp_path / "r.arrow")
    assert cli.main([str(path), "--spread", "std", "-o", str(tmp_path / "o.png")]) == 2  # bad usage
    assert "--spread std says what --band shades: add --band" in one_error(capsys)
    png = str(tmp_path / "o.png")
    assert cli.main([str(path), "--per", "10", "--band", "--spread", "std", "-o", png]) == 0


def test_a_resource_warning_collected_during_a_command_is_not_printed(tmp_path, capsys, monkeypatch):
    """A socket another test (or library) leaked, collected while lossview ran, printed a 'lossview: warning'
    line before the command's own one-line error."""
    run = cli._run

    def leaking(command, ns):
        warnings.warn("unclosed <socket.socket fd=21>", ResourceWarning, stacklevel=1)
        return run(command, ns)

    monkeypatch.setattr(cli, "_run", leaking)
    assert cli.main([str(tmp_path / "missing.arrow"), "-o", str(tmp_path / "x.png")]) == 1
    assert "socket" not in one_error(capsys)


def test_a_log_axis_with_only_negative_values_says_so_once(tmp_path, capsys):
    """matplotlib's own 'Data has no positive values' followed lossview's warning: two lines for one fact."""
    with LossWriter(tmp_path / "neg.arrow") as w:
        for step in range(50):
            w.add(step, -1.0 - step / 10, "loglik")
    assert cli.main([str(tmp_path / "neg.arrow"), "--logy", "-o", str(tmp_path / "x.png")]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "50 values of loglik are zero or negative" in err, err


def lossview_cli(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The installed command line in a process of its own, drawing with Agg (never a window)."""
    env = {**os.environ, "MPLBACKEND": "Agg"}
    return subprocess.run([*ENV_PY, *argv], capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


def usage_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2 and proc.stdout == "", (proc.returncode, proc.stderr)
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("lossview"), proc.stderr
    assert "Traceback" not in proc.stderr and ".tmp" not in proc.stderr, proc.stderr
    return proc.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["runs", "--tag", "", "-o", "x.png"],
        ["runs", "--tag", "loss", "--tag", "", "--follow", "-o", "x.png"],
        ["summary", "runs", "--tag", ""],
        ["export", "runs", "--tag", "", "e.csv"],
    ],
)
def test_an_empty_tag_is_a_usage_error_of_every_command_taking_tag(tmp_path, argv):
    """`--tag ''` printed lossfmt's ValueError as a traceback (status 1), and with --follow warned once per
    file, then waited forever for a tag named ''."""
    write(tmp_path / "runs" / "a.arrow")
    err = usage_error(lossview_cli(*argv, cwd=tmp_path))
    assert "argument --tag: an empty GLOB matches no tag" in err, err
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "e.csv").exists()


def test_a_directory_named_as_the_image_output_is_refused_before_drawing(tmp_path):
    """`-o dir.png`, a directory, drew the figure and then failed to replace it, naming the temp file
    (`.dir.png._lhpywge.tmp: is a directory`) rather than OUT."""
    write(tmp_path / "r.arrow")
    (tmp_path / "dir.png").mkdir()
    err = usage_error(lossview_cli("r.arrow", "-o", "dir.png", cwd=tmp_path))
    assert err.startswith("lossview: error: dir.png: is a directory; name the file"), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.png", "r.arrow"]  # no temp file left


def test_an_image_that_cannot_replace_its_output_names_out_not_the_temp_file(tmp_path):
    """A render whose replace of OUT failed (OUT became a directory while following) named the temp file the
    user never asked for."""
    out = tmp_path / "live.png"
    out.mkdir()
    with pytest.raises(IsADirectoryError) as refused:
        FileOutput(out).refresh(Figure())
    assert refused.value.filename == str(out)
    assert commands.error_line(refused.value) == f"{out}: is a directory"
    assert [p.name for p in tmp_path.iterdir()] == ["live.png"]


@pytest.mark.parametrize(
    "argv",
    [
        ["r.arrow", "-o", ""],
        ["r.arrow", "--follow", "-o", ""],
        ["export", "r.arrow", ""],
        ["compact", "r.arrow", "--salvage", ""],
        ["import-tb", "logs", ""],
    ],
)
def test_an_empty_output_path_is_a_usage_error(tmp_path, argv):
    """`-o ''` was taken for no -o at all (asking for -o OUT.png), `export FILE ''` for the directory '.'."""
    write(tmp_path / "r.arrow")
    (tmp_path / "logs").mkdir()
    err = usage_error(lossview_cli(*argv, cwd=tmp_path))
    assert "empty output path" in err, err


def test_host_without_web_is_refused_like_poll_without_follow(tmp_path):
    """`--host 0.0.0.0 -o x.png` was accepted and the address silently ignored: nothing was served."""
    write(tmp_path / "r.arrow")
    for argv in (["-o", "x.png"], ["--term"]):
        err = usage_error(lossview_cli("r.arrow", "--host", "0.0.0.0", *argv, cwd=tmp_path))
        assert "--host only makes sense with --web" in err, err
    assert not (tmp_path / "x.png").exists()


def test_an_empty_title_draws_none(tmp_path, capsys):
    """`--title ''` drew the default title (the run name)."""
    run = str(write(tmp_path / "myrunname.arrow", 5))
    assert cli.main([run, "-o", str(tmp_path / "default.svg")]) == 0
    assert cli.main([run, "--title", "", "-o", str(tmp_path / "none.svg")]) == 0
    assert "myrunname" in (tmp_path / "default.svg").read_text()
    assert "myrunname" not in (tmp_path / "none.svg").read_text()


def test_an_output_symlink_to_a_run_never_overwrites_the_run(tmp_path, capsys):
    """Writing through an -o symlink replaced the run it pointed to with a PNG: the link is replaced."""
    run = write(tmp_path / "r.arrow", 5)
    link = tmp_path / "plot.png"
    link.symlink_to(run)
    before = run.read_bytes()
    assert cli.main([str(run), "-o", str(link)]) == 0
    assert run.read_bytes() == before and link.read_bytes()[:4] == b"\x89PNG"


def test_damage_in_a_file_says_how_to_salvage_the_events_before_it(tmp_path, capsys):
    path = write(tmp_path / "r.arrow", 50)
    data = bytearray(path.read_bytes())
    data[-40] ^= 0x10  # inside the footer: a closed file's damage
    path.write_bytes(bytes(data))
    assert cli.main([str(path), "-o", str(tmp_path / "o.png")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "corrupt at byte" in err and "--salvage OUT.arrow" in err, err
    assert cli.main(["compact", str(path), "--salvage", str(tmp_path / "s.arrow")]) == 0
