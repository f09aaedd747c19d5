"""What the text around a figure's axes says: the x label and its unit of time, the y label (wrapped to fit
its panel's height) and the words for a ``--per`` bucket, written as the step ticks are (``100k steps``)."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.ticker as mticker
import numpy as np
from matplotlib.figure import Figure

from lossview import artists
from lossview.view import Curve, View

#: The font size of axis labels (matplotlib's default ``axes.labelsize``).
LABEL_SIZE = "medium"


def bucket(view: View) -> str:
    """A ``--per`` bucket in words: ``epoch``, ``100k steps`` (the step ticks' engineering notation)."""
    if view.per == "epoch":
        return "epoch"
    return f"{mticker.EngFormatter(sep='')(float(view.per or 0))} steps"


def panel_height(fig: Figure, panels: int) -> float:
    """About how tall, in points, each of ``panels`` stacked axes of ``fig`` is: the figure's height less
    the title, the x tick labels and the x label, shared out."""
    height = float(fig.get_size_inches()[1]) * 72
    return (height - 50) / max(panels, 1) - (20 if panels > 1 else 25)


def ylabel(tags: Sequence[str], view: View, *, split: bool, room: float) -> str:
    """The y label of an axes showing ``tags``: the one tag's name (else ``value``; with ``--split`` none,
    the panel's title names it) and what the values are (per item, the mean per bucket). Where it is
    longer than ``room`` points (the panel's height) it takes more lines: the name, then the notes."""
    notes = []
    if view.normalize == "per-item":
        notes.append("per item")
    if view.per is not None:
        notes.append(f"mean per {bucket(view)}")
    if split:
        return "\n".join(line for note in notes for line in _wrap([note], room))
    name = tags[0] if len(tags) == 1 else "value"
    whole = f"{name} ({', '.join(notes)})" if notes else name
    if not notes or artists.text_width(whole, LABEL_SIZE) <= room:
        return whole
    pieces = [f"{note}," for note in notes[:-1]] + [f"{notes[-1]})"]  # "(per item," "mean per epoch)"
    pieces[0] = f"({pieces[0]}"
    return "\n".join([*_wrap([name], room), *_wrap(pieces, room)])


def xlabel(view: View, unit: str, *, local_time: bool) -> str:
    """What the x axis counts (``unit``: the unit of time since the start, for ``--x relative``)."""
    if view.x == "time":
        return "wall time (local)" if local_time else "wall time (UTC)"
    named = {"step": "step", "epoch": "epoch", "items": "items seen (cumulative count)"}
    return named.get(view.x, f"time since start ({unit})")


def _wrap(pieces: Sequence[str], room: float) -> list[str]:
    """``pieces`` packed into lines at most ``room`` points wide; a piece wider than that is broken at its
    spaces (a single word wider than the room keeps a line of its own)."""
    words = [w for p in pieces for w in ([p] if artists.text_width(p, LABEL_SIZE) <= room else p.split(" "))]
    lines: list[str] = []
    for word in words:
        joined = f"{lines[-1]} {word}" if lines else word
        if lines and artists.text_width(joined, LABEL_SIZE) <= room:
            lines[-1] = joined
        else:
            lines.append(word)
    return lines


def time_unit(view: View, curves: Sequence[Curve]) -> tuple[float, str]:
    """What x is divided by on the axes, and its unit: days for --x time (matplotlib dates), s/min/h for
    --x relative (by the longest run), 1 otherwise."""
    if view.x == "time":
        return 86400.0, "days"
    if view.x != "relative":
        return 1.0, ""
    span = max((float(np.nanmax(c.x)) for c in curves if len(c.x)), default=0.0)
    if span > 2 * 3600:
        return 3600.0, "h"
    if span > 120:
        return 60.0, "min"
    return 1.0, "s"
