"""TensorBoard migration: tfevents scalars to lossfmt files, every point, with tags, steps and wall times.

    from lossfmt.integrations.tensorboard import import_tb
    import_tb("tb_logs/", "runs/")           # one runs/<run>.arrow per TensorBoard run
    import_tb("tb_logs/exp1", "exp1.arrow")  # a single run to a single file

or ``lossview import-tb LOGDIR OUT``. Unlike TensorBoard's ``EventAccumulator`` (which keeps 10,000 scalars
per tag by default) nothing is sampled away. Needs TensorBoard's event reader: ``pip install
'lossfmt[tensorboard]'``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa

from lossfmt import schema

try:
    from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader
    from tensorboard.backend.event_processing.io_wrapper import IsTensorFlowEventsFile
    from tensorboard.util.tensor_util import make_ndarray
except ImportError as exc:
    raise ImportError(
        "importing TensorBoard logs needs TensorBoard's event reader: pip install 'lossfmt[tensorboard]'"
    ) from exc

_SCALARS_PLUGIN = "scalars"


def import_tb(logdir: str | os.PathLike[str], out: str | os.PathLike[str], *, overwrite: bool = False) -> int:
    """Convert every scalar under `logdir` to lossfmt; return the number of events written.

    A TensorBoard run is a directory holding ``*tfevents*`` files (read in name order, i.e. in time order);
    `logdir` may be one run, a tree of runs, or a single event file. If `out` ends in ``.arrow`` it is the one
    output file and `logdir` must hold exactly one run; otherwise `out` is a directory receiving
    ``<run>.arrow`` per run (``<run>`` = the run's path relative to `logdir`, so nested runs give nested
    files). Each event keeps its tag, step and wall time; value is the stored float; count 1, reduction
    mean, no epoch. Both scalar encodings are read: ``simple_value`` (``torch.utils.tensorboard``,
    tensorboardX, TF1) and scalar tensors of the scalars plugin (TF2 ``tf.summary.scalar``). Runs without
    scalars produce no file. Existing output files raise ``FileExistsError`` unless `overwrite`.
    """
    runs = _find_runs(Path(logdir))
    if not runs:
        raise FileNotFoundError(f"{os.fspath(logdir)}: no TensorBoard event files (*tfevents*) found")
    out = Path(out)
    single = out.suffix == ".arrow"
    if single and len(runs) > 1:
        names = ", ".join(name for name, _ in runs[:5])
        raise ValueError(
            f"{os.fspath(logdir)} holds {len(runs)} TensorBoard runs ({names}, ...); "
            "give a directory as OUT to write one .arrow file per run"
        )
    targets = [(name, files, out if single else out / f"{name}.arrow") for name, files in runs]
    if not overwrite:
        for _, _, target in targets:
            if target.exists():
                raise FileExistsError(f"{target}: already exists; remove it or pass overwrite=True")
    written = 0
    for name, files, target in targets:
        table = _scalars(name, files)
        if table.num_rows:
            target.parent.mkdir(parents=True, exist_ok=True)
            _write_closed(target, table)
            written += table.num_rows
    return written


def _find_runs(logdir: Path) -> list[tuple[str, list[Path]]]:
    """(run name, event files in name order) for every directory under `logdir` holding event files."""
    if logdir.is_file():
        return [(logdir.parent.name or "run", [logdir])]
    runs = []
    for directory, _, files in sorted(os.walk(logdir)):
        events = sorted(Path(directory) / f for f in files if IsTensorFlowEventsFile(f))
        if events:
            relative = Path(directory).relative_to(logdir).as_posix()
            name = relative if relative != "." else (logdir.resolve().name or "run")
            runs.append((name, events))
    return runs


def _scalar_events(files: list[Path]) -> Iterator[tuple[int, str, float, float]]:
    """(step, tag, value, wall time in seconds) of every scalar in `files`, in file order."""
    scalar_tags: set[str] = set()
    for path in files:
        for event in LegacyEventFileLoader(str(path)).Load():
            if not event.HasField("summary"):
                continue
            for value in event.summary.value:
                kind = value.WhichOneof("value")
                if kind == "simple_value":
                    yield event.step, value.tag, value.simple_value, event.wall_time
                elif kind == "tensor":
                    if value.metadata.plugin_data.plugin_name == _SCALARS_PLUGIN:
                        scalar_tags.add(value.tag)
                    if value.tag in scalar_tags:
                        yield event.step, value.tag, float(make_ndarray(value.tensor).item()), event.wall_time


def _scalars(run: str, files: list[Path]) -> pa.Table:
    """All scalars of one run as a lossfmt table (schema with the run's metadata)."""
    rows = list(_scalar_events(files))
    steps, tags, values, times = zip(*rows, strict=True) if rows else ((), (), (), ())
    n = len(rows)
    micros = np.round(np.asarray(times, dtype=np.float64) * 1e6).astype(np.int64)
    file_schema = schema.make_schema(run, {"imported_from": "tensorboard", "tensorboard_run": run})
    return pa.Table.from_arrays(
        [
            pa.array(np.asarray(steps, dtype=np.int64)),
            pa.array(tags, pa.string()).dictionary_encode().cast(schema.TAG_TYPE),
            pa.array(np.asarray(values, dtype=np.float64)),
            pa.array(np.ones(n, dtype=np.int64)),
            pa.nulls(n, pa.int64()),
            pa.array(micros, schema.WALL_TIME_TYPE),
            pa.array([schema.MEAN] * n, pa.string()).dictionary_encode().cast(schema.REDUCTION_TYPE),
        ],
        schema=file_schema,
    )


def _write_closed(path: Path, table: pa.Table) -> None:
    """Write `table` as a closed lossfmt file (an Arrow IPC file, zstd), atomically replacing `path`."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    options = pa.ipc.IpcWriteOptions(compression=schema.COMPRESSION)
    try:
        with pa.ipc.new_file(str(tmp), table.schema, options=options) as writer:
            writer.write_table(table, max_chunksize=1 << 20)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
