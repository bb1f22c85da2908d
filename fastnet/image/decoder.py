"""ImageDecoder: an intermediate representation in, a picture out.

The decoder never sees text. It reads the vector an Encoder makes of a
sentence (d_model numbers) and turns it into size x size x 3 pixels through
a few dense layers; the last one has size*size*3 outputs squashed by a
sigmoid into [0, 1]. Think of the last layer's weights as a library of
basis pictures: the hidden layers decide how much of each to mix in.

A dense head beat a nearest-neighbour upsampling head on the toy pictures
(32x32, a few shapes): the pictures are small enough that every pixel can
afford its own weights, and positions are learned exactly instead of being
smeared by an upsampling grid.
"""
import json
import math
import numpy as np

from fastnet import ops
from fastnet.layers.base import Layer, ParameterStore

LOSSES = ("mse", "bce")


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

    def __init__(self, d_model, size=32, hidden=(256, 512), channels=3, loss="mse",
                 activation="relu", seed=0, dtype=np.float32):
        super().__init__()
        self.name = "image_decoder"
        self.d_model = _positive_int(d_model, "d_model")
        self.size = _positive_int(size, "size")
        self.channels = _positive_int(channels, "channels")
        self.hidden = tuple(_positive_int(h, "hidden layer width") for h in hidden)
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        if activation not in ops.ACTIVATIONS or activation in ("step", None):
            raise ValueError(f"activation {activation!r} is not a trainable hidden activation")
        self.loss = loss
        self.activation = activation
        self.seed = seed
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise TypeError(f"dtype must be float32 or float64, got {self.dtype}")
        self._init_params(np.random.default_rng(seed))
        self.store = ParameterStore([self], dtype=self.dtype)
        self.optimizer = None
        self.history = None
        self._cache = None

    # ---- construction -------------------------------------------------------
    @property
    def n_pixels(self):
        return self.size * self.size * self.channels

    def _widths(self):
        return (self.d_model,) + self.hidden + (self.n_pixels,)

    def _init_params(self, rng):
        widths = self._widths()
        for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
            last = i == len(widths) - 2
            # He initialisation for the ReLU layers; the output layer starts
            # small so every pixel begins near 0.5 and the sigmoid is not saturated.
            scale = math.sqrt(1.0 / n_in) if last else math.sqrt(2.0 / n_in)
            self.add_param(f"w{i}", (rng.standard_normal((n_in, n_out)) * scale).astype(self.dtype))
            self.add_param(f"b{i}", np.zeros(n_out, dtype=self.dtype))

    @property
    def n_layers(self):
        return len(self.hidden) + 1

    def config(self):
        return {"kind": self.kind, "d_model": self.d_model, "size": self.size,
                "hidden": list(self.hidden), "channels": self.channels, "loss": self.loss,
                "activation": self.activation, "seed": self.seed}

    @classmethod
    def from_config(cls, config, dtype=np.float32):
        config = dict(config)
        kind = config.pop("kind", cls.kind)
        if kind != cls.kind:
            raise ValueError(f"configuration is for a {kind!r} decoder, not {cls.kind!r}")
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

    def _forward_logits(self, reps):
        """Hidden layers with their fused activation, then the linear output layer."""
        x = self._check_representations(reps)
        inputs, outputs = [], []
        for i in range(self.n_layers):
            act = self.activation if i < self.n_layers - 1 else "identity"
            inputs.append(x)
            x = ops.dense(x, self.params[f"w{i}"], self.params[f"b{i}"], activation=act)
            outputs.append(x)
        return x, (inputs, outputs)

    def forward(self, reps, training=False):
        """(N, d_model) -> pictures (N, size, size, channels) in [0, 1]."""
        logits, cache = self._forward_logits(reps)
        pixels = ops.sigmoid(logits)
        self._cache = (cache, pixels)
        return pixels.reshape(-1, self.size, self.size, self.channels)

    def backward(self, dpictures):
        """Gradient w.r.t. the pictures -> gradient w.r.t. the representations.

        Parameter gradients are added into self.grads (zero them between steps).
        """
        if self._cache is None:
            raise RuntimeError("backward() called before forward()")
        cache, pixels = self._cache
        dpix = np.ascontiguousarray(dpictures, dtype=self.dtype).reshape(pixels.shape)
        dlogits = dpix * pixels * (1.0 - pixels)
        return self._backward_logits(dlogits, cache)

    def _backward_logits(self, dlogits, cache):
        inputs, outputs = cache
        dy = np.ascontiguousarray(dlogits, dtype=self.dtype)
        for i in reversed(range(self.n_layers)):
            act = self.activation if i < self.n_layers - 1 else "identity"
            dy = ops.dense_backward(inputs[i], self.params[f"w{i}"], outputs[i], dy,
                                    activation=act, dw=self.grads[f"w{i}"],
                                    db=self.grads[f"b{i}"], accumulate=True)
        return dy

    def loss_and_backward(self, reps, targets):
        """One training pass on a batch: loss (float) and gradients in self.grads."""
        logits, cache = self._forward_logits(reps)
        flat_targets = np.ascontiguousarray(targets, dtype=self.dtype).reshape(logits.shape)
        if self.loss == "bce":
            loss, dlogits = ops.bce_with_logits(logits, flat_targets)
        else:
            pixels = ops.sigmoid(logits)
            loss, dpix = ops.mse(pixels, flat_targets)
            dlogits = dpix * pixels * (1.0 - pixels)
        self._backward_logits(dlogits, cache)
        return float(loss)

    # ---- prediction ----------------------------------------------------------
    def predict(self, reps, batch_size=256):
        """Pictures as floats in [0, 1], shape (N, size, size, channels)."""
        reps = self._check_representations(reps)
        out = np.empty((reps.shape[0], self.size, self.size, self.channels), dtype=self.dtype)
        for start in range(0, reps.shape[0], batch_size):
            logits, _ = self._forward_logits(reps[start:start + batch_size])
            out[start:start + batch_size] = ops.sigmoid(logits).reshape(-1, self.size, self.size,
                                                                        self.channels)
        return out

    def predict_uint8(self, reps, batch_size=256):
        """Pictures as uint8, shape (N, size, size, channels): ready to save or show."""
        return to_uint8(self.predict(reps, batch_size=batch_size))

    def evaluate(self, reps, images):
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
    def fit(self, reps, images, epochs=10, batch_size=64, optimizer=None, validation_data=None,
            validation_split=0.0, seed=None, verbose=True, minutes=None):
        """Train on (representation, picture) pairs; returns a History.

        images: uint8 (0..255) or floats in [0, 1], shape (N, size, size, channels).
        optimizer: defaults to Adam(1e-3). minutes: stop after this much wall
        time (checked after each epoch). Like Network.fit: a progress bar per
        epoch when verbose, "loss" and "val_loss" per epoch in the History.
        """
        from fastnet.image._training import fit_decoder
        return fit_decoder(self, reps, images, epochs=epochs, batch_size=batch_size,
                           optimizer=optimizer, validation_data=validation_data,
                           validation_split=validation_split, seed=seed, verbose=verbose,
                           minutes=minutes)

    # ---- files -----------------------------------------------------------------
    def state_dict(self):
        """{parameter name: float32 array}, in a fixed order."""
        return {name: np.array(self.params[name], dtype=np.float32) for name in self.params}

    def load_state_dict(self, arrays):
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
        from fastnet.io import save_safetensors_atomic
        save_safetensors_atomic(path, self.state_dict(),
                                {"format": "fastnet.ImageDecoder", "config": json.dumps(self.config())})
        return path

    def summary(self):
        widths = self._widths()
        lines = [f"ImageDecoder: representation ({self.d_model}) -> picture "
                 f"{self.size}x{self.size}x{self.channels}, loss {self.loss}"]
        for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
            act = self.activation if i < self.n_layers - 1 else "sigmoid"
            lines.append(f"  dense {i}: {n_in:>6} -> {n_out:<6} {act:<8} {n_in * n_out + n_out:>10,} params")
        lines.append(f"  total {self.n_params():,} parameters")
        return "\n".join(lines)

    def __repr__(self):
        return (f"ImageDecoder(d_model={self.d_model}, size={self.size}, hidden={self.hidden}, "
                f"loss={self.loss!r})")


def load_image_decoder(path):
    """Load what ImageDecoder.save wrote."""
    from fastnet.io import load_safetensors_checked
    arrays, metadata = load_safetensors_checked(path)
    if metadata.get("format") != "fastnet.ImageDecoder":
        raise ValueError(f"{path}: not an ImageDecoder file (format {metadata.get('format')!r})")
    decoder = ImageDecoder.from_config(json.loads(metadata["config"]))
    decoder.load_state_dict(arrays)
    return decoder


def _positive_int(value, what):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")
    return int(value)
