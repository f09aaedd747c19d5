"""LossfmtLogger with a real PyTorch Lightning ``Trainer.fit`` (CPU, tiny model)."""

from __future__ import annotations

import logging

import pyarrow as pa
import pyarrow.compute as pc
import pytest

torch = pytest.importorskip("torch")
lightning = pytest.importorskip("lightning")

import lossfmt  # noqa: E402
from lossfmt.integrations.lightning import LossfmtLogger  # noqa: E402
from lossfmt.reader import scan  # noqa: E402
from lossfmt.schema import run_info  # noqa: E402

# Lightning warns about data loader workers and its own deprecations; not what these tests check.
pytestmark = pytest.mark.filterwarnings(
    "ignore::UserWarning", "ignore::DeprecationWarning", "ignore::FutureWarning"
)


class TinyRegression(lightning.LightningModule):
    def __init__(self, lr: float = 0.1, hidden: int = 4) -> None:
        super().__init__()
        self.save_hyperparameters()
        layers = [torch.nn.Linear(2, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 1)]
        self.net = torch.nn.Sequential(*layers)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss, on_step=True, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def loader(n: int, seed: int) -> torch.utils.data.DataLoader:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=generator)
    y = x[:, :1] - 0.5 * x[:, 1:]
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)


def tag(table: pa.Table, name: str) -> pa.Table:
    return table.filter(pc.equal(table["tag"].cast(pa.string()), name))


@pytest.fixture(autouse=True)
def quiet_lightning():
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)


def test_trainer_fit_logs_metrics_with_epochs_and_hyperparameters_as_metadata(tmp_path):
    torch.manual_seed(0)
    out = tmp_path / "exp1.arrow"
    logger = LossfmtLogger(out, meta={"note": "tiny"})
    trainer = lightning.Trainer(
        max_epochs=2,
        logger=logger,
        log_every_n_steps=1,
        accelerator="cpu",
        devices=1,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(TinyRegression(lr=0.1), loader(64, 0), loader(32, 1))

    assert scan(out).closed
    table = lossfmt.read(out)
    info = run_info(table.schema)
    assert info["run"] == "exp1"
    assert info["meta"] == {"framework": "lightning", "note": "tiny", "lr": 0.1, "hidden": 4}

    step_loss = tag(table, "train_loss_step")
    # 64 samples in batches of 16: 4 optimizer steps per epoch, each logged.
    assert step_loss.num_rows == 8
    assert step_loss["epoch"].to_pylist() == [0] * 4 + [1] * 4
    steps = step_loss["step"].to_pylist()
    assert steps == sorted(steps) and len(set(steps)) == 8
    val = tag(table, "val_loss")
    assert val["epoch"].to_pylist() == [0, 1]
    assert val["value"].to_pylist()[-1] == pytest.approx(float(trainer.callback_metrics["val_loss"]))
    assert tag(table, "train_loss_epoch")["epoch"].to_pylist() == [0, 1]
    assert "epoch" not in set(table["tag"].cast(pa.string()).to_pylist())
    # Checkpoints land beside the run file, in a directory named after the run.
    assert list((tmp_path / "exp1" / "checkpoints").glob("*.ckpt"))


def test_hyperparameters_logged_after_the_first_metrics_reach_the_metadata_at_finalize(tmp_path):
    logger = LossfmtLogger(tmp_path / "late.arrow")
    logger.log_hyperparams({"lr": 0.1})
    logger.log_metrics({"loss": 1.0, "epoch": 0}, step=0)
    logger.log_hyperparams({"warmup": 5})
    logger.log_metrics({"loss": 0.5, "epoch": 0}, step=1)
    logger.finalize("success")
    table = lossfmt.read(tmp_path / "late.arrow")
    assert run_info(table.schema)["meta"] == {"framework": "lightning", "lr": 0.1, "warmup": 5}
    assert table["value"].to_pylist() == [1.0, 0.5]
    assert table["epoch"].to_pylist() == [0, 0]


def test_experiment_is_the_writer_for_direct_logging(tmp_path):
    logger = LossfmtLogger(tmp_path / "direct.arrow", run="custom")
    assert logger.name == "custom"
    assert logger.save_dir == str(tmp_path)
    logger.experiment.add(3, 2.5, "grad_norm")
    logger.finalize("success")
    table = lossfmt.read(tmp_path / "direct.arrow")
    assert run_info(table.schema)["run"] == "custom"
    assert table["step"].to_pylist() == [3]
