"""The examples run (fast flags, real subprocesses) and leave closed files with the losses they claim."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import lossfmt
from lossfmt.reader import scan

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(
    script: str, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    return result


def tag(table: pa.Table, name: str) -> pa.Table:
    return table.filter(pc.equal(table["tag"].cast(pa.string()), name))


def test_numpy_demo_logs_batches_with_their_sizes_and_epoch_validation(tmp_path):
    out = tmp_path / "demo.arrow"
    run_example("demo.py", str(out), "--fast")
    assert scan(out).closed
    table = lossfmt.read(out)
    assert set(table["tag"].cast(pa.string()).to_pylist()) == {"loss", "cls", "reg", "val"}
    train = tag(table, "loss")
    # 1000 items in batches of 64: 15 full batches and a ragged one of 40, for each of 3 epochs.
    assert train["count"].to_pylist() == ([64] * 15 + [40]) * 3
    assert train["epoch"].to_pylist() == [e for e in range(3) for _ in range(16)]
    assert train["step"].to_pylist() == list(range(48))
    task_sum = tag(table, "cls")["value"].to_numpy() + tag(table, "reg")["value"].to_numpy()
    np.testing.assert_allclose(train["value"].to_numpy(), task_sum)
    val = tag(table, "val")
    assert val["count"].to_pylist() == [250] * 3
    assert val["step"].to_pylist() == [15, 31, 47]
    assert val["value"].to_numpy()[-1] < val["value"].to_numpy()[0]
    assert lossfmt.schema.run_info(table.schema)["meta"]["batch_size"] == 64


def test_torch_rnn_logs_the_seed_loop_per_batch(tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "rnn.arrow"
    run_example("torch_rnn.py", str(out), "--fast")
    table = lossfmt.read(out)
    train = tag(table, "loss")
    # The seed's 1000 sequences in batches of 32: 31 full batches and one of 8 per epoch.
    assert train["count"].to_pylist() == ([32] * 31 + [8]) * 2
    assert train["epoch"].to_pylist() == [0] * 32 + [1] * 32
    values = train["value"].to_numpy()
    assert np.isfinite(values).all()
    assert values[-8:].mean() < values[:8].mean()
    assert tag(table, "val")["count"].to_pylist() == [200, 200]


def test_torch_polynomial_logs_summed_mse_with_its_point_count(tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "poly.arrow"
    run_example("torch_polynomial.py", str(out), "--fast")
    table = lossfmt.read(out)
    assert table["step"].to_pylist() == list(range(200))
    assert set(table["reduction"].cast(pa.string()).to_pylist()) == {"sum"}
    assert set(table["count"].to_pylist()) == {2000}
    values = table["value"].to_numpy()
    assert values[-1] < values[0] / 10
    # Per-item (per point) normalization divides a sum-reduced value by its count.
    per_point = lossfmt.read_pandas(out, per=50, normalize="per-item")
    np.testing.assert_allclose(per_point["value"].iloc[0], values[:50].sum() / (50 * 2000))


def test_make_demo_without_a_display_renders_a_png(tmp_path):
    pytest.importorskip("lossview")
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["MPLBACKEND"] = "Agg"
    run_example("run_demo.py", "--fast", cwd=tmp_path, env=env)
    assert lossfmt.read(tmp_path / "runs" / "demo.arrow").num_rows == 3 * 16 * 3 + 3
    assert (tmp_path / "runs" / "demo.png").read_bytes().startswith(b"\x89PNG")


def test_the_demos_hint_is_a_command_that_works_where_it_runs(tmp_path):
    """Its hint was `lossview runs/demo.arrow --follow`: on a machine without a display that needs a window
    (an error), and `lossview` was not on PATH where `make demo` set up the venv."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    result = run_example("demo.py", str(tmp_path / "d.arrow"), "--fast", cwd=tmp_path, env=env)
    hint = result.stderr.splitlines()[0]
    assert hint.startswith("training; watch it with: ") and hint.endswith(" --follow --term")
    command = hint.removeprefix("training; watch it with: ").split()
    assert command[1:] == [str(tmp_path / "d.arrow"), "--follow", "--term"]
    shown = subprocess.run([command[0], command[1], "--term"], capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0 and "d · " in shown.stdout, shown.stderr  # one frame of the run it names
