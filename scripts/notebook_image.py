"""Regenerate the README's picture of the notebook display: docs/images/notebook.png.

Executes a two-cell notebook in a real Jupyter kernel (nbclient + ipykernel, this interpreter), with the
backend the kernel picks itself (``MPLBACKEND`` unset, no ``%matplotlib inline``): the first cell trains a
small model logging to ``run.arrow``, the second ends with ``lossview.figure("run.arrow")``. It fails unless
that last line produced an image (not only ``<Figure size ...>`` text). The executed notebook is rendered
as Jupyter shows it (nbconvert to HTML, screenshot in headless Chromium); without nbconvert or Chromium
(``--output-only``) the picture is the cell's own image/png output.

Usage: ``python scripts/notebook_image.py [--out DIR] [--output-only]``. Needs nbclient, ipykernel
(the dev extra) and, for the rendered cell, nbconvert and Chromium.
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "gui"))
sys.path.insert(0, str(ROOT / "scripts"))

from guiharness import Chromium, chromium_path  # noqa: E402  (the harness lives with the GUI tests)
from screenshot import crop  # noqa: E402

IMAGES = ROOT / "docs" / "images"

TRAIN = """\
import numpy as np
from lossfmt import LossWriter

rng = np.random.default_rng(0)
with LossWriter("run.arrow", meta={"lr": 3e-4}) as log:
    for step in range(5_000):
        loss = 2.0 * np.exp(-step / 800) + 0.3 + 0.2 * rng.standard_normal() ** 2
        log.add(step, loss)
        if step % 500 == 499:
            log.add(step, 1.6 * np.exp(-step / 900) + 0.45, "val")"""

SHOW = """\
import lossview

lossview.figure("run.arrow")"""

#: Browser viewport: shows the 800 px figure unscaled beside its prompt, and both cells.
VIEWPORT = (1000, 1000)


def execute(work: Path) -> nbformat.NotebookNode:
    """The notebook, executed in a fresh kernel whose working directory is ``work``."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(TRAIN), nbformat.v4.new_code_cell(SHOW)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    os.environ.pop("MPLBACKEND", None)  # the kernel chooses its backend, as in a user's Jupyter
    resources = {"metadata": {"path": str(work)}}
    NotebookClient(nb, timeout=300, kernel_name="python3", resources=resources).execute()
    return nb


def figure_png(nb: nbformat.NotebookNode) -> bytes:
    """The image the last cell displayed; exits naming what it showed instead, if not an image."""
    outputs: list[Any] = nb.cells[-1].outputs
    for output in outputs:
        if "image/png" in output.get("data", {}):
            return base64.b64decode(output["data"]["image/png"])
    shown = [output.get("data", {}).get("text/plain", output.get("output_type")) for output in outputs]
    raise SystemExit(f"the lossview.figure cell displayed no image, only {shown}")


def render(nb: nbformat.NotebookNode, work: Path, browser_exe: str) -> Image.Image:
    """The executed notebook as Jupyter's HTML shows it, screenshot in headless Chromium, cropped."""
    from nbconvert import HTMLExporter

    exporter = HTMLExporter()
    exporter.mathjax_url = ""  # nothing to fetch: the page must load with no network
    html, _ = exporter.from_notebook_node(nb)
    page = work / "notebook.html"
    page.write_text(html, encoding="utf-8")
    with Chromium(browser_exe, size=VIEWPORT) as browser:
        browser.open(page.as_uri())
        shot = browser.screenshot()
    return crop(shot, (255, 255, 255), margin=12)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=IMAGES, help="directory for notebook.png")
    parser.add_argument("--output-only", action="store_true", help="save the cell's image output, no browser")
    args = parser.parse_args(argv)
    browser_exe = None if args.output_only else chromium_path()
    try:
        import nbconvert  # noqa: F401
    except ImportError:
        browser_exe = None
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lossfmt-notebook-") as scratch:
        work = Path(scratch)
        nb = execute(work)
        png = figure_png(nb)
        image = Image.open(io.BytesIO(png)) if browser_exe is None else render(nb, work, browser_exe)
    target = args.out / "notebook.png"
    image.save(target, optimize=True)
    what = "the cell's image output" if browser_exe is None else "the rendered notebook"
    sys.stderr.write(f"wrote {target} ({what})\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
