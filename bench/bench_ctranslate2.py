"""fastnet beside CTranslate2 on the same trained translator, float32 and int8.

    python -m pytest bench/bench_ctranslate2.py --benchmark-only --benchmark-group-by=group \
        --benchmark-columns=median,iqr,rounds

The translator has the issue's shape (d_model 128, 4 heads, 2 + 2 layers,
feed-forward 512, GELU) and is trained for a few epochs on the toy
English-Swedish sentences, then exported with fastnet.export.ctranslate2
(CTranslate2's own model-spec API). Both sides translate the same 1000
sentences greedily, in batches of 250, on the same thread count; the
float32 outputs are checked equal first, so the work is the same.
fastnet-int8 is tr.quantize("int8"); ctranslate2-int8 is compute_type="int8".
ctranslate2 is a bench-only dependency: the module skips without it.

With FASTNET_BENCH_MODEL naming a model saved by `fastnet train-translator
tatoeba-eng-swe.tsv` (subwords, tied embeddings), the same four run on it too,
on 1000 of its held-out Tatoeba sentences (tatoeba-eng-swe.tsv in
$FASTNET_DATA, default ../shared/data) in batches of 64; there the outputs are
checked equal with the repetition guards off (fastnet's rule against a piece
three times in a row has no CTranslate2 option) and timed with them on.
"""
import copy
import os
import pathlib

import pytest

import fastnet as fn

ctranslate2 = pytest.importorskip("ctranslate2")

N_SENTENCES, BATCH = 1000, 250


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from fastnet.datasets import toy_translations
    from fastnet.export.ctranslate2 import ctranslate2_translate, translator_to_ctranslate2
    from fastnet.seq2seq import Translator

    train = toy_translations(2000, seed=0, split="train")
    with fn.threads(2):
        tr = Translator.build(train.en, {"sv": train.sv}, seed=0, d_model=128, n_heads=4, n_layers=2, d_ff=512,
                              dropout=0.0)
        tr.fit(train.en, {"sv": train.sv}, epochs=4, batch_size=64, lr=2e-3, verbose=0)
    folder = tmp_path_factory.mktemp("ct2") / "model"
    translator_to_ctranslate2(tr, folder, to="sv")
    sentences = (train.en * (N_SENTENCES // len(train.en) + 1))[:N_SENTENCES]
    ours = tr.translate(sentences[:200], to="sv", max_length_ratio=100.0)
    assert ours == ctranslate2_translate(tr, folder, sentences[:200], to="sv"), "the export must translate alike"
    int8 = copy.deepcopy(tr).quantize("int8")
    return tr, int8, folder, sentences


@pytest.fixture(scope="module")
def real_models(tmp_path_factory):
    from fastnet.demo.translation import _load_split
    from fastnet.export.ctranslate2 import ctranslate2_translate, translator_to_ctranslate2

    path = os.environ.get("FASTNET_BENCH_MODEL")
    data = os.environ.get("FASTNET_DATA", pathlib.Path(__file__).resolve().parents[2] / "shared" / "data")
    pairs = os.path.join(data, "tatoeba-eng-swe.tsv")
    if not path or not os.path.exists(pairs):
        pytest.skip("set FASTNET_BENCH_MODEL to a saved Tatoeba translator (and have its pair file)")
    tr = fn.load(path)
    sentences = _load_split(pairs, 12, 0)[4][:N_SENTENCES]  # train_on_pairs' held-out split (seed 0)
    folder = tmp_path_factory.mktemp("ct2-real") / "model"
    translator_to_ctranslate2(tr, folder, to="sv")
    ours = tr.translate(sentences, to="sv", batch_size=REAL_BATCH, max_length_ratio=100.0, no_repeat_ngram=0)
    theirs = ctranslate2_translate(tr, folder, sentences, to="sv", batch_size=REAL_BATCH, no_repeat_ngram=0)
    assert ours == theirs, "the export must translate alike"
    return tr, copy.deepcopy(tr).quantize("int8"), folder, sentences


IMPLS = ["fastnet", "fastnet-int8", "ctranslate2", "ctranslate2-int8"]
REAL_BATCH = 64


def greedy_benchmark(benchmark, models, impl, threads, batch, what):
    from fastnet.export.ctranslate2 import ctranslate2_translate

    tr, int8, folder, sentences = models
    benchmark.group = f"greedy translation of {len(sentences)} {what} sentences, batch {batch}, {threads}t"
    benchmark.extra_info["impl"] = impl
    benchmark.extra_info["path"] = fn.config()["mma_path"]
    if impl.startswith("fastnet"):
        model = int8 if impl == "fastnet-int8" else tr

        def run():
            with fn.threads(threads):
                return model.translate(sentences, to="sv", batch_size=batch, max_length_ratio=100.0)
    else:
        compute = "int8" if impl.endswith("int8") else "float32"
        engine = ctranslate2.Translator(str(folder), device="cpu", compute_type=compute, intra_threads=threads,
                                        inter_threads=1)

        def run():
            return ctranslate2_translate(tr, folder, sentences, to="sv", batch_size=batch, translator=engine)
    out = benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=1)
    assert len(out) == len(sentences)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("threads", [1, 2])
def test_greedy_translation(benchmark, models, impl, threads):
    greedy_benchmark(benchmark, models, impl, threads, BATCH, "toy")


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("threads", [1, 2])
def test_greedy_translation_real(benchmark, real_models, impl, threads):
    greedy_benchmark(benchmark, real_models, impl, threads, REAL_BATCH, "held-out Tatoeba")
