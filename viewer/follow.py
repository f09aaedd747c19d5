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
from lossview.view import Curve, Run, View, check_label, curves, filter_tags, hparam, relabel, runs, smooth

if TYPE_CHECKING:
    from watchdog.observers.api import BaseObserver, ObservedWatch

_NO_EVENTS = pa.table({})  # what Sources.labels hands view.runs: labels need only the run info
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
    """The followed files: FILE arguments re-expanded as files appear, one lossfmt.Follower per file.

    A file that a directory or glob names is followed while it is there: one that cannot be read is skipped
    with one warning (and read again once it changes), one that leaves is dropped. A file named itself is a
    wrong argument if unreadable at the first poll (LossFormatError), later a warning that keeps its last
    events; deleted or renamed away, it is in ``gone`` (its events kept) until a file is back at its path.
    """

    def __init__(self, args: Sequence[str], *, keep_chunks: bool = True) -> None:
        self.args = list(args)
        #: False: the caller keeps the events it takes from ``updates``; ``chunks`` stay empty.
        self.keep_chunks = keep_chunks
        self.followers: dict[Path, lossfmt.Follower] = {}
        self.chunks: dict[Path, list[pa.Table]] = {}
        #: The problem of each file that could not be read at the last poll (its last good events are kept).
        self.errors: dict[Path, str] = {}
        #: What the last poll read from each file whose events changed.
        self.updates: dict[Path, lossfmt.Update] = {}
        self.dropped: set[Path] = set()  # files the last poll stopped following: left their directory or glob
        self.gone: set[Path] = set()  # files named themselves that were read and are not there now
        self._failed: dict[Path, tuple[int, ...]] = {}  # an unreadable file's stat: read again once changed
        self._polls = 0

    def directories(self) -> dict[Path, bool]:
        """Directories to watch, each with whether to watch it recursively (a ``**`` glob)."""
        dirs: dict[Path, bool] = {}
        for arg in self.args:
            if _is_glob(arg):
                base = _glob_base(arg)
                dirs[base] = dirs.get(base, False) or "**" in arg
            else:
                directory = Path(arg) if os.path.isdir(arg) else Path(arg).parent
                dirs[directory] = dirs.get(directory, False)
        return {Path(os.path.abspath(d)): r for d, r in dirs.items()}

    def wanted(self, path: str) -> bool:
        """Whether a file event's path is (or could become) one of the followed files."""
        path = os.path.abspath(path)
        for arg in self.args:
            if _is_glob(arg):
                if fnmatch.fnmatch(path, os.path.abspath(arg)):
                    return True
            elif os.path.isdir(arg) or arg.endswith(os.sep):
                if os.path.dirname(path) == os.path.abspath(arg) and path.endswith(".arrow"):
                    return True
            elif path == os.path.abspath(arg):
                return True
        return False

    def named(self, path: Path) -> bool:
        """Whether ``path`` is a FILE argument itself, not one that a directory or glob argument names."""
        where = os.path.abspath(path)
        return any(os.path.abspath(a) == where for a in self.args if not _is_glob(a) and not os.path.isdir(a))

    def paths(self) -> list[str]:
        """The files the arguments name now, each once as ``lossfmt.run_paths`` keeps it (a path, glob or
        directory that names none yet is skipped)."""
        found = [p for arg in self.args for p in self.paths_of(arg)]
        with contextlib.suppress(lossfmt.LossFormatError):  # one left between the two looks: as found
            found = lossfmt.run_paths(found) if found else found
        return list(dict.fromkeys(found))

    @staticmethod
    def paths_of(arg: str) -> list[str]:
        """The files one argument names now; none while it names nothing yet."""
        try:
            return lossfmt.run_paths(arg)
        except lossfmt.LossFormatError:  # not there yet: the watch says when it appears
            return []

    def poll(self) -> bool:
        """Read what was appended to every file since the last poll; True if anything changed (events, a
        file dropped, gone or back, a new problem). Raises LossFormatError for a FILE argument unreadable
        at the first poll."""
        now = [Path(name) for name in self.paths()]
        for path in (p for p in now if p not in self.followers):
            self.followers[path], self.chunks[path] = lossfmt.Follower(path), []
        self.dropped = {p for p in set(self.followers) - set(now) if not self.named(p)}
        for path in self.dropped:
            del self.followers[path], self.chunks[path]
            self.errors.pop(path, None)
            self._failed.pop(path, None)
        self.updates, errors = {}, dict(self.errors)
        for path, follower in self.followers.items():
            self._read(path, follower)
        gone = {p for p, f in self.followers.items() if f.info and self.named(p) and not os.path.exists(p)}
        for path in gone - self.gone:
            warnings.warn(f"{path}: file gone, waiting for it (its last events stay)", stacklevel=2)
        changed = bool(self.updates or self.dropped or gone != self.gone or errors != self.errors)
        self.gone = gone
        self._polls += 1
        if self._polls == 1 and (fatal := [m for p, m in self.errors.items() if self.named(p)]):
            raise lossfmt.LossFormatError(fatal[0])
        return changed

    def _read(self, path: Path, follower: lossfmt.Follower) -> None:
        """Poll one file into ``updates`` and its chunks; a problem is warned once (per message)."""
        stamp = _stamp(path)
        if self._failed.get(path) == stamp:
            return  # unreadable, and unchanged since
        try:
            update = follower.poll()
        except (lossfmt.LossfmtError, OSError) as exc:
            message = str(exc) if isinstance(exc, lossfmt.LossfmtError) else f"{path}: {exc}"
            self._failed[path] = stamp
            if self.errors.get(path) != message and (self._polls or not self.named(path)):
                warnings.warn(f"{message}: skipped" if follower.info is None else message, stacklevel=3)
            self.errors[path] = message
            return
        self.errors.pop(path, None)
        self._failed.pop(path, None)
        if not update.reset and not update.table.num_rows:
            return
        self.updates[path] = update
        if self.keep_chunks:
            if update.reset:
                self.chunks[path] = []
            if update.table.num_rows:
                self.chunks[path].append(update.table)

    def labels(self, paths: Sequence[Path]) -> dict[Path, str]:
        """Followed files labelled as every view labels runs (``lossview.view.runs``: the stored name)."""
        infos = [self.followers[p].info or {} for p in paths]
        named = runs([os.fspath(p) for p in paths], [_NO_EVENTS] * len(paths), infos)
        return {p: r.label for p, r in zip(paths, named, strict=True)}

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
        """Every file's curves (the mean across runs with --mean-runs); None before any event arrived, []
        once every run shown was dropped."""
        parts = sources.runs()
        if not parts and not self._cache:
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
        out[f.key] = dataclasses.replace(o, x=cat([o.x, f.x]), y=cat([o.y, f.y]), step=cat([o.step, f.step]))
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
            stamp = _stamp(directory)
            inode = stamp[1] if stamp else None
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


def _glob_base(pattern: str) -> Path:
    """The leading directories of a glob pattern that contain no wildcard."""
    parts: list[str] = []
    for part in Path(pattern).parts[:-1]:
        if _is_glob(part):
            break
        parts.append(part)
    return Path(*parts) if parts else Path(".")


def _is_glob(arg: str) -> bool:
    return bool(set("*?[") & set(arg))


def _stamp(path: Path) -> tuple[int, ...]:
    """What tells a file's new content from its old: (device, inode, size, mtime); () when it is not there."""
    try:
        st = os.stat(path)
    except OSError:
        return ()
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
