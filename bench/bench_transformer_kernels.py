"""Transformer kernels beside the NumPy reference (and PyTorch when installed).

Shapes are those of the seq2seq model: batch 32, length 20, d_model 128,
4 heads of 32. Each group holds fastnet, the reference and torch for one
operation, so the ratios come from one run:

    python -m pytest bench/bench_transformer_kernels.py --benchmark-group-by=group
"""
import numpy as np
import pytest

import fastnet
from fastnet import ops
from fastnet import reference as ref

try:
    import torch
except ImportError:  # torch is an optional benchmark companion
    torch = None

B, T, H, DH = 32, 20, 4, 32
D = H * DH
VOCAB = 64
IMPLS = ["fastnet", "numpy"] + (["torch"] if torch is not None else [])


@pytest.fixture(scope="module", autouse=True)
def same_threads():
    if torch is not None:
        torch.set_num_threads(fastnet.get_num_threads())


def attention_inputs():
    rng = np.random.default_rng(0)
    q, k, v, dout = (rng.standard_normal((B, T, H, DH)).astype(np.float32) for _ in range(4))
    mask = np.zeros((B, T), dtype=bool)
    mask[::2, 15:] = True  # half the batch padded, as real batches are
    return q, k, v, dout, mask


def torch_attention_step(q, k, v, dout, mask):
    """Forward + backward of torch's fused attention on the same layout."""
    tq, tk, tv = (torch.from_numpy(a).transpose(1, 2).requires_grad_() for a in (q, k, v))
    allowed = torch.from_numpy(~mask)[:, None, None, :]
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    out = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, attn_mask=allowed & causal)
    out.backward(torch.from_numpy(dout).transpose(1, 2))
    return tq.grad


@pytest.mark.parametrize("impl", IMPLS)
def test_attention_forward_backward(benchmark, impl):
    benchmark.group = f"attention fwd+bwd B={B} T={T} H={H} dh={DH} (causal, padded)"
    q, k, v, dout, mask = attention_inputs()
    if impl == "torch":
        benchmark(torch_attention_step, q, k, v, dout, mask)
        return
    lib = ops if impl == "fastnet" else ref

    def step():
        out, probs = lib.attention(q, k, v, key_padding_mask=mask, causal=True)
        return lib.attention_backward(dout, q, k, v, probs)

    benchmark(step)


@pytest.mark.parametrize("impl", IMPLS)
def test_attention_forward(benchmark, impl):
    benchmark.group = f"attention fwd B={B} T={T} H={H} dh={DH} (padded)"
    q, k, v, dout, mask = attention_inputs()
    if impl == "torch":
        tq, tk, tv = (torch.from_numpy(a).transpose(1, 2) for a in (q, k, v))
        allowed = torch.from_numpy(~mask)[:, None, None, :]
        with torch.no_grad():
            benchmark(torch.nn.functional.scaled_dot_product_attention, tq, tk, tv, attn_mask=allowed)
        return
    lib = ops if impl == "fastnet" else ref
    benchmark(lib.attention, q, k, v, key_padding_mask=mask)


def layer_norm_inputs():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((B * T, D)).astype(np.float32)
    gamma, beta = rng.standard_normal(D).astype(np.float32), rng.standard_normal(D).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    return x, gamma, beta, dy


@pytest.mark.parametrize("impl", IMPLS)
def test_layer_norm_forward_backward(benchmark, impl):
    benchmark.group = f"layer_norm fwd+bwd {B * T}x{D}"
    x, gamma, beta, dy = layer_norm_inputs()
    if impl == "torch":
        tx, tg, tb = (torch.from_numpy(a).requires_grad_() for a in (x, gamma, beta))
        tdy = torch.from_numpy(dy)

        def torch_step():
            tx.grad = tg.grad = tb.grad = None
            torch.nn.functional.layer_norm(tx, (D,), tg, tb).backward(tdy)

        benchmark(torch_step)
        return
    lib = ops if impl == "fastnet" else ref

    def step():
        y, mean, rstd = lib.layer_norm(x, gamma, beta)
        return lib.layer_norm_backward(dy, x, gamma, mean, rstd)

    benchmark(step)


def embedding_inputs():
    rng = np.random.default_rng(2)
    ids = rng.integers(0, VOCAB, size=(B, T))
    table = rng.standard_normal((VOCAB, D)).astype(np.float32)
    dout = rng.standard_normal((B, T, D)).astype(np.float32)
    return ids, table, dout


@pytest.mark.parametrize("impl", IMPLS)
def test_embedding_forward(benchmark, impl):
    benchmark.group = f"embedding fwd {B}x{T} ids, table {VOCAB}x{D}"
    ids, table, _ = embedding_inputs()
    if impl == "torch":
        benchmark(torch.nn.functional.embedding, torch.from_numpy(ids), torch.from_numpy(table))
        return
    lib = ops if impl == "fastnet" else ref
    benchmark(lib.embedding, ids, table)


@pytest.mark.parametrize("impl", IMPLS)
def test_embedding_backward(benchmark, impl):
    benchmark.group = f"embedding bwd {B}x{T} ids, table {VOCAB}x{D}"
    ids, table, dout = embedding_inputs()
    if impl == "torch":
        tids, tdout = torch.from_numpy(ids).reshape(-1), torch.from_numpy(dout).reshape(-1, D)

        def torch_step():
            return torch.zeros(VOCAB, D).index_add_(0, tids, tdout)

        benchmark(torch_step)
        return
    lib = ops if impl == "fastnet" else ref
    benchmark(lib.embedding_backward, ids, dout, VOCAB)


@pytest.mark.parametrize("impl", IMPLS)
def test_dropout_forward(benchmark, impl):
    benchmark.group = f"dropout fwd p=0.1 {B * T}x{4 * D}"
    x = np.random.default_rng(3).standard_normal((B * T, 4 * D)).astype(np.float32)
    if impl == "torch":
        tx = torch.from_numpy(x)
        benchmark(torch.nn.functional.dropout, tx, 0.1, True)
        return
    lib = ops if impl == "fastnet" else ref
    benchmark(lib.dropout, x, 0.1, 7)


@pytest.mark.parametrize("impl", IMPLS)
def test_residual_add(benchmark, impl):
    benchmark.group = f"residual add_ {B * T}x{D}"
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((B * T, D)).astype(np.float32), rng.standard_normal((B * T, D)).astype(np.float32)
    if impl == "torch":
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        benchmark(ta.add_, tb)
        return
    lib = ops if impl == "fastnet" else ref
    benchmark(lib.add_, a, b)
