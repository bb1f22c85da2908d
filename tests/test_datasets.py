from pathlib import Path

import pytest

from fastnet.datasets import load_pairs, toy_translations
from fastnet.datasets._grammar import ADJECTIVES, NOUNS, Clause, NounPhrase, render
from fastnet.datasets.translations import is_test_combo

TATOEBA = Path(__file__).resolve().parents[2] / "shared" / "data" / "tatoeba-eng-swe.tsv"


# ------------------------------------------------------------------ toy_translations
def test_toy_translations_reproducible_by_seed():
    a, b = toy_translations(300, seed=3), toy_translations(300, seed=3)
    assert (a.en, a.sv, a.es) == (b.en, b.sv, b.es)
    assert toy_translations(300, seed=4).en != a.en
    assert len(a) == len(a.sv) == len(a.es) == 300


@pytest.mark.parametrize("split", [None, "train"])
def test_story_examples_present(split):
    data = toy_translations(50, seed=11, split=split)
    triples = set(zip(data.en, data.sv, data.es))
    assert ("cats are cute", "katter är söta", "los gatos son lindos") in triples
    assert ("the dog is big", "hunden är stor", "el perro es grande") in triples
    assert ("the house is big", "huset är stort", "la casa es grande") in triples


def test_pairs_are_aligned():
    data = toy_translations(20, seed=0)
    assert data.pairs("sv") == list(zip(data.en, data.sv))
    assert data.pairs("es")[0] == ("cats are cute", "los gatos son lindos")
    with pytest.raises(ValueError, match="fr"):
        data.pairs("fr")


def test_sentences_are_lowercase_without_final_punctuation():
    data = toy_translations(500, seed=1)
    for sentence in data.en + data.sv + data.es:
        assert sentence == sentence.lower() and sentence == sentence.strip()
        assert sentence[-1].isalpha()


def test_enough_variety():
    data = toy_translations(5000, seed=2)
    assert len(set(data.en)) > 2000
    # Every English sentence has one translation per language.
    seen = {}
    for en, sv, es in zip(data.en, data.sv, data.es):
        assert seen.setdefault(en, (sv, es)) == (sv, es)


@pytest.mark.parametrize("noun,the_noun,adj_form", [
    ("house", "huset", "rött"), ("apple", "äpplet", "rött"), ("window", "fönstret", "rött"),
    ("dog", "hunden", "röd"), ("flower", "blomman", "röd"),
])
def test_swedish_agreement_examples(noun, the_noun, adj_form):
    en, sv, _ = render(Clause("is", NounPhrase(noun, "the"), predicate="red"))
    assert (en, sv) == (f"the {noun} is red", f"{the_noun} är {adj_form}")


def test_known_translations_of_every_construction():
    cases = [
        (Clause("verb", NounPhrase("cat", "the"), verb="see", obj=NounPhrase("dog", "the")),
         ("the cat sees the dog", "katten ser hunden", "el gato ve al perro")),
        (Clause("verb", "i", verb="have", obj=NounPhrase("house", "a", adjective="big")),
         ("i have a big house", "jag har ett stort hus", "tengo una casa grande")),
        (Clause("is", NounPhrase("house", "the", plural=True, adjective="small"), predicate="cute"),
         ("the small houses are cute", "de små husen är söta", "las casas pequeñas son lindas")),
        (Clause("is", NounPhrase("dog", "the", adjective="small"), predicate="black"),
         ("the small dog is black", "den lilla hunden är svart", "el perro pequeño es negro")),
        (Clause("there", obj=NounPhrase("cat", "count", plural=True, count=3, adjective="white")),
         ("there are three white cats", "det finns tre vita katter", "hay tres gatos blancos")),
        (Clause("verb", "she", verb="find", obj=NounPhrase("girl", "a")),
         ("she finds a girl", "hon hittar en flicka", "ella encuentra a una niña")),
        (Clause("verb", NounPhrase("bird", "bare", plural=True), verb="sleep"),
         ("birds sleep", "fåglar sover", "los pájaros duermen")),
        (Clause("verb", "we", verb="eat", obj=NounPhrase("apple", "a", adjective="old")),
         ("we eat an old apple", "vi äter ett gammalt äpple", "comemos una manzana vieja")),
        (Clause("is", NounPhrase("apple", "the", plural=True), predicate="green"),
         ("the apples are green", "äpplena är gröna", "las manzanas son verdes")),
    ]
    for clause, expected in cases:
        assert render(clause) == expected


def test_lexicon_agreement_rules():
    for noun in NOUNS.values():
        indefinite, definite, _, definite_plural = noun.sv
        if noun.sv_gender == "ett":
            assert definite.endswith("et"), noun
            assert definite_plural.endswith("en") or definite_plural.endswith("na"), noun
        else:
            assert noun.sv_gender == "en" and definite.endswith("n"), noun
            assert definite_plural.endswith("na") or definite_plural.endswith("en"), noun
        assert noun.es_gender in ("m", "f") and noun.es[1].endswith("s"), noun
    for adj in ADJECTIVES.values():
        assert adj.sv[1].endswith("t"), adj  # neuter: stort, sött, litet, blått
        assert all(form.endswith("s") for form in adj.es[2:]), adj


