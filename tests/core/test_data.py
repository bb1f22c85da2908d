"""train_test_split and batches."""
import numpy as np
import pytest

import fastnet as fn


def test_split_sizes_and_reproducibility():
    X = np.arange(100).reshape(50, 2)
    y = np.arange(50)
    Xtr, Xte, ytr, yte = fn.train_test_split(X, y, test_size=0.2, seed=3)
    assert Xtr.shape == (40, 2) and Xte.shape == (10, 2)
    np.testing.assert_array_equal(Xtr[:, 0] // 2, ytr)          # rows stay paired
    assert sorted(np.concatenate([ytr, yte]).tolist()) == list(range(50))
    again = fn.train_test_split(X, y, test_size=0.2, seed=3)
    np.testing.assert_array_equal(again[3], yte)
    other = fn.train_test_split(X, y, test_size=0.2, seed=4)
    assert not np.array_equal(other[3], yte)
    assert fn.train_test_split(X, y, test_size=7)[1].shape[0] == 7


def test_stratify_keeps_class_proportions():
    y = np.array([0] * 80 + [1] * 16 + [2] * 4)
    X = np.arange(100)[:, None]
    _, _, ytr, yte = fn.train_test_split(X, y, test_size=0.25, seed=0, stratify=y)
    assert np.bincount(yte).tolist() == [20, 4, 1]
    assert np.bincount(ytr).tolist() == [60, 12, 3]
    _, _, _, yte_true = fn.train_test_split(X, y, test_size=0.25, seed=0, stratify=True)
    np.testing.assert_array_equal(yte, yte_true)


def test_split_errors():
    X, y = np.zeros((10, 2)), np.zeros(10)
    with pytest.raises(ValueError, match="X has 10 samples but y has 9"):
        fn.train_test_split(X, y[:9])
    with pytest.raises(ValueError, match="test_size as a fraction"):
        fn.train_test_split(X, y, test_size=1.5)
    with pytest.raises(ValueError, match="at least one sample"):
        fn.train_test_split(X, y, test_size=10)
    with pytest.raises(ValueError, match="stratify has 3 labels"):
        fn.train_test_split(X, y, stratify=[0, 1, 0])


def test_batches_cover_everything_once():
    X, y = np.arange(10)[:, None], np.arange(10)
    sizes = [len(xb) for xb, _ in fn.batches(X, y, batch_size=4)]
    assert sizes == [4, 4, 2]
    shuffled = np.concatenate([yb for _, yb in fn.batches(X, y, batch_size=3, shuffle=True, rng=0)])
    assert sorted(shuffled.tolist()) == list(range(10)) and shuffled.tolist() != list(range(10))
    assert [len(xb) for xb in fn.batches(X, batch_size=5)] == [5, 5]
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        list(fn.batches(X, y, batch_size=0))


def test_make_spirals():
    from fastnet.data import make_spirals

    X, y = make_spirals(300, n_classes=3, noise=0.0, seed=1)
    assert X.shape == (300, 2) and X.dtype == np.float32 and y.dtype == np.int64
    assert np.bincount(y).tolist() == [100, 100, 100]
    radius = np.hypot(X[:, 0], X[:, 1])
    assert radius.max() <= 1.0 + 1e-6 and radius.min() > 0.1
    np.testing.assert_array_equal(make_spirals(300, n_classes=3, noise=0.0, seed=1)[0], X)
    # not linearly separable: the best linear least-squares fit misclassifies many points
    X2, y2 = make_spirals(400, turns=1.5, seed=0)
    A2 = np.c_[X2, np.ones(len(X2))]
    w = np.linalg.lstsq(A2, 2.0 * y2 - 1, rcond=None)[0]
    assert np.mean((A2 @ w > 0) == (y2 == 1)) < 0.8
    with np.testing.assert_raises(ValueError):
        make_spirals(10, n_classes=1)
