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
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import numpy as np
import pyarrow as pa

# Same file discovery and run labels as lossfmt.read, so dataset() and read() name runs alike.
from lossfmt import _arrow, _framing, _sources, schema, transforms
from lossfmt._errors import LossFormatError, NoSuchFileError
from lossfmt._sources import expand as _expand
from lossfmt._sources import run_labels as _run_labels
from lossfmt.reader import read, scan

if TYPE_CHECKING:
    import pyarrow.dataset as ds

Source = str | os.PathLike[str] | Iterable[str | os.PathLike[str]]

#: The schema of ``dataset()``: the run name (as ``lossfmt.read`` gives it, a string), then the file columns.
_DATASET_FIELDS: list[pa.Field[Any]] = [pa.field(schema.RUN, pa.string(), nullable=False), *schema.FIELDS]
DATASET_SCHEMA = pa.schema(_DATASET_FIELDS)

_LIVE_POLICIES = ("read", "skip", "error")
_VERSION, _V1 = schema.KEY_VERSION.encode(), str(schema.FORMAT_VERSION).encode()

#: A closed local file up to this size is read whole once by dataset(): its bytes give the footer and serve
#: every scan. pyarrow's scan of a file on disk opens it again and reads its footer and each buffer through
#: its I/O threads, a fixed cost that outweighs reading such a file (a 10,000-event run is 100 kB).
HOLD_FILE_BYTES = 1 << 20
#: At most this many bytes of such files are held by one dataset; the rest are scanned lazily from disk.
HOLD_TOTAL_BYTES = 256 << 20


class _Closed(NamedTuple):
    """A closed file as dataset() found it: its schema, and its bytes where it is held in memory."""

    schema: pa.Schema
    data: pa.Buffer | None


def dataset(source: Source, *, live: str = "read", verify: bool = True) -> ds.Dataset:
    """Every run file of `source` (a directory's ``*.arrow``, a glob, a path or a list) as one dataset.

    The ``run`` column is the run name from each file's metadata, told apart as ``lossfmt.read`` does where
    files share one. Closed
    files are plain Arrow IPC files: small local ones (up to HOLD_FILE_BYTES each, HOLD_TOTAL_BYTES in all)
    are read once now and scanned from memory, the others lazily from disk. Files without a footer (a run
    still being written, or one that crashed) are not valid Arrow IPC files for other tools; `live` says
    what to do with them: ``"read"`` (default) snapshots their complete events through lossfmt's
    torn-tail-tolerant reader into memory, ``"skip"`` leaves them out, ``"error"`` raises
    ``LossFormatError`` naming the file (close the writer, or compact it, to make it a plain Arrow file).

    pyarrow's scan does not know lossfmt's checksums: with `verify` (the default) every file is read once now
    and its checksums checked, so a damaged byte is a LossFormatError here, never a different loss in a
    query. ``verify=False`` skips that read (for large sweeps of trusted files): damage may then read as data.
    """
    # pyarrow.dataset imports pandas when it is installed: keep `import lossfmt` light.
    import pyarrow.dataset as ds

    if live not in _LIVE_POLICIES:
        raise ValueError(f"live must be one of {_LIVE_POLICIES}, not {live!r}")
    if not isinstance(verify, bool):  # a truthy "no" must not mean True
        raise TypeError(f"verify must be True or False, not {verify!r}")
    paths, _ = _expand(source)
    closed: dict[str, _Closed] = {}
    footerless: dict[str, pa.Table] = {}
    runs: dict[str, str] = {}
    budget = HOLD_TOTAL_BYTES
    checked: pa.Schema | None = None
    for path in paths:
        found = _closed_file(path, budget, verify)
        if found is None:
            if not read_footerless(path, live, "use lossfmt.dataset(..., live='read')"):
                continue
            snapshot = scan(path, verify=verify)
            footerless[path] = snapshot.table
            runs[path] = _run_name(snapshot.schema, path)
            continue
        # A sweep's files share their columns: check them once, and every file's format version.
        same = checked is not None and found.schema.equals(checked, check_metadata=False)
        if not same or (found.schema.metadata or {}).get(_VERSION) != _V1:
            schema.check_schema(found.schema, path)
            checked = found.schema
        budget -= 0 if found.data is None else found.data.size
        closed[path] = found
        runs[path] = _run_name(found.schema, path)
    labels = dict(zip(runs, _run_labels(list(runs), list(runs.values())), strict=True))
    parts: list[ds.Dataset] = [*_files_datasets(closed, labels)]
    for path, table in footerless.items():
        run = pa.DictionaryArray.from_arrays(
            _arrow.array(np.zeros(table.num_rows, np.int32)), _arrow.strings([labels[path]])
        ).cast(pa.string())
        table = table.select(list(schema.COLUMNS)).replace_schema_metadata(None)
        # pyarrow-stubs give InMemoryDataset no __init__ (it takes the table, as documented)
        table = table.add_column(0, DATASET_SCHEMA.field(schema.RUN), run)
        parts.append(ds.InMemoryDataset(table))  # type: ignore[call-arg]
    if not parts:
        return ds.InMemoryDataset(DATASET_SCHEMA.empty_table())  # type: ignore[call-arg]
    return parts[0] if len(parts) == 1 else ds.dataset(parts)


