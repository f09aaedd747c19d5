"""Run loops: a headless render (once or following), a window, or a browser page (WebAgg).

The follow wiring (sources, watcher, curve cache, debounced loop, status lines) is written once, in ``Live``;
each run loop only says where curves go and who drives the ticks (a plain loop, or a GUI canvas timer).
Nothing here changes process-global state for good: signal handlers, the matplotlib backend and rcParams
are restored when the run ends.
"""

from __future__ import annotations

import contextlib
import gc
import io
import logging
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lossview.follow import CurveCache, FollowLoop, Sources, Watcher
from lossview.output import CanvasOutput, FileOutput
from lossview.plot import LossPlot, Style
from lossview.signals import stopping
from lossview.view import Curve, View, ViewerError

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

PROG = "lossview"


@dataclass(frozen=True)
class Target:
    """Where and how to show: an image file, a window, or a web page (``web`` is its port)."""

    files: tuple[str, ...]
    output: str | None = None
    dpi: int = 150
    follow: bool = False
    poll: float | None = None
    web: int | None = None
    host: str = "127.0.0.1"


def status(message: str) -> None:
    """One line on stderr about what the viewer is waiting for."""
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


class Live:
    """Follow the files: ``show(curves)`` on every change worth drawing, one status line per new state."""

    def __init__(self, target: Target, view: View, show: Callable[[list[Curve]], None]) -> None:
        self.view, self.show = view, show
        self.sources = Sources(target.files)
        self.watcher = Watcher(self.sources, poll=target.poll)
        self.cache = CurveCache(view)
        self.loop = FollowLoop(self.sources, self.watcher, self._redraw)
        self._said: str | None = None

    def start(self) -> None:
        """Watch and read what is there; a file that is not lossfmt raises here, before anything is shown."""
        self.watcher.start()
        try:
            self.loop.tick()
        except BaseException:
            self.watcher.stop()
            raise
        missing = [a for a in self.sources.args if not self.sources.paths_of(a)]
        if missing:
            self._say(f"waiting for {' '.join(missing)}")

    def stop(self) -> None:
        self.watcher.stop()

    def _say(self, message: str) -> None:
        if message != self._said:
            self._said = message
            status(message)

    def _redraw(self) -> None:
        curves = self.cache.curves(self.sources)
        if curves is None:
            return
        if not curves and self.view.tags and self.sources.runs():  # (no run left: the picture empties)
            self._say(f"no tag matches {' '.join(self.view.tags)} yet")
            return
        self.show(curves)


def headless(target: Target, view: View, style: Style, curves: list[Curve] | None) -> int:
    """Render ``curves`` to the output file once, or (following) on each change, until a signal arrives."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(style.width, style.height), dpi=target.dpi, layout="constrained")
    lp = LossPlot(fig, view, style, FileOutput(str(target.output), dpi=target.dpi))
    if curves is not None:
        lp.update(curves)
        return 0
    live = Live(target, view, lp.update)
    stop = threading.Event()

    def on_signal() -> None:
        stop.set()
        live.watcher.changed.set()

    with stopping(on_signal):
        live.start()
        try:
            live.loop.run(stop)
        finally:
            live.stop()
    return 0


def window(target: Target, view: View, style: Style, curves: list[Curve] | None) -> int:
    """Show a window (or serve a web page with ``target.web``), following the files if asked, until it is
    closed or a signal arrives."""
    with _backend(target):
        import matplotlib
        import matplotlib.pyplot as plt

        backend = matplotlib.get_backend().lower()
        if backend in ("agg", "pdf", "ps", "svg", "cairo", "template"):
            raise ViewerError(
                f"no interactive display (matplotlib backend {backend!r}): use -o OUT.png, --term (in this "
                "terminal) or --web [PORT]"
            )
        fig = plt.figure(figsize=(style.width, style.height), layout="constrained")
        if fig.canvas.manager is not None:  # the window's (or web page's) title, instead of "Figure 1"
            fig.canvas.manager.set_window_title(f"{PROG}: {' '.join(target.files)}")
        lp = LossPlot(fig, view, style, CanvasOutput())
        from lossview.interact import Interaction

        Interaction(lp)
        live = None
        if curves is None:
            waiting = fig.text(
                0.5, 0.5, f"waiting for {' '.join(target.files)} ...", ha="center", color="0.4"
            )

            def show(found: list[Curve]) -> None:
                waiting.set_visible(False)
                lp.update(found)

            live = Live(target, view, show)
            live.start()
        else:
            lp.update(curves)
        try:
            _show(target, fig, live)
        finally:
            if live is not None:
                live.stop()
    return 0


def _show(target: Target, fig: Any, live: Live | None) -> None:
    """pyplot's event loop with a 100 ms canvas timer that ticks the follow loop on the GUI thread."""
    import matplotlib.pyplot as plt

    stop = threading.Event()

    def on_timer() -> None:
        if stop.is_set():
            plt.close("all")
            if target.web is not None:  # WebAgg's server outlives its figures: stop its loop too
                import tornado.ioloop

                tornado.ioloop.IOLoop.current().stop()
            return
        if live is not None:
            live.loop.tick()

    # Redraws are driven from the GUI's main thread; the watchdog thread only sets a flag.
    timer = fig.canvas.new_timer(interval=100)
    timer.add_callback(on_timer)
    timer.start()
    try:
        with stopping(stop.set):
            if target.web is None:
                plt.show()
            else:
                _serve(target)
                # WebAgg prints its own URL and "Press Ctrl+C", in other words than lossview's line
                with contextlib.redirect_stdout(io.StringIO()):
                    plt.show()
    finally:
        timer.stop()


