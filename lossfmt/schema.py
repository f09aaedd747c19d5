"""The columns, types and metadata keys of lossfmt format v1: the one place they are named."""

from __future__ import annotations

import json
import math
import os
import socket
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa

from lossfmt._errors import LossFormatError as LossFormatError  # re-exported: s.LossFormatError
from lossfmt._errors import NoSuchFileError as NoSuchFileError

FORMAT_VERSION = 1

#: An Arrow IPC file starts with these 8 bytes ("ARROW1" padded to 8); the stream follows.
MAGIC = b"ARROW1\x00\x00"
#: A closed file ends with these 6 bytes, after the footer and its 4-byte length.
TRAILING_MAGIC = b"ARROW1"
#: The Arrow IPC end-of-stream marker: written only by a closed file, just before the footer.
EOS = b"\xff\xff\xff\xff\x00\x00\x00\x00"

STEP = "step"
TAG = "tag"
VALUE = "value"
COUNT = "count"
EPOCH = "epoch"
WALL_TIME = "wall_time"
REDUCTION = "reduction"
#: Added by readers when several files are read together; never stored in a file.
RUN = "run"

DEFAULT_TAG = "loss"
MEAN = "mean"
SUM = "sum"
REDUCTIONS = (MEAN, SUM)

TAG_TYPE = pa.dictionary(pa.int32(), pa.string())
REDUCTION_TYPE = pa.dictionary(pa.int8(), pa.string())
WALL_TIME_TYPE = pa.timestamp("us", tz="UTC")

FIELDS = (
    pa.field(STEP, pa.int64(), nullable=False),
    pa.field(TAG, TAG_TYPE, nullable=False),
    pa.field(VALUE, pa.float64(), nullable=False),
    pa.field(COUNT, pa.int64(), nullable=False),
    pa.field(EPOCH, pa.int64(), nullable=True),
    pa.field(WALL_TIME, WALL_TIME_TYPE, nullable=False),
    pa.field(REDUCTION, REDUCTION_TYPE, nullable=False),
)
COLUMNS = tuple(f.name for f in FIELDS)

# Schema metadata keys (Arrow stores keys and values as UTF-8 bytes).
KEY_VERSION = "lossfmt.version"
KEY_RUN = "lossfmt.run"
KEY_RUN_ID = "lossfmt.run_id"
KEY_CREATED = "lossfmt.created"
KEY_HOST = "lossfmt.host"
KEY_PID = "lossfmt.pid"
KEY_META = "lossfmt.meta"

#: Schema metadata key declaring that every record batch message carries a CRC-32C (spec/FORMAT.md §1.6).
KEY_CHECKSUM = "lossfmt.checksum"

#: Schema metadata key holding the CRC-32C of the schema message itself (spec/FORMAT.md §1.6).
KEY_SCHEMA_CHECKSUM = "lossfmt.schema_crc32c"

#: Compression of every record batch, live or compacted: small files, read by pandas/Polars/DuckDB.
COMPRESSION = "zstd"


