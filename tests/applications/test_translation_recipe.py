"""The recipe for real text: subword models inside the file, tied embeddings, EMA and best-chrF weights,
several languages with their own English, beam n-best, the repetition guard, old files, bad input."""
import math
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import fastnet as fn
from fastnet import ops, reference
from fastnet.datasets import toy_translations
from fastnet.demo.translation import pair_files, split_three_ways, train_on_pairs
from fastnet.layers.base import ParameterStore, set_precision
from fastnet.seq2seq import Decoder, Translator, decoding
from fastnet.text import SubwordTokenizer
from helpers import weights_of_kind

HERE = os.path.dirname(__file__)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(fn.__file__)))  # where this fastnet is imported from
SMALL = dict(d_model=32, n_heads=2, n_layers=1, d_ff=64, dropout=0.0)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def subword(toy):
    train, _ = toy
    tr = Translator.build(train.en, {"sv": train.sv, "es": train.es}, tokenizer="subword", vocab_size=300,
                          tie_embeddings=True, seed=0, **SMALL)
    tr.fit(train.en, {"sv": train.sv, "es": train.es}, epochs=14, batch_size=32, lr=5e-3, verbose=0)
    return tr


# ---- the subword model travels inside the model file ------------------------------------
def test_subword_translator_learns_and_never_writes_unk(subword, toy):
    _, test = toy
    assert isinstance(subword.tokenizers["sv"], SubwordTokenizer)
    scores = subword.evaluate(test.en, test.sv, to="sv", metrics=("token_accuracy",))
    assert scores["token_accuracy"] > 0.5, scores  # untrained: about 0.01
    out = subword.translate(test.en + ["Trust me! 😀 Ελληνικά"], to="sv")
    assert not any("<unk>" in t or "\u2047" in t for t in out)


def test_model_file_carries_its_tokenizer(subword, tmp_path):
    """Delete every other file, load in a fresh process, translate."""
    path = tmp_path / "alone" / "tr.safetensors"
    path.parent.mkdir()
    subword.save(path)
    assert os.listdir(path.parent) == ["tr.safetensors"]
    expected = subword.translate(["cats are cute", "the dog is big"], to="es")
    code = ("import fastnet as fn, json, sys; tr = fn.load(sys.argv[1]); "
            "print(json.dumps(tr.translate(['cats are cute', 'the dog is big'], to='es')))")
    result = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=300,
                            cwd=tmp_path, env={**os.environ, "PYTHONPATH": ROOT})
    assert result.returncode == 0, result.stderr
    import json

    assert json.loads(result.stdout) == expected
    loaded = fn.load(path)
    assert loaded.tokenizers["sv"].model_proto == subword.tokenizers["sv"].model_proto
    assert loaded.src_tokenizer.model_proto == subword.src_tokenizer.model_proto


def test_model_file_saved_before_subwords_still_loads_and_translates_as_before():
    tr = fn.load(os.path.join(HERE, "..", "data", "translator_format1.safetensors"))
    sentences = ["cats are cute", "the dog is big", "he has a mouse", "the house is big"]
    # what the code of format 1 printed when it saved this file
    assert tr.translate(sentences, to="sv") == ["katter är söta", "hunden är stor", "han har en mus", "brevet är stor"]
    assert tr.translate(sentences, to="es") == ["los gatos son lindos", "el perro es grande", "él tiene un ratón",
                                               "la casa es grande"]
    assert tr.translate(sentences, to="sv", beam=3) == tr.translate(sentences, to="sv")


