"""The columns, types and metadata keys of lossfmt format v1: the one place they are named."""

from __future__ import annotations

import json
import os
import socket
import uuid
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa

from lossfmt._errors import LossFormatError

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


def make_schema(run: str, meta: dict[str, Any] | None = None) -> pa.Schema:
    """Return the v1 schema with fresh run metadata (new run id, creation time, host, pid)."""
    try:
        meta_json = json.dumps(meta or {}, sort_keys=True, allow_nan=True, default=str)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"meta must be JSON-serializable: {exc}") from None
    metadata = {
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


def run_info(schema: pa.Schema) -> dict[str, Any]:
    """Decode a file's schema metadata into a dict; `meta` holds the user's metadata."""
    raw = {k.decode(): v.decode() for k, v in (schema.metadata or {}).items()}
    info: dict[str, Any] = {
        k.removeprefix("lossfmt."): v
        for k, v in raw.items()
        if k.startswith("lossfmt.") and k != KEY_SCHEMA_CHECKSUM  # framing, not run information
    }
    info["meta"] = json.loads(info.get("meta") or "{}")
    if "pid" in info:
        info["pid"] = int(info["pid"])
    if "version" in info:
        info["version"] = int(info["version"])
    return info


def check_schema(schema: pa.Schema, path: str | os.PathLike[str]) -> None:
    """Raise LossFormatError unless `schema` is a lossfmt v1 schema (columns, types, version)."""
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
            raise LossFormatError(f"{os.fspath(path)}: column {field.name!r} is missing")
        if schema.field(idx).type != field.type:
            raise LossFormatError(
                f"{os.fspath(path)}: column {field.name!r} has type {schema.field(idx).type}, "
                f"expected {field.type}"
            )
