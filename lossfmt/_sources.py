"""Sources: which files a path, glob, directory or list names, how their runs are labelled, which tags match.

The one owner of these rules: `lossfmt.read`, `lossfmt.dataset` and lossview all resolve sources here, so a
run is named and a tag is matched the same way everywhere. A source may also be a URL (``s3://``, ``gs://``,
``hdfs://``, or any fsspec protocol such as ``memory://`` or ``az://``) naming closed runs that were copied to
object storage: URLs are listed and read by `lossfmt._urls`.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import stat
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import pyarrow as pa

from lossfmt import _arrow, _checks
from lossfmt import schema as s
from lossfmt._urls import GLOB_CHARS as _GLOB_CHARS
from lossfmt._urls import expand_url as _expand_url
from lossfmt._urls import is_url, locate, open_url, scan_url, split_url, stat_url

__all__ = [
    "PathLike",
    "Source",
    "expand",
    "is_url",
    "locate",
    "matching_tags",
    "open_file",
    "open_url",
    "run_labels",
    "run_paths",
    "scan_url",
    "select_tags",
    "shown",
    "stat_url",
    "tag_names",
    "tag_patterns",
    "utf8",
]

PathLike = str | os.PathLike[str]
Source = PathLike | Iterable[PathLike]


def expand(source: PathLike | Iterable[PathLike]) -> tuple[list[str], bool]:
    """Resolve a source into file paths, and whether it names several runs (and so needs a `run` column).
    The rules are `run_paths`'s. LossFormatError names the item that resolves to nothing, and why."""
    if isinstance(source, (str, os.PathLike)):
        items, multi = [os.fspath(source)], False
    elif isinstance(source, (bytes, bytearray)) or not isinstance(source, Iterable):
        kind = type(source).__name__
        raise TypeError(f"source must be a path, a glob, a URL or a list of them, not {kind}")
    else:
        items, multi = [os.fspath(p) for p in source], True
        if any(isinstance(item, bytes) for item in items):
            raise TypeError("source paths must be str or os.PathLike, not bytes (decode: os.fsdecode(path))")
        if not items:
            raise s.LossFormatError("no files given")
    paths: list[str] = []
    for item in items:
        found, several = _expand_url(item) if is_url(item) else _expand_local(item)
        paths.extend(found)
        multi = multi or several
    paths = _distinct(paths)
    if multi and len(items) > 1:  # files named one by one (a shell's glob): as a glob's files
        paths = _without_empty(paths, "the files given")
    return paths, multi


def _expand_local(item: str) -> tuple[list[str], bool]:
    """The run files a local path, directory or glob names, and whether it names several."""
    try:
        mode = os.stat(item).st_mode
    except (FileNotFoundError, NotADirectoryError):
        mode = None
    except OSError as exc:
        raise s.LossFormatError(f"{item}: cannot read ({exc.strerror or exc})") from None
    if mode is not None and stat.S_ISDIR(mode):
        return _directory_runs(item), True
    if mode is not None or os.path.lexists(item):
        return [item], False  # scan() says what is wrong with it if it is not a regular lossfmt file
    if _GLOB_CHARS & set(item):
        found = sorted(p for p in glob.glob(item, recursive=True) if os.path.isfile(p))
        if not found:
            raise s.LossFormatError(f"{item}: no files match")
        return _without_empty(found, item), True
    raise s.NoSuchFileError(f"{item}: no such file")


def _directory_runs(directory: str) -> list[str]:
    """The regular files named ``*.arrow`` directly in `directory` (not hidden), sorted; LossFormatError if
    there are none, saying why: the directory cannot be listed, what was skipped, or runs only deeper down."""
    try:
        with os.scandir(directory) as entries:
            named = sorted(
                (e.name, _is_regular(e))
                for e in entries
                if e.name.endswith(".arrow") and not e.name.startswith(".")
            )
    except OSError as exc:
        raise s.LossFormatError(f"{directory}: cannot list this directory ({exc.strerror or exc})") from None
    found = [os.path.join(directory, name) for name, regular in named if regular]
    if found:
        return _without_empty(found, directory)
    why = ""
    if named:
        skipped = ", ".join(name for name, _ in named[:3]) + (" ..." if len(named) > 3 else "")
        why = f" (skipped, not regular files: {skipped})"
    elif glob.glob(os.path.join(glob.escape(directory), "**", "*.arrow"), recursive=True):
        deeper = os.path.join(directory, "**", "*.arrow")
        why = f"; runs in its subdirectories are read with the glob {deeper!r}"
    raise s.LossFormatError(f"{directory}: directory has no .arrow files{why}")


