"""Suite-wide fixtures: headless matplotlib, and no test may leave a thread running."""

from __future__ import annotations

import os
import threading
import time

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

# Daemon threads that third-party libraries start once per process and keep by design.
_LIBRARY_THREADS = ("TMonitor", "pydevd", "ThreadPoolExecutor", "asyncio_")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: a long fault or fuzz case; CI runs it (pytest -m slow)")


@pytest.fixture(autouse=True)
def no_leaked_threads():
    """Fail a test that leaves one of its threads running (a flusher or watcher not shut down)."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5.0
    while True:
        leaked = [
            t
            for t in threading.enumerate()
            if t not in before and t.is_alive() and not t.name.startswith(_LIBRARY_THREADS)
        ]
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert not leaked, f"test left threads running: {[t.name for t in leaked]}"
