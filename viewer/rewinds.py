"""The rewind rule as the viewer applies it: events a rewind orphans are hidden, and the user is told where.

A resume that goes back to a checkpoint orphans the events logged after it (`transforms.drop_rewound` drops
them, as TensorBoard does); so does a loop whose steps restart each epoch when it logs no epoch, and then
most of the run is hidden: silently hiding it drew one epoch of three.
"""

from __future__ import annotations

import warnings

import pyarrow as pa

from lossfmt import transforms

#: What `drop_rewound` says: (tag, the step before, the step it goes back to, how to see them).
_REWOUND = (
    "{!r} goes back from step {} to {}: the events that rewind orphans are hidden, as TensorBoard hides a "
    "resumed run's ({}; steps that restart each epoch draw run-wide with epoch=)"
)
KEEP = "--keep-rewound draws them"
KEEP_TERM = "lossview without --term draws them with --keep-rewound"  # (--term refuses it)


def note(name: str, where: tuple[str, int, int], keep: str = KEEP) -> str:
    """The warning for run `name` where `transforms.first_rewind` found a rewind."""
    return f"{name or 'run'}: {_REWOUND.format(*where, keep)}"


def drop_rewound(table: pa.Table, name: str) -> pa.Table:
    """`transforms.drop_rewound`, warning where it hid events (once per run in the CLI: its text is fixed
    by the first rewind, so a live view says it once)."""
    kept = transforms.drop_rewound(table)
    if kept.num_rows < table.num_rows and (where := transforms.first_rewind(table)) is not None:
        warnings.warn(note(name, where), stacklevel=3)
    return kept
