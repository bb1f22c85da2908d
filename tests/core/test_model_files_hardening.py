"""Model files against a careless user and an attacker: every byte checksummed,
bounded reads, FIFOs and devices refused, stale temporaries removed, edited
architecture numbers refused before anything big is built, malformed metadata
reported as ModelFileError, and a diverged network never written out."""
import json
import os
import struct
import threading
import time
import tracemalloc
import warnings

import numpy as np
import pytest
import safetensors.numpy

import fastnet as fn
from fastnet import io
from fastnet.datasets import toy_translations
from fastnet.seq2seq import Translator


def small_network():
    net = fn.Network([fn.Dense(4, 16, activation="relu"), fn.Dense(16, 3)], optimizer=fn.Adam(1e-2), seed=0)
    rng = np.random.default_rng(0)
    net.fit(rng.standard_normal((32, 4)), rng.integers(0, 3, 32), epochs=1, batch_size=8, verbose=0)
    return net


@pytest.fixture(scope="module")
def translator_file(tmp_path_factory):
    pairs = toy_translations(60, seed=0, split="train")
    tr = Translator.build(pairs.en, {"sv": pairs.sv}, seed=0, d_model=16, n_heads=2, n_layers=1, d_ff=32,
                          dropout=0.0, tokenizer="word")
    path = tmp_path_factory.mktemp("tr") / "tr.fastnet"
    tr.save(path)
    return path


def resave(path, edit):
    """Rewrite path with edit(metadata) applied and a valid checksum: what a deliberate edit looks like."""
    tensors, meta = io.load_safetensors_checked(path)
    edit(meta)
    io.save_safetensors_atomic(path, tensors, meta)


def peak_bytes_while(call):
    """(result or exception, peak bytes traced) of call()."""
    tracemalloc.start()
    try:
        try:
            result = call()
        except Exception as exc:  # the caller checks which
            result = exc
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# ---- item 5: the checksum covers every byte, metadata included -----------------------------

def test_checksum_covers_metadata_an_edited_vocabulary_word_is_refused(translator_file, tmp_path):
    blob = translator_file.read_bytes()
    word = next(w for w in (b"katter", b"hunden", b"katten") if w in blob)
    edited = tmp_path / "edited.fastnet"
    edited.write_bytes(blob.replace(word, word[:-2] + b"or" if word.endswith(b"er") else word[:-1] + b"x", 1))
    with pytest.raises(io.ModelFileError, match="do not match the checksum"):
        fn.load(edited)


def test_checksum_covers_the_architecture_and_the_tensor_table(tmp_path):
    path = tmp_path / "net.fastnet"
    small_network().save(path)
    blob = path.read_bytes()
    edits = ((b'\\"n_out\\": 16', b'\\"n_out\\": 17'), (b'"F32"', b'"I32"'), (b'"shape":[4,16]', b'"shape":[16,4]'))
    for old, new in edits:
        assert old in blob, old
        path.write_bytes(blob.replace(old, new, 1))
        with pytest.raises(io.ModelFileError):
            fn.load(path)


