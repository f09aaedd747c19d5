"""The axes' ticks: whole-number steps and epochs (200k, 1.5M rather than "1e7" or "500m"), dates for wall
time, and on a log axis 1-2-5 ticks with plain labels where the range spans few decades."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

import matplotlib.dates as mdates
import matplotlib.ticker as mticker
import numpy as np
from matplotlib.axes import Axes

__all__ = ["LogLabels", "LogTicks", "configure", "no_positive"]


def configure(ax: Axes, x: str, *, logy: bool, local_time: bool) -> None:
    """Set the tick locators and formatters of a new axes for the x axis `x` and a log y axis."""
    if logy:  # values <= 0 leave a gap (and a warning), not a line clipped to the bottom
        ax.set_yscale("log", nonpositive="mask")
        ax.yaxis.set_major_locator(LogTicks())
        ax.yaxis.set_major_formatter(LogLabels())
        ax.yaxis.set_minor_formatter(mticker.NullFormatter())
    if x in ("step", "items"):  # whole numbers (not "500m"); 200k, 1.5M rather than "1e7"
        # (min_n_ticks=1: one step alone still gets a whole-number tick, not "-40m .. 40m")
        whole = mticker.MaxNLocator("auto", steps=[1, 2, 2.5, 5, 10], integer=True, min_n_ticks=1)
        ax.xaxis.set_major_locator(whole)
        ax.xaxis.set_major_formatter(mticker.EngFormatter(sep=""))
    elif x == "epoch":  # epochs are whole numbers: no tick at 2.5
        ax.xaxis.set_major_locator(mticker.MaxNLocator(integer=True))
    elif x == "time":
        tz = datetime.now().astimezone().tzinfo if local_time else timezone.utc
        locator = mdates.AutoDateLocator(tz=tz)
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=tz))


class LogTicks(mticker.LogLocator):
    """Decades where the axes spans a hundredfold or more; else 1-2-5 (then 1-2-3-5) of each decade, or
    plain linear ticks where even those give fewer than three (a range like 1.2 to 2.8)."""

    def tick_values(self, vmin: float, vmax: float) -> Any:
        lo, hi = sorted((vmin, vmax))
        if not 0 < lo < hi < 100 * lo:
            return super().tick_values(vmin, vmax)
        decades = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
        for subs in ((1, 2, 5), (1, 2, 3, 5)):
            ticks = np.array([m * 10.0**d for d in decades for m in subs])
            if np.count_nonzero((ticks >= lo) & (ticks <= hi)) >= 3:
                return ticks
        return mticker.MaxNLocator(nbins=4, steps=[1, 2, 2.5, 5, 10]).tick_values(lo, hi)


class LogLabels(mticker.LogFormatterSciNotation):
    """Plain numbers (0.02, 1, 5, 20) on a log axes within 1e-4..1e5, powers of ten beyond (2×10⁻⁵); every
    tick LogTicks places is labelled."""

    def __init__(self) -> None:
        super().__init__(labelOnlyBase=False, minor_thresholds=(math.inf, math.inf))

    def __call__(self, x: float, pos: int | None = None) -> str:
        lo, hi = sorted(self.axis.get_view_interval()) if self.axis is not None else (x, x)
        return f"{x:g}" if lo >= 1e-4 and hi < 1e5 else super().__call__(x, pos)


def no_positive(ax: Axes) -> bool:
    """A log axis whose data has no positive value (matplotlib warns at its every autoscale and draw)."""
    return ax.get_yscale() == "log" and 0 >= ax.dataLim.y1 > -np.inf
