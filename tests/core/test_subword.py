"""SubwordTokenizer (SentencePiece): exact round trips with byte fallback, seeds, its saved form."""
import numpy as np
import pytest

from fastnet.text import SubwordTokenizer, tokenizer_from_dict

ENGLISH = ["I like cats.", "The dog is big!", "Where is the station?", "Tom doesn't know why.",
           "We've been waiting for two hours.", "Can you help me, please?"] * 20
SWEDISH = ["Jag gillar katter.", "Hunden är stor!", "Var är stationen?", "Tom vet inte varför.",
           "Vi har väntat i två timmar.", "Kan du hjälpa mig, tack?"] * 20
SPANISH = ["Me gustan los gatos.", "¡El perro es grande!", "¿Dónde está la estación?", "Tom no sabe por qué.",
           "Hemos estado esperando dos horas.", "¿Me puedes ayudar, por favor?"] * 20

# characters none of the training texts hold: emoji, Greek, CJK, combining marks, odd spacing
UNSEEN = ["Trust me! 😀", "Ελληνικά γράμματα.", "漢字 and kana かな", "Cafe\u0301 ÅÄÖ ñ", "  two  spaces\tand tab ",
          "Perfect!", "He runs."]


@pytest.fixture(scope="module", params=["en", "sv", "es"])
def trained(request):
    texts = {"en": ENGLISH, "sv": SWEDISH, "es": SPANISH}[request.param]
    return SubwordTokenizer.fit(texts, vocab_size=320, seed=0), texts


def test_round_trip_is_exact_and_never_unknown(trained):
    tok, texts = trained
    for text in texts[:6] + UNSEEN:
        ids = tok.encode(text)
        assert tok.unk_id not in ids, text
        assert tok.decode(ids) == text
    batch = tok.encode_batch(texts[:6] + UNSEEN, add_bos=True, add_eos=True)
    assert (batch != tok.unk_id).all()
    assert tok.decode_batch(batch) == texts[:6] + UNSEEN


@pytest.mark.parametrize("n", [1, 63, 64, 200])
def test_short_and_long_lists_give_what_one_text_at_a_time_gives(trained, n):
    """Short lists go to SentencePiece a text at a time, long ones in one call: the same ids and texts."""
    tok, texts = trained
    texts = [texts[i % len(texts)] + UNSEEN[i % len(UNSEEN)] for i in range(n)]
    batch = tok.encode_batch(texts, add_eos=True)
    singles = [tok.encode(text, add_eos=True) for text in texts]
    assert [row[row != tok.pad_id].tolist() for row in batch] == [list(ids) for ids in singles]
    assert tok.decode_batch(batch) == texts
    assert [tok.decode(ids) for ids in singles] == texts


def test_special_ids_match_every_fastnet_tokenizer(trained):
    tok, _ = trained
    assert (tok.pad_id, tok.bos_id, tok.eos_id, tok.unk_id) == (0, 1, 2, 3)
    assert tok.vocab_size <= 320


def test_saved_form_loads_back_bit_for_bit(trained):
    tok, texts = trained
    again = tokenizer_from_dict(tok.to_dict())
    assert isinstance(again, SubwordTokenizer) and again.model_proto == tok.model_proto and again == tok
    assert again.encode_batch(texts[:6]).tolist() == tok.encode_batch(texts[:6]).tolist()


def test_same_seed_gives_the_same_model_byte_for_byte():
    a = SubwordTokenizer.fit(SWEDISH, vocab_size=320, seed=3)
    b = SubwordTokenizer.fit(SWEDISH, vocab_size=320, seed=3)
    assert a.model_proto == b.model_proto


def test_sampling_draws_other_segmentations_of_the_same_text():
    tok = SubwordTokenizer.fit(SWEDISH, vocab_size=320, seed=0)
    text = ["Vi har väntat i två timmar."] * 40
    sampled = tok.encode_batch(text, sample_alpha=0.1, add_eos=True)
    assert len({tuple(row[row != tok.pad_id]) for row in sampled}) > 1
    assert set(tok.decode_batch(sampled)) == {text[0]}
    plain = tok.encode_batch(text)
    assert len({tuple(row) for row in plain}) == 1


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="vocab_size must be an integer >= 268"):
        SubwordTokenizer.fit(SWEDISH, vocab_size=100)
    with pytest.raises(ValueError, match="no non-empty text"):
        SubwordTokenizer.fit(["", "  "])
    with pytest.raises(ValueError, match="not a valid SentencePiece model"):
        SubwordTokenizer(b"not a model")
    with pytest.raises(ValueError, match="no valid base64"):
        tokenizer_from_dict({"type": "subword", "model": "%%%"})
    tok = SubwordTokenizer.fit(SWEDISH, vocab_size=320)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.decode([5, tok.vocab_size + 1])
    assert np.array_equal(tok.encode_batch([]), np.zeros((0, 0), dtype=np.int64))
