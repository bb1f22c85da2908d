"""Tokenizers: text becomes numbers, numbers become text again.

Three tokenizers share one interface (``_Tokenizer``):

* ``AsciiTokenizer`` -- the ASCII table. Character ``c`` gets code ``ord(c)``
  (so "C" is 67), and the four special tokens sit just past the table at
  128..131 so no ASCII character changes its number.
* ``CharTokenizer`` -- one token per character of an alphabet learned from
  data, so å ä ö ñ é ¿ work.
* ``WordTokenizer`` -- words and punctuation marks split by a regular
  expression, a vocabulary with a minimum frequency and an unknown token.

Every tokenizer has the special tokens pad, bos (begin of sentence), eos (end
of sentence) and unk (unknown), ``encode``/``decode`` for one text,
``encode_batch``/``decode_batch`` for many (a padded ``int64`` array), and
``to_dict``/``tokenizer_from_dict`` to save it next to a model as JSON.

Speed: batch encoding joins all texts and looks every character up in one
NumPy gather (character tokenizers) or one pass of dictionary lookups (word
tokenizer); the padded array is filled with one scatter. Batch decoding
gathers the text of every kept token, joins them all once and cuts the result
at the row ends. Nothing is built by repeated string concatenation.
"""
import re
from collections import Counter
from itertools import chain

import numpy as np

__all__ = [
    "AsciiTokenizer",
    "CharTokenizer",
    "WordTokenizer",
    "tokenizer_from_dict",
    "SPECIAL_TOKENS",
]

#: The special tokens in the order of their ids (offset by the tokenizer).
SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>", "<unk>")
_PAD, _BOS, _EOS, _UNK = range(4)

# Character tokenizers render an unknown character as U+FFFD, the same
# replacement character Python's own decoders use.
_REPLACEMENT_CHAR = "\ufffd"


