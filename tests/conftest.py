"""Suite-wide fixtures: headless matplotlib, no test may leave a thread running, and the `slow` marker."""

from __future__ import annotations

import os
import threading
import time

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--slow", action="store_true", help="also run the tests marked slow (`make test` and CI do)"
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "slow: a long fault-injection case; left out of a plain run, run with --slow (CI does)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect (not skip) the slow cases unless --slow: the summary then counts them as deselected."""
    if config.getoption("--slow") or "slow" in config.getoption("markexpr", ""):
        return  # asked for: `--slow`, or a `-m` expression that names the marker
    slow = [item for item in items if item.get_closest_marker("slow")]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if not item.get_closest_marker("slow")]


# Daemon threads that third-party libraries start once per process and keep by design.
_LIBRARY_THREADS = ("TMonitor", "pydevd", "ThreadPoolExecutor", "asyncio_")


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
