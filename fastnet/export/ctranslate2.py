"""Export a trained Translator to CTranslate2 (for the side-by-side benchmark).

    from fastnet.export.ctranslate2 import translator_to_ctranslate2, ctranslate2_translate
    translator_to_ctranslate2(tr, "model-ct2/", to="sv")
    ctranslate2_translate(tr, "model-ct2/", ["cats are cute"], to="sv")

The model is described through CTranslate2's own Python spec API
(ctranslate2.specs.TransformerSpec): fastnet's sizes, pre-norm layers with a
final norm, layer-norm epsilon, the tanh-approximate GELU (or ReLU), the
sqrt(d_model) embedding scale and the sinusoid table itself (fastnet
interleaves sin and cos channels, so the table is copied rather than
regenerated). Weights are copied in, transposed from fastnet's (in, out) to
CTranslate2's (out, in); the fused q|k|v and k|v projections keep their
order; a tied output layer is written as its embedding table (a copy beside
the embedding's). Token ids become the strings "<blank>", "<s>", "</s>", "<unk>" (ids
0-3, fastnet's pad, bos, eos, unk) and "t<id>" for the rest, so text goes
through fastnet's tokenizers on both sides.

ctranslate2 is a bench/test dependency: it is imported only here, when used.
"""
import os

import numpy as np

SPECIALS = ("<blank>", "<s>", "</s>", "<unk>")


def _vocabulary(size):
    return list(SPECIALS[:size]) + [f"t{i}" for i in range(len(SPECIALS), size)]


def _linear(spec, layer):
    spec.weight = np.ascontiguousarray(layer.params["w"].T, np.float32)
    if "b" in layer.params:
        spec.bias = np.ascontiguousarray(layer.params["b"], np.float32)


def _norm(spec, norm):
    spec.gamma = np.asarray(norm.params["gamma"], np.float32)
    spec.beta = np.asarray(norm.params["beta"], np.float32)


def _ffn(spec, norm, ffn):
    _norm(spec.layer_norm, norm)
    _linear(spec.linear_0, ffn.up)
    _linear(spec.linear_1, ffn.down)


def _projection(spec, out):
    """The decoder's output layer; a tied one (TiedOutput: logits = x @ table.T + b) is written as
    its table, which is already CTranslate2's (out, in) layout, copied beside the embedding."""
    from fastnet.seq2seq.decoder import TiedOutput

    if isinstance(out, TiedOutput):
        spec.weight = np.ascontiguousarray(out.embedding.params["table"], np.float32)
        spec.bias = np.ascontiguousarray(out.params["b"], np.float32)
    else:
        _linear(spec, out)


def _embeddings(spec_embeddings, spec_positions, module):
    spec_embeddings.weight = np.asarray(module.embed.params["table"], np.float32)
    spec_positions.encodings = np.asarray(module.pos.table, np.float32)


def _check_exportable(tr, to):
    from fastnet.seq2seq.decoder import Decoder

    dec = tr.decoders.get(to)
    if not isinstance(dec, Decoder):
        raise ValueError(f"to={to!r} must name a text decoder of the translator (have: {tr.languages})")
    if tr.quantization:
        raise ValueError("export the float32 translator (quantize with CTranslate2's compute_type instead)")
    if tr.encoder.activation not in ("gelu", "relu"):
        raise ValueError(f"activation {tr.encoder.activation!r} has no CTranslate2 equivalent here")
    return dec


