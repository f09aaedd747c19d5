"""LossfmtCallback in a real Keras 3 ``model.fit`` (torch backend, CPU)."""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

if "keras" not in __import__("sys").modules:
    os.environ["KERAS_BACKEND"] = "torch"
pytest.importorskip("torch")
keras = pytest.importorskip("keras")

import lossfmt  # noqa: E402
from lossfmt.integrations.keras import LossfmtCallback  # noqa: E402
from lossfmt.reader import scan  # noqa: E402
from lossfmt.schema import run_info  # noqa: E402

# Keras' own numpy conversions on the torch backend warn under numpy 2, in fit() with or without the callback;
# the callback's own do not (test_fit_with_the_callback_raises_no_deprecation_warning_as_an_error).
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def tag(table: pa.Table, name: str) -> pa.Table:
    return table.filter(pc.equal(table["tag"].cast(pa.string()), name))


def data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype("float32")
    return x, (x @ np.array([[1.0], [-2.0], [0.5]], "float32") + 0.3).astype("float32")


def regression_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    layers = [keras.Input((3,)), keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(1)]
    model = keras.Sequential(layers)
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse", metrics=["mae"])
    return model


class RunningLogs(keras.callbacks.Callback):
    """What Keras itself reports per batch: the running mean of the loss since the epoch began."""

    def __init__(self) -> None:
        super().__init__()
        self.running: list[float] = []

    def on_train_batch_end(self, batch, logs=None):
        self.running.append(float(logs["loss"]))


def test_fit_logs_each_batch_loss_with_its_batch_size_and_epoch_validation(tmp_path):
    x, y = data(90, 0)
    x_val, y_val = data(25, 1)
    out = tmp_path / "keras.arrow"
    running = RunningLogs()
    history = regression_model().fit(
        x,
        y,
        batch_size=32,
        epochs=2,
        shuffle=False,
        validation_data=(x_val, y_val),
        callbacks=[LossfmtCallback(out, meta={"lr": 0.05}), running],
        verbose=0,
    )

    assert scan(out).closed
    table = lossfmt.read(out)
    info = run_info(table.schema)
    assert info["meta"]["lr"] == 0.05
    assert info["meta"]["framework"] == "keras"
    assert info["meta"]["epochs"] == 2

    loss = tag(table, "loss")
    # 90 samples in batches of 32: 32, 32 and a ragged 26, per epoch.
    assert loss["count"].to_pylist() == [32, 32, 26] * 2
    assert loss["step"].to_pylist() == list(range(6))
    assert loss["epoch"].to_pylist() == [0, 0, 0, 1, 1, 1]
    values, counts = loss["value"].to_numpy(), loss["count"].to_numpy()
    for epoch in range(2):
        v, c = values[3 * epoch : 3 * epoch + 3], counts[3 * epoch : 3 * epoch + 3]
        # Per-item epoch mean of the logged batch losses == the epoch loss Keras reports.
        assert np.sum(v * c) / np.sum(c) == pytest.approx(history.history["loss"][epoch], rel=1e-5)
        # Each batch loss, recovered from Keras' running means.
        r = np.array(running.running[3 * epoch : 3 * epoch + 3])
        seen = np.cumsum(c)
        expected = np.diff(np.concatenate([[0.0], r * seen])) / c
        np.testing.assert_allclose(v, expected, rtol=1e-4)

    val = tag(table, "val_loss")
    assert val["step"].to_pylist() == [2, 5]
    assert val["epoch"].to_pylist() == [0, 1]
    assert val["count"].to_pylist() == [25, 25]
    np.testing.assert_allclose(val["value"].to_numpy(), history.history["val_loss"], rtol=1e-6)
    val_mae = tag(table, "val_mae")["value"].to_numpy()
    np.testing.assert_allclose(val_mae, history.history["val_mae"], rtol=1e-6)
    mae = tag(table, "mae")
    assert mae["count"].to_pylist() == [90, 90]
    np.testing.assert_allclose(mae["value"].to_numpy(), history.history["mae"], rtol=1e-6)


