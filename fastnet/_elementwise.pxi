# Activations, softmax, losses and optimizer steps (csrc/activations.c,
# losses.c, optim.c). Inputs are checked (with the helpers of _common.pxi) and
# made contiguous here; outputs are fresh C-contiguous arrays unless the
# function updates in place. Each C call is written once for float32 and
# float64 in a fused `_<op>_impl` (see _common.pxi).
from libc.stdint cimport int64_t, uintptr_t

# ---- activations -------------------------------------------------------------

def activation(x, name, alpha=0.01, out=None):
    """Apply an activation elementwise; any shape, float32 or float64.

    name: one of fastnet.ops.ACTIVATIONS ('linear' and None are the
    identity); alpha is leaky_relu's slope for x < 0.
    out (optional) receives the result; it may be x itself.
    """
    cdef fn_activation code = <fn_activation>activation_code(name)
    cdef double param = _finite(alpha, "alpha")
    x = float_c_array(x, "activation", "x")
    if out is None:
        out = np.empty(x.shape, dtype=x.dtype)
    else:
        check_out_like(out, x, "activation", "x", "out")
    cdef int64_t n = x.size
    cdef const float[::1] xf
    cdef const double[::1] xd
    cdef float[::1] yf
    cdef double[::1] yd
    cdef fn_status st = FN_OK
    if n == 0:
        return out
    if x.dtype.char == "f":
        xf = flat(x)
        yf = flat(out)
        no_partial_overlap(&xf[0], &yf[0], n * 4, "activation")
        with nogil:
            st = fn_activation_forward_f32(code, <float>param, &xf[0], &yf[0], n, _n_threads)
    else:
        xd = flat(x)
        yd = flat(out)
        no_partial_overlap(&xd[0], &yd[0], n * 8, "activation")
        with nogil:
            st = fn_activation_forward_f64(code, param, &xd[0], &yd[0], n, _n_threads)
    if st != FN_OK:
        check_status(st, f"activation {name!r}")
    return out


def activation_backward(name, dy, x=None, y=None, alpha=0.01):
    """dx = dy * act'(x): the gradient through an activation.

    Pass x (the forward input) and/or y (the forward output); what each
    activation reads is in its table row (fastnet.ops.activation_info):
    sigmoid and tanh use y (or x), relu either, leaky_relu x (or y when
    alpha >= 0), gelu needs x; identity needs neither. 'step' has no gradient.
    """
    cdef fn_activation code = <fn_activation>activation_code(name)
    cdef double param = _finite(alpha, "alpha")
    missing = backward_missing(code, param, x is not None, y is not None)
    if missing:
        if not fn_activation_backward_reads(code, param, True, True):  # no gradient at all
            raise ValueError(f"activation_backward: {missing}")
        raise ValueError(f"activation_backward({name!r}) needs {missing}")
    dy = float_c_array(dy, "activation_backward", "dy")
    if x is not None:
        x = float_c_array(x, "activation_backward", "x")
        same_kind(dy, x, "activation_backward", "dy", "x")
    if y is not None:
        y = float_c_array(y, "activation_backward", "y")
        same_kind(dy, y, "activation_backward", "dy", "y")
    dx = np.empty(dy.shape, dtype=dy.dtype)
    cdef int64_t n = dy.size
    cdef const float[::1] xf, yf, dyf
    cdef const double[::1] xd, yd, dyd
    cdef float[::1] dxf
    cdef double[::1] dxd
    cdef const float *xp32 = NULL
    cdef const float *yp32 = NULL
    cdef const double *xp64 = NULL
    cdef const double *yp64 = NULL
    cdef fn_status st = FN_OK
    if n == 0:
        return dx
    if dy.dtype.char == "f":
        dyf = flat(dy)
        dxf = flat(dx)
        if x is not None:
            xf = flat(x)
            xp32 = &xf[0]
        if y is not None:
            yf = flat(y)
            yp32 = &yf[0]
        with nogil:
            st = fn_activation_backward_f32(code, <float>param, xp32, yp32, &dyf[0], &dxf[0], n, _n_threads)
    else:
        dyd = flat(dy)
        dxd = flat(dx)
        if x is not None:
            xd = flat(x)
            xp64 = &xd[0]
        if y is not None:
            yd = flat(y)
            yp64 = &yd[0]
        with nogil:
            st = fn_activation_backward_f64(code, param, xp64, yp64, &dyd[0], &dxd[0], n, _n_threads)
    if st != FN_OK:
        check_status(st, f"activation_backward {name!r}")
    return dx


