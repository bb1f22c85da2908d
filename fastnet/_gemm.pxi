# Dense algebra: matmul and the fused dense layer (csrc/gemm*.c, csrc/dense.c).
#
# Arrays reach C through the buffer protocol (one PyObject_GetBuffer per
# operand): cheaper than a typed memoryview, which matters for tiny matmuls
# where the call overhead is the whole cost. A matrix whose rows are
# contiguous (any row stride) is passed as is; one whose columns are
# contiguous (e.g. Fortran order) is passed as the transpose of a row-major
# matrix; anything else is copied first.
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_STRIDES, PyBUF_WRITABLE
from libc.stdint cimport intptr_t

cdef object _ndarray = np.ndarray


cdef struct _Matrix:
    char *data
    int64_t rows, cols   # of the matrix as the C call sees it (row-major)
    int64_t ld           # leading dimension in elements
    bint transposed      # the array given is the transpose of that matrix
    char *lo             # first and one-past-last byte the array may touch
    char *hi


cdef object _float_dtype(object a, object b, str what, str name_a, str name_b):
    """The common float dtype of a and b; TypeError otherwise (no silent casts)."""
    dt = a.dtype
    if (dt is _F32 or dt is _F64) and b.dtype is dt:
        return dt
    native = dt.newbyteorder("=")  # another byte order is the same type, converted later
    if native != b.dtype.newbyteorder("="):
        raise TypeError(f"{what}: {name_b} has dtype {b.dtype} but {name_a} has dtype {a.dtype}; they must match")
    if native == _F32 or native == _F64:
        return _F32 if native == _F32 else _F64
    raise TypeError(f"{what}: {name_a} must be float32 or float64, got dtype {a.dtype}")


cdef inline object _as_array(object x, object dtype, str what, str name):
    """x as an aligned ndarray of exactly `dtype` (native byte order); other kinds are refused."""
    if type(x) is not _ndarray:
        x = np.asarray(x)
    if x.dtype is not dtype:
        if x.dtype.newbyteorder("=") != dtype:
            raise TypeError(f"{what}: {name} must be {dtype}, got dtype {x.dtype}")
        x = x.astype(dtype)  # same type, other byte order
    if not x.flags.aligned:  # the kernels load whole elements
        x = c_array(x)
    return x


cdef int _extent(Py_buffer *view, _Matrix *mat) except -1:
    """Record the byte range the array spans (for aliasing checks)."""
    cdef Py_ssize_t i, lo = 0, hi = 0
    cdef bint empty = False
    for i in range(view.ndim):
        if view.shape[i] == 0:
            empty = True
        elif view.strides[i] > 0:
            hi += (view.shape[i] - 1) * view.strides[i]
        else:
            lo += (view.shape[i] - 1) * view.strides[i]
    if empty:  # touches no memory at all
        mat.lo = mat.hi = <char *>view.buf
        return 0
    mat.lo = <char *>view.buf + lo
    mat.hi = <char *>view.buf + hi + view.itemsize
    return 0


cdef bint _overlaps(_Matrix *x, _Matrix *y):
    return x.lo < y.hi and y.lo < x.hi and x.lo < x.hi and y.lo < y.hi


cdef bint _layout(Py_buffer *view, _Matrix *mat):
    """Fill mat for a 2-D buffer passed without copying; False if it must be copied."""
    cdef Py_ssize_t isz = view.itemsize
    cdef int64_t rows = view.shape[0], cols = view.shape[1]
    cdef Py_ssize_t s0 = view.strides[0], s1 = view.strides[1]
    mat.data = <char *>view.buf
    _extent(view, mat)
    if rows == 0 or cols == 0:  # nothing is read; strides may be anything
        mat.rows, mat.cols, mat.transposed, mat.ld = rows, cols, False, max(cols, 1)
        return True
    if (cols <= 1 or s1 == isz) and (rows <= 1 or (s0 > 0 and s0 % isz == 0 and s0 >= cols * isz)):
        mat.rows, mat.cols, mat.transposed = rows, cols, False
        mat.ld = s0 // isz if rows > 1 else max(cols, 1)
        return True
    if (rows <= 1 or s0 == isz) and (cols <= 1 or (s1 > 0 and s1 % isz == 0 and s1 >= rows * isz)):
        mat.rows, mat.cols, mat.transposed = cols, rows, True
        mat.ld = s1 // isz if cols > 1 else max(rows, 1)
        return True
    return False


