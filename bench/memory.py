"""Child of the memory benchmarks; prints its measurements as JSON.

`python -m bench.memory PATH N [MAX_PENDING]`: peak RSS while producing N events (without MAX_PENDING
the events go to a plain list, a buffer without backpressure, for comparison).
`python -m bench.memory close PATH N`: N events written and flushed, then close()'s peak RSS above the
RSS before it (its extra memory) and its time: one process per size, so no run inherits another's heap."""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path


def _status_kib(field: str) -> int:
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE).group(1))


def _reset_peak() -> None:
    """Make VmHWM restart from the current RSS (Linux >= 4.0), so each phase gets its own peak."""
    Path("/proc/self/clear_refs").write_text("5")


def main(argv: list[str]) -> dict[str, float | None]:
    path, n = argv[0], int(argv[1])
    max_pending = int(argv[2]) if len(argv) > 2 else None
    from lossfmt import LossWriter

    mib = 1 / 1024
    writer = LossWriter(path, max_pending=max_pending) if max_pending is not None else None
    buf: list[tuple[int, float]] = []
    add = writer.add if writer is not None else (lambda step, value: buf.append((step, value)))
    sys.setswitchinterval(0.05)  # the producer keeps the GIL for long stretches: the flusher falls behind
    _reset_peak()
    baseline = _status_kib("VmRSS")
    t0 = time.perf_counter()
    for i in range(n):
        add(i, i * 1e-7)
    produce_secs = time.perf_counter() - t0
    produce_peak = _status_kib("VmHWM")
    close_peak = None
    if writer is not None:
        writer.flush()
        _reset_peak()
        writer.close()
        close_peak = _status_kib("VmHWM") * mib
    return {
        "baseline_mib": baseline * mib,
        "produce_peak_mib": produce_peak * mib,
        "close_peak_mib": close_peak,
        "produce_secs": produce_secs,
    }


def close_cost(argv: list[str]) -> dict[str, float]:
    path, n = argv[0], int(argv[1])
    from lossfmt import LossWriter

    writer = LossWriter(path)
    add = writer.add
    for i in range(n):
        add(i, i * 1e-7)
    writer.flush()
    _reset_peak()
    before = _status_kib("VmRSS")
    t0 = time.perf_counter()
    writer.close()
    close_secs = time.perf_counter() - t0
    return {
        "before_mib": before / 1024,
        "close_extra_mib": (_status_kib("VmHWM") - before) / 1024,
        "close_secs": close_secs,
        "bytes": Path(path).stat().st_size,
    }


if __name__ == "__main__":
    args = sys.argv[1:]
    result = close_cost(args[1:]) if args[:1] == ["close"] else main(args)
    sys.stdout.write(json.dumps(result) + "\n")
