"""Threads and CPU path: how many cores the kernels use and which code runs."""
import contextlib
import os

# Names, not the module: the import linter sees `fastnet._kernels` (compiled) only this way.
from fastnet._kernels import (
    amx_permission,
    best_cpu_path,
    best_mma_path,
    get_cpu_path,
    get_int8_path,
    get_local_threads,
    get_mma_path,
    openmp_enabled,
    set_cpu_path,
    set_local_threads,
)
from fastnet._kernels import get_num_threads as _kernel_threads
from fastnet._kernels import set_num_threads as _set_kernel_threads

__version__ = "0.1.0"


def _default_threads():
    env = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _check_count(n):
    if not isinstance(n, int) or isinstance(n, bool):
        raise TypeError(f"number of threads must be an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"number of threads must be >= 1, got {n}")


def set_num_threads(n):
    """Use n threads in every kernel from now on: the process-wide default (a Python
    thread inside a `threads` block keeps its own count until the block ends)."""
    _check_count(n)
    _set_kernel_threads(n)


def get_num_threads():
    """The kernel thread count of the calling Python thread."""
    return _kernel_threads()


@contextlib.contextmanager
def threads(n):
    """Run the block with n kernel threads in this Python thread only, then restore what it had.

    The count is thread-local: blocks in other Python threads, overlapping or
    not, neither see nor change it, and each restores exactly what it found.
    """
    _check_count(n)
    previous = get_local_threads()
    set_local_threads(n)
    try:
        yield
    finally:
        set_local_threads(previous)


def _init_from_environment():
    _set_kernel_threads(_default_threads())
    cpu = os.environ.get("FASTNET_CPU", "auto").strip().lower() or "auto"
    set_cpu_path(cpu)


def config():
    """The build and run-time configuration as a dict."""
    return {
        "version": __version__,
        "cpu_path": get_cpu_path(),
        "best_cpu_path": best_cpu_path(),
        "mma_path": get_mma_path(),
        "int8_path": get_int8_path(),
        "best_mma_path": best_mma_path(),
        "amx_permission": amx_permission(),
        "openmp": openmp_enabled(),
        "threads": get_num_threads(),
    }


def show_config():
    """Print version, CPU path, OpenMP on/off and thread count."""
    c = config()
    print(f"fastnet {c['version']}")
    print(f"  cpu path : {c['cpu_path']} (best on this machine: {c['best_cpu_path']})")
    print(f"  bf16/int8: {c['mma_path']} (best on this machine: {c['best_mma_path']}; "
          f"AMX permission: {c['amx_permission']})")
    print(f"  int8     : {c['int8_path']} kernels")
    print(f"  openmp   : {'on' if c['openmp'] else 'off (single-threaded build)'}")
    print(f"  threads  : {c['threads']}")
