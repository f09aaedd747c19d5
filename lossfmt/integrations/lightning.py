"""PyTorch Lightning logger writing one lossfmt file per run.

    from lossfmt.integrations.lightning import LossfmtLogger
    trainer = lightning.Trainer(logger=LossfmtLogger("runs/exp1.arrow"), max_epochs=10)

Every ``self.log(...)`` that reaches the logger becomes one event per metric, at Lightning's step (the
number of optimizer steps taken), with the epoch Lightning attaches. Hyperparameters
(``self.save_hyperparameters()``) become the run metadata (``lossfmt.meta``), which lives in the file's
schema, written when the file is created: the file is therefore created lazily, at the first logged
metrics, by which time Lightning has logged the hyperparameters. Hyperparameters logged later are merged
into the metadata when the run is finalized (lossfmt merges metadata passed on reopening into the file at
close). Only global rank 0 writes, as with Lightning's own loggers; to log every rank use
``lossfmt.integrations.torch_distributed.rank_writer``.
"""

from __future__ import annotations

import os
from argparse import Namespace
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only

from lossfmt import LossWriter


class LossfmtLogger(Logger):
    """A Lightning ``Logger`` writing metrics to `path` and hyperparameters into its run metadata.

    The count of every event is 1 (Lightning does not pass batch sizes to loggers); the ``epoch`` column
    comes from the ``epoch`` entry Lightning adds to each metrics dict. ``finalize`` (called by the
    ``Trainer`` at the end of ``fit``/``test``, also on failure) closes the file, leaving it compacted; so
    does SIGTERM/SIGINT (``close_on_signal``: the handler Lightning or SLURM installed still runs after).
    Checkpoints go to ``<path's directory>/<run>/checkpoints`` when the ``Trainer`` uses this logger.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        run: str | None = None,
        meta: Mapping[str, Any] | None = None,
        flush_secs: float = 1.0,
    ) -> None:
        super().__init__()
        self._path = Path(path)
        self._run = run if run is not None else self._path.stem
        self._meta: dict[str, Any] = {"framework": "lightning", **(meta or {})}
        self._late_meta: dict[str, Any] = {}
        self._flush_secs = flush_secs
        self._writer: LossWriter | None = None

    @property
    def name(self) -> str:
        """The run name (the file stem unless `run` was given)."""
        return self._run

    @property
    def version(self) -> str:
        """Empty: a run is identified by its file (and the run id inside it), not by a version directory."""
        return ""

    @property
    def save_dir(self) -> str:
        """The directory holding the run file."""
        return str(self._path.parent)

    @property
    def root_dir(self) -> str:
        return str(self._path.parent)

    @property
    def log_dir(self) -> str:
        return str(self._path.parent)

    @property
    def path(self) -> Path:
        """The run file."""
        return self._path

    @property
    @rank_zero_experiment
    def experiment(self) -> LossWriter:
        """The open ``LossWriter`` (created on first use), to log directly: ``logger.experiment.add(...)``."""
        if self._writer is None or self._writer.closed:
            self._writer = LossWriter(
                self._path, run=self._run, meta=self._meta, flush_secs=self._flush_secs, close_on_signal=True
            )
            self._late_meta = {}
        return self._writer

    @rank_zero_only
    def log_hyperparams(self, params: Mapping[str, Any] | Namespace, *args: Any, **kwargs: Any) -> None:
        """Record hyperparameters as run metadata (JSON; values JSON cannot hold are stored as strings)."""
        params = vars(params) if isinstance(params, Namespace) else dict(params)
        if self._writer is None:
            self._meta.update(params)
        else:
            self._late_meta.update(params)

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Add one event per metric at `step` (0 if none), with the ``epoch`` entry Lightning adds."""
        values = dict(metrics)
        epoch = values.pop("epoch", None)
        if values:
            self.experiment.add_many(
                0 if step is None else int(step), values, epoch=None if epoch is None else int(epoch)
            )

    @rank_zero_only
    def save(self) -> None:
        """Nothing to do: the writer's background thread flushes at least every `flush_secs`."""

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """Close the file (flushed and compacted), merging hyperparameters logged after it was created."""
        if self._writer is None:
            return
        self._writer.close()
        if self._late_meta:
            LossWriter(self._path, meta=self._late_meta).close()
            self._late_meta = {}
