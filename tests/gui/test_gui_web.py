"""`lossview FILE --follow --web PORT` seen through headless Chromium: loopback only, live, clean exit."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

import pytest
from guiharness import (
    LINE_PIXELS,
    REDRAW,
    STARTUP,
    Chromium,
    Viewer,
    count_changed,
    count_color,
    free_port,
    http_get,
    listening_addresses,
    log_run,
    longest_horizontal_run,
    require,
    wait_for,
    wait_for_curve,
)

from lossfmt import LossWriter
from lossview.plot import COLORS


@pytest.fixture(autouse=True)
def _tornado() -> None:
    try:
        import tornado  # noqa: F401
    except ImportError:
        require(False, "tornado is not installed (lossview --web needs it: pip install 'lossfmt[web]')")


def _serving(viewer: Viewer, port: int) -> str:
    """Wait until the viewer answers HTTP on 127.0.0.1:port; the page's HTML."""

    def page() -> str | None:
        viewer.assert_alive()
        status, body = http_get(f"http://127.0.0.1:{port}/")
        return body if status == 200 else None

    return wait_for(page, timeout=STARTUP, what=f"lossview --web to answer on 127.0.0.1:{port}")


def test_web_serves_the_live_figure_on_loopback_and_sigint_exits_cleanly(
    chromium: str, tmp_path: Path
) -> None:
    path = tmp_path / "run.arrow"
    port = free_port()
    with LossWriter(path, flush_secs=0.2) as writer:
        log_run(writer, range(60))
        writer.flush()
        with Viewer([str(path), "--follow", "--web", str(port)]) as viewer:
            assert "mpl.js" in _serving(viewer, port), "not matplotlib's WebAgg page"
            assert listening_addresses(port) == {"127.0.0.1"}, "--web must listen on loopback only"

            with Chromium(chromium) as browser:
                browser.open(f"http://127.0.0.1:{port}/")
                before = wait_for_curve(
                    browser.screenshot, viewer, COLORS[0], timeout=STARTUP, what="the loss curve in the page"
                )
                assert count_color(before, COLORS[1]) < LINE_PIXELS, "a second curve before a second tag"

                log_run(writer, range(60, 150), val_every=10)
                writer.flush()
                after = wait_for_curve(
                    browser.screenshot,
                    viewer,
                    COLORS[1],
                    timeout=REDRAW,
                    what="the page to show a 'val' curve",
                )
                assert count_changed(before, after) > 2000, "the page did not change as the run grew"

            viewer.assert_clean_exit(viewer.stop(signal.SIGINT))
    assert not listening_addresses(port), "the server outlived the viewer"


def test_web_sigterm_exits_with_status_0(tmp_path: Path) -> None:
    path = tmp_path / "run.arrow"
    with LossWriter(path) as writer:
        log_run(writer, range(100))
    port = free_port()
    with Viewer([str(path), "--follow", "--web", str(port)]) as viewer:
        _serving(viewer, port)
        viewer.assert_clean_exit(viewer.stop(signal.SIGTERM))


def test_web_on_a_busy_port_is_a_one_line_error_not_another_port(tmp_path: Path) -> None:
    path = tmp_path / "run.arrow"
    with LossWriter(path) as writer:
        log_run(writer, range(10))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with Viewer([str(path), "--follow", "--web", str(port)]) as viewer:
            status = viewer.wait(timeout=STARTUP, what="lossview --web to refuse a busy port")
            err = viewer.stderr()
    assert status == 1, err
    assert "Traceback" not in err, err
    assert f"lossview: error: --web: 127.0.0.1:{port}" in err.splitlines()[-1], err


def test_web_hover_reads_values_and_a_legend_click_hides_a_curve(chromium: str, tmp_path: Path) -> None:
    path = tmp_path / "run.arrow"
    port = free_port()
    with LossWriter(path) as writer:
        log_run(writer, range(300))
        for step in range(0, 300, 30):  # a steep 'val': the only horizontal run of its colour is its handle
            writer.add(step, 0.5 + step / 100, "val")
    with Viewer([str(path), "--follow", "--web", str(port)]) as viewer:
        _serving(viewer, port)
        with Chromium(chromium) as browser:
            browser.open(f"http://127.0.0.1:{port}/")
            shown = wait_for_curve(
                browser.screenshot, viewer, COLORS[1], timeout=STARTUP, what="the val curve"
            )
            box = browser.call(
                "Runtime.evaluate",
                expression="JSON.stringify(document.querySelector('canvas').getBoundingClientRect())",
                returnByValue=True,
            )["result"]["value"]
            import json

            rect = json.loads(box)
            # Hover the middle of the figure: a readout box appears in the axes' lower left corner.
            x, y = rect["x"] + rect["width"] * 0.5, rect["y"] + rect["height"] * 0.5
            browser.call("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
            left, top, width, height = (int(rect[k]) for k in ("x", "y", "width", "height"))
            corner = (left, top + height * 6 // 10, left + width * 6 // 10, top + height)

            def readout():
                viewer.assert_alive()
                shot = browser.screenshot()
                return shot if count_changed(shown.crop(corner), shot.crop(corner)) > 300 else None

            hovered = wait_for(readout, timeout=REDRAW, what="the hover readout to appear")
            # Click the 'val' legend handle (the longest horizontal run of its colour): its curve goes away.
            length, row, col = longest_horizontal_run(hovered, COLORS[1])
            assert length >= 8, "no legend handle found for 'val'"
            before = count_color(hovered, COLORS[1])
            for kind in ("mousePressed", "mouseReleased"):
                browser.call("Input.dispatchMouseEvent", type=kind, x=col + length / 2, y=row, button="left",
                             clickCount=1)  # fmt: skip

            def hidden():
                viewer.assert_alive()
                shot = browser.screenshot()
                return shot if count_color(shot, COLORS[1]) < before / 3 else None

            wait_for(hidden, timeout=REDRAW, what="a legend click to hide the val curve")
        viewer.assert_clean_exit(viewer.stop(signal.SIGINT))


def test_web_a_browser_gone_mid_run_prints_no_traceback(chromium: str, tmp_path: Path) -> None:
    path = tmp_path / "run.arrow"
    port = free_port()
    with LossWriter(path, flush_secs=0.05) as writer:
        log_run(writer, range(50))
        writer.flush()
        with Viewer([str(path), "--follow", "--web", str(port)]) as viewer:
            _serving(viewer, port)
            for ending in ("close", "kill"):  # a closed tab, then a crashed browser
                with Chromium(chromium) as browser:
                    browser.open(f"http://127.0.0.1:{port}/")
                    wait_for_curve(
                        browser.screenshot, viewer, COLORS[0], timeout=STARTUP, what="the loss curve"
                    )
                    for start in range(50, 1050, 50):  # redraws in flight as the page goes away
                        log_run(writer, range(start, start + 50))
                        writer.flush()
                    if ending == "kill":
                        browser.kill()
                for start in range(2000, 3000, 100):
                    log_run(writer, range(start, start + 100))
                    writer.flush()
            _serving(viewer, port)  # still serving, and nothing alarming on stderr
            viewer.assert_clean_exit(viewer.stop(signal.SIGINT))
