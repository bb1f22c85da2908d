"""Shared helpers of the benchmarks (pytest-benchmark; not tests).

Run everything and keep the numbers for bench/report.py:

    python -m pytest bench/ --benchmark-json=out.json
    python bench/report.py out.json

Files named bench_*.py are collected here (the test suite only collects
test_*.py). Each benchmark puts the implementation's name in
extra_info["impl"] and, when it knows them, the floating-point operations of
one call in extra_info["flops"], so the report can print GFLOP/s and the
ratio to the NumPy entry of the same group.
"""
import contextlib
import time

import pytest

import fastnet

try:  # limits OpenBLAS / MKL inside NumPy at run time; bench-only dependency
    from threadpoolctl import threadpool_limits
except ImportError:
    threadpool_limits = None

try:  # PyTorch is optional: one more point of comparison when installed
    import torch
except ImportError:
    torch = None


def pytest_collect_file(parent, file_path):
    if file_path.suffix == ".py" and file_path.name.startswith("bench_") and not parent.session.isinitpath(file_path):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


def pytest_report_header(config):
    blas = "threadpoolctl missing: NumPy's BLAS threads NOT limited" if threadpool_limits is None else "threadpoolctl"
    return [f"fastnet {fastnet.config()}", f"numpy BLAS thread limits: {blas}",
            f"torch: {torch.__version__ if torch else 'not installed'}"]


@contextlib.contextmanager
def all_threads(n):
    """Run fastnet, NumPy's BLAS and PyTorch (if present) on n threads each."""
    with contextlib.ExitStack() as stack:
        stack.enter_context(fastnet.threads(n))
        if threadpool_limits is not None:
            stack.enter_context(threadpool_limits(limits=n, user_api="blas"))
        if torch is not None:
            before = torch.get_num_threads()
            torch.set_num_threads(n)
            stack.callback(torch.set_num_threads, before)
        yield


def run(benchmark, fn, impl, flops=None, seconds=0.4, max_rounds=200):
    """Benchmark fn() with a round count that fits the time budget.

    Calls far below a millisecond are repeated inside a round (iterations) so
    the timer's own cost does not count. Returns fn's last result."""
    benchmark.extra_info["impl"] = impl
    if flops is not None:
        benchmark.extra_info["flops"] = flops
    fn()  # warm up: page in outputs, wake threads
    start = time.perf_counter()
    result = fn()
    once = max(time.perf_counter() - start, 1e-7)
    iterations = max(1, min(1000, int(2e-4 / once)))
    rounds = max(5, min(max_rounds, int(seconds / (once * iterations))))
    benchmark.pedantic(fn, rounds=rounds, iterations=iterations, warmup_rounds=1)
    return result


def skip_without_torch(impl):
    if impl == "torch" and torch is None:
        pytest.skip("PyTorch is not installed")


class BenchTools:
    """What bench modules use, handed out by the `tools` fixture (bench
    modules do not import conftest: its module name is not unique)."""
    all_threads = staticmethod(all_threads)
    run = staticmethod(run)
    skip_without_torch = staticmethod(skip_without_torch)
    torch = torch


@pytest.fixture
def tools():
    return BenchTools
