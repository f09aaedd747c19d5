"""``lossview FILE --term``: the curves drawn in the terminal, live with ``--follow`` (tmux, screen, SSH: no
X, no web server, no port).

Each character cell is a Unicode braille pattern of 2x4 dots. Every dot column keeps its bucket's minimum and
maximum (``lossfmt.transforms.decimate`` picks them), so a one-step spike among 10M events stays visible;
the smoothed curve is drawn bold over the faint raw one, non-finite values are marked ``×`` above the plot,
with y ticks, x ticks and a legend; a tag of another scale (an lr) has a panel of its own, as in the
matplotlib view. With ``--follow`` the frame is redrawn in place (alternate screen) after
each flush (``lossfmt.follow(path).poll()`` reads only the new bytes; the smoothing continues from its state)
and on resize; Ctrl-C restores the screen and exits 0. Without ``--follow`` one frame is printed, with no
escape codes when stdout is not a terminal, so it can go into logs and CI output.

The cell renderer (``lossview.braille``; ``Series`` and ``render`` are importable from here too) is written
on numpy rather than taken from plotext or rich: a few hundred lines, it reuses lossfmt's decimation
(plotext would get every point as a Python list: seconds for 10M events), keeps spikes by construction, and
adds no dependency.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import threading
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import pyarrow as pa

import lossfmt
from lossfmt import transforms
from lossview import rewinds, smoothing
from lossview.braille import Series as Series  # re-exported: `term.Series`, `term.render` predate braille.py
from lossview.braille import render as render
from lossview.signals import stopping
from lossview.sources import Sources, compared
from lossview.tables import logy_hidden
from lossview.view import NoDataError, runs

_INTERVAL = 0.25  # seconds between polls while following

# ------------------------------------------------------------------------------------------------ data


class TermView:
    """The followed files as curves: each `poll()` appends what the writers flushed since the last one
    (a file that was replaced starts over), follows the files a glob or directory argument gains and drops
    those it loses, and brings the smoothing up to date. Which files, and what happens to them, is
    `lossview.follow.Sources`' (as for every followed view); runs are labelled as every view labels them."""

    def __init__(
        self,
        args: Sequence[str],
        *,
        tags: Sequence[str] = (),
        smooth: str | None = None,
        title: str | None = None,
    ) -> None:
        self.heading = title
        self.smoother = transforms.parse_smooth(transforms.DEFAULT_SMOOTH if smooth is None else smooth)
        self.explicit = smooth is not None  # (the default smooths only noisy tags, as every view does)
        self.tags = tuple(tags)
        self.args = [os.fspath(a) for a in args]
        self.sources = Sources(self.args, keep_chunks=False)  # the events are kept here, as curves
        self.labels: dict[Path, str] = {}  # path -> run label, for every file that has events
        self.series: dict[tuple[Path, str], Series] = {}  # (path, tag) -> curve
        self._fresh: dict[tuple[Path, str], int] = {}  # series -> points smoothed so far (-1: redo all)
        #: Per path: its last (epoch, step), each epoch's largest step, and whether its steps restart each
        #: epoch (then drawn run-wide, as lossview draws them: each epoch after the steps before it).
        self._last: dict[Path, tuple[int, int]] = {}
        self._epoch_max: dict[Path, dict[int, int]] = {}
        self._restarting: set[Path] = set()
        self._lowest: dict[Path, int] = {}
        self._slots: dict[Path, int] = {}  # a run's colour, kept as runs come and go (first come)
        self._rewound: set[Path] = set()  # runs told that a rewind hides events (once per run)
        self.compare = compared(self.args)  # (a colour each, as every view compares runs)

    def _relabel(self) -> None:
        """Every series' run and legend label: its tag, after its run's label when several runs are drawn."""
        for (path, tag), s in self.series.items():
            s.run = self.labels[path]
            s.label = f"{s.run}: {tag}" if len(self.labels) > 1 else tag
            s.slot = self._slots.setdefault(path, len(self._slots))

    def _select(self, table: pa.Table) -> pa.Table:
        return transforms.select_tags(table, self.tags) if self.tags else table

    def load(self) -> None:
        """Read each file whole, only the columns drawn (one frame: no follower state to keep)."""
        paths = self.sources.paths()
        tables = [lossfmt.read(p, columns=["step", "tag", "value", "epoch"]) for p in paths]
        for run in runs(paths, tables):
            self.labels[Path(run.path)] = run.label
            self._append(Path(run.path), self._select(run.table))
        self._relabel()
        self._smooth()

    def poll(self) -> bool:
        """Read what was appended; True if anything changed (events, a file dropped, gone or unreadable)."""
        changed = self.sources.poll()
        updates = self.sources.updates
        for path in self.sources.dropped | {p for p, u in updates.items() if u.reset}:
            self._forget(path)
        have = set(self.labels) | {p for p, u in updates.items() if u.table.num_rows}
        self.labels = self.sources.labels([p for p in self.sources.followers if p in have])
        for path, update in updates.items():
            table = self._select(update.table)
            if table.num_rows:
                self._append(path, table)
        if changed:
            self._relabel()
            self._smooth()
        return changed

    def _forget(self, path: Path) -> None:
        """Drop what was drawn of a file: it left, or was replaced by another run."""
        for key in [k for k in self.series if k[0] == path]:
            del self.series[key], self._fresh[key]
        self.labels.pop(path, None)
        self._last.pop(path, None)
        self._epoch_max.pop(path, None)
        self._lowest.pop(path, None)
        self._restarting.discard(path)

    def _run_wide(self, path: Path, table: pa.Table) -> pa.Table:
        """`table`'s steps made run-wide once the path's steps are seen to restart each epoch (the rule of
        `lossfmt.transforms.run_wide_steps`, across the polls)."""
        if "epoch" not in table.column_names or not table.num_rows:
            return table
        steps = _column(table, "step", np.int64)
        epochs = np.asarray(transforms.to_numpy(table.column("epoch"), fill=np.nan), np.float64)
        prev = self._last.get(path)
        if prev is not None:
            steps, epochs = np.r_[prev[1], steps], np.r_[prev[0], epochs]
        epochs = transforms.fill_epochs(steps, epochs)
        if np.isnan(epochs).all():
            return table
        epochs = np.nan_to_num(epochs, nan=float(np.nanmin(epochs)))  # before the first epoch: the first
        self._last[path] = (int(epochs[-1]), int(steps[-1]))
        up = np.flatnonzero(epochs[1:] > epochs[:-1])
        lowest = self._lowest[path] = min(self._lowest.get(path, int(steps.min())), int(steps.min()))
        if up.size and (steps[up + 1] == lowest).any() and not (steps[up + 1] > steps[up]).any():
            self._restarting.add(path)
        if prev is not None:
            steps, epochs = steps[1:], epochs[1:]
        ints = epochs.astype(np.int64)
        maxes = self._epoch_max.setdefault(path, {})
        for e in np.unique(ints).tolist():
            maxes[e] = max(maxes.get(e, -(1 << 62)), int(steps[ints == e].max()))
        if path not in self._restarting:
            return table
        known = np.array(sorted(maxes), np.int64)
        offsets = np.r_[0, np.cumsum([maxes[e] + 1 for e in known.tolist()])[:-1]]
        run_wide = steps + offsets[np.searchsorted(known, ints)]
        return table.set_column(table.schema.get_field_index("step"), "step", pa.array(run_wide, pa.int64()))

    def _append(self, path: Path, table: pa.Table) -> None:
        """Add a poll's events to their series; where they go back (a resume, also one that first went on),
        the series is purged as ``transforms.drop_rewound`` purges the whole file."""
        table = self._run_wide(path, table)
        steps_all = _column(table, "step", np.int64)
        values_all = _column(table, "value", np.float64)
        one = transforms.one_series(table)  # the usual one-tag file: no row indices (80 MB at 10M events)
        groups = [(None, one[1], None)] if one else transforms.series(table)
        for _, tag, idx in groups:
            steps = steps_all if idx is None else steps_all[idx]
            values = values_all if idx is None else values_all[idx]
            key = (path, tag)
            s = self.series.get(key)
            if s is None:
                s = self.series[key] = Series(tag, tag=tag)  # its run and label: _relabel
                self._fresh[key] = 0
            old = s.steps.size
            s.steps = np.concatenate([s.steps, steps]) if old else steps
            s.values = np.concatenate([s.values, values]) if old else values
            arrived = s.steps[max(old - 1, 0) :]  # the last step drawn, then the new ones
            if not np.all(arrived[1:] >= arrived[:-1]):  # a rewind: kept series are never going back
                s.steps, s.values, where = _purged(s.steps, s.values, tag)
                self._fresh[key] = -1 if old else 0
                if where is not None and path not in self._rewound:
                    self._rewound.add(path)
                    warnings.warn(
                        rewinds.note(self.labels.get(path, path.stem), where, rewinds.KEEP_TERM), stacklevel=2
                    )

    def _smooth(self) -> None:
        if self.smoother is None:
            return
        live = [s for s in self.series.values() if s.steps.size]
        if not live:
            return
        span = float(max(int(s.steps[-1]) for s in live) - min(int(s.steps[0]) for s in live))
        noisy = {s.tag for s in live if self.explicit or smoothing.noisy(s.values)}
        for key, s in self.series.items():
            if s.tag not in noisy:  # an lr schedule, a per-epoch val: raw (redone in full if that changes)
                s.smoothed, s.state, self._fresh[key] = None, None, -1
                continue
            done = self._fresh.get(key, -1)
            if done <= 0 or s.state is None or s.smoothed is None or self.smoother.stale(s.state, span=span):
                s.smoothed, s.state = self.smoother.run(s.values, s.steps, span=span)
            elif done < s.values.size:
                piece, s.state = self.smoother.run(s.values[done:], s.steps[done:], state=s.state)
                s.smoothed = np.concatenate([s.smoothed, piece])
            self._fresh[key] = s.values.size

    def title(self) -> str:
        """The frame's first line: the run (or how many), what is wrong with the files (a named file gone,
        files that cannot be read: before the rest, which a narrow terminal cuts), what is drawn (`render`
        adds the key of the non-finite marks when it draws one)."""
        notes = []
        if gone := sorted(p.name for p in self.sources.gone):
            notes.append(
                "file gone, waiting" if len(self.labels) == 1 else f"{', '.join(gone)} gone, waiting"
            )
        if bad := [p.name for p in self.sources.errors]:
            notes.append(f"cannot read {bad[0]}" if len(bad) == 1 else f"cannot read {len(bad)} files")
        if self.heading is not None:
            return " · ".join([self.heading, *notes])
        labels = list(self.labels.values())
        name = labels[0] if len(labels) == 1 else f"{len(labels)} runs" if labels else " ".join(self.args)
        smoothed = any(s.smoothed is not None for s in self.series.values())
        what = f"bold: {self.smoother.label}, faint: raw" if self.smoother is not None and smoothed else "raw"
        return " · ".join([name, *notes, what])


