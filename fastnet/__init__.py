"""fastnet: a small, fast deep-learning framework for CPUs."""
import os as _os

# OpenMP threads that finish a kernel spin, waiting for the next one. GCC's
# default spin (300,000 iterations) wastes a whole core on a busy machine and
# stalls the next parallel region for a scheduler slice; a short spin keeps
# back-to-back kernels fast without that. Must be set before libgomp loads;
# an explicit GOMP_SPINCOUNT or OMP_WAIT_POLICY from the user wins.
if "OMP_WAIT_POLICY" not in _os.environ:
    _os.environ.setdefault("GOMP_SPINCOUNT", "10000")
from fastnet._config import (
    __version__,
    config,
    get_num_threads,
    set_num_threads,
    show_config,
    threads,
    _init_from_environment,
)

_init_from_environment()

from fastnet import ops, reference  # noqa: E402
from fastnet import text, datasets  # noqa: E402,F401

# ---- models and training (network) ----------------------------------------
from fastnet import callbacks, data, initializers, io, losses, optimizers, schedules  # noqa: E402
from fastnet.callbacks import Callback, EarlyStopping, ModelCheckpoint, OverfittingWarning  # noqa: E402
from fastnet.data import batches, train_test_split  # noqa: E402
from fastnet.history import History  # noqa: E402
from fastnet.layers import Activation, Dense, Dropout, Layer  # noqa: E402
from fastnet.network import Network, load  # noqa: E402
from fastnet.optimizers import SGD, Adam, AdamW, RandomSearch  # noqa: E402
from fastnet.perceptron import Perceptron  # noqa: E402
from fastnet.schedules import Constant, Cosine, InverseSqrt, StepDecay, Warmup  # noqa: E402
from fastnet.image import ImageDecoder  # noqa: E402
from fastnet import plot  # noqa: E402

# ---- sequence to sequence (seq2seq) -----------------------------------------
from fastnet import seq2seq  # noqa: E402
from fastnet.seq2seq import Decoder, Encoder, Translator  # noqa: E402
