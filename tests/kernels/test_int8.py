"""int8 inference kernels: quantisation against the NumPy reference bit for
bit, the integer GEMM exact against int64 NumPy, the quantised dense layer
bitwise equal to the reference formula on every low-precision path."""
import numpy as np
import pytest

import fastnet
from fastnet import ops
from fastnet import reference as ref
from helpers import ACTIVATIONS, guarded_script, run_guarded

SHAPES = [(1, 1, 1), (15, 17, 33), (33, 15, 17), (17, 33, 1000), (13, 1000, 15), (64, 96, 129), (0, 5, 3),
          (4, 0, 3), (3, 4, 0)]


def _ints(rng, shape):
    return rng.integers(-127, 128, shape).astype(np.int8)


@pytest.mark.parametrize("threads", [1, 2])
def test_int8_matmul_is_exact(lowp_path, rng, threads):
    for m, n, k in SHAPES:
        a, w = _ints(rng, (m, k)), _ints(rng, (k, n))
        packed = ops.pack_int8(w)
        with fastnet.threads(threads):
            got = ops.matmul_int8(a, packed)
        assert got.dtype == np.int32
        np.testing.assert_array_equal(got, a.astype(np.int64) @ w.astype(np.int64),
                                      err_msg=f"{lowp_path} {m}x{n}x{k}")


def test_int8_matmul_extremes_do_not_overflow(lowp_path):
    # -127 * -127 summed 4096 times, and the unsigned shift of the VNNI path
    a = np.full((3, 4096), -127, np.int8)
    w = np.full((4096, 40), -127, np.int8)
    w[:, 1] = 127
    got = ops.matmul_int8(a, ops.pack_int8(w))
    assert got[0, 0] == 127 * 127 * 4096 and got[0, 1] == -127 * 127 * 4096


def test_int8_matmul_is_exact_over_the_whole_int8_range(lowp_path, rng):
    # -128 too: quantisation never makes it, but matmul_int8 and pack_int8 take any int8, and the
    # AVX2 kernel's 16-bit products and the VNNI path's +128 shift must both stay exact with it
    for m, n, k in [(13, 40, 200), (2, 33, 1000)]:
        a = rng.integers(-128, 128, (m, k)).astype(np.int8)
        w = rng.integers(-128, 128, (k, n)).astype(np.int8)
        a[0], w[:, 0] = -128, -128
        got = ops.matmul_int8(a, ops.pack_int8(w))
        np.testing.assert_array_equal(got, a.astype(np.int64) @ w.astype(np.int64), err_msg=lowp_path)
    assert got[0, 0] == 128 * 128 * 1000


def test_each_path_runs_the_int8_kernels_it_should(lowp_path):
    # AVX2 without an int8 unit gets its own kernels (the portable ones ran 10x slower than float32)
    expected = {"generic": "generic", "avx2": "avx2", "avx512": "avx2", "avx512_vnni": "avx512_vnni",
                "avx512_bf16": "avx512_vnni", "amx": "amx"}[lowp_path]
    assert fastnet._kernels.get_int8_path() == expected
    assert fastnet.config()["int8_path"] == expected


def test_packing_matches_the_reference_layout(rng):
    for k, n in [(1, 1), (70, 33), (64, 32), (5, 100)]:
        w = _ints(rng, (k, n))
        got, expected = ops.pack_int8(w), ref.pack_int8(w)
        np.testing.assert_array_equal(got.data, expected.data)
        np.testing.assert_array_equal(got.colsum, expected.colsum)
        assert (got.k, got.n) == (expected.k, expected.n) == (k, n)


