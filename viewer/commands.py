"""The subcommands that are not plots: ``export``, ``compact`` and ``import-tb`` (``summary``: summary.py);
the checks every command shares (outputs, runs without events)."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

import lossfmt
from lossfmt.transforms import to_arrow as array
from lossview import view as v
from lossview.options import PROG

EXPORT_FORMATS = (".csv", ".parquet", ".feather")


def check_out(out: Path, suffixes: Sequence[str]) -> None:
    """An output path must have a known suffix and an existing directory (one message for every command)."""
    if out.suffix.lower() not in suffixes:
        names = ", ".join(suffixes[:-1]) + f" or {suffixes[-1]}" if len(suffixes) > 1 else suffixes[0]
        raise v.OptionError(f"{out}: output must end in {names}")
    if not out.parent.is_dir():
        raise FileNotFoundError(2, "No such directory", os.fspath(out.parent))


def require_events(runs: Sequence[v.Run], view: v.View) -> None:
    """No events at all, or none of the wanted tags, is an error naming the files or the tags."""
    if all(r.table.num_rows == 0 for r in runs):
        if view.tags:
            names: dict[str, None] = {}
            for r in runs:
                if r.path:
                    names.update(dict.fromkeys(v.tag_names(lossfmt.read(r.path, columns=["tag"]))))
            have = f"; the runs have {', '.join(names)}" if names else ""
            raise v.NoDataError(f"no tag matches {' '.join(view.tags)}{have}")
        raise v.NoDataError("; ".join(empty_note(r) for r in runs))


def empty_note(run: v.Run) -> str:
    """Why a run holds no event, naming its file (or its label)."""
    return f"{run.path or run.label}: {_why_empty(run.path)}"


def _why_empty(path: str) -> str:
    """Why a file holds no event: nothing after its header yet, or an unfinished first flush."""
    try:
        size, scanned = os.path.getsize(path), lossfmt.reader.scan(path)
    except (OSError, ValueError):  # not a local file (a URL), or gone since it was read
        return "no events in the file"
    if scanned.closed:  # a run closed before it logged anything
        return "no events in the file"
    end = scanned.end
    if size > end:
        return (
            f"no complete event: {size - end:,} of its {size:,} bytes are an unfinished first flush (a "
            "writer still writing it, or a copy cut short)"
        )
    return "no events in the file yet"


# ----------------------------------------------------------------------------------------------- export


def export_table(runs: Sequence[v.Run], view: v.View) -> pa.Table:
    """The table ``lossview export`` writes: the rows the plot draws, with a ``smoothed`` column (each run
    smoothed by itself as the plot would smooth it alone, ``view.smooth``; unsmoothed series repeat their
    value), and a ``run`` column when there are several runs."""
    prepared = v.prepare_runs(runs, view)  # --per epoch: a run of several without epochs is left out
    several, runs = len(runs) > 1, [run for run, _ in prepared]
    tables = [table for _, table in prepared]
    series = []
    for table in tables:
        parts = []
        steps, values = v.column(table, "step", np.int64), v.column(table, "value", np.float64)
        for tag, idx in v.tag_groups(table):
            step, y = (steps, values) if idx is None else (steps[idx], values[idx])
            parts.append((idx, v.Curve("", tag, step, y, step)))
        series.append(parts)
    for parts in series:  # each run by itself: its numbers do not depend on the other files named
        v.smooth([c for _, c in parts], view)
    out = []
    for run, table, parts in zip(runs, tables, series, strict=True):
        # always there (a script reading it over many runs), whether or not any series is smoothed
        smoothed = v.column(table, "value", np.float64).copy()
        for idx, c in parts:
            if c.smoothed is not None:
                smoothed[slice(None) if idx is None else idx] = c.smoothed
        table = table.append_column(pa.field("smoothed", pa.float64()), array(smoothed, pa.float64()))
        if several:
            table = table.add_column(0, "run", pa.array([run.label] * table.num_rows, pa.string()))
        out.append(table)
    return pa.concat_tables(out, promote_options="permissive")


def check_export_out(files: Sequence[str], out: Path, *, overwrite: bool) -> None:
    """Never let an export destroy a run: refuse an OUT that is one of the inputs or a lossfmt file (an
    unquoted glob makes the last run the OUT), and any other existing file unless ``overwrite``."""
    paths = lossfmt.run_paths(list(files))  # also: a missing input is named before anything is written
    if not os.path.lexists(out):
        return
    if out.is_file() and any(os.path.samefile(p, out) for p in paths if os.path.exists(p)):
        raise v.OptionError(f"{out}: is one of the input files; the last argument is the output file")
    if out.is_file() and _is_run(out):
        raise v.OptionError(
            f"{out}: is a lossfmt run, not an output (an unquoted glob? the last argument is the output)"
        )
    if not overwrite:
        raise v.ViewerError(f"{out}: already exists; remove it or pass --overwrite")


def _is_run(path: Path) -> bool:
    try:
        lossfmt.read(path, columns=["step"])
    except (lossfmt.LossfmtError, OSError):
        return False
    return True


def export(files: Sequence[str], out_name: str, view: v.View, *, overwrite: bool = False) -> int:
    """Write the rows ``export_table`` makes to OUT. Runs without events add no rows: if none has any, OUT
    holds the columns and no row, and the message says why; only tags matching nothing is an error."""
    out = Path(out_name)
    if out.is_dir():
        raise v.OptionError(f"{out}: is a directory; name the file: OUT.csv, OUT.parquet or OUT.feather")
    check_export_out(files, out, overwrite=overwrite)
    if out.suffix.lower() == ".arrow":
        raise v.OptionError(
            f"{out}: an export is a plain Arrow table, not a lossfmt run: name it OUT.feather (Arrow IPC)"
        )
    check_out(out, EXPORT_FORMATS)
    runs = v.load(files, view, every_column=True)
    if view.tags:
        require_events(runs, view)
    result = export_table(runs, view).replace_schema_metadata(None)
    try:
        _write(result, out)
    except OSError as exc:  # pyarrow's own words name no file: "[Errno 13] Failed to open local file"
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise v.ViewerError(f"{out}: cannot write ({reason.lower()})") from None
    empty = f" ({'; '.join(empty_note(r) for r in runs)})" if result.num_rows == 0 else ""
    print(f"{out}: {result.num_rows} rows{empty}", file=sys.stderr)
    return 0


def _write(result: pa.Table, out: Path) -> None:
    suffix = out.suffix.lower()
    if suffix == ".csv":
        import pyarrow.csv as pcsv

        cols = [c.cast(pa.string()) if pa.types.is_dictionary(c.type) else c for c in result.columns]
        pcsv.write_csv(pa.table(cols, names=result.column_names), out)
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        pq.write_table(result, out)
    else:
        import pyarrow.feather as feather

        feather.write_feather(result, out, compression="zstd")


def export_parquet(files: Sequence[str], out: str, view: v.View | None = None) -> int:
    """``--format parquet``: every event of every run, by lossfmt.export_parquet. ``view``: the options as
    given (``cli._view``), whose row options are refused rather than silently ignored."""
    check_parquet(out, view or v.View(smooth_explicit=False))
    # Re-exporting into OUT is its incremental update (lossfmt refuses files an export did not make).
    check_export_out(files, Path(out), overwrite=True)
    summary = lossfmt.export_parquet(list(files), out)
    print(
        f"{out}: {summary.runs} run{'' if summary.runs == 1 else 's'}, {summary.written} written "
        f"({summary.rows} events), {summary.removed} removed",
        file=sys.stderr,
    )
    return 0


def check_parquet(out: str, view: v.View) -> None:
    """Usage errors of the parquet export, which writes every event as logged: an option that selects or
    changes rows, and an OUT with a file suffix (OUT.parquet is one file; any other OUT, a directory)."""
    options = {
        "--tag": view.tags,
        "--per": view.per,
        "--smooth": view.smooth_explicit,
        "--normalize": view.normalize,
        "--keep-rewound": view.keep_rewound,  # every event is exported: nothing is dropped to keep
    }
    given = [name for name, value in options.items() if value]
    if given:
        raise v.OptionError(
            f"--format parquet exports every event as logged (filter and aggregate in DuckDB or Polars): "
            f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} for the default --format rows"
        )
    suffix = Path(out).suffix.lower()
    if suffix in ("", ".parquet") or out.endswith(("/", os.sep)) or os.path.isdir(out):
        return
    hint = f"; for a {suffix} file leave out --format parquet" if suffix in EXPORT_FORMATS else ""
    raise v.OptionError(f"{out}: --format parquet writes OUT.parquet (one file) or a directory OUT/{hint}")


# -------------------------------------------------------------------------------------- compact, import


def compact(files: Sequence[str]) -> int:
    """Compact every file; one that fails (corrupt, busy, not lossfmt) is named on its own error line and
    the others are still compacted. 1 if any failed."""
    failed = False
    for path in lossfmt.run_paths(list(files)):
        try:
            before = os.path.getsize(path)
            lossfmt.compact(path)
            after = os.path.getsize(path)
        except (lossfmt.LossfmtError, OSError) as exc:
            print(f"{PROG}: error: {error_line(exc)}", file=sys.stderr)
            failed = True
            continue
        print(f"{path}: {before} -> {after} bytes", file=sys.stderr)
    return 1 if failed else 0


def error_line(exc: Exception) -> str:
    """An error as the one line the command line prints (an OSError as "PATH: reason")."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"{os.fsdecode(exc.filename)}: {exc.strerror.lower()}"
    return str(exc)


