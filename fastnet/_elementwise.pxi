# Activations, softmax, losses and optimizer steps (csrc/activations.c,
# losses.c, optim.c). Inputs are checked and made contiguous here; outputs are
# fresh C-contiguous arrays unless the function updates in place.
from libc.stdint cimport int64_t, uintptr_t

# ---- input checks ------------------------------------------------------------

cdef object _float_input(object x, str what):
    """x as a C-contiguous, aligned, native-order float32/float64 ndarray
    (copied only when needed; read-only arrays are read in place)."""
    cdef object arr = x if type(x) is np.ndarray else np.asarray(x)
    cdef str ch = arr.dtype.char
    if ch != "f" and ch != "d":
        raise TypeError(f"{what} must be float32 or float64, got dtype {arr.dtype}")
    return c_array(arr)


cdef int _same_kind(object a, object b, str what_a, str what_b) except -1:
    """Same dtype and shape, or a TypeError / ValueError naming both."""
    if a.dtype.char != b.dtype.char:
        raise TypeError(f"{what_a} and {what_b} must have the same dtype, got {a.dtype} and {b.dtype}")
    if a.shape != b.shape:
        raise ValueError(f"{what_a} and {what_b} must have the same shape, got {a.shape} and {b.shape}")
    return 0


cdef inline object _flat(object arr):
    """A 1-D view of a C-contiguous array (no new object when already flat)."""
    return arr if arr.ndim == 1 else arr.reshape(-1)


cdef inline bint _overlap(const void *a, const void *b, int64_t nbytes):
    """Two buffers of nbytes each share memory."""
    cdef uintptr_t pa = <uintptr_t>a, pb = <uintptr_t>b
    return pa < pb + <uintptr_t>nbytes and pb < pa + <uintptr_t>nbytes


cdef int _check_out(object out, object like, str what) except -1:
    """out must be a writeable C-contiguous array shaped like `like`; it may be
    `like` itself (in place) but not overlap it partially (checked by the
    caller on the raw pointers)."""
    if type(out) is not np.ndarray:
        raise TypeError(f"{what} must be a numpy.ndarray, got {type(out).__name__}")
    _same_kind(like, out, "x", what)
    return check_writable_out(out, what)


cdef int _partial_overlap(const void *x, const void *out, int64_t nbytes) except -1:
    if x != out and _overlap(x, out, nbytes):
        raise ValueError("out partially overlaps the input; pass the input itself for in-place or a separate array")
    return 0


