"""Where a figure goes after each update: a file replaced atomically, a GUI canvas, or nowhere."""

from __future__ import annotations

import os
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path

from matplotlib.figure import Figure

FORMATS = ("png", "svg", "pdf")


class Output(ABC):
    """Where the figure goes after each update (the seam tests replace with a fake)."""

    @abstractmethod
    def refresh(self, fig: Figure) -> None:
        """Make the current state of ``fig`` visible (write a file, schedule a canvas draw, ...)."""


class FileOutput(Output):
    """Render to PNG/SVG/PDF; each render replaces the file atomically (temp file + os.replace)."""

    def __init__(self, path: str | os.PathLike[str], *, dpi: int = 150) -> None:
        self.path = Path(path)
        self.format = self.path.suffix.lower().lstrip(".")
        if self.format not in FORMATS:
            raise ValueError(f"{self.path}: output must end in .png, .svg or .pdf")
        self.dpi = dpi

    def refresh(self, fig: Figure) -> None:
        dest = self.path  # (never written through a symlink: it may point at a run)
        directory = dest.parent if str(dest.parent) else Path(".")
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=directory)
        except OSError as exc:  # name OUT, not the temp file the user never asked for
            raise type(exc)(exc.errno, exc.strerror, os.fspath(self.path)) from None
        try:
            with os.fdopen(fd, "wb") as fh:
                fig.savefig(fh, format=self.format, dpi=self.dpi)
            os.chmod(tmp, 0o644)
            os.replace(tmp, dest)
        except BaseException as exc:
            Path(tmp).unlink(missing_ok=True)
            # OUT again (a write, or a replace onto a directory named OUT, named the temp file or nothing)
            if isinstance(exc, OSError) and exc.strerror and exc.filename in (None, tmp):
                raise type(exc)(exc.errno, exc.strerror, os.fspath(self.path)) from None
            raise


class NoOutput(Output):
    """Nothing to do: the caller shows or saves the figure itself (notebooks, ``lossview.figure``)."""

    def refresh(self, fig: Figure) -> None:
        pass


class CanvasOutput(Output):
    """An interactive canvas (window or WebAgg): ask for a redraw at the GUI's next idle moment."""

    def refresh(self, fig: Figure) -> None:
        fig.canvas.draw_idle()
