"""lossview: plot lossfmt files, live (``lossview run.arrow --follow``) or to an image, and in notebooks."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lossview.notebook import LiveDisplay
    from matplotlib.figure import Figure

__all__ = ["figure", "live"]


def figure(
    source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    tags: Sequence[str] = (),
    smooth: str | None = None,
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

    Options are those of the command line (``smooth=None`` is its default smoothing). The figure is not
    attached to pyplot, so it displays once in a notebook cell and leaks no windows.
    """
    from lossview import data, notebook, plot

    args = [os.fspath(source)] if isinstance(source, (str, os.PathLike)) else [os.fspath(s) for s in source]
    explicit = smooth is not None
    view = data.View(
        tags=tuple(tags),
        smooth=smooth if explicit else data.DEFAULT_SMOOTH,
        smooth_explicit=explicit,
        per=per,
        normalize=normalize,
        x=x,
        band=band,
        mean_runs=mean_runs,
    )
    view.check()
    paths = data.expand(args)
    fig = notebook.NotebookFigure(figsize=(8.0, 4.5), layout="constrained")
    style = plot.Style(split=split, compare=len(paths) > 1 and not mean_runs, logy=logy, title=title)
    lp = plot.LossPlot(fig, view, style, plot.NoOutput())
    lp.update(data.curves(data.apply(data.load(paths, view.columns()), view), view))
    return fig


def live(
    source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], *, interval: float = 1.0
) -> LiveDisplay:
    """In Jupyter: show a run and redraw it as it grows while training runs in a background thread.

    Returns a ``lossview.notebook.LiveDisplay``; call ``.stop()`` to stop following.
    """
    from lossview import notebook

    return notebook.live(source, interval=interval)