#: How `lossfmt.meta` spells a non-finite float in RFC 8259 JSON (spec/FORMAT.md §3): {"$float": "NaN"}.
FLOAT_TAG = "$float"
_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _tag_floats(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return {FLOAT_TAG: "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")}
    if isinstance(value, dict):
        return {k: _tag_floats(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_tag_floats(v) for v in value]
    return value


def spells_float(obj: dict[str, Any]) -> bool:
    """Whether `obj` is how `lossfmt.meta` spells a non-finite float (so a reader turns it into one)."""
    return len(obj) == 1 and obj.get(FLOAT_TAG) in _NON_FINITE


def _untag_float(obj: dict[str, Any]) -> Any:
    return _NON_FINITE[obj[FLOAT_TAG]] if spells_float(obj) else obj


def encode_meta(meta: dict[str, Any]) -> str:
    """The user's metadata as the RFC 8259 JSON text of `lossfmt.meta` (non-finite floats tagged, §3)."""
    return json.dumps(_tag_floats(meta), sort_keys=True, allow_nan=False, default=str)


def decode_meta(text: str) -> Any:
    """`lossfmt.meta` back to Python: tagged floats restored; the NaN/Infinity tokens of older files read."""
    return json.loads(text, object_hook=_untag_float)


def make_schema(run: str, meta: dict[str, Any] | None = None) -> pa.Schema:
    """Return the v1 schema with fresh run metadata (new run id, creation time, host, pid)."""
    try:
        meta_json = encode_meta(meta or {})
    except (TypeError, ValueError) as exc:
        raise TypeError(f"meta must be JSON-serializable: {exc}") from None
    metadata: dict[bytes | str, bytes | str] = {
        KEY_VERSION: str(FORMAT_VERSION),
        KEY_RUN: run,
        KEY_RUN_ID: uuid.uuid4().hex,
        KEY_CREATED: datetime.now(timezone.utc).isoformat(timespec="microseconds"),
        KEY_HOST: socket.gethostname(),
        KEY_PID: str(os.getpid()),
        KEY_META: meta_json,
        KEY_CHECKSUM: "crc32c",
        KEY_SCHEMA_CHECKSUM: "00000000",  # filled in by _framing.Sealer when the header is written
    }
    return pa.schema(FIELDS, metadata=metadata)


def run_info(schema: pa.Schema | str | os.PathLike[str]) -> dict[str, Any]:
    """Decode a file's schema metadata into a dict; `meta` holds the user's metadata. Takes the schema
    (``lossfmt.read(path).schema``) or the file's path itself: then a missing or empty run name is the file
    name without ``.arrow`` (spec §3), as every reader shows it."""
    if isinstance(schema, (str, os.PathLike)):
        from lossfmt._read import read  # (it builds on this module)

        stem = Path(os.fspath(schema)).stem
        decoded = run_info(read(schema, columns=[REDUCTION]).schema)  # decodes one small column
        return {**decoded, "run": decoded.get("run") or stem}
    if not isinstance(schema, pa.Schema):
        raise TypeError(f"run_info takes a file's path or its pyarrow Schema, not {type(schema).__name__}")
    raw = {k.decode(): v.decode() for k, v in (schema.metadata or {}).items()}
    info: dict[str, Any] = {
        k.removeprefix("lossfmt."): v
        for k, v in raw.items()
        if k.startswith("lossfmt.") and k != KEY_SCHEMA_CHECKSUM  # framing, not run information
    }
    for key in ("run", "run_id", "created", "host"):
        if info.get(key) == "":  # present but empty: read as missing (spec §3)
            del info[key]
    info["meta"] = decode_meta(info.get("meta") or "{}")  # (an empty value is none: spec §3)
    if "pid" in info:  # informational: a malformed one is as good as none (spec §3)
        pid = info.pop("pid")
        if pid.isdecimal():
            info["pid"] = int(pid)
    if "version" in info:
        info["version"] = int(info["version"])
    return info


def check_schema(schema: pa.Schema, path: str | os.PathLike[str]) -> None:
    """Raise LossFormatError unless `schema` is a lossfmt v1 schema (columns once each, types, version, and
    metadata `run_info` decodes)."""
    version = (schema.metadata or {}).get(KEY_VERSION.encode())
    if version is None:
        raise LossFormatError(f"{os.fspath(path)}: not a lossfmt file (Arrow file without lossfmt metadata)")
    if version != str(FORMAT_VERSION).encode():
        raise LossFormatError(
            f"{os.fspath(path)}: lossfmt format version {version.decode(errors='replace')} is not supported "
            f"(this lossfmt reads version {FORMAT_VERSION}); upgrade lossfmt"
        )
    for field in FIELDS:
        idx = schema.get_field_index(field.name)
        if idx < 0:
            there = len(schema.get_all_field_indices(field.name))
            raise LossFormatError(
                f"{os.fspath(path)}: column {field.name!r} is "
                + (f"there {there} times (column names are unique)" if there else "missing")
            )
        if not _same_type(schema.field(idx).type, field.type):
            raise LossFormatError(
                f"{os.fspath(path)}: column {field.name!r} has type {schema.field(idx).type}, "
                f"expected {field.type}"
            )
    try:
        run_info(schema)
    except (UnicodeDecodeError, ValueError, TypeError) as exc:
        raise LossFormatError(f"{os.fspath(path)}: corrupt lossfmt metadata ({exc})") from None


def _same_type(got: pa.DataType, expected: pa.DataType) -> bool:
    """Types equal, except that a dictionary's `ordered` flag is not meaningful (spec/FORMAT.md §1.1)."""
    if pa.types.is_dictionary(got) and pa.types.is_dictionary(expected):
        return bool(got.index_type == expected.index_type and got.value_type == expected.value_type)
    return bool(got == expected)
