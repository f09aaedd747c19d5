"""Every rank of a real 2-process torch.distributed (gloo, CPU) job logs; the rank files merge back."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import lossfmt
from lossfmt.dataset import mean_across, read_ranks
from lossfmt.integrations.torch_distributed import NullWriter, rank_writer
from lossfmt.schema import run_info

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "torch_ddp.py"


@pytest.fixture(scope="module")
def ddp_job(tmp_path_factory) -> Path:
    """Run examples/torch_ddp.py once: 2 ranks, 40 steps; return its output directory."""
    pytest.importorskip("torch.distributed")
    out = tmp_path_factory.mktemp("job") / "ddp"
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), str(out), "--fast"], capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stderr
    return out


def test_every_rank_writes_its_own_file_of_one_run_and_the_mean_across_ranks_has_the_spread(ddp_job):
    out = ddp_job
    files = sorted(p.name for p in out.iterdir())
    assert files == ["rank0.arrow", "rank1.arrow"]
    for rank in (0, 1):
        info = run_info(lossfmt.read(out / f"rank{rank}.arrow").schema)
        assert info["run"] == "ddp"
        assert info["meta"] == {"lr": 0.05, "rank": rank, "world_size": 2}

    events = read_ranks(out / "rank*.arrow")
    assert set(events["run"].to_pylist()) == {"ddp"}
    assert events.num_rows == 2 * 40
    by_rank = {r: events.filter(pa.compute.equal(events["rank"], r)) for r in (0, 1)}
    # Rank r trains on local batches of 16 + 8 r samples.
    assert set(by_rank[0]["count"].to_pylist()) == {16}
    assert set(by_rank[1]["count"].to_pylist()) == {24}

    per_step = mean_across(events, over="rank")
    assert per_step.column_names[:3] == ["run", "tag", "step"]
    assert per_step["step"].to_pylist() == list(range(40))
    assert set(per_step["n"].to_pylist()) == {2}
    assert set(per_step["count"].to_pylist()) == {40}
    v0, v1 = by_rank[0]["value"].to_numpy(), by_rank[1]["value"].to_numpy()
    np.testing.assert_allclose(per_step["value"].to_numpy(), (v0 + v1) / 2)
    np.testing.assert_allclose(per_step["min"].to_numpy(), np.minimum(v0, v1))
    np.testing.assert_allclose(per_step["max"].to_numpy(), np.maximum(v0, v1))
    np.testing.assert_allclose(per_step["std"].to_numpy(), np.abs(v0 - v1) / 2)
    # DDP keeps the replicas identical, so the loss falls on every rank.
    assert v0[-5:].mean() < v0[:5].mean() and v1[-5:].mean() < v1[:5].mean()


def test_rank0_only_logs_the_all_reduced_loss_to_one_file(ddp_job):
    table = lossfmt.read(ddp_job.with_suffix(".arrow"))
    assert run_info(table.schema)["meta"] == {"lr": 0.05, "rank": 0, "world_size": 2}
    assert table["step"].to_pylist() == list(range(40))
    assert set(table["count"].to_pylist()) == {16 + 24}
    # The global per-sample mean: the ranks' batch means weighted by their batch sizes.
    ranks = read_ranks(ddp_job / "rank*.arrow")
    v0 = ranks.filter(pa.compute.equal(ranks["rank"], 0))["value"].to_numpy()
    v1 = ranks.filter(pa.compute.equal(ranks["rank"], 1))["value"].to_numpy()
    np.testing.assert_allclose(table["value"].to_numpy(), (16 * v0 + 24 * v1) / 40, rtol=1e-6)


def test_under_torchrun_each_rank_finds_its_rank_and_writes_its_file(tmp_path):
    out = tmp_path / "tr"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    result = subprocess.run(
        [*launcher, str(EXAMPLE), str(out), "--fast"], capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stderr
    events = read_ranks(out / "rank*.arrow")
    assert sorted(set(events["rank"].to_pylist())) == [0, 1]
    assert set(events["run"].to_pylist()) == {"tr"}
    assert lossfmt.read(out.with_suffix(".arrow")).num_rows == 40


def test_rank_comes_from_the_environment_torchrun_sets(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    with rank_writer(tmp_path / "exp.rank{rank}.arrow", meta={"lr": 1}) as writer:
        writer.add(0, 1.0)
    table = lossfmt.read(tmp_path / "exp.rank3.arrow")
    assert run_info(table.schema)["run"] == "exp"
    assert run_info(table.schema)["meta"] == {"lr": 1, "rank": 3, "world_size": 4}


def test_non_zero_ranks_get_a_writer_that_records_nothing_with_rank0_only(tmp_path):
    writer = rank_writer(tmp_path / "exp.arrow", rank0_only=True, rank=1, world_size=2)
    assert isinstance(writer, NullWriter)
    with writer:
        writer.add(0, 1.0, count=4)
        writer.add_many(0, {"a": 1.0})
        writer.flush()
    assert writer.closed
    assert list(tmp_path.iterdir()) == []


def test_a_path_without_rank_placeholder_is_refused_unless_rank0_only(tmp_path):
    with pytest.raises(ValueError, match=r"\{rank\}"):
        rank_writer(tmp_path / "exp.arrow", rank=0, world_size=2)


@pytest.mark.parametrize(
    ("template", "run"),
    [
        ("runs/exp1.rank{rank}.arrow", "exp1"),
        ("runs/exp1/rank{rank}.arrow", "exp1"),
        ("runs/b-{rank}.arrow", "b"),
    ],
)
def test_all_ranks_share_a_run_name_derived_from_the_path(tmp_path, template, run):
    (tmp_path / "runs" / "exp1").mkdir(parents=True)
    with rank_writer(tmp_path / template, rank=1, world_size=2) as writer:
        assert writer.run == run


def test_mean_across_runs_averages_seeds_per_tag_and_step(tmp_path):
    for seed, values in enumerate([[1.0, 2.0], [3.0, float("nan")]]):
        with lossfmt.LossWriter(tmp_path / f"seed{seed}.arrow") as writer:
            for step, value in enumerate(values):
                writer.add(step, value)
    per_step = mean_across(lossfmt.read(tmp_path), over="run")
    assert per_step.column_names[:2] == ["tag", "step"]
    assert per_step["value"].to_pylist()[0] == 2.0
    # A diverged seed keeps the mean non-finite at that step instead of vanishing.
    assert np.isnan(per_step["value"].to_pylist()[1])