cdef object _matrix(object arr, Py_buffer *view, _Matrix *mat, bint allow_transposed, str what, str name):
    """Acquire arr's buffer (the caller releases it) and describe it in mat.
    Returns the array actually used: arr itself or a C-contiguous copy."""
    if arr.ndim != 2:
        raise ValueError(f"{what}: {name} must be 2-D, got shape {arr.shape}")
    PyObject_GetBuffer(arr, view, PyBUF_STRIDES)
    if _layout(view, mat) and (allow_transposed or not mat.transposed):
        return arr
    PyBuffer_Release(view)
    arr = np.ascontiguousarray(arr)
    PyObject_GetBuffer(arr, view, PyBUF_STRIDES)
    _layout(view, mat)
    return arr


cdef object _vector(object arr, Py_buffer *view, _Matrix *mat, int64_t length, str what, str name):
    """A contiguous 1-D array of `length` elements (copied if strided)."""
    if arr.ndim != 1 or arr.shape[0] != length:
        raise ValueError(f"{what}: {name} must have shape ({length},), got {arr.shape}")
    PyObject_GetBuffer(arr, view, PyBUF_STRIDES)
    if length > 1 and view.strides[0] != view.itemsize:
        PyBuffer_Release(view)
        arr = np.ascontiguousarray(arr)
        PyObject_GetBuffer(arr, view, PyBUF_STRIDES)
    mat.data = <char *>view.buf
    mat.rows, mat.cols, mat.ld, mat.transposed = 1, length, max(length, 1), False
    _extent(view, mat)
    return arr


cdef object _output(object out, object dtype, tuple shape, Py_buffer *view, _Matrix *mat,
                    str what, str name):
    """A writable C-contiguous array of `shape` and `dtype`: `out`, checked, or a new one (the
    callers check overlap with their inputs on the buffers' extents: _overlaps)."""
    out = given_output(out, dtype, shape, what, (), name)
    PyObject_GetBuffer(out, view, PyBUF_STRIDES | PyBUF_WRITABLE)
    mat.data = <char *>view.buf
    mat.rows = shape[0]
    mat.cols = shape[1] if len(shape) > 1 else 1
    mat.ld = max(mat.cols, 1)
    mat.transposed = False
    _extent(view, mat)
    return out


PRECISIONS = ("float32", "bf16")


cdef bint _use_bf16(object precision, object dtype, str what) except -1:
    """True for precision='bf16' (float32 arrays only); checks the name."""
    if precision is None or precision == "float32":
        return False
    if precision != "bf16":
        raise ValueError(f"{what}: unknown precision {precision!r}; choose from 'float32', 'bf16'")
    if dtype is not _F32:
        raise TypeError(f"{what}: precision='bf16' needs float32 arrays, got {dtype}")
    return True


# ---- the C calls, each written once for float32 (and bf16) and float64 --------
# Operands arrive as _Matrix descriptors (the buffer protocol's pointers and
# leading dimensions); `real` picks the C function and the pointer type.

cdef fn_status _gemm_impl(bint bf16, bint ta, bint tb, int64_t m, int64_t n, int64_t k, real alpha,
                          const _Matrix *a, const _Matrix *b, real beta, const _Matrix *c) noexcept nogil:
    if real is float:
        if bf16:
            return fn_gemm_bf16(ta, tb, m, n, k, alpha, <const real *>a.data, a.ld, <const real *>b.data, b.ld,
                                beta, <real *>c.data, c.ld, _n_threads)
        return fn_gemm_f32(ta, tb, m, n, k, alpha, <const real *>a.data, a.ld, <const real *>b.data, b.ld,
                           beta, <real *>c.data, c.ld, _n_threads)
    else:
        return fn_gemm_f64(ta, tb, m, n, k, alpha, <const real *>a.data, a.ld, <const real *>b.data, b.ld,
                           beta, <real *>c.data, c.ld, _n_threads)


