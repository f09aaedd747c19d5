"""lossview --term: the frame renderer, one frame on a pipe, and the live view in a real tmux pane."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import lossfmt
from lossfmt.transforms import step_ema
from lossview import braille, term

LOSSVIEW = [sys.executable, "-m", "lossview"]
BRAILLE = range(0x2801, 0x2900)


def braille_cells(text: str) -> int:
    return sum(ord(ch) in BRAILLE for ch in text)


def write_run(path: Path, n: int, *, tags: tuple[str, ...] = ("loss",), start: int = 0) -> None:
    with lossfmt.LossWriter(path) as w:
        for step in range(start, start + n):
            for i, tag in enumerate(tags):
                w.add(step, 2.0 / (1 + step / 50) + 0.1 * math.sin(step) + i, tag=tag)


def term_frame(*args: str, columns: int, lines: int) -> subprocess.CompletedProcess[str]:
    """One `lossview ARGS... --term` frame, printed to a pipe of `columns` x `lines` ($COLUMNS, $LINES)."""
    env = {**os.environ, "COLUMNS": str(columns), "LINES": str(lines)}
    return subprocess.run([*LOSSVIEW, *args, "--term"], capture_output=True, text=True, timeout=60, env=env)


# --- the renderer -------------------------------------------------------------------------------------------


def test_a_single_spike_among_a_million_points_reaches_the_top_row() -> None:
    steps = np.arange(1_000_000)
    values = np.ones(1_000_000)
    values[654_321] = 10.0
    s = term.Series("loss", steps, values)
    lines = term.render([s], 100, 30, color=False).split("\n")
    plot = lines[2:-2]
    top = plot[0][braille._Y_LABEL + 1 :]
    assert 1 <= braille_cells(top) <= 2  # the spike: up and down again
    assert braille_cells(plot[-1]) >= 80  # the flat line across the plot's width


def test_non_finite_values_are_marked_and_the_smoothed_curve_is_drawn_over_the_raw_one() -> None:
    steps = np.arange(1000)
    values = np.linspace(1.0, 0.0, 1000)
    values[500] = math.nan
    s = term.Series("loss", steps, values, smoothed=np.full(1000, 0.5))
    frame = term.render([s], 80, 20, color=True)
    lines = frame.split("\n")
    assert "×" in lines[1] and lines[1].index("×") > 30  # marked near the middle
    assert "\x1b[0;38;5;33;1m" in frame  # the smoothed layer, bold
    assert "\x1b[0;38;5;33;2m" in frame  # the raw layer, faint
    plain = term.render([s], 80, 20, color=False)
    assert "\x1b" not in plain and "━━ loss" in plain


def test_axes_have_round_ticks_for_steps_and_values() -> None:
    s = term.Series("loss", np.arange(0, 2_000_001, 1000), np.linspace(0.0, 4.0, 2001))
    lines = term.render([s], 100, 30, color=False).split("\n")
    axis = lines[-2]
    assert "┴0" in axis and "┴1M" in axis and axis.endswith("step")
    labels = [line[: braille._Y_LABEL].strip() for line in lines[2:-2]]
    assert "4" in labels and "0" in labels


def _lm(n: int = 3000) -> list[term.Series]:
    """A loss of 2.0..2.5 and an lr of 1e-3 decaying to 0, as /tmp's lm.arrow: 50x and more apart."""
    steps = np.arange(n)
    loss = 2.0 + 0.5 * np.exp(-steps / 800)
    return [term.Series("loss", steps, loss, smoothed=loss), term.Series("lr", steps, 1e-3 * (1 - steps / n))]


def _panel_rows(frame: str) -> list[list[str]]:
    """The plot rows of each panel of a frame (right of the y axis), top panel first."""
    out: list[list[str]] = []
    for line in frame.split("\n")[1:]:
        if "└" in line:
            break
        if line[braille._Y_LABEL : braille._Y_LABEL + 1] in ("│", "┤"):
            out[-1].append(line[braille._Y_LABEL + 1 :])
        else:  # a panel's row of non-finite marks, led by its name
            out.append([])
    return out


@pytest.mark.parametrize(("width", "height"), [(100, 30), (80, 24), (60, 12)])
def test_a_tag_far_apart_in_scale_is_drawn_in_a_panel_of_its_own(width: int, height: int) -> None:
    """--term drew every tag on one y axis: an lr (1e-3 -> 0) was a flat line at 0 under a loss of 2."""
    frame = term.render(_lm(), width, height, color=False, title="lm")
    lines = frame.split("\n")
    assert len(lines) == height and max(len(line) for line in lines) <= width
    loss, lr = _panel_rows(frame)
    assert lines[1].strip() == "loss" and any(line.strip() == "lr" for line in lines[2:])  # loss on top
    assert abs(len(loss) - len(lr)) <= 1 and len(lr) >= 3  # the height split between them
    # The lr falls from the top of its panel to its bottom: a curve, not a flat line.
    assert braille_cells(lr[0][:4]) and braille_cells(lr[-1][-4:]) and not braille_cells(lr[0][-8:])
    assert all(braille_cells(row) for row in loss[:2])  # the loss reaches its panel's top
    labels = _y_labels(frame)
    assert 2.0 <= float(labels[0]) <= 2.5 and "0.001" in labels  # each panel's own ticks
    low = term.render(_lm(), 60, 7, color=False)  # too low for two panels: one axis, as before
    assert len(_panel_rows(low)) == 1 and len(low.split("\n")) == 7


