"""A decoder layer's inference step in one C call (ops.DecoderLayerStep, csrc/decoder_step.c)
against TransformerDecoderLayer.step, which calls the same kernels one by one from Python:
the same bits for every kind of weights, CPU path, batch and thread count; the same caches;
NaN where the layer-by-layer step has NaN; clear errors for bad arguments."""
import numpy as np
import pytest

import fastnet
from fastnet import ops
from fastnet.layers.base import set_precision
from fastnet.layers.quantized import quantize_params
from fastnet.seq2seq import Decoder, TransformerDecoderLayer
from fastnet.seq2seq.layers import KVCache

D, H, F = 32, 4, 48
KINDS = ["float32", "bf16", "int8"]


def layer(kind, activation="gelu", seed=3):
    """A decoder layer with random norms and biases (zeros and ones would hide a swapped pair)."""
    rng = np.random.default_rng(seed)
    L = TransformerDecoderLayer(D, H, F, dropout=0.0, activation=activation, seed=seed)
    for norm in (L.norm1, L.norm2, L.norm3):
        norm.params["gamma"][:] = rng.standard_normal(D)
        norm.params["beta"][:] = rng.standard_normal(D)
    for _, owner, name in L.named_params():
        if name == "b":
            owner.params["b"][:] = 0.1 * rng.standard_normal(owner.params["b"].shape)
    if kind == "bf16":
        set_precision([L], "bf16")
    if kind == "int8":
        quantize_params(L.named_params(), np.float32)
    return L


