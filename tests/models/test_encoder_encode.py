"""Encoder.encode (inference on the real positions only) against Encoder.forward: the same memory
at every real position, bit for bit, zeros at the padding, for every kind of weights, CPU path and
thread count; and translations through it are the ones forward gives."""
import numpy as np
import pytest

import fastnet
from fastnet.seq2seq import Encoder
from helpers import weights_of_kind

V, PAD = 50, 0


def encoder(kind, activation="gelu"):
    dtype = np.float64 if kind == "float64" else np.float32
    enc = Encoder(vocab_size=V, d_model=32, n_heads=4, n_layers=2, d_ff=48, max_len=20, dropout=0.1,
                  activation=activation, pad_id=PAD, seed=4, dtype=dtype)
    return weights_of_kind(enc, kind, seed=5, scale=0.3)


def ragged_ids(rng, lengths, width):
    ids = np.full((len(lengths), width), PAD, dtype=np.int64)
    for row, n in enumerate(lengths):
        ids[row, :n] = rng.integers(1, V, n)
    return ids


@pytest.mark.parametrize("kind", ["float32", "float64", "bf16", "int8"])
@pytest.mark.parametrize("lengths", [[3, 9, 1, 9, 5], [7], [2, 2], [12, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
                                                                 4, 6]])
@pytest.mark.parametrize("threads", [1, 2])
def test_encode_is_forward_at_every_real_position_bit_for_bit(cpu_path, kind, lengths, threads):
    enc = encoder(kind, activation="relu" if kind == "float64" else "gelu")
    ids = ragged_ids(np.random.default_rng(len(lengths)), lengths, max(lengths) + 2)  # + 2: every row padded
    pad = ids == PAD
    with fastnet.threads(threads):
        expected = enc.forward(ids, pad)
        got = enc.encode(ids, pad)
    assert got.shape == expected.shape and got.dtype == expected.dtype
    assert got[~pad].tobytes() == expected[~pad].tobytes()
    assert not got[pad].any()


def test_without_padding_encode_is_forward():
    enc = encoder("float32")
    ids = ragged_ids(np.random.default_rng(0), [6, 6, 6], 6)
    assert enc.encode(ids).tobytes() == enc.forward(ids).tobytes()


def test_an_empty_batch_and_bad_input_are_what_forward_says():
    enc = encoder("float32")
    with pytest.raises(ValueError, match=r"empty batch of token ids, shape \(0, 4\)"):
        enc.encode(np.zeros((0, 4), np.int64))
    with pytest.raises(ValueError, match="sentence 1 of the batch is all padding"):
        enc.encode(np.array([[3, 4], [PAD, PAD]]))
    with pytest.raises(ValueError, match="pad_mask shape"):
        enc.encode(np.array([[3, 4]]), np.zeros((1, 3), bool))


def test_translate_gives_what_the_padded_encoder_gives(model_path, monkeypatch):
    """The translator encodes on the real positions only; the padded memory gives the same outputs."""
    from fastnet.datasets import toy_translations

    tr = fastnet.load(model_path)
    sentences = toy_translations(60, seed=3, split="test").en  # of different lengths, in one batch
    with fastnet.threads(1):
        fast = {to: tr.translate(sentences, to=to) for to in ("sv", "es")}
        beam = tr.translate(sentences, to="es", beam=3, n_best=2)
        monkeypatch.setattr(Encoder, "encode", lambda self, ids, pad_mask=None: self.forward(ids, pad_mask))
        assert {to: tr.translate(sentences, to=to) for to in ("sv", "es")} == fast
        assert tr.translate(sentences, to="es", beam=3, n_best=2) == beam
    assert len(set(map(len, sentences))) > 3
