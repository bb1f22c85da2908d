"""fastnet: a small, fast deep-learning framework for CPUs."""
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
