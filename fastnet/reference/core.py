"""Pure-NumPy reference of the core kernels: GEMM, dense, activations,
softmax, losses and optimizer steps, forward and backward.

Every function has the name and signature of its twin in `fastnet.ops`.
The arithmetic is done in float64 and cast back to the input dtype at the
end, so float32 results are the correctly rounded value of the exact
formula (up to float64 rounding) and the compiled kernels can be judged
against them.
"""
import math
from types import SimpleNamespace

import numpy as np

__all__ = [
    "matmul", "matmul_backward", "transpose",
    "dense", "dense_backward",
    "activation", "activation_backward", "activation_derivative",
    "softmax", "softmax_backward", "log_softmax",
    "softmax_cross_entropy", "mse", "bce_with_logits",
    "sgd_step", "adam_step", "adamw_step", "sum_squares", "scale_",
    "to_bf16", "from_bf16", "round_bf16",
    "quantize_rows", "quantize_columns", "pack_int8", "matmul_int8", "dense_int8",
    "pack_weights", "dense_packed",
]

_FLOATS = (np.float32, np.float64)
_GELU_C = math.sqrt(2.0 / math.pi)
_GELU_K = 0.044715


def _float_dtype(*arrays):
    """The common float dtype of the arrays; TypeError on ints or a mix."""
    dtypes = {np.asarray(a).dtype for a in arrays}
    if len(dtypes) != 1:
        names = ", ".join(sorted(str(d) for d in dtypes))
        raise TypeError(f"inputs must share one dtype, got {names}")
    dtype = dtypes.pop()
    if dtype.type not in _FLOATS:
        raise TypeError(f"expected float32 or float64, got {dtype}")
    return dtype


def _f64(x):
    return np.asarray(x, dtype=np.float64)


def _store(result, dtype, out=None):
    """Cast a float64 result to dtype, writing into out when given."""
    if out is None:
        return result.astype(dtype)
    out[...] = result
    return out


# ---- bfloat16 ----------------------------------------------------------------

def to_bf16(x):
    """float32 -> bf16 bit patterns (uint16): round to nearest even, NaN stays
    a quiet NaN, denormals become a zero of the same sign (as VCVTNEPS2BF16)."""
    x = np.asarray(x)
    if x.dtype != np.float32:
        raise TypeError(f"to_bf16: needs a float32 array, got {x.dtype}")
    u = np.ascontiguousarray(x).view(np.uint32).astype(np.uint64)
    rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) & 0xFFFF
    rounded = np.where((u & 0x7FFFFFFF) > 0x7F800000, (u >> 16) | 0x40, rounded)
    rounded = np.where((u & 0x7F800000) == 0, (u >> 16) & 0x8000, rounded)
    return rounded.astype(np.uint16)


def from_bf16(bits):
    """bf16 bit patterns (uint16) -> float32."""
    bits = np.asarray(bits)
    if bits.dtype != np.uint16:
        raise TypeError(f"from_bf16: needs a uint16 array, got {bits.dtype}")
    return (bits.astype(np.uint32) << 16).view(np.float32)


def round_bf16(x):
    """x rounded to the nearest bf16 value, kept as float32."""
    return from_bf16(to_bf16(x))


# ---- int8 ----------------------------------------------------------------------

_S8_NR, _S8_KALIGN = 32, 64


def _quantize_lines(x, axis):
    """Symmetric int8 along `axis`: q = rne(x * (127 / max|x|)), scale = max|x| / 127 (float32 math)."""
    x = np.asarray(x, np.float32)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        amax = np.abs(x).max(axis=axis, keepdims=True, initial=np.float32(0))
        finite = np.isfinite(amax)
        scale = np.where(finite, amax / np.float32(127), np.float32(np.nan)).astype(np.float32)
        inv = np.where(finite & (amax > 0), np.float32(127) / np.where(amax > 0, amax, 1), 0).astype(np.float32)
        q = np.rint(np.where(finite, x, 0) * inv)
    return np.clip(q, -127, 127).astype(np.int8), scale.reshape(-1)