def _files_datasets(closed: dict[str, _Closed], labels: dict[str, str]) -> list[ds.FileSystemDataset]:
    """The closed files as datasets, one per filesystem (local files first, held ones scanned from their
    bytes), each file with the partition expression that gives its ``run``."""
    import pyarrow.dataset as ds
    import pyarrow.fs as pafs

    ipc = ds.IpcFileFormat()
    run = ds.field(schema.RUN)
    local = pafs.LocalFileSystem()
    groups: dict[int, tuple[pafs.FileSystem, list[ds.Fragment]]] = {id(local): (local, [])}
    for path, found in closed.items():
        where = run == labels[path]
        if found.data is not None:  # (pyarrow-stubs omit the Buffer that make_fragment documents)
            fragment = ipc.make_fragment(found.data, partition_expression=where)  # type: ignore[arg-type]
            groups[id(local)][1].append(fragment)
            continue
        filesystem, inner = _sources.locate(path) if _sources.is_url(path) else (local, path)
        group = groups.setdefault(id(filesystem), (filesystem, []))[1]
        group.append(ipc.make_fragment(inner, filesystem=filesystem, partition_expression=where))
    return [
        ds.FileSystemDataset(fragments, schema=DATASET_SCHEMA, format=ipc, filesystem=filesystem)
        for filesystem, fragments in groups.values()
        if fragments
    ]


def _run_name(file_schema: pa.Schema, path: str) -> str:
    """The run name stored in a file's metadata (as ``schema.run_info`` gives it), or the file's stem."""
    stored = (file_schema.metadata or {}).get(schema.KEY_RUN.encode())
    try:
        return stored.decode() if stored else Path(path).stem
    except UnicodeDecodeError:
        raise LossFormatError(f"{path}: corrupt lossfmt metadata (the run name is not UTF-8)") from None


def read_footerless(path: str, live: str, retry: str) -> bool:
    """What a reader of many runs does with a file that has no footer (a live or crashed run), by the `live`
    policy: True to read it through lossfmt, False to skip it; LossFormatError for "error" (`retry` says how
    to call again with live='read')."""
    if live == "error":
        raise LossFormatError(
            f"{path}: no footer (a live or crashed run); close its writer or compact it first, or {retry}"
        )
    return live != "skip"


def footer_schema(path: str, *, verify: bool = False) -> pa.Schema | None:
    """The lossfmt schema of a closed run (read from its footer, without decoding events), or None if the
    file has no footer (a live or crashed run). A local path or a URL; LossFormatError if it is not lossfmt,
    and with `verify` if any of its checksums fails (the whole file is read then).

    The one test of "closed" shared by dataset(), scan_polars() and export_parquet(): a closed file is what
    other engines (pyarrow, Polars, DuckDB) can read directly.
    """
    found = _closed_file(path, 0, verify)
    if found is None:
        return None
    schema.check_schema(found.schema, path)
    return found.schema


def _closed_file(path: str, budget: int, verify: bool = False) -> _Closed | None:
    """`path`'s footer schema (unchecked) and, for a local file of at most HOLD_FILE_BYTES that fits in
    `budget`, its bytes; None if it has no footer. Read, never memory-mapped: a writer may be replacing it.
    With `verify`, the whole file is read and its checksums checked (LossFormatError at the damage)."""
    try:
        source = _sources.open_file(path)
    except FileNotFoundError:
        raise NoSuchFileError(f"{path}: no such file") from None
    except OSError as exc:
        raise LossFormatError(f"{path}: cannot read ({exc.strerror or exc})") from None
    with source:
        try:
            size = source.size()
            # (held whatever its size where pyarrow cannot name it: see _sources.utf8)
            hold = not _sources.is_url(path) and (
                size <= min(HOLD_FILE_BYTES, budget) or not _sources.utf8(path)
            )
            data = source.read_buffer(size) if hold or verify else None
            found = _Closed(pa.ipc.open_file(source if data is None else data).schema, data if hold else None)
        except (pa.ArrowInvalid, OSError):
            return None
    if verify:
        assert data is not None  # read whole above
        _framing.walk(data.to_pybytes(), path)  # every message's checksum, and the footer against them
    return found


