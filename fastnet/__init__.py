"""fastnet: a small, fast deep-learning framework for CPUs.

`import fastnet` loads the kernels and the core (ops, layers, losses,
optimizers, model files, the training step, Network); the other models
(seq2seq, image, the perceptron), the NumPy reference, text, datasets, plots
and the demos load on first use, e.g. the first `fastnet.Translator` or
`import fastnet.plot`.
"""
import importlib as _importlib
import os as _os

# OpenMP threads that finish a kernel spin, waiting for the next one. GCC's
# default spin (300,000 iterations) wastes a whole core on a busy machine and
# stalls the next parallel region for a scheduler slice; a short spin keeps
# back-to-back kernels fast without that. Must be set before libgomp loads;
# an explicit GOMP_SPINCOUNT or OMP_WAIT_POLICY from the user wins.
if "OMP_WAIT_POLICY" not in _os.environ:
    _os.environ.setdefault("GOMP_SPINCOUNT", "10000")

from fastnet._config import (  # noqa: E402  (after the OpenMP setting above)
    __version__,
    _init_from_environment,
    config,
    get_num_threads,
    set_num_threads,
    show_config,
    threads,
)

_init_from_environment()

# ---- the core: kernels, layers, training, model files -------------------------
from fastnet import callbacks, data, initializers, io, losses, ops, optimizers, schedules  # noqa: E402
from fastnet.callbacks import Callback, EarlyStopping, ModelCheckpoint, OverfittingWarning  # noqa: E402
from fastnet.data import batches, train_test_split  # noqa: E402
from fastnet.history import History  # noqa: E402
from fastnet.layers import Activation, Dense, Dropout, Layer  # noqa: E402
from fastnet.network import Network, load  # noqa: E402
from fastnet.optimizers import SGD, Adam, AdamW, RandomSearch  # noqa: E402
from fastnet.schedules import Constant, Cosine, InverseSqrt, StepDecay, Warmup  # noqa: E402

# ---- loaded on first use --------------------------------------------------------
_LAZY_MODULES = ("datasets", "demo", "image", "perceptron", "plot", "reference", "seq2seq", "text")
_LAZY_NAMES = {"Translator": "seq2seq", "Encoder": "seq2seq", "Decoder": "seq2seq", "ImageDecoder": "image",
               "Perceptron": "perceptron"}

__all__ = [
    "__version__", "config", "get_num_threads", "set_num_threads", "show_config", "threads",
    "callbacks", "data", "initializers", "io", "losses", "ops", "optimizers", "schedules",
    "Callback", "EarlyStopping", "ModelCheckpoint", "OverfittingWarning", "batches", "train_test_split",
    "History", "Activation", "Dense", "Dropout", "Layer", "Network", "load", "SGD", "Adam", "AdamW",
    "RandomSearch", "Constant", "Cosine", "InverseSqrt", "StepDecay", "Warmup",
    *_LAZY_MODULES, *_LAZY_NAMES,
]


def __getattr__(name):
    if name in _LAZY_MODULES:
        return _importlib.import_module(f"fastnet.{name}")  # also binds fastnet.<name>
    if name in _LAZY_NAMES:
        value = getattr(_importlib.import_module(f"fastnet.{_LAZY_NAMES[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fastnet' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
