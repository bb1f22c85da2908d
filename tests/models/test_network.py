"""Network: training converges, gradients are right, runs are reproducible, bad input is refused."""
import numpy as np
import pytest

import fastnet as fn

XOR_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
XOR_Y = np.array([0, 1, 1, 0])


def xor_net(seed=0, optimizer=None):
    return fn.Network([fn.Dense(2, 8, activation="tanh"), fn.Dense(8, 2)],
                      optimizer=optimizer or fn.Adam(0.05), seed=seed)


def blobs(n=200, seed=0, n_classes=3, n_features=4):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 4, size=(n_classes, n_features))
    y = rng.integers(0, n_classes, size=n)
    return (centers[y] + rng.normal(size=(n, n_features))).astype(np.float32), y


def test_xor_reaches_100_percent():
    net = xor_net()
    history = net.fit(XOR_X, XOR_Y, epochs=300, batch_size=4, verbose=0)
    np.testing.assert_array_equal(net.predict(XOR_X), XOR_Y)
    assert net.evaluate(XOR_X, XOR_Y)["accuracy"] == 1.0
    assert history.history["loss"][-1] < 0.05 < history.history["loss"][0]


def test_separable_problem_with_validation():
    X, y = blobs()
    net = fn.Network([fn.Dense(4, 16, activation="relu"), fn.Dense(16, 3)], optimizer=fn.SGD(0.1, momentum=0.9))
    history = net.fit(X, y, epochs=10, batch_size=16, validation_split=0.25, verbose=0)
    assert history.history["val_accuracy"][-1] >= 0.95
    assert set(history.history) >= {"loss", "accuracy", "val_loss", "val_accuracy", "time"}
    assert history.epoch == list(range(10))


def test_loss_decreases_monotonically_on_a_fixed_batch():
    X, y = blobs(n=32)
    net = fn.Network([fn.Dense(4, 8, activation="tanh"), fn.Dense(8, 3)], optimizer=fn.SGD(0.01))
    losses = [net.train_on_batch(X, y) for _ in range(50)]
    assert all(b < a for a, b in zip(losses, losses[1:]))


def test_network_gradient_matches_finite_differences():
    rng = np.random.default_rng(3)
    net = fn.Network([fn.Dense(3, 5, activation="tanh"), fn.Dense(5, 4, activation="gelu"), fn.Dense(4, 3)],
                     dtype=np.float64, seed=1)
    X, y = rng.standard_normal((6, 3)), np.array([0, 2, 1, 1, 0, 2])
    out = net._forward(X, True)
    _, grad = net.loss(out, y)
    net.store.zero_grad()
    for layer in reversed(net.layers):
        grad = layer.backward(grad)
    analytic = net.store.grad.copy()
    numeric = np.zeros_like(analytic)
    for i in range(net.store.data.size):
        old = net.store.data[i]
        net.store.data[i] = old + 1e-6
        up = net.loss(net._forward(X, False), y)[0]
        net.store.data[i] = old - 1e-6
        down = net.loss(net._forward(X, False), y)[0]
        net.store.data[i] = old
        numeric[i] = (up - down) / 2e-6
    np.testing.assert_allclose(analytic, numeric, rtol=1e-4, atol=1e-9)


def test_training_is_bitwise_reproducible():
    X, y = blobs(n=100)

    def train():
        net = fn.Network([fn.Dense(4, 16, activation="relu"), fn.Dropout(0.2), fn.Dense(16, 3)], seed=42)
        net.fit(X, y, epochs=3, batch_size=8, verbose=0)
        return net.store.data.copy()

    first, second = train(), train()
    assert first.tobytes() == second.tobytes()
    other = fn.Network([fn.Dense(4, 16, activation="relu"), fn.Dropout(0.2), fn.Dense(16, 3)], seed=43)
    assert other.store.data.tobytes() != first.tobytes()


def test_input_dropout_before_the_first_dense_layer():
    X, y = blobs(n=64)
    net = fn.Network([fn.Dropout(0.1), fn.Activation("tanh"), fn.Dense(4, 8, activation="relu"), fn.Dense(8, 3)])
    history = net.fit(X, y, epochs=3, batch_size=16, verbose=0)
    assert history["loss"][-1] < history["loss"][0]
    assert net.layers[2].need_input_grad is False and net.layers[3].need_input_grad is True


def test_float64_network_trains():
    X, y = blobs(n=60)
    net = fn.Network([fn.Dense(4, 8, activation="relu"), fn.Dense(8, 3)], dtype=np.float64)
    net.fit(X, y, epochs=5, verbose=0)
    assert net.store.data.dtype == np.float64
    assert net.predict_proba(X).dtype == np.float64


def test_predict_proba_and_binary_loss():
    net = fn.Network([fn.Dense(2, 8, activation="tanh"), fn.Dense(8, 1)], loss="binary_cross_entropy",
                     optimizer=fn.Adam(0.05))
    net.fit(XOR_X, XOR_Y, epochs=300, batch_size=4, verbose=0)
    np.testing.assert_array_equal(net.predict(XOR_X), XOR_Y)
    proba = net.predict_proba(XOR_X)
    assert proba.shape == (4, 1) and np.all((proba > 0.5)[:, 0] == XOR_Y.astype(bool))
    multi = xor_net()
    np.testing.assert_allclose(multi.predict_proba(XOR_X).sum(axis=1), 1.0, rtol=1e-6)


