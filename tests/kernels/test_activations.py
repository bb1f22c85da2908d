"""Elementwise activations, softmax and their backward against the reference.

Every activation in the kernels' table (helpers.ACTIVATIONS) is tested: a new one needs no edit here."""
import inspect

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastnet import ops
from fastnet import reference as ref
from helpers import (
    ACTIVATIONS,
    DIFFERENTIABLE,
    EDGE_SIZES,
    FLOAT_DTYPES,
    backward_needs_x,
    kernel_settings,
    numerical_gradient,
    random_array,
    seeds,
    with_layout,
)

# Transcendental activations may use vectorised exp/tanh approximations:
# allow a few tens of ulp in float32, a few in float64.
ACT_TOL = {np.float32: dict(rtol=1e-5, atol=1e-6), np.float64: dict(rtol=1e-13, atol=1e-14)}

sizes = st.one_of(st.sampled_from(EDGE_SIZES + [63, 64, 65, 1000, 4099]), st.integers(0, 200))
shapes = st.one_of(sizes.map(lambda n: (n,)), st.tuples(st.sampled_from([1, 3, 7]), sizes))


def _inputs(rng, shape, dtype, scale=4.0):
    x = random_array(rng, shape, dtype, -scale, scale)
    if x.size >= 8:  # saturating and exactly-zero values as well
        x.reshape(-1)[:8] = [0.0, -0.0, 30.0, -30.0, 90.0, -90.0, 1e-4, -1e-4]
    return x


def _by_name(name, x, alpha):
    """ops.<name>(x), with alpha when the activation takes one (leaky_relu's slope)."""
    function = getattr(ops, name)
    return function(x, alpha=alpha) if "alpha" in inspect.signature(function).parameters else function(x)


# ---- the registry ------------------------------------------------------------

def _params(f):
    import inspect
    return [(p.name, p.kind, p.default) for p in inspect.signature(f).parameters.values()]


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_every_activation_has_a_function_and_a_reference_twin(act):
    info = ops.activation_info(act)
    assert info.name == act and ops.ACTIVATIONS[act] == info.code
    assert _params(getattr(ops, act)) == _params(getattr(ref, act))
    assert ("alpha" in [p[0] for p in _params(getattr(ops, act))]) == info.has_param
    assert getattr(ops, act).__doc__ == info.doc and info.doc
    assert info.grad in ("x", "y", "sign", "dy", "undefined")


def test_activation_info_knows_the_aliases_and_refuses_unknown_names():
    assert ops.activation_info("linear") == ops.activation_info(None) == ops.activation_info("identity")
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        ops.activation_info("swish")


@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize("alpha", [0.2, -0.3])
def test_backward_reads_what_the_registry_says(cpu_path, act, alpha):
    """backward_reads decides, for every combination of x and y kept, whether
    the kernel runs (and on what) or refuses, and the reference agrees."""
    info = ops.activation_info(act)
    x = _inputs(np.random.default_rng(7), (40,), np.float64)
    y = ref.activation(x, act, alpha=alpha)
    dy = random_array(np.random.default_rng(8), (40,), np.float64)
    for have_x in (True, False):
        for have_y in (True, False):
            kept = {"x": x if have_x else None, "y": y if have_y else None}
            reads = info.backward_reads(x=have_x, y=have_y, alpha=alpha)
            if reads is None:
                with pytest.raises(ValueError):
                    ops.activation_backward(act, dy, alpha=alpha, **kept)
                with pytest.raises(ValueError):
                    ref.activation_backward(act, dy, alpha=alpha, **kept)
                continue
            assert {"x": have_x, "y": have_y, "dy": True}[reads]
            got = ops.activation_backward(act, dy, alpha=alpha, **kept)
            np.testing.assert_allclose(got, ref.activation_backward(act, dy, x=x, alpha=alpha),
                                       rtol=1e-12, atol=1e-14)
    assert info.needs_input(alpha) == (info.has_gradient and info.backward_reads(x=False, y=True, alpha=alpha) is None)


