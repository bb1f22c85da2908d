"""The training step's public pieces (fastnet/step.py), the store's views and the shared argument checks."""
import numpy as np
import pytest

import fastnet as fn
from fastnet.checks import positive_int
from fastnet.datasets import toy_translations
from fastnet.image import ImageDecoder
from fastnet.layers import ParameterStore
from fastnet.seq2seq.translator import Translator
from fastnet.step import train_step


def _network(seed=0, optimizer=None):
    return fn.Network([fn.Dense(5, 7, activation="tanh"), fn.Dense(7, 3)], loss="softmax_cross_entropy",
                      optimizer=optimizer or fn.Adam(1e-2), seed=seed)


def _batch(rng, n=6):
    return rng.standard_normal((n, 5)).astype(np.float32), rng.integers(0, 3, n)


def test_the_public_pieces_are_the_step_train_on_batch_takes(rng):
    x, y = _batch(rng)
    whole, pieces = _network(), _network()
    for _ in range(3):
        loss = whole.train_on_batch(x, y)
        xc, yc = pieces.prepare_data(x, y)
        pieces.gradients.fill(0)
        got, out = pieces.forward_loss(xc, yc)
        pieces.backward()
        pieces.apply_update()
        assert got == loss and out.shape == (6, 3)
    np.testing.assert_array_equal(pieces.store.data, whole.store.data)
    assert pieces.gradients is pieces.store.grad


@pytest.mark.parametrize("make", ["network", "image_decoder"])
def test_a_loss_scale_scales_the_loss_and_every_gradient(rng, make):
    if make == "network":
        model, batch = _network(), _network().prepare_data(*_batch(rng))
    else:
        model = ImageDecoder(d_model=5, size=2, hidden=(4,), seed=0)
        batch = model.prepare_data(rng.standard_normal((3, 5)), rng.random((3, 2, 2, 3)))
    model.gradients.fill(0)
    loss, _ = model.forward_loss(*batch)
    model.backward()
    plain = model.gradients.copy()
    model.gradients.fill(0)
    scaled, _ = model.forward_loss(*batch, loss_scale=0.5)
    model.backward()
    assert scaled == pytest.approx(0.5 * loss, rel=1e-6)
    np.testing.assert_array_equal(model.gradients, 0.5 * plain)  # a power of two scales exactly


def test_backward_needs_a_forward_loss_first():
    net = _network()
    with pytest.raises(RuntimeError, match="forward_loss"):
        net.backward()
    with pytest.raises(RuntimeError, match="forward_loss"):
        ImageDecoder(d_model=4, size=2, hidden=(4,)).backward()


def test_reduce_sees_the_gradients_before_the_checks_and_the_update(rng):
    net = _network(optimizer=fn.SGD(0.1))
    x, y = net.prepare_data(*_batch(rng))
    seen = []

    def reduce(loss, gradients):
        seen.append((loss, gradients is net.gradients, float(np.abs(gradients).sum())))
        gradients *= 2.0  # e.g. the sum over two workers holding the same rows
        return 2.0 * loss

    before = net.store.data.copy()
    loss, _ = train_step(net, (x, y), loss_scale=1.0, reduce=reduce)
    assert len(seen) == 1 and seen[0][1] and seen[0][2] > 0 and loss == 2.0 * seen[0][0]
    assert not np.array_equal(net.store.data, before)


@pytest.mark.parametrize("poison", ["loss", "gradient"])
def test_a_non_finite_loss_or_gradient_applies_no_update(rng, poison):
    net = _network(optimizer=fn.SGD(0.1))
    x, y = net.prepare_data(*_batch(rng))

    def reduce(loss, gradients):
        if poison == "gradient":
            gradients[3] = np.nan
            return loss
        return float("nan")

    before = net.store.data.copy()
    with pytest.raises(FloatingPointError, match="loss became nan" if poison == "loss" else "gradient became NaN"):
        train_step(net, (x, y), reduce=reduce)
    np.testing.assert_array_equal(net.store.data, before)
    assert net.optimizer.iterations == 0


def test_a_worker_without_rows_adds_zeros(rng):
    net = _network(optimizer=fn.SGD(0.1))
    seen = []

    def reduce(loss, gradients):
        seen.append((loss, gradients.any()))
        return loss

    train_step(net, None, reduce=reduce)
    assert seen == [(0.0, False)]