cdef fn_status _dense_forward_impl(bint bf16, int64_t m, int64_t n, int64_t k, const _Matrix *x,
                                   const _Matrix *w, const _Matrix *b, int act, real slope,
                                   const _Matrix *y, const _Matrix *pre) noexcept nogil:
    if real is float:
        if bf16:
            return fn_dense_forward_bf16(m, n, k, <const real *>x.data, x.ld, <const real *>w.data, w.ld,
                                         <const real *>b.data, <fn_activation>act, slope,
                                         <real *>y.data, y.ld, <real *>pre.data, _n_threads)
        return fn_dense_forward_f32(m, n, k, <const real *>x.data, x.ld, <const real *>w.data, w.ld,
                                    <const real *>b.data, <fn_activation>act, slope,
                                    <real *>y.data, y.ld, <real *>pre.data, _n_threads)
    else:
        return fn_dense_forward_f64(m, n, k, <const real *>x.data, x.ld, <const real *>w.data, w.ld,
                                    <const real *>b.data, <fn_activation>act, slope,
                                    <real *>y.data, y.ld, <real *>pre.data, _n_threads)


cdef fn_status _dense_backward_impl(bint bf16, int64_t m, int64_t n, int64_t k, const _Matrix *x,
                                    const _Matrix *w, const _Matrix *y, const _Matrix *pre,
                                    const _Matrix *dy, int act, real slope, const _Matrix *dz,
                                    const _Matrix *dx, const _Matrix *dw, const _Matrix *db,
                                    bint accumulate) noexcept nogil:
    if real is float:
        if bf16:
            return fn_dense_backward_bf16(m, n, k, <const real *>x.data, <const real *>w.data,
                                          <const real *>y.data, <const real *>pre.data, <const real *>dy.data,
                                          <fn_activation>act, slope, <real *>dz.data, <real *>dx.data,
                                          <real *>dw.data, <real *>db.data, accumulate, _n_threads)
        return fn_dense_backward_f32(m, n, k, <const real *>x.data, <const real *>w.data,
                                     <const real *>y.data, <const real *>pre.data, <const real *>dy.data,
                                     <fn_activation>act, slope, <real *>dz.data, <real *>dx.data,
                                     <real *>dw.data, <real *>db.data, accumulate, _n_threads)
    else:
        return fn_dense_backward_f64(m, n, k, <const real *>x.data, <const real *>w.data,
                                     <const real *>y.data, <const real *>pre.data, <const real *>dy.data,
                                     <fn_activation>act, slope, <real *>dz.data, <real *>dx.data,
                                     <real *>dw.data, <real *>db.data, accumulate, _n_threads)


def transpose(x):
    """x.T as a new C-contiguous array. float32 goes through the GEMM's transposing copy (16 x 16
    blocks in registers on AVX-512: about 10x numpy's strided copy of a 4000 x 128 table);
    float64 is numpy's copy."""
    x = float_c_array(x, "transpose", "x")
    if x.ndim != 2:
        raise ValueError(f"transpose: x must be 2-D, got shape {x.shape}")
    if not is_f32(x):
        return np.ascontiguousarray(x.T)
    cdef int64_t rows = x.shape[0], cols = x.shape[1]
    out = np.empty((cols, rows), _F32)
    if rows == 0 or cols == 0:
        return out
    cdef const float[:, ::1] xv = x
    cdef float[:, ::1] ov = out
    cdef fn_status st
    cdef int nth = _n_threads
    with nogil:
        st = fn_transpose_f32(rows, cols, &xv[0, 0], cols, &ov[0, 0], rows, nth)
    check_status(st, "transpose")
    return out


class PackedWeights:
    """float32 weights w (k, n) packed once for the current CPU path's GEMM (pack_weights)."""
    __slots__ = ("data", "k", "n", "nr")

    def __init__(self, data, k, n, nr):
        self.data, self.k, self.n, self.nr = data, int(k), int(n), int(nr)

    def __repr__(self):
        return f"PackedWeights(k={self.k}, n={self.n}, nr={self.nr})"


