"""The fused dense layer y = act(x @ w + b) and its backward, against the
NumPy reference and against finite differences."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastnet import ops
from fastnet import reference as ref
from helpers import (
    ACTIVATIONS,
    DIFFERENTIABLE,
    FLOAT_DTYPES,
    LAYOUTS,
    activation_lipschitz,
    assert_gemm_close,
    backward_needs_x,
    dims,
    gemm_error_bound,
    has_gradient,
    kernel_settings,
    numerical_gradient,
    random_array,
    seeds,
    with_layout,
)

# max |act'(x)|: how much an error in the pre-activation can grow.
LIPSCHITZ = {name: activation_lipschitz(name, alpha=0.1) for name in ACTIVATIONS}


def _layer(rng, m, n, k, dtype, scale=1.0):
    x = random_array(rng, (m, k), dtype, -scale, scale)
    w = random_array(rng, (k, n), dtype, -scale, scale)
    b = random_array(rng, (n,), dtype, -scale, scale)
    return x, w, b


def _pre_bound(x, w, b, dtype):
    bound = gemm_error_bound(x, w, dtype)
    if b is not None:
        bound = bound + 2 * np.finfo(dtype).eps * np.abs(b.astype(np.float64))
    return bound


def _loss_of_dense(x, w, b, dy, act, alpha):
    return float((dy * ref.dense(x, w, b, activation=act, alpha=alpha)).sum())


# ---- the reference itself ---------------------------------------------------

@pytest.mark.parametrize("act", DIFFERENTIABLE)
def test_reference_dense_backward_matches_finite_differences(rng, act):
    x, w, b = _layer(rng, 4, 3, 5, np.float64)
    dy = rng.standard_normal((4, 3))
    y, pre = ref.dense(x, w, b, activation=act, alpha=0.1, return_preactivation=True)
    dx, dw, db = ref.dense_backward(x, w, y, dy, activation=act, alpha=0.1, pre=pre)
    close = dict(rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dx, numerical_gradient(lambda x_: _loss_of_dense(x_, w, b, dy, act, 0.1), x), **close)
    np.testing.assert_allclose(dw, numerical_gradient(lambda w_: _loss_of_dense(x, w_, b, dy, act, 0.1), w), **close)
    np.testing.assert_allclose(db, numerical_gradient(lambda b_: _loss_of_dense(x, w, b_, dy, act, 0.1), b), **close)


def test_reference_dense_activations_by_formula():
    pre = np.array([[-2.0, -0.5, 0.0, 0.5, 3.0]])
    eye = np.eye(5)
    y = lambda act, **kw: ref.dense(pre, eye, activation=act, **kw)[0]
    np.testing.assert_array_equal(y("step"), [0, 0, 0, 1, 1])
    np.testing.assert_array_equal(y("relu"), [0, 0, 0, 0.5, 3])
    np.testing.assert_allclose(y("leaky_relu", alpha=0.2), [-0.4, -0.1, 0, 0.5, 3])
    np.testing.assert_allclose(y("sigmoid"), 1 / (1 + np.exp(-pre[0])))
    np.testing.assert_allclose(y("tanh"), np.tanh(pre[0]))
    gelu = [0.5 * v * (1 + math.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v ** 3))) for v in pre[0]]
    np.testing.assert_allclose(y("gelu"), gelu, rtol=1e-15)
    assert y("gelu")[0] == pytest.approx(-0.0454023059, rel=1e-9)  # tanh-approximate GELU(-2)


def test_reference_dense_backward_accumulates_into_given_buffers(rng):
    x, w, b = _layer(rng, 3, 2, 4, np.float64)
    dy = rng.standard_normal((3, 2))
    y = ref.dense(x, w, b, activation="tanh")
    _, dw1, db1 = ref.dense_backward(x, w, y, dy, activation="tanh")
    dw, db = np.ones((4, 2)), np.ones(2)
    dx, dw_out, db_out = ref.dense_backward(x, w, y, dy, activation="tanh", dw=dw, db=db,
                                            accumulate=True, need_dx=False)
    assert dx is None and dw_out is dw and db_out is db
    np.testing.assert_allclose(dw, dw1 + 1)
    np.testing.assert_allclose(db, db1 + 1)


# ---- forward: kernel against reference ------------------------------------------

@kernel_settings
@given(m=dims(), n=dims(), k=dims(), act=st.sampled_from(ACTIVATIONS), with_bias=st.booleans(),
       layout=st.sampled_from(LAYOUTS), dtype=st.sampled_from(FLOAT_DTYPES), seed=seeds())
def test_dense_forward_matches_reference(cpu_path, m, n, k, act, with_bias, layout, dtype, seed):
    rng = np.random.default_rng(seed)
    x, w, b = _layer(rng, m, n, k, dtype, scale=2.0)
    b = b if with_bias else None
    y, pre = ops.dense(with_layout(x, layout), with_layout(w, layout), b, activation=act,
                             alpha=0.1, return_preactivation=True)
    assert y.shape == pre.shape == (m, n) and y.dtype == pre.dtype == dtype
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    b64 = None if b is None else b.astype(np.float64)
    y_ref, pre_ref = ref.dense(x64, w64, b64, activation=act, alpha=0.1, return_preactivation=True)
    pre_bound = _pre_bound(x, w, b, dtype)
    what = f"{cpu_path} {act} {dtype.__name__} m={m} n={n} k={k} bias={with_bias}"
    assert_gemm_close(pre, pre_ref, pre_bound, what + " (pre-activation)")
    if not has_gradient(act):  # a step: only where the sign of the pre-activation is certain
        sure = np.abs(pre_ref) > pre_bound
        np.testing.assert_array_equal(y[sure], y_ref[sure], err_msg=what)
        assert set(np.unique(y)) <= {0.0, 1.0}
        return
    y_bound = LIPSCHITZ[act] * pre_bound + 8 * np.finfo(dtype).eps * (np.abs(y_ref) + 1e-3)
    assert_gemm_close(y, y_ref, y_bound, what)


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_dense_forward_into_out_without_preactivation(cpu_path, act):
    rng = np.random.default_rng(11)
    x, w, b = _layer(rng, 19, 33, 17, np.float32)
    out = np.full((19, 33), np.nan, np.float32)
    y = ops.dense(x, w, b, activation=act, alpha=0.2, out=out)
    assert y is out
    y_ref, pre_ref = ref.dense(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64),
                               activation=act, alpha=0.2, return_preactivation=True)
    bound = _pre_bound(x, w, b, np.float32) + 8 * np.finfo(np.float32).eps * (np.abs(y_ref) + 1e-3)
    if not has_gradient(act):  # a step: only where the sign of the pre-activation is certain
        sure = np.abs(pre_ref) > bound
        np.testing.assert_array_equal(out[sure], y_ref[sure])
    else:
        assert_gemm_close(out, y_ref, bound, act)


@pytest.mark.parametrize("m,n,k,act", [(320, 300, 190, "relu"), (289, 40, 513, "gelu"),
                                       (12, 6000, 300, "tanh"), (385, 17, 257, "leaky_relu")])
def test_dense_forward_large_threaded(cpu_path, m, n, k, act):
    # k > 256 crosses a k-block of the packed GEMM: the epilogue (bias,
    # activation) must run once, after the last block.
    import fastnet
    rng = np.random.default_rng(m + n + k)
    x, w, b = _layer(rng, m, n, k, np.float32)
    with fastnet.threads(2):
        y, pre = ops.dense(x, w, b, activation=act, return_preactivation=True)
    y_ref, pre_ref = ref.dense(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64),
                               activation=act, return_preactivation=True)
    bound = _pre_bound(x, w, b, np.float32)
    assert_gemm_close(pre, pre_ref, bound, f"{m}x{n}x{k} pre")
    assert_gemm_close(y, y_ref, LIPSCHITZ[act] * bound + 8 * np.finfo(np.float32).eps * (np.abs(y_ref) + 1e-3),
                      f"{m}x{n}x{k} {act}")


# ---- backward: kernel against reference ------------------------------------------

def _backward_bounds(x, w, dz_mag, dtype, dw0=None, db0=None):
    """GEMM-style bounds for dx = dz w^T, dw = x^T dz, db = 1^T dz, where
    dz_mag bounds |dz| and already carries the activation-derivative error."""
    eps = np.finfo(dtype).eps
    ones = np.ones((1, x.shape[0]))
    bounds = {"dx": gemm_error_bound(dz_mag, w.T, dtype, factor=3.0),
              "dw": gemm_error_bound(x.T, dz_mag, dtype, factor=3.0),
              "db": gemm_error_bound(ones, dz_mag, dtype, factor=3.0)[0]}
    if dw0 is not None:
        bounds["dw"] = bounds["dw"] + 2 * eps * np.abs(dw0.astype(np.float64))
    if db0 is not None:
        bounds["db"] = bounds["db"] + 2 * eps * np.abs(db0.astype(np.float64))
    return bounds


@kernel_settings
@given(m=dims(), n=dims(), k=dims(), act=st.sampled_from(DIFFERENTIABLE), with_bias=st.booleans(),
       accumulate=st.booleans(), need_dx=st.booleans(), give_pre=st.booleans(),
       layout=st.sampled_from(LAYOUTS), dtype=st.sampled_from(FLOAT_DTYPES), seed=seeds())
def test_dense_backward_matches_reference(cpu_path, m, n, k, act, with_bias, accumulate, need_dx,
                                          give_pre, layout, dtype, seed):
    rng = np.random.default_rng(seed)
    x, w, b = _layer(rng, m, n, k, dtype, scale=2.0)
    dy = random_array(rng, (m, n), dtype)
    y, pre = ref.dense(x, w, b, activation=act, alpha=0.1, return_preactivation=True)
    give_pre = give_pre or backward_needs_x(act, alpha=0.1)
    dw = random_array(rng, (k, n), dtype) if accumulate else None
    db = random_array(rng, (n,), dtype) if accumulate and with_bias else None
    dw0 = None if dw is None else dw.copy()
    db0 = None if db is None else db.copy()
    lay = lambda v: with_layout(v, layout)
    got_dx, got_dw, got_db = ops.dense_backward(
        lay(x), lay(w), y, lay(dy), activation=act, alpha=0.1, pre=pre if give_pre else None, need_dx=need_dx,
        dw=dw, db=db, accumulate=accumulate, with_bias=with_bias)
    exp_dx, exp_dw, exp_db = ref.dense_backward(
        x.astype(np.float64), w.astype(np.float64), y.astype(np.float64), dy.astype(np.float64),
        activation=act, alpha=0.1, pre=pre.astype(np.float64),
        dw=None if dw0 is None else dw0.astype(np.float64),
        db=None if db0 is None else db0.astype(np.float64), accumulate=accumulate, with_bias=with_bias)
    derivative = ref.activation_derivative(act, x=pre.astype(np.float64), alpha=0.1)
    dz_mag = np.abs(dy.astype(np.float64)) * (np.abs(derivative) + 1.0)
    bounds = _backward_bounds(x, w, dz_mag, dtype, dw0, db0)
    what = f"{cpu_path} {act} {dtype.__name__} m={m} n={n} k={k} bias={with_bias} acc={accumulate}"
    if dw is not None:
        assert got_dw is dw
    assert got_dw.shape == (k, n) and got_dw.dtype == dtype
    assert_gemm_close(got_dw, exp_dw, bounds["dw"], what + " dw")
    if with_bias:
        assert got_db is not None and got_db.shape == (n,)
        if db is not None:
            assert got_db is db
        assert_gemm_close(got_db, exp_db, bounds["db"], what + " db")
    else:
        assert got_db is None
    if need_dx:
        assert got_dx.shape == (m, k) and got_dx.dtype == dtype
        assert_gemm_close(got_dx, exp_dx, bounds["dx"], what + " dx")
    else:
        assert got_dx is None


@pytest.mark.parametrize("act", DIFFERENTIABLE)
def test_dense_backward_float64_matches_finite_differences(cpu_path, act):
    rng = np.random.default_rng(ACTIVATIONS.index(act))
    x, w, b = _layer(rng, 5, 7, 6, np.float64)
    dy = rng.standard_normal((5, 7))
    y, pre = ops.dense(x, w, b, activation=act, alpha=0.1, return_preactivation=True)
    dx, dw, db = ops.dense_backward(x, w, y, dy, activation=act, alpha=0.1, pre=pre)
    check = lambda got, f, at: np.testing.assert_allclose(got, numerical_gradient(f, at), rtol=1e-6, atol=1e-8)
    check(dx, lambda x_: _loss_of_dense(x_, w, b, dy, act, 0.1), x)
    check(dw, lambda w_: _loss_of_dense(x, w_, b, dy, act, 0.1), w)
    check(db, lambda b_: _loss_of_dense(x, w, b_, dy, act, 0.1), b)


@pytest.mark.parametrize("act", DIFFERENTIABLE)
@pytest.mark.parametrize("layout", ["F", "strided", "reversed"])
def test_dense_backward_accepts_any_layout_of_y_and_pre(act, layout):
    rng = np.random.default_rng(10)
    x, w, b = _layer(rng, 7, 17, 5, np.float32)
    dy = random_array(rng, (7, 17), np.float32)
    y, pre = ref.dense(x, w, b, activation=act, return_preactivation=True)
    expected = ops.dense_backward(x, w, y, dy, activation=act, pre=pre)
    got = ops.dense_backward(x, w, with_layout(y, layout), dy, activation=act, pre=with_layout(pre, layout))
    for e, g in zip(expected, got):
        np.testing.assert_array_equal(g, e)


@pytest.mark.parametrize("m,n,k", [(513, 40, 33), (400, 257, 200), (7, 600, 290)])
def test_dense_backward_large_threaded_accumulate(cpu_path, m, n, k):
    # dw = x^T dz reduces over m: m > 256 crosses a k-block of the GEMM.
    import fastnet
    rng = np.random.default_rng(m * n + k)
    x, w, b = _layer(rng, m, n, k, np.float32)
    dy = random_array(rng, (m, n), np.float32)
    y = ref.dense(x, w, b, activation="sigmoid")
    dw0, db0 = random_array(rng, (k, n), np.float32), random_array(rng, (n,), np.float32)
    dw, db = dw0.copy(), db0.copy()
    with fastnet.threads(2):
        dx, _, _ = ops.dense_backward(x, w, y, dy, activation="sigmoid", dw=dw, db=db, accumulate=True)
    exp_dx, exp_dw, exp_db = ref.dense_backward(*(v.astype(np.float64) for v in (x, w, y, dy)), activation="sigmoid",
                                                dw=dw0.astype(np.float64), db=db0.astype(np.float64), accumulate=True)
    dz_mag = np.abs(dy.astype(np.float64)) * 1.25
    bounds = _backward_bounds(x, w, dz_mag, np.float32, dw0, db0)
    assert_gemm_close(dw, exp_dw, bounds["dw"], "dw")
    assert_gemm_close(db, exp_db, bounds["db"], "db")
    assert_gemm_close(dx, exp_dx, bounds["dx"], "dx")


def test_dense_backward_accumulate_twice_doubles(cpu_path):
    rng = np.random.default_rng(4)
    x, w, b = _layer(rng, 9, 17, 6, np.float64)
    dy = rng.standard_normal((9, 17))
    y = ref.dense(x, w, b, activation="sigmoid")
    dw, db = np.zeros((6, 17)), np.zeros(17)
    for _ in range(2):
        ops.dense_backward(x, w, y, dy, activation="sigmoid", dw=dw, db=db, accumulate=True, need_dx=False)
    _, dw1, db1 = ref.dense_backward(x, w, y, dy, activation="sigmoid")
    np.testing.assert_allclose(dw, 2 * dw1, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(db, 2 * db1, rtol=1e-12, atol=1e-14)


def test_dense_backward_does_not_modify_dy(cpu_path):
    rng = np.random.default_rng(6)
    x, w, b = _layer(rng, 8, 16, 5, np.float32)
    dy = random_array(rng, (8, 16), np.float32)
    dy0 = dy.copy()
    y, pre = ref.dense(x, w, b, activation="gelu", return_preactivation=True)
    ops.dense_backward(x, w, y, dy, activation="gelu", pre=pre)
    np.testing.assert_array_equal(dy, dy0)
