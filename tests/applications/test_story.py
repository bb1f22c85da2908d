"""The printable story steps: the numbers they print are the numbers they promise."""
import fastnet as fn
from fastnet.demo.story import network_story, perceptron_story


def test_perceptron_story():
    lines = []
    results = perceptron_story(print=lines.append)
    assert results["perceptron_and"] == results["perceptron_or"] == 1.0
    assert results["perceptron_xor"] <= 0.75
    assert results["network_xor"] == 1.0 and results["network_xor_loss"] < 0.05
    assert any("not linearly separable" in line for line in lines)


def test_network_story():
    lines = []
    # One thread keeps this quick on a loaded machine; the kernels give the same bits on any thread count.
    with fn.threads(1):
        r = network_story(print=lines.append)
    assert r["spirals_steps"] >= 2000
    assert r["spirals_test_accuracy"] >= 0.95
    # overfitting: near-perfect on the training points, clearly worse on new ones
    assert r["overfit_train_accuracy"] >= 0.95
    assert r["overfit_test_accuracy"] <= r["overfit_train_accuracy"] - 0.1
    assert r["overfitting_warned"]
    assert r["overfit_final_val_loss"] > 2 * r["best_val_loss"]
    # early stopping brings back the best epoch, which generalises better
    assert r["early_val_loss"] == r["best_val_loss"]
    assert r["early_stopped_epoch"] < 300
    assert r["early_test_accuracy"] > r["overfit_test_accuracy"] + 0.03
    assert any("EarlyStopping" in line for line in lines) and any("epoch 100" in line for line in lines)
