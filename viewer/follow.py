"""Watching files for ``--follow``: watchdog (or polling) says "something changed", one place reads.

The watchdog handler runs on watchdog's thread and only sets an Event. ``FollowLoop.tick()`` runs on the
main thread (from a plain loop, or from a GUI canvas timer), reads only new bytes through one
``lossfmt.Follower`` per file, and calls ``redraw`` at most once per ``min_interval`` however many file
events arrived: bursts are coalesced. Parent directories are watched (not files), so a file that does not
exist yet, is replaced by the writer's compaction, or is deleted and recreated keeps being followed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from lossfmt import transforms
from lossview.mean import mean_across_runs
from lossview.sources import Sources as Sources  # (sources.py: the followed files; re-exported for callers)
from lossview.sources import stamp
from lossview.view import Curve, Run, View, check_label, curves, filter_tags, hparam, relabel, smooth

if TYPE_CHECKING:
    from watchdog.observers.api import BaseObserver, ObservedWatch

#: A run's cached curves: (its label, the chunks they were computed from, the curves).
_Cached = tuple[str, list[pa.Table], list[Curve]]

#: Even with file events, look again this often (a missed event costs at most this much latency).
SAFETY_POLL = 5.0
#: While a watched directory does not exist yet, look for it this often.
MISSING_DIR_POLL = 1.0
_IGNORED = frozenset({"opened", "closed_no_write"})  # our own reads trigger these


class ChangeHandler(FileSystemEventHandler):
    """Sets ``changed`` when an event concerns a followed file; never reads, never touches matplotlib."""

    def __init__(self, wanted: Callable[[str], bool], changed: threading.Event) -> None:
        self.wanted, self.changed = wanted, changed

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in _IGNORED:
            return
        paths = (event.src_path, getattr(event, "dest_path", "") or "")
        if any(p and self.wanted(os.fsdecode(p)) for p in paths):
            self.changed.set()


class CurveCache:
    """Curves per followed file, recomputed only for files whose events changed since the last redraw.

    Comparing a sweep of many runs while one of them grows then costs the work of that one run; a growing
    run's new events are appended to its raw curves and only the smoothing is recomputed (by lossfmt).
    """

    def __init__(self, view: View) -> None:
        self.view = view
        self._per_run = replace(view, mean_runs=False)
        self._raw = replace(self._per_run, smooth=None, smooth_explicit=True, label=None)
        # path -> (run label, chunks the curves were computed from, raw curves)
        self._cache: dict[Path, _Cached] = {}

    def curves(self, sources: Sources) -> list[Curve] | None:
        """Every file's curves (the mean across runs with --mean-runs); None before any event arrived, []
        once every run shown was dropped."""
        parts = sources.runs()
        if not parts and not self._cache:
            return None
        check_label([run for _, run, _ in parts], self.view)
        out: list[Curve] = []
        for path, run, chunks in parts:
            hit = self._cache.get(path)
            ended = hit is not None and not run.live and any(c.unfinished for c in hit[2])  # closed since
            if hit is None or hit[0] != run.label or not _same(hit[1], chunks) or ended:
                hit = self._cache[path] = (run.label, chunks, self._compute(path, run, hit, chunks))
            group = run.label if self.view.label is None else hparam(run, self.view.label)
            out.extend(dataclasses.replace(c, group=group) for c in hit[2])
        smooth(out, self._per_run)
        for gone in set(self._cache) - {p for p, _, _ in parts}:
            del self._cache[gone]
        if self.view.mean_runs:
            return mean_across_runs(out, self.view)
        relabel(out, self.view)
        return out

    def _compute(self, path: Path, run: Run, hit: _Cached | None, chunks: list[pa.Table]) -> list[Curve]:
        view = self._raw
        done = len(hit[1]) if hit is not None and hit[0] == run.label else 0  # chunks the curves have
        if hit is not None and 0 < done < len(chunks) and _same(hit[1], chunks[:done]):
            new = Run(run.label, pa.concat_tables(chunks[done:]).replace_schema_metadata(None), run.meta)
            extended = _extend(hit[2], new, view)
            if extended is not None:
                return extended
        try:
            return curves([run], view)
        except ValueError as exc:  # e.g. --x epoch on a run without epochs: show the others
            message = str(exc)
            warnings.warn(message if str(path) in message else f"{path}: {message}", stacklevel=3)
            return []


def _extend(old: list[Curve], new: Run, view: View) -> list[Curve] | None:
    """``old`` raw curves continued with a run's newer events; None when only a recompute is right
    (bucketing, an epoch, items or relative axis, a rewind, a curve going back in x)."""
    if view.per is not None or view.x not in ("step", "time"):
        return None
    table = filter_tags(new.table, view)
    if not view.keep_rewound and table.num_rows and transforms.drop_rewound(table).num_rows != table.num_rows:
        return None
    out = {c.key: c for c in old}
    for f in curves([Run(new.label, table, new.meta)], view):
        o = out.get(f.key)
        if o is None:
            out[f.key] = f
            continue
        if len(o.x) and (f.x[0] < o.x[-1] or f.step[0] < o.step[-1]):
            return None
        cat = np.concatenate
        count = None if o.count is None or f.count is None else cat([o.count, f.count])
        out[f.key] = dataclasses.replace(
            o, x=cat([o.x, f.x]), y=cat([o.y, f.y]), step=cat([o.step, f.step]), count=count
        )
    return list(out.values())


class Watcher:
    """Watchdog observer on the followed files' directories, or plain polling every ``poll`` seconds."""

    def __init__(self, sources: Sources, *, poll: float | None = None) -> None:
        self.sources, self.poll = sources, poll
        self.changed = threading.Event()
        self._handler = ChangeHandler(sources.wanted, self.changed)
        self._observer: BaseObserver | None = None
        self._watches: dict[Path, tuple[ObservedWatch, int]] = {}

    def start(self) -> None:
        """Start watching (no thread at all in polling mode)."""
        if self.poll is None:
            self._observer = Observer()
            self._observer.daemon = True
            self._observer.start()
            self.rescan()

    def stop(self) -> None:
        """Stop and join the observer thread; idempotent."""
        if self._observer is not None:
            self._observer.stop()
            self._observer.join()
            self._observer = None

    def rescan(self) -> bool:
        """(Re)schedule watches for directories that appeared or were replaced; True if all are watched."""
        if self._observer is None:
            return True
        complete = True
        for directory, recursive in self.sources.directories().items():
            found = stamp(directory)
            inode = found[1] if found else None
            known = self._watches.get(directory)
            if known is not None and known[1] != inode:
                with contextlib.suppress(KeyError, OSError):
                    self._observer.unschedule(known[0])
                del self._watches[directory]
                self.changed.set()
            if inode is None:
                complete = False
            elif directory not in self._watches:
                try:
                    watch = self._observer.schedule(self._handler, os.fspath(directory), recursive=recursive)
                except OSError:
                    complete = False
                    continue
                self._watches[directory] = (watch, inode)
                self.changed.set()  # the file may have appeared before the watch existed
        return complete

    def timeout(self, complete: bool) -> float:
        """How long to wait for a file event before looking anyway."""
        if self.poll is not None:
            return self.poll
        return SAFETY_POLL if complete else MISSING_DIR_POLL