# ---- the reference itself ---------------------------------------------------

@pytest.mark.parametrize("act", DIFFERENTIABLE)
def test_reference_derivative_matches_finite_differences(act):
    x = np.linspace(-4.1, 3.9, 41)  # avoids the kink at 0
    fd = np.array([numerical_gradient(lambda t: float(ref.activation(t, act, alpha=0.2)[0]), [v])[0] for v in x])
    np.testing.assert_allclose(ref.activation_derivative(act, x=x, alpha=0.2), fd, rtol=1e-7, atol=1e-9)
    y = ref.activation(x, act, alpha=0.2)
    if not backward_needs_x(act, alpha=0.2):  # the derivative also follows from the forward output
        np.testing.assert_allclose(ref.activation_derivative(act, y=y, alpha=0.2), fd, rtol=1e-7, atol=1e-9)


def test_reference_sigmoid_is_stable_for_large_inputs():
    y = ref.sigmoid(np.array([-1000.0, -40.0, 0.0, 40.0, 1000.0]))
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(y, [0.0, np.exp(-40.0), 0.5, 1.0, 1.0], rtol=1e-15, atol=0)


def test_reference_leaky_relu_with_negative_slope_needs_x():
    x = np.array([-2.0, 3.0])
    y = ref.leaky_relu(x, alpha=-0.5)
    np.testing.assert_array_equal(ref.activation_derivative("leaky_relu", x=x, alpha=-0.5), [-0.5, 1.0])
    with pytest.raises(ValueError, match="needs x"):
        ref.activation_derivative("leaky_relu", y=y, alpha=-0.5)


def test_reference_step_has_no_backward():
    with pytest.raises(ValueError, match="step"):
        ref.activation_backward("step", np.ones(3), x=np.ones(3))


def test_reference_softmax_backward_matches_finite_differences(rng):
    x = rng.standard_normal((3, 5))
    dy = rng.standard_normal((3, 5))
    fd = numerical_gradient(lambda x_: float((dy * ref.softmax(x_)).sum()), x)
    np.testing.assert_allclose(ref.softmax_backward(ref.softmax(x), dy), fd, rtol=1e-7, atol=1e-9)


# ---- activations: kernel against reference ------------------------------------

@kernel_settings
@given(shape=shapes, act=st.sampled_from(ACTIVATIONS), dtype=st.sampled_from(FLOAT_DTYPES),
       alpha=st.sampled_from([0.01, 0.2]), seed=seeds())
def test_activation_forward_matches_reference(cpu_path, shape, act, dtype, alpha, seed):
    x = _inputs(np.random.default_rng(seed), shape, dtype)
    expected = ref.activation(x.astype(np.float64), act, alpha=alpha)
    for got in (ops.activation(x, act, alpha=alpha),
                _by_name(act, x, alpha) if act != "identity" else None):
        if got is None:
            continue
        assert got.shape == x.shape and got.dtype == dtype
        np.testing.assert_allclose(got.astype(np.float64), expected, **ACT_TOL[dtype],
                                   err_msg=f"{cpu_path} {act} {dtype.__name__} {shape}")


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_activation_forward_into_out(cpu_path, act):
    x = _inputs(np.random.default_rng(1), (33,), np.float32)
    out = np.full(33, np.nan, np.float32)
    assert ops.activation(x, act, alpha=0.1, out=out) is out
    np.testing.assert_allclose(out, ref.activation(x.astype(np.float64), act, alpha=0.1), **ACT_TOL[np.float32])


@kernel_settings
@given(shape=shapes, act=st.sampled_from(DIFFERENTIABLE), dtype=st.sampled_from(FLOAT_DTYPES),
       alpha=st.sampled_from([0.01, 0.2]), seed=seeds())
