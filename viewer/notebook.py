"""Jupyter: a display that follows a run while the training loop runs (in a cell, a thread or elsewhere).

In a notebook::

    import lossview
    live = lossview.live("run.arrow")  # this cell's output redraws as the run grows
    train()                            # here or in the next cell: logs to run.arrow
    live.stop()

``live()`` shows its display in its own cell at once: the plot if the run has events, else a line saying
what it waits for (the file, or its first flushed events). A thread of its own polls the files, so the plot
redraws while any cell runs, a training loop in the foreground included (the kernel's event loop is blocked
then); it draws on its own matplotlib ``Figure``, never pyplot's. Each change re-renders one PNG into that
same display (``IPython.display.update_display``, by display id), so it works with the default inline
backend, and the plot appears in the ``live()`` cell whichever cell is running when the events arrive.

``lossview.figure(path)`` returns a `NotebookFigure`: as the last line of a cell it shows as an image
whatever the backend, because it renders its own PNG (``_repr_png_``) instead of relying on pyplot's
inline hook, which only runs once pyplot was imported or ``%matplotlib inline`` ran.
"""

from __future__ import annotations

import asyncio
import contextvars
import io
import math
import os
import sys
import threading
import uuid
import weakref
from collections.abc import Callable, Sequence
from dataclasses import replace

from matplotlib.figure import Figure

from lossview import plot
from lossview import view as _view

#: Shows one rendering: a PNG (bytes) or the placeholder's text (str); True for the first, which displays
#: in the calling cell, False for the later ones, which replace it.
Show = Callable[[bytes | str, bool], None]


class NotebookFigure(Figure):
    """A matplotlib Figure that IPython displays as a PNG (``_repr_png_``) with any backend."""

    def _repr_png_(self) -> bytes:
        """The figure as a PNG; one with nothing drawn (a run without events yet) says so, not blank."""
        note = None if self.axes else self.text(0.5, 0.5, "no events yet", ha="center", va="center")
        try:
            buf = io.BytesIO()
            self.savefig(buf, format="png")
        finally:
            if note is not None:
                note.remove()
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
        from lossview.sources import Sources, compared

        args = (
            [os.fspath(source)] if isinstance(source, (str, os.PathLike)) else [os.fspath(s) for s in source]
        )
        self.view = view or _view.View(smooth_explicit=False)
        self.interval = interval
        self.sources = Sources(args)
        self._cache = CurveCache(self.view)
        compare = compared(args)
        self.fig = Figure(figsize=(8.0, 4.5), dpi=100, layout="constrained")
        # several runs are told apart by colour, unless averaged
        mean_of_all = self.view.mean_runs and self.view.label is None  # (else: a mean per --label value)
        style = replace(style or plot.Style(), compare=compare and not mean_of_all)
        self.plot = plot.LossPlot(self.fig, self.view, style, plot.NoOutput())
        self._show = show or _ipython_show(uuid.uuid4().hex)
        self._shown: bytes | str | None = None  # what the display holds: a PNG, the placeholder, nothing
        self._lock = threading.RLock()  # one refresh at a time: the polling thread's, or a caller's
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh(self) -> bool:
        """Read what was appended since the last refresh; if anything, redraw and show. True if shown."""
        with self._lock:
            if not self.sources.poll():
                return False
            curves = self._cache.curves(self.sources)
            if curves is None:
                return False
            self.plot.update(curves)
            buf = io.BytesIO()
            self.fig.savefig(buf, format="png")
            self._put(buf.getvalue())
            return True

    def start(self) -> None:
        """Show the display now, in the calling cell's output (the run, or the placeholder until it has
        events), then refresh it every ``interval`` seconds on a thread of its own until ``stop()``."""
        _running_loop()
        if self._thread is not None and self._thread.is_alive():
            return
        self._follow()
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="lossview-live", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop following, showing the run as it is now; the last rendering stays in the output (a
        placeholder says that no event came). Idempotent."""
        if self._thread is None:
            return
        self._stopping.set()
        try:
            self._thread.join()
        finally:  # (a Ctrl-C in the join: the thread ends anyway, and start() starts another)
            self._thread = None
        self._follow()  # what was flushed since the last poll (a run that ended just now)
        if isinstance(self._shown, str):
            self._put(f"lossview.live: stopped; no events came from {', '.join(self.sources.args)}")

    def _ipython_display_(self) -> None:
        """Nothing more: the display shows itself (a cell ending with ``live(...)`` printed the repr)."""

    def _run(self) -> None:
        while not self._stopping.wait(self.interval):
            try:
                self._follow()
            except Exception as exc:  # a file gone bad: say so once (in the running cell) and stop polling
                sys.stderr.write(f"lossview.live: stopped following: {type(exc).__name__}: {exc}\n")
                return

    def _follow(self) -> None:
        """Refresh; while no event was drawn, show the placeholder (or its new text: the file appeared)."""
        with self._lock:
            if not self.refresh() and not isinstance(self._shown, bytes):
                self._put(self._waiting())

    def _waiting(self) -> str:
        """The placeholder's text: what the display waits for (a file to appear, or its first events)."""
        names, then = ", ".join(self.sources.args), "the plot appears here with the first flushed events"
        if not self.sources.followers:
            return f"lossview.live: waiting for {names} (no file yet); {then}"
        return f"lossview.live: {names}: no events yet; {then}"

    def _put(self, rendering: bytes | str) -> None:
        """Show ``rendering`` unless the display holds it already: the first in place, later ones over it."""
        if rendering != self._shown:
            self._show(rendering, self._shown is None)
            self._shown = rendering