# ---- softmax -----------------------------------------------------------------

cdef tuple _rows_cols(object arr, str what, str name):
    if arr.ndim < 1:
        raise ValueError(f"{what}: {name} needs at least one axis, got a 0-d array")
    cdef int64_t cols = arr.shape[arr.ndim - 1]
    cdef int64_t rows = arr.size // cols if cols else 0
    return rows, cols


cdef fn_status _softmax_impl(const real[::1] x, real[::1] y, int64_t rows, int64_t cols) noexcept:
    with nogil:
        if real is float:
            return fn_softmax_forward_f32(&x[0], &y[0], rows, cols, _n_threads)
        else:
            return fn_softmax_forward_f64(&x[0], &y[0], rows, cols, _n_threads)


cdef fn_status _softmax_backward_impl(const real[::1] y, const real[::1] dy, real[::1] dx,
                                      int64_t rows, int64_t cols) noexcept:
    with nogil:
        if real is float:
            return fn_softmax_backward_f32(&y[0], &dy[0], &dx[0], rows, cols, _n_threads)
        else:
            return fn_softmax_backward_f64(&y[0], &dy[0], &dx[0], rows, cols, _n_threads)


def softmax(x):
    """Softmax over the last axis (any ndim >= 1), the row max subtracted."""
    what = "softmax"
    cdef fn_status st
    x = float_c_array(x, what, "x")
    cdef int64_t rows, cols
    rows, cols = _rows_cols(x, what, "x")
    y = np.empty(x.shape, dtype=x.dtype)
    if rows * cols == 0:
        return y
    if is_f32(x):
        st = _softmax_impl[float](flat(x), flat(y), rows, cols)
    else:
        st = _softmax_impl[double](flat(x), flat(y), rows, cols)
    if st != FN_OK:
        check_status(st, f"{what} of shape {x.shape}")
    return y


def softmax_backward(y, dy):
    """dx = y * (dy - sum(dy * y, last axis)), y the softmax output."""
    what = "softmax_backward"
    cdef fn_status st
    y = float_c_array(y, what, "y")
    dy = float_c_array(dy, what, "dy")
    same_kind(y, dy, what, "y", "dy")
    cdef int64_t rows, cols
    rows, cols = _rows_cols(y, what, "y")
    dx = np.empty(y.shape, dtype=y.dtype)
    if rows * cols == 0:
        return dx
    if is_f32(y):
        st = _softmax_backward_impl[float](flat(y), flat(dy), flat(dx), rows, cols)
    else:
        st = _softmax_backward_impl[double](flat(y), flat(dy), flat(dx), rows, cols)
    if st != FN_OK:
        check_status(st, f"{what} of shape {y.shape}")
    return dx


# ---- losses ------------------------------------------------------------------

cdef object _labels_input(object labels, int64_t rows, object logits_shape, str what):
    cdef object lab = labels if type(labels) is np.ndarray else np.asarray(labels)
    cdef str kind = lab.dtype.kind
    if kind != "i" and kind != "u":
        raise TypeError(f"{what}: labels must be an integer array, got dtype {lab.dtype}")
    if lab.ndim != 1 or lab.shape[0] != rows:
        raise ValueError(f"{what}: labels of shape {lab.shape} do not match logits of shape {logits_shape}: "
                         f"need one label per row, shape ({rows},)")
    if kind == "u" and lab.dtype.itemsize == 8 and lab.size and lab.max() > np.iinfo(np.int64).max:
        raise ValueError(f"{what}: label {lab.max()} does not fit in int64")
    return c_array(lab, np.int64)


cdef int _raise_bad_label(object lab, int64_t cols, int64_t ignore_index, str what) except -1:
    bad = np.flatnonzero((lab != ignore_index) & ((lab < 0) | (lab >= cols)))
    row = int(bad[0]) if bad.size else -1
    value = int(lab[row]) if bad.size else None
    raise ValueError(f"{what}: label {value} in row {row} is outside [0, {cols}) "
                     f"for {cols} classes (ignore_index={ignore_index})")


# Row losses of up to this many rows go to a stack buffer (no allocation per
# call, private to the call so concurrent Python threads are safe).
DEF _XENT_STACK_ROWS = 128


