import os

import numpy as np
import pytest
from hypothesis import settings

import fastnet

# Keep property tests quick: the suite as a whole must stay well under 15 minutes.
settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# Every CPU path this machine can run; kernel tests run once per path.
_PATHS = ["generic", "avx2", "avx512"]
CPU_PATHS = _PATHS[: _PATHS.index(fastnet._kernels.best_cpu_path()) + 1]
# The same for the bf16 / int8 kernels: the float32 paths (portable
# low-precision code on each) and the low-precision units above them.
_BEST = fastnet._kernels.best_mma_path()
LOWP_PATHS = CPU_PATHS + (list(fastnet._kernels.CPU_PATH_NAMES[3:]) if _BEST != "generic" else [])
LOWP_PATHS = LOWP_PATHS[: LOWP_PATHS.index(_BEST) + 1] if _BEST != "generic" else LOWP_PATHS


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
