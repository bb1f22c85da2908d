"""Network: layers stacked into a model you can fit, evaluate, predict with, save and load."""
from __future__ import annotations

import math
import os
import time
from typing import Any, Callable, Dict, Iterable, Optional, Tuple, Union

import numpy as np
from numpy.typing import ArrayLike

from fastnet import io as _io
from fastnet import losses as _losses
from fastnet import ops
from fastnet import optimizers as _optimizers
from fastnet._config import __version__
from fastnet.callbacks import Callback, OverfittingWarning
from fastnet.checks import positive_int
from fastnet.history import History
from fastnet.layers import Layer, ParameterStore, layer_from_config, layer_to_config
from fastnet.layers import quantized as _quantized
from fastnet.layers.base import check_precision, set_precision
from fastnet.step import check_loss, train_step

PathLike = Union[str, "os.PathLike[str]"]
_PREDICT_CHUNK = 4096  # rows per forward pass at inference: bounds the memory of big inputs
_FORMAT_VERSION = 1


def _first_with(layers, attr, reverse=False):
    for layer in (reversed(layers) if reverse else layers):
        if hasattr(layer, attr):
            return getattr(layer, attr)
    return None


class Network:
    """A feed-forward stack of layers trained by backpropagation.

        net = fn.Network([fn.Dense(64, 128, activation="relu"), fn.Dense(128, 10)],
                         loss="softmax_cross_entropy", optimizer=fn.Adam(1e-3), seed=0)
        history = net.fit(X, y, epochs=30, validation_split=0.2)

    One numpy Generator, seeded by `seed`, draws the initial weights, shuffles
    the batches and samples dropout masks: the same seed, data and thread
    count give bitwise the same weights. All parameters live in one flat
    buffer `net.store.data` (gradients in `net.store.grad`).

    precision="bf16" multiplies matrices in bfloat16 (on the CPU's bf16
    units when it has them) while weights, gradients, optimizer state and
    losses stay float32; the model file is float32 either way.

    A training step is public in pieces -- prepare_data, forward_loss,
    backward, gradients, apply_update -- which fastnet.step.train_step (and
    so fit, train_on_batch and fastnet.distributed) strings together.
    """

    def __init__(self, layers: Iterable[Layer], loss: Union[str, _losses.Loss] = "softmax_cross_entropy",
                 optimizer: Union[None, str, _optimizers.Optimizer] = None, seed: int = 0, dtype=np.float32,
                 precision: str = "float32"):
        layers = list(layers)
        if not layers:
            raise ValueError("a Network needs at least one layer")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"layer {i} is a {type(layer).__name__}, not a fastnet Layer")
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype}")
        self.layers = layers
        self.quantization = None  # "int8" after quantize(): inference only
        self.precision = precision
        self.loss = _losses.get(loss)
        self.seed = int(seed)
        self.rng = np.random.default_rng(self.seed)
        for layer in layers:
            layer.initialize(self.rng)
        self.store = ParameterStore(layers, dtype=self.dtype)
        self._check_chain()
        self._skip_input_gradient()
        self.optimizer = _optimizers.get(optimizer if optimizer is not None else _optimizers.Adam(1e-3))
        self.optimizer.bind(self.store)
        self.n_features = _first_with(layers, "n_in")
        self.n_outputs = _first_with(layers, "n_out", reverse=True)
        self.epochs_trained = 0
        self.stop_training = False
        self.history = History()
        self._last_good = None  # the weights before the optimizer step in progress
        self._loss_grad = None  # d loss / d outputs between forward_loss and backward

    def _skip_input_gradient(self):
        """Nobody needs d loss / d X: backpropagation stops at the first layer with parameters.

        That layer skips its input gradient, and parameter-free layers in front
        of it (an input Dropout, say) are not visited backwards at all.
        """
        first = next((i for i, layer in enumerate(self.layers) if layer.params), 0)
        if hasattr(self.layers[first], "need_input_grad"):
            self.layers[first].need_input_grad = False
        self._reversed = self.layers[first:][::-1]

    def _check_chain(self):
        width = None
        for i, layer in enumerate(self.layers):
            n_in = getattr(layer, "n_in", None)
            if width is not None and n_in is not None and n_in != width:
                raise ValueError(f"layer {i} ({layer!r}) expects {n_in} inputs but the layer before it "
                                 f"gives {width}")
            width = getattr(layer, "n_out", width)

    @property
    def precision(self) -> str:
        """'float32' or 'bf16': the precision of the matrix products (settable)."""
        return self._precision

    @precision.setter
    def precision(self, value: str) -> None:
        self._precision = check_precision(value, self.dtype)
        set_precision(self.layers, value)

    def quantize(self, mode: str = "int8") -> "Network":
        """Quantise the weight matrices to int8 (one scale per output channel) for
        inference; activations are quantised per row as they arrive. Training is
        refused afterwards. Saved files hold the int8 weights (about 4x smaller)
        and load quantised. Returns self."""
        _quantized.quantize_params(_quantized.store_entries(self.store), self.dtype, mode)
        self.quantization = mode
        return self

    def _check_trainable(self):
        if self.quantization:
            raise RuntimeError(f"this network is quantised to {self.quantization}: it runs inference only "
                               "(train the float32 model, then quantize)")

    # ---- input checks ------------------------------------------------------
    def _check_X(self, X, name="X"):
        if (type(X) is np.ndarray and X.dtype == self.dtype and X.ndim == 2 and X.shape[0]
                and X.shape[1] == self.n_features and X.flags.c_contiguous
                and math.isfinite(ops.sum_squares(X))):
            # Already in shape: keeps train_on_batch cheap. A finite sum of squares (accumulated
            # in float64) means every value is finite; otherwise the full check below decides.
            return X
        X = np.asarray(X)
        if X.dtype.kind not in "iufb":
            raise ValueError(f"{name} must be numeric, got dtype {X.dtype}")
        if X.ndim == 1 and self.n_features == 1:
            X = X[:, None]
        if X.ndim != 2:
            raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {X.shape}")
        if X.shape[0] == 0:
            raise ValueError(f"{name} is empty: 0 samples")
        if self.n_features is not None and X.shape[1] != self.n_features:
            raise ValueError(f"{name} has {X.shape[1]} features, but the network expects {self.n_features} "
                             f"(the first layer's n_in)")
        return _losses.as_finite(X, self.dtype, name)

    def _check_data(self, X, y, names=("X", "y")):
        X = self._check_X(X, names[0])
        y = self.loss.prepare_targets(y, X.shape[0], self.n_outputs, self.dtype)
        return X, y

    # ---- forward / backward --------------------------------------------------
    def _forward(self, x, training):
        for layer in self.layers:
            x = layer.forward(x, training)
        return x

    def _output(self, X):
        """Raw outputs (logits for classifiers) of checked X, in chunks."""
        if X.shape[0] <= _PREDICT_CHUNK:
            return self._forward(X, False)
        parts = [self._forward(X[i:i + _PREDICT_CHUNK], False) for i in range(0, X.shape[0], _PREDICT_CHUNK)]
        return np.concatenate(parts)

    # ---- the training step, as public pieces (see fastnet/step.py) ----------
    def prepare_data(self, X: ArrayLike, y: ArrayLike) -> Tuple[np.ndarray, np.ndarray]:
        """(X, y) checked and converted to what forward_loss takes; ValueError naming what is wrong."""
        return self._check_data(X, y)

    def begin_training(self, X: np.ndarray, y: np.ndarray) -> None:
        """Before the first step on (X, y): nothing to prepare for a Network (an ImageDecoder
        starts from the mean picture)."""

    def use_optimizer(self, optimizer: Union[None, str, _optimizers.Optimizer] = None) -> _optimizers.Optimizer:
        """Bind `optimizer` (an instance or a name) to this network's parameters; None keeps the current one.
        Returns the optimizer in use."""
        if optimizer is not None:
            self.optimizer = _optimizers.get(optimizer)
            self.optimizer.bind(self.store)
        return self.optimizer

    def forward_loss(self, x: np.ndarray, y: np.ndarray, loss_scale: float = 1.0) -> Tuple[float, np.ndarray]:
        """Training-mode forward pass and loss on a batch from prepare_data; returns (loss times
        loss_scale, outputs). Keeps the gradient of that scaled loss for backward()."""
        out = x
        for layer in self.layers:
            out = layer.forward(out, True)
        loss, grad = self.loss(out, y)
        if loss_scale != 1.0:
            grad *= grad.dtype.type(loss_scale)
            loss *= loss_scale
        self._loss_grad = grad
        return loss, out

    def backward(self) -> None:
        """Back through the layers from the last forward_loss: parameter gradients added into `gradients`."""
        grad, self._loss_grad = self._loss_grad, None
        if grad is None:
            raise RuntimeError("backward() needs a forward_loss() first")
        for layer in self._reversed:
            grad = layer.backward(grad)

    @property
    def gradients(self) -> np.ndarray:
        """The gradients of every parameter, one flat buffer (a view of store.grad)."""
        return self.store.grad

    def apply_update(self) -> None:
        """One optimizer step from `gradients`, undone if it makes a weight NaN or infinite
        (FloatingPointError): the weights stay those of the last good step."""
        if self._last_good is None or self._last_good.shape != self.store.data.shape:
            self._last_good = np.empty_like(self.store.data)
        np.copyto(self._last_good, self.store.data)
        self.optimizer.step()
        if not math.isfinite(ops.sum_squares(self.store.data)):
            np.copyto(self.store.data, self._last_good)
            raise FloatingPointError("the optimizer step made a weight NaN or infinite")

    def _train_step(self, x, y):
        """The shared step (fastnet.step.train_step) on one checked batch; returns (loss, outputs).

        A FloatingPointError leaves the weights of the last good step.
        """
        if self.optimizer.requires_closure:
            loss, out = self._random_search_step(x, y)
            check_loss(loss)
            return loss, out
        return train_step(self, (x, y))

    def _random_search_step(self, x, y):
        def batch_loss():
            return self.loss(self._forward(x, False), y)[0]

        loss = self.optimizer.step(batch_loss)
        return loss, self._forward(x, False)

    def train_on_batch(self, x: ArrayLike, y: ArrayLike) -> float:
        """One training step (forward, backward, optimizer update) on a batch; returns the batch loss."""
        self._check_trainable()
        x = self._check_X(x)
        if not (self.loss.is_classifier and type(y) is np.ndarray and y.dtype == np.int64
                and y.shape == (x.shape[0],) and self.loss.name == "softmax_cross_entropy" and y.min() >= 0):
            y = self.loss.prepare_targets(y, x.shape[0], self.n_outputs, self.dtype)
        # else: integer labels go straight to the loss kernel, which rejects labels >= n_classes itself
        # (negative ones took the checked path: the kernel would skip -100 as its ignore_index)
        try:
            return self._train_step(x, y)[0]
        except FloatingPointError as exc:
            raise FloatingPointError(f"{exc} at optimizer step {self.optimizer.iterations + 1}; the step was not "
                                     f"applied") from None

    # ---- training --------------------------------------------------------------
    def _split_validation(self, X, y, validation_data, validation_split):
        if validation_data is not None:
            if validation_split:
                raise ValueError("pass either validation_data or validation_split, not both")
            if not (isinstance(validation_data, (tuple, list)) and len(validation_data) == 2):
                raise ValueError("validation_data must be a pair (X_val, y_val)")
            Xv, yv = self._check_data(*validation_data, names=("validation X", "validation y"))
            return X, y, (Xv, yv)
        if not validation_split:
            return X, y, None
        if not 0.0 < validation_split < 1.0:
            raise ValueError(f"validation_split must be in (0, 1), got {validation_split!r}")
        n_val = int(math.ceil(validation_split * X.shape[0]))
        if n_val >= X.shape[0]:
            raise ValueError(f"validation_split={validation_split} leaves no training samples")
        # The last rows, before any shuffling, as Keras does: the split never changes between runs.
        return X[:-n_val], y[:-n_val], (X[-n_val:], y[-n_val:])

    def fit(self, X: ArrayLike, y: ArrayLike, epochs: int = 1, batch_size: int = 32,
            validation_data: Optional[Tuple[ArrayLike, ArrayLike]] = None, validation_split: float = 0.0,
            shuffle: bool = True, callbacks: Union[Callback, Iterable[Callback]] = (), verbose: int = 1) -> History:
        """Train on (X, y) for `epochs` passes in mini-batches; returns this run's History.

        verbose: 0 silent, 1 a progress bar per epoch (loss, samples/s), 2 one line per epoch.
        Raises FloatingPointError naming the epoch and step if the loss or a gradient becomes NaN or
        infinite; that step is not applied, so the weights stay those of the last good step.
        """
        self._check_trainable()
        positive_int(epochs, "epochs")
        positive_int(batch_size, "batch_size")
        X, y = self._check_data(X, y)
        X, y, validation = self._split_validation(X, y, validation_data, validation_split)
        callbacks = self._callbacks(callbacks, validation is not None)
        history = History()
        self.stop_training = False
        for cb in callbacks:
            cb.on_train_begin(self)
        logs = {}
        rows = min(batch_size, X.shape[0])
        buffers = (np.empty((rows,) + X.shape[1:], dtype=X.dtype), np.empty((rows,) + y.shape[1:], dtype=y.dtype))
        try:
            for _ in range(epochs):
                epoch = self.epochs_trained
                for cb in callbacks:
                    cb.on_epoch_begin(epoch)
                logs = self._run_epoch(X, y, batch_size, shuffle, callbacks, epoch, verbose, validation, buffers)
                self.epochs_trained += 1
                history.append(epoch, logs)
                self.history.append(epoch, logs)
                for cb in callbacks:
                    cb.on_epoch_end(epoch, logs)
                if self.stop_training:
                    break
        finally:
            for cb in callbacks:
                cb.on_train_end(logs)
        return history

    def _callbacks(self, callbacks, has_validation):
        if isinstance(callbacks, Callback):
            callbacks = [callbacks]
        callbacks = list(callbacks)
        for cb in callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks must be fastnet Callback instances, got {type(cb).__name__}")
        if has_validation and not any(isinstance(cb, OverfittingWarning) for cb in callbacks):
            callbacks.append(OverfittingWarning())
        return callbacks

    def _run_epoch(self, X, y, batch_size, shuffle, callbacks, epoch, verbose, validation, buffers):
        n = X.shape[0]
        order = self.rng.permutation(n) if shuffle else None
        bar = self._progress_bar(n, epoch, verbose)
        start = time.perf_counter()
        sums = {"loss": 0.0}
        try:
            for step, lo in enumerate(range(0, n, batch_size)):
                hi = min(lo + batch_size, n)
                xb, yb = self._batch(X, y, order, lo, hi, buffers)
                try:
                    loss, out = self._train_step(xb, yb)
                except FloatingPointError as exc:
                    raise FloatingPointError(
                        f"{exc} at epoch {epoch + 1}, step {step + 1} (samples {lo}..{hi - 1}); training stopped "
                        f"with the weights of the last good step. Try a smaller learning rate, gradient clipping "
                        f"(clip_norm=...) or check the inputs for huge values") from None
                self._accumulate(sums, loss, out, yb)
                for cb in callbacks:
                    cb.on_batch_end(step, {"loss": loss, "batch_size": hi - lo})
                if bar is not None:
                    bar.update(hi - lo)
                    if step % 16 == 0:
                        bar.set_postfix(loss=f"{sums['loss'] / hi:.4f}", refresh=False)
            logs = {key: total / n for key, total in sums.items()}
            if validation is not None:
                logs.update({"val_" + key: value for key, value in self._evaluate_checked(*validation).items()})
            logs["time"] = time.perf_counter() - start
            if bar is not None:
                bar.set_postfix({k: f"{v:.4f}" for k, v in logs.items() if k != "time"}, refresh=False)
        finally:
            if bar is not None:
                bar.close()
        if verbose == 2:
            shown = "  ".join(f"{k}={v:.4f}" for k, v in logs.items() if k != "time")
            print(f"epoch {epoch + 1}: {shown}  ({logs['time']:.2f}s)")
        return logs

    @staticmethod
    def _batch(X, y, order, lo, hi, buffers):
        """Rows lo..hi-1 of the epoch's order, gathered into preallocated buffers (no allocation per step)."""
        if order is None:
            return X[lo:hi], y[lo:hi]
        xb, yb = buffers[0][:hi - lo], buffers[1][:hi - lo]
        idx = order[lo:hi]
        X.take(idx, axis=0, out=xb)
        y.take(idx, axis=0, out=yb)
        return xb, yb

    def _accumulate(self, sums, loss, out, target):
        """Add one batch's loss and metrics, weighted by its size, to the epoch's running sums."""
        m = target.shape[0]
        sums["loss"] += loss * m
        for key, value in self.loss.metrics(out, target).items():
            sums[key] = sums.get(key, 0.0) + value * m

    def _progress_bar(self, n, epoch, verbose):
        if verbose != 1:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=n, unit=" samples", unit_scale=False, desc=f"epoch {epoch + 1}", leave=True,
                    dynamic_ncols=True)

    # ---- inference and evaluation -------------------------------------------
    def predict(self, X: ArrayLike) -> np.ndarray:
        """Class labels for classifiers, values for regression."""
        return self.loss.predict(self._output(self._check_X(X)))

    def predict_proba(self, X: ArrayLike) -> np.ndarray:
        """Class probabilities (softmax) or per-output probabilities (sigmoid) for classifiers."""
        return self.loss.predict_proba(self._output(self._check_X(X)))

    def evaluate(self, X: ArrayLike, y: ArrayLike) -> Dict[str, float]:
        """{'loss': ..., 'accuracy': ...} for classifiers, {'loss', 'mse', 'mae'} for regression."""
        X, y = self._check_data(X, y)
        return self._evaluate_checked(X, y)

    def _evaluate_checked(self, X, y):
        out = self._output(X)
        loss = self.loss(out, y)[0]
        return {"loss": float(loss), **self.loss.metrics(out, y)}

    # ---- description -------------------------------------------------------
    def summary(self, print_fn: Optional[Callable[[str], Any]] = print) -> str:
        """A table of layers, output shapes and parameter counts; printed and returned."""
        rows = [("#", "layer", "output shape", "params")]
        shape = (None, self.n_features)
        for i, layer in enumerate(self.layers):
            try:
                shape = layer.output_shape(shape)
                shown = str(shape).replace("None", "batch")
            except Exception:
                shape, shown = shape, "?"
            rows.append((str(i), repr(layer), shown, f"{layer.n_params():,}"))
        widths = [max(len(r[c]) for r in rows) for c in range(4)]
        line = "-" * (sum(widths) + 6)
        fmt = lambda r: f"{r[0]:>{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]:>{widths[3]}}"
        lines = [fmt(rows[0]), line] + [fmt(r) for r in rows[1:]] + [line]
        lines.append(f"total parameters: {len(self.store):,} ({self.dtype.name})")
        lines.append(f"loss: {self.loss.name}   optimizer: {self.optimizer!r}")
        text = "\n".join(lines)
        if print_fn is not None:
            print_fn(text)
        return text

    def __repr__(self):
        return f"Network({len(self.layers)} layers, {len(self.store)} parameters, loss={self.loss.name!r})"

    def to_onnx(self, path: PathLike, proba: bool = False):
        """Write this network as an ONNX graph (input "input" -> "output", or "probabilities" with proba=True);
        needs `pip install "fastnet[onnx]"`."""
        from fastnet.export.onnx import network_to_onnx

        return network_to_onnx(self, path, proba=proba)

    # ---- files ---------------------------------------------------------------
    def architecture(self) -> Dict[str, Any]:
        return {"layers": [layer_to_config(layer) for layer in self.layers], "loss": self.loss.name,
                "dtype": self.dtype.name, "precision": self.precision}

    def save(self, path: PathLike) -> None:
        """Write weights, architecture, optimizer state and RNG state to a safetensors file, atomically."""
        tensors, opt_meta = self._tensors()
        metadata = {
            "fastnet_kind": "network",
            "fastnet_version": __version__,
            "format_version": _FORMAT_VERSION,
            "architecture": self.architecture(),
            "seed": self.seed,
            "optimizer": self.optimizer.config(),
            "optimizer_state": opt_meta,
            "rng_state": self.rng.bit_generator.state,
            "epochs_trained": self.epochs_trained,
            "history": self.history.to_dict(),
            "quantization": self.quantization,
        }
        _io.save_safetensors_atomic(path, tensors, metadata)

    def _tensors(self):
        """What a model file holds: float32 parameters and optimizer state, or, once
        quantised, the int8 matrices with their scales and the other parameters."""
        if not self.quantization:
            tensors = {"param/" + name: arr for name, arr in self.store.named_arrays().items()}
            opt_arrays, opt_meta = self.optimizer.state_dict()
            tensors.update({"optimizer/" + name: arr for name, arr in opt_arrays.items()})
            return tensors, opt_meta
        named = _quantized.store_entries(self.store)
        skip = _quantized.quantized_names(named)
        tensors = {"param/" + name: arr for name, arr in self.store.named_arrays().items() if name not in skip}
        tensors.update(_quantized.quantized_tensors(_quantized.store_entries(self.store, "int8/")))
        return tensors, {}

    def _expected_tensors(self):
        if self.quantization:
            skip = _quantized.quantized_names(_quantized.store_entries(self.store))
            expected = {"param/" + name: (arr.shape, arr.dtype) for name, arr in self.store.named_arrays().items()
                        if name not in skip}
            expected.update(_quantized.expected_quantized(_quantized.store_entries(self.store, "int8/")))
            return expected
        expected = {"param/" + name: (arr.shape, arr.dtype) for name, arr in self.store.named_arrays().items()}
        opt_arrays, _ = self.optimizer.state_dict()
        expected.update({"optimizer/" + name: (arr.shape, arr.dtype) for name, arr in opt_arrays.items()})
        return expected

    @classmethod
    def _from_file(cls, tensors, metadata, path):
        try:
            arch = metadata["architecture"]
            layers = [layer_from_config(spec) for spec in arch["layers"]]
            optimizer = _optimizers.from_config(metadata["optimizer"])
            net = cls(layers, loss=arch["loss"], optimizer=optimizer, seed=metadata["seed"], dtype=arch["dtype"],
                      precision=arch.get("precision", "float32"))
        except (KeyError, TypeError, ValueError) as exc:
            raise _io.ModelFileError(f"{path!r}: cannot rebuild the network from its metadata: {exc}") from None
        net.quantization = metadata.get("quantization")
        if net.quantization is not None:
            _quantized.check_quantization(net.quantization)
        _io.check_tensors(path, tensors, net._expected_tensors())
        for name, arr in net.store.named_arrays().items():
            if "param/" + name in tensors:
                arr[...] = tensors["param/" + name]
        if net.quantization:
            _quantized.load_quantized(_quantized.store_entries(net.store, "int8/"), tensors)
        else:
            prefix = "optimizer/"
            net.optimizer.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)},
                                          metadata["optimizer_state"])
        net.rng.bit_generator.state = metadata["rng_state"]
        net.epochs_trained = int(metadata.get("epochs_trained", 0))
        saved_history = metadata.get("history") or {}
        for i, epoch in enumerate(saved_history.get("epoch", [])):
            net.history.append(epoch, {k: v[i] for k, v in saved_history.get("history", {}).items()})
        return net


def load(path: PathLike):
    """Load a model file saved by `Network.save` (or any registered kind, e.g. a Translator)."""
    return _io.load(path)


_io.register_loader("network", Network._from_file)
