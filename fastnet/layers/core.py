"""Dense, Activation and Dropout: the layers a feed-forward network is made of."""
from __future__ import annotations  # annotations stay strings: np.random.Generator would import numpy.random

from typing import Any, Dict, Optional, Tuple

import numpy as np

from fastnet import initializers, ops
from fastnet.checks import positive_int
from fastnet.layers.base import Layer, check_affordable


def _check_activation(name, extra=()):
    if name not in ops.ACTIVATIONS and name not in extra:
        names = ", ".join(repr(k) for k in list(ops.ACTIVATIONS) + list(extra) if k is not None)
        raise ValueError(f"unknown activation {name!r}; choose from {names}")
    return name


class _Buffers:
    """Output buffers reused from step to step, one per batch size.

    A training epoch sees at most two batch sizes (full and the last, partial
    one), so a tiny dict avoids allocating on every step; the last buffer
    handed out is checked first because consecutive steps share a size.
    """

    def __init__(self):
        self._by_rows = {}
        self._last = None

    def get(self, rows, cols, dtype):
        last = self._last
        if last is not None and last.shape[0] == rows and last.dtype == dtype:
            return last
        buf = self._by_rows.get(rows)
        if buf is None or buf.dtype != dtype or buf.shape[1] != cols:
            buf = self._by_rows[rows] = np.empty((rows, cols), dtype=dtype)
        self._last = buf
        return buf


