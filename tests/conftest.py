import os

import numpy as np
import pytest
from hypothesis import settings

import fastnet

# Keep property tests quick: the suite as a whole must stay well under 15 minutes.
settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# After the profile: helpers' settings objects start from the profile loaded when they are made.
from helpers import CPU_PATHS, LOWP_PATHS  # noqa: E402,F401  (CPU_PATHS: `from conftest import` in tests)


def _forced_path(name):
    before = fastnet._kernels.current_path_name()
    fastnet._kernels.set_cpu_path(name)
    try:
        yield name
    finally:
        fastnet._kernels.set_cpu_path(before)


@pytest.fixture(params=CPU_PATHS)
def cpu_path(request):
    """Run the test on one CPU path, then restore the default."""
    yield from _forced_path(request.param)


@pytest.fixture(params=LOWP_PATHS)
def lowp_path(request):
    """Run the test on one bf16 / int8 path (FASTNET_CPU name), then restore."""
    yield from _forced_path(request.param)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models: one kernel thread is fastest, and it keeps the suite quick on a loaded machine.
    A module opts in with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    with fastnet.threads(1):
        yield


@pytest.fixture(scope="module")
def toy():
    """Toy English -> Swedish + Spanish sentences: (600 to train on, 80 held out)."""
    from fastnet.datasets import toy_translations

    return toy_translations(600, seed=0, split="train"), toy_translations(80, seed=1, split="test")


# ---- the service tests' model (tests/applications/test_serve*.py) ----------------------------
@pytest.fixture(scope="session")
def model_path(tmp_path_factory):
    """A tiny English -> sv/es translator (about 2 s on one thread), trained once per session and saved."""
    from fastnet.datasets import toy_translations
    from fastnet.seq2seq import Translator

    data = toy_translations(400, seed=0, split="train")
    targets = {"sv": data.sv, "es": data.es}
    tr = Translator.build(data.en, targets, seed=0, d_model=32, n_heads=2, n_layers=1, d_ff=64, dropout=0.0,
                          tokenizer="word")
    with fastnet.threads(1):  # multi-threaded regions stall on a loaded machine; this model is too small to gain
        tr.fit(data.en, targets, epochs=20, batch_size=32, lr=5e-3, verbose=0)
    path = tmp_path_factory.mktemp("serve") / "translator.safetensors"
    tr.save(path)
    return path


@pytest.fixture(scope="session")
def reference(model_path):
    """The same saved model loaded in the test process: what the service must answer."""
    return fastnet.load(model_path)
