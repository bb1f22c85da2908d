"""Translator: training on toy data, decoding, representations, files, frozen encoders, errors."""
import os
import subprocess
import sys

import numpy as np
import pytest

import fastnet as fn
from fastnet.callbacks import EarlyStopping
from fastnet.seq2seq import Decoder, Encoder, Translator, decoding
from fastnet.seq2seq.training import batch_loss
from fastnet.text import WordTokenizer

SMALL = dict(d_model=32, n_heads=2, n_layers=1, d_ff=64, dropout=0.0, tokenizer="word")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained(toy):
    train, _ = toy
    tr = Translator.build(train.en, {"sv": train.sv, "es": train.es}, seed=0, **SMALL)
    tr.fit(train.en, {"sv": train.sv, "es": train.es}, epochs=12, batch_size=32, lr=3e-3, verbose=0)
    return tr


def test_small_translator_learns_toy_data(trained, toy):
    train, test = toy
    hist = trained.history
    assert hist["loss"][-1] < hist["loss"][0] / 2
    scores = trained.evaluate(train.en[:100], train.sv[:100], to="sv", metrics=("token_accuracy", "exact_match"))
    assert scores["token_accuracy"] > 0.9 and scores["exact_match"] > 0.6, scores
    assert trained.translate("cats are cute", to="sv") == "katter är söta"
    assert trained.translate("cats are cute", to="es") == "los gatos son lindos"


def test_cached_greedy_equals_uncached_greedy(trained, toy):
    _, test = toy
    src = test.en[:40]
    assert trained.translate(src, to="sv") == trained.translate(src, to="sv", cache=False)
    assert trained.translate(src, to="es", batch_size=7) == trained.translate(src, to="es", cache=False)


def test_beam_of_one_equals_greedy(trained, toy):
    _, test = toy
    assert trained.translate(test.en[:40], to="sv", beam=1) == trained.translate(test.en[:40], to="sv")
    tok, dec = trained.tokenizers["sv"], trained.decoders["sv"]
    memory, mask = trained._memory(trained.encode_source(test.en[:20]))
    args = (dec, memory, mask, tok.bos_id, tok.eos_id, dec.max_len, decoding.Rules())
    assert [hyps[0][0] for hyps in decoding.beam_search(*args, beam=1)] == decoding.greedy(*args)


def test_caches_hold_the_longest_cap_of_the_batch(trained, toy, monkeypatch):
    """The key/value caches are sized by the batch's length caps, which every step fills exactly."""
    _, test = toy
    tok, dec = trained.tokenizers["sv"], trained.decoders["sv"]
    memory, mask = trained._memory(trained.encode_source(test.en[:6]))
    capacities, start = [], dec.start
    monkeypatch.setattr(dec, "start", lambda *a, capacity=None, **k: capacities.append(capacity) or start(
        *a, capacity=capacity, **k))
    caps = [3, 5, 2, 4, 5, 1]
    args = (dec, memory, mask, tok.bos_id, tok.eos_id, dec.max_len, decoding.Rules(max_lengths=caps))
    rows = decoding.greedy(*args)
    found = decoding.beam_search(*args, beam=2)
    assert capacities == [5, 5] and dec.max_len > 5
    assert all(len(r) < cap for r, cap in zip(rows, caps))  # the cap's last step is the forced end
    assert all(len(tokens) < cap for hyps, cap in zip(found, caps) for tokens, _ in hyps)


def test_beam_search_of_a_batch_equals_it_sentence_by_sentence(trained, toy):
    """Sentences close at different steps and leave the batch's state: what is left decodes as alone."""
    _, test = toy
    src = test.en[:24]
    whole = trained.translate(src, to="sv", beam=3, n_best=3)
    assert whole == trained.translate(src, to="sv", beam=3, n_best=3, batch_size=1)
    assert whole == trained.translate(src, to="sv", beam=3, n_best=3, batch_size=5)


