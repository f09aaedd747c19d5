"""Rebuild the conformance vectors (see ../FORMAT.md, section 8): `python spec/vectors/generate.py`.

Every file is made by the real LossWriter: the live and crash cases by a real child process killed with
SIGKILL right after a flush() returned; torn tails are cut deterministically at a byte offset inside the
last record batch message. The expected rows in each JSON come from what was logged, not from reading
the files back, so the conformance test checks the reader against an independent source. Wall times are
made deterministic by replacing the writer's clock (`lossfmt._writer._time`) in the logging process.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
# The pure-Python add(), here and in the killed children (they inherit it): the clock is pinned by replacing
# lossfmt._writer._time, which the compiled add() does not call (it reads the time in C).
os.environ["LOSSFMT_PURE_PYTHON"] = "1"
import handmade  # noqa: E402 (the vectors no writer makes on purpose, built from the spec with pyarrow)

T0 = 1_700_000_000.0  # seconds; each add() advances the fake clock by 0.25 s (exact in binary)
TICK = 0.25
COLUMNS = ["step", "tag", "value", "count", "epoch", "wall_time", "reduction"]
MAGIC_LEN = 8

# One event: (step, tag, value, count, epoch, reduction). A flush is a list of events.
CLOSED_FLUSHES: list[list[tuple[Any, ...]]] = [
    [
        (0, "loss", 2.5, 32, 0, "mean"),
        (0, "val/loss", 2.75, 100, 0, "mean"),
        (1, "loss", 2.25, 32, 0, "mean"),
    ],
    [(2, "loss", math.nan, 32, 0, "mean"), (3, "loss", math.inf, 16, None, "mean")],
    [
        (2, "loss", 1.75, 32, 1, "mean"),
        (3, "mse", 12.0, 4, 1, "sum"),
        (4, "loss", -math.inf, 1, None, "mean"),
    ],
    [(4, "loss", -0.0, 8, 1, "mean"), (5, "loss", 1.5, 32, 1, "mean"), (5, "loss", 1.25, 32, 1, "mean")],
]
LIVE_FLUSHES: list[list[tuple[Any, ...]]] = [
    [(0, "loss", 4.5, 2, 0, "mean"), (1, "loss", 3.0, 2, 0, "mean")],
    [(2, "loss", 2.5, 2, 0, "mean"), (3, "loss", 2.0, 2, 0, "mean")],
    [(4, "loss", 3.5, 4, 1, "mean"), (5, "loss", 2.5, 4, 1, "mean")],
    [(5, "acc", 0.5, 8, 1, "mean"), (6, "loss", 1.0, 2, 1, "mean")],  # a new tag: a dictionary message first
]
MAGIC_TAIL_FLUSHES: list[list[tuple[Any, ...]]] = [
    [(0, "loss", 2.0, 4, 0, "mean"), (1, "loss", 1.5, 4, 0, "mean")],
    [(2, "val/ARROW1", 1.25, 4, 0, "mean")],  # torn by the crash, just after the tag's bytes
]
RESUMED_BEFORE: list[list[tuple[Any, ...]]] = [
    [(0, "loss", 1.0, 10, 0, "mean"), (1, "loss", 0.9, 10, 0, "mean")],
    [(2, "loss", 0.8, 10, 0, "mean"), (3, "loss", 0.7, 10, 0, "mean")],
    [(4, "loss", 0.6, 10, 1, "mean"), (5, "loss", 0.5, 10, 1, "mean")],  # torn by the crash
]
RESUMED_AFTER: list[list[tuple[Any, ...]]] = [  # resumed from the step-2 checkpoint: steps rewind
    [(2, "loss", 0.75, 10, 0, "mean"), (3, "loss", 0.65, 10, 0, "mean"), (3, "val/loss", 0.8, 50, 0, "mean")],
    [(4, "loss", 0.55, 10, 1, "mean"), (4, "sum_loss", 5.5, 10, 1, "sum")],
]

# Steps that restart each epoch (`for step, batch in enumerate(loader)` inside an epoch loop), an lr logged
# without an epoch at each epoch's start, and a resume inside epoch 1 (its step 2 rewinds to step 1): only
# run-wide steps (spec 5.2) tell the restarts from the rewind.
RESTARTING_FLUSHES: list[list[tuple[Any, ...]]] = [
    [
        (0, "lr", 0.001, 1, None, "mean"),
        (0, "loss", 2.0, 32, 0, "mean"),
        (1, "loss", 1.75, 32, 0, "mean"),
        (2, "loss", 1.5, 32, 0, "mean"),
        (2, "val_loss", 1.875, 100, 0, "mean"),
    ],
    [
        (0, "lr", 0.0005, 1, None, "mean"),
        (0, "loss", 1.375, 32, 1, "mean"),
        (1, "loss", 1.25, 32, 1, "mean"),
        (2, "loss", 1.125, 32, 1, "mean"),  # orphaned: the resume below goes back to step 1 of epoch 1
    ],
    [
        (1, "loss", 1.3125, 32, 1, "mean"),
        (2, "loss", 1.1875, 32, 1, "mean"),
        (2, "val_loss", 1.4375, 100, 1, "mean"),
        (0, "lr", 0.00025, 1, None, "mean"),
        (0, "loss", 1.0625, 32, 2, "mean"),
        (1, "loss", 1.0, 32, 2, "mean"),
    ],
]

_CHILD = """
import json, sys
sys.path.insert(0, sys.argv[4])
import generate
generate.pin_metadata(sys.argv[2])
import lossfmt._writer
from lossfmt import LossWriter
clock = iter(float(t) for t in json.loads(sys.argv[3]))
lossfmt._writer._time = lambda: next(clock)
w = LossWriter(sys.argv[1], flush_secs=3600, run=sys.argv[2], meta={"lr": 0.01, "seed": 7})
for flush in json.load(sys.stdin):
    for step, tag, value, count, epoch, reduction in flush:
        w.add(step, float(value), tag, count=count, epoch=epoch, reduction=reduction)
    w.flush()
    print(w.run_id, flush=True)
