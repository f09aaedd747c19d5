"""``lossview FILE --term``: the curves drawn in the terminal, live with ``--follow`` (tmux, screen, SSH: no
X, no web server, no port).

Each character cell is a Unicode braille pattern of 2x4 dots. Every dot column keeps its bucket's minimum and
maximum (``lossfmt.transforms.decimate`` picks them), so a one-step spike among 10M events stays visible;
the smoothed curve is drawn bold over the faint raw one, non-finite values are marked ``×`` above the plot,
with y ticks, x ticks and a legend. With ``--follow`` the frame is redrawn in place (alternate screen) after
each flush (``lossfmt.follow(path).poll()`` reads only the new bytes; the smoothing continues from its state)
and on resize; Ctrl-C restores the screen and exits 0. Without ``--follow`` one frame is printed, with no
escape codes when stdout is not a terminal, so it can go into logs and CI output.

The cell renderer (``lossview.braille``; ``Series`` and ``render`` are importable from here too) is written
on numpy rather than taken from plotext or rich: it is about 150 lines, reuses lossfmt's decimation (plotext
would get every point as a Python list: seconds for 10M events), keeps spikes by construction, and adds no
dependency.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any, TextIO

import numpy as np
import pyarrow as pa

import lossfmt
from lossfmt import transforms
from lossview.braille import Series as Series  # re-exported: `term.Series`, `term.render` predate braille.py
from lossview.braille import render as render
from lossview.view import NoDataError

_INTERVAL = 0.25  # seconds between polls while following

# ------------------------------------------------------------------------------------------------ data


class TermView:
    """The followed files as curves: each `poll()` appends what the writers flushed since the last one
    (a file that was replaced starts over), follows the files a glob or directory argument gains, and brings
    the smoothing up to date."""

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
        self.tags = tuple(tags)
        self.args = [os.fspath(a) for a in args]
        self.followers: dict[str, lossfmt.Follower] = {}
        self.labels: dict[str, str] = {}  # path -> run label, as lossfmt labels runs
        self.series: dict[tuple[str, str], Series] = {}  # (path, tag) -> curve
        self._fresh: dict[tuple[str, str], int] = {}  # series -> points smoothed so far (-1: redo all)
        #: Per path: its last (epoch, step), each epoch's largest step, and whether its steps restart each
        #: epoch (then drawn run-wide, as lossview draws them: each epoch after the steps before it).
        self._last: dict[str, tuple[int, int]] = {}
        self._epoch_max: dict[str, dict[int, int]] = {}
        self._restarting: set[str] = set()
        self._lowest: dict[str, int] = {}
        self._discover()

    def _discover(self) -> None:
        """Follow every file the arguments name now; a plain path that does not exist yet is followed until
        it appears. Run labels are redone when a file joins (a second `seed.arrow` makes both longer)."""
        found: list[str] = []
        for arg in self.args:
            try:
                found += lossfmt.run_paths(arg)
            except lossfmt.LossFormatError:  # names no run yet
                if not set("*?[") & set(arg) and not os.path.isdir(arg):
                    found.append(arg)
        new = [p for p in dict.fromkeys(found) if p not in self.followers]
        if not new:
            return
        self.followers.update((p, lossfmt.follow(p)) for p in new)
        paths = list(self.followers)
        stems = [os.path.splitext(os.path.basename(p))[0] for p in paths]
        self.labels = dict(zip(paths, lossfmt.run_labels(paths, stems), strict=True))
        for (path, tag), s in self.series.items():
            s.label = self._label(path, tag)

    def _label(self, path: str, tag: str) -> str:
        return f"{self.labels[path]}: {tag}" if len(self.followers) > 1 else tag

    def _select(self, table: pa.Table) -> pa.Table:
        return transforms.select_tags(table, self.tags) if self.tags else table

    def load(self) -> None:
        """Read each file whole, only the columns drawn (one frame: no follower state to keep)."""
        for path, follower in self.followers.items():
            table = lossfmt.read(follower.path, columns=["step", "tag", "value", "epoch"])
            self._append(path, self._select(table))
        self._smooth()

    def poll(self) -> bool:
        """Read what was appended; True if anything changed."""
        self._discover()
        changed = False
        for path, follower in self.followers.items():
            update = follower.poll()
            if update.reset:
                for key in [k for k in self.series if k[0] == path]:
                    del self.series[key]
                changed = True
            table = self._select(update.table)
            if table.num_rows:
                self._append(path, table)
                changed = True
        if changed:
            self._smooth()
        return changed

    def _run_wide(self, path: str, table: pa.Table) -> pa.Table:
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

    def _append(self, path: str, table: pa.Table) -> None:
        table = transforms.drop_rewound(self._run_wide(path, table))  # the new events; against the old below
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
                s = self.series[key] = Series(self._label(path, tag))
                self._fresh[key] = 0
            elif s.steps.size and steps.size and steps.min() < s.steps[-1]:  # a resumed run rewound
                keep = s.steps < steps.min()  # from the restart step on (spec 5.2)
                s.steps, s.values = s.steps[keep], s.values[keep]
                self._fresh[key] = -1
            s.steps = np.concatenate([s.steps, steps]) if s.steps.size else steps
            s.values = np.concatenate([s.values, values]) if s.values.size else values

    def _smooth(self) -> None:
        if self.smoother is None:
            return
        live = [s for s in self.series.values() if s.steps.size]
        if not live:
            return
        span = float(max(int(s.steps[-1]) for s in live) - min(int(s.steps[0]) for s in live))
        for key, s in self.series.items():
            done = self._fresh.get(key, -1)
            if done <= 0 or s.state is None or s.smoothed is None or self.smoother.stale(s.state, span=span):
                s.smoothed, s.state = self.smoother.run(s.values, s.steps, span=span)
            elif done < s.values.size:
                piece, s.state = self.smoother.run(s.values[done:], s.steps[done:], state=s.state)
                s.smoothed = np.concatenate([s.smoothed, piece])
            self._fresh[key] = s.values.size

    def title(self) -> str:
        if self.heading is not None:
            return self.heading
        runs = list(self.labels.values())
        name = runs[0] if len(runs) == 1 else f"{len(runs)} runs" if runs else " ".join(self.args)
        what = f"bold: {self.smoother.label}, faint: raw" if self.smoother is not None else "raw"
        return f"{name} · {what} · × non-finite"


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
    out: TextIO | None = None,
) -> int:
    """``lossview FILE... --term [--follow]``: print one frame, or redraw in place until Ctrl-C (exit 0).
    `smooth` None is the default smoothing (`lossfmt.transforms.DEFAULT_SMOOTH`); `interval` the seconds
    between polls while following (``--poll``; default 0.25); `title` replaces the frame's first line."""
    out = sys.stdout if out is None else out
    # One frame: every argument must name runs now. Following: the view waits for what is not there yet.
    args = files if follow else lossfmt.run_paths(list(files))
    view = TermView(args, tags=tags, smooth=smooth, title=title)
    if not follow:
        view.load()
        if not view.series:
            raise NoDataError("no events to draw" + (f" for --tag {' '.join(tags)}" if tags else ""))
        width, height = _size(out)
        out.write(render(list(view.series.values()), width, height, color=out.isatty(), title=view.title()))
        out.write("\n")
        return 0
    return _live(view, out, _INTERVAL if interval is None else interval)


