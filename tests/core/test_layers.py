"""Layers and losses: backward against float64 finite differences, and their errors.

The activations, the registered layers (fastnet.layers.LAYERS) and the losses
(fastnet.losses.LOSSES) are taken from their registries."""
import numpy as np
import pytest

import fastnet as fn
from fastnet import layers, losses
from helpers import DIFFERENTIABLE, numerical_gradient_in_place

RTOL = 1e-4
ATOL = 1e-8


def check_layer(layer, x, rng):
    """Compare d sum(r * layer(x)) / d(x, params) from backward with finite differences."""
    r = rng.standard_normal(layer.forward(x, training=True).shape)

    def objective():
        return float(np.sum(r * layer.forward(x, training=True)))

    for g in layer.grads.values():
        g[...] = 0
    layer.forward(x, training=True)
    dx = layer.backward(r)
    np.testing.assert_allclose(dx, numerical_gradient_in_place(objective, x), rtol=RTOL, atol=ATOL)
    for name, param in layer.params.items():
        np.testing.assert_allclose(layer.grads[name], numerical_gradient_in_place(objective, param),
                                   rtol=RTOL, atol=ATOL, err_msg=f"gradient of {name}")


@pytest.mark.parametrize("activation", [None] + DIFFERENTIABLE)
def test_dense_backward_matches_finite_differences(activation, rng):
    layer = fn.Dense(5, 4, activation=activation)
    layer.initialize(rng)
    layer.params["b"][...] = rng.standard_normal(4) * 0.1
    check_layer(layer, rng.standard_normal((3, 5)), rng)


def test_dense_without_bias(rng):
    layer = fn.Dense(3, 2, use_bias=False)
    layer.initialize(rng)
    assert set(layer.params) == {"w"}
    check_layer(layer, rng.standard_normal((4, 3)), rng)


def test_dense_backward_accumulates(rng):
    layer = fn.Dense(3, 2, activation="tanh")
    layer.initialize(rng)
    x, dy = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
    layer.forward(x, training=True)
    layer.backward(dy)
    once = layer.grads["w"].copy()
    layer.backward(dy)
    np.testing.assert_allclose(layer.grads["w"], 2 * once, rtol=1e-12)


@pytest.mark.parametrize("name", DIFFERENTIABLE + ["softmax"])
def test_activation_backward_matches_finite_differences(name, rng):
    check_layer(fn.Activation(name), rng.standard_normal((3, 6)), rng)


def test_dense_forward_is_x_w_plus_b(rng):
    layer = fn.Dense(4, 3, activation="relu")
    layer.initialize(rng)
    layer.params["b"][...] = [0.5, -0.5, 0.1]
    x = rng.standard_normal((5, 4))
    expected = np.maximum(x @ layer.params["w"] + layer.params["b"], 0)
    np.testing.assert_allclose(layer.forward(x), expected, rtol=1e-12)


# An example of every registered layer (input width 5), and whether its training forward is
# deterministic (finite differences apply; Dropout draws a new mask per call and has its own tests).
LAYER_EXAMPLES = {
    "Dense": (lambda: fn.Dense(5, 4, activation="tanh"), True),
    "Activation": (lambda: fn.Activation("sigmoid"), True),
    "Dropout": (lambda: fn.Dropout(0.25), False),
}


def test_every_registered_layer_has_an_example():
    assert set(layers.LAYERS) == set(LAYER_EXAMPLES), "add an example of the new layer to LAYER_EXAMPLES"


@pytest.mark.parametrize("name", sorted(layers.LAYERS))
def test_registered_layers_rebuild_from_their_config_and_pass_the_gradient_check(name, rng):
    make, deterministic = LAYER_EXAMPLES[name]
    layer = make()
    rebuilt = layers.layer_from_config(layers.layer_to_config(layer))
    assert type(rebuilt) is type(layer) and rebuilt.config() == layer.config()
    layer.initialize(rng)
    x = rng.standard_normal((3, 5))
    assert layer.forward(x, training=False).shape[0] == 3
    if deterministic:
        check_layer(layer, x, rng)


def test_dropout_masks_and_scales(rng):
    layer = fn.Dropout(0.25)
    layer.initialize(np.random.default_rng(0))
    x = np.ones((200, 50))
    y = layer.forward(x, training=True)
    kept = y != 0
    np.testing.assert_allclose(np.unique(y), [0.0, 1 / 0.75], rtol=1e-15)
    assert abs(kept.mean() - 0.75) < 0.02
    dy = rng.standard_normal(x.shape)
    np.testing.assert_allclose(layer.backward(dy), dy * kept / 0.75, rtol=1e-15)
    assert layer.forward(x, training=False) is x
    second = layer.forward(x, training=True)
    assert not np.array_equal(second != 0, kept)   # a fresh mask every step


