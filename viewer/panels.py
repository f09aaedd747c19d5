"""Which axes each tag is drawn on when tags are not split (``--split`` gives each its own): tags of one
scale share the axes, and a tag whose values are orders of magnitude apart (a learning rate of 1e-3 beside a
loss of 2) gets a panel of its own, where it is a curve rather than a flat line at zero. ``--one-axes``
keeps every tag on one axes; ``--logy`` and ``--ylim`` do too (a log axis shows every scale, a fixed range
is the user's)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from lossview.view import Curve

#: Tags whose typical magnitudes differ by this factor or more are drawn on separate panels.
SCALE_APART = 50.0
#: A tag's magnitude is the median |value| of at most this many of its values (evenly spaced).
_SAMPLED = 100_000


class Panels:
    """Each tag's panel ("" for the first, else the name of the first tag drawn on it), decided when the tag
    is first seen and kept (its artists live on that axes, while the runs grow)."""

    def __init__(self) -> None:
        self.of: dict[str, str] = {}
        self._scale: dict[str, float] = {}  # panel -> the magnitude of the tag that opened it

    def assign(self, curves: Sequence[Curve]) -> None:
        """Put each tag of `curves` not placed yet on the panel of its scale, opening one if none fits."""
        new = [t for t in dict.fromkeys(c.tag for c in curves) if t not in self.of]
        for tag in new:
            size = magnitude([c for c in curves if c.tag == tag])
            if size is None or not self.of:  # (no scale yet, or the first tag: the main panel)
                self.of[tag] = next(iter(self.of.values()), "")
                self._scale.setdefault(self.of[tag], math.nan if size is None else size)
                continue
            apart = [p for p, s in self._scale.items() if math.isnan(s) or _ratio(size, s) < SCALE_APART]
            self.of[tag] = apart[0] if apart else tag
            if math.isnan(self._scale.get(self.of[tag], 0.0)):
                self._scale[self.of[tag]] = size  # the first panel's scale, once a tag gives it one
            self._scale.setdefault(self.of[tag], size)


def magnitude(curves: Sequence[Curve]) -> float | None:
    """The median |value| of the curves' finite nonzero values, or None if they have none."""
    parts = []
    for c in curves:
        y = np.asarray(c.y, np.float64)
        step = max(1, len(y) // _SAMPLED)
        parts.append(np.abs(y[::step]))
    values = np.concatenate(parts) if parts else np.empty(0)
    values = values[np.isfinite(values) & (values > 0)]
    return float(np.median(values)) if values.size else None


def _ratio(a: float, b: float) -> float:
    return max(a, b) / min(a, b)
