"""Losses: how wrong the network's outputs are, and which way to push them.

Each loss turns raw outputs (logits for the classification losses) and
targets into (mean loss, gradient w.r.t. the outputs), checks and converts
targets once per `fit`, and knows how to turn outputs into predictions and
metrics.
"""
import numpy as np

from fastnet import ops


class Loss:
    name = ""
    is_classifier = False
    function = None  # the ops function: (output, target) -> (mean loss, d loss / d output)

    def __call__(self, output, target):
        """(mean loss as a float, d loss / d output)."""
        if self.function is None:
            raise NotImplementedError(f"{type(self).__name__} sets no `function` and does not override __call__")
        return self.function(output, target)

    def prepare_targets(self, y, n_samples, n_outputs, dtype):
        raise NotImplementedError

    def predict(self, output):
        return output

    def predict_proba(self, output):
        raise TypeError(f"predict_proba needs a classification loss; this network uses {self.name!r}")

    def metrics(self, output, target):
        """Metrics other than the loss, on outputs and prepared targets."""
        return {}


def _first_bad(x, bad):
    """(where, value) of the first True in bad, `where` said for people."""
    pos = tuple(int(p) for p in np.unravel_index(int(np.flatnonzero(bad)[0]), x.shape))
    where = f"row {pos[0]}, column {pos[1]}" if len(pos) == 2 else f"index {pos}"
    return where, x[pos]


def as_finite(x, dtype, name):
    """x as a C-contiguous array of `dtype`, or a ValueError that tells NaN or
    infinity in the input apart from finite values too large for `dtype`
    (1e39 is finite in float64 but overflows float32)."""
    x = np.asarray(x)
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        where, _ = _first_bad(x, ~np.isfinite(x))
        raise ValueError(f"{name} contains NaN or infinity (first at {where})")
    with np.errstate(over="ignore"):
        out = np.ascontiguousarray(x, dtype=dtype)
    if not np.isfinite(out).all():
        where, value = _first_bad(x, ~np.isfinite(out))
        raise ValueError(f"{name} holds {float(value):g} at {where}, a finite value too large for "
                         f"{np.dtype(dtype).name} (largest {float(np.finfo(dtype).max):.4g})")
    return out


def _check_length(y, n_samples):
    if y.shape[0] != n_samples:
        raise ValueError(f"X has {n_samples} samples but y has {y.shape[0]}; they must match")


def _numeric_targets(y, n_samples, n_outputs):
    """y as a numeric (n_samples, n_outputs) array; a 1-D y is one output column."""
    y = np.asarray(y)
    if y.ndim == 1 and n_outputs == 1:
        y = y[:, None]
    if y.ndim != 2 or y.shape[1] != n_outputs:
        raise ValueError(f"y must have shape ({n_samples}, {n_outputs}) for a network with {n_outputs} "
                         f"outputs, got {y.shape}")
    _check_length(y, n_samples)
    if y.dtype.kind not in "iubf":
        raise ValueError(f"y must be numeric, got dtype {y.dtype}")
    return y


def _is_one_hot(y):
    return y.dtype.kind in "iubf" and bool(np.all((y == 0) | (y == 1))) and bool(np.all(y.sum(axis=1) == 1))


class SoftmaxCrossEntropy(Loss):
    """Softmax over the outputs, then cross-entropy with integer class labels."""

    name = "softmax_cross_entropy"
    is_classifier = True
    function = staticmethod(ops.softmax_cross_entropy)

    def prepare_targets(self, y, n_samples, n_outputs, dtype):
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        elif y.ndim == 2 and y.shape[1] == n_outputs and n_outputs > 1 and _is_one_hot(y):
            y = y.argmax(axis=1)
        if y.ndim != 1:
            raise ValueError(f"y must hold one integer class label per sample (shape ({n_samples},)) or one-hot "
                             f"rows (shape ({n_samples}, {n_outputs})), got shape {y.shape}")
        _check_length(y, n_samples)
        if y.dtype.kind == "f":
            if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
                raise ValueError("y must hold integer class labels for softmax_cross_entropy, got non-integer values")
        elif y.dtype.kind not in "iub":
            raise ValueError(f"y must hold integer class labels, got dtype {y.dtype}")
        # Range-checked in y's own dtype: a uint64 2**64-1 must not turn into -1 first.
        out_of_range = (y < 0) | (y >= n_outputs)
        if out_of_range.any():
            raise ValueError(f"y holds label {int(y[out_of_range][0])}, but the network has {n_outputs} outputs "
                             f"(classes 0..{n_outputs - 1})")
        return np.ascontiguousarray(y, dtype=np.int64)

    def predict(self, output):
        return np.argmax(output, axis=1)

    def predict_proba(self, output):
        return ops.softmax(output)

    def metrics(self, output, target):
        return {"accuracy": int(np.count_nonzero(output.argmax(axis=1) == target)) / target.shape[0]}


class BinaryCrossEntropy(Loss):
    """Sigmoid then cross-entropy, one independent yes/no per output (targets in [0, 1])."""

    name = "binary_cross_entropy"
    is_classifier = True
    function = staticmethod(ops.bce_with_logits)

    def prepare_targets(self, y, n_samples, n_outputs, dtype):
        y = as_finite(_numeric_targets(y, n_samples, n_outputs), dtype, "y")
        if y.size and not (y.min() >= 0 and y.max() <= 1):
            raise ValueError("y must hold targets in [0, 1] for binary_cross_entropy")
        return np.ascontiguousarray(y)

    def predict(self, output):
        labels = (output > 0).astype(np.int64)
        return labels[:, 0] if labels.shape[1] == 1 else labels

    def predict_proba(self, output):
        return ops.activation(output, "sigmoid")

    def metrics(self, output, target):
        return {"accuracy": float(np.mean((output > 0) == (target >= 0.5)))}


class MeanSquaredError(Loss):
    """Mean of the squared differences: regression."""

    name = "mse"
    function = staticmethod(ops.mse)

    def prepare_targets(self, y, n_samples, n_outputs, dtype):
        return as_finite(_numeric_targets(y, n_samples, n_outputs), dtype, "y")

    def predict(self, output):
        return output[:, 0] if output.shape[1] == 1 else output

    def metrics(self, output, target):
        diff = output.astype(np.float64) - target
        return {"mse": float(np.mean(diff * diff)), "mae": float(np.mean(np.abs(diff)))}


LOSSES = {
    "softmax_cross_entropy": SoftmaxCrossEntropy,
    "cross_entropy": SoftmaxCrossEntropy,
    "categorical_crossentropy": SoftmaxCrossEntropy,
    "binary_cross_entropy": BinaryCrossEntropy,
    "bce": BinaryCrossEntropy,
    "mse": MeanSquaredError,
    "mean_squared_error": MeanSquaredError,
}


def get(loss):
    """A Loss instance from a name or an instance."""
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, str) and loss in LOSSES:
        return LOSSES[loss]()
    raise ValueError(f"unknown loss {loss!r}; choose from 'softmax_cross_entropy', 'binary_cross_entropy', 'mse'")