def test_each_output_loss_of_a_multi_output_model_is_logged_per_batch(tmp_path):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((3,))
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    outputs = [keras.layers.Dense(1, name="a")(hidden), keras.layers.Dense(1, name="b")(hidden)]
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss={"a": "mse", "b": "mae"})
    x, y = data(40, 0)
    out = tmp_path / "multi.arrow"
    callbacks = [LossfmtCallback(out)]
    model.fit(x, {"a": y, "b": -y}, batch_size=16, epochs=1, validation_split=0.25, callbacks=callbacks)

    table = lossfmt.read(out)
    tags = set(table["tag"].cast(pa.string()).to_pylist())
    assert {"loss", "a_loss", "b_loss", "val_loss", "val_a_loss", "val_b_loss"} <= tags
    # 30 training samples (validation_split keeps the last 10): batches of 16 and 14.
    for name in ("loss", "a_loss", "b_loss"):
        assert tag(table, name)["count"].to_pylist() == [16, 14]
    np.testing.assert_allclose(
        tag(table, "loss")["value"].to_numpy(),
        tag(table, "a_loss")["value"].to_numpy() + tag(table, "b_loss")["value"].to_numpy(),
        rtol=1e-5,
    )
    assert tag(table, "val_loss")["count"].to_pylist() == [10]


def test_a_writer_passed_in_stays_open_and_steps_continue_across_fits(tmp_path):
    x, y = data(64, 0)
    model = regression_model()
    with lossfmt.LossWriter(tmp_path / "shared.arrow") as writer:
        callback = LossfmtCallback(writer)
        model.fit(x, y, batch_size=32, epochs=1, callbacks=[callback], verbose=0)
        assert not writer.closed
        model.fit(x, y, batch_size=32, epochs=1, callbacks=[callback], verbose=0)
        writer.add(99, 1.0, "after")
    table = lossfmt.read(tmp_path / "shared.arrow")
    assert tag(table, "loss")["step"].to_pylist() == [0, 1, 2, 3]
    assert tag(table, "loss")["epoch"].to_pylist() == [0, 0, 1, 1]  # the second fit's epoch 0 is the run's 1
    assert tag(table, "after").num_rows == 1


def test_fit_resumed_at_a_later_epoch_continues_the_step_axis(tmp_path):
    x, y = data(64, 0)
    model = regression_model()
    out = tmp_path / "resumed.arrow"
    model.fit(x, y, batch_size=32, epochs=1, callbacks=[LossfmtCallback(out)], verbose=0)
    # A new process would build a new callback on the same file and resume with initial_epoch.
    model.fit(x, y, batch_size=32, epochs=3, initial_epoch=1, callbacks=[LossfmtCallback(out)], verbose=0)
    loss = tag(lossfmt.read(out), "loss")
    assert loss["step"].to_pylist() == list(range(6))
    assert loss["epoch"].to_pylist() == [0, 0, 1, 1, 2, 2]


def test_an_entry_a_later_callback_adds_to_the_epoch_logs_is_logged_too(tmp_path):
    x, y = data(64, 0)
    x_val, y_val = data(16, 1)
    out = tmp_path / "lr.arrow"
    later = keras.callbacks.ReduceLROnPlateau(patience=0, factor=0.5)  # writes logs["learning_rate"] after us
    history = regression_model().fit(
        x,
        y,
        batch_size=32,
        epochs=3,
        validation_data=(x_val, y_val),
        callbacks=[LossfmtCallback(out), later],
        verbose=0,
    )
    lr = tag(lossfmt.read(out), "learning_rate")
    assert lr["value"].to_pylist() == pytest.approx(history.history["learning_rate"])
    assert lr["step"].to_pylist() == [1, 3, 5] and lr["epoch"].to_pylist() == [0, 1, 2]


def test_a_second_fit_with_a_new_callback_continues_the_model_s_steps(tmp_path):
    import warnings

    x, y = data(64, 0)
    model = regression_model()
    out = tmp_path / "more.arrow"
    model.fit(x, y, batch_size=32, epochs=1, callbacks=[LossfmtCallback(out)], verbose=0)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*started again")  # not taken for a script run again
        model.fit(x, y, batch_size=32, epochs=2, callbacks=[LossfmtCallback(out)], verbose=0)  # "train more"
    loss = tag(lossfmt.read(out), "loss")
    assert loss["step"].to_pylist() == list(range(6))