def test_activation_backward_matches_reference(cpu_path, shape, act, dtype, alpha, seed):
    rng = np.random.default_rng(seed)
    x = _inputs(rng, shape, dtype)
    y = ref.activation(x, act, alpha=alpha)
    dy = random_array(rng, shape, dtype)
    got = ops.activation_backward(act, dy, x=x, y=y, alpha=alpha)
    assert got.shape == x.shape and got.dtype == dtype
    expected = ref.activation_backward(act, dy.astype(np.float64), x=x.astype(np.float64),
                                       y=y.astype(np.float64), alpha=alpha)
    # The derivative is O(1) and may be computed from y rounded to dtype.
    tol = ACT_TOL[dtype]
    np.testing.assert_allclose(got.astype(np.float64), expected, rtol=tol["rtol"],
                               atol=tol["atol"] * 4, err_msg=f"{cpu_path} {act} {dtype.__name__} {shape}")


@pytest.mark.parametrize("act", DIFFERENTIABLE)
def test_activation_backward_float64_matches_finite_differences(cpu_path, act):
    rng = np.random.default_rng(3)
    x = rng.uniform(-3, 3, 37)
    dy = rng.standard_normal(37)
    y = ops.activation(x, act, alpha=0.2)
    got = ops.activation_backward(act, dy, x=x, y=y, alpha=0.2)
    fd = numerical_gradient(lambda x_: float((dy * ref.activation(x_, act, alpha=0.2)).sum()), x)
    np.testing.assert_allclose(got, fd, rtol=1e-6, atol=1e-8)


def test_relu_and_leaky_relu_derivative_at_zero(cpu_path):
    x = np.zeros(20, np.float32)
    dy = np.ones(20, np.float32)
    np.testing.assert_array_equal(ops.activation_backward("relu", dy, x=x, y=x), 0.0)
    got = ops.activation_backward("leaky_relu", dy, x=x, y=x, alpha=0.25)
    np.testing.assert_array_equal(got, ref.activation_backward("leaky_relu", dy, x=x, y=x, alpha=0.25))


@pytest.mark.parametrize("value", [np.float32(-1.5), np.array(0.75, np.float64), 2.0])
def test_activations_accept_scalars(cpu_path, value):
    for act in ACTIVATIONS:
        got = ops.activation(value, act, alpha=0.1)
        assert got.shape == ()
        np.testing.assert_allclose(got, ref.activation(np.asarray(value), act, alpha=0.1), rtol=1e-6)


def test_silu_is_x_times_sigmoid(cpu_path):
    x = np.array([-30.0, -2.0, -0.5, 0.0, 1.0, 4.0, 30.0], np.float64)
    want = x / (1.0 + np.exp(-x))
    np.testing.assert_allclose(ref.silu(x), want, rtol=1e-15, atol=1e-300)
    np.testing.assert_allclose(ops.silu(x), want, rtol=1e-15, atol=1e-300)
    np.testing.assert_allclose(ops.silu(x.astype(np.float32)), want, rtol=1e-6, atol=1e-30)
    assert ops.silu(np.float64(1.0)) == pytest.approx(0.7310585786300049, rel=1e-15)


def test_step_is_the_perceptron_threshold(cpu_path):
    x = np.array([-2.0, -1e-30, 0.0, 1e-30, 3.0] * 4, np.float32)
    np.testing.assert_array_equal(ops.step(x), np.array([0, 0, 0, 1, 1] * 4, np.float32))


# ---- softmax -------------------------------------------------------------------

@kernel_settings
@given(rows=st.sampled_from([0, 1, 2, 7, 33]), cols=sizes.filter(lambda c: c > 0),
       dtype=st.sampled_from(FLOAT_DTYPES), scale=st.sampled_from([1.0, 30.0, 1000.0]), seed=seeds())
