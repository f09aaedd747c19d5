"""Which axes each tag is drawn on when tags are not split (``--split`` gives each its own): tags of one
scale share the axes, and a tag whose values are orders of magnitude apart (a learning rate of 1e-3 beside a
loss of 2) gets a panel of its own, where it is a curve rather than a flat line at zero. ``--one-axes``
keeps every tag on one axes. The panels stay with ``--logy`` (an lr decaying to 1e-11 would squash the loss
into the top decade of a shared log axis) and with ``--ylim``, which fixes the range of the top panel (the
loss's scale) and leaves an lr's panel its own range."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from lossview.view import Curve

#: Tags whose typical magnitudes differ by this factor or more are drawn on separate panels.
SCALE_APART = 50.0
#: A tag's magnitude is the median |value| of at most this many of its values (evenly spaced).
_SAMPLED = 100_000


def layout(curves: Sequence[Curve]) -> dict[str, str]:
    """Each tag's panel, in panel order (top first): "" for the top one, else the name of its first tag.

    Tags join the first group whose opening tag is less than `SCALE_APART` from theirs; the group holding a
    loss (a tag named ``*loss*``) is on top, then the larger groups; a tag without a finite nonzero value
    yet is on the top panel. Computed from the curves as they are, so a run being followed ends with the
    layout a plot of the finished file has (the plot rebuilds its axes when a tag changes panel)."""
    groups: list[tuple[float, list[str]]] = []  # (the opening tag's magnitude, the group's tags)
    unscaled = []
    for tag in dict.fromkeys(c.tag for c in curves):
        size = magnitude([c for c in curves if c.tag == tag])
        if size is None:
            unscaled.append(tag)
            continue
        fit = next((g for opening, g in groups if _ratio(size, opening) < SCALE_APART), None)
        if fit is None:
            groups.append((size, [tag]))
        else:
            fit.append(tag)
    ordered = [g for _, g in sorted(groups, key=lambda sg: (not _has_loss(sg[1]), -len(sg[1])))] or [[]]
    ordered[0].extend(unscaled)
    return {tag: ("" if i == 0 else g[0]) for i, g in enumerate(ordered) for tag in g}


def _has_loss(tags: list[str]) -> bool:
    return any("loss" in t.lower() for t in tags)


def magnitude(curves: Sequence[Curve]) -> float | None:
    """The median |value| of the curves' finite nonzero values, or None if they have none."""
    parts = []
    for c in curves:
        y = np.asarray(c.y, np.float64)
        step = max(1, len(y) // _SAMPLED)
        parts.append(np.abs(y[::step]))
    values = np.concatenate(parts) if parts else np.empty(0)
    values = values[np.isfinite(values) & (values > 0)]
    if not values.size:
        return None
    # np.median would import numpy.ma (6-15 ms of a --term frame): the middle value(s) by partition instead
    half = values.size // 2
    middle = np.partition(values, [half - 1, half] if values.size > 1 else [0])
    return float(middle[half] if values.size % 2 else (middle[half - 1] + middle[half]) / 2)


def _ratio(a: float, b: float) -> float:
    return max(a, b) / min(a, b)
