"""The Python side of the JS conformance tests (spec/js/tests/): `python pyhelper.py COMMAND PATH`, JSON out.

make DIR      files the Python writer makes (lossfmt.LossWriter): closed, live (a real child process killed
              with SIGKILL after its flushes), torn (live cut inside its last record batch), resumed (killed,
              resumed, closed), resumed_live (resumed, then killed: two streams), recompacted (a slow run's
              live file, rewritten by the writer while it ran, then killed), plus pyarrow re-encodings
              of `closed` with LZ4 and uncompressed bodies (without checksums: another tool's copy). Each
              DIR/<name>.json has the logged rows (wall_time as [low, high] microseconds: the writer's clock
              is its own) and whether the file is closed.
read FILE     the rows `lossfmt.read` returns, and how many record batches carry a checksum that
              google-crc32c confirms (an implementation independent of the JS one).
busy FILE     whether lossfmt.LossWriter(FILE) fails because another writer holds the file (WriterBusyError).
hold FILE     opens a lossfmt.LossWriter on FILE, prints "open", and holds it until stdin closes.
extra FILE    a closed lossfmt file whose schema has an eighth column (`note`, a later revision's).
resume FILE   appends ROWS (JSON on stdin, [step, tag, value, count, epoch, reduction]) with a resuming
              lossfmt.LossWriter, closes it, and prints the rows `lossfmt.read` returns then.
"""

from __future__ import annotations

import json
import math
import re
import signal
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa

MAGIC = b"ARROW1\x00\x00"
CHECKSUM_KEY = b"lossfmt.crc32c"

CHILD = """
import json, sys, time
from lossfmt import LossWriter
w = LossWriter(sys.argv[1], flush_secs=3600, meta={"lr": 0.01, "seed": 7, "big": float("inf")})
for flush in json.load(sys.stdin):
    low = time.time_ns() // 1000 - 1
    for step, tag, value, count, epoch, reduction in flush:
        w.add(step, float(value), tag, count=count, epoch=epoch, reduction=reduction)
    high = time.time_ns() // 1000 + 1
    w.flush()
    print(json.dumps([low, high]), flush=True)
if sys.argv[2] == "close":
    w.close()
    print("closed", flush=True)
else:
    time.sleep(3600)  # killed here: the file stays exactly as flushed
"""

FLUSHES = [
    [
        [0, "loss", 2.5, 32, 0, "mean"],
        [0, "val/loss", 2.75, 100, 0, "mean"],
        [1, "loss", 2.25, 32, 0, "mean"],
    ],
    [[2, "loss", "NaN", 32, 0, "mean"], [3, "loss", "Infinity", 16, None, "mean"]],
    [
        [2, "loss", 1.75, 32, 1, "mean"],
        [3, "mse", 12.0, 4, 1, "sum"],
        [4, "loss", "-Infinity", 1, None, "mean"],
    ],
    [[4, "loss", -0.0, 8, 1, "mean"], [5, "acc", 0.5, 8, 1, "mean"]],  # a new tag: a dictionary message first
]
#: A slow training loop (68 events a flush, 4 tags), then a new tag: large enough for the writer to
#: re-compact its live file several times while it runs (the `recompacted` file).
SLOW = [
    [
        [s, tag, 1.0 / (s + 1), 32, s // 500, "mean"]
        for s in range(f * 17, f * 17 + 17)
        for tag in ("train/loss", "train/acc", "train/lr", "train/grad_norm")
    ]
    for f in range(150)
] + [[[2550 + i, "val/loss", 0.5 + i, 8, 5, "sum"]] for i in range(3)]
RESUMED = [
    [[3, "loss", 0.5, 10, 1, "mean"], [3, "sum_loss", 5.5, 10, 1, "sum"]],
    [[4, "loss", 0.25, 10, 1, "mean"]],
]


def _float(v: Any) -> float:
    return float(v) if isinstance(v, str) else v


def _json_value(v: float) -> Any:
    return v if math.isfinite(v) else ("NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity"))


