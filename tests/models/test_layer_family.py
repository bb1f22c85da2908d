"""One layer family: the transformer and the pixel decoder are built from fastnet.layers' Dense and Dropout,
and draw their starting weights exactly as they did before (seeded models train the same)."""
import math

import numpy as np
import pytest

import fastnet as fn
from fastnet.image import ImageDecoder
from fastnet.layers import Dense, Dropout
from fastnet.seq2seq import Decoder, Embedding, FeedForward, MultiHeadAttention
from fastnet.seq2seq.layers import projection


def test_a_projection_is_a_dense_layer_with_a_glorot_draw_from_its_own_seed():
    layer = projection(6, 10, activation="gelu", seed=7, dtype=np.float32)
    assert isinstance(layer, Dense) and layer.name == "linear" and layer.activation == "gelu"
    limit = math.sqrt(6.0 / 16)
    want = np.random.default_rng(7).uniform(-limit, limit, (6, 10)).astype(np.float32)
    np.testing.assert_array_equal(layer.params["w"], want)
    assert layer.params["w"].dtype == np.float32 and not layer.params["b"].any()
    assert "b" not in projection(6, 10, bias=False).params


def test_the_transformer_blocks_hold_dense_layers_and_keep_their_tensor_names():
    attn, ffn = MultiHeadAttention(8, 2, seed=0), FeedForward(8, 16, seed=0)
    assert all(isinstance(layer, Dense) for layer in attn.sublayers() + ffn.sublayers())
    assert [name for name, _, _ in attn.named_params()] == ["0.linear.w", "0.linear.b", "1.linear.w", "1.linear.b"]
    names = [name for name, _, _ in Decoder(11, d_model=8, n_heads=2, n_layers=1, d_ff=16).named_params()]
    assert "3.linear.w" in names and "1.transformerdecoderlayer.5.feedforward.1.linear.b" in names


def test_the_embedding_draws_through_the_initializers():
    table = Embedding(9, 8, seed=3, dtype=np.float64).params["table"]
    np.testing.assert_array_equal(table, np.random.default_rng(3).normal(0.0, 1.0 / math.sqrt(8), (9, 8)))


def test_dense_takes_any_leading_axes(rng):
    layer = Dense(4, 3, activation="tanh", dtype=np.float64)
    layer.initialize(np.random.default_rng(0))
    x = rng.standard_normal((2, 5, 4))
    y = layer.forward(x)
    np.testing.assert_array_equal(y, layer.forward(x.reshape(10, 4)).reshape(2, 5, 3))
    dy = rng.standard_normal((2, 5, 3))
    dx = layer.backward(dy)
    assert dx.shape == (2, 5, 4)
    with pytest.raises(ValueError, match=r"expected an input of shape \(\.\.\., 4\)"):
        layer.forward(x[..., :3])


def test_a_seeded_dropout_keeps_its_own_generator():
    x = np.ones((4, 64), np.float32)
    seeded = Dropout(0.5, seed=11)
    seeded.initialize(np.random.default_rng(0))  # a network's generator does not replace its own
    mask_seed = int(np.random.default_rng(11).integers(1 << 31))
    want = fn.ops.dropout(x, 0.5, mask_seed)[0]
    np.testing.assert_array_equal(seeded.forward(x, training=True), want)


def test_the_image_decoder_is_dense_layers_under_its_file_names():
    dec = ImageDecoder(d_model=5, size=2, hidden=(6, 4), seed=3)
    assert [type(layer) for layer in dec.sublayers()] == [Dense, Dense, Dense]
    assert list(dec.params) == ["w0", "b0", "w1", "b1", "w2", "b2"] == list(dec.state_dict())
    rng = np.random.default_rng(3)
    for i, (n_in, n_out) in enumerate([(5, 6), (6, 4), (4, 12)]):
        scale = math.sqrt((1.0 if i == 2 else 2.0) / n_in)  # He, then LeCun for the sigmoid output
        expected = (rng.standard_normal((n_in, n_out)) * scale).astype(np.float32)
        np.testing.assert_array_equal(dec.params[f"w{i}"], expected)
    assert np.shares_memory(dec.params["w1"], dec.store.data) and dec.layers[1].params["w"] is not None
    with pytest.raises(AttributeError, match="live in its Dense layers"):
        dec.params = {"w0": np.zeros(1)}


def test_a_quantised_translator_keeps_its_pixel_decoder_in_float(tmp_path):
    from fastnet.datasets import toy_translations
    from fastnet.seq2seq.translator import Translator

    data = toy_translations(20, seed=0, split="train")
    tr = Translator.build(data.en, {"sv": data.sv}, seed=0, d_model=8, n_heads=2, n_layers=1, d_ff=16,
                          dropout=0.0, tokenizer="word")
    tr.add_decoder("pixels", ImageDecoder(d_model=8, size=2, hidden=(4,)), freeze_encoder=True)
    tr.quantize()
    assert not tr.decoders["pixels"].layers[0].quantized and tr.decoders["sv"].out.quantized