def _without_empty(paths: list[str], item: str) -> list[str]:
    """`paths` (what a directory or glob `item` names) without the empty files, told in one warning: a run
    whose writer has just created its file (or was killed before its header) is not a read error of the
    sweep; if every file is empty, LossFormatError."""
    sizes = {p: _size(p) for p in paths}
    empty = [p for p in paths if sizes[p] == 0]
    if not empty:
        return paths
    listed = ", ".join(empty[:3]) + (f" and {len(empty) - 3} more" if len(empty) > 3 else "")
    if len(empty) == len(paths):
        raise s.LossFormatError(f"{item}: only empty files ({listed}): no writer has written a header yet")
    warnings.warn(
        f"lossfmt: skipped {len(empty)} empty file{'s' if len(empty) > 1 else ''} in {item} ({listed}): a "
        "writer that just started, or one killed before it wrote its header",
        UserWarning,
        stacklevel=_checks.user_stacklevel(),
    )
    return [p for p in paths if sizes[p] != 0]


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return -1  # (gone meanwhile: reading it says so)


def _is_regular(entry: os.DirEntry[str]) -> bool:
    """Whether a directory entry is a regular file, or a symlink to one that can be reached."""
    try:
        return entry.is_file()
    except OSError:
        return False


def _distinct(paths: list[str]) -> list[str]:
    """`paths` without repeats of a file already listed (the same path spelt otherwise, a symlink or a hard
    link to it): the first spelling is kept, so a run is read, and counted, once."""
    seen: set[object] = set()
    kept = []
    for path in paths:
        key: object = path
        if not is_url(path):
            try:
                info = os.stat(path)
                key = (info.st_dev, info.st_ino)
            except OSError:
                key = os.path.realpath(path)
        if key not in seen:
            seen.add(key)
            kept.append(path)
    return kept


def run_labels(paths: Sequence[str], runs: Sequence[str]) -> list[str]:
    """Run names from metadata; files sharing a name are told apart by the shortest distinct path suffix (its
    bytes that are not UTF-8 shown as U+FFFD: a label is stored as an Arrow string)."""
    labels = list(runs)
    groups: dict[str, list[int]] = {}
    for i, name in enumerate(runs):  # one pass: a sweep has thousands of runs
        groups.setdefault(name, []).append(i)
    for group in (g for g in groups.values() if len(g) > 1):
        parts = [Path(_local_form(paths[i])).with_suffix("").parts for i in group]
        depth = 1
        while depth < max(len(p) for p in parts) and len({p[-depth:] for p in parts}) < len(parts):
            depth += 1
        for i, p in zip(group, parts, strict=True):
            suffix = "/".join(p[-depth:])
            labels[i] = suffix if suffix == runs[i] else f"{runs[i]} ({suffix})"
    return [shown(label) for label in labels]


def open_file(path: str) -> pa.NativeFile:
    """A run file opened for pyarrow to read: a URL through its filesystem, a local path directly, or through
    Python's own file where pyarrow cannot name it (a file name that is not UTF-8: see `utf8`)."""
    if is_url(path):
        return open_url(path)
    return pa.OSFile(path, "r") if utf8(path) else pa.PythonFile(open(path, "rb"), mode="r")


def utf8(path: str) -> bool:
    """Whether pyarrow and Polars can name `path`: they take paths as UTF-8, and a file name of other bytes
    (Latin-1, as ``os.listdir`` gives it: with surrogates) has none."""
    try:
        path.encode()
    except UnicodeEncodeError:
        return False
    return True


def shown(path: str) -> str:
    """`path` as text that can be stored (UTF-8): a file name of other bytes with U+FFFD for them."""
    return path if utf8(path) else os.fsencode(path).decode("utf-8", "replace")


def _local_form(path: str) -> str:
    """A URL as the path it names (no scheme, no options), for labels; a local path as it is."""
    return split_url(path)[1] if is_url(path) else path


