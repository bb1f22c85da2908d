"""The perceptron: inputs times weights, summed with a bias, through an activation.

    p = fn.Perceptron(2)                 # a step unit: output 1 if w . x + b > 0 else 0
    p.fit(X, y, epochs=20, lr=0.1)        # Rosenblatt's rule
    p.weights, p.bias                     # plain numbers you can read and set

A `fn.Dense` layer is many of these side by side.
"""
import numpy as np

from fastnet import ops
from fastnet.checks import positive_int

_ACTIVATIONS = tuple(name for name in ops.ACTIVATIONS if name is not None)


class Perceptron:
    """One artificial neuron with `n_inputs` weights and a bias (float64, for readability)."""

    def __init__(self, n_inputs, activation="step", seed=0):
        positive_int(n_inputs, "n_inputs")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose from {', '.join(_ACTIVATIONS)}")
        self.n_inputs = int(n_inputs)
        self.activation = activation
        rng = np.random.default_rng(seed)
        # Small random start so gradient training does not sit on a symmetric point.
        self._w = np.ascontiguousarray(rng.normal(0.0, 0.1, size=(self.n_inputs, 1)))
        self._b = np.zeros(1)
        self.history_ = {}

    # ---- weights and bias as plain values -----------------------------------
    @property
    def weights(self):
        """The weights as a (n_inputs,) array; writing into it changes the perceptron."""
        return self._w[:, 0]

    @weights.setter
    def weights(self, value):
        value = np.asarray(value, dtype=np.float64)
        if value.shape != (self.n_inputs,):
            raise ValueError(f"weights must have shape ({self.n_inputs},), got {value.shape}")
        self._w[:, 0] = value

    @property
    def bias(self):
        return float(self._b[0])

    @bias.setter
    def bias(self, value):
        self._b[0] = float(value)

    # ---- computing -------------------------------------------------------------
    def _check_X(self, X):
        X = np.asarray(X, dtype=np.float64)
        if X.ndim == 1 and X.shape[0] == self.n_inputs:
            X = X[None, :]
        if X.ndim != 2 or X.shape[1] != self.n_inputs:
            raise ValueError(f"X must have shape (n_samples, {self.n_inputs}), got {X.shape}")
        if X.shape[0] == 0:
            raise ValueError("X is empty: 0 samples")
        if not np.isfinite(X).all():
            raise ValueError("X contains NaN or infinity")
        return np.ascontiguousarray(X)

    def net_input(self, X):
        """w . x + b for every row of X (the value before the activation)."""
        return ops.dense(self._check_X(X), self._w, self._b)[:, 0]

    def forward(self, X):
        """activation(w . x + b) for every row of X."""
        return ops.dense(self._check_X(X), self._w, self._b, activation=self.activation)[:, 0]

    def predict(self, X):
        """0/1 decisions: 1 where w . x + b > 0 (the output crosses the activation's midpoint)."""
        z = self.net_input(X)
        if self.activation in ("identity", "linear"):
            return (z >= 0.5).astype(np.int64)  # a linear unit fit to 0/1 targets splits at 0.5
        return (z > 0).astype(np.int64)

    def score(self, X, y):
        return float(np.mean(self.predict(X) == np.asarray(y)))

    # ---- training ----------------------------------------------------------------
    def fit(self, X, y, epochs=10, lr=0.1, rule="perceptron"):
        """Train on 0/1 targets; returns self. history_ records errors (and loss) per epoch.

        rule="perceptron": Rosenblatt's rule, one sample at a time: after each
        mistake, w += lr * (target - prediction) * x. Stops early once an
        epoch makes no mistakes (guaranteed if the classes are linearly separable).
        rule="gradient": full-batch gradient descent on a smooth loss:
        cross-entropy for sigmoid units, mean squared error otherwise.
        """
        X = self._check_X(X)
        y = np.asarray(y, dtype=np.float64).reshape(-1)
        if y.shape[0] != X.shape[0]:
            raise ValueError(f"X has {X.shape[0]} samples but y has {y.shape[0]}; they must match")
        positive_int(epochs, "epochs")
        if rule == "perceptron":
            self.history_ = {"errors": self._fit_perceptron_rule(X, y, epochs, lr)}
        elif rule == "gradient":
            self.history_ = self._fit_gradient(X, y, epochs, lr)
        else:
            raise ValueError(f"rule must be 'perceptron' or 'gradient', got {rule!r}")
        return self

    def _fit_perceptron_rule(self, X, y, epochs, lr):
        # The classic rule is online by definition: each update uses the
        # weights left by the previous sample, so it walks the rows in order.
        w, b = self._w[:, 0], self._b
        errors_per_epoch = []
        for _ in range(epochs):
            errors = 0
            for x_i, target in zip(X, y):
                predicted = 1.0 if float(x_i @ w) + b[0] > 0 else 0.0
                if predicted != target:
                    w += lr * (target - predicted) * x_i
                    b[0] += lr * (target - predicted)
                    errors += 1
            errors_per_epoch.append(errors)
            if errors == 0:
                break
        return errors_per_epoch

    def _fit_gradient(self, X, y, epochs, lr):
        if self.activation == "step":
            raise ValueError("the step activation has no gradient; use rule='perceptron' or activation='sigmoid'")
        target = y[:, None]
        history = {"loss": [], "errors": []}
        for _ in range(epochs):
            pre = ops.dense(X, self._w, self._b)
            if self.activation == "sigmoid":  # sigmoid + cross-entropy: the gradient w.r.t. z is p - y
                out, act = pre, None
                loss, dout = ops.bce_with_logits(pre, target)
            else:
                out, act = ops.activation(pre, self.activation), self.activation
                loss, dout = ops.mse(out, target)
            _, dw, db = ops.dense_backward(X, self._w, out, dout, act, pre=pre, need_dx=False)
            self._w -= lr * dw
            self._b -= lr * db
            history["loss"].append(float(loss))
            history["errors"].append(int(np.sum(self.predict(X) != y)))
        return history

    def __repr__(self):
        w = ", ".join(f"{v:.3g}" for v in self.weights)
        return f"Perceptron(weights=[{w}], bias={self.bias:.3g}, activation={self.activation!r})"
