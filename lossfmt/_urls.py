"""URL sources: runs copied to object storage (``s3://``, ``gs://``, ``hdfs://``, or any fsspec protocol such
as ``memory://`` or ``az://``), listed and read through a pyarrow filesystem (fsspec's when pyarrow has none).

`lossfmt._sources` resolves every source and re-exports what readers use from here (`is_url`, `locate`,
`open_url`, `stat_url`, `scan_url`).
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import pyarrow as pa

from lossfmt import schema as s

if TYPE_CHECKING:
    import os

    import pyarrow.fs as pafs

    from lossfmt.reader import Scan

__all__ = ["GLOB_CHARS", "expand_url", "is_url", "locate", "open_url", "scan_url", "split_url", "stat_url"]

GLOB_CHARS = frozenset("*?[")
#: scheme://...: RFC 3986 scheme characters. (A Windows drive "C:\\x" has no "//" and stays a path.)
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
#: URL schemes read with pyarrow's own filesystems; every other scheme goes through fsspec.
_NATIVE = frozenset({"s3", "gs", "gcs"})


def is_url(path: str | os.PathLike[str]) -> bool:
    """True if `path` is a URL (``scheme://...``) rather than a local path."""
    return isinstance(path, str) and _URL.match(path) is not None


def split_url(url: str) -> tuple[str, str, str]:
    """(``scheme://``, the rest, ``?query`` or "") of `url`: for ``s3://bucket/runs/a.arrow?region=x`` that
    is (``s3://``, ``bucket/runs/a.arrow``, ``?region=x``). The query holds filesystem options."""
    match = _URL.match(url)
    assert match is not None  # callers check is_url() first
    scheme = match.group(0)
    rest, _, query = url[len(scheme) :].partition("?")
    return scheme, rest, f"?{query}" if query else ""


@functools.lru_cache(maxsize=32)
def _filesystem(scheme: str, bucket: str, query: str) -> pafs.FileSystem:
    """The filesystem for one bucket (or host) and options; cached: one client per bucket, not per file.

    S3 and GCS use pyarrow's own clients (options as pyarrow's ``FileSystem.from_uri`` takes them, e.g.
    ``?endpoint_override=host:port&scheme=http``, or the usual AWS/GCP environment); any other protocol goes
    through fsspec (with the query as its storage options), so whatever fsspec can open is readable.
    ValueError says why a filesystem cannot be had (the caller names the URL).
    """
    import pyarrow.fs as pafs

    if scheme[:-3].lower() in _NATIVE:
        try:
            return pafs.FileSystem.from_uri(f"{scheme}{bucket}{query}")[0]
        except (pa.ArrowException, ValueError) as exc:
            raise ValueError(f"cannot open this URL ({exc})") from None
    try:
        import fsspec
    except ImportError:
        raise ValueError(
            f"reading {scheme} URLs needs fsspec (pip install fsspec, plus the package for this protocol)"
        ) from None
    from urllib.parse import parse_qsl

    try:
        fs = fsspec.filesystem(scheme[:-3], **dict(parse_qsl(query[1:])))
    except (ImportError, ValueError, TypeError) as exc:
        raise ValueError(f"cannot open this URL ({exc})") from None
    # pyarrow-stubs declare FSSpecHandler abstract, but pyarrow implements every method
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs))  # type: ignore[abstract]


def _fsspec(fs: pafs.FileSystem) -> Any:
    """The fsspec filesystem behind `fs`, a non-native URL's filesystem as `_filesystem` builds it."""
    handler = cast("pafs.PyFileSystem", fs).handler
    return cast("pafs.FSSpecHandler", handler).fs


def _url_filesystem(url: str) -> pafs.FileSystem:
    """The (cached) filesystem of `url`; LossFormatError naming the URL if there is none."""
    scheme, rest, query = split_url(url)
    try:
        return _filesystem(scheme, rest.split("/", 1)[0], query)
    except ValueError as exc:
        raise s.LossFormatError(f"{url}: {exc}") from None


