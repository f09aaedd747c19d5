"""Source resolution (lossfmt/_sources.py): which files a directory, glob or list names, each run once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import unprivileged

import lossfmt
from lossfmt import LossFormatError, LossWriter, read, run_paths
from lossfmt.transforms import select_tags


def write_run(path: Path, run: str | None = None, n: int = 2) -> Path:
    """A closed run of n events of tag `loss` at `path` (run name: the file's stem unless given)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with LossWriter(path, run=run) as w:
        for step in range(n):
            w.add(step, 1.0)
    return path


def runs_of(table) -> dict[str, int]:
    """Rows per run label of a table read from several files."""
    labels = table.column("run").to_pylist()
    return {label: labels.count(label) for label in dict.fromkeys(labels)}


def test_a_directory_skips_a_dangling_link_and_a_subdirectory_named_like_a_run(tmp_path):
    write_run(tmp_path / "runs" / "a.arrow")
    (tmp_path / "runs" / "gone.arrow").symlink_to(tmp_path / "deleted.arrow")
    (tmp_path / "runs" / "dir.arrow").mkdir()
    assert run_paths(tmp_path / "runs") == [str(tmp_path / "runs" / "a.arrow")]
    assert runs_of(read(tmp_path / "runs")) == {"a": 2}


def test_a_directory_holding_only_entries_that_are_not_files_names_them(tmp_path):
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "gone.arrow").symlink_to(tmp_path / "deleted.arrow")
    (tmp_path / "runs" / "dir.arrow").mkdir()
    with pytest.raises(
        LossFormatError, match=r"no \.arrow files \(skipped, not regular files: dir\.arrow, gone"
    ):
        read(tmp_path / "runs")


def test_a_dangling_link_named_explicitly_is_an_error_naming_it(tmp_path):
    write_run(tmp_path / "a.arrow")
    (tmp_path / "gone.arrow").symlink_to(tmp_path / "deleted.arrow")
    with pytest.raises(LossFormatError, match=r"gone\.arrow: no such file"):
        read([tmp_path / "a.arrow", tmp_path / "gone.arrow"])


def test_a_symlink_to_a_run_in_the_same_directory_is_the_same_run_read_once(tmp_path):
    write_run(tmp_path / "runs" / "a.arrow")
    write_run(tmp_path / "runs" / "b.arrow", n=3)
    (tmp_path / "runs" / "latest.arrow").symlink_to("b.arrow")
    os.link(tmp_path / "runs" / "a.arrow", tmp_path / "runs" / "c.arrow")  # a hard link is the same file too
    names = ["a.arrow", "b.arrow"]
    assert run_paths(tmp_path / "runs") == [str(tmp_path / "runs" / n) for n in names]
    assert runs_of(read(tmp_path / "runs")) == {"a": 2, "b": 3}
    assert runs_of(read(str(tmp_path / "runs" / "*.arrow"))) == {"a": 2, "b": 3}
    assert runs_of(lossfmt.dataset(tmp_path / "runs").to_table()) == {"a": 2, "b": 3}


def test_the_same_file_listed_three_ways_is_one_run_keeping_its_plain_name(tmp_path, monkeypatch):
    write_run(tmp_path / "runs" / "a.arrow")
    monkeypatch.chdir(tmp_path / "runs")
    table = read(["a.arrow", "a.arrow", "./a.arrow", tmp_path / "runs" / "a.arrow"])
    assert runs_of(table) == {"a": 2}
    assert run_paths(["./a.arrow", "a.arrow"]) == ["./a.arrow"]  # the first spelling is kept


def test_a_directory_means_its_own_runs_and_a_recursive_glob_reaches_subdirectories(tmp_path):
    write_run(tmp_path / "runs" / "top.arrow")
    write_run(tmp_path / "runs" / "sweep" / "deep.arrow", n=3)
    write_run(tmp_path / "runs" / "sweep" / "lr" / "deeper.arrow", n=4)
    assert runs_of(read(tmp_path / "runs")) == {"top": 2}
    assert runs_of(read(str(tmp_path / "runs" / "**" / "*.arrow"))) == {"top": 2, "deep": 3, "deeper": 4}


def test_a_directory_with_runs_only_in_subdirectories_says_how_to_read_them(tmp_path):
    write_run(tmp_path / "runs" / "sweep" / "deep.arrow")
    deeper = str(tmp_path / "runs" / "**" / "*.arrow")
    with pytest.raises(LossFormatError, match=r"no \.arrow files; runs in its subdirectories") as caught:
        read(tmp_path / "runs")
    assert repr(deeper) in str(caught.value)