def tag_patterns(tags: Sequence[str] | str) -> list[str]:
    """`tags` as a list of patterns, checked: a str is one pattern; an empty one, or an empty list (which
    would select nothing, silently), is a ValueError; anything but text a TypeError. (No filter is None.)"""
    patterns = [tags] if isinstance(tags, str) else list(tags) if isinstance(tags, Iterable) else None
    if patterns is None or isinstance(tags, bytes | bytearray):
        raise TypeError(f"tags must be a tag name, a glob or a list of them, got {type(tags).__name__}")
    if not patterns:
        raise ValueError("tags is empty: name at least one tag or glob, or pass None for every tag")
    for pattern in patterns:
        if not isinstance(pattern, str):
            raise TypeError(f"tags must be text, got {type(pattern).__name__} {pattern!r:.40}")
        if not pattern:
            raise ValueError("tags has an empty tag name (lossfmt tags are never empty)")
    return patterns


def tag_names(table: pa.Table) -> set[str]:
    """The tags that occur in `table` (the names its events use, not every entry of the dictionary)."""
    names: set[str] = set()
    for column_chunk in table.column(s.TAG).chunks:  # (bincount: np.unique imports numpy.ma)
        chunk = cast("pa.DictionaryArray[Any, Any]", column_chunk)
        used = np.flatnonzero(np.bincount(_arrow.to_numpy(chunk.indices), minlength=len(chunk.dictionary)))
        names.update(cast("list[str]", chunk.dictionary.take(_arrow.array(used, pa.int64())).to_pylist()))
    return names


def matching_tags(patterns: Sequence[str], names: Iterable[str]) -> set[str]:
    """The names of `names` that `patterns` select: a pattern equal to one of the names selects exactly that
    name (so a tag ``a[1]`` is not also ``a1``); any other pattern is a case-sensitive fnmatch glob."""
    names = set(names)
    chosen = {p for p in patterns if p in names}
    globs = [p for p in patterns if p not in names and _GLOB_CHARS & set(p)]
    return chosen | {n for n in names if any(fnmatch.fnmatchcase(n, g) for g in globs)}


def select_tags(
    table: pa.Table, tags: Sequence[str] | str, *, among: Iterable[str] | None = None
) -> pa.Table:
    """The events of `table` whose tag `tags` selects: a pattern equal to an existing tag means exactly that
    tag, any other pattern is a case-sensitive fnmatch glob (``*``, ``?``, ``[seq]``). Existing tags are the
    table's own, or `among` (e.g. the tags of every run read together, so that each run selects alike).
    ``""`` or ``[]`` is a ValueError: None, not an empty selection, means every tag."""
    patterns = tag_patterns(tags)
    if table.num_rows == 0:
        return table
    wanted = matching_tags(patterns, tag_names(table) if among is None else among)
    masks = []
    for column_chunk in table.column(s.TAG).chunks:
        chunk = cast("pa.DictionaryArray[Any, Any]", column_chunk)  # the tag column is dictionary-encoded
        names = chunk.dictionary.to_pylist()
        keep = np.fromiter((n in wanted for n in names), bool, len(names))
        masks.append(_arrow.array(keep[_arrow.to_numpy(chunk.indices)]))
    return table.filter(pa.chunked_array(masks, pa.bool_()))


def run_paths(source: Source) -> list[str]:
    """The run files `source` names: a file, a glob, a directory or a list of those.

    A directory means the regular files named ``*.arrow`` directly in it, sorted (not hidden ones, not
    subdirectories, not dangling links); runs in subdirectories are read with a recursive glob such as
    ``runs/**/*.arrow``. A glob matches regular files only. A path named explicitly is taken as it is
    (reading it says what is wrong with it). A file reached twice (listed twice, spelt ``./a.arrow`` and
    ``a.arrow``, or through a symlink or hard link) is kept once, at its first mention; order is kept. A URL
    (``s3://bucket/sweep/``, ``gs://.../*.arrow``, any fsspec protocol) is listed the same way, and its runs
    come back as URLs. Raises LossFormatError naming what matched nothing, and why.
    """
    return expand(source)[0]


# --- URLs: closed runs on object storage --------------------------------------------------------------------