def _codepoints(text):
    """The code points of ``text`` as a uint32 array, in linear time."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")


def _check_text(text, what="text"):
    if not isinstance(text, str):
        raise TypeError(f"{what} must be a str, got {type(text).__name__}")


def _check_texts(texts):
    if isinstance(texts, str):
        raise TypeError("expected a list of texts, got a single str")
    texts = list(texts)
    for i, text in enumerate(texts):
        _check_text(text, f"texts[{i}]")
    return texts


class _Tokenizer:
    """Shared machinery. Subclasses set ``_special_offset`` (where the special
    tokens start) and implement ``vocab_size``, ``_encode_many`` (texts -> flat
    ids + per-text lengths), ``_id_texts`` (the text of every id) and, when
    tokens are separated by spaces, ``_spaces_before``.
    """

    _special_offset = 0
    _unk_text = _REPLACEMENT_CHAR

    # ----------------------------------------------------------- properties
    @property
    def pad_id(self):
        return self._special_offset + _PAD

    @property
    def bos_id(self):
        return self._special_offset + _BOS

    @property
    def eos_id(self):
        return self._special_offset + _EOS

    @property
    def unk_id(self):
        return self._special_offset + _UNK

    @property
    def special_ids(self):
        return tuple(self._special_offset + i for i in range(len(SPECIAL_TOKENS)))

    @property
    def vocab_size(self):
        raise NotImplementedError

    # ---------------------------------------------------------- encoding
    def encode(self, text, add_bos=False, add_eos=False):
        """Token ids of one text, a list of int."""
        _check_text(text)
        ids, _ = self._encode_many([text])
        return self._wrap(ids, add_bos, add_eos).tolist()

    def encode_batch(self, texts, add_bos=False, add_eos=False, max_len=None):
        """Encode many texts into one ``int64`` array of shape (B, T).

        Rows are padded with ``pad_id`` to the longest row. ``max_len`` caps T:
        longer rows are cut, keeping bos at the start and eos at the end when
        they were asked for.
        """
        texts = _check_texts(texts)
        max_len = _checked_max_len(max_len, add_bos, add_eos)
        flat, lengths = self._encode_many(texts)
        return self._pad_rows(flat, lengths, add_bos, add_eos, max_len)

    def _pad_rows(self, flat, lengths, add_bos, add_eos, max_len):
        """The padded (B, T) array of rows given as flat ids and per-row lengths."""
        n_extra = int(bool(add_bos)) + int(bool(add_eos))
        n = len(lengths)
        starts = np.zeros(n, dtype=np.int64)
        np.cumsum(lengths[:-1], out=starts[1:])
        # How many content tokens each row keeps after truncation.
        keep = lengths if max_len is None else np.minimum(lengths, max_len - n_extra)
        width = int(keep.max()) + n_extra if n else 0
        out = np.full((n, width), self.pad_id, dtype=np.int64)
        if n == 0:
            return out
        rows = np.repeat(np.arange(n), keep)
        row_starts = np.repeat(starts, keep)
        offsets = np.arange(rows.size) - np.repeat(np.cumsum(keep) - keep, keep)
        col0 = 1 if add_bos else 0
        out[rows, offsets + col0] = flat[row_starts + offsets]
        if add_bos:
            out[:, 0] = self.bos_id
        if add_eos:
            out[np.arange(n), keep + col0] = self.eos_id
        return out

    def _wrap(self, ids, add_bos, add_eos):
        parts = [ids]
        if add_bos:
            parts.insert(0, np.array([self.bos_id], dtype=np.int64))
        if add_eos:
            parts.append(np.array([self.eos_id], dtype=np.int64))
        return np.concatenate(parts) if len(parts) > 1 else ids

    # ---------------------------------------------------------- decoding
    def decode(self, ids, skip_special=True):
        """Text of a sequence of ids.

        With ``skip_special`` (the default) pad and bos are dropped, decoding
        stops at the first eos, and unknown tokens show as the tokenizer's
        unknown text. Without it every special token is written out
        ("<pad>", "<bos>", "<eos>", "<unk>").
        """
        arr = self._check_ids(ids, ndim=1)
        return self._render_rows(arr[None, :], skip_special)[0]

    def decode_batch(self, array, skip_special=True):
        """Decode every row of a (B, T) array, or of a list of id lists (rows may differ in length)."""
        widths = None
        if not isinstance(array, np.ndarray):
            array, widths = self._padded_rows(list(array))
        return self._render_rows(self._check_ids(array, ndim=2), skip_special, widths)

    def _padded_rows(self, rows):
        """(B, T) array of id lists padded with pad_id, and each row's own length (None if all alike).

        Ragged rows are decoded in one pass too: decoding them one at a time cost a
        quarter of a translation of short sentences.
        """
        widths = np.fromiter((len(row) for row in rows), dtype=np.int64, count=len(rows))
        if widths.size == 0 or (widths == widths[0]).all():
            return np.asarray(rows).reshape(len(rows), int(widths[0]) if widths.size else 0), None
        flat = np.asarray([i for row in rows for i in row])
        if flat.ndim != 1:
            raise ValueError(f"expected a list of token id lists, got rows of shape {flat.shape[1:]}")
        out = np.full((len(rows), int(widths.max())), self.pad_id, dtype=flat.dtype)
        out[np.arange(out.shape[1])[None, :] < widths[:, None]] = flat
        return out, widths

    def _check_ids(self, ids, ndim):
        arr = np.asarray(ids)
        if arr.size == 0 and arr.ndim <= ndim:
            return np.zeros((0,) * ndim if arr.ndim < ndim else arr.shape, dtype=np.int64)
        if arr.ndim != ndim:
            what = "a 1-D sequence" if ndim == 1 else "a 2-D array (B, T)"
            raise ValueError(f"expected {what} of token ids, got shape {arr.shape}")
        if arr.dtype.kind not in "iu":
            raise TypeError(f"token ids must be integers, got dtype {arr.dtype}")
        arr = arr.astype(np.int64, copy=False)
        bad = np.argwhere((arr < 0) | (arr >= self.vocab_size))
        if bad.size:
            where = tuple(int(i) for i in bad[0])
            place = where[0] if ndim == 1 else where
            raise ValueError(
                f"token id {int(arr[where])} at position {place} is outside the vocabulary "
                f"(size {self.vocab_size})")
        return arr

    def _render_rows(self, arr, skip_special, widths=None):
        """Decode a validated (B, T) array in one pass: the pieces of all rows
        are joined into one string, which is then cut at the row ends. widths:
        each row's own length, when rows were padded only to share an array."""
        n, width = arr.shape
        if width == 0:
            return [""] * n
        keep = np.ones(arr.shape, dtype=bool) if widths is None else np.arange(width)[None, :] < widths[:, None]
        if skip_special:
            is_eos = (arr == self.eos_id) & keep
            end = np.where(is_eos.any(axis=1), is_eos.argmax(axis=1), width)
            keep &= (np.arange(width)[None, :] < end[:, None]) & (arr != self.pad_id) \
                & (arr != self.bos_id)
        flat = arr[keep]
        lengths = keep.sum(axis=1)
        if flat.size == 0:
            return [""] * n
        pieces, piece_lengths = self._pieces(skip_special)
        first_of_row = np.zeros(flat.size, dtype=bool)
        first_of_row[(np.cumsum(lengths) - lengths)[lengths > 0]] = True
        spaces = self._spaces_before(flat, first_of_row)
        chars = piece_lengths[flat] + spaces
        if spaces.any():
            interleaved = np.empty(2 * flat.size, dtype=object)
            interleaved[0::2] = np.where(spaces, " ", "")
            interleaved[1::2] = pieces[flat]
            text = "".join(interleaved.tolist())
        else:
            text = "".join(pieces[flat].tolist())
        row_chars = np.bincount(np.repeat(np.arange(n), lengths), weights=chars, minlength=n)
        bounds = np.concatenate([[0], np.cumsum(row_chars.astype(np.int64))]).tolist()
        return [text[bounds[i]:bounds[i + 1]] for i in range(n)]

    def _pieces(self, skip_special):
        """(text of every id as an object array, their lengths in characters)."""
        key = bool(skip_special)
        cache = self.__dict__.setdefault("_pieces_cache", {})
        if key not in cache:
            texts = self._id_texts()
            if skip_special:
                texts[self.unk_id] = self._unk_text
            table = np.array(texts, dtype=object)
            cache[key] = table, np.array([len(t) for t in texts], dtype=np.int64)
        return cache[key]

    def _spaces_before(self, flat, first_of_row):
        """1 where a space goes before a token, else 0: never, for characters."""
        return np.zeros(flat.size, dtype=np.int64)

    # ----------------------------------------------------------- misc
    def __eq__(self, other):
        return type(self) is type(other) and self.to_dict() == other.to_dict()

    def __hash__(self):
        return hash((type(self).__name__, repr(self.to_dict())))

    def __repr__(self):
        return f"{type(self).__name__}(vocab_size={self.vocab_size})"