def test_a_second_fit_under_gradient_accumulation_continues_from_the_batches_trained(tmp_path):
    """optimizer.iterations counts updates under gradient_accumulation_steps: the second fit started at
    step 7 after 15 batches, and viewers hid most of the first fit."""
    from lossfmt.transforms import drop_rewound

    x, y = data(50, 0)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.01, gradient_accumulation_steps=2), loss="mse")
    out = tmp_path / "accumulated.arrow"
    model.fit(x, y, batch_size=10, epochs=3, callbacks=[LossfmtCallback(out)], verbose=0)  # 15 batches
    model.fit(x, y, batch_size=10, epochs=1, callbacks=[LossfmtCallback(out)], verbose=0)  # 5 more
    table = lossfmt.read(out)
    assert tag(table, "loss")["step"].to_pylist() == list(range(20))
    assert drop_rewound(table).num_rows == table.num_rows


def test_a_fit_restored_by_backup_and_restore_inside_an_epoch_replaces_that_epoch(tmp_path):
    """Keras replays a restored epoch from its first batch, but the steps went on from the optimizer's
    count: the interrupted attempt's batches stayed, and the epoch's per-item mean was not Keras' own."""
    from lossfmt.transforms import drop_rewound

    x, y = data(40, 0)
    out, backup = tmp_path / "restored.arrow", str(tmp_path / "backup")

    class Interrupt(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if self.model.optimizer.iterations == 7:  # the backup was taken after batch 6 (epoch 1, batch 1)
                raise KeyboardInterrupt

    interrupted = LossfmtCallback(out)
    with pytest.raises(KeyboardInterrupt):
        callbacks = [keras.callbacks.BackupAndRestore(backup, save_freq=3), interrupted, Interrupt()]
        regression_model().fit(x, y, batch_size=10, epochs=3, callbacks=callbacks, verbose=0)
    interrupted.writer.close()  # what the process' exit (or close_on_signal) does
    callbacks = [keras.callbacks.BackupAndRestore(backup, save_freq=3), LossfmtCallback(out)]
    history = regression_model().fit(x, y, batch_size=10, epochs=3, callbacks=callbacks, verbose=0)

    loss = tag(drop_rewound(lossfmt.read(out)), "loss")
    assert loss["step"].to_pylist() == list(range(12))
    assert loss["epoch"].to_pylist() == [0] * 4 + [1] * 4 + [2] * 4
    per_epoch = lossfmt.read_pandas(out, per="epoch", normalize="per-item", tags="loss")
    assert per_epoch["count"].tolist() == [40, 40, 40]
    np.testing.assert_allclose(per_epoch["value"].to_numpy()[1:], history.history["loss"], rtol=1e-5)


def test_a_second_fit_numbered_from_epoch_0_continues_the_epochs(tmp_path):
    """Keras numbers a second fit's epochs from 0 again while the steps went on: the per-epoch view merged
    two passes over the data into each epoch."""
    x, y = data(40, 0)
    model = regression_model()
    out = tmp_path / "refit.arrow"
    first = model.fit(x, y, batch_size=10, epochs=2, callbacks=[LossfmtCallback(out)], verbose=0)
    second = model.fit(x, y, batch_size=10, epochs=2, callbacks=[LossfmtCallback(out)], verbose=0)
    table = lossfmt.read(out)
    assert tag(table, "loss")["epoch"].to_pylist() == [e for e in range(4) for _ in range(4)]
    assert tag(table, "mae")["epoch"].to_pylist() == [0, 1, 2, 3]
    per_epoch = lossfmt.read_pandas(out, per="epoch", normalize="per-item", tags="loss")
    assert per_epoch["count"].tolist() == [40] * 4
    expected = first.history["loss"] + second.history["loss"]
    np.testing.assert_allclose(per_epoch["value"].to_numpy(), expected, rtol=1e-5)


def test_fit_with_the_callback_raises_no_deprecation_warning_as_an_error(tmp_path):
    """The optimizer's counter was read through numpy (``__array__``), whose numpy 2 DeprecationWarning on
    the torch backend made fit() crash under ``-W error::DeprecationWarning``; fit() alone did not."""
    import warnings

    x, y = data(400, 0)
    model = regression_model()
    out = tmp_path / "strict.arrow"
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        model.fit(x, y, batch_size=32, epochs=2, callbacks=[LossfmtCallback(out)], verbose=0)
        model.fit(x, y, batch_size=32, epochs=1, callbacks=[LossfmtCallback(out)], verbose=0)
    assert tag(lossfmt.read(out), "loss")["step"].to_pylist() == list(range(39))
