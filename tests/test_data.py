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