def _running_loop() -> asyncio.AbstractEventLoop:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            "lossview.live() needs a running event loop (a Jupyter kernel); in a script use "
            "`lossview FILE --follow`"
        ) from None


def _ipython_show(display_id: str) -> Show:
    def show(rendering: bytes | str, first: bool) -> None:
        from IPython.display import Image, display

        raw = isinstance(rendering, str)  # the placeholder: its text as it is, not its repr
        shown = {"text/plain": rendering} if raw else Image(rendering)
        if first:
            display(shown, raw=raw, display_id=display_id)
        else:
            # ipykernel keeps the request a message answers in a context variable; in an empty context (a
            # thread's, or this one) the kernel names the request it serves now instead of the live() cell's.
            # nbclient (nbconvert --execute) records only the running cell's messages, and applies an update
            # from it to every output holding the display id.
            contextvars.Context().run(display, shown, raw=raw, display_id=display_id, update=True)

    return show


def live(
    source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    interval: float = 1.0,
    view: _view.View | None = None,
    split: bool = False,
    logy: bool = False,
    title: str | None = None,
    one_axes: bool = False,
) -> LiveDisplay:
    """Show a run in the notebook and keep redrawing it as it grows (see the module docstring). A live() of
    the same files stops the one before (a cell run again): one display draws them."""
    if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not 0 < interval < math.inf:
        raise ValueError(f"interval must be a finite number of seconds > 0, not {interval!r}")
    _running_loop()  # before anything is shown: a script gets the error alone, no stray image repr
    style = plot.Style(split=split, logy=logy, title=title, panels=not one_axes)
    display = LiveDisplay(source, interval=interval, view=view, style=style)
    previous = _LIVE.get(tuple(display.sources.args))
    if previous is not None:  # the cell run again: its first display stops drawing (its last frame stays)
        previous.stop()
    _LIVE[tuple(display.sources.args)] = display
    display.start()
    return display


#: The running live() display of each source, which a live() of the same source (a cell run again) stops.
_LIVE: weakref.WeakValueDictionary[tuple[str, ...], LiveDisplay] = weakref.WeakValueDictionary()
