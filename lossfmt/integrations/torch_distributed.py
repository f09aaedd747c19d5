"""Logging from every rank of a ``torch.distributed`` job: one file per rank, or rank 0 only.

    from lossfmt.integrations.torch_distributed import rank_writer

    dist.init_process_group("nccl")                       # or torchrun / mp.spawn / Lightning / Accelerate
    writer = rank_writer("runs/exp1/rank{rank}.arrow")    # every rank: its own file, one shared run name
    ...
    writer.add(step, loss, count=len(batch))              # each rank's local loss
    writer.close()

Files can't be shared between processes (each ``LossWriter`` holds its file's lock), so each rank writes its
own file, named by the ``{rank}`` placeholder; every rank file carries the same run name and its
``rank``/``world_size`` in the run metadata. Read them back merged, and reduced to the mean across ranks
with its spread: ``from lossfmt.dataset import read_ranks, mean_across``.
With ``rank0_only=True`` only rank 0 opens a file; the other ranks get a writer that accepts the same calls
and records nothing (log a value already reduced across ranks, e.g. with ``dist.all_reduce``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from lossfmt import LossWriter

_PLACEHOLDER = "{rank}"


class NullWriter:
    """What non-zero ranks get with ``rank0_only=True``: the calls of ``LossWriter``, recording nothing."""

    def __init__(self, run: str) -> None:
        self.run = run
        self.path = None
        self.closed = False

    def add(self, step: int, value: Any, tag: str = "loss", **kwargs: Any) -> None:
        """Record nothing: this rank does not log."""

    def add_many(self, step: int, values: Mapping[str, Any], **kwargs: Any) -> None:
        """Record nothing: this rank does not log."""

    def flush(self) -> None:
        """Nothing to write."""

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> NullWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def rank_writer(
    path: str | os.PathLike[str],
    *,
    rank0_only: bool = False,
    rank: int | None = None,
    world_size: int | None = None,
    run: str | None = None,
    meta: Mapping[str, Any] | None = None,
    **writer_options: Any,
) -> LossWriter | NullWriter:
    """A writer for this process's rank: ``LossWriter(path.format(rank=rank))``, or a ``NullWriter``.

    `rank`/`world_size` default to ``torch.distributed``'s when a process group is initialized, else to the
    ``RANK``/``WORLD_SIZE`` environment variables that torchrun sets, else 0/1. `path` must contain ``{rank}``
    unless `rank0_only` (several ranks can't share one file). `run` (the run name shared by all ranks)
    defaults to the path stem without the rank part: ``exp1.rank{rank}.arrow`` -> ``exp1``, and
    ``exp1/rank{rank}.arrow`` -> ``exp1``. `meta` gets ``rank`` and ``world_size`` added; `writer_options`
    go to ``LossWriter`` (``flush_secs``, ...; ``close_on_signal`` defaults to True here, so the scheduler's
    SIGTERM closes every rank's file before the process ends).
    """
    template = os.fspath(path)
    if rank is None or world_size is None:
        detected_rank, detected_world = _detect_rank()
        rank = detected_rank if rank is None else rank
        world_size = detected_world if world_size is None else world_size
    if _PLACEHOLDER not in template and not rank0_only:
        raise ValueError(
            f"{template}: put {_PLACEHOLDER} in the path so that every rank writes its own file "
            "(e.g. runs/exp1.rank{rank}.arrow), or pass rank0_only=True"
        )
    if run is None:
        run = _run_name(template)
    if rank0_only and rank != 0:
        return NullWriter(run)
    file_meta = {**(meta or {}), "rank": rank, "world_size": world_size}
    options = {"close_on_signal": True, **writer_options}
    return LossWriter(template.replace(_PLACEHOLDER, str(rank)), run=run, meta=file_meta, **options)


def _detect_rank() -> tuple[int, int]:
    try:
        import torch.distributed as dist
    except ImportError:
        pass
    else:
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def _run_name(template: str) -> str:
    """The run name all ranks share: the path stem without its ``rank{rank}`` part (or the directory)."""
    stem = Path(template).stem if template.endswith(".arrow") else Path(template).name
    name = re.sub(r"[._-]*(rank)?\{rank\}", "", stem).strip("._-")
    return name or Path(template).parent.name or "run"
