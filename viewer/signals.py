"""SIGINT and SIGTERM as a request to stop: how every follow loop (window, file, --web, --term) ends with
exit 0 and its cleanup done (the terminal's screen restored), whoever sends the signal (Ctrl-C, `kill`,
`timeout`, a job manager)."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def stopping(on_signal: Callable[[], None]) -> Iterator[None]:
    """SIGINT and SIGTERM call ``on_signal`` for the duration (the previous handlers come back after)."""
    previous = {
        s: signal.signal(s, lambda signum, frame: on_signal()) for s in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