class AsciiTokenizer(_Tokenizer):
    """The ASCII table: code = ``ord(c)`` for the 128 ASCII characters.

    ``errors="strict"`` raises ValueError for a non-ASCII character, naming
    it, its position and the text; ``errors="replace"`` maps it to ``unk_id``.
    Special tokens are 128 (pad), 129 (bos), 130 (eos), 131 (unk).
    """

    _special_offset = 128

    def __init__(self, errors="strict"):
        if errors not in ("strict", "replace"):
            raise ValueError(f"errors must be 'strict' or 'replace', got {errors!r}")
        self.errors = errors

    @property
    def vocab_size(self):
        return 128 + len(SPECIAL_TOKENS)

    def _encode_many(self, texts):
        lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
        joined = "".join(texts)
        if joined.isascii():
            flat = np.frombuffer(joined.encode("ascii"), dtype=np.uint8).astype(np.int64)
            return flat, lengths
        if self.errors == "strict":
            self._raise_non_ascii(texts)
        flat = _codepoints(joined).astype(np.int64)
        flat[flat >= 128] = self.unk_id
        return flat, lengths

    @staticmethod
    def _raise_non_ascii(texts):
        for index, text in enumerate(texts):
            if not text.isascii():
                pos = next(i for i, c in enumerate(text) if ord(c) >= 128)
                where = f"texts[{index}] " if len(texts) > 1 else ""
                raise ValueError(
                    f"non-ASCII character {text[pos]!r} (U+{ord(text[pos]):04X}) at "
                    f"position {pos} in {where}{text!r}; use AsciiTokenizer(errors='replace') "
                    f"or a CharTokenizer")

    def _id_texts(self):
        return [chr(i) for i in range(128)] + list(SPECIAL_TOKENS)

    def to_dict(self):
        return {"type": "ascii", "errors": self.errors}