def pack_weights(w, trans=False):
    """float32 weights w (k, n) - or, with trans=True, given as their transpose (n, k), as a tied
    embedding table is - laid out as the current CPU path's GEMM reads them: panels of nr columns,
    each k rows deep. dense_packed multiplies by them without packing them again, for a decoding
    run's many small products with the same weights. Packing again is needed after set_cpu_path
    changes the kernels' panel width (dense_packed says so)."""
    w = typed_c_array(w, _F32, "pack_weights", "w")
    if w.ndim != 2:
        raise ValueError(f"pack_weights: w must be 2-D, got shape {w.shape}")
    cdef bint t = bool(trans)
    cdef int64_t k = w.shape[1] if t else w.shape[0], n = w.shape[0] if t else w.shape[1]
    cdef int64_t ldw = w.shape[1]
    cdef int nr = 0
    cdef int64_t floats = fn_sgemm_packed_b_floats(k, n, &nr)
    data = np.empty(max(floats, 1), _F32)
    cdef const float[:, ::1] wv = w
    cdef float[::1] dv = data
    cdef fn_status st
    if k * n:
        with nogil:
            st = fn_sgemm_pack_b(t, k, n, &wv[0, 0], ldw, &dv[0], nr)
        check_status(st, "pack_weights")
    return PackedWeights(data, k, n, nr)


def dense_packed(x, packed, b=None, activation="identity", alpha=0.01, out=None):
    """dense(x, w, b, activation, alpha) for weights packed by pack_weights: the same bits.
    out: a float32 (m, n) array to write into, e.g. a decoding loop's one logits buffer."""
    if not isinstance(packed, PackedWeights):
        raise TypeError(f"dense_packed: packed must come from pack_weights, got {type(packed).__name__}")
    cdef int64_t k = packed.k, n = packed.n
    cdef int nr = 0
    cdef int64_t floats = fn_sgemm_packed_b_floats(k, n, &nr)
    if nr != packed.nr:
        raise ValueError(f"dense_packed: the weights were packed for panels of {packed.nr} columns and the "
                         f"current CPU path ({get_cpu_path()}) reads {nr}: pack them again")
    data = packed.data  # C reads `floats` of them: a PackedWeights put together by hand is checked
    if floats < 0 or type(data) is not _ndarray or data.dtype != _F32 or data.ndim != 1 \
            or not data.flags.c_contiguous or data.shape[0] < floats:
        raise ValueError(f"dense_packed: packed.data must be the {max(floats, 0)} float32 values pack_weights "
                         f"made for k={k}, n={n}, got {_describe(data)}")
    x = typed_c_array(x, _F32, "dense_packed", "x")
    if x.ndim != 2 or x.shape[1] != k:
        raise ValueError(f"dense_packed: x must have shape (m, {k}), got {x.shape}")
    cdef int64_t m = x.shape[0]
    cdef const float *bias = NULL
    cdef const float[::1] bv
    if b is not None:
        b = typed_c_array(b, _F32, "dense_packed", "b")
        if b.shape != (n,):
            raise ValueError(f"dense_packed: b must have shape ({n},), got {b.shape}")
        if n:
            bv = b
            bias = &bv[0]
    cdef int act = activation_code(activation)
    cdef float slope = <float>_finite(alpha, "alpha")
    out = given_output(out, _F32, (m, n), "dense_packed", (x, data, b))
    if m * n == 0:
        return out
    cdef const float[:, ::1] xv = x
    cdef float[:, ::1] ov = out
    cdef const float[::1] pv = data
    cdef fn_status st
    cdef int nth = _n_threads
    with nogil:
        st = fn_dense_forward_packed_f32(m, n, k, &xv[0, 0] if k else NULL, max(k, 1), &pv[0], nr, bias,
                                         <fn_activation>act, slope,
                                         &ov[0, 0], n, NULL, nth)
    check_status(st, "dense_packed")
    return out


cdef str _op_shape(object arr, bint trans):
    return f"{arr.shape}{'.T' if trans else ''}"


