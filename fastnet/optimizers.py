"""Optimizers: turn gradients into weight updates, one C call over the whole flat buffer.

Protocol shared by every optimizer (the Network and the Translator use it):
    opt.bind(store)          # allocate state (moments, velocity) for a ParameterStore
    opt.step()               # clip gradients, apply the schedule, update store.data in place
    opt.iterations           # updates done so far; the schedule reads it
    opt.state_dict()         # -> (dict of arrays, JSON-able dict) for model files
    opt.load_state_dict(arrays, meta)
    opt.config(); from_config(cfg)

RandomSearch needs no gradients: `step(closure)` calls `closure()` to measure
the loss of the current weights.
"""
import math

import numpy as np

from fastnet import ops
from fastnet import schedules as _schedules


class Optimizer:
    requires_closure = False

    def __init__(self, lr, schedule=None, clip_norm=None):
        if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
            raise ValueError(f"{type(self).__name__} learning rate must be a positive number, got {lr!r}")
        if schedule is not None and not callable(schedule):
            raise TypeError(f"schedule must be a callable step -> multiplier, got {type(schedule).__name__}")
        if clip_norm is not None and not (clip_norm > 0):
            raise ValueError(f"clip_norm must be positive or None, got {clip_norm!r}")
        self.lr = float(lr)
        self.schedule = schedule
        self.clip_norm = None if clip_norm is None else float(clip_norm)
        self.iterations = 0
        self.store = None

    # ---- binding and state ----------------------------------------------
    def bind(self, store):
        """Allocate this optimizer's state for `store` (resets the step count)."""
        self.store = store
        self.iterations = 0
        self._state = {name: np.zeros(len(store), dtype=store.dtype) for name in self._state_names()}

    def _state_names(self):
        return ()

    def _require_store(self):
        if self.store is None:
            raise RuntimeError(f"{type(self).__name__} is not bound to any parameters; call opt.bind(store) first")

    def state_dict(self):
        """(arrays, meta): the moment buffers and the JSON-able step count."""
        self._require_store()
        return {name: arr.copy() for name, arr in self._state.items()}, {"iterations": self.iterations}

    def load_state_dict(self, arrays, meta):
        self._require_store()
        expected = set(self._state)
        if set(arrays) != expected:
            raise ValueError(f"{type(self).__name__} state needs arrays {sorted(expected)}, got {sorted(arrays)}")
        for name, arr in arrays.items():
            mine = self._state[name]
            if arr.shape != mine.shape:
                raise ValueError(f"{type(self).__name__} state {name!r} has shape {arr.shape}, expected {mine.shape}")
            mine[...] = arr
        self.iterations = int(meta["iterations"])

    # ---- the update -------------------------------------------------------
    def current_lr(self):
        """The learning rate the next step will use."""
        if self.schedule is None:
            return self.lr
        return self.lr * self.schedule(self.iterations)

    def clip_gradients(self):
        """Scale store.grad so its global L2 norm is at most clip_norm; return the norm before clipping."""
        grad = self.store.grad
        norm = math.sqrt(ops.sum_squares(grad))
        if norm > self.clip_norm:
            ops.scale_(grad, self.clip_norm / norm)
        return norm

    def step(self, closure=None):
        """One update of store.data from store.grad."""
        if self.store is None:
            self._require_store()
        if self.clip_norm is not None:
            self.clip_gradients()
        self._update(self.lr if self.schedule is None else self.current_lr())
        self.iterations += 1

    def _update(self, lr):
        raise NotImplementedError

    # ---- configuration ----------------------------------------------------
    def config(self):
        return {
            "class": type(self).__name__,
            **self._args(),
            "schedule": None if self.schedule is None else self.schedule.config(),
            "clip_norm": self.clip_norm,
        }

    def _args(self):
        return {"lr": self.lr}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self._args().items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum and L2 weight decay."""

    def __init__(self, lr=0.01, momentum=0.0, nesterov=False, weight_decay=0.0, schedule=None, clip_norm=None):
        super().__init__(lr, schedule, clip_norm)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"SGD momentum must be in [0, 1), got {momentum!r}")
        if nesterov and momentum == 0.0:
            raise ValueError("SGD nesterov=True needs momentum > 0")
        if weight_decay < 0:
            raise ValueError(f"SGD weight_decay must be >= 0, got {weight_decay!r}")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self.weight_decay = float(weight_decay)

    def _state_names(self):
        return ("velocity",) if self.momentum > 0 else ()

    def bind(self, store):
        super().bind(store)
        self._velocity = self._state.get("velocity")

    def _update(self, lr):
        ops.sgd_step(self.store.data, self.store.grad, self._velocity, lr=lr, momentum=self.momentum,
                     weight_decay=self.weight_decay, nesterov=self.nesterov)

    def _args(self):
        return {"lr": self.lr, "momentum": self.momentum, "nesterov": self.nesterov, "weight_decay": self.weight_decay}


class Adam(Optimizer):
    """Adam; weight_decay is added to the gradient (L2), as in the original paper."""

    decoupled = False

    def __init__(self, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, schedule=None, clip_norm=None):
        super().__init__(lr, schedule, clip_norm)
        for name, beta in (("beta1", beta1), ("beta2", beta2)):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"{type(self).__name__} {name} must be in [0, 1), got {beta!r}")
        if not eps > 0:
            raise ValueError(f"{type(self).__name__} eps must be positive, got {eps!r}")
        if weight_decay < 0:
            raise ValueError(f"{type(self).__name__} weight_decay must be >= 0, got {weight_decay!r}")
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)
        self.weight_decay = float(weight_decay)

    def _state_names(self):
        return ("m", "v")

    def bind(self, store):
        super().bind(store)
        self._m, self._v = self._state["m"], self._state["v"]

    def _update(self, lr):
        ops.adam_step(self.store.data, self.store.grad, self._m, self._v, step=self.iterations + 1, lr=lr,
                      beta1=self.beta1, beta2=self.beta2, eps=self.eps, weight_decay=self.weight_decay,
                      decoupled=self.decoupled)

    def _args(self):
        return {"lr": self.lr, "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps,
                "weight_decay": self.weight_decay}


class AdamW(Adam):
    """Adam with decoupled weight decay: w -= lr * weight_decay * w, apart from the moments."""

    decoupled = True

    def __init__(self, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01, schedule=None, clip_norm=None):
        super().__init__(lr, beta1, beta2, eps, weight_decay, schedule, clip_norm)


class RandomSearch(Optimizer):
    """The teaching trainer: nudge the weights at random, keep the nudges that lowered the loss.

    Each step measures the loss of the current weights, then
      1. if the previous step found a good direction, tries it again
         ("keep going the way that helped");
      2. otherwise tries a random direction of length ~step_size, then its
         opposite;
    and keeps the first trial that lowers the loss (or the old weights when
    none does). No gradients needed: `step(closure)` calls `closure()` to get
    the loss of whatever weights are in store.data. The schedule scales
    step_size, so the nudges can shrink as training goes on.
    """

    requires_closure = True

    def __init__(self, step_size=0.1, seed=0, schedule=None):
        super().__init__(step_size, schedule, None)
        self.seed = int(seed)
        self.rng = np.random.default_rng(self.seed)
        self.accepted = 0

    def _state_names(self):
        return ("direction",)

    def bind(self, store):
        super().bind(store)
        self._saved = np.empty_like(store.data)
        self._has_direction = False
        self.accepted = 0

    def _try(self, closure, direction, sign, base_loss):
        np.copyto(self.store.data, self._saved)
        if sign > 0:
            self.store.data += direction
        else:
            self.store.data -= direction
        loss = float(closure())
        return loss if loss < base_loss else None

    def step(self, closure=None):
        """Try random nudges of the weights; keep the first that lowers closure(); return the kept loss."""
        if closure is None:
            raise TypeError("RandomSearch.step needs a closure that returns the loss of the current weights")
        self._require_store()
        data, direction = self.store.data, self._state["direction"]
        np.copyto(self._saved, data)
        base_loss = float(closure())
        kept = None
        if self._has_direction:
            kept = self._try(closure, direction, +1, base_loss)
        if kept is None:
            noise = self.rng.standard_normal(data.size, dtype=data.dtype)
            noise *= self.current_lr() / math.sqrt(max(data.size, 1))
            direction[...] = noise
            kept = self._try(closure, direction, +1, base_loss)
            if kept is None:
                kept = self._try(closure, direction, -1, base_loss)
                if kept is not None:
                    np.negative(direction, out=direction)
        self._has_direction = kept is not None
        if kept is None:
            np.copyto(data, self._saved)
            kept = base_loss
        else:
            self.accepted += 1
        self.iterations += 1
        return kept

    def state_dict(self):
        arrays, meta = super().state_dict()
        meta.update(has_direction=self._has_direction, accepted=self.accepted, rng_state=self.rng.bit_generator.state)
        return arrays, meta

    def load_state_dict(self, arrays, meta):
        super().load_state_dict(arrays, meta)
        self._has_direction = bool(meta["has_direction"])
        self.accepted = int(meta["accepted"])
        self.rng.bit_generator.state = meta["rng_state"]

    def _args(self):
        return {"step_size": self.lr, "seed": self.seed}

    def config(self):
        cfg = super().config()
        del cfg["clip_norm"]
        return cfg


OPTIMIZERS = {cls.__name__: cls for cls in (SGD, Adam, AdamW, RandomSearch)}


def from_config(cfg):
    """Rebuild an optimizer (unbound) from its `config()`."""
    cfg = dict(cfg)
    name = cfg.pop("class", None)
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose from {', '.join(OPTIMIZERS)}")
    cfg["schedule"] = _schedules.from_config(cfg.get("schedule"))
    return OPTIMIZERS[name](**cfg)


def get(optimizer):
    """An optimizer instance from an instance, a name ('adam', 'sgd', ...) or a config dict."""
    if isinstance(optimizer, Optimizer):
        return optimizer
    if isinstance(optimizer, dict):
        return from_config(optimizer)
    if isinstance(optimizer, str):
        by_lower = {name.lower(): cls for name, cls in OPTIMIZERS.items()}
        if optimizer.lower() in by_lower:
            return by_lower[optimizer.lower()]()
    raise ValueError(f"unknown optimizer {optimizer!r}; pass an instance such as fn.Adam(1e-3) "
                     f"or one of {', '.join(OPTIMIZERS)}")
