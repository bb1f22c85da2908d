"""sgemm and the fused dense layer beside NumPy (and PyTorch when installed).

One pytest-benchmark group per shape and thread count (e.g. "sgemm-512-2t"),
each holding fastnet's and NumPy's timing of the same product, so
bench/report.py can print the ratio. NumPy's BLAS is limited to the same
number of threads with threadpoolctl.

    python -m pytest bench/bench_gemm.py --benchmark-json=gemm.json
    python bench/report.py gemm.json
"""
import numpy as np
import pytest

from fastnet import ops

IMPLS = ["fastnet", "numpy", "torch"]


def operands(m, n, k, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((m, k)).astype(np.float32), rng.standard_normal((k, n)).astype(np.float32)


def product(impl, a, b, torch=None):
    """A callable computing a @ b with impl (output allocated per call, as users do)."""
    if impl == "fastnet":
        return lambda: ops.matmul(a, b)
    if impl == "numpy":
        return lambda: a @ b
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    return lambda: torch.mm(ta, tb)


# ---- square sgemm, 1 and 2 threads ----------------------------------------------------

@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("size", [256, 512, 1024, 2048])
def test_sgemm_square(benchmark, tools, size, threads, impl):
    tools.skip_without_torch(impl)
    benchmark.group = f"sgemm-{size}-{threads}t"
    a, b = operands(size, size, size)
    with tools.all_threads(threads):
        c = tools.run(benchmark, product(impl, a, b, tools.torch), impl, flops=2 * size**3,
                seconds=1.0 if size >= 1024 else 0.5, max_rounds=50 if size >= 1024 else 200)
    np.testing.assert_allclose(np.asarray(c)[:4, :4], (a[:4].astype(np.float64) @ b[:, :4]), rtol=1e-3, atol=1e-2)


# ---- small and skinny shapes (where packing and call overhead matter) -------------------

SMALL = [(64, 64, 64), (32, 128, 64), (64, 256, 784), (4, 8, 2)]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("shape", SMALL, ids=lambda s: "x".join(map(str, s)))
def test_sgemm_small(benchmark, tools, shape, impl):
    tools.skip_without_torch(impl)
    m, n, k = shape
    benchmark.group = f"sgemm-small-{m}x{n}x{k}"
    a, b = operands(m, n, k)
    with tools.all_threads(2):
        tools.run(benchmark, product(impl, a, b, tools.torch), impl, flops=2 * m * n * k)


# ---- fused dense forward: bias + relu in the GEMM epilogue ------------------------------

DENSE = [(256, 512, 784), (1024, 1024, 1024), (64, 128, 64)]


@pytest.mark.parametrize("impl", ["fastnet-dense", "fastnet-gemm", "numpy", "torch"])
@pytest.mark.parametrize("shape", DENSE, ids=lambda s: "x".join(map(str, s)))
def test_dense_relu(benchmark, tools, shape, impl):
    """fastnet-dense = ops.dense (fused); fastnet-gemm = the bare ops.matmul of the
    same shape (the floor the epilogue is measured against); numpy = the
    expression np.maximum(x @ w + b, 0)."""
    tools.skip_without_torch(impl)
    torch = tools.torch
    m, n, k = shape
    benchmark.group = f"dense-relu-{m}x{n}x{k}"
    x, w = operands(m, n, k, seed=1)
    bias = np.random.default_rng(2).standard_normal(n).astype(np.float32)
    if impl == "fastnet-dense":
        fn = lambda: ops.dense(x, w, bias, activation="relu")  # noqa: E731
    elif impl == "fastnet-gemm":
        fn = lambda: ops.matmul(x, w)  # noqa: E731
    elif impl == "numpy":
        fn = lambda: np.maximum(x @ w + bias, 0)  # noqa: E731
    else:
        tx, tw, tb = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(bias)
        fn = lambda: torch.relu(torch.addmm(tb, tx, tw))  # noqa: E731
    with tools.all_threads(2):
        tools.run(benchmark, fn, impl, flops=2 * m * n * k)


# ---- call overhead: a 4x8 @ 8x2 product from Python ------------------------------------

@pytest.mark.parametrize("impl", IMPLS)
def test_call_overhead(benchmark, tools, impl):
    tools.skip_without_torch(impl)
    benchmark.group = "call-overhead-4x8x2"
    a, b = operands(4, 2, 8)
    with tools.all_threads(1):
        tools.run(benchmark, product(impl, a, b, tools.torch), impl)
