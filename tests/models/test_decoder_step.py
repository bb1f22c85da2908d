"""A decoder step in one C call (ops.DecoderStep, csrc/decoder_step.c) against the layer-by-layer
path (Embedding, PositionalEncoding, TransformerDecoderLayer.step, the final LayerNorm), which
calls the same kernels one by one from Python: the same bits for every kind of weights, CPU
path, batch and thread count, through reorders; the same caches; NaN where the layer-by-layer
step has NaN; clear errors for bad arguments."""
import numpy as np
import pytest

import fastnet
from fastnet import ops
from fastnet.layers.base import set_precision
from fastnet.layers.quantized import quantize_params
from fastnet.seq2seq import Decoder, TransformerDecoderLayer
from helpers import weights_of_kind

D, H, F, V = 32, 4, 48, 40
KINDS = ["float32", "bf16", "int8"]


def decoder(kind="float32", activation="gelu", seed=3):
    """A 2-layer decoder with random norms and biases (zeros and ones would hide a swapped pair)."""
    rng = np.random.default_rng(seed)
    dec = Decoder(vocab_size=V, d_model=D, n_heads=H, n_layers=2, d_ff=F, max_len=12, dropout=0.0,
                  activation=activation, seed=seed, dtype=np.float32)
    for _, owner, name in dec.named_params():
        if name in ("gamma", "beta"):
            owner.params[name][:] = rng.standard_normal(owner.params[name].shape)
        if name == "b":
            owner.params["b"][:] = 0.1 * rng.standard_normal(owner.params["b"].shape)
    if kind == "bf16":
        set_precision([dec], "bf16")
    if kind == "int8":
        quantize_params(dec.named_params(), np.float32)
    return dec


def run(dec, memory, mask, tokens, one_call, monkeypatch, reorder=None):
    """Logits of every step and the final caches, through the one-call path or layer by layer."""
    if not one_call:
        monkeypatch.setattr(TransformerDecoderLayer, "one_call_step", lambda self: None)
    state = dec.start(memory, mask, capacity=tokens.shape[1] + 1)
    monkeypatch.undo()
    assert (state.one_call is not None) == one_call
    logits = []
    for t in range(tokens.shape[1]):
        if reorder is not None and t == 2:
            state.reorder(reorder)
            tokens = tokens[reorder]
        logits.append(dec.step(state, tokens[:, t]))
    return logits, state.caches


def assert_paths_agree(dec, memory, mask, tokens, monkeypatch, reorder=None):
    fast, fast_caches = run(dec, memory, mask, tokens, True, monkeypatch, reorder)
    slow, slow_caches = run(dec, memory, mask, tokens, False, monkeypatch, reorder)
    for t, (a, b) in enumerate(zip(slow, fast)):
        assert b.shape == a.shape
        np.testing.assert_array_equal(b, a, err_msg=f"step {t}")
    for a, b in zip(slow_caches, fast_caches):
        assert a.length == b.length
        np.testing.assert_array_equal(b.k[:, :b.length], a.k[:, :a.length])
        np.testing.assert_array_equal(b.v[:, :b.length], a.v[:, :a.length])


