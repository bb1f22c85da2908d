"""Pixels: speed of an ImageDecoder training step, and the quality of the pictures it draws.

    python -m pytest bench/bench_image.py --benchmark-only --benchmark-group-by=group

Speed: one training step (forward, MSE, backward, Adam) of the default
ImageDecoder (d_model 128 -> 256 -> 512 -> 32x32x3, batch 64): fastnet beside
the same algorithm in plain NumPy (fastnet.reference) and PyTorch (skipped
when not installed), same thread count, one benchmark group.

Quality: a small Translator is trained briefly on toy sentences that include
picture descriptions; a pixel decoder then learns for at most 3 minutes to
draw from its frozen representation. On held-out descriptions (colour and
shape never drawn together in training) the mean squared pixel error must be
<= 0.4x that of predicting the mean training picture. The grid of drawn and
true pictures is saved into $FASTNET_BENCH_OUT (default: a folder in the
system temporary directory) and its path printed and stored in extra_info.
"""
import os
import tempfile
import time

import numpy as np
import pytest

import fastnet as fn
from fastnet import reference as ref
from fastnet.image import ImageDecoder

try:
    import torch
except ImportError:  # PyTorch is optional: only a point of comparison
    torch = None

D_MODEL, HIDDEN, SIZE, BATCH, LR = 128, (256, 512), 32, 64, 1e-3
PIXEL_MINUTES = 3.0
TRANSLATOR_MINUTES = 1.5


@pytest.fixture(scope="module")
def step_batch():
    rng = np.random.default_rng(0)
    reps = rng.standard_normal((BATCH, D_MODEL)).astype(np.float32)
    pictures = rng.random((BATCH, SIZE, SIZE, 3)).astype(np.float32)
    return reps, pictures


# ---- fastnet ---------------------------------------------------------------------
def fastnet_step():
    dec = ImageDecoder(D_MODEL, size=SIZE, hidden=HIDDEN, seed=0)
    opt = fn.Adam(LR)
    store = dec.store
    opt.bind(store)

    def step(reps, pictures):
        store.zero_grad()
        loss = dec.loss_and_backward(reps, pictures)
        opt.step()
        return loss
    return step


# ---- the same algorithm in plain NumPy (fastnet.reference) ------------------------
class ReferenceDecoder:
    def __init__(self, seed=0):
        rng = np.random.default_rng(seed)
        widths = (D_MODEL,) + HIDDEN + (SIZE * SIZE * 3,)
        self.ws = [(rng.standard_normal((a, b)) * np.sqrt(2 / a)).astype(np.float32)
                   for a, b in zip(widths[:-1], widths[1:])]
        self.bs = [np.zeros(b, dtype=np.float32) for b in widths[1:]]
        self.params = self.ws + self.bs
        self.moments = [(np.zeros_like(p), np.zeros_like(p)) for p in self.params]
        self.t = 0

    def step(self, reps, pictures):
        xs, x = [], reps
        for i, (w, b) in enumerate(zip(self.ws, self.bs)):
            xs.append(x)
            act = "sigmoid" if i == len(self.ws) - 1 else "relu"
            x = ref.activation(x @ w + b, act)
        loss, dy = ref.mse(x, pictures.reshape(x.shape))
        grads_w, grads_b = [None] * len(self.ws), [None] * len(self.ws)
        for i in reversed(range(len(self.ws))):
            y = x if i == len(self.ws) - 1 else xs[i + 1]
            dz = dy * (y * (1 - y) if i == len(self.ws) - 1 else (y > 0))
            grads_w[i], grads_b[i] = xs[i].T @ dz, dz.sum(axis=0)
            dy = dz @ self.ws[i].T
        self.t += 1
        for p, g, (m, v) in zip(self.params, grads_w + grads_b, self.moments):
            ref.adam_step(p, g, m, v, step=self.t, lr=LR)
        return loss


# ---- PyTorch -------------------------------------------------------------------
def torch_step():
    torch.manual_seed(0)
    torch.set_num_threads(fn.get_num_threads())
    layers = []
    widths = (D_MODEL,) + HIDDEN
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    layers += [torch.nn.Linear(widths[-1], SIZE * SIZE * 3), torch.nn.Sigmoid()]
    model = torch.nn.Sequential(*layers)
    opt = torch.optim.Adam(model.parameters(), lr=LR)

    def step(reps, pictures):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(reps), pictures)
        loss.backward()
        opt.step()
        return float(loss)
    return step


@pytest.mark.benchmark(group="image_decoder_step_b64_128-256-512-3072")
def test_step_fastnet(benchmark, step_batch):
    step = fastnet_step()
    benchmark(step, *step_batch)


@pytest.mark.benchmark(group="image_decoder_step_b64_128-256-512-3072")
def test_step_numpy_reference(benchmark, step_batch):
    benchmark(ReferenceDecoder().step, *step_batch)


@pytest.mark.benchmark(group="image_decoder_step_b64_128-256-512-3072")
def test_step_torch(benchmark, step_batch):
    if torch is None:
        pytest.skip("PyTorch not installed")
    reps, pictures = step_batch
    benchmark(torch_step(), torch.from_numpy(reps), torch.from_numpy(pictures.reshape(BATCH, -1)))


# ---- quality -------------------------------------------------------------------
def _translator(seed=0):
    from fastnet.datasets import toy_translations

    data = toy_translations(2000, seed=seed, split="train", pictures=0.3)
    tr = fn.Translator.build(data.en, {"sv": data.sv, "es": data.es}, d_model=64, n_heads=4, n_layers=2,
                             d_ff=128, dropout=0.0, tokenizer="word", seed=seed)
    tr.fit(data.en, {"sv": data.sv, "es": data.es}, epochs=60, batch_size=32, lr=3e-3, warmup=100,
           max_minutes=TRANSLATOR_MINUTES, verbose=0)
    return tr


@pytest.mark.benchmark(group="image_quality")
def test_held_out_pictures_beat_the_mean_picture(benchmark):
    from fastnet.demo import demo_pictures

    out_dir = os.environ.get("FASTNET_BENCH_OUT",
                             os.path.join(tempfile.gettempdir(), "fastnet-bench-pictures"))
    tr = _translator()
    lines = []
    started = time.monotonic()
    result = benchmark.pedantic(
        demo_pictures, kwargs=dict(print=lines.append, out_dir=out_dir, translator=tr,
                                   minutes=PIXEL_MINUTES, n_train=3000, n_test=300),
        rounds=1, iterations=1)
    elapsed = time.monotonic() - started
    print("\n".join(lines))
    benchmark.extra_info.update(ratio=result["ratio"], mse=result["mse"], baseline_mse=result["baseline_mse"],
                                epochs=len(result["history"].epoch), grid=result["pictures"],
                                seconds=elapsed)
    assert result["ratio"] <= 0.4, f"held-out pixel error is {result['ratio']:.2f}x the mean picture's"