def test_softmax_matches_reference(cpu_path, rows, cols, dtype, scale, seed):
    rng = np.random.default_rng(seed)
    x = random_array(rng, (rows, cols), dtype, -scale, scale)
    got = ops.softmax(x)
    assert got.shape == x.shape and got.dtype == dtype
    assert np.all(np.isfinite(got))
    expected = ref.softmax(x.astype(np.float64))
    np.testing.assert_allclose(got.astype(np.float64), expected, **ACT_TOL[dtype])
    if rows:
        np.testing.assert_allclose(got.astype(np.float64).sum(axis=1), 1.0,
                                   rtol=0, atol=(cols + 4) * np.finfo(dtype).eps)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_softmax_large_logits_are_stable(cpu_path, dtype):
    x = np.array([[1000.0, 1000.0, -1000.0, 999.0],
                  [-1e4, -1e4, -1e4, -1e4],
                  [88.0, 89.0, 90.0, -88.0]], dtype)
    got = ops.softmax(x)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, ref.softmax(x.astype(np.float64)), **ACT_TOL[dtype])
    np.testing.assert_allclose(got[1], 0.25)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_softmax_of_masked_logits_gives_exact_zeros(cpu_path, dtype):
    x = random_array(np.random.default_rng(3), (5, 37), dtype, -3, 3)
    x[:, 1::3] = -np.inf  # how attention masks out positions
    got = ops.softmax(x)
    assert np.all(got[:, 1::3] == 0)
    np.testing.assert_allclose(got, ref.softmax(x.astype(np.float64)), **ACT_TOL[dtype])


@pytest.mark.parametrize("layout", ["F", "strided", "reversed"])
def test_softmax_and_activations_accept_non_contiguous_input(cpu_path, layout):
    x = random_array(np.random.default_rng(4), (6, 35), np.float32, -3, 3)
    np.testing.assert_allclose(ops.softmax(with_layout(x, layout)), ref.softmax(x), **ACT_TOL[np.float32])
    for act in ACTIVATIONS:
        np.testing.assert_allclose(ops.activation(with_layout(x, layout), act, alpha=0.1),
                                   ref.activation(x.astype(np.float64), act, alpha=0.1), **ACT_TOL[np.float32],
                                   err_msg=act)


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_activation_in_place(cpu_path, act):
    x = _inputs(np.random.default_rng(5), (101,), np.float64)
    expected = ref.activation(x, act, alpha=0.3)
    assert ops.activation(x, act, alpha=0.3, out=x) is x
    np.testing.assert_allclose(x, expected, **ACT_TOL[np.float64])


def test_softmax_works_on_the_last_axis_of_3d(cpu_path):
    x = random_array(np.random.default_rng(0), (2, 3, 17), np.float32, -5, 5)
    got = ops.softmax(x)
    np.testing.assert_allclose(got, ref.softmax(x.astype(np.float64)), **ACT_TOL[np.float32])


@kernel_settings
@given(rows=st.sampled_from([0, 1, 5, 33]), cols=sizes.filter(lambda c: c > 0),
       dtype=st.sampled_from(FLOAT_DTYPES), seed=seeds())
def test_softmax_backward_matches_reference(cpu_path, rows, cols, dtype, seed):
    rng = np.random.default_rng(seed)
    y = ref.softmax(random_array(rng, (rows, cols), dtype, -3, 3))
    dy = random_array(rng, (rows, cols), dtype)
    got = ops.softmax_backward(y, dy)
    assert got.shape == y.shape and got.dtype == dtype
    expected = ref.softmax_backward(y.astype(np.float64), dy.astype(np.float64))
    # Per row: sum(dy * y) carries cols roundings, scaled by y.
    atol = 4 * (cols + 2) * np.finfo(dtype).eps * np.abs(y.astype(np.float64))
    err = np.abs(got.astype(np.float64) - expected)
    assert np.all(err <= atol + 4 * np.finfo(dtype).eps * np.abs(expected)), f"max err {err.max()}"


def test_softmax_backward_float64_matches_finite_differences(cpu_path):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((4, 19))
    dy = rng.standard_normal((4, 19))
    got = ops.softmax_backward(ops.softmax(x), dy)
    fd = numerical_gradient(lambda x_: float((dy * ref.softmax(x_)).sum()), x)
    np.testing.assert_allclose(got, fd, rtol=1e-6, atol=1e-9)
