"""The `lossview` command driven in real subprocesses: renders, subcommands, bad input, and --follow against a
writer running in another process."""

from __future__ import annotations

import json
import math
import os
import select
import signal
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

from lossfmt import LossWriter, schema
from lossview import cli

ENV = {**os.environ, "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"}
MAGIC = {"png": b"\x89PNG\r\n\x1a\n", "svg": b"<?xml", "pdf": b"%PDF-"}


def lossview(*args: str | os.PathLike[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lossview", *map(str, args)],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start(*args: str | os.PathLike[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "lossview", *map(str, args)],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_all(commands: list[list[str]], parallel: int = 4) -> list[subprocess.CompletedProcess[str]]:
    """Run several lossview commands a few at a time (each one pays for importing matplotlib)."""
    results: list[subprocess.CompletedProcess[str]] = []
    for i in range(0, len(commands), parallel):
        procs = [(cmd, start(*cmd)) for cmd in commands[i : i + parallel]]
        for cmd, p in procs:
            out, err = p.communicate(timeout=90)
            results.append(subprocess.CompletedProcess(cmd, p.returncode, out, err))
    return results


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == MAGIC["png"], f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def write_run(path: Path, n: int = 400, *, nan_at: int | None = None, run: str | None = None) -> Path:
    with LossWriter(path, run=run, meta={"lr": 0.1}) as w:
        for step in range(n):
            value = 2.0 * math.exp(-step / 100) + 0.05 * math.sin(step)
            if nan_at is not None and step >= nan_at:
                value = math.nan
            w.add(step, value, "train", epoch=step // 100)
            if step % 100 == 99:
                w.add(step, 2.2 * math.exp(-step / 100), "val", epoch=step // 100)
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("runs")
    write_run(d / "a.arrow")
    write_run(d / "b.arrow", nan_at=300)
    return d


# ------------------------------------------------------------------------------------------------ renders


def plot_cases(runs: Path) -> dict[str, list[str]]:
    a, b = str(runs / "a.arrow"), str(runs / "b.arrow")
    return {
        "default.png": [a],
        "vector.svg": [a],
        "paper.pdf": [a],
        "compare.png": [a, b],
        "directory.png": [str(runs)],
        "glob.png": [str(runs / "*.arrow")],
        "tag.png": [a, "--tag", "val", "--tag", "tr*"],
        "split.png": [a, "--split"],
        "ema.png": [a, "--smooth", "ema:0.9"],
        "ma.png": [a, "--smooth", "ma:20"],
        "raw.png": [a, "--smooth", "none"],
        "per_item.png": [a, "--normalize", "per-item", "--per", "epoch", "--band"],
        "per_n.png": [a, "--per", "50", "--band", "--spread", "std"],
        "mean_runs.png": [str(runs), "--mean-runs", "--band"],
        "x_epoch.png": [a, "--x", "epoch"],
        "x_time.png": [a, "--x", "time"],
        "x_relative.png": [a, "--x", "relative"],
        "logy.png": [a, "--logy", "--ylim", "0.05", "3", "--title", "My run"],
        "sized.png": [a, "--size", "4", "3", "--dpi", "50"],
        "keep_rewound.png": [a, "--keep-rewound"],
    }


#: What a case says on stderr: the fixture's train curve dips below zero at its end (0.05 sin(step) beats
#: 2 exp(-step/100) from step 382), which a log axis cannot draw.
STDERR = {
    "logy.png": "lossview: warning: --logy: 3 values of train are zero or negative (the first at step 382): "
    "a log axis does not draw them\n"
}


def test_every_plot_option_renders(runs, tmp_path, capsys):
    # Every option through the command's main() in this process (the same code path as the console
    # script, without paying an interpreter start per case); the subprocess test below covers a sample.
    cases = plot_cases(runs)
    for name, args in cases.items():
        assert cli.main([*args, "-o", str(tmp_path / name)]) == 0, name
        out, err = capsys.readouterr()
        assert (out, err) == ("", STDERR.get(name, "")), (name, err)
        assert (tmp_path / name).read_bytes().startswith(MAGIC[name.rsplit(".", 1)[1]]), name
    assert png_size(tmp_path / "default.png") == (1200, 675)  # 8 x 4.5 in at 150 dpi
    assert png_size(tmp_path / "sized.png") == (200, 150)
    assert {p.name for p in tmp_path.iterdir()} == set(cases)  # no temp files left behind


def test_renders_in_subprocesses(runs, tmp_path):
    cases = plot_cases(runs)
    sample = ["vector.svg", "paper.pdf", "compare.png", "per_item.png", "mean_runs.png", "logy.png"]
    commands = [[*cases[name], "-o", str(tmp_path / name)] for name in sample]
    for name, result in zip(sample, run_all(commands), strict=True):
        assert result.returncode == 0 and result.stderr == STDERR.get(name, ""), (name, result.stderr)
        assert (tmp_path / name).read_bytes().startswith(MAGIC[name.rsplit(".", 1)[1]]), name


def test_plots_differ_with_options(runs, tmp_path):
    a, b = str(runs / "a.arrow"), str(runs / "b.arrow")
    for name, args in {"one.png": [a], "two.png": [a, b], "val.png": [a, "--tag", "val"]}.items():
        assert cli.main([*args, "-o", str(tmp_path / name)]) == 0
    images = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert len(set(images.values())) == 3


def test_svg_names_runs_and_tags_in_the_legend(runs, tmp_path):
    out = tmp_path / "cmp.svg"
    assert cli.main([str(runs / "a.arrow"), str(runs / "b.arrow"), "-o", str(out)]) == 0
    svg = out.read_text()
    for label in ("a: train", "a: val", "b: train", "b: val", "2 runs", "b: train: NaN at step 300"):
        assert label in svg, label


# ------------------------------------------------------------------------------------------- subcommands


def test_version_is_the_installed_distributions():
    from importlib.metadata import version

    done = lossview("--version")
    assert (done.returncode, done.stdout, done.stderr) == (0, f"lossview {version('lossfmt')}\n", "")


def test_summary_table_and_json(tmp_path):
    path = tmp_path / "s.arrow"
    with LossWriter(path) as w:
        for step, value in zip([10, 11, 12, 13, 14], [4.0, 3.0, math.nan, 1.0, 2.0], strict=True):
            w.add(step, value)
    result = lossview("summary", path, "--smooth", "none", "--json")
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(result.stdout)
    assert {k: row[k] for k in ("run", "tag", "events", "first_step", "last_step", "first", "last")} == {
        "run": "s",
        "tag": "loss",
        "events": 5,
        "first_step": 10,
        "last_step": 14,
        "first": 4.0,
        "last": 2.0,
    }
    assert (row["min"], row["min_step"], row["non_finite"], row["last_smoothed"]) == (1.0, 13, 1, None)
    assert row["duration_s"] >= 0
    table = lossview("summary", path)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:4] == ["run", "tag", "events", "steps"]
    assert lines[2].split()[:8] == ["s", "loss", "5", "10..14", "4", "2", "1", "13"]


def test_export_formats_roundtrip(runs, tmp_path):
    a = runs / "a.arrow"
    results = run_all(
        [
            ["export", str(a), str(tmp_path / "a.csv"), "--tag", "val", "--smooth", "none"],
            ["export", str(a), str(tmp_path / "a.parquet"), "--tag", "train"],
            ["export", str(a), str(runs / "b.arrow"), str(tmp_path / "ab.feather"), "--per", "epoch"],
        ]
    )
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    csv = (tmp_path / "a.csv").read_text().splitlines()
    assert csv[0].split(",")[:3] == ['"step"', '"tag"', '"value"']
    assert len(csv) == 1 + 4
    assert csv[1].split(",")[:2] == ["99", '"val"']
    parquet = pq.read_table(tmp_path / "a.parquet")
    assert parquet.num_rows == 400 and "smoothed" in parquet.column_names
    assert "run" not in parquet.column_names
    both = feather.read_table(tmp_path / "ab.feather")
    assert set(both.column("run").to_pylist()) == {"a", "b"}
    assert {"min", "max", "std", "events"} <= set(both.column_names)
    assert both.num_rows == 2 * 2 * 4  # runs x tags x epochs


def test_export_per_item_matches_seed_002(tmp_path):
    path = tmp_path / "items.arrow"
    items = [4, 5, 2, 4, 3, 2, 3, 1]
    with LossWriter(path) as w:  # batches of 3, 3, 2 items; per-batch mean losses
        for step, (lo, hi) in enumerate([(0, 3), (3, 6), (6, 8)]):
            w.add(step, sum(items[lo:hi]) / (hi - lo), count=hi - lo, epoch=0)
    out = tmp_path / "e.csv"
    result = lossview("export", path, out, "--normalize", "per-item", "--per", "epoch")
    assert result.returncode == 0, result.stderr
    header, row = out.read_text().splitlines()
    value = float(row.split(",")[header.split(",").index('"value"')])
    assert value == pytest.approx(3.0)


def test_compact_repairs_a_live_file(tmp_path):
    path = tmp_path / "live.arrow"
    script = textwrap.dedent(
        """
        import os, sys
        from lossfmt import LossWriter
        w = LossWriter(sys.argv[1])
        for i in range(10):
            w.add(i, float(i))
        w.flush()
        os._exit(0)  # a crash: no close, no footer
        """
    )
    subprocess.run([sys.executable, "-c", script, str(path)], check=True, env=ENV, timeout=60)
    result = lossview("compact", path)
    assert result.returncode == 0, result.stderr
    assert path.read_bytes()[-6:] == schema.TRAILING_MAGIC
    assert feather.read_table(path).column("value").to_pylist() == [float(i) for i in range(10)]


def test_import_tb_gives_a_clear_error_for_a_missing_logdir(tmp_path):
    result = lossview("import-tb", tmp_path / "nope", tmp_path / "out.arrow")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "nope" in result.stderr


def test_help_lists_commands_and_options():
    result = lossview("--help")
    assert result.returncode == 0
    for word in ("summary", "export", "compact", "import-tb", "--follow", "--poll", "--web", "--band"):
        assert word in result.stdout, word


def test_subcommand_help(capsys):
    for command in ("summary", "export", "compact", "import-tb"):
        assert cli.main([command, "--help"]) == 0
        assert f"lossview {command}" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------ errors


def test_bad_files_give_one_line_and_nonzero_status(tmp_path, runs, capsys, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    (tmp_path / "empty.arrow").write_bytes(b"")
    (tmp_path / "text.arrow").write_text("step,loss\n1,0.5\n")
    good = (runs / "a.arrow").read_bytes()
    (tmp_path / "torn_header.arrow").write_bytes(good[:40])
    plain = pa.table({"x": [1, 2]})
    with pa.ipc.new_file(tmp_path / "plain.arrow", plain.schema) as w:  # Arrow, but not lossfmt
        w.write_table(plain)
    (tmp_path / "nothing_here").mkdir()
    a, png = str(runs / "a.arrow"), str(tmp_path / "o.png")
    cases = {  # name: (arguments, text the one-line message must contain)
        "missing": ([str(tmp_path / "missing.arrow"), "-o", png], "missing.arrow"),
        "empty": ([str(tmp_path / "empty.arrow"), "-o", png], "empty.arrow"),
        "text": ([str(tmp_path / "text.arrow"), "-o", png], "text.arrow"),
        "torn": ([str(tmp_path / "torn_header.arrow"), "-o", png], "torn_header.arrow"),
        "plain": ([str(tmp_path / "plain.arrow"), "-o", png], "plain.arrow"),
        "empty dir": ([str(tmp_path / "nothing_here"), "-o", png], "nothing_here"),
        "no glob match": ([str(tmp_path / "zz*.arrow"), "-o", png], "zz*.arrow"),
        "follow corrupt": ([str(tmp_path / "text.arrow"), "--follow", "-o", png], "text.arrow"),
        "summary missing": (["summary", str(tmp_path / "missing.arrow")], "missing.arrow"),
        "export corrupt": (["export", str(tmp_path / "text.arrow"), str(tmp_path / "o.csv")], "text.arrow"),
        "bad smooth": ([a, "--smooth", "bogus", "-o", png], "bogus"),
        "band alone": ([a, "--band", "-o", png], "--band"),
        "bad format": ([a, "-o", str(tmp_path / "x.jpg")], "x.jpg"),
        "bad ylim": ([a, "--ylim", "2", "1", "-o", png], "--ylim"),
        "log ylim": ([a, "--logy", "--ylim", "0", "1", "-o", png], "above 0 on a --logy axis"),
        "bad export": (["export", a, str(tmp_path / "o.xlsx")], "o.xlsx"),
        "no display": ([a], "-o OUT.png, --term (in this terminal)"),
        "term with -o": ([a, "--term", "-o", png], "-o is for the matplotlib views"),
    }
    usage = {"bad smooth", "band alone", "bad format", "bad ylim", "log ylim", "bad export", "term with -o"}
    for name, (args, needle) in cases.items():
        assert cli.main(args) == (2 if name in usage else 1), name
        out, err = capsys.readouterr()
        assert out == "" and err.count("\n") == 1, (name, err)
        assert err.startswith("lossview: error: ") and needle in err, (name, err)
    assert not (tmp_path / "o.png").exists()
    # The same in real processes, for a sample: exit status 1, one line, no traceback.
    sample = ["missing", "text", "plain", "bad smooth", "no display"]
    for name, result in zip(sample, run_all([cases[n][0] for n in sample]), strict=True):
        assert result.returncode == (2 if name in usage else 1), (name, result.returncode, result.stderr)
        assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1, (name, result.stderr)
        assert result.stderr.startswith("lossview: error: ") and cases[name][1] in result.stderr, name


def test_usage_errors_exit_2():
    result = lossview("--per", "0", "x.arrow")
    assert result.returncode == 2 and "Traceback" not in result.stderr


# ------------------------------------------------------------------------------------------------ follow

WRITER = textwrap.dedent(
    """
    import math, os, sys
    import lossfmt
    from lossfmt import LossWriter
    step = lossfmt.read(sys.argv[1]).num_rows if os.path.exists(sys.argv[1]) else 0  # a resume continues
    w = LossWriter(sys.argv[1], flush_secs=0.1)
    for line in sys.stdin:
        if line.strip() == "close":
            break
        for _ in range(int(line)):
            w.add(step, 2.0 * math.exp(-step / 80.0))
            step += 1
        w.flush()
        print("flushed", step, flush=True)
    w.close()
    print("closed", flush=True)
    """
)


class Writer:
    """A LossWriter in another process, told over stdin how many events to add and flush."""

    def __init__(self, path: Path, script_dir: Path) -> None:
        script = script_dir / "writer.py"
        script.write_text(WRITER)
        self.proc = subprocess.Popen(
            [sys.executable, str(script), str(path)],
            env=ENV,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def send(self, line: str) -> str:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def close(self) -> None:
        assert self.send("close") == "closed"
        self.proc.wait(timeout=30)


def wait_for_change(path: Path, previous: bytes | None, deadline: float = 30.0) -> bytes:
    """Poll (with a deadline) until `path` exists with content different from `previous`."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            content = path.read_bytes()
        except FileNotFoundError:
            content = None
        if content and content != previous and content.startswith(MAGIC["png"]):
            return content
        time.sleep(0.05)
    raise AssertionError(f"{path} was not (re-)rendered within {deadline} s")


def stop(proc: subprocess.Popen[str], sig: int) -> tuple[int, str]:
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    return proc.returncode, err


@pytest.mark.parametrize("mode", ["watchdog", "poll"])
def test_follow_rerenders_as_another_process_writes(tmp_path, mode):
    data_dir, out_dir = tmp_path / "runs", tmp_path / "out"
    data_dir.mkdir()
    out_dir.mkdir()
    run, out = data_dir / "live.arrow", out_dir / "live.png"
    extra = ["--poll", "0.2"] if mode == "poll" else []
    viewer = start(run, "--follow", "-o", out, *extra)  # started before the file exists: it waits
    ready, _, _ = select.select([viewer.stderr], [], [], 60)
    assert ready and viewer.stderr.readline() == f"lossview: waiting for {run}\n"
    writer = Writer(run, tmp_path)
    try:
        assert writer.send("50").startswith("flushed")
        first = wait_for_change(out, None)
        assert writer.send("150") == "flushed 200"
        second = wait_for_change(out, first)
        writer.close()  # compaction replaces the file; the viewer must carry on
        assert writer.proc.returncode == 0
        writer = Writer(run, tmp_path)  # resumes the compacted file: the viewer draws what it appends
        assert writer.send("100") == "flushed 300"
        wait_for_change(out, second)
        writer.close()
        assert viewer.poll() is None, viewer.stderr.read()
        code, err = stop(viewer, signal.SIGINT if mode == "watchdog" else signal.SIGTERM)
    finally:
        if viewer.poll() is None:
            viewer.kill()
        if writer.proc.poll() is None:
            writer.proc.kill()
    assert code == 0, err
    assert "Traceback" not in err and err == "", err
    assert second != first
    assert [p.name for p in out_dir.iterdir()] == ["live.png"]  # atomic replace left no temp files


def test_follow_survives_deletion_and_a_new_run(tmp_path):
    run, out = tmp_path / "r.arrow", tmp_path / "r.png"
    write_run(run, 100)
    viewer = start(run, "--follow", "-o", out)
    try:
        first = wait_for_change(out, None)
        run.unlink()
        write_run(run, 300, nan_at=250)
        wait_for_change(out, first)
        assert viewer.poll() is None
        code, err = stop(viewer, signal.SIGINT)
    finally:
        if viewer.poll() is None:
            viewer.kill()
    assert code == 0 and "Traceback" not in err, err


def test_import_tb_converts_every_point_then_plots(tmp_path):
    tensorboardX = pytest.importorskip("tensorboardX")
    pytest.importorskip("tensorboard")
    logdir = tmp_path / "tb"
    writer = tensorboardX.SummaryWriter(str(logdir))
    for step in range(1500):  # more than EventAccumulator's default reservoir of 1000 per tag
        writer.add_scalar("loss", 1.0 / (step + 1), step)
    writer.close()
    out = tmp_path / "tb.arrow"
    result = lossview("import-tb", logdir, out)
    assert result.returncode == 0, result.stderr
    assert "1500 events" in result.stderr
    summary = lossview("summary", out, "--json")
    (row,) = json.loads(summary.stdout)
    assert (row["events"], row["first_step"], row["last_step"], row["tag"]) == (1500, 0, 1499, "loss")
    again = lossview("import-tb", logdir, out)
    assert again.returncode == 1 and "already exists" in again.stderr and again.stderr.count("\n") == 1


def test_plotting_never_imports_pandas(tmp_path):
    """pyarrow 26 imports pandas on its first pa.array()/to_numpy(): half a second of every command."""
    path = tmp_path / "run.arrow"
    with LossWriter(path) as w:
        for step in range(200):
            w.add(step, 1.0 / (step + 1), count=8, epoch=step // 50)
            if step % 50 == 49:
                w.add(step, 0.5, "val", epoch=step // 50)
    code = textwrap.dedent(
        f"""
        import sys
        from lossview import cli
        for extra in ([], ["--per", "epoch", "--normalize", "per-item", "--band"], ["--x", "epoch"]):
            assert cli.main([{str(path)!r}, "-o", {str(tmp_path / "out.png")!r}, *extra]) == 0
        print("pandas" in sys.modules)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_a_default_render_does_not_import_pyarrow_compute(tmp_path):
    """Importing pyarrow.compute costs 60-80 ms before the file is read; one series never needs it."""
    path = tmp_path / "run.arrow"
    with LossWriter(path) as w:
        for step in range(200):
            w.add(step, 1.0 / (step + 1))
    code = textwrap.dedent(
        f"""
        import sys
        from lossview import cli
        assert cli.main([{str(path)!r}, "-o", {str(tmp_path / "out.png")!r}]) == 0
        print("pyarrow.compute" in sys.modules)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_a_render_reads_the_files_while_matplotlib_is_imported(tmp_path):
    """The main thread reads the files before it imports matplotlib (the other thread's job meanwhile): an
    import on the main thread first would run alone, 0.4-0.5 s added to a 10M-event render."""
    path = tmp_path / "run.arrow"
    with LossWriter(path) as w:
        for step in range(200):
            w.add(step, 1.0 / (step + 1))
    code = textwrap.dedent(
        f"""
        import sys
        from lossview import cli, view
        cli._import_plotting = lambda: None  # no background import: what this thread imports shows
        load, seen = view.load, []
        def spy(*args, **kwargs):
            seen.append(sorted(m for m in sys.modules if m.split(".")[0] == "matplotlib")[:3])
            return load(*args, **kwargs)
        view.load = spy
        assert cli.main([{str(path)!r}, "-o", {str(tmp_path / "out.png")!r}]) == 0
        print(seen)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[[]]"
    assert (tmp_path / "out.png").read_bytes().startswith(MAGIC["png"])


def test_main_and_figure_change_no_process_global_state(tmp_path):
    """gc, switch interval, backend, rcParams, signal handlers: a program embedding lossview keeps its own."""
    path = write_run(tmp_path / "run.arrow", 50)
    code = textwrap.dedent(
        f"""
        import gc, signal, sys
        import matplotlib
        import lossview
        from lossview import cli
        try:
            from numpy._core.multiarray import _set_madvise_hugepage as pages
        except ImportError:
            from numpy.core.multiarray import _set_madvise_hugepage as pages
        def huge():
            was = pages(True)
            pages(was)
            return was
        before = (gc.get_freeze_count(), gc.isenabled(), sys.getswitchinterval(), huge(),
                  dict.__getitem__(matplotlib.rcParams, "backend"), dict(matplotlib.rcParams),
                  signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
        assert cli.main([{str(path)!r}, "-o", {str(tmp_path / "a.png")!r}]) == 0
        assert cli.main([{str(path)!r}, "--tag", "nosuch", "-o", {str(tmp_path / "b.png")!r}]) == 1
        assert cli.main(["summary", {str(path)!r}]) == 0
        lossview.figure({str(path)!r})
        after = (gc.get_freeze_count(), gc.isenabled(), sys.getswitchinterval(), huge(),
                 dict.__getitem__(matplotlib.rcParams, "backend"), dict(matplotlib.rcParams),
                 signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
        print(before == after)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == "True"


def test_only_the_console_entry_point_tunes_its_own_process(tmp_path):
    """console_main (the installed script) freezes gc before exit, shortens the switch interval and puts
    numpy's large arrays on small pages (unless NUMPY_MADVISE_HUGEPAGE says otherwise)."""
    path = write_run(tmp_path / "run.arrow", 50)
    code = textwrap.dedent(
        f"""
        import gc, sys
        from lossview import cli
        try:
            from numpy._core.multiarray import _set_madvise_hugepage as pages
        except ImportError:
            from numpy.core.multiarray import _set_madvise_hugepage as pages
        sys.argv = ["lossview", {str(path)!r}, "-o", {str(tmp_path / "b.png")!r}]
        assert cli.console_main() == 0
        print(gc.get_freeze_count() > 0, sys.getswitchinterval() <= 0.001, pages(True))
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "NUMPY_MADVISE_HUGEPAGE"}
    for setting, huge in ((None, "False"), ("1", "True")):
        run_env = env if setting is None else {**env, "NUMPY_MADVISE_HUGEPAGE": setting}
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=run_env
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == ["True", "True", huge]


def test_output_into_a_pipe_closed_early_ends_quietly(tmp_path):
    run = write_run(tmp_path / "run.arrow")
    for args in (["summary", run, run.parent], [run, "--term"]):
        proc = subprocess.Popen(
            [sys.executable, "-m", "lossview", *map(str, args)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "MPLBACKEND": "Agg"},
        )
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # as `| head` does once it has its lines: every write is a broken pipe
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=60) == 141, err
        assert err == "", args


def test_a_file_whose_name_starts_with_a_dash_is_named_after_two_dashes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_run(Path("-x.arrow"), 20)
    assert lossview("-o", "x.png", "--", "-x.arrow").returncode == 0
    assert Path("x.png").exists()
    done = lossview("summary", "--", "-x.arrow")
    assert done.returncode == 0 and "\n-x   train" in done.stdout