import time
time.sleep(3600)  # killed here: the file stays exactly as flushed (no close, no compaction)
"""


def _json_value(v: float) -> float | str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    return v


def _encode(v: Any) -> Any:
    """Events hold NaN/inf as floats; JSON carries them as strings (and -0.0 as a number)."""
    return _json_value(v) if isinstance(v, float) else v


def _clock(start: int, n: int) -> list[float]:
    return [T0 + (start + i) * TICK for i in range(n)]


def _rows(flushes: list[list[tuple[Any, ...]]], first_tick: int = 0) -> list[list[Any]]:
    rows, tick = [], first_tick
    for flush in flushes:
        for step, tag, value, count, epoch, reduction in flush:
            wall_us = round((T0 + tick * TICK) * 1_000_000)
            rows.append([step, tag, _encode(float(value)), count, epoch, wall_us, reduction])
            tick += 1
    return rows


def _run_wide(rows: list[list[Any]]) -> list[int] | None:
    """The run-wide steps of a run whose steps restart each epoch (spec 5.2), else None. Written from the
    spec's words, row by row, not from lossfmt's code."""
    steps = [row[0] for row in rows]
    if all(b >= a for a, b in itertools.pairwise(steps)):
        return None
    known = [i for i, row in enumerate(rows) if row[4] is not None]
    if len(known) < 2:
        return None
    epochs = []
    for i, row in enumerate(rows):
        before = [k for k in known if k <= i]
        after = [k for k in known if k >= i]
        # without an epoch: the epoch of the event with one before it, or after it where its step is lower
        use = before[-1] if before and (steps[i] >= steps[before[-1]] or not after) else after[0]
        epochs.append(row[4] if row[4] is not None else rows[use][4])
    ups = [i for i in range(len(rows) - 1) if epochs[i + 1] > epochs[i]]
    lowest = min(steps)
    if not ups or any(steps[i + 1] > steps[i] for i in ups) or all(steps[i + 1] != lowest for i in ups):
        return None
    offset, offsets = 0, {}
    for epoch in sorted(set(epochs)):
        offsets[epoch] = offset
        offset += max(s for s, e in zip(steps, epochs, strict=True) if e == epoch) + 1
    return [offsets[e] + s for s, e in zip(steps, epochs, strict=True)]


def _without_rewound(rows: list[list[Any]]) -> list[list[Any]]:
    """The rewind rule of spec 5.2, event by event as TensorBoard purges: where a tag's step goes back below
    one it kept, its kept events at that step or later are dropped (run-wide steps where the run's steps
    restart each epoch)."""
    wide = _run_wide(rows)
    steps = [row[0] for row in rows] if wide is None else wide
    kept: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        series = kept.setdefault(row[1], [])
        if series and steps[i] < max(steps[j] for j in series):
            series[:] = [j for j in series if steps[j] < steps[i]]
        series.append(i)
    return [rows[i] for i in sorted(i for series in kept.values() for i in series)]


def _message_spans(data: bytes) -> list[tuple[int, int, str]]:
    """(start, end, type) of every complete message after the magic, by Arrow's own message reader."""
    reader = pa.BufferReader(pa.py_buffer(data))
    reader.seek(MAGIC_LEN)
    spans = []
    while True:
        start = reader.tell()
        try:
            msg = pa.ipc.read_message(reader)
        except (EOFError, OSError, pa.ArrowInvalid):
            return spans
        spans.append((start, reader.tell(), msg.type))


