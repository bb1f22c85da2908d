"""precision="bf16" on models: matrix products in bf16, everything else
(weights, gradients, optimizer state, losses, files) float32."""
import numpy as np
import pytest

import fastnet as fn
from fastnet import ops


def _digits():
    sklearn = pytest.importorskip("sklearn.datasets")
    d = sklearn.load_digits()
    X = (d.data / 16.0).astype(np.float32)
    X = (X - X.mean(axis=0)) / np.where(X.std(axis=0) > 0, X.std(axis=0), 1.0)
    order = np.random.default_rng(0).permutation(len(X))
    X, y = X[order].astype(np.float32), d.target[order]
    return X[:1400], y[:1400], X[1400:], y[1400:]


def _digits_net(precision):
    return fn.Network([fn.Dense(64, 128, activation="relu"), fn.Dense(128, 10)],
                      loss="softmax_cross_entropy", optimizer=fn.Adam(1e-3), seed=0, precision=precision)


def test_bf16_training_reaches_float32_accuracy_on_digits(lowp_path):
    Xtr, ytr, Xte, yte = _digits()
    accuracy = {}
    for precision in ("float32", "bf16"):
        net = _digits_net(precision)
        net.fit(Xtr, ytr, epochs=15, batch_size=32, verbose=0)
        accuracy[precision] = net.evaluate(Xte, yte)["accuracy"]
        assert net.store.data.dtype == np.float32
    assert accuracy["float32"] > 0.95
    assert accuracy["bf16"] >= accuracy["float32"] - 0.01, accuracy


def test_bf16_network_really_multiplies_in_bf16(rng):
    X = rng.standard_normal((50, 64)).astype(np.float32)
    net32, net16 = _digits_net("float32"), _digits_net("bf16")
    out32, out16 = net32._output(X), net16._output(X)
    assert not np.array_equal(out32, out16)
    np.testing.assert_allclose(out16, out32, rtol=0.05, atol=0.05)
    # the first layer by hand: x and w rounded to bf16, products summed in float32
    w, b = net16.layers[0].params["w"], net16.layers[0].params["b"]
    expected = np.maximum(ops.round_bf16(X).astype(np.float64) @ ops.round_bf16(w) + b, 0)
    got = net16.layers[0].forward(X)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_precision_is_saved_and_the_file_stays_float32(tmp_path, rng):
    net = _digits_net("bf16")
    X, y = rng.standard_normal((64, 64)).astype(np.float32), rng.integers(0, 10, 64)
    net.fit(X, y, epochs=1, verbose=0)
    net.save(tmp_path / "m.fastnet")
    back = fn.load(tmp_path / "m.fastnet")
    assert back.precision == "bf16" and back.store.data.dtype == np.float32
    np.testing.assert_array_equal(back.predict_proba(X), net.predict_proba(X))
    back.precision = "float32"  # a bf16-trained model runs in float32 anywhere
    assert back.layers[0].precision == "float32"
    np.testing.assert_allclose(back.predict_proba(X), net.predict_proba(X), atol=0.05)


def test_precision_errors():
    with pytest.raises(ValueError, match="unknown precision"):
        _digits_net("fp8")
    with pytest.raises(ValueError, match="float32"):
        fn.Network([fn.Dense(3, 2)], dtype=np.float64, precision="bf16")


def test_bf16_translator_learns_toy_data_and_saves_float32(tmp_path):
    from fastnet.datasets import toy_translations
    from fastnet.seq2seq import Translator
    train = toy_translations(600, seed=0, split="train")
    small = dict(d_model=32, n_heads=2, n_layers=1, d_ff=64, dropout=0.0, tokenizer="word")
    with fn.threads(1):
        tr = Translator.build(train.en, {"sv": train.sv}, seed=0, precision="bf16", **small)
        linears = [m for _, m, p in tr.encoder.named_params() if p == "w"]
        assert linears and all(m.precision == "bf16" for m in linears)
        tr.fit(train.en, {"sv": train.sv}, epochs=12, batch_size=32, lr=3e-3, verbose=0)
        scores = tr.evaluate(train.en[:100], train.sv[:100], to="sv", metrics=("token_accuracy",))
        assert scores["token_accuracy"] > 0.9, scores
        tr.save(tmp_path / "t.fastnet")
        back = fn.load(tmp_path / "t.fastnet")
    assert back.precision == "bf16"
    assert all(a.dtype == np.float32 for a in back.state_arrays().values())
    assert back.translate("cats are cute", to="sv") == tr.translate("cats are cute", to="sv")
    with pytest.raises(ValueError, match="unknown precision"):
        tr.precision = "int4"


def test_bf16_image_decoder_multiplies_in_bf16(rng):
    from fastnet.image import ImageDecoder
    reps = rng.standard_normal((8, 16)).astype(np.float32)
    dec32 = ImageDecoder(16, size=4, hidden=(32,), seed=0)
    dec16 = ImageDecoder(16, size=4, hidden=(32,), seed=0, precision="bf16")
    assert dec16.config()["precision"] == "bf16"
    p32, p16 = dec32.forward(reps), dec16.forward(reps)
    assert not np.array_equal(p32, p16)
    np.testing.assert_allclose(p16, p32, atol=0.02)
    assert dec16.backward(np.ones_like(p16)).shape == reps.shape