# ---- tied embeddings ------------------------------------------------------------------------
def test_tied_embedding_is_one_tensor_with_the_sum_of_both_gradients():
    dec = Decoder(11, d_model=8, n_heads=2, n_layers=1, d_ff=16, max_len=8, dropout=0.0, seed=1,
                  dtype=np.float64, tie_embeddings=True)
    store = ParameterStore([dec], dtype=np.float64)
    assert "w" not in dec.out.params and np.shares_memory(dec.out.weight, dec.embed.params["table"])
    rng = np.random.default_rng(0)
    memory = rng.normal(size=(3, 4, 8))
    target = np.array([[1, 5, 7, 2, 0], [1, 4, 4, 9, 2], [1, 10, 2, 0, 0]])

    def loss():
        return dec.loss(memory, None, target, label_smoothing=0.1)[0]

    store.zero_grad()
    dec.loss(memory, None, target, training=True, label_smoothing=0.1)
    dec.backward_loss()
    analytic = dec.embed.grads["table"].copy()
    table = dec.embed.params["table"]
    numeric = np.zeros_like(table)
    for i in [4, 5, 7, 9, 10, 3]:  # used as input, output, both, or only as a wrong class
        for j in range(0, 8, 3):
            old = table[i, j]
            table[i, j] = old + 1e-6
            up = loss()
            table[i, j] = old - 1e-6
            down = loss()
            table[i, j] = old
            numeric[i, j] = (up - down) / 2e-6
    checked = numeric != 0
    np.testing.assert_allclose(analytic[checked], numeric[checked], rtol=1e-5, atol=1e-8)
    # the embedding's gradient alone (untied path) would miss the output projection's part
    assert checked.sum() >= 12


@pytest.mark.parametrize("dtype, precision", [(np.float32, "float32"), (np.float32, "bf16"),
                                              (np.float64, "float32")])
def test_tied_logits_while_decoding_are_forwards_bit_for_bit(dtype, precision):
    """Decoding multiplies by a copy of the table made at its start (not the table transposed),
    with the bias in the epilogue: the same logits as forward, so greedy and beam search pick as
    before. A copy made once also means the table must be read afresh by the next run."""
    dec = Decoder(300, d_model=32, n_heads=2, n_layers=1, d_ff=64, max_len=8, dropout=0.0, seed=3,
                  dtype=dtype, tie_embeddings=True)
    set_precision([dec], precision)
    rng = np.random.default_rng(0)
    dec.out.params["b"][:] = rng.normal(size=300)
    for rows in (1, 7, 64):
        hidden = rng.normal(size=(rows, 1, 32)).astype(dtype)
        project = dec.start(rng.normal(size=(rows, 3, 32)).astype(dtype)).project
        np.testing.assert_array_equal(project(hidden), dec.out.forward(hidden))
    dec.embed.params["table"][5] += 1.0  # training moves the table: the next run sees it
    hidden = rng.normal(size=(4, 1, 32)).astype(dtype)
    np.testing.assert_array_equal(dec.start(np.zeros((4, 3, 32), dtype)).project(hidden), dec.out.forward(hidden))


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("kind", ["float32", "bf16", "float64", "int8"])
def test_decoding_logits_in_one_reused_buffer_are_fresh_logits_bit_for_bit(tied, kind):
    """translate's projection writes each step's logits into one buffer (reuse_logits): a prefix of
    it for fewer rows, a bigger one for more, each call overwriting the previous call's; the bits
    are those of fresh arrays, and greedy and beam search find the same sentences."""
    dtype = np.float64 if kind == "float64" else np.float32
    dec = weights_of_kind(Decoder(300, d_model=32, n_heads=2, n_layers=1, d_ff=64, max_len=8, dropout=0.0,
                                  seed=3, dtype=dtype, tie_embeddings=tied), kind, seed=4, scale=0.5)
    rng = np.random.default_rng(0)
    fresh, reused = dec.prepare_decoding(), dec.prepare_decoding(reuse_logits=True)
    previous = None
    for rows in (7, 3, 7, 64, 1, 0):
        hidden = rng.normal(size=(rows, 1, 32)).astype(dtype)
        logits = reused(hidden)
        assert logits.shape == (rows, 1, 300) and logits.tobytes() == fresh(hidden).tobytes()
        assert logits.tobytes() == dec.out.forward(hidden).tobytes()
        if previous is not None and 0 < rows <= len(previous):
            assert np.shares_memory(logits, previous)  # the same buffer, overwritten
        previous = logits if previous is None or rows > len(previous) else previous
    hidden = rng.normal(size=(5, 32)).astype(dtype)
    assert not np.shares_memory(fresh(hidden), fresh(hidden))
    memory = rng.normal(size=(6, 4, 32)).astype(dtype)
    args = (dec, memory, None, 1, 2, 8, decoding.Rules({0}))
    assert decoding.greedy(*args, project=reused) == decoding.greedy(*args, project=fresh)
    assert decoding.beam_search(*args, beam=3, project=reused) == decoding.beam_search(*args, beam=3, project=fresh)


