"""The translation jobs: the train-translator recipe (pair files, held-out splits, a time budget)
and the demo's translation part."""
import builtins
import hashlib
import math
import os
import time

import numpy as np

import fastnet
from fastnet.seq2seq import Translator

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


def language_of(spec):
    """'sv=path' -> ('sv', 'path'); 'path/tatoeba-eng-swe.tsv' -> ('sv', path); a file whose language
    cannot be told from its name is an error asking for LANG=PATH."""
    spec = os.fspath(spec)
    lang, sep, path = spec.partition("=")
    if sep and lang and "/" not in lang and os.sep not in lang:
        if not lang.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"{spec!r}: the language before '=' must be a short name such as sv, got {lang!r}")
        return lang, path
    name = target_name_from_path(spec)
    if name == "target":
        raise ValueError(f"cannot tell the language of {spec!r} from its name (expected e.g. tatoeba-eng-swe.tsv); "
                         f"give it as LANG=PATH, e.g. sv={spec}")
    return name, spec


def pair_files(pairs, to=None):
    """{language: path} from one path, a list of paths / 'LANG=PATH' strings, or a dict; each language once."""
    if isinstance(pairs, dict):
        specs = [f"{lang}={path}" for lang, path in pairs.items()]
    elif isinstance(pairs, (str, os.PathLike)):
        specs = [f"{to}={os.fspath(pairs)}" if to else pairs]
    else:
        specs = list(pairs)
        if to is not None:
            raise ValueError("to= names the language of a single pair file; with several, write LANG=PATH")
    if not specs:
        raise ValueError("no pair file given")
    files = {}
    for spec in specs:
        lang, path = language_of(spec)
        if lang in files:
            raise ValueError(f"language {lang!r} is given twice ({files[lang]} and {path}); give each language once")
        files[lang] = path
    return files


def held_out(sentence, seed, low, high):
    """Whether an English sentence falls in [low, high) of a uniform draw fixed by (seed, sentence):
    a sentence is held out alike in every file, and each language's split is the same with or without
    the others."""
    digest = hashlib.blake2b(f"{seed}\0{sentence}".encode("utf-8"), digest_size=8).digest()
    u = int.from_bytes(digest, "little") / 2.0 ** 64
    return low <= u < high


def split_three_ways(src, tgt, seed, test_fraction=0.1, dev_fraction=0.02):
    """(train_src, train_tgt, dev_src, dev_refs, test_src, test_refs), split by English sentence;
    every reference of a held-out (test or dev) sentence stays out of training."""
    groups = {}
    for s, t in zip(src, tgt):
        groups.setdefault(s, []).append(t)
    test = [s for s in groups if held_out(s, seed, 0.0, test_fraction)]
    dev = [s for s in groups if held_out(s, seed, test_fraction, test_fraction + dev_fraction)]
    kept = set(test) | set(dev)
    train = [(s, t) for s, t in zip(src, tgt) if s not in kept]
    return ([s for s, _ in train], [t for _, t in train], dev, [groups[s] for s in dev], test,
            [groups[s] for s in test])


# The recipe train-translator uses: sized so several passes over Tatoeba English-Swedish fit in
# 10 minutes on 2 cores; subword vocabularies, tied embeddings, EMA weights, best dev chrF kept.
DEV_SENTENCES = 300

RECIPE = dict(d_model=128, n_heads=4, n_layers=2, d_ff=512, dropout=0.1, activation="relu")
# Batches per language go as (its pairs) ** (1 / this): infinity gives every language an equal share.
LANGUAGE_TEMPERATURE = math.inf


