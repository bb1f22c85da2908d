from pathlib import Path

import numpy as np
import pytest

from fastnet.datasets import (
    describe,
    draw_pictures,
    load_pairs,
    parse_description,
    toy_pictures,
    toy_translations,
)
from fastnet.datasets._grammar import ADJECTIVES, NOUNS, Clause, NounPhrase, render
from fastnet.datasets.pictures import (
    BACKGROUND,
    COLOURS,
    EYES,
    POSITIONS,
    SHAPES,
    SIZES,
    TEST_COMBOS,
    _layout,
)
from fastnet.datasets.translations import is_test_combo

TATOEBA = Path(__file__).resolve().parents[3] / "shared" / "data" / "tatoeba-eng-swe.tsv"


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


# ------------------------------------------------------------------ toy_pictures
def _layout_of(attributes, size):
    cx, cy, r = _layout([attributes], size)
    k = attributes["count"]
    return cx[0, :k], cy[0, :k], r[0, :k]


def _pixel(image, x, y):
    return tuple(image[int(y), int(x)])


def test_toy_pictures_deterministic_and_shaped():
    a, b = toy_pictures(50, seed=7), toy_pictures(50, seed=7)
    assert a.texts == b.texts and a.attributes == b.attributes
    assert np.array_equal(a.images, b.images)
    assert a.images.shape == (50, 32, 32, 3) and a.images.dtype == np.uint8
    assert toy_pictures(50, seed=8).texts != a.texts
    assert toy_pictures(3, seed=0, size=20).images.shape == (3, 20, 20, 3)
    f = a.float_images()
    assert f.dtype == np.float32 and f.min() >= 0 and f.max() <= 1
    assert len(toy_pictures(0)) == 0


def test_every_description_parses_back():
    data = toy_pictures(600, seed=1)
    for text, attributes in zip(data.texts, data.attributes):
        assert parse_description(text) == attributes
    said = " ".join(data.texts)
    for word in list(COLOURS) + ["circle", "squares", "triangle", "cats", "cute", "two",
                                 "three", "an orange", "on the left", "at the top",
                                 "in the center"]:
        assert word in said


def test_parse_examples_and_errors():
    assert parse_description("a big red circle on the left") == {
        "count": 1, "size": "big", "colour": "red", "shape": "circle", "position": "left"}
    assert parse_description("two small blue squares") == {
        "count": 2, "size": "small", "colour": "blue", "shape": "square", "position": "center"}
    assert parse_description("A cute orange cat.")["size"] == "medium"
    assert describe(parse_description("a cute orange cat")) == "a cute orange cat in the center"
    for bad, message in [("", "empty"), ("four red circles", "must start"),
                         ("a red circles", "singular"), ("two red circle", "plural"),
                         ("a teal circle", "unknown colour 'teal'"),
                         ("a cute red square", "only cats"), ("a red", "expected")]:
        with pytest.raises(ValueError, match=message):
            parse_description(bad)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("position", POSITIONS)
def test_single_shapes_are_really_drawn(shape, position):
    size = 64
    a = {"count": 1, "size": "big", "colour": "purple", "shape": shape, "position": position}
    image = draw_pictures([a], size)[0]
    (x,), (y,), (r,) = _layout_of(a, size)
    colour = COLOURS["purple"]

    def coloured(u, v):  # the pixel at (x + u r, y + v r)
        return _pixel(image, x + u * r, y + v * r) == colour

    assert coloured(0, 0.4)                                  # every shape covers its middle
    assert coloured(0, -0.7) == (shape != "cat")             # a cat's head is between its ears
    assert coloured(0.8, -0.8) == (shape == "square")        # only a square has corners
    assert coloured(0.5, -0.7) == (shape != "triangle")      # a triangle is narrow at the top
    assert coloured(0.9, 0.95) == (shape == "triangle")      # and wide at the bottom
    if shape == "cat":
        assert _pixel(image, x + 0.3 * r, y + 0.15 * r) == EYES
        assert _pixel(image, x - 0.3 * r, y + 0.15 * r) == EYES
    far_x = size - 1 - x if position in ("left", "right") else x
    far_y = size - 1 - y if position in ("top", "bottom") else 1
    assert _pixel(image, far_x, far_y) == BACKGROUND
    area = np.all(image == colour, axis=-1).sum() / r ** 2
    expected = {"circle": np.pi, "square": 1.7 ** 2, "triangle": 2.0, "cat": 2.2}[shape]
    assert abs(area - expected) < 0.15 * expected


@pytest.mark.parametrize("count", [1, 2, 3])
@pytest.mark.parametrize("position", ["center", "left"])
def test_counts_and_sizes(count, position):
    size = 32
    runs = []
    areas = {}
    for s in SIZES:
        a = {"count": count, "size": s, "colour": "red", "shape": "circle", "position": position}
        image = draw_pictures([a], size)[0]
        red = np.all(image == COLOURS["red"], axis=-1)
        areas[s] = red.sum()
        cx, cy, _ = _layout_of(a, size)
        line = red[:, int(cx[0])] if position == "left" else red[int(cy[0]), :]
        runs.append(np.count_nonzero(np.diff(line.astype(int)) == 1) + int(line[0]))
    assert runs == [count] * 3
    assert areas["small"] < areas["medium"] < areas["big"]