def matmul(a, b, trans_a=False, trans_b=False, out=None, alpha=1.0, beta=0.0, precision="float32"):
    """C = alpha * op(a) @ op(b) + beta * out, op(x) = x.T when trans_x.

    a and b are 2-D float32 or float64 arrays of the same dtype. A
    Fortran-ordered (or otherwise column-contiguous) input is read as a
    transpose without a copy. `out` (C-contiguous, not overlapping a or b)
    receives the result; beta != 0 requires it. precision='bf16' (float32
    arrays) rounds op(a) and op(b) to bfloat16 and sums the exact products in
    float32, on the CPU's bf16 units when it has them.
    """
    if type(a) is not _ndarray:
        a = np.asarray(a)
    if type(b) is not _ndarray:
        b = np.asarray(b)
    dtype = _float_dtype(a, b, "matmul", "a", "b")
    if a.dtype is not dtype or b.dtype is not dtype or not (a.flags.aligned and b.flags.aligned):
        a = _as_array(a, dtype, "matmul", "a")
        b = _as_array(b, dtype, "matmul", "b")
    cdef bint bf16 = _use_bf16(precision, dtype, "matmul")
    cdef bint f32 = dtype is _F32
    cdef bint ta = trans_a, tb = trans_b
    cdef double alpha_d = alpha, beta_d = beta
    if beta_d != 0.0 and out is None:
        raise ValueError("matmul: beta != 0 needs out= (the matrix to add to)")
    cdef Py_buffer va, vb, vc
    cdef _Matrix ma, mb, mc
    cdef int64_t m, n, k, k2
    cdef fn_status status
    a = _matrix(a, &va, &ma, True, "matmul", "a")
    try:
        b = _matrix(b, &vb, &mb, True, "matmul", "b")
        try:
            # A transposed buffer flips the transpose flag: op(a) stays the same matrix.
            ta = ta != ma.transposed
            tb = tb != mb.transposed
            m = ma.cols if ta else ma.rows
            k = ma.rows if ta else ma.cols
            k2 = mb.cols if tb else mb.rows
            n = mb.rows if tb else mb.cols
            if k != k2:
                raise ValueError(
                    f"matmul: shapes {_op_shape(a, trans_a)} and {_op_shape(b, trans_b)} do not align "
                    f"(trans_a={bool(trans_a)}, trans_b={bool(trans_b)}): {k} != {k2}")
            out = _output(out, dtype, (m, n), &vc, &mc, "matmul", "out")
            try:
                if _overlaps(&mc, &ma) or _overlaps(&mc, &mb):
                    raise ValueError("matmul: out aliases " + ("a" if _overlaps(&mc, &ma) else "b") +
                                     "; pass a separate output array")
                with nogil:
                    if f32:
                        status = _gemm_impl[float](bf16, ta, tb, m, n, k, <float>alpha_d, &ma, &mb,
                                                   <float>beta_d, &mc)
                    else:
                        status = _gemm_impl[double](bf16, ta, tb, m, n, k, alpha_d, &ma, &mb, beta_d, &mc)
            finally:
                PyBuffer_Release(&vc)
        finally:
            PyBuffer_Release(&vb)
    finally:
        PyBuffer_Release(&va)
    check_status(status, "matmul")
    return out


