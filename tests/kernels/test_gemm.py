"""fastnet.ops.matmul against the float64 NumPy reference, judged by a GEMM
error bound that grows with the reduction length k."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastnet
from fastnet import ops
from fastnet import reference as ref
from helpers import (
    FLOAT_DTYPES,
    LAYOUTS,
    assert_gemm_close,
    dims,
    gemm_error_bound,
    kernel_settings,
    numerical_gradient,
    random_array,
    seeds,
    with_layout,
)


def _operands(rng, m, n, k, trans_a, trans_b, dtype):
    a = random_array(rng, (k, m) if trans_a else (m, k), dtype)
    b = random_array(rng, (n, k) if trans_b else (k, n), dtype)
    return a, b


def _op(x, trans):
    return x.T if trans else x


# ---- the reference itself ---------------------------------------------------

@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
def test_reference_matmul_is_alpha_ab_plus_beta_c(rng, trans_a, trans_b):
    a, b = _operands(rng, 4, 5, 3, trans_a, trans_b, np.float64)
    c0 = rng.standard_normal((4, 5))
    out = c0.copy()
    got = ref.matmul(a, b, trans_a, trans_b, out=out, alpha=-2.0, beta=0.5)
    assert got is out
    expected = -2.0 * np.einsum("ik,kj->ij", _op(a, trans_a), _op(b, trans_b)) + 0.5 * c0
    np.testing.assert_allclose(got, expected, rtol=1e-13)


@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
def test_reference_matmul_backward_matches_finite_differences(rng, trans_a, trans_b):
    a, b = _operands(rng, 3, 4, 5, trans_a, trans_b, np.float64)
    dc = rng.standard_normal((3, 4))
    da, db = ref.matmul_backward(a, b, dc, trans_a, trans_b, alpha=1.5)
    loss_a = lambda a_: float((dc * ref.matmul(a_, b, trans_a, trans_b, alpha=1.5)).sum())
    loss_b = lambda b_: float((dc * ref.matmul(a, b_, trans_a, trans_b, alpha=1.5)).sum())
    np.testing.assert_allclose(da, numerical_gradient(loss_a, a), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(db, numerical_gradient(loss_b, b), rtol=1e-7, atol=1e-9)


def test_reference_matmul_keeps_float32():
    a = np.ones((2, 3), np.float32)
    assert ref.matmul(a, a, trans_b=True).dtype == np.float32


def test_error_bound_catches_a_wrong_result():
    rng = np.random.default_rng(0)
    a, b = _operands(rng, 8, 8, 64, False, False, np.float32)
    expected = a.astype(np.float64) @ b.astype(np.float64)
    bound = gemm_error_bound(a, b, np.float32)
    wrong = (expected + 1e-3).astype(np.float32)
    with pytest.raises(AssertionError, match="outside the GEMM error bound"):
        assert_gemm_close(wrong, expected, bound)
    assert_gemm_close((a @ b), expected, bound)


# ---- the kernel against the reference -----------------------------------------

@kernel_settings
@given(m=dims(), n=dims(), k=dims(), trans_a=st.booleans(), trans_b=st.booleans(),
       layout_a=st.sampled_from(LAYOUTS), layout_b=st.sampled_from(LAYOUTS),
       dtype=st.sampled_from(FLOAT_DTYPES), seed=seeds())
def test_matmul_matches_reference(cpu_path, m, n, k, trans_a, trans_b, layout_a, layout_b, dtype, seed):
    rng = np.random.default_rng(seed)
    a, b = _operands(rng, m, n, k, trans_a, trans_b, dtype)
    got = ops.matmul(with_layout(a, layout_a), with_layout(b, layout_b), trans_a=trans_a, trans_b=trans_b)
    assert got.shape == (m, n) and got.dtype == dtype
    expected = ref.matmul(a.astype(np.float64), b.astype(np.float64), trans_a, trans_b)
    bound = gemm_error_bound(_op(a, trans_a), _op(b, trans_b), dtype)
    assert_gemm_close(got, expected, bound, f"{cpu_path} {dtype.__name__} m={m} n={n} k={k} "
                      f"trans=({trans_a},{trans_b}) layouts=({layout_a},{layout_b})")


@kernel_settings
@given(m=dims(), n=dims(), k=dims(), trans_a=st.booleans(), trans_b=st.booleans(),
       alpha=st.sampled_from([1.0, -0.5, 2.0, 0.0]), beta=st.sampled_from([0.0, 1.0, -1.5, 0.25]),
       dtype=st.sampled_from(FLOAT_DTYPES), seed=seeds())
def test_matmul_alpha_beta_into_out(cpu_path, m, n, k, trans_a, trans_b, alpha, beta, dtype, seed):
    rng = np.random.default_rng(seed)
    a, b = _operands(rng, m, n, k, trans_a, trans_b, dtype)
    c0 = random_array(rng, (m, n), dtype)
    out = c0.copy()
    got = ops.matmul(a, b, trans_a=trans_a, trans_b=trans_b, out=out, alpha=alpha, beta=beta)
    assert got is out
    expected = ref.matmul(a.astype(np.float64), b.astype(np.float64), trans_a, trans_b,
                          out=c0.astype(np.float64), alpha=alpha, beta=beta)
    bound = gemm_error_bound(_op(a, trans_a), _op(b, trans_b), dtype, alpha, beta, c0)
    assert_gemm_close(out, expected, bound, f"{cpu_path} alpha={alpha} beta={beta} m={m} n={n} k={k}")


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_matmul_beta_zero_ignores_nan_in_out(cpu_path, dtype):
    a = np.ones((7, 5), dtype)
    b = np.ones((5, 17), dtype)
    out = np.full((7, 17), np.nan, dtype)
    ops.matmul(a, b, out=out)
    np.testing.assert_array_equal(out, np.full((7, 17), 5.0))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_matmul_empty_reduction_gives_zeros_or_beta_c(cpu_path, dtype):
    a, b = np.zeros((6, 0), dtype), np.zeros((0, 17), dtype)
    np.testing.assert_array_equal(ops.matmul(a, b), np.zeros((6, 17)))
    out = np.full((6, 17), 2.0, dtype)
    ops.matmul(a, b, out=out, beta=0.5)
    np.testing.assert_array_equal(out, np.full((6, 17), 1.0))


def test_matmul_exact_on_small_integers(cpu_path):
    # Integer-valued float32 products and sums below 2**24 are exact in any order.
    rng = np.random.default_rng(7)
    a = rng.integers(-8, 9, (33, 97)).astype(np.float32)
    b = rng.integers(-8, 9, (97, 95)).astype(np.float32)
    expected = a.astype(np.int64) @ b.astype(np.int64)
    np.testing.assert_array_equal(ops.matmul(a, b), expected)
    np.testing.assert_array_equal(ops.matmul(np.asfortranarray(a.T), b, trans_a=True), expected)


@pytest.mark.parametrize("m,n,k,trans_a,trans_b", [
    (300, 257, 513, False, False),
    (300, 257, 513, True, True),
    (1024, 64, 1000, False, True),
    (97, 1000, 300, True, False),
])
def test_matmul_large_shapes_cross_cache_blocks(cpu_path, m, n, k, trans_a, trans_b):
    rng = np.random.default_rng(m + n + k)
    a, b = _operands(rng, m, n, k, trans_a, trans_b, np.float32)
    with fastnet.threads(2):
        got = ops.matmul(a, b, trans_a=trans_a, trans_b=trans_b)
    expected = ref.matmul(a.astype(np.float64), b.astype(np.float64), trans_a, trans_b)
    assert_gemm_close(got, expected, gemm_error_bound(_op(a, trans_a), _op(b, trans_b), np.float32),
                      f"{cpu_path} {m}x{n}x{k}")


# Around the cache blocks of csrc/gemm*.c (KC = 256, MC = 288/384, NC = 4096;
# dgemm KB = 128, NB = 1024), with beta so only the first k-block may apply it,
# on 2 threads. Products above 2 * 2^23 multiply-adds really use both: by rows
# (385 x 170 x 513) or, with a single row sliver, by column panels (6 x 8000 x 400).
BLOCK_EDGE_SHAPES = [(289, 33, 257), (385, 170, 513), (383, 40, 255), (6, 8000, 400), (7, 4097, 3),
                     (13, 1025, 129), (2, 3, 257)]


@pytest.mark.parametrize("m,n,k", BLOCK_EDGE_SHAPES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_matmul_across_cache_block_edges_with_alpha_beta(cpu_path, m, n, k, dtype):
    rng = np.random.default_rng(m + 7 * n + 13 * k)
    trans_a, trans_b = bool(m % 2), bool(k % 2)
    a, b = _operands(rng, m, n, k, trans_a, trans_b, dtype)
    c0 = random_array(rng, (m, n), dtype)
    out = c0.copy()
    with fastnet.threads(2):
        ops.matmul(a, b, trans_a=trans_a, trans_b=trans_b, out=out, alpha=-0.5, beta=0.25)
    expected = ref.matmul(a.astype(np.float64), b.astype(np.float64), trans_a, trans_b,
                          out=c0.astype(np.float64), alpha=-0.5, beta=0.25)
    bound = gemm_error_bound(_op(a, trans_a), _op(b, trans_b), dtype, -0.5, 0.25, c0)
    assert_gemm_close(out, expected, bound, f"{cpu_path} {dtype.__name__} {m}x{n}x{k}")


@pytest.mark.parametrize("m,n,k", [(1, 1, 5000), (1, 700, 300), (700, 1, 300), (2, 3, 20000), (613, 7, 1), (5, 613, 2)])
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, True)])
def test_matmul_skinny_shapes(cpu_path, m, n, k, trans_a, trans_b):
    rng = np.random.default_rng(m * n + k)
    a, b = _operands(rng, m, n, k, trans_a, trans_b, np.float32)
    got = ops.matmul(a, b, trans_a=trans_a, trans_b=trans_b)
    expected = ref.matmul(a.astype(np.float64), b.astype(np.float64), trans_a, trans_b)
    assert_gemm_close(got, expected, gemm_error_bound(_op(a, trans_a), _op(b, trans_b), np.float32), f"{m}x{n}x{k}")


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_matmul_propagates_nan_and_inf_to_their_rows(cpu_path, dtype):
    a = np.ones((9, 20), dtype)
    a[2, 5] = np.nan
    a[7, 0] = np.inf
    got = ops.matmul(a, np.ones((20, 33), dtype))
    assert np.all(np.isnan(got[2])) and np.all(got[7] == np.inf)
    np.testing.assert_array_equal(np.delete(got, [2, 7], axis=0), 20.0)


def test_matmul_large_float64(cpu_path):
    rng = np.random.default_rng(3)
    a, b = _operands(rng, 130, 70, 257, True, False, np.float64)
    got = ops.matmul(a, b, trans_a=True)
    assert_gemm_close(got, ref.matmul(a, b, trans_a=True), gemm_error_bound(a.T, b, np.float64))


@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (False, True), (True, False), (True, True)])
def test_matmul_of_an_array_with_itself(cpu_path, trans_a, trans_b):
    a = random_array(np.random.default_rng(17), (97, 97), np.float32)
    got = ops.matmul(a, a, trans_a=trans_a, trans_b=trans_b)
    a_op, b_op = _op(a, trans_a), _op(a, trans_b)
    assert_gemm_close(got, ref.matmul(a_op.astype(np.float64), b_op.astype(np.float64)),
                      gemm_error_bound(a_op, b_op, np.float32), "a with itself")


def test_matmul_does_not_modify_inputs(cpu_path):
    rng = np.random.default_rng(5)
    a, b = _operands(rng, 17, 33, 16, False, True, np.float32)
    a0, b0 = a.copy(), b.copy()
    ops.matmul(a, b, trans_b=True)
    np.testing.assert_array_equal(a, a0)
    np.testing.assert_array_equal(b, b0)


# ---- FASTNET_CPU=generic forces the portable path for a real computation ------------

_SUBPROCESS_MATMUL = """
import sys, numpy as np, fastnet
assert fastnet.config()["cpu_path"] == "generic", fastnet.config()
rng = np.random.default_rng(21)
a = rng.uniform(-1, 1, (37, 95)).astype(np.float32)
b = rng.uniform(-1, 1, (95, 33)).astype(np.float32)
np.save(sys.argv[1], fastnet.ops.matmul(a, b))
"""


def test_fastnet_cpu_env_var_runs_the_generic_kernel(tmp_path):
    import os
    import subprocess
    import sys
    ops.matmul
    path = tmp_path / "c.npy"
    env = {**os.environ, "FASTNET_CPU": "generic", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", _SUBPROCESS_MATMUL, str(path)], env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    from_subprocess = np.load(path)
    rng = np.random.default_rng(21)
    a = rng.uniform(-1, 1, (37, 95)).astype(np.float32)
    b = rng.uniform(-1, 1, (95, 33)).astype(np.float32)
    assert_gemm_close(from_subprocess, ref.matmul(a.astype(np.float64), b.astype(np.float64)),
                      gemm_error_bound(a, b, np.float32), "FASTNET_CPU=generic")
    # The same computation on the generic path in this process is bitwise the same.
    before = fastnet._kernels.current_path_name()
    fastnet._kernels.set_cpu_path("generic")
    try:
        with fastnet.threads(1):
            here = fastnet.ops.matmul(a, b)
    finally:
        fastnet._kernels.set_cpu_path(before)
    assert here.tobytes() == from_subprocess.tobytes()


# ---- the reference mirrors the public kernel API -------------------------------------

# Every public function of fastnet.ops (its __all__; classes such as PackedInt8 and tables such as
# ACTIVATIONS are data, not ops): a new op is checked here by being exported.
TABLE_LOOKUPS = {"activation_info"}  # read the kernels' tables; nothing to compute twice
PUBLIC_OPS = [name for name in ops.__all__ if name not in TABLE_LOOKUPS
              and callable(getattr(ops, name)) and not isinstance(getattr(ops, name), type)]


def test_every_public_function_of_ops_is_exported():
    public = {name for name, value in vars(ops).items()  # fastnet's own functions, not typing's
              if not name.startswith("_") and callable(value) and value.__module__.startswith("fastnet")}
    assert public <= set(ops.__all__), sorted(public - set(ops.__all__))
    assert {"matmul", "dense", "activation", "softmax_cross_entropy", "adam_step"} <= set(PUBLIC_OPS)


@pytest.mark.parametrize("name", PUBLIC_OPS)
def test_every_public_op_has_a_reference_twin_with_its_signature(name):
    import inspect
    compiled = getattr(ops, name)
    params = lambda f: [(p.name, p.kind, p.default) for p in inspect.signature(f).parameters.values()]
    assert hasattr(ref, name), f"fastnet.reference has no {name}: every op needs its NumPy twin"
    assert params(getattr(ref, name)) == params(compiled)


@pytest.mark.parametrize("shape", [(0, 5), (5, 0), (1, 1), (1, 40), (40, 1), (15, 17), (16, 16), (33, 47),
                                   (130, 70), (4000, 128)])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("threads", [1, 2])
def test_transpose_is_exact_on_every_path(cpu_path, shape, layout, threads, rng):
    """ops.transpose is a copy: bitwise x.T, NaN and infinities included, C-contiguous, for any input layout."""
    for dtype in FLOAT_DTYPES:
        x = with_layout(random_array(rng, shape, dtype), layout)
        specials = [np.nan, np.inf, -0.0, -np.inf, 1e-40]
        at = np.unravel_index(rng.choice(x.size, min(x.size, 5), replace=False), shape)
        x[at] = specials[: min(x.size, 5)]
        with fastnet.threads(threads):
            out = ops.transpose(x)
        assert out.dtype == dtype and out.flags.c_contiguous and out.shape == shape[::-1]
        expected = ref.transpose(x)
        np.testing.assert_array_equal(out.view(np.uint8), expected.view(np.uint8))


def test_transpose_rejects_what_it_cannot_transpose():
    with pytest.raises(ValueError, match="transpose: x must be 2-D, got shape"):
        ops.transpose(np.zeros((2, 3, 4), np.float32))
    with pytest.raises(TypeError, match="transpose: x must be float32 or float64"):
        ops.transpose(np.zeros((2, 3), np.int32))
