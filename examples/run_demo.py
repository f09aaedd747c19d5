"""`make demo`: train the quick-start demo and watch it live with lossview, in one command.

Starts ``examples/demo.py`` writing ``runs/demo.arrow`` (a fresh file) in a child process and, beside it,
``lossview runs/demo.arrow --follow`` in a window. Without a display (an SSH session, a container), it
follows the run in the terminal instead (``--follow --term``, when stdout is one), and once training ends
renders ``runs/demo.png``. Ctrl-C stops both. Options such as ``--fast`` or ``--epochs N`` are passed on to
``demo.py``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def has_display() -> bool:
    """True where matplotlib can open a window: macOS, Windows, or an X11/Wayland session."""
    return sys.platform in ("darwin", "win32") or bool(
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    )


def main() -> int:
    run = Path("runs/demo.arrow")
    run.parent.mkdir(parents=True, exist_ok=True)
    run.unlink(missing_ok=True)
    live = (
        has_display() or sys.stdout.isatty()
    )  # a view of its own: the demo's hint would only get in the way
    quiet = ["--quiet"] if live else []
    training = subprocess.Popen([sys.executable, str(HERE / "demo.py"), str(run), *quiet, *sys.argv[1:]])
    try:
        if has_display():
            viewer = subprocess.Popen([sys.executable, "-m", "lossview", str(run), "--follow"])
            training.wait()
            return viewer.wait()
        if sys.stdout.isatty():  # live in this terminal while it trains; Ctrl-C (SIGINT) ends that view
            term = subprocess.Popen([sys.executable, "-m", "lossview", str(run), "--follow", "--term"])
            training.wait()
            time.sleep(1.0)  # (the last flush drawn)
            term.send_signal(signal.SIGINT)
            term.wait()
        if training.wait() != 0:
            return training.returncode
        image = run.with_suffix(".png")
        status = subprocess.call([sys.executable, "-m", "lossview", str(run), "-o", str(image)])
        if status == 0:
            sys.stderr.write(
                f"no display: rendered {image} (open it, or run `lossview {run}` on a desktop)\n"
            )
        return status
    except KeyboardInterrupt:
        return 130
    finally:
        if training.poll() is None:
            training.terminate()
            training.wait()


if __name__ == "__main__":
    sys.exit(main())
