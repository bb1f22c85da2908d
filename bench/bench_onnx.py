"""fastnet inference vs onnxruntime running fastnet's ONNX export of the same model, side by side.

    python -m pytest bench/bench_onnx.py --benchmark-only --benchmark-group-by=group

Groups: the digits MLP (64-128-10) predict_proba at batch 1 and 256, and
the translator encoder (d_model 128, 4 heads, 2 layers, feed-forward 512,
vocabulary 64) on batch 32 x length 20. Both runtimes get the same thread
count (fastnet.get_num_threads(); OMP_NUM_THREADS=1 for one thread each). At the end the medians and the ratio
onnxruntime / fastnet (> 1: fastnet is faster) are printed.
"""
import numpy as np
import pytest

import fastnet as fn
from fastnet.export import network_to_onnx

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

MEDIANS = {}  # group -> {"fastnet": seconds, "onnxruntime": seconds}
THREADS = fn.get_num_threads()


def _session(path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = THREADS
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _record(benchmark, impl):
    stats = getattr(benchmark, "stats", None)
    if stats is not None:  # None under --benchmark-disable
        MEDIANS.setdefault(benchmark.group, {})[impl] = stats.stats.median


@pytest.fixture(scope="module", autouse=True)
def report_ratios(request):
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or not MEDIANS:
        return
    lines = ["", f"{'median':<40}{'fastnet':>12}{'onnxruntime':>14}{'ort/fastnet':>13}"]
    for group, times in MEDIANS.items():
        if {"fastnet", "onnxruntime"} <= set(times):
            f, o = times["fastnet"], times["onnxruntime"]
            lines.append(f"{group:<40}{f * 1e6:>10.1f}us{o * 1e6:>12.1f}us{o / f:>12.2f}x")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():
        for line in lines:
            reporter.write_line(line)


# ---- the digits MLP ------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    net = fn.Network([fn.Dense(64, 128, activation="relu"), fn.Dense(128, 10)], seed=0)
    path = tmp_path_factory.mktemp("onnx") / "digits.onnx"
    network_to_onnx(net, path, proba=True)
    X = np.random.default_rng(0).random((256, 64), dtype=np.float32) * 16
    return net, _session(path), X


@pytest.mark.parametrize("batch", [1, 256])
def test_digits_fastnet(benchmark, digits, batch):
    net, _, X = digits
    benchmark.group = f"digits 64-128-10 proba b{batch} {THREADS}t"
    x = X[:batch]
    out = benchmark(net.predict_proba, x)
    assert out.shape == (batch, 10)
    _record(benchmark, "fastnet")


@pytest.mark.parametrize("batch", [1, 256])
def test_digits_onnxruntime(benchmark, digits, batch):
    net, session, X = digits
    benchmark.group = f"digits 64-128-10 proba b{batch} {THREADS}t"
    x = np.ascontiguousarray(X[:batch])
    out = benchmark(session.run, None, {"input": x})[0]
    np.testing.assert_allclose(out, net.predict_proba(x), rtol=1e-4, atol=1e-6)
    _record(benchmark, "onnxruntime")


# ---- the translator encoder ------------------------------------------------------------
ENCODER = dict(vocab_size=64, d_model=128, n_heads=4, n_layers=2, d_ff=512, max_len=32, dropout=0.0)


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    from fastnet.export.onnx import _save, encoder_graph

    enc = fn.Encoder(seed=0, **ENCODER)
    path = _save(encoder_graph(enc), tmp_path_factory.mktemp("onnx") / "encoder.onnx")
    rng = np.random.default_rng(1)
    ids = rng.integers(4, ENCODER["vocab_size"], size=(32, 20))
    lengths = rng.integers(8, 21, size=32)
    ids[np.arange(20)[None, :] >= lengths[:, None]] = enc.pad_id  # padded sentences, as in a real batch
    return enc, _session(path), ids


def test_encoder_fastnet(benchmark, encoder):
    enc, _, ids = encoder
    benchmark.group = f"encoder d128 2L b32 len20 {THREADS}t"
    memory = benchmark(enc.forward, ids)
    assert memory.shape == (32, 20, 128)
    _record(benchmark, "fastnet")


def test_encoder_onnxruntime(benchmark, encoder):
    enc, session, ids = encoder
    benchmark.group = f"encoder d128 2L b32 len20 {THREADS}t"
    memory = benchmark(session.run, ["memory"], {"src_ids": ids})[0]
    keep = ids != enc.pad_id
    np.testing.assert_allclose(memory[keep], enc.forward(ids)[keep], rtol=1e-3, atol=1e-4)
    _record(benchmark, "onnxruntime")
