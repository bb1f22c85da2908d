"""The first chapter of the story, as short printable steps: one perceptron, then a tiny network.

`perceptron_story()` prints what happens and returns the numbers, so the
command-line demo can show it and a test can check it.
"""
import warnings

import numpy as np

import fastnet as fn
from fastnet.callbacks import Callback, OverfittingDetected
from fastnet.data import make_spirals

LOGIC_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
GATES = {"AND": np.array([0, 0, 0, 1]), "OR": np.array([0, 1, 1, 1]), "XOR": np.array([0, 1, 1, 0])}


def _show_table(print, name, predictions):
    rows = "  ".join(f"{a}{b}->{p}" for (a, b), p in zip(LOGIC_X.astype(int), predictions))
    print(f"    {name:<3} {rows}")


def perceptron_story(print=print, seed=0):
    """Train a perceptron on AND, OR and XOR, then a 2-8-2 network on XOR; returns the accuracies."""
    results = {}
    print("1. One perceptron: output = step(w1*x1 + w2*x2 + b)")
    for gate in ("AND", "OR", "XOR"):
        p = fn.Perceptron(2, seed=seed).fit(LOGIC_X, GATES[gate], epochs=50, lr=0.1)
        accuracy = p.score(LOGIC_X, GATES[gate])
        results[f"perceptron_{gate.lower()}"] = accuracy
        w = ", ".join(f"{v:+.2f}" for v in p.weights)
        print(f"   {gate}: weights [{w}], bias {p.bias:+.2f}, {len(p.history_['errors'])} epochs, "
              f"accuracy {accuracy:.0%}")
        _show_table(print, gate, p.predict(LOGIC_X))
    print("   XOR is not linearly separable: no single line splits its 1s from its 0s,")
    print("   so one perceptron can never get all four right.")

    print("2. Two layers of perceptrons (2 -> 8 tanh -> 2) trained by gradient descent")
    net = fn.Network([fn.Dense(2, 8, activation="tanh"), fn.Dense(8, 2)], optimizer=fn.Adam(0.05), seed=seed)
    history = net.fit(LOGIC_X, GATES["XOR"], epochs=300, batch_size=4, verbose=0)
    accuracy = net.evaluate(LOGIC_X, GATES["XOR"])["accuracy"]
    results["network_xor"] = accuracy
    results["network_xor_loss"] = history.history["loss"][-1]
    print(f"   loss {history.history['loss'][0]:.3f} -> {history.history['loss'][-1]:.4f} in 300 epochs, "
          f"accuracy {accuracy:.0%}")
    _show_table(print, "XOR", net.predict(LOGIC_X))
    print("   The hidden layer bends the space so that a line can split XOR after all.")
    return results


class _PrintEvery(Callback):
    """A callback printing one compact line every `every` epochs (the demo runs without progress bars)."""

    def __init__(self, print, every, total):
        super().__init__()
        self.print, self.every, self.total = print, every, total

    def on_epoch_end(self, epoch, logs):
        if (epoch + 1) % self.every == 0 or epoch + 1 == self.total:
            shown = "  ".join(f"{k} {logs[k]:.3f}" for k in ("loss", "accuracy", "val_loss", "val_accuracy")
                              if k in logs)
            self.print(f"   epoch {epoch + 1:>3}  {shown}")


