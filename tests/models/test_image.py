"""ImageDecoder: gradients, training, determinism, files, the Translator interface, bad input."""

import numpy as np
import pytest

import fastnet
from fastnet.datasets import toy_pictures
from fastnet.image import (
    ATTRIBUTE_DIM,
    ImageDecoder,
    attribute_vectors,
    draw,
    draw_to_png,
    load_image_decoder,
    mean_picture_baseline,
    pixel_decoder_names,
    to_uint8,
    train_pixels,
)
from fastnet.layers.base import Layer, ParameterStore
from fastnet.optimizers import Adam
from helpers import numerical_gradient_in_place


def _tiny(loss="mse", dtype=np.float64, seed=0):
    dec = ImageDecoder(d_model=5, size=3, hidden=(4, 6), loss=loss, seed=seed, dtype=dtype)
    # Biases start at zero; random ones keep every ReLU input off its kink at exactly 0,
    # where a finite difference and the derivative legitimately disagree.
    rng = np.random.default_rng(seed + 100)
    for name in ("b0", "b1", "b2"):
        dec.params[name][...] = rng.uniform(0.05, 0.3, dec.params[name].shape)
    return dec


# ---------------------------------------------------------------- gradients (float64)
@pytest.mark.parametrize("loss", ["mse", "bce"])
def test_loss_gradients_match_finite_differences(loss, rng):
    dec = _tiny(loss)
    reps = rng.standard_normal((4, 5))
    target = rng.random((4, 3, 3, 3))
    dec.store.zero_grad()
    value, _ = dec.loss(reps, None, target, training=True)
    dreps = dec.backward_loss()
    loss_of = lambda: dec.loss(reps, None, target)[0]  # noqa: E731
    for name in dec.params:
        numeric = numerical_gradient_in_place(loss_of, dec.params[name])
        np.testing.assert_allclose(dec.grads[name], numeric, rtol=1e-5, atol=1e-9, err_msg=name)
    np.testing.assert_allclose(dreps, numerical_gradient_in_place(loss_of, reps), rtol=1e-5, atol=1e-9)
    assert value == pytest.approx(loss_of())


