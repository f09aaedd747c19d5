"""TensorBoard migration: tfevents scalars to lossfmt files, every point, with tags, steps and wall times.

    from lossfmt.integrations.tensorboard import import_tb
    import_tb("tb_logs/", "runs/")           # one runs/<run>.arrow per TensorBoard run
    import_tb("tb_logs/exp1", "exp1.arrow")  # a single run to a single file

or ``lossview import-tb LOGDIR OUT``. Unlike TensorBoard's ``EventAccumulator`` (which keeps 10,000 scalars
per tag by default) nothing is sampled away. Hyperparameters logged with ``add_hparams`` (PyTorch,
tensorboardX) become the run's metadata. Needs TensorBoard's event reader: ``pip install
'lossfmt[tensorboard]'``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from lossfmt import _file, _framing, _read, schema
from lossfmt._errors import LossfmtError

try:
    from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader
    from tensorboard.backend.event_processing.io_wrapper import IsTensorFlowEventsFile
    from tensorboard.plugins.hparams import plugin_data_pb2
    from tensorboard.util.tensor_util import make_ndarray
except ImportError as exc:
    raise ImportError(
        "importing TensorBoard logs needs TensorBoard's event reader: pip install 'lossfmt[tensorboard]'"
    ) from exc

_SCALARS_PLUGIN = "scalars"
_HPARAMS_PLUGIN = "hparams"
#: How many run names an error lists before it says how many more there are.
_NAMES_SHOWN = 5


class TooManyRunsError(LossfmtError, ValueError):
    """`logdir` holds several TensorBoard runs but `out` names one ``.arrow`` file (give a directory)."""


class NotAnImportError(LossfmtError, FileExistsError):
    """An output file exists that ``import_tb`` did not write (a lossfmt training run, or any other file):
    ``overwrite`` replaces earlier imports only, so a typo in OUT never replaces a run."""


@dataclass
class _Run:
    """One TensorBoard run directory: its scalars and what ``add_hparams`` recorded in it."""

    name: str
    directory: Path
    rows: list[tuple[int, str, float, float]]  # (step, tag, value, wall time in seconds)
    hparams: dict[str, Any] = field(default_factory=dict)
    metric_tags: set[str] = field(default_factory=set)  # the metric_dict tags of add_hparams


#: The user-metadata key holding how many events the import wrote.
_EVENTS = "tensorboard_events"


def import_tb(logdir: str | os.PathLike[str], out: str | os.PathLike[str], *, overwrite: bool = False) -> int:
    """Convert every scalar under `logdir` to lossfmt; return the number of events written.

    A TensorBoard run is a directory holding ``*tfevents*`` files (read in name order, i.e. in time order);
    `logdir` may be one run, a tree of runs, or a single event file. If `out` ends in ``.arrow`` it is the one
    output file and `logdir` must hold exactly one run; if it is a directory (an existing one, or a new name
    without a suffix or ending in ``/``) it receives ``<run>.arrow`` per run (``<run>`` = the run's path
    relative to `logdir`, so nested runs give nested files); any other `out` is a ``ValueError``. Each event
    keeps its tag, step and wall time; value is the stored float; count 1, reduction mean, no epoch. Both
    scalar encodings are read: ``simple_value`` (``torch.utils.tensorboard``, tensorboardX, TF1) and scalar
    tensors of the scalars plugin (TF2 ``tf.summary.scalar``). Runs without scalars produce no file.
    Existing output files raise ``FileExistsError`` unless `overwrite`, which replaces only files an earlier
    import wrote: any other file (a lossfmt training run, a foreign file) raises `NotAnImportError` (a
    ``FileExistsError``). Several runs for one output file raise `TooManyRunsError` (a
    `lossfmt.LossfmtError` and a ``ValueError``). Every refusal comes before anything is written.
    """
    return sum(import_tb_files(logdir, out, overwrite=overwrite).values())


def import_tb_files(
    logdir: str | os.PathLike[str], out: str | os.PathLike[str], *, overwrite: bool = False
) -> dict[Path, int]:
    """What `import_tb` does, returning the files written (in run order) with the events of each."""
    single = _is_one_file(out)
    runs = _merge_hparams([_load(name, files) for name, files in _find_runs(Path(logdir))])
    if not runs:
        raise FileNotFoundError(f"{os.fspath(logdir)}: no TensorBoard event files (*tfevents*) found")
    if single and len(runs) > 1:
        names = ", ".join(run.name for run in runs[:_NAMES_SHOWN])
        if len(runs) > _NAMES_SHOWN:
            names += f" and {len(runs) - _NAMES_SHOWN} more"
        raise TooManyRunsError(
            f"{os.fspath(logdir)} holds {len(runs)} TensorBoard runs ({names}); "
            "give a directory as OUT to write one .arrow file per run"
        )
    out = Path(out)
    targets = [(run, out if single else out / f"{run.name}.arrow") for run in runs if run.rows]
    for _, target in targets:
        _check_target(target, overwrite=overwrite)
    written: dict[Path, int] = {}
    for run, target in targets:
        target.parent.mkdir(parents=True, exist_ok=True)
        _write_closed(target, _table(run))
        written[target] = len(run.rows)
    return written


def _is_one_file(out: str | os.PathLike[str]) -> bool:
    """Whether `out` is the one output file (``.arrow``) rather than a directory of them. Anything else is
    refused before a run is read: ``out.arow`` once became a directory holding ``out.arow/<run>.arrow``."""
    path = Path(out)
    if path.is_dir():
        return False
    if not path.absolute().parent.is_dir():  # a typo in OUT must not create a tree of directories
        raise FileNotFoundError(2, "No such directory", os.fspath(path.absolute().parent))
    as_directory = os.fspath(out).endswith(("/", os.sep))
    if path.suffix.lower() == ".arrow" and not as_directory:
        return True
    if not os.path.lexists(path) and (as_directory or not path.suffix):
        return False
    raise ValueError(
        f"{os.fspath(out)}: OUT must be a .arrow file or a directory (a new directory's name has no suffix, "
        "or ends in /)"
    )


def _check_target(target: Path, *, overwrite: bool) -> None:
    """Refuse an existing `target` unless `overwrite`, and even then unless an earlier import wrote it."""
    if not os.path.lexists(target):
        return
    keep = "overwriting replaces only earlier TensorBoard imports (move it, or choose another OUT)"
    if target.is_dir():
        raise NotAnImportError(f"{target}: is a directory; {keep}")
    if not overwrite:
        raise FileExistsError(f"{target}: already exists; remove it or pass overwrite=True")
    try:
        meta = _header_meta(target)
    except (LossfmtError, OSError):
        raise NotAnImportError(f"{target}: not a readable lossfmt file; {keep}") from None
    if not (meta.get("imported_from") == "tensorboard" and "tensorboard_run" in meta):
        raise NotAnImportError(f"{target}: a lossfmt run that no TensorBoard import wrote; {keep}")
    imported = meta.get(_EVENTS)
    if type(imported) is not int:
        raise NotAnImportError(
            f"{target}: an import without its event count (an older lossfmt wrote it), so a run resumed "
            f"after it cannot be told from it; {keep}"
        )
    held = _read.read(target).num_rows
    if held != imported:
        raise NotAnImportError(
            f"{target}: holds {held:,} events where its import wrote {imported:,} (a run resumed after the "
            f"import); {keep}"
        )


def _header_meta(path: Path) -> dict[str, Any]:
    """The user metadata of the lossfmt file `path`, from its header alone (the run may be large)."""
    with open(path, "rb") as file:
        data = file.read(16)
        length = int.from_bytes(data[12:16], "little", signed=True)
        data += file.read(max(0, min(length, os.fstat(file.fileno()).st_size)))
    header, *_ = _framing.head(data, pa.py_buffer(data), os.fspath(path))
    schema.check_schema(header, path)
    meta: dict[str, Any] = schema.run_info(header)["meta"]
    return meta


def _find_runs(logdir: Path) -> list[tuple[str, list[Path]]]:
    """(run name, event files in name order) for every directory under `logdir` holding event files."""
    if logdir.is_file():
        if not IsTensorFlowEventsFile(logdir.name):  # the record reader would read a foreign file as empty
            raise FileNotFoundError(f"{logdir}: not a TensorBoard event file (its name has no 'tfevents')")
        return [(logdir.parent.name or "run", [logdir])]
    runs = []
    for directory, _, files in sorted(os.walk(logdir)):
        events = sorted(Path(directory) / f for f in files if IsTensorFlowEventsFile(f))
        if events:
            relative = Path(directory).relative_to(logdir).as_posix()
            name = relative if relative != "." else (logdir.resolve().name or "run")
            runs.append((name, events))
    return runs


def _load(name: str, files: list[Path]) -> _Run:
    """Read one run directory's event files: every scalar, and the hparams of an ``add_hparams`` call."""
    run = _Run(name, files[0].parent, [])
    scalar_tags: set[str] = set()
    for path in files:
        for event in LegacyEventFileLoader(str(path)).Load():
            if not event.HasField("summary"):
                continue
            for value in event.summary.value:
                plugin = value.metadata.plugin_data.plugin_name
                kind = value.WhichOneof("value")
                if plugin == _HPARAMS_PLUGIN:
                    _read_hparams(run, value.metadata.plugin_data.content)
                elif kind == "simple_value":
                    run.rows.append((event.step, value.tag, value.simple_value, event.wall_time))
                elif kind == "tensor":
                    if plugin == _SCALARS_PLUGIN:
                        scalar_tags.add(value.tag)
                    if value.tag in scalar_tags:
                        scalar = float(make_ndarray(value.tensor).item())
                        run.rows.append((event.step, value.tag, scalar, event.wall_time))
    return run


