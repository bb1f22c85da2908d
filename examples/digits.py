"""Handwritten digits (scikit-learn's 8x8 images): 64 -> 128 relu -> 10, Adam, batch 32, 30 epochs.

Trains on a 75/25 split, prints the test accuracy, and compares the wall time
with scikit-learn's MLPClassifier trained with the same settings.

    python examples/digits.py [--no-sklearn-baseline] [--save digits.fastnet]
"""
import argparse
import time
import warnings

import numpy as np

import fastnet as fn


def load_digits():
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError:
        raise SystemExit("this example needs scikit-learn for its bundled digits: pip install scikit-learn")
    digits = sk_load_digits()
    return (digits.data / 16.0).astype(np.float32), digits.target


def standardize(Xtr, Xte):
    """Zero mean, unit variance per pixel, using training statistics only (constant pixels stay 0)."""
    mean, std = Xtr.mean(axis=0), Xtr.std(axis=0)
    std[std == 0] = 1.0
    return (Xtr - mean) / std, (Xte - mean) / std


def train_fastnet(Xtr, ytr, Xte, yte, epochs=30, verbose=1):
    # Glorot-uniform weights, as scikit-learn's MLPClassifier initialises its layers.
    net = fn.Network([fn.Dense(64, 128, activation="relu", init="glorot_uniform"),
                      fn.Dense(128, 10, init="glorot_uniform")],
                     loss="softmax_cross_entropy", optimizer=fn.Adam(1e-3), seed=0)
    start = time.perf_counter()
    history = net.fit(Xtr, ytr, epochs=epochs, batch_size=32, verbose=verbose)
    seconds = time.perf_counter() - start
    return net, history, seconds, net.evaluate(Xte, yte)["accuracy"]


def train_sklearn(Xtr, ytr, Xte, yte, epochs=30):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    clf = MLPClassifier(hidden_layer_sizes=(128,), activation="relu", solver="adam", learning_rate_init=1e-3,
                        batch_size=32, max_iter=epochs, shuffle=True, random_state=0, tol=0.0,
                        n_iter_no_change=epochs + 1)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(Xtr, ytr)
    seconds = time.perf_counter() - start
    return seconds, clf.score(Xte, yte)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--no-sklearn-baseline", action="store_true")
    parser.add_argument("--save", help="save the trained network to this file")
    args = parser.parse_args(argv)

    X, y = load_digits()
    Xtr, Xte, ytr, yte = fn.train_test_split(X, y, test_size=0.25, seed=0, stratify=y)
    Xtr, Xte = standardize(Xtr, Xte)
    print(f"digits: {len(Xtr)} training and {len(Xte)} test images of 8x8 pixels, 10 classes")
    net, history, seconds, accuracy = train_fastnet(Xtr, ytr, Xte, yte, args.epochs)
    net.summary()
    print(f"fastnet : test accuracy {accuracy:.4f}, training time {seconds:.2f} s "
          f"(final training loss {history.history['loss'][-1]:.4f})")
    if not args.no_sklearn_baseline:
        sk_seconds, sk_accuracy = train_sklearn(Xtr, ytr, Xte, yte, args.epochs)
        print(f"sklearn : test accuracy {sk_accuracy:.4f}, training time {sk_seconds:.2f} s "
              f"(MLPClassifier, same layers, Adam 1e-3, batch 32, {args.epochs} epochs)")
        print(f"fastnet is {sk_seconds / seconds:.1f}x faster")
    if args.save:
        net.save(args.save)
        print(f"saved to {args.save}; reload with fn.load({args.save!r})")
    return accuracy


if __name__ == "__main__":
    main()