def salvage(path: str, out: str) -> int:
    """Copy the readable prefix of a damaged run into a new run OUT, which must be an .arrow file."""
    check_out(Path(out), (".arrow",))
    n = lossfmt.salvage(path, out)
    print(f"{out}: {n} events recovered from {path} (which is left as it was)", file=sys.stderr)
    return 0


def import_tb(logdir: str, out: str, *, overwrite: bool) -> int:
    """Convert LOGDIR's scalars into OUT, naming the file written (or OUT and how many files it got)."""
    try:
        from lossfmt.integrations.tensorboard import NotAnImportError, import_tb_files
    except ImportError as exc:
        raise v.ViewerError(
            f"import-tb is unavailable ({exc}); install the extra: pip install 'lossfmt[tensorboard]'"
        ) from None
    if not os.path.exists(logdir):
        raise FileNotFoundError(2, "No such file or directory", logdir)
    try:
        written = import_tb_files(logdir, out, overwrite=overwrite)
    except (ValueError, NotAnImportError) as exc:  # a bad OUT, or a file --overwrite must not replace
        raise v.ViewerError(str(exc)) from None
    except FileExistsError as exc:
        target = os.fsdecode(exc.filename) if exc.filename else str(exc).partition(":")[0]
        raise v.ViewerError(f"{target}: already exists; remove it or pass --overwrite") from None
    n = sum(written.values())
    if not n:
        raise v.ViewerError(f"{logdir}: its TensorBoard event files hold no scalars; nothing written")
    into = f"{next(iter(written))}:" if len(written) == 1 else f"{out}: {len(written)} files,"
    print(f"{into} {n} events imported from {logdir}", file=sys.stderr)
    if Path(out).is_dir() and any(p.parent != Path(out) for p in written):  # (a directory reads its own)
        print(
            f"{out}: runs in subdirectories too: view them all with {PROG} '{Path(out) / '**' / '*.arrow'}'",
            file=sys.stderr,
        )
    return 0
