"""Greedy translation with a Translator exported by `tr.to_onnx(directory)`.

Needs only numpy and onnxruntime: no fastnet kernels, no compiler. fastnet
imports it as `fastnet.export.onnx_greedy_translate`, and `tr.to_onnx` copies
this file into the export directory as `translate.py`, so a deployment can use
the directory alone:

    python translate.py EXPORT_DIR "cats are cute" --to sv
    # or, from Python, with translate.py importable:
    from translate import onnx_greedy_translate
    onnx_greedy_translate(EXPORT_DIR, ["cats are cute"], to="sv")

`recipe.json` in the directory says how: which files hold the encoder and the
decoder steps, the special token ids (bos, eos, pad), the longest output, and
the tokenizers (vocabularies as JSON), which this module re-implements for
encoding and decoding. Decoding follows fastnet's greedy search: start from
bos, append the most likely next token, stop a sentence at eos or max_len.
"""
import argparse
import json
import os
import re

import numpy as np

RECIPE = "recipe.json"
RECIPE_FORMAT = "fastnet-onnx-translator"
SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>", "<unk>")
_REPLACEMENT_CHAR = "\ufffd"


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError as exc:
        raise ImportError('running an exported translator needs onnxruntime: pip install onnxruntime '
                          '(or pip install "fastnet[onnx]")') from exc
    return onnxruntime


def _repeated_ngram_ends(history, n):
    """Tokens that would complete an n-gram already in `history` (fastnet.seq2seq.decoding's rule,
    restated here because this file runs without fastnet)."""
    if n < 1 or len(history) < n - 1:
        return set()
    if n == 1:
        return set(history)
    prefix = history[len(history) - n + 1:]
    return {history[i + n - 1] for i in range(len(history) - n + 1) if history[i:i + n - 1] == prefix}


class RecipeTokenizer:
    """Encode and decode text as fastnet's tokenizers do, from their saved description."""

    _WORD_RE = re.compile(r"\w+|[^\w\s]")
    _NO_SPACE_BEFORE = frozenset(".,!?;:)]}%…'-")
    _NO_SPACE_AFTER = frozenset("([{¿¡'-")

    def __init__(self, description):
        kind = description.get("type")
        self.kind = kind
        if kind == "ascii":
            offset = 128
            self.errors = description.get("errors", "strict")
            self.pieces = [chr(i) for i in range(128)] + list(SPECIAL_TOKENS)
        elif kind == "char":
            offset = 0
            self.pieces = list(SPECIAL_TOKENS) + list(description["chars"])
        elif kind == "word":
            offset = 0
            self.lowercase = bool(description.get("lowercase", True))
            self.pieces = list(SPECIAL_TOKENS) + list(description["vocab"])
        elif kind == "subword":  # a SentencePiece model: this one kind needs `pip install sentencepiece`
            import base64

            import sentencepiece

            offset = 0
            self.sp = sentencepiece.SentencePieceProcessor()
            self.sp.LoadFromSerializedProto(base64.b64decode(description["model"]))
            self.pieces = [self.sp.id_to_piece(i) for i in range(self.sp.get_piece_size())]
        else:
            raise ValueError(f"unknown tokenizer type {kind!r} in the recipe")
        self.pad_id, self.bos_id, self.eos_id, self.unk_id = range(offset, offset + 4)
        self.unk_text = SPECIAL_TOKENS[3] if kind == "word" else _REPLACEMENT_CHAR
        self.ids = {piece: i for i, piece in enumerate(self.pieces) if i not in self.special_ids}

    @property
    def special_ids(self):
        return (self.pad_id, self.bos_id, self.eos_id, self.unk_id)

    def encode(self, text):
        if self.kind == "subword":
            return self.sp.encode(text)
        if self.kind == "word":
            tokens = self._WORD_RE.findall(text.lower() if self.lowercase else text)
            return [self.ids.get(t, self.unk_id) for t in tokens]
        if self.kind == "ascii" and self.errors == "strict" and not text.isascii():
            pos = next(i for i, c in enumerate(text) if ord(c) >= 128)
            raise ValueError(f"non-ASCII character {text[pos]!r} at position {pos} in {text!r}")
        return [self.ids.get(c, self.unk_id) for c in text]

    def decode(self, ids):
        """Text of ids: pad and bos dropped, stop at the first eos, unknown ids as the unknown text."""
        kept = []
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                break
            if i not in (self.pad_id, self.bos_id):
                kept.append(i)
        if self.kind == "subword":
            return self.sp.decode(kept)
        pieces = [self.unk_text if i == self.unk_id else self.pieces[i] for i in kept]
        if self.kind != "word":
            return "".join(pieces)
        out, previous = [], None
        for piece in pieces:
            if previous is not None and not (piece in self._NO_SPACE_BEFORE or previous in self._NO_SPACE_AFTER):
                out.append(" ")
            out.append(piece)
            previous = piece
        return "".join(out)


