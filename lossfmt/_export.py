"""Parquet export: runs as Parquet files that DuckDB, Spark, Trino, BigQuery and Polars read without lossfmt.

Every event becomes one row with its run's name (``run``, as ``lossfmt.read`` labels it), its ``run_id`` and
its run metadata (hparams) as columns. The output is one ``.parquet`` file, or a directory of one file per
run (``OUT/run-<name>.parquet``) that later exports update incrementally: a manifest
(``OUT/_lossfmt_export.parquet``: each source's size, mtime and run metadata) says which runs are new or
changed, and only those are rewritten. Live and crashed runs are exported with their complete events and
rewritten once they grow or close. Not Hive-partitioned (``run=<name>/``): pyarrow, so pandas, types such a
partition from the names (a dictionary, or int32 for ``007``), which no ``run`` column in the files (the one
DuckDB and Polars read) matches in every mode.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote

import pyarrow as pa

from lossfmt import _sources
from lossfmt import schema as s
from lossfmt._errors import LossFormatError
from lossfmt.dataset import footer_schema, read_footerless
from lossfmt.reader import read

__all__ = ["ExportSummary", "export_parquet", "hparams"]

#: The manifest of a directory export: a Parquet file of no rows in the export's schema, the manifest's JSON
#: in its key-value metadata. pyarrow, Spark and Hive skip it (the leading underscore); Polars, which wants
#: every file of a directory to be Parquet, and DuckDB's glob read it as no rows.
MANIFEST = "_lossfmt_export.parquet"
#: The JSON manifest of exports made before it: read, so those update (the next export replaces it).
_OLD_MANIFEST = "_lossfmt_export.json"
_MANIFEST_KEY = b"lossfmt.export.manifest"
#: Parquet key-value metadata marking a file this module wrote (so it may be replaced by a later export).
_MARK = b"lossfmt.export"
_MANIFEST_VERSION = 1
_LIVE_POLICIES = ("read", "skip", "error")
#: Columns every exported row has; hparams named like one of them (in any case) get a "meta." prefix.
_EVENT_COLUMNS = (s.RUN, "run_id", *s.COLUMNS)
#: The least integer that float() rounds to infinity (OverflowError): larger ones are exported as JSON text.
_DOUBLE_LIMIT = 2**1024 - 2**970
_HPARAM_TYPES: dict[str, pa.DataType] = {
    "bool": pa.bool_(),
    "number": pa.float64(),
    "string": pa.string(),
    "json": pa.string(),
}


class ExportSummary(NamedTuple):
    """What one `export_parquet` call did."""

    runs: int
    """Runs in the export."""
    written: int
    """Runs (re)written by this call: new or changed ones (all of them for a single file)."""
    removed: int
    """Runs dropped from a directory export because their file is no longer in the source."""
    rows: int
    """Events written by this call."""


@dataclass
class _Run:
    source: str  # path or URL
    stamp: tuple[int, int]  # (size, mtime_ns): a change means the run must be exported again
    name: str  # the run name stored in the file (or its stem)
    run_id: str
    meta: dict[str, Any]
    label: str = ""  # the run column, told apart from runs sharing the name


def export_parquet(
    source: _sources.Source, out: str | os.PathLike[str], *, live: str = "read"
) -> ExportSummary:
    """Export the runs of `source` (a file, directory, glob, URL or list, as `lossfmt.read` takes) to Parquet.

    `out` ending in ``.parquet`` is one file, rewritten whole (atomically). Otherwise `out` is a directory
    (created if missing, or one a previous export made) holding ``run-<name>.parquet`` per run;
    exporting again rewrites only runs that are new, changed or renamed, removes runs no longer in `source`,
    and rewrites everything only when the set of hparam columns changes (so every file has one schema).
    Columns: run, run_id, step, tag, value, count, epoch, wall_time (UTC), reduction, then one per top-level
    key of the run metadata: JSON booleans as BOOLEAN, numbers as DOUBLE, strings as VARCHAR, anything
    else (an integer beyond DOUBLE's range, or a key whose kind differs between runs) as JSON text; a key
    named like another column, ignoring case as DuckDB and Spark do, is renamed (`meta.step`, `lr_1`).
    `live`: ``"read"`` exports a live or crashed run's complete events, ``"skip"`` leaves such runs out,
    ``"error"`` raises LossFormatError.
    Never replaces a file or fills a directory that an export did not make (FileExistsError).
    """
    if live not in _LIVE_POLICIES:
        raise ValueError(f"live must be one of {_LIVE_POLICIES}, not {live!r}")
    out = Path(out)
    single = out.suffix.lower() == ".parquet"
    _check_target(out, single)
    manifest = {} if single else _load_manifest(out)
    runs = _runs(_sources.expand(source)[0], manifest.get("runs", {}), live, "export with live='read'")
    columns = _hparam_columns(runs)
    if single:
        return _export_file(runs, columns, out)
    return _export_directory(runs, columns, out, manifest)


def hparams(source: _sources.Source, *, live: str = "read") -> pa.Table:
    """One row per run of `source` (as `lossfmt.read` takes it): ``run`` (named as ``lossfmt.dataset()`` and
    ``read()`` name it, so the two join), ``run_id``, ``path``, then one column per top-level key of the run
    metadata, typed as `export_parquet` types them: the table of a sweep's settings to join its queries
    to. A closed file's footer is all it reads (a live or crashed one is read through lossfmt's reader);
    `live`: as in `export_parquet` (by default such runs are listed)."""
    if live not in _LIVE_POLICIES:
        raise ValueError(f"live must be one of {_LIVE_POLICIES}, not {live!r}")
    runs = _runs(_sources.expand(source)[0], {}, live, "call lossfmt.hparams(..., live='read')")
    columns = _hparam_columns(runs)
    names = _column_names(columns, (*_EVENT_COLUMNS, "path"))
    table = pa.table(
        {
            s.RUN: pa.array([r.label for r in runs], pa.string()),
            "run_id": pa.array([r.run_id or None for r in runs], pa.string()),
            "path": pa.array([_sources.shown(r.source) for r in runs], pa.string()),
        }
    )
    for key, kind in columns.items():
        values = [_hparam_value(r.meta.get(key), kind) for r in runs]
        table = table.append_column(names[key], pa.array(values, _HPARAM_TYPES[kind]))
    return table


def _check_target(out: Path, single: bool) -> None:
    """Refuse to overwrite or fill anything an export did not make."""
    if single:
        if out.is_dir():
            raise FileExistsError(f"{out}: is a directory; give a path ending in .parquet or a directory")
        if out.exists() and not _is_export(out):
            raise FileExistsError(f"{out}: exists and was not written by lossfmt's export; remove it first")
        if not out.parent.is_dir():
            raise FileNotFoundError(f"{out.parent}: no such directory")
        return
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out}: exists and is not a directory (a single file must end in .parquet)")
    marked = (out / MANIFEST).is_file() or (out / _OLD_MANIFEST).is_file()
    if out.is_dir() and any(out.iterdir()) and not marked:
        raise FileExistsError(
            f"{out}: directory is not empty and holds no {MANIFEST}; export into a new or empty directory"
        )


def _is_export(path: Path) -> bool:
    import pyarrow.parquet as pq

    try:
        return _MARK in (pq.read_schema(path).metadata or {})
    except (pa.ArrowException, OSError):
        return False


def _load_manifest(out: Path) -> dict[str, Any]:
    import pyarrow.parquet as pq

    path = out / MANIFEST
    try:
        if path.is_file():
            text = (pq.read_schema(path).metadata or {}).get(_MANIFEST_KEY, b"").decode()
        elif (out / _OLD_MANIFEST).is_file():
            path = out / _OLD_MANIFEST
            text = path.read_text()
        else:
            return {}
        manifest = s.decode_meta(text)  # JSON, non-finite hparams tagged
        if not isinstance(manifest, dict) or manifest.get("version") != _MANIFEST_VERSION:
            raise ValueError("not a version 1 manifest")
    except (ValueError, pa.ArrowException) as exc:
        raise LossFormatError(
            f"{path}: unreadable export manifest ({exc}); remove the directory to export afresh"
        ) from None
    return manifest


def _stamp(path: str) -> tuple[int, int]:
    if _sources.is_url(path):
        return _sources.stat_url(path)
    try:
        st = os.stat(path)
    except OSError as exc:
        raise LossFormatError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return st.st_size, st.st_mtime_ns


def _runs(paths: list[str], known: Mapping[str, Any], live: str, retry: str) -> list[_Run]:
    """Each source's identity; metadata comes from the manifest for unchanged sources, else from the file.
    `retry`: how the caller calls again to read live runs (for live='error')."""
    runs = []
    for path in paths:
        stamp = _stamp(path)
        entry = known.get(_key(path))
        if entry is not None and tuple(entry["stamp"]) == stamp:
            runs.append(_Run(path, stamp, entry["name"], entry["run_id"], entry["meta"]))
            continue
        file_schema = footer_schema(path)
        if file_schema is None:
            if not read_footerless(path, live, retry):
                continue
            file_schema = read(path, columns=[s.REDUCTION]).schema  # decodes only a one-byte column
        info = s.run_info(file_schema)
        name = info.get("run") or Path(_sources._local_form(path)).stem
        runs.append(_Run(path, stamp, name, info.get("run_id", ""), info["meta"]))
    labels = _sources.run_labels([r.source for r in runs], [r.name for r in runs])
    for run, label in zip(runs, labels, strict=True):
        run.label = label
    return runs


def _key(path: str) -> str:
    """A source's key in the manifest: its URL, or its absolute path (the same from any directory)."""
    return path if _sources.is_url(path) else os.path.abspath(path)


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, float) or (isinstance(value, int) and abs(value) < _DOUBLE_LIMIT):
        return "number"
    if isinstance(value, str):
        return "string"
    return "json"


