"""`lossview FILE --follow` in a real Tk window on a virtual X screen (Xvfb), watched by screenshots.

The viewer runs as a user would run it (a subprocess, TkAgg, DISPLAY set); the run it follows is written
by a LossWriter in this process so each growth step is known to be on disk (``flush()``) before we look.
"""

from __future__ import annotations

import math
import signal
from pathlib import Path

from guiharness import Viewer, Xvfb, close_window, count_changed, count_color, top_level_windows, wait_for
from lossview.plot import COLORS

from lossfmt import LossWriter

#: Solid pixels of a colour that mean "a curve of that colour is drawn" (a full-width line has ~1000).
LINE_PIXELS = 150
STARTUP = 25.0  # python + matplotlib + Tk start, first read and draw, on a busy 2-core machine
REDRAW = 10.0


def _train(writer: LossWriter, steps: range) -> None:
    for step in steps:
        writer.add(step, 2.0 * math.exp(-step / 30) + 0.3 + 0.05 * math.sin(step))


def _window(screen: Xvfb, viewer: Viewer) -> int:
    """Wait for the viewer's top-level window; its X id."""

    def named_window() -> int | None:
        viewer.assert_alive()
        return next(iter(top_level_windows(screen.display)), None)

    return wait_for(named_window, timeout=STARTUP, what="the lossview window to be mapped")


def _shows(screen: Xvfb, viewer: Viewer, color: str, *, timeout: float, what: str):
    def check():
        viewer.assert_alive()
        shot = screen.grab()
        return shot if count_color(shot, color) >= LINE_PIXELS else None

    return wait_for(check, timeout=timeout, what=what, interval=0.25)


def _window_env(screen: Xvfb) -> dict[str, str]:
    return {"DISPLAY": screen.display, "MPLBACKEND": "TkAgg"}


def test_window_redraws_as_the_run_grows_and_sigint_exits_cleanly(xvfb: Xvfb, tmp_path: Path) -> None:
    path = tmp_path / "run.arrow"
    with LossWriter(path, flush_secs=0.2) as writer:
        _train(writer, range(60))
        writer.flush()
        with Viewer([str(path), "--follow"], env=_window_env(xvfb)) as viewer:
            _window(xvfb, viewer)
            before = _shows(
                xvfb, viewer, COLORS[0], timeout=STARTUP, what="the loss curve to be drawn in the window"
            )
            assert count_color(before, COLORS[1]) < LINE_PIXELS, "a second curve before a second tag exists"

            _train(writer, range(60, 150))
            for step in range(10, 150, 10):
                writer.add(step, 1.5 * math.exp(-step / 60) + 0.4, "val")
            writer.flush()
            after = _shows(
                xvfb, viewer, COLORS[1], timeout=REDRAW, what="the window to redraw with the new 'val' curve"
            )
            assert count_changed(before, after) > 2000, "the plot did not change as the run grew"
            assert count_color(after, COLORS[0]) >= LINE_PIXELS, "the loss curve vanished on redraw"

            viewer.assert_clean_exit(viewer.stop(signal.SIGINT))
    assert not top_level_windows(xvfb.display), "the window outlived the viewer"


def test_sigterm_closes_the_window_with_status_0(xvfb: Xvfb, tmp_path: Path) -> None:
    path = tmp_path / "run.arrow"
    with LossWriter(path) as writer:
        _train(writer, range(100))
    with Viewer([str(path), "--follow"], env=_window_env(xvfb)) as viewer:
        _window(xvfb, viewer)
        _shows(xvfb, viewer, COLORS[0], timeout=STARTUP, what="the loss curve to be drawn in the window")
        viewer.assert_clean_exit(viewer.stop(signal.SIGTERM))


def test_closing_the_window_ends_the_viewer_with_status_0(xvfb: Xvfb, tmp_path: Path) -> None:
    path = tmp_path / "run.arrow"
    with LossWriter(path) as writer:
        _train(writer, range(100))
    with Viewer([str(path), "--follow"], env=_window_env(xvfb)) as viewer:
        window = _window(xvfb, viewer)
        _shows(xvfb, viewer, COLORS[0], timeout=STARTUP, what="the loss curve to be drawn in the window")
        close_window(xvfb.display, window)
        viewer.assert_clean_exit(
            viewer.wait(timeout=10.0, what="lossview to exit after its window was closed")
        )