class FollowLoop:
    """The one place that reads: debounced, coalesced, called from the main thread."""

    def __init__(
        self, sources: Sources, watcher: Watcher, redraw: Callable[[], None], *, min_interval: float = 0.25
    ) -> None:
        self.sources, self.watcher, self.redraw = sources, watcher, redraw
        self.min_interval = min_interval
        self._interval = min_interval
        self._last_read = self._last_redraw = -float("inf")
        self._complete = self._dirty = False

    def tick(self) -> bool:
        """Read and redraw if a change was signalled (or a poll is due); True if it redrew."""
        now = time.monotonic()
        due = now - self._last_read >= self.watcher.timeout(self._complete)
        if self.watcher.changed.is_set() or due:
            self.watcher.changed.clear()
            self._last_read = now
            self._complete = self.watcher.rescan()
            self._dirty = self.sources.poll() or self._dirty
        if self._dirty and now - self._last_redraw >= self._interval:
            self._dirty = False
            self._last_redraw = now
            self.redraw()
            # A huge run makes each redraw slow: space redraws out so drawing takes at most ~1/3 of a core.
            self._interval = max(self.min_interval, 2.0 * (time.monotonic() - now))
            return True
        return False

    def run(self, stop: threading.Event) -> None:
        """Tick until ``stop`` is set, sleeping on the change Event in between (near-zero CPU when idle)."""
        while not stop.is_set():
            self.tick()
            if stop.is_set():
                break
            if self._dirty:  # a redraw is pending behind the rate limit
                wait = max(self._interval - (time.monotonic() - self._last_redraw), 0.0)
            else:
                wait = max(self.watcher.timeout(self._complete) - (time.monotonic() - self._last_read), 0.0)
            self.watcher.changed.wait(min(wait, 0.5))


def _same(a: Sequence[pa.Table], b: Sequence[pa.Table]) -> bool:
    """The same chunk objects (identity: comparing tables by value would read them all)."""
    return len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True))
