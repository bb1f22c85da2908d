import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastnet.text import (
    SPECIAL_TOKENS,
    AsciiTokenizer,
    CharTokenizer,
    WordTokenizer,
    tokenizer_from_dict,
)

ascii_text = st.text(alphabet=st.characters(max_codepoint=127), max_size=40)
any_text = st.text(max_size=40)
# Words, punctuation of every spacing rule, Swedish and Spanish letters.
word_text = st.lists(
    st.sampled_from(["cats", "are", "cute", "Katter", "är", "söta", "¿Qué", "pasa", "don't",
                     "(", ")", ".", ",", "!", "?", "'", "-", "¡", "ñ", "42", "well-known", "…",
                     "%", "\"", ";", "x_y"]),
    max_size=12,
).map(" ".join)


# ------------------------------------------------------------------ ASCII
def test_ascii_codes_are_the_ascii_table():
    tok = AsciiTokenizer()
    assert tok.encode("CATS ARE CUTE") == [67, 65, 84, 83, 32, 65, 82, 69, 32, 67, 85, 84, 69]
    assert tok.vocab_size == 132
    assert (tok.pad_id, tok.bos_id, tok.eos_id, tok.unk_id) == (128, 129, 130, 131)


@given(ascii_text)
def test_ascii_round_trip(text):
    tok = AsciiTokenizer()
    ids = tok.encode(text, add_bos=True, add_eos=True)
    assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id
    assert ids[1:-1] == [ord(c) for c in text]
    assert tok.decode(ids) == text


def test_ascii_strict_names_character_position_and_text():
    with pytest.raises(ValueError, match=r"'ä'.*position 7.*katter är söta"):
        AsciiTokenizer().encode("katter är söta")
    with pytest.raises(ValueError, match=r"'¿'.*position 0 in texts\[1\] '¿no\?'"):
        AsciiTokenizer().encode_batch(["ok", "¿no?"])


def test_ascii_replace_maps_to_unknown():
    tok = AsciiTokenizer(errors="replace")
    ids = tok.encode("är")
    assert ids == [tok.unk_id, ord("r")]
    assert tok.decode(ids) == "\ufffdr"
    assert tok.decode(ids, skip_special=False) == "<unk>r"


def test_ascii_bad_errors_policy():
    with pytest.raises(ValueError, match="errors"):
        AsciiTokenizer(errors="ignore")


# ------------------------------------------------------------------ characters
def test_char_alphabet_learned_from_data():
    tok = CharTokenizer.fit(["åäö", "ñé¿", "ää"])
    assert tok.chars[0] == "ä"  # the most frequent character comes first
    assert set(tok.chars) == set("åäöñé¿")
    assert tok.decode(tok.encode("¿ñå?")) == "¿ñå\ufffd"
    assert tok.encode("?") == [tok.unk_id]


@given(st.lists(any_text, min_size=1, max_size=5))
def test_char_round_trip(texts):
    tok = CharTokenizer.fit(texts)
    for text in texts:
        assert tok.decode(tok.encode(text, add_bos=True, add_eos=True)) == text
    batch = tok.encode_batch(texts, add_eos=True)
    assert tok.decode_batch(batch) == texts


def test_char_min_freq_and_order():
    tok = CharTokenizer.fit(["aaabbc", "cd"], min_freq=2)
    assert tok.chars == ["a", "b", "c"]  # a:3, then b and c tie at 2: alphabetical
    assert tok.encode("d") == [tok.unk_id]
    with pytest.raises(ValueError, match="min_freq"):
        CharTokenizer.fit(["a"], min_freq=0)


def test_char_alphabet_validation():
    with pytest.raises(ValueError, match="more than once"):
        CharTokenizer(["a", "a"])
    with pytest.raises(ValueError, match="single character"):
        CharTokenizer(["ab"])


# ------------------------------------------------------------------ words
def test_word_split_and_join_rules():
    tok = WordTokenizer.fit(["Hello, world! Don't (panic). ¿Qué pasa? A well-known cat."])
    assert tok.split("Don't panic!") == ["don", "'", "t", "panic", "!"]
    assert tok.decode(tok.encode("Hello ,world !")) == "hello, world!"
    assert tok.normalize("¿ Qué pasa ?") == "¿qué pasa?"
    assert tok.normalize("a well - known cat") == "a well-known cat"
    assert tok.normalize("( panic )") == "(panic)"


