"""The perceptron: learns AND and OR, cannot learn XOR; weights are plain, settable values."""
import numpy as np
import pytest

import fastnet as fn

X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
AND, OR, XOR = np.array([0, 0, 0, 1]), np.array([0, 1, 1, 1]), np.array([0, 1, 1, 0])


@pytest.mark.parametrize("target", [AND, OR], ids=["AND", "OR"])
def test_perceptron_rule_learns_linearly_separable_gates(target):
    p = fn.Perceptron(2).fit(X, target, epochs=50, lr=0.1)
    np.testing.assert_array_equal(p.predict(X), target)
    assert p.history_["errors"][-1] == 0 and len(p.history_["errors"]) < 50


def test_perceptron_cannot_learn_xor():
    p = fn.Perceptron(2).fit(X, XOR, epochs=100, lr=0.1)
    assert p.score(X, XOR) <= 0.75
    assert min(p.history_["errors"]) > 0


def test_weights_and_bias_are_readable_and_settable():
    p = fn.Perceptron(2)
    p.weights = [1.0, 1.0]
    p.bias = -1.5
    np.testing.assert_array_equal(p.forward(X), AND)       # the textbook AND unit
    np.testing.assert_allclose(p.net_input(X), [-1.5, -0.5, -0.5, 0.5])
    assert isinstance(p.bias, float) and p.weights.shape == (2,)
    p.weights[1] = 0.0                                       # writing into the array changes the unit
    np.testing.assert_array_equal(p.forward(X), [0, 0, 0, 0])
    with pytest.raises(ValueError, match=r"weights must have shape \(2,\)"):
        p.weights = [1.0, 2.0, 3.0]


def test_gradient_rule_with_sigmoid():
    p = fn.Perceptron(2, activation="sigmoid").fit(X, OR, epochs=500, lr=1.0, rule="gradient")
    np.testing.assert_array_equal(p.predict(X), OR)
    losses = p.history_["loss"]
    assert losses[-1] < losses[0] and all(b <= a for a, b in zip(losses, losses[1:]))
    out = p.forward(X)
    assert np.all((out > 0) & (out < 1))


def test_gradient_rule_with_linear_unit():
    p = fn.Perceptron(2, activation="identity").fit(X, AND, epochs=2000, lr=0.1, rule="gradient")
    np.testing.assert_allclose(p.weights, [0.5, 0.5], atol=1e-3)   # the least-squares fit
    np.testing.assert_array_equal(p.predict(X), AND)


def test_perceptron_errors():
    with pytest.raises(ValueError, match="step activation has no gradient"):
        fn.Perceptron(2).fit(X, AND, rule="gradient")
    with pytest.raises(ValueError, match="rule must be"):
        fn.Perceptron(2).fit(X, AND, rule="magic")
    with pytest.raises(ValueError, match=r"X must have shape \(n_samples, 2\)"):
        fn.Perceptron(2).forward(np.ones((4, 3)))
    with pytest.raises(ValueError, match="X has 4 samples but y has 3"):
        fn.Perceptron(2).fit(X, AND[:3])
    with pytest.raises(ValueError, match="unknown activation"):
        fn.Perceptron(2, activation="softsign")

