"""ONNX export: graphs run in onnxruntime give fastnet's outputs (float32 tolerance).

Skipped when onnx / onnxruntime are not installed (`pip install "fastnet[onnx]"`),
except the tests that check what happens without them.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import fastnet as fn
import fastnet.export
from fastnet.export import onnx as fn_onnx
from fastnet.export import onnx_runtime
from helpers import ACTIVATIONS

ATOL = {np.float32: 2e-5, np.float64: 1e-12}


@pytest.fixture(scope="module")
def ort():
    pytest.importorskip("onnx")
    return pytest.importorskip("onnxruntime")


def _session(ort, path):
    return ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])


def _run(ort, path, **feeds):
    return _session(ort, path).run(None, feeds)[0]


def _export(net, path, **kw):
    return net.to_onnx(path, **kw) if hasattr(net, "to_onnx") else fn_onnx.network_to_onnx(net, path, **kw)


# ---- Network ---------------------------------------------------------------------
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_every_activation_matches_fastnet(ort, tmp_path, activation):
    # Dense with the activation, Dropout (identity at inference), an Activation layer of the same kind.
    net = fn.Network([fn.Dense(9, 16, activation=activation, alpha=0.2), fn.Dropout(0.4),
                      fn.Dense(16, 5), fn.Activation(activation, alpha=0.3)], loss="mse", seed=3)
    X = np.random.default_rng(0).standard_normal((33, 9)).astype(np.float32) * 3
    got = _run(ort, _export(net, tmp_path / "net.onnx"), input=X)
    want = net.predict(X)
    assert got.shape == want.shape == (33, 5) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=ATOL[np.float32])


def test_softmax_activation_layer(ort, tmp_path):
    net = fn.Network([fn.Dense(4, 6, activation="tanh"), fn.Activation("softmax")], loss="mse", seed=0)
    X = np.random.default_rng(1).standard_normal((7, 4)).astype(np.float32)
    got = _run(ort, _export(net, tmp_path / "soft.onnx"), input=X)
    np.testing.assert_allclose(got, net.predict(X), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-5)


@pytest.fixture(scope="module")
def digits_net():
    """The digits-size MLP (64-128-10), trained a few steps so the weights are not the initial ones."""
    net = fn.Network([fn.Dense(64, 128, activation="relu"), fn.Dropout(0.2), fn.Dense(128, 10)],
                     loss="softmax_cross_entropy", optimizer=fn.Adam(1e-2), seed=0)
    rng = np.random.default_rng(5)
    X = rng.random((256, 64), dtype=np.float32) * 16
    y = rng.integers(0, 10, 256)
    net.fit(X, y, epochs=2, batch_size=32, verbose=0)
    return net, X


def test_digits_mlp_logits_and_probabilities(ort, tmp_path, digits_net):
    net, X = digits_net
    logits_path = _export(net, tmp_path / "digits.onnx")
    proba_path = _export(net, tmp_path / "digits_proba.onnx", proba=True)
    for batch in (X[:1], X[:37], X):  # the batch axis is dynamic
        logits = _run(ort, logits_path, input=batch)
        np.testing.assert_allclose(logits, net._output(batch), rtol=1e-5, atol=ATOL[np.float32])
        proba = _run(ort, proba_path, input=batch)
        np.testing.assert_allclose(proba, net.predict_proba(batch), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(_run(ort, proba_path, input=X).argmax(axis=1), net.predict(X))
    session = _session(ort, proba_path)
    assert [i.name for i in session.get_inputs()] == ["input"]
    assert [o.name for o in session.get_outputs()] == ["probabilities"]
    assert session.get_inputs()[0].shape[1] == 64


def test_exported_file_is_valid_onnx_with_metadata(ort, tmp_path, digits_net):
    import onnx

    path = _export(digits_net[0], tmp_path / "digits.onnx")
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    props = {p.key: p.value for p in model.metadata_props}
    assert props["fastnet_kind"] == "network" and props["loss"] == "softmax_cross_entropy"
    assert props["fastnet_version"] == fn.__version__
    assert {o.domain: o.version for o in model.opset_import}[""] == fn_onnx.OPSET
    assert model.producer_name == "fastnet"
    ops = [n.op_type for n in model.graph.node]
    assert "Dropout" not in ops and ops.count("MatMul") == 2 and "Relu" in ops


def test_binary_classifier_probabilities_are_sigmoids(ort, tmp_path):
    net = fn.Network([fn.Dense(3, 8, activation="gelu"), fn.Dense(8, 2)], loss="binary_cross_entropy", seed=2)
    X = np.random.default_rng(2).standard_normal((10, 3)).astype(np.float32)
    got = _run(ort, _export(net, tmp_path / "bce.onnx", proba=True), input=X)
    np.testing.assert_allclose(got, net.predict_proba(X), rtol=1e-5, atol=1e-6)


def test_float64_network(ort, tmp_path):
    net = fn.Network([fn.Dense(6, 10, activation="tanh"), fn.Dense(10, 3, activation="sigmoid"), fn.Dense(3, 2)],
                     loss="mse", seed=4, dtype=np.float64)
    X = np.random.default_rng(3).standard_normal((12, 6))
    got = _run(ort, _export(net, tmp_path / "f64.onnx"), input=X)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, net.predict(X), rtol=1e-12, atol=ATOL[np.float64])


def test_proba_needs_a_classifier(ort, tmp_path):
    net = fn.Network([fn.Dense(3, 1)], loss="mse")
    with pytest.raises(ValueError, match="proba=True needs a classification loss"):
        _export(net, tmp_path / "reg.onnx", proba=True)
    assert not (tmp_path / "reg.onnx").exists()


def test_unknown_layer_is_refused(ort, tmp_path):
    class Doubler(fn.Layer):
        def forward(self, x, training=False):
            return 2 * x

        def backward(self, dy):
            return 2 * dy

    net = fn.Network([fn.Dense(3, 4), Doubler()], loss="mse")
    with pytest.raises(TypeError, match=r"layer 1 .* has no ONNX export"):
        _export(net, tmp_path / "x.onnx")


def test_export_replaces_a_file_atomically_and_checks_the_directory(ort, tmp_path, digits_net):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"old")
    _export(digits_net[0], path)
    assert path.stat().st_size > 64 * 128 * 4  # the weights are in it
    assert sorted(os.listdir(tmp_path)) == ["model.onnx"]  # no temporary file left behind
    with pytest.raises(FileNotFoundError, match="does not exist"):
        _export(digits_net[0], tmp_path / "missing" / "model.onnx")


def test_missing_onnx_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnx", None)  # makes `import onnx` raise ImportError
    net = fn.Network([fn.Dense(2, 2)])
    with pytest.raises(ImportError, match=r'pip install "fastnet\[onnx\]"'):
        fn_onnx.network_to_onnx(net, tmp_path / "x.onnx")


def test_missing_onnxruntime_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ImportError, match="pip install onnxruntime"):
        onnx_runtime._onnxruntime()


def test_runtime_module_needs_no_fastnet():
    # The deployment side: loading fastnet/export/onnx_runtime.py by path with fastnet made unimportable.
    code = (
        "import sys, importlib.util\n"
        "sys.modules['fastnet'] = None\n"
        f"spec = importlib.util.spec_from_file_location('translate', {onnx_runtime.__file__!r})\n"
        "mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)\n"
        "assert callable(mod.onnx_greedy_translate)\n"
        "assert not any(name.startswith('fastnet.') for name in sys.modules), sorted(sys.modules)\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


# ---- the recipe tokenizers (pure Python, used by onnx_greedy_translate) ------------------
TEXTS = ["cats are cute", "the dog is big", "Hello, world! (really?)", "huset är stort", "¿qué tal?", "x-ray don't"]


@pytest.mark.parametrize("make", [
    lambda: fn.text.WordTokenizer.fit(TEXTS[:4]),
    lambda: fn.text.WordTokenizer.fit(TEXTS, lowercase=False),
    lambda: fn.text.CharTokenizer.fit(TEXTS[:3]),
    lambda: fn.text.AsciiTokenizer(errors="replace"),
], ids=["word", "word-cased", "char", "ascii"])
def test_recipe_tokenizer_agrees_with_fastnet(make):
    tok = make()
    mine = onnx_runtime.RecipeTokenizer(tok.to_dict())
    assert (mine.pad_id, mine.bos_id, mine.eos_id, mine.unk_id) == (tok.pad_id, tok.bos_id, tok.eos_id, tok.unk_id)
    for text in TEXTS:
        ids = tok.encode(text)
        assert mine.encode(text) == ids  # unknown words/characters included
        noisy = [tok.bos_id] + ids + [tok.pad_id, tok.eos_id, 4 % tok.vocab_size]
        assert mine.decode(noisy) == tok.decode(noisy)


def test_recipe_ascii_strict_refuses_non_ascii():
    mine = onnx_runtime.RecipeTokenizer(fn.text.AsciiTokenizer().to_dict())
    with pytest.raises(ValueError, match="non-ASCII"):
        mine.encode("smörgås")
    with pytest.raises(ValueError, match="unknown tokenizer type"):
        onnx_runtime.RecipeTokenizer({"type": "bpe"})


def test_runtime_rejects_a_directory_without_recipe(tmp_path):
    with pytest.raises(FileNotFoundError, match="recipe.json"):
        onnx_runtime.onnx_greedy_translate(tmp_path, ["cats are cute"], to="sv")


# ---- Translator ------------------------------------------------------------------
@pytest.fixture(scope="module")
def translator():
    """A small two-language translator trained long enough to write real, eos-terminated sentences."""
    data = fn.datasets.toy_translations(200, seed=0)
    tr = fn.Translator.build(data.en, {"sv": data.sv, "es": data.es}, d_model=32, n_heads=4, n_layers=2, d_ff=64,
                             dropout=0.0, seed=0)
    tr.fit(data.en, {"sv": data.sv, "es": data.es}, epochs=12, batch_size=16, verbose=0, lr=1e-2, warmup=20)
    return tr


@pytest.fixture(scope="module")
def exported(ort, translator, tmp_path_factory):
    directory = tmp_path_factory.mktemp("translator_onnx")
    recipe = translator.to_onnx(directory)
    return directory, recipe


@pytest.fixture(scope="module")
def sentences():
    held_out = fn.datasets.toy_translations(40, seed=1, split="test").en
    return ["cats are cute", "the dog is big", "the house is big"] + held_out


def test_encoder_graph_matches_memory_and_representation(ort, translator, exported, sentences):
    directory, _ = exported
    src = translator.encode_source(sentences)  # mixed lengths: padded rows
    assert (src == translator.encoder.pad_id).any()
    memory, mask, representation = _session(ort, directory / "encoder.onnx").run(None, {"src_ids": src})
    want_memory, want_mask = translator._memory(src)
    np.testing.assert_array_equal(mask, want_mask)
    keep = ~want_mask  # padded positions of the memory are never read (masked keys, pooling)
    np.testing.assert_allclose(memory[keep], want_memory[keep], rtol=1e-4, atol=2e-5)
    np.testing.assert_allclose(representation, translator.represent(sentences), rtol=1e-4, atol=2e-5)


def test_decoder_step_logits_match_for_every_prefix(ort, translator, exported, sentences):
    directory, recipe = exported
    src = translator.encode_source(sentences[:12])
    memory, mask = translator._memory(src)
    for name in ("sv", "es"):
        dec = translator.decoders[name]
        session = _session(ort, directory / recipe["decoders"][name]["file"])
        targets = translator.encode_target(name, translator.translate(sentences[:12], to=name))
        state = dec.start(memory, mask)
        for t in range(1, targets.shape[1]):
            prefix = np.ascontiguousarray(targets[:, :t])
            got = session.run(None, {"tokens": prefix, "memory": memory, "memory_mask": mask})[0]
            cached = dec.step(state, prefix[:, -1])  # fastnet's own KV-cached decoding step
            np.testing.assert_allclose(got, cached, rtol=1e-4, atol=1e-4, err_msg=f"{name} prefix length {t}")
            np.testing.assert_allclose(got, dec.forward(prefix, memory, mask)[:, -1], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("to", ["sv", "es"])
def test_onnx_greedy_translation_equals_fastnet(translator, exported, sentences, to):
    directory, _ = exported
    want = translator.translate(sentences, to=to)
    # a meaningful comparison: real sentences of different lengths that stopped at eos
    assert sum(bool(w) for w in want) > len(want) // 2 and len({len(w.split()) for w in want}) > 1
    assert fn.export.onnx_greedy_translate(directory, sentences, to=to) == want
    assert fn.export.onnx_greedy_translate(directory, sentences[0], to=to) == want[0]


def test_recipe_describes_greedy_decoding(translator, exported):
    directory, recipe = exported
    with open(directory / "recipe.json", encoding="utf-8") as f:
        assert json.load(f) == recipe
    assert recipe["decoding"] == "greedy" and recipe["not_exported"] == {}
    enc = recipe["encoder"]
    assert enc["tokenizer"] == translator.src_tokenizer.to_dict() and enc["max_len"] == translator.encoder.max_len
    assert (enc["pad_id"], enc["eos_id"], enc["add_bos"], enc["add_eos"]) == (
        translator.src_tokenizer.pad_id, translator.src_tokenizer.eos_id, False, True)
    for name, spec in recipe["decoders"].items():
        tok, dec = translator.tokenizers[name], translator.decoders[name]
        assert (spec["bos_id"], spec["eos_id"], spec["pad_id"]) == (tok.bos_id, tok.eos_id, tok.pad_id)
        assert spec["max_len"] == dec.max_len and spec["tokenizer"] == tok.to_dict()
        assert (directory / spec["file"]).is_file()
    with open(directory / "translate.py", "rb") as copy, open(onnx_runtime.__file__, "rb") as source:
        assert copy.read() == source.read()


def test_exported_directory_translates_without_fastnet(translator, exported):
    directory, _ = exported
    code = (
        "import sys, runpy\n"
        "sys.modules['fastnet'] = None  # the deployment has no fastnet\n"
        f"sys.argv = ['translate.py', {str(directory)!r}, 'cats are cute', 'the dog is big', '--to', 'es']\n"
        f"runpy.run_path({str(directory / 'translate.py')!r}, run_name='__main__')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            cwd=str(directory))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == translator.translate(["cats are cute", "the dog is big"], to="es")


def test_translator_export_choices_and_errors(ort, translator, tmp_path):
    recipe = translator.to_onnx(tmp_path / "es_only", decoders=["es"])
    assert list(recipe["decoders"]) == ["es"]
    assert sorted(os.listdir(tmp_path / "es_only")) == ["decoder_es.onnx", "encoder.onnx", "recipe.json",
                                                       "translate.py"]
    with pytest.raises(KeyError, match="unknown target 'sv'"):
        fn.export.onnx_greedy_translate(tmp_path / "es_only", ["cats are cute"], to="sv")
    with pytest.raises(KeyError, match="unknown decoder 'fr'"):
        translator.to_onnx(tmp_path / "fr", decoders=["fr"])
    translator.to_onnx(tmp_path / "both")
    with pytest.raises(ValueError, match="say which decoder"):
        fn.export.onnx_greedy_translate(tmp_path / "both", ["cats are cute"])


def test_pixel_decoders_are_listed_not_exported(ort, tmp_path):
    texts = ["a red circle", "a blue square"]
    tr = fn.Translator.build(texts, {"sv": ["en röd cirkel", "en blå kvadrat"]}, d_model=16, n_heads=2, n_layers=1,
                             d_ff=32, seed=0)
    tr.add_decoder("pixels", fn.ImageDecoder(16, size=8, hidden=(16,)))
    recipe = tr.to_onnx(tmp_path / "mixed")
    assert list(recipe["decoders"]) == ["sv"] and "pixels" in recipe["not_exported"]
    with pytest.raises(TypeError, match="only text decoders"):
        tr.to_onnx(tmp_path / "pixels", decoders=["pixels"])
