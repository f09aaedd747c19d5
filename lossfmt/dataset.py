"""Many files as one dataset: a directory of runs for pyarrow/DuckDB/Polars, and the rank files of a job.

``dataset("runs/")`` is a ``pyarrow.dataset.Dataset`` over every run file with a ``run`` column, so queries
across hundreds of runs read only the columns and files they need. ``read_ranks`` merges the per-rank files
of distributed runs and ``mean_across`` reduces ranks (or the seeds of a sweep) to a mean with its spread.

Import the helpers from this module (``from lossfmt.dataset import mean_across``): ``lossfmt.dataset`` itself
is the function.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

# Same file discovery and run labels as lossfmt.read, so dataset() and read() name runs alike.
from lossfmt import _sources, schema
from lossfmt._errors import LossFormatError
from lossfmt._sources import expand as _expand
from lossfmt._sources import run_labels as _run_labels
from lossfmt.reader import read, scan

if TYPE_CHECKING:
    import pyarrow.dataset as ds
    import pyarrow.fs as pafs

Source = str | os.PathLike[str] | Iterable[str | os.PathLike[str]]

#: The schema of ``dataset()``: the run name (as ``lossfmt.read`` gives it), then the file columns.
_DATASET_FIELDS: list[pa.Field[Any]] = [pa.field(schema.RUN, pa.string(), nullable=False), *schema.FIELDS]
DATASET_SCHEMA = pa.schema(_DATASET_FIELDS)

_LIVE_POLICIES = ("read", "skip", "error")


def dataset(source: Source, *, live: str = "read") -> ds.Dataset:
    """Every run file of `source` (a directory's ``*.arrow``, a glob, a path or a list) as one dataset.

    Closed files are scanned lazily from disk (Arrow IPC files with a footer); the ``run`` column is the
    run name from each file's metadata, told apart as ``lossfmt.read`` does where files share one. Files
    without a footer (a run still being written, or one that crashed) are not valid Arrow IPC files for
    other tools; `live` says what to do with them: ``"read"`` (default) snapshots their complete events
    through lossfmt's torn-tail-tolerant reader into memory, ``"skip"`` leaves them out, ``"error"`` raises
    ``LossFormatError`` naming the file (close the writer, or compact it, to make it a plain Arrow file).
    """
    # pyarrow.dataset imports pandas when it is installed: keep `import lossfmt` light.
    import pyarrow.dataset as ds

    if live not in _LIVE_POLICIES:
        raise ValueError(f"live must be one of {_LIVE_POLICIES}, not {live!r}")
    paths, _ = _expand(source)
    closed: list[str] = []
    footerless: dict[str, pa.Table] = {}
    runs: dict[str, str] = {}
    for path in paths:
        file_schema = footer_schema(path)
        if file_schema is None:
            if not read_footerless(path, live, "use lossfmt.dataset(..., live='read')"):
                continue
            snapshot = scan(path)
            footerless[path] = snapshot.table
            runs[path] = schema.run_info(snapshot.schema).get("run") or Path(path).stem
            continue
        closed.append(path)
        runs[path] = schema.run_info(file_schema).get("run") or Path(path).stem
    names = dict(zip(runs, _run_labels(list(runs), list(runs.values())), strict=True))
    parts: list[ds.Dataset] = []
    for filesystem, members in _by_filesystem(closed):
        parts.append(
            ds.FileSystemDataset.from_paths(
                [inner for inner, _ in members],
                schema=DATASET_SCHEMA,
                format=ds.IpcFileFormat(),
                filesystem=filesystem,
                partitions=[ds.field(schema.RUN) == names[p] for _, p in members],
            )
        )
    for path, table in footerless.items():
        run = pa.array([names[path]] * table.num_rows, pa.string())
        table = table.select(list(schema.COLUMNS)).replace_schema_metadata(None)
        # pyarrow-stubs give InMemoryDataset no __init__ (it takes the table, as documented)
        table = table.add_column(0, DATASET_SCHEMA.field(schema.RUN), run)
        parts.append(ds.InMemoryDataset(table))  # type: ignore[call-arg]
    if not parts:
        return ds.InMemoryDataset(DATASET_SCHEMA.empty_table())  # type: ignore[call-arg]
    return parts[0] if len(parts) == 1 else ds.dataset(parts)


def read_footerless(path: str, live: str, retry: str) -> bool:
    """What a reader of many runs does with a file that has no footer (a live or crashed run), by the `live`
    policy: True to read it through lossfmt, False to skip it; LossFormatError for "error" (`retry` says how
    to call again with live='read')."""
    if live == "error":
        raise LossFormatError(
            f"{path}: no footer (a live or crashed run); close its writer or compact it first, or {retry}"
        )
    return live != "skip"


def footer_schema(path: str) -> pa.Schema | None:
    """The lossfmt schema of a closed run (read from its footer, without decoding events), or None if the
    file has no footer (a live or crashed run). A local path or a URL; LossFormatError if it is not lossfmt.

    The one test of "closed" shared by dataset(), scan_polars() and export_parquet(): a closed file is what
    other engines (pyarrow, Polars, DuckDB) can read directly.
    """
    try:  # read, never memory-mapped: a writer may be replacing the file
        source = _sources.open_url(path) if _sources.is_url(path) else pa.OSFile(path, "r")
    except FileNotFoundError:
        raise LossFormatError(f"{path}: no such file") from None
    except OSError as exc:
        raise LossFormatError(f"{path}: cannot read ({exc.strerror or exc})") from None
    with source:
        try:
            file_schema = pa.ipc.open_file(source).schema
        except (pa.ArrowInvalid, OSError):
            return None
    schema.check_schema(file_schema, path)
    return file_schema


def _by_filesystem(paths: list[str]) -> list[tuple[pafs.FileSystem, list[tuple[str, str]]]]:
    """`paths` grouped by the filesystem holding them: [(filesystem, [(path inside it, path)])]."""
    import pyarrow.fs as pafs

    groups: dict[int, tuple[pafs.FileSystem, list[tuple[str, str]]]] = {}
    local = pafs.LocalFileSystem()
    for path in paths:
        filesystem, inner = _sources.locate(path) if _sources.is_url(path) else (local, path)
        groups.setdefault(id(filesystem), (filesystem, []))[1].append((inner, path))
    return list(groups.values())


def read_ranks(source: Source, *, tags: Sequence[str] | None = None) -> pa.Table:
    """The events of the rank files in `source`, with the shared ``run`` name and each file's ``rank``.

    ``rank`` comes from the file's metadata (``meta["rank"]``, as written by
    ``lossfmt.integrations.torch_distributed.rank_writer``); files without one get null. Torn tails and live
    files are read as by ``lossfmt.read``.
    """
    tables = []
    for path in _expand(source)[0]:
        table = read(path, tags=tags)
        info = schema.run_info(table.schema)
        n = table.num_rows
        table = table.replace_schema_metadata(None)
        table = table.add_column(0, "rank", pa.array([info["meta"].get("rank")] * n, pa.int64()))
        run = pa.array([info.get("run") or Path(path).stem] * n, pa.string())
        tables.append(table.add_column(0, pa.field(schema.RUN, pa.string(), nullable=False), run))
    return pa.concat_tables(tables, promote_options="permissive").unify_dictionaries()


def mean_across(table: pa.Table, over: str = "rank") -> pa.Table:
    """Mean and spread of ``value`` across ranks (``over="rank"``) or runs (``over="run"``) per tag and step.

    Groups by ``run`` (unless it is what is averaged), ``tag`` and ``step``. Columns: [run], tag, step,
    value (mean of the members' values), min, max, std (population), n (members at that step), count (sum of
    the members' counts), epoch (the largest), wall_time (the latest); sorted by [run], tag, step. A
    non-finite member value makes that step's mean non-finite, so a diverged rank or seed stays visible.
    """
    if over not in table.column_names:
        raise ValueError(f"mean_across: the table has no {over!r} column to average over")
    keys = [k for k in (schema.RUN, schema.TAG, schema.STEP) if k != over and k in table.column_names]
    if schema.TAG in keys and pa.types.is_dictionary(table.schema.field(schema.TAG).type):
        table = table.set_column(
            table.schema.get_field_index(schema.TAG), schema.TAG, table[schema.TAG].cast(pa.string())
        )
    grouped = table.group_by(keys, use_threads=False).aggregate(
        [
            (schema.VALUE, "mean"),
            (schema.VALUE, "min"),
            (schema.VALUE, "max"),
            (schema.VALUE, "stddev"),
            (schema.VALUE, "count"),
            (schema.COUNT, "sum"),
            (schema.EPOCH, "max"),
            (schema.WALL_TIME, "max"),
        ]
    )
    grouped = grouped.rename_columns(
        {
            "value_mean": schema.VALUE,
            "value_min": "min",
            "value_max": "max",
            "value_stddev": "std",
            "value_count": "n",
            "count_sum": schema.COUNT,
            "epoch_max": schema.EPOCH,
            "wall_time_max": schema.WALL_TIME,
        }
    )
    order = [*keys, schema.VALUE, "min", "max", "std", "n", schema.COUNT, schema.EPOCH, schema.WALL_TIME]
    return grouped.select(order).sort_by([(k, "ascending") for k in keys])
