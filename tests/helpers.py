"""Shared by the tests: the registries they follow (activations), error bounds, finite differences,
array layouts, hypothesis strategies for awkward sizes."""
import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

import fastnet
from fastnet import ops
from fastnet import reference as ref

# Every CPU path this machine can run; kernel tests run once per path.
_PATHS = ["generic", "avx2", "avx512"]
CPU_PATHS = _PATHS[: _PATHS.index(fastnet._kernels.best_cpu_path()) + 1]
# The same for the bf16 / int8 kernels: the float32 paths (portable
# low-precision code on each) and the low-precision units above them.
_BEST = fastnet._kernels.best_mma_path()
LOWP_PATHS = CPU_PATHS + (list(fastnet._kernels.CPU_PATH_NAMES[3:]) if _BEST != "generic" else [])
LOWP_PATHS = LOWP_PATHS[: LOWP_PATHS.index(_BEST) + 1] if _BEST != "generic" else LOWP_PATHS

# The cpu_path fixture is set once per test and is the same for every example.
kernel_settings = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])

# Sizes around register-tile and vector-width edges (6x16 tiles, 8/16 lanes).
EDGE_SIZES = [0, 1, 2, 3, 5, 6, 7, 8, 9, 12, 15, 16, 17, 31, 32, 33, 95, 97]
LAYOUTS = ["C", "F", "strided", "padded", "reversed"]
FLOAT_DTYPES = [np.float32, np.float64]


# ---- the activation registry ----------------------------------------------------------------
# Tests take their activations from the kernels' table (fastnet.ops.ACTIVATION_NAMES, built from
# csrc/activations.h) and what each one needs from its row, so an activation added to the table is
# tested everywhere.
ACTIVATIONS = list(ops.ACTIVATION_NAMES)


def has_gradient(name):
    """Whether the activation has a backward (step has none)."""
    return ops.activation_info(name).has_gradient


DIFFERENTIABLE = [name for name in ACTIVATIONS if has_gradient(name)]


def backward_needs_x(name, alpha=0.01):
    """Whether the backward needs the pre-activation x: the output y does not determine the derivative."""
    return ops.activation_info(name).needs_input(alpha)


def activation_lipschitz(name, alpha=0.01):
    """max |act'(x)| over the reals (a fine grid of [-10, 10] plus 1%): how much an error in the
    pre-activation can grow through the activation; 0 for one without a gradient."""
    if not has_gradient(name):
        return 0.0
    grid = np.linspace(-10.0, 10.0, 20001)
    return 1.01 * float(np.max(np.abs(ref.activation_derivative(name, x=grid, alpha=alpha))))


def dims(max_value=40):
    """A dimension: mostly tile-edge sizes, sometimes any small size."""
    return st.one_of(st.sampled_from([s for s in EDGE_SIZES if s <= max_value]),
                     st.integers(0, max_value))


def seeds():
    return st.integers(0, 2**32 - 1)


def random_array(rng, shape, dtype, low=-1.0, high=1.0):
    return rng.uniform(low, high, size=shape).astype(dtype)


def with_layout(x, layout):
    """Same values as x, laid out in memory as C, Fortran, strided, padded rows
    (leading dimension larger than the row) or with negative strides."""
    x = np.asarray(x)
    if layout == "C":
        return np.ascontiguousarray(x)
    if layout == "F":
        return np.asfortranarray(x)
    if layout == "strided":
        buf = np.full(tuple(2 * s + 1 for s in x.shape), np.nan, dtype=x.dtype)
        view = buf[tuple(slice(1, None, 2) for _ in x.shape)]
    elif layout == "padded":
        buf = np.full(x.shape[:-1] + (x.shape[-1] + 3,), np.nan, dtype=x.dtype)
        view = buf[..., 1:x.shape[-1] + 1]
    elif layout == "reversed":
        buf = np.empty(x.shape, dtype=x.dtype)
        view = buf[tuple(slice(None, None, -1) for _ in x.shape)]
    else:
        raise ValueError(layout)
    view[...] = x
    assert np.array_equal(view, x)
    return view


def gemm_error_bound(a_op, b_op, dtype, alpha=1.0, beta=0.0, c0=None, factor=2.0):
    """Elementwise bound on |C - Cref| for C = alpha op(A) op(B) + beta C0.

    A dot product of length k summed in any order in precision eps errs by at
    most k * eps * (|A||B|)_ij (first order); alpha, beta and the final sum add
    a few roundings more, hence k + 3. `factor` leaves room for the second order.
    """
    a64, b64 = np.abs(np.asarray(a_op, np.float64)), np.abs(np.asarray(b_op, np.float64))
    k = a64.shape[1]
    eps = np.finfo(dtype).eps
    magnitude = abs(alpha) * (a64 @ b64)
    if c0 is not None and beta != 0.0:
        magnitude = magnitude + abs(beta) * np.abs(np.asarray(c0, np.float64))
    return factor * (k + 3) * eps * magnitude + np.finfo(dtype).tiny


def assert_gemm_close(got, expected, bound, what=""):
    got64 = np.asarray(got, np.float64)
    err = np.abs(got64 - np.asarray(expected, np.float64))
    bad = ~(err <= bound)  # also catches NaN
    if bad.any():
        i = tuple(int(t[0]) for t in np.nonzero(bad))
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {bad.size} elements outside the GEMM error bound; "
            f"first at {i}: got {got64[i]!r}, expected {expected[i]!r}, |err| {err[i]:.3g} > bound {bound[i]:.3g}")


