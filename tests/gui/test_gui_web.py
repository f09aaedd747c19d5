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