def test_quantize_matches_the_reference_and_round_trips(rng):
    x = (rng.standard_normal((40, 77)) * 10.0 ** rng.integers(-3, 3, (40, 1))).astype(np.float32)
    x[3] = 0.0
    for ours, theirs, axis in [(ops.quantize_rows(x), ref.quantize_rows(x), 1),
                               (ops.quantize_columns(x), ref.quantize_columns(x), 0)]:
        np.testing.assert_array_equal(ours[0], theirs[0])
        np.testing.assert_array_equal(ours[1], theirs[1])
        q, scale = ours
        assert np.abs(q).max() <= 127
        back = q.astype(np.float32) * (scale[:, None] if axis == 1 else scale[None, :])
        half_step = 0.5 * (scale[:, None] if axis == 1 else scale[None, :]) * (1 + 1e-6)
        assert (np.abs(back - x) <= half_step).all()
    q, scale = ops.quantize_rows(x)
    assert scale[3] == 0 and not q[3].any()


def test_quantize_rows_marks_non_finite_rows_nan():
    x = np.ones((3, 5), np.float32)
    x[0, 2], x[2, 4] = np.nan, np.inf
    q, scale = ops.quantize_rows(x)
    assert np.isnan(scale[0]) and np.isnan(scale[2]) and scale[1] == np.float32(1 / 127)
    with pytest.raises(ValueError, match="NaN or infinity"):
        ops.quantize_columns(x)


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_dense_int8_equals_the_reference_formula(lowp_path, rng, act):
    for m, n, k in [(1, 1, 1), (15, 17, 33), (37, 300, 70), (5, 33, 1000)]:
        x = rng.standard_normal((m, k)).astype(np.float32)
        w = rng.standard_normal((k, n)).astype(np.float32)
        b = rng.standard_normal(n).astype(np.float32)
        q, w_scale = ops.quantize_columns(w)
        packed = ops.pack_int8(q)
        for bias in (b, None):  # the bias is added in the dequantising pass: with and without one
            got = ops.dense_int8(x, packed, w_scale, bias, activation=act)
            expected = ref.dense_int8(x, packed, w_scale, bias, activation=act)
            if act in ("identity", "relu"):
                np.testing.assert_array_equal(got, expected, err_msg=f"{lowp_path} {m}x{n}x{k}")
            else:
                np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
        # and the int8 pre-activation is close to the float32 one for such data
        approx = ops.dense_int8(x, packed, w_scale, b)
        exact = ops.dense(x, w, b)
        assert np.abs(approx - exact).max() <= 0.03 * np.abs(exact).max()


def test_dense_int8_nan_in_nan_out(lowp_path, rng):
    x = rng.standard_normal((6, 40)).astype(np.float32)
    x[2, 5] = np.nan
    x[4, 0] = -np.inf
    q, w_scale = ops.quantize_columns(rng.standard_normal((40, 35)).astype(np.float32))
    y = ops.dense_int8(x, ops.pack_int8(q), w_scale, activation="relu")
    assert np.isnan(y[2]).all() and np.isnan(y[4]).all()
    assert np.isfinite(np.delete(y, [2, 4], axis=0)).all()


def test_int8_errors(rng):
    packed = ops.pack_int8(_ints(rng, (10, 4)))
    with pytest.raises(ValueError, match="11 columns.*k=10"):
        ops.matmul_int8(_ints(rng, (3, 11)), packed)
    with pytest.raises(TypeError, match="int8"):
        ops.matmul_int8(np.zeros((3, 10), np.float32), packed)
    with pytest.raises(TypeError, match="pack_int8"):
        ops.matmul_int8(_ints(rng, (3, 10)), packed.data)
    with pytest.raises(ValueError, match="w_scale"):
        ops.dense_int8(np.zeros((3, 10), np.float32), packed, np.ones(5, np.float32))


_GUARDED_INT8 = guarded_script("""
for m, n, k in [(1, 1, 1), (7, 17, 9), (13, 33, 64), (12, 32, 65), (2, 300, 5)]:
    q = g(rng.integers(-127, 128, (k, n)).astype(np.int8))
    p = ops.pack_int8(q)
    p.data, p.colsum = g(p.data), g(p.colsum)
    ops.matmul_int8(g(rng.integers(-127, 128, (m, k)).astype(np.int8)), p)
    x = g(rng.standard_normal((m, k)).astype(np.float32))
    w_q, w_s = ops.quantize_columns(g(rng.standard_normal((k, n)).astype(np.float32)))
    p2 = ops.pack_int8(g(w_q))
    p2.data, p2.colsum = g(p2.data), g(p2.colsum)
    ops.dense_int8(x, p2, g(w_s), g(np.ones(n, np.float32)), activation="gelu")
    ops.quantize_rows(x)
""")


