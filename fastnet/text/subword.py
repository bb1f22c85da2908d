"""SubwordTokenizer: a SentencePiece model (unigram or BPE) trained on the training text.

Design: SentencePiece does the splitting and joining (its C++ is fast and it is
what Marian and OPUS-MT use); this class only adapts it to fastnet's tokenizer
interface. Choices that make it safe for translation:

* ids 0..3 are pad, bos, eos, unk -- the same ids as every other fastnet
  tokenizer, so the models' pad_id and the decoding code do not change;
* byte fallback: a character the model never saw becomes its UTF-8 bytes
  (pieces <0x00>..<0xFF>), so no input is ever unknown;
* the "identity" normalisation and no whitespace clean-up: case, punctuation
  and spacing are kept, so ``decode(encode(text)) == text`` exactly;
* one training thread and a fixed input order, so a seed (which orders the
  sentences) gives the same model byte for byte;
* the trained model travels as its serialized bytes (base64 in ``to_dict``),
  so a model file carries its tokenizer and nothing else is needed to load it.

``encode_batch(..., sample_alpha=0.1)`` draws a random segmentation
(SentencePiece's subword regularisation) -- a regulariser during training.
"""
import base64
import io

import numpy as np

from fastnet.text.tokenizers import SPECIAL_TOKENS, _check_texts, _checked_max_len, _Tokenizer

__all__ = ["SubwordTokenizer"]

# SentencePiece's list calls start a thread pool every time: 60-100 us, while one
# sentence takes 2-4 us. A translation batch or one request's texts go one at a
# time; long lists (training text) go in one call, on this thread.
_ONE_CALL_FROM = 64


def _each(sp_call, items, **options):
    """sp_call (SentencePiece's encode or decode) on every item of a list, in the cheaper way."""
    if len(items) < _ONE_CALL_FROM:
        return [sp_call(item, **options) for item in items]
    return sp_call(items, num_threads=1, **options)

# Pieces per language. Measured on Tatoeba English-Swedish (README): 4000 pieces keep a Swedish
# sentence about 7.4 pieces long (2000: 8.3, 8000: 7.0) while the output layer stays small.
DEFAULT_VOCAB_SIZE = 4000


def _sentencepiece():
    try:
        import sentencepiece
    except ImportError:  # pragma: no cover - a default dependency; only a broken install lacks it
        raise ImportError("the subword tokenizer needs sentencepiece: pip install sentencepiece") from None
    return sentencepiece


class SubwordTokenizer(_Tokenizer):
    """Subword pieces from a trained SentencePiece model (see the module docstring)."""

    def __init__(self, model_proto):
        if not isinstance(model_proto, (bytes, bytearray)) or not model_proto:
            raise ValueError("SubwordTokenizer needs the serialized SentencePiece model (non-empty bytes)")
        spm = _sentencepiece()
        self.model_proto = bytes(model_proto)
        self._sp = spm.SentencePieceProcessor()
        try:
            self._sp.LoadFromSerializedProto(self.model_proto)
        except (RuntimeError, OSError) as exc:
            raise ValueError(f"not a valid SentencePiece model: {exc}") from None
        expected = {self._sp.pad_id(): "pad", self._sp.bos_id(): "bos", self._sp.eos_id(): "eos",
                    self._sp.unk_id(): "unk"}
        if [expected.get(i) for i in range(4)] != ["pad", "bos", "eos", "unk"]:
            raise ValueError("the SentencePiece model must have pad, bos, eos, unk at ids 0, 1, 2, 3 "
                             "(train it with SubwordTokenizer.fit)")

    @classmethod
    def fit(cls, texts, vocab_size=DEFAULT_VOCAB_SIZE, model_type="unigram", seed=0, max_sentences=300_000):
        """Train on ``texts``. vocab_size counts every piece (specials and the 256 bytes included); a
        text too small for it gets a smaller vocabulary. ``seed`` orders the sentences SentencePiece
        reads (it reads at most ``max_sentences`` of them)."""
        texts = [t for t in _check_texts(texts) if t.strip()]
        if not texts:
            raise ValueError("SubwordTokenizer.fit: no non-empty text to learn from")
        if model_type not in ("unigram", "bpe"):
            raise ValueError(f"model_type must be 'unigram' or 'bpe', got {model_type!r}")
        minimum = 256 + len(SPECIAL_TOKENS) + 8
        if int(vocab_size) != vocab_size or vocab_size < minimum:
            raise ValueError(f"vocab_size must be an integer >= {minimum} (the 256 byte pieces, the special "
                             f"tokens and a few more), got {vocab_size!r}")
        order = np.random.default_rng(seed).permutation(len(texts))[:max_sentences]
        model = io.BytesIO()
        spm = _sentencepiece()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter([texts[i] for i in order]), model_writer=model,
            minloglevel=2,  # SentencePiece logs every training step otherwise
            vocab_size=int(vocab_size), model_type=model_type, hard_vocab_limit=False, byte_fallback=True,
            character_coverage=1.0, normalization_rule_name="identity", remove_extra_whitespaces=False,
            pad_id=0, bos_id=1, eos_id=2, unk_id=3, num_threads=1, shuffle_input_sentence=False,
            input_sentence_size=0, max_sentence_length=1 << 14)
        return cls(model.getvalue())

    @property
    def vocab_size(self):
        return int(self._sp.get_piece_size())

    def _encode_many(self, texts, sample_alpha=None):
        if sample_alpha:
            rows = _each(self._sp.encode, texts, out_type=int, enable_sampling=True, alpha=float(sample_alpha),
                         nbest_size=-1)
        else:
            rows = _each(self._sp.encode, texts, out_type=int)
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        flat = np.fromiter((i for r in rows for i in r), dtype=np.int64, count=int(lengths.sum()))
        return flat, lengths

    def encode_batch(self, texts, add_bos=False, add_eos=False, max_len=None, sample_alpha=None):
        """As every tokenizer's encode_batch; sample_alpha > 0 draws a random segmentation."""
        texts = _check_texts(texts)
        max_len = _checked_max_len(max_len, add_bos, add_eos)
        flat, lengths = self._encode_many(texts, sample_alpha)
        return self._pad_rows(flat, lengths, add_bos, add_eos, max_len)

    def pieces(self, text):
        """The pieces of one text as strings (for showing how a sentence is split)."""
        return self._sp.encode(text, out_type=str)

    def _render_rows(self, arr, skip_special, widths=None):
        if widths is not None:
            arr = [row[:w] for row, w in zip(arr, widths)]
        if not skip_special:
            return [" ".join(self._sp.id_to_piece(int(i)) for i in row) for row in arr]
        rows = []
        for row in arr:
            ends = np.flatnonzero(row == self.eos_id)
            row = row[: ends[0]] if ends.size else row
            rows.append(row[row >= self.unk_id].tolist())  # pad and bos are not text
        return _each(self._sp.decode, rows)

    def _id_texts(self):
        return [self._sp.id_to_piece(i) for i in range(self.vocab_size)]

    def to_dict(self):
        return {"type": "subword", "model": base64.b64encode(self.model_proto).decode("ascii")}

    @classmethod
    def from_dict(cls, d):
        try:
            proto = base64.b64decode(d["model"], validate=True)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"subword tokenizer description holds no valid base64 model: {exc}") from None
        return cls(proto)

    def __eq__(self, other):
        return type(self) is type(other) and self.model_proto == other.model_proto

    def __hash__(self):
        return hash(self.model_proto)