def test_backward_of_pictures_matches_finite_differences(rng):
    dec = _tiny()
    reps = rng.standard_normal((3, 5))
    weights = rng.standard_normal((3, 3, 3, 3))  # loss = sum(weights * pictures)
    dec.store.zero_grad()
    dec.forward(reps, training=True)
    dreps = dec.backward(weights)
    loss_of = lambda: float(np.sum(weights * dec.forward(reps)))  # noqa: E731
    np.testing.assert_allclose(dreps, numerical_gradient_in_place(loss_of, reps), rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(dec.grads["w0"], numerical_gradient_in_place(loss_of, dec.params["w0"]),
                               rtol=1e-5, atol=1e-9)


def test_training_step_gradients_equal_interface_gradients(rng):
    """loss_and_backward (the fast path of fit) and loss/backward_loss agree."""
    dec = _tiny()
    reps, target = rng.standard_normal((4, 5)), rng.random((4, 3, 3, 3))
    dec.store.zero_grad()
    dec.loss_and_backward(reps, target)
    fast = dec.store.grad.copy()
    dec.store.zero_grad()
    dec.loss(reps, None, target, training=True)
    dec.backward_loss()
    np.testing.assert_allclose(fast, dec.store.grad, rtol=1e-12)


# ---------------------------------------------------------------- forward and prediction
def test_predict_shapes_ranges_and_uint8(rng):
    dec = ImageDecoder(d_model=8, size=6, hidden=(16,))
    pictures = dec.predict(rng.standard_normal((5, 8)).astype(np.float32))
    assert pictures.shape == (5, 6, 6, 3) and pictures.dtype == np.float32
    assert pictures.min() >= 0.0 and pictures.max() <= 1.0
    as_bytes = dec.predict_uint8(rng.standard_normal((5, 8)).astype(np.float32))
    assert as_bytes.dtype == np.uint8 and as_bytes.shape == (5, 6, 6, 3)
    np.testing.assert_array_equal(to_uint8(np.array([0.0, 0.5, 1.0, 1.7, -2.0])), [0, 128, 255, 255, 0])


def test_predict_batches_give_the_same_pictures(rng):
    dec = ImageDecoder(d_model=8, size=5, hidden=(16,))
    reps = rng.standard_normal((9, 8)).astype(np.float32)
    np.testing.assert_array_equal(dec.predict(reps, batch_size=2), dec.predict(reps))


# ---------------------------------------------------------------- training
@pytest.fixture(scope="module")
def pictures16():
    train = toy_pictures(900, seed=0, size=16, split="train")
    test = toy_pictures(150, seed=1, size=16, split="test")
    return train, test


@pytest.fixture(scope="module")
def trained16(pictures16):
    train = pictures16[0]
    dec = ImageDecoder(ATTRIBUTE_DIM, size=16, hidden=(64, 128), seed=0)
    hist = dec.fit(attribute_vectors(train.texts), train.images, epochs=4, batch_size=16,
                   optimizer=Adam(3e-3), verbose=False, validation_split=0.1)
    return dec, hist


def test_brief_training_beats_the_mean_picture_on_held_out_descriptions(pictures16, trained16):
    train, test = pictures16
    dec, hist = trained16
    baseline = mean_picture_baseline(train.images, test.images)
    mse = dec.evaluate(attribute_vectors(test.texts), test.images)
    assert mse < 0.5 * baseline, (mse, baseline)
    assert hist.history["loss"][-1] < hist.history["loss"][0]
    assert len(hist.history["val_loss"]) == len(hist.epoch) == 4


def test_training_and_drawing_are_deterministic_by_seed(pictures16):
    train, test = pictures16
    reps, images = attribute_vectors(train.texts[:200]), train.images[:200]
    drawn = []
    for seed in (0, 0, 1):
        dec = ImageDecoder(ATTRIBUTE_DIM, size=16, hidden=(32,), seed=seed)
        dec.fit(reps, images, epochs=2, batch_size=32, verbose=False)
        drawn.append(dec.predict_uint8(attribute_vectors(test.texts[:8])))
    np.testing.assert_array_equal(drawn[0], drawn[1])
    assert not np.array_equal(drawn[0], drawn[2])


def test_fit_with_bce_lowers_the_loss(pictures16):
    train = pictures16[0]
    dec = ImageDecoder(ATTRIBUTE_DIM, size=16, hidden=(32,), loss="bce")
    hist = dec.fit(attribute_vectors(train.texts[:300]), train.images[:300], epochs=3, verbose=False)
    assert hist.history["loss"][-1] < hist.history["loss"][0]


def test_minutes_limit_stops_training_early(pictures16):
    train = pictures16[0]
    dec = ImageDecoder(ATTRIBUTE_DIM, size=16, hidden=(16,))
    hist = dec.fit(attribute_vectors(train.texts[:64]), train.images[:64], epochs=1000,
                   minutes=1e-6, verbose=False)
    assert len(hist.epoch) == 1


def test_training_inside_a_bigger_store_updates_that_store(rng):
    """After a model (e.g. a Translator) gathers the decoder into its own flat buffer,
    fit() trains through that buffer instead of a stale private copy."""
    class Other(Layer):
        def __init__(self):
            super().__init__()
            self.add_param("w", np.ones((3, 3), dtype=np.float32))
    dec = ImageDecoder(d_model=4, size=3, hidden=(8,))
    other = Other()
    outer = ParameterStore([other, dec])
    before = outer.data.copy()
    dec.fit(rng.standard_normal((16, 4)).astype(np.float32), rng.random((16, 3, 3, 3)).astype(np.float32),
            epochs=2, verbose=False)
    n_other = other.params["w"].size
    assert np.array_equal(outer.data[:n_other], before[:n_other])  # the neighbour is untouched
    assert not np.array_equal(outer.data[n_other:], before[n_other:])
    assert np.shares_memory(dec.params["w0"], outer.data)


# ---------------------------------------------------------------- files and configuration
def test_save_and_load_round_trip_bitwise(tmp_path, rng):
    dec = ImageDecoder(d_model=6, size=4, hidden=(8, 5), loss="bce", seed=3)
    path = dec.save(tmp_path / "dec.safetensors")
    for loaded in (load_image_decoder(path), fastnet.io.load(path)):
        assert loaded.config() == dec.config()
        for name in dec.params:
            np.testing.assert_array_equal(loaded.params[name], dec.params[name])


def test_rebuilt_from_config_like_a_translator_does():
    dec = ImageDecoder(d_model=6, size=4, hidden=(8,), seed=2)
    again = ImageDecoder(dtype=np.float32, **dec.config())
    assert again.config() == dec.config()
    np.testing.assert_array_equal(again.params["w0"], dec.params["w0"])


def test_load_state_dict_names_the_wrong_weight():
    dec = ImageDecoder(d_model=6, size=4, hidden=(8,))
    arrays = dec.state_dict()
    arrays["w0"] = np.zeros((5, 8), np.float32)
    with pytest.raises(ValueError, match="'w0' has shape"):
        dec.load_state_dict(arrays)
    del arrays["w0"]
    with pytest.raises(ValueError, match="missing \\['w0'\\]"):
        dec.load_state_dict(arrays)


def test_loading_a_truncated_file_fails_clearly(tmp_path):
    path = ImageDecoder(d_model=6, size=4, hidden=(8,)).save(tmp_path / "dec.safetensors")
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])
    with pytest.raises(fastnet.io.ModelFileError):
        load_image_decoder(path)


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs, message", [
    ({"d_model": 0}, "d_model must be a positive integer"),
    ({"d_model": 4, "size": 2.5}, "size must be a positive integer"),
    ({"d_model": 4, "loss": "hinge"}, "loss must be one of"),
    ({"d_model": 4, "hidden": (8, -1)}, "hidden layer width"),
    ({"d_model": 4, "activation": "step"}, "hidden activation must be one of"),
    ({"d_model": 4, "activation": "gelu"}, "hidden activation must be one of"),
])
def test_bad_construction_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ImageDecoder(**kwargs)