def _size(out: TextIO) -> tuple[int, int]:
    """The terminal's size; $COLUMNS/$LINES or 100x30 (at most 30 lines) when stdout is no terminal, and
    when it is one that reports no size (0x0: `docker exec -t`, `script`, some CI ptys)."""
    if out.isatty():
        size = os.get_terminal_size(out.fileno())
        if size.columns > 0 and size.lines > 0:
            return size.columns, size.lines
    fallback = shutil.get_terminal_size((100, 30))  # $COLUMNS/$LINES first, then stdout's size, then this
    columns, lines = fallback.columns or 100, fallback.lines or 30
    return columns, lines if out.isatty() else min(lines, 30)


def _live(view: TermView, out: TextIO, interval: float) -> int:
    """Redraw on each change and on resize (SIGWINCH), in the alternate screen, until Ctrl-C."""
    wake = threading.Event()
    previous = signal.signal(signal.SIGWINCH, lambda *_: wake.set()) if hasattr(signal, "SIGWINCH") else None
    tty = out.isatty()
    if tty:
        out.write("\x1b[?1049h\x1b[?25l")  # alternate screen, hide the cursor
    try:
        shown = None
        while True:
            size = _size(out)
            if view.poll() or shown != size:
                frame = render(list(view.series.values()), *size, color=tty, title=view.title())
                if tty:
                    out.write("\x1b[H" + "\x1b[K\n".join(frame.split("\n")) + "\x1b[K\x1b[J")
                else:
                    out.write(frame + "\n")
                out.flush()
                shown = size
            wake.wait(interval)
            wake.clear()
    except KeyboardInterrupt:
        return 0
    finally:
        if tty:
            out.write("\x1b[0m\x1b[?25h\x1b[?1049l")  # colours off, cursor back, main screen back
            out.flush()
        if previous is not None:
            signal.signal(signal.SIGWINCH, previous)
