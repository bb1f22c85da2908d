"""Quick checks of the activation, loss and optimizer kernels against direct
NumPy formulas (for the activations: the reference twin, so every activation
in the table is checked) on every CPU path, thread-count reproducibility, and errors."""
import numpy as np
import pytest

import fastnet
from fastnet import ops
from fastnet import reference as ref
from helpers import ACTIVATIONS, DIFFERENTIABLE, backward_needs_x


def _tol(dtype):
    return dict(rtol=2e-6, atol=2e-7) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-14)


@pytest.fixture
def x_wide(rng):
    # odd length: exercises the masked last vector; values cover both exp branches
    x = np.concatenate([rng.standard_normal(1001) * 3, rng.uniform(-90, 90, 200), [0.0, -0.0, 0.4999, 0.5001]])
    return x


@pytest.mark.parametrize("name", ACTIVATIONS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_activation_forward(cpu_path, name, dtype, x_wide):
    x = x_wide.astype(dtype)
    got = ops.activation(x, name, alpha=0.1)
    assert got.dtype == dtype and got.shape == x.shape
    np.testing.assert_allclose(got, ref.activation(x.astype(np.float64), name, alpha=0.1), **_tol(dtype))


@pytest.mark.parametrize("name", DIFFERENTIABLE)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_activation_backward(cpu_path, name, dtype, x_wide, rng):
    x = x_wide.astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    y = ops.activation(x, name, alpha=0.1)
    want = dy.astype(np.float64) * ref.activation_derivative(name, x=x.astype(np.float64), alpha=0.1)
    tol = dict(rtol=2e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ops.activation_backward(name, dy, x=x, alpha=0.1), want, **tol)
    if not backward_needs_x(name, alpha=0.1):
        np.testing.assert_allclose(ops.activation_backward(name, dy, y=y, alpha=0.1), want, **tol)


def test_conveniences_and_shapes(rng):
    x = rng.standard_normal((3, 4, 5)).astype(np.float32)
    np.testing.assert_array_equal(ops.relu(x), np.maximum(x, 0))
    np.testing.assert_array_equal(ops.step(x), (x > 0).astype(np.float32))
    np.testing.assert_array_equal(ops.leaky_relu(x, 0.2), np.where(x > 0, x, np.float32(0.2) * x))
    for f, name in [(ops.sigmoid, "sigmoid"), (ops.tanh, "tanh"), (ops.gelu, "gelu")]:
        np.testing.assert_array_equal(f(x), ops.activation(x, name))
    # non-contiguous input is copied; out= may be the input itself
    xt = x.transpose(2, 0, 1)
    np.testing.assert_array_equal(ops.relu(xt), np.maximum(xt, 0))
    z = x.copy()
    assert ops.activation(z, "relu", out=z) is z
    np.testing.assert_array_equal(z, np.maximum(x, 0))


def test_activation_errors(rng):
    x = rng.standard_normal(8).astype(np.float32)
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        ops.activation(x, "swish")
    with pytest.raises(TypeError, match="int64"):
        ops.activation(np.arange(4), "relu")
    with pytest.raises(ValueError, match="step"):
        ops.activation_backward("step", x, x=x)
    with pytest.raises(ValueError, match="needs x"):
        ops.activation_backward("gelu", x, y=x)
    with pytest.raises(ValueError, match="needs x"):
        ops.activation_backward("sigmoid", x)
    with pytest.raises(TypeError, match="x has dtype float64 but dy has dtype float32"):
        ops.activation_backward("relu", x, x=x.astype(np.float64))
    with pytest.raises(ValueError, match=r"x has shape \(4,\) but dy has shape \(8,\)"):
        ops.activation_backward("relu", x, x=x[:4])
    with pytest.raises(ValueError, match="overlap"):
        ops.activation(x[1:], "relu", out=x[:-1])
    with pytest.raises(ValueError, match="read-only"):
        ro = np.empty_like(x)
        ro.flags.writeable = False
        ops.activation(x, "relu", out=ro)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax(cpu_path, dtype, rng):
    x = (rng.standard_normal((2, 7, 37)) * 8).astype(dtype)
    xd = x.astype(np.float64)
    e = np.exp(xd - xd.max(-1, keepdims=True))
    want = e / e.sum(-1, keepdims=True)
    y = ops.softmax(x)
    np.testing.assert_allclose(y, want, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-8)
    dy = rng.standard_normal(x.shape).astype(dtype)
    yd = y.astype(np.float64)
    want_dx = yd * (dy - (dy * yd).sum(-1, keepdims=True))
    np.testing.assert_allclose(ops.softmax_backward(y, dy), want_dx, rtol=1e-4 if dtype == np.float32 else 1e-11,
                               atol=1e-6 if dtype == np.float32 else 1e-14)
    np.testing.assert_allclose(ops.softmax(np.float32([1000.0, 1000.0])), [0.5, 0.5])


def _xent_reference(logits, labels, ignore_index, eps):
    x = logits.astype(np.float64)
    n, c = x.shape
    lse = np.log(np.exp(x - x.max(1, keepdims=True)).sum(1)) + x.max(1)
    keep = labels != ignore_index
    q = np.full((n, c), eps / c)
    q[np.arange(n)[keep], labels[keep]] += 1 - eps
    row = lse - (q * x).sum(1)
    count = keep.sum()
    p = np.exp(x - lse[:, None])
    grad = np.where(keep[:, None], (p - q) / max(count, 1), 0.0)
    return row[keep].sum() / max(count, 1), grad


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_softmax_cross_entropy(cpu_path, dtype, eps, rng):
    logits = (rng.standard_normal((33, 21)) * 4).astype(dtype)
    labels = rng.integers(0, 21, 33).astype(np.int32)
    labels[[3, 10]] = -100
    loss, grad = ops.softmax_cross_entropy(logits, labels, label_smoothing=eps)
    want_loss, want_grad = _xent_reference(logits, labels, -100, eps)
    assert isinstance(loss, float)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    assert loss == pytest.approx(want_loss, rel=rtol)
    np.testing.assert_allclose(grad, want_grad, rtol=rtol * 10, atol=1e-8 if dtype == np.float32 else 1e-15)
    loss_only, none = ops.softmax_cross_entropy(logits, labels, label_smoothing=eps, return_grad=False)
    assert none is None and loss_only == loss


def test_softmax_cross_entropy_all_ignored(rng):
    logits = rng.standard_normal((4, 3)).astype(np.float32)
    loss, grad = ops.softmax_cross_entropy(logits, np.full(4, 7), ignore_index=7)
    assert loss == 0.0 and not grad.any()


def test_softmax_cross_entropy_errors(rng):
    logits = rng.standard_normal((4, 3)).astype(np.float32)
    with pytest.raises(ValueError, match=r"label 5 in row 2"):
        ops.softmax_cross_entropy(logits, np.array([0, 1, 5, 2]))
    with pytest.raises(ValueError, match=r"label -1 in row 0"):
        ops.softmax_cross_entropy(logits, np.array([-1, 1, 2, 2], dtype=np.int8))
    with pytest.raises(TypeError, match="integer"):
        ops.softmax_cross_entropy(logits, np.array([0.0, 1.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match=r"\(3,\).*\(4, 3\)"):
        ops.softmax_cross_entropy(logits, np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="label_smoothing"):
        ops.softmax_cross_entropy(logits, np.array([0, 1, 2, 1]), label_smoothing=1.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mse_and_bce(cpu_path, dtype, rng):
    p = (rng.standard_normal((37, 9)) * 5).astype(dtype)
    t = rng.standard_normal((37, 9)).astype(dtype)
    pd, td = p.astype(np.float64), t.astype(np.float64)
    rtol = 1e-6 if dtype == np.float32 else 1e-12
    loss, grad = ops.mse(p, t)
    assert loss == pytest.approx(((pd - td) ** 2).mean(), rel=rtol)
    np.testing.assert_allclose(grad, 2 * (pd - td) / p.size, rtol=rtol)
    tb = rng.uniform(0, 1, p.shape).astype(dtype)
    loss, grad = ops.bce_with_logits(p, tb)
    want = np.maximum(pd, 0) - pd * tb + np.log1p(np.exp(-np.abs(pd)))
    assert loss == pytest.approx(want.mean(), rel=rtol)
    sigmoid = 0.5 * (1.0 + np.tanh(0.5 * pd))
    np.testing.assert_allclose(grad, (sigmoid - tb) / p.size, rtol=rtol, atol=1e-12)
    with pytest.raises(ValueError, match=r"mse: target has shape \(9, 37\) but pred has shape \(37, 9\)"):
        ops.mse(p, t.T.copy())
    with pytest.raises(TypeError, match="bce_with_logits: target has dtype float64 but logits has dtype float32"):
        ops.bce_with_logits(p.astype(np.float32), p.astype(np.float64))


def test_loss_reductions_do_not_depend_on_threads(rng):
    n = 300_001
    x = rng.standard_normal(n).astype(np.float32)
    t = rng.standard_normal(n).astype(np.float32)
    logits = rng.standard_normal((3001, 40)).astype(np.float32)
    labels = rng.integers(0, 40, 3001)
    results = []
    for threads in (1, 2, 3):
        with fastnet.threads(threads):
            results.append((ops.sum_squares(x), ops.mse(x, t)[0], ops.bce_with_logits(x, t)[0],
                            ops.softmax_cross_entropy(logits, labels, label_smoothing=0.1)[0],
                            ops.softmax_cross_entropy(logits, labels)[1].tobytes(),
                            ops.gelu(x).tobytes()))
    assert results[0] == results[1] == results[2]
    assert results[0][0] == pytest.approx(float((x.astype(np.float64) ** 2).sum()), rel=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_step(cpu_path, dtype, nesterov, rng):
    w0 = rng.standard_normal(1003).astype(dtype)
    g = rng.standard_normal(1003).astype(dtype)
    v0 = rng.standard_normal(1003).astype(dtype)
    w, v = w0.copy(), v0.copy()
    ops.sgd_step(w, g, v, lr=0.1, momentum=0.9, weight_decay=0.01, nesterov=nesterov)
    gg = g + 0.01 * w0.astype(np.float64)
    vv = 0.9 * v0 + gg
    want = w0 - 0.1 * (gg + 0.9 * vv if nesterov else vv)
    rtol = 1e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(v, vv, rtol=rtol, atol=1e-6)
    np.testing.assert_allclose(w, want, rtol=rtol, atol=1e-6)
    w = w0.copy()
    ops.sgd_step(w, g, lr=0.5)
    np.testing.assert_allclose(w, w0 - 0.5 * g.astype(np.float64), rtol=rtol, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("decoupled", [False, True])
def test_adam_step(cpu_path, dtype, decoupled, rng):
    n = 1003
    w0 = rng.standard_normal(n).astype(dtype)
    g = rng.standard_normal(n).astype(dtype)
    m0 = rng.standard_normal(n).astype(dtype) * 0.1
    v0 = rng.uniform(0, 1, n).astype(dtype)
    w, m, v = w0.copy(), m0.copy(), v0.copy()
    lr, b1, b2, eps, wd, t = 0.01, 0.9, 0.999, 1e-8, 0.05, 3
    if decoupled:
        ops.adamw_step(w, g, m, v, step=t, lr=lr, weight_decay=wd)
    else:
        ops.adam_step(w, g, m, v, step=t, lr=lr, weight_decay=wd)
    wd_ = w0.astype(np.float64)
    if decoupled:
        gg = g.astype(np.float64)
        wd_ = wd_ - lr * wd * wd_
    else:
        gg = g + wd * wd_
    mm = b1 * m0 + (1 - b1) * gg
    vv = b2 * v0 + (1 - b2) * gg * gg
    want = wd_ - lr * (mm / (1 - b1**t)) / (np.sqrt(vv / (1 - b2**t)) + eps)
    rtol = 2e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(m, mm, rtol=rtol, atol=1e-7)
    np.testing.assert_allclose(v, vv, rtol=rtol, atol=1e-7)
    np.testing.assert_allclose(w, want, rtol=rtol, atol=1e-6)


def test_sum_squares_and_scale(cpu_path, rng):
    x = rng.standard_normal((41, 7)).astype(np.float32)
    assert ops.sum_squares(x) == pytest.approx(float((x.astype(np.float64) ** 2).sum()), rel=1e-12)
    assert ops.sum_squares(x.T) == ops.sum_squares(np.ascontiguousarray(x.T))
    y = x.copy()
    assert ops.scale_(y, 0.5) is y
    np.testing.assert_array_equal(y, x * np.float32(0.5))


def test_optimizer_errors(rng):
    w = np.zeros(10, np.float32)
    g = np.ones(10, np.float32)
    with pytest.raises(ValueError, match="velocity"):
        ops.sgd_step(w, g, lr=0.1, momentum=0.9)
    with pytest.raises(TypeError, match="float64"):
        ops.sgd_step(w, g.astype(np.float64), lr=0.1)
    with pytest.raises(ValueError, match="9 elements"):
        ops.sgd_step(w, g[:9], lr=0.1)
    with pytest.raises(ValueError, match="contiguous"):
        ops.sgd_step(np.zeros(20, np.float32)[::2], g, lr=0.1)
    with pytest.raises(ValueError, match="1-D"):
        ops.sgd_step(w.reshape(2, 5), g.reshape(2, 5), lr=0.1)
    ro = np.zeros(10, np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        ops.sgd_step(ro, g, lr=0.1)
    m, v = np.zeros(10, np.float32), np.zeros(10, np.float32)
    with pytest.raises(ValueError, match="step must be >= 1"):
        ops.adam_step(w, g, m, v, step=0)
    with pytest.raises(ValueError, match="m and v share memory"):
        ops.adam_step(w, g, m, m, step=1)
    with pytest.raises(ValueError, match="beta1"):
        ops.adam_step(w, g, m, v, step=1, beta1=1.0)
    with pytest.raises(ValueError, match="read-only"):
        ops.scale_(ro, 2.0)


def test_gelu_backward_keeps_precision_where_sigmoid_saturates(cpu_path):
    # 1 - tanh(u)^2 from a float32 tanh(u) near 1 would lose ~16 ulp here
    x = np.linspace(4.0, 6.0, 4001).astype(np.float32)
    exact = ref.activation_derivative("gelu", x=x.astype(np.float64))
    got = ops.activation_backward("gelu", np.ones_like(x), x=x)
    np.testing.assert_allclose(got, exact, rtol=4 * np.finfo(np.float32).eps, atol=0)
