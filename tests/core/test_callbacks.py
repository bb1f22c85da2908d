"""Callbacks: early stopping restores the best weights, checkpoints are written, overfitting is flagged."""
import warnings

import numpy as np
import pytest

import fastnet as fn
from fastnet.callbacks import OverfittingDetected


class FakeModel:
    """The minimum a callback relies on: store, save(path), stop_training."""

    def __init__(self):
        self.store = type("Store", (), {"data": np.zeros(3, dtype=np.float32)})()
        self.stop_training = False
        self.saved = []

    def save(self, path):
        self.saved.append((path, self.store.data.copy()))


def drive(callback, model, val_losses, losses=None):
    """Run the callback through epochs whose weights are [epoch] * 3."""
    callback.on_train_begin(model)
    for epoch, val in enumerate(val_losses):
        callback.on_epoch_begin(epoch)
        model.store.data[...] = epoch
        logs = {"loss": (losses[epoch] if losses else 1.0), "val_loss": val}
        callback.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    callback.on_train_end(logs)
    return epoch


def test_early_stopping_stops_and_restores_best():
    model = FakeModel()
    stop = fn.EarlyStopping(patience=2)
    last = drive(stop, model, [1.0, 0.5, 0.6, 0.7, 0.4, 0.3])
    assert last == 3 and stop.stopped_epoch == 3 and stop.best_epoch == 1
    np.testing.assert_array_equal(model.store.data, [1, 1, 1])


def test_early_stopping_without_restore_and_min_delta():
    model = FakeModel()
    stop = fn.EarlyStopping(patience=1, min_delta=0.1, restore_best=False)
    last = drive(stop, model, [1.0, 0.95, 0.5])
    assert last == 1
    np.testing.assert_array_equal(model.store.data, [1, 1, 1])


def test_early_stopping_on_accuracy_maximises():
    model = FakeModel()
    stop = fn.EarlyStopping(monitor="val_accuracy", patience=1)
    stop.on_train_begin(model)
    for epoch, acc in enumerate([0.5, 0.8, 0.7]):
        model.store.data[...] = epoch
        stop.on_epoch_end(epoch, {"loss": 1.0, "val_accuracy": acc})
    stop.on_train_end()
    assert model.stop_training and stop.best == 0.8
    np.testing.assert_array_equal(model.store.data, [1, 1, 1])


def test_early_stopping_in_a_real_fit_restores_the_best_epoch():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 5)).astype(np.float32)
    y = rng.integers(0, 2, size=40)       # labels are noise: validation loss soon rises
    Xv = rng.standard_normal((40, 5)).astype(np.float32)
    yv = rng.integers(0, 2, size=40)
    net = fn.Network([fn.Dense(5, 64, activation="relu"), fn.Dense(64, 2)], optimizer=fn.Adam(0.02), seed=0)
    stop = fn.EarlyStopping(patience=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OverfittingDetected)
        history = net.fit(X, y, epochs=100, batch_size=8, validation_data=(Xv, yv), callbacks=[stop], verbose=0)
    assert len(history) < 100 and stop.stopped_epoch is not None
    best_val = min(history["val_loss"])
    assert net.evaluate(Xv, yv)["loss"] == pytest.approx(best_val, rel=1e-6)


def test_model_checkpoint_writes_best_only(tmp_path):
    model = FakeModel()
    ckpt = fn.ModelCheckpoint(tmp_path / "best.fn")
    drive(ckpt, model, [1.0, 0.5, 0.7, 0.4])
    assert [float(w[0]) for _, w in model.saved] == [0, 1, 3]
    every = fn.ModelCheckpoint(str(tmp_path / "e{epoch}.fn"), save_best_only=False)
    drive(every, model, [1.0, 2.0])
    assert every.saved == [str(tmp_path / "e1.fn"), str(tmp_path / "e2.fn")]


def test_model_checkpoint_in_a_real_fit(tmp_path):
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
    y = np.array([0, 1, 1, 0])
    net = fn.Network([fn.Dense(2, 8, activation="tanh"), fn.Dense(8, 2)], optimizer=fn.Adam(0.05))
    path = tmp_path / "ckpt.fastnet"
    with pytest.warns(RuntimeWarning, match="'val_loss' is not in the logs"):
        net.fit(X, y, epochs=5, batch_size=4, verbose=0, callbacks=[fn.ModelCheckpoint(path)])
    assert fn.load(path).store.data.tobytes() == net.store.data.tobytes()


def test_overfitting_warning():
    model = FakeModel()
    with pytest.warns(OverfittingDetected, match="possible overfitting at epoch 4"):
        drive(fn.OverfittingWarning(patience=2), model, [1.0, 0.8, 0.9, 1.0, 1.1], losses=[1.0, 0.9, 0.8, 0.7, 0.6])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        drive(fn.OverfittingWarning(patience=2), model, [1.0, 0.8, 0.7, 0.6], losses=[1.0, 0.9, 0.8, 0.7])


def test_fit_adds_the_overfitting_warning_by_default():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((16, 10)).astype(np.float32)
    y = rng.integers(0, 2, size=16)
    net = fn.Network([fn.Dense(10, 128, activation="relu"), fn.Dense(128, 2)], optimizer=fn.Adam(0.05), seed=0)
    with pytest.warns(OverfittingDetected):
        net.fit(X, y, epochs=60, batch_size=16, validation_data=(X[:8] + 1.5, y[:8] ^ 1), verbose=0)


def test_callbacks_see_every_batch_and_can_stop():
    seen = []

    class StopAfterTwoBatches(fn.Callback):
        def on_batch_end(self, step, logs):
            seen.append((step, logs["batch_size"]))

        def on_epoch_end(self, epoch, logs):
            self.model.stop_training = True

    net = fn.Network([fn.Dense(2, 2)])
    history = net.fit(np.ones((5, 2)), [0, 1, 0, 1, 1], epochs=10, batch_size=3, verbose=0,
                      callbacks=[StopAfterTwoBatches()])
    assert seen == [(0, 3), (1, 2)] and len(history) == 1
    with pytest.raises(TypeError, match="Callback instances"):
        net.fit(np.ones((5, 2)), [0, 1, 0, 1, 1], callbacks=[print], verbose=0)