def test_one_hot_labels_are_accepted():
    net = xor_net()
    one_hot = np.eye(2)[XOR_Y]
    net.fit(XOR_X, one_hot, epochs=300, batch_size=4, verbose=0)
    assert net.evaluate(XOR_X, one_hot) == net.evaluate(XOR_X, XOR_Y)
    with pytest.raises(ValueError, match="one integer class label per sample"):
        net.fit(XOR_X, np.full((4, 2), 0.5), verbose=0)


def test_regression_with_mse():
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, size=(256, 3)).astype(np.float32)
    y = X @ np.array([1.5, -2.0, 0.5]) + 0.3
    net = fn.Network([fn.Dense(3, 1)], loss="mse", optimizer=fn.SGD(0.1))
    net.fit(X, y, epochs=30, batch_size=16, verbose=0)
    scores = net.evaluate(X, y)
    assert set(scores) == {"loss", "mse", "mae"} and scores["mse"] < 1e-4
    assert net.predict(X).shape == (256,)
    with pytest.raises(TypeError, match="predict_proba needs a classification loss"):
        net.predict_proba(X)


def test_random_search_lowers_the_loss():
    net = xor_net(optimizer=fn.RandomSearch(step_size=0.5, seed=1))
    before = net.evaluate(XOR_X, XOR_Y)["loss"]
    history = net.fit(XOR_X, XOR_Y, epochs=200, batch_size=4, shuffle=False, verbose=0)
    after = net.evaluate(XOR_X, XOR_Y)["loss"]
    assert after < 0.5 * before
    assert all(b <= a for a, b in zip(history["loss"], history["loss"][1:]))  # it only keeps improvements
    assert net.optimizer.accepted > 0


def test_summary_lists_layers_and_parameters(capsys):
    net = fn.Network([fn.Dense(64, 128, activation="relu"), fn.Dropout(0.1), fn.Dense(128, 10)])
    text = net.summary()
    assert "(batch, 128)" in text and "(batch, 10)" in text
    assert "8,320" in text and "1,290" in text and "9,610" in text
    assert capsys.readouterr().out.strip() == text.strip()


def test_progress_bar_shows_loss_and_rate(capsys):
    net = xor_net()
    net.fit(XOR_X, XOR_Y, epochs=2, batch_size=2, verbose=1)
    err = capsys.readouterr().err
    assert "epoch 2" in err and "samples/s" in err and "loss=" in err
    net.fit(XOR_X, XOR_Y, epochs=1, verbose=0)
    assert capsys.readouterr().err == ""


# ---- bad input ----------------------------------------------------------------
def test_bad_inputs_raise_clear_errors():
    net = xor_net()
    with pytest.raises(ValueError, match="X has 4 samples but y has 3"):
        net.fit(XOR_X, XOR_Y[:3], verbose=0)
    with pytest.raises(ValueError, match="X has 3 features, but the network expects 2"):
        net.fit(np.ones((4, 3)), XOR_Y, verbose=0)
    with pytest.raises(ValueError, match="label 2, but the network has 2 outputs"):
        net.fit(XOR_X, [0, 1, 2, 0], verbose=0)
    with pytest.raises(ValueError, match="label -1"):
        net.fit(XOR_X, [0, 1, -1, 0], verbose=0)
    with pytest.raises(ValueError, match="X is empty"):
        net.fit(np.empty((0, 2)), np.empty(0, dtype=int), verbose=0)
    bad = XOR_X.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"NaN or infinity \(first at row 2, column 1\)"):
        net.fit(bad, XOR_Y, verbose=0)
    with pytest.raises(ValueError, match="X has 3 features"):
        net.predict(np.ones((2, 3)))
    with pytest.raises(ValueError, match="integer class labels"):
        net.fit(XOR_X, [0.5, 1, 1, 0], verbose=0)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        net.fit(XOR_X, XOR_Y, batch_size=0, verbose=0)
    with pytest.raises(ValueError, match="either validation_data or validation_split"):
        net.fit(XOR_X, XOR_Y, validation_data=(XOR_X, XOR_Y), validation_split=0.5, verbose=0)


def test_layer_chain_must_fit():
    with pytest.raises(ValueError, match="layer 1 .* expects 5 inputs but the layer before it gives 4"):
        fn.Network([fn.Dense(2, 4), fn.Dense(5, 1)])
    with pytest.raises(TypeError, match="not a fastnet Layer"):
        fn.Network([fn.Dense(2, 4), "relu"])


def test_nan_loss_stops_training_naming_epoch_and_step():
    X, y = blobs(n=64)
    X *= 1e30
    net = fn.Network([fn.Dense(4, 8, activation="relu"), fn.Dense(8, 3)], optimizer=fn.SGD(1e10))
    with pytest.raises(FloatingPointError, match=r"(loss became (nan|inf)|NaN or infinite).* at epoch 1, step \d+"):
        net.fit(X, y, epochs=3, batch_size=16, verbose=0)
    assert np.isfinite(net.store.data).all()
