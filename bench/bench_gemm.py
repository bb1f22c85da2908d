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

import fastnet
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


# ---- bf16 GEMM beside PyTorch's bfloat16 matmul (and both float32s) --------------------
# fastnet-bf16 takes float32 arrays and rounds while packing; torch-bf16 is
# handed bfloat16 tensors made beforehand (its best case). The CPU path that
# ran is in extra_info["path"] (fastnet.config()'s mma_path).

BF16_SHAPES = [(1024, 1024, 1024, "NN"), (2048, 2048, 2048, "NN")] + [
    (256, 1024, 1024, t) for t in ("NN", "NT", "TN", "TT")] + [(256, 1024, 784, "NN")]


def bf16_product(impl, m, n, k, trans, torch=None):
    ta, tb = trans[0] == "T", trans[1] == "T"
    rng = np.random.default_rng(0)
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
    if impl == "fastnet-bf16":
        return lambda: ops.matmul(a, b, trans_a=ta, trans_b=tb, precision="bf16")
    if impl == "fastnet":
        return lambda: ops.matmul(a, b, trans_a=ta, trans_b=tb)
    if impl == "numpy":
        a_op, b_op = (a.T if ta else a), (b.T if tb else b)
        return lambda: a_op @ b_op
    dtype = torch.bfloat16 if impl == "torch-bf16" else torch.float32
    ta_, tb_ = torch.from_numpy(a).to(dtype), torch.from_numpy(b).to(dtype)
    ta_, tb_ = (ta_.T if ta else ta_), (tb_.T if tb else tb_)
    return lambda: torch.mm(ta_, tb_)


@pytest.mark.parametrize("impl", ["fastnet-bf16", "torch-bf16", "fastnet", "numpy"])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape", BF16_SHAPES, ids=lambda s: "x".join(map(str, s[:3])) + "-" + s[3])
def test_bf16_gemm(benchmark, tools, shape, threads, impl):
    if impl == "torch-bf16" and tools.torch is None:
        pytest.skip("PyTorch is not installed")
    m, n, k, trans = shape
    benchmark.group = f"bf16-{m}x{n}x{k}-{trans}-{threads}t"
    benchmark.extra_info["path"] = fastnet.config()["mma_path"]
    with tools.all_threads(threads):
        tools.run(benchmark, bf16_product(impl, m, n, k, trans, tools.torch), impl, flops=2 * m * n * k,
                  seconds=1.0, max_rounds=30 if m * n * k >= 2**30 else 100)