def test_image_decoder_fit_checks_the_loss_like_every_trainer(rng, monkeypatch):
    dec = ImageDecoder(d_model=4, size=2, hidden=(4,), seed=0)
    real_forward_loss = dec.forward_loss
    monkeypatch.setattr(dec, "forward_loss", lambda *a, **k: (float("nan"), real_forward_loss(*a, **k)[1]))
    dec.begin_training(None, np.full((1, 2, 2, 3), 0.25))  # so that fit changes nothing before its step
    before = dec.store.data.copy()
    with pytest.raises(FloatingPointError, match="loss became nan at epoch 1, step 1"):
        dec.fit(rng.standard_normal((8, 4)), rng.random((8, 2, 2, 3)), epochs=1, batch_size=8, verbose=False)
    np.testing.assert_array_equal(dec.store.data, before)


def _translator():
    data = toy_translations(24, seed=0, split="train")
    tr = Translator.build(data.en, {"sv": data.sv, "es": data.es}, seed=0, d_model=8, n_heads=2, n_layers=1,
                          d_ff=16, dropout=0.0, tokenizer="word")
    return tr, data


def test_translator_pieces_scale_each_decoder_on_its_own():
    from fastnet.seq2seq.training import EncodedPairs

    tr, data = _translator()
    src, targets = EncodedPairs(tr, data.en, {"sv": data.sv, "es": data.es}, "test").batch(tr, np.arange(8))
    tr.use_optimizer(fn.SGD(0.1))
    grads = {}
    for scale in ({"sv": 1.0, "es": 1.0}, {"sv": 0.5, "es": 0.0}):
        tr.gradients.fill(0)
        loss, stats = tr.forward_loss(src, targets, loss_scale=scale)
        tr.backward()
        grads[scale["es"]] = (loss, set(stats), tr.gradients.copy())
    (both, names, g_both), (half_sv, names_sv, g_half) = grads[1.0], grads[0.0]
    assert names == {"sv", "es"} and names_sv == {"sv"}  # a decoder scaled by 0 is not run
    sv_decoder = tr.store.view(tr.encoder.n_params(), tr.encoder.n_params() + tr.decoders["sv"].n_params())
    offset = sv_decoder.start
    np.testing.assert_allclose(g_half[offset:sv_decoder.stop], 0.5 * g_both[offset:sv_decoder.stop], rtol=1e-5,
                               atol=1e-8)
    assert not g_half[sv_decoder.stop:].any()  # the es decoder got nothing
    assert 0 < half_sv < both


def test_a_frozen_encoder_is_not_in_the_trained_parameters():
    tr, _ = _translator()
    assert len(tr.trained_parameters()) == len(tr.store)
    tr.frozen_encoder = True
    view = tr.trained_parameters()
    assert len(view) == len(tr.store) - tr.encoder.n_params()
    assert np.shares_memory(view.data, tr.store.data) and np.shares_memory(view.grad, tr.store.grad)
    assert all(name.startswith(("1.", "2.")) for name in view.named_arrays())
    with pytest.raises(RuntimeError, match="use_optimizer"):
        tr.apply_update()


def test_store_views_share_the_buffers_and_know_their_entries():
    layers = [fn.Dense(2, 3), fn.Dense(3, 4)]
    for layer in layers:
        layer.initialize(np.random.default_rng(0))
    store = ParameterStore(layers)
    first = store.view(0, 9)
    assert list(first.named_arrays()) == ["0.dense.w", "0.dense.b"] and len(first) == 9
    first.data[:] = 7.0
    assert (layers[0].params["w"] == 7.0).all() and not (layers[1].params["w"] == 7.0).all()
    first.grad[:] = 1.0
    first.zero_grad()
    assert not store.grad.any()
    inner = store.view(9, len(store)).view(0, 12)  # a view of a view: offsets relative to it
    assert np.shares_memory(inner.data, layers[1].params["w"]) and list(inner.named_arrays()) == ["1.dense.w"]
    assert layers[1].store_view.start == 9 and layers[1].store_view.stop == len(store)
    for start, stop in ((-1, 3), (5, 4), (0, len(store) + 1)):
        with pytest.raises(ValueError, match="does not fit"):
            store.view(start, stop)


@pytest.mark.parametrize("value", [1, 7, np.int64(3), np.uint8(2)])
def test_positive_int_takes_whole_numbers_from_one(value):
    assert positive_int(value, "n") == int(value) and type(positive_int(value, "n")) is int


@pytest.mark.parametrize("value", [0, -2, 2.0, 1.5, True, "3", None, np.float32(2)])
def test_positive_int_refuses_anything_else_naming_it(value):
    with pytest.raises(ValueError, match=r"width must be a positive integer, got"):
        positive_int(value, "width")


def test_positive_int_may_allow_none():
    assert positive_int(None, "steps", allow_none=True) is None
    with pytest.raises(ValueError, match="steps must be a positive integer or None, got 0"):
        positive_int(0, "steps", allow_none=True)