def read_ranks(source: Source, *, tags: Sequence[str] | None = None) -> pa.Table:
    """The events of the rank files in `source`, with the shared ``run`` name and each file's ``rank``.

    ``rank`` comes from the file's metadata (``meta["rank"]``, as written by
    ``lossfmt.integrations.torch_distributed.rank_writer``); files without one get null. Torn tails and live
    files are read as by ``lossfmt.read``.
    """
    tables = []
    paths = _expand(source)[0]
    read_tables = [read(path) for path in paths]
    if tags is not None:  # a tag of any rank's file means that tag in every file, as lossfmt.read selects
        known = set().union(*(_sources.tag_names(t) for t in read_tables))
        read_tables = [_sources.select_tags(t, tags, among=known) for t in read_tables]
    for path, table in zip(paths, read_tables, strict=True):
        info = schema.run_info(table.schema)
        n = table.num_rows
        table = table.replace_schema_metadata(None)
        table = table.add_column(0, "rank", pa.array([info["meta"].get("rank")] * n, pa.int64()))
        run = pa.array([info.get("run") or Path(path).stem] * n, pa.string())
        tables.append(table.add_column(0, pa.field(schema.RUN, pa.string(), nullable=False), run))
    return pa.concat_tables(tables, promote_options="permissive").unify_dictionaries()