cdef int _check_buffer(object arr, str what, bint writeable) except -1:
    """Optimizer buffers: flat, contiguous float arrays updated in place."""
    if type(arr) is not np.ndarray:
        raise TypeError(f"{what} must be a numpy.ndarray, got {type(arr).__name__}")
    cdef str ch = arr.dtype.char
    if ch != "f" and ch != "d":
        raise TypeError(f"{what} must be float32 or float64, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"{what} must be a flat 1-D buffer, got shape {arr.shape}")
    if not arr.flags.c_contiguous:
        raise ValueError(f"{what} must be contiguous (got a strided view)")
    if writeable and not arr.flags.writeable:
        raise ValueError(f"{what} is read-only but is updated in place")
    if writeable and not (arr.flags.aligned and arr.dtype.isnative):
        raise ValueError(f"{what} is updated in place, so it must be aligned and in native byte order")
    return 0


cdef int _check_disjoint(const void **ptrs, tuple names, int count, int64_t nbytes) except -1:
    """No two of these equally long contiguous buffers may share memory."""
    cdef int i, j
    for i in range(count):
        for j in range(i + 1, count):
            if ptrs[i] != NULL and ptrs[j] != NULL and _overlap(ptrs[i], ptrs[j], nbytes):
                raise ValueError(f"{names[i]} and {names[j]} share memory; they must be separate buffers")
    return 0


# ---- activations -------------------------------------------------------------

def activation(x, name, alpha=0.01, out=None):
    """Apply an activation elementwise; any shape, float32 or float64.

    name: one of fastnet.ops.ACTIVATIONS ('linear' and None are the
    identity); alpha is leaky_relu's slope for x < 0.
    out (optional) receives the result; it may be x itself.
    """
    cdef fn_activation code = <fn_activation>activation_code(name)
    cdef double param = _finite(alpha, "alpha")
    x = _float_input(x, "x")
    if out is None:
        out = np.empty(x.shape, dtype=x.dtype)
    else:
        _check_out(out, x, "out")
    cdef int64_t n = x.size
    cdef const float[::1] xf
    cdef const double[::1] xd
    cdef float[::1] yf
    cdef double[::1] yd
    cdef fn_status st = FN_OK
    if n == 0:
        return out
    if x.dtype.char == "f":
        xf = _flat(x)
        yf = _flat(out)
        _partial_overlap(&xf[0], &yf[0], n * 4)
        with nogil:
            st = fn_activation_forward_f32(code, <float>param, &xf[0], &yf[0], n, _n_threads)
    else:
        xd = _flat(x)
        yd = _flat(out)
        _partial_overlap(&xd[0], &yd[0], n * 8)
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
    dy = _float_input(dy, "dy")
    if x is not None:
        x = _float_input(x, "x")
        _same_kind(dy, x, "dy", "x")
    if y is not None:
        y = _float_input(y, "y")
        _same_kind(dy, y, "dy", "y")
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
        dyf = _flat(dy)
        dxf = _flat(dx)
        if x is not None:
            xf = _flat(x)
            xp32 = &xf[0]
        if y is not None:
            yf = _flat(y)
            yp32 = &yf[0]
        with nogil:
            st = fn_activation_backward_f32(code, <float>param, xp32, yp32, &dyf[0], &dxf[0], n, _n_threads)
    else:
        dyd = _flat(dy)
        dxd = _flat(dx)
        if x is not None:
            xd = _flat(x)
            xp64 = &xd[0]
        if y is not None:
            yd = _flat(y)
            yp64 = &yd[0]
        with nogil:
            st = fn_activation_backward_f64(code, param, xp64, yp64, &dyd[0], &dxd[0], n, _n_threads)
    if st != FN_OK:
        check_status(st, f"activation_backward {name!r}")
    return dx


# ---- softmax -----------------------------------------------------------------

cdef tuple _rows_cols(object arr, str what):
    if arr.ndim < 1:
        raise ValueError(f"{what} needs at least one axis, got a 0-d array")
    cdef int64_t cols = arr.shape[arr.ndim - 1]
    cdef int64_t rows = arr.size // cols if cols else 0
    return rows, cols


def softmax(x):
    """Softmax over the last axis (any ndim >= 1), the row max subtracted."""
    x = _float_input(x, "x")
    rows, cols = _rows_cols(x, "softmax input")
    y = np.empty(x.shape, dtype=x.dtype)
    cdef int64_t r = rows, c = cols
    cdef const float[::1] xf
    cdef const double[::1] xd
    cdef float[::1] yf
    cdef double[::1] yd
    cdef fn_status st = FN_OK
    if r * c == 0:
        return y
    if x.dtype.char == "f":
        xf = _flat(x)
        yf = _flat(y)
        with nogil:
            st = fn_softmax_forward_f32(&xf[0], &yf[0], r, c, _n_threads)
    else:
        xd = _flat(x)
        yd = _flat(y)
        with nogil:
            st = fn_softmax_forward_f64(&xd[0], &yd[0], r, c, _n_threads)
    if st != FN_OK:
        check_status(st, f"softmax of shape {x.shape}")
    return y


def softmax_backward(y, dy):
    """dx = y * (dy - sum(dy * y, last axis)), y the softmax output."""
    y = _float_input(y, "y")
    dy = _float_input(dy, "dy")
    _same_kind(y, dy, "y", "dy")
    rows, cols = _rows_cols(y, "softmax output")
    dx = np.empty(y.shape, dtype=y.dtype)
    cdef int64_t r = rows, c = cols
    cdef const float[::1] yf, dyf
    cdef const double[::1] yd, dyd
    cdef float[::1] dxf
    cdef double[::1] dxd
    cdef fn_status st = FN_OK
    if r * c == 0:
        return dx
    if y.dtype.char == "f":
        yf = _flat(y)
        dyf = _flat(dy)
        dxf = _flat(dx)
        with nogil:
            st = fn_softmax_backward_f32(&yf[0], &dyf[0], &dxf[0], r, c, _n_threads)
    else:
        yd = _flat(y)
        dyd = _flat(dy)
        dxd = _flat(dx)
        with nogil:
            st = fn_softmax_backward_f64(&yd[0], &dyd[0], &dxd[0], r, c, _n_threads)
    if st != FN_OK:
        check_status(st, f"softmax_backward of shape {y.shape}")
    return dx


# ---- losses ------------------------------------------------------------------

cdef object _labels_input(object labels, int64_t rows, object logits_shape):
    cdef object lab = labels if type(labels) is np.ndarray else np.asarray(labels)
    cdef str kind = lab.dtype.kind
    if kind != "i" and kind != "u":
        raise TypeError(f"labels must be an integer array, got dtype {lab.dtype}")
    if lab.ndim != 1 or lab.shape[0] != rows:
        raise ValueError(f"labels of shape {lab.shape} do not match logits of shape {logits_shape}: "
                         f"need one label per row, shape ({rows},)")
    if kind == "u" and lab.dtype.itemsize == 8 and lab.size and lab.max() > np.iinfo(np.int64).max:
        raise ValueError(f"label {lab.max()} does not fit in int64")
    return c_array(lab, np.int64)


cdef int _raise_bad_label(object lab, int64_t cols, int64_t ignore_index) except -1:
    bad = np.flatnonzero((lab != ignore_index) & ((lab < 0) | (lab >= cols)))
    row = int(bad[0]) if bad.size else -1
    value = int(lab[row]) if bad.size else None
    raise ValueError(f"softmax_cross_entropy: label {value} in row {row} is outside [0, {cols}) "
                     f"for {cols} classes (ignore_index={ignore_index})")


def softmax_cross_entropy(logits, labels, ignore_index=-100, label_smoothing=0.0, return_grad=True):
    """Mean softmax cross-entropy of logits (N, C) against integer labels (N,).

    Rows labelled ignore_index count for nothing; label_smoothing in [0, 1)
    mixes the one-hot target with the uniform one. Returns (loss as a Python
    float, dlogits or None). A batch with no counted rows has loss 0.0 and a
    zero gradient.
    """
    logits = _float_input(logits, "logits")
    if logits.ndim != 2:
        raise ValueError(f"logits must be 2-D (N, C), got shape {logits.shape}")
    cdef int64_t rows = logits.shape[0], cols = logits.shape[1]
    lab = _labels_input(labels, rows, logits.shape)
    cdef double eps = label_smoothing
    if not (0.0 <= eps < 1.0):
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    if rows > 0 and cols == 0:
        raise ValueError(f"logits of shape {logits.shape} have no classes")
    cdef int64_t ignore = ignore_index
    dlogits = np.empty(logits.shape, dtype=logits.dtype) if return_grad else None
    # Row losses go to a stack buffer for small batches (no allocation per
    # call, private to this call so concurrent Python threads are safe).
    cdef double small_scratch[256]
    row_loss = np.empty(rows, dtype=logits.dtype) if rows > 128 else None
    cdef double loss = 0.0
    cdef int64_t counted = 0
    cdef fn_status st = FN_OK
    cdef const int64_t[::1] labv
    cdef const float[::1] xf
    cdef const double[::1] xd
    cdef float[::1] rf, df
    cdef double[::1] rd, dd
    cdef float *dp32 = NULL
    cdef double *dp64 = NULL
    cdef float *rp32 = NULL
    cdef double *rp64 = NULL
    if rows == 0:
        return 0.0, dlogits
    labv = lab
    if logits.dtype.char == "f":
        xf = _flat(logits)
        if row_loss is None:
            rp32 = <float *>small_scratch
        else:
            rf = row_loss
            rp32 = &rf[0]
        if dlogits is not None:
            df = _flat(dlogits)
            dp32 = &df[0]
        with nogil:
            st = fn_softmax_xent_f32(&xf[0], &labv[0], rows, cols, ignore, <float>eps, rp32, &loss, dp32,
                                     &counted, _n_threads)
    else:
        xd = _flat(logits)
        if row_loss is None:
            rp64 = small_scratch
        else:
            rd = row_loss
            rp64 = &rd[0]
        if dlogits is not None:
            dd = _flat(dlogits)
            dp64 = &dd[0]
        with nogil:
            st = fn_softmax_xent_f64(&xd[0], &labv[0], rows, cols, ignore, eps, rp64, &loss, dp64,
                                     &counted, _n_threads)
    if st == FN_ERR_LABEL:
        _raise_bad_label(lab, cols, ignore)
    if st != FN_OK:
        check_status(st, f"softmax_cross_entropy of logits {logits.shape}")
    return loss, dlogits


cdef tuple _pair_inputs(object a, object b, str what_a, str what_b):
    a = _float_input(a, what_a)
    b = _float_input(b, what_b)
    _same_kind(a, b, what_a, what_b)
    return a, b


def mse(pred, target, return_grad=True):
    """Mean squared error; returns (loss, dpred = 2 (pred - target) / n or None)."""
    pred, target = _pair_inputs(pred, target, "pred", "target")
    grad = np.empty(pred.shape, dtype=pred.dtype) if return_grad else None
    cdef int64_t n = pred.size
    cdef double loss = 0.0
    cdef fn_status st = FN_OK
    cdef const float[::1] pf, tf
    cdef const double[::1] pd, td
    cdef float[::1] gf
    cdef double[::1] gd
    cdef float *gp32 = NULL
    cdef double *gp64 = NULL
    if n == 0:
        return 0.0, grad
    if pred.dtype.char == "f":
        pf = _flat(pred)
        tf = _flat(target)
        if grad is not None:
            gf = _flat(grad)
            gp32 = &gf[0]
        with nogil:
            st = fn_mse_f32(&pf[0], &tf[0], n, &loss, gp32, _n_threads)
    else:
        pd = _flat(pred)
        td = _flat(target)
        if grad is not None:
            gd = _flat(grad)
            gp64 = &gd[0]
        with nogil:
            st = fn_mse_f64(&pd[0], &td[0], n, &loss, gp64, _n_threads)
    if st != FN_OK:
        check_status(st, f"mse of shape {pred.shape}")
    return loss, grad


def bce_with_logits(logits, target, return_grad=True):
    """Mean binary cross-entropy on logits (stable form); returns (loss,
    dlogits = (sigmoid(logits) - target) / n or None)."""
    logits, target = _pair_inputs(logits, target, "logits", "target")
    grad = np.empty(logits.shape, dtype=logits.dtype) if return_grad else None
    cdef int64_t n = logits.size
    cdef double loss = 0.0
    cdef fn_status st = FN_OK
    cdef const float[::1] zf, tf
    cdef const double[::1] zd, td
    cdef float[::1] gf
    cdef double[::1] gd
    cdef float *gp32 = NULL
    cdef double *gp64 = NULL
    if n == 0:
        return 0.0, grad
    if logits.dtype.char == "f":
        zf = _flat(logits)
        tf = _flat(target)
        if grad is not None:
            gf = _flat(grad)
            gp32 = &gf[0]
        with nogil:
            st = fn_bce_logits_f32(&zf[0], &tf[0], n, &loss, gp32, _n_threads)
    else:
        zd = _flat(logits)
        td = _flat(target)
        if grad is not None:
            gd = _flat(grad)
            gp64 = &gd[0]
        with nogil:
            st = fn_bce_logits_f64(&zd[0], &td[0], n, &loss, gp64, _n_threads)
    if st != FN_OK:
        check_status(st, f"bce_with_logits of shape {logits.shape}")
    return loss, grad


# ---- optimizer steps -----------------------------------------------------------

cdef int _check_same_buffer(object ref, object other, str what_ref, str what) except -1:
    if other.dtype.char != ref.dtype.char:
        raise TypeError(f"{what} must have the dtype of {what_ref}, got {other.dtype} and {ref.dtype}")
    if other.shape[0] != ref.shape[0]:
        raise ValueError(f"{what} has {other.shape[0]} elements but {what_ref} has {ref.shape[0]}")
    return 0


def sgd_step(w, g, velocity=None, *, lr, momentum=0.0, weight_decay=0.0, nesterov=False):
    """One in-place SGD step on flat buffers:
    g' = g + weight_decay w; v = momentum v + g'; w -= lr (nesterov ? g' + momentum v : v).
    velocity is required when momentum > 0 and left alone when momentum == 0.
    Returns w."""
    _check_buffer(w, "w", True)
    _check_buffer(g, "g", False)
    _check_same_buffer(w, g, "w", "g")
    g = c_array(g)
    cdef double c_lr = _finite(lr, "lr")
    cdef double c_mom = _finite(momentum, "momentum")
    cdef double c_wd = _finite(weight_decay, "weight_decay")
    cdef int c_nesterov = 1 if nesterov else 0
    if c_mom < 0:
        raise ValueError(f"momentum must be >= 0, got {momentum}")
    if velocity is None:
        if c_mom > 0:
            raise ValueError(f"sgd_step with momentum={momentum} needs a velocity buffer like w")
    else:
        _check_buffer(velocity, "velocity", True)
        _check_same_buffer(w, velocity, "w", "velocity")
    cdef bint use_velocity = velocity is not None and c_mom != 0
    cdef int64_t n = w.shape[0]
    cdef float[::1] wf, vf
    cdef double[::1] wd, vd
    cdef const float[::1] gf
    cdef const double[::1] gd
    cdef float *vp32 = NULL
    cdef double *vp64 = NULL
    cdef const void *ptrs[3]
    cdef fn_status st = FN_OK
    if n == 0:
        return w
    ptrs[2] = NULL
    if w.dtype.char == "f":
        wf = w
        gf = g
        ptrs[0] = &wf[0]
        ptrs[1] = &gf[0]
        if velocity is not None:
            vf = velocity
            ptrs[2] = &vf[0]
            if use_velocity:
                vp32 = &vf[0]
        _check_disjoint(ptrs, ("w", "g", "velocity"), 3, n * 4)
        with nogil:
            st = fn_sgd_step_f32(&wf[0], &gf[0], vp32, n, <float>c_lr, <float>c_mom,
                                 <float>c_wd, c_nesterov, _n_threads)
    else:
        wd = w
        gd = g
        ptrs[0] = &wd[0]
        ptrs[1] = &gd[0]
        if velocity is not None:
            vd = velocity
            ptrs[2] = &vd[0]
            if use_velocity:
                vp64 = &vd[0]
        _check_disjoint(ptrs, ("w", "g", "velocity"), 3, n * 8)
        with nogil:
            st = fn_sgd_step_f64(&wd[0], &gd[0], vp64, n, c_lr, c_mom, c_wd,
                                 c_nesterov, _n_threads)
    if st != FN_OK:
        check_status(st, "sgd_step")
    return w


def adam_step(w, g, m, v, *, step, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
              decoupled=False):
    """One in-place Adam step (AdamW when decoupled) on flat buffers; step >= 1
    counts steps taken including this one (for the bias corrections). Returns w."""
    _check_buffer(w, "w", True)
    _check_buffer(g, "g", False)
    _check_buffer(m, "m", True)
    _check_buffer(v, "v", True)
    _check_same_buffer(w, g, "w", "g")
    _check_same_buffer(w, m, "w", "m")
    _check_same_buffer(w, v, "w", "v")
    g = c_array(g)
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)):
        raise TypeError(f"step must be an int, got {type(step).__name__}")
    if step < 1:
        raise ValueError(f"step must be >= 1 (the first step is 1), got {step}")
    cdef int64_t c_step = step
    cdef double c_lr = _finite(lr, "lr")
    cdef double b1 = _finite(beta1, "beta1")
    cdef double b2 = _finite(beta2, "beta2")
    cdef double c_eps = _finite(eps, "eps")
    cdef double c_wd = _finite(weight_decay, "weight_decay")
    cdef int c_decoupled = 1 if decoupled else 0
    if not (0.0 <= b1 < 1.0) or not (0.0 <= b2 < 1.0):
        raise ValueError(f"beta1 and beta2 must be in [0, 1), got {beta1} and {beta2}")
    if c_eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    cdef int64_t n = w.shape[0]
    cdef float[::1] wf, mf, vf
    cdef double[::1] wd, md, vd
    cdef const float[::1] gf
    cdef const double[::1] gd
    cdef const void *ptrs[4]
    cdef fn_status st = FN_OK
    if n == 0:
        return w
    if w.dtype.char == "f":
        wf = w
        gf = g
        mf = m
        vf = v
        ptrs[0] = &wf[0]
        ptrs[1] = &gf[0]
        ptrs[2] = &mf[0]
        ptrs[3] = &vf[0]
        _check_disjoint(ptrs, ("w", "g", "m", "v"), 4, n * 4)
        with nogil:
            st = fn_adam_step_f32(&wf[0], &gf[0], &mf[0], &vf[0], n, <float>c_lr, <float>b1, <float>b2,
                                  <float>c_eps, <float>c_wd, c_decoupled, c_step, _n_threads)
    else:
        wd = w
        gd = g
        md = m
        vd = v
        ptrs[0] = &wd[0]
        ptrs[1] = &gd[0]
        ptrs[2] = &md[0]
        ptrs[3] = &vd[0]
        _check_disjoint(ptrs, ("w", "g", "m", "v"), 4, n * 8)
        with nogil:
            st = fn_adam_step_f64(&wd[0], &gd[0], &md[0], &vd[0], n, c_lr, b1, b2, c_eps, c_wd, c_decoupled,
                                  c_step, _n_threads)
    if st != FN_OK:
        check_status(st, "adam_step")
    return w