def _hparam_columns(runs: Iterable[_Run]) -> dict[str, str]:
    """Top-level metadata key -> its kind: the one a key has in every run that sets it (nulls aside), or
    json. A key is a column even if only one run has it (the others get nulls)."""
    kinds: dict[str, set[str]] = {}
    for run in runs:
        for key, value in run.meta.items():
            kinds.setdefault(key, set())
            if value is not None:
                kinds[key].add(_kind(value))
    return {key: next(iter(k)) if len(k) == 1 else "json" for key, k in sorted(kinds.items())}


def _column_names(keys: Iterable[str], reserved: Iterable[str]) -> dict[str, str]:
    """Each hparam key's column, distinct from `reserved` and from each other as DuckDB, Spark and BigQuery
    compare names (ignoring case): ``meta.<key>`` for a key named like a reserved column or starting with
    ``meta.``; then ``_1``, ``_2``... on a name an earlier key (in sorted order) took."""
    reserved = {name.casefold() for name in reserved}
    taken = set(reserved)
    names = {}
    for key in sorted(keys):
        folded = key.casefold()
        base = f"meta.{key}" if folded in reserved or folded.startswith("meta.") else key
        name, n = base, 0
        while name.casefold() in taken:
            n += 1
            name = f"{base}_{n}"
        taken.add(name.casefold())
        names[key] = name
    return names


