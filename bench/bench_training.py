"""One training step (forward + backward + optimizer update), fastnet vs the NumPy reference vs PyTorch.

    python -m pytest bench/bench_training.py --benchmark-only --benchmark-group-by=group

Each network shape is one benchmark group, so the report puts the three
implementations side by side (the "Min/Median" columns give the ratios).
PyTorch cases are skipped when torch is not installed. All three use the
same thread count (fastnet.get_num_threads()); on a machine busy with other
work, OMP_NUM_THREADS=1 gives the steadiest side-by-side numbers, since a
descheduled OpenMP thread stalls every library's parallel regions alike.
"""
import numpy as np
import pytest

import fastnet as fn
from fastnet import reference as ref

# name: (layer widths, batch size, optimizer)
SHAPES = {
    "xor_2-8-2_b4_sgd": ((2, 8, 2), 4, "sgd"),
    "digits_64-128-10_b32_adam": ((64, 128, 10), 32, "adam"),
    "mnist_784-256-128-10_b64_sgd": ((784, 256, 128, 10), 64, "sgd"),
    "wide_784-1024-1024-10_b256_sgd": ((784, 1024, 1024, 10), 256, "sgd"),
}
LR = 1e-3


def batch(widths, batch_size, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch_size, widths[0])).astype(np.float32)
    y = rng.integers(0, widths[-1], size=batch_size).astype(np.int64)
    return x, y


# ---- fastnet -------------------------------------------------------------------
def fastnet_step(widths, optimizer, precision="float32"):
    layers = [fn.Dense(a, b, activation="relu") for a, b in zip(widths[:-2], widths[1:-1])]
    layers.append(fn.Dense(widths[-2], widths[-1]))
    opt = fn.SGD(LR) if optimizer == "sgd" else fn.Adam(LR)
    net = fn.Network(layers, optimizer=opt, seed=0, precision=precision)
    return net.train_on_batch


# ---- the NumPy reference (fastnet.reference: the same algorithm in plain NumPy) ----
class ReferenceMLP:
    def __init__(self, widths, optimizer, seed=0):
        rng = np.random.default_rng(seed)
        self.ws = [(rng.standard_normal((a, b)) * np.sqrt(2 / a)).astype(np.float32)
                   for a, b in zip(widths[:-1], widths[1:])]
        self.bs = [np.zeros(b, dtype=np.float32) for b in widths[1:]]
        self.params = self.ws + self.bs
        self.moments = [(np.zeros_like(p), np.zeros_like(p)) for p in self.params]
        self.optimizer = optimizer
        self.steps = 0

    def step(self, x, y):
        acts = [x]
        n = len(self.ws)
        for i, (w, b) in enumerate(zip(self.ws, self.bs)):
            acts.append(ref.dense(acts[-1], w, b, activation="relu" if i < n - 1 else "identity"))
        loss, dy = ref.softmax_cross_entropy(acts[-1], y)
        dws, dbs = [None] * n, [None] * n
        for i in reversed(range(n)):
            dy, dws[i], dbs[i] = ref.dense_backward(acts[i], self.ws[i], acts[i + 1], dy,
                                                    "relu" if i < n - 1 else "identity", need_dx=i > 0)
        self.steps += 1
        for p, g, (m, v) in zip(self.params, dws + dbs, self.moments):
            if self.optimizer == "sgd":
                ref.sgd_step(p, g, lr=LR)
            else:
                ref.adam_step(p, g, m, v, step=self.steps, lr=LR)
        return loss


# ---- PyTorch eager ------------------------------------------------------------
def torch_step(widths, optimizer, autocast=False):
    torch = pytest.importorskip("torch")
    torch.set_num_threads(fn.get_num_threads())
    torch.manual_seed(0)
    modules = []
    for a, b in zip(widths[:-2], widths[1:-1]):
        modules += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    modules.append(torch.nn.Linear(widths[-2], widths[-1]))
    model = torch.nn.Sequential(*modules)
    make_optimizer = torch.optim.SGD if optimizer == "sgd" else torch.optim.Adam
    opt = make_optimizer(model.parameters(), lr=LR)
    criterion = torch.nn.CrossEntropyLoss()

    def step(x, y):
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = criterion(model(x), y)
        loss.backward()
        opt.step()
        return loss.item()

    return step, torch


# bf16 (fastnet precision="bf16", PyTorch autocast) only where the GEMMs are big enough to matter.
BF16_SHAPES = {"wide_784-1024-1024-10_b256_sgd"}
IMPLS = ["fastnet", "numpy_reference", "torch", "fastnet-bf16", "torch-autocast-bf16"]


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("impl", IMPLS)
def test_training_step(benchmark, shape, impl):
    widths, batch_size, optimizer = SHAPES[shape]
    if impl.endswith("bf16") and shape not in BF16_SHAPES:
        pytest.skip("bf16 is benchmarked on the wide MLP only")
    benchmark.group = shape
    benchmark.extra_info["path"] = fn.config()["mma_path"]
    x, y = batch(widths, batch_size)
    if impl.startswith("fastnet"):
        step = fastnet_step(widths, optimizer, "bf16" if impl == "fastnet-bf16" else "float32")
    elif impl == "numpy_reference":
        step = ReferenceMLP(widths, optimizer).step
    else:
        step, torch = torch_step(widths, optimizer, autocast=impl == "torch-autocast-bf16")
        x, y = torch.from_numpy(x), torch.from_numpy(y)
    first = step(x, y)
    benchmark(step, x, y)
    assert np.isfinite(first)


# ---- end to end: the digits classifier, 30 epochs, vs scikit-learn's MLPClassifier ----
@pytest.mark.parametrize("impl", ["fastnet", "sklearn"])
def test_digits_fit_30_epochs(benchmark, impl):
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    digits = sklearn_datasets.load_digits()
    X, y = (digits.data / 16.0).astype(np.float32), digits.target
    Xtr, Xte, ytr, yte = fn.train_test_split(X, y, test_size=0.25, seed=0, stratify=y)
    benchmark.group = "digits_64-128-10_fit_30_epochs"
    if impl == "fastnet":
        def train():
            net = fn.Network([fn.Dense(64, 128, activation="relu"), fn.Dense(128, 10)], optimizer=fn.Adam(1e-3))
            net.fit(Xtr, ytr, epochs=30, batch_size=32, verbose=0)
            return net.evaluate(Xte, yte)["accuracy"]
    else:
        import warnings

        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPClassifier

        def train():
            clf = MLPClassifier(hidden_layer_sizes=(128,), solver="adam", learning_rate_init=1e-3, batch_size=32,
                                max_iter=30, tol=0.0, n_iter_no_change=31, random_state=0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                clf.fit(Xtr, ytr)
            return clf.score(Xte, yte)

    accuracy = benchmark.pedantic(train, rounds=3, iterations=1)
    assert accuracy >= 0.95
