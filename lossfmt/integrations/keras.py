"""Keras 3 callback: every batch's loss (with its batch size as ``count``) and every epoch's metrics.

    from lossfmt.integrations.keras import LossfmtCallback
    model.fit(x, y, validation_split=0.2, callbacks=[LossfmtCallback("runs/mlp.arrow")])

Why not ``logs["loss"]``: in Keras 3 the ``logs`` passed to ``on_train_batch_end`` hold the *running mean
since the start of the epoch*, not the batch's loss, and ``self.params`` no longer carries the batch size.
Keras computes that running mean with ``keras.metrics.Mean`` trackers (``model.metrics``: ``loss`` and, for
several outputs, ``<output>_loss``) that it updates with the batch size as sample weight. The callback reads
each tracker's ``total`` and ``count`` after every batch: the differences since the previous batch are the
batch's exact loss (``dtotal / dcount``) and its size (``dcount`` of the ``loss`` tracker), ragged last batch
included (with ``steps_per_execution`` > 1, on backends that allow it, one event covers the execution's
batches). Reading them costs one small device-to-host copy per tracker and batch.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Mapping
from typing import Any

import keras

from lossfmt import LossWriter

_LOSS_TRACKER = "loss"
#: Epochs each model completed in fits logged by a LossfmtCallback in this process, so that a later fit
#: that Keras numbers from 0 again continues the epoch numbering.
_EPOCHS_DONE: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()


class LossfmtCallback(keras.callbacks.Callback):  # type: ignore[misc]  # keras ships no type information
    """Log a ``keras.Model.fit`` run to a lossfmt file, so seed 001's ``LossHistory`` becomes one line.

    Per batch (``step`` = batches trained so far; ``epoch`` = Keras' 0-based epoch): every loss tracker of
    ``model.metrics`` under its Keras name (``loss``, ``<output>_loss``), ``count`` = the batch size. Per
    epoch, at the step of the epoch's last batch: every other entry of Keras' epoch logs (``val_loss``,
    ``val_<output>_loss``, ``accuracy``, ``val_accuracy``, ``learning_rate``, ...), with ``count`` = the
    validation samples for ``val_*`` and the epoch's training samples otherwise.

    `path_or_writer`: a file path (the callback opens it when training begins, with Keras' ``params`` and
    `meta` as run metadata, and closes it when training ends or on SIGTERM/SIGINT (``close_on_signal``))
    or an open ``LossWriter`` (used as is, never closed: its owner closes it). A second ``fit``, with this
    callback or a new one, appends: its steps go on from the batches the model's optimizer has trained, its
    epochs after those logged for the model in this process (Keras numbers them from 0 again). A ``fit``
    that Keras starts at a later epoch (``initial_epoch``, or ``BackupAndRestore`` restoring a backup) keeps
    Keras' epoch and counts its steps from that epoch x steps per epoch, where Keras starts (or replays)
    it: what an interrupted attempt logged from there on is what viewers hide (``drop_rewound``).
    Entries that callbacks listed after this one add to the epoch's logs (``ReduceLROnPlateau``'s
    ``learning_rate``) are logged too, when the next epoch begins or training ends.
    """

    def __init__(
        self,
        path_or_writer: str | os.PathLike[str] | LossWriter,
        *,
        run: str | None = None,
        meta: Mapping[str, Any] | None = None,
        flush_secs: float = 1.0,
    ) -> None:
        super().__init__()
        if isinstance(path_or_writer, LossWriter):
            self.writer: LossWriter | None = path_or_writer
            self._path = None
        else:
            self.writer = None
            self._path = os.fspath(path_or_writer)
        self._run = run
        self._meta = dict(meta or {})
        self._flush_secs = flush_secs
        self._step = 0
        self._epoch = 0
        self._epoch_offset = 0  # added to Keras' epochs: the epochs of earlier fits Keras numbers again
        self._fit_began = False  # this fit's first epoch began (where its step and epoch counts are set)
        self._epoch_samples = 0
        self._val_samples = 0
        self._previous: dict[str, tuple[float, float]] = {}
        #: The last epoch's logs (Keras' dict, which later callbacks may add to), its step, epoch and the
        #: per-batch names; and the names logged from it so far.
        self._late: tuple[Mapping[str, Any], int, int, set[str]] | None = None
        self._logged: set[str] = set()

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        if self._path is not None:
            meta = {
                "framework": "keras",
                "keras_version": keras.__version__,
                "backend": keras.backend.backend(),
                **{k: v for k, v in (self.params or {}).items() if k != "verbose"},
                **self._meta,
            }
            self.writer = LossWriter(
                self._path, run=self._run, meta=meta, flush_secs=self._flush_secs, close_on_signal=True
            )
        self._fit_began = False

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        self._log_late()
        if not self._fit_began:
            self._begin_fit(epoch)
        # Keras resets its metric trackers when an epoch begins.
        self._epoch = epoch + self._epoch_offset
        self._epoch_samples = 0
        self._val_samples = 0
        self._previous = {}

    def _begin_fit(self, epoch: int) -> None:
        """Where this fit's steps and epochs go on (after every callback's on_train_begin: a restore)."""
        self._fit_began = True
        steps_per_epoch = (self.params or {}).get("steps")
        if epoch > 0 and steps_per_epoch:
            # fit(initial_epoch=N) or BackupAndRestore: Keras runs epoch N from its first batch, also when a
            # backup was taken inside it (the optimizer has then counted some of its batches already).
            self._step = epoch * steps_per_epoch
        else:  # a model trained before (another fit, a new callback on the same file) goes on
            self._step = max(self._step, _batches_trained(self.model))
        # Keras numbers this fit's epochs from 0 again unless it starts at a later one.
        self._epoch_offset = 0 if epoch > 0 else _EPOCHS_DONE.get(self.model, 0)

    def on_train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        sums = _tracker_sums(self.model)
        if _LOSS_TRACKER not in sums:
            raise RuntimeError(
                "LossfmtCallback: the model has no 'loss' metric tracker (a custom train_step without "
                "keras.metrics.Mean('loss')?); log from your train_step with a LossWriter instead"
            )
        values = {}
        for name, (total, count) in sums.items():
            prev_total, prev_count = self._previous.get(name, (0.0, 0.0))
            if count > prev_count:
                values[name] = (total - prev_total) / (count - prev_count)
        batch_size = round(sums[_LOSS_TRACKER][1] - self._previous.get(_LOSS_TRACKER, (0.0, 0.0))[1])
        self._previous = sums
        if values:
            self._epoch_samples += batch_size
            assert self.writer is not None  # opened or given by on_train_begin
            self.writer.add_many(self._step, values, count=max(batch_size, 1), epoch=self._epoch)
        self._step += 1

    def on_test_end(self, logs: Mapping[str, Any] | None = None) -> None:
        # fit() validates with the same trackers, reset first: their count is now the validation samples.
        self._val_samples = round(_tracker_sums(self.model).get(_LOSS_TRACKER, (0.0, 0.0))[1])

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        # Callbacks after this one may still add to `logs` (ReduceLROnPlateau its learning_rate): what they
        # add is logged when the next epoch begins or training ends (`_log_late`), at this epoch's step.
        epoch += self._epoch_offset
        self._late = (logs if logs is not None else {}, max(self._step - 1, 0), epoch, set(self._previous))
        self._log_epoch(self._late, set())
        _EPOCHS_DONE[self.model] = epoch + 1

    def _log_epoch(self, late: tuple[Mapping[str, Any], int, int, set[str]], done: set[str]) -> None:
        """The epoch's log entries not per batch and not in `done` (all, then the late ones)."""
        logs, step, epoch, per_batch = late
        train: dict[str, float] = {}
        val: dict[str, float] = {}
        for name, value in list(logs.items()):
            if name in per_batch or name in done or not _is_scalar(value):
                continue
            (val if name.startswith("val_") else train)[name] = float(value)
        if train:
            assert self.writer is not None  # opened or given by on_train_begin
            self.writer.add_many(step, train, count=max(self._epoch_samples, 1), epoch=epoch)
        if val:
            assert self.writer is not None
            self.writer.add_many(step, val, count=max(self._val_samples, 1), epoch=epoch)
        self._logged = set(done) | set(train) | set(val)

    def _log_late(self) -> None:
        if self._late is not None:
            self._log_epoch(self._late, self._logged)
            self._late = None

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        self._log_late()
        if self._path is not None and self.writer is not None:
            self.writer.close()
        elif self.writer is not None:
            self.writer.flush()