def sequence_logprob(tr, to, src, tokens):
    tok, dec = tr.tokenizers[to], tr.decoders[to]
    memory, mask = tr._memory(tr.encode_source([src]))
    ended = [tok.eos_id] if len(tokens) < dec.max_len else []  # a hypothesis cut at max_len has no eos
    seq = np.array([[tok.bos_id, *tokens, *ended]])
    logits = dec.forward(seq[:, :-1], memory, mask)[0].astype(np.float64)
    shifted = logits - logits.max(1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
    return float(logp[np.arange(seq.shape[1] - 1), seq[0, 1:]].sum())


def test_beam_search_finds_at_least_as_likely_translations(trained, toy):
    _, test = toy
    tok, dec = trained.tokenizers["sv"], trained.decoders["sv"]
    src = test.en[:12]
    memory, mask = trained._memory(trained.encode_source(src))
    args = (dec, memory, mask, tok.bos_id, tok.eos_id, dec.max_len, decoding.Rules())
    greedy = decoding.greedy(*args)
    beam = [hyps[0][0] for hyps in decoding.beam_search(*args, beam=4, length_penalty=0.0)]
    for s, g, b in zip(src, greedy, beam):
        assert sequence_logprob(trained, "sv", s, b) >= sequence_logprob(trained, "sv", s, g) - 1e-4
    out = trained.translate(src, to="sv", beam=3)
    assert len(out) == len(src) and all(isinstance(t, str) for t in out)


def test_represent_is_one_vector_per_sentence(trained):
    rep = trained.represent(["cats are cute", "the dog is big", "cats are cute"])
    assert rep.shape == (3, 32) and rep.dtype == np.float32
    np.testing.assert_array_equal(rep[0], rep[2])
    ids = trained.encode_source(["the dog is big"])
    np.testing.assert_allclose(rep[1], trained.encoder.represent(ids)[0], rtol=1e-6)
    assert not np.allclose(rep[0], rep[1])


def test_save_load_round_trip_is_bitwise(trained, toy, tmp_path):
    _, test = toy
    path = tmp_path / "tr.safetensors"
    trained.save(path)
    loaded = fn.load(path)
    assert isinstance(loaded, Translator)
    before, after = trained.state_arrays(), loaded.state_arrays()
    assert list(before) == list(after)
    for name in before:
        assert before[name].dtype == after[name].dtype
        np.testing.assert_array_equal(before[name], after[name])
    assert loaded.src_tokenizer == trained.src_tokenizer and loaded.tokenizers == trained.tokenizers
    assert loaded.translate(test.en[:20], to="es") == trained.translate(test.en[:20], to="es")
    np.testing.assert_array_equal(loaded.represent(test.en[:5]), trained.represent(test.en[:5]))
    assert loaded.history.history["loss"] == trained.history.history["loss"]


def test_saved_translator_loads_in_a_new_process(trained, tmp_path):
    path = tmp_path / "tr.safetensors"
    trained.save(path)
    code = ("import sys, fastnet as fn; tr = fn.load(sys.argv[1]); "
            "print(tr.translate('cats are cute', to='sv')); print(repr(float(tr.represent('the dog is big')[0, 0])))")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(fn.__file__))})
    assert out.returncode == 0, out.stderr
    sv, first = out.stdout.strip().splitlines()
    assert sv == trained.translate("cats are cute", to="sv")
    assert float(first) == float(trained.represent("the dog is big")[0, 0])


def test_load_rejects_a_file_whose_weights_do_not_fit(trained, tmp_path):
    path = tmp_path / "tr.safetensors"
    trained.save(path)
    tensors, meta = fn.io.load_safetensors_checked(path)
    name = next(iter(tensors))
    tensors[name] = tensors[name][:1]
    fn.io.save_safetensors_atomic(path, tensors, meta)
    with pytest.raises(fn.io.ModelFileError, match="shape"):
        fn.load(path)


def test_frozen_encoder_stays_bitwise_unchanged(trained, toy):
    train, _ = toy
    tr = Translator._from_file(trained.state_arrays(), {"fastnet_kind": "translator", "translator": trained.config()},
                               "<copy>")
    encoder_before = {k: v.copy() for k, v in tr.state_arrays().items() if k.startswith("encoder.")}
    es_before = {k: v.copy() for k, v in tr.state_arrays().items() if k.startswith("decoders.es.")}
    tok = WordTokenizer.fit(train.sv)
    dec = Decoder(tok.vocab_size, d_model=32, n_heads=2, n_layers=1, d_ff=64, max_len=tr.encoder.max_len,
                  dropout=0.0, pad_id=tok.pad_id, seed=5)
    tr.add_decoder("sv2", dec, tok, freeze_encoder=True)
    with pytest.raises(RuntimeError, match="not been trained"):
        tr.translate("cats are cute", to="sv2")
    hist = tr.fit(train.en[:200], {"sv2": train.sv[:200]}, epochs=3, batch_size=32, lr=3e-3, verbose=0)
    assert hist["loss"][-1] < hist["loss"][0]
    for name, value in tr.state_arrays().items():
        if name in encoder_before:
            np.testing.assert_array_equal(value, encoder_before[name], err_msg=name)
        if name in es_before:
            np.testing.assert_array_equal(value, es_before[name], err_msg=name)
    assert isinstance(tr.translate("cats are cute", to="sv2"), str)


def test_joint_gradients_reach_the_shared_encoder(rng):
    """Gradient check of the summed loss of two decoders w.r.t. encoder weights (float64)."""
    tok = WordTokenizer.fit(["a b c", "d e f"])
    kw = dict(d_model=8, n_heads=2, n_layers=1, d_ff=12, max_len=8, dropout=0.0, dtype=np.float64)
    enc = Encoder(tok.vocab_size, seed=1, **kw)
    decs = {n: Decoder(tok.vocab_size, seed=s, **kw) for n, s in (("x", 2), ("y", 3))}
    tr = Translator(enc, decs, tok, {"x": tok, "y": tok})
    src = tr.encode_source(["a b c", "d e"])
    tgts = {"x": tr.encode_target("x", ["b a", "f e d"]), "y": tr.encode_target("y", ["c", "d d"])}
    tr.store.zero_grad()
    batch_loss(tr, src, tgts, training=True, label_smoothing=0.1)
    analytic = tr.store.grad.copy()

    def total():
        return sum(batch_loss(tr, src, tgts, training=False, label_smoothing=0.1)[0].values())

    n_enc = enc.n_params()
    for i in rng.choice(n_enc, 12, replace=False):
        old = tr.store.data[i]
        tr.store.data[i] = old + 1e-6
        up = total()
        tr.store.data[i] = old - 1e-6
        down = total()
        tr.store.data[i] = old
        assert np.isclose(analytic[i], (up - down) / 2e-6, rtol=1e-5, atol=1e-8)