def test_panels_stay_with_a_log_axis_and_a_fixed_range_is_the_loss_panels() -> None:
    """As the matplotlib view (lossview.panels): --logy keeps the lr's panel, --ylim fixes the loss's."""
    logy = term.render(_lm(), 100, 30, color=False, logy=True)
    assert len(_panel_rows(logy)) == 2
    fixed = term.render(_lm(), 100, 30, color=False, ylim=(0.0, 3.0))
    loss, lr = _panel_rows(fixed)
    assert _y_labels(fixed)[0] == "3" and "0.001" in _y_labels(fixed)
    first = next(r for r, row in enumerate(loss) if braille_cells(row))
    assert first >= len(loss) // 6  # 2.5 of 3: below the panel's top
    assert braille_cells(lr[0])  # the lr's panel keeps its own range: from its top


def test_a_comparison_colours_each_run_once_and_tells_its_tags_apart_by_dashes() -> None:
    """8 runs x 2 tags: the legend named 4 of 16 series, and colours repeated past 10 series."""
    steps = np.arange(2000)
    series = []
    for r in range(8):
        for t, tag in enumerate(("loss", "val/loss")):
            v = 2.0 / (1 + steps / (100 + 50 * r)) + 0.3 * t
            series.append(term.Series(f"lr{r}_s0: {tag}", steps, v, smoothed=v, tag=tag, run=f"lr{r}_s0"))
    frame = term.render(series, 100, 30, color=True)
    legend = [_strip_sgr(line) for line in frame.split("\n")[-2:]]
    assert all(len(line) <= 100 for line in legend)
    named = " ".join(legend).split()
    assert [w for w in named if w.startswith("lr")] == [f"lr{r}_s0" for r in range(8)]  # each run once
    assert "━━ loss" in " ".join(legend) and "╍╍ val/loss" in " ".join(legend)  # each tag once, its dashes
    colours = {int(c) for c in re.findall("\x1b\\[0;38;5;([0-9]+);1m━━", "\n".join(frame.split("\n")[-2:]))}
    assert len(colours) == 8  # a colour per run
    many = [term.Series(f"r{r}", steps, steps * (r + 1.0), run=f"r{r}") for r in range(12)]
    drawn = term.render(many, 200, 30, color=True)
    assert len(set(re.findall("\x1b\\[0;38;5;([0-9]+);2m", drawn))) == 12  # 12 runs, 12 colours
    narrow = [_strip_sgr(line) for line in term.render(series, 60, 16, color=True).split("\n")[-1:]]
    assert narrow[0].endswith("… 6 more runs  ━━ loss  ╍╍ val/loss") and len(narrow[0]) <= 60


def test_a_dashed_line_leaves_gaps_but_a_spike_of_its_raw_curve_stays() -> None:
    steps = np.arange(1000)
    spiky = np.full(1000, 1.0)
    spiky[::50] = 5.0  # a spike every 50 steps: some fall in the dashes' gaps
    x = term.Series("x: a", steps, np.zeros(1000), tag="a", run="x")  # the first tag: solid
    y = term.Series("y: b", steps, spiky, tag="b", run="y")  # the second: dashed (no smoothing: the raw)
    (rows,) = _panel_rows(term.render([x, y], 100, 30, color=False))
    line = max(range(len(rows) - 1), key=lambda r: braille_cells(rows[r]))  # y's flat line at 1
    assert braille_cells(rows[-1]) == 85  # x at 0: solid across the plot
    assert 45 < braille_cells(rows[line]) < 75  # y at 1: a third of its cells are gaps
    assert len(re.findall("[\u2801-\u28ff]+", rows[0])) == 20  # every spike reaches the top, gap or not


def test_step_ticks_have_a_unit_also_where_they_are_not_whole() -> None:
    """The x ticks read 2500k, 7500k, and 1500 beside 1k: a unit only when the quotient was whole."""
    steps = np.arange(0, 10_000_001, 1000)
    long = term.render([term.Series("loss", steps, np.ones(steps.size))], 80, 24, color=False)
    axis = long.split("\n")[-2]
    assert "┴2.5M" in axis and "┴7.5M" in axis and "k" not in axis.replace("step", "")
    short = term.render([term.Series("loss", np.arange(3000), np.ones(3000))], 100, 30, color=False)
    assert "┴1.5k" in short.split("\n")[-2] and "1500" not in short


def test_the_non_finite_key_is_in_the_title_only_where_a_mark_is_drawn(tmp_path: Path) -> None:
    """The title ended with "· × non-finite" also for runs without a non-finite value."""
    steps = np.arange(100)
    clean = term.render([term.Series("loss", steps, np.ones(100))], 80, 20, color=False, title="run · raw")
    assert clean.split("\n")[0] == "run · raw"
    values = np.ones(100)
    values[50] = math.inf
    marked = term.render([term.Series("loss", steps, values)], 80, 20, color=False, title="run · raw")
    assert marked.split("\n")[0] == "run · raw · × non-finite" and "×" in marked.split("\n")[1]
    path = tmp_path / "run.arrow"
    write_run(path, 300)
    done = subprocess.run(
        [*LOSSVIEW, os.fspath(path), "--term"], capture_output=True, text=True, timeout=60, env=os.environ
    )
    assert done.returncode == 0 and done.stdout.split("\n")[0] == "run · bold: EMA 2% of span, faint: raw"


# --- one frame ----------------------------------------------------------------------------------------------


def test_without_follow_one_frame_is_printed_without_escape_codes(tmp_path: Path) -> None:
    path = tmp_path / "run.arrow"
    write_run(path, 300, tags=("loss", "val"))
    done = term_frame(os.fspath(path), columns=90, lines=24)
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout
    lines = done.stdout.rstrip("\n").split("\n")
    assert len(lines) == 24 and max(len(line) for line in lines) <= 90
    assert "━━ loss" in lines[-1] and "━━ val" in lines[-1]
    assert "EMA 2% of span" in lines[0]
    assert braille_cells(done.stdout) > 100


