"""Data helpers: hold out a test set, cut data into mini-batches."""
import numpy as np


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
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
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
