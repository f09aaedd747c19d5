"""Reading values off a live figure: a hover readout and legend entries that hide or show their curve.

Works on any interactive canvas (a window or WebAgg's page): both only listen to matplotlib's canvas events.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.backend_bases import MouseEvent, PickEvent

from lossview.plot import LossPlot


class Interaction:
    """Connects a LossPlot's canvas: ``motion_notify_event`` updates the readout, ``pick_event`` toggles."""

    def __init__(self, lp: LossPlot) -> None:
        self.lp = lp
        self.readout: dict[Any, Any] = {}
        canvas = lp.fig.canvas
        # Plain functions, not bound methods: the canvas keeps those (it holds methods weakly), so the
        # interaction lives as long as the figure whether or not the caller keeps this object.
        canvas.mpl_connect("motion_notify_event", lambda event: self.on_move(event))
        canvas.mpl_connect("pick_event", lambda event: self.on_pick(event))

    def on_pick(self, event: PickEvent) -> None:
        key = self.lp.legend_entries.get(event.artist)
        if key is not None:
            self.lp.toggle(key)
        elif (keys := self.lp.legend_groups.get(event.artist)) is not None:
            self.lp.toggle_all(keys)

    def on_move(self, event: MouseEvent) -> None:
        ax = event.inaxes
        changed = False
        for other, text in self.readout.items():
            if other is not ax and text.get_visible():
                text.set_visible(False)
                changed = True
        if ax is not None and event.xdata is not None:
            text = self._text(ax)
            lines = readout(self.lp, ax, float(event.xdata))
            text.set_text("\n".join(lines))
            text.set_visible(bool(lines))
            changed = True
        if changed:
            self.lp.fig.canvas.draw_idle()

    def _text(self, ax: Any) -> Any:
        if ax not in self.readout:
            box = {"boxstyle": "round", "facecolor": "white", "alpha": 0.85, "linewidth": 0.5}
            text = ax.text(0.01, 0.02, "", transform=ax.transAxes, fontsize="x-small", family="monospace",
                           va="bottom", zorder=10, bbox=box)  # fmt: skip
            text.set_in_layout(False)
            self.readout[ax] = text
        return self.readout[ax]


def readout(lp: LossPlot, ax: Any, x: float) -> list[str]:
    """One line per visible curve on ``ax``: its raw (and smoothed) value at the point nearest ``x``."""
    lines = []
    scale = lp.x_scale()
    for key, s in lp.series.items():
        c = s.curve
        if s.ax is not ax or c is None or key in lp.hidden or not len(c.x):
            continue
        xs = c.x if scale == 1.0 else c.x / scale
        i = int(np.clip(np.searchsorted(xs, x), 1, len(xs) - 1)) if len(xs) > 1 else 0
        if len(xs) > 1 and abs(xs[i - 1] - x) <= abs(xs[i] - x):
            i -= 1
        name = f"{c.run}: {c.tag}" if lp.style.compare else c.tag
        line = f"{name}  step {int(c.step[i])}  raw {c.y[i]:.6g}"
        if c.smoothed is not None:
            line += f"  smoothed {c.smoothed[i]:.6g}"
        lines.append(line)
    return lines
