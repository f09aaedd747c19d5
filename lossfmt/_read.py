"""Reading lossfmt files whole: `scan` (one file, any state), `read` and `read_pandas` (one or many files).

A file's bytes are read (never memory-mapped: a writer may truncate it), walked and verified by `_framing`
(torn tail vs corruption, checksums), and decoded by `_decode`; this module turns the result into tables.
"""

from __future__ import annotations

import os
import stat
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import numpy as np
import pyarrow as pa

from lossfmt import _arrow, _checks, _decode, _sources
from lossfmt import _framing as fr
from lossfmt import schema as s

if TYPE_CHECKING:
    import pandas

__all__ = ["Scan", "read", "read_pandas", "scan", "scan_bytes"]

PathLike = str | os.PathLike[str]

#: Live files hold one small record batch per flush; tables made of smaller chunks than this are consolidated.
_COMBINE_BELOW_ROWS = 1 << 16


class Scan(NamedTuple):
    """The result of reading one file: its schema, every complete event, where its content ends, and state."""

    schema: pa.Schema
    """The file's schema, with its lossfmt metadata."""
    table: pa.Table
    """Every complete event in file order (all columns the file has, or those asked for; dictionaries
    unified)."""
    end: int
    """Offset just after the last complete record batch message (or the schema message): where a resuming
    writer truncates (spec/FORMAT.md §1.2)."""
    closed: bool
    """The file has its Arrow IPC footer (the writer closed it)."""


def _tidy(table: pa.Table) -> pa.Table:
    """Unify dictionaries across chunks; consolidate a table made of many small (live, per-flush) batches."""
    if table.num_columns == 0 or table.column(0).num_chunks <= 1:
        return table
    if table.num_rows < _COMBINE_BELOW_ROWS * table.column(0).num_chunks:
        return table.combine_chunks()
    return table.unify_dictionaries()


def scan_layout(
    data: bytes, name: str, columns: Sequence[str] | None = None, verify: bool = True
) -> tuple[Scan, fr.Layout]:
    """`scan_bytes`, also returning the verified layout (the follower continues from it)."""
    layout = fr.walk(data, name, verify)
    schema = layout.schema
    s.check_schema(schema, name)
    fields = None if columns is None else [schema.get_field_index(c) for c in columns]
    batches = _decode.decode(data, layout, name, fields)
    decoded = schema
    if fields is not None:  # the batches hold only these columns, in the file's order
        # (pyarrow-stubs type `metadata` as an invariant dict[bytes | str, ...]; Schema.metadata's fits)
        metadata = cast("dict[bytes | str, bytes | str] | None", schema.metadata)
        decoded = pa.schema([schema.field(i) for i in sorted(fields)], metadata=metadata)
    table = _tidy(pa.Table.from_batches(batches, schema=decoded))
    return Scan(schema, table, layout.end, layout.closed), layout


def scan_bytes(data: bytes, name: str, columns: Sequence[str] | None = None, *, verify: bool = True) -> Scan:
    """Read a lossfmt file from its bytes (e.g. fetched from object storage); `name` is used in errors.

    With `columns` (v1 column names), only those are decoded and returned (checksums still cover every
    column). LossFormatError, naming `name` and the byte offset, for anything but a torn tail.
    `verify=False` skips checksum verification: faster, but damage may read as data.
    """
    return scan_layout(bytes(data), name, columns, _check_verify(verify))[0]


