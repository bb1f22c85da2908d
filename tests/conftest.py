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


@pytest.fixture(params=CPU_PATHS)
def cpu_path(request):
    """Run the test on one CPU path, then restore the default."""
    before = fastnet._kernels.get_cpu_path()
    fastnet._kernels.set_cpu_path(request.param)
    yield request.param
    fastnet._kernels.set_cpu_path(before)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