@given(st.lists(word_text, min_size=1, max_size=5), st.booleans())
def test_word_round_trip_of_normalised_text(texts, lowercase):
    tok = WordTokenizer.fit(texts, lowercase=lowercase)
    for text in texts:
        ids = tok.encode(text)
        decoded = tok.decode(ids)
        assert decoded == tok.normalize(text)
        assert tok.encode(decoded) == ids


@given(st.lists(any_text, min_size=1, max_size=4))
def test_word_ids_survive_decoding_any_text(texts):
    tok = WordTokenizer.fit(texts)
    for text in texts:
        ids = tok.encode(text)
        assert tok.unk_id not in ids
        assert tok.encode(tok.decode(ids)) == ids


def test_word_vocabulary_frequency_then_alphabet_and_limits():
    texts = ["the cat sees the dog", "the dog sees a cat", "zebra"]
    tok = WordTokenizer.fit(texts)
    assert tok.vocab == ["the", "cat", "dog", "sees", "a", "zebra"]
    assert WordTokenizer.fit(texts, min_freq=2).vocab == ["the", "cat", "dog", "sees"]
    assert WordTokenizer.fit(texts, max_size=2).vocab == ["the", "cat"]
    small = WordTokenizer.fit(texts, max_size=2)
    assert small.encode("the zebra") == [small.vocab.index("the") + 4, small.unk_id]
    assert small.decode(small.encode("the zebra")) == "the <unk>"


def test_word_lowercase_option():
    assert WordTokenizer.fit(["Cat cat"]).vocab == ["cat"]
    assert WordTokenizer.fit(["Cat cat"], lowercase=False).vocab == ["Cat", "cat"]


# ------------------------------------------------------------------ all tokenizers
def _all_tokenizers():
    texts = ["cats are cute", "katter är söta", "los gatos son lindos", "¿qué?"]
    return [AsciiTokenizer(), AsciiTokenizer("replace"), CharTokenizer.fit(texts),
            WordTokenizer.fit(texts)]


@pytest.mark.parametrize("tok", _all_tokenizers(), ids=lambda t: repr(t))
def test_special_ids_are_distinct_and_inside_vocab(tok):
    ids = [tok.pad_id, tok.bos_id, tok.eos_id, tok.unk_id]
    assert len(set(ids)) == 4 and all(0 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids, skip_special=False).replace(" ", "") == "".join(SPECIAL_TOKENS)


@pytest.mark.parametrize("tok", _all_tokenizers(), ids=lambda t: repr(t))
def test_decode_stops_at_eos_and_skips_pad_bos(tok):
    cats = tok.encode("cats")
    ids = [tok.bos_id] + cats + [tok.eos_id] + tok.encode("are") + [tok.pad_id]
    assert tok.decode(ids) == "cats"
    assert tok.decode([tok.pad_id] * 3) == ""
    assert tok.decode([]) == ""
    full = tok.decode(ids, skip_special=False)
    assert full.startswith("<bos>") and full.endswith("<pad>")


@pytest.mark.parametrize("tok", _all_tokenizers(), ids=lambda t: repr(t))
def test_encode_batch_padding_and_truncation(tok):
    texts = ["cats are cute", "cats", ""]
    plain = [tok.encode(t) for t in texts]
    batch = tok.encode_batch(texts, add_bos=True, add_eos=True)
    assert batch.dtype == np.int64
    assert batch.shape == (3, max(map(len, plain)) + 2)
    for row, ids in zip(batch, plain):
        assert row[0] == tok.bos_id
        assert list(row[1:len(ids) + 1]) == ids
        assert row[len(ids) + 1] == tok.eos_id
        assert np.all(row[len(ids) + 2:] == tok.pad_id)
    cut = tok.encode_batch(texts, add_bos=True, add_eos=True, max_len=4)
    assert cut.shape == (3, 4)
    assert list(cut[0]) == [tok.bos_id] + plain[0][:2] + [tok.eos_id]
    assert list(cut[2]) == [tok.bos_id, tok.eos_id, tok.pad_id, tok.pad_id]
    assert tok.decode_batch(batch) == [tok.decode(ids) for ids in plain]
    assert tok.encode_batch([]).shape == (0, 0)