def inputs(rng, batch=5, src_len=7):
    memory = rng.standard_normal((batch, src_len, D)).astype(np.float32)
    mask = np.zeros((batch, src_len), bool)
    mask[batch - 1:, src_len // 2:] = True
    return memory, mask, rng.integers(0, V, size=(batch, 5))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("activation", ["gelu", "relu"])
@pytest.mark.parametrize("threads", [1, 2])
def test_one_call_step_is_bitwise_the_layer_by_layer_step(lowp_path, kind, activation, threads, monkeypatch):
    rng = np.random.default_rng(0)
    with fastnet.threads(threads):
        assert_paths_agree(decoder(kind, activation), *inputs(rng), monkeypatch, reorder=np.array([4, 0, 0, 2]))


@pytest.mark.parametrize("batch", [0, 1, 2, 17])
def test_batch_sizes_without_a_mask(cpu_path, batch, monkeypatch):
    memory, _, tokens = inputs(np.random.default_rng(1), batch=batch)
    assert_paths_agree(decoder(), memory, None, tokens, monkeypatch)


def test_an_empty_memory_reads_as_zeros_like_the_layer_step(cpu_path, monkeypatch):
    memory, _, tokens = inputs(np.random.default_rng(6), batch=2, src_len=0)
    assert_paths_agree(decoder(), memory, None, tokens, monkeypatch)


def test_nan_in_the_memory_is_nan_where_the_layer_step_has_it(cpu_path, monkeypatch):
    memory, mask, tokens = inputs(np.random.default_rng(2))
    memory[1, 2, 3] = np.nan
    fast, _ = run(decoder(), memory, mask, tokens, True, monkeypatch)
    slow, _ = run(decoder(), memory, mask, tokens, False, monkeypatch)
    for a, b in zip(slow, fast):
        assert np.isnan(a[1]).all() and not np.isnan(np.delete(a, 1, axis=0)).any()
        np.testing.assert_array_equal(np.isnan(b), np.isnan(a))
        np.testing.assert_array_equal(b[~np.isnan(b)], a[~np.isnan(a)])


def test_float64_decoders_keep_the_layer_by_layer_step():
    dec = Decoder(vocab_size=V, d_model=D, n_heads=H, n_layers=1, d_ff=F, max_len=8, dtype=np.float64)
    assert TransformerDecoderLayer(D, H, F, dtype=np.float64).one_call_step() is None
    assert dec.start(np.zeros((1, 3, D))).one_call is None


def test_translations_are_the_same_either_way(model_path, monkeypatch):
    """Greedy and beam search on a trained translator give the same outputs through both paths."""
    tr = fastnet.load(model_path)
    sentences = ["the cat is small", "a big dog runs", "the bird sees the cat", "the cat"]
    fast = [tr.translate(sentences, to="sv"), tr.translate(sentences, to="sv", beam=3, n_best=2)]
    monkeypatch.setattr(TransformerDecoderLayer, "one_call_step", lambda self: None)
    slow = [tr.translate(sentences, to="sv"), tr.translate(sentences, to="sv", beam=3, n_best=2)]
    assert fast == slow


def stepper_and_args(batch=2, capacity=3, rows=2, src_len=4):
    rng = np.random.default_rng(5)
    dec = decoder()
    state = dec.start(rng.standard_normal((rows, src_len, D)).astype(np.float32), capacity=capacity,
                      rows=np.arange(batch) % rows)
    args = dict(ids=np.arange(batch), position=0, caches=state.caches, memory_kv=state.memory_kv,
                memory_mask=None, memory_rows=state.memory_rows)
    return state.one_call, args


class Cache:
    def __init__(self, k, v, length=0):
        self.k, self.v, self.length = k, v, length


def caches_like(shape_k, shape_v=None, *, dtype=np.float32, length=0):
    return [Cache(np.zeros(shape_k, dtype), np.zeros(shape_v or shape_k, dtype), length) for _ in range(2)]


@pytest.mark.parametrize("change, error, message", [
    (dict(ids=np.array([0, V])), ValueError, rf"token ids must lie in \[0, {V}\), got {V} at 1"),
    (dict(ids=np.array([0.0, 1.0])), TypeError, "ids must have an integer dtype"),
    (dict(position=12), ValueError, "sequence of length 13 is longer than max_len=12"),
    (dict(caches=caches_like((2, 3, H, D // H), length=3)), ValueError, r"layer 0: key/value cache is full \(3"),
    (dict(caches=caches_like((2, 3, H, D // H), dtype=np.float64)), TypeError, "layer 0 cache k must be a float32"),
    (dict(caches=caches_like((2, 3, H, D // H), (2, 4, H, D // H))), ValueError, "same shape and strides"),
    (dict(caches=caches_like((3, 3, H, D // H))), TypeError, r"must be a float32 ndarray \(2, capacity"),
    (dict(memory_kv=[np.zeros((2, 4, D), np.float32)] * 2), ValueError, "layer 0: memory_kv must have shape"),
    (dict(memory_kv=[np.zeros((2, 4, 2, H, D // H), np.float32), np.zeros((2, 5, 2, H, D // H), np.float32)]),
     ValueError, "every layer's memory_kv must have the same rows and length"),
    (dict(memory_kv=[np.zeros((2, 4, 2, H, D // H), np.float32)]), ValueError, "one cache and one memory_kv per layer"),
    (dict(memory_rows=np.array([0, 2])), ValueError, r"memory_rows must lie in \[0, 2\)"),
    (dict(memory_rows=np.array([0, -1])), ValueError, r"memory_rows must lie in \[0, 2\)"),
    (dict(memory_rows=np.array([0])), ValueError, r"memory_rows must have shape \(batch,\) = \(2,\)"),
    (dict(memory_rows=np.array([0.0, 1.0])), TypeError, "memory_rows must be integers"),
    (dict(memory_mask=np.zeros((2, 5), bool)), ValueError, "memory_mask must be bool of shape"),
    (dict(memory_mask=np.zeros((2, 4), np.int8)), ValueError, "memory_mask must be bool of shape"),
])
def test_bad_step_arguments_are_named_and_change_nothing(change, error, message):
    step, args = stepper_and_args()
    before = [c.k.copy() for c in args["caches"]]
    with pytest.raises(error, match=message):
        step.step(**{**args, **change})
    assert [c.length for c in args["caches"]] == [0, 0]
    for c, k in zip(args["caches"], before):
        np.testing.assert_array_equal(c.k, k)


def test_without_memory_rows_the_memory_must_have_the_batch_rows():
    step, args = stepper_and_args(batch=2, rows=3)
    with pytest.raises(ValueError, match="without memory_rows the memory must have 2 rows, got 3"):
        step.step(**{**args, "memory_rows": None})
    out = step.step(**args)
    assert out.shape == (2, D) and [c.length for c in args["caches"]] == [1, 1]


def test_a_read_only_cache_is_refused():
    step, args = stepper_and_args()
    args["caches"][1].k.flags.writeable = False
    with pytest.raises(ValueError, match="layer 1 cache k is read-only"):
        step.step(**args)


def test_bad_weights_name_the_part():
    dec = decoder()
    layer = dec.layers[0]
    norms = [(n.params["gamma"], n.params["beta"], n.eps) for n in (layer.norm1, layer.norm2, layer.norm3)]
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
    table, positions, final = np.zeros((V, D), np.float32), np.zeros((12, D), np.float32), norms[0]
    with pytest.raises(TypeError, match="layers must be DecoderLayerStep"):
        ops.DecoderStep([good], table, 1.0, positions, final)
    with pytest.raises(ValueError, match="must agree"):
        ops.DecoderStep([], table, 1.0, np.zeros((12, D + 1), np.float32), final)
    with pytest.raises(ValueError, match="scale must be finite"):
        ops.DecoderStep([], table, float("nan"), positions, final)


@pytest.mark.parametrize("kind", ["float32", "bf16", "float64"])
@pytest.mark.parametrize("rows", [1, 7, 40])
def test_the_decoding_projection_gives_the_tied_outputs_forward_logits_bit_for_bit(cpu_path, kind, rows):
    """Decoding multiplies by the table packed once (float32) or a transposed copy (bf16, float64):
    forward's logits, bit for bit, NaN rows included."""
    dtype = np.float64 if kind == "float64" else np.float32
    dec = Decoder(vocab_size=300, d_model=D, n_heads=H, n_layers=1, d_ff=F, max_len=12, dropout=0.0, seed=5,
                  dtype=dtype, tie_embeddings=True)
    dec.out.params["b"][:] = np.random.default_rng(1).standard_normal(300)
    if kind == "bf16":
        set_precision([dec], "bf16")
    x = np.random.default_rng(2).standard_normal((rows, 1, D)).astype(dtype)
    x[0, 0, 3] = np.nan
    project = dec.prepare_decoding()
    got, expected = project(x), dec.out.forward(x)
    assert got.shape == (rows, 1, 300) and np.isnan(got[0]).all()
    assert got.tobytes() == expected.tobytes()


# ---- two threads split a big step's rows ---------------------------------------------------

BIG_D, BIG_V, BIG_B, BIG_S = 128, 300, 40, 9


def big_decoder(kind="float32"):
    """The real model's layer sizes: a batch of 40 rows is enough work for two threads."""
    dec = Decoder(vocab_size=BIG_V, d_model=BIG_D, n_heads=4, n_layers=2, d_ff=512, max_len=12, dropout=0.0,
                  seed=9, dtype=np.float32, tie_embeddings=True)
    return weights_of_kind(dec, kind, seed=8, scale=0.2)


def big_inputs():
    rng = np.random.default_rng(3)
    memory = rng.standard_normal((BIG_B, BIG_S, BIG_D)).astype(np.float32)
    mask = np.zeros((BIG_B, BIG_S), bool)
    mask[::3, 5:] = True
    return memory, mask, rng.integers(0, BIG_V, size=(BIG_B, 5))


needs_openmp = pytest.mark.skipif(not fastnet.config()["openmp"], reason="built without OpenMP: one thread")


@needs_openmp
@pytest.mark.parametrize("kind", KINDS)
def test_two_threads_split_the_rows_of_a_big_step_with_the_same_bits(lowp_path, kind, monkeypatch):
    dec = big_decoder(kind)
    memory, mask, tokens = big_inputs()
    with fastnet.threads(2):
        one_call = dec.start(memory, mask).one_call
        assert one_call.threads_for(BIG_B) == 2 and one_call.threads_for(1) == 1
        assert_paths_agree(dec, memory, mask, tokens, monkeypatch, reorder=np.r_[np.arange(39, 0, -2), 0, 0])


@needs_openmp
def test_split_rows_without_memory_rows_read_their_own_memory_rows():
    """memory_rows=None: row b reads memory row b, in whichever thread's share it is."""
    dec = big_decoder()
    memory, mask, tokens = big_inputs()
    results = []
    for threads in (1, 2):
        state = dec.start(memory, mask, capacity=3)
        with fastnet.threads(threads):
            x = state.one_call.step(tokens[:, 0], 0, state.caches, state.memory_kv, mask, None)
        results.append((x, state.caches[1].k[:, :1].copy(), state.caches[1].v[:, :1].copy()))
    for one, two in zip(*results):
        assert one.tobytes() == two.tobytes()


@needs_openmp
def test_a_bad_id_in_the_second_threads_rows_writes_nothing():
    dec = big_decoder()
    memory, mask, tokens = big_inputs()
    state = dec.start(memory, mask, capacity=3)
    ids = tokens[:, 0].copy()
    ids[BIG_B - 1] = BIG_V
    with fastnet.threads(2), pytest.raises(ValueError, match=rf"got {BIG_V} at {BIG_B - 1}"):
        state.one_call.step(ids, 0, state.caches, state.memory_kv, mask, state.memory_rows)
    assert not state.caches[0].k.any() and state.caches[0].length == 0