def test_dropout_is_seeded():
    draws = []
    for _ in range(2):
        layer = fn.Dropout(0.5)
        layer.initialize(np.random.default_rng(7))
        draws.append(layer.forward(np.ones((4, 8), dtype=np.float32), training=True).copy())
    np.testing.assert_array_equal(draws[0], draws[1])


@pytest.mark.parametrize("bad", [-0.1, 1.0, "half"])
def test_dropout_rejects_bad_rate(bad):
    with pytest.raises(ValueError, match="Dropout rate"):
        fn.Dropout(bad)


def test_layer_constructor_errors():
    with pytest.raises(ValueError, match="n_in"):
        fn.Dense(0, 3)
    with pytest.raises(ValueError, match="unknown activation 'no_such_activation'"):
        fn.Dense(2, 3, activation="no_such_activation")
    with pytest.raises(ValueError, match="unknown initializer"):
        fn.Dense(2, 3, init="ones")
    with pytest.raises(ValueError, match="step activation has no gradient"):
        layer = fn.Dense(2, 1, activation="step")
        layer.forward(np.ones((1, 2)), training=True)
        layer.backward(np.ones((1, 1)))


def test_initializers_follow_activation():
    rng = np.random.default_rng(0)
    relu, tanh = fn.Dense(400, 300, activation="relu"), fn.Dense(400, 300, activation="tanh")
    relu.initialize(rng)
    tanh.initialize(rng)
    assert abs(relu.params["w"].std() - np.sqrt(2 / 400)) < 0.002          # He normal
    assert abs(np.abs(tanh.params["w"]).max() - np.sqrt(6 / 700)) < 0.002   # Glorot uniform limit
    assert np.all(relu.params["b"] == 0)


# ---- losses -----------------------------------------------------------------
def check_loss(loss, output, target):
    prepared = loss.prepare_targets(target, output.shape[0], output.shape[1], np.float64)
    value, grad = loss(output, prepared)
    numeric = numerical_gradient_in_place(lambda: loss(output, prepared)[0], output)
    np.testing.assert_allclose(grad, numeric, rtol=RTOL, atol=ATOL)
    return value


# Example (outputs, targets) of every loss class in the registry: a new loss is checked once it has one.
LOSS_EXAMPLES = {
    losses.SoftmaxCrossEntropy: lambda rng: (rng.standard_normal((5, 4)), np.array([0, 3, 1, 1, 2])),
    losses.BinaryCrossEntropy: lambda rng: (rng.standard_normal((6, 1)), np.array([0, 1, 1, 0, 1, 0])),
    losses.MeanSquaredError: lambda rng: (rng.standard_normal((4, 3)), rng.standard_normal((4, 3))),
}


def test_every_registered_loss_has_an_example():
    assert set(losses.LOSSES.values()) == set(LOSS_EXAMPLES), "add an example of the new loss to LOSS_EXAMPLES"


@pytest.mark.parametrize("name", sorted(losses.LOSSES))
def test_every_loss_name_gives_a_loss_whose_gradient_matches_finite_differences(name, rng):
    loss = losses.get(name)
    output, target = LOSS_EXAMPLES[type(loss)](rng)
    assert np.isfinite(check_loss(loss, output, target))


def test_softmax_cross_entropy_gradient(rng):
    logits = rng.standard_normal((5, 4))
    labels = np.array([0, 3, 1, 1, 2])
    value = check_loss(losses.SoftmaxCrossEntropy(), logits, labels)
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    assert value == pytest.approx(-logp[np.arange(5), labels].mean(), rel=1e-12)


def test_binary_cross_entropy_gradient(rng):
    logits = rng.standard_normal((6, 1))
    value = check_loss(losses.BinaryCrossEntropy(), logits, np.array([0, 1, 1, 0, 1, 0]))
    p = 1 / (1 + np.exp(-logits[:, 0]))
    t = np.array([0, 1, 1, 0, 1, 0])
    assert value == pytest.approx(-(t * np.log(p) + (1 - t) * np.log(1 - p)).mean(), rel=1e-10)


def test_mse_gradient(rng):
    pred = rng.standard_normal((4, 3))
    target = rng.standard_normal((4, 3))
    assert check_loss(losses.MeanSquaredError(), pred, target) == pytest.approx(((pred - target) ** 2).mean())


def test_loss_lookup_errors():
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        losses.get("hinge")
