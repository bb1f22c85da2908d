"""Transformer layers, Encoder and Decoder: gradients against finite differences (float64), masks, caches."""
import numpy as np
import pytest

from fastnet.layers.base import ParameterStore
from fastnet.seq2seq import (
    Decoder,
    Dropout,
    Embedding,
    Encoder,
    FeedForward,
    LayerNorm,
    MultiHeadAttention,
    PositionalEncoding,
    TransformerDecoderLayer,
    TransformerEncoderLayer,
)
from fastnet.seq2seq.layers import projection
from helpers import DIFFERENTIABLE, central_difference

F64 = np.float64


def sample_indices(shape, rng, n=6):
    flat = rng.choice(int(np.prod(shape)), size=min(n, int(np.prod(shape))), replace=False)
    return [np.unravel_index(i, shape) for i in flat]


def check_param_grads(layer, loss, backward, rng, rtol=1e-5, atol=1e-7):
    """Analytic gradients of every parameter of `layer` (and children) against central differences."""
    for _, owner, pname in layer.named_params():
        owner.grads[pname][...] = 0
    loss()
    backward()
    for qname, owner, pname in layer.named_params():
        analytic = owner.grads[pname].copy()
        for idx in sample_indices(analytic.shape, rng):
            numeric = central_difference(loss, owner.params[pname], idx)
            assert np.isclose(analytic[idx], numeric, rtol=rtol, atol=atol), (qname, idx, analytic[idx], numeric)


def check_input_grad(x, analytic, loss, rng, rtol=1e-5, atol=1e-7):
    for idx in sample_indices(x.shape, rng, n=8):
        numeric = central_difference(loss, x, idx)
        assert np.isclose(analytic[idx], numeric, rtol=rtol, atol=atol), (idx, analytic[idx], numeric)


def run_gradcheck(layer, x, forward, rng):
    """Loss = sum(forward(x) * R) for a fixed random R; checks d/dx and d/dparams."""
    R = rng.standard_normal(forward(x).shape)
    loss = lambda: float((forward(x) * R).sum())  # noqa: E731
    for _, owner, pname in layer.named_params():
        owner.grads[pname][...] = 0
    loss()
    dx = layer.backward(R)
    if isinstance(dx, tuple):
        dx = dx[0]
    check_input_grad(x, dx, loss, rng)
    check_param_grads(layer, loss, lambda: layer.backward(R), rng)


@pytest.mark.parametrize("activation", DIFFERENTIABLE)
def test_linear_gradients(rng, activation):
    layer = projection(5, 7, activation=activation, seed=1, dtype=F64)
    x = rng.standard_normal((2, 3, 5))
    run_gradcheck(layer, x, lambda x: layer.forward(x, training=True), rng)


def test_layer_norm_gradients(rng):
    layer = LayerNorm(6, dtype=F64)
    layer.params["gamma"][...] = rng.standard_normal(6)
    layer.params["beta"][...] = rng.standard_normal(6)
    x = rng.standard_normal((2, 3, 6))
    run_gradcheck(layer, x, lambda x: layer.forward(x, training=True), rng)


def test_embedding_gradients_accumulate_repeated_ids(rng):
    layer = Embedding(5, 4, seed=0, dtype=F64)
    ids = np.array([[1, 2, 1], [4, 1, 0]])
    R = rng.standard_normal((2, 3, 4))
    loss = lambda: float((layer.forward(ids) * R).sum())  # noqa: E731
    check_param_grads(layer, loss, lambda: layer.backward(R), rng)
    np.testing.assert_allclose(layer.forward(ids)[0, 0], layer.params["table"][1] * 2.0)


def test_embedding_rejects_out_of_range_ids():
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        Embedding(5, 4).forward(np.array([[0, 5]]))
    with pytest.raises(TypeError, match="integers"):
        Embedding(5, 4).forward(np.array([[0.5]]))


def test_positional_encoding_values_and_limit():
    pe = PositionalEncoding(10, 4, dtype=F64)
    y = pe.forward(np.zeros((1, 3, 4)))
    np.testing.assert_allclose(y[0, 1], [np.sin(1), np.cos(1), np.sin(1e-2), np.cos(1e-2)])
    np.testing.assert_allclose(pe.forward(np.zeros((1, 1, 4)), offset=1)[0, 0], y[0, 1])
    with pytest.raises(ValueError, match="max_len=10"):
        pe.forward(np.zeros((1, 11, 4)))


