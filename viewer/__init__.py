"""lossview: plot lossfmt files, live (``lossview run.arrow --follow``) or to an image, and in notebooks."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from lossview.notebook import LiveDisplay
    from lossview.view import View as _View

__all__ = ["figure", "live"]


def figure(
    source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    tags: str | Sequence[str] | None = (),
    smooth: str | None = None,
    per: str | int | None = None,
    normalize: str | None = None,
    x: str = "step",
    band: bool | str | None = None,
    mean_runs: bool = False,
    split: bool = False,
    logy: bool = False,
    title: str | None = None,
    label: str | None = None,
    one_axes: bool = False,
) -> Figure:
    """Return the matplotlib Figure ``lossview`` would draw for a file (or files, globs, directories).

    Options are those of the command line (``tags="loss"`` is one tag, None or ``()`` every tag;
    ``smooth=None`` is the default smoothing; ``band=True`` shades the min..max spread as ``--band``, or
    ``band="std"`` as ``--band --spread std``); tags that match no event of the files raise ValueError.
    The figure is not attached to pyplot, so it displays once in a notebook cell, leaks no windows and
    leaves the matplotlib backend alone.
    """
    from lossview import notebook, plot, view

    args = [source] if isinstance(source, (str, os.PathLike)) else list(source)
    options = _view(tags, smooth, per, normalize, x, band, mean_runs, label)
    runs = view.load(args, options)  # a run with no events yet draws empty axes: notebooks poll it
    view.require_tags(args, options, runs)
    fig = notebook.NotebookFigure(figsize=(8.0, 4.5), layout="constrained")
    compare = len(runs) > 1 and (not mean_runs or label is not None)  # (a mean per --label value)
    style = plot.Style(split=split, compare=compare, logy=logy, title=title, panels=not one_axes)
    plot.LossPlot(fig, options, style, plot.NoOutput()).update(view.curves(runs, options))
    return fig


def live(
    source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    interval: float = 1.0,
    tags: str | Sequence[str] | None = (),
    smooth: str | None = None,
    per: str | int | None = None,
    normalize: str | None = None,
    x: str = "step",
    band: bool | str | None = None,
    mean_runs: bool = False,
    split: bool = False,
    logy: bool = False,
    title: str | None = None,
    label: str | None = None,
    one_axes: bool = False,
) -> LiveDisplay:
    """In Jupyter: show a run and redraw it as it grows while training runs in a background thread.

    The view options are those of ``figure()``; ``interval`` is the seconds between polls. Returns a
    ``lossview.notebook.LiveDisplay``; call ``.stop()`` to stop following.
    """
    from lossview import notebook

    options = _view(tags, smooth, per, normalize, x, band, mean_runs, label)
    return notebook.live(
        source, interval=interval, view=options, split=split, logy=logy, title=title, one_axes=one_axes
    )


def _view(
    tags: str | Sequence[str] | None,
    smooth: str | None,
    per: str | int | None,
    normalize: str | None,
    x: str,
    band: bool | str | None,
    mean_runs: bool,
    label: str | None,
) -> _View:
    """The checked view of figure()'s and live()'s options (ValueError naming a bad one)."""
    from lossview import view

    explicit = smooth is not None
    options = view.View(
        tags=() if tags is None else (tags,) if isinstance(tags, str) else tuple(tags),
        smooth=smooth if explicit else view.DEFAULT_SMOOTH,
        smooth_explicit=explicit,
        per=per,
        normalize=normalize,
        x=x,
        band=("minmax" if band else None) if isinstance(band, bool) else band,
        mean_runs=mean_runs,
        label=label,
    )
    options.check()
    return options