def network_story(print=print, seed=0):
    """A deep network learns two interleaved spirals; then overfitting, seen and cured by early stopping.

    Returns the accuracies and losses it prints, so a test can check them.
    """
    results = {}
    print("3. A deep network (2 -> 64 -> 64 -> 2, ReLU) on two interleaved spirals")
    X, y = make_spirals(1000, turns=1.5, noise=0.05, seed=seed)
    Xtr, Xte, ytr, yte = fn.train_test_split(X, y, test_size=0.25, seed=seed, stratify=y)
    print(f"   {len(Xtr)} points to learn from, {len(Xte)} held out to test on; no straight line splits the arms")
    net = fn.Network([fn.Dense(2, 64, activation="relu"), fn.Dense(64, 64, activation="relu"), fn.Dense(64, 2)],
                     optimizer=fn.Adam(0.01), seed=seed)
    epochs = 100
    net.fit(Xtr, ytr, epochs=epochs, batch_size=32, verbose=0, callbacks=[_PrintEvery(print, 20, epochs)])
    results["spirals_steps"] = net.optimizer.iterations
    results["spirals_train_accuracy"] = net.evaluate(Xtr, ytr)["accuracy"]
    results["spirals_test_accuracy"] = net.evaluate(Xte, yte)["accuracy"]
    print(f"   {net.optimizer.iterations} steps: train accuracy {results['spirals_train_accuracy']:.1%}, "
          f"test accuracy {results['spirals_test_accuracy']:.1%} on points it never saw")

    print("4. Overfitting: a big network (2 -> 256 -> 256 -> 2), 50 training points, 1 in 5 labelled wrong")
    Xs, ys = make_spirals(50, turns=0.75, noise=0.1, seed=seed + 1)
    mislabelled = np.random.default_rng(seed + 10).random(len(ys)) < 0.2   # a careless annotator
    ys = np.where(mislabelled, 1 - ys, ys)
    Xv, yv = make_spirals(300, turns=0.75, noise=0.1, seed=seed + 2)   # validation: watched while training
    Xt, yt = make_spirals(1000, turns=0.75, noise=0.1, seed=seed + 3)  # test: looked at only at the end

    def big_network():
        return fn.Network([fn.Dense(2, 256, activation="relu"), fn.Dense(256, 256, activation="relu"),
                           fn.Dense(256, 2)], optimizer=fn.Adam(0.01), seed=seed)

    big = big_network()
    epochs = 300
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", OverfittingDetected)
        history = big.fit(Xs, ys, epochs=epochs, batch_size=50, validation_data=(Xv, yv), verbose=0,
                          callbacks=[_PrintEvery(print, 60, epochs)])
    flagged = [w for w in caught if issubclass(w.category, OverfittingDetected)]
    best_epoch, best_val = history.best("val_loss")
    results.update(overfit_train_accuracy=big.evaluate(Xs, ys)["accuracy"],
                   overfit_test_accuracy=big.evaluate(Xt, yt)["accuracy"],
                   overfit_final_val_loss=history["val_loss"][-1], best_val_loss=best_val,
                   best_epoch=best_epoch + 1, overfitting_warned=bool(flagged))
    if flagged:
        print(f"   warning: {flagged[0].message}")
    print(f"   train accuracy {results['overfit_train_accuracy']:.0%} but test accuracy "
          f"{results['overfit_test_accuracy']:.1%}: it memorised the 50 points, wrong labels and all.")
    print(f"   Validation loss was lowest ({best_val:.3f}) at epoch {best_epoch + 1}, "
          f"then climbed to {history['val_loss'][-1]:.3f}.")

    print("5. EarlyStopping(patience=20, restore_best=True): stop when validation loss stops improving")
    stopper = fn.EarlyStopping(patience=20, restore_best=True)
    early = big_network()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OverfittingDetected)
        early_history = early.fit(Xs, ys, epochs=epochs, batch_size=50, validation_data=(Xv, yv), verbose=0,
                                  callbacks=[stopper])
    results.update(early_stopped_epoch=len(early_history), early_val_loss=early.evaluate(Xv, yv)["loss"],
                   early_test_accuracy=early.evaluate(Xt, yt)["accuracy"])
    print(f"   stopped after {len(early_history)} of {epochs} epochs and restored epoch {stopper.best_epoch + 1}: "
          f"validation loss {results['early_val_loss']:.3f}, test accuracy {results['early_test_accuracy']:.1%} "
          f"(vs {results['overfit_test_accuracy']:.1%} after all {epochs} epochs)")
    return results