def read_bytes(path: PathLike) -> bytes:
    """The bytes of the file at `path` (LossFormatError if it is missing or not a regular file)."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise s.LossFormatError(f"{name}: not a regular file, so not a lossfmt file")
            return f.read()
    except FileNotFoundError:
        raise s.NoSuchFileError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise s.LossFormatError(f"{name}: not a regular file, so not a lossfmt file") from None
    except OSError as exc:
        raise s.LossFormatError(f"{name}: cannot read ({exc.strerror or exc})") from None


def scan(path: PathLike, *, verify: bool = True) -> Scan:
    """Read one file whatever its state (closed, live, crashed with a torn tail); LossFormatError, naming the
    file and byte offset, if it is not lossfmt v1 or is corrupt (the file is never modified).
    `verify=False` skips checksum verification: faster, but damage may read as data."""
    return scan_columns(path, None, _check_verify(verify))


def _check_verify(verify: object) -> bool:
    """`verify` itself, or TypeError: a truthy string such as "no" must not silently mean True."""
    if not isinstance(verify, bool):
        raise TypeError(f"verify must be True or False, not {verify!r}")
    return verify


def scan_columns(path: PathLike, columns: Sequence[str] | None, verify: bool = True) -> Scan:
    """`scan`, decoding only `columns` (v1 column names) when given: the table then holds just those."""
    name = os.fspath(path)
    if _sources.is_url(name):  # a closed run on object storage: its bytes come through the filesystem
        if verify:
            return _sources.scan_url(name, columns)
        with _sources.open_url(name) as f:
            return scan_bytes(f.read(), name, columns, verify=False)
    if _is_fifo(name):
        raise s.LossFormatError(f"{name}: not a regular file, so not a lossfmt file")
    return scan_layout(read_bytes(path), name, columns, verify)[0]


def _is_fifo(name: str) -> bool:
    """A FIFO would block open(): refuse it before opening."""
    try:
        return stat.S_ISFIFO(os.stat(name).st_mode)
    except OSError:
        return False


def _check_columns(columns: Sequence[str] | str | None) -> tuple[str, ...] | None:
    """The requested column names as a tuple (None: all), or ValueError naming what is wrong."""
    if columns is None:
        return None
    if isinstance(columns, bytes) or not isinstance(columns, str | Iterable):
        raise TypeError(f"columns must be a column name or a list of them, got {type(columns).__name__}")
    wanted = (columns,) if isinstance(columns, str) else tuple(columns)
    known = (*s.COLUMNS, s.RUN)
    for name in wanted:
        if name not in known:
            raise ValueError(
                f"unknown column {name!r}: lossfmt files have {', '.join(s.COLUMNS)} "
                f"(and {s.RUN} when several files are read)"
            )
    if not wanted:
        raise ValueError(f"columns is empty: name at least one of {', '.join(known)}")
    repeated = sorted({c for c in wanted if wanted.count(c) > 1})
    if repeated:
        raise ValueError(f"column {repeated[0]!r} is listed twice in columns")
    return wanted


def _read(
    source: PathLike | Iterable[PathLike],
    tags: Sequence[str] | str | None,
    run_type: pa.DataType,
    columns: Sequence[str] | str | None = None,
    verify: bool = True,
) -> pa.Table:
    verify = _check_verify(verify)
    wanted = _check_columns(columns)
    patterns = None if tags is None else _sources.tag_patterns(tags)
    paths, multi = _sources.expand(source)
    if wanted is not None and s.RUN in wanted and not multi:
        raise ValueError(
            f"{paths[0]}: a single file has no {s.RUN!r} column (it is added when a list, glob or directory "
            "of files is read); drop it from columns"
        )
    stored = list(s.COLUMNS) if wanted is None else [c for c in wanted if c != s.RUN]
    decode = stored if patterns is None or s.TAG in stored else [*stored, s.TAG]
    # Something must be decoded to count the rows of a file of which only `run` is wanted.
    decode = decode or [s.REDUCTION]
    tables: list[pa.Table] = []
    runs: list[str] = []
    kept = []
    for path in paths:
        try:
            result = scan_columns(path, decode, verify)
        except s.NoSuchFileError:
            if not multi or len(paths) == 1 or os.path.lexists(path):  # (a dangling link is an error)
                raise
            continue  # a run moved away (or removed) since the sweep was listed: not a read error of the rest
        kept.append(path)
        tables.append(result.table.select(decode))
        runs.append(s.run_info(result.schema).get("run") or Path(path).stem)
    if len(kept) < len(paths):
        _checks.warn_gone([p for p in paths if p not in kept], len(paths))
        if not kept:
            raise s.NoSuchFileError(f"{paths[0]}: every file listed is gone (moved or removed)")
        paths = kept
    if patterns is not None:  # a pattern that is the name of a tag of any file means that tag in every file
        known = set().union(*(_sources.tag_names(t) for t in tables))
        tables = [_sources.select_tags(t, patterns, among=known) for t in tables]
    tables = [t.select(stored) for t in tables]
    if not multi:
        return tables[0]
    if wanted is not None and s.RUN not in wanted:
        return pa.concat_tables([t.replace_schema_metadata(None) for t in tables]).unify_dictionaries()
    labels = _sources.run_labels(paths, runs)
    with_run = []
    for table, label in zip(tables, labels, strict=True):
        run: pa.Array[Any] = pa.DictionaryArray.from_arrays(
            _arrow.array(np.zeros(table.num_rows, np.int32)), _arrow.strings([label])
        )
        if run_type == pa.string():
            run = run.cast(pa.string())
        # (in this order: a table of no columns, when only `run` is wanted, keeps its length)
        with_run.append(table.add_column(0, s.RUN, run).replace_schema_metadata(None))
    table = pa.concat_tables(with_run).unify_dictionaries()
    return table if wanted is None else table.select(list(wanted))


def read(
    source: PathLike | Iterable[PathLike],
    *,
    tags: Sequence[str] | str | None = None,
    columns: Sequence[str] | str | None = None,
    verify: bool = True,
) -> pa.Table:
    """Every complete event of a lossfmt file (closed, live or crashed), or of several with a `run` column.

    A single path gives its events (schema metadata kept; `schema.run_info(table.schema)` decodes it). A list,
    a glob pattern or a directory (its own *.arrow files, sorted; ``dir/**/*.arrow`` reaches subdirectories;
    each file once, see `lossfmt.run_paths`) gives all their events with a leading `run` column (the run name
    from each file's metadata). `tags` keeps the tags it names: an entry equal to a tag of any of the files
    means exactly that tag, any other entry is an fnmatch glob (``"val/*"``); None keeps every tag.
    `columns` returns only the named columns, in that order (`run` only when several files are read); only
    those are decompressed, so reading what a plot needs (step, tag, value) costs a fraction of everything.
    Unknown names raise ValueError. Tag and reduction columns are dictionary-encoded with unified
    dictionaries. Raises LossFormatError, naming the file, for anything that is not a readable lossfmt file;
    a sweep being written is read as it is: its empty files (writers just started) and runs moved away while
    it is read are skipped with a warning.
    `verify=False` skips checksum verification: faster, but damage may read as data.
    """
    return _read(source, tags, pa.string(), columns, verify)


def _to_pandas(table: pa.Table) -> pandas.DataFrame:
    import pandas as pd

    for name in (s.RUN, s.TAG, s.REDUCTION):  # labels become Categoricals (free for dictionary columns)
        if name in table.column_names and not pa.types.is_dictionary(table.schema.field(name).type):
            index = table.schema.get_field_index(name)
            table = table.set_column(index, name, table.column(name).dictionary_encode())
    # The frame is built from its columns without copying any of them (on this VM fresh memory costs more
    # than the conversion, measured a third of read_pandas for 10M events): numbers lossfmt decoded into
    # memory of its own are the frame's as they are, epoch becomes nullable Int64 from its buffers, and
    # pyarrow converts the rest (labels, wall_time) column by column, never into consolidated blocks.
    seen: set[int] = set()
    own = {name: _own_numbers(table.column(name), seen) for name in table.column_names if name != s.EPOCH}
    rest = [n for n in table.column_names if n != s.EPOCH and own[n] is None]
    converted = table.select(rest).to_pandas() if rest else None
    columns: dict[str, object] = {}
    for name in table.column_names:
        if name == s.EPOCH:
            columns[name] = _epoch(table.column(name))
        else:
            numbers = own[name]
            columns[name] = (
                numbers if numbers is not None else _writable(cast("pd.DataFrame", converted)[name])
            )
    frame: pd.DataFrame = pd.DataFrame(columns, copy=False)  # pandas-stubs type DataFrame(...) as Any
    return frame


#: Column types whose values are one numpy array each in pandas, as in Arrow.
_NUMBERS = {pa.int64(): np.int64, pa.float64(): np.float64}


def _own_numbers(column: pa.ChunkedArray[Any], seen: set[int]) -> np.ndarray | None:
    """A numeric column without nulls as a writable numpy view of its values, where those are one buffer
    lossfmt's decoding wrote (mutable, so the view is the user's to change: the table is read_pandas' own and
    discarded) and no other column's (`seen`: buffer addresses taken); None for anything else (pyarrow
    converts it)."""
    dtype = _NUMBERS.get(column.type)
    if dtype is None or column.num_chunks != 1 or column.null_count:
        return None
    chunk = column.chunks[0]
    buffer = chunk.buffers()[1]
    if buffer is None or not buffer.is_mutable or buffer.address in seen:
        return None
    seen.add(buffer.address)
    values = np.frombuffer(_arrow.to_memoryview(buffer), dtype, len(chunk), chunk.offset * 8)
    return values if values.flags.writeable else None


def _epoch(column: pa.ChunkedArray[Any]) -> object:
    """The epoch column as pandas' nullable Int64, from its buffers (writable values, no pyarrow.compute)."""
    import pandas as pd

    n = len(column)
    if column.null_count == n:  # a run that logs no epochs: nothing to read (np.zeros maps lazily)
        return pd.arrays.IntegerArray(np.zeros(n, np.int64), np.ones(n, bool))
    values = _arrow.to_numpy(column, fill=0).astype(np.int64, copy=False)
    values = values if values.flags.writeable else values.copy()  # the frame is the user's to change
    return pd.arrays.IntegerArray(values, _null_mask(column))