def test_int8_kernels_stay_inside_their_buffers():
    import sys
    if not sys.platform.startswith("linux"):
        pytest.skip("guard pages via mprotect need Linux")
    from helpers import LOWP_PATHS
    run_guarded(_GUARDED_INT8, LOWP_PATHS)


# ---- quantised models ------------------------------------------------------------------

def _trained_net():
    sklearn = pytest.importorskip("sklearn.datasets")
    d = sklearn.load_digits()
    X = ((d.data / 16.0) - 0.3).astype(np.float32)
    net = fastnet.Network([fastnet.Dense(64, 256, activation="relu"), fastnet.Dense(256, 128, activation="relu"),
                           fastnet.Dense(128, 10)], optimizer=fastnet.Adam(1e-3), seed=0)
    net.fit(X[:1400], d.target[:1400], epochs=8, verbose=0)
    return net, X[1400:], d.target[1400:]


def test_quantized_network_keeps_accuracy_saves_small_and_loads_bitwise(lowp_path, tmp_path):
    net, X, y = _trained_net()
    before = net.evaluate(X, y)["accuracy"]
    net.save(tmp_path / "f32.fastnet")
    assert net.quantize("int8") is net
    after = net.evaluate(X, y)["accuracy"]
    assert after >= before - 0.01, (before, after)
    # the int8 forward is the quantised dense layer, layer by layer
    h = X[:20]
    for layer in net.layers:
        m = layer.quantized["w"]
        h = ops.dense_int8(h, m.packed, m.scale, layer.params["b"], activation=layer.activation)
    np.testing.assert_array_equal(net._output(X[:20]), h)
    net.save(tmp_path / "int8.fastnet")
    ratio = (tmp_path / "f32.fastnet").stat().st_size / (tmp_path / "int8.fastnet").stat().st_size
    assert ratio >= 3.5 / 2, ratio  # the float32 file also holds Adam's two moments: 3x the weights
    back = fastnet.load(tmp_path / "int8.fastnet")
    assert back.quantization == "int8"
    for a, b in zip(net.layers, back.layers):
        np.testing.assert_array_equal(a.quantized["w"].q, b.quantized["w"].q)
        np.testing.assert_array_equal(a.quantized["w"].scale, b.quantized["w"].scale)
    np.testing.assert_array_equal(back.predict_proba(X), net.predict_proba(X))
    with pytest.raises(RuntimeError, match="inference only"):
        back.fit(X, y, epochs=1, verbose=0)


def test_quantized_file_is_at_least_3_5x_smaller_than_the_weights(tmp_path):
    net = fastnet.Network([fastnet.Dense(256, 512, activation="relu"), fastnet.Dense(512, 64)], seed=0,
                          optimizer=fastnet.SGD(0.1))
    net.save(tmp_path / "f32.fastnet")
    net.quantize("int8").save(tmp_path / "int8.fastnet")
    ratio = (tmp_path / "f32.fastnet").stat().st_size / (tmp_path / "int8.fastnet").stat().st_size
    assert ratio >= 3.5, ratio


def test_quantize_errors():
    net = fastnet.Network([fastnet.Dense(4, 3)], dtype=np.float64)
    with pytest.raises(ValueError, match="float32"):
        net.quantize("int8")
    with pytest.raises(ValueError, match="unknown quantization"):
        fastnet.Network([fastnet.Dense(4, 3)]).quantize("int4")