def dense(x, w, b=None, activation="identity", alpha=0.01, out=None, return_preactivation=False,
          precision="float32"):
    """y = act(x @ w + b) in one fused pass; x (m, k), w (k, n), b (n,) or None.

    alpha is the negative slope of leaky_relu. Returns y, or (y, pre) with
    pre = x @ w + b when return_preactivation (the backward of an activation
    that reads its input needs it: ops.activation_info(name).needs_input()).
    precision='bf16' multiplies in bf16 (see matmul); bias and activation
    stay float32.
    """
    if type(x) is not _ndarray:
        x = np.asarray(x)
    if type(w) is not _ndarray:
        w = np.asarray(w)
    dtype = _float_dtype(x, w, "dense", "x", "w")
    x = _as_array(x, dtype, "dense", "x")
    w = _as_array(w, dtype, "dense", "w")
    cdef bint bf16 = _use_bf16(precision, dtype, "dense")
    cdef bint f32 = dtype is _F32
    cdef int act = activation_code(activation)
    cdef double slope = _finite(alpha, "alpha")
    cdef Py_buffer vx, vw, vb, vy, vp
    cdef _Matrix mx, mw, mb, my, mp
    cdef bint has_b = b is not None, want_pre = return_preactivation
    cdef int64_t m, n, k
    cdef fn_status status
    pre = None
    x = _matrix(x, &vx, &mx, False, "dense", "x")
    try:
        w = _matrix(w, &vw, &mw, False, "dense", "w")
        try:
            m, k, n = mx.rows, mx.cols, mw.cols
            if mw.rows != k:
                raise ValueError(f"dense: x has shape {x.shape} and w has shape {w.shape}; "
                                 f"w must have {k} rows")
            if has_b:
                b = _vector(_as_array(b, dtype, "dense", "b"), &vb, &mb, n, "dense", "b")
            else:
                mb.data = mb.lo = mb.hi = NULL
            try:
                out = _output(out, dtype, (m, n), &vy, &my, "dense", "out")
                try:
                    if _overlaps(&my, &mx) or _overlaps(&my, &mw) or (has_b and _overlaps(&my, &mb)):
                        raise ValueError("dense: out aliases an input (x, w or b)")
                    if want_pre:
                        pre = _output(None, dtype, (m, n), &vp, &mp, "dense", "pre")
                    else:
                        mp.data = NULL
                    try:
                        with nogil:
                            if f32:
                                status = _dense_forward_impl[float](bf16, m, n, k, &mx, &mw, &mb, act,
                                                                    <float>slope, &my, &mp)
                            else:
                                status = _dense_forward_impl[double](bf16, m, n, k, &mx, &mw, &mb, act,
                                                                     slope, &my, &mp)
                    finally:
                        if want_pre:
                            PyBuffer_Release(&vp)
                finally:
                    PyBuffer_Release(&vy)
            finally:
                if has_b:
                    PyBuffer_Release(&vb)
        finally:
            PyBuffer_Release(&vw)
    finally:
        PyBuffer_Release(&vx)
    check_status(status, "dense")
    return (out, pre) if want_pre else out


cdef object _cmatrix(object arr, object dtype, int64_t rows, int64_t cols, Py_buffer *view,
                     _Matrix *mat, str name):
    """arr as a C-contiguous rows x cols array of dtype (copied if it is not);
    acquires its buffer, which the caller releases."""
    arr = _as_array(arr, dtype, "dense_backward", name)
    if arr.ndim != 2 or arr.shape[0] != rows or arr.shape[1] != cols:
        raise ValueError(f"dense_backward: {name} has shape {arr.shape}, expected ({rows}, {cols})")
    PyObject_GetBuffer(arr, view, PyBUF_STRIDES)
    if _layout(view, mat) and not mat.transposed and (rows <= 1 or mat.ld == cols):
        return arr
    PyBuffer_Release(view)
    arr = np.ascontiguousarray(arr)
    PyObject_GetBuffer(arr, view, PyBUF_STRIDES)
    _layout(view, mat)
    return arr


cdef int _dense_backward_missing(int act, str name, double slope) except -1:
    """Raise the error for a dense backward given neither pre nor a usable y."""
    cdef fn_activation code = <fn_activation>act
    if fn_activation_backward_reads(code, slope, False, True):  # y would do
        raise ValueError(f"dense_backward: {name} needs y (the forward output) or pre")
    if fn_activation_backward_reads(code, 0.0, False, True):  # y would do but for the slope's sign
        raise ValueError(f"dense_backward: {name} with a negative slope needs pre "
                         "(the sign of y does not give the sign of x)")
    raise ValueError(f"dense_backward: {name} needs pre (the pre-activation from "
                     "dense(..., return_preactivation=True))")


