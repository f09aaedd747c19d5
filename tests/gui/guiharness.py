"""Harness for the GUI tests and scripts/screenshot.py: a virtual X screen, headless Chromium, lossview.

Everything here is bounded by a deadline and cleaned up by its context manager, so a hung viewer,
browser or X server fails the test instead of hanging the suite. ``require`` turns a missing tool into
a skip, or into a failure when ``LOSSFMT_REQUIRE_GUI_TESTS=1`` (CI installs the tools and must never
skip silently).
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import ctypes.util
import io
import json
import math
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
from PIL import Image, ImageGrab

T = TypeVar("T")

REQUIRE_ENV = "LOSSFMT_REQUIRE_GUI_TESTS"
SCREEN = (1280, 800)
#: Deadline for a viewer to start and draw (python, matplotlib, Tk or tornado, first read) on a busy machine.
STARTUP = 25.0
#: Deadline for a redraw after a flush (the viewer promises well under a second; this is slack, not a goal).
REDRAW = 10.0
#: Solid pixels of a colour meaning "a curve of that colour is drawn" (a full-width line has ~1000).
LINE_PIXELS = 150
#: Command-line flags for a quiet headless Chromium on a machine with no network but loopback.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
)


def log_run(writer: Any, steps: range, *, val_every: int = 0) -> None:
    """Log a plausible decaying train loss (tag ``loss``) and, if asked, a per-epoch-like ``val``."""
    for step in steps:
        writer.add(step, 2.0 * math.exp(-step / 30) + 0.3 + 0.05 * math.sin(step))
        if val_every and step % val_every == 0:
            writer.add(step, 1.5 * math.exp(-step / 60) + 0.4, "val")


def require(available: bool, reason: str) -> None:
    """Skip the test when a tool is missing, or fail it when the environment demands GUI tests."""
    import pytest

    if available:
        return
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason} (and {REQUIRE_ENV}=1 forbids skipping)", pytrace=False)
    pytest.skip(reason)


def has_tkinter() -> bool:
    """Whether this interpreter can import tkinter (TkAgg needs it)."""
    try:
        import tkinter  # noqa: F401
    except ImportError:
        return False
    return True


def chromium_path() -> str | None:
    """The Chromium (or Chrome) executable on PATH, if any."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def wait_for(check: Callable[[], T], *, timeout: float, what: str, interval: float = 0.2) -> T:
    """Call ``check`` until it returns something truthy; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def hex_rgb(color: str) -> tuple[int, int, int]:
    """'#1f77b4' -> (31, 119, 180)."""
    color = color.lstrip("#")
    return int(color[0:2], 16), int(color[2:4], 16), int(color[4:6], 16)


def count_color(image: Image.Image, color: str, *, tolerance: int = 12) -> int:
    """Pixels within ``tolerance`` (per channel) of ``color``: the solid core of a line in that colour."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    return int((np.abs(pixels - hex_rgb(color)).max(axis=2) <= tolerance).sum())


def wait_for_curve(
    screenshot: Callable[[], Image.Image], viewer: Viewer, color: str, *, timeout: float, what: str
) -> Image.Image:
    """Take screenshots until one shows a curve in ``color``; fail early if the viewer exits."""

    def check() -> Image.Image | None:
        viewer.assert_alive()
        shot = screenshot()
        return shot if count_color(shot, color) >= LINE_PIXELS else None

    return wait_for(check, timeout=timeout, what=what, interval=0.25)


def count_changed(a: Image.Image, b: Image.Image) -> int:
    """Pixels that differ between two same-sized screenshots."""
    pa_, pb = (np.asarray(i.convert("RGB"), dtype=np.int16) for i in (a, b))
    return int((np.abs(pa_ - pb).max(axis=2) > 0).sum())


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a TCP socket in LISTEN state on ``port`` (Linux /proc/net/tcp{,6})."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as fh:
            next(fh)
            for line in fh:
                local, state = line.split()[1], line.split()[3]
                address, hex_port = local.split(":")
                if state == "0A" and int(hex_port, 16) == port:
                    raw = bytes.fromhex(address)
                    # /proc prints each 32-bit word in host (little-endian) order.
                    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
                    found.add(socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, words))
    return found


