"""bf16: conversions bit for bit against the hardware's rounding rule, and the
bf16 GEMM (matmul / dense / dense_backward with precision="bf16") on every
low-precision path against a float64 reference on bf16-rounded inputs,
within the error bound of a k-term float32 sum."""
import sys

import numpy as np
import pytest

import fastnet
from fastnet import ops
from fastnet import reference as ref
from helpers import (
    DIFFERENTIABLE,
    assert_gemm_close,
    config_in_subprocess,
    gemm_error_bound,
    guarded_script,
    run_guarded,
)

F32 = np.float32


def bits(values):
    return np.array(values, F32).view(np.uint32)


def from_bits(u32):
    return np.array(u32, np.uint32).view(F32)


# ---- conversions ------------------------------------------------------------------

def test_to_bf16_rounds_to_nearest_even():
    one = 0x3F800000
    x = from_bits([one + 0x7FFF, one + 0x8000, one + 0x8001,           # below, tie (even stays), above half
                   one + 0x18000, one + 0x10000])                       # tie from odd rounds up; exact
    assert ops.to_bf16(x).tolist() == [0x3F80, 0x3F80, 0x3F81, 0x3F82, 0x3F81]


def test_to_bf16_keeps_specials_and_flushes_denormals():
    x = from_bits([0x7F800000, 0xFF800000, 0x7FC00000, 0x7F800001, 0xFF812345,  # inf, -inf, NaNs
                   0x00000001, 0x807FFFFF, 0x00000000, 0x80000000,              # denormals, zeros
                   0x7F7FFFFF])                                                 # largest float: rounds to inf
    out = ops.to_bf16(x)
    assert out[:2].tolist() == [0x7F80, 0xFF80]
    back = ops.from_bf16(out)
    assert np.isnan(back[2:5]).all(), "NaN must stay NaN (a signalling NaN becomes quiet)"
    assert out[3] & 0x0040 and out[4] & 0x0040
    assert out[5:9].tolist() == [0x0000, 0x8000, 0x0000, 0x8000]
    assert out[9] == 0x7F80


def test_to_bf16_matches_the_reference_on_random_bit_patterns(rng):
    u = rng.integers(0, 2**32, 200_000, dtype=np.uint64).astype(np.uint32)
    u[::7] &= 0x807FFFFF  # many denormals
    u[::11] |= 0x7F800000  # many infinities and NaNs
    x = u.view(F32)
    np.testing.assert_array_equal(ops.to_bf16(x), ref.to_bf16(x))
    np.testing.assert_array_equal(ops.round_bf16(x).view(np.uint32), ref.round_bf16(x).view(np.uint32))


def test_round_bf16_is_to_then_from(rng):
    x = (rng.standard_normal(1001) * 10.0 ** rng.integers(-30, 30, 1001)).astype(F32)
    r = ops.round_bf16(x)
    np.testing.assert_array_equal(r, ops.from_bf16(ops.to_bf16(x)))
    assert (r.view(np.uint32) & 0xFFFF == 0).all()
    assert np.all(np.abs(r - x) <= np.abs(x) * 2.0 ** -8)
    assert not np.array_equal(r, x)


def test_conversions_refuse_wrong_dtypes():
    with pytest.raises(TypeError, match="float32"):
        ops.to_bf16(np.zeros(3))
    with pytest.raises(TypeError, match="uint16"):
        ops.from_bf16(np.zeros(3, F32))


# ---- the bf16 GEMM ----------------------------------------------------------------

def _reference(a, b, trans_a, trans_b, alpha=1.0, beta=0.0, c0=None):
    a64 = ref.round_bf16(a).astype(np.float64)
    b64 = ref.round_bf16(b).astype(np.float64)
    a64, b64 = (a64.T if trans_a else a64), (b64.T if trans_b else b64)
    expected = alpha * (a64 @ b64)
    if c0 is not None and beta != 0.0:
        expected = expected + beta * c0.astype(np.float64)
    return expected, gemm_error_bound(a64, b64, F32, alpha, beta, c0)


def _operands(rng, m, n, k, trans_a, trans_b):
    a = rng.uniform(-1, 1, (k, m) if trans_a else (m, k)).astype(F32)
    b = rng.uniform(-1, 1, (n, k) if trans_b else (k, n)).astype(F32)
    return a, b


SHAPES = [(1, 1, 1), (15, 17, 33), (33, 15, 17), (17, 33, 1000), (1000, 17, 15), (1, 1000, 33),
          (64, 96, 512), (37, 70, 1025)]


@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
def test_bf16_matmul_matches_rounded_reference(lowp_path, rng, trans_a, trans_b):
    for m, n, k in SHAPES:
        a, b = _operands(rng, m, n, k, trans_a, trans_b)
        got = ops.matmul(a, b, trans_a=trans_a, trans_b=trans_b, precision="bf16")
        expected, bound = _reference(a, b, trans_a, trans_b)
        assert_gemm_close(got, expected, bound, f"{lowp_path} bf16 {m}x{n}x{k} ta={trans_a} tb={trans_b}")