def test_agreement_in_generated_sentences():
    articles = {("m", False): "el", ("f", False): "la", ("m", True): "los", ("f", True): "las"}
    data = toy_translations(3000, seed=5)
    checked = 0
    for en, sv, es in zip(data.en, data.sv, data.es):
        words = en.split()
        # "the NOUN is|are ADJ": the simplest pattern, checked word by word.
        if len(words) != 4 or words[0] != "the" or words[2] not in ("is", "are"):
            continue
        plural = words[2] == "are"
        noun = next(n for n in NOUNS.values() if words[1] in (n.en, n.en_plural))
        adj = ADJECTIVES[words[3]]
        sv_noun, sv_adj = sv.split(" är ")
        if plural:
            assert (sv_noun, sv_adj) == (noun.sv[3], adj.sv[2])
        else:
            assert sv_noun == noun.sv[1]
            assert sv_adj == (adj.sv[1] if noun.sv_gender == "ett" else adj.sv[0])
            if noun.sv_gender == "ett":
                assert sv_noun.endswith("et")
        es_words = es.split()
        assert es_words[0] == articles[noun.es_gender, plural]
        assert es_words[2] == ("son" if plural else "es")
        assert es_words[3] == adj.es[(2 if plural else 0) + (noun.es_gender == "f")]
        checked += 1
    assert checked > 100


def test_split_holds_unseen_combinations():
    train = toy_translations(3000, seed=0, split="train")
    test = toy_translations(600, seed=0, split="test")
    train_combos = set().union(*train.combos)
    test_combos = set().union(*test.combos)
    held_out = {c for c in test_combos if is_test_combo(*c)}
    assert held_out and not held_out & train_combos
    assert all(any(is_test_combo(*c) for c in combos) for combos in test.combos)
    assert not set(train.en) & set(test.en)
    # The combination really is in the words of the sentence.
    for en, combos in zip(test.en, test.combos):
        for noun, adj in combos:
            words = en.split()
            assert adj in words and (NOUNS[noun].en in words or NOUNS[noun].en_plural in words)
    # Held-out combinations are a minority, and every word is still seen in training.
    all_combos = [(n, a) for n in NOUNS for a in ADJECTIVES]
    assert 0.1 < sum(is_test_combo(*c) for c in all_combos) / len(all_combos) < 0.35
    train_words = set(" ".join(train.en).split())
    assert set(" ".join(test.en).split()) <= train_words


def test_split_is_deterministic_and_validated():
    assert toy_translations(100, seed=9, split="test").en == \
        toy_translations(100, seed=9, split="test").en
    with pytest.raises(ValueError, match="split"):
        toy_translations(10, split="valid")
    with pytest.raises(ValueError, match="n must be"):
        toy_translations(-1)
    assert len(toy_translations(0)) == 0


# ------------------------------------------------------------------ load_pairs
def _write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return path


def test_load_pairs_reads_tatoeba_layout(tmp_path):
    f = _write(tmp_path / "pairs.tsv",
               "Go.\tGå.\tCC-BY 2.0 #1\n"
               "\n"
               "Cats are cute.\tKatter är söta.\tCC-BY 2.0 #2\r\n"
               "Go.\tGå.\tCC-BY 2.0 #3\n"
               "Go.\tGå iväg.\n"
               "   \n"
               "I have a very big house.\tJag har ett mycket stort hus.\n")
    src, tgt = load_pairs(f)
    assert src == ["Go.", "Cats are cute.", "Go.", "I have a very big house."]
    assert tgt == ["Gå.", "Katter är söta.", "Gå iväg.", "Jag har ett mycket stort hus."]
    assert len(load_pairs(f, dedupe=False)[0]) == 5
    assert load_pairs(f, max_len=3)[0] == ["Go.", "Cats are cute.", "Go."]
    assert load_pairs(f, max_len=5, unit="chars")[1] == ["Gå."]
    assert load_pairs(f, columns=(1, 0))[0][1] == "Katter är söta."
    assert load_pairs(str(f)) == load_pairs(f)


def test_load_pairs_strips_bom(tmp_path):
    f = _write(tmp_path / "bom.tsv", "\ufeffHi.\tHej.\n")
    assert load_pairs(f) == (["Hi."], ["Hej."])


@pytest.mark.parametrize("line,message", [
    ("only one column", "line 2: expected at least 2 tab-separated columns, found 1"),
    ("\tHej.", "line 2: the source side is empty"),
    ("Hi.\t  \tattribution", "line 2: the target side is empty"),
])
def test_load_pairs_malformed_line(tmp_path, line, message):
    f = _write(tmp_path / "bad.tsv", f"Go.\tGå.\n{line}\nRun.\tSpring.\n")
    with pytest.raises(ValueError, match=message) as info:
        load_pairs(f)
    assert "bad.tsv" in str(info.value)


def test_load_pairs_bad_utf8(tmp_path):
    f = _write(tmp_path / "latin1.tsv", "Go.\tGå.\nCats.\tKatter är söta.\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1\.tsv, line 1: not valid UTF-8"):
        load_pairs(f)


def test_load_pairs_missing_file_and_bad_arguments(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.tsv"):
        load_pairs(tmp_path / "nope.tsv")
    f = _write(tmp_path / "ok.tsv", "Go.\tGå.\n")
    with pytest.raises(ValueError, match="columns"):
        load_pairs(f, columns=(0, 0))
    with pytest.raises(ValueError, match="unit"):
        load_pairs(f, unit="bytes")
    with pytest.raises(ValueError, match="max_len"):
        load_pairs(f, max_len=0)
    with pytest.raises(ValueError, match="line 1: expected at least 3"):
        load_pairs(f, columns=(0, 2))


@pytest.mark.skipif(not TATOEBA.exists(), reason="Tatoeba pair file not present")
def test_load_pairs_on_tatoeba():
    src, tgt = load_pairs(TATOEBA)
    assert len(src) == len(tgt) > 20_000
    assert ("Go.", "Gå.") == (src[0], tgt[0])
    assert len(set(zip(src, tgt))) == len(src)
    short_src, short_tgt = load_pairs(TATOEBA, max_len=5)
    assert 0 < len(short_src) < len(src)
    assert all(len(s.split()) <= 5 and len(t.split()) <= 5 for s, t in zip(short_src, short_tgt))