def _column(table: pa.Table, name: str, dtype: type[np.generic]) -> np.ndarray:
    """A numeric column (int64 steps, float64 values: never null in a lossfmt file) as numpy, reading the
    buffers directly: zero-copy for one chunk, and no pandas import (pyarrow's to_numpy may import it)."""
    np_dtype = np.dtype(dtype)
    parts: list[np.ndarray] = []
    for chunk in table.column(name).chunks:
        if chunk.null_count or chunk.type.bit_width != 64:
            # pyarrow-stubs allow fill_null only on arrays of a statically known value type
            filled: pa.Array[Any] = chunk.cast(pa.from_numpy_dtype(np_dtype)).fill_null(0)  # type: ignore[misc, arg-type]
            parts.append(np.asarray(filled))
            continue
        data = chunk.buffers()[1]
        assert data is not None  # a 64-bit array without nulls has a values buffer
        # pyarrow-stubs' Buffer does not declare the buffer protocol that np.frombuffer reads
        parts.append(np.frombuffer(data, np_dtype, len(chunk), chunk.offset * 8))  # type: ignore[call-overload]
    if len(parts) == 1:
        return parts[0]
    return np.concatenate(parts) if parts else np.empty(0, dtype)


# ------------------------------------------------------------------------------------------------- run


