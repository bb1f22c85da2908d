"""Weight initialisers: starting values that keep signals from exploding or vanishing.

Glorot (Xavier) scales by fan-in and fan-out and suits sigmoid/tanh/linear
units; He scales by fan-in only and suits ReLU-like units, which zero half
their inputs. All draws come from the Generator passed in, so a network's
seed fixes its starting weights.
"""
import math

import numpy as np

_RELU_LIKE = {"relu", "leaky_relu", "gelu", "silu"}


def glorot_uniform(shape, rng, fan_in, fan_out):
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape)


def glorot_normal(shape, rng, fan_in, fan_out):
    return rng.normal(0.0, np.sqrt(2.0 / (fan_in + fan_out)), size=shape)


def he_uniform(shape, rng, fan_in, fan_out):
    limit = np.sqrt(6.0 / fan_in)
    return rng.uniform(-limit, limit, size=shape)


def he_normal(shape, rng, fan_in, fan_out):
    return rng.normal(0.0, np.sqrt(2.0 / fan_in), size=shape)


def lecun_normal(shape, rng, fan_in, fan_out):
    return rng.normal(0.0, np.sqrt(1.0 / fan_in), size=shape)


def embedding_normal(shape, rng, fan_in, fan_out):
    """N(0, 1/fan_out) for a (vocabulary, width) table: after the transformer's sqrt(width) scale
    every entry of a token vector is of unit size."""
    return rng.normal(0.0, 1.0 / math.sqrt(fan_out), size=shape)


def zeros(shape, rng, fan_in, fan_out):
    return np.zeros(shape)


INITIALIZERS = {
    "glorot_uniform": glorot_uniform,
    "glorot_normal": glorot_normal,
    "xavier_uniform": glorot_uniform,
    "xavier_normal": glorot_normal,
    "he_uniform": he_uniform,
    "he_normal": he_normal,
    "lecun_normal": lecun_normal,
    "embedding_normal": embedding_normal,
    "zeros": zeros,
}


def default_for(activation):
    """He for ReLU-like activations, Glorot otherwise."""
    return "he_normal" if activation in _RELU_LIKE else "glorot_uniform"


def get(name):
    """The initialiser called `name`, with an error listing the choices."""
    try:
        return INITIALIZERS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown initializer {name!r}; choose from {', '.join(sorted(INITIALIZERS))}") from None