cdef fn_status _xent_impl(const real[:, ::1] logits, const int64_t[::1] labels, int64_t ignore,
                          double smoothing, real[::1] row_loss, real[:, ::1] dlogits,
                          double *loss, int64_t *counted) noexcept:
    cdef double stack_rows[_XENT_STACK_ROWS]
    cdef real *rows_out = <real *>stack_rows if row_loss is None else &row_loss[0]
    cdef real *grad = NULL if dlogits is None else &dlogits[0, 0]
    with nogil:
        if real is float:
            return fn_softmax_xent_f32(&logits[0, 0], &labels[0], logits.shape[0], logits.shape[1], ignore,
                                       <float>smoothing, rows_out, loss, grad, counted, _n_threads)
        else:
            return fn_softmax_xent_f64(&logits[0, 0], &labels[0], logits.shape[0], logits.shape[1], ignore,
                                       smoothing, rows_out, loss, grad, counted, _n_threads)


def softmax_cross_entropy(logits, labels, ignore_index=-100, label_smoothing=0.0, return_grad=True):
    """Mean softmax cross-entropy of logits (N, C) against integer labels (N,).

    Rows labelled ignore_index count for nothing; label_smoothing in [0, 1)
    mixes the one-hot target with the uniform one. Returns (loss as a Python
    float, dlogits or None). A batch with no counted rows has loss 0.0 and a
    zero gradient.
    """
    what = "softmax_cross_entropy"
    cdef fn_status st
    logits = float_c_array(logits, what, "logits")
    if logits.ndim != 2:
        raise ValueError(f"{what}: logits must be 2-D (N, C), got shape {logits.shape}")
    cdef int64_t rows = logits.shape[0], cols = logits.shape[1]
    lab = _labels_input(labels, rows, logits.shape, what)
    cdef double eps = label_smoothing
    if not (0.0 <= eps < 1.0):
        raise ValueError(f"{what}: label_smoothing must be in [0, 1), got {label_smoothing}")
    if rows > 0 and cols == 0:
        raise ValueError(f"{what}: logits of shape {logits.shape} have no classes")
    cdef int64_t ignore = ignore_index
    dlogits = np.empty(logits.shape, dtype=logits.dtype) if return_grad else None
    row_loss = np.empty(rows, dtype=logits.dtype) if rows > _XENT_STACK_ROWS else None
    cdef double loss = 0.0
    cdef int64_t counted = 0
    if rows == 0:
        return 0.0, dlogits
    if is_f32(logits):
        st = _xent_impl[float](logits, lab, ignore, eps, row_loss, dlogits, &loss, &counted)
    else:
        st = _xent_impl[double](logits, lab, ignore, eps, row_loss, dlogits, &loss, &counted)
    if st == FN_ERR_LABEL:
        _raise_bad_label(lab, cols, ignore, what)
    if st != FN_OK:
        check_status(st, f"{what} of logits {logits.shape}")
    return loss, dlogits


cdef tuple _pair_inputs(object a, object b, str what, str name_a, str name_b):
    a = float_c_array(a, what, name_a)
    b = float_c_array(b, what, name_b)
    same_kind(a, b, what, name_a, name_b)
    return a, b


cdef fn_status _mse_impl(const real[::1] pred, const real[::1] target, real[::1] grad,
                         double *loss) noexcept:
    cdef real *g = NULL if grad is None else &grad[0]
    with nogil:
        if real is float:
            return fn_mse_f32(&pred[0], &target[0], pred.shape[0], loss, g, _n_threads)
        else:
            return fn_mse_f64(&pred[0], &target[0], pred.shape[0], loss, g, _n_threads)


cdef fn_status _bce_impl(const real[::1] logits, const real[::1] target, real[::1] grad,
                         double *loss) noexcept:
    cdef real *g = NULL if grad is None else &grad[0]
    with nogil:
        if real is float:
            return fn_bce_logits_f32(&logits[0], &target[0], logits.shape[0], loss, g, _n_threads)
        else:
            return fn_bce_logits_f64(&logits[0], &target[0], logits.shape[0], loss, g, _n_threads)


def mse(pred, target, return_grad=True):
    """Mean squared error; returns (loss, dpred = 2 (pred - target) / n or None)."""
    what = "mse"
    cdef fn_status st
    pred, target = _pair_inputs(pred, target, what, "pred", "target")
    grad = np.empty(pred.shape, dtype=pred.dtype) if return_grad else None
    cdef double loss = 0.0
    if pred.size == 0:
        return 0.0, grad
    g = None if grad is None else flat(grad)
    if is_f32(pred):
        st = _mse_impl[float](flat(pred), flat(target), g, &loss)
    else:
        st = _mse_impl[double](flat(pred), flat(target), g, &loss)
    if st != FN_OK:
        check_status(st, f"{what} of shape {pred.shape}")
    return loss, grad