def _eos_offset(data: bytes) -> int:
    """Where a closed file's EOS marker starts: before the footer, its int32 length and "ARROW1"."""
    footer_len = int.from_bytes(data[-10:-6], "little", signed=True)
    return len(data) - 10 - footer_len - 8


def _log_and_kill(
    path: Path, run: str, flushes: list[list[tuple[Any, ...]]], first_tick: int = 0, *, resume: bool = False
) -> str:
    """Log `flushes` in a child process, flush() after each, SIGKILL after the last; return the run_id.
    With `resume`, the child resumes the existing file instead of starting a new one."""
    if not resume:
        path.unlink(missing_ok=True)
    n = sum(len(f) for f in flushes)
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(path), run, json.dumps(_clock(first_tick, n)), str(HERE)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write(json.dumps([[list(e) for e in f] for f in flushes]))
    child.stdin.close()
    run_id = ""
    for _ in flushes:
        run_id = child.stdout.readline().strip()
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert run_id, "the child writer did not report its flushes"
    return run_id


def pin_metadata(run: str) -> None:
    """Make the writer's run metadata deterministic (run id, creation time, host, pid) in this process, so
    the vectors rebuild byte for byte."""
    import datetime as dt
    import uuid

    import lossfmt.schema as schema_module

    class _Clock:
        @staticmethod
        def now(tz: Any = None) -> dt.datetime:
            return dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc)

    class _Ids:
        @staticmethod
        def uuid4() -> uuid.UUID:
            return uuid.uuid5(uuid.NAMESPACE_URL, f"lossfmt-vector:{run}")

    class _Host:
        @staticmethod
        def gethostname() -> str:
            return "vectors"

    class _Os:
        fspath = staticmethod(os.fspath)
        PathLike = os.PathLike

        @staticmethod
        def getpid() -> int:
            return 1

    schema_module.datetime = _Clock  # type: ignore[attr-defined,assignment]
    schema_module.uuid = _Ids  # type: ignore[attr-defined,assignment]
    schema_module.socket = _Host  # type: ignore[attr-defined,assignment]
    schema_module.os = _Os  # type: ignore[attr-defined,assignment]


def _write_in_process(path: Path, run: str, flushes: list[list[tuple[Any, ...]]], first_tick: int) -> str:
    import lossfmt._writer
    from lossfmt import LossWriter

    pin_metadata(run)

    clock = iter(_clock(first_tick, sum(len(f) for f in flushes)))
    saved = lossfmt._writer._time
    lossfmt._writer._time = lambda: next(clock)
    try:
        with LossWriter(path, flush_secs=3600, run=run, meta={"lr": 0.01, "seed": 7}) as writer:
            for flush in flushes:
                for step, tag, value, count, epoch, reduction in flush:
                    writer.add(step, float(value), tag, count=count, epoch=epoch, reduction=reduction)
                writer.flush()
            return writer.run_id
    finally:
        lossfmt._writer._time = saved