def _serve(target: Target) -> None:
    from matplotlib.backends.backend_webagg import WebAggApplication

    failure = None
    with warnings.catch_warnings():
        # A failed bind leaves matplotlib's probing socket unclosed: its ResourceWarning is not the user's.
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            WebAggApplication.initialize()  # binds the port now, so a busy one is a clear error
        except SystemExit:
            failure = f"{target.host}:{target.web} is already in use; pick another PORT"
        except OSError as exc:  # an unknown --host, an address not on this machine
            reason = (exc.strerror or str(exc)).lower()
            failure = f"cannot serve on --host {target.host} port {target.web} ({reason})"
        gc.collect()  # close that socket while its warning is ignored
    if failure is not None:
        raise ViewerError(f"--web: {failure}")
    status(f"serving on http://{target.host}:{target.web}/ (Ctrl-C to stop)")


class _ClosedSocket(logging.Filter):
    """Drops tornado's tracebacks about a browser tab that went away while a frame was being sent (WebAgg
    of matplotlib before 3.11 lets that WebSocketClosedError escape; `make test-floor` saw it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return type(exc).__name__ not in ("WebSocketClosedError", "StreamClosedError")


@contextlib.contextmanager
def _backend(target: Target) -> Iterator[None]:
    """The WebAgg backend and its settings for ``--web``, for the duration of the run only."""
    if target.web is None:
        yield
        return
    try:
        import tornado  # noqa: F401  (WebAgg's server)
    except ImportError:
        raise ViewerError("--web needs tornado: pip install 'lossfmt[web]'") from None
    import matplotlib
    import matplotlib.pyplot as plt

    previous = dict.__getitem__(matplotlib.rcParams, "backend")
    settings: dict[RcKeyType, Any] = {
        "webagg.address": target.host,
        "webagg.port": target.web,
        "webagg.open_in_browser": False,
        "webagg.port_retries": 1,  # serve on PORT or fail; never quietly elsewhere
    }
    access = logging.getLogger("tornado.access")  # tornado logs every request (404 GET /ws) to stderr
    level = access.level
    access.setLevel(logging.ERROR)
    quiet = _ClosedSocket()
    loggers = [logging.getLogger(n) for n in ("tornado.application", "tornado.general", "asyncio")]
    for logger in loggers:
        logger.addFilter(quiet)
    try:
        with matplotlib.rc_context(settings), warnings.catch_warnings():
            # WebAgg's Ctrl-C handler calls a tornado API deprecated in 6.3: not the user's concern.
            warnings.filterwarnings("ignore", "add_callback_from_signal is deprecated", DeprecationWarning)
            plt.switch_backend("webagg")
            yield
    finally:
        access.setLevel(level)
        for logger in loggers:
            logger.removeFilter(quiet)
        plt.close("all")
        plt.switch_backend(previous)


def run(target: Target, view: View, style: Style, curves: list[Curve] | None) -> int:
    """Show ``curves`` (or, with None, follow the files) where ``target`` says."""
    if target.output:
        return headless(target, view, style, curves)
    return window(target, view, style, curves)
