"""Sources: which files a path, glob, directory or list names, how their runs are labelled, which tags match.

The one owner of these rules: `lossfmt.read`, `lossfmt.dataset` and lossview all resolve sources here, so a
run is named and a tag is matched the same way everywhere.
"""

from __future__ import annotations

import fnmatch
import glob
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from lossfmt import _arrow
from lossfmt import schema as s

__all__ = ["PathLike", "Source", "expand", "run_labels", "run_paths", "select_tags"]

PathLike = str | os.PathLike[str]
Source = PathLike | Iterable[PathLike]

_GLOB_CHARS = frozenset("*?[")


def expand(source: PathLike | Iterable[PathLike]) -> tuple[list[str], bool]:
    """Resolve a source into file paths, and whether it names several runs (and so needs a `run` column)."""
    if isinstance(source, (str, os.PathLike)):
        items, multi = [os.fspath(source)], False
    else:
        items, multi = [os.fspath(p) for p in source], True
        if not items:
            raise s.LossFormatError("no files given")
    paths: list[str] = []
    for item in items:
        if os.path.isdir(item):
            found = sorted(glob.glob(os.path.join(glob.escape(item), "*.arrow")))
            if not found:
                raise s.LossFormatError(f"{item}: directory has no .arrow files")
            paths.extend(found)
            multi = True
        elif os.path.exists(item):
            paths.append(item)  # scan() says what is wrong with it if it is not a regular lossfmt file
        elif _GLOB_CHARS & set(item):
            found = sorted(p for p in glob.glob(item) if os.path.isfile(p))
            if not found:
                raise s.LossFormatError(f"{item}: no files match")
            paths.extend(found)
            multi = True
        else:
            raise s.LossFormatError(f"{item}: no such file")
    unique = list(dict.fromkeys(paths))
    return unique, multi


def run_labels(paths: Sequence[str], runs: Sequence[str]) -> list[str]:
    """Run names from metadata; files sharing a name are told apart by the shortest distinct path suffix."""
    labels = list(runs)
    for name in set(runs):
        group = [i for i, r in enumerate(runs) if r == name]
        if len(group) < 2:
            continue
        parts = [Path(paths[i]).with_suffix("").parts for i in group]
        depth = 1
        while depth < max(len(p) for p in parts) and len({p[-depth:] for p in parts}) < len(parts):
            depth += 1
        for i, p in zip(group, parts, strict=True):
            suffix = "/".join(p[-depth:])
            labels[i] = suffix if suffix == name else f"{name} ({suffix})"
    return labels


def select_tags(table: pa.Table, tags: Sequence[str] | str) -> pa.Table:
    """Keep events whose tag equals one of `tags` or matches it as an fnmatch glob."""
    patterns = [tags] if isinstance(tags, str) else list(tags)
    if table.num_rows == 0:
        return table
    masks = []
    for chunk in table.column(s.TAG).chunks:
        names = chunk.dictionary.to_pylist()
        keep = np.fromiter(
            (any(n == p or fnmatch.fnmatchcase(n, p) for p in patterns) for n in names), bool, len(names)
        )
        masks.append(_arrow.array(keep[_arrow.to_numpy(chunk.indices)]))
    return table.filter(pa.chunked_array(masks, pa.bool_()))


def run_paths(source: Source) -> list[str]:
    """The run files `source` names: a file, a glob, a directory (its ``*.arrow``, sorted) or a list of those.

    Raises LossFormatError naming what matched nothing. Duplicates are dropped, order is kept.
    """
    return expand(source)[0]