@pytest.mark.parametrize("causal", [False, True])
def test_self_attention_gradients(rng, causal):
    layer = MultiHeadAttention(8, 2, causal=causal, seed=3, dtype=F64)
    x = rng.standard_normal((2, 4, 8))
    mask = np.array([[False, False, False, True], [False, False, False, False]])
    run_gradcheck(layer, x, lambda x: layer.forward(x, key_padding_mask=None if causal else mask), rng)


def test_cross_attention_gradients_including_memory(rng):
    layer = MultiHeadAttention(8, 2, cross=True, seed=4, dtype=F64)
    x = rng.standard_normal((2, 3, 8))
    memory = rng.standard_normal((2, 5, 8))
    mask = np.zeros((2, 5), bool)
    mask[0, 3:] = True
    run_gradcheck(layer, x, lambda x: layer.forward(x, memory, key_padding_mask=mask), rng)
    R = rng.standard_normal((2, 3, 8))
    loss = lambda: float((layer.forward(x, memory, key_padding_mask=mask) * R).sum())  # noqa: E731
    loss()
    _, dmemory = layer.backward(R)
    check_input_grad(memory, dmemory, loss, rng)
    assert np.all(dmemory[0, 3:] == 0)


def test_feed_forward_gradients(rng):
    layer = FeedForward(6, 10, activation="gelu", seed=5, dtype=F64)
    x = rng.standard_normal((2, 3, 6))
    run_gradcheck(layer, x, lambda x: layer.forward(x, training=True), rng)


def test_encoder_layer_gradients(rng):
    layer = TransformerEncoderLayer(8, 2, 12, dropout=0.0, seed=6, dtype=F64)
    x = rng.standard_normal((2, 4, 8))
    mask = np.array([[False, False, True, True], [False] * 4])
    run_gradcheck(layer, x, lambda x: layer.forward(x, mask, training=True), rng)


def test_decoder_layer_gradients_including_memory(rng):
    layer = TransformerDecoderLayer(8, 2, 12, dropout=0.0, seed=7, dtype=F64)
    x = rng.standard_normal((2, 3, 8))
    memory = rng.standard_normal((2, 4, 8))
    mask = np.array([[False, False, False, True], [False] * 4])
    run_gradcheck(layer, x, lambda x: layer.forward(x, memory, mask, training=True), rng)
    R = rng.standard_normal((2, 3, 8))
    loss = lambda: float((layer.forward(x, memory, mask) * R).sum())  # noqa: E731
    loss()
    _, dmemory = layer.backward(R)
    check_input_grad(memory, dmemory, loss, rng)


def test_dropout_gradient_uses_the_same_mask(rng):
    layer = Dropout(0.5, seed=0)
    x = rng.standard_normal((4, 50))
    y = layer.forward(x, training=True)
    dx = layer.backward(np.ones_like(x))
    kept = y != 0
    assert 0.3 < kept.mean() < 0.7
    np.testing.assert_allclose(dx[kept], 2.0)
    np.testing.assert_allclose(dx[~kept], 0.0)
    assert layer.forward(x, training=False) is x
    with pytest.raises(ValueError, match="Dropout rate must be in"):
        Dropout(1.0)


def small_encoder(dtype=F64, **kw):
    args = dict(vocab_size=11, d_model=8, n_heads=2, n_layers=2, d_ff=12, max_len=10, dropout=0.0, seed=1)
    args.update(kw)
    return Encoder(dtype=dtype, **args)


def small_decoder(dtype=F64, **kw):
    args = dict(vocab_size=9, d_model=8, n_heads=2, n_layers=2, d_ff=12, max_len=10, dropout=0.0, seed=2)
    args.update(kw)
    return Decoder(dtype=dtype, **args)


def test_encoder_gradients(rng):
    enc = small_encoder()
    ids = np.array([[3, 4, 5, 0], [6, 7, 8, 9]])
    R = rng.standard_normal((2, 4, 8))
    loss = lambda: float((enc.forward(ids, training=True) * R).sum())  # noqa: E731
    check_param_grads(enc, loss, lambda: enc.backward(R), rng)