class CharTokenizer(_Tokenizer):
    """One token per character of a learned alphabet.

    ``CharTokenizer.fit(texts, min_freq=1)`` learns the alphabet; ids 0..3 are
    the special tokens, then the characters ordered by frequency (most
    frequent first), ties broken by code point. Characters outside the
    alphabet encode to ``unk_id`` and decode to U+FFFD.
    """

    def __init__(self, chars):
        chars = list(chars)
        for i, c in enumerate(chars):
            if not isinstance(c, str) or len(c) != 1:
                raise ValueError(f"alphabet entry {i} must be a single character, got {c!r}")
        if len(set(chars)) != len(chars):
            dup = next(c for c, k in Counter(chars).items() if k > 1)
            raise ValueError(f"alphabet lists {dup!r} more than once")
        self.chars = chars
        n_special = len(SPECIAL_TOKENS)
        # A dense table code point -> id; code points past its end are unknown.
        codes = np.array([ord(c) for c in chars], dtype=np.int64)
        self._lookup = np.full(int(codes.max()) + 1 if chars else 1, self.unk_id, dtype=np.int64)
        self._lookup[codes] = np.arange(n_special, n_special + len(chars))

    @classmethod
    def fit(cls, texts, min_freq=1):
        """Learn the alphabet of ``texts``: characters seen >= ``min_freq`` times."""
        texts = _check_texts(texts)
        _check_min_freq(min_freq)
        counts = Counter("".join(texts))
        kept = [c for c, k in counts.items() if k >= min_freq]
        kept.sort(key=lambda c: (-counts[c], ord(c)))
        return cls(kept)

    @property
    def vocab_size(self):
        return len(SPECIAL_TOKENS) + len(self.chars)

    def _encode_many(self, texts):
        lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
        codes = _codepoints("".join(texts)).astype(np.int64)
        inside = codes < self._lookup.size
        flat = np.full(codes.size, self.unk_id, dtype=np.int64)
        flat[inside] = self._lookup[codes[inside]]
        return flat, lengths

    def _id_texts(self):
        return list(SPECIAL_TOKENS) + self.chars

    def to_dict(self):
        return {"type": "char", "chars": "".join(self.chars)}


