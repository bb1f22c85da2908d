"""Losses: softmax cross-entropy (ignore_index, label smoothing), MSE and
binary cross-entropy on logits, against the reference and finite differences."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastnet import ops
from fastnet import reference as ref
from helpers import EDGE_SIZES, FLOAT_DTYPES, kernel_settings, numerical_gradient, random_array, seeds

IGNORE = -100
LOSS_TOL = {np.float32: dict(rtol=2e-6, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-14)}


def _labels(rng, rows, cols, ignore_fraction):
    labels = rng.integers(0, cols, rows).astype(np.int64)
    labels[rng.random(rows) < ignore_fraction] = IGNORE
    return labels


def _grad_tol(dtype, n):
    """The gradient is (p - target) / n: absolute error of a few eps / n."""
    eps = np.finfo(dtype).eps
    return dict(rtol=8 * eps, atol=16 * eps / max(n, 1))


# ---- the reference itself ---------------------------------------------------

@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_reference_cross_entropy_gradient_matches_finite_differences(rng, smoothing):
    z = rng.standard_normal((6, 5)) * 3
    labels = np.array([0, 4, IGNORE, 2, 2, IGNORE])
    loss, grad = ref.softmax_cross_entropy(z, labels, label_smoothing=smoothing)
    fd = numerical_gradient(lambda z_: ref.softmax_cross_entropy(z_, labels, label_smoothing=smoothing)[0], z)
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-9)
    assert np.all(grad[labels == IGNORE] == 0)


def test_reference_cross_entropy_by_formula():
    z = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [5.0, 1.0, -1.0]])
    labels = np.array([2, 1, IGNORE])
    p = np.exp(z[:2]) / np.exp(z[:2]).sum(axis=1, keepdims=True)
    assert ref.softmax_cross_entropy(z, labels)[0] == pytest.approx(-np.log(p[[0, 1], [2, 1]]).mean(), rel=1e-14)
    s = 0.3
    smoothed = -(((1 - s) * np.eye(3)[[2, 1]] + s / 3) * np.log(p)).sum(axis=1).mean()
    assert ref.softmax_cross_entropy(z, labels, label_smoothing=s)[0] == pytest.approx(smoothed, rel=1e-14)


def test_reference_mse_and_bce_gradients_match_finite_differences(rng):
    p, t = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    np.testing.assert_allclose(ref.mse(p, t)[1], numerical_gradient(lambda p_: ref.mse(p_, t)[0], p),
                               rtol=1e-7, atol=1e-10)
    z, y = rng.standard_normal((3, 4)) * 4, rng.random((3, 4))
    np.testing.assert_allclose(ref.bce_with_logits(z, y)[1],
                               numerical_gradient(lambda z_: ref.bce_with_logits(z_, y)[0], z), rtol=1e-7, atol=1e-10)


def test_reference_bce_is_binary_cross_entropy_of_sigmoid(rng):
    z, y = rng.standard_normal(50) * 3, rng.random(50)
    s = 1 / (1 + np.exp(-z))
    naive = -(y * np.log(s) + (1 - y) * np.log(1 - s)).mean()
    assert ref.bce_with_logits(z, y)[0] == pytest.approx(naive, rel=1e-12)


# ---- softmax cross-entropy: kernel against reference ------------------------------

@kernel_settings
@given(rows=st.sampled_from([1, 2, 7, 16, 33]),
       cols=st.one_of(st.sampled_from(EDGE_SIZES[1:] + [1000]), st.integers(1, 60)),
       smoothing=st.sampled_from([0.0, 0.1, 0.5]), ignore_fraction=st.sampled_from([0.0, 0.3]),
       scale=st.sampled_from([1.0, 20.0]), dtype=st.sampled_from(FLOAT_DTYPES), seed=seeds())
def test_softmax_cross_entropy_matches_reference(cpu_path, rows, cols, smoothing, ignore_fraction, scale, dtype, seed):
    rng = np.random.default_rng(seed)
    z = random_array(rng, (rows, cols), dtype, -scale, scale)
    labels = _labels(rng, rows, cols, ignore_fraction)
    loss, grad = ops.softmax_cross_entropy(z, labels, ignore_index=IGNORE, label_smoothing=smoothing)
    exp_loss, exp_grad = ref.softmax_cross_entropy(z.astype(np.float64), labels, IGNORE, smoothing)
    assert isinstance(loss, float)
    what = f"{cpu_path} {dtype.__name__} {rows}x{cols} s={smoothing}"
    # Each row loss is a log-sum-exp of values up to `scale`: error ~ eps * scale.
    eps = np.finfo(dtype).eps
    assert abs(loss - exp_loss) <= 16 * eps * (abs(exp_loss) + 2 * scale + np.log(cols)) + LOSS_TOL[dtype]["atol"], \
        f"{what}: loss {loss!r} vs {exp_loss!r}"
    assert grad.shape == z.shape and grad.dtype == dtype
    n = int((labels != IGNORE).sum())
    np.testing.assert_allclose(grad.astype(np.float64), exp_grad, **_grad_tol(dtype, n), err_msg=what)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_softmax_cross_entropy_without_grad(cpu_path, dtype):
    rng = np.random.default_rng(2)
    z = random_array(rng, (9, 17), dtype, -3, 3)
    labels = _labels(rng, 9, 17, 0.2)
    loss, grad = ops.softmax_cross_entropy(z, labels, return_grad=False)
    assert grad is None
    assert loss == pytest.approx(ref.softmax_cross_entropy(z.astype(np.float64), labels)[0],
                          rel=LOSS_TOL[dtype]["rtol"], abs=LOSS_TOL[dtype]["atol"])


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_softmax_cross_entropy_large_logits_are_stable(cpu_path, dtype):
    z = np.array([[1000.0, -1000.0, 0.0], [-5000.0, 5000.0, 4990.0], [88.0, 89.0, -89.0]], dtype)
    labels = np.array([1, 2, 0])
    loss, grad = ops.softmax_cross_entropy(z, labels)
    exp_loss, exp_grad = ref.softmax_cross_entropy(z.astype(np.float64), labels)
    assert np.isfinite(loss) and np.all(np.isfinite(grad))
    assert loss == pytest.approx(exp_loss, rel=1e-6)
    np.testing.assert_allclose(grad, exp_grad, rtol=1e-5, atol=1e-7)


def test_softmax_cross_entropy_ignored_rows_get_zero_gradient(cpu_path):
    rng = np.random.default_rng(4)
    z = random_array(rng, (8, 6), np.float32, -2, 2)
    labels = np.array([1, IGNORE, 3, IGNORE, IGNORE, 0, 5, 2])
    loss, grad = ops.softmax_cross_entropy(z, labels)
    assert np.all(grad[labels == IGNORE] == 0)
    kept = labels != IGNORE
    loss_kept, grad_kept = ops.softmax_cross_entropy(z[kept], labels[kept])
    assert loss == pytest.approx(loss_kept, rel=1e-6)
    np.testing.assert_allclose(grad[kept], grad_kept, rtol=1e-6)


@pytest.mark.parametrize("label_dtype", [np.int32, np.uint8, np.int16, "list"])
def test_softmax_cross_entropy_accepts_any_integer_labels(cpu_path, label_dtype):
    z = random_array(np.random.default_rng(7), (6, 5), np.float32, -2, 2)
    labels = np.array([0, 4, 1, 1, 3, 2])
    as_given = labels.tolist() if label_dtype == "list" else labels.astype(label_dtype)
    expected = ops.softmax_cross_entropy(z, labels)
    got = ops.softmax_cross_entropy(z, as_given)
    assert got[0] == expected[0]
    np.testing.assert_array_equal(got[1], expected[1])


@pytest.mark.parametrize("rows", [0, 3])
def test_softmax_cross_entropy_with_nothing_counted_is_zero(cpu_path, rows):
    z = random_array(np.random.default_rng(8), (rows, 5), np.float32, -2, 2)
    loss, grad = ops.softmax_cross_entropy(z, np.full(rows, IGNORE))
    assert loss == 0.0 and grad.shape == (rows, 5) and not grad.any()


def test_softmax_cross_entropy_custom_ignore_index(cpu_path):
    z = random_array(np.random.default_rng(5), (4, 3), np.float64, -1, 1)
    labels = np.array([0, 7, 2, 7])
    loss, grad = ops.softmax_cross_entropy(z, labels, ignore_index=7)
    exp_loss, exp_grad = ref.softmax_cross_entropy(z, labels, ignore_index=7)
    assert loss == pytest.approx(exp_loss, rel=1e-12)
    np.testing.assert_allclose(grad, exp_grad, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("smoothing", [0.0, 0.25])
def test_softmax_cross_entropy_float64_gradient_matches_finite_differences(cpu_path, smoothing):
    rng = np.random.default_rng(6)
    z = rng.standard_normal((5, 7)) * 2
    labels = np.array([3, IGNORE, 0, 6, 6])
    f = ops.softmax_cross_entropy
    _, grad = f(z, labels, label_smoothing=smoothing)
    fd = numerical_gradient(lambda z_: f(z_, labels, label_smoothing=smoothing)[0], z)
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-9)


# ---- MSE and BCE ---------------------------------------------------------------

shapes = st.one_of(st.sampled_from(EDGE_SIZES[1:] + [1000, 4099]).map(lambda n: (n,)),
                   st.tuples(st.integers(1, 9), st.integers(1, 40)))


@kernel_settings
@given(shape=shapes, dtype=st.sampled_from(FLOAT_DTYPES), seed=seeds())
def test_mse_matches_reference(cpu_path, shape, dtype, seed):
    rng = np.random.default_rng(seed)
    p, t = random_array(rng, shape, dtype, -3, 3), random_array(rng, shape, dtype, -3, 3)
    loss, grad = ops.mse(p, t)
    exp_loss, exp_grad = ref.mse(p, t)
    assert isinstance(loss, float)
    assert loss == pytest.approx(exp_loss, rel=LOSS_TOL[dtype]["rtol"] * 4, abs=LOSS_TOL[dtype]["atol"])
    assert grad.shape == shape and grad.dtype == dtype
    np.testing.assert_allclose(grad.astype(np.float64), ref.mse(p.astype(np.float64), t.astype(np.float64))[1],
                               **_grad_tol(dtype, p.size), err_msg=f"{cpu_path} {shape}")
    assert ops.mse(p, t, return_grad=False)[1] is None


@kernel_settings
@given(shape=shapes, dtype=st.sampled_from(FLOAT_DTYPES), scale=st.sampled_from([1.0, 50.0]), seed=seeds())
def test_bce_with_logits_matches_reference(cpu_path, shape, dtype, scale, seed):
    rng = np.random.default_rng(seed)
    z = random_array(rng, shape, dtype, -scale, scale)
    t = rng.random(shape).astype(dtype)
    if t.size > 2:
        t.reshape(-1)[:2] = [0.0, 1.0]
    loss, grad = ops.bce_with_logits(z, t)
    exp_loss, exp_grad = ref.bce_with_logits(z.astype(np.float64), t.astype(np.float64))
    assert isinstance(loss, float) and np.isfinite(loss)
    eps = np.finfo(dtype).eps
    assert abs(loss - exp_loss) <= 16 * eps * (abs(exp_loss) + scale) + 1e-12, f"{loss} vs {exp_loss}"
    assert grad.shape == shape and grad.dtype == dtype
    np.testing.assert_allclose(grad.astype(np.float64), exp_grad, **_grad_tol(dtype, z.size))
    assert ops.bce_with_logits(z, t, return_grad=False)[1] is None


@pytest.mark.parametrize("name", ["mse", "bce_with_logits"])
def test_float64_loss_gradient_matches_finite_differences(cpu_path, name):
    rng = np.random.default_rng(9)
    a, t = rng.standard_normal((3, 5)) * 2, rng.random((3, 5))
    f = getattr(ops, name)
    fd = numerical_gradient(lambda a_: f(a_, t)[0], a)
    np.testing.assert_allclose(f(a, t)[1], fd, rtol=1e-6, atol=1e-10)