def http_get(url: str, *, timeout: float = 2.0) -> tuple[int, str]:
    """Status and body of a GET (0 and the error text if nothing answers)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except OSError as exc:
        return 0, str(exc)


# ------------------------------------------------------------------------------------------ X display


class Xvfb:
    """A virtual X screen on a display number the server picks itself (``-displayfd``): no races."""

    def __init__(self, size: tuple[int, int] = SCREEN) -> None:
        self.size = size
        self.display = ""
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Xvfb:
        read_fd, write_fd = os.pipe()
        try:
            self._proc = subprocess.Popen(
                [
                    "Xvfb",
                    "-displayfd",
                    str(write_fd),
                    "-screen",
                    "0",
                    f"{self.size[0]}x{self.size[1]}x24",
                    "-nolisten",
                    "tcp",
                    "-br",  # black root: anything not black is a window
                    "-noreset",  # no server reset (refused connections) when the last client leaves
                ],
                pass_fds=(write_fd,),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            os.close(write_fd)
            write_fd = -1
            number = _read_line(read_fd, timeout=10.0)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        finally:
            os.close(read_fd)
            if write_fd >= 0:
                os.close(write_fd)
        if not number.strip().isdigit():
            stderr = self.stop()
            raise AssertionError(f"Xvfb did not start: {stderr.strip()[-500:]}")
        self.display = f":{number.strip()}"
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> str:
        """Terminate the server (kill if it lingers); its stderr."""
        proc, self._proc = self._proc, None
        if proc is None:
            return ""
        return _terminate(proc)

    def grab(self) -> Image.Image:
        """A screenshot of the whole screen (what a person looking at the display would see)."""
        return ImageGrab.grab(xdisplay=self.display).convert("RGB")


def _read_line(fd: int, *, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    data = b""
    while not data.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        chunk = os.read(fd, 64)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace")


def _terminate(proc: subprocess.Popen[Any], *, grace: float = 5.0) -> str:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(grace)
    err = proc.stderr.read() if proc.stderr else b""
    if proc.stderr:
        proc.stderr.close()
    return err.decode(errors="replace") if isinstance(err, bytes) else err


class _XClientMessage(ctypes.Structure):
    _fields_ = (
        ("type", ctypes.c_int),
        ("serial", ctypes.c_ulong),
        ("send_event", ctypes.c_int),
        ("display", ctypes.c_void_p),
        ("window", ctypes.c_ulong),
        ("message_type", ctypes.c_ulong),
        ("format", ctypes.c_int),
        ("data", ctypes.c_long * 5),
    )


class _XEvent(ctypes.Union):
    _fields_ = (("xclient", _XClientMessage), ("pad", ctypes.c_long * 24))


def _xlib() -> ctypes.CDLL:
    lib = ctypes.CDLL(ctypes.util.find_library("X11") or "libX11.so.6")
    lib.XOpenDisplay.restype = ctypes.c_void_p
    lib.XOpenDisplay.argtypes = (ctypes.c_char_p,)
    lib.XDefaultRootWindow.restype = ctypes.c_ulong
    lib.XDefaultRootWindow.argtypes = (ctypes.c_void_p,)
    lib.XQueryTree.argtypes = (
        ctypes.c_void_p,
        ctypes.c_ulong,
        ctypes.POINTER(ctypes.c_ulong),
        ctypes.POINTER(ctypes.c_ulong),
        ctypes.POINTER(ctypes.POINTER(ctypes.c_ulong)),
        ctypes.POINTER(ctypes.c_uint),
    )
    lib.XFetchName.argtypes = (ctypes.c_void_p, ctypes.c_ulong, ctypes.POINTER(ctypes.c_char_p))
    lib.XInternAtom.restype = ctypes.c_ulong
    lib.XInternAtom.argtypes = (ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int)
    lib.XSendEvent.argtypes = (
        ctypes.c_void_p,
        ctypes.c_ulong,
        ctypes.c_int,
        ctypes.c_long,
        ctypes.POINTER(_XEvent),
    )
    lib.XFree.argtypes = (ctypes.c_void_p,)
    lib.XFlush.argtypes = lib.XCloseDisplay.argtypes = (ctypes.c_void_p,)
    return lib


def top_level_windows(display: str) -> dict[int, str]:
    """The screen's top-level windows and their titles (WM_NAME), straight from the X server."""
    lib = _xlib()
    dpy = lib.XOpenDisplay(display.encode())
    if not dpy:
        raise AssertionError(f"cannot open X display {display}")
    try:
        root, parent = ctypes.c_ulong(), ctypes.c_ulong()
        children = ctypes.POINTER(ctypes.c_ulong)()
        n = ctypes.c_uint()
        lib.XQueryTree(dpy, lib.XDefaultRootWindow(dpy), root, parent, children, n)
        windows = {}
        for i in range(n.value):
            name = ctypes.c_char_p()
            if lib.XFetchName(dpy, children[i], ctypes.byref(name)) and name.value is not None:
                windows[children[i]] = name.value.decode(errors="replace")
                lib.XFree(name)
        if children:
            lib.XFree(children)
        return windows
    finally:
        lib.XCloseDisplay(dpy)