def run(
    files: Sequence[str],
    *,
    tags: Sequence[str] = (),
    smooth: str | None = None,
    follow: bool = False,
    interval: float | None = None,
    title: str | None = None,
    logy: bool = False,
    ylim: tuple[float, float] | None = None,
    out: TextIO | None = None,
) -> int:
    """``lossview FILE... --term [--follow]``: print one frame (on a terminal one line less than its height,
    for the prompt), or redraw in place until Ctrl-C (exit 0).
    `smooth` None is the default smoothing (`lossfmt.transforms.DEFAULT_SMOOTH`); `interval` the seconds
    between polls while following (``--poll``; default 0.25); `title` replaces the frame's first line;
    `logy` and `ylim` as ``--logy`` and ``--ylim``."""
    out = sys.stdout if out is None else out
    # One frame: every argument must name runs now. Following: the view waits for what is not there yet.
    args = files if follow else lossfmt.run_paths(list(files))
    view = TermView(args, tags=tags, smooth=smooth, title=title)
    axis: dict[str, Any] = {"logy": logy, "ylim": ylim, "compare": view.compare}
    if not follow:
        view.load()
        if not view.series:
            raise NoDataError("no events to draw" + (f" for --tag {' '.join(tags)}" if tags else ""))
        if logy:
            _warn_logy(view, set())
        width, height = _size(out)
        if out.isatty():  # the line after the frame holds the shell's prompt: the title must not scroll off
            height -= 1
        frame = render(
            list(view.series.values()), width, height, color=out.isatty(), title=view.title(), **axis
        )
        out.write(frame + "\n")
        return 0
    return _live(view, out, _INTERVAL if interval is None else interval, axis)


