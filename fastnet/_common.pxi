# Shared by every wrapper: the thread count, CPU-path configuration, status
# codes to exceptions, and small checks.
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from libc.stdint cimport int64_t, uintptr_t
from libc.math cimport isfinite
import numpy as np

# The thread count every kernel receives, kept in C so a tiny kernel call does
# not pay for a Python lookup. `_n_threads` reads the calling thread's own
# count (set by fastnet.threads(n), thread-local) or, when it has none, the
# process default (set_num_threads): two Python threads in overlapping
# threads() blocks never see each other's counts.
cdef extern from *:
    """
    #if defined(_MSC_VER)
    #define FN_PY_THREAD_LOCAL __declspec(thread)
    #else
    #define FN_PY_THREAD_LOCAL __thread
    #endif
    static int fn_py_default_threads = 1;
    static FN_PY_THREAD_LOCAL int fn_py_local_threads = 0;  /* 0: use the default */
    #define FN_PY_THREADS (fn_py_local_threads > 0 ? fn_py_local_threads : fn_py_default_threads)
    """
    int _n_threads "FN_PY_THREADS"
    int fn_py_default_threads
    int fn_py_local_threads

_CPU_PATHS = {"generic": FN_CPU_GENERIC, "avx2": FN_CPU_AVX2, "avx512": FN_CPU_AVX512}
# The names FASTNET_CPU accepts, lowest first: each is a float32 path and a
# low-precision (bf16 / int8) path; the last three all run the AVX-512
# float32 kernels.
_MMA_PATHS = {"avx512_vnni": FN_MMA_AVX512_VNNI, "avx512_bf16": FN_MMA_AVX512_BF16, "amx": FN_MMA_AMX}
CPU_PATH_NAMES = ("generic", "avx2", "avx512", "avx512_vnni", "avx512_bf16", "amx")
_AMX_PERMISSION = {FN_AMX_UNSUPPORTED: "unsupported", FN_AMX_GRANTED: "granted", FN_AMX_REFUSED: "refused"}

_GRAD_NAMES = {FN_ACT_GRAD_DY: "dy", FN_ACT_GRAD_X: "x", FN_ACT_GRAD_Y: "y", FN_ACT_GRAD_SIGN: "sign",
               FN_ACT_GRAD_UNDEFINED: "undefined"}


def activation_table():
    """The rows of the C activation table (csrc/activations.h) in code order:
    (name, code, grad, has_param, doc); grad is what the derivative is computed
    from: 'x', 'y', 'sign', 'dy' or 'undefined' (see fastnet.ops.ActivationInfo)."""
    cdef const fn_activation_info_t *info
    rows = []
    for code in range(FN_ACT_COUNT):
        info = fn_activation_info(<fn_activation>code)
        rows.append((info.name.decode(), code, _GRAD_NAMES[info.grad], bool(info.has_param), info.doc.decode()))
    return tuple(rows)


# Activation name -> C code; 'linear' and None are other names of the identity.
ACTIVATIONS = {}
for _row in activation_table():
    ACTIVATIONS[_row[0]] = _row[1]
    if _row[0] == "identity":
        ACTIVATIONS["linear"] = ACTIVATIONS[None] = _row[1]
_ACTIVATION_NAMES = tuple(row[0] for row in activation_table())
_BACKWARD_READS = {ord("x"): "x", ord("y"): "y", ord("d"): "dy", 0: None}


def activation_backward_reads(name, bint have_x, bint have_y, alpha=0.01):
    """What the backward of activation `name` reads when the caller has x
    and/or y: 'x', 'y', 'dy' (dy alone), or None when it cannot run."""
    cdef int code = activation_code(name)
    return _BACKWARD_READS[fn_activation_backward_reads(<fn_activation>code, _finite(alpha, "alpha"),
                                                        have_x, have_y)]


cdef str backward_missing(int code, double alpha, bint have_x, bint have_y):
    """'' when x / y suffice for the backward of activation `code`, else what
    is missing, in words (from the GRAD column of the table)."""
    if fn_activation_backward_reads(<fn_activation>code, alpha, have_x, have_y):
        return ""
    cdef const fn_activation_info_t *info = fn_activation_info(<fn_activation>code)
    name = info.name.decode()
    if info.grad == FN_ACT_GRAD_UNDEFINED:
        return (f"nothing: '{name}' has no gradient (its derivative is 0 almost everywhere); "
                "use 'sigmoid' to train")
    if info.grad == FN_ACT_GRAD_X:
        return "x (the forward input)"
    if info.grad == FN_ACT_GRAD_SIGN and info.has_param:
        return "x (the forward input), or y when alpha >= 0"
    return "x (the forward input) or y (the forward output)"