def locate(url: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem holding `url` and the path of `url` inside it (for pyarrow.dataset)."""
    scheme, rest, _ = split_url(url)
    fs = _url_filesystem(url)
    if scheme[:-3].lower() in _NATIVE:
        return fs, rest  # pyarrow's S3 and GCS paths are bucket/key
    return fs, _fsspec(fs)._strip_protocol(f"{scheme}{rest}")


def _unlocate(url: str, inner: str) -> str:
    """The URL of `inner`, a path listed in `url`'s filesystem (same scheme, bucket and options)."""
    scheme, _, query = split_url(url)
    if scheme[:-3].lower() in _NATIVE:
        return f"{scheme}{inner}{query}"
    fs = _url_filesystem(url)
    return f"{_fsspec(fs).unstrip_protocol(inner)}{query}"


def expand_url(url: str) -> tuple[list[str], bool]:
    """The run files a URL names (a file, a prefix's ``*.arrow``, or a glob) and whether it names several."""
    import pyarrow.fs as pafs

    fs, inner = locate(url)
    pattern = GLOB_CHARS & set(inner)
    base = inner
    if pattern:
        parts = inner.split("/")
        fixed = next(i for i, part in enumerate(parts) if GLOB_CHARS & set(part))
        base = "/".join(parts[:fixed])
    try:
        info = fs.get_file_info(base)
        is_dir = info.type == pafs.FileType.Directory
        listed = fs.get_file_info(pafs.FileSelector(base, recursive=bool(pattern))) if is_dir else []
    except OSError as exc:
        raise s.LossFormatError(f"{url}: cannot list ({exc})") from None
    if not pattern and info.type == pafs.FileType.File:
        return [url], False
    if not is_dir:
        raise (
            s.LossFormatError(f"{url}: no files match")
            if pattern
            else s.NoSuchFileError(f"{url}: no such file")
        )
    files = [i.path for i in listed if i.type == pafs.FileType.File]
    if pattern:
        wanted = inner.split("/")
        found = sorted(p for p in files if _glob_match(p.split("/"), wanted))
    else:
        found = sorted(p for p in files if p.endswith(".arrow"))
    if not found:
        why = "no files match" if pattern else "directory has no .arrow files"
        raise s.LossFormatError(f"{url}: {why}")
    return [_unlocate(url, p) for p in found], True


def _glob_match(parts: Sequence[str], pattern: Sequence[str]) -> bool:
    """Whether path segments `parts` match glob segments `pattern` as a local recursive glob would: ``*``,
    ``?`` and ``[seq]`` within one segment, a ``**`` segment for any number of segments (none included)."""
    if not pattern:
        return not parts
    if pattern[0] == "**":
        return any(_glob_match(parts[i:], pattern[1:]) for i in range(len(parts) + 1))
    return bool(parts) and fnmatch.fnmatchcase(parts[0], pattern[0]) and _glob_match(parts[1:], pattern[1:])


def open_url(url: str) -> pa.NativeFile:
    """A random-access file for `url` (reading only what is asked for, e.g. an IPC footer and its schema)."""
    fs, inner = locate(url)
    try:
        return fs.open_input_file(inner)
    except FileNotFoundError:
        raise s.NoSuchFileError(f"{url}: no such file") from None
    except OSError as exc:
        raise s.LossFormatError(f"{url}: cannot read ({exc})") from None


def stat_url(url: str) -> tuple[int, int]:
    """(size in bytes, modification time in ns) of the object at `url` (0 where the store has no mtime)."""
    import pyarrow.fs as pafs

    fs, inner = locate(url)
    try:
        info = fs.get_file_info(inner)
    except OSError as exc:
        raise s.LossFormatError(f"{url}: cannot read ({exc})") from None
    if info.type != pafs.FileType.File:
        raise s.NoSuchFileError(f"{url}: no such file")
    return info.size, info.mtime_ns or 0


def scan_url(url: str, columns: Sequence[str] | None = None) -> Scan:
    """`lossfmt.reader.scan` for a run at a URL: the whole object is fetched, then read like a local file."""
    with open_url(url) as f:
        data = f.read()
    from lossfmt._read import scan_bytes  # (import cycle: _read resolves sources here)

    return scan_bytes(data, url, columns)
