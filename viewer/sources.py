"""The followed files of ``--follow``: the FILE arguments re-expanded as files come and go, one
``lossfmt.Follower`` per file, labelled as every view labels runs. Shared by the picture's follow loop
(``follow.py``) and the terminal view (``term.py``).
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa

import lossfmt
from lossview.view import Run, runs

_NO_EVENTS = pa.table({})  # what Sources.labels hands view.runs: labels need only the run info


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
        now, closed = stamp(path), follower.closed
        if self._failed.get(path) == now:
            return  # unreadable, and unchanged since
        run_id, held = (follower.info or {}).get("run_id"), follower.delivered
        try:
            update = follower.poll()
        except (lossfmt.LossfmtError, OSError) as exc:
            message = str(exc) if isinstance(exc, lossfmt.LossfmtError) else f"{path}: {exc}"
            self._failed[path] = now
            if self.errors.get(path) != message and (self._polls or not self.named(path)):
                warnings.warn(f"{message}: skipped" if follower.info is None else message, stacklevel=3)
            self.errors[path] = message
            return
        self.errors.pop(path, None)
        self._failed.pop(path, None)
        same_run = run_id is not None and (follower.info or {}).get("run_id") == run_id
        if update.reset and same_run and update.table.num_rows < held:  # (a new run at the path is no news)
            warnings.warn(
                f"{path}: holds {update.table.num_rows:,} of the {held:,} events drawn before (cut short, or "
                "rewritten in place?): drawn as it is now",
                stacklevel=3,
            )
        if not update.reset and not update.table.num_rows and follower.closed == closed:
            return  # nothing new (a writer's close, the same events compacted, is news: the run ended)
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
            (p, Run(r.label, pa.concat_tables(self.chunks[p]).replace_schema_metadata(None), r.meta, r.path,
                    not self.followers[p].closed), list(self.chunks[p]))
            for p, r in zip(paths, labelled, strict=True)
        ]  # fmt: skip


def _glob_base(pattern: str) -> Path:
    """The leading directories of a glob pattern that contain no wildcard."""
    parts: list[str] = []
    for part in Path(pattern).parts[:-1]:
        if _is_glob(part):
            break
        parts.append(part)
    return Path(*parts) if parts else Path(".")


def compared(args: Sequence[str]) -> bool:
    """Whether the arguments name runs to compare (a colour each): several of them, a glob or a directory,
    whatever the files there now. A picture compares them while it draws more than one (``lossview.plot``:
    a followed directory's one run is drawn as it is alone, until a second one comes)."""
    return len(args) > 1 or any(_is_glob(a) or os.path.isdir(a) for a in args)


def _is_glob(arg: str) -> bool:
    return bool(set("*?[") & set(arg))


def stamp(path: Path) -> tuple[int, ...]:
    """What tells a file's new content from its old: (device, inode, size, mtime); () when it is not there."""
    try:
        st = os.stat(path)
    except OSError:
        return ()
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