def train_on_pairs(pairs, out, minutes=10, to=None, tokenizer="subword", vocab_size=None, min_freq=2,
                   max_words=12, batch_size=64, lr=2e-3, seed=0, verbose=1, print=builtins.print, ema=0.999,
                   sample_alpha=None, validations=6, max_pairs=None, callbacks=None,
                   language_temperature=LANGUAGE_TEMPERATURE, **arch):
    """Train one translator on one or more pair files within `minutes`, save it to `out`, return scores.

    pairs: a path, a list of paths or 'LANG=PATH' strings, or {language: path}; one shared Encoder,
    one Decoder per language, batches of the languages interleaved. Each language's pairs are held
    out by English sentence (~10% test, ~2% dev, the same English sentences in every file; every
    reference of a held-out sentence kept out of training). The model is checked on the dev
    sentences `validations` times; the saved one is the EMA weights of the best dev chrF.
    Languages get batches in proportion to (their pairs) ** (1/language_temperature), so a small
    language is not starved by a large one (inf, the default: equal shares; 5: the many-language
    recipe; 1: in proportion). With Tatoeba's 22k Swedish and 101k Spanish pairs in 10 minutes,
    equal shares kept Swedish within 1 chrF of a Swedish-only model and Spanish above 55; 5 gave
    Swedish 42% of the batches and cost it 2 chrF.
    `arch` overrides the architecture (d_model, n_heads, n_layers, d_ff, dropout, max_len).
    max_pairs: use about this many pairs of each file (a random slice by English sentence), for quick runs.
    Returns {"languages": {name: scores, sizes and a dozen sample translations}, ...}; with one
    language its scores are also at the top level.
    """
    from fastnet.seq2seq import metrics

    metrics.sacrebleu_module()  # chrF and BLEU: fail before any work, not after the budget
    start = time.monotonic()
    files = pair_files(pairs, to)
    splits = {lang: _load_split(path, max_words, seed, max_pairs) for lang, path in files.items()}
    train_src = {lang: sp[0] for lang, sp in splits.items()}
    train_tgt = {lang: sp[1] for lang, sp in splits.items()}
    # at most DEV_SENTENCES per language: each dev check translates them all, inside the budget
    dev = ({lang: sp[2][:DEV_SENTENCES] for lang, sp in splits.items()},
           {lang: [r[0] for r in sp[3][:DEV_SENTENCES]] for lang, sp in splits.items()})
    settings = {**RECIPE, **arch}
    tr = Translator.build(train_src, train_tgt, tokenizer=tokenizer, vocab_size=vocab_size, min_freq=min_freq,
                          lowercase=False, seed=seed, tie_embeddings=True, **settings)
    budget = float(minutes) - (time.monotonic() - start) / 60.0
    n_batches = sum(-(-len(s) // batch_size) for s in train_src.values())
    expected = _steps_in(tr, train_src, train_tgt, batch_size, budget)
    steps = max(1, min(n_batches, int(expected / max(validations, 1))))  # dev checks ~`validations` times
    warmup = max(50, min(500, int(0.1 * expected)))  # a short budget must not spend itself warming up
    # ~10% of the budget is kept for the final scoring of the held-out sentences
    tr.fit(train_src, train_tgt, epochs=10_000, batch_size=batch_size, lr=lr, warmup=warmup,
           max_minutes=max(0.9 * budget, 0.02),
           validation_data=dev, verbose=verbose, ema=ema, keep_best="val_chrf", steps_per_epoch=steps,
           sample_alpha=sample_alpha, callbacks=callbacks, language_temperature=language_temperature)
    tr.save(out)
    languages = {lang: _score(tr, lang, sp[4], sp[5], len(sp[0])) for lang, sp in splits.items()}
    result = {"languages": languages, "epochs": tr.epochs_trained, "steps_per_epoch": steps, "warmup": warmup,
              "best": getattr(tr, "best_epoch", None), "minutes": (time.monotonic() - start) / 60.0,
              "path": os.fspath(out)}
    if len(languages) == 1:
        result.update(next(iter(languages.values())))
    if verbose:
        for lang, sc in languages.items():
            print(f"held-out {lang}: chrF {sc['chrf']:.1f}  BLEU {sc['bleu']:.1f}  "
                  f"exact match {sc['exact_match']:.1%}  ({sc['n_test']} sentences)")
    return result


def _load_split(path, max_words, seed, max_pairs=None):
    from fastnet.datasets import load_pairs

    src, tgt = load_pairs(path, max_len=max_words)
    if not src:
        raise ValueError(f"{os.fspath(path)}: no usable sentence pairs (none of at most {max_words} words a side)")
    if max_pairs is not None and len(src) > max_pairs:  # a random slice, chosen by English sentence
        share = max_pairs / len(src)
        kept = [(s, t) for s, t in zip(src, tgt) if held_out(s, f"slice{seed}", 0.0, share)]
        src, tgt = [s for s, _ in kept], [t for _, t in kept]
    parts = split_three_ways(src, tgt, seed)
    for what, part in (("training", parts[0]), ("held-out", parts[4]), ("dev", parts[2])):
        if not part:
            raise ValueError(f"{os.fspath(path)}: too few different English sentences ({len(set(src))}) to leave "
                             f"any for {what}")
    return parts


def _steps_in(tr, src, tgt, batch_size, budget_minutes):
    """How many training steps fit in the budget: three timed steps on a copy of the weights."""
    from fastnet.seq2seq.training import TrainingData, batch_loss

    probe = {lang: texts[:3 * batch_size] for lang, texts in src.items()}
    data = TrainingData(tr, probe, {lang: tgt[lang][:3 * batch_size] for lang in probe}, "probe")
    saved = tr.store.data.copy()
    batches = data.batches(batch_size, np.random.default_rng(0), shuffle=False)[:3]
    began = time.perf_counter()
    for part, idx in batches:
        s, t = part.batch(tr, idx)
        batch_loss(tr, s, t, training=True)
    per_step = (time.perf_counter() - began) / len(batches) * 1.1  # + the optimizer step
    tr.store.data[...] = saved
    tr.store.zero_grad()
    return 60.0 * budget_minutes / max(per_step, 1e-6)


def _score(tr, lang, test_src, test_refs, n_train):
    scores = tr.evaluate(test_src, test_refs, to=lang)
    # a dozen samples spread over the held-out sentences (pair files often run from short to long)
    picked = sorted(set(np.linspace(0, len(test_src) - 1, min(12, len(test_src))).round().astype(int).tolist()))
    shown = tr.translate([test_src[i] for i in picked], to=lang, truncate=True)
    return {**scores, "target": lang, "n_train": n_train, "n_test": len(test_src),
            "samples": [(test_src[i], out, test_refs[i][0]) for i, out in zip(picked, shown)]}


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