def _tracker_sums(model: keras.Model) -> dict[str, tuple[float, float]]:
    """Running (total, count) of every ``keras.metrics.Mean`` tracker the model reports, by metric name."""
    sums = {}
    for metric in model.metrics:
        if isinstance(metric, keras.metrics.Mean):
            sums[metric.name] = (float(metric.total), float(metric.count))
    return sums


def _batches_trained(model: keras.Model) -> int:
    """Batches the model's optimizer has trained on (0 before its first fit, or without an optimizer).

    With ``gradient_accumulation_steps=N`` Keras' ``optimizer.iterations`` counts updates (batches // N);
    its ``_iterations`` variable counts the batches (Keras 3's one counter, which it saves and restores).
    Read with ``int()`` (the backend's own scalar conversion): ``convert_to_numpy`` goes through the
    variable's ``__array__``, which warns under numpy 2 (an error under ``-W error``) on the torch backend."""
    optimizer: Any = getattr(model, "optimizer", None)
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)  # a LossScaleOptimizer's wrapped one
    try:
        counter = getattr(optimizer, "_iterations", None)
        if counter is None:
            counter = optimizer.iterations * (getattr(optimizer, "gradient_accumulation_steps", None) or 1)
        return int(counter)
    except (AttributeError, TypeError, ValueError):
        return 0


def _is_scalar(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True