def set_num_threads(int n):
    """Threads every kernel may use from now on (>= 1): the process default, which the
    calling thread then uses too; other threads inside a threads() block keep theirs."""
    global fn_py_default_threads, fn_py_local_threads
    if n < 1:
        raise ValueError(f"number of threads must be >= 1, got {n}")
    fn_py_default_threads = n
    fn_py_local_threads = 0


def get_num_threads():
    """The count the calling thread's kernels use."""
    return _n_threads


def get_local_threads():
    """The calling thread's own count, or 0 when it uses the process default."""
    return fn_py_local_threads


def set_local_threads(int n):
    """Give the calling thread its own count (n >= 1), or 0 to use the process default again."""
    global fn_py_local_threads
    if n < 0:
        raise ValueError(f"number of threads must be >= 1 (or 0 for the default), got {n}")
    fn_py_local_threads = n


def openmp_enabled():
    return bool(fn_openmp_enabled())


def max_threads():
    """OpenMP's default team size (honours OMP_NUM_THREADS); 1 without OpenMP."""
    return fn_max_threads()


def best_cpu_path():
    return fn_cpu_path_name(fn_cpu_best_path()).decode()


def get_cpu_path():
    return fn_cpu_path_name(fn_cpu_get_path()).decode()


def kernel_table():
    """The CPU path whose kernel table the float32 kernels run from now."""
    return fn_kernel_table_name().decode()


def current_path_name():
    """The FASTNET_CPU name of what runs now (the low-precision path's name
    when it is above generic, else the float32 path's): set_cpu_path of it
    restores both."""
    mma = fn_mma_get_path()
    return fn_mma_path_name(mma).decode() if mma != FN_MMA_GENERIC else get_cpu_path()


def best_mma_path():
    """The best low-precision path here (after asking the OS for AMX)."""
    return fn_mma_path_name(fn_mma_best_path()).decode()


def get_mma_path():
    """The low-precision path the bf16 and int8 GEMMs run now."""
    return fn_mma_path_name(fn_mma_get_path()).decode()


def get_int8_path():
    """The int8 kernels that run now: 'amx', 'avx512_vnni', 'avx2' (no int8 unit: exact 16-bit
    products) or 'generic'."""
    return fn_int8_kernel_name().decode()


def amx_permission():
    """'granted', 'refused' (by the OS, or simulated) or 'unsupported' (no AMX)."""
    return _AMX_PERMISSION[fn_amx_permission_status()]


def simulate_amx_refusal(refuse=True):
    """Test hook: act as if the OS refused the AMX tile state (or stop doing so)."""
    fn_amx_simulate_refusal(1 if refuse else 0)


def mma_path_for(avx512, avx512_vnni, avx512_bf16, amx, permission):
    """The low-precision path a CPU with these features gets (for tests)."""
    codes = {v: k for k, v in _AMX_PERMISSION.items()}
    path = fn_mma_path_for(bool(avx512), bool(avx512_vnni), bool(avx512_bf16), bool(amx), codes[permission])
    return fn_mma_path_name(path).decode()


def set_cpu_path(name):
    """Force a CPU path (see CPU_PATH_NAMES) or 'auto' (the best one).

    'generic', 'avx2' and 'avx512' also take bf16 and int8 to their portable
    kernels; 'avx512_vnni', 'avx512_bf16' and 'amx' run the AVX-512 float32
    kernels with that low-precision unit.
    """
    if name == "auto":
        path, mma = fn_cpu_best_path(), fn_mma_best_path()
    elif name in _CPU_PATHS:
        path, mma = _CPU_PATHS[name], FN_MMA_GENERIC
    elif name in _MMA_PATHS:
        path, mma = FN_CPU_AVX512, _MMA_PATHS[name]
    else:
        raise ValueError(f"unknown CPU path {name!r}; choose from 'auto', {', '.join(map(repr, CPU_PATH_NAMES))}")
    if <int>path > <int>fn_cpu_best_path() or <int>mma > <int>fn_mma_best_path():
        raise RuntimeError(f"CPU path {name!r} is not supported on this machine "
                           f"(best: {best_cpu_path()!r} with {best_mma_path()!r})")
    fn_cpu_set_path(path)
    fn_mma_set_path(mma)


cdef int activation_code(name) except -1:
    try:
        return ACTIVATIONS[name]
    except (KeyError, TypeError):
        names = ", ".join(repr(k) for k in ACTIVATIONS if k is not None)
        raise ValueError(f"unknown activation {name!r}; choose from {names}") from None


cdef int check_status(fn_status status, str what) except -1:
    """Turn a C status code into an exception that names the operation."""
    if status == FN_OK:
        return 0
    if status == FN_ERR_NOMEM:
        raise MemoryError(f"{what}: out of memory for scratch buffers")
    if status == FN_ERR_NONFINITE:
        raise FloatingPointError(f"{what}: input holds NaN or infinity")
    if status == FN_ERR_LABEL:
        raise ValueError(f"{what}: a label is outside [0, n_classes)")
    if status == FN_ERR_CPU:
        raise RuntimeError(f"{what}: CPU path not supported")
    raise ValueError(f"{what}: invalid argument (status {int(status)})")