def test_a_directory_that_cannot_be_read_says_permission_denied(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs / "a.arrow")
    (tmp_path / "locked").mkdir()
    code = (
        "import sys, lossfmt\n"
        "for source in sys.argv[1:]:\n"
        "    try:\n"
        "        lossfmt.read(source)\n"
        "    except lossfmt.LossFormatError as exc:\n"
        "        print(exc)\n"
    )
    runs.chmod(0o300)  # can be entered, not listed
    (tmp_path / "locked").chmod(0)  # cannot be entered: what is inside cannot even be looked up
    try:
        result = unprivileged.run(
            f"import sys; sys.argv[1:] = {[str(runs), str(tmp_path / 'locked' / 'x')]!r}\n{code}"
        )
    finally:
        runs.chmod(0o755)
        (tmp_path / "locked").chmod(0o755)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"{runs}: cannot list this directory (Permission denied)",
        f"{tmp_path / 'locked' / 'x'}: cannot read (Permission denied)",
    ]
    assert runs_of(read(runs)) == {"a": 2}  # nothing was changed


def write_tags(path: Path, tags: list[str]) -> Path:
    """A closed run with one event per tag of `tags`, at steps 0, 1, ..."""
    with LossWriter(path) as w:
        for step, tag in enumerate(tags):
            w.add(step, 1.0, tag=tag)
    return path


def tags_read(source, tags) -> list[str]:
    return read(source, tags=tags, columns=["tag"]).column("tag").to_pylist()


def test_a_pattern_that_is_the_name_of_a_tag_selects_that_tag_only(tmp_path):
    path = write_tags(tmp_path / "r.arrow", ["a[1]", "a1", "b", "val/x", "val/y"])
    assert tags_read(path, "a[1]") == ["a[1]"]
    assert tags_read(path, ["a[1]", "b"]) == ["a[1]", "b"]
    assert tags_read(path, "val/*") == ["val/x", "val/y"]
    assert tags_read(path, "a[0-9]") == ["a1"]  # not a tag's name: a glob
    assert tags_read(write_tags(tmp_path / "only.arrow", ["a1"]), "a[1]") == ["a1"]


def test_a_tag_name_in_one_run_is_literal_in_every_run_read_together(tmp_path):
    write_tags(tmp_path / "runs" / "x.arrow", ["a[1]", "a1"])
    write_tags(tmp_path / "runs" / "y.arrow", ["a1"])
    table = read(tmp_path / "runs", tags="a[1]", columns=["run", "tag"])
    assert table.to_pylist() == [{"run": "x", "tag": "a[1]"}]


@pytest.mark.parametrize(
    ("tags", "error", "match"),
    [
        ("", ValueError, "empty tag name"),
        (["loss", ""], ValueError, "empty tag name"),
        ([], ValueError, "tags is empty.*None for every tag"),
        ((), ValueError, "tags is empty"),
        ([1], TypeError, "tags must be text, got int 1"),
        (5, TypeError, "tags must be a tag name, a glob or a list of them, got int"),
        (b"loss", TypeError, "tags must be a tag name, a glob or a list of them, got bytes"),
    ],
)
def test_a_selection_that_could_only_select_nothing_is_an_error_at_the_call(tmp_path, tags, error, match):
    path = write_tags(tmp_path / "r.arrow", ["loss"])
    with pytest.raises(error, match=match):
        read(path, tags=tags)
    with pytest.raises(error, match=match):
        lossfmt.read_pandas(path, tags=tags)
    with pytest.raises(error, match=match):
        select_tags(read(path), tags)
    assert tags_read(path, None) == ["loss"]  # None is every tag


def test_a_recursive_glob_over_a_url_reaches_every_depth_as_a_local_one_does(tmp_path):
    fsspec = pytest.importorskip("fsspec")
    memory = fsspec.filesystem("memory")
    local = [tmp_path / "runs" / "top.arrow", tmp_path / "runs" / "sweep" / "lr" / "deep.arrow"]
    try:
        for path in local:
            write_run(path)
            memory.pipe(
                f"/f2-sources/runs/{path.relative_to(tmp_path / 'runs').as_posix()}", path.read_bytes()
            )
        assert runs_of(read("memory://f2-sources/runs/**/*.arrow")) == {"deep": 2, "top": 2}
        assert runs_of(read(str(tmp_path / "runs" / "**" / "*.arrow"))) == {"deep": 2, "top": 2}
        assert runs_of(read("memory://f2-sources/runs/*/*/*.arrow")) == {"deep": 2}
        assert runs_of(read("memory://f2-sources/runs/*.arrow")) == {"top": 2}
    finally:
        memory.rm("/f2-sources", recursive=True)


@pytest.mark.parametrize("source", [b"run.arrow", 123, [b"run.arrow"], None])
def test_a_source_that_is_no_path_is_a_type_error_saying_what_a_source_is(source):
    said = r"source (must be a path, .* not (bytes|int|NoneType)|paths must be str or os.PathLike, not bytes)"
    with pytest.raises(TypeError, match=said):
        lossfmt.read(source)
