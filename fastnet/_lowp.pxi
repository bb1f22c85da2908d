# Low precision: bfloat16 conversions (csrc/bf16.c). The bf16 GEMM itself is
# matmul / dense / dense_backward with precision="bf16" (_gemm.pxi).
from libc.stdint cimport uint16_t

cdef object _U16 = np.dtype(np.uint16)


def to_bf16(x):
    """float32 array -> its bf16 bit patterns (uint16, same shape), rounded as
    the hardware rounds: nearest even, NaN stays NaN, denormals become 0."""
    x = typed_c_array(x, _F32, "to_bf16", "x")
    out = np.empty(x.shape, _U16)
    cdef const float[::1] src = x.reshape(-1)
    cdef uint16_t[::1] dst = out.reshape(-1)
    cdef int64_t n = src.shape[0]
    cdef fn_status status
    with nogil:
        status = fn_f32_to_bf16(&src[0] if n else NULL, &dst[0] if n else NULL, n)
    check_status(status, "to_bf16")
    return out


def from_bf16(bits):
    """bf16 bit patterns (uint16) -> float32 (exact)."""
    bits = typed_c_array(bits, _U16, "from_bf16", "bits")
    out = np.empty(bits.shape, _F32)
    cdef const uint16_t[::1] src = bits.reshape(-1)
    cdef float[::1] dst = out.reshape(-1)
    cdef int64_t n = src.shape[0]
    cdef fn_status status
    with nogil:
        status = fn_bf16_to_f32(&src[0] if n else NULL, &dst[0] if n else NULL, n)
    check_status(status, "from_bf16")
    return out


def round_bf16(x):
    """x (float32) rounded to the nearest bf16 value, as float32."""
    x = typed_c_array(x, _F32, "round_bf16", "x")
    out = np.empty(x.shape, _F32)
    cdef const float[::1] src = x.reshape(-1)
    cdef float[::1] dst = out.reshape(-1)
    cdef int64_t n = src.shape[0]
    cdef fn_status status
    with nogil:
        status = fn_round_bf16_f32(&src[0] if n else NULL, &dst[0] if n else NULL, n)
    check_status(status, "round_bf16")
    return out


# ---- int8 (csrc/int8.c) ---------------------------------------------------------------
from libc.stdint cimport int8_t, int32_t

cdef object _I8 = np.dtype(np.int8)
cdef object _I32 = np.dtype(np.int32)


cdef object _matrix2d(object x, object dtype, str what, str name):
    x = typed_c_array(x, dtype, what, name)
    if x.ndim != 2:
        raise ValueError(f"{what}: {name} must be 2-D, got shape {x.shape}")
    return x


cdef int64_t _packed_bytes(int64_t k, int64_t n, str what) except -1:
    """Bytes of the packed form of k x n int8 weights (at least 1: never a 0-byte buffer)."""
    cdef int64_t nbytes = 0
    cdef fn_status status = fn_s8_packed_bytes(k, n, &nbytes)
    if status != FN_OK:
        check_status(status, f"{what}(k={k}, n={n})")
    return max(nbytes, 1)


def quantize_rows(x):
    """Per-row symmetric int8 quantisation of a float32 matrix: (q int8, scale float32),
    x[i] ~ q[i] * scale[i]. A row with NaN or infinity gets a NaN scale."""
    x = _matrix2d(x, _F32, "quantize_rows", "x")
    cdef int64_t m = x.shape[0], k = x.shape[1]
    q = np.empty((m, k), _I8)
    scale = np.empty(m, _F32)
    cdef const float[:, ::1] xv = x
    cdef int8_t[:, ::1] qv = q
    cdef float[::1] sv = scale
    cdef fn_status status
    with nogil:
        status = fn_quantize_rows_s8(&xv[0, 0] if m * k else NULL, m, k, max(k, 1),
                                     &qv[0, 0] if m * k else NULL, &sv[0] if m else NULL)
    check_status(status, "quantize_rows")
    return q, scale


def quantize_columns(w):
    """Per-column (per output channel) int8 quantisation of finite float32 weights (k, n):
    (q int8 (k, n), scale float32 (n,)), w[:, j] ~ q[:, j] * scale[j]."""
    w = _matrix2d(w, _F32, "quantize_columns", "w")
    cdef int64_t k = w.shape[0], n = w.shape[1]
    q = np.empty((k, n), _I8)
    scale = np.empty(n, _F32)
    cdef const float[:, ::1] wv = w
    cdef int8_t[:, ::1] qv = q
    cdef float[::1] sv = scale
    cdef fn_status status
    with nogil:
        status = fn_quantize_columns_s8(&wv[0, 0] if k * n else NULL, k, n, max(n, 1),
                                        &qv[0, 0] if k * n else NULL, &sv[0] if n else NULL)
    if status == FN_ERR_NONFINITE:
        raise ValueError("quantize_columns: the weights hold NaN or infinity")
    check_status(status, "quantize_columns")
    return q, scale


