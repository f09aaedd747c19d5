"""Closing writers when the process is told to stop: `LossWriter(..., close_on_signal=True)`.

Schedulers (SLURM, Kubernetes, systemd) send SIGTERM before SIGKILL; Ctrl-C sends SIGINT. By default such a
signal ends the process without running `close()`, and the events added since the last flush (at most
`flush_secs` of them) are lost; the flushed ones are kept. A writer that opts in is closed (flushed and
compacted) by a handler for SIGTERM and SIGINT, which then passes the signal on to the handler that was
installed before (Python's own for SIGINT raises KeyboardInterrupt), or, if that was the default action,
re-raises it with the default action, so the process still terminates with the conventional status.

Signal handlers can only be installed from the main thread (a CPython rule): a writer opened with the option
in another thread is covered while a writer of the main thread has the handlers installed, else it warns
(RuntimeWarning) and runs without them. A signal the process ignores (SIG_IGN, e.g. SIGINT in a background
job) is left alone. The previous handlers are restored when the last such writer closes on the main thread,
unless someone installed another handler since (then ours stays and only passes signals on).

A handler runs on the main thread between two of its bytecodes, possibly while that thread holds a
writer's locks (in `flush()`, in `close()`, waking the flusher): closing then would wait for them forever.
Those stretches are `critical`: a signal that arrives inside one is handled as the stretch ends.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import warnings
import weakref
from collections.abc import Callable
from types import FrameType
from typing import Any

from lossfmt import _checks

__all__ = ["SIGNALS", "critical", "register"]

SIGNALS = (signal.SIGTERM, signal.SIGINT)

_lock = threading.RLock()  # reentrant: a signal may arrive on the main thread while it holds the lock
os.register_at_fork(after_in_child=_lock._at_fork_reinit)  # type: ignore[attr-defined]  # (held by a thread not in the child)
_closers: dict[int, weakref.WeakMethod[Callable[[], None]]] = {}
_previous: dict[int, Any] = {}  # signal -> the handler ours replaced
_tokens = iter(range(1 << 62))
_MAIN = threading.main_thread().ident
_busy = 0  # critical stretches the main thread is in
#: A signal that arrived in one, and the handler to pass it on to as it was then (the last writer's close()
#: restores the handlers before the stretch ends).
_deferred: list[tuple[int, FrameType | None, Any]] = []


class _Critical:
    """``with critical:`` around what holds a writer's locks on the main thread (see the module docstring)."""

    def __enter__(self) -> None:
        global _busy
        if threading.get_ident() == _MAIN:
            _busy += 1

    def __exit__(self, *exc: object) -> None:
        global _busy
        if threading.get_ident() == _MAIN:
            _busy -= 1
            if not _busy and _deferred:
                pending = list(_deferred)
                _deferred.clear()
                _handle_all(pending)


critical = _Critical()


def _handle_all(pending: list[tuple[int, FrameType | None, Any]]) -> None:
    """`_handle` each signal deferred (once per signal, in the order they came); an exception a handler raises
    (KeyboardInterrupt) comes after the others were handled."""
    raised: BaseException | None = None
    firsts = {signum: (signum, frame, previous) for signum, frame, previous in reversed(pending)}
    for signum, frame, previous in sorted(firsts.values(), key=pending.index):
        try:
            _handle(signum, frame, previous)
        except BaseException as exc:
            raised = raised or exc
    if raised is not None:
        raise raised


def _after_fork_in_child() -> None:
    """The forking thread is the child's main thread, in no critical stretch (it may fork from any thread)."""
    global _MAIN, _busy
    _MAIN, _busy = threading.get_ident(), 0
    _deferred.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


def register(writer: Any) -> Callable[[], None]:
    """Close `writer` (weakly referenced) on SIGTERM/SIGINT; returns the function to call once it closed."""
    import pyarrow.compute  # noqa: F401  (what a handler's compaction needs: never imported inside a handler)

    with critical, _lock:  # (a handler meanwhile would wait for the lock: it runs as this ends)
        token = next(_tokens)
        _closers[token] = weakref.WeakMethod(writer.close)
        _install()

    def release() -> None:
        with critical, _lock:
            if _closers.pop(token, None) is not None and not _closers:
                _restore()

    return release


def _install() -> None:
    if threading.current_thread() is not threading.main_thread():
        if not any(signal.getsignal(signum) is _handle for signum in SIGNALS):
            warnings.warn(
                "close_on_signal=True has no effect for a LossWriter opened outside the main thread before "
                "any writer of the main thread used it (Python installs signal handlers only from the main "
                "thread); open it in the main thread to close it on SIGTERM/SIGINT",
                RuntimeWarning,
                stacklevel=_checks.user_stacklevel(),
            )
        return
    for signum in SIGNALS:
        if signum in _previous:  # ours is installed (or in the chain of a handler installed since)
            continue
        current = signal.getsignal(signum)
        if current == signal.SIG_IGN:
            continue
        _previous[signum] = current
        signal.signal(signum, _handle)


def _restore() -> None:
    if threading.current_thread() is not threading.main_thread():
        return  # ours stays installed; with no writer registered it only passes signals on
    for signum, previous in list(_previous.items()):
        if signal.getsignal(signum) is _handle:  # else a later handler may chain to ours: keep passing on
            signal.signal(signum, signal.SIG_DFL if previous is None else previous)
            del _previous[signum]


def _handle(signum: int, frame: FrameType | None, deferred: Any = None) -> None:
    """Close every registered writer, then let the previous handler (or the default action) act; a signal
    `deferred` by a critical stretch passes on to the handler that was previous when it arrived."""
    if _busy:  # (handlers run on the main thread) inside a critical stretch: handled as it ends
        _deferred.append((signum, frame, _previous.get(signum, signal.SIG_DFL)))
        return
    with _lock:
        closers = [ref() for ref in _closers.values()]
        previous = _previous.get(signum, signal.SIG_DFL) if deferred is None else deferred
    for close in closers:
        if close is not None:
            try:
                close()
            except Exception as exc:  # one failing writer must not keep the others open; say why it failed
                name = signal.Signals(signum).name
                sys.stderr.write(
                    f"lossfmt: closing a LossWriter on {name} failed: {type(exc).__name__}: {exc}\n"
                )
    if callable(previous):
        previous(signum, frame)
    elif previous != signal.SIG_IGN:  # SIG_DFL, or None (a handler not installed from Python)
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)