def test_bf16_matmul_large_and_threaded(lowp_path, rng):
    # Several KC blocks, MC blocks and both thread splits.
    for m, n, k in [(300, 257, 1100), (13, 2000, 300)]:
        a, b = _operands(rng, m, n, k, False, True)
        expected, bound = _reference(a, b, False, True)
        for threads in (1, 2):
            with fastnet.threads(threads):
                got = ops.matmul(a, b, trans_b=True, precision="bf16")
            assert_gemm_close(got, expected, bound, f"{lowp_path} {m}x{n}x{k} {threads} threads")


@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
def test_bf16_matmul_whole_tiles_with_beta_one_and_zero(lowp_path, rng, trans_a, trans_b):
    # Whole 32 x 32 tiles and k past two KC blocks: the AMX kernel then starts
    # its tiles from C (beta 1, and every KC block after the first) or from
    # zero (beta 0: a NaN already in out must not come through).
    m, n, k = 64, 96, 2100
    a, b = _operands(rng, m, n, k, trans_a, trans_b)
    c0 = rng.uniform(-1, 1, (m, n)).astype(F32)
    out = c0.copy()
    ops.matmul(a, b, trans_a=trans_a, trans_b=trans_b, out=out, beta=1.0, precision="bf16")
    expected, bound = _reference(a, b, trans_a, trans_b, 1.0, 1.0, c0)
    assert_gemm_close(out, expected, bound, f"{lowp_path} beta=1 ta={trans_a} tb={trans_b}")
    out = np.full((m, n), np.nan, F32)
    ops.matmul(a, b, trans_a=trans_a, trans_b=trans_b, out=out, beta=0.0, precision="bf16")
    expected, bound = _reference(a, b, trans_a, trans_b)
    assert_gemm_close(out, expected, bound, f"{lowp_path} beta=0 over NaN ta={trans_a} tb={trans_b}")


def test_bf16_matmul_alpha_beta_and_zero_sizes(lowp_path, rng):
    a, b = _operands(rng, 20, 30, 40, False, False)
    c0 = rng.uniform(-1, 1, (20, 30)).astype(F32)
    out = c0.copy()
    ops.matmul(a, b, out=out, alpha=-0.5, beta=2.0, precision="bf16")
    expected, bound = _reference(a, b, False, False, -0.5, 2.0, c0)
    assert_gemm_close(out, expected, bound, f"{lowp_path} alpha/beta")
    assert ops.matmul(np.zeros((0, 4), F32), np.zeros((4, 3), F32), precision="bf16").shape == (0, 3)
    assert ops.matmul(np.zeros((2, 4), F32), np.zeros((4, 0), F32), precision="bf16").shape == (2, 0)
    out = np.full((2, 3), 7.0, F32)
    ops.matmul(np.zeros((2, 0), F32), np.zeros((0, 3), F32), out=out, beta=0.5, precision="bf16")
    np.testing.assert_array_equal(out, np.full((2, 3), 3.5, F32))


def test_bf16_matmul_really_rounds_its_inputs(lowp_path, rng):
    # A path that quietly multiplied in float32 would pass the bound above;
    # it would not differ from the float32 product by this much.
    a, b = _operands(rng, 40, 50, 300, False, False)
    got = ops.matmul(a, b, precision="bf16").astype(np.float64)
    exact = a.astype(np.float64) @ b.astype(np.float64)
    assert np.abs(got - exact).max() > 1e-3


def test_bf16_nan_and_inf_propagate(lowp_path, rng):
    for trans_a in (False, True):
        a, b = _operands(rng, 19, 35, 40, trans_a, False)
        a_op = a.T if trans_a else a
        a_op[3, 7] = np.nan
        a_op[5, 0] = np.inf
        b[0, 2] = 0.0  # inf * 0 = NaN in column 2 of row 5
        got = ops.matmul(a, b, trans_a=trans_a, precision="bf16")
        assert np.isnan(got[3]).all(), f"{lowp_path}: a NaN in row 3 of A must give NaN in row 3 of C"
        assert np.isnan(got[5, 2])
        assert np.isinf(got[5, [j for j in range(35) if j != 2]]).all()
        assert np.isfinite(np.delete(got, [3, 5], axis=0)).all()


