"""``lossview summary``: per run and tag, what a researcher checks first (events, steps, first/last/min/max,
the smoothed trend, non-finite values, rate) with the run's hyperparameters, as a table or JSON."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from lossfmt.transforms import to_arrow as array
from lossview import view as v
from lossview.commands import empty_note, require_events

HEADERS = ("run", "tag", "events", "steps", "first", "last", "min", "@step", "max", "@step", "smoothed",
           "non-finite", "events/s", "duration")  # fmt: skip


def summary_view(view: v.View) -> v.View:
    """What ``summarize`` reads: the events' columns plus wall_time (rates)."""
    return v.View(tags=view.tags, smooth=view.smooth, normalize=view.normalize, x="time",
                  keep_rewound=view.keep_rewound)  # fmt: skip


def summarize(runs: Sequence[v.Run], view: v.View) -> list[dict[str, Any]]:
    """Per run and tag: events, step range, first/last/min/max values, last smoothed, non-finite count, rate,
    and the run's hyperparameters (its metadata) under ``hparams``. Each run smoothed by itself as the plot
    would smooth it alone (``view.smooth``: the default skips short series)."""
    parts: list[tuple[v.Run, tuple[pa.Table, v.Curve] | None]] = []
    for run in runs:
        if run.table.num_rows == 0 and not view.tags:  # listed, not left out: a sweep shows all its runs
            parts.append((run, None))
            continue
        as_drawn = v.View(normalize=view.normalize, keep_rewound=view.keep_rewound)
        table = v.prepare(run.table, as_drawn, run.label)
        for tag, idx in v.tag_groups(table):
            sub = table if idx is None else table.take(array(idx, pa.int64()))
            step, y = v.column(sub, "step", np.int64), v.column(sub, "value", np.float64)
            parts.append((run, (sub, v.Curve(run.label, tag, step, y, step))))
    for run in runs:  # each run by itself: its numbers do not depend on the other files named
        v.smooth([part[1] for r, part in parts if part and r is run], view)
    return [_row(run, part[1], v.seconds(part[0])) if part else _empty_row(run) for run, part in parts]


def _empty_row(run: v.Run) -> dict[str, Any]:
    """A run without events: ``_row``'s keys with nothing measured, and a ``note`` naming its file and why it
    is empty (closed before it logged, a live writer that has not flushed, a copy cut short)."""
    return {
        "run": run.label, "tag": None, "events": 0, "first_step": None, "last_step": None, "first": None,
        "last": None, "min": None, "min_step": None, "max": None, "max_step": None, "last_smoothed": None,
        "non_finite": 0,
        "events_per_s": None, "duration_s": None, "hparams": dict(run.meta), "note": empty_note(run),
    }  # fmt: skip


def _row(run: v.Run, c: v.Curve, t: np.ndarray) -> dict[str, Any]:
    step, y = c.step, c.y
    finite = np.isfinite(y)
    i_min = int(np.flatnonzero(finite)[np.argmin(y[finite])]) if finite.any() else None
    i_max = int(np.flatnonzero(finite)[np.argmax(y[finite])]) if finite.any() else None  # a spike shows
    duration = float(t.max() - t.min()) if len(t) else 0.0
    sm_finite = c.smoothed[np.isfinite(c.smoothed)] if c.smoothed is not None else None
    return {
        "run": run.label,
        "tag": c.tag,
        "events": len(y),
        "first_step": int(step[0]),
        "last_step": int(step[-1]),
        "first": float(y[0]),
        "last": float(y[-1]),
        "min": float(y[i_min]) if i_min is not None else math.nan,
        "min_step": int(step[i_min]) if i_min is not None else None,
        "max": float(y[i_max]) if i_max is not None else math.nan,
        "max_step": int(step[i_max]) if i_max is not None else None,
        # The trend where the run last had one (a diverged run ends in NaN; "last" shows that).
        "last_smoothed": float(sm_finite[-1]) if sm_finite is not None and len(sm_finite) else None,
        "non_finite": int((~finite).sum()),
        "events_per_s": len(y) / duration if duration > 0 else None,
        "duration_s": duration,
        "hparams": dict(run.meta),
    }


def format_summary(rows: Sequence[dict[str, Any]]) -> str:
    """A fixed-width text table of ``summarize`` rows; each hyperparameter is a column after ``tag``."""
    keys = list(dict.fromkeys(k for r in rows for k in r.get("hparams", {})))
    # A hyperparameter named like a column of the table (events, min, run) is shown as hp.NAME.
    headers = (*HEADERS[:2], *(f"hp.{k}" if k in HEADERS else k for k in keys), *HEADERS[2:])
    body = []
    for r in rows:
        hp = r.get("hparams", {})
        cells = [str(r["run"]), _text(r["tag"]), *(_cell(hp[k]) if k in hp else "-" for k in keys)]
        steps = "-" if r["first_step"] is None else f"{r['first_step']}..{r['last_step']}"
        cells += [str(r["events"]), steps, _num(r["first"]), _num(r["last"])]
        cells += [
            _num(r["min"]),
            "-" if r["min_step"] is None else str(r["min_step"]),
            _num(r["max"]),
            "-" if r["max_step"] is None else str(r["max_step"]),
            _num(r["last_smoothed"]),
        ]
        cells += [str(r["non_finite"]), _num(r["events_per_s"], ".4g"), _duration(r["duration_s"])]
        body.append(cells)
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(headers)]
    left = set(range(2 + len(keys)))

    def fmt(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i in left else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    notes = [r["note"] for r in rows if r.get("note")]
    table = "\n".join([fmt(headers), fmt(["-" * w for w in widths]), *(fmt(b) for b in body)]).rstrip()
    return "\n\n".join([table, "\n".join(notes)]) if notes else table


def _text(value: Any) -> str:
    return "-" if value is None else str(value)


def _cell(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _num(value: Any, spec: str = ".6g") -> str:
    return "-" if value is None else format(float(value), spec)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    m, s = divmod(round(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def summary(files: Sequence[str], view: v.View, *, as_json: bool) -> int:
    """Print the summary of the runs ``files`` names; a run without events is listed with 0 of them (its
    note says why), in the text table and in ``--json`` alike. Only tags matching nothing is an error."""
    runs = v.load(files, summary_view(view))
    if view.tags:
        require_events(runs, view)
    rows = summarize(runs, view)
    print(
        json.dumps(_finite(rows), indent=1, default=str, allow_nan=False) if as_json else format_summary(rows)
    )
    return 0


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float as None: JSON has no NaN or Infinity (null is valid JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(x) for k, x in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(x) for x in value]
    return value