cdef double _finite(object value, str what) except? -1.0:
    """A float parameter (a slope, a learning rate) that must be finite."""
    cdef double v = value
    if not isfinite(v):
        raise ValueError(f"{what} must be finite, got {value}")
    return v


cdef object c_array(object arr, object dtype=None):
    """arr as a C-contiguous, aligned, native-byte-order ndarray: arr itself
    when it already is one (read-only arrays are fine: inputs are only
    read), else a copy. Kernels then never see a misaligned pointer or a
    byte order they do not compute in."""
    arr = np.asarray(arr) if dtype is None else np.asarray(arr, dtype=dtype)
    flags = arr.flags
    if flags.c_contiguous and flags.aligned and arr.dtype.isnative:
        return arr
    return np.array(arr, dtype=arr.dtype.newbyteorder("="), order="C")


cdef int check_writable_out(object out, str what) except -1:
    """An output the kernel writes into directly: C-contiguous, writeable,
    aligned and in native byte order (it cannot be copied and written back)."""
    if not out.flags.c_contiguous:
        raise ValueError(f"{what} must be C-contiguous")
    if not out.flags.writeable:
        raise ValueError(f"{what} is read-only")
    if not (out.flags.aligned and out.dtype.isnative):
        raise ValueError(f"{what} must be aligned and in native byte order")
    return 0


cdef object given_output(object out, object dtype, tuple shape, str what, tuple inputs, str name="out"):
    """A new C-contiguous array of `shape` and `dtype` when out is None; otherwise out, checked:
    a numpy array of that dtype and shape that the kernel can write directly, sharing no memory
    with `inputs` (None entries skipped). name: the argument's name in the messages."""
    if out is None:
        return np.empty(shape, dtype)
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{what}: {name} must be a numpy array, got {type(out).__name__}")
    if out.dtype != dtype:
        raise TypeError(f"{what}: {name} must be {np.dtype(dtype)}, got dtype {out.dtype}")
    if out.shape != shape:
        raise ValueError(f"{what}: {name} must have shape {shape}, got {out.shape}")
    check_writable_out(out, f"{what}: {name}")
    for arr in inputs:
        if arr is not None and np.may_share_memory(out, arr):
            raise ValueError(f"{what}: {name} shares memory with an input")
    return out


def shares_memory(a, b):
    """True when two arrays may overlap in memory (cheap bounds check)."""
    return np.may_share_memory(a, b)


# ---- float32 / float64: one body per wrapper, through a fused type ------------------
# A wrapper writes its C call once, in `cdef fn_status _<op>_impl(real[...] ...)
# noexcept` that releases the GIL and picks fn_<op>_f32 or fn_<op>_f64 with
# `if real is float`; it calls the impl as _<op>_impl[float](...) when
# is_f32(array), else _<op>_impl[double](...). The explicit specialisation
# costs nothing at run time (a fused def would look the dtype up per call,
# which tiny decoding-path calls would feel). Impls return the fn_status and
# nothing else; check_status turns it into an exception.
ctypedef fused real:
    float
    double

cdef object _F32 = np.dtype(np.float32)
cdef object _F64 = np.dtype(np.float64)


cdef inline bint is_f32(object arr):
    # Identity first: comparing dtypes by value is slow on the hot path.
    dt = arr.dtype
    return dt is _F32 or dt == _F32


# ---- argument checks ---------------------------------------------------------------
# One place, one message format: "<operation>: <argument> <what is wrong>, got
# <what was given>", so an error names the call and the argument.

cdef object float_array(object x, str what, str name):
    """x as a float32/float64 ndarray, aligned and in native byte order (a copy
    only when it is not), or a TypeError. The layout is left to the caller."""
    cdef object arr = x if type(x) is np.ndarray else np.asarray(x)
    dt = arr.dtype
    if dt is _F32 or dt is _F64:
        if arr.flags.aligned:
            return arr
    elif dt.kind != "f" or (dt.itemsize != 4 and dt.itemsize != 8):
        raise TypeError(f"{what}: {name} must be float32 or float64, got dtype {dt}")
    return c_array(arr)


cdef object typed_c_array(object x, object dtype, str what, str name):
    """x as a C-contiguous, aligned, native-order array of exactly this dtype
    (any byte order accepted; read-only is fine: it is only read)."""
    x = np.asarray(x)
    if x.dtype.newbyteorder("=") != dtype:
        raise TypeError(f"{what}: {name} must be {dtype}, got dtype {x.dtype}")
    return c_array(x, dtype)


