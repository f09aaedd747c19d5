"""LossWriter's inputs refused at the call, in one line, nothing created: its path, its meta, add_many's
values; and a directory that stops being writable, which close() and resume report naming the file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
import pytest
import unprivileged

import lossfmt
from lossfmt import LossWriter


def listing(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


@pytest.mark.parametrize(
    ("meta", "match"),
    [
        ({"note": "caf\udce9"}, r"meta\['note'\] is not valid text \(UTF-8\), got 'caf\\udce9'"),
        ({"opt": {"tags": ["a", "\ud800"]}}, r"meta\['opt'\]\['tags'\]\[1\] is not valid text"),
        ({"caf\udce9": 1}, r"meta key 'caf\\udce9' in meta is not valid text"),
        ({"opt": {"\udcff": 1}}, r"meta key '\\udcff' in meta\['opt'\] is not valid text"),
    ],
)
def test_meta_text_with_a_lone_surrogate_is_refused_at_the_constructor_naming_where(tmp_path, meta, match):
    """Such text was written, then hparams, export_parquet and lossview failed far away with a raw
    UnicodeEncodeError; now the constructor refuses it, creating neither the file nor its directory."""
    with pytest.raises(ValueError, match=match) as caught:
        LossWriter(tmp_path / "new" / "run.arrow", meta=meta)
    assert "surrogateescape" in str(caught.value) and "\n" not in str(caught.value)
    assert listing(tmp_path) == []


def test_meta_text_beyond_ascii_is_stored_and_read_back(tmp_path):
    """The surrogate check refuses only what UTF-8 cannot hold: any real text is kept as it was."""
    path = tmp_path / "run.arrow"
    with LossWriter(path, meta={"note": "café ∑ 🙂", "ключ": ["ü"]}) as w:
        w.add(0, 1.0)
    assert lossfmt.run_info(path)["meta"] == {"note": "café ∑ 🙂", "ключ": ["ü"]}
    assert lossfmt.hparams(path)["note"].to_pylist() == ["café ∑ 🙂"]


def test_an_empty_path_is_refused_naming_the_empty_argument(tmp_path, monkeypatch):
    """LossWriter("") said "<cwd>: not a regular file (a directory)", naming a path the caller never gave."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"^path is empty: pass the path of a new or existing \.arrow file$"):
        LossWriter("")
    assert listing(tmp_path) == []


@pytest.mark.parametrize("name", ["exp1/", "exp1//", "runs/exp1/", "exp1/.", ".", "..", "exp1/.."])
def test_a_path_naming_a_directory_is_refused_and_nothing_is_created(tmp_path, monkeypatch, name):
    """LossWriter("exp1/") wrote a FILE named exp1, which lossfmt.read("exp1/") then could not find."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"names a directory, not a file; pass the path of a file in it"):
        LossWriter(name)
    assert listing(tmp_path) == []


@pytest.mark.parametrize("under", ["notadir/run.arrow", "notadir/sub/deeper/run.arrow"])
def test_a_path_under_a_regular_file_says_that_file_is_not_a_directory(tmp_path, monkeypatch, under):
    """A parent that is a file raised mkdir's raw FileExistsError (or NotADirectoryError) about it."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notadir").write_text("notes")
    with pytest.raises(NotADirectoryError) as caught:
        LossWriter(under)
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / under}: cannot be created: {tmp_path / 'notadir'} is not a dir")
    assert "\n" not in message
    assert listing(tmp_path) == ["notadir"] and (tmp_path / "notadir").read_text() == "notes"