def run_both(L, rng, batch=5, steps=4, memory_rows=None, mask=True, rows=3, src_len=7, first=None):
    """Steps through layer.step and the one-call step side by side; returns both outputs and caches."""
    memory = rng.standard_normal((rows, src_len, D)).astype(np.float32)
    memory_kv = L.cross_attn.project_memory(memory)
    memory_mask = None
    if mask:
        memory_mask = np.zeros((rows, src_len), bool)
        memory_mask[-1, src_len // 2:] = True
    caches = [KVCache(batch, steps, H, D // H, np.float32) for _ in range(2)]
    one_call = L.one_call_step()
    outputs = ([], [])
    for t in range(steps):
        x = rng.standard_normal((batch, 1, D)).astype(np.float32)
        if t == 0 and first is not None:
            x[:] = first
        outputs[0].append(L.step(x, caches[0], memory_kv, memory_mask, memory_rows))
        outputs[1].append(one_call(x.copy(), caches[1], memory_kv, memory_mask, memory_rows))
    return outputs, caches


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("activation", ["gelu", "relu"])
@pytest.mark.parametrize("threads", [1, 2])
def test_one_call_step_is_bitwise_the_layer_step(lowp_path, kind, activation, threads):
    rng = np.random.default_rng(0)
    L = layer(kind, activation)
    with fastnet.threads(threads):
        (python, one_call), caches = run_both(L, rng, memory_rows=np.array([0, 2, 1, 1, 2]))
    for t, (a, b) in enumerate(zip(python, one_call)):
        np.testing.assert_array_equal(b, a, err_msg=f"step {t}")
    np.testing.assert_array_equal(caches[1].k, caches[0].k)
    np.testing.assert_array_equal(caches[1].v, caches[0].v)
    assert caches[0].length == caches[1].length == 4


@pytest.mark.parametrize("batch", [0, 1, 2, 17])
def test_one_call_step_batch_sizes_without_mask_or_rows(cpu_path, batch):
    rng = np.random.default_rng(1)
    (python, one_call), _ = run_both(layer("float32"), rng, batch=batch, mask=False, rows=batch)
    for a, b in zip(python, one_call):
        assert b.shape == (batch, 1, D)
        np.testing.assert_array_equal(b, a)


def test_nan_in_one_row_is_nan_where_the_layer_step_has_it(cpu_path):
    rng = np.random.default_rng(2)
    first = rng.standard_normal((5, 1, D)).astype(np.float32)
    first[1, 0, 3] = np.nan
    (python, one_call), _ = run_both(layer("float32"), rng, rows=5, first=first)
    for a, b in zip(python, one_call):
        np.testing.assert_array_equal(np.isnan(b), np.isnan(a))
        assert np.isnan(a).any()
        np.testing.assert_array_equal(b[~np.isnan(b)], a[~np.isnan(a)])


def test_float64_layers_keep_the_python_step():
    assert TransformerDecoderLayer(D, H, F, dtype=np.float64).one_call_step() is None


def test_decoder_steps_and_translation_equal_the_layer_by_layer_path(monkeypatch):
    """Decoder.step takes the one-call path for float32 and gives what layer.step gives, after a
    reorder too (rows dropped and repeated, as greedy and beam search do)."""
    rng = np.random.default_rng(4)
    dec = Decoder(vocab_size=40, d_model=D, n_heads=H, n_layers=2, d_ff=F, max_len=12, dropout=0.0,
                  dtype=np.float32)
    memory = rng.standard_normal((3, 6, D)).astype(np.float32)
    mask = np.zeros((3, 6), bool)
    mask[0, 4:] = True
    tokens = rng.integers(3, 40, size=(3, 5))

    def run():
        state = dec.start(memory, mask, capacity=8)
        logits = [dec.step(state, tokens[:, 0]), dec.step(state, tokens[:, 1])]
        state.reorder(np.array([2, 0, 0]))
        logits += [dec.step(state, tokens[[2, 0, 0], t]) for t in range(2, 5)]
        return state, logits

    state, fast = run()
    assert state.layer_steps is not None
    monkeypatch.setattr(TransformerDecoderLayer, "one_call_step", lambda self: None)
    state, slow = run()
    assert state.layer_steps is None
    for a, b in zip(slow, fast):
        np.testing.assert_array_equal(b, a)


def step_args(L, batch=2, capacity=3, rows=2, src_len=4):
    rng = np.random.default_rng(5)
    kv = L.cross_attn.project_memory(rng.standard_normal((rows, src_len, D)).astype(np.float32))
    cache = KVCache(batch, capacity, H, D // H, np.float32)
    return dict(x=rng.standard_normal((batch, D)).astype(np.float32), cache_k=cache.k, cache_v=cache.v,
                length=0, memory_kv=kv, memory_mask=None, memory_rows=None)


@pytest.mark.parametrize("change, error, message", [
    (dict(x=np.zeros((2, D))), TypeError, "x must be a float32 ndarray"),
    (dict(x=np.zeros((2, D + 1), np.float32)), TypeError, "x must be a float32 ndarray"),
    (dict(x=np.zeros((D, 2), np.float32).T), ValueError, "x must be C-contiguous"),
    (dict(length=3), ValueError, "key/value cache is full"),
    (dict(length=-1), ValueError, "length must be >= 0"),
    (dict(cache_k=np.zeros((2, 3, H, D // H))), TypeError, "cache_k must be a float32 ndarray"),
    (dict(cache_v=np.zeros((2, 4, H, D // H), np.float32)), ValueError, "same shape and strides"),
    (dict(cache_k=np.zeros((2, 3, D // H, H), np.float32).transpose(0, 1, 3, 2)), ValueError, "contiguously"),
    (dict(memory_kv=np.zeros((2, 4, D), np.float32)), ValueError, "memory_kv must have shape"),
    (dict(memory_rows=np.array([0, 2])), ValueError, r"memory_rows must lie in \[0, 2\)"),
    (dict(memory_rows=np.array([0, -1])), ValueError, r"memory_rows must lie in \[0, 2\)"),
    (dict(memory_rows=np.array([0])), ValueError, r"memory_rows must have shape \(2,\)"),
    (dict(memory_rows=np.array([0.0, 1.0])), TypeError, "must be integers"),
    (dict(memory_mask=np.zeros((2, 5), bool)), ValueError, "memory_mask must be bool of shape"),
    (dict(memory_mask=np.zeros((2, 4), np.int8)), ValueError, "memory_mask must be bool of shape"),
])
def test_bad_step_arguments_are_named(change, error, message):
    L = layer("float32")
    args = {**step_args(L), **change}
    with pytest.raises(error, match=message):
        L.one_call_step().kernel.step(**args)


def test_memory_rows_may_pick_from_another_number_of_rows_and_without_them_rows_must_match():
    L = layer("float32")
    args = step_args(L, batch=2, rows=3)
    with pytest.raises(ValueError, match="without memory_rows the memory must have 2 rows, got 3"):
        L.one_call_step().kernel.step(**args)
    args["memory_rows"] = np.array([2, 2])
    L.one_call_step().kernel.step(**args)


def test_read_only_cache_is_refused():
    L = layer("float32")
    args = step_args(L)
    args["cache_k"].flags.writeable = False
    with pytest.raises(ValueError, match="cache_k is read-only"):
        L.one_call_step().kernel.step(**args)


def test_bad_weights_name_the_layer():
    L = layer("float32")
    norms = [(n.params["gamma"], n.params["beta"], n.eps) for n in (L.norm1, L.norm2, L.norm3)]
    good = ("float32", np.zeros((D, 3 * D), np.float32), None, "identity", 0.01)
    square = ("float32", np.zeros((D, D), np.float32), None, "identity", 0.01)
    up, down = ("float32", np.zeros((D, F), np.float32), None, "gelu", 0.01), \
        ("float32", np.zeros((F, D), np.float32), None, "identity", 0.01)
    ops.DecoderLayerStep(D, H, F, norms, [good, square, square, square, up, down])
    with pytest.raises(ValueError, match=r"ff_down: w must have shape \(48, 32\)"):
        ops.DecoderLayerStep(D, H, F, norms, [good, square, square, square, up, up])
    with pytest.raises(ValueError, match="cross_q: unknown weight kind 'float16'"):
        ops.DecoderLayerStep(D, H, F, norms, [good, square, ("float16",) + square[1:], square, up, down])
    with pytest.raises(ValueError, match="unknown activation 'swish2'"):
        ops.DecoderLayerStep(D, H, F, norms, [good, square, square, square, up[:3] + ("swish2", 0.01), down])
    with pytest.raises(ValueError, match=r"norm2: gamma and beta must have shape \(32,\)"):
        ops.DecoderLayerStep(D, H, F, [norms[0], (np.ones(3, np.float32),) + norms[1][1:], norms[2]],
                             [good, square, square, square, up, down])
    with pytest.raises(ValueError, match="positive multiple of heads"):
        ops.DecoderLayerStep(D, 5, F, norms, [good, square, square, square, up, down])
    with pytest.raises(ValueError, match="needs 3 norms and 6 dense layers"):
        ops.DecoderLayerStep(D, H, F, norms, [good])


def test_an_empty_memory_reads_as_zeros_like_the_layer_step(cpu_path):
    rng = np.random.default_rng(6)
    (python, one_call), _ = run_both(layer("float32"), rng, batch=2, rows=2, src_len=0, mask=False)
    for a, b in zip(python, one_call):
        np.testing.assert_array_equal(b, a)
