"""lossview: plot lossfmt files, live (``lossview run.arrow --follow``) or to an image, and in notebooks."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["figure"]


def figure(
    source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    tags: Sequence[str] = (),
    smooth: str | None = "ema:0.6",
    per: str | int | None = None,
    normalize: str | None = None,
    x: str = "step",
    band: str | None = None,
    mean_runs: bool = False,
    split: bool = False,
    logy: bool = False,
    title: str | None = None,
) -> Figure:
    """Return the matplotlib Figure ``lossview`` would draw for a file (or files, globs, directories).

    The figure is not attached to pyplot, so it displays once in a notebook cell and leaks no windows.
    """
    from lossview import data, plot
    from matplotlib.figure import Figure

    args = [os.fspath(source)] if isinstance(source, (str, os.PathLike)) else [os.fspath(s) for s in source]
    view = data.View(tags=tuple(tags), smooth=smooth, per=per, normalize=normalize, x=x, band=band,
                     mean_runs=mean_runs)  # fmt: skip
    view.check()
    paths = data.expand(args)
    fig = Figure(figsize=(8.0, 4.5), layout="constrained")
    style = plot.Style(split=split, compare=len(paths) > 1 and not mean_runs, logy=logy, title=title)
    lp = plot.LossPlot(fig, view, style, _NoOutput())
    lp.update(data.curves(data.apply(data.load(paths), view), view))
    return fig


class _NoOutput:
    def refresh(self, fig: Figure) -> None:
        """Nothing to do: the caller displays the figure."""