def test_file_saved_before_the_whole_file_checksum_still_loads_with_a_warning(tmp_path):
    net = small_network()
    tensors = {"param/" + k: v for k, v in net.store.named_arrays().items()}
    opt_arrays, opt_meta = net.optimizer.state_dict()
    tensors.update({"optimizer/" + k: v for k, v in opt_arrays.items()})
    meta = {"fastnet_kind": "network", "fastnet_version": "0.1.0", "format_version": 1,
            "architecture": net.architecture(), "seed": 0, "optimizer": net.optimizer.config(),
            "optimizer_state": opt_meta, "rng_state": net.rng.bit_generator.state, "epochs_trained": 1,
            "history": net.history.to_dict()}
    tensors = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    old_header = {"fastnet": json.dumps(meta, sort_keys=True), "fastnet_sha256": io._checksum(tensors)}
    path = tmp_path / "old.fastnet"
    path.write_bytes(safetensors.numpy.save(tensors, metadata=old_header))
    with pytest.warns(io.LegacyModelFileWarning, match="older fastnet"):
        loaded = fn.load(path)
    assert loaded.store.data.tobytes() == net.store.data.tobytes()
    # Its tensors are still checked ...
    blob = bytearray(path.read_bytes())
    blob[-3] ^= 0x40
    path.write_bytes(bytes(blob))
    with pytest.raises(io.ModelFileError, match="do not match the checksum"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fn.load(path)
    # ... and a new file whose checksum key is damaged is not taken for an old one.
    small_network().save(path)
    path.write_bytes(path.read_bytes().replace(b"fastnet_file_sha256", b"fastnet_file_sha257"))
    with pytest.raises(io.ModelFileError, match="no whole-file checksum"):
        fn.load(path)


# ---- item 4: architecture numbers are checked before anything big is built ---------------------

def _stack_config(meta, stack):
    cfg = meta["translator"]
    return cfg["encoder"] if stack == "encoder" else cfg["decoders"][0]["config"]


@pytest.mark.parametrize("stack", ["encoder", "decoder"])
@pytest.mark.parametrize("n_layers", [3000, 10**6, 10**12])
def test_edited_n_layers_is_refused_before_a_big_allocation(translator_file, tmp_path, n_layers, stack):
    path = tmp_path / "big.fastnet"
    path.write_bytes(translator_file.read_bytes())
    resave(path, lambda m: _stack_config(m, stack).update(n_layers=n_layers))
    start = time.perf_counter()
    result, peak = peak_bytes_while(lambda: fn.load(path))
    assert isinstance(result, io.ModelFileError), result
    size = path.stat().st_size
    assert peak < 8 * size + (24 << 20), f"loading a {size}-byte file peaked at {peak} bytes"
    assert time.perf_counter() - start < 10


@pytest.mark.parametrize("key, value", [("d_model", 10**6), ("vocab_size", 10**9), ("max_len", 10**9),
                                        ("d_ff", 10**8)])
def test_edited_sizes_are_refused_before_a_big_allocation(translator_file, tmp_path, key, value):
    path = tmp_path / "big.fastnet"
    path.write_bytes(translator_file.read_bytes())
    resave(path, lambda m: m["translator"]["encoder"].update({key: value}))
    result, peak = peak_bytes_while(lambda: fn.load(path))
    assert isinstance(result, io.ModelFileError), result
    assert peak < 8 * path.stat().st_size + (24 << 20)


def test_edited_network_layer_widths_are_refused_before_a_big_allocation(tmp_path):
    path = tmp_path / "net.fastnet"
    small_network().save(path)
    resave(path, lambda m: m["architecture"]["layers"][0]["config"].update(n_out=200_000))
    result, peak = peak_bytes_while(lambda: fn.load(path))
    assert isinstance(result, io.ModelFileError), result
    assert peak < 64 << 20


def test_the_budget_leaves_room_for_a_real_model_without_optimizer_state(tmp_path):
    # No optimizer tensors in the file, float64 placeholders while building: the tightest case.
    net = fn.Network([fn.Dense(1500, 1500), fn.Dense(1500, 2)], optimizer=fn.SGD(0.1), seed=0)
    net.save(tmp_path / "big.fastnet")
    assert fn.load(tmp_path / "big.fastnet").store.data.tobytes() == net.store.data.tobytes()


# ---- item 8: malformed metadata is a ModelFileError ---------------------------------------------

@pytest.mark.parametrize("edit", [
    lambda m: m.update(rng_state={"bit_generator": "PCG64", "state": "nonsense"}),
    lambda m: m.update(rng_state=[1, 2]),
    lambda m: m.pop("optimizer_state"),
    lambda m: m.update(optimizer_state=[]),
    lambda m: m.update(history={"epoch": [0], "history": {"loss": []}}),
    lambda m: m.update(history="x"),
    lambda m: m["architecture"].update(layers=[["Dense"]]),
    lambda m: m["architecture"].update(layers=None),
    lambda m: m.update(seed="s"),
    lambda m: m.update(epochs_trained=[]),
], ids=["rng-state", "rng-type", "no-optimizer-state", "optimizer-state-type", "short-history",
        "history-type", "layer-type", "layers-none", "seed", "epochs"])
def test_malformed_network_metadata_gives_model_file_error(tmp_path, edit):
    path = tmp_path / "net.fastnet"
    small_network().save(path)
    resave(path, edit)
    with pytest.raises(io.ModelFileError, match="net.fastnet"):
        fn.load(path)


@pytest.mark.parametrize("edit", [
    lambda m: m["translator"].update(decoders=[{}]),
    lambda m: m["translator"].update(src_tokenizer=None),
    lambda m: m["translator"].update(trained=5),
    lambda m: m["translator"]["encoder"].update(n_heads=0),
    lambda m: m.update(history={"epoch": [1, 2], "history": {"loss": [0.5]}}),
], ids=["decoder-entry", "tokenizer", "trained", "heads", "history"])
def test_malformed_translator_metadata_gives_model_file_error(translator_file, tmp_path, edit):
    path = tmp_path / "tr.fastnet"
    path.write_bytes(translator_file.read_bytes())
    resave(path, edit)
    with pytest.raises(io.ModelFileError, match="tr.fastnet"):
        fn.load(path)


@pytest.mark.parametrize("payload", ['{"fastnet_kind": "network", "seed": ' + "9" * 5000 + "}",
                                     "[" * 100_000 + "]" * 100_000], ids=["5000-digit-int", "deep-nesting"])
def test_huge_numbers_and_deep_nesting_in_metadata_give_model_file_error(tmp_path, payload):
    path = tmp_path / "net.fastnet"
    small_network().save(path)
    blob = path.read_bytes()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    header["__metadata__"].update(fastnet=payload, fastnet_file_sha256="0" * 64)
    raw = json.dumps(header, separators=(",", ":")).encode()
    path.write_bytes(io._seal(bytearray(struct.pack("<Q", len(raw)) + raw + blob[8 + n:])))
    with pytest.raises(io.ModelFileError, match="metadata is not valid JSON"):
        fn.load(path)


# ---- item 17: header first, bounded reads, FIFOs and devices, stale temporaries --------------------

def test_load_reads_the_header_first_a_sparse_2gb_file_costs_nothing(tmp_path):
    path = tmp_path / "sparse.fastnet"
    with open(path, "wb") as f:
        f.truncate(2 << 30)
    result, peak = peak_bytes_while(lambda: fn.load(path))
    assert isinstance(result, io.ModelFileError), result
    assert peak < 1 << 20
    with open(path, "r+b") as f:  # a header that claims the whole file
        f.write(struct.pack("<Q", (2 << 30) - 8))
    result, peak = peak_bytes_while(lambda: fn.load(path))
    assert isinstance(result, io.ModelFileError) and peak < 1 << 20, (result, peak)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX FIFOs")
def test_load_refuses_a_fifo_without_blocking(tmp_path):
    fifo = tmp_path / "model.fastnet"
    os.mkfifo(fifo)
    outcome = []
    worker = threading.Thread(target=lambda: outcome.append(peak_bytes_while(lambda: fn.load(fifo))[0]),
                              daemon=True)
    worker.start()
    worker.join(10)
    if worker.is_alive():  # unblock the thread before failing
        with open(fifo, "wb"):
            pass
        pytest.fail("fn.load blocked on a FIFO")
    assert isinstance(outcome[0], io.ModelFileError) and "not a regular file" in str(outcome[0])


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_load_refuses_devices():
    with pytest.raises(io.ModelFileError, match="not a regular file"):
        fn.load("/dev/zero")


@pytest.mark.skipif(os.name != "posix", reason="advisory locks")
def test_save_removes_stale_temporaries_of_killed_saves_but_not_live_ones(tmp_path):
    import fcntl

    path = tmp_path / "m.fastnet"
    stale = tmp_path / ".m.fastnet.k1ll3d_9.tmp"
    stale.write_bytes(b"half a model")
    live = tmp_path / ".m.fastnet.w0rk1ng.tmp"
    other = tmp_path / ".other.fastnet.abc123_x.tmp"
    other.write_bytes(b"")
    with open(live, "wb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)  # a save in progress in another process
        small_network().save(path)
        assert not stale.exists()
        assert live.exists() and other.exists()
    assert sorted(os.listdir(tmp_path)) == sorted([".m.fastnet.w0rk1ng.tmp", ".other.fastnet.abc123_x.tmp",
                                                   "m.fastnet"])


# ---- item 2: divergence keeps the last good weights, and they are never saved non-finite ------------

def test_diverged_fit_keeps_the_last_good_weights_and_save_refuses_nan(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 4)).astype(np.float32)
    y = (X @ rng.standard_normal((4, 2))).astype(np.float32) * 10
    net = fn.Network([fn.Dense(4, 32, activation="relu"), fn.Dense(32, 2)], loss="mse", optimizer=fn.SGD(10.0),
                     seed=0)
    with pytest.raises(FloatingPointError, match="last good step"):
        net.fit(X, y, epochs=20, batch_size=16, verbose=0)
    assert np.isfinite(net.store.data).all()
    net.save(tmp_path / "last_good.fastnet")  # finite weights save fine
    net.store.data[3] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        net.save(tmp_path / "diverged.fastnet")
    assert not (tmp_path / "diverged.fastnet").exists()


def test_train_on_batch_does_not_apply_a_step_with_a_non_finite_gradient():
    net = fn.Network([fn.Dense(2, 2)], loss="mse", optimizer=fn.SGD(0.1), seed=0)
    before = net.store.data.copy()
    with pytest.raises(FloatingPointError, match="not applied"):
        net.train_on_batch(np.full((2, 2), 3e38, np.float32), np.zeros((2, 2), np.float32))
    np.testing.assert_array_equal(net.store.data, before)


def test_data_parallel_fit_does_not_apply_a_diverged_step():
    pytest.importorskip("mpi4py")
    from fastnet import distributed

    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 4)).astype(np.float32)
    y = (X @ rng.standard_normal((4, 2))).astype(np.float32) * 10
    net = fn.Network([fn.Dense(4, 32, activation="relu"), fn.Dense(32, 2)], loss="mse", optimizer=fn.SGD(10.0),
                     seed=0)
    with pytest.raises(FloatingPointError):
        distributed.fit(net, X, y, epochs=20, batch_size=16, verbose=0)
    assert np.isfinite(net.store.data).all()


def test_translator_training_does_not_step_on_a_non_finite_gradient(monkeypatch):
    pairs = toy_translations(40, seed=0, split="train")
    tr = Translator.build(pairs.en, {"sv": pairs.sv}, seed=0, d_model=8, n_heads=2, n_layers=1, d_ff=16,
                          dropout=0.0, tokenizer="word")
    real_backward = tr.backward

    def poisoned_gradient():
        real_backward()               # a finite loss ...
        tr.store.grad[0] = np.inf     # ... whose gradient overflowed

    monkeypatch.setattr(tr, "backward", poisoned_gradient)
    before = tr.store.data.copy()
    with pytest.raises(FloatingPointError, match="gradient became NaN or infinite"):
        tr.fit(pairs.en, {"sv": pairs.sv}, epochs=1, batch_size=20, verbose=0)
    np.testing.assert_array_equal(tr.store.data, before)