def mean_across(table: pa.Table, over: str = "rank", *, normalize: str | None = None) -> pa.Table:
    """Mean and spread of ``value`` across ranks (``over="rank"``) or runs (``over="run"``) per tag and step.

    Each member (a rank, or a run) first gets the read-time rules the viewer applies, per file (``run`` and,
    where the table has one, ``rank``): steps that restart each epoch made run-wide
    (``transforms.run_wide_steps``) and the events a resume orphaned dropped (``transforms.drop_rewound``);
    a table already so transformed comes out the same (its rows in file order: the rules read the order of
    events). A member's events at one step (micro-batches under
    gradient accumulation, or a run's ranks with ``over="run"``) are then one value, as
    ``transforms.bucket(per=1)`` combines them: their mean, or with ``normalize="per-item"`` the mean per
    item whatever their counts.

    Groups those values by ``run`` (unless it is what is averaged), ``tag`` and ``step``. Columns: [run],
    tag, step (run-wide), value (mean of the members' values), min, max, std (population), n (members at that
    step), count (sum of the members' counts), epoch (the largest), wall_time (the latest); sorted by [run],
    tag, step. A non-finite member value makes that step's mean non-finite, so a diverged rank or seed stays
    visible. ValueError for ``over="rank"`` where events have no rank (files without ``meta["rank"]``).
    """
    _check_table(table, over)
    keys = [k for k in (schema.RUN, schema.TAG, schema.STEP) if k != over and k in table.column_names]
    steps = _member_steps(table, over, transforms.parse_normalize(normalize))
    grouped = steps.group_by(keys, use_threads=False).aggregate(
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
    _check_count_sums(steps, keys)
    order = [*keys, schema.VALUE, "min", "max", "std", "n", schema.COUNT, schema.EPOCH, schema.WALL_TIME]
    return grouped.select(order).sort_by([(k, "ascending") for k in keys])


def _check_table(table: Any, over: str) -> None:
    """mean_across's argument checks: a Table of events with the column averaged over (and, over ranks,
    every event's rank)."""
    if not isinstance(table, pa.Table):
        raise TypeError(
            f"mean_across takes a pyarrow Table (as lossfmt.read gives), not {type(table).__name__}"
        )
    if over not in table.column_names:
        raise ValueError(f"mean_across: the table has no {over!r} column to average over")
    needed = (schema.TAG, schema.STEP, schema.VALUE, schema.COUNT, schema.EPOCH, schema.WALL_TIME)
    missing = [name for name in needed if name not in table.column_names]
    if missing:
        raise ValueError(
            f"mean_across: the table has no {', '.join(map(repr, missing))} column"
            " (expected events as lossfmt.read or read_ranks give them)"
        )
    if over == "rank" and table["rank"].null_count:  # (two files of one run would be taken for one rank)
        raise ValueError(
            f"mean_across over='rank': {table['rank'].null_count:,} events have no rank (their files have no "
            "meta['rank']), so ranks cannot be told apart; write each rank's file with meta={'rank': r} "
            "(lossfmt.integrations.torch_distributed.rank_writer does)"
        )


def _member_steps(table: pa.Table, over: str, normalize: str | None) -> pa.Table:
    """One row per member, tag and step: [run], tag, step, value, count, epoch, wall_time, after the read-time
    rules applied per file; `over` left out, run (when it is not `over`) and tag as strings."""
    columns = table.column_names
    files = _group_codes(table, [c for c in dict.fromkeys((schema.RUN, "rank", over)) if c in columns])
    members = _group_codes(table, [c for c in dict.fromkeys((over, schema.RUN)) if c in columns])
    kept = [schema.TAG, schema.STEP, schema.VALUE, schema.COUNT, schema.EPOCH, schema.WALL_TIME]
    work = table.select([*kept, *([schema.REDUCTION] if schema.REDUCTION in columns else [])])
    work = work.append_column(schema.RUN, _labelled(files)).append_column("member", _arrow.array(members))
    work = transforms.run_wide_steps(work) or work
    if _one_per_step(_group_codes(table, [schema.TAG], members), _arrow.to_numpy(work[schema.STEP])):
        # (the viewer's curves, or a table already averaged): nothing to drop or to combine
        steps = work if normalize is None else transforms.normalize_events(work)
        member = members
    else:
        work = transforms.drop_rewound(work)
        # one value per step of each member (a run's ranks together with over="run"), not of each file
        work = work.set_column(
            work.schema.get_field_index(schema.RUN), schema.RUN, _labelled(_arrow.to_numpy(work["member"]))
        )
        steps = transforms.bucket(work, 1, normalize=normalize)
        member = _arrow.to_numpy(steps[schema.RUN].cast(pa.int64())).astype(np.int64)
    out = steps.select([schema.STEP, schema.VALUE, schema.COUNT, schema.EPOCH, schema.WALL_TIME])
    out = out.add_column(0, schema.TAG, _strings(steps[schema.TAG]))
    if over != schema.RUN and schema.RUN in columns:
        first = np.unique(members, return_index=True)[1]  # a row of each member: its run
        run = table[schema.RUN].take(_arrow.array(first[member], pa.int64()))
        out = out.add_column(0, schema.RUN, _strings(run))
    return out


def _one_per_step(series: np.ndarray, step: np.ndarray) -> bool:
    """Whether each series' rows are one stretch of the table with its steps strictly increasing: then
    nothing is rewound and no step has two events, so the rules and the per-step mean change nothing."""
    same = series[1:] == series[:-1]
    stretches = series.size - int(np.count_nonzero(same))
    return bool(np.all(step[1:][same] > step[:-1][same])) and stretches == np.unique(series).size


def _group_codes(table: pa.Table, names: list[str], codes: np.ndarray | None = None) -> np.ndarray:
    """A code per row, 0 to k-1, telling apart the k distinct combinations of the columns `names` (a null is
    one more value), within those of `codes` when given."""
    import pyarrow.compute as pc

    codes = np.zeros(table.num_rows, np.int64) if codes is None else codes
    for name in names:
        column = _strings(table[name]).combine_chunks()
        encoded = cast("pa.DictionaryArray[Any, Any]", pc.dictionary_encode(column, null_encoding="encode"))
        combined = codes * len(encoded.dictionary) + _arrow.to_numpy(encoded.indices).astype(np.int64)
        inverse: np.ndarray = np.unique(combined, return_inverse=True)[1]
        codes = inverse.astype(np.int64)
    return codes


def _labelled(codes: np.ndarray) -> pa.DictionaryArray[Any, Any]:
    """Codes 0 to k-1 as a dictionary column of their decimal strings: the ``run`` the transforms group by."""
    labels = [str(i) for i in range(int(codes.max()) + 1 if codes.size else 0)]
    return pa.DictionaryArray.from_arrays(_arrow.array(codes.astype(np.int32)), _arrow.strings(labels))


def _strings(column: pa.ChunkedArray[Any]) -> pa.ChunkedArray[Any]:
    """A dictionary column as its values (Arrow's group_by takes no dictionary keys); others as they are."""
    return column.cast(column.type.value_type) if pa.types.is_dictionary(column.type) else column


def _check_count_sums(table: pa.Table, keys: list[str]) -> None:
    """ValueError where the members' counts of one step sum past the largest int64 (Arrow's sum wraps)."""
    import pyarrow.compute as pc

    largest = pc.max(table[schema.COUNT]).as_py()
    if not largest or largest <= np.iinfo(np.int64).max // max(table.num_rows, 1):
        return
    wide = table.select(keys).append_column("c", table[schema.COUNT].cast(pa.float64(), safe=False))
    sums = wide.group_by(keys, use_threads=False).aggregate([("c", "sum")])["c_sum"]
    if pc.max(sums).as_py() >= 2.0**63:
        raise ValueError(
            f"mean_across: the counts of one step sum past the largest int64 ({largest:,} per event)"
        )