def test_a_terminal_frame_never_imports_matplotlib(tmp_path: Path) -> None:
    # matplotlib's import is most of a --term frame's time on a large file (about 0.7 s here); the others
    # are 15-30 ms each of every command (--version's metadata lookup, np.unique's masked-array check).
    path = tmp_path / "run.arrow"
    write_run(path, 5000, tags=("loss", "val"))  # more points than dot columns: the decimation runs
    code = (
        "import io, sys, contextlib\n"
        "import numpy, pyarrow, google_crc32c  # their own imports (numpy < 2: numpy.ma) are theirs\n"
        "theirs = set(sys.modules)\n"
        "from lossview import cli\n"
        "with contextlib.redirect_stdout(io.StringIO()): rc = cli.main([sys.argv[1], '--term'])\n"
        "heavy = ('matplotlib', 'pandas', 'importlib.metadata', 'numpy.ma')\n"
        "ours = [m for m in sys.modules if m not in theirs]\n"
        "print(rc, sorted(m for m in ours if any(m == h or m.startswith(h + '.') for h in heavy)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, os.fspath(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", "[]"]


def test_a_tag_that_matches_nothing_is_an_error_line(tmp_path: Path) -> None:
    path = tmp_path / "run.arrow"
    write_run(path, 10)
    done = subprocess.run(
        [*LOSSVIEW, os.fspath(path), "--term", "--tag", "nosuch"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "no events" in done.stderr


@pytest.mark.parametrize(
    ("option", "named"),
    [
        (["--per", "epoch"], "--per"),
        (["--normalize", "per-item"], "--normalize"),
        (["--x", "epoch"], "--x"),
        (["--split"], "--split"),
        (["--mean-runs", "--band"], "--band, --mean-runs"),
        (["--label", "lr"], "--label"),
        (["--keep-rewound"], "--keep-rewound"),
        (["--dpi", "300"], "--dpi"),
    ],
)
def test_an_option_the_terminal_does_not_draw_is_refused_not_ignored(
    tmp_path: Path, option: list[str], named: str
) -> None:
    path = tmp_path / "run.arrow"
    write_run(path, 10)
    done = subprocess.run(
        [*LOSSVIEW, os.fspath(path), "--term", *option], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "--term draws per-step curves" in done.stderr
    assert f": {named} " in done.stderr


def _y_labels(frame: str) -> list[str]:
    """The y tick labels of a frame, top to bottom."""
    return [line[: braille._Y_LABEL].strip() for line in frame.split("\n") if "┤" in line]


def test_a_log_axis_labels_decades_and_leaves_out_values_below_zero() -> None:
    """--term refused --logy: a loss falling over decades was a flat line after its first steps."""
    steps = np.arange(4000)
    values = 10.0 ** (1 - steps / 1000)  # 10 down to 0.01: three decades and more
    values[[100, 200]] = [0.0, -1.0]  # not drawn on a log axis, and not marked as non-finite
    values[300] = math.nan
    frame = term.render([term.Series("loss", steps, values)], 100, 30, color=False, logy=True)
    assert _y_labels(frame) == ["10", "1", "0.1", "0.01"]
    lines = frame.split("\n")
    assert lines[1].count("×") == 1  # the NaN alone
    plot = [line[braille._Y_LABEL + 1 :] for line in lines[2:-2]]
    # Evenly falling on the log axis: the curve's row grows steadily with the step (a line, not an L).
    rows = [next(r for r, line in enumerate(plot) if braille_cells(line[c])) for c in (10, 40, 70)]
    assert rows[0] < rows[1] < rows[2] and abs((rows[1] - rows[0]) - (rows[2] - rows[1])) <= 1


def test_a_log_axis_within_a_decade_labels_steps_of_it() -> None:
    steps = np.arange(100)
    frame = term.render(
        [term.Series("loss", steps, np.linspace(0.9, 0.3, 100))], 80, 24, color=False, logy=True
    )
    labels = [float(label) for label in _y_labels(frame)]
    assert len(labels) >= 2 and labels == sorted(labels, reverse=True)
    assert all(0.3 <= v <= 0.9 for v in labels)
    nothing = term.render([term.Series("loss", steps, -np.ones(100))], 80, 24, color=False, logy=True)
    assert "no values above 0" in nothing


def test_a_fixed_y_range_draws_a_spike_beyond_it_up_to_its_edge() -> None:
    steps = np.arange(1000)
    values = np.full(1000, 0.25)
    values[500] = 50.0  # a spike far above the range asked for
    frame = term.render([term.Series("loss", steps, values)], 100, 30, color=False, ylim=(0.0, 1.0))
    assert _y_labels(frame)[0] == "1" and _y_labels(frame)[-1] == "0"
    plot = [line[braille._Y_LABEL + 1 :] for line in frame.split("\n")[2:-2]]
    assert 1 <= braille_cells(plot[0]) <= 2  # the spike, cut at the top edge
    quarter = next(r for r, line in enumerate(plot) if braille_cells(line) >= 80)  # the flat line at 0.25
    assert abs(quarter - 0.75 * (len(plot) - 1)) <= 1


def test_term_takes_logy_and_ylim_on_the_command_line(tmp_path: Path) -> None:
    path = tmp_path / "run.arrow"
    with lossfmt.LossWriter(path) as w:
        for step in range(2000):
            w.add(step, 10.0 ** (1 - step / 500))
    done = term_frame(os.fspath(path), "--logy", "--ylim", "0.1", "10", columns=100, lines=30)
    assert done.returncode == 0, done.stderr
    assert _y_labels(done.stdout) == ["10", "1", "0.1"]
    refused = subprocess.run(
        [*LOSSVIEW, os.fspath(path), "--term", "--logy", "--ylim", "0", "10"], capture_output=True, text=True
    )
    assert refused.returncode == 2 and "LO must be above 0" in refused.stderr


def test_a_term_frame_takes_the_title_given(tmp_path: Path) -> None:
    path = tmp_path / "run.arrow"
    write_run(path, 300)
    done = subprocess.run(
        [*LOSSVIEW, os.fspath(path), "--term", "--title", "seed 3, lr 1e-3"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[0].strip() == "seed 3, lr 1e-3"


def test_a_terminal_that_reports_no_size_gets_a_whole_frame(tmp_path: Path) -> None:
    # A fresh pty is 0x0 until someone sets its size: what `docker exec -t`, `script` and some CI ptys give.
    import pty

    path = tmp_path / "run.arrow"
    write_run(path, 300)
    leader, follower = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    try:
        assert os.get_terminal_size(follower) == (0, 0)
        command = [*LOSSVIEW, os.fspath(path), "--term"]
        done = subprocess.run(command, stdout=follower, stderr=subprocess.PIPE, env=env, timeout=60)
        os.close(follower)
        follower = -1
        out = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the pty's other side is closed and everything was read
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)
    assert done.returncode == 0, done.stderr
    text = out.decode()
    assert braille_cells(text) > 100
    # The 100x30 fallback, less the line the prompt takes after a frame on a terminal.
    assert len(_strip_sgr(text).replace("\r", "").rstrip("\n").split("\n")) == 29


# --- live, in tmux ------------------------------------------------------------------------------------------

needs_tmux = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


class Pane:
    """A detached tmux session on its own server socket, running one command."""

    def __init__(self, tmp_path: Path, command: list[str], width: int, height: int) -> None:
        self.socket = os.fspath(tmp_path / "tmux.sock")
        self.tmux("new-session", "-d", "-s", "t", "-x", str(width), "-y", str(height), "sh")
        self.tmux("set-option", "-t", "t", "remain-on-exit", "on")
        self.tmux("respawn-pane", "-k", "-t", "t", " ".join(_quote(c) for c in command))
        self.pid = int(self.tmux("display-message", "-p", "-t", "t", "#{pane_pid}"))

    def tmux(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-S", self.socket, *args], check=True, capture_output=True, text=True, timeout=30
        ).stdout

    def capture(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "t")

    def wait(self, ok: Callable[[str], bool], timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            text = self.capture()
            if ok(text):
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"pane never showed what was expected; last capture:\n{text}")
            time.sleep(0.05)  # polling another process's screen: nothing to wait on but the capture

    def exit_status(self) -> str | None:
        """ "status N" or "signal N" once the pane's command ended, else None. tmux writes it into the pane
        when it reaps the process; it sometimes leaves the exited process a zombie for a long while, whose
        wait status Linux shows in /proc/PID/stat (the last field)."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:  # reaped: tmux wrote what it found
            text = self.capture()
            if "Pane is dead (" not in text:
                return None
            return text.split("Pane is dead (", 1)[1].split(",", 1)[0]
        if fields[0] != "Z":
            return None
        code = int(fields[-1])
        return f"signal {code & 0x7F}" if code & 0x7F else f"status {code >> 8}"

    def close(self) -> None:
        subprocess.run(["tmux", "-S", self.socket, "kill-server"], capture_output=True, timeout=30)


def _quote(arg: str) -> str:
    return "'" + arg.replace("'", "'\\''") + "'"


@needs_tmux
def test_follow_draws_live_in_tmux_resizes_and_exits_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    path = tmp_path / "run.arrow"
    writer = lossfmt.LossWriter(path)
    for step in range(200):
        writer.add(step, 2.0 / (1 + step / 20))
    writer.flush()
    pane = Pane(tmp_path, [*LOSSVIEW, os.fspath(path), "--follow", "--term"], 100, 30)
    try:
        first = pane.wait(lambda t: "── loss" in t and braille_cells(t) > 50)
        (tmp_path / "frame-1.txt").write_text(first)
        assert "val" not in first
        lines = first.rstrip("\n").split("\n")
        assert "└" in lines[-2] and "┴100" in lines[-2]

        for step in range(200, 2000):  # the run goes on, and logs a new tag
            writer.add(step, 2.0 / (1 + step / 20))
            writer.add(step, 1.5, tag="val")
        writer.flush()
        started = time.monotonic()
        live = pane.wait(lambda t: "── val" in t and "┴1k" in t)
        assert time.monotonic() - started < 1.5  # redrawn within a second of the flush (plus capture)
        (tmp_path / "frame-2.txt").write_text(live)

        pane.tmux("resize-window", "-t", "t", "-x", "60", "-y", "16")
        small = pane.wait(lambda t: len(t.rstrip("\n").split("\n")) <= 16 and "── val" in t)
        assert max(len(line) for line in small.split("\n")) <= 60

        pane.tmux("send-keys", "-t", "t", "C-c")
        deadline = time.monotonic() + 30
        while (status := pane.exit_status()) is None and time.monotonic() < deadline:
            time.sleep(0.05)  # another process's exit: nothing to wait on but its status
        assert status == "status 0"  # exited with status 0, not killed by the signal
        assert braille_cells(pane.capture()) == 0  # the alternate screen is gone: the shell's screen is back
    finally:
        pane.close()
        writer.close()


@needs_tmux
def test_follow_in_tmux_exits_cleanly_on_sigterm(tmp_path: Path) -> None:
    """SIGTERM (kill, timeout, a job manager) killed the live view: exit -15, the terminal left in the
    alternate screen with its cursor hidden."""
    path = tmp_path / "run.arrow"
    with lossfmt.LossWriter(path) as writer:
        for step in range(200):
            writer.add(step, 2.0 / (1 + step / 20))
    pane = Pane(tmp_path, [*LOSSVIEW, os.fspath(path), "--follow", "--term"], 100, 30)
    try:
        pane.wait(lambda t: "── loss" in t and braille_cells(t) > 50)
        os.kill(pane.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while (status := pane.exit_status()) is None and time.monotonic() < deadline:
            time.sleep(0.05)  # another process's exit: nothing to wait on but its status
        assert status == "status 0"
        assert braille_cells(pane.capture()) == 0  # the alternate screen is gone (and the cursor back)
    finally:
        pane.close()


@needs_tmux
def test_one_frame_on_a_terminal_leaves_a_line_for_the_prompt_under_it(tmp_path: Path) -> None:
    """On a terminal the frame was exactly LINES tall and a newline followed: its title scrolled off."""
    path = tmp_path / "run.arrow"
    write_run(path, 300, tags=("loss", "lr"))
    frame = " ".join(_quote(c) for c in [*LOSSVIEW, os.fspath(path), "--term"])
    pane = Pane(tmp_path, ["sh", "-c", f"{frame}; printf 'prompt$ '; sleep 30"], 100, 30)
    try:
        shown = pane.wait(lambda t: "prompt$" in t).rstrip("\n").split("\n")
    finally:
        pane.close()
    assert len(shown) == 30 and shown[0].startswith("run · bold: EMA")
    assert shown[-1] == "prompt$" and "━━ loss" in shown[-2] and "└" in shown[-3]


# --- following: what the live view holds --------------------------------------------------------------------


def test_following_continues_the_smoothing_and_drops_what_a_resume_rewound(tmp_path: Path) -> None:
    path = tmp_path / "run.arrow"
    rng = np.random.default_rng(8)
    values = rng.normal(size=3000)
    view = term.TermView([os.fspath(path)], smooth="steps:40")
    assert not view.poll()  # not written yet
    with lossfmt.LossWriter(path) as w:
        for step in range(1000):
            w.add(step, float(values[step]))
        w.flush()
        assert view.poll()
        for step in range(1000, 3000):
            w.add(step, float(values[step]))
        w.flush()
        assert view.poll()
    view.poll()  # the close compacts the file (a live view polls every quarter second)
    (s,) = view.series.values()
    np.testing.assert_array_equal(s.steps, np.arange(3000))
    np.testing.assert_allclose(s.smoothed, step_ema(values, np.arange(3000), 40.0), rtol=1e-9)

    with lossfmt.LossWriter(path) as w:  # resumed from a checkpoint at step 2500
        for step in range(2500, 2600):
            w.add(step, 5.0)
    assert view.poll()
    (s,) = view.series.values()
    # As transforms.drop_rewound: the old events from step 2500 on are gone (the resume logged it again).
    steps = np.arange(2600)
    np.testing.assert_array_equal(s.steps, steps)
    np.testing.assert_array_equal(s.values[2500:], 5.0)
    want = step_ema(np.concatenate([values[:2500], np.full(100, 5.0)]), steps, 40.0)
    np.testing.assert_allclose(s.smoothed, want, rtol=1e-9)


def test_following_a_glob_or_directory_picks_up_runs_that_appear_later(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    by_glob = term.TermView([f"{tmp_path}/*/seed.arrow"], smooth="none")
    by_dir = term.TermView([os.fspath(tmp_path / "x")], smooth="none")
    assert not by_glob.poll() and not by_dir.poll()  # nothing yet: waiting
    write_run(tmp_path / "x" / "seed.arrow", 50)
    assert by_glob.poll() and by_dir.poll()
    assert [s.label for s in by_glob.series.values()] == ["loss"] and by_glob.title().startswith("seed ·")
    write_run(tmp_path / "y" / "seed.arrow", 30)
    write_run(tmp_path / "x" / "other.arrow", 20)
    assert by_glob.poll() and by_dir.poll()
    # Two seed.arrow files are two runs, labelled apart as lossfmt.read labels them.
    runs = lossfmt.run_labels([os.fspath(tmp_path / d / "seed.arrow") for d in "xy"], ["seed", "seed"])
    assert sorted(s.label for s in by_glob.series.values()) == sorted(f"{r}: loss" for r in runs)
    assert sorted(s.steps.size for s in by_glob.series.values()) == [30, 50]
    assert by_glob.title().startswith("2 runs")
    assert sorted(s.label for s in by_dir.series.values()) == ["other: loss", "seed: loss"]


def test_one_frame_of_a_resumed_file_drops_the_rewound_events(tmp_path: Path) -> None:
    path = tmp_path / "run.arrow"
    write_run(path, 100)
    write_run(path, 10, start=50)  # resumed from a checkpoint at step 50
    view = term.TermView([os.fspath(path)], smooth="none")
    view.load()
    (s,) = view.series.values()
    np.testing.assert_array_equal(s.steps, np.arange(60))
    assert s.smoothed is None


def test_hiding_rewound_events_is_said_once_per_run_in_one_frame_and_following(tmp_path: Path) -> None:
    """Steps restarting each epoch without epoch= drew only the last epoch in the terminal, silently (the
    matplotlib views said so): it is said once per run, in words that fit --term (which refuses
    --keep-rewound)."""
    path = tmp_path / "run.arrow"
    with lossfmt.LossWriter(path) as w:
        for step in [*range(50)] * 3:  # an epoch's steps 0..49, three times, no epoch=
            w.add(step, 1.0)
    with pytest.warns(UserWarning) as frame_said:
        view = term.TermView([os.fspath(path)], smooth="none")
        view.load()
    assert [str(w.message) for w in frame_said] == [
        "run: 'loss' goes back from step 49 to 0: the events that rewind orphans are hidden, as TensorBoard "
        "hides a resumed run's (lossview without --term draws them with --keep-rewound; steps that restart "
        "each epoch draw run-wide with epoch=)"
    ]
    with pytest.warns(UserWarning) as follow_said:
        live = term.TermView([os.fspath(path)], smooth="none")
        live.poll()
        write_run(path, 10)  # a resume from step 0: another rewind, told already
        live.poll()
    said = [
        str(w.message) for w in follow_said if not str(w.message).startswith("lossfmt:")
    ]  # (the resume's)
    assert said == [str(frame_said[0].message)]
    assert next(iter(live.series.values())).steps.tolist() == list(range(10))


def test_the_smoothed_line_stays_visible_inside_the_raw_band() -> None:
    steps = np.arange(100_000)
    values = np.where(steps % 2 == 0, 1.0, -1.0)  # the raw band fills the whole height
    s = term.Series("loss", steps, values, smoothed=np.zeros(100_000))
    rows = term.render([s], 100, 30, color=True).split("\n")[2:-2]
    plain = [_strip_sgr(r)[braille._Y_LABEL + 1 :].strip() for r in rows]
    line = [i for i, r in enumerate(plain) if len(r) > 80 and "⣿" not in r]
    assert len(line) == 1  # one row holds the line: only its dots, not the band's full cells
    assert sum(r.count("⣿") > 80 for r in plain) == len(plain) - 1  # the band everywhere else
    assert "\x1b[0;38;5;33;1m" in rows[line[0]]  # in the bold (smoothed) style
    assert plain[line[0]] == "".join(sorted(set(plain[line[0]]))) * len(plain[line[0]])


def _strip_sgr(text: str) -> str:
    import re

    return re.sub("\x1b\\[[0-9;]*m", "", text)


def test_steps_that_restart_each_epoch_are_drawn_run_wide_while_following_and_in_one_frame(
    tmp_path: Path,
) -> None:
    path = tmp_path / "loader.arrow"
    view = term.TermView([os.fspath(path)], smooth="none")
    with lossfmt.LossWriter(path) as w:  # for step, batch in enumerate(loader), one flush per half epoch
        for epoch in range(3):
            for half in (range(5), range(5, 10)):
                for step in half:
                    w.add(step, float(epoch), epoch=epoch)
                w.flush()
                view.poll()
        w.add(4, 9.0, epoch=1)  # then a resume from the checkpoint at epoch 1, step 4
        w.flush()
        view.poll()
    (s,) = view.series.values()
    np.testing.assert_array_equal(s.steps, np.arange(15))  # it and everything after it rewound
    frame = term.TermView([os.fspath(path)], smooth="none")
    frame.load()
    (one,) = frame.series.values()
    np.testing.assert_array_equal(one.steps, np.arange(15))


def test_a_global_step_resume_with_its_epoch_back_at_zero_draws_in_one_frame(tmp_path: Path) -> None:
    path = tmp_path / "run.arrow"
    with lossfmt.LossWriter(path) as w:
        for step in range(300):
            w.add(step, 1.0, epoch=step // 100)
    with lossfmt.LossWriter(path) as w:  # global_step restored (250), the epoch loop started over at 0
        for step in range(250, 400):
            w.add(step, 2.0, epoch=(step - 250) // 100)
    frame = term.TermView([os.fspath(path)], smooth="none")
    frame.load()  # it raised in decimate: the kept steps went back
    (s,) = frame.series.values()
    np.testing.assert_array_equal(s.steps, np.arange(400))
    assert "loss" in term.render(list(frame.series.values()), 80, 20, color=False)


# --- following: files that come, go and are not runs --------------------------------------------------------


def _wait_for(path: Path, text: str, proc: subprocess.Popen[str], timeout: float = 30.0) -> str:
    """What `proc` wrote to `path` once it contains `text` (fails if it exits first or never does)."""
    deadline = time.monotonic() + timeout
    while True:
        got = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
        if text in got:
            return got
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"never showed {text!r} (exit status {proc.poll()}); last output:\n{got}")
        time.sleep(0.05)  # another process's output: nothing to wait on but the file


def test_following_a_directory_skips_a_stray_arrow_file_and_drops_a_run_that_leaves(tmp_path: Path) -> None:
    runs = tmp_path / "g2"
    write_run(runs / "a.arrow", 100)
    write_run(runs / "b.arrow", 100)
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    with out.open("w") as stdout, err.open("w") as stderr:
        proc = subprocess.Popen(
            [*LOSSVIEW, os.fspath(runs), "--follow", "--term"],
            stdout=stdout,
            stderr=stderr,
            text=True,
            env={**os.environ, "COLUMNS": "100", "LINES": "20"},
        )
    try:
        _wait_for(out, "2 runs · bold", proc)
        (runs / "e.arrow").write_bytes(b"ARROW1\0\0x")  # an Arrow-looking file that is no run
        _wait_for(out, "2 runs · cannot read e.arrow · bold", proc)
        (runs / "b.arrow").unlink()
        frames = _wait_for(out, "a · cannot read e.arrow · bold", proc)
        assert "━━ loss" in frames.rstrip("\n").rsplit("\n", 1)[-1]  # one run left: its tag alone
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    warned = err.read_text().splitlines()
    assert warned == [
        f"lossview: warning: {runs / 'e.arrow'}: not a lossfmt file (no schema message at byte 8): skipped"
    ]


def test_a_followed_file_that_disappears_is_noted_in_the_title_until_it_is_back(tmp_path: Path) -> None:
    path = tmp_path / "run.arrow"
    write_run(path, 100)
    view = term.TermView([os.fspath(path)], smooth="none", title="mine")
    other = term.TermView([os.fspath(path)], smooth="none")
    assert view.poll() and other.poll()
    assert other.title() == "run · raw"
    path.rename(tmp_path / "moved.arrow")
    with pytest.warns(UserWarning, match="file gone"):
        assert view.poll()
    with pytest.warns(UserWarning, match="file gone"):
        other.poll()
    assert view.title() == "mine · file gone, waiting"
    assert other.title().startswith("run · file gone, waiting · raw")
    assert [s.steps.size for s in view.series.values()] == [100]  # its last events stay drawn
    assert not view.poll()  # nothing new while it is gone
    write_run(path, 30)  # a new run at the same path
    assert view.poll()
    assert view.title() == "mine"
    assert [s.steps.size for s in view.series.values()] == [30]


def test_a_run_that_leaves_a_followed_glob_is_dropped_from_the_terminal_view(tmp_path: Path) -> None:
    for name in ("a", "b"):
        write_run(tmp_path / f"{name}.arrow", 50)
    view = term.TermView([f"{tmp_path}/*.arrow"], smooth="none")
    assert view.poll()
    assert sorted(s.label for s in view.series.values()) == ["a: loss", "b: loss"]
    (tmp_path / "b.arrow").rename(tmp_path / "b.old")
    assert view.poll()
    assert [s.label for s in view.series.values()] == ["loss"] and view.title().startswith("a · ")


def test_the_terminal_labels_runs_by_their_stored_name_as_every_other_view(tmp_path: Path) -> None:
    with lossfmt.LossWriter(tmp_path / "nested" / "x.arrow", run="nested") as w:
        for step in range(100):
            w.add(step, 1.0 / (1 + step))
    group = tmp_path / "g"
    group.mkdir()
    (group / "link.arrow").symlink_to(tmp_path / "nested" / "x.arrow")
    shutil.copy(tmp_path / "nested" / "x.arrow", group / "renamed.arrow")
    summary = subprocess.run(
        [*LOSSVIEW, "summary", os.fspath(group), "--json"], capture_output=True, text=True, timeout=60
    )
    names = [row["run"] for row in json.loads(summary.stdout)]
    assert names == ["nested (link)", "nested (renamed)"]
    frame = term_frame(os.fspath(group), columns=100, lines=20)
    assert frame.returncode == 0, frame.stderr
    assert frame.stdout.rstrip("\n").rsplit("\n", 1)[-1].split() == [
        "──", "nested", "(link):", "loss", "──", "nested", "(renamed):", "loss"
    ]  # fmt: skip
    live = term.TermView([os.fspath(group)], smooth="none")
    live.poll()
    assert [s.label for s in live.series.values()] == [f"{n}: loss" for n in names]
    one = tmp_path / "one"
    one.mkdir()
    (one / "link.arrow").symlink_to(tmp_path / "nested" / "x.arrow")
    alone = term.TermView([os.fspath(one)], smooth="none")
    alone.poll()
    assert alone.title().startswith("nested · ")  # the stored name, not the file's


def test_following_purges_a_resume_whose_poll_first_went_on_then_back(tmp_path: Path) -> None:
    path = tmp_path / "run.arrow"
    view = term.TermView([os.fspath(path)], smooth="none")
    with lossfmt.LossWriter(path, flush_secs=3600) as w:
        for step in range(4):
            w.add(step, float(step))
        w.flush()
        view.poll()
        w.add(4, 4.0)
        w.add(5, 5.0)
    with lossfmt.LossWriter(path) as w:  # resumed from step 3: the next poll holds 4, 5, then 3
        w.add(3, 103.0)
    view.poll()
    (s,) = view.series.values()
    frame = term.TermView([os.fspath(path)], smooth="none")
    frame.load()
    (one,) = frame.series.values()
    assert s.steps.tolist() == one.steps.tolist() == [0, 1, 2, 3]  # as drop_rewound: 3, 4, 5 orphaned
    assert s.values.tolist() == one.values.tolist() == [0.0, 1.0, 2.0, 103.0]


@needs_tmux
def test_make_demo_on_a_terminal_without_a_display_follows_the_run_in_it(tmp_path: Path) -> None:
    """`make demo` over SSH trained in silence, and its hint (`lossview ... --follow`) needed a window: it now
    draws the run live in the terminal while it trains, then renders the PNG."""
    demo = Path(__file__).resolve().parent.parent / "examples" / "run_demo.py"
    command = [
        "env",
        "-u",
        "DISPLAY",
        "-u",
        "WAYLAND_DISPLAY",
        "MPLBACKEND=",
        sys.executable,
        os.fspath(demo),
    ]
    pane = Pane(
        tmp_path,
        [
            "sh",
            "-c",
            f"cd {_quote(os.fspath(tmp_path))} && "
            + " ".join(map(_quote, command))
            + " --epochs 40 --sleep 0.01",
        ],
        100,
        30,
    )
    try:
        live = pane.wait(lambda t: "━━ loss" in t and "── val" in t and braille_cells(t) > 50, timeout=60)
        assert live.startswith("demo · ")
        deadline = time.monotonic() + 120
        while (status := pane.exit_status()) is None and time.monotonic() < deadline:
            time.sleep(0.1)  # another process's exit: nothing to wait on but its status
        assert status == "status 0"
        assert (tmp_path / "runs" / "demo.png").read_bytes().startswith(b"\x89PNG")
    finally:
        pane.close()


def test_a_value_far_beyond_a_fixed_range_is_drawn_up_to_its_edge_without_a_warning() -> None:
    """1e308 among values of 1 under --ylim 0 2 printed numpy's "overflow encountered in multiply"."""
    values = np.ones(100)
    values[50] = 1e308
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        frame = term.render([term.Series("loss", np.arange(100), values)], 80, 20, color=False, ylim=(0, 2))
    plot = [line[braille._Y_LABEL + 1 :] for line in frame.split("\n")[2:-2]]
    assert 1 <= braille_cells(plot[0]) <= 2  # the spike, cut at the top edge


def _noisy_loss_and_lr(path: Path, *, run: str | None = None, n: int = 400) -> None:
    rng = np.random.default_rng(0)
    with lossfmt.LossWriter(path, run=run) as w:
        for step in range(n):
            w.add(step, 2.0 / (1 + step / 50) + 0.2 * rng.random())
            w.add(step, 1e-3 * min(1.0, (step + 1) / 50) * (1 - step / n), tag="lr")  # warmup, then decay


def test_the_default_smoothing_leaves_a_schedule_raw_as_every_view_does(tmp_path: Path) -> None:
    """--term smoothed every tag: an lr schedule was a lagging bold EMA over its raw line (the PNG draws it
    raw); a run with nothing noisy said "bold: EMA" of nothing."""
    _noisy_loss_and_lr(tmp_path / "run.arrow")
    frame = term.render(_view(tmp_path / "run.arrow").series.values(), 100, 30, color=False)
    assert frame.split("\n")[-1] == "━━ loss  ── lr"  # the loss smoothed (bold), the lr raw
    explicit = term.TermView([os.fspath(tmp_path / "run.arrow")], smooth="ema:0.9")
    explicit.load()
    assert all(s.smoothed is not None for s in explicit.series.values())
    with lossfmt.LossWriter(tmp_path / "clean.arrow") as w:
        for step in range(300):
            w.add(step, 1.0 / (1 + step))
    assert _view(tmp_path / "clean.arrow").title() == "clean · raw"


def _view(path: Path) -> term.TermView:
    view = term.TermView([os.fspath(path)])
    view.load()
    return view


def test_a_constant_tag_is_drawn_on_its_own_scale(tmp_path: Path) -> None:
    """A constant lr of 1e-3 was drawn on a 0..1 axis (range padded by 0.5): ticks 0 and 0.5 beside it."""
    steps = np.arange(200)
    frame = term.render([term.Series("lr", steps, np.full(200, 1e-3))], 60, 16, color=False)
    labels = [float(label) for label in _y_labels(frame)]
    assert labels and all(0.0009 <= v <= 0.0011 for v in labels), labels


def _colours(frame: str) -> dict[str, int]:
    """Legend entries' colours by their text."""
    legend = frame.split("\n")[-1]
    return {
        text: int(code)
        for code, text in re.findall("38;5;([0-9]+);1m[^\x1b]*\x1b\\[0m ([^\x1b]+?)(?:  |$)", legend)
    }


def test_a_runs_colour_stays_when_another_run_joins_a_followed_directory(tmp_path: Path) -> None:
    """Colours were dealt from the runs of each frame: a run joining (or leaving) changed the others'."""
    runs = tmp_path / "runs"
    _noisy_loss_and_lr(runs / "b.arrow", run="b")
    view = term.TermView([os.fspath(runs)])
    view.poll()
    before = _colours(term.render(view.series.values(), 120, 30, color=True, compare=view.compare))
    _noisy_loss_and_lr(runs / "a.arrow", run="a")  # sorts first in the directory
    view.poll()
    after = _colours(term.render(view.series.values(), 120, 30, color=True, compare=view.compare))
    assert before["loss"] == before["lr"] == after["b: loss"] == after["b: lr"]  # (alone, named by tag)
    assert after["a: loss"] != after["b: loss"]


def test_a_fixed_range_must_be_finite(tmp_path: Path) -> None:
    """`--ylim 0 inf` crashed with an IndexError deep in the renderer (and matplotlib's in -o)."""
    path = tmp_path / "run.arrow"
    write_run(path, 10)
    for option in (["--term"], ["-o", os.fspath(tmp_path / "x.png")]):
        done = subprocess.run(
            [*LOSSVIEW, os.fspath(path), *option, "--ylim", "0", "inf"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2 and done.stderr == (
            "lossview: error: --ylim: LO and HI must be finite numbers (got 0 inf)\n"
        )


def test_an_explicit_lines_is_kept_when_stdout_is_a_pipe(tmp_path: Path) -> None:
    """A pipe's frame is at most 30 lines (a CI log), but `LINES=60` was capped at 30 too."""
    path = tmp_path / "run.arrow"
    write_run(path, 300)
    done = term_frame(os.fspath(path), columns=120, lines=60)
    assert done.returncode == 0 and len(done.stdout.rstrip("\n").split("\n")) == 60


def test_ticks_of_a_narrow_range_have_the_digits_that_tell_them_apart() -> None:
    """Values of 1.00001 to 1.00003 got the one label "1" (four digits): the noise looked like the whole
    range; --ylim 0.5 0.50001 gave two labels both reading 0.5."""
    steps = np.arange(500)
    values = 1.00001 + 2e-5 * (np.sin(steps) + 1) / 2
    labels = _y_labels(term.render([term.Series("loss", steps, values)], 80, 16, color=False))
    assert labels and all(1.00001 <= float(label) <= 1.00003 for label in labels), labels
    fixed = _y_labels(
        term.render([term.Series("loss", steps, values)], 80, 24, color=False, ylim=(0.5, 0.50001))
    )
    assert len(set(fixed)) == len(fixed) >= 2, fixed


def test_wide_characters_take_two_columns_in_the_frame() -> None:
    """CJK names were measured by len(): the title wrapped off a 40-column terminal, and a panel named in CJK
    shifted its row of non-finite marks off the x axis' columns."""
    steps = np.arange(500)
    lr = 1e-3 * (1 - steps / 500)
    lr[250] = math.nan
    series = [term.Series("loss", steps, 2.0 / (1 + steps / 50)), term.Series("学习率", steps, lr)]
    frame = term.render(series, 40, 12, color=False, title="实验运行名称很长的一个实验")
    lines = frame.split("\n")
    assert all(braille._width(line) <= 40 for line in lines)
    (marks,) = [line for line in lines[1:] if "×" in line]  # (the title has the marks' key)
    assert marks.startswith("   学习率 ") and braille._width(marks[: marks.index("×")]) in range(21, 25)


def test_long_run_names_are_shortened_in_the_legend_not_left_out() -> None:
    """Two runs with 85-character names: the legend was "… 4 more", naming none."""
    steps = np.arange(100)
    long = "an_extremely_long_run_name_" * 3
    series = [
        term.Series(f"{long}{i}: loss", steps, steps * 0.01 + i, tag="loss", run=f"{long}{i}")
        for i in range(2)
    ]
    legend = term.render(series, 100, 30, color=False).split("\n")[-1]
    assert legend.count("…") == 2 and legend.count(": loss") == 2 and braille._width(legend) <= 100
