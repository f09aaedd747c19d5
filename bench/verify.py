"""The price of checksum verification (issue 14) on read: `lossfmt.read` with and without it, interleaved.

The "without" side is `lossfmt.read(path, verify=False)` when the reader offers that switch, else plain
`pyarrow.ipc` decoding of the same file (what reading costs with no lossfmt work at all: an upper bound
of the verification's share). Both a closed file and a live one (the same run before close())."""

from __future__ import annotations

import inspect
import os
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa

from bench.common import (
    Config,
    Section,
    Workspace,
    interleaved,
    log,
    median,
    min_med_max,
    realistic_losses,
    table,
)


def _live_file(ws: Workspace, n: int) -> tuple[Path, object]:
    """A live (footerless) file of `n` events, its writer kept open (the caller closes it)."""
    from lossfmt import LossWriter

    path = ws.path(f"live{n}.arrow")
    writer = LossWriter(path, flush_secs=1e6)
    add = writer.add
    for step, value in enumerate(realistic_losses(n)):
        add(step, value)
    writer.flush()
    return path, writer


def _timed(read: Callable[[], int], n: int) -> Callable[[], float]:
    def case() -> float:
        t0 = time.perf_counter()
        rows = read()
        elapsed = time.perf_counter() - t0
        if rows != n:
            raise RuntimeError(f"read {rows:,} rows, expected {n:,}")
        return elapsed

    return case


def _pyarrow_read(path: Path, closed: bool) -> Callable[[], int]:
    def read() -> int:
        with pa.OSFile(str(path)) as f:
            if closed:
                return pa.ipc.open_file(f).read_all().num_rows
            f.seek(8)  # a live file: the Arrow magic and padding, then a stream (spec/FORMAT.md)
            return pa.ipc.open_stream(f).read_all().num_rows

    return read


def run(cfg: Config, ws: Workspace) -> Section:
    import lossfmt

    sec = Section("verify", "Reading with and without checksum verification")
    n = cfg.verify_n
    switch = "verify" in inspect.signature(lossfmt.read).parameters
    live, writer = _live_file(ws, n)
    closed = ws.run_file(n)
    cases: dict[str, Callable[[], float]] = {}
    for kind, path in (("closed", closed), ("live", live)):
        cases[f"{kind}/verified"] = _timed(lambda p=path: lossfmt.read(p).num_rows, n)
        if switch:
            unverified = lambda p=path: lossfmt.read(p, verify=False).num_rows  # noqa: E731
        else:
            unverified = _pyarrow_read(path, kind == "closed")
        cases[f"{kind}/unverified"] = _timed(unverified, n)
    repeats = max(3, cfg.repeats)
    log(f"verify: {n:,} events x {repeats} repeats, closed and live, interleaved")
    try:
        res = interleaved(cases, repeats)
    finally:
        writer.close()  # type: ignore[attr-defined]
    without = "`lossfmt.read(path, verify=False)`" if switch else "`pyarrow.ipc` decoding of the same bytes"
    rows = []
    for kind in ("closed", "live"):
        v, u = res[f"{kind}/verified"], res[f"{kind}/unverified"]
        rows.append([f"{kind}: `lossfmt.read(path)`", *min_med_max(v, 1e3), ""])
        rows.append([f"{kind}: {without}", *min_med_max(u, 1e3), f"{median(v) / median(u):.2f}x"])
    sec.add(
        f"{n:,} events (`add(step, float)`, one tag); the live file is the same kind of run before "
        f"close() ({os.path.getsize(live):,} bytes). Times in ms; the ratio is verified / without.",
        "",
        *table(["read", "min ms", "median ms", "max ms", "verified / without"], rows),
    )
    if not switch:
        sec.add(
            "`lossfmt.read` has no `verify=` switch in this revision: the without side is pyarrow alone, "
            "so the ratio also counts lossfmt's own work (schema checks, dictionary handling)."
        )
    return sec