def test_tied_translator_saves_one_table_per_decoder(subword):
    sv = [name for name in subword.state_arrays() if name.startswith("decoders.sv.")]
    assert len([name for name in sv if name.endswith("table")]) == 1
    assert [name for name in sv if "tiedoutput" in name] == [next(n for n in sv if "tiedoutput" in n)]
    dec = subword.decoders["sv"]
    sizes = {k: v for k, v in dec.config().items() if k not in ("vocab_size", "tie_embeddings")}
    untied = Decoder(dec.vocab_size, **sizes)
    assert dec.n_params() == untied.n_params() - dec.d_model * dec.vocab_size


# ---- EMA weights and the best validation chrF -----------------------------------------------
def test_averaged_weights_differ_from_the_raw_ones_and_are_what_is_saved(toy, tmp_path):
    pytest.importorskip("sacrebleu")
    train, test = toy
    tr = Translator.build(train.en, {"sv": train.sv}, tokenizer="word", seed=2, **SMALL)
    tr.fit(train.en, {"sv": train.sv}, epochs=3, batch_size=32, lr=3e-3, verbose=0, ema=0.99,
           validation_data=(test.en[:30], {"sv": test.sv[:30]}), keep_best="val_chrf")
    _, average, raw = tr._average_state
    assert not np.allclose(raw, average.average)
    best = int(np.argmax(tr.history["val_chrf"]))
    assert tr.best_epoch["epoch"] == best and tr.best_epoch["val_chrf"] == max(tr.history["val_chrf"])
    if best == len(tr.history["val_chrf"]) - 1:  # the last epoch was the best: the model is the average
        np.testing.assert_array_equal(tr.store.data, average.average)
    path = tmp_path / "ema.safetensors"
    tr.save(path)
    saved = fn.load(path)
    np.testing.assert_array_equal(saved.store.data, tr.store.data)
    assert not np.array_equal(saved.store.data, raw)
    # a later fit goes on from the raw weights, not from the average
    before = tr.store.data.copy()
    tr.fit(train.en, {"sv": train.sv}, epochs=1, batch_size=32, lr=3e-3, verbose=0, ema=0.99)
    assert not np.array_equal(tr.store.data, before)


def test_weight_average_follows_its_formula():
    from fastnet.seq2seq.training import WeightAverage

    data = np.zeros(3)
    avg = WeightAverage(data, 0.9)
    data[:] = 10.0
    avg.update(data)  # the ramp: decay min(0.9, 2/11)
    np.testing.assert_allclose(avg.average, 10.0 * (1 - 2 / 11))
    with pytest.raises(ValueError, match="ema must be a decay in"):
        WeightAverage(data, 1.0)


