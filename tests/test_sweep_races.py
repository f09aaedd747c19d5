"""Reading a sweep while it changes: a run just started (its file still empty) or moved away between the
listing and the read is skipped with a warning, not a failure of the whole directory (a fault attack saw
26 of 11,694 reads of a starting sweep fail, and one empty file left by a killed writer broke every read)."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest

import lossfmt
from lossfmt import LossFormatError, LossWriter, NoSuchFileError, _read


def _sweep(tmp_path, n=3):
    for i in range(n):
        with LossWriter(tmp_path / f"run{i}.arrow", meta={"lr": 0.1 * (i + 1)}) as w:
            for step in range(5):
                w.add(step, float(i))
    return tmp_path


def test_an_empty_file_in_a_directory_or_glob_is_skipped_with_a_warning(tmp_path):
    _sweep(tmp_path)
    (tmp_path / "run3.arrow").touch()  # a writer that created its file and has not written its header
    for source in (tmp_path, tmp_path / "*.arrow"):
        with pytest.warns(UserWarning, match=r"skipped 1 empty file .*run3\.arrow"):
            assert sorted(set(lossfmt.read(source)["run"].to_pylist())) == ["run0", "run1", "run2"]
    with pytest.warns(UserWarning, match="empty file"):
        assert lossfmt.dataset(tmp_path).count_rows() == 15
    with pytest.warns(UserWarning, match="empty file"):
        assert lossfmt.hparams(tmp_path).num_rows == 3
    with pytest.raises(LossFormatError, match="empty file"):
        lossfmt.read(tmp_path / "run3.arrow")  # named by itself: the error says what it is


def test_a_directory_of_only_empty_files_is_an_error(tmp_path):
    (tmp_path / "a.arrow").touch()
    with pytest.raises(LossFormatError, match="only empty files"):
        lossfmt.read(tmp_path)


def test_lossview_summary_of_a_sweep_with_an_empty_file_prints_its_runs_and_one_warning(tmp_path):
    _sweep(tmp_path)
    (tmp_path / "run3.arrow").touch()
    argv = [sys.executable, "-m", "lossview", "summary", str(tmp_path)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "run2" in done.stdout and done.stderr.count("\n") == 1 and "empty file" in done.stderr


def test_a_run_moved_away_between_listing_and_reading_is_skipped_with_a_warning(tmp_path, monkeypatch):
    _sweep(tmp_path)
    expand = _read._sources.expand

    def listed_then_moved(source):
        paths, multi = expand(source)
        (tmp_path / "run1.arrow").rename(tmp_path.parent / f"{tmp_path.name}-moved.arrow")
        return paths, multi

    monkeypatch.setattr(_read._sources, "expand", listed_then_moved)
    with pytest.warns(UserWarning, match=r"1 of 3 files went away .*run1\.arrow"):
        assert sorted(set(lossfmt.read(tmp_path)["run"].to_pylist())) == ["run0", "run2"]


def test_a_single_file_that_is_gone_is_still_an_error(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(NoSuchFileError):
            lossfmt.read(tmp_path / "nope.arrow")


def test_an_empty_file_among_files_named_one_by_one_is_skipped_too(tmp_path):
    """`lossview summary sw/*.arrow` (the shell's glob: each file named) failed on the empty file that the
    quoted glob or the directory skipped."""
    _sweep(tmp_path)
    (tmp_path / "run3.arrow").touch()
    named = sorted(tmp_path.glob("*.arrow"))
    with pytest.warns(UserWarning, match=r"skipped 1 empty file in the files given .*run3\.arrow"):
        assert sorted(set(lossfmt.read(named)["run"].to_pylist())) == ["run0", "run1", "run2"]