def translator_to_ctranslate2(tr, output_dir, to=None):
    """Write the encoder and decoder `to` as a CTranslate2 model directory; returns its path."""
    import ctranslate2
    from ctranslate2.specs import common_spec, transformer_spec

    to = tr._default_target(to)
    enc, dec = tr.encoder, _check_exportable(tr, to)
    activation = common_spec.Activation.GELUTanh if enc.activation == "gelu" else common_spec.Activation.RELU
    spec = transformer_spec.TransformerSpec.from_config((enc.n_layers, dec.n_layers), enc.n_heads,
                                                        pre_norm=True, activation=activation)
    spec.config.layer_norm_epsilon = float(enc.norm.eps)
    _embeddings(spec.encoder.embeddings[0], spec.encoder.position_encodings, enc)
    for layer_spec, layer in zip(spec.encoder.layer, enc.layers):
        _norm(layer_spec.self_attention.layer_norm, layer.norm1)
        _linear(layer_spec.self_attention.linear[0], layer.attn.qkv_proj)
        _linear(layer_spec.self_attention.linear[1], layer.attn.out_proj)
        _ffn(layer_spec.ffn, layer.norm2, layer.ffn)
    _norm(spec.encoder.layer_norm, enc.norm)
    _embeddings(spec.decoder.embeddings, spec.decoder.position_encodings, dec)
    for layer_spec, layer in zip(spec.decoder.layer, dec.layers):
        _norm(layer_spec.self_attention.layer_norm, layer.norm1)
        _linear(layer_spec.self_attention.linear[0], layer.self_attn.qkv_proj)
        _linear(layer_spec.self_attention.linear[1], layer.self_attn.out_proj)
        _norm(layer_spec.attention.layer_norm, layer.norm2)
        _linear(layer_spec.attention.linear[0], layer.cross_attn.q_proj)
        _linear(layer_spec.attention.linear[1], layer.cross_attn.kv_proj)
        _linear(layer_spec.attention.linear[2], layer.cross_attn.out_proj)
        _ffn(layer_spec.ffn, layer.norm3, layer.ffn)
    _norm(spec.decoder.layer_norm, dec.norm)
    _projection(spec.decoder.projection, dec.out)
    spec.register_source_vocabulary(_vocabulary(enc.vocab_size))
    spec.register_target_vocabulary(_vocabulary(dec.vocab_size))
    spec.config.unk_token, spec.config.bos_token, spec.config.eos_token = SPECIALS[3], SPECIALS[1], SPECIALS[2]
    spec.validate()
    spec.optimize(quantization=None)
    os.makedirs(output_dir, exist_ok=True)
    spec.save(str(output_dir))
    del ctranslate2  # imported to fail early, with its own message, when it is missing
    return str(output_dir)


def source_tokens(tr, texts):
    """The exported model's input: fastnet's source ids (ending in eos) as vocabulary strings."""
    vocab = _vocabulary(tr.encoder.vocab_size)
    ids = tr.encode_source(list(texts))
    return [[vocab[i] for i in row if i != tr.encoder.pad_id] for row in ids]


def decode_tokens(tr, to, hypotheses):
    """CTranslate2's output tokens back to text through fastnet's target tokenizer."""
    index = {t: i for i, t in enumerate(_vocabulary(tr.decoders[to].vocab_size))}
    tok = tr.tokenizers[to]
    return tok.decode_batch([[index[t] for t in hyp] + [tok.eos_id] for hyp in hypotheses])


def decoding_options(tr, to, beam=1, no_repeat_ngram=None):
    """translate_batch options that decode as fastnet's translate does (without its per-sentence
    length cap: compare with max_length_ratio large enough not to bind)."""
    from fastnet.seq2seq.translator import NO_REPEAT_NGRAM

    # fastnet's cap counts the eos it forces at max_len (at most max_len - 1 pieces); CTranslate2's does not
    return dict(beam_size=beam, max_decoding_length=tr.decoders[to].max_len - 1, disable_unk=True,
                suppress_sequences=[[SPECIALS[0]], [SPECIALS[1]]],
                no_repeat_ngram_size=NO_REPEAT_NGRAM if no_repeat_ngram is None else no_repeat_ngram)


def ctranslate2_translate(tr, model_dir, texts, to=None, beam=1, compute_type="float32", threads=1,
                          batch_size=256, translator=None, no_repeat_ngram=None):
    """Translate with the exported model (a ctranslate2.Translator is made unless given)."""
    import ctranslate2

    to = tr._default_target(to)
    if translator is None:
        translator = ctranslate2.Translator(str(model_dir), device="cpu", compute_type=compute_type,
                                            intra_threads=threads, inter_threads=1)
    results = translator.translate_batch(source_tokens(tr, texts), max_batch_size=batch_size,
                                         **decoding_options(tr, to, beam, no_repeat_ngram))
    return decode_tokens(tr, to, [r.hypotheses[0] for r in results])