class OnnxTranslator:
    """An exported translator loaded into onnxruntime sessions (one per graph, created when first used)."""

    def __init__(self, directory, providers=None, threads=None):
        self.directory = os.fspath(directory)
        path = os.path.join(self.directory, RECIPE)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path!r} not found: is {self.directory!r} a directory written by "
                                    f"tr.to_onnx()?")
        with open(path, encoding="utf-8") as f:
            self.recipe = json.load(f)
        if self.recipe.get("format") != RECIPE_FORMAT:
            raise ValueError(f"{path!r} is not a fastnet ONNX translator recipe")
        self.providers = providers or ["CPUExecutionProvider"]
        self.threads = threads
        self.src_tokenizer = RecipeTokenizer(self.recipe["encoder"]["tokenizer"])
        self.tokenizers = {name: RecipeTokenizer(d["tokenizer"]) for name, d in self.recipe["decoders"].items()}
        self._sessions = {}

    @property
    def languages(self):
        return list(self.recipe["decoders"])

    def _session(self, filename):
        if filename not in self._sessions:
            ort = _onnxruntime()
            options = ort.SessionOptions()
            if self.threads:
                options.intra_op_num_threads = int(self.threads)
            self._sessions[filename] = ort.InferenceSession(os.path.join(self.directory, filename), options,
                                                            providers=self.providers)
        return self._sessions[filename]

    def encode_source(self, texts):
        """(B, S) int64: each sentence's tokens then eos, padded with pad."""
        enc = self.recipe["encoder"]
        rows = [self.src_tokenizer.encode(t) + [enc["eos_id"]] for t in texts]
        longest = max(len(r) for r in rows)
        if longest > enc["max_len"]:
            raise ValueError(f"a source sentence has {longest} tokens, more than the encoder's "
                             f"max_len={enc['max_len']}")
        ids = np.full((len(rows), longest), enc["pad_id"], dtype=np.int64)
        for i, row in enumerate(rows):
            ids[i, :len(row)] = row
        return ids

    def encode(self, texts):
        """(memory (B, S, D), memory_mask (B, S) bool, representation (B, D)) of the source sentences."""
        session = self._session(self.recipe["encoder"]["file"])
        memory, mask, representation = session.run(["memory", "memory_mask", "representation"],
                                                   {"src_ids": self.encode_source(texts)})
        return memory, mask, representation

    def represent(self, texts):
        return self.encode(_texts(texts))[2]

    def greedy_ids(self, memory, mask, to, max_len=None):
        """Token ids of the greedy translation of every row, each cut before eos, under the recipe's rules
        (as fastnet's translate: banned ids, a length cap per row, no repeated n-gram)."""
        spec = self._decoder_spec(to)
        rules = self.recipe.get("rules", {})
        session = self._session(spec["file"])
        limit = spec["max_len"] if max_len is None else min(int(max_len), spec["max_len"])
        B = memory.shape[0]
        caps = np.full(B, limit, dtype=np.int64)
        if "max_length_ratio" in rules:
            source_lengths = (~mask).sum(axis=1)
            caps = np.minimum(caps, np.ceil(rules["max_length_ratio"] * source_lengths).astype(np.int64)
                              + int(rules.get("length_extra", 0)))
        banned = np.asarray(spec.get("banned", []), dtype=np.int64)
        n = int(rules.get("no_repeat_ngram", 0))
        prefix = np.full((B, 1), spec["bos_id"], dtype=np.int64)
        out = [[] for _ in range(B)]
        alive = np.arange(B)  # rows still writing; finished rows leave the batch
        for t in range(int(caps.max())):
            logits = session.run(["logits"], {"tokens": prefix, "memory": memory[alive],
                                              "memory_mask": mask[alive]})[0].astype(np.float64)
            logits[:, banned] = -np.inf
            for i, row in enumerate(alive):
                logits[i, list(_repeated_ngram_ends(out[row], n))] = -np.inf
                if len(out[row]) < int(rules.get("min_length", 0)):
                    logits[i, spec["eos_id"]] = -np.inf
                run = int(rules.get("max_run", 0))
                if run > 0 and len(out[row]) >= run and len(set(out[row][-run:])) == 1:
                    logits[i, out[row][-1]] = -np.inf
            nxt = logits.argmax(axis=1)
            nxt[t + 1 >= caps[alive]] = spec["eos_id"]
            for row, token in zip(alive, nxt):
                if token != spec["eos_id"] and token != spec["pad_id"]:
                    out[row].append(int(token))
            going = nxt != spec["eos_id"]
            if not going.any():
                break
            alive, prefix = alive[going], np.concatenate([prefix[going], nxt[going, None]], axis=1)
        return out

    def translate(self, texts, to=None, max_len=None):
        single = isinstance(texts, str)
        texts = _texts(texts)
        to = self._default_target(to)
        memory, mask, _ = self.encode(texts)
        rows = self.greedy_ids(memory, mask, to, max_len)
        out = [self.tokenizers[to].decode(row) for row in rows]
        return out[0] if single else out

    def _default_target(self, to):
        if to is None:
            if len(self.languages) != 1:
                raise ValueError(f"say which decoder to use: to= one of {self.languages}")
            return self.languages[0]
        return to

    def _decoder_spec(self, to):
        if to not in self.recipe["decoders"]:
            raise KeyError(f"unknown target {to!r}; this export has decoders for {self.languages}")
        return self.recipe["decoders"][to]