def test_bad_data_is_refused_with_clear_messages(rng):
    dec = ImageDecoder(d_model=4, size=3, hidden=(8,))
    reps = rng.standard_normal((5, 4)).astype(np.float32)
    images = rng.random((5, 3, 3, 3)).astype(np.float32)
    with pytest.raises(ValueError, match=r"shape \(N, 4\)"):
        dec.predict(reps[:, :3])
    with pytest.raises(ValueError, match="NaN"):
        dec.predict(np.full((2, 4), np.nan, np.float32))
    with pytest.raises(ValueError, match=r"\(5, 3, 3, 3\)"):
        dec.fit(reps, images[:4], verbose=False)
    with pytest.raises(ValueError, match=r"lie in \[0, 1\]"):
        dec.fit(reps, images * 255, verbose=False)
    with pytest.raises(TypeError, match="uint8 or float"):
        dec.fit(reps, (images * 10).astype(np.int64), verbose=False)
    with pytest.raises(ValueError, match="zero pictures"):
        dec.fit(reps[:0], images[:0], verbose=False)
    with pytest.raises(ValueError, match="epochs"):
        dec.fit(reps, images, epochs=0, verbose=False)
    with pytest.raises(ValueError, match="not both"):
        dec.fit(reps, images, validation_data=(reps, images), validation_split=0.2, verbose=False)
    with pytest.raises(ValueError, match="no padding mask"):
        dec.loss(reps, np.zeros((5, 2), bool), images)
    with pytest.raises(RuntimeError, match="training=True"):
        ImageDecoder(d_model=4, size=3, hidden=(8,)).backward_loss()


def test_attribute_vectors_are_one_hot_per_field():
    vectors = attribute_vectors(["two big red circles on the left", "a cute green cat"])
    assert vectors.shape == (2, ATTRIBUTE_DIM)
    assert vectors.sum(axis=1).tolist() == [5.0, 5.0]
    assert not np.array_equal(vectors[0], vectors[1])
    with pytest.raises(ValueError, match="unknown colour"):
        attribute_vectors(["a grey circle"])


def test_summary_counts_parameters():
    dec = ImageDecoder(d_model=4, size=3, hidden=(8,))
    assert f"{dec.n_params():,}" in dec.summary()
    assert dec.n_params() == 4 * 8 + 8 + 8 * 27 + 27


# ---------------------------------------------------------------- on a Translator
@pytest.fixture(scope="module")
def small_pictures():
    return toy_pictures(96, seed=0, size=8)


def _translator(pictures):
    return fastnet.Translator.build(pictures.texts, {"sv": pictures.sv}, d_model=16, n_heads=2, n_layers=1,
                                    d_ff=32, tokenizer="word", seed=0)