def test_keep_best_keeps_the_best_epoch_not_the_last(toy):
    pytest.importorskip("sacrebleu")
    train, test = toy
    tr = Translator.build(train.en, {"sv": train.sv}, tokenizer="word", seed=4, **SMALL)
    snapshots = []

    class Snap(fn.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            snapshots.append(tr.store.data.copy())

    # a learning rate so large that later epochs get worse
    tr.fit(train.en, {"sv": train.sv}, epochs=4, batch_size=32, lr=3e-3, verbose=0, callbacks=[Snap()],
           validation_data=(test.en[:30], {"sv": test.sv[:30]}), keep_best="val_chrf")
    best = int(np.argmax(tr.history["val_chrf"]))
    np.testing.assert_array_equal(tr.store.data, snapshots[best])
    with pytest.raises(ValueError, match="keep_best='val_chrf' needs validation_data"):
        tr.fit(train.en, {"sv": train.sv}, epochs=1, verbose=0, keep_best="val_chrf")


# ---- several languages, each with its own English ----------------------------------------------
def test_fit_takes_a_different_english_list_per_language(toy):
    train, _ = toy
    en_sv, sv = train.en[:300], train.sv[:300]
    en_es, es = train.en[300:], train.es[300:]
    tr = Translator.build({"sv": en_sv, "es": en_es}, {"sv": sv, "es": es}, tokenizer="word", seed=0, **SMALL)
    seen = []
    original = tr.decoders["sv"].loss

    def spy(context, mask, target, **kw):
        seen.append(context.shape[0])
        return original(context, mask, target, **kw)

    tr.decoders["sv"].loss = spy
    before = {name: dec.embed.params["table"].copy() for name, dec in tr.decoders.items()}
    tr.fit({"sv": en_sv, "es": en_es}, {"sv": sv, "es": es}, epochs=1, batch_size=50, verbose=0)
    assert sum(seen) == 300  # the Swedish decoder saw its own 300 pairs, each once
    for name, dec in tr.decoders.items():
        assert not np.array_equal(before[name], dec.embed.params["table"]), name
    with pytest.raises(ValueError, match="none for \\['es'\\]"):
        tr.fit({"sv": en_sv}, {"sv": sv, "es": es}, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="300 source sentences but 299"):
        tr.fit({"sv": en_sv, "es": en_es}, {"sv": sv[:-1], "es": es}, epochs=1, verbose=0)


def test_batches_of_the_languages_interleave(toy):
    from fastnet.seq2seq.training import TrainingData

    train, _ = toy
    tr = Translator.build(train.en, {"sv": train.sv, "es": train.es}, tokenizer="word", **SMALL)
    data = TrainingData(tr, {"sv": train.en[:320], "es": train.en[:320]}, {"sv": train.sv[:320], "es": train.es[:320]},
                        "fit")
    order = [next(iter(part.targets)) for part, _ in data.batches(32, np.random.default_rng(0))]
    assert sorted(order) == ["es"] * 10 + ["sv"] * 10
    assert order != sorted(order) and order != sorted(order, reverse=True)


def test_held_out_split_is_by_english_sentence_and_alike_in_every_file():
    src = [f"sentence {i % 400}" for i in range(1200)]
    tgt = [f"translation {i}" for i in range(1200)]
    tr_s, tr_t, dev_s, dev_r, test_s, test_r = split_three_ways(src, tgt, seed=5)
    assert not (set(tr_s) & set(test_s)) and not (set(tr_s) & set(dev_s)) and not (set(dev_s) & set(test_s))
    assert 20 <= len(test_s) <= 70 and all(len(r) == 3 for r in test_r)
    other = split_three_ways(src[:600], tgt[:600], seed=5)  # another file holding some of the same English
    assert set(other[4]) == {s for s in set(src[:600]) if s in set(test_s)}


# ---- decoding ----------------------------------------------------------------------------------
def test_beam_n_best_gives_distinct_hypotheses_sorted_by_score(subword, toy):
    _, test = toy
    tok, dec = subword.tokenizers["sv"], subword.decoders["sv"]
    memory, mask = subword._memory(subword.encode_source(test.en[:10]))
    found = decoding.beam_search(dec, memory, mask, tok.bos_id, tok.eos_id, dec.max_len, decoding.Rules(), beam=4)
    for hyps in found:
        scores = [score for _, score in hyps]
        assert len(hyps) >= 4 and scores == sorted(scores, reverse=True)
        assert len({tuple(tokens) for tokens, _ in hyps}) == len(hyps)
    out = subword.translate(test.en[:10], to="sv", beam=4, n_best=3)
    assert len(out) == 10 and all(len(options) == 3 and len(set(options)) == 3 for options in out)
    assert [options[0] for options in out] == subword.translate(test.en[:10], to="sv", beam=4)
    one = subword.translate("cats are cute", to="es", beam=3, n_best=2)
    assert isinstance(one, list) and len(one) == 2 and all(isinstance(t, str) for t in one)


class Repeater:
    """A decoder forced to repeat: it always scores tokens 5, 6, 7 in a cycle highest, eos never."""

    def __init__(self, vocab=12):
        self.vocab = vocab

    def start(self, memory, mask, capacity=None, project=None, rows=None):
        class State:
            position = 0

            def reorder(self, index):
                pass
        return State()

    def step(self, state, ids):
        logits = np.zeros((len(ids), self.vocab))
        logits[:, 5 + state.position % 3] = 5.0
        logits[:, 3] = 9.0  # the unknown token scores best of all
        logits[:, 2] = -50.0
        state.position += 1
        return logits


def test_repetition_guard_holds_on_a_model_forced_to_repeat():
    memory = np.zeros((2, 3, 4))
    rules = decoding.Rules(banned={3, 0, 1}, max_lengths=[40, 12], no_repeat_ngram=2)
    rows = decoding.greedy(Repeater(), memory, None, 1, 2, 60, rules)
    for row, cap in zip(rows, (40, 12)):
        assert 3 not in row and len(row) <= cap - 1
        bigrams = list(zip(row, row[1:]))
        assert len(bigrams) == len(set(bigrams)), row
    free = decoding.greedy(Repeater(), memory, None, 1, 2, 60, decoding.Rules(banned={3}, max_lengths=[40, 12]))
    assert free[0][:6] == [5, 6, 7, 5, 6, 7] and len(free[0]) == 39
    rows, ends = decoding.repeated_ngram_ends(np.array([[1, 2, 3, 1, 2], [1, 2, 1, 2, 1]]), 3)
    assert sorted(zip(rows.tolist(), ends.tolist())) == [(0, 3), (1, 2)]  # 2 1 was followed by 2
    assert decoding.repeated_ngram_ends(np.array([[4, 4, 5]]), 1)[1].tolist() == [4, 4, 5]
    assert decoding.repeated_ngram_ends(np.array([[7]]), 3)[0].size == 0
    runs = decoding.greedy(Stutter(), memory, None, 1, 2, 12, decoding.Rules(banned={3}, max_run=2))
    for row in runs:
        assert all(len(set(row[i:i + 3])) > 1 for i in range(len(row) - 2)), row
    assert decoding.greedy(Stutter(), memory, None, 1, 2, 12, decoding.Rules(banned={3}))[0][:4] == [6] * 4


def _rules_one_row_at_a_time(rules, logp, history):
    """The decoding rules written plainly, a row at a time: what Rules.apply must agree with."""
    for i, row in enumerate(history.tolist()):
        logp[i, rules.banned] = -np.inf
        if rules.eos_id is not None and len(row) < rules.min_length:
            logp[i, rules.eos_id] = -np.inf
        run = rules.max_run
        if 0 < run <= len(row) and len(set(row[-run:])) == 1:
            logp[i, row[-1]] = -np.inf
        n = rules.no_repeat_ngram
        for start in range(len(row) - n + 1 if n >= 1 and len(row) >= n - 1 else 0):
            if row[start:start + n - 1] == row[len(row) - n + 1:]:
                logp[i, row[start + n - 1]] = -np.inf
    return logp


@pytest.mark.parametrize("seed", range(40))
def test_rules_on_whole_arrays_equal_the_rules_row_by_row(seed):
    rng = np.random.default_rng(seed)
    rows, t, vocab = int(rng.integers(1, 6)), int(rng.integers(0, 9)), int(rng.integers(6, 9))
    history = rng.integers(3, 3 + int(rng.integers(1, 4)), size=(rows, t))  # few distinct tokens: many repeats
    rules = decoding.Rules(banned=rng.integers(0, vocab, 2), no_repeat_ngram=int(rng.integers(0, 5)), eos_id=2,
                           min_length=int(rng.integers(0, 3)), max_run=int(rng.integers(0, 4)))
    logp = rng.standard_normal((rows, vocab))
    expected = _rules_one_row_at_a_time(rules, logp.copy(), history)
    np.testing.assert_array_equal(rules.apply(logp, history), expected)


@pytest.mark.parametrize("seed", range(20))
def test_beam_candidates_are_ranked_as_a_stable_sort_ranks_them(cpu_path, seed):
    """Beam search takes its 2 x beam best candidates in one pass (ops.beam_candidates): the same
    candidates in the same order as a stable argsort of all scores + logp, ties included, the
    ones that are not finite left out."""
    rng = np.random.default_rng(seed)
    for _ in range(50):
        sentences, beam, vocab = int(rng.integers(0, 5)), int(rng.integers(1, 5)), int(rng.integers(0, 12))
        n = int(rng.integers(1, beam * vocab + 3))
        scores = -rng.integers(0, 3, (sentences, beam)).astype(np.float64)  # many ties
        scores[rng.random(scores.shape) < 0.2] = -np.inf  # empty beam slots
        logp = -rng.integers(0, int(rng.integers(1, 6)), (sentences * beam, vocab)).astype(np.float64)
        logp[rng.random(logp.shape) < rng.choice([0.0, 0.3])] = -np.inf  # banned tokens
        logp[rng.random(logp.shape) < rng.choice([0.0, 0.1])] = np.nan
        with fn.threads(int(rng.integers(1, 3))):
            values, indices = ops.beam_candidates(scores, logp, n)
        cand = (scores.reshape(-1, 1) + logp).reshape(sentences, beam * vocab)
        order = np.argsort(-cand, axis=1, kind="stable")
        for a in range(sentences):
            want = [i for i in order[a] if np.isfinite(cand[a, i])][:n]
            assert indices[a, :len(want)].tolist() == want
            np.testing.assert_array_equal(values[a, :len(want)], cand[a, want])
            assert (indices[a, len(want):] == -1).all() and (values[a, len(want):] == -np.inf).all()
        ref_values, ref_indices = reference.beam_candidates(scores, logp, n)
        np.testing.assert_array_equal(indices, ref_indices)
        np.testing.assert_array_equal(values, ref_values)


def test_beam_candidates_name_bad_arguments():
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        ops.beam_candidates(np.zeros((1, 2)), np.zeros((2, 3)), 0)
    with pytest.raises(ValueError, match=r"logp must be 2-D \(sentences \* beam, vocab\) = \(2, vocab\)"):
        ops.beam_candidates(np.zeros((1, 2)), np.zeros((3, 3)), 2)
    with pytest.raises(ValueError, match="scores must be 2-D"):
        ops.beam_candidates(np.zeros(2), np.zeros((2, 3)), 2)
    with pytest.raises(TypeError, match="scores must be float64"):
        ops.beam_candidates(np.zeros((1, 2), np.float32), np.zeros((2, 3)), 2)


class Stutter(Repeater):
    """Scores token 6 best at every step."""

    def step(self, state, ids):
        logits = super().step(state, ids)
        logits[:, 6] = 8.0
        return logits


def test_output_length_is_capped_relative_to_the_input(subword):
    out = subword.translate("cats", to="sv", max_length_ratio=0.5, no_repeat_ngram=0)
    n_src = len(subword.encode_source(["cats"])[0])
    assert len(subword.tokenizers["sv"].encode(out)) <= int(np.ceil(0.5 * n_src)) + 5


# ---- bad input ----------------------------------------------------------------------------------
def test_n_best_larger_than_beam_names_both(subword):
    with pytest.raises(ValueError, match="n_best=3 is larger than beam=2"):
        subword.translate("cats are cute", to="sv", beam=2, n_best=3)
    with pytest.raises(ValueError, match="n_best must be a positive integer"):
        subword.translate("cats are cute", to="sv", n_best=0)
    with pytest.raises(ValueError, match="sentence 0 is empty"):
        subword.translate(" ", to="sv")


def test_pair_file_errors_name_the_file_the_line_or_the_argument(tmp_path):
    no_tab = tmp_path / "eng-swe.tsv"
    no_tab.write_text("Hello.\tHej.\nno tab here\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"eng-swe.tsv, line 2: expected at least 2 tab-separated columns"):
        train_on_pairs(no_tab, tmp_path / "m.safetensors", minutes=0.05, verbose=0)
    empty = tmp_path / "eng-spa.tsv"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(ValueError, match="eng-spa.tsv: no usable sentence pairs"):
        train_on_pairs(empty, tmp_path / "m.safetensors", minutes=0.05, verbose=0)
    with pytest.raises(ValueError, match="cannot tell the language of .*pairs.tsv.*LANG=PATH"):
        pair_files([str(tmp_path / "pairs.tsv")])
    with pytest.raises(ValueError, match="language 'sv' is given twice"):
        pair_files([str(no_tab), f"sv={tmp_path / 'other.tsv'}"])
    assert pair_files([str(no_tab), f"es={empty}"]) == {"sv": str(no_tab), "es": str(empty)}
    assert not (tmp_path / "m.safetensors").exists()


# ---- issue 13, items 6 and 7 ----------------------------------------------------------------------
def test_train_translator_checks_sacrebleu_before_any_work(tmp_path, monkeypatch, capsys):
    import fastnet.datasets
    from fastnet import cli

    pairs = tmp_path / "eng-swe.tsv"
    pairs.write_text("Hello.\tHej.\n", encoding="utf-8")
    monkeypatch.setitem(sys.modules, "sacrebleu", None)  # as if not installed

    def no_work(*args, **kwargs):
        raise AssertionError("the pair file was read before the missing sacrebleu was reported")

    monkeypatch.setattr(fastnet.datasets, "load_pairs", no_work)
    assert cli.main(["train-translator", str(pairs), "--out", str(tmp_path / "m.safetensors")]) == 2
    assert "sacrebleu" in capsys.readouterr().err
    assert not (tmp_path / "m.safetensors").exists()


def test_overlong_held_out_sentences_are_cut_with_a_warning_not_an_abort(toy):
    train, _ = toy
    tr = Translator.build(train.en[:100], {"sv": train.sv[:100]}, tokenizer="word", max_len=8, **SMALL)
    tr.fit(train.en[:100], {"sv": train.sv[:100]}, epochs=1, verbose=0)
    long_sentence = " ".join(["cats are cute and"] * 6)
    with pytest.warns(UserWarning, match="longer than the encoder's max_len.*cut to fit"):
        scores = tr.evaluate([long_sentence, "cats are cute"], ["katter", "katter är söta"], to="sv",
                             metrics=("token_accuracy", "exact_match"))
    assert 0.0 <= scores["exact_match"] <= 1.0
    with pytest.raises(ValueError, match="more than the encoder's max_len=8"):
        tr.translate(long_sentence, to="sv")  # asked directly (the server): a clear error, no silent cut
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tr.translate("cats are cute", to="sv")


def test_subword_tied_translator_exports_to_onnx_and_translates_alike(subword, toy, tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    _, test = toy
    subword.to_onnx(tmp_path)
    sentences = test.en[:30] + ["Trust me! 😀"]
    for to in ("sv", "es"):
        want = subword.translate(sentences, to=to)
        assert fn.export.onnx_greedy_translate(tmp_path, sentences, to=to) == want


def test_cli_trains_on_two_pair_files_and_shows_n_best(tmp_path):
    pytest.importorskip("sacrebleu")
    data = toy_translations(400, seed=3, split="train")
    sv, es = tmp_path / "toy-eng-swe.tsv", tmp_path / "spanish.tsv"
    sv.write_text("".join(f"{e}\t{s}\tby someone\n" for e, s in zip(data.en[:250], data.sv)), encoding="utf-8")
    es.write_text("".join(f"{e}\t{s}\n" for e, s in zip(data.en[150:], data.es[150:])), encoding="utf-8")
    model = tmp_path / "m.safetensors"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ROOT}

    def run(*args):
        return subprocess.run([sys.executable, "-m", "fastnet.cli", *args], capture_output=True, text=True,
                              timeout=600, env=env, cwd=tmp_path)

    result = run("train-translator", str(sv), "--pairs", f"es={es}", "--out", str(model), "--minutes", "0.15",
                 "--vocab-size", "300")
    assert result.returncode == 0, result.stderr
    assert "  sv:" in result.stdout and "  es:" in result.stdout and "chrf" in result.stdout
    assert fn.load(model).languages == ["sv", "es"]
    result = run("translate", str(model), "cats are cute", "--to", "es", "--beam", "3", "--n-best", "2")
    assert result.returncode == 0, result.stderr
    out = result.stdout  # (a barely trained model's options may hold any character: no splitlines)
    assert out.startswith("cats are cute\n  1. ") and "\n  2. " in out
    result = run("train-translator", str(sv), "--pairs", f"sv={es}", "--out", str(model))
    assert result.returncode == 2 and "language 'sv' is given twice" in result.stderr


def test_subword_sampling_segments_the_training_text_anew_each_pass(subword, toy):
    from fastnet.seq2seq.training import TrainingData

    train, _ = toy
    data = TrainingData(subword, train.en[:200], {"sv": train.sv[:200]}, "fit")
    plain = data.parts[0].targets["sv"].copy()
    data.resample(subword, 0.3)
    sampled = data.parts[0].targets["sv"]
    tok = subword.tokenizers["sv"]
    assert tok.decode_batch(sampled) == tok.decode_batch(plain) == train.sv[:200]
    assert sampled.shape != plain.shape or not np.array_equal(sampled, plain)
    fresh = Translator.build(train.en[:64], {"sv": train.sv[:64]}, tokenizer="subword", vocab_size=300, **SMALL)
    before = fresh.store.data.copy()
    fresh.fit(train.en[:64], {"sv": train.sv[:64]}, epochs=2, batch_size=32, verbose=0, sample_alpha=0.1)
    assert not np.array_equal(before, fresh.store.data)


def test_language_temperature_gives_a_small_language_more_batches(toy):
    from fastnet.seq2seq.training import TrainingData

    train, _ = toy
    tr = Translator.build(train.en, {"sv": train.sv, "es": train.es}, tokenizer="word", **SMALL)
    data = TrainingData(tr, {"sv": train.en[:64], "es": train.en[:576]}, {"sv": train.sv[:64], "es": train.es[:576]},
                        "fit")

    def shares(temperature):
        order = [next(iter(p.targets)) for p, _ in data.batches(32, np.random.default_rng(0), True, temperature)]
        return order.count("sv"), order.count("es")

    assert shares(1.0) == (2, 18)
    sv, es = shares(5.0)  # 2 ** 0.2 : 18 ** 0.2 of 20 batches
    assert (sv, es) == (8, 12)
    assert shares(math.inf) == (10, 10)  # train-translator's default: equal shares
    with pytest.raises(ValueError, match="language_temperature must be >= 1"):
        tr.fit({"sv": train.en[:64], "es": train.en[:64]}, {"sv": train.sv[:64], "es": train.es[:64]}, epochs=1,
               verbose=0, language_temperature=0.5)


def test_a_sentence_never_translates_to_nothing():
    class EndsAtOnce(Repeater):
        def step(self, state, ids):
            logits = super().step(state, ids)
            logits[:, 2] = 99.0  # eos first, always
            return logits

    memory = np.zeros((2, 3, 4))
    rows = decoding.greedy(EndsAtOnce(), memory, None, 1, 2, 10, decoding.Rules(banned={3}, eos_id=2, min_length=1))
    assert rows == [[5], [5]]
    rows = decoding.greedy(EndsAtOnce(), memory, None, 1, 2, 10, decoding.Rules(banned={3}))
    assert rows == [[], []]
    found = decoding.beam_search(EndsAtOnce(), memory, None, 1, 2, 10, decoding.Rules(banned={3}, eos_id=2,
                                                                                       min_length=1), beam=2)
    assert all(tokens for hyps in found for tokens, _ in hyps)