def bce_with_logits(logits, target, return_grad=True):
    """Mean binary cross-entropy on logits (stable form); returns (loss,
    dlogits = (sigmoid(logits) - target) / n or None)."""
    what = "bce_with_logits"
    cdef fn_status st
    logits, target = _pair_inputs(logits, target, what, "logits", "target")
    grad = np.empty(logits.shape, dtype=logits.dtype) if return_grad else None
    cdef double loss = 0.0
    if logits.size == 0:
        return 0.0, grad
    g = None if grad is None else flat(grad)
    if is_f32(logits):
        st = _bce_impl[float](flat(logits), flat(target), g, &loss)
    else:
        st = _bce_impl[double](flat(logits), flat(target), g, &loss)
    if st != FN_OK:
        check_status(st, f"{what} of shape {logits.shape}")
    return loss, grad


# ---- optimizer steps -----------------------------------------------------------

cdef int _check_state(object w, object state, str what, str name, bint writeable) except -1:
    """An optimizer buffer beside w: flat, contiguous, w's dtype and length."""
    check_flat_buffer(state, what, name, writeable)
    if state.dtype.char != w.dtype.char:  # a read-only input may be in the other byte order: copied later
        same_dtype(w, state, what, "w", name)
    if state.shape[0] != w.shape[0]:
        raise ValueError(f"{what}: {name} has {state.shape[0]} elements but w has {w.shape[0]}")
    return 0


cdef fn_status _sgd_impl(real[::1] w, const real[::1] g, real[::1] velocity, double lr, double momentum,
                         double weight_decay, bint nesterov) noexcept:
    cdef real *v = NULL if velocity is None else &velocity[0]
    with nogil:
        if real is float:
            return fn_sgd_step_f32(&w[0], &g[0], v, w.shape[0], <float>lr, <float>momentum,
                                   <float>weight_decay, nesterov, _n_threads)
        else:
            return fn_sgd_step_f64(&w[0], &g[0], v, w.shape[0], lr, momentum, weight_decay, nesterov,
                                   _n_threads)


cdef fn_status _adam_impl(real[::1] w, const real[::1] g, real[::1] m, real[::1] v, double lr, double beta1,
                          double beta2, double eps, double weight_decay, bint decoupled, int64_t step) noexcept:
    with nogil:
        if real is float:
            return fn_adam_step_f32(&w[0], &g[0], &m[0], &v[0], w.shape[0], <float>lr, <float>beta1,
                                    <float>beta2, <float>eps, <float>weight_decay, decoupled, step, _n_threads)
        else:
            return fn_adam_step_f64(&w[0], &g[0], &m[0], &v[0], w.shape[0], lr, beta1, beta2, eps,
                                    weight_decay, decoupled, step, _n_threads)


cdef int _buffers_disjoint(object buffers, str what) except -1:
    """The (name, flat buffer or None) pairs of one step share no memory."""
    cdef const void *ptrs[4]
    cdef int count = len(buffers)
    for i in range(count):
        arr = buffers[i][1]
        if arr is None:
            ptrs[i] = NULL
        else:
            ptrs[i] = data_pointer(arr)
    return check_disjoint_flat(ptrs, tuple(name for name, _ in buffers), count,
                               buffers[0][1].shape[0] * buffers[0][1].itemsize, what)


def sgd_step(w, g, velocity=None, *, lr, momentum=0.0, weight_decay=0.0, nesterov=False):
    """One in-place SGD step on flat buffers:
    g' = g + weight_decay w; v = momentum v + g'; w -= lr (nesterov ? g' + momentum v : v).
    velocity is required when momentum > 0 and left alone when momentum == 0.
    Returns w."""
    what = "sgd_step"
    cdef fn_status st
    check_flat_buffer(w, what, "w", True)
    _check_state(w, g, what, "g", False)
    g = c_array(g)
    cdef double c_lr = _finite(lr, "lr")
    cdef double c_mom = _finite(momentum, "momentum")
    cdef double c_wd = _finite(weight_decay, "weight_decay")
    if c_mom < 0:
        raise ValueError(f"{what}: momentum must be >= 0, got {momentum}")
    if velocity is None:
        if c_mom > 0:
            raise ValueError(f"{what} with momentum={momentum} needs a velocity buffer like w")
    else:
        _check_state(w, velocity, what, "velocity", True)
    if w.shape[0] == 0:
        return w
    _buffers_disjoint((("w", w), ("g", g), ("velocity", velocity)), what)
    used_velocity = velocity if c_mom != 0 else None
    if is_f32(w):
        st = _sgd_impl[float](w, g, used_velocity, c_lr, c_mom, c_wd, bool(nesterov))
    else:
        st = _sgd_impl[double](w, g, used_velocity, c_lr, c_mom, c_wd, bool(nesterov))
    if st != FN_OK:
        check_status(st, what)
    return w


