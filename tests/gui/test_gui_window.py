"""`lossview FILE --follow` in a real Tk window on a virtual X screen (Xvfb), watched by screenshots.

The viewer runs as a user would run it (a subprocess, TkAgg, DISPLAY set); the run it follows is written
by a LossWriter in this process, so each growth step is on disk (``flush()``) before we look.
"""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
from guiharness import (
    LINE_PIXELS,
    REDRAW,
    STARTUP,
    Viewer,
    Xvfb,
    close_window,
    count_changed,
    count_color,
    log_run,
    longest_horizontal_run,
    pointer,
    top_level_windows,
    wait_for,
    wait_for_curve,
)

from lossfmt import LossWriter
from lossview.plot import COLORS


def _open_window(screen: Xvfb, path: Path) -> Viewer:
    return Viewer([str(path), "--follow"], env={"DISPLAY": screen.display, "MPLBACKEND": "TkAgg"})


def _mapped(screen: Xvfb, viewer: Viewer) -> int:
    """Wait for the viewer's top-level window to be on the screen and painted; its X id."""

    def window() -> int | None:
        viewer.assert_alive()
        ids = list(top_level_windows(screen.display))
        painted = count_color(screen.grab(), "#ffffff") > 100_000  # the figure's white face
        return ids[0] if ids and painted else None

    return wait_for(window, timeout=STARTUP, what="the lossview window to be mapped and painted")


def test_window_waits_for_the_run_redraws_as_it_grows_and_sigint_exits_cleanly(
    xvfb: Xvfb, tmp_path: Path
) -> None:
    path = tmp_path / "run.arrow"
    with _open_window(xvfb, path) as viewer:
        _mapped(xvfb, viewer)
        assert count_color(xvfb.grab(), COLORS[0]) < LINE_PIXELS, "a curve before the run exists"
        with LossWriter(path, flush_secs=0.2) as writer:
            log_run(writer, range(60))
            writer.flush()
            before = wait_for_curve(
                xvfb.grab, viewer, COLORS[0], timeout=REDRAW, what="the window to draw the new run's loss"
            )
            assert count_color(before, COLORS[1]) < LINE_PIXELS, "a second curve before a second tag exists"

            log_run(writer, range(60, 150), val_every=10)
            writer.flush()
            after = wait_for_curve(
                xvfb.grab, viewer, COLORS[1], timeout=REDRAW, what="the window to redraw with a 'val' curve"
            )
            assert count_changed(before, after) > 2000, "the plot did not change as the run grew"
            assert count_color(after, COLORS[0]) >= LINE_PIXELS, "the loss curve vanished on redraw"

            viewer.assert_clean_exit(viewer.stop(signal.SIGINT))
    assert not top_level_windows(xvfb.display), "the window outlived the viewer"


def test_sigterm_closes_the_window_with_status_0(xvfb: Xvfb, tmp_path: Path) -> None:
    path = tmp_path / "run.arrow"
    with LossWriter(path) as writer:
        log_run(writer, range(100))
    with _open_window(xvfb, path) as viewer:
        _mapped(xvfb, viewer)
        wait_for_curve(xvfb.grab, viewer, COLORS[0], timeout=STARTUP, what="the loss curve in the window")
        viewer.assert_clean_exit(viewer.stop(signal.SIGTERM))


def test_closing_the_window_ends_the_viewer_with_status_0(xvfb: Xvfb, tmp_path: Path) -> None:
    path = tmp_path / "run.arrow"
    with LossWriter(path) as writer:
        log_run(writer, range(100))
    with _open_window(xvfb, path) as viewer:
        window = _mapped(xvfb, viewer)
        wait_for_curve(xvfb.grab, viewer, COLORS[0], timeout=STARTUP, what="the loss curve in the window")
        close_window(xvfb.display, window)
        viewer.assert_clean_exit(viewer.wait(timeout=10.0, what="lossview to exit once its window closed"))


def test_window_hover_reads_values_and_a_legend_click_hides_a_curve(xvfb: Xvfb, tmp_path: Path) -> None:
    path = tmp_path / "run.arrow"
    with LossWriter(path) as writer:
        log_run(writer, range(300))
        for step in range(0, 300, 30):  # a steep 'val': the only horizontal run of its colour is its handle
            writer.add(step, 0.5 + step / 100, "val")
    with _open_window(xvfb, path) as viewer:
        _mapped(xvfb, viewer)
        shown = wait_for_curve(xvfb.grab, viewer, COLORS[1], timeout=REDRAW, what="the val curve")
        face = np.asarray(shown).min(axis=2) > 250  # the window: the white figure face on a black root
        rows, cols = np.flatnonzero(face.any(axis=1)), np.flatnonzero(face.any(axis=0))
        top, bottom, left, right = int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])
        pointer(xvfb.display, (left + right) // 2, (top + bottom) // 2)
        corner = (left, top + (bottom - top) * 6 // 10, left + (right - left) * 6 // 10, bottom)

        def readout():
            viewer.assert_alive()
            shot = xvfb.grab()
            return shot if count_changed(shown.crop(corner), shot.crop(corner)) > 300 else None

        hovered = wait_for(readout, timeout=REDRAW, what="the hover readout to appear")
        length, row, col = longest_horizontal_run(hovered, COLORS[1])
        assert length >= 8, "no legend handle found for 'val'"
        before = count_color(hovered, COLORS[1])
        pointer(xvfb.display, col + length // 2, row, click=True)

        def hidden():
            viewer.assert_alive()
            shot = xvfb.grab()
            return shot if count_color(shot, COLORS[1]) < before / 3 else None

        wait_for(hidden, timeout=REDRAW, what="a legend click to hide the val curve")
        viewer.assert_clean_exit(viewer.stop(signal.SIGINT))