def tolerance(dtype, f32=(2e-5, 1e-6), f64=(1e-12, 1e-14)):
    """(rtol, atol) for a short elementwise formula in the given dtype."""
    rtol, atol = f32 if np.dtype(dtype) == np.float32 else f64
    return dict(rtol=rtol, atol=atol)


def assert_close(got, expected, dtype, **kwargs):
    np.testing.assert_allclose(np.asarray(got, np.float64), np.asarray(expected, np.float64),
                               **{**tolerance(dtype), **kwargs})


def numerical_gradient_in_place(f, x, h=1e-6):
    """Central finite differences of the scalar f() with respect to every element of x.

    x is perturbed in place and restored, so f can read it through a closure
    (a layer's parameter, say)."""
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        gflat[i] = central_difference(f, flat, i, h)
    return grad


def central_difference(f, x, index, h=1e-6):
    """(f() with x[index] + h, minus f() with x[index] - h) / 2h: one partial derivative of the
    scalar f(), which reads x; x[index] is perturbed in place and restored."""
    saved = x[index]
    x[index] = saved + h
    up = f()
    x[index] = saved - h
    down = f()
    x[index] = saved
    return (up - down) / (2 * h)


def numerical_gradient(f, x, h=1e-6):
    """Central finite differences of the scalar f at the float64 array x."""
    x = np.array(x, dtype=np.float64)
    return numerical_gradient_in_place(lambda: f(x), x, h)


def weights_of_kind(model, kind, seed, scale):
    """model with random norms and biases (zeros and ones would hide a swapped or skipped one), its
    products then made bf16 or int8 for kind "bf16" / "int8" (float32 and float64 stay as they are)."""
    from fastnet.layers.base import set_precision
    from fastnet.layers.quantized import quantize_params

    rng = np.random.default_rng(seed)
    for _, owner, name in model.named_params():
        if name in ("gamma", "beta", "b"):
            owner.params[name][:] = scale * rng.standard_normal(owner.params[name].shape)
    if kind == "bf16":
        set_precision([model], "bf16")
    if kind == "int8":
        quantize_params(model.named_params(), np.float32)
    return model


def guarded_array(values, at_end=True):
    """A copy of values placed flush against an inaccessible page (after its
    last byte, or before its first with at_end=False): reading or writing
    one element past the buffer kills the process with SIGSEGV. Linux only."""
    import ctypes
    import mmap
    values = np.asarray(values)
    page = mmap.PAGESIZE
    data_pages = max(1, -(-values.nbytes // page))
    total = (data_pages + 2) * page
    region = mmap.mmap(-1, total)
    base = ctypes.addressof(ctypes.c_char.from_buffer(region))
    mprotect = ctypes.CDLL(None).mprotect
    mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    if mprotect(base, page, 0) != 0 or mprotect(base + total - page, page, 0) != 0:
        raise OSError("mprotect failed")
    offset = total - page - values.nbytes if at_end else page
    arr = np.frombuffer(region, values.dtype, count=values.size, offset=offset).reshape(values.shape)
    arr[...] = values
    _GUARDED_REGIONS.append(region)  # the mapping must outlive the array
    return arr


_GUARDED_REGIONS = []


def run_guarded(script, paths):
    """Run a guarded-buffer script (see guarded_array) in a subprocess, once per
    CPU path in argv; assert it printed "ok" (a stray access kills it)."""
    import os
    import subprocess
    import sys
    here = os.path.dirname(os.path.abspath(__file__))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.dirname(here), here])}
    done = subprocess.run([sys.executable, "-c", script, *paths], env=env, cwd=here,
                          capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "ok", (done.returncode, done.stderr[-2000:])


_GUARDED_PREAMBLE = """
import sys
import numpy as np
import fastnet
from fastnet import ops
from helpers import guarded_array

rng = np.random.default_rng(0)
for path in sys.argv[1:]:
    fastnet._kernels.set_cpu_path(path)
    for at_end in (True, False):
        g = lambda v: guarded_array(v, at_end)
"""


def guarded_script(body):
    """A run_guarded script running `body` once per CPU path and guard side, with
    `g` (make a guarded copy), `rng`, `np`, `fastnet` and `ops` in scope."""
    import textwrap
    return _GUARDED_PREAMBLE + textwrap.indent(textwrap.dedent(body), " " * 8) + '\nprint("ok")\n'


def config_in_subprocess(**env):
    """fastnet.config() of a fresh interpreter with these environment variables."""
    import json
    import os
    import subprocess
    import sys
    code = "import fastnet, json; print(json.dumps(fastnet.config()))"
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env},
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def process_ended(pid, timeout=20.0):
    """True once process `pid` has exited, within `timeout` seconds: reaped here (our child),
    gone, or a zombie waiting for whoever reaps orphans; False if it still runs then."""
    import os
    import time
    deadline = time.monotonic() + timeout
    while True:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return True
        except ChildProcessError:
            pass
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except FileNotFoundError:  # gone, or no /proc here: ask the kernel
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