@pytest.mark.parametrize("path", [b"run.arrow", bytearray(b"run.arrow"), 3])
def test_a_path_that_is_not_text_is_a_type_error_naming_path(tmp_path, monkeypatch, path):
    """bytes gave pathlib's TypeError, which does not say which argument (as lossfmt.read, bytes are refused:
    the error says how to decode them)."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TypeError, match=r"^path must be a str or os\.PathLike naming a file, not ") as caught:
        LossWriter(path)
    assert ("os.fsdecode(path)" in str(caught.value)) == (not isinstance(path, int))
    assert listing(tmp_path) == []


def test_a_path_like_of_bytes_is_refused_too(tmp_path, monkeypatch):
    """An os.PathLike whose __fspath__ returns bytes is a bytes path: the same TypeError."""
    monkeypatch.chdir(tmp_path)

    class BytesPath:
        def __fspath__(self) -> bytes:
            return b"run.arrow"

    with pytest.raises(TypeError, match=r"os\.fsdecode\(path\)"):
        LossWriter(BytesPath())  # type: ignore[arg-type]
    assert listing(tmp_path) == []


_ADD_MANY = textwrap.dedent(
    """
    import json, sys
    import lossfmt
    from lossfmt import LossWriter, _compiled
    out = {"compiled": _compiled.COMPILED, "errors": []}
    with LossWriter(sys.argv[1], flush_secs=3600) as w:
        w.add_many(0, {"loss/cls": 0.25, "acc": 0.75})  # the tags interned: add_many's fastest path
        for values in [
            {"loss/cls": 0.5, "loss/reg": 0.2, "acc": "0.9"},
            {"loss/cls": 0.5, "loss/reg": [0.1, 0.2]},
            {"fresh": 0.5, "huge": 10 ** 400},
        ]:
            try:
                w.add_many(1, values)
            except (TypeError, ValueError) as exc:
                out["errors"].append([type(exc).__name__, str(exc)])
        w.add_many(2, {"acc": 0.5})
    out["steps"] = lossfmt.read(sys.argv[1]).column("step").to_pylist()
    print(json.dumps(out))
    """
)


@pytest.mark.parametrize("pure", ["0", "1"], ids=["compiled", "pure-python"])
def test_a_bad_value_in_add_many_names_its_tag_and_writes_nothing(tmp_path, pure):
    """add_many(0, {"loss/cls": 0.5, "acc": "0.9"}) said "value must be a real number, got str: '0.9'",
    not which of its tags; both the compiled and the pure-Python add_many (run in a subprocess each)."""
    env = {**os.environ, "LOSSFMT_PURE_PYTHON": pure}
    run = subprocess.run(
        [sys.executable, "-c", _ADD_MANY, str(tmp_path / "run.arrow")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    if pure == "1":
        assert out["compiled"] is False
    assert out["errors"] == [
        ["TypeError", "value of tag 'acc' must be a real number, got str: '0.9'"],
        ["TypeError", "value of tag 'loss/reg' must be a real number, got list: [0.1, 0.2]"],
        [
            "ValueError",
            "value of tag 'huge' is too large for a float64 (largest: 1.798e+308), got an int of 1329 bits; "
            "log it scaled (e.g. its log) or pass math.inf if infinity is meant",
        ],
    ]
    assert out["steps"] == [0, 0, 2]  # all or nothing: no event of a refused call


def test_add_keeps_its_own_message_for_a_bad_value(tmp_path):
    """add() takes one value: its error needs no tag (and keeps the message add_many's quote)."""
    with (
        LossWriter(tmp_path / "run.arrow") as w,
        pytest.raises(TypeError, match=r"^value must be a real number, got str: '0\.9'$"),
    ):
        w.add(0, "0.9", tag="acc")


_READ_ONLY = textwrap.dedent(
    """
    import gc, os, sys
    import lossfmt
    path, how = sys.argv[1], sys.argv[2]
    directory = os.path.dirname(path)
    if how == "resume":
        with lossfmt.LossWriter(path) as w:
            w.add(0, 1.0)
    else:
        w = lossfmt.LossWriter(path)
        w.add(0, 1.0)
        w.flush()
    os.chmod(directory, 0o555)
    if os.access(directory, os.W_OK):
        sys.exit(77)  # permissions are not enforced here
    try:
        if how == "close":
            w.add(1, 2.0)
            w.close()
        elif how == "compact":
            w.add(1, 2.0)
            try:
                w.close()  # refused: the directory is not writable
            except PermissionError:
                pass
            lossfmt.compact(path)
        elif how == "drop":
            w.add(1, 2.0)
            del w
            gc.collect()
            print("dropped")
        else:
            lossfmt.LossWriter(path)
    except Exception as exc:
        print(type(exc).__name__, exc)
    """
)


def in_read_only(directory: Path, code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `code` unprivileged; it makes `directory` read-only (exit 77: permissions are not enforced)."""
    try:
        result = unprivileged.run(code, *args)
    finally:
        directory.chmod(0o755)
    if result.returncode == 77:
        pytest.skip("directory permissions are not enforced for this process")
    assert result.returncode == 0, result.stderr
    return result


def read_only_run(tmp_path: Path, how: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    directory = tmp_path / "ro"
    directory.mkdir()
    result = in_read_only(directory, _READ_ONLY, str(directory / "run.arrow"), how)
    assert listing(directory) == ["run.arrow"]  # no temp file left behind
    return result, directory / "run.arrow"


def test_close_in_a_directory_made_read_only_says_the_events_are_kept_in_the_live_file(tmp_path):
    """close() raised a raw PermissionError naming the hidden temp file `.run.arrow.<hex>.lossfmt-tmp`."""
    result, path = read_only_run(tmp_path, "close")
    assert result.stdout.splitlines() == [
        f"PermissionError [Errno 13] Permission denied: {path}: its directory is not writable, so close() "
        f"could not compact it: its 2 events are kept in the live file (lossfmt reads it); `lossview compact "
        f"{path}` makes it a plain Arrow file once the directory is writable"
    ]
    assert lossfmt.read(path).column("step").to_pylist() == [0, 1]
    lossfmt.compact(path)  # as the message says: the file is whole, and no writer holds it
    assert pa.ipc.open_file(path).read_all().column("step").to_pylist() == [0, 1]


def test_compact_in_a_read_only_directory_says_so_naming_the_file(tmp_path):
    """lossfmt.compact (and `lossview compact`) raised a raw PermissionError naming a hidden temp file."""
    result, path = read_only_run(tmp_path, "compact")
    assert result.stdout.splitlines() == [
        f"PermissionError [Errno 13] Permission denied: {path}: its directory is not writable, so it cannot "
        "be compacted (compaction writes a copy beside it, renamed over it): left as is"
    ]
    assert lossfmt.read(path).column("step").to_pylist() == [0, 1]


def test_a_writer_dropped_in_a_read_only_directory_warns_in_one_line_without_a_traceback(tmp_path):
    """Its finalizer's close() printed "Exception ignored in" and a traceback on stderr."""
    result, path = read_only_run(tmp_path, "drop")
    assert result.stdout.splitlines() == ["dropped"]
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr
    warning = next(line for line in result.stderr.splitlines() if "UserWarning" in line)
    assert f"{path}: its directory is not writable" in warning and "its 2 events are kept" in warning
    assert lossfmt.read(path).column("step").to_pylist() == [0, 1]


def test_resuming_a_closed_file_in_a_read_only_directory_is_refused_naming_it(tmp_path):
    """The constructor raised a raw PermissionError naming the hidden temp file of the resume's copy."""
    result, path = read_only_run(tmp_path, "resume")
    assert result.stdout.splitlines() == [
        f"PermissionError [Errno 13] Permission denied: {path}: its directory is not writable, so it cannot "
        "be resumed (resuming it writes a copy beside it, renamed over it); the file is left as it is: write "
        "the resumed run to another path, or make the directory writable"
    ]
    assert lossfmt.read(path).column("step").to_pylist() == [0]
    with lossfmt.LossWriter(path) as w:  # once the directory is writable, it resumes
        w.add(1, 2.0)
    assert lossfmt.read(path).column("step").to_pylist() == [0, 1]


_LINKED = textwrap.dedent(
    """
    import os, sys
    import lossfmt
    link, target_dir = sys.argv[1], sys.argv[2]
    w = lossfmt.LossWriter(link)
    w.add(0, 1.0)
    w.flush()
    os.chmod(target_dir, 0o555)
    if os.access(target_dir, os.W_OK):
        sys.exit(77)  # permissions are not enforced here
    try:
        w.close()
    except Exception as exc:
        print(type(exc).__name__, exc)
    """
)


def test_close_through_a_symlink_into_a_read_only_directory_says_so_naming_the_path(tmp_path):
    """The temp file goes beside the link's target: the check looked at the link's own (writable) directory
    and let the raw PermissionError naming the hidden temp file through."""
    (tmp_path / "ro").mkdir()
    (tmp_path / "rw").mkdir()
    link = tmp_path / "rw" / "run.arrow"
    link.symlink_to(tmp_path / "ro" / "run.arrow")
    result = in_read_only(tmp_path / "ro", _LINKED, str(link), str(tmp_path / "ro"))
    assert result.stdout.startswith(f"PermissionError [Errno 13] Permission denied: {link}: its directory")
    assert lossfmt.read(link).column("step").to_pylist() == [0]