@pytest.fixture(scope="module")
def drawing_translator(small_pictures):
    tr = _translator(small_pictures)
    train_pixels(tr, small_pictures.texts, small_pictures.images, epochs=2, verbose=False, hidden=(16,))
    return tr


def test_train_pixels_attaches_a_decoder_that_draws(drawing_translator, small_pictures):
    tr = drawing_translator
    assert pixel_decoder_names(tr) == ["pixels"] and tr.frozen_encoder
    one = tr.draw("a big red circle on the left")
    assert one.shape == (8, 8, 3) and one.dtype == np.uint8
    many = draw(tr, ["a big red circle on the left", "two small blue squares"])
    assert many.shape == (2, 8, 8, 3)
    np.testing.assert_array_equal(many[0], one)
    np.testing.assert_array_equal(tr.draw("a big red circle on the left"), one)  # deterministic
    floats = tr.translate(["a big red circle on the left"], to="pixels")
    np.testing.assert_array_equal(to_uint8(floats[0]), one)


def test_translator_with_pixels_saves_and_loads_bitwise(drawing_translator, tmp_path):
    path = drawing_translator.save(tmp_path / "tr.safetensors")
    loaded = fastnet.load(path)
    assert isinstance(loaded.decoders["pixels"], ImageDecoder)
    texts = ["a cute orange cat", "three green triangles at the top"]
    np.testing.assert_array_equal(loaded.draw(texts), drawing_translator.draw(texts))


def test_draw_to_png_writes_the_enlarged_picture(drawing_translator, tmp_path):
    Image = pytest.importorskip("PIL.Image")
    model = drawing_translator.save(tmp_path / "tr.safetensors")
    out = draw_to_png(model, "a big red circle", tmp_path / "circle.png", scale=4)
    data = open(out, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    picture = np.asarray(Image.open(out).convert("RGB"))
    assert picture.shape == (32, 32, 3)
    np.testing.assert_array_equal(picture[::4, ::4], drawing_translator.draw("a big red circle"))


def test_model_without_pixel_decoder_is_refused_clearly(small_pictures, tmp_path):
    tr = _translator(small_pictures)
    with pytest.raises(ValueError, match="no pixel decoder"):
        tr.draw("a big red circle")
    model = tr.save(tmp_path / "plain.safetensors")
    with pytest.raises(ValueError, match="no pixel decoder"):
        draw_to_png(model, "a big red circle", tmp_path / "x.png")
    with pytest.raises(ValueError, match="ImageDecoder alone"):
        draw_to_png(ImageDecoder(d_model=4, size=3, hidden=(4,)).save(tmp_path / "d.safetensors"),
                    "a red circle", tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_drawing_errors(drawing_translator, tmp_path):
    with pytest.raises(ValueError, match="list of descriptions is empty"):
        draw(drawing_translator, [])
    with pytest.raises(ValueError, match="not a pixel decoder"):
        draw(drawing_translator, "a red circle", decoder="sv")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        draw_to_png(tmp_path / "missing.safetensors", "a red circle", tmp_path / "no" / "dir" / "x.png")
    with pytest.raises(ValueError, match="non-empty description"):
        draw_to_png(tmp_path / "missing.safetensors", " ", tmp_path / "x.png")


def test_translator_fit_trains_encoder_and_pixel_decoder_together(small_pictures):
    """Through Translator.fit with an unfrozen encoder: loss/backward_loss carry the gradient into it."""
    tr = _translator(small_pictures)
    tr.add_decoder("pixels", ImageDecoder(16, size=8, hidden=(16,)), freeze_encoder=False)
    before = {k: v.copy() for k, v in tr.state_arrays().items()}
    hist = tr.fit(small_pictures.texts, {"pixels": small_pictures.images}, epochs=3, batch_size=16, verbose=0)
    after = tr.state_arrays()
    changed = {k for k in after if not np.array_equal(before[k], after[k])}
    assert any(k.startswith("encoder.") for k in changed)
    assert any(k.startswith("decoders.pixels.") for k in changed)
    assert not any(k.startswith("decoders.sv.") for k in changed)
    assert hist.history["loss"][-1] < hist.history["loss"][0]
    # the decoder's own fit continues on the very weights the Translator holds
    train_pixels(tr, small_pictures.texts, small_pictures.images, epochs=1, verbose=False)
    assert np.shares_memory(tr.decoders["pixels"].params["w0"], tr.store.data)