def _texts(texts):
    texts = [texts] if isinstance(texts, str) else list(texts)
    if not texts:
        raise ValueError("no sentences given (empty input)")
    for i, t in enumerate(texts):
        if not isinstance(t, str) or not t.strip():
            raise ValueError(f"sentence {i} must be a non-empty str, got {t!r}")
    return texts


_LOADED = {}


def load(directory, threads=None):
    """An OnnxTranslator for `directory`, reused while its recipe file is unchanged."""
    directory = os.path.abspath(os.fspath(directory))
    try:
        stamp = os.stat(os.path.join(directory, RECIPE)).st_mtime_ns
    except FileNotFoundError:
        stamp = None
    key = (directory, stamp, threads)
    if key not in _LOADED:
        _LOADED.clear()
        _LOADED[key] = OnnxTranslator(directory, threads=threads)
    return _LOADED[key]


def onnx_greedy_translate(directory, texts, to=None, max_len=None):
    """Translate a sentence (returns a str) or a list of them (returns a list) with an exported translator."""
    return load(directory).translate(texts, to=to, max_len=max_len)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Greedy translation with an ONNX-exported fastnet Translator "
                                                 "(numpy + onnxruntime only).")
    parser.add_argument("directory", help="the directory tr.to_onnx() wrote")
    parser.add_argument("texts", nargs="+", help="sentences to translate")
    parser.add_argument("--to", default=None, help="target decoder name, e.g. sv")
    parser.add_argument("--max-len", type=int, default=None)
    args = parser.parse_args(argv)
    for line in onnx_greedy_translate(args.directory, args.texts, to=args.to, max_len=args.max_len):
        print(line)


if __name__ == "__main__":
    main()