def _writable(column: pandas.Series) -> object:
    """`column`, or its Categorical with a copy of the codes where pandas took one-byte dictionary indices
    zero-copy from a read-only Arrow buffer (a single-chunk column): users assign into read_pandas frames."""
    import pandas as pd

    if not isinstance(column.dtype, pd.CategoricalDtype):
        return column
    codes = column.cat.codes.to_numpy()
    if codes.flags.writeable:
        return column
    return pd.Categorical.from_codes(codes.copy(), dtype=column.dtype)


def _null_mask(column: pa.ChunkedArray[Any]) -> np.ndarray:
    """True where `column` is null, from its validity bitmaps (no pyarrow.compute)."""
    if not column.null_count:
        return np.zeros(len(column), bool)
    parts = []
    for chunk in column.chunks:
        validity = chunk.buffers()[0]
        if validity is None or not chunk.null_count:
            parts.append(np.zeros(len(chunk), bool))
            continue
        bits = np.unpackbits(np.frombuffer(_arrow.to_memoryview(validity), np.uint8), bitorder="little")
        parts.append(~bits[chunk.offset : chunk.offset + len(chunk)].astype(bool))
    return np.concatenate(parts) if parts else np.zeros(0, bool)


def read_pandas(
    source: PathLike | Iterable[PathLike],
    *,
    tags: Sequence[str] | str | None = None,
    per: str | int | None = None,
    normalize: str | None = None,
    smooth: str | None = None,
    verify: bool = True,
    keep_rewound: bool = False,
) -> pandas.DataFrame:
    """`read()` as a tidy pandas DataFrame (one row per event, or per bucket with `per`).

    `normalize="per-item"` makes values per-item means (see lossfmt.transforms); `per="epoch"` or `per=N`
    aggregates into buckets with their spread; `smooth` (a spec as lossview takes: "span:F", "steps:N",
    "ema:W", "ma:N" or "none"; see lossfmt.transforms) adds a `smoothed` column. tag,
    reduction and run are pandas Categoricals, epoch is nullable Int64, wall_time is datetime64[us, UTC].
    `verify=False` skips checksum verification: faster, but damage may read as data.
    With `per` or `smooth`, as lossview draws: steps that restart each epoch are made run-wide
    (`transforms.run_wide_steps`) and the events a resumed run orphaned dropped (`transforms.drop_rewound`;
    `keep_rewound=True` keeps them); without, every event is a row as written, as in read().
    """
    try:
        import pandas  # noqa: F401
    except ImportError:
        raise ImportError(
            "lossfmt.read_pandas needs pandas, which is not installed; install it with: "
            "pip install 'lossfmt[pandas]'   (or use lossfmt.read() for a pyarrow Table)"
        ) from None
    from lossfmt import transforms

    per_ = transforms.parse_per(per)
    norm = transforms.parse_normalize(normalize)
    transforms.parse_smooth(smooth)  # a bad spec fails before any file is read
    _check_verify(verify)  # before any file is read, like the specs above
    if not isinstance(keep_rewound, bool):
        raise TypeError(f"keep_rewound must be True or False, not {keep_rewound!r}")
    table = _read(source, tags, pa.dictionary(pa.int32(), pa.string()), None, verify)
    if per_ is not None or smooth is not None:  # steps that restart each epoch made run-wide, as drawn
        table = transforms.run_wide_steps(table) or table
        table = table if keep_rewound else transforms.drop_rewound(table)
    if per_ is not None:
        bucketed = transforms.bucket(table, per_, normalize=norm)
        if per_ == "epoch" and table.column(s.EPOCH).null_count:
            _tell_epochless(table, bucketed)
        table = bucketed
    elif norm is not None:
        table = transforms.normalize_events(table)
    if smooth is not None:
        table = transforms.smooth_table(table, smooth)
    return _to_pandas(table)


def _tell_epochless(table: pa.Table, bucketed: pa.Table) -> None:
    """per="epoch" has no bucket for a series logged without any epoch: warn, naming it, as lossview does."""
    from lossfmt import transforms

    def names(t: pa.Table) -> set[str]:
        found = transforms.series(t) if t.num_rows else []
        return {f"{run}: {tag}" if run else tag for run, tag, _ in found}

    lost = sorted(names(table) - names(bucketed))
    if lost:
        warnings.warn(
            f"read_pandas(per='epoch'): left out, logged without an epoch: {', '.join(lost)}",
            UserWarning,
            stacklevel=_checks.user_stacklevel(),
        )