def _read_hparams(run: _Run, content: bytes) -> None:
    """Record the hparams (session start) and metric tags (experiment) of an hparams plugin summary."""
    data = plugin_data_pb2.HParamsPluginData.FromString(content)
    if data.HasField("session_start_info"):
        for key, value in data.session_start_info.hparams.items():
            kind = value.WhichOneof("kind")
            item: Any = getattr(value, kind) if kind in ("string_value", "bool_value") else None
            if kind == "number_value":  # protobuf numbers are doubles: 32 is stored as 32.0
                item = int(value.number_value) if value.number_value.is_integer() else value.number_value
            run.hparams[key] = item
    if data.HasField("experiment"):
        run.metric_tags.update(info.name.tag for info in data.experiment.metric_infos)


def _merge_hparams(runs: list[_Run]) -> list[_Run]:
    """Fold each ``add_hparams`` directory into the run that called it.

    ``SummaryWriter.add_hparams`` writes into a new subdirectory of the writer's run (named by the time),
    holding the hparams and the metric_dict values as scalars. When that subdirectory holds nothing else
    and its parent is a run with scalars of its own, the hparams become the parent's metadata and the
    metric values its ``hparam_metrics``, instead of a run of their own. (Calls from a writer that logs
    nothing else, as in a sweep logging one add_hparams per trial, stay one run per trial, with metadata.)
    """
    by_dir = {run.directory: run for run in runs}
    kept = []
    for run in runs:
        parent = by_dir.get(run.directory.parent)
        only_hparams = run.hparams and {tag for _, tag, _, _ in run.rows} <= run.metric_tags
        if parent is not None and parent is not run and only_hparams and parent.rows:
            parent.hparams.update(run.hparams)
            metrics = {tag: value for _, tag, value, _ in run.rows}
            parent.metric_tags.update(metrics)
            parent.hparams.setdefault("hparam_metrics", {}).update(metrics)
        else:
            kept.append(run)
    return kept


def _table(run: _Run) -> pa.Table:
    """All scalars of one run as a lossfmt table (schema with the run's metadata and hparams)."""
    rows = run.rows
    steps, tags, values, times = zip(*rows, strict=True) if rows else ((), (), (), ())
    n = len(rows)
    micros = np.round(np.asarray(times, dtype=np.float64) * 1e6).astype(np.int64)
    # (the event count tells this import from a run resumed after it: overwrite replaces only the former)
    meta = {**run.hparams, "imported_from": "tensorboard", "tensorboard_run": run.name, _EVENTS: len(rows)}
    file_schema = schema.make_schema(run.name, meta)
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
    """Write `table` as a closed lossfmt file through the one closed-file writer (atomic, locked, fsynced,
    checksummed, in the spec's batch size)."""
    table = table.unify_dictionaries().combine_chunks()
    _file.write_closed(path, table.schema, table.to_batches())