def adam_step(w, g, m, v, *, step, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
              decoupled=False):
    """One in-place Adam step (AdamW when decoupled) on flat buffers; step >= 1
    counts steps taken including this one (for the bias corrections). Returns w."""
    what = "adam_step"
    cdef fn_status st
    check_flat_buffer(w, what, "w", True)
    _check_state(w, g, what, "g", False)
    _check_state(w, m, what, "m", True)
    _check_state(w, v, what, "v", True)
    g = c_array(g)
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)):
        raise TypeError(f"{what}: step must be an int, got {type(step).__name__}")
    if step < 1:
        raise ValueError(f"{what}: step must be >= 1 (the first step is 1), got {step}")
    cdef double c_lr = _finite(lr, "lr")
    cdef double b1 = _finite(beta1, "beta1")
    cdef double b2 = _finite(beta2, "beta2")
    cdef double c_eps = _finite(eps, "eps")
    cdef double c_wd = _finite(weight_decay, "weight_decay")
    if not (0.0 <= b1 < 1.0) or not (0.0 <= b2 < 1.0):
        raise ValueError(f"{what}: beta1 and beta2 must be in [0, 1), got {beta1} and {beta2}")
    if c_eps < 0:
        raise ValueError(f"{what}: eps must be >= 0, got {eps}")
    if w.shape[0] == 0:
        return w
    _buffers_disjoint((("w", w), ("g", g), ("m", m), ("v", v)), what)
    if is_f32(w):
        st = _adam_impl[float](w, g, m, v, c_lr, b1, b2, c_eps, c_wd, bool(decoupled), step)
    else:
        st = _adam_impl[double](w, g, m, v, c_lr, b1, b2, c_eps, c_wd, bool(decoupled), step)
    if st != FN_OK:
        check_status(st, what)
    return w


def adamw_step(w, g, m, v, *, step, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01):
    """One in-place AdamW step: w -= lr weight_decay w, then Adam on g."""
    return adam_step(w, g, m, v, step=step, lr=lr, beta1=beta1, beta2=beta2, eps=eps,
                     weight_decay=weight_decay, decoupled=True)


cdef fn_status _sum_squares_impl(const real[::1] x, double *out) noexcept:
    with nogil:
        if real is float:
            return fn_sum_squares_f32(&x[0], x.shape[0], out, _n_threads)
        else:
            return fn_sum_squares_f64(&x[0], x.shape[0], out, _n_threads)


cdef fn_status _scale_impl(real[::1] x, double s) noexcept:
    with nogil:
        if real is float:
            return fn_scale_f32(&x[0], x.shape[0], <float>s, _n_threads)
        else:
            return fn_scale_f64(&x[0], x.shape[0], s, _n_threads)


def sum_squares(x):
    """Sum of x**2 as a Python float, in a fixed order (same for any thread count)."""
    what = "sum_squares"
    cdef fn_status st
    x = float_c_array(x, what, "x")
    cdef double out = 0.0
    if x.size == 0:
        return 0.0
    if is_f32(x):
        st = _sum_squares_impl[float](flat(x), &out)
    else:
        st = _sum_squares_impl[double](flat(x), &out)
    if st != FN_OK:
        check_status(st, what)
    return out


def scale_(x, s):
    """x *= s in place (x: a writeable C-contiguous float array); returns x."""
    what = "scale_"
    cdef fn_status st
    if type(x) is not np.ndarray:
        raise TypeError(f"{what}: x must be a numpy.ndarray, got {type(x).__name__}")
    if x.dtype.char not in "fd":
        raise TypeError(f"{what}: x must be float32 or float64, got dtype {x.dtype}")
    check_writable_out(x, f"{what}: x (scaled in place)")
    cdef double c_s = s
    if x.size == 0:
        return x
    if is_f32(x):
        st = _scale_impl[float](flat(x), c_s)
    else:
        st = _scale_impl[double](flat(x), c_s)
    if st != FN_OK:
        check_status(st, what)
    return x
