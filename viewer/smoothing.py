"""Which curves the default smoothing smooths: an EMA is for noisy curves, so the default leaves alone what
it would only make lag (short series, buckets, and noise-free series such as a learning-rate schedule)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from lossfmt import transforms

if TYPE_CHECKING:
    from lossview.view import Curve, View

#: The default smoothing skips series this short (per-epoch validation curves): an EMA over a handful of
#: points only makes them lag. An explicit smoothing applies to every series.
FEW_POINTS = 60
#: A series whose consecutive changes reverse direction less often than this is noise-free (a schedule, a
#: steady decline): the default smoothing leaves it raw. A noisy curve reverses about every other step.
SMOOTH_REVERSALS = 0.1
#: Where a series is longer, its reversals are counted on this many evenly spaced stretches of it.
_SAMPLED = 64, 2048


def smooth(curves_: Sequence[Curve], view: View) -> None:
    """Set each curve's ``smoothed`` as the view asks. The default smoothing skips bucketed series and tags
    whose every series is short (per-epoch validation) or noise-free (an lr schedule), so one tag is drawn
    alike in every run."""
    smoother = transforms.parse_smooth(view.smooth)
    by_rule = smoother is not None and not view.smooth_explicit and view.per is None
    noisy_tags = {c.tag for c in curves_ if noisy(c.y)} if by_rule else set()
    # One time constant for every curve of the picture: a fraction of the shown step span ("span:F").
    steps = [c.step for c in curves_ if len(c.step)]
    span = float(max(int(s.max()) for s in steps) - min(int(s.min()) for s in steps)) if steps else 0.0
    for c in curves_:
        wanted = view.smooth_explicit or (view.per is None and c.tag in noisy_tags)
        if smoother is not None and wanted and len(c.y):
            c.smoothed = smoother(c.y, c.step, span=span)
        else:
            c.smoothed = None


def noisy(y: np.ndarray) -> bool:
    """Whether the default smoothing smooths a series (and so its tag): long enough, and noisy."""
    return len(y) > FEW_POINTS and reversals(y) >= SMOOTH_REVERSALS


def reversals(y: np.ndarray) -> float:
    """The share of a series' consecutive changes that reverse the one before, counting only finite nonzero
    changes (a value held for several steps, or a NaN between two, does not hide the noise): about 0.5 for
    noise, near 0 for a schedule or a smooth decline. Sampled on a long series (cost independent of n)."""
    blocks, width = _SAMPLED
    if len(y) > blocks * width:
        starts = np.linspace(0, len(y) - width, blocks).astype(np.int64)
        parts = [y[start : start + width] for start in starts]
    else:
        parts = [y]
    pairs = flips = 0
    for part in parts:
        with np.errstate(over="ignore", invalid="ignore"):  # (+-1e308 apart: not finite, not counted)
            d = np.diff(np.asarray(part, np.float64))
        signs = np.sign(d[np.isfinite(d) & (d != 0)])
        pairs += max(len(signs) - 1, 0)
        flips += int(np.count_nonzero(signs[1:] != signs[:-1]))
    return flips / pairs if pairs else 0.0
