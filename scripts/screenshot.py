"""Regenerate the README's screenshots of a live run: docs/images/live.png and docs/images/web.png.

Runs the project's own commands, as a user would type them, in a scratch directory::

    python examples/demo.py runs/demo.arrow                 # the quick-start demo, training
    lossview runs/demo.arrow --follow                       # a live TkAgg window (here on Xvfb)
    lossview runs/demo.arrow --follow --web PORT            # the same figure served to a browser

and takes both pictures mid-run (half of the demo's epochs logged): the window from the virtual X
screen, the browser view from headless Chromium. Needs Xvfb, tkinter, Chromium and tornado
(`.ci/run` lists the system packages). Usage: ``python scripts/screenshot.py [--at-epoch N]``.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "gui"))

from guiharness import (  # noqa: E402  (the harness lives with the GUI tests)
    Chromium,
    Viewer,
    Xvfb,
    chromium_path,
    free_port,
    http_get,
    top_level_windows,
    wait_for,
)

import lossfmt  # noqa: E402

IMAGES = ROOT / "docs" / "images"
#: Time for both viewers to show the latest flush (writer flushes every 1 s, viewer redraws within 0.25 s).
SETTLE = 1.5


def logged_epochs(path: Path) -> int:
    """Epochs with a validation point in the (live) run file so far."""
    if not path.exists() or path.stat().st_size == 0:
        return 0
    try:
        table = lossfmt.read(path, tags=["val"])
    except lossfmt.LossFormatError:
        return 0
    return table.num_rows


def crop(image: Image.Image, background: tuple[int, int, int], margin: int = 0) -> Image.Image:
    """``image`` cut to the box of pixels that differ from ``background`` (plus ``margin``)."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    rows, cols = np.nonzero(np.abs(pixels - background).max(axis=2) > 0)
    if not len(rows):
        raise SystemExit("screenshot is empty: nothing was drawn")
    w, h = image.size
    box = (
        max(cols.min() - margin, 0),
        max(rows.min() - margin, 0),
        min(cols.max() + 1 + margin, w),
        min(rows.max() + 1 + margin, h),
    )
    return image.crop(box)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--at-epoch", type=int, default=15, help="take the pictures once N epochs are logged")
    parser.add_argument("--out", type=Path, default=IMAGES, help="directory for live.png and web.png")
    args = parser.parse_args(argv)
    browser_exe = chromium_path()
    if browser_exe is None:
        raise SystemExit("Chromium is not installed (apt install chromium)")
    args.out.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="lossfmt-screenshot-") as work, Xvfb() as screen:
        run = Path(work, "runs", "demo.arrow")
        port = free_port()
        window_env = {"DISPLAY": screen.display, "MPLBACKEND": "TkAgg"}
        # The viewers start first (they wait for the file), so the pictures are taken mid-run however
        # long their start-up takes on a busy machine.
        with (
            Viewer(["runs/demo.arrow", "--follow"], env=window_env, cwd=work) as window,
            Viewer(["runs/demo.arrow", "--follow", "--web", str(port)], cwd=work) as web,
            Chromium(browser_exe) as browser,
        ):
            wait_for(lambda: top_level_windows(screen.display), timeout=30, what="the lossview window")
            wait_for(lambda: http_get(f"http://127.0.0.1:{port}/")[0] == 200, timeout=30, what="--web")
            browser.open(f"http://127.0.0.1:{port}/")
            demo = subprocess.Popen(
                [sys.executable, str(ROOT / "examples" / "demo.py"), "runs/demo.arrow"],
                cwd=work,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                wait_for(
                    lambda: logged_epochs(run) >= args.at_epoch or demo.poll() is not None,
                    timeout=120,
                    what=f"{args.at_epoch} epochs of the demo",
                )
                time.sleep(SETTLE)
                live, page = screen.grab(), browser.screenshot()
                for viewer in (window, web):
                    viewer.assert_alive()
                    status = viewer.stop(signal.SIGINT)
                    if status != 0:
                        raise SystemExit(f"lossview exited with status {status}:\n{viewer.stderr()}")
            finally:
                if demo.poll() is None:
                    demo.send_signal(signal.SIGINT)
                    demo.wait(30)

    crop(live, (0, 0, 0)).save(args.out / "live.png", optimize=True)
    crop(page, (255, 255, 255), margin=12).save(args.out / "web.png", optimize=True)
    for name in ("live.png", "web.png"):
        path = (args.out / name).resolve()
        sys.stderr.write(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
