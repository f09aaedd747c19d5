"""Run labels by hyperparameter (``--label KEY``): which key, each run's value, and the curves renamed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lossview.view import Curve, Run, View


def check_label(runs_: Sequence[Run], view: View) -> None:
    """``--label KEY`` must name a hyperparameter some run has: OptionError naming those that exist."""
    if view.label is None or not runs_ or any(view.label in r.meta for r in runs_):
        return
    known = sorted({k for r in runs_ for k in r.meta})
    have = f"the runs have {', '.join(known)}" if known else "the runs have none (LossWriter(meta={...}))"
    from lossview.view import OptionError  # (view.py imports this module)

    raise OptionError(f"--label {view.label}: no run has that hyperparameter; {have}")


def hparam(run: Run, key: str) -> str:
    """A run's hyperparameter ``key`` as text (``lr=0.1``), or ``key=?`` when the run has none."""
    value = run.meta.get(key)
    return f"{key}={'?' if value is None else value}"


def relabel(curves_: list[Curve], view: View) -> None:
    """With ``--label KEY``: name each run by its hyperparameter, keeping the run only when values repeat."""
    if view.label is None or view.mean_runs:
        return
    runs_per_group: dict[str, set[str]] = {}
    for c in curves_:
        runs_per_group.setdefault(c.group, set()).add(c.run)
    for c in curves_:
        c.run = c.group if len(runs_per_group[c.group]) == 1 else f"{c.group} ({c.run})"


def group_member(c: Curve, view: View, members: dict[str, dict[str, int]]) -> int:
    """Which of its ``--label`` group's runs drew ``c`` (``members``: group -> run -> number, first come):
    0 for the first or only one, so that runs of one value, drawn in one colour, are told apart by their
    marks (``lossview.artists.ROUND_MARKERS``) in the plot and the legend."""
    if view.label is None or view.mean_runs or c.run == c.group:  # (a mean per value is the group's one)
        return 0
    runs_ = members.setdefault(c.group, {})
    return runs_.setdefault(c.run, len(runs_))
