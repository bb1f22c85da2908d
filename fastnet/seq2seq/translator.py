"""fn.Translator: one shared Encoder, any number of Decoders (one per target language or kind).

    tr = fn.Translator.build(english, targets={"sv": swedish, "es": spanish}, tokenizer="word")
    tr.fit(english, {"sv": swedish, "es": spanish}, epochs=20, validation_data=(en_val, {"sv": ...}))
    tr.translate("cats are cute", to="sv")        # 'katter är söta'
    tr.represent(["cats are cute"])               # (1, d_model) float32: what every decoder reads

Every parameter of the encoder and the decoders lives in one ParameterStore
(`tr.store`), so one Adam step updates all of them; a frozen encoder
(add_decoder(freeze_encoder=True)) is left out of the store being trained.
"""
import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from fastnet import io, text
from fastnet.checks import positive_int
from fastnet.history import History
from fastnet.layers import quantized as _quantized
from fastnet.layers.base import Layer, ParameterStore, ParameterView, check_precision, set_precision
from fastnet.optimizers import Optimizer
from fastnet.seq2seq import decoding
from fastnet.seq2seq import metrics as scoring
from fastnet.seq2seq.decoder import Decoder
from fastnet.seq2seq.encoder import Encoder, pool
from fastnet.seq2seq.training import (
    backward_batch,
    default_optimizer,
    fit_translator,
    forward_batch,
    teacher_forced_scores,
    total_loss,
)

FORMAT_VERSION = 1

# Decoding defaults: the GNMT length penalty, no 4-gram twice, outputs at most 2x the source + 5.
# The penalty's alpha was chosen on Tatoeba English-Swedish dev sentences: beam 4 gains +1.1 chrF
# over greedy with 1.0, +0.8 with GNMT's 0.6.
LENGTH_PENALTY = 1.0
NO_REPEAT_NGRAM = 4
MAX_LENGTH_RATIO = 2.0
LENGTH_EXTRA = 5
MAX_RUN = 2  # no piece three times in a row (off with no_repeat_ngram=0, like the n-gram guard)

# Decoder classes Translator.load can rebuild, by the name saved in the file.
DECODER_KINDS = {"Decoder": Decoder}


def _decoder_kind(name):
    """The decoder class saved under `name`; the pixel decoder is imported only when a file needs it."""
    if name == "ImageDecoder" and name not in DECODER_KINDS:
        from fastnet.image import ImageDecoder

        register_decoder_kind(ImageDecoder)
    return DECODER_KINDS.get(name)


def register_decoder_kind(cls, name=None):
    """Make a decoder class loadable from saved translators (see the interface in decoder.py)."""
    DECODER_KINDS[name or cls.__name__] = cls
    return cls


def _text_tokenizer(kind, texts, min_freq=1, lowercase=True, vocab_size=None, seed=0):
    if not isinstance(kind, str):
        return kind  # an already fitted tokenizer
    if kind == "subword":
        sizes = {"vocab_size": vocab_size} if vocab_size else {}
        return text.SubwordTokenizer.fit(texts, seed=seed, **sizes)
    if kind == "word":
        return text.WordTokenizer.fit(texts, min_freq=min_freq, lowercase=lowercase)
    if kind == "char":
        return text.CharTokenizer.fit(texts)
    if kind == "ascii":
        return text.AsciiTokenizer()
    raise ValueError(f"tokenizer must be 'subword', 'word', 'char', 'ascii' or a tokenizer object, got {kind!r}")


def _source_lists(src, targets, what):
    """English sentences as {language: list}: one shared list (aligned with every target) or one per language."""
    if isinstance(src, dict):
        missing = sorted(set(targets) - set(src))
        if missing:
            raise ValueError(f"{what}: English sentences are given per language, but none for {missing}")
        extra = sorted(set(src) - set(targets))
        if extra:
            raise ValueError(f"{what}: English sentences given for {extra}, which have no target sentences")
        return {name: _as_texts(src[name], f"{what} ({name!r} English)") for name in targets}
    shared = _as_texts(src, what)
    return {name: shared for name in targets}


def _as_texts(texts, what):
    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    if not texts:
        raise ValueError(f"{what}: no sentences given (empty input)")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"{what}: sentence {i} is {type(t).__name__}, expected str")
        if not t.strip():
            raise ValueError(f"{what}: sentence {i} is empty")
    return texts


