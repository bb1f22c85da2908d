"""The translation jobs of fastnet.demo (the demo, training on a pair file) and the hook for other decoder kinds."""
import numpy as np
import pytest

import fastnet as fn
from fastnet.datasets import toy_translations
from fastnet.demo.translation import demo_translator, split_by_source, target_name_from_path, train_on_pairs
from fastnet.layers.base import Layer
from fastnet.seq2seq import Translator, register_decoder_kind

pytestmark = pytest.mark.usefixtures("one_thread")


def test_split_by_source_keeps_every_reference_of_held_out_sentences():
    src = [f"s{i % 30}" for i in range(90)]
    tgt = [f"t{i}" for i in range(90)]
    train_src, train_tgt, test_src, test_refs = split_by_source(src, tgt, 0.1, seed=0)
    assert len(test_src) == 3 and not set(test_src) & set(train_src)
    for s, refs in zip(test_src, test_refs):
        assert refs == [t for a, t in zip(src, tgt) if a == s] and len(refs) == 3
    assert len(train_src) == 81 and len(train_tgt) == 81
    with pytest.raises(ValueError, match="distinct source"):
        split_by_source(["a", "a"], ["x", "y"])


def test_target_name_from_path():
    assert target_name_from_path("/data/tatoeba-eng-swe.tsv") == "sv"
    assert target_name_from_path("eng-spa.txt") == "es"
    assert target_name_from_path("pairs.tsv") == "target"


def test_train_on_pairs_trains_saves_and_scores(tmp_path):
    pytest.importorskip("sacrebleu")
    data = toy_translations(300, seed=0)
    path = tmp_path / "toy-eng-swe.tsv"
    path.write_text("".join(f"{e}\t{s}\tattribution\n" for e, s in zip(data.en, data.sv)), encoding="utf-8")
    out = tmp_path / "model.safetensors"
    result = train_on_pairs(path, out, minutes=0.1, d_model=32, n_heads=2, n_layers=1, d_ff=64, verbose=0,
                            min_freq=1)
    assert result["target"] == "sv" and result["n_test"] > 0 and 0 <= result["chrf"] <= 100
    assert len(result["samples"]) == 12 and result["minutes"] < 1.0
    tr = fn.load(out)
    assert tr.languages == ["sv"] and isinstance(tr.translate("cats are cute", to="sv"), str)


def test_build_can_keep_case_for_case_sensitive_scores():
    tr = Translator.build(["Hello there.", "Who died?"], {"sv": ["Hej där.", "Vem dog?"]}, d_model=16, n_heads=2,
                          n_layers=1, d_ff=32, lowercase=False)
    tok = tr.tokenizers["sv"]
    assert tok.decode(tok.encode("Vem dog?")) == "Vem dog?"
    assert tr.src_tokenizer.decode(tr.encode_source(["Who died?"])[0]) == "Who died?"


def test_demo_translator_prints_and_returns_its_numbers():
    lines = []
    result = demo_translator(print=lines.append, minutes=0.1, n_train=300, n_test=40)
    text = "\n".join(lines)
    assert f'in Swedish: "{result["sv"]}"' in text and f'in Spanish: "{result["es"]}"' in text
    assert "held-out test sentences" in text and "representation (64 numbers)" in text
    rep = result["translator"].represent("cats are cute")[0]
    np.testing.assert_array_equal(result["representation"], rep[:8])
    assert f"{rep[0]:+.3f}" in text
    assert set(result["exact_match"]) == {"sv", "es"}


class MeanVectorDecoder(Layer):
    """A minimal non-text decoder: representation (B, D) -> a vector (B, k), squared error."""

    input_kind = "representation"

    def __init__(self, d_model, k=3, seed=0, dtype=np.float32):
        super().__init__()
        self.d_model, self.k = d_model, k
        self.add_param("w", (np.random.default_rng(seed).standard_normal((d_model, k)) * 0.1).astype(dtype))
        self._cache = None

    def loss(self, context, mask, target, training=False, label_smoothing=0.0):
        diff = context @ self.params["w"] - target
        self._cache = (context, diff) if training else None
        return float((diff ** 2).mean()), {}

    def backward_loss(self):
        context, diff = self._cache
        g = 2 * diff / diff.size
        self.grads["w"] += context.T @ g
        return g @ self.params["w"].T

    def predict(self, context, mask=None):
        return context @ self.params["w"]

    def config(self):
        return {"d_model": self.d_model, "k": self.k}


def test_representation_decoders_plug_in_train_and_save(tmp_path):
    data = toy_translations(120, seed=0, split="train")
    tr = Translator.build(data.en, {"sv": data.sv}, d_model=16, n_heads=2, n_layers=1, d_ff=32, dropout=0.0)
    tr.fit(data.en, {"sv": data.sv}, epochs=1, batch_size=32, verbose=0)
    register_decoder_kind(MeanVectorDecoder)
    vec = MeanVectorDecoder(16, seed=1)
    tr.add_decoder("vec", vec, freeze_encoder=False)
    target = np.random.default_rng(0).standard_normal((len(data.en), 3)).astype(np.float32)
    hist = tr.fit(data.en, {"sv": data.sv, "vec": target}, epochs=4, batch_size=32, lr=3e-3, verbose=0)
    assert hist["loss"][-1] < hist["loss"][0]
    pred = tr.translate(data.en[:5], to="vec")
    np.testing.assert_allclose(pred, tr.represent(data.en[:5]) @ vec.params["w"], rtol=1e-5, atol=1e-6)
    tr.save(tmp_path / "tr.safetensors")
    loaded = fn.load(tmp_path / "tr.safetensors")
    np.testing.assert_array_equal(loaded.translate(data.en[:5], to="vec"), pred)
    with pytest.raises(TypeError, match="decoder interface"):
        tr.add_decoder("bad", object())


@pytest.mark.parametrize("name", ["demo_translator", "split_by_source", "train_on_pairs"])
def test_the_old_seq2seq_names_still_work_with_a_deprecation_warning(name):
    import fastnet.demo.translation
    import fastnet.seq2seq

    with pytest.warns(DeprecationWarning, match=f"fastnet.demo.{name}"):
        assert getattr(fastnet.seq2seq, name) is getattr(fastnet.demo.translation, name)