def _save(
    name: str,
    data: bytes,
    rows: list[list[Any]],
    run: str | None,
    run_id: str | None,
    end: int | None,
    closed: bool | None,
    *,
    error: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    (HERE / f"{name}.arrow").write_bytes(data)
    metadata: dict[str, Any] = {"meta": {"lr": 0.01, "seed": 7}}
    if run is not None:
        metadata = {"run": run, "run_id": run_id, **metadata}
    expected = {
        "format_version": 1,
        "description": handmade.DESCRIPTIONS[name],
        "closed": closed,
        "end": end,
        "error": error,
        "metadata": metadata if error is None else None,
        "columns": COLUMNS,
        "rows": rows,
        "rows_without_rewound": _without_rewound(rows),
        **(extra or {}),
    }
    if run is None and error is None:
        expected["metadata"] = {"meta": {}}
    (HERE / f"{name}.json").write_text(_dump(expected))


def _dump(expected: dict[str, Any]) -> str:
    """JSON with one event per line, so a diff of two generations reads event by event."""
    fields = []
    for key, value in expected.items():
        if isinstance(value, list) and value and isinstance(value[0], list):
            body = ",\n".join("  " + json.dumps(row, allow_nan=False) for row in value)
            fields.append(f' "{key}": [\n{body}\n ]')
        else:
            fields.append(f" {json.dumps(key)}: {json.dumps(value, allow_nan=False)}")
    return "{\n" + ",\n".join(fields) + "\n}\n"


def main() -> None:
    scratch = HERE / "_scratch.arrow"
    try:
        # closed: written and closed in this process.
        run_id = _write_in_process(scratch, "closed", CLOSED_FLUSHES, 0)
        data = scratch.read_bytes()
        _save("closed", data, _rows(CLOSED_FLUSHES), "closed", run_id, _eos_offset(data), True)

        # live: a writer killed right after its last flush() returned.
        run_id = _log_and_kill(scratch, "live", LIVE_FLUSHES)
        data = scratch.read_bytes()
        _save("live", data, _rows(LIVE_FLUSHES), "live", run_id, len(data), False)

        # torn: the live file cut in the middle of its last record batch (its dictionary message stays whole).
        spans = _message_spans(data)
        start, end, kind = spans[-1]
        assert kind == "record batch"
        torn_at = (start + end) // 2
        # end: after the previous record batch (the torn flush's dictionary message is dropped too)
        previous = max(e for _, e, k in spans[:-1] if k == "record batch")
        _save("torn", data[:torn_at], _rows(LIVE_FLUSHES[:-1]), "live", run_id, previous, False)

        # magic_tail: a live file whose last flush (a new tag ending in "ARROW1", stored uncompressed) was
        # cut just after those six bytes: a torn tail, not a closed file (spec 1.2).
        run_id = _log_and_kill(scratch, "magic_tail", MAGIC_TAIL_FLUSHES)
        data = scratch.read_bytes()
        spans = _message_spans(data)
        cut = data.rindex(b"ARROW1") + 6
        assert spans[-2][2] == "dictionary" and spans[-2][0] < cut <= spans[-2][1], "the tag's bytes moved"
        previous = max(e for _, e, k in spans[:-2] if k == "record batch")
        rows = _rows(MAGIC_TAIL_FLUSHES[:-1])
        _save("magic_tail", data[:cut], rows, "magic_tail", run_id, previous, False)

        # restarting: steps that restart each epoch, and a rewind inside one epoch; written and closed here.
        scratch.unlink()  # (it holds the live file)
        run_id = _write_in_process(scratch, "restarting", RESTARTING_FLUSHES, 0)
        data = scratch.read_bytes()
        rows = _rows(RESTARTING_FLUSHES)
        _save("restarting", data, rows, "restarting", run_id, _eos_offset(data), True)

        # resumed: a crash that tore the last batch, then a new writer resumed the file and closed it.
        run_id = _log_and_kill(scratch, "resumed", RESUMED_BEFORE)
        data = scratch.read_bytes()
        start, end, kind = _message_spans(data)[-1]
        assert kind == "record batch"
        with open(scratch, "r+b") as f:
            f.truncate((start + end) // 2)
        kept = RESUMED_BEFORE[:-1]
        first_tick = sum(len(f) for f in RESUMED_BEFORE)
        resumed_id = _write_in_process(scratch, "resumed", RESUMED_AFTER, first_tick)
        assert resumed_id == run_id
        data = scratch.read_bytes()
        rows = _rows(kept) + _rows(RESUMED_AFTER, first_tick)
        _save("resumed", data, rows, "resumed", run_id, _eos_offset(data), True)

        # resumed_killed: killed, resumed by a second writer (a second stream) and killed again.
        run_id = _log_and_kill(scratch, "resumed_killed", RESUMED_BEFORE[:2])
        first_tick = sum(len(f) for f in RESUMED_BEFORE[:2])
        assert _log_and_kill(scratch, "x", RESUMED_AFTER, first_tick, resume=True) == run_id
        data = scratch.read_bytes()
        rows = _rows(RESUMED_BEFORE[:2]) + _rows(RESUMED_AFTER, first_tick)
        _save("resumed_killed", data, rows, "resumed_killed", run_id, len(data), False)

        for name, made in handmade.build().items():
            _save(
                name,
                made.data,
                made.rows,
                made.run,
                made.run_id,
                made.end,
                made.closed,
                error=made.error,
                extra=made.extra,
            )
    finally:
        scratch.unlink(missing_ok=True)
        for tmp in HERE.glob("_scratch.arrow.*.tmp"):
            tmp.unlink()
    for path in HERE.glob("*.arrow"):
        assert os.path.getsize(path) < 8192, path


if __name__ == "__main__":
    main()
