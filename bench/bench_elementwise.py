"""Activations, softmax, cross-entropy and Adam: fastnet beside the NumPy
expression that computes the same thing (and PyTorch when it is installed),
one pytest-benchmark group per operation so the report shows ratios.
"fastnet" runs on fastnet.get_num_threads() threads, "fastnet-1t" on one
(NumPy's ufuncs are single-threaded; on a loaded machine extra threads wait
for a free core).

    python -m pytest bench/bench_elementwise.py --benchmark-columns=median,iqr,rounds
"""
import numpy as np
import pytest

import fastnet
from fastnet import ops

try:
    import torch
except ImportError:  # PyTorch is optional: only a point of comparison
    torch = None

IMPLS = ["fastnet", "fastnet-1t", "numpy", "torch"]
N = 1_000_000
ROWS, CLASSES = 256, 1000
GELU_C = np.float32(np.sqrt(2.0 / np.pi))


@pytest.fixture(scope="module")
def x1m():
    return np.random.default_rng(0).standard_normal(N).astype(np.float32) * 3


@pytest.fixture(scope="module")
def logits():
    return np.random.default_rng(1).standard_normal((ROWS, CLASSES)).astype(np.float32) * 4


@pytest.fixture(scope="module")
def labels():
    return np.random.default_rng(2).integers(0, CLASSES, ROWS)


@pytest.fixture
def threads_for(impl):
    """fastnet-1t runs the fastnet kernel on one thread."""
    if impl == "fastnet-1t":
        with fastnet.threads(1):
            yield
    else:
        yield


# ---- NumPy expressions -----------------------------------------------------------

def np_relu(x):
    return np.maximum(x, 0)


def np_sigmoid(x):
    return 1 / (1 + np.exp(-x))


def np_gelu(x):
    return 0.5 * x * (1 + np.tanh(GELU_C * (x + np.float32(0.044715) * (x * x * x))))


def np_softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def np_softmax_xent(x, y):
    shifted = x - x.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    s = e.sum(axis=1, keepdims=True)
    rows = np.arange(len(y))
    loss = float((np.log(s[:, 0]) - shifted[rows, y]).mean())
    grad = e / s
    grad[rows, y] -= 1
    grad /= len(y)
    return loss, grad


def np_adam(w, g, m, v, step, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
    m *= b1
    m += (1 - b1) * g
    v *= b2
    v += (1 - b2) * g * g
    w -= (lr / (1 - b1**step)) * m / (np.sqrt(v / (1 - b2**step)) + eps)


# ---- elementwise activations over 1M floats -------------------------------------

ACTIVATIONS = {"relu": (ops.relu, np_relu), "sigmoid": (ops.sigmoid, np_sigmoid), "gelu": (ops.gelu, np_gelu)}
TORCH_ACTIVATIONS = {"relu": "relu", "sigmoid": "sigmoid", "gelu": "gelu"}


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation_1m(benchmark, threads_for, x1m, name, impl):
    benchmark.group = f"{name}-1M"
    if impl.startswith("fastnet"):
        benchmark(ACTIVATIONS[name][0], x1m)
    elif impl == "numpy":
        benchmark(ACTIVATIONS[name][1], x1m)
    else:
        if torch is None:
            pytest.skip("PyTorch not installed")
        t = torch.from_numpy(x1m)
        fn = getattr(torch.nn.functional, TORCH_ACTIVATIONS[name])
        kwargs = {"approximate": "tanh"} if name == "gelu" else {}
        benchmark(fn, t, **kwargs)


# ---- softmax and cross-entropy, 256 x 1000 ---------------------------------------

@pytest.mark.parametrize("impl", IMPLS)
def test_softmax_256x1000(benchmark, threads_for, logits, impl):
    benchmark.group = "softmax-256x1000"
    if impl.startswith("fastnet"):
        benchmark(ops.softmax, logits)
    elif impl == "numpy":
        benchmark(np_softmax, logits)
    else:
        if torch is None:
            pytest.skip("PyTorch not installed")
        benchmark(torch.softmax, torch.from_numpy(logits), 1)


@pytest.mark.parametrize("impl", IMPLS)
def test_softmax_xent_256x1000(benchmark, threads_for, logits, labels, impl):
    """Loss and gradient with respect to the logits."""
    benchmark.group = "softmax-xent-256x1000"
    if impl.startswith("fastnet"):
        benchmark(ops.softmax_cross_entropy, logits, labels)
    elif impl == "numpy":
        benchmark(np_softmax_xent, logits, labels)
    else:
        if torch is None:
            pytest.skip("PyTorch not installed")
        y = torch.from_numpy(labels)

        def loss_and_grad():
            z = torch.from_numpy(logits).requires_grad_(True)
            loss = torch.nn.functional.cross_entropy(z, y)
            loss.backward()
            return loss.item(), z.grad

        benchmark(loss_and_grad)


# ---- Adam over 1M parameters -----------------------------------------------------

@pytest.mark.parametrize("impl", IMPLS)
def test_adam_1m(benchmark, threads_for, impl):
    benchmark.group = "adam-1M"
    rng = np.random.default_rng(3)
    w, g = rng.standard_normal(N).astype(np.float32), rng.standard_normal(N).astype(np.float32)
    m, v = np.zeros(N, np.float32), np.zeros(N, np.float32)
    if impl.startswith("fastnet"):
        benchmark(lambda: ops.adam_step(w, g, m, v, step=10))
    elif impl == "numpy":
        benchmark(np_adam, w, g, m, v, 10)
    else:
        if torch is None:
            pytest.skip("PyTorch not installed")
        p = torch.nn.Parameter(torch.from_numpy(w))
        p.grad = torch.from_numpy(g)
        opt = torch.optim.Adam([p], lr=1e-3, foreach=False)
        benchmark(opt.step)