def test_colours_are_drawn_exactly():
    attributes = [{"count": 1, "size": "big", "colour": c, "shape": "square", "position": "center"}
                  for c in COLOURS]
    images = draw_pictures(attributes, 16)
    for image, colour in zip(images, COLOURS.values()):
        assert set(map(tuple, image.reshape(-1, 3))) == {colour, BACKGROUND}


def test_picture_split_disjoint():
    train = toy_pictures(800, seed=0, split="train")
    test = toy_pictures(200, seed=0, split="test")
    train_combos = {(a["colour"], a["shape"]) for a in train.attributes}
    test_combos = {(a["colour"], a["shape"]) for a in test.attributes}
    assert test_combos == set(TEST_COMBOS)
    assert not train_combos & test_combos
    assert {c for c, _ in train_combos} == set(COLOURS)
    assert {s for _, s in train_combos} == set(SHAPES)
    everything = toy_pictures(800, seed=0)
    assert {(a["colour"], a["shape"]) for a in everything.attributes} >= set(TEST_COMBOS)


def test_picture_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        toy_pictures(5, split="dev")
    with pytest.raises(ValueError, match="size"):
        toy_pictures(5, size=4)
    with pytest.raises(ValueError, match="colour='teal'"):
        draw_pictures([{"count": 1, "size": "big", "colour": "teal", "shape": "cat",
                        "position": "left"}])
    with pytest.raises(ValueError, match="keys"):
        draw_pictures([{"count": 1}])


def test_batch_drawing_equals_one_at_a_time():
    data = toy_pictures(40, seed=3, size=24)
    for i in (0, 5, 17, 39):
        assert np.array_equal(draw_pictures([data.attributes[i]], 24)[0], data.images[i])


@pytest.mark.parametrize("en,sv,es", [
    ("a big red circle on the left", "en stor röd cirkel till vänster",
     "un círculo rojo grande a la izquierda"),
    ("two small blue squares", "två små blå kvadrater", "dos cuadrados azules pequeños"),
    ("a cute orange cat", "en söt orange katt", "un gato naranja lindo"),
    ("three big brown cats at the bottom", "tre stora bruna katter längst ner",
     "tres gatos marrones grandes abajo"),
    ("a green triangle in the center", "en grön triangel i mitten",
     "un triángulo verde en el centro"),
])
def test_picture_descriptions_in_swedish_and_spanish(en, sv, es):
    a = parse_description(en)
    say_center = "center" in en
    assert describe(a, say_center, "en") == en
    assert describe(a, say_center, "sv") == sv
    assert describe(a, say_center, "es") == es


def test_picture_translations_aligned():
    data = toy_pictures(200, seed=4)
    assert len(data.sv) == len(data.es) == len(data.en) == 200 and data.en is data.texts
    for en, sv, es in zip(data.en, data.sv, data.es):
        assert ("center" in en) == ("i mitten" in sv) == ("en el centro" in es)
        plural = not en.startswith(("a ", "an "))
        assert sv.split()[0] in (("två", "tre") if plural else ("en",))
        assert es.split()[0] in (("dos", "tres") if plural else ("un",))
    with pytest.raises(ValueError, match="language"):
        describe(data.attributes[0], language="fr")


def test_translations_with_picture_sentences():
    plain = toy_translations(200, seed=6)
    assert toy_translations(200, seed=6, pictures=0.0).en == plain.en
    mixed = toy_translations(400, seed=6, pictures=0.3)
    picture_sentences = [(en, sv, es) for en, sv, es in zip(mixed.en, mixed.sv, mixed.es)
                         if en.split()[-1] in ("left", "right", "top", "bottom", "center")
                         or any(w.rstrip("s") in ("circle", "square", "triangle")
                                for w in en.split())]
    assert 60 < len(picture_sentences) < 200
    for en, sv, es in picture_sentences:
        a = parse_description(en)
        say_center = en.endswith("center")
        assert (sv, es) == (describe(a, say_center, "sv"), describe(a, say_center, "es"))
    train = toy_translations(1500, seed=6, split="train", pictures=0.3)
    test = toy_translations(500, seed=6, split="test", pictures=0.3)
    train_combos, test_combos = set().union(*train.combos), set().union(*test.combos)
    held_out = {c for c in test_combos if is_test_combo(*c)}
    assert {(s, c) for c, s in TEST_COMBOS} <= held_out
    assert not held_out & train_combos
    # No training picture description draws a held-out (colour, shape).
    n_pictures = 0
    for en in train.en:
        try:
            a = parse_description(en)
        except ValueError:
            continue
        n_pictures += 1
        assert (a["colour"], a["shape"]) not in TEST_COMBOS, en
    assert n_pictures > 200
    with pytest.raises(ValueError, match="pictures"):
        toy_translations(5, pictures=1.5)