def _output_schema(columns: Mapping[str, str]) -> pa.Schema:
    names = _column_names(columns, _EVENT_COLUMNS)
    fields = [
        pa.field(s.RUN, pa.string(), nullable=False),
        pa.field("run_id", pa.string()),
        *(pa.field(f.name, pa.string() if pa.types.is_dictionary(f.type) else f.type) for f in s.FIELDS),
        *(pa.field(names[key], _HPARAM_TYPES[kind]) for key, kind in columns.items()),
    ]
    return pa.schema(fields, metadata={_MARK: b"1"})


def _hparam_value(value: Any, kind: str) -> Any:
    if value is None:
        return None
    if kind == "json":
        # strict JSON, non-finite floats spelt as in `lossfmt.meta` (spec §3): DuckDB's json() parses it
        return json.dumps(s._tag_floats(value), sort_keys=True, allow_nan=False, default=str)
    if kind == "number":
        return float(value)
    return value


def _run_table(run: _Run, columns: Mapping[str, str], out_schema: pa.Schema) -> pa.Table:
    """The rows of one run in the export schema (the run read in full, through lossfmt's reader)."""
    events = read(run.source)
    n = events.num_rows
    arrays: list[pa.Array[Any] | pa.ChunkedArray[Any]] = [
        pa.repeat(pa.scalar(run.label, pa.string()), n) if n else pa.array([], pa.string()),
        pa.repeat(pa.scalar(run.run_id, pa.string()), n) if n else pa.array([], pa.string()),
    ]
    for field in s.FIELDS:
        column = events.column(field.name)
        arrays.append(column.cast(pa.string()) if pa.types.is_dictionary(field.type) else column)
    for key, kind in columns.items():
        value = _hparam_value(run.meta.get(key), kind)
        if value is None:  # pyarrow-stubs overload pa.nulls per concrete type, with no plain-DataType one
            arrays.append(pa.nulls(n, _HPARAM_TYPES[kind]))  # type: ignore[call-overload]
        else:
            arrays.append(pa.repeat(value, n))
    return pa.Table.from_arrays(arrays, schema=out_schema)