def close_window(display: str, window: int) -> None:
    """Ask a window to close the way a window manager's close button does (ICCCM WM_DELETE_WINDOW)."""
    lib = _xlib()
    dpy = lib.XOpenDisplay(display.encode())
    if not dpy:
        raise AssertionError(f"cannot open X display {display}")
    try:
        event = _XEvent()
        event.xclient.type = 33  # ClientMessage
        event.xclient.window = window
        event.xclient.message_type = lib.XInternAtom(dpy, b"WM_PROTOCOLS", 0)
        event.xclient.format = 32
        event.xclient.data[0] = lib.XInternAtom(dpy, b"WM_DELETE_WINDOW", 0)
        lib.XSendEvent(dpy, window, 0, 0, ctypes.byref(event))
        lib.XFlush(dpy)
    finally:
        lib.XCloseDisplay(dpy)


def pointer(display: str, x: int, y: int, *, click: bool = False) -> None:
    """Move the mouse to screen (x, y), and press and release the left button there if ``click``
    (the XTest extension: the X server delivers them as a person's pointer events)."""
    lib = _xlib()
    xtst = ctypes.CDLL(ctypes.util.find_library("Xtst") or "libXtst.so.6")
    xtst.XTestFakeMotionEvent.argtypes = (
        ctypes.c_void_p,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_ulong,
    )
    xtst.XTestFakeButtonEvent.argtypes = (ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_ulong)
    dpy = lib.XOpenDisplay(display.encode())
    if not dpy:
        raise AssertionError(f"cannot open X display {display}")
    try:
        xtst.XTestFakeMotionEvent(dpy, -1, x, y, 0)
        if click:
            xtst.XTestFakeButtonEvent(dpy, 1, 1, 0)
            xtst.XTestFakeButtonEvent(dpy, 1, 0, 0)
        lib.XFlush(dpy)
    finally:
        lib.XCloseDisplay(dpy)


def longest_horizontal_run(image: Image.Image, color: str, *, tolerance: int = 12) -> tuple[int, int, int]:
    """(length, row, first column) of the longest horizontal run of ``color`` pixels (a legend handle)."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    mask = np.abs(pixels - hex_rgb(color)).max(axis=2) <= tolerance
    best = (0, 0, 0)
    for row in np.flatnonzero(mask.any(axis=1)):
        edges = np.flatnonzero(np.diff(np.r_[False, mask[row], False].astype(np.int8)))
        starts, ends = edges[::2], edges[1::2]
        i = int(np.argmax(ends - starts))
        best = max(best, (int(ends[i] - starts[i]), int(row), int(starts[i])))
    return best


# ------------------------------------------------------------------------------------------ lossview


class Viewer:
    """``lossview`` in a subprocess (same interpreter), stopped by a signal or killed on exit."""

    def __init__(
        self, args: Sequence[str], *, env: dict[str, str] | None = None, cwd: str | None = None
    ) -> None:
        self.args = [sys.executable, "-m", "lossview", *args]
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self._files = contextlib.ExitStack()

    def __enter__(self) -> Viewer:
        self._err = self._files.enter_context(tempfile.TemporaryFile())
        self._out = self._files.enter_context(tempfile.TemporaryFile())
        self.proc = subprocess.Popen(
            self.args,
            env=self.env,
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=self._err,
        )
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._files.close()

    def alive(self) -> bool:
        """Whether the viewer is still running."""
        return self.proc is not None and self.proc.poll() is None

    def assert_alive(self) -> None:
        """Fail with the viewer's stderr if it has exited."""
        if not self.alive():
            raise AssertionError(f"lossview exited early (status {self.proc.poll()}):\n{self.stderr()}")

    def stop(self, sig: int = signal.SIGINT, *, timeout: float = 10.0) -> int:
        """Send ``sig`` and return the exit status (fails if it does not exit within ``timeout``)."""
        self.proc.send_signal(sig)
        return self.wait(timeout=timeout, what=f"lossview to exit after {signal.Signals(sig).name}")

    def wait(self, *, timeout: float, what: str = "lossview to exit") -> int:
        """The exit status, waiting at most ``timeout`` seconds."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}") from None

    def stderr(self) -> str:
        """Everything the viewer wrote to stderr so far."""
        self._err.seek(0)
        return self._err.read().decode(errors="replace")

    def assert_clean_exit(self, status: int) -> None:
        """Exit status 0 and nothing alarming on stderr: no traceback, no (library) warnings."""
        err = self.stderr()
        assert status == 0, f"lossview exited with status {status}:\n{err}"
        # (a resumed run's hidden events are told on purpose: a note about the data, not noise)
        told = "the events that rewind orphans are hidden"
        lines = [line for line in err.splitlines() if told not in line]
        noise = [line for line in lines if "Traceback" in line or "warning" in line.lower()]
        assert not noise, f"lossview printed on a clean exit:\n{err}"


# ------------------------------------------------------------------------------------------ Chromium


#: Puts two inherited descriptors at fds 3 and 4, then becomes the browser (exec).
_PIPE_TRAMPOLINE = """
import fcntl, os, sys
src = [fcntl.fcntl(int(fd), fcntl.F_DUPFD, 10) for fd in sys.argv[1:3]]
for fd, target in zip(src, (3, 4)):
    os.dup2(fd, target)