def dense_backward(x, w, y, dy, activation="identity", alpha=0.01, pre=None, need_dx=True,
                   dw=None, db=None, accumulate=False, with_bias=True, precision="float32"):
    """Gradients of y = act(x @ w + b) given dy: returns (dx or None, dw, db or None).

    y is the forward output, pre the pre-activation: pass what the
    activation's backward reads (fastnet.ops.activation_info; gelu needs pre,
    sigmoid and tanh y, relu and leaky_relu either). dw / db, when given, are written in
    place, or added to with accumulate=True (which requires them).
    precision='bf16' runs the two GEMMs in bf16; everything else is float32.
    """
    if type(x) is not _ndarray:
        x = np.asarray(x)
    if type(w) is not _ndarray:
        w = np.asarray(w)
    dtype = _float_dtype(x, w, "dense_backward", "x", "w")
    cdef bint bf16 = _use_bf16(precision, dtype, "dense_backward")
    cdef bint f32 = dtype is _F32
    cdef int act = activation_code(activation)
    cdef double slope = _finite(alpha, "alpha")
    if not fn_activation_backward_reads(<fn_activation>act, slope, True, True):
        raise ValueError(f"dense_backward: the {activation} activation has no gradient")
    if x.ndim != 2 or w.ndim != 2 or x.shape[1] != w.shape[0]:
        raise ValueError(f"dense_backward: x has shape {x.shape} and w has shape {w.shape}; "
                         "expected (m, k) and (k, n)")
    cdef int64_t m = x.shape[0], k = x.shape[1], n = w.shape[1]
    # Only what the activation's derivative reads (csrc/activations.h) is
    # checked and used: pre (its input x), y, or neither.
    cdef int reads = fn_activation_backward_reads(<fn_activation>act, slope, pre is not None, y is not None)
    if reads == 0:
        _dense_backward_missing(act, activation, slope)
    if reads != c'x':
        pre = None
    if reads != c'y':
        y = None
    if accumulate and (dw is None or (with_bias and db is None)):
        raise ValueError("dense_backward: accumulate=True needs dw (and db when with_bias) to add to")
    if db is not None and not with_bias:
        raise ValueError("dense_backward: db given but with_bias=False")
    cdef Py_buffer views[9]
    cdef int held = 0, i
    cdef _Matrix mx, mw, my, mpre, mdy, mdz, mdw, mdb, mdx
    cdef bint bias_grad = with_bias, want_dx = need_dx, acc = accumulate
    cdef fn_status status
    my.data = mpre.data = mdb.data = mdx.data = NULL
    my.lo = my.hi = mpre.lo = mpre.hi = NULL
    dx = None
    try:
        x = _cmatrix(x, dtype, m, k, &views[held], &mx, "x"); held += 1
        w = _cmatrix(w, dtype, k, n, &views[held], &mw, "w"); held += 1
        dy = _cmatrix(dy, dtype, m, n, &views[held], &mdy, "dy"); held += 1
        if y is not None:
            y = _cmatrix(y, dtype, m, n, &views[held], &my, "y"); held += 1
        if pre is not None:
            pre = _cmatrix(pre, dtype, m, n, &views[held], &mpre, "pre"); held += 1
        dw = _output(dw, dtype, (k, n), &views[held], &mdw, "dense_backward", "dw"); held += 1
        if bias_grad:
            db = _output(db, dtype, (n,), &views[held], &mdb, "dense_backward", "db"); held += 1
            if _overlaps(&mdb, &mdw):
                raise ValueError("dense_backward: dw and db share memory; pass separate arrays")
        if _overlaps(&mdw, &mx) or _overlaps(&mdw, &mw) or _overlaps(&mdw, &mdy) or \
                _overlaps(&mdw, &my) or _overlaps(&mdw, &mpre):
            raise ValueError("dense_backward: dw aliases an input (x, w, y, pre or dy)")
        if bias_grad and (_overlaps(&mdb, &mx) or _overlaps(&mdb, &mw) or _overlaps(&mdb, &mdy) or
                          _overlaps(&mdb, &my) or _overlaps(&mdb, &mpre)):
            raise ValueError("dense_backward: db aliases an input (x, w, y, pre or dy)")
        if want_dx:
            dx = _output(None, dtype, (m, k), &views[held], &mdx, "dense_backward", "dx"); held += 1
        if reads == c'd':
            mdz = mdy  # dz = dy: the C side sees dz == dy and writes nothing to it
        else:
            _output(None, dtype, (m, n), &views[held], &mdz, "dense_backward", "dz"); held += 1
        with nogil:
            if f32:
                status = _dense_backward_impl[float](bf16, m, n, k, &mx, &mw, &my, &mpre, &mdy, act,
                                                     <float>slope, &mdz, &mdx, &mdw, &mdb, acc)
            else:
                status = _dense_backward_impl[double](bf16, m, n, k, &mx, &mw, &my, &mpre, &mdy, act,
                                                      slope, &mdz, &mdx, &mdw, &mdb, acc)
    finally:
        for i in range(held):
            PyBuffer_Release(&views[i])
    check_status(status, "dense_backward")
    return dx, dw, (db if bias_grad else None)