def _check_beam(beam, n_best):
    positive_int(beam, "beam")
    positive_int(n_best, "n_best")
    if n_best > beam:
        raise ValueError(f"n_best={n_best} is larger than beam={beam}: a beam of {beam} finds at most {beam} "
                         f"translations; ask for n_best <= beam")
    return int(beam), int(n_best)


def _best_texts(tok, hyps, n):
    """The n best different texts among beam hypotheses [(tokens, score)], best first. Different token
    sequences can spell the same text (subword pieces); if fewer than n texts differ, the best repeat."""
    texts = list(dict.fromkeys(tok.decode_batch([tokens for tokens, _ in hyps]) if hyps else []))
    if not texts:
        texts = [""]
    return (texts + [texts[-1]] * n)[:n]


def _encode(tok, texts, add_bos, sample_alpha=None, max_len=None):
    if sample_alpha:  # subword regularisation: a random segmentation (SubwordTokenizer only)
        return tok.encode_batch(texts, add_bos=add_bos, add_eos=True, max_len=max_len, sample_alpha=sample_alpha)
    return tok.encode_batch(texts, add_bos=add_bos, add_eos=True, max_len=max_len)


def _warn_truncated(ids, pad_id, limit, what, module):
    lengths = (ids != pad_id).sum(axis=1)
    longest = int(lengths.argmax())
    warnings.warn(f"{int((lengths > limit).sum())} {what} sentence(s) are longer than {module}'s max_len "
                  f"(sentence {longest}: {int(lengths[longest])} tokens, limit {limit}); they are cut to fit",
                  stacklevel=3)