def test_training_is_reproducible_by_seed(toy):
    train, _ = toy

    def run():
        tr = Translator.build(train.en[:64], {"sv": train.sv[:64]}, seed=3, **{**SMALL, "dropout": 0.1})
        tr.fit(train.en[:64], {"sv": train.sv[:64]}, epochs=2, batch_size=16, verbose=0)
        return tr.store.data.copy()

    np.testing.assert_array_equal(run(), run())


def test_early_stopping_and_validation_history(toy):
    train, test = toy
    tr = Translator.build(train.en[:64], {"sv": train.sv[:64]}, seed=1, **SMALL)
    stop = EarlyStopping(monitor="val_loss", patience=0, restore_best=True)
    hist = tr.fit(train.en[:64], {"sv": train.sv[:64]}, epochs=50, batch_size=32, lr=1.0, verbose=0,
                  validation_data=(test.en[:16], {"sv": test.sv[:16]}), callbacks=[stop])
    assert len(hist) < 50 and "val_loss" in hist and "val_token_accuracy" in hist
    np.testing.assert_array_equal(tr.store.data, stop.best_weights)


def test_time_budget_stops_training(toy):
    train, _ = toy
    tr = Translator.build(train.en, {"sv": train.sv}, seed=1, **SMALL)
    hist = tr.fit(train.en, {"sv": train.sv}, epochs=1000, batch_size=8, verbose=0, max_minutes=0.02)
    assert len(hist) < 1000 and hist["time"][0] < 10


def test_evaluate_scores(trained, toy):
    _, test = toy
    hyps = trained.translate(test.en[:30], to="sv")
    scores = trained.evaluate(test.en[:30], hyps, to="sv", metrics=("exact_match",))
    assert scores == {"exact_match": 1.0}
    pytest.importorskip("sacrebleu")
    scores = trained.evaluate(test.en[:30], test.sv[:30], to="sv")
    assert set(scores) == {"token_accuracy", "exact_match", "bleu", "chrf"}
    assert 0 <= scores["exact_match"] <= 1 and 0 <= scores["bleu"] <= 100 and 0 <= scores["chrf"] <= 100
    multi = trained.evaluate(test.en[:30], [[r, h] for r, h in zip(test.sv[:30], hyps)], to="sv")
    assert multi["exact_match"] == 1.0 and multi["bleu"] == pytest.approx(100.0)


def test_missing_sacrebleu_names_the_install_extra(trained, monkeypatch):
    monkeypatch.setitem(sys.modules, "sacrebleu", None)
    with pytest.raises(ImportError, match=r"pip install fastnet\[metrics\]"):
        trained.evaluate(["cats are cute"], ["katter är söta"], to="sv")


def test_clear_errors(trained, toy):
    train, _ = toy
    with pytest.raises(KeyError, match="unknown target 'fr'.*'sv', 'es'"):
        trained.translate("cats are cute", to="fr")
    with pytest.raises(ValueError, match="empty input"):
        trained.translate([], to="sv")
    with pytest.raises(ValueError, match="sentence 1 is empty"):
        trained.translate(["cats are cute", "  "], to="sv")
    with pytest.raises(ValueError, match="say which decoder"):
        trained.translate("cats are cute")
    with pytest.raises(ValueError, match="beam must be a positive integer"):
        trained.translate("cats are cute", to="sv", beam=0)
    fresh = Translator.build(train.en[:20], {"sv": train.sv[:20]}, **SMALL)
    with pytest.raises(RuntimeError, match="has not been trained"):
        fresh.translate("cats are cute", to="sv")
    with pytest.raises(ValueError, match="aligned"):
        fresh.fit(train.en[:20], {"sv": train.sv[:19]}, epochs=1, verbose=0)
    with pytest.raises(KeyError, match="unknown target"):
        fresh.fit(train.en[:20], {"de": train.sv[:20]}, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="epochs must be a positive integer"):
        fresh.fit(train.en[:20], {"sv": train.sv[:20]}, epochs=0, verbose=0)
    with pytest.raises(ValueError, match="already exists"):
        fresh.add_decoder("sv", fresh.decoders["sv"], fresh.tokenizers["sv"])
    with pytest.raises(ValueError, match="d_model"):
        fresh.add_decoder("big", Decoder(10, d_model=64), fresh.tokenizers["sv"])