cdef object float_c_array(object x, str what, str name):
    """float_array, C-contiguous (read-only arrays are read in place)."""
    return c_array(float_array(x, what, name))


cdef int same_dtype(object ref, object arr, str what, str ref_name, str name) except -1:
    if arr.dtype is not ref.dtype and arr.dtype != ref.dtype:
        raise TypeError(f"{what}: {name} has dtype {arr.dtype} but {ref_name} has dtype {ref.dtype}; "
                        f"they must match")
    return 0


cdef int same_shape(object ref, object arr, str what, str ref_name, str name) except -1:
    if arr.shape != ref.shape:
        raise ValueError(f"{what}: {name} has shape {arr.shape} but {ref_name} has shape {ref.shape}; "
                         f"they must match")
    return 0


cdef int same_kind(object ref, object arr, str what, str ref_name, str name) except -1:
    """Same dtype and same shape."""
    same_dtype(ref, arr, what, ref_name, name)
    return same_shape(ref, arr, what, ref_name, name)


cdef inline object flat(object arr):
    """A 1-D view of a C-contiguous array (no new object when already flat)."""
    return arr if arr.ndim == 1 else arr.reshape(-1)


cdef inline bint overlap(const void *a, const void *b, int64_t nbytes):
    """Two buffers of nbytes each share memory."""
    cdef uintptr_t pa = <uintptr_t>a, pb = <uintptr_t>b
    return pa < pb + <uintptr_t>nbytes and pb < pa + <uintptr_t>nbytes


cdef const void *data_pointer(object arr) except NULL:
    """The first byte of a C-contiguous array, through the buffer protocol (no
    Python-level call: this runs on every optimizer step and residual add)."""
    cdef Py_buffer view
    PyObject_GetBuffer(arr, &view, PyBUF_SIMPLE)
    cdef const void *p = view.buf
    PyBuffer_Release(&view)
    return p


cdef int check_out_like(object out, object like, str what, str like_name, str name) except -1:
    """out: a writeable C-contiguous ndarray with like's dtype and shape. It may
    be `like` itself (in place); a partial overlap is the caller's check
    (no_partial_overlap, on the raw pointers)."""
    if type(out) is not np.ndarray:
        raise TypeError(f"{what}: {name} must be a numpy.ndarray, got {type(out).__name__}")
    same_kind(like, out, what, like_name, name)
    return check_writable_out(out, f"{what}: {name}")


cdef int no_partial_overlap(const void *x, const void *out, int64_t nbytes, str what) except -1:
    if x != out and overlap(x, out, nbytes):
        raise ValueError(f"{what}: out partially overlaps the input; pass the input itself for in-place "
                         f"or a separate array")
    return 0


cdef int check_flat_buffer(object arr, str what, str name, bint writeable) except -1:
    """A flat, contiguous float buffer (optimizer state), updated in place when writeable."""
    if type(arr) is not np.ndarray:
        raise TypeError(f"{what}: {name} must be a numpy.ndarray, got {type(arr).__name__}")
    if arr.dtype is not _F32 and arr.dtype is not _F64 and arr.dtype.char not in "fd":
        raise TypeError(f"{what}: {name} must be float32 or float64, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"{what}: {name} must be a flat 1-D buffer, got shape {arr.shape}")
    if not arr.flags.c_contiguous:
        raise ValueError(f"{what}: {name} must be contiguous, got a strided view")
    if writeable and not arr.flags.writeable:
        raise ValueError(f"{what}: {name} is read-only but is updated in place")
    if writeable and not (arr.flags.aligned and arr.dtype.isnative):
        raise ValueError(f"{what}: {name} is updated in place, so it must be aligned and in native byte order")
    return 0


cdef int check_disjoint(object arrays, str what) except -1:
    """No two of these (name, array) pairs may share memory: each is written
    or read while another is written. Exact, so interleaved slices of one
    array (dqkv[:, :, i]) pass."""
    for i in range(len(arrays)):
        for j in range(i + 1, len(arrays)):
            (name_a, a), (name_b, b) = arrays[i], arrays[j]
            if a is not None and b is not None and np.shares_memory(a, b):
                raise ValueError(f"{what}: {name_a} and {name_b} share memory; they must be separate arrays")
    return 0


cdef int check_disjoint_flat(const void **ptrs, tuple names, int count, int64_t nbytes, str what) except -1:
    """The same for equally long contiguous buffers, on their pointers (no
    Python call: optimizer steps run this every step). NULL entries are skipped."""
    cdef int i, j
    for i in range(count):
        for j in range(i + 1, count):
            if ptrs[i] != NULL and ptrs[j] != NULL and overlap(ptrs[i], ptrs[j], nbytes):
                raise ValueError(f"{what}: {names[i]} and {names[j]} share memory; they must be separate buffers")
    return 0
