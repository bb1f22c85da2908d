"""Network files: bitwise round trips, in a new process too, and resume == uninterrupted."""
import os
import subprocess
import sys

import numpy as np
import pytest

import fastnet as fn
from fastnet import io

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def data(n=120, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 6)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] * X[:, 2] > 0).astype(np.int64) + (X[:, 3] > 1)
    return X, y


def make_net(optimizer=None, seed=5):
    return fn.Network([fn.Dense(6, 16, activation="relu"), fn.Dropout(0.1), fn.Dense(16, 3)],
                      optimizer=optimizer or fn.Adam(1e-2, schedule=fn.Cosine(100)), seed=seed)


def test_save_load_round_trip_is_bitwise(tmp_path):
    X, y = data()
    net = make_net()
    net.fit(X, y, epochs=2, batch_size=16, verbose=0)
    path = tmp_path / "net.fastnet"
    net.save(path)
    loaded = fn.load(path)
    assert isinstance(loaded, fn.Network)
    assert loaded.store.data.tobytes() == net.store.data.tobytes()
    assert loaded.predict_proba(X).tobytes() == net.predict_proba(X).tobytes()
    assert loaded.optimizer.iterations == net.optimizer.iterations == 16
    assert loaded.optimizer.config() == net.optimizer.config()
    assert loaded.epochs_trained == 2 and loaded.history.epoch == [0, 1]
    assert [type(layer) for layer in loaded.layers] == [fn.Dense, fn.Dropout, fn.Dense]


def test_predictions_equal_in_a_new_process(tmp_path):
    X, y = data()
    net = make_net()
    net.fit(X, y, epochs=2, verbose=0)
    path = tmp_path / "net.fastnet"
    net.save(path)
    np.save(tmp_path / "X.npy", X)
    script = ("import sys, numpy as np, fastnet as fn\n"
              "net = fn.load(sys.argv[1])\n"
              "np.save(sys.argv[3], net.predict_proba(np.load(sys.argv[2])))\n")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    subprocess.run([sys.executable, "-c", script, str(path), str(tmp_path / "X.npy"), str(tmp_path / "p.npy")],
                   check=True, env=env, cwd=str(tmp_path), timeout=120)
    assert np.load(tmp_path / "p.npy").tobytes() == net.predict_proba(X).tobytes()


@pytest.mark.parametrize("optimizer", [lambda: fn.Adam(1e-2, schedule=fn.Warmup(5, fn.Cosine(50))),
                                       lambda: fn.SGD(0.05, momentum=0.9, nesterov=True, clip_norm=1.0),
                                       lambda: fn.RandomSearch(0.3, seed=2)])
def test_resume_equals_uninterrupted(tmp_path, optimizer):
    X, y = data()
    straight = make_net(optimizer())
    straight.fit(X, y, epochs=4, batch_size=16, verbose=0)

    first = make_net(optimizer())
    first.fit(X, y, epochs=2, batch_size=16, verbose=0)
    first.save(tmp_path / "half.fastnet")
    resumed = fn.load(tmp_path / "half.fastnet")
    resumed.fit(X, y, epochs=2, batch_size=16, verbose=0)
    assert resumed.store.data.tobytes() == straight.store.data.tobytes()
    assert resumed.epochs_trained == 4


def test_mismatched_file_names_the_tensor(tmp_path):
    net = make_net()
    path = tmp_path / "net.fastnet"
    net.save(path)
    tensors, meta = io.load_safetensors_checked(path)
    meta["architecture"]["layers"][2]["config"]["n_out"] = 4
    io.save_safetensors_atomic(path, tensors, meta)
    with pytest.raises(io.ModelFileError, match=r"tensor 'param/2.dense.w' has shape \(16, 3\), the architecture "
                                                r"expects \(16, 4\)"):
        fn.load(path)
    tensors["param/0.dense.w"] = tensors["param/0.dense.w"].astype(np.float64)
    meta["architecture"]["layers"][2]["config"]["n_out"] = 3
    io.save_safetensors_atomic(path, tensors, meta)
    with pytest.raises(io.ModelFileError, match="tensor 'param/0.dense.w' has dtype float64"):
        fn.load(path)
    del tensors["param/0.dense.b"]
    io.save_safetensors_atomic(path, tensors, meta)
    with pytest.raises(io.ModelFileError, match="lacks tensor 'param/0.dense.b'"):
        fn.load(path)
    meta["architecture"]["layers"][0]["class"] = "Conv9D"
    io.save_safetensors_atomic(path, tensors, meta)
    with pytest.raises(io.ModelFileError, match="unknown layer class 'Conv9D'"):
        fn.load(path)


def test_truncated_network_file(tmp_path):
    net = make_net()
    path = tmp_path / "net.fastnet"
    net.save(path)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(io.ModelFileError, match=r"net\.fastnet.*truncated: tensor"):
        fn.load(path)


def test_float64_network_round_trip(tmp_path):
    net = fn.Network([fn.Dense(3, 2)], loss="mse", optimizer=fn.SGD(0.1), dtype=np.float64)
    net.save(tmp_path / "n.fastnet")
    loaded = fn.load(tmp_path / "n.fastnet")
    assert loaded.dtype == np.float64 and loaded.store.data.tobytes() == net.store.data.tobytes()
