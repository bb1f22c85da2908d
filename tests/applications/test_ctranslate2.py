"""The CTranslate2 export translates exactly as fastnet does (greedy) on the
same model: the benchmark against it compares equal work."""
import numpy as np
import pytest

import fastnet

ctranslate2 = pytest.importorskip("ctranslate2")


@pytest.fixture(scope="module")
def trained():
    from fastnet.datasets import toy_translations
    from fastnet.seq2seq import Translator
    train = toy_translations(600, seed=0, split="train")
    with fastnet.threads(1):
        tr = Translator.build(train.en, {"sv": train.sv}, seed=0, d_model=64, n_heads=2, n_layers=2, d_ff=128,
                              dropout=0.0)
        tr.fit(train.en, {"sv": train.sv}, epochs=6, batch_size=32, lr=3e-3, verbose=0)
    return tr, train


def test_ctranslate2_greedy_equals_fastnet_greedy(trained, tmp_path):
    from fastnet.export.ctranslate2 import ctranslate2_translate, translator_to_ctranslate2
    tr, train = trained
    translator_to_ctranslate2(tr, tmp_path / "ct2", to="sv")
    sentences = train.en[:120]
    with fastnet.threads(1):
        ours = tr.translate(sentences, to="sv", max_length_ratio=100.0)  # CTranslate2 has no per-sentence cap
    theirs = ctranslate2_translate(tr, tmp_path / "ct2", sentences, to="sv")
    assert sum(a != "" for a in ours) > 100
    assert ours == theirs


def test_export_refuses_what_it_cannot_express(trained, tmp_path):
    from fastnet.export.ctranslate2 import translator_to_ctranslate2
    tr, _ = trained
    with pytest.raises(ValueError, match="text decoder"):
        translator_to_ctranslate2(tr, tmp_path / "x", to="xx")
    assert not np.any([p.exists() for p in [tmp_path / "x"]])


def test_tied_subword_model_exports_and_decodes_to_the_same_length_cap(tmp_path):
    """A tied output layer (the table is the projection) and a subword vocabulary, the recipe of
    train-translator; with the repetition guards off a barely trained model rambles until the
    length cap, which the two must count alike."""
    from fastnet.datasets import toy_translations
    from fastnet.export.ctranslate2 import (
        ctranslate2_translate,
        decoding_options,
        source_tokens,
        translator_to_ctranslate2,
    )
    from fastnet.seq2seq import Translator
    train = toy_translations(400, seed=1, split="train")
    with fastnet.threads(1):
        tr = Translator.build(train.en, {"sv": train.sv}, seed=1, d_model=32, n_heads=2, n_layers=1, d_ff=64,
                              dropout=0.0, tokenizer="subword", vocab_size=300, tie_embeddings=True)
        tr.fit(train.en, {"sv": train.sv}, epochs=1, batch_size=32, lr=1e-3, verbose=0)
    translator_to_ctranslate2(tr, tmp_path / "ct2", to="sv")
    sentences = train.en[:80]
    with fastnet.threads(1):
        ours = tr.translate(sentences, to="sv", max_length_ratio=100.0, no_repeat_ngram=0)
        theirs = ctranslate2_translate(tr, tmp_path / "ct2", sentences, to="sv", no_repeat_ngram=0)
    assert ours == theirs
    pieces = ctranslate2.Translator(str(tmp_path / "ct2"), device="cpu").translate_batch(
        source_tokens(tr, sentences), **decoding_options(tr, "sv", no_repeat_ngram=0))
    longest = max(len(r.hypotheses[0]) for r in pieces)
    assert longest == tr.decoders["sv"].max_len - 1, "no output reached the cap: the test would not see it"