def adamw_step(w, g, m, v, *, step, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01):
    """One in-place AdamW step: w -= lr weight_decay w, then Adam on g."""
    return adam_step(w, g, m, v, step=step, lr=lr, beta1=beta1, beta2=beta2, eps=eps,
                     weight_decay=weight_decay, decoupled=True)


def sum_squares(x):
    """Sum of x**2 as a Python float, in a fixed order (same for any thread count)."""
    x = _float_input(x, "x")
    cdef int64_t n = x.size
    cdef double out = 0.0
    cdef const float[::1] xf
    cdef const double[::1] xd
    cdef fn_status st = FN_OK
    if n == 0:
        return 0.0
    if x.dtype.char == "f":
        xf = _flat(x)
        with nogil:
            st = fn_sum_squares_f32(&xf[0], n, &out, _n_threads)
    else:
        xd = _flat(x)
        with nogil:
            st = fn_sum_squares_f64(&xd[0], n, &out, _n_threads)
    if st != FN_OK:
        check_status(st, "sum_squares")
    return out


def scale_(x, s):
    """x *= s in place (x: a writeable C-contiguous float array); returns x."""
    if type(x) is not np.ndarray:
        raise TypeError(f"x must be a numpy.ndarray, got {type(x).__name__}")
    cdef str ch = x.dtype.char
    if ch != "f" and ch != "d":
        raise TypeError(f"x must be float32 or float64, got dtype {x.dtype}")
    check_writable_out(x, "x (scaled in place)")
    cdef double c_s = s
    cdef int64_t n = x.size
    cdef float[::1] xf
    cdef double[::1] xd
    cdef fn_status st = FN_OK
    if n == 0:
        return x
    if ch == "f":
        xf = _flat(x)
        with nogil:
            st = fn_scale_f32(&xf[0], n, <float>c_s, _n_threads)
    else:
        xd = _flat(x)
        with nogil:
            st = fn_scale_f64(&xd[0], n, c_s, _n_threads)
    if st != FN_OK:
        check_status(st, "scale_")
    return x