def quantize_rows(x):
    """(q, scale) with x[i] ~ q[i] * scale[i]; a non-finite row gets scale NaN."""
    return _quantize_lines(x, axis=1)


def quantize_columns(w):
    """(q, scale) with w[:, j] ~ q[:, j] * scale[j]; the weights must be finite."""
    if not np.isfinite(np.asarray(w)).all():
        raise ValueError("quantize_columns: the weights hold NaN or infinity")
    return _quantize_lines(w, axis=0)


def pack_int8(q):
    """Panels of 32 columns; per 4 rows of k, 32 columns x 4 bytes; k padded to 64."""
    q = np.asarray(q, np.int8)
    k, n = q.shape
    kpad = -(-max(k, 1) // _S8_KALIGN) * _S8_KALIGN
    npad = -(-n // _S8_NR) * _S8_NR
    full = np.zeros((kpad, npad), np.int8)
    full[:k, :n] = q
    packed = full.reshape(kpad // 4, 4, npad // _S8_NR, _S8_NR).transpose(2, 0, 3, 1).reshape(-1)
    data = packed if packed.size else np.zeros(1, np.int8)
    return SimpleNamespace(data=data, colsum=q.astype(np.int64).sum(axis=0).astype(np.int32), k=k, n=n)


def _unpack_int8(w):
    kpad = -(-max(w.k, 1) // _S8_KALIGN) * _S8_KALIGN
    npad = -(-w.n // _S8_NR) * _S8_NR
    full = np.asarray(w.data)[: kpad * npad].reshape(npad // _S8_NR, kpad // 4, _S8_NR, 4)
    return full.transpose(1, 3, 0, 2).reshape(kpad, npad)[:w.k, :w.n]


def matmul_int8(a, w):
    """Exact int32 product of int8 a and the packed int8 weights w."""
    a = np.asarray(a, np.int8)
    if a.shape[1] != w.k:
        raise ValueError(f"matmul_int8: the input has {a.shape[1]} columns but the packed weights have k={w.k}")
    return (a.astype(np.int64) @ _unpack_int8(w).astype(np.int64)).astype(np.int32)


def dense_int8(x, w, w_scale, b=None, activation="identity", alpha=0.01, out=None):
    """act((float32)acc * (x_scale * w_scale) + b) with x quantised per row."""
    act = activation
    q, x_scale = quantize_rows(x)
    acc = matmul_int8(q, w).astype(np.float32)
    y = acc * (x_scale[:, None] * np.asarray(w_scale, np.float32)[None, :])
    if b is not None:
        y = y + np.asarray(b, np.float32)
    return _store(_ACTIVATIONS[_canonical(act)][0](_f64(y.astype(np.float32)), alpha), np.float32, out)


def _operand(x, precision):
    """x in float64, first rounded to bf16 for precision='bf16'."""
    if precision in (None, "float32"):
        return _f64(x)
    if precision != "bf16":
        raise ValueError(f"unknown precision {precision!r}; choose from 'float32', 'bf16'")
    if np.asarray(x).dtype != np.float32:
        raise TypeError(f"precision='bf16' needs float32 arrays, got {np.asarray(x).dtype}")
    return _f64(round_bf16(x))


# ---- GEMM ------------------------------------------------------------------

def transpose(x):
    """x.T as a new C-contiguous array of x's dtype."""
    x = np.asarray(x)
    if x.dtype not in _FLOATS:
        raise TypeError(f"transpose: x must be float32 or float64, got dtype {x.dtype}")
    if x.ndim != 2:
        raise ValueError(f"transpose: x must be 2-D, got shape {x.shape}")
    return np.ascontiguousarray(x.T)


def matmul(a, b, trans_a=False, trans_b=False, out=None, alpha=1.0, beta=0.0, precision="float32"):
    """C = alpha * op(A) @ op(B) + beta * C, computed in float64 (on the
    bf16-rounded operands for precision='bf16')."""
    dtype = _float_dtype(a, b)
    if np.ndim(a) != 2 or np.ndim(b) != 2:
        raise ValueError(f"matmul needs 2-D arrays, got shapes {np.shape(a)} and {np.shape(b)}")
    opa = _operand(a, precision).T if trans_a else _operand(a, precision)
    opb = _operand(b, precision).T if trans_b else _operand(b, precision)
    if opa.shape[1] != opb.shape[0]:
        raise ValueError(f"matmul: op(a) is {opa.shape}, op(b) is {opb.shape}; inner sizes differ")
    result = alpha * (opa @ opb)
    if beta != 0.0:
        if out is None:
            raise ValueError("matmul: beta != 0 needs out=")
        result = result + beta * _f64(out)
    if out is not None and out.shape != result.shape:
        raise ValueError(f"matmul: out has shape {out.shape}, expected {result.shape}")
    return _store(result, dtype, out)


def matmul_backward(a, b, dc, trans_a=False, trans_b=False, alpha=1.0):
    """Gradients (da, db) of sum(dc * (alpha * op(a) @ op(b))) w.r.t. a and b."""
    dtype = _float_dtype(a, b, dc)
    opa = _f64(a).T if trans_a else _f64(a)
    opb = _f64(b).T if trans_b else _f64(b)
    dc = alpha * _f64(dc)
    d_opa = dc @ opb.T
    d_opb = opa.T @ dc
    da = d_opa.T if trans_a else d_opa
    db = d_opb.T if trans_b else d_opb
    return da.astype(dtype), db.astype(dtype)


# ---- activations ---------------------------------------------------------

def _sigmoid64(x):
    # exp of a non-positive number only, so no overflow for large |x|.
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _gelu_u(x):
    return _GELU_C * (x + _GELU_K * x ** 3)


def _gelu64(x):
    # 0.5 x (1 + tanh(u)) == x * sigmoid(2u); the sigmoid form keeps its
    # relative accuracy for very negative x, where 1 + tanh(u) cancels to 0.
    return x * _sigmoid64(2.0 * _gelu_u(x))


def _gelu_derivative64(x):
    # d/dx [0.5 x (1 + tanh u)] = 0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) u',
    # with 0.5 (1 + tanh u) = s and 1 - tanh^2 u = 4 s (1 - s), s = sigmoid(2u).
    u = _gelu_u(x)
    s, one_minus_s = _sigmoid64(2.0 * u), _sigmoid64(-2.0 * u)
    du = _GELU_C * (1.0 + 3.0 * _GELU_K * x * x)
    return s + 2.0 * x * s * one_minus_s * du


# name: (forward(x, alpha), derivative from x (x, alpha), derivative from the
# output y (y, alpha) or None when y does not determine it). The derivative is
# None for an activation without a gradient. One row per activation of
# fastnet.ops.ACTIVATIONS; the per-name functions below are made from it.
def _sigmoid_slope(y):
    return y * (1.0 - y)


def _tanh_slope(y):
    return 1.0 - y * y


def _leaky_relu_derivative_from_y(y, alpha):
    if alpha < 0:
        raise ValueError("leaky_relu backward with alpha < 0 needs x: the sign of y no longer tells the side")
    return np.where(y > 0, 1.0, alpha)


_ACTIVATIONS = {
    "identity": (lambda x, alpha: x, lambda x, alpha: np.ones_like(x), lambda y, alpha: np.ones_like(y)),
    "step": (lambda x, alpha: (x > 0).astype(np.float64), None, None),
    "sigmoid": (lambda x, alpha: _sigmoid64(x), lambda x, alpha: _sigmoid_slope(_sigmoid64(x)),
                lambda y, alpha: _sigmoid_slope(y)),
    "tanh": (lambda x, alpha: np.tanh(x), lambda x, alpha: _tanh_slope(np.tanh(x)), lambda y, alpha: _tanh_slope(y)),
    "relu": (lambda x, alpha: np.maximum(x, 0.0), lambda x, alpha: (x > 0).astype(np.float64),
             lambda y, alpha: (y > 0).astype(np.float64)),
    "leaky_relu": (lambda x, alpha: np.where(x > 0, x, alpha * x), lambda x, alpha: np.where(x > 0, 1.0, alpha),
                   _leaky_relu_derivative_from_y),
    "gelu": (lambda x, alpha: _gelu64(x), lambda x, alpha: _gelu_derivative64(x), None),
    # silu' = s + x s (1 - s), s = sigmoid(x), with 1 - s = sigmoid(-x)
    "silu": (lambda x, alpha: x * _sigmoid64(x), lambda x, alpha: _sigmoid64(x) * (1.0 + x * _sigmoid64(-x)), None),
}
_WITH_ALPHA = {"leaky_relu"}  # the activations whose alpha means something
_ALIASES = {"linear": "identity", None: "identity"}


def _canonical(name):
    name = _ALIASES.get(name, name)
    if name not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose from {', '.join(_ACTIVATIONS)}")
    return name


def activation(x, name, alpha=0.01, out=None):
    """y = act(x) elementwise."""
    dtype = _float_dtype(x)
    return _store(_ACTIVATIONS[_canonical(name)][0](_f64(x), alpha), dtype, out)


def activation_derivative(name, x=None, y=None, alpha=0.01):
    """act'(x) in float64, from the forward output y when given and it
    determines the derivative, else from x.

    At x == 0, relu' = 0 and leaky_relu' = alpha (the x > 0 branch is strict).
    """
    name = _canonical(name)
    _, from_x, from_y = _ACTIVATIONS[name]
    if from_x is None:
        raise ValueError(f"the {name} activation has no backward (its derivative is 0 almost everywhere)")
    if y is not None and from_y is not None:
        return from_y(_f64(y), alpha)
    if x is None:
        raise ValueError(f"{name} backward needs x" + (" or y" if from_y is not None else " (the pre-activation)"))
    return from_x(_f64(x), alpha)


def activation_backward(name, dy, x=None, y=None, alpha=0.01):
    """dx = dy * act'(x)."""
    dtype = _float_dtype(dy)
    return (_f64(dy) * activation_derivative(name, x, y, alpha)).astype(dtype)


def _activation_function(name):
    if name in _WITH_ALPHA:
        def function(x, alpha=0.01):
            return activation(x, name, alpha=alpha)
    else:
        def function(x):
            return activation(x, name)
    function.__name__ = function.__qualname__ = name
    return function


for _name in _ACTIVATIONS:  # identity, step, sigmoid, ...
    globals()[_name] = _activation_function(_name)
__all__ += list(_ACTIVATIONS)


# ---- dense layer ---------------------------------------------------------

def dense(x, w, b=None, activation="identity", alpha=0.01, out=None, return_preactivation=False,
          precision="float32"):
    """y = act(x @ w + b); with return_preactivation also pre = x @ w + b."""
    dtype = _float_dtype(*([x, w] if b is None else [x, w, b]))
    if np.ndim(x) != 2 or np.ndim(w) != 2 or np.shape(x)[1] != np.shape(w)[0]:
        raise ValueError(f"dense: x {np.shape(x)} @ w {np.shape(w)} does not fit")
    if b is not None and np.shape(b) != (np.shape(w)[1],):
        raise ValueError(f"dense: bias has shape {np.shape(b)}, expected ({np.shape(w)[1]},)")
    pre = _operand(x, precision) @ _operand(w, precision)
    if b is not None:
        pre = pre + _f64(b)
    y = _store(_ACTIVATIONS[_canonical(activation)][0](pre, alpha), dtype, out)
    if return_preactivation:
        return y, pre.astype(dtype)
    return y


def pack_weights(w, trans=False):
    """The weights (k, n) to multiply by (w.T when trans); the compiled op's panel layout is the
    GEMM's business, so this twin keeps them as a plain float32 matrix."""
    w = np.asarray(w)
    if w.dtype != np.float32:
        raise TypeError(f"pack_weights: w must be float32, got dtype {w.dtype}")
    if w.ndim != 2:
        raise ValueError(f"pack_weights: w must be 2-D, got shape {w.shape}")
    w = np.ascontiguousarray(w.T if trans else w)
    return SimpleNamespace(data=w, k=w.shape[0], n=w.shape[1], nr=None)


def dense_packed(x, packed, b=None, activation="identity", alpha=0.01, out=None):
    """dense(x, w, b, activation, alpha) with w from pack_weights."""
    return dense(x, packed.data, b, activation, alpha, out=out)


def dense_backward(x, w, y, dy, activation="identity", alpha=0.01, pre=None, need_dx=True,
                   dw=None, db=None, accumulate=False, with_bias=True, precision="float32"):
    """(dx or None, dw, db or None) of the dense layer, given dy = dL/dy.

    dz = dy * act'; dw = x^T dz; db = column sums of dz; dx = dz w^T.
    dw/db given: results are written into them (added when accumulate).
    """
    dtype = _float_dtype(x, w, dy)
    dz = _f64(dy) * activation_derivative(activation, x=pre, y=y, alpha=alpha)
    dz_op = dz if precision in (None, "float32") else _operand(dz.astype(dtype), precision)
    dw_new = _operand(x, precision).T @ dz_op
    db_new = dz.sum(axis=0) if with_bias else None
    dx = (dz_op @ _operand(w, precision).T).astype(dtype) if need_dx else None
    return dx, _accumulate(dw_new, dw, accumulate, dtype), (
        _accumulate(db_new, db, accumulate, dtype) if with_bias else None)


def _accumulate(new, target, accumulate, dtype):
    if target is None:
        return new.astype(dtype)
    target[...] = (_f64(target) + new) if accumulate else new
    return target


# ---- softmax ---------------------------------------------------------------

def log_softmax(x):
    """log(softmax(x)) along the last axis, in the input dtype."""
    dtype = _float_dtype(x)
    return _log_softmax64(_f64(x)).astype(dtype)


def _log_softmax64(x):
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def softmax(x):
    """Softmax along the last axis, the row max subtracted first."""
    dtype = _float_dtype(x)
    x = _f64(x)
    if x.shape[-1] == 0:
        return x.astype(dtype)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(dtype)


def softmax_backward(y, dy):
    """dx = y * (dy - sum(dy * y)) along the last axis."""
    dtype = _float_dtype(y, dy)
    y, dy = _f64(y), _f64(dy)
    return (y * (dy - (dy * y).sum(axis=-1, keepdims=True))).astype(dtype)


# ---- losses ----------------------------------------------------------------

def softmax_cross_entropy(logits, labels, ignore_index=-100, label_smoothing=0.0, return_grad=True):
    """(mean loss over rows whose label is not ignore_index, dlogits or None).

    target = (1 - s) * onehot(label) + s / C. With no counted row the loss
    is 0.0 and the gradient is zero.
    """
    dtype = _float_dtype(logits)
    z = _f64(logits)
    if z.ndim != 2:
        raise ValueError(f"softmax_cross_entropy: logits must be 2-D (rows, classes), got shape {z.shape}")
    labels = np.asarray(labels)
    rows, classes = z.shape
    if labels.shape != (rows,):
        raise ValueError(f"softmax_cross_entropy: labels have shape {labels.shape}, expected ({rows},)")
    counted = labels != ignore_index
    bad = counted & ((labels < 0) | (labels >= classes))
    if bad.any():
        raise ValueError(f"softmax_cross_entropy: label {labels[bad][0]} is outside [0, {classes})")
    n_counted = int(counted.sum())
    target = np.zeros_like(z)
    target[np.flatnonzero(counted), labels[counted].astype(np.int64)] = 1.0 - label_smoothing
    target[counted] += label_smoothing / classes
    logp = _log_softmax64(z) if classes else z
    row_loss = -(target * logp).sum(axis=1)
    loss = float(row_loss[counted].sum() / n_counted) if n_counted else 0.0
    if not return_grad:
        return loss, None
    grad = np.zeros_like(z)
    if n_counted:
        grad[counted] = (np.exp(logp[counted]) - target[counted]) / n_counted
    return loss, grad.astype(dtype)


def mse(pred, target, return_grad=True):
    """(mean((pred - target)^2), 2 (pred - target) / n or None)."""
    dtype = _float_dtype(pred, target)
    _same_shape("mse", pred, target)
    diff = _f64(pred) - _f64(target)
    n = diff.size
    loss = float((diff * diff).sum() / n) if n else 0.0
    grad = (2.0 * diff / max(n, 1)).astype(dtype) if return_grad else None
    return loss, grad


def bce_with_logits(logits, target, return_grad=True):
    """(mean binary cross-entropy of sigmoid(logits) vs target, gradient or None)."""
    dtype = _float_dtype(logits, target)
    _same_shape("bce_with_logits", logits, target)
    z, t = _f64(logits), _f64(target)
    n = z.size
    per_element = np.maximum(z, 0.0) - z * t + np.log1p(np.exp(-np.abs(z)))
    loss = float(per_element.sum() / n) if n else 0.0
    grad = ((_sigmoid64(z) - t) / max(n, 1)).astype(dtype) if return_grad else None
    return loss, grad


def _same_shape(what, a, b):
    if np.shape(a) != np.shape(b):
        raise ValueError(f"{what}: shapes {np.shape(a)} and {np.shape(b)} differ")


# ---- optimizer steps (in place) ---------------------------------------------

def sgd_step(w, g, velocity=None, *, lr, momentum=0.0, weight_decay=0.0, nesterov=False):
    """One SGD step in place on w (and velocity when momentum != 0)."""
    g2 = _f64(g) + weight_decay * _f64(w)
    if momentum == 0.0:
        update = g2
    else:
        if velocity is None:
            raise ValueError("sgd_step: momentum != 0 needs a velocity buffer")
        v = momentum * _f64(velocity) + g2
        velocity[...] = v
        update = g2 + momentum * v if nesterov else v
    w[...] = _f64(w) - lr * update
    return w


def adam_step(w, g, m, v, *, step, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
              weight_decay=0.0, decoupled=False):
    """One Adam step in place on w, m, v (AdamW when decoupled)."""
    if step < 1:
        raise ValueError(f"adam_step: step must be >= 1, got {step}")
    w64 = _f64(w)
    if decoupled:
        w64 = w64 - lr * weight_decay * w64
        g2 = _f64(g)
    else:
        g2 = _f64(g) + weight_decay * w64
    m64 = beta1 * _f64(m) + (1.0 - beta1) * g2
    v64 = beta2 * _f64(v) + (1.0 - beta2) * g2 * g2
    m_hat = m64 / (1.0 - beta1 ** step)
    v_hat = v64 / (1.0 - beta2 ** step)
    m[...] = m64
    v[...] = v64
    w[...] = w64 - lr * m_hat / (np.sqrt(v_hat) + eps)
    return w


def adamw_step(w, g, m, v, *, step, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01):
    """Adam with decoupled weight decay (Loshchilov & Hutter)."""
    return adam_step(w, g, m, v, step=step, lr=lr, beta1=beta1, beta2=beta2, eps=eps,
                     weight_decay=weight_decay, decoupled=True)


def sum_squares(x):
    """sum(x^2) as a Python float, accumulated in float64."""
    x = _f64(x)
    return float((x * x).sum())


def scale_(x, s):
    """x *= s in place."""
    x[...] = _f64(x) * s
    return x
