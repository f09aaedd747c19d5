"""lossview --term as the PNG draws it: lines clipped to a --ylim range (never a flat run along its edge),
the --logy warning about values a log axis leaves out, and frames that fit a narrow terminal."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from test_term import LOSSVIEW, Pane, _wait_for, braille_cells, needs_tmux, term_frame

import lossfmt
from lossview import braille, term


def _plot_rows(frame: str) -> list[str]:
    """The cell rows of a frame, without the y gutter."""
    gutter = braille._Y_LABEL
    return [line[gutter + 1 :] for line in frame.split("\n") if len(line) > gutter and line[gutter] in "┤│"]


def _columns_drawn(rows: list[str]) -> list[int]:
    return [c for c in range(max(map(len, rows))) if any(c < len(r) and braille_cells(r[c]) for r in rows)]


def _linear_run(path: Path, n: int = 101) -> None:
    with lossfmt.LossWriter(path) as w:
        for step in range(n):
            w.add(step, float(step))


@pytest.mark.parametrize("smoothed", [False, True])
@pytest.mark.parametrize("color", [False, True])
def test_a_fixed_range_clips_the_line_instead_of_running_it_along_its_edge(
    smoothed: bool, color: bool
) -> None:
    """0..100 under --ylim 25 50 was a flat line along the top edge from step 50 on (and along the bottom
    up to step 25): it read as a loss that plateaued at 50."""
    steps = np.arange(101)
    values = steps.astype(float)
    s = term.Series("loss", steps, values, smoothed=values.copy() if smoothed else None)
    frame = term.render([s], 70, 16, color=color, ylim=(25.0, 50.0))
    rows = _plot_rows(re.sub(r"\x1b\[[0-9;]*m", "", frame))
    assert len(rows) >= 10
    assert braille_cells(rows[0]) <= 3 and braille_cells(rows[-1]) <= 3  # crossing the edges, not along
    drawn = _columns_drawn(rows)
    cols = len(rows[0])
    # Steps 25..50 of 0..100: the second quarter of the columns, and nothing outside it.
    assert drawn and drawn[0] >= cols * 0.25 - 2 and drawn[-1] <= cols * 0.5 + 2
    assert len(drawn) >= cols * 0.25 - 2  # the line in range is all there
    for r, row in enumerate(rows):  # from the bottom edge to the top one: a line, no gap
        assert braille_cells(row), f"row {r} has no dot"


def test_values_beyond_a_fixed_range_on_both_sides_are_left_out_but_a_line_across_it_stays() -> None:
    steps = np.arange(400)
    values = np.where(steps < 100, 5.0, np.where(steps < 200, -5.0, 0.5))  # above, below, then inside
    values[300] = 10.0  # a spike out of the range: drawn up to the edge and back
    frame = term.render([term.Series("loss", steps, values)], 80, 20, color=False, ylim=(0.0, 1.0))
    rows = _plot_rows(frame)
    cols = len(rows[0])
    assert set(_columns_drawn(rows)) <= set(range(cols // 4 - 2, cols))  # nothing while above (steps < 100)
    assert braille_cells(rows[-1]) <= 3  # from above to below: crossed once, not drawn along the bottom
    assert 1 <= braille_cells(rows[0]) <= 3  # the crossing and the spike reach the top, no run along it
    middle = next(r for r, row in enumerate(rows) if braille_cells(row) >= cols // 3)  # the 0.5 run
    assert abs(middle - 0.5 * (len(rows) - 1)) <= 1


def test_a_log_axis_with_a_fixed_range_clips_too() -> None:
    steps = np.arange(1000)
    values = 10.0 ** (2 - steps / 250)  # 100 down to 0.0001
    frame = term.render([term.Series("loss", steps, values)], 80, 20, color=False, logy=True, ylim=(0.1, 10))
    rows = _plot_rows(frame)
    cols = len(rows[0])
    drawn = _columns_drawn(rows)
    assert drawn[0] >= cols * 0.25 - 2 and drawn[-1] <= cols * 0.75 + 2  # 10 at step 250, 0.1 at 750
    assert braille_cells(rows[0]) <= 3 and braille_cells(rows[-1]) <= 3


def test_the_command_line_repro_of_a_fixed_range_draws_no_plateau(tmp_path: Path) -> None:
    path = tmp_path / "lin.arrow"
    _linear_run(path)
    done = term_frame(os.fspath(path), "--ylim", "25", "50", columns=70, lines=16)
    assert done.returncode == 0, done.stderr
    rows = _plot_rows(done.stdout)
    assert braille_cells(rows[0]) <= 3 and braille_cells(rows[-1]) <= 3


# --- --logy: the values it leaves out are said, as the PNG says them ----------------------------------------


def _with_nonpositive(path: Path) -> None:
    with lossfmt.LossWriter(path) as w:
        for step in range(101):
            w.add(step, float(step - 50))


def test_a_log_axis_in_the_terminal_warns_as_the_png_does_of_values_it_leaves_out(tmp_path: Path) -> None:
    path = tmp_path / "neg.arrow"
    _with_nonpositive(path)
    done = term_frame(os.fspath(path), "--logy", columns=80, lines=20)
    assert done.returncode == 0, done.stderr
    said = (
        "lossview: warning: --logy: 51 values of loss are zero or negative (the first at step 0): "
        "a log axis does not draw them\n"
    )
    assert done.stderr == said
    png = subprocess.run(
        [*LOSSVIEW, os.fspath(path), "--logy", "-o", os.fspath(tmp_path / "neg.png")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "MPLBACKEND": "Agg"},
    )
    assert png.returncode == 0 and png.stderr == said  # the same words in both views
    quiet = term_frame(os.fspath(path), columns=80, lines=20)
    assert quiet.returncode == 0 and quiet.stderr == ""  # a linear axis draws them: nothing to say


def test_a_followed_run_warns_once_of_values_a_log_axis_leaves_out(tmp_path: Path) -> None:
    path = tmp_path / "neg.arrow"
    writer = lossfmt.LossWriter(path)
    for step in range(50):
        writer.add(step, 1.0 + step)
    writer.flush()
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    env = {**os.environ, "COLUMNS": "80", "LINES": "20"}
    with out.open("w") as stdout, err.open("w") as stderr:
        command = [*LOSSVIEW, os.fspath(path), "--follow", "--term", "--logy", "--poll", "0.05"]
        proc = subprocess.Popen(command, stdout=stdout, stderr=stderr, text=True, env=env)
        try:
            _wait_for(out, "── loss", proc)
            for step in range(50, 60):
                writer.add(step, -1.0)
            writer.flush()
            _wait_for(err, "zero or negative", proc)
            for step in range(60, 70):  # more of them, in a later poll: said once
                writer.add(step, 0.0)
            writer.flush()
            size = out.stat().st_size
            deadline = time.monotonic() + 30
            while out.stat().st_size == size and time.monotonic() < deadline:
                time.sleep(0.05)  # another process's output: nothing to wait on but the file
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
            writer.close()
    said = err.read_text()
    assert said.count("warning") == 1, said
    assert "10 values of loss are zero or negative (the first at step 50)" in said


# --- a narrow terminal --------------------------------------------------------------------------------------


def _busy() -> list[term.Series]:
    """Curves that fill every part of a frame: two runs, a tag of its own scale, a NaN, long names."""
    steps = np.arange(500)
    out = []
    for run in ("a-very-long-run-name-of-a-sweep", "b"):
        loss = 2.0 / (1 + steps / 50)
        loss[250] = np.nan
        out.append(term.Series(f"{run}: loss", steps, loss, smoothed=loss.copy(), tag="loss", run=run))
        out.append(term.Series(f"{run}: lr", steps, np.full(500, 1e-4), tag="lr", run=run))
    return out


def _visible(line: str) -> int:
    return braille._width(re.sub(r"\x1b\[[0-9;]*m", "", line))


@pytest.mark.parametrize("color", [False, True])
@pytest.mark.parametrize("logy", [False, True])
def test_every_line_of_a_frame_fits_the_terminal_however_narrow(color: bool, logy: bool) -> None:
    """At 10 columns the gutter and the tick labels made lines of 18-23 columns, which wrapped."""
    for width in range(1, 60):
        frame = term.render(_busy(), width, 20, color=color, title="a long title " * 4, logy=logy)
        wide = [line for line in frame.split("\n") if _visible(line) > width]
        assert not wide, f"{width} columns: {wide}"
    assert term.render(_busy(), 10, 20, color=False) == "too narrow"
    assert "needs 23 columns" in term.render(_busy(), 22, 20, color=False)
    assert braille_cells(term.render(_busy(), 23, 20, color=False)) > 0  # the narrowest that draws
    for empty in ([], [term.Series("loss", np.arange(3), -np.ones(3))]):
        frame = term.render(empty, 12, 20, color=False, title="a long title", logy=True)
        assert all(_visible(line) <= 12 for line in frame.split("\n")), frame


def test_one_frame_in_a_narrow_terminal_fits_it(tmp_path: Path) -> None:
    path = tmp_path / "lin.arrow"
    _linear_run(path)
    for columns in (10, 30):
        done = term_frame(os.fspath(path), columns=columns, lines=16)
        assert done.returncode == 0, done.stderr
        assert max(_visible(line) for line in done.stdout.split("\n")) <= columns, done.stdout


@needs_tmux
def test_following_in_a_pane_narrowed_to_ten_columns_never_wraps(tmp_path: Path) -> None:
    path = tmp_path / "run.arrow"
    _linear_run(path, 300)
    pane = Pane(tmp_path, [*LOSSVIEW, os.fspath(path), "--follow", "--term"], 60, 16)
    try:
        pane.wait(lambda t: "── loss" in t and braille_cells(t) > 20)
        pane.tmux("resize-window", "-t", "t", "-x", "10", "-y", "16")
        narrow = pane.wait(lambda t: "too narrow" in t)
        assert narrow.split("\n")[0] == "too narrow"  # one line, not a frame wrapped over the pane
        assert braille_cells(narrow) == 0
        pane.tmux("resize-window", "-t", "t", "-x", "30", "-y", "16")
        back = pane.wait(lambda t: "── loss" in t)
        assert braille_cells(back) > 10
        assert max(_visible(line) for line in back.split("\n")) <= 30
    finally:
        pane.close()