def _write(
    table_or_tables: Iterable[pa.Table], out_schema: pa.Schema, path: Path, durable: bool = False
) -> int:
    """Write tables (one row group per run at least) to `path` atomically (a temporary file, then rename);
    `durable`: on disk before the rename."""
    import pyarrow.parquet as pq

    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    rows = 0
    try:
        with pq.ParquetWriter(tmp, out_schema, compression="zstd") as writer:
            for table in table_or_tables:
                writer.write_table(table, row_group_size=1 << 20)
                rows += table.num_rows
        if durable:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return rows


def _export_file(runs: list[_Run], columns: Mapping[str, str], out: Path) -> ExportSummary:
    out_schema = _output_schema(columns)
    rows = _write((_run_table(run, columns, out_schema) for run in runs), out_schema, out)
    return ExportSummary(len(runs), len(runs), 0, rows)


def _part(label: str) -> str:
    """The file of a run in a directory export: every character of its name that is not unreserved is
    %-escaped, so a name with "/" stays one file, and one with "=" is no Hive partition; the prefix keeps a
    name starting with "." or "_" from being a file engines skip."""
    return f"{s.RUN}-{quote(label, safe='')}.parquet"


def _export_directory(
    runs: list[_Run], columns: dict[str, str], out: Path, manifest: Mapping[str, Any]
) -> ExportSummary:
    out.mkdir(parents=True, exist_ok=True)
    out_schema = _output_schema(columns)
    old: dict[str, Any] = dict(manifest.get("runs", {}))
    same_columns = manifest.get("columns") == columns
    entries: dict[str, Any] = {}
    written = rows = 0
    for run in runs:
        part = _part(run.label)
        entry = old.get(_key(run.source))
        fresh = (
            same_columns
            and entry is not None
            and tuple(entry["stamp"]) == run.stamp
            and entry["file"] == part
            and (out / part).is_file()
        )
        if not fresh:
            rows += _write([_run_table(run, columns, out_schema)], out_schema, out / part)
            written += 1
        entries[_key(run.source)] = {
            "stamp": list(run.stamp),
            "name": run.name,
            "run_id": run.run_id,
            "meta": run.meta,
            "file": part,
        }
    keep = {e["file"] for e in entries.values()}
    stale = {e["file"] for e in old.values()} - keep
    for part in stale:
        _remove_part(out, part)
    _write_manifest(out, out_schema, {"version": _MANIFEST_VERSION, "columns": columns, "runs": entries})
    removed = sum(1 for src in old if src not in entries)
    return ExportSummary(len(runs), written, removed, rows)


def _remove_part(out: Path, part: str) -> None:
    """Remove a run's file this export wrote, and its directory once empty (an old export's run=<name>)."""
    with contextlib.suppress(FileNotFoundError):
        (out / part).unlink()
    with contextlib.suppress(OSError):  # not empty (`out` itself holds the manifest): leave it
        (out / part).parent.rmdir()


def _write_manifest(out: Path, out_schema: pa.Schema, manifest: Mapping[str, Any]) -> None:
    """Replace the manifest atomically and durably: it is what marks the directory as an export."""
    # Strict JSON (jq, DuckDB, JSON.parse reject a bare NaN): a non-finite hparam is spelt as in the file's
    # own `lossfmt.meta`, {"$float": "NaN"} (spec/FORMAT.md §3), and read back as the float.
    text = s.encode_meta(dict(manifest))
    schema = out_schema.with_metadata({**(out_schema.metadata or {}), _MANIFEST_KEY: text.encode()})
    _write([], schema, out / MANIFEST, durable=True)
    with contextlib.suppress(FileNotFoundError):
        (out / _OLD_MANIFEST).unlink()  # an older export's, now replaced
