"""Data helpers: hold out a test set, cut data into mini-batches, make toy data sets."""
import numpy as np

from fastnet.checks import positive_int


def _n_test(test_size, n):
    if isinstance(test_size, (float, np.floating)):
        if not 0.0 < test_size < 1.0:
            raise ValueError(f"test_size as a fraction must be in (0, 1), got {test_size!r}")
        n_test = int(np.ceil(test_size * n))
    elif isinstance(test_size, (int, np.integer)) and not isinstance(test_size, bool):
        n_test = int(test_size)
    else:
        raise TypeError(f"test_size must be a fraction or a count, got {test_size!r}")
    if not 0 < n_test < n:
        raise ValueError(f"test_size={test_size!r} leaves {n_test} of {n} samples for testing; "
                         f"both the training and the test set need at least one sample")
    return n_test


def _stratified_test_indices(labels, n_test, rng):
    """Pick n_test indices so each class keeps (about) its share; largest remainders get the leftovers."""
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    exact = counts * (n_test / labels.shape[0])
    take = np.floor(exact).astype(np.int64)
    leftover = n_test - int(take.sum())
    order = np.lexsort((rng.random(len(classes)), -(exact - take)))
    take[order[:leftover]] += 1
    picked = []
    for c in range(len(classes)):
        members = np.flatnonzero(inverse == c)
        picked.append(rng.permutation(members)[:take[c]])
    return np.concatenate(picked)


def train_test_split(X, y, test_size=0.25, seed=0, stratify=None):
    """Shuffle and split into (X_train, X_test, y_train, y_test).

    test_size: a fraction in (0, 1) or a number of samples. stratify: labels
    (usually y) whose class proportions both parts should keep, or True for y.
    The same seed gives the same split.
    """
    X = np.asarray(X)
    y = np.asarray(y)
    if X.ndim == 0 or y.ndim == 0:
        raise ValueError("X and y must be arrays with one row per sample")
    n = X.shape[0]
    if y.shape[0] != n:
        raise ValueError(f"X has {n} samples but y has {y.shape[0]}; they must match")
    n_test = _n_test(test_size, n)
    rng = np.random.default_rng(seed)
    if stratify is None or stratify is False:
        test_idx = rng.permutation(n)[:n_test]
    else:
        labels = y if stratify is True else np.asarray(stratify)
        if labels.shape[0] != n:
            raise ValueError(f"stratify has {labels.shape[0]} labels but X has {n} samples")
        test_idx = _stratified_test_indices(labels, n_test, rng)
    is_test = np.zeros(n, dtype=bool)
    is_test[test_idx] = True
    test_idx = rng.permutation(np.flatnonzero(is_test))
    train_idx = rng.permutation(np.flatnonzero(~is_test))
    return X[train_idx], X[test_idx], y[train_idx], y[test_idx]


def batches(X, y=None, batch_size=32, shuffle=False, rng=None):
    """Yield (X_batch, y_batch) (or X_batch alone when y is None) of at most batch_size rows.

    With shuffle=True the order comes from `rng` (a numpy Generator or a seed).
    """
    batch_size = positive_int(batch_size, "batch_size")
    X = np.asarray(X)
    n = X.shape[0]
    if y is not None:
        y = np.asarray(y)
        if y.shape[0] != n:
            raise ValueError(f"X has {n} samples but y has {y.shape[0]}; they must match")
    order = None
    if shuffle:
        order = np.random.default_rng(rng).permutation(n)
    for start in range(0, n, batch_size):
        if order is None:
            sel = slice(start, start + batch_size)
        else:
            sel = order[start:start + batch_size]
        yield X[sel] if y is None else (X[sel], y[sel])


def make_spirals(n_samples=600, n_classes=2, turns=1.0, noise=0.05, seed=0):
    """Points on `n_classes` interleaved spiral arms in the plane: (X float32 (n, 2), y int64 (n,)).

    No straight line (no single perceptron) separates the arms; a network
    with hidden layers can. `turns` is how often each arm winds around the
    centre, `noise` the standard deviation of the jitter (the arms reach radius 1).
    """
    for name, value, low in (("n_samples", n_samples, 1), ("n_classes", n_classes, 2)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if not (turns > 0 and noise >= 0):
        raise ValueError(f"turns must be > 0 and noise >= 0, got turns={turns!r}, noise={noise!r}")
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n_samples) % n_classes)
    radius = np.sqrt(rng.uniform(0.02, 1.0, size=n_samples))  # sqrt: even density along the arm
    angle = 2 * np.pi * (turns * radius + y / n_classes)
    X = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    X += rng.normal(0.0, noise, size=X.shape)
    return X.astype(np.float32), y.astype(np.int64)
