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
import fnmatch
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

import lossfmt
from lossfmt import transforms
from lossview.mean import mean_across_runs
from lossview.view import (
    Curve,
    Run,
    View,
    check_label,
    curves,
    filter_tags,
    hparam,
    relabel,
    runs,
    smooth,
)

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


class Sources:
    """The followed files: FILE arguments re-expanded as files appear, one lossfmt.Follower per file."""

    def __init__(self, args: Sequence[str]) -> None:
        self.args = list(args)
        self.followers: dict[Path, lossfmt.Follower] = {}
        self.chunks: dict[Path, list[pa.Table]] = {}
        #: Bumped whenever a file's events change, so per-file work can be cached.
        self.versions: dict[Path, int] = {}
        #: The problem of each file that could not be read at the last poll (its last good events are kept).
        self.errors: dict[Path, str] = {}

    def directories(self) -> dict[Path, bool]:
        """Directories to watch, each with whether to watch it recursively (a ``**`` glob)."""
        dirs: dict[Path, bool] = {}
        for arg in self.args:
            if set("*?[") & set(arg):
                base = _glob_base(arg)
                dirs[base] = dirs.get(base, False) or "**" in arg
            elif os.path.isdir(arg):
                dirs[Path(arg)] = dirs.get(Path(arg), False)
            else:
                parent = Path(arg).parent
                dirs[parent] = dirs.get(parent, False)
        return {Path(os.path.abspath(d)): r for d, r in dirs.items()}

    def wanted(self, path: str) -> bool:
        """Whether a file event's path is (or could become) one of the followed files."""
        path = os.path.abspath(path)
        for arg in self.args:
            if set("*?[") & set(arg):
                if fnmatch.fnmatch(path, os.path.abspath(arg)):
                    return True
            elif os.path.isdir(arg) or arg.endswith(os.sep):
                if os.path.dirname(path) == os.path.abspath(arg) and path.endswith(".arrow"):
                    return True
            elif path == os.path.abspath(arg):
                return True
        return False

    def paths(self) -> list[str]:
        """The files the arguments name now (a path, glob or directory that names none yet is skipped)."""
        return list(dict.fromkeys(p for arg in self.args for p in self.paths_of(arg)))

    @staticmethod
    def paths_of(arg: str) -> list[str]:
        """The files one argument names now; none while it names nothing yet."""
        try:
            return lossfmt.run_paths(arg)
        except lossfmt.LossFormatError:  # not there yet: the watch says when it appears
            return []

    def poll(self) -> bool:
        """Read what was appended to every file since the last poll; True if anything changed."""
        for name in self.paths():
            if Path(name) not in self.followers:
                self.followers[Path(name)] = lossfmt.Follower(name)
                self.chunks[Path(name)] = []
        changed = False
        for path, follower in self.followers.items():
            try:
                update = follower.poll()
            except (lossfmt.LossfmtError, OSError) as exc:
                self.errors[path] = str(exc) if isinstance(exc, lossfmt.LossfmtError) else f"{path}: {exc}"
                continue
            self.errors.pop(path, None)
            if update.reset:
                self.chunks[path] = [update.table] if update.table.num_rows else []
            elif update.table.num_rows:
                self.chunks[path].append(update.table)
            else:
                continue
            self.versions[path] = self.versions.get(path, 0) + 1
            changed = True
        return changed

    def runs(self) -> list[tuple[Path, Run, list[pa.Table]]]:
        """(path, run, the chunks its table joins) of every file that has events, labelled as lossfmt does."""
        paths = [p for p in self.followers if self.chunks[p]]
        infos = [self.followers[p].info or {} for p in paths]
        labelled = runs([os.fspath(p) for p in paths], [self.chunks[p][0] for p in paths], infos)
        return [
            (p, Run(r.label, pa.concat_tables(self.chunks[p]).replace_schema_metadata(None), r.meta, r.path),
             list(self.chunks[p]))
            for p, r in zip(paths, labelled, strict=True)
        ]  # fmt: skip


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
        """Every file's curves (the mean across runs with --mean-runs); None before any event arrived."""
        parts = sources.runs()
        if not parts:
            return None
        check_label([run for _, run, _ in parts], self.view)
        out: list[Curve] = []
        for path, run, chunks in parts:
            hit = self._cache.get(path)
            if hit is None or hit[0] != run.label or not _same(hit[1], chunks):
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
        if (
            hit is not None
            and hit[0] == run.label
            and len(chunks) > len(hit[1])
            and _same(hit[1], chunks[: len(hit[1])])
        ):
            new = Run(
                run.label, pa.concat_tables(chunks[len(hit[1]) :]).replace_schema_metadata(None), run.meta
            )
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
        out[f.key] = dataclasses.replace(
            o,
            x=np.concatenate([o.x, f.x]),
            y=np.concatenate([o.y, f.y]),
            step=np.concatenate([o.step, f.step]),
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
            try:
                inode = directory.stat().st_ino
            except OSError:
                inode = None
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
        self._last_read = -float("inf")
        self._last_redraw = -float("inf")
        self._complete = False
        self._dirty = False
        self._reads = 0

    def tick(self) -> bool:
        """Read and redraw if a change was signalled (or a poll is due); True if it redrew."""
        now = time.monotonic()
        due = now - self._last_read >= self.watcher.timeout(self._complete)
        if self.watcher.changed.is_set() or due:
            self.watcher.changed.clear()
            self._last_read = now
            self._complete = self.watcher.rescan()
            self._dirty = self.sources.poll() or self._dirty
            self._report(self.sources.errors)
        if self._dirty and now - self._last_redraw >= self._interval:
            self._dirty = False
            self._last_redraw = now
            self.redraw()
            # A huge run makes each redraw slow: space redraws out so drawing takes at most ~1/3 of a core.
            self._interval = max(self.min_interval, 2.0 * (time.monotonic() - now))
            return True
        return False

    def _report(self, errors: dict[Path, str]) -> None:
        """A file unreadable at the first look is an error (a wrong argument); later, a warning, and the
        last good events stay on screen (a file being replaced, or damaged while followed)."""
        if errors and self._reads == 0:
            raise lossfmt.LossFormatError(next(iter(errors.values())))
        self._reads += 1
        for message in errors.values():
            warnings.warn(message, stacklevel=2)

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


def _glob_base(pattern: str) -> Path:
    """The leading directories of a glob pattern that contain no wildcard."""
    parts: list[str] = []
    for part in Path(pattern).parts[:-1]:
        if set("*?[") & set(part):
            break
        parts.append(part)
    return Path(*parts) if parts else Path(".")