def test_decoder_gradients_and_memory_gradient(rng):
    dec = small_decoder()
    memory = rng.standard_normal((2, 5, 8))
    mask = np.array([[False] * 3 + [True] * 2, [False] * 5])
    target = np.array([[1, 3, 4, 2, 0], [1, 5, 6, 7, 2]])
    loss = lambda: dec.loss(memory, mask, target, training=True, label_smoothing=0.1)[0]  # noqa: E731
    check_param_grads(dec, loss, dec.backward_loss, rng)
    loss()
    check_input_grad(memory, dec.backward_loss(), loss, rng)


def test_encoder_and_decoder_live_in_one_parameter_store(rng):
    enc, dec = small_encoder(dtype=np.float32), small_decoder(dtype=np.float32)
    store = ParameterStore([enc, dec])
    assert len(store) == enc.n_params() + dec.n_params()
    store.data[:] = 0
    assert np.all(enc.embed.params["table"] == 0) and np.all(dec.out.params["w"] == 0)


def test_padding_positions_change_nothing(rng):
    enc = small_encoder()
    ids = np.array([[3, 4, 5, 0, 0]])
    other = ids.copy()
    other[0, 3:] = [7, 8]  # different tokens at padded positions, same mask
    mask = ids == 0
    a = enc.forward(ids, mask)
    b = enc.forward(other, mask)
    np.testing.assert_array_equal(a[0, :3], b[0, :3])
    dec = small_decoder()
    target = np.array([[1, 3, 4]])
    np.testing.assert_array_equal(dec.forward(target, a, mask), dec.forward(target, b, mask))


def test_future_tokens_change_nothing(rng):
    dec = small_decoder()
    memory = rng.standard_normal((1, 4, 8))
    a = dec.forward(np.array([[1, 3, 4, 5]]), memory)
    b = dec.forward(np.array([[1, 3, 6, 7]]), memory)
    np.testing.assert_array_equal(a[0, :2], b[0, :2])
    assert not np.allclose(a[0, 2], b[0, 2])


def test_incremental_steps_match_teacher_forcing(rng):
    dec = small_decoder()
    memory = rng.standard_normal((2, 4, 8))
    mask = np.array([[False, False, True, True], [False] * 4])
    tokens = np.array([[1, 3, 4, 5], [1, 6, 7, 8]])
    full = dec.forward(tokens, memory, mask)
    state = dec.start(memory, mask)
    for t in range(tokens.shape[1]):
        np.testing.assert_allclose(dec.step(state, tokens[:, t]), full[:, t], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("index", [[2, 0], [1, 1, 0], [0, 1, 2], [2], [2, 0, 0, 1]],
                         ids=["drop", "repeat", "same", "one", "grow"])
def test_reordered_steps_match_teacher_forcing_of_the_kept_rows(rng, index):
    """Dropping, repeating or keeping rows mid-decoding (greedy and beam search do) leaves each
    kept row's cache as its own: later steps equal a full pass over that row's tokens."""
    dec = small_decoder()
    memory = rng.standard_normal((3, 4, 8))
    tokens = np.array([[1, 3, 4, 5, 6], [1, 6, 7, 8, 2], [1, 2, 3, 2, 4]])
    state = dec.start(memory, None, capacity=8)
    for t in range(2):
        dec.step(state, tokens[:, t])
    state.reorder(np.array(index))
    kept = tokens[index]
    full = dec.forward(kept, memory[index], None)
    for t in range(2, tokens.shape[1]):
        np.testing.assert_allclose(dec.step(state, kept[:, t]), full[:, t], rtol=1e-10, atol=1e-12)


def test_encoder_represent_is_mean_over_real_tokens(rng):
    enc = small_encoder()
    ids = np.array([[3, 4, 0], [5, 6, 7]])
    memory = enc.forward(ids)
    rep = enc.represent(ids)
    np.testing.assert_allclose(rep[0], memory[0, :2].mean(axis=0))
    np.testing.assert_allclose(rep[1], memory[1].mean(axis=0))


def test_encoder_errors():
    enc = small_encoder()
    with pytest.raises(ValueError, match="2-D"):
        enc.forward(np.array([1, 2, 3]))
    with pytest.raises(ValueError, match="all padding"):
        enc.forward(np.array([[3, 4], [0, 0]]))
    with pytest.raises(ValueError, match="max_len=10"):
        enc.forward(np.ones((1, 11), dtype=np.int64))
    with pytest.raises(ValueError, match="divisible"):
        Encoder(10, d_model=10, n_heads=3)