for fd in {int(sys.argv[1]), int(sys.argv[2]), *src} - {3, 4}:
    os.close(fd)
os.execv(sys.argv[3], sys.argv[3:])
"""


class Chromium:
    """Headless Chromium driven over the DevTools protocol on a pipe (no debugging port is opened)."""

    def __init__(self, executable: str, *, size: tuple[int, int] = (1200, 800)) -> None:
        self.executable, self.size = executable, size
        self._proc: subprocess.Popen[bytes] | None = None
        self._profile = tempfile.TemporaryDirectory(prefix="lossview-chromium-")
        self._to_browser = self._from_browser = -1
        self._buffer = b""
        self._events: list[dict] = []
        self._next_id = 0
        self._session = ""

    def __enter__(self) -> Chromium:
        # Chromium reads commands from fd 3 and writes replies to fd 4 (--remote-debugging-pipe).
        cmd_read, cmd_write = os.pipe()
        reply_read, reply_write = os.pipe()
        argv = [
            self.executable,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={self._profile.name}",
            f"--window-size={self.size[0]},{self.size[1]}",
            "--remote-debugging-pipe",
            "about:blank",
        ]
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-c", _PIPE_TRAMPOLINE, str(cmd_read), str(reply_write), *argv],
                pass_fds=(cmd_read, reply_write),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            os.close(cmd_read)
            os.close(reply_write)
        self._to_browser, self._from_browser = cmd_write, reply_read
        try:
            self.call("Browser.getVersion", session=False)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            with contextlib.suppress(AssertionError, OSError):
                if proc.poll() is None:
                    self.call("Browser.close", session=False, timeout=5.0)
            if proc.poll() is None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(5)
            if proc.poll() is None:
                # The whole session: the browser's renderer and utility processes too.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        for fd in (self._to_browser, self._from_browser):
            if fd >= 0:
                os.close(fd)
        self._to_browser = self._from_browser = -1
        self._profile.cleanup()

    def kill(self) -> None:
        """End the browser abruptly (SIGKILL to its whole session), as a crash or a killed tab would."""
        if self._proc is not None and self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait(10)

    def call(self, method: str, *, session: bool = True, timeout: float = 15.0, **params: Any) -> dict:
        """Send one DevTools command and return its result (fails on an error reply or timeout)."""
        self._next_id += 1
        wanted = self._next_id
        message: dict[str, Any] = {"id": wanted, "method": method, "params": params}
        if session and self._session:
            message["sessionId"] = self._session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        reply = self._receive(lambda m: m.get("id") == wanted, timeout=timeout, what=f"DevTools {method}")
        if "error" in reply:
            raise AssertionError(f"DevTools {method} failed: {reply['error']}")
        return reply.get("result", {})

    def wait_event(self, method: str, *, timeout: float = 15.0) -> dict:
        """The next (or an already received) DevTools event named ``method``."""
        for i, event in enumerate(self._events):
            if event.get("method") == method:
                return self._events.pop(i)
        return self._receive(lambda m: m.get("method") == method, timeout=timeout, what=method)

    def _receive(self, match: Callable[[dict], bool], *, timeout: float, what: str) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                message = json.loads(raw)
                if match(message):
                    return message
                if "method" in message:
                    self._events.append(message)
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_browser], [], [], left)[0]:
                raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise AssertionError(f"Chromium exited while waiting for {what}")
            self._buffer += chunk

    def open(self, url: str) -> None:
        """Open ``url`` in a new page of the viewport size and wait for its load event."""
        target = self.call("Target.createTarget", session=False, url="about:blank")["targetId"]
        attached = self.call("Target.attachToTarget", session=False, targetId=target, flatten=True)
        self._session = attached["sessionId"]
        width, height = self.size
        self.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        self.call("Page.enable")
        self._events.clear()
        result = self.call("Page.navigate", url=url)
        if result.get("errorText"):
            raise AssertionError(f"Chromium could not open {url}: {result['errorText']}")
        self.wait_event("Page.loadEventFired")

    def screenshot(self) -> Image.Image:
        """The page's viewport as rendered right now."""
        data = self.call("Page.captureScreenshot", format="png")["data"]
        return Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB")
