"""Quick checks of matmul / dense on every CPU path (the full suite lives in
test_gemm.py and test_dense.py)."""
import numpy as np
import pytest

import fastnet
from fastnet import ops
from fastnet import reference as ref
from helpers import ACTIVATIONS, DIFFERENTIABLE

EDGE_SIZES = [1, 5, 6, 7, 15, 16, 17, 95, 97]


def expected(a, b, trans_a=False, trans_b=False):
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    return (a64.T if trans_a else a64) @ (b64.T if trans_b else b64)


def tolerance(dtype, k):
    return (2e-5 if dtype == np.float32 else 1e-12) * max(1.0, np.sqrt(k)) * 4


@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
def test_transposes_every_path(cpu_path, rng, trans_a, trans_b):
    for m, n, k in [(7, 17, 5), (97, 95, 16), (16, 33, 300), (130, 70, 257)]:
        a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(np.float32)
        b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(np.float32)
        got = ops.matmul(a, b, trans_a=trans_a, trans_b=trans_b)
        np.testing.assert_allclose(got, expected(a, b, trans_a, trans_b), rtol=tolerance(np.float32, k),
                                   atol=tolerance(np.float32, k))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_edge_sizes(cpu_path, rng, dtype):
    for m in EDGE_SIZES:
        n, k = EDGE_SIZES[(m * 7) % len(EDGE_SIZES)], EDGE_SIZES[(m * 3) % len(EDGE_SIZES)]
        a = rng.standard_normal((m, k)).astype(dtype)
        b = rng.standard_normal((k, n)).astype(dtype)
        got = ops.matmul(a, b)
        assert got.dtype == dtype and got.shape == (m, n)
        np.testing.assert_allclose(got, expected(a, b), rtol=tolerance(dtype, k), atol=tolerance(dtype, k))


def test_k_zero_and_empty(rng):
    a = np.zeros((3, 0), np.float32)
    b = np.zeros((0, 4), np.float32)
    np.testing.assert_array_equal(ops.matmul(a, b), np.zeros((3, 4), np.float32))
    c = np.full((3, 4), np.nan, np.float32)
    ops.matmul(a, b, out=c)  # beta == 0: NaNs in out are overwritten
    np.testing.assert_array_equal(c, 0)
    c = np.ones((3, 4), np.float32)
    ops.matmul(a, b, out=c, beta=2.0)
    np.testing.assert_array_equal(c, 2)
    assert ops.matmul(np.zeros((0, 5), np.float32), np.zeros((5, 2), np.float32)).shape == (0, 2)


def test_alpha_beta(cpu_path, rng):
    a = rng.standard_normal((20, 30)).astype(np.float32)
    b = rng.standard_normal((30, 40)).astype(np.float32)
    c = rng.standard_normal((20, 40)).astype(np.float32)
    want = 0.5 * expected(a, b) - 2.0 * c
    got = ops.matmul(a, b, out=c, alpha=0.5, beta=-2.0)
    assert got is c
    np.testing.assert_allclose(c, want, rtol=1e-4, atol=1e-4)


def test_noncontiguous_inputs(rng):
    base = rng.standard_normal((40, 60)).astype(np.float32)
    b = rng.standard_normal((30, 25)).astype(np.float32)
    fortran = np.asfortranarray(base[:, :30])
    sliced_rows = base[::2, :30]          # rows contiguous, row stride 120
    strided = base[:, ::2]                 # nothing contiguous: copied
    for a in (fortran, sliced_rows, strided, base[:30, :30].T):
        np.testing.assert_allclose(ops.matmul(a, b), expected(a, b), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ops.matmul(b, fortran, trans_a=True, trans_b=True),
                               expected(b, fortran, True, True), rtol=1e-4, atol=1e-4)


def test_errors():
    a32 = np.ones((2, 3), np.float32)
    with pytest.raises(TypeError, match="matmul: b has dtype float64 but a has dtype float32; they must match"):
        ops.matmul(a32, np.ones((3, 2), np.float64))
    with pytest.raises(TypeError, match="int64"):
        ops.matmul(np.ones((2, 3), np.int64), np.ones((3, 2), np.int64))
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(2, 3\)"):
        ops.matmul(a32, a32)
    with pytest.raises(ValueError, match="out aliases a"):
        big = np.ones((3, 3), np.float32)
        ops.matmul(big, big.copy(), out=big)
    with pytest.raises(ValueError, match="shape"):
        ops.matmul(a32, a32.T.copy(), out=np.empty((3, 3), np.float32))
    with pytest.raises(ValueError, match="beta"):
        ops.matmul(a32, a32.T.copy(), beta=1.0)
    with pytest.raises(ValueError, match="unknown activation"):
        ops.dense(a32, np.ones((3, 2), np.float32), activation="swish")
    with pytest.raises(ValueError, match="step"):
        ops.dense_backward(a32, np.ones((3, 2), np.float32), None, np.ones((2, 2), np.float32), activation="step")