def _write(path: Path, flushes: list[Any], *, close: bool) -> list[list[Any]]:
    """Runs a real writer process over `flushes`; killed with SIGKILL after the last flush unless `close`."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), "close" if close else "kill"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin and proc.stdout
    proc.stdin.write(json.dumps([[[e[0], e[1], _float(e[2]), *e[3:]] for e in f] for f in flushes]))
    proc.stdin.close()
    rows = []
    for flush in flushes:
        low, high = json.loads(proc.stdout.readline())
        rows += [[s, t, v, c, e, [low, high], r] for s, t, v, c, e, r in flush]
    if close:
        assert proc.stdout.readline().strip() == "closed"
        proc.wait(timeout=60)
    else:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    return rows


def _messages(data: bytes) -> list[tuple[int, int, bytes]]:
    """(offset, end, metadata) of each message after the magic, up to EOS or the torn tail."""
    out, at = [], len(MAGIC)
    while at + 8 <= len(data):
        cont, meta_len = struct.unpack_from("<iI", data, at)
        if cont != -1 or meta_len == 0 or at + 8 + meta_len > len(data):
            break
        try:
            msg = pa.ipc.read_message(pa.py_buffer(data[at:]))
        except (OSError, pa.ArrowInvalid):  # the torn tail
            break
        end = at + 8 + meta_len + msg.body.size
        if end > len(data):
            break
        out.append((at, end, data[at + 8 : at + 8 + meta_len]))
        at = end
    return out


def verified_checksums(data: bytes) -> int:
    """How many record batches carry a lossfmt.crc32c that google-crc32c confirms (the span rule of §1.6);
    AssertionError on a mismatch."""
    import google_crc32c

    messages = _messages(data)
    verified, span_start = 0, messages[0][1]
    for offset, end, meta in messages[1:]:
        if pa.ipc.read_message(pa.py_buffer(data[offset:end])).type != "record batch":
            continue
        if struct.pack("<I", len(CHECKSUM_KEY)) + CHECKSUM_KEY + b"\0" in meta:
            # The value: the one flatbuffer string of 8 hex digits in the metadata (length 8, NUL after).
            found = re.findall(rb"(?s)(?=\x08\x00\x00\x00([0-9a-f]{8})\x00)", meta)
            assert len(found) == 1, f"record batch at byte {offset}: {len(found)} candidate checksum values"
            at = offset + 8 + meta.index(b"\x08\x00\x00\x00" + found[0] + b"\0") + 4
            span = data[span_start:at] + b"00000000" + data[at + 8 : end]
            assert google_crc32c.value(span) == int(found[0], 16), f"checksum mismatch at byte {offset}"
            verified += 1
        span_start = end
    return verified


def _rows(table: pa.Table) -> list[list[Any]]:
    cols = ["step", "tag", "value", "count", "epoch", "wall_time", "reduction"]
    wall = table.column("wall_time").cast(pa.int64()).to_pylist()
    out = []
    for i, row in enumerate(table.select(cols).to_pylist()):
        out.append(
            [
                row["step"],
                row["tag"],
                _json_value(row["value"]),
                row["count"],
                row["epoch"],
                wall[i],
                row["reduction"],
            ]
        )
    return out


def make(out: Path) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    made: dict[str, Any] = {}

    def save(name: str, rows: list[Any], closed: bool) -> None:
        made[name] = {"closed": closed, "rows": rows}
        (out / f"{name}.json").write_text(json.dumps(made[name]))

    save("closed", _write(out / "closed.arrow", FLUSHES, close=True), True)
    live = _write(out / "live.arrow", FLUSHES, close=False)
    save("live", live, False)
    data = (out / "live.arrow").read_bytes()
    last_offset, last_end, _ = _messages(data)[-1]
    (out / "torn.arrow").write_bytes(data[: (last_offset + last_end) // 2])
    save("torn", live[: -len(FLUSHES[-1])], False)
    save("recompacted", _write(out / "recompacted.arrow", SLOW, close=False), False)
    batches = [m for m in _messages((out / "recompacted.arrow").read_bytes()) if b"lossfmt.crc32c" in m[2]]
    assert len(batches) < len(SLOW) / 4, "the writer did not re-compact its live file"
    before = _write(out / "resumed.arrow", FLUSHES[:2], close=False)
    (out / "resumed_live.arrow").write_bytes((out / "resumed.arrow").read_bytes())
    save("resumed", before + _write(out / "resumed.arrow", RESUMED, close=True), True)
    save("resumed_live", before + _write(out / "resumed_live.arrow", RESUMED, close=False), False)
    table = pa.ipc.open_file(out / "closed.arrow").read_all()
    # Another tool's copy: pyarrow writes no checksums, so the copy must not promise them (read unverified).
    plain = {
        k: v
        for k, v in table.schema.metadata.items()
        if k not in (b"lossfmt.checksum", b"lossfmt.schema_crc32c")
    }
    table = table.replace_schema_metadata(plain)
    for codec in ("lz4", None):
        name = f"closed_{codec or 'uncompressed'}"
        with pa.ipc.new_file(
            out / f"{name}.arrow", table.schema, options=pa.ipc.IpcWriteOptions(compression=codec)
        ) as w:
            w.write_table(table)
        save(name, made["closed"]["rows"], True)
    _other_tools(out, table, save)
    return {"made": sorted(made)}


def _stream_file(path: Path, schema: pa.Schema, batches: list[pa.RecordBatch], **options: Any) -> bytes:
    """MAGIC + an Arrow IPC stream written by pyarrow (ZSTD): a live file as another tool would write it."""
    sink = pa.BufferOutputStream()
    opts = pa.ipc.IpcWriteOptions(compression="zstd", **options)
    with pa.ipc.new_stream(sink, schema, options=opts) as w:
        for b in batches:
            w.write_batch(b)
    data = MAGIC + sink.getvalue().to_pybytes()  # ends with EOS, no footer
    path.write_bytes(data)
    return data


def _other_tools(out: Path, table: pa.Table, save: Any) -> None:
    """Files pyarrow writes by itself: delta dictionaries, a header-only live file, EOS without a footer,
    minimal metadata (only lossfmt.version)."""
    rows = _rows(table)
    half = 4  # the first four events have two tags, the rest add two more
    first, second = table.slice(0, half), table.slice(half)
    # The second batch's tag dictionary extends the first's: pyarrow writes it as a delta.
    tags: list[str] = []
    batches = []
    for part in (first, second):
        values = part.column("tag").to_pylist()
        tags += [t for t in dict.fromkeys(values) if t not in tags]
        codes = pa.array([tags.index(v) for v in values], pa.int32())
        tag = pa.DictionaryArray.from_arrays(codes, pa.array(tags, pa.string()))
        part = part.combine_chunks().set_column(
            part.schema.get_field_index("tag"), part.schema.field("tag"), tag
        )
        batches.append(part.to_batches()[0])
    _stream_file(out / "delta.arrow", table.schema, batches, emit_dictionary_deltas=True)
    save("delta", rows, False)
    data = _stream_file(out / "eos_no_footer.arrow", table.schema, [table.combine_chunks().to_batches()[0]])
    save("eos_no_footer", rows, False)
    header = data[: _messages(data)[0][1]]
    (out / "header_only.arrow").write_bytes(header)
    save("header_only", [], False)
    minimal = table.replace_schema_metadata({"lossfmt.version": "1"})
    with pa.ipc.new_file(out / "minimal.arrow", minimal.schema) as w:
        w.write_table(minimal)
    save("minimal", rows, True)


def extra_column_file(path: Path) -> list[list[Any]]:
    """A closed file with the v1 columns plus `note` (utf8, nullable), written by pyarrow; its rows."""
    import lossfmt

    tmp = path.with_suffix(".tmp.arrow")
    with lossfmt.LossWriter(tmp, meta={"lr": 0.5}) as w:
        w.add(0, 1.5, "loss", count=2)
        w.add(1, 0.5, "loss", count=2, epoch=0)
    table = pa.ipc.open_file(tmp).read_all()
    tmp.unlink()
    plain = {
        k: v
        for k, v in table.schema.metadata.items()
        if k not in (b"lossfmt.checksum", b"lossfmt.schema_crc32c")
    }
    table = table.append_column("note", pa.array(["a", None], pa.string())).replace_schema_metadata(plain)
    with pa.ipc.new_file(path, table.schema, options=pa.ipc.IpcWriteOptions(compression="zstd")) as w:
        w.write_table(table)
    return _rows(table)


def main(argv: list[str]) -> int:
    import lossfmt

    command, path = argv[0], Path(argv[1])
    if command == "make":
        result = make(path)
    elif command == "read":
        result = {"rows": _rows(lossfmt.read(path)), "verified": verified_checksums(path.read_bytes())}
    elif command == "busy":
        try:
            lossfmt.LossWriter(path).close()
            result = {"busy": False}
        except RuntimeError as exc:  # WriterBusyError (a RuntimeError) once the writer raises it
            result = {"busy": True, "error": type(exc).__name__, "message": str(exc)}
    elif command == "hold":
        with lossfmt.LossWriter(path):
            print("open", flush=True)
            sys.stdin.read()
        result = {"held": True}
    elif command == "extra":
        result = {"rows": extra_column_file(path)}
    elif command == "resume":
        with lossfmt.LossWriter(path) as w:
            for step, tag, value, count, epoch, reduction in json.load(sys.stdin):
                w.add(step, _float(value), tag, count=count, epoch=epoch, reduction=reduction)
        result = {"rows": _rows(lossfmt.read(path))}
    else:
        print(f"pyhelper: unknown command {command!r}", file=sys.stderr)
        return 2
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