@pytest.mark.parametrize("act", DIFFERENTIABLE)
def test_bf16_dense_forward_and_backward(lowp_path, rng, act):
    m, n, k = 37, 45, 70
    x = rng.uniform(-1, 1, (m, k)).astype(F32)
    w = rng.uniform(-1, 1, (k, n)).astype(F32)
    bias = rng.uniform(-1, 1, n).astype(F32)
    y, pre = ops.dense(x, w, bias, activation=act, return_preactivation=True, precision="bf16")
    expected, bound = _reference(x, w, False, False)
    assert_gemm_close(pre, expected + bias, bound + np.abs(bias) * 2 ** -23, f"{lowp_path} dense pre")
    np.testing.assert_array_equal(y, ops.activation(pre, act))
    dy = rng.uniform(-1, 1, (m, n)).astype(F32)
    dx, dw, db = ops.dense_backward(x, w, y, dy, activation=act, pre=pre, precision="bf16")
    dz = ops.activation_backward(act, dy, x=pre, y=y)
    expected_dw, bound_dw = _reference(x, dz, True, False)
    expected_dx, bound_dx = _reference(dz, w, False, True)
    assert_gemm_close(dw, expected_dw, bound_dw, f"{lowp_path} dense dw")
    assert_gemm_close(dx, expected_dx, bound_dx, f"{lowp_path} dense dx")
    np.testing.assert_allclose(db, dz.sum(axis=0, dtype=np.float64), rtol=1e-5, atol=1e-5)


def test_bf16_precision_errors():
    a = np.ones((2, 2))
    with pytest.raises(TypeError, match="bf16.*float32"):
        ops.matmul(a, a, precision="bf16")
    with pytest.raises(ValueError, match="unknown precision"):
        ops.matmul(a.astype(F32), a.astype(F32), precision="fp8")
    with pytest.raises(ValueError, match="unknown precision"):
        ops.dense(a.astype(F32), a.astype(F32), precision="half")


# ---- choosing the path -------------------------------------------------------------

def test_mma_path_follows_the_features():
    f = fastnet._kernels.mma_path_for
    assert f(False, True, True, True, "granted") == "generic"
    assert f(True, False, False, False, "unsupported") == "generic"
    assert f(True, True, False, False, "unsupported") == "avx512_vnni"
    assert f(True, True, True, False, "unsupported") == "avx512_bf16"
    assert f(True, True, True, True, "granted") == "amx"
    assert f(True, True, True, True, "refused") == "avx512_bf16"


def test_refused_amx_falls_back_cleanly(rng):
    k = fastnet._kernels
    before = k.current_path_name()
    try:
        k.simulate_amx_refusal(True)
        assert k.amx_permission() == "refused"
        assert k.best_mma_path() != "amx" and k.get_mma_path() != "amx"
        with pytest.raises(RuntimeError, match="not supported"):
            k.set_cpu_path("amx")
        a, b = _operands(rng, 40, 33, 70, False, True)
        expected, bound = _reference(a, b, False, True)
        assert_gemm_close(ops.matmul(a, b, trans_b=True, precision="bf16"), expected, bound, "after refusal")
        assert "refused" in _show_config()
    finally:
        k.simulate_amx_refusal(False)
        k.set_cpu_path(before)
    assert k.amx_permission() in ("granted", "unsupported")


def _show_config():
    import contextlib
    import io
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        fastnet.show_config()
    return buf.getvalue()


def test_config_names_the_low_precision_path():
    c = fastnet.config()
    assert c["mma_path"] == fastnet._kernels.get_mma_path()
    assert c["mma_path"] in _show_config()


def test_fastnet_cpu_forces_each_low_precision_path():
    from helpers import LOWP_PATHS
    for name in LOWP_PATHS:
        c = config_in_subprocess(FASTNET_CPU=name)
        if name in ("generic", "avx2", "avx512"):
            assert (c["cpu_path"], c["mma_path"]) == (name, "generic")
        else:
            assert (c["cpu_path"], c["mma_path"]) == ("avx512", name)


_GUARDED_BF16 = guarded_script("""
for m, n, k in [(1, 1, 1), (7, 17, 9), (13, 33, 31), (12, 32, 32), (17, 1, 17), (2, 300, 5), (45, 40, 67)]:
    for ta in (False, True):
        for tb in (False, True):
            a = g(rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32))
            b = g(rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32))
            out = g(np.ones((m, n), np.float32))
            ops.matmul(a, b, trans_a=ta, trans_b=tb, out=out, beta=0.5, precision="bf16")
            with fastnet.threads(2):
                ops.matmul(a, b, trans_a=ta, trans_b=tb, out=out, precision="bf16")
    x, w = g(rng.standard_normal((m, k)).astype(np.float32)), g(rng.standard_normal((k, n)).astype(np.float32))
    y = g(ops.dense(x, w, g(np.zeros(n, np.float32)), activation="relu", precision="bf16"))
    ops.dense_backward(x, w, y, g(np.ones((m, n), np.float32)), activation="relu", precision="bf16")
ops.to_bf16(g(np.ones(33, np.float32)))
ops.from_bf16(g(np.ones(33, np.uint16)))
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="guard pages via mprotect need Linux")
def test_bf16_kernels_stay_inside_their_buffers():
    # Packing reads float32 with masked vector loads: one lane too many would
    # touch the inaccessible page and kill the subprocess.
    from helpers import LOWP_PATHS
    run_guarded(_GUARDED_BF16, LOWP_PATHS)
