"""Jupyter: a display that follows a run while the training loop runs in a background thread.

In a notebook::

    import threading, lossview
    threading.Thread(target=train, daemon=True).start()  # train() logs to run.arrow
    live = lossview.live("run.arrow")                     # this cell's output redraws as the run grows
    ...
    live.stop()

The kernel's event loop does the polling (no extra thread touches matplotlib); each change re-renders
one PNG in place (``IPython.display.update_display``), so it works with the default inline backend.

``lossview.figure(path)`` returns a `NotebookFigure`: as the last line of a cell it shows as an image
whatever the backend, because it renders its own PNG (``_repr_png_``) instead of relying on pyplot's
inline hook, which only runs once pyplot was imported or ``%matplotlib inline`` ran.
"""

from __future__ import annotations

import asyncio
import io
import math
import os
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace

from matplotlib.figure import Figure

from lossview import plot
from lossview import view as _view

Show = Callable[[bytes, bool], None]


class NotebookFigure(Figure):
    """A matplotlib Figure that IPython displays as a PNG (``_repr_png_``) with any backend."""

    def _repr_png_(self) -> bytes:
        buf = io.BytesIO()
        self.savefig(buf, format="png")
        return buf.getvalue()


class LiveDisplay:
    """Follows files (as ``lossview FILE --follow``) and shows each new rendering through ``show``."""

    def __init__(
        self,
        source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        *,
        interval: float = 1.0,
        show: Show | None = None,
        view: _view.View | None = None,
        style: plot.Style | None = None,
    ) -> None:
        from lossview.follow import CurveCache
        from lossview.sources import Sources

        args = (
            [os.fspath(source)] if isinstance(source, (str, os.PathLike)) else [os.fspath(s) for s in source]
        )
        self.view = view or _view.View(smooth_explicit=False)
        self.interval = interval
        self.sources = Sources(args)
        self._cache = CurveCache(self.view)
        compare = len(args) > 1 or any(set("*?[") & set(a) or os.path.isdir(a) for a in args)
        self.fig = Figure(figsize=(8.0, 4.5), dpi=100, layout="constrained")
        # several runs are told apart by colour, unless averaged
        style = replace(style or plot.Style(), compare=compare and not self.view.mean_runs)
        self.plot = plot.LossPlot(self.fig, self.view, style, plot.NoOutput())
        self._show = show or _ipython_show(uuid.uuid4().hex)
        self._shown = False
        self._task: asyncio.Task[None] | None = None

    def refresh(self) -> bool:
        """Read what was appended since the last refresh; if anything, redraw and show. True if shown."""
        if not self.sources.poll():
            return False
        curves = self._cache.curves(self.sources)
        if curves is None:
            return False
        self.plot.update(curves)
        buf = io.BytesIO()
        self.fig.savefig(buf, format="png")
        self._show(buf.getvalue(), not self._shown)
        self._shown = True
        return True

    def start(self) -> None:
        """Refresh every ``interval`` seconds on the running event loop (Jupyter's) until ``stop()``."""
        self._task = _running_loop().create_task(self._run())

    def stop(self) -> None:
        """Stop following; the last rendering stays in the output. Idempotent."""
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        while True:
            self.refresh()
            await asyncio.sleep(self.interval)


def _running_loop() -> asyncio.AbstractEventLoop:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            "lossview.live() needs a running event loop (a Jupyter kernel); in a script use "
            "`lossview FILE --follow`"
        ) from None


def _ipython_show(display_id: str) -> Show:
    def show(png: bytes, first: bool) -> None:
        from IPython.display import Image, display, update_display

        if first:
            display(Image(png), display_id=display_id)
        else:
            update_display(Image(png), display_id=display_id)

    return show


def live(
    source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    interval: float = 1.0,
    view: _view.View | None = None,
    split: bool = False,
    logy: bool = False,
    title: str | None = None,
) -> LiveDisplay:
    """Show a run in the notebook and keep redrawing it as it grows (see the module docstring)."""
    if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not 0 < interval < math.inf:
        raise ValueError(f"interval must be a finite number of seconds > 0, not {interval!r}")
    _running_loop()  # before anything is shown: a script gets the error alone, no stray image repr
    style = plot.Style(split=split, logy=logy, title=title)
    display = LiveDisplay(source, interval=interval, view=view, style=style)
    display.refresh()
    display.start()
    return display
