"""lossview in a real Jupyter kernel (ipykernel through jupyter_client), with the default backend: no
``%matplotlib inline``, nothing stubbed."""

from __future__ import annotations

import base64
import hashlib
import io
import math
import os
import queue
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

jupyter_client = pytest.importorskip("jupyter_client", reason="the notebook tests need jupyter_client (dev)")
pytest.importorskip("ipykernel", reason="the notebook tests need ipykernel (dev)")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class Kernel:
    """A kernel of this interpreter, and the messages one cell execution produces."""

    def __init__(self, cwd: Path) -> None:
        self.manager = jupyter_client.KernelManager(kernel_name="python3")
        env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}  # the kernel chooses, as in Jupyter
        self.manager.start_kernel(cwd=os.fspath(cwd), env=env)
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=60)

    def run(self, code: str, timeout: float = 60.0) -> list[dict[str, Any]]:
        """Execute a cell; its iopub messages until the kernel is idle again. Fails on an error."""
        msg_id = self.client.execute(code)
        out = []
        deadline = time.monotonic() + timeout
        while True:
            msg = self.client.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind = msg["msg_type"]
            if kind == "error":
                raise AssertionError("\n".join(msg["content"]["traceback"]))
            if kind == "status" and msg["content"]["execution_state"] == "idle":
                return out
            out.append(msg)

    def next_message(self, kind: str, timeout: float = 30.0) -> dict[str, Any]:
        """The next iopub message of `kind`, whichever cell (or background task) sent it."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                msg = self.client.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {kind} message within {timeout} s") from None
            if msg["msg_type"] == kind:
                return msg

    def close(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)


@pytest.fixture
def kernel(tmp_path: Path) -> Iterator[Kernel]:
    k = Kernel(tmp_path)
    try:
        yield k
    finally:
        k.close()


def png_of(msg: dict[str, Any]) -> bytes:
    data = msg["content"]["data"]
    assert "image/png" in data, f"no image, only {sorted(data)}"
    png = base64.b64decode(data["image/png"])
    assert png.startswith(PNG_MAGIC)
    return png


def test_figure_as_the_last_line_of_a_cell_shows_an_image(kernel: Kernel, tmp_path: Path) -> None:
    path = tmp_path / "run.arrow"
    kernel.run(
        "import lossfmt\n"
        f"with lossfmt.LossWriter({os.fspath(path)!r}) as w:\n"
        "    for step in range(500):\n"
        "        w.add(step, 1.0 / (1 + step))\n"
    )
    messages = kernel.run(f"import lossview\nlossview.figure({os.fspath(path)!r})")
    results = [m for m in messages if m["msg_type"] == "execute_result"]
    assert len(results) == 1
    png = png_of(results[0])
    assert len(png) > 10_000  # a drawn plot, not an empty canvas
    shown = [m for m in messages if m["msg_type"] == "display_data"]
    assert not shown  # shown once, as the cell's result (not again by a pyplot backend)


def test_live_redraws_the_display_as_a_writer_in_the_kernel_flushes(kernel: Kernel, tmp_path: Path) -> None:
    path = tmp_path / "run.arrow"
    messages = kernel.run(
        "import lossfmt, lossview\n"
        f"w = lossfmt.LossWriter({os.fspath(path)!r})\n"
        "for step in range(100):\n"
        "    w.add(step, 1.0 / (1 + step))\n"
        "w.flush()\n"
        "live = lossview.live(w.path, interval=0.2)\n"
    )
    shown = [m for m in messages if m["msg_type"] == "display_data"]
    assert len(shown) == 1
    first = png_of(shown[0])
    display_id = shown[0]["content"]["transient"]["display_id"]

    kernel.run("for step in range(100, 5000):\n    w.add(step, 2.0 + (step % 7))\nw.flush()\n")
    update = kernel.next_message("update_display_data")
    assert update["content"]["transient"]["display_id"] == display_id
    assert png_of(update) != first

    kernel.run("live.stop()\nw.close()\n")


def test_live_takes_the_view_options_of_figure(kernel: Kernel, tmp_path: Path) -> None:
    path = tmp_path / "run.arrow"
    messages = kernel.run(
        "import lossfmt, lossview\n"
        f"w = lossfmt.LossWriter({os.fspath(path)!r})\n"
        "for step in range(100):\n"
        "    w.add(step, 1.0 / (1 + step), count=32, epoch=step // 10)\n"
        "    w.add(step, 5.0, 'lr', epoch=step // 10)\n"
        "w.flush()\n"
        "live = lossview.live(w.path, tags='loss', per='epoch', logy=True, title='sweep', interval=0.2)\n"
        "(ax,) = live.fig.axes\n"
        "labels = {line.get_label() for line in ax.get_lines()}\n"
        "points = len(ax.get_lines()[0].get_xdata())\n"
        "print(ax.get_yscale(), live.fig.get_suptitle(), 'lr' in labels, points)\n"
        "live.stop()\n"
        "w.close()\n"
    )
    printed = "".join(m["content"]["text"] for m in messages if m["msg_type"] == "stream")
    assert printed.split("\n")[0] == "log sweep False 10"  # log scale, the title, only loss, 10 epochs
    assert len([m for m in messages if m["msg_type"] == "display_data"]) == 1


def test_live_refuses_a_bad_option_before_showing_anything(tmp_path: Path) -> None:
    import lossview

    with pytest.raises(ValueError, match="per"):
        lossview.live(tmp_path / "run.arrow", per="bogus")
    for bad in (0, -1.0, True, math.inf, math.nan, "1"):
        with pytest.raises(ValueError, match=f"interval must be a finite number of seconds > 0, not {bad!r}"):
            lossview.live(tmp_path / "run.arrow", interval=bad)


def test_live_in_a_script_raises_before_showing_anything(tmp_path: Path) -> None:
    import lossfmt

    path = tmp_path / "run.arrow"
    with lossfmt.LossWriter(path) as w:
        w.add(0, 1.0)
    code = (
        "import sys, lossview\n"
        "try:\n"
        "    lossview.live(sys.argv[1])\n"
        "except RuntimeError as exc:\n"
        "    print('error:', exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("error: lossview.live() needs a running event loop")  # and nothing before


def text_of(msg: dict[str, Any]) -> str:
    data = msg["content"]["data"]
    assert "image/png" not in data, "an image, not the placeholder"
    return str(data["text/plain"])


# A cell's lines that wait until `live` drew step `last` and showed that drawing (its refresh holds the lock
# from drawing to showing).
WAIT_FOR_STEP = (
    "for _ in range(600):\n"
    "    if any({last} in line.get_xdata() for ax in live.fig.axes for line in ax.get_lines()):\n"
    "        break\n"
    "    await asyncio.sleep(0.05)\n"
    "with live._lock:\n"
    "    pass\n"
)


def test_live_before_the_file_exists_shows_a_placeholder_that_the_plot_replaces(
    kernel: Kernel, tmp_path: Path
) -> None:
    path = tmp_path / "live.arrow"
    messages = kernel.run(
        f"import asyncio, lossfmt, lossview\nlive = lossview.live({os.fspath(path)!r}, interval=0.2)\n"
    )
    (placeholder,) = [m for m in messages if m["msg_type"] == "display_data"]  # in the live() cell, at once
    assert f"waiting for {path} (no file yet)" in text_of(placeholder)
    display_id = placeholder["content"]["transient"]["display_id"]

    kernel.run(f"w = lossfmt.LossWriter({os.fspath(path)!r})\n")  # the file, without an event
    update = kernel.next_message("update_display_data")
    assert update["content"]["transient"]["display_id"] == display_id
    assert f"{path}: no events yet" in text_of(update)

    # Drawn while another cell runs: the update is that cell's message (as nbclient records it), and
    # replaces the placeholder by its display id; that cell displays nothing of its own.
    messages = kernel.run(
        "for step in range(50):\n    w.add(step, 1.0 / (1 + step))\nw.flush()\n"
        + WAIT_FOR_STEP.format(last=49)
    )
    assert not [m for m in messages if m["msg_type"] == "display_data"]
    (drawn,) = [m for m in messages if m["msg_type"] == "update_display_data"]
    assert drawn["content"]["transient"]["display_id"] == display_id
    assert len(png_of(drawn)) > 10_000

    kernel.run("live.stop()\nw.close()\n")


def test_live_stopped_before_any_event_says_so(kernel: Kernel, tmp_path: Path) -> None:
    path = tmp_path / "live.arrow"
    messages = kernel.run(
        f"import lossview\nlive = lossview.live({os.fspath(path)!r})\nlive.stop()\nlive.stop()\n"
    )
    shown = [m for m in messages if m["msg_type"] in ("display_data", "update_display_data")]
    assert [m["msg_type"] for m in shown] == ["display_data", "update_display_data"]
    assert shown[1]["content"]["transient"] == shown[0]["content"]["transient"]
    assert text_of(shown[1]) == f"lossview.live: stopped; no events came from {path}"


def test_live_redraws_while_a_training_loop_runs_in_the_foreground(kernel: Kernel, tmp_path: Path) -> None:
    """The polling ran on the kernel's event loop, which a cell that does not await blocks: a training loop
    in the foreground (the usual notebook) showed the placeholder until it ended."""
    path = tmp_path / "live.arrow"
    kernel.run(f"import time, lossfmt, lossview\nlive = lossview.live({os.fspath(path)!r}, interval=0.1)\n")
    messages = kernel.run(
        f"w = lossfmt.LossWriter({os.fspath(path)!r}, flush_secs=0.1)\n"
        "end = time.monotonic() + 3\n"
        "step = 0\n"
        "while time.monotonic() < end:\n"
        "    w.add(step, 1.0 / (1 + step))\n"
        "    step += 1\n"
        "    time.sleep(0.005)\n"
    )
    drawn = [
        m for m in messages if m["msg_type"] == "update_display_data" and "image/png" in m["content"]["data"]
    ]
    assert drawn, "no plot was drawn while the cell ran"
    kernel.run("live.stop()\nw.close()\n")


def test_live_stopped_shows_the_run_as_it_is_then(kernel: Kernel, tmp_path: Path) -> None:
    """stop() decided from the last poll: a run flushed since said "no events came", and a plot stayed at
    its first frame."""
    path = tmp_path / "live.arrow"
    kernel.run(
        f"import lossfmt, lossview\nlive = lossview.live({os.fspath(path)!r}, interval=3600)\n"
        f"with lossfmt.LossWriter({os.fspath(path)!r}) as w:\n"
        "    for step in range(40):\n"
        "        w.add(step, 1.0 / (1 + step))\n"
    )
    messages = kernel.run("live.stop()\nprint(sorted(live.fig.axes[0].get_lines()[0].get_xdata())[-1])\n")
    shown = [m for m in messages if m["msg_type"] == "update_display_data"]
    assert len(shown) == 1 and png_of(shown[0]).startswith(PNG_MAGIC)  # the plot, not "no events came"
    (printed,) = [m for m in messages if m["msg_type"] == "stream"]
    assert printed["content"]["text"].strip() == "39"


def test_live_in_an_executed_notebook_draws_the_run_in_its_own_cell(tmp_path: Path) -> None:
    """The README pattern under ``nbconvert --execute``: live() before the first flush, training in a
    thread, a later cell awaiting; the plot ends up in the live() cell's output, as last drawn."""
    nbclient = pytest.importorskip("nbclient", reason="this test executes a notebook with nbclient (dev)")
    nbformat = pytest.importorskip("nbformat", reason="this test executes a notebook with nbclient (dev)")
    start = "import asyncio, hashlib, io, threading, lossfmt, lossview\n"
    start += "live = lossview.live('live.arrow', interval=0.2)\n"  # before the file exists
    train = (
        "def train():\n"
        "    with lossfmt.LossWriter('live.arrow', flush_secs=0.2) as log:\n"
        "        for step in range(50):\n"
        "            log.add(step, 1.0 / (1 + step))\n"
        "training = threading.Thread(target=train)\n"
        "training.start()\n"
        "await asyncio.to_thread(training.join)\n"
    )
    last_drawing = (
        "live.stop()\n"
        "buf = io.BytesIO()\n"
        "live.fig.savefig(buf, format='png')\n"
        "print(hashlib.sha256(buf.getvalue()).hexdigest())\n"
    )
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(start),
        nbformat.v4.new_code_cell(train + WAIT_FOR_STEP.format(last=49) + last_drawing),
    ]
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}  # the kernel chooses, as in Jupyter
    client = nbclient.NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": os.fspath(tmp_path)}}
    )
    client.execute(env=env)

    (shown,) = nb.cells[0].outputs
    assert shown["output_type"] == "display_data"
    png = base64.b64decode(shown["data"]["image/png"])
    assert png.startswith(PNG_MAGIC)
    (printed,) = nb.cells[1].outputs  # nothing displayed there: only the print
    assert printed["text"].strip() == hashlib.sha256(png).hexdigest()  # the last drawing, not the first