def _warn_logy(view: TermView, warned: set[tuple[Path, str]]) -> None:
    """Say once per series (the keys in `warned`) how many of its values a log axis leaves out, in the
    words of the matplotlib views (``lossview.plot``): zero and negative ones; -inf is marked already."""
    for key, s in view.series.items():
        if key not in warned and (note := logy_hidden(s.label, s.steps, s.values)) is not None:
            warned.add(key)
            warnings.warn(note, stacklevel=2)


def _size(out: TextIO) -> tuple[int, int]:
    """The terminal's size; $COLUMNS/$LINES or 100x30 (at most 30 lines) when stdout is no terminal, and
    when it is one that reports no size (0x0: `docker exec -t`, `script`, some CI ptys)."""
    if out.isatty():
        size = os.get_terminal_size(out.fileno())
        if size.columns > 0 and size.lines > 0:
            return size.columns, size.lines
    fallback = shutil.get_terminal_size((100, 30))  # $COLUMNS/$LINES first, then stdout's size, then this
    columns, lines = fallback.columns or 100, fallback.lines or 30
    return columns, lines if out.isatty() or os.environ.get("LINES") else min(lines, 30)  # (as asked)


def _live(view: TermView, out: TextIO, interval: float, axis: dict[str, Any]) -> int:
    """Redraw on each change and on resize (SIGWINCH), in the alternate screen, until SIGINT or SIGTERM."""
    wake, stop = threading.Event(), threading.Event()
    previous = signal.signal(signal.SIGWINCH, lambda *_: wake.set()) if hasattr(signal, "SIGWINCH") else None
    tty = out.isatty()

    def on_signal() -> None:
        stop.set()
        wake.set()

    try:
        with stopping(on_signal), _screen(out):
            shown, warned = None, set[tuple[Path, str]]()
            while not stop.is_set():
                size = _size(out)
                if view.poll() or shown != size:
                    if axis["logy"]:
                        _warn_logy(view, warned)
                    frame = render(list(view.series.values()), *size, color=tty, title=view.title(), **axis)
                    if tty:
                        out.write("\x1b[H" + "\x1b[K\n".join(frame.split("\n")) + "\x1b[K\x1b[J")
                    else:
                        out.write(frame + "\n")
                    out.flush()
                    shown = size
                wake.wait(interval)
                wake.clear()
        return 0
    except KeyboardInterrupt:  # (before the handlers are installed)
        return 0
    finally:
        if previous is not None:
            signal.signal(signal.SIGWINCH, previous)


@contextlib.contextmanager
def _screen(out: TextIO) -> Iterator[None]:
    """The alternate screen, cursor hidden, while following on a terminal. Warnings meanwhile (a file
    skipped, gone) are said when it is left: a line on the terminal would scroll the frame, whose title
    names what they concern in the meantime."""
    if not out.isatty():
        yield
        return
    out.write("\x1b[?1049h\x1b[?25l")  # alternate screen, hide the cursor
    held: contextlib.AbstractContextManager[list[warnings.WarningMessage]] = (
        warnings.catch_warnings(record=True) if sys.stderr.isatty() else contextlib.nullcontext([])
    )
    caught: list[warnings.WarningMessage] = []
    try:
        with held as caught:
            yield
    finally:
        out.write("\x1b[0m\x1b[?25h\x1b[?1049l")  # colours off, cursor back, main screen back
        out.flush()
        for w in caught:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)


def _purged(
    steps: np.ndarray, values: np.ndarray, tag: str
) -> tuple[np.ndarray, np.ndarray, tuple[str, int, int] | None]:
    """One series' steps and values without what its rewinds orphaned (``transforms.drop_rewound``), and
    where it first went back if that hid events (``transforms.first_rewind``)."""
    tags = pa.DictionaryArray.from_arrays(np.zeros(steps.size, np.int32), pa.array([tag]))
    table = pa.table({"step": pa.array(steps), "tag": tags, "value": pa.array(values)})
    kept = transforms.drop_rewound(table)
    where = transforms.first_rewind(table) if kept.num_rows < table.num_rows else None
    return _column(kept, "step", np.int64), _column(kept, "value", np.float64), where