def test_a_tied_output_projection_runs_on_the_int8_kernels_with_the_tables_row_scales(lowp_path, rng):
    """logits = x @ table.T + b: the table's int8 rows are the int8 columns of that product."""
    from fastnet.datasets import toy_translations
    from fastnet.seq2seq import Translator

    train = toy_translations(100, seed=0, split="train")
    tr = Translator.build(train.en, {"sv": train.sv}, seed=0, d_model=32, n_heads=2, n_layers=1, d_ff=64,
                          tokenizer="word", tie_embeddings=True)
    output = tr.decoders["sv"].out
    output.params["b"][...] = rng.standard_normal(output.d_out)
    x = rng.standard_normal((7, 32)).astype(np.float32)
    exact = output.forward(x)
    tr.quantize("int8")
    rows = output.embedding.quantized["table"]
    got = output.forward(x)
    expected = ref.dense_int8(x, ops.pack_int8(np.ascontiguousarray(rows.q.T)), rows.scale, output.params["b"])
    np.testing.assert_array_equal(got, expected, err_msg=lowp_path)
    assert np.abs(got - exact).max() <= 0.03 * np.abs(exact).max()


@pytest.mark.parametrize("tie_embeddings", [False, True])
def test_quantized_translator_translates_saves_small_and_loads_bitwise(tmp_path, tie_embeddings):
    from fastnet.datasets import toy_translations
    from fastnet.seq2seq import Translator
    train = toy_translations(600, seed=0, split="train")
    small = dict(d_model=128, n_heads=4, n_layers=1, d_ff=512, dropout=0.0, tokenizer="word",
                 tie_embeddings=tie_embeddings)
    with fastnet.threads(1):
        tr = Translator.build(train.en, {"sv": train.sv}, seed=0, **small)
        tr.fit(train.en, {"sv": train.sv}, epochs=10, batch_size=32, lr=3e-3, verbose=0)
        sentences = train.en[:60]
        f32_greedy = tr.translate(sentences, to="sv")
        tr.save(tmp_path / "f32.fastnet")
        tr.quantize("int8")
        greedy = tr.translate(sentences, to="sv")
        beam = tr.translate(sentences, to="sv", beam=3)
        agree = np.mean([a == b for a, b in zip(greedy, f32_greedy)])
        assert agree >= 0.9, agree
        assert np.mean([a == b for a, b in zip(beam, f32_greedy)]) >= 0.8
        tr.save(tmp_path / "int8.fastnet")
        back = fastnet.load(tmp_path / "int8.fastnet")
        assert back.quantization == "int8"
        assert back.translate(sentences, to="sv") == greedy
        assert back.translate(sentences, to="sv", beam=3) == beam
        with pytest.raises(RuntimeError, match="inference only"):
            back.fit(train.en[:32], {"sv": train.sv[:32]}, epochs=1, verbose=0)
    ratio = (tmp_path / "f32.fastnet").stat().st_size / (tmp_path / "int8.fastnet").stat().st_size
    assert ratio >= 3.5, ratio


def test_cli_translate_and_serve_take_int8(tmp_path, capsys):
    from fastnet import cli
    from fastnet.datasets import toy_translations
    from fastnet.seq2seq import Translator
    train = toy_translations(300, seed=0, split="train")
    with fastnet.threads(1):
        tr = Translator.build(train.en, {"sv": train.sv}, seed=0, d_model=32, n_heads=2, n_layers=1, d_ff=64,
                              dropout=0.0)
        tr.fit(train.en, {"sv": train.sv}, epochs=8, batch_size=32, lr=3e-3, verbose=0)
        tr.save(tmp_path / "m.fastnet")
        sentences = ["cats are cute", "the dog is big"]
        assert cli.main(["translate", str(tmp_path / "m.fastnet"), *sentences, "--int8"]) == 0
        printed = capsys.readouterr().out.splitlines()
        assert len(printed) == 2 and all(printed)
        assert printed == tr.quantize("int8").translate(sentences)
    pytest.importorskip("uvicorn")
    from fastnet.serve.server import make_server
    server = make_server(str(tmp_path / "m.fastnet"), port=0, quantize="int8")
    assert server.config.app.state.service.translator.quantization == "int8"
    assert "--int8" in cli_help("serve")


def cli_help(command):
    import subprocess
    import sys
    return subprocess.run([sys.executable, "-m", "fastnet.cli", command, "--help"], capture_output=True,
                          text=True, check=True).stdout