@pytest.mark.parametrize("tok", _all_tokenizers(), ids=lambda t: repr(t))
def test_to_dict_from_dict_is_equal_and_json(tok):
    d = json.loads(json.dumps(tok.to_dict()))
    again = tokenizer_from_dict(d)
    assert again == tok and type(again) is type(tok)
    text = "cats are cute ¿qué?" if not isinstance(tok, AsciiTokenizer) or tok.errors == "replace" \
        else "cats are cute"
    assert again.encode(text) == tok.encode(text)
    assert again.vocab_size == tok.vocab_size


def test_bad_inputs_are_named():
    tok = CharTokenizer.fit(["abc"])
    with pytest.raises(ValueError, match="max_len"):
        tok.encode_batch(["abc"], add_bos=True, add_eos=True, max_len=1)
    with pytest.raises(ValueError, match="token id 99 at position 1"):
        tok.decode([4, 99])
    with pytest.raises(ValueError, match="token id -1"):
        tok.decode([-1])
    with pytest.raises(TypeError, match="integers"):
        tok.decode(np.array([1.5]))
    with pytest.raises(TypeError, match="str"):
        tok.encode(b"abc")
    with pytest.raises(TypeError, match="single str"):
        tok.encode_batch("abc")
    with pytest.raises(ValueError, match="2-D"):
        tok.decode_batch(np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match="unknown tokenizer type"):
        tokenizer_from_dict({"type": "bpe"})
    with pytest.raises(ValueError, match="lacks the field 'vocab'"):
        tokenizer_from_dict({"type": "word"})


def test_large_batch_matches_one_by_one():
    texts = [f"the cat number {i} is cute, and katten är söt!" for i in range(2000)]
    for tok in (CharTokenizer.fit(texts), WordTokenizer.fit(texts)):
        batch = tok.encode_batch(texts, add_eos=True)
        for i in (0, 7, 1999):
            ids = tok.encode(texts[i], add_eos=True)
            assert list(batch[i, :len(ids)]) == ids
        assert tok.decode_batch(batch)[1234] == tok.decode(tok.encode(texts[1234]))


@pytest.mark.parametrize("tok", _all_tokenizers(), ids=lambda t: repr(t))
def test_decode_batch_accepts_lists_and_ragged_rows(tok):
    a, b = tok.encode("cats are cute"), tok.encode("los gatos")
    ragged = [a + [tok.eos_id], [tok.bos_id] + b, []]
    expected = ["cats are cute", tok.decode(b), ""]
    assert tok.decode_batch(ragged) == expected
    padded = tok.encode_batch(["cats are cute", "los gatos", ""], add_bos=True, add_eos=True)
    assert tok.decode_batch(padded.tolist()) == expected
    assert tok.decode_batch([]) == []
    raw = tok.decode_batch(padded, skip_special=False)
    assert raw[2].replace(" ", "").startswith("<bos><eos><pad>")
    assert raw[0].replace(" ", "") == "<bos>" + expected[0].replace(" ", "") + "<eos>"
    with pytest.raises(ValueError, match=r"token id -3 at position \(1, 0\)"):
        tok.decode_batch(np.array([[tok.pad_id], [-3]]))
    # Ragged rows are decoded in one pass: each row stops at its own end, also without skip_special.
    assert tok.decode_batch(ragged, skip_special=False) == [tok.decode(row, skip_special=False) for row in ragged]
    long_rows = [b + [tok.eos_id] + a, a, [tok.eos_id] + a + a]
    assert tok.decode_batch(long_rows) == [tok.decode(row) for row in long_rows]
    with pytest.raises(ValueError, match=rf"token id {tok.vocab_size} at position \(1, 1\)"):
        tok.decode_batch([a, [a[0], tok.vocab_size], []])
    with pytest.raises(TypeError, match="integers"):
        tok.decode_batch([a, [1.5]])


@given(st.lists(word_text, min_size=1, max_size=6))
def test_word_decode_batch_matches_join(texts):
    tok = WordTokenizer.fit(texts)
    batch = tok.encode_batch(texts, add_bos=True, add_eos=True)
    assert tok.decode_batch(batch) == [tok.join(tok.split(t)) for t in texts]