class Dense(Layer):
    """A layer of perceptrons: y = activation(x @ w + b), w has shape (n_in, n_out).

    The bias add and the activation run inside the matrix multiply's epilogue
    (one C call forward, one backward). x is (rows, n_in) or any (..., n_in):
    the leading axes are flattened into rows (the transformer's (B, T, D)).
    dtype: of the parameters until a ParameterStore casts them to its own
    (default float64 placeholders, which a Network's store casts).
    """

    quantizable = ("w",)

    def __init__(self, n_in: int, n_out: int, activation: Optional[str] = None, init: Optional[str] = None,
                 use_bias: bool = True, alpha: float = 0.01, dtype=None):
        super().__init__()
        self.n_in = positive_int(n_in, "Dense n_in")
        self.n_out = positive_int(n_out, "Dense n_out")
        self.activation = _check_activation(activation)
        if init is not None:
            initializers.get(init)
        self.init = init
        self.use_bias = bool(use_bias)
        self.alpha = float(alpha)
        self.need_input_grad = True  # the Network turns this off for its first layer
        dtype = np.float64 if dtype is None else np.dtype(dtype)
        check_affordable(self.n_in * self.n_out, f"a Dense layer of {self.n_in} x {self.n_out}")
        self.add_param("w", np.zeros((self.n_in, self.n_out), dtype))
        if self.use_bias:
            self.add_param("b", np.zeros(self.n_out, dtype))
        self._buffers = _Buffers()
        self._x = self._y = self._pre = None

    def initialize(self, rng: np.random.Generator) -> None:
        init = initializers.get(self.init or initializers.default_for(self.activation))
        self.params["w"][...] = init((self.n_in, self.n_out), rng, self.n_in, self.n_out)
        if self.use_bias:
            self.params["b"][...] = 0.0

    def output_shape(self, input_shape: Tuple[Optional[int], ...]) -> Tuple[Optional[int], ...]:
        return input_shape[:-1] + (self.n_out,)

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        """activation(x @ w + b); with training=True the output buffer is reused from step to step."""
        if x.ndim > 2:  # (..., n_in): the leading axes are rows
            if x.shape[-1] != self.n_in:
                raise ValueError(f"Dense: expected an input of shape (..., {self.n_in}), got {x.shape}")
            rows = np.ascontiguousarray(x.reshape(-1, self.n_in))
            return self.forward(rows, training).reshape(*x.shape[:-1], self.n_out)
        if self.quantized:
            self._x = None  # nothing to go back through
            return self.infer(x)
        w = self.params["w"]
        bias = self.params["b"] if self.use_bias else None
        out = self._buffers.get(x.shape[0], self.n_out, w.dtype) if training else None
        if ops.activation_info(self.activation).needs_input(self.alpha):  # keep the pre-activation
            y, self._pre = ops.dense(x, w, bias, activation=self.activation, alpha=self.alpha, out=out,
                                     return_preactivation=True, precision=self.precision)
        else:
            y = ops.dense(x, w, bias, activation=self.activation, alpha=self.alpha, out=out,
                          precision=self.precision)
        self._x, self._y = x, y
        return y

    def infer(self, x: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
        """activation(x @ w + b) for rows x (m, n_in), keeping nothing for a backward (a decoder's
        logits, say); out: an (m, n_out) array of the result's dtype to write into."""
        bias = self.params["b"] if self.use_bias else None
        if self.quantized:
            return self.quantized["w"].dense(x, bias, self.activation, self.alpha, out=out)
        return ops.dense(x, self.params["w"], bias, activation=self.activation, alpha=self.alpha, out=out,
                         precision=self.precision)

    def backward(self, dy: np.ndarray) -> Optional[np.ndarray]:
        """Adds dL/dw and dL/db into grads; returns dL/dx (None when need_input_grad is off)."""
        self.check_trainable()
        if self._x is None:
            raise RuntimeError("Dense.backward called before forward")
        if not ops.activation_info(self.activation).has_gradient:
            raise ValueError(f"the {self.activation} activation has no gradient; train it with the perceptron rule "
                             "(fn.Perceptron) or use 'sigmoid'")
        if dy.ndim > 2:
            dx = self.backward(np.ascontiguousarray(dy.reshape(-1, self.n_out)))
            return None if dx is None else dx.reshape(*dy.shape[:-1], self.n_in)
        dx, _, _ = ops.dense_backward(
            self._x, self.params["w"], self._y, dy, self.activation, self.alpha, pre=self._pre,
            need_dx=self.need_input_grad, dw=self.grads["w"], db=self.grads.get("b"),
            accumulate=True, with_bias=self.use_bias, precision=self.precision)
        return dx

    def config(self) -> Dict[str, Any]:
        return {"n_in": self.n_in, "n_out": self.n_out, "activation": self.activation, "init": self.init,
                "use_bias": self.use_bias, "alpha": self.alpha}

    def __repr__(self):
        return f"Dense({self.n_in}, {self.n_out}, activation={self.activation!r})"


class Activation(Layer):
    """An activation on its own: any of fastnet.ops.ACTIVATION_NAMES, or softmax (row-wise)."""

    def __init__(self, name: str, alpha: float = 0.01):
        super().__init__()
        self.activation = _check_activation(name, extra=("softmax",))
        self.alpha = float(alpha)
        self._x = self._y = None

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        if self.activation == "softmax":
            y = ops.softmax(x)
        else:
            y = ops.activation(x, self.activation, alpha=self.alpha)
        self._x, self._y = x, y
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        if self._y is None:
            raise RuntimeError("Activation.backward called before forward")
        if self.activation != "softmax" and not ops.activation_info(self.activation).has_gradient:
            raise ValueError(f"the {self.activation} activation has no gradient; "
                             "use 'sigmoid' to train by gradient descent")
        if self.activation == "softmax":
            return ops.softmax_backward(self._y, dy)
        return ops.activation_backward(self.activation, dy, x=self._x, y=self._y, alpha=self.alpha)

    def config(self) -> Dict[str, Any]:
        return {"name": self.activation, "alpha": self.alpha}

    def __repr__(self):
        return f"Activation({self.activation!r})"


class Dropout(Layer):
    """Zero each input with probability `rate` while training, scaling the rest by 1/(1-rate).

    The mask comes from a C kernel keyed by a seed drawn from a random
    generator: the owning network's (passed to `initialize`), or with
    `seed` the layer's own (the transformer stacks seed each of theirs from
    the model's seed). Either way a seeded model drops the same units on every
    run. At inference it is the identity.
    """

    def __init__(self, rate: float, seed: Optional[int] = None):
        super().__init__()
        if isinstance(rate, bool) or not (isinstance(rate, (int, float)) and 0.0 <= rate < 1.0):
            raise ValueError(f"Dropout rate must be in [0, 1), got {rate!r}")
        self.rate = float(rate)
        self._own_rng = seed is not None
        self.rng = np.random.default_rng(seed) if self._own_rng else None
        # A layer with its own generator draws 31-bit mask seeds, a network's 63-bit ones: both as
        # before the two kinds of dropout were one class, so seeded models train exactly as they did.
        self._seed_limit = 1 << 31 if self._own_rng else 2**63 - 1
        self._mask = None

    def initialize(self, rng: np.random.Generator) -> None:
        if not self._own_rng:
            self.rng = rng

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        if not training or self.rate == 0.0:
            self._mask = None
            return x
        if self.rng is None:  # used outside a network: still reproducible
            self.rng = np.random.default_rng(0)
        seed = int(self.rng.integers(0, self._seed_limit))
        y, self._mask = ops.dropout(np.ascontiguousarray(x), self.rate, seed)
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        if self._mask is None:
            return dy
        return ops.dropout_backward(np.ascontiguousarray(dy), self._mask, self.rate)

    def config(self) -> dict:
        return {"rate": self.rate}

    def __repr__(self):
        return f"Dropout({self.rate})"
