"""Hugging Face Transformers: a ``TrainerCallback`` writing the Trainer's training and eval losses to lossfmt.

    from lossfmt.integrations.transformers import LossfmtCallback
    trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=val,
                      callbacks=[LossfmtCallback("runs/exp1.arrow")])

Each training log (every ``logging_steps`` optimizer steps) becomes a ``loss`` event at the Trainer's
``global_step``: the Trainer's own value (the mean of the per-step losses since the previous log), with the
number of training samples those steps consumed as ``count`` (so the epoch's ragged last batch counts what
it holds) and the epoch being trained. Per-item epoch means are exact with ``logging_steps=1`` (or when
``logging_steps`` divides an epoch's steps and the epoch has no ragged last step): the Trainer's value is a
plain mean over its steps, so the callback warns when training starts if a log will span two epochs or mix
the ragged step with full ones. Each evaluation adds ``eval_loss`` (and any other ``*_loss`` the
Trainer reports, e.g. ``eval_<name>_loss`` for several eval sets) with the eval set's size as ``count``.
The file is opened when training starts (hyperparameters from ``TrainingArguments`` and the model config
go into the run metadata) and closed, compacted, when it ends; an evaluation outside training appends to
it, in the last epoch trained (``state.epoch`` 2.0 after two epochs is epoch 1, as the last in-training
evaluation has it). Only the main process writes: the Trainer has already averaged the loss across processes.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

try:
    from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
except ImportError as exc:
    raise ImportError(
        "lossfmt.integrations.transformers needs Hugging Face Transformers: pip install transformers"
    ) from exc

from lossfmt import LossWriter

__all__ = ["LossfmtCallback"]

#: TrainingArguments recorded in the run metadata (the hyperparameters people compare runs by).
_HPARAMS = (
    "learning_rate",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "num_train_epochs",
    "max_steps",
    "weight_decay",
    "warmup_steps",
    "lr_scheduler_type",
    "optim",
    "seed",
)
# Options passed to every LossWriter this callback opens: flush and close on SIGTERM/SIGINT, so a preempted
# job (SLURM, Kubernetes) keeps every added event.
_WRITER_OPTIONS: dict[str, Any] = {"close_on_signal": True}


class LossfmtCallback(TrainerCallback):
    """Write the Trainer's training loss (with per-sample counts and epochs) and eval losses to `path`.

    `run` names the run (default: the file stem); `meta` is merged into the run metadata after the
    hyperparameters taken from ``TrainingArguments`` and ``model.config.model_type``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        run: str | None = None,
        meta: Mapping[str, Any] | None = None,
        flush_secs: float = 1.0,
    ) -> None:
        self.path = Path(path)
        self._run = run
        self._meta = dict(meta or {})
        self._flush_secs = flush_secs
        self._writer: LossWriter | None = None
        self._epoch = 0
        self._epoch_size: int | None = None  # training samples per epoch, when the dataset has a length
        self._epoch_steps: int | None = None  # optimizer steps per epoch, when the dataloader has a length
        self._in_epoch = 0  # samples consumed so far in this epoch
        self._window = 0  # samples consumed since the last training log

    def _open(self, meta: Mapping[str, Any] | None = None) -> LossWriter:
        if self._writer is None or self._writer.closed:
            self._writer = LossWriter(
                self.path, run=self._run, meta=meta, flush_secs=self._flush_secs, **_WRITER_OPTIONS
            )
        return self._writer

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """Open the file with the run's hyperparameters as metadata (main process only)."""
        if not state.is_world_process_zero:
            return
        meta: dict[str, Any] = {"framework": "transformers", "world_size": args.world_size}
        meta.update({name: getattr(args, name) for name in _HPARAMS if hasattr(args, name)})
        model_type = getattr(getattr(kwargs.get("model"), "config", None), "model_type", None)
        if model_type:
            meta["model_type"] = model_type
        meta.update(self._meta)
        self._open(meta)
        self._epoch_size = _epoch_samples(kwargs.get("train_dataloader"), args)
        self._epoch_steps = _epoch_steps(kwargs.get("train_dataloader"), args)
        self._window = 0
        _warn_if_approximate(args, state, self._epoch_size, self._epoch_steps)

    def on_epoch_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._epoch = math.floor(state.epoch or 0)
        # Resumed from a checkpoint inside this epoch: its first steps were trained before (and are skipped).
        done = state.global_step - self._epoch * self._epoch_steps if self._epoch_steps else 0
        self._in_epoch = max(done, 0) * _step_samples(args)
        if self._epoch_size is not None:
            self._in_epoch = min(self._in_epoch, self._epoch_size)

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """Count the samples this optimizer step consumed (fewer at the end of an epoch)."""
        n = _step_samples(args)
        if self._epoch_size is not None:
            n = max(0, min(n, self._epoch_size - self._in_epoch))
        self._in_epoch += n
        self._window += n

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """A training log: its ``loss`` at the current step, counting the samples since the last log."""
        if not state.is_world_process_zero or not logs or "loss" not in logs:
            return
        self._open().add(
            state.global_step, logs["loss"], "loss", count=max(self._window, 1), epoch=self._epoch
        )
        self._window = 0

    def on_evaluate(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        metrics: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Every ``*_loss`` of an evaluation, counting the eval set's samples; appends after training too."""
        if not state.is_world_process_zero or not metrics:
            return
        losses = {k: v for k, v in metrics.items() if k.endswith("_loss") and isinstance(v, (int, float))}
        if not losses:
            return
        count = _dataset_size(kwargs.get("eval_dataloader")) or 1
        training = self._writer is not None and not self._writer.closed
        writer = self._open()
        epoch = self._epoch if training else _last_epoch_trained(state)
        writer.add_many(state.global_step, losses, count=count, epoch=epoch)
        if not training:
            writer.close()

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """Close the file: flushed and compacted into a standard Arrow IPC file."""
        if self._writer is not None:
            self._writer.close()


def _last_epoch_trained(state: TrainerState) -> int | None:
    """The 0-based epoch of the last step trained, from the Trainer's fractional ``state.epoch`` (2.0 at the
    end of the second epoch: 1, as ``on_epoch_begin``'s floor numbered it); None before any training."""
    if not state.epoch:
        return None
    return max(math.ceil(state.epoch) - 1, 0)


def _dataset_size(dataloader: Any) -> int | None:
    try:
        return len(dataloader.dataset)
    except (AttributeError, TypeError):  # no dataloader, or an iterable dataset without a length
        return None


def _epoch_samples(dataloader: Any, args: TrainingArguments) -> int | None:
    """Training samples per epoch (all processes), or None when the dataset has no length."""
    size = _dataset_size(dataloader)
    if size is None:
        return None
    if args.dataloader_drop_last:
        per_batch: int = args.train_batch_size * args.world_size
        return size // per_batch * per_batch
    return size


def _step_samples(args: TrainingArguments) -> int:
    """Training samples of one full optimizer step, across processes."""
    return int(args.train_batch_size * args.gradient_accumulation_steps * args.world_size)


def _epoch_steps(dataloader: Any, args: TrainingArguments) -> int | None:
    """Optimizer steps per epoch, as the Trainer counts them (a last partial accumulation is a step)."""
    try:
        batches = len(dataloader)
    except TypeError:  # no dataloader, or one without a length
        return None
    return max(math.ceil(batches / args.gradient_accumulation_steps), 1)


def _warn_if_approximate(
    args: TrainingArguments, state: TrainerState, size: int | None, steps: int | None
) -> None:
    """Say when per-item epoch means cannot be exact: the Trainer logs the plain mean of the steps since its
    last log, so a log spanning two epochs, or mixing the epoch's ragged last step with full ones, is one
    value for samples the per-item mean would weigh differently."""
    if size is None or steps is None or args.logging_strategy != "steps":
        return
    every = args.logging_steps if args.logging_steps >= 1 else math.ceil(state.max_steps * args.logging_steps)
    ragged = size % _step_samples(args) != 0
    if every <= 1 or (steps % every == 0 and not ragged):
        return
    if steps % every:
        what = f"does not divide the {steps} optimizer steps of an epoch: some logged means span two epochs"
    else:
        what = "puts an epoch's ragged last step and full ones in one logged mean"
    warnings.warn(
        f"lossfmt: logging_steps={every:g} {what}; per-item epoch means (read_pandas(per='epoch', "
        "normalize='per-item'), lossview --per epoch) are approximate; logging_steps=1 makes them exact",
        UserWarning,
        stacklevel=2,
    )
