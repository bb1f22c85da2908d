"""Callbacks: hooks into the training loop (early stopping, checkpoints, warnings).

They work with any model that has `.store` (a ParameterStore), `.save(path)`
and a `.stop_training` flag, so the Network and the Translator share them.
The loop calls, in order:
    on_train_begin(model)
    on_epoch_begin(epoch); on_batch_end(step, logs) per batch; on_epoch_end(epoch, logs)
    on_train_end(logs)
`logs` holds the epoch's metrics: loss, val_loss, accuracy, val_accuracy, ...
"""
import math
import warnings

import numpy as np

from fastnet.checks import positive_int


class Callback:
    def __init__(self):
        self.model = None

    def on_train_begin(self, model):
        self.model = model

    def on_epoch_begin(self, epoch):
        pass

    def on_batch_end(self, step, logs):
        pass

    def on_epoch_end(self, epoch, logs):
        pass

    def on_train_end(self, logs=None):
        pass


def _mode_for(monitor, mode):
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode != "auto":
        return mode
    return "max" if "acc" in monitor or monitor.endswith("score") or "bleu" in monitor else "min"


class _Monitor:
    """Tracks the best value of one logged metric."""

    def __init__(self, monitor, mode, min_delta, owner):
        self.monitor = monitor
        self.mode = _mode_for(monitor, mode)
        self.min_delta = abs(float(min_delta))
        self.owner = owner
        self.reset()

    def reset(self):
        self.best = math.inf if self.mode == "min" else -math.inf
        self._warned = False

    def value(self, logs):
        """The monitored value, falling back to the training loss (with a warning) when it is missing."""
        if self.monitor in logs and logs[self.monitor] is not None:
            return float(logs[self.monitor])
        if not self._warned:
            warnings.warn(f"{self.owner}: {self.monitor!r} is not in the logs (available: {', '.join(logs)}); "
                          f"using 'loss' instead. Pass validation_data to monitor validation metrics.",
                          RuntimeWarning, stacklevel=4)
            self._warned = True
        return float(logs["loss"])

    def improved(self, value):
        if math.isnan(value):
            return False
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta


class EarlyStopping(Callback):
    """Stop when the monitored metric has not improved for `patience` epochs.

    With restore_best=True the model ends training with the weights of its
    best epoch (copied back into model.store.data).
    """

    def __init__(self, monitor="val_loss", patience=5, min_delta=0.0, restore_best=True, mode="auto"):
        super().__init__()
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise ValueError(f"EarlyStopping patience must be a non-negative integer, got {patience!r}")
        self._tracker = _Monitor(monitor, mode, min_delta, "EarlyStopping")
        self.monitor = monitor
        self.patience = patience
        self.restore_best = bool(restore_best)

    def on_train_begin(self, model):
        super().on_train_begin(model)
        self._tracker.reset()
        self.wait = 0
        self.best_epoch = None
        self.stopped_epoch = None
        self.best_weights = None

    @property
    def best(self):
        return self._tracker.best

    def on_epoch_end(self, epoch, logs):
        value = self._tracker.value(logs)
        if self._tracker.improved(value):
            self._tracker.best = value
            self.best_epoch = epoch
            self.wait = 0
            if self.restore_best:
                self._snapshot()
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def _snapshot(self):
        data = self.model.store.data
        if self.best_weights is None or self.best_weights.shape != data.shape:
            self.best_weights = np.empty_like(data)
        np.copyto(self.best_weights, data)

    def on_train_end(self, logs=None):
        if self.restore_best and self.best_weights is not None:
            np.copyto(self.model.store.data, self.best_weights)


class ModelCheckpoint(Callback):
    """Save the model after an epoch: every epoch, or only when the monitored metric improved.

    `path` may contain "{epoch}" (1-based) to keep one file per epoch.
    """

    def __init__(self, path, monitor="val_loss", save_best_only=True, mode="auto"):
        super().__init__()
        self.path = str(path)
        self.monitor = monitor
        self.save_best_only = bool(save_best_only)
        self._tracker = _Monitor(monitor, mode, 0.0, "ModelCheckpoint")
        self.saved = []

    def on_train_begin(self, model):
        super().on_train_begin(model)
        self._tracker.reset()

    def on_epoch_end(self, epoch, logs):
        if self.save_best_only:
            value = self._tracker.value(logs)
            if not self._tracker.improved(value):
                return
            self._tracker.best = value
        path = self.path.format(epoch=epoch + 1)
        self.model.save(path)
        self.saved.append(path)


class OverfittingDetected(UserWarning):
    """Validation loss keeps rising while training loss keeps falling."""


class OverfittingWarning(Callback):
    """Warn (once per fit) when validation loss rose while training loss fell for `patience` epochs in a row.

    That is the signature of memorising the training set instead of learning
    something that carries over to data the network has not seen.
    """

    def __init__(self, patience=2, verbose=True):
        super().__init__()
        self.patience = positive_int(patience, "OverfittingWarning patience")
        self.verbose = verbose

    def on_train_begin(self, model):
        super().on_train_begin(model)
        self._previous = None
        self._streak = 0
        self.warned_at = None

    def on_epoch_end(self, epoch, logs):
        if logs.get("val_loss") is None:
            return
        current = (float(logs["loss"]), float(logs["val_loss"]))
        previous, self._previous = self._previous, current
        if previous is None:
            return
        diverging = current[0] < previous[0] and current[1] > previous[1]
        self._streak = self._streak + 1 if diverging else 0
        if self._streak >= self.patience and self.warned_at is None:
            self.warned_at = epoch
            if self.verbose:
                warnings.warn(
                    f"possible overfitting at epoch {epoch + 1}: validation loss rose for {self._streak} epochs "
                    f"in a row (now {current[1]:.4g}) while training loss fell (now {current[0]:.4g}). "
                    f"Consider EarlyStopping, Dropout, weight decay or more data.",
                    OverfittingDetected, stacklevel=3)