class WordTokenizer(_Tokenizer):
    """Words and punctuation marks, with a vocabulary learned from data.

    Splitting: a token is a run of word characters (``\\w+``: letters, digits,
    underscore, in any script) or one single other non-space character
    (punctuation, symbols). With ``lowercase`` the text is lower-cased first.

    Joining (detokenisation) puts one space between tokens except: no space
    before closing punctuation ``. , ! ? ; : ) ] } % …``, none after opening
    punctuation ``( [ { ¿ ¡``, and none on either side of an apostrophe or a
    hyphen ("don't", "well-known"). Only two neighbouring word tokens *need* a
    space to stay apart, and they always get one, so encoding the decoded
    text gives the same ids again. ``decode(encode(t)) == normalize(t)`` for a
    text whose tokens are all in the vocabulary; ``normalize`` applies the
    lower-casing and these spacing rules. Unknown words decode as "<unk>".
    """

    _TOKEN_RE = re.compile(r"\w+|[^\w\s]")
    _NO_SPACE_BEFORE = frozenset(".,!?;:)]}%…'-")
    _NO_SPACE_AFTER = frozenset("([{¿¡'-")
    _unk_text = SPECIAL_TOKENS[_UNK]

    def __init__(self, vocab, lowercase=True):
        vocab = list(vocab)
        for i, w in enumerate(vocab):
            if not isinstance(w, str) or not w:
                raise ValueError(f"vocabulary entry {i} must be a non-empty str, got {w!r}")
        if len(set(vocab)) != len(vocab):
            dup = next(w for w, k in Counter(vocab).items() if k > 1)
            raise ValueError(f"vocabulary lists {dup!r} more than once")
        self.vocab = vocab
        self.lowercase = bool(lowercase)
        n_special = len(SPECIAL_TOKENS)
        self._ids = {w: i + n_special for i, w in enumerate(vocab)}
        texts = list(SPECIAL_TOKENS) + vocab
        self._no_space_before = np.array([t in self._NO_SPACE_BEFORE for t in texts], dtype=bool)
        self._no_space_after = np.array([t in self._NO_SPACE_AFTER for t in texts], dtype=bool)

    @classmethod
    def fit(cls, texts, min_freq=1, lowercase=True, max_size=None):
        """Learn the vocabulary: tokens seen >= ``min_freq`` times, most frequent
        first (ties alphabetical), at most ``max_size`` of them (the special
        tokens are not counted)."""
        texts = _check_texts(texts)
        _check_min_freq(min_freq)
        if max_size is not None and (int(max_size) != max_size or max_size < 0):
            raise ValueError(f"max_size must be a non-negative integer or None, got {max_size!r}")
        tok = cls([], lowercase=lowercase)
        counts = Counter(chain.from_iterable(tok.split(t) for t in texts))
        kept = [w for w, k in counts.items() if k >= min_freq]
        kept.sort(key=lambda w: (-counts[w], w))
        if max_size is not None:
            kept = kept[: int(max_size)]
        return cls(kept, lowercase=lowercase)

    def split(self, text):
        """The tokens (strings) of one text."""
        _check_text(text)
        if self.lowercase:
            text = text.lower()
        return self._TOKEN_RE.findall(text)

    def join(self, tokens):
        """Detokenise: the spacing rules described in the class docstring."""
        pieces = []
        previous = None
        for token in tokens:
            if previous is not None and not (
                    token in self._NO_SPACE_BEFORE or previous in self._NO_SPACE_AFTER):
                pieces.append(" ")
            pieces.append(token)
            previous = token
        return "".join(pieces)

    def normalize(self, text):
        """The text as a round trip through the tokenizer writes it."""
        return self.join(self.split(text))

    @property
    def vocab_size(self):
        return len(SPECIAL_TOKENS) + len(self.vocab)

    def _encode_many(self, texts):
        token_lists = [self.split(t) for t in texts]
        lengths = np.fromiter((len(t) for t in token_lists), dtype=np.int64, count=len(texts))
        lookup, unk = self._ids.get, self.unk_id
        flat = np.fromiter((lookup(w, unk) for w in chain.from_iterable(token_lists)),
                           dtype=np.int64, count=int(lengths.sum()))
        return flat, lengths

    def _id_texts(self):
        return list(SPECIAL_TOKENS) + self.vocab

    def _spaces_before(self, flat, first_of_row):
        # The vectorised form of ``join``: a space unless the token closes or
        # the previous token opens, and never at the start of a row.
        previous = np.concatenate([[self.pad_id], flat[:-1]])
        glued = self._no_space_before[flat] | self._no_space_after[previous] | first_of_row
        return (~glued).astype(np.int64)

    def to_dict(self):
        return {"type": "word", "vocab": list(self.vocab), "lowercase": self.lowercase}


def _checked_max_len(max_len, add_bos, add_eos):
    n_extra = int(bool(add_bos)) + int(bool(add_eos))
    if max_len is None:
        return None
    if int(max_len) != max_len or max_len < max(n_extra, 1):
        raise ValueError(
            f"max_len must be an integer >= {max(n_extra, 1)} "
            f"(room for the bos/eos tokens asked for), got {max_len!r}")
    return int(max_len)


def _check_min_freq(min_freq):
    if int(min_freq) != min_freq or min_freq < 1:
        raise ValueError(f"min_freq must be an integer >= 1, got {min_freq!r}")


_TYPES = {"ascii": AsciiTokenizer, "char": CharTokenizer, "word": WordTokenizer}


def tokenizer_from_dict(d):
    """Rebuild a tokenizer from its ``to_dict()``."""
    if not isinstance(d, dict) or "type" not in d:
        raise ValueError(f"not a tokenizer description (a dict with a 'type'): {d!r:.200}")
    kind = d["type"]
    if kind == "subword":
        from fastnet.text.subword import SubwordTokenizer

        return SubwordTokenizer.from_dict(d)
    if kind not in _TYPES:
        raise ValueError(f"unknown tokenizer type {kind!r}; expected one of {sorted([*_TYPES, 'subword'])}")
    try:
        if kind == "ascii":
            return AsciiTokenizer(errors=d.get("errors", "strict"))
        if kind == "char":
            return CharTokenizer(list(d["chars"]))
        return WordTokenizer(d["vocab"], lowercase=d.get("lowercase", True))
    except KeyError as exc:
        raise ValueError(f"{kind} tokenizer description lacks the field {exc.args[0]!r}") from None
