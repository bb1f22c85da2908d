"""ImageDecoder: an intermediate representation in, a picture out.

The decoder never sees text. It reads the vector an Encoder makes of a
sentence (d_model numbers) and turns it into size x size x 3 pixels through
a few dense layers; the last one has size*size*3 outputs squashed by a
sigmoid into [0, 1]. Think of the last layer's weights as a library of
basis pictures: the hidden layers decide how much of each to mix in.

Why a dense head: at 32x32 every pixel can afford its own weights, so
positions are learned exactly. In a quick comparison on toy pictures it
learned faster in the first epochs -- all a few-minute budget allows -- than
a head that composites a predicted shape mask with a predicted colour (that
one ended lower only after many more epochs).
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from numpy.typing import ArrayLike

from fastnet import io, ops
from fastnet.checks import positive_int
from fastnet.history import History
from fastnet.layers.base import Layer, ParameterStore, ParameterView, check_affordable, check_precision
from fastnet.layers.core import Dense
from fastnet.optimizers import Optimizer

LOSSES = ("mse", "bce")
# Adam's default step for a pixel decoder. On toy pictures with a 75-second
# budget, 3e-3 reached 0.12x the mean picture's error, 2e-3 0.15x, 1e-3 0.27x.
DEFAULT_LR = 3e-3
# Hidden activations whose backward works from the layer's output alone (the
# decoder keeps no pre-activation).
HIDDEN_ACTIVATIONS = tuple(name for name in ops.ACTIVATION_NAMES
                           if ops.activation_info(name).backward_reads(x=False, y=True) == "y")


def to_uint8(pictures):
    """Pictures in [0, 1] (any float dtype) -> uint8 in [0, 255], rounded."""
    pictures = np.asarray(pictures)
    return (np.clip(pictures, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def pictures_to_float(images, dtype=np.float32):
    """uint8 pictures -> [0, 1] floats; float pictures are checked, not rescaled."""
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images.astype(dtype) / np.asarray(255.0, dtype=dtype)
    if not np.issubdtype(images.dtype, np.floating):
        raise TypeError(f"pictures must be uint8 or float in [0, 1], got dtype {images.dtype}")
    if images.size and not np.all(np.isfinite(images)):
        raise ValueError("pictures contain NaN or infinity")
    if images.size and (images.min() < 0.0 or images.max() > 1.0):
        raise ValueError(f"float pictures must lie in [0, 1], got values in "
                         f"[{images.min():.3g}, {images.max():.3g}] (pass uint8 for 0..255)")
    return images.astype(dtype, copy=False)


class ImageDecoder(Layer):
    """Decode representation vectors (N, d_model) into pictures (N, size, size, 3).

    >>> dec = ImageDecoder(d_model=128, size=32, hidden=(256, 512), seed=0)
    >>> hist = dec.fit(reps, images, epochs=20, batch_size=64)
    >>> dec.predict(reps[:4]).shape       # floats in [0, 1]
    (4, 32, 32, 3)
    >>> dec.predict_uint8(reps[:4]).dtype
    dtype('uint8')

    loss "mse" compares the sigmoid output with the target pixels; "bce"
    treats every channel as a probability (computed stably on the logits).
    """

    kind = "pixels"

    def __init__(self, d_model: int, size: int = 32, hidden: Sequence[int] = (256, 512), channels: int = 3,
                 loss: str = "mse", activation: str = "relu", seed: int = 0, dtype=np.float32,
                 precision: str = "float32"):
        super().__init__()
        self.name = "image_decoder"
        self.d_model = positive_int(d_model, "d_model")
        self.size = positive_int(size, "size")
        self.channels = positive_int(channels, "channels")
        self.hidden = tuple(positive_int(h, "hidden layer width") for h in hidden)
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        if activation not in HIDDEN_ACTIVATIONS:
            raise ValueError(f"hidden activation must be one of {HIDDEN_ACTIVATIONS}, got {activation!r}")
        self.loss_name = loss
        self.activation = activation
        self.seed = seed
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise TypeError(f"dtype must be float32 or float64, got {self.dtype}")
        self.layers = self._build_layers(np.random.default_rng(seed))
        self.precision = check_precision(precision, self.dtype)  # of the matrix products
        ParameterStore([self], dtype=self.dtype)  # sets self.store_view: see `store`
        self.optimizer = None
        self.history = None
        self.epochs_trained = 0  # History epochs continue from here when fit() is called again
        self._cache = None  # the output activation of the forward pass backward() goes back through
        self._pending = None  # (gradient, output activation) between loss(training=True) and backward_loss()
        self._step_pending = None  # the same between forward_loss() and backward()

    # ---- construction -------------------------------------------------------
    @property
    def n_pixels(self) -> int:
        return self.size * self.size * self.channels

    def _widths(self):
        return (self.d_model,) + self.hidden + (self.n_pixels,)

    def _build_layers(self, rng):
        """Dense layers, drawn in order from `rng`. He initialisation before a ReLU; the output
        layer (no ReLU after it) takes LeCun's smaller scale so the sigmoid does not start saturated."""
        widths = self._widths()
        layers = []
        for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
            last = i == len(widths) - 2
            check_affordable(n_in * n_out, f"an ImageDecoder layer of {n_in} x {n_out}")
            layer = Dense(n_in, n_out, activation="sigmoid" if last else self.activation,
                          init="lecun_normal" if last else "he_normal", dtype=self.dtype)
            layer.quantizable = ()  # a pixel decoder stays float when its Translator is quantised
            layer.initialize(rng)
            layers.append(layer)
        return layers

    def sublayers(self) -> List[Layer]:
        return self.layers

    def named_params(self, prefix=""):
        """w0, b0, w1, b1, ...: the names of model files older than the Dense layers, kept."""
        for i, layer in enumerate(self.layers):
            yield f"{prefix}w{i}", layer, "w"
            yield f"{prefix}b{i}", layer, "b"

    # The parameters live in the Dense layers; the decoder shows them under the names above.
    @property
    def params(self) -> Dict[str, np.ndarray]:
        return {name: layer.params[p] for name, layer, p in self.named_params()}

    @params.setter
    def params(self, value):
        if value:  # Layer.__init__ starts every layer with empty dicts: nothing else may be set
            raise AttributeError("an ImageDecoder's parameters live in its Dense layers")

    @property
    def grads(self) -> Dict[str, np.ndarray]:
        return {name: layer.grads[p] for name, layer, p in self.named_params()}

    @grads.setter
    def grads(self, value):
        if value:
            raise AttributeError("an ImageDecoder's gradients live in its Dense layers")

    @property
    def precision(self) -> str:
        """'float32' or 'bf16': the precision of the matrix products (settable)."""
        return self._precision

    @precision.setter
    def precision(self, value):
        self._precision = value
        for layer in self.layers:
            layer.precision = value

    @property
    def n_layers(self) -> int:
        return len(self.hidden) + 1

    def config(self) -> Dict[str, Any]:
        return {"d_model": self.d_model, "size": self.size,
                "hidden": list(self.hidden), "channels": self.channels, "loss": self.loss_name,
                "activation": self.activation, "seed": self.seed, "precision": self.precision}

    @classmethod
    def from_config(cls, config: Dict[str, Any], dtype=np.float32) -> "ImageDecoder":
        config = dict(config)
        try:
            return cls(dtype=dtype, **config)
        except TypeError as exc:
            raise ValueError(f"bad ImageDecoder configuration {config}: {exc}") from None

    # ---- forward and backward ----------------------------------------------
    def _check_representations(self, reps):
        reps = np.asarray(reps)
        if reps.ndim == 1:
            reps = reps[None, :]
        if reps.ndim != 2 or reps.shape[1] != self.d_model:
            raise ValueError(f"representations must have shape (N, {self.d_model}), got {reps.shape}")
        if not np.issubdtype(reps.dtype, np.floating):
            raise TypeError(f"representations must be floats, got dtype {reps.dtype}")
        if reps.size and not np.all(np.isfinite(reps)):
            raise ValueError("representations contain NaN or infinity")
        return np.ascontiguousarray(reps, dtype=self.dtype)

    def _run_layers(self, reps, output_activation):
        """Every Dense layer, each activation fused into its kernel; the output layer's activation is
        the sigmoid, or identity when BCE trains on the logits."""
        x = self._check_representations(reps)
        self.layers[-1].activation = output_activation
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def forward(self, reps: np.ndarray, training: bool = False) -> np.ndarray:
        """(N, d_model) -> pictures (N, size, size, channels) in [0, 1]."""
        pixels = self._run_layers(reps, "sigmoid")
        self._cache = "sigmoid"
        return pixels.reshape(-1, self.size, self.size, self.channels)

    def backward(self, dpictures: Optional[np.ndarray] = None) -> Optional[np.ndarray]:
        """Gradient w.r.t. the pictures -> gradient w.r.t. the representations.

        Parameter gradients are added into self.grads (zero them between steps).
        Without an argument: the training step's backward after forward_loss (returns None).
        """
        if dpictures is None:
            return self._step_backward()
        if self._cache is None:
            raise RuntimeError("backward() called before forward()")
        rows = self.layers[0]._x.shape[0]
        dpix = np.asarray(dpictures)
        if dpix.size != rows * self.n_pixels:
            raise ValueError(f"backward: gradient has shape {dpix.shape}, pictures have "
                             f"{(rows, self.size, self.size, self.channels)}")
        return self._backward(dpix.reshape(rows, self.n_pixels), self._cache, need_dx=True)

    def _step_backward(self):
        if self._step_pending is None:
            raise RuntimeError("backward() needs a forward_loss() first")
        (dout, output_activation), self._step_pending = self._step_pending, None
        self._backward(dout, output_activation, need_dx=False)
        return None

    def _backward(self, dy, output_activation, need_dx):
        """Back through the layers from the gradient of the last layer's output."""
        self.layers[-1].activation = output_activation
        self.layers[0].need_input_grad = need_dx
        dy = np.ascontiguousarray(dy, dtype=self.dtype)
        for layer in reversed(self.layers):
            dy = layer.backward(dy)
        return dy

    def _loss_forward(self, reps, targets):
        """Forward pass and loss on a batch: (loss, gradient of the last layer's output, its activation).

        MSE runs the sigmoid inside the output layer's kernel; BCE keeps the
        logits and uses the stable fused loss on them.
        """
        output_activation = "identity" if self.loss_name == "bce" else "sigmoid"
        out = self._run_layers(reps, output_activation)
        flat_targets = np.ascontiguousarray(targets, dtype=self.dtype).reshape(out.shape)
        if self.loss_name == "bce":
            loss, dout = ops.bce_with_logits(out, flat_targets)
        else:
            loss, dout = ops.mse(out, flat_targets)
        return float(loss), dout, output_activation

    def loss_and_backward(self, reps: np.ndarray, targets: np.ndarray) -> float:
        """One training pass on a batch: the loss (float); gradients added into self.grads."""
        loss, _ = self.forward_loss(reps, targets)
        self.backward()
        return loss

    # ---- the training step, as public pieces (see fastnet/step.py) ----------
    def prepare_data(self, reps: ArrayLike, images: ArrayLike) -> Tuple[np.ndarray, np.ndarray]:
        """(representations, pictures) checked and converted to this decoder's float dtype."""
        reps = self._check_representations(reps)
        return reps, self._check_images(images, reps.shape[0])

    def begin_training(self, reps: Optional[np.ndarray], images: ArrayLike) -> None:
        """Before the first step: a fresh decoder starts from the mean of these pictures."""
        if self.untrained():
            self.start_from_mean_picture(images)

    def use_optimizer(self, optimizer: Optional[Optimizer] = None) -> Optimizer:
        """Bind `optimizer` (default: the one in use, else Adam(DEFAULT_LR)) to this decoder's parameters;
        an optimizer already bound to them keeps its state (Adam's moments). Returns it."""
        from fastnet.optimizers import Adam

        store = self.store
        if optimizer is None:
            optimizer = self.optimizer if self.optimizer is not None else Adam(DEFAULT_LR)
        bound = getattr(optimizer, "store", None)
        same_weights = (bound is not None and bound.data.size == store.data.size
                        and np.shares_memory(bound.data, store.data))
        if not same_weights:
            optimizer.bind(store)
        self.optimizer = optimizer
        return optimizer

    def forward_loss(self, reps: np.ndarray, images: np.ndarray, loss_scale: float = 1.0) -> Tuple[float, None]:
        """Forward pass and loss on a batch; returns (loss times loss_scale, None). backward() follows."""
        loss, dout, cache = self._loss_forward(reps, images)
        if loss_scale != 1.0:
            dout *= dout.dtype.type(loss_scale)
            loss *= loss_scale
        self._step_pending = (dout, cache)
        return loss, None

    @property
    def gradients(self) -> np.ndarray:
        """The gradients of this decoder's parameters, one flat buffer (see `store`)."""
        return self.store.grad

    def apply_update(self) -> None:
        """One step of the optimizer bound by use_optimizer (or fit)."""
        if self.optimizer is None:
            raise RuntimeError("apply_update() needs an optimizer: call use_optimizer() first")
        self.optimizer.step()

    # ---- the Translator's decoder interface (see fastnet/seq2seq/decoder.py) ---------
    input_kind = "representation"

    def loss(self, context: np.ndarray, mask: None, target: ArrayLike, training: bool = False,
             label_smoothing: float = 0.0) -> Tuple[float, Dict[str, int]]:
        """Mean loss of the pictures `target` given sentence vectors `context` (mask must be None).

        label_smoothing is for token decoders and ignored here. With
        training=True, backward_loss() then returns the gradient w.r.t. context.
        """
        if mask is not None:
            raise ValueError("an ImageDecoder reads pooled sentence vectors; it takes no padding mask")
        context = self._check_representations(context)
        targets = self._check_images(target, context.shape[0])
        if training:  # a Translator's fit: a fresh decoder starts from this batch's mean picture
            self.begin_training(context, targets)
        loss, dout, cache = self._loss_forward(context, targets)
        self._pending = (dout, cache) if training else None
        return loss, {"pixel_values": targets.size}

    def loss_units(self, target: ArrayLike) -> int:
        """How many terms the mean loss of `target` averages (pixel values): a data-parallel
        trainer weighs each worker's part of a batch by its share of them."""
        return len(target) * self.n_pixels

    def backward_loss(self, loss_scale: float = 1.0) -> np.ndarray:
        """After loss(training=True): gradient w.r.t. the context of the loss times loss_scale;
        parameter gradients added to grads."""
        if self._pending is None:
            raise RuntimeError("backward_loss() needs a loss(..., training=True) call first")
        dout, cache = self._pending
        self._pending = None
        if loss_scale != 1.0:
            dout *= dout.dtype.type(loss_scale)
        return self._backward(dout, cache, need_dx=True)

    @property
    def store(self) -> ParameterView:
        """The flat parameter and gradient buffers this decoder trains through (a ParameterView).

        A view of its own ParameterStore; once a Translator has gathered the decoder into its
        store, the view of that bigger buffer covering the decoder's parameters, so the
        Translator and the decoder keep training one and the same set of weights.
        """
        return self.store_view

    # ---- prediction ----------------------------------------------------------
    def predict(self, reps: ArrayLike, mask: None = None, batch_size: int = 256) -> np.ndarray:
        """Pictures as floats in [0, 1], shape (N, size, size, channels).

        (mask is part of the Translator's decoder interface and must be None.)
        """
        if mask is not None:
            raise ValueError("an ImageDecoder reads pooled sentence vectors; it takes no padding mask")
        reps = self._check_representations(reps)
        out = np.empty((reps.shape[0], self.size, self.size, self.channels), dtype=self.dtype)
        for start in range(0, reps.shape[0], batch_size):
            pixels = self._run_layers(reps[start:start + batch_size], "sigmoid")
            out[start:start + batch_size] = pixels.reshape(-1, self.size, self.size, self.channels)
        return out

    def predict_uint8(self, reps: ArrayLike, batch_size: int = 256) -> np.ndarray:
        """Pictures as uint8, shape (N, size, size, channels): ready to save or show."""
        return to_uint8(self.predict(reps, batch_size=batch_size))

    def evaluate(self, reps: ArrayLike, images: ArrayLike) -> float:
        """Mean squared pixel error (pixels in [0, 1]) on these pictures."""
        targets = self._check_images(images, len(self._check_representations(reps)))
        return float(np.mean((self.predict(reps) - targets) ** 2))

    def _check_images(self, images, n):
        images = np.asarray(images)
        expected = (n, self.size, self.size, self.channels)
        if images.shape != expected:
            raise ValueError(f"pictures must have shape {expected} to match the "
                             f"representations, got {images.shape}")
        return pictures_to_float(images, self.dtype)

    # ---- training ------------------------------------------------------------
    def fit(self, reps: ArrayLike, images: ArrayLike, epochs: int = 10, batch_size: int = 64,
            optimizer: Optional[Optimizer] = None, validation_data: Optional[Tuple[ArrayLike, ArrayLike]] = None,
            validation_split: float = 0.0, seed: Optional[int] = None, verbose: bool = True,
            minutes: Optional[float] = None) -> History:
        """Train on (representation, picture) pairs; returns a History.

        images: uint8 (0..255) or floats in [0, 1], shape (N, size, size, channels).
        optimizer: defaults to Adam(3e-3). minutes: stop once this much wall
        time has passed (checked after every batch; the cut epoch is recorded
        with the batches it ran). Like Network.fit: a progress bar per epoch
        when verbose, "loss" and "val_loss" per epoch in the History.
        """
        from fastnet.image._training import fit_decoder
        return fit_decoder(self, reps, images, epochs=epochs, batch_size=batch_size,
                           optimizer=optimizer, validation_data=validation_data,
                           validation_split=validation_split, seed=seed, verbose=verbose,
                           minutes=minutes)

    def untrained(self) -> bool:
        """True while the output bias still has its initial zeros (a fresh decoder)."""
        return not np.any(self.params[f"b{self.n_layers - 1}"])

    def start_from_mean_picture(self, images: ArrayLike) -> None:
        """Set the output bias so that, before any training, every picture drawn is the mean one.

        An untrained decoder draws grey (sigmoid(0) = 0.5) everywhere and
        would spend its first epochs learning the white background. Starting
        from the mean picture leaves only the differences to learn. fit()
        does this on its first call.
        """
        mean = pictures_to_float(images, np.float64).mean(axis=0).reshape(-1)
        mean = np.clip(mean, 0.02, 0.98)  # logit(0) and logit(1) are infinite
        self.params[f"b{self.n_layers - 1}"][...] = np.log(mean / (1.0 - mean))

    # ---- files -----------------------------------------------------------------
    def state_dict(self) -> Dict[str, np.ndarray]:
        """{parameter name: float32 array}, in a fixed order."""
        return {name: np.array(self.params[name], dtype=np.float32) for name in self.params}

    def load_state_dict(self, arrays: Dict[str, np.ndarray]) -> None:
        """Copy weights in, checking every name and shape."""
        missing = [name for name in self.params if name not in arrays]
        extra = [name for name in arrays if name not in self.params]
        if missing or extra:
            raise ValueError(f"ImageDecoder weights do not match: missing {missing}, unexpected {extra}")
        for name, value in arrays.items():
            value = np.asarray(value)
            if value.shape != self.params[name].shape:
                raise ValueError(f"ImageDecoder weight {name!r} has shape {value.shape}, "
                                 f"expected {self.params[name].shape}")
            self.params[name][...] = value

    def save(self, path):
        """Weights in safetensors, configuration as JSON in its metadata; atomic."""
        io.save_safetensors_atomic(path, self.state_dict(),
                                   {"fastnet_kind": "image_decoder", "config": self.config()})
        return path

    def summary(self) -> str:
        widths = self._widths()
        lines = [f"ImageDecoder: representation ({self.d_model}) -> picture "
                 f"{self.size}x{self.size}x{self.channels}, loss {self.loss_name}"]
        for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
            act = self.activation if i < self.n_layers - 1 else "sigmoid"
            lines.append(f"  dense {i}: {n_in:>6} -> {n_out:<6} {act:<8} {n_in * n_out + n_out:>10,} params")
        lines.append(f"  total {self.n_params():,} parameters")
        return "\n".join(lines)

    def __repr__(self):
        return (f"ImageDecoder(d_model={self.d_model}, size={self.size}, hidden={self.hidden}, "
                f"loss={self.loss_name!r})")


def load_image_decoder(path):
    """Load what ImageDecoder.save wrote (fn.load(path) does the same)."""
    return io.load_with(path, _decoder_from_file)


def _decoder_from_file(tensors, metadata, path):
    if metadata.get("fastnet_kind") != "image_decoder":
        raise io.ModelFileError(f"{path!r} is not a saved ImageDecoder (fastnet_kind="
                                f"{metadata.get('fastnet_kind')!r})")
    try:
        decoder = ImageDecoder.from_config(metadata["config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise io.ModelFileError(f"{path!r}: cannot rebuild the ImageDecoder from its metadata: {exc}") from None
    io.check_tensors(path, tensors, {name: (p.shape, np.float32) for name, p in decoder.params.items()})
    decoder.load_state_dict(tensors)
    return decoder


io.register_loader("image_decoder", _decoder_from_file)

