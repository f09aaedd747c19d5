"""LossfmtCallback in a real Hugging Face Trainer.train() on a tiny GPT-2 made from a config (no download)."""

from __future__ import annotations

import subprocess
import sys

import pyarrow as pa
import pyarrow.compute as pc
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import lossfmt  # noqa: E402
from lossfmt.integrations.transformers import LossfmtCallback  # noqa: E402

VOCAB, LENGTH = 32, 8


class Tokens(torch.utils.data.Dataset):
    """n fixed random sequences; the model learns them (labels = input ids, as for causal LM)."""

    def __init__(self, n: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(0, VOCAB, (n, LENGTH), generator=generator)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def tiny_model() -> transformers.GPT2LMHeadModel:
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=VOCAB, n_positions=LENGTH, n_embd=16, n_layer=1, n_head=2, bos_token_id=0, eos_token_id=0
    )
    return transformers.GPT2LMHeadModel(config)


def train(
    tmp_path, *, batch: int, accumulate: int = 1, **extra
) -> tuple[transformers.Trainer, LossfmtCallback]:
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=batch,
        per_device_eval_batch_size=4,
        gradient_accumulation_steps=accumulate,
        num_train_epochs=2,
        learning_rate=1e-3,
        eval_strategy="epoch",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        dataloader_num_workers=0,
        **{"logging_steps": 2, "save_strategy": "no", **extra},
    )
    callback = LossfmtCallback(tmp_path / "runs" / "gpt2.arrow", meta={"note": "tiny"})
    trainer = transformers.Trainer(
        model=tiny_model(),
        args=args,
        train_dataset=Tokens(10, seed=1),
        eval_dataset=Tokens(6, seed=2),
        callbacks=[callback],
    )
    trainer.train()
    return trainer, callback


def events(table: pa.Table, tag: str) -> list[dict]:
    rows = table.filter(pc.equal(table["tag"].cast(pa.string()), tag)).to_pylist()
    return [{k: r[k] for k in ("step", "value", "count", "epoch")} for r in rows]


@pytest.mark.parametrize(("batch", "accumulate"), [(4, 1), (2, 2)])
def test_trainer_losses_are_logged_with_step_epoch_and_samples(tmp_path, batch, accumulate):
    # 10 samples, 4 per optimizer step: steps of 4, 4 and 2 samples per epoch, 6 steps, a log every 2.
    trainer, callback = train(tmp_path, batch=batch, accumulate=accumulate)
    table = lossfmt.read(callback.path)
    history = trainer.state.log_history
    train_logs = [h for h in history if "loss" in h]
    eval_logs = [h for h in history if "eval_loss" in h]
    assert events(table, "loss") == [
        {"step": 2, "value": pytest.approx(train_logs[0]["loss"]), "count": 8, "epoch": 0},
        {"step": 4, "value": pytest.approx(train_logs[1]["loss"]), "count": 2 + 4, "epoch": 1},
        {"step": 6, "value": pytest.approx(train_logs[2]["loss"]), "count": 4 + 2, "epoch": 1},
    ]
    assert sum(e["count"] for e in events(table, "loss")) == 2 * 10  # every sample of both epochs, once
    assert events(table, "eval_loss") == [
        {"step": 3, "value": pytest.approx(eval_logs[0]["eval_loss"]), "count": 6, "epoch": 0},
        {"step": 6, "value": pytest.approx(eval_logs[1]["eval_loss"]), "count": 6, "epoch": 1},
    ]


def test_the_run_is_closed_with_its_hyperparameters_after_training(tmp_path):
    _, callback = train(tmp_path, batch=4)
    with pa.ipc.open_file(callback.path) as reader:  # closed: a footer'd Arrow IPC file
        info = lossfmt.run_info(reader.schema)
    meta = info["meta"]
    assert info["run"] == "gpt2"
    assert (meta["framework"], meta["model_type"], meta["note"]) == ("transformers", "gpt2", "tiny")
    assert (meta["learning_rate"], meta["per_device_train_batch_size"], meta["num_train_epochs"]) == (
        1e-3,
        4,
        2,
    )


@pytest.mark.parametrize(("extra", "step", "epoch"), [({}, 6, 1), ({"max_steps": 2}, 2, 0)])
def test_an_evaluation_after_training_appends_to_the_closed_run_in_the_last_epoch_trained(
    tmp_path, extra, step, epoch
):
    """It had no epoch (the Trainer's state.epoch is 2.0 after two epochs, 0.67 after 2 of 3 steps), so a
    per-epoch view left it out."""
    trainer, callback = train(tmp_path, batch=4, **extra)
    metrics = trainer.evaluate()
    table = lossfmt.read(callback.path)
    last = events(table, "eval_loss")[-1]
    assert last == {"step": step, "value": pytest.approx(metrics["eval_loss"]), "count": 6, "epoch": epoch}
    assert events(table, "loss")[-1]["epoch"] == epoch  # the epoch its last training log has
    per_epoch = lossfmt.read_pandas(callback.path, per="epoch", tags="eval_loss")
    assert per_epoch["count"].sum() == 6 * len(events(table, "eval_loss"))  # none left out
    with pa.ipc.open_file(callback.path) as reader:
        assert reader.read_all().num_rows == table.num_rows  # closed again


def test_logs_that_make_per_item_epoch_means_approximate_are_told_when_training_starts(tmp_path):
    import warnings

    with pytest.warns(
        UserWarning, match=r"logging_steps=2 does not divide the 3 optimizer steps of an epoch"
    ):
        train(tmp_path / "a", batch=4)  # 10 samples, 4 a step: 3 steps an epoch, logged every 2
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="lossfmt: logging_steps")
        _, callback = train(tmp_path / "b", batch=4, logging_steps=1)  # every step: exact
    per_epoch = lossfmt.read_pandas(callback.path, per="epoch", tags="loss")
    assert per_epoch["count"].tolist() == [10, 10]


def test_a_resume_inside_an_epoch_counts_only_the_samples_it_trains(tmp_path, monkeypatch):
    monkeypatch.setattr("tqdm.tqdm.monitor_interval", 0)  # the resume's progress bar starts no monitor thread
    train(tmp_path, batch=4, logging_steps=1, save_strategy="steps", save_steps=2)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, num_train_epochs=2, logging_steps=1,
        save_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True, learning_rate=1e-3,
    )  # fmt: skip
    callback = LossfmtCallback(tmp_path / "resumed.arrow")
    trainer = transformers.Trainer(
        model=tiny_model(), args=args, train_dataset=Tokens(10, seed=1), callbacks=[callback]
    )
    trainer.train(
        resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-2")
    )  # epoch 0, after 2 of 3 steps
    loss = events(lossfmt.read(callback.path), "loss")
    assert [(e["step"], e["count"], e["epoch"]) for e in loss] == [(3, 2, 0), (4, 4, 1), (5, 4, 1), (6, 2, 1)]


def test_without_transformers_the_import_error_says_what_to_install():
    code = (
        "import sys\nsys.modules['transformers'] = None\n"
        "try:\n    import lossfmt.integrations.transformers\nexcept ImportError as exc:\n    print(exc)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "pip install transformers" in result.stdout, result.stderr
