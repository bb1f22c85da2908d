"""The float32 kernels run from one table per CPU path, switched with the path."""
import numpy as np
import pytest

import fastnet
from conftest import CPU_PATHS, LOWP_PATHS
from fastnet import _kernels


def test_the_table_follows_the_cpu_path(cpu_path):
    assert _kernels.kernel_table() == cpu_path == _kernels.get_cpu_path()


@pytest.mark.parametrize("name", [p for p in LOWP_PATHS if p not in CPU_PATHS])
def test_low_precision_paths_run_the_avx512_float32_table(name):
    before = _kernels.current_path_name()
    try:
        _kernels.set_cpu_path(name)
        assert _kernels.kernel_table() == "avx512"
    finally:
        _kernels.set_cpu_path(before)


def test_switching_paths_back_and_forth_gives_the_same_bits(rng):
    """Nothing of a path survives a switch: each path's results come back bit for bit."""
    x = rng.standard_normal((37, 53)).astype(np.float32)
    w = rng.standard_normal((53, 29)).astype(np.float32)
    gamma, beta = np.ones(53, np.float32), np.zeros(53, np.float32)

    def results():
        return (fastnet.ops.matmul(x, w), _kernels.layer_norm(x, gamma, beta)[0], _kernels.softmax(x),
                _kernels.add(x, x), _kernels.mse(x, np.zeros_like(x))[0])

    before = _kernels.current_path_name()
    try:
        first = {}
        for name in CPU_PATHS * 2:
            _kernels.set_cpu_path(name)
            got = results()
            if name in first:
                for a, b in zip(first[name], got):
                    np.testing.assert_array_equal(a, b)
            first[name] = got
    finally:
        _kernels.set_cpu_path(before)
