"""Ready-made jobs: train a translator on a pair file, and the demo's translation part."""
import builtins
import os
import time

import numpy as np

import fastnet
from fastnet.seq2seq.translator import Translator

# ISO 639-3 codes of pair files (tatoeba-eng-swe.tsv) -> the decoder names the demo uses.
_LANGUAGE_NAMES = {"swe": "sv", "spa": "es", "deu": "de", "fra": "fr", "ita": "it", "por": "pt", "nld": "nl",
                   "fin": "fi", "dan": "da", "nor": "no", "nob": "no", "pol": "pl", "rus": "ru"}

DEMO_ARCH = dict(d_model=64, n_heads=4, n_layers=2, d_ff=128, dropout=0.0, tokenizer="word")


def target_name_from_path(path):
    """'tatoeba-eng-swe.tsv' -> 'sv'; a file without a recognisable code -> 'target'."""
    stem = os.path.splitext(os.path.basename(os.fspath(path)))[0].lower()
    code = stem.replace("_", "-").split("-")[-1]
    return _LANGUAGE_NAMES.get(code, code if 2 <= len(code) <= 3 and code.isalpha() else "target")


def split_by_source(src, tgt, test_fraction=0.1, seed=0):
    """Hold out ~test_fraction of the distinct source sentences with every one of their references.

    Returns (train_src, train_tgt, test_src, test_refs) where test_refs[i] lists all
    translations of test_src[i] in the file, so no held-out sentence is seen in training.
    """
    if len(src) != len(tgt):
        raise ValueError(f"{len(src)} sources but {len(tgt)} targets")
    groups = {}
    for s, t in zip(src, tgt):
        groups.setdefault(s, []).append(t)
    unique = list(groups)
    if len(unique) < 2:
        raise ValueError(f"need at least 2 distinct source sentences to hold some out, got {len(unique)}")
    rng = np.random.default_rng(seed)
    n_test = min(max(1, int(round(test_fraction * len(unique)))), len(unique) - 1)
    test_idx = set(rng.permutation(len(unique))[:n_test].tolist())
    test_src = [unique[i] for i in sorted(test_idx)]
    held = set(test_src)
    train_pairs = [(s, t) for s, t in zip(src, tgt) if s not in held]
    return ([s for s, _ in train_pairs], [t for _, t in train_pairs], test_src, [groups[s] for s in test_src])


def train_on_pairs(path, out, minutes=10, to=None, tokenizer="word", min_freq=2, max_words=12,
                   batch_size=64, lr=2e-3, seed=0, verbose=1, print=builtins.print, **arch):
    """Train a translator on a tab-separated pair file within `minutes`, save it to `out`, return scores.

    Pairs are held out by source sentence (~10%, every reference of a held-out
    sentence kept out of training). `arch` overrides the architecture
    (d_model, n_heads, n_layers, d_ff, dropout, max_len). The returned dict
    holds the held-out scores, sizes, timings and a dozen sample translations.
    """
    from fastnet.datasets import load_pairs

    start = time.monotonic()
    src, tgt = load_pairs(path, max_len=max_words)
    if not src:
        raise ValueError(f"{os.fspath(path)}: no sentence pairs of at most {max_words} words")
    name = to or target_name_from_path(path)
    train_src, train_tgt, test_src, test_refs = split_by_source(src, tgt, 0.1, seed)
    # sized so a few epochs fit in 10 minutes on 2 cores; case is kept because chrF and BLEU compare it
    settings = dict(d_model=128, n_heads=4, n_layers=2, d_ff=512, dropout=0.1, activation="relu")
    settings.update(arch)
    tr = Translator.build(train_src, {name: train_tgt}, tokenizer=tokenizer, min_freq=min_freq, lowercase=False,
                          seed=seed, **settings)
    val = min(500, len(test_src))
    budget = max(float(minutes) - (time.monotonic() - start) / 60.0, 0.05)
    # keep ~8% of the budget for the final evaluation on the held-out sentences
    tr.fit(train_src, {name: train_tgt}, epochs=10_000, batch_size=batch_size, lr=lr, max_minutes=0.92 * budget,
           validation_data=(test_src[:val], {name: [r[0] for r in test_refs[:val]]}), verbose=verbose)
    tr.save(out)
    scores = tr.evaluate(test_src, test_refs, to=name)
    samples = list(zip(test_src[:12], tr.translate(test_src[:12], to=name), [r[0] for r in test_refs[:12]]))
    result = {**scores, "target": name, "n_train": len(train_src), "n_test": len(test_src),
              "epochs": tr.epochs_trained, "minutes": (time.monotonic() - start) / 60.0, "samples": samples,
              "path": os.fspath(out)}
    if verbose:
        print(f"held-out {name}: chrF {scores['chrf']:.1f}  BLEU {scores['bleu']:.1f}  "
              f"exact match {scores['exact_match']:.1%}  ({len(test_src)} sentences)")
    return result


def demo_translator(print=builtins.print, minutes=1.0, seed=0, n_train=2000, n_test=300, pictures=0.3, threads=1):
    """The demo's translation part: train on toy_translations, show and return what it learned.

    The model is tiny (d_model 64, batches of ~300 tokens): its matrices are too small to gain from a
    second thread, and on a busy machine every parallel region waits for descheduled threads, so it
    trains on `threads` (default 1) threads.
    Returns {"sv", "es": translations of "cats are cute", "exact_match": {lang: held-out share},
    "representation": the first 8 numbers of the sentence's representation, "translator"}.
    """
    from fastnet.datasets import toy_translations

    # `pictures`: share of picture descriptions, so the encoder also knows the words a pixel decoder needs
    train = toy_translations(n_train, seed=seed, split="train", pictures=pictures)
    test = toy_translations(n_test, seed=seed + 1, split="test", pictures=pictures)
    print(f"Training an English -> Swedish + Spanish translator on {len(train.en)} toy sentences "
          f"(one shared encoder, two decoders, about {minutes:g} minute(s))...")
    tr = Translator.build(train.en, {"sv": train.sv, "es": train.es}, seed=seed, **DEMO_ARCH)
    targets = {"sv": train.sv, "es": train.es}
    sentence = "cats are cute"
    with fastnet.threads(threads):
        tr.fit(train.en, targets, epochs=60, batch_size=32, lr=3e-3, warmup=100, max_minutes=minutes, verbose=0)
        sv, es = tr.translate(sentence, to="sv"), tr.translate(sentence, to="es")
        exact = {lang: tr.evaluate(test.en, getattr(test, lang), to=lang, metrics=("exact_match",))["exact_match"]
                 for lang in ("sv", "es")}
        rep = tr.represent(sentence)[0]
    print(f'  "{sentence}" in Swedish: "{sv}"')
    print(f'  "{sentence}" in Spanish: "{es}"')
    print(f"  held-out test sentences translated exactly: Swedish {exact['sv']:.1%}, Spanish {exact['es']:.1%} "
          f"({len(test.en)} sentences with combinations never seen in training)")
    print(f"  its representation ({tr.d_model} numbers) starts: " + " ".join(f"{v:+.3f}" for v in rep[:8]))
    return {"sv": sv, "es": es, "exact_match": exact, "representation": rep[:8].copy(), "translator": tr}
