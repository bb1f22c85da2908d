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