@pytest.mark.parametrize("activation", DIFFERENTIABLE)
def test_dense_matches_numpy(cpu_path, rng, activation):
    x = rng.standard_normal((37, 50)).astype(np.float32)
    w = rng.standard_normal((50, 45)).astype(np.float32)
    b = rng.standard_normal(45).astype(np.float32)
    z = expected(x, w) + b
    act = lambda v: ref.activation(v, activation, alpha=0.1)
    y, pre = ops.dense(x, w, b, activation=activation, alpha=0.1, return_preactivation=True)
    np.testing.assert_allclose(pre, z, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(y, act(z), rtol=1e-4, atol=1e-4)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx, dw, db = ops.dense_backward(x, w, y, dy, activation=activation, alpha=0.1, pre=pre)
    eps = 1e-3  # the derivative checked against a central difference of the activation
    dz = dy * (act(z + eps) - act(z - eps)) / (2 * eps)
    np.testing.assert_allclose(db, dz.sum(0), rtol=2e-2, atol=2e-2)
    np.testing.assert_allclose(dw, x.T.astype(np.float64) @ dz, rtol=2e-2, atol=2e-2)
    np.testing.assert_allclose(dx, dz @ w.T.astype(np.float64), rtol=2e-2, atol=2e-2)


def test_threads_bitwise_equal(cpu_path, rng):
    a = rng.standard_normal((300, 700)).astype(np.float32)
    b = rng.standard_normal((700, 200)).astype(np.float32)
    with fastnet.threads(1):
        one = ops.matmul(a, b)
        dense_one = ops.dense(a, b, b[0], activation="relu")
    with fastnet.threads(2):
        two = ops.matmul(a, b)
        dense_two = ops.dense(a, b, b[0], activation="relu")
    np.testing.assert_array_equal(one, two)
    np.testing.assert_array_equal(dense_one, dense_two)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_dense_epilogue_has_the_bits_of_the_activation_kernel(cpu_path, rng, activation):
    x = rng.standard_normal((29, 40)).astype(np.float32) * 3
    w = rng.standard_normal((40, 37)).astype(np.float32)
    b = rng.standard_normal(37).astype(np.float32)
    y, pre = ops.dense(x, w, b, activation=activation, return_preactivation=True)
    np.testing.assert_array_equal(y, ops.activation(pre, activation))


def test_dense_backward_reads_only_what_the_activation_needs(rng):
    x = rng.standard_normal((6, 5)).astype(np.float32)
    w = rng.standard_normal((5, 7)).astype(np.float32)
    y, pre = ops.dense(x, w, activation="gelu", return_preactivation=True)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    want = ops.dense_backward(x, w, y, dy, activation="gelu", pre=pre)
    got = ops.dense_backward(x, w, np.asfortranarray(y.astype(np.float64)), dy, activation="gelu",
                             pre=np.asfortranarray(pre))
    for g, e in zip(got, want):
        np.testing.assert_array_equal(g, e)


def test_leaky_relu_with_negative_slope_uses_pre(rng):
    x = rng.standard_normal((9, 7)).astype(np.float32)
    w = rng.standard_normal((7, 5)).astype(np.float32)
    dy = rng.standard_normal((9, 5)).astype(np.float32)
    y, pre = ops.dense(x, w, activation="leaky_relu", alpha=-0.5, return_preactivation=True)
    _, dw, _ = ops.dense_backward(x, w, y, dy, activation="leaky_relu", alpha=-0.5, pre=pre)
    z = expected(x, w)
    np.testing.assert_allclose(dw, x.T.astype(np.float64) @ (dy * np.where(z > 0, 1, -0.5)), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="negative slope needs pre"):
        ops.dense_backward(x, w, y, dy, activation="leaky_relu", alpha=-0.5)