class PackedInt8:
    """int8 weights (k, n) laid out for the int8 kernels (see pack_int8)."""
    __slots__ = ("data", "colsum", "k", "n")

    def __init__(self, data, colsum, k, n):
        self.data, self.colsum, self.k, self.n = data, colsum, int(k), int(n)

    def __repr__(self):
        return f"PackedInt8(k={self.k}, n={self.n})"


def pack_int8(q):
    """Lay int8 weights (k, n) out for the int8 kernels: a PackedInt8 holding the
    panels (`data`, int8) and the column sums (`colsum`, int32) the VNNI path needs."""
    q = _matrix2d(q, _I8, "pack_int8", "q")
    cdef int64_t k = q.shape[0], n = q.shape[1]
    packed = np.empty(_packed_bytes(k, n, "pack_int8"), _I8)
    colsum = np.empty(n, _I32)
    cdef const int8_t[:, ::1] qv = q
    cdef int8_t[::1] pv = packed
    cdef int32_t[::1] cv = colsum
    cdef fn_status status
    with nogil:
        status = fn_pack_s8(&qv[0, 0] if k * n else NULL, k, n, &pv[0], &cv[0] if n else NULL)
    check_status(status, "pack_int8")
    return PackedInt8(packed, colsum, k, n)


cdef tuple _unpacked(object w, int64_t k, str what):
    """(data, colsum, n) of packed weights w for an input of k columns."""
    try:
        data, colsum, wk, n = w.data, w.colsum, w.k, w.n
    except AttributeError:
        raise TypeError(f"{what}: weights must be packed with pack_int8, got {type(w).__name__}") from None
    if wk != k:
        raise ValueError(f"{what}: the input has {k} columns but the packed weights have k={wk} rows")
    data, colsum = np.ascontiguousarray(data), np.ascontiguousarray(colsum)
    if data.dtype != _I8 or data.ndim != 1 or data.shape[0] != _packed_bytes(k, n, what):
        raise ValueError(f"{what}: packed data do not fit k={k}, n={n} (make them with pack_int8)")
    if colsum.dtype != _I32 or colsum.shape != (n,):
        raise ValueError(f"{what}: column sums must be int32 of shape ({n},), got {colsum.dtype} {colsum.shape}")
    return data, colsum, n


def matmul_int8(a, w):
    """Exact int32 product of int8 a (m, k) and int8 weights (k, n) packed by pack_int8."""
    a = _matrix2d(a, _I8, "matmul_int8", "a")
    cdef int64_t m = a.shape[0], k = a.shape[1], n
    packed, colsum, n = _unpacked(w, k, "matmul_int8")
    out = np.zeros((m, n), _I32)
    cdef const int8_t[:, ::1] av = a
    cdef const int8_t[::1] pv = packed
    cdef const int32_t[::1] cv = colsum
    cdef int32_t[:, ::1] ov = out
    cdef int nth = _n_threads
    cdef fn_status status
    with nogil:
        status = fn_gemm_s8s32(m, n, k, &av[0, 0] if m * k else NULL, max(k, 1), &pv[0], &cv[0] if n else NULL,
                               &ov[0, 0] if m * n else NULL, max(n, 1), nth)
    check_status(status, "matmul_int8")
    return out


def dense_int8(x, w, w_scale, b=None, activation="identity", alpha=0.01, out=None):
    """y = act((float)(q(x) @ q(w)) * (x_scale * w_scale) + b): x float32 (m, k) is quantised
    per row on the fly, w is given packed (pack_int8) with its per-column scales. out: a float32
    (m, n) array to write into."""
    x = _matrix2d(x, _F32, "dense_int8", "x")
    w_scale = typed_c_array(w_scale, _F32, "dense_int8", "w_scale")
    cdef int64_t m = x.shape[0], k = x.shape[1], n
    packed, colsum, n = _unpacked(w, k, "dense_int8")
    if w_scale.shape != (n,):
        raise ValueError(f"dense_int8: w_scale must have shape ({n},), got {w_scale.shape}")
    cdef int act = activation_code(activation)
    cdef float slope = alpha
    cdef bint has_b = b is not None
    cdef const float[::1] bv
    if has_b:
        b = typed_c_array(b, _F32, "dense_int8", "b")
        if b.shape != (n,):
            raise ValueError(f"dense_int8: b must have shape ({n},), got {b.shape}")
        bv = b
    out = given_output(out, _F32, (m, n), "dense_int8", (x, packed, colsum, w_scale, b))
    cdef const float[:, ::1] xv = x
    cdef const int8_t[::1] pv = packed
    cdef const int32_t[::1] cv = colsum
    cdef const float[::1] sv = w_scale
    cdef float[:, ::1] ov = out
    cdef int nth = _n_threads
    cdef fn_status status
    with nogil:
        status = fn_dense_forward_s8(m, n, k, &xv[0, 0] if m * k else NULL, max(k, 1), &pv[0],
                                     &cv[0] if n else NULL, &sv[0] if n else NULL,
                                     &bv[0] if has_b and n else NULL, <fn_activation>act, slope,
                                     &ov[0, 0] if m * n else NULL, max(n, 1), nth)
    check_status(status, "dense_int8")
    return out