def test_figure_of_a_run_without_events_says_so_and_of_a_missing_file_raises(tmp_path: Path) -> None:
    from matplotlib import image

    import lossfmt
    import lossview

    with pytest.raises(lossfmt.NoSuchFileError, match=r"missing\.arrow: no such file"):
        lossview.figure(tmp_path / "missing.arrow")
    with lossfmt.LossWriter(tmp_path / "empty.arrow") as w:
        fig = lossview.figure(w.path)  # the file is there, nothing flushed yet
        texts = list(fig.texts)
        pixels = image.imread(io.BytesIO(fig._repr_png_()))
    assert (pixels[..., :3] < 0.5).any()  # some dark text, not a blank image
    assert fig.texts == texts  # the note is drawn for the display only


def test_a_live_mean_per_label_value_tells_the_means_apart_like_the_command_line(tmp_path: Path) -> None:
    """LiveDisplay drew --mean-runs --label's means in one colour, labelled by tag only (the CLI and figure()
    already named and coloured each)."""
    from lossfmt import LossWriter
    from lossview import notebook
    from lossview.view import View

    for lr in (0.1, 0.01):
        for seed in range(2):
            with LossWriter(tmp_path / f"lr{lr}_s{seed}.arrow", meta={"lr": lr}) as w:
                for step in range(20):
                    w.add(step, lr * (20 - step) + seed)
    shown: list[bytes | str] = []
    view = View(mean_runs=True, label="lr", smooth="none")
    live = notebook.LiveDisplay(tmp_path, view=view, show=lambda data, _: shown.append(data))
    assert live.refresh() and isinstance(shown[-1], bytes)
    labels = sorted(h.get_label() for h in live.fig.axes[0].get_legend().legend_handles)
    assert labels == ["lr=0.01: mean of 2 runs: loss", "lr=0.1: mean of 2 runs: loss"]


def test_live_run_again_stops_the_display_before_and_shows_no_repr(kernel: Kernel, tmp_path: Path) -> None:
    """Each run of a `live = lossview.live(...)` cell left the earlier display drawing in the background
    (5 runs: 6 threads rendering every flush); a cell ending in `lossview.live(...)` also printed
    '<lossview.notebook.LiveDisplay at 0x...>' under the plot."""
    path = tmp_path / "live.arrow"
    kernel.run(
        f"import threading, lossfmt, lossview\nw = lossfmt.LossWriter({os.fspath(path)!r})\n"
        "w.add(0, 1.0)\nw.flush()\n"
    )
    cell = f"lossview.live({os.fspath(path)!r}, interval=0.2)\n"
    first = kernel.run("first = " + cell)
    again = kernel.run(cell)  # the same cell run again, ending in the call
    assert not [m for m in first + again if m["msg_type"] == "execute_result"]
    messages = kernel.run(
        "print(first._thread, sum(t.name == 'lossview-live' for t in threading.enumerate()))\n"
    )
    (printed,) = [m for m in messages if m["msg_type"] == "stream"]
    assert printed["content"]["text"].split() == ["None", "1"]  # the first stopped; one display draws
    kernel.run("w.close()\n")