class Translator:
    """Shared Encoder + named Decoders, with their tokenizers; trains, translates, saves."""

    def __init__(self, encoder: Encoder, decoders: Dict[str, Layer], src_tokenizer,
                 tgt_tokenizers: Optional[dict] = None, seed: int = 0, precision: str = "float32"):
        if not isinstance(encoder, Encoder):
            raise TypeError(f"encoder must be a fastnet Encoder, got {type(encoder).__name__}")
        if not decoders:
            raise ValueError("a Translator needs at least one decoder, e.g. decoders={'sv': fn.Decoder(...)}")
        tgt_tokenizers = dict(tgt_tokenizers or {})
        self.encoder = encoder
        self.src_tokenizer = src_tokenizer
        self._check_tokenizer(src_tokenizer, encoder, "source")
        self.decoders, self.tokenizers = {}, {}
        self.seed = int(seed)
        self.frozen_encoder = False
        self.trained = set()  # decoder names that have been trained (or loaded trained)
        self.history = History()
        self.epochs_trained = 0
        self.stop_training = False
        self.rng = np.random.default_rng(self.seed)
        self._training_state = None  # (names of trained modules, optimizer) kept across fit calls
        self.optimizer = None  # the optimizer of the training in progress (use_optimizer, fit)
        self._step_pending = None  # what backward() needs after forward_loss()
        self.weight_average = None  # during fit(ema=...): the running WeightAverage (its .average array)
        for name, dec in decoders.items():
            self._attach(name, dec, tgt_tokenizers.get(name))
        self._precision = "float32"
        self.quantization = None  # "int8" after quantize(): inference only
        self._rebuild_store()
        self.precision = precision

    @property
    def precision(self) -> str:
        """'float32' or 'bf16': the precision of every matrix product (settable;
        weights, optimizer state, softmax, layer norm and losses stay float32)."""
        return self._precision

    @precision.setter
    def precision(self, value: str) -> None:
        self._precision = check_precision(value, self.store.dtype)
        set_precision([self.encoder, *self.decoders.values()], value)

    # ---- construction ----
    @classmethod
    def build(cls, src_texts: Union[Sequence[str], Dict[str, Sequence[str]]], targets: Dict[str, Sequence[str]],
              d_model: int = 128, n_heads: int = 4, n_layers: int = 2, d_ff: Optional[int] = None,
              max_len: Optional[int] = None, dropout: float = 0.1, tokenizer: Any = "word", min_freq: int = 1,
              lowercase: bool = True, activation: str = "gelu", seed: int = 0, dtype=np.float32,
              vocab_size: Optional[int] = None, tie_embeddings: bool = False,
              precision: str = "float32") -> "Translator":
        """Fit tokenizers on the data and build an Encoder and one Decoder per target language.

        src_texts: the English sentences, one list for every target or {language: list} (each
        language its own English). tokenizer: "subword" (SentencePiece, vocab_size pieces per
        language, default 4000), "word", "char", "ascii" or a fitted tokenizer; min_freq and
        lowercase apply to word tokenizers (keep case, lowercase=False, when scores compare
        case-sensitively). tie_embeddings: each decoder's output projection is its input
        embedding (one tensor)."""
        if not targets:
            raise ValueError("Translator.build: targets must map a language name to its sentences")
        sources = _source_lists(src_texts, targets, "Translator.build")
        english = sources[next(iter(targets))]
        if isinstance(src_texts, dict):  # English of several files: each sentence counted once
            english = list(dict.fromkeys(t for texts in sources.values() for t in texts))
        src_tok = _text_tokenizer(tokenizer, english, min_freq, lowercase, vocab_size, seed)
        tgt_toks = {name: _text_tokenizer(tokenizer, [t for t in texts if t is not None], min_freq, lowercase,
                                          vocab_size, seed)
                    for name, texts in targets.items()}
        if max_len is None:
            longest = max(cls._longest(src_tok, english),
                          *(cls._longest(tgt_toks[n], [t for t in texts if t is not None])
                            for n, texts in targets.items()))
            max_len = longest + 2 + longest // 4  # room for bos/eos and slightly longer sentences
        arch = dict(d_model=d_model, n_heads=n_heads, n_layers=n_layers, d_ff=d_ff or 4 * d_model,
                    max_len=max_len, dropout=dropout, activation=activation, dtype=dtype)
        seeds = np.random.SeedSequence(seed).generate_state(len(targets) + 1)
        encoder = Encoder(src_tok.vocab_size, pad_id=src_tok.pad_id, seed=seeds[0], **arch)
        decoders = {name: Decoder(tgt_toks[name].vocab_size, pad_id=tgt_toks[name].pad_id, seed=s,
                                  tie_embeddings=tie_embeddings, **arch)
                    for name, s in zip(targets, seeds[1:])}
        return cls(encoder, decoders, src_tok, tgt_toks, seed=seed, precision=precision)

    @staticmethod
    def _longest(tokenizer, texts):
        return int((tokenizer.encode_batch(texts) != tokenizer.pad_id).sum(axis=1).max())

    @staticmethod
    def _check_tokenizer(tokenizer, module, what):
        if tokenizer is None:
            return
        if tokenizer.vocab_size > module.vocab_size:
            raise ValueError(f"{what} tokenizer has {tokenizer.vocab_size} tokens but the model's vocabulary "
                             f"holds {module.vocab_size}")
        if tokenizer.pad_id != module.pad_id:
            raise ValueError(f"{what} tokenizer pads with id {tokenizer.pad_id} but the model uses "
                             f"pad_id={module.pad_id}")

    def _attach(self, name, decoder, tokenizer):
        if not isinstance(name, str) or not name:
            raise ValueError(f"decoder names must be non-empty strings, got {name!r}")
        if getattr(decoder, "input_kind", None) not in ("memory", "representation"):
            raise TypeError(f"decoder {name!r} ({type(decoder).__name__}) does not follow the decoder "
                            f"interface: input_kind must be 'memory' or 'representation'")
        if decoder.d_model != self.encoder.d_model:
            raise ValueError(f"decoder {name!r} has d_model={decoder.d_model}, the encoder {self.encoder.d_model}")
        if isinstance(decoder, Decoder):
            if tokenizer is None:
                raise ValueError(f"text decoder {name!r} needs a tokenizer for its language")
            self._check_tokenizer(tokenizer, decoder, f"{name!r}")
        self.decoders[name] = decoder
        self.tokenizers[name] = tokenizer

    def _rebuild_store(self):
        modules = [self.encoder, *self.decoders.values()]
        dtypes = {m.params[p].dtype for module in modules for _, m, p in module.named_params()}
        if len(dtypes) != 1:
            raise TypeError(f"encoder and decoders must share one dtype, got {sorted(map(str, dtypes))}")
        self.store = ParameterStore(modules, dtype=dtypes.pop())
        self._training_state = None
        self.optimizer = None  # it was bound to the old store
        set_precision(modules, self._precision)  # a new decoder multiplies like the rest

    def add_decoder(self, name: str, decoder: Layer, tokenizer=None, freeze_encoder: bool = True) -> "Translator":
        """Attach a new decoder (a language, or another kind) to this encoder.

        With freeze_encoder=True the encoder's weights stay bitwise unchanged
        by later fit() calls: only the decoders learn.
        """
        if name in self.decoders:
            raise ValueError(f"decoder {name!r} already exists; choose another name")
        self._attach(name, decoder, tokenizer)
        self.frozen_encoder = bool(freeze_encoder)
        self._rebuild_store()
        return self

    @property
    def languages(self) -> List[str]:
        return list(self.decoders)

    @property
    def d_model(self) -> int:
        return self.encoder.d_model

    # ---- data to token ids ----
    def _decoder(self, to):
        if to not in self.decoders:
            raise KeyError(f"unknown target {to!r}; this translator has decoders for {self.languages}")
        return self.decoders[to]

    def encode_source(self, texts: Sequence[str], sample_alpha: Optional[float] = None,
                      truncate: bool = False) -> np.ndarray:
        """Source ids (N, S) ending in eos, padded. A sentence longer than the encoder's max_len is an
        error, or with truncate=True (training and scoring: never an error after hours of training)
        is cut to fit, with a warning."""
        tok = self.src_tokenizer
        ids = _encode(tok, texts, add_bos=False, sample_alpha=sample_alpha)
        if ids.shape[1] > self.encoder.max_len:
            if not truncate:
                raise ValueError(f"a source sentence has {ids.shape[1]} tokens, more than the encoder's "
                                 f"max_len={self.encoder.max_len}")
            _warn_truncated(ids, tok.pad_id, self.encoder.max_len, "source", "the encoder")
            ids = _encode(tok, texts, add_bos=False, sample_alpha=sample_alpha, max_len=self.encoder.max_len)
        return np.ascontiguousarray(ids, dtype=np.int64)

    def encode_target(self, name: str, texts: Sequence[Optional[str]],
                      sample_alpha: Optional[float] = None) -> np.ndarray:
        """Target ids (N, T) = bos, tokens, eos, pads; a missing (None) sentence becomes a row of pads.
        A sentence longer than the decoder's max_len is cut to fit, with a warning."""
        tok, dec = self.tokenizers[name], self.decoders[name]
        present = [i for i, t in enumerate(texts) if t is not None]
        if not present:
            return np.full((len(texts), 2), tok.pad_id, dtype=np.int64)
        kept = [texts[i] for i in present]
        ids = _encode(tok, kept, add_bos=True, sample_alpha=sample_alpha)
        if ids.shape[1] > dec.max_len + 1:
            _warn_truncated(ids, tok.pad_id, dec.max_len + 1, f"{name!r} target", "the decoder")
            ids = _encode(tok, kept, add_bos=True, sample_alpha=sample_alpha, max_len=dec.max_len + 1)
        out = np.full((len(texts), ids.shape[1]), tok.pad_id, dtype=np.int64)
        out[present] = ids
        return out

    def _memory(self, src_ids, training=False):
        mask = src_ids == self.encoder.pad_id
        if training:
            return self.encoder.forward(src_ids, mask, training=True), mask
        return self.encoder.encode(src_ids, mask), mask

    # ---- training ----
    def fit(self, src: Union[Sequence[str], Dict[str, Sequence[str]]], targets: Dict[str, Any], epochs: int = 10,
            batch_size: int = 32, validation_data: Optional[tuple] = None, callbacks=None, verbose: int = 1,
            max_minutes: Optional[float] = None, lr: float = 1e-3, warmup: Optional[int] = None,
            label_smoothing: float = 0.1, clip_norm: Optional[float] = 1.0, optimizer=None, shuffle: bool = True,
            steps_per_epoch: Optional[int] = None, ema: Optional[float] = None, keep_best: Optional[str] = None,
            sample_alpha: Optional[float] = None, language_temperature: float = 1.0) -> History:
        """Train the decoders named in `targets` (and the encoder unless frozen) jointly.

        src: English sentences, either one list aligned with every target (None where a sentence has
        no translation) or {name: English list} with each language's own sentences (their batches
        interleave); targets: {name: sentences}. validation_data: (src, targets) of the same form.
        Adam with a warmup then inverse-square-root decay of the learning rate, global-norm
        clipping, label smoothing. steps_per_epoch: batches between validations (default: one pass).
        ema: decay of an exponential moving average of the weights (e.g. 0.999), which is what
        validation sees and what the model holds after fit (a later fit continues from the raw
        weights). keep_best="val_chrf" (or "val_loss"): after fit the model holds the weights of the
        epoch with the best validation score. sample_alpha: subword sampling (e.g. 0.1, subword
        tokenizers) -- a new random segmentation of the training text every pass.
        language_temperature: with each language's own English, T > 1 gives the languages batches in
        proportion to (their data) ** (1/T), so a small language is not starved (1: in proportion;
        math.inf: equal shares).
        Returns a History.
        """
        if self.quantization:
            raise RuntimeError(f"this translator is quantised to {self.quantization}: it runs inference only "
                               "(train the float32 model, then quantize)")
        return fit_translator(self, src, targets, epochs=epochs, batch_size=batch_size,
                              validation_data=validation_data, callbacks=callbacks, verbose=verbose,
                              max_minutes=max_minutes, lr=lr, warmup=warmup, label_smoothing=label_smoothing,
                              clip_norm=clip_norm, optimizer=optimizer, shuffle=shuffle,
                              steps_per_epoch=steps_per_epoch, ema=ema, keep_best=keep_best,
                              sample_alpha=sample_alpha, language_temperature=language_temperature)

    # ---- the training step, as public pieces (see fastnet/step.py) ----
    def trained_parameters(self) -> ParameterView:
        """The parameters training updates: all of them, or the decoders' alone (the encoder comes
        first in the store) when the encoder is frozen. A view of `store`."""
        start = self.encoder.n_params() if self.frozen_encoder else 0
        return self.store.view(start, len(self.store))

    def use_optimizer(self, optimizer: Optional[Optimizer] = None, lr: float = 1e-3, warmup: int = 100,
                      clip_norm: Optional[float] = 1.0) -> Optimizer:
        """Bind `optimizer` (default: Adam(lr) with `warmup` steps of warm-up and global-norm clipping)
        to trained_parameters() for the steps that follow; returns it."""
        if optimizer is None:
            optimizer = default_optimizer(lr, warmup, clip_norm)
        optimizer.bind(self.trained_parameters())
        self.optimizer = optimizer
        return optimizer

    def begin_training(self, src_ids: Optional[np.ndarray], targets: Dict[str, Any]) -> None:
        """Before a step on a batch: decoders with a starting point to take from their targets take it
        (a fresh pixel decoder starts from the batch's mean picture; text decoders need nothing).
        A data-parallel trainer calls this with the whole batch before each worker steps on its part."""
        for name, target in targets.items():
            start = getattr(self.decoders[name], "begin_training", None)
            if start is not None:
                start(None, target)

    def forward_loss(self, src_ids: np.ndarray, targets: Dict[str, np.ndarray], loss_scale: Any = 1.0,
                     label_smoothing: float = 0.0) -> Tuple[float, Dict[str, dict]]:
        """Training-mode forward pass of the encoder and every decoder with labels in the batch.

        src_ids (B, S) and targets {name: ids (B, T) or other decoders' targets} as
        seq2seq.training.EncodedPairs.batch gives them. loss_scale: a number, or {name: number}
        (each decoder's loss gradient scaled on its own; 0 skips the decoder). Returns
        (the decoders' losses, scaled and summed; {name: stats}); backward() follows.
        """
        losses, stats, self._step_pending = forward_batch(self, src_ids, targets, True, label_smoothing,
                                                          loss_scale)
        return total_loss(losses, loss_scale), stats

    def backward(self) -> None:
        """Back through the decoders and the encoder (unless frozen): gradients added into `gradients`."""
        pending, self._step_pending = self._step_pending, None
        if pending is None:
            raise RuntimeError("backward() needs a forward_loss() first")
        backward_batch(self, pending)

    @property
    def gradients(self) -> np.ndarray:
        """The gradients of trained_parameters(), one flat buffer (a view of store.grad)."""
        return self.trained_parameters().grad

    def apply_update(self) -> None:
        """One step of the optimizer bound by use_optimizer (or fit)."""
        if self.optimizer is None:
            raise RuntimeError("apply_update() needs an optimizer: call use_optimizer() first")
        self.optimizer.step()

    # ---- inference ----
    def _check_trained(self, to):
        if to not in self.trained:
            raise RuntimeError(f"the {to!r} decoder has not been trained: call fit() first or load a trained "
                               f"model with fn.load(path)")

    def _batches(self, n, batch_size):
        for start in range(0, n, batch_size):
            yield slice(start, min(start + batch_size, n))

    def translate(self, texts: Union[str, Sequence[str]], to: Optional[str] = None, beam: int = 1, n_best: int = 1,
                  max_len: Optional[int] = None, length_penalty: float = LENGTH_PENALTY, batch_size: int = 256,
                  cache: bool = True, no_repeat_ngram: int = NO_REPEAT_NGRAM,
                  max_length_ratio: float = MAX_LENGTH_RATIO, truncate: bool = False) -> Any:
        """Translate one sentence (returns a string) or a list (returns a list).

        beam=1 is greedy decoding with a key/value cache (cache=False reruns the prefix, slowly);
        beam>1 is beam search ranked by log-probability / ((5 + length) / 6) ** length_penalty.
        n_best > 1 (at most beam) returns the n_best best different translations of each sentence,
        best first: a list for a string, a list of lists for a list. An output never holds the
        unknown token, never repeats an n-gram of no_repeat_ngram tokens nor a token thrice in a row
        (0 = both allowed) and has at
        most max_length_ratio x the source's tokens + LENGTH_EXTRA (and the decoder's max_len, or max_len).
        A source longer than the encoder takes is an error, or with truncate=True cut with a warning.
        A non-text decoder returns its predict() output for the representations.
        """
        single = isinstance(texts, str)
        texts = _as_texts(texts, "translate")
        to = self._default_target(to)
        dec = self._decoder(to)
        self._check_trained(to)
        beam, n_best = _check_beam(beam, n_best)
        src = self.encode_source(texts, truncate=truncate)
        if not isinstance(dec, Decoder):
            outputs = np.concatenate([self._predict_other(dec, src[s]) for s in self._batches(len(texts), batch_size)])
            return outputs[0] if single else outputs
        tok = self.tokenizers[to]
        limit = dec.max_len if max_len is None else min(int(max_len), dec.max_len)
        banned = {tok.unk_id, tok.pad_id, tok.bos_id}
        src_lengths = (src != self.encoder.pad_id).sum(axis=1)
        caps = np.ceil(max_length_ratio * src_lengths).astype(np.int64) + LENGTH_EXTRA
        out = [None] * len(texts)
        order = np.argsort([len(t) for t in texts], kind="stable")  # similar lengths batch together
        # once for every batch: no weight changes during this call; greedy and beam search are done
        # with a step's logits before the next step, so one buffer holds them all
        project = dec.prepare_decoding(reuse_logits=True)
        for s in self._batches(len(texts), batch_size):
            idx = order[s]
            ids = src[idx]
            ids = ids[:, : int((ids != self.encoder.pad_id).sum(axis=1).max())]
            memory, mask = self._memory(ids)
            rules = decoding.Rules(banned, caps[idx], no_repeat_ngram, eos_id=tok.eos_id, min_length=1,
                                   max_run=MAX_RUN if no_repeat_ngram else 0)
            args = (dec, memory, mask, tok.bos_id, tok.eos_id, limit, rules)
            if beam > 1:
                found = decoding.beam_search(*args, beam=beam, length_penalty=length_penalty, project=project)
                for i, hyps in zip(idx, found):
                    out[i] = _best_texts(tok, hyps, n_best)
                continue
            rows = decoding.greedy(*args, project=project) if cache else decoding.greedy_uncached(*args)
            for i, text_ in zip(idx, tok.decode_batch(rows)):
                out[i] = [text_] if n_best > 1 else text_
        if beam > 1 and n_best == 1:
            out = [o[0] for o in out]
        return out[0] if single else out

    def _default_target(self, to):
        if to is None:
            if len(self.decoders) != 1:
                raise ValueError(f"say which decoder to use: to= one of {self.languages}")
            return next(iter(self.decoders))
        return to

    def _predict_other(self, dec, src_ids):
        memory, mask = self._memory(src_ids)
        if dec.input_kind == "representation":
            return dec.predict(pool(memory, mask), None)
        return dec.predict(memory, mask)

    def draw(self, text: Union[str, Sequence[str]], decoder: Optional[str] = None) -> np.ndarray:
        """Picture(s) for English text through a pixel decoder: (H, W, 3) uint8, or (N, H, W, 3) for a list."""
        from fastnet.image import draw

        return draw(self, text, decoder=decoder)

    def to_onnx(self, directory, decoders: Optional[Sequence[str]] = None):
        """Export the encoder, decoder steps and a greedy-decoding recipe to `directory`
        (pip install "fastnet[onnx]"); run them with fastnet.export.onnx_greedy_translate(directory, texts, to=...)."""
        from fastnet.export.onnx import translator_to_onnx

        return translator_to_onnx(self, directory, decoders=decoders)

    def represent(self, sentences: Union[str, Sequence[str]], batch_size: int = 256) -> np.ndarray:
        """The intermediate representation: one d_model vector per sentence, (N, d_model) float32."""
        texts = _as_texts(sentences, "represent")
        src = self.encode_source(texts)
        parts = []
        for s in self._batches(len(texts), batch_size):
            ids = src[s]
            ids = ids[:, : int((ids != self.encoder.pad_id).sum(axis=1).max())]
            parts.append(self.encoder.represent(ids))
        return np.concatenate(parts).astype(np.float32)

    def evaluate(self, src: Sequence[str], refs: Sequence[Any], to: Optional[str] = None, beam: int = 1,
                 batch_size: int = 256,
                 metrics: Sequence[str] = ("token_accuracy", "exact_match", "bleu", "chrf")) -> Dict[str, float]:
        """Scores on held-out pairs: token_accuracy (teacher-forced next-token accuracy on the first
        reference), exact_match (share of translations equal to a reference), and corpus BLEU and
        chrF from sacrebleu (refs[i] may be a string or a list of acceptable strings)."""
        src = _as_texts(src, "evaluate")
        to = self._default_target(to)
        refs = scoring.as_reference_lists(refs)
        if len(refs) != len(src):
            raise ValueError(f"evaluate: {len(src)} sentences but {len(refs)} references")
        if {"bleu", "chrf"} & set(metrics):
            scoring.sacrebleu_module()  # fail before the slow part when sacrebleu is missing
        hyps = self.translate(src, to=to, beam=beam, batch_size=batch_size, truncate=True)
        scores = {}
        if "token_accuracy" in metrics:
            scores["token_accuracy"] = teacher_forced_scores(self, src, {to: [r[0] for r in refs]})["token_accuracy"]
        if "exact_match" in metrics:
            scores["exact_match"] = scoring.exact_match(hyps, refs)
        if "bleu" in metrics:
            scores["bleu"] = scoring.bleu(hyps, refs)
        if "chrf" in metrics:
            scores["chrf"] = scoring.chrf(hyps, refs)
        return scores

    # ---- files ----
    def _modules(self):
        yield "encoder", self.encoder
        for name, dec in self.decoders.items():
            yield f"decoders.{name}", dec

    def _named_params(self):
        """(name, layer, param name) of every parameter, named encoder.<...> and decoders.<lang>.<...>."""
        return [(f"{prefix}.{qname}", owner, pname)
                for prefix, module in self._modules() for qname, owner, pname in module.named_params()]

    def state_arrays(self) -> Dict[str, np.ndarray]:
        """{name: array} of every parameter, named encoder.<...> and decoders.<lang>.<...>."""
        return {name: owner.params[pname] for name, owner, pname in self._named_params()}

    def quantize(self, mode: str = "int8") -> "Translator":
        """Quantise for inference: every weight matrix to int8 with one scale per
        output channel (activations per row, on the fly), embedding tables to int8
        rows in files. Translation (greedy and beam) runs on the int8 kernels;
        training is refused afterwards. Returns self."""
        _quantized.quantize_params(self._named_params(), self.store.dtype, mode)
        self.quantization = mode
        return self

    def _file_tensors(self):
        """What a model file holds: every parameter, or once quantised the int8
        ones (with scales) in place of their float32 copies."""
        arrays = self.state_arrays()
        if not self.quantization:
            return arrays
        named = self._named_params()
        skip = _quantized.quantized_names(named)
        out = {name: a for name, a in arrays.items() if name not in skip}
        out.update(_quantized.quantized_tensors(named))
        return out

    def config(self) -> Dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "seed": self.seed,
            "precision": self.precision,
            "frozen_encoder": self.frozen_encoder,
            "trained": sorted(self.trained),
            "encoder": self.encoder.config(),
            "src_tokenizer": self.src_tokenizer.to_dict(),
            "decoders": [{"name": name, "kind": type(dec).__name__, "config": dec.config(),
                          "tokenizer": None if self.tokenizers[name] is None else self.tokenizers[name].to_dict()}
                         for name, dec in self.decoders.items()],
        }

    def save(self, path):
        """Weights as safetensors, architecture, tokenizers and history as JSON metadata; written atomically."""
        metadata = {"fastnet_kind": "translator", "translator": self.config(),
                    "epochs_trained": self.epochs_trained, "history": self.history.to_dict(),
                    "quantization": self.quantization}
        io.save_safetensors_atomic(path, self._file_tensors(), metadata)
        return path

    @classmethod
    def load(cls, path) -> "Translator":
        return io.load_with(path, cls._from_file)

    @classmethod
    def _from_file(cls, tensors, metadata, path):
        if metadata.get("fastnet_kind") != "translator":
            raise io.ModelFileError(f"{path!r} is not a saved Translator (fastnet_kind="
                                    f"{metadata.get('fastnet_kind')!r}); load it with fn.load")
        cfg = metadata.get("translator")
        if not isinstance(cfg, dict) or cfg.get("format_version") != FORMAT_VERSION:
            raise io.ModelFileError(f"{path!r}: translator configuration missing or of an unsupported format "
                                    f"version (this fastnet reads version {FORMAT_VERSION})")
        try:
            floats = [a.dtype for a in tensors.values() if a.dtype.kind == "f"]
            tr = cls._from_config(cfg, dtype=floats[0] if floats else np.float32)
            tr.quantization = metadata.get("quantization")
            if tr.quantization is not None:
                _quantized.check_quantization(tr.quantization)
        except (KeyError, TypeError, ValueError) as exc:
            raise io.ModelFileError(f"{path!r}: cannot rebuild the translator from its metadata: {exc}") from None
        expected = {name: (a.shape, a.dtype) for name, a in tr.state_arrays().items()}
        if tr.quantization:
            named = tr._named_params()
            expected = {n: v for n, v in expected.items() if n not in _quantized.quantized_names(named)}
            expected.update(_quantized.expected_quantized(named))
        io.check_tensors(path, tensors, expected)
        for name, array in tr.state_arrays().items():
            if name in tensors:
                array[...] = tensors[name]
        if tr.quantization:
            _quantized.load_quantized(tr._named_params(), tensors)
        saved = metadata.get("history") or {}
        for i, epoch in enumerate(saved.get("epoch", [])):
            tr.history.append(epoch, {k: v[i] for k, v in saved.get("history", {}).items()})
        tr.epochs_trained = int(metadata.get("epochs_trained", 0))
        return tr

    @classmethod
    def _from_config(cls, cfg, dtype):
        encoder = Encoder(dtype=dtype, **cfg["encoder"])
        decoders, tokenizers = {}, {}
        for entry in cfg["decoders"]:
            kind = _decoder_kind(entry["kind"])
            if kind is None:
                raise ValueError(f"decoder {entry['name']!r} is of kind {entry['kind']!r}, unknown here; known "
                                 f"kinds: {sorted(DECODER_KINDS)} (see register_decoder_kind)")
            decoders[entry["name"]] = kind(dtype=dtype, **entry["config"])
            tok = entry["tokenizer"]
            tokenizers[entry["name"]] = None if tok is None else text.tokenizer_from_dict(tok)
        tr = cls(encoder, decoders, text.tokenizer_from_dict(cfg["src_tokenizer"]), tokenizers, seed=cfg["seed"],
                 precision=cfg.get("precision", "float32"))
        tr.frozen_encoder = bool(cfg["frozen_encoder"])
        tr.trained = set(cfg["trained"])
        return tr

    def summary(self) -> str:
        lines = [f"Translator: encoder d_model={self.d_model}, {self.encoder.n_layers} layers, "
                 f"{self.encoder.n_params():,} parameters" + (" (frozen)" if self.frozen_encoder else "")]
        for name, dec in self.decoders.items():
            lines.append(f"  decoder {name!r}: {type(dec).__name__}, {dec.n_params():,} parameters")
        lines.append(f"  total: {len(self.store):,} parameters")
        return "\n".join(lines)

    def __repr__(self):
        return f"Translator(d_model={self.d_model}, decoders={self.languages})"


io.register_loader("translator", Translator._from_file)
