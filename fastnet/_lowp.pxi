# Low precision: bfloat16 conversions (csrc/bf16.c). The bf16 GEMM itself is
# matmul / dense / dense_backward with precision="bf16" (_gemm.pxi).
from libc.stdint cimport uint16_t

cdef extern from "fastnet.h" nogil:
    fn_status fn_f32_to_bf16(const float *x, uint16_t *out, int64_t n) noexcept
    fn_status fn_bf16_to_f32(const uint16_t *x, float *out, int64_t n) noexcept
    fn_status fn_round_bf16_f32(const float *x, float *out, int64_t n) noexcept

cdef object _U16 = np.dtype(np.uint16)


cdef object _contiguous(object x, object dtype, str what):
    """x as a C-contiguous, aligned, native-order array of dtype (read-only is fine: it is only read)."""
    x = np.asarray(x)
    if x.dtype.newbyteorder("=") != dtype:
        raise TypeError(f"{what}: needs a {dtype} array, got {x.dtype}")
    return c_array(x, dtype)


def to_bf16(x):
    """float32 array -> its bf16 bit patterns (uint16, same shape), rounded as
    the hardware rounds: nearest even, NaN stays NaN, denormals become 0."""
    x = _contiguous(x, _F32, "to_bf16")
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
    bits = _contiguous(bits, _U16, "from_bf16")
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
    x = _contiguous(x, _F32, "round_bf16")
    out = np.empty(x.shape, _F32)
    cdef const float[::1] src = x.reshape(-1)
    cdef float[::1] dst = out.reshape(-1)
    cdef int64_t n = src.shape[0]
    cdef fn_status status
    with nogil:
        status = fn_round_bf16_f32(&src[0] if n else NULL, &dst[0] if n else NULL, n)
    check_status(status, "round_bf16")
    return out
