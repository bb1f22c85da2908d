"""Write fastnet models as ONNX graphs (opset 17), for onnxruntime and other ONNX runtimes.

    network_to_onnx(net, "digits.onnx", proba=True)   # also: net.to_onnx(path, proba=True)
    translator_to_onnx(tr, "exported/")              # also: tr.to_onnx(directory)

A Network becomes one graph: input "input" (batch, n_features) -> output
"output" (raw outputs: logits for classifiers) or, with proba=True,
"probabilities" (softmax or sigmoid, what predict_proba returns). Dense is
MatMul + Add + its activation, Activation its own node(s), Dropout nothing
(it is the identity at inference).

A Translator becomes a directory: `encoder.onnx` (source ids -> memory, its
padding mask and the pooled representation), one `decoder_<name>.onnx` per
text decoder (a decoder step: target prefix + memory -> logits of the next
token), `recipe.json` (token ids, lengths, tokenizers: everything greedy
decoding needs) and `translate.py` (fastnet/export/onnx_runtime.py: greedy
decoding with numpy and onnxruntime only).

The `onnx` package is imported only here, when exporting.
"""
import json
import math
import os
import re

import numpy as np

from fastnet import __version__

OPSET = 17  # LayerNormalization is an ONNX operator from opset 17 on
INSTALL_HINT = 'pip install "fastnet[onnx]"'
# fastnet's GELU is the tanh approximation written as x * sigmoid(2u),
# u = sqrt(2/pi) * (x + 0.044715 x^3) (fastnet/reference/core.py, csrc/activations.c).
_GELU_C = math.sqrt(2.0 / math.pi)
_GELU_K = 0.044715
# Added to the attention score of a masked key: exp() of it is exactly 0 in
# float32 and float64, and unlike -inf it never turns a row into NaN.
_MASKED_SCORE = -1e9
RECIPE_FORMAT = "fastnet-onnx-translator"
RECIPE_VERSION = 1


def _onnx():
    try:
        import onnx
    except ImportError as exc:
        raise ImportError(f"exporting to ONNX needs the onnx package: {INSTALL_HINT}") from exc
    return onnx


# ---- a small graph builder -------------------------------------------------------
class _Graph:
    """Nodes and initializers of one ONNX graph, with unique generated names."""

    def __init__(self, onnx, dtype):
        self.onnx = onnx
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise TypeError(f"ONNX export supports float32 and float64 models, got {self.dtype}")
        self.elem_type = onnx.helper.np_dtype_to_tensor_dtype(self.dtype)
        self.nodes, self.initializers = [], []
        self._used = set()

    def _name(self, hint):
        name, k = hint, 1
        while name in self._used:
            k += 1
            name = f"{hint}_{k}"
        self._used.add(name)
        return name

    def const(self, array, hint):
        """An initializer holding `array` (float arrays take the model's dtype)."""
        array = np.asarray(array)
        if array.dtype.kind == "f":
            array = array.astype(self.dtype)
        name = self._name(hint)
        # np.array, not np.ascontiguousarray: that one turns 0-d scalars into shape (1,)
        self.initializers.append(self.onnx.numpy_helper.from_array(np.array(array, order="C"), name))
        return name

    def scalar(self, value, hint="c"):
        return self.const(np.array(value, dtype=self.dtype), hint)

    def ints(self, values, hint="shape"):
        return self.const(np.asarray(values, dtype=np.int64), hint)

    def op(self, op_type, inputs, hint=None, output=None, **attrs):
        out = output if output is not None else self._name(hint or op_type.lower())
        self._used.add(out)
        self.nodes.append(self.onnx.helper.make_node(op_type, list(inputs), [out], name=self._name("n_" + out),
                                                     **attrs))
        return out

    # ---- layers ----
    def activation(self, x, name, alpha=0.01, hint="act"):
        if name in (None, "identity", "linear"):
            return x
        if name == "step":
            return self.op("Cast", [self.op("Greater", [x, self.scalar(0.0, "zero")], hint + "_pos")], hint,
                           to=self.elem_type)
        if name == "sigmoid":
            return self.op("Sigmoid", [x], hint)
        if name == "tanh":
            return self.op("Tanh", [x], hint)
        if name == "relu":
            return self.op("Relu", [x], hint)
        if name == "leaky_relu":
            return self.op("LeakyRelu", [x], hint, alpha=float(alpha))
        if name == "gelu":
            cube = self.op("Mul", [self.op("Mul", [x, x], hint + "_sq"), x], hint + "_cube")
            inner = self.op("Add", [x, self.op("Mul", [cube, self.scalar(_GELU_K, "gelu_k")], hint + "_kx3")],
                            hint + "_inner")
            gate = self.op("Sigmoid", [self.op("Mul", [inner, self.scalar(2.0 * _GELU_C, "gelu_2c")],
                                               hint + "_2u")], hint + "_gate")
            return self.op("Mul", [x, gate], hint)
        if name == "silu":
            return self.op("Mul", [x, self.op("Sigmoid", [x], hint + "_gate")], hint)
        if name == "softmax":
            return self.op("Softmax", [x], hint, axis=-1)
        raise ValueError(f"activation {name!r} has no ONNX export")

    def linear(self, x, w, b, activation=None, alpha=0.01, hint="dense"):
        """activation(x @ w + b) over the last axis of x (any number of leading axes)."""
        y = self.op("MatMul", [x, self.const(w, hint + ".w")], hint + "_mm")
        if b is not None:
            y = self.op("Add", [y, self.const(b, hint + ".b")], hint + "_lin")
        return self.activation(y, activation, alpha, hint)

    def layer_norm(self, x, gamma, beta, eps, hint="ln"):
        return self.op("LayerNormalization", [x, self.const(gamma, hint + ".gamma"), self.const(beta, hint + ".beta")],
                       hint, axis=-1, epsilon=float(eps))

    # ---- the model ----
    def tensor(self, name, elem_type, shape):
        return self.onnx.helper.make_tensor_value_info(name, elem_type, shape)

    def model(self, inputs, outputs, doc, metadata):
        helper = self.onnx.helper
        graph = helper.make_graph(self.nodes, "fastnet", inputs, outputs, initializer=self.initializers,
                                  doc_string=doc)
        opsets = [helper.make_opsetid("", OPSET)]
        model = helper.make_model(graph, opset_imports=opsets, producer_name="fastnet",
                                  producer_version=__version__)
        # The oldest IR version that carries this opset, so older runtimes load the file too.
        model.ir_version = helper.find_min_ir_version_for(opsets)
        helper.set_model_props(model, {k: str(v) for k, v in metadata.items()})
        self.onnx.checker.check_model(model)
        return model


def _write_atomic(path, data):
    """Write bytes to path all or nothing (an old file survives any failure)."""
    from fastnet.io import atomic_write

    with atomic_write(path) as f:
        f.write(data)
    return os.fspath(path)


def _save(model, path):
    return _write_atomic(path, model.SerializeToString())


# ---- Network ----------------------------------------------------------------------
def network_graph(net, proba=False):
    """The ONNX ModelProto of a Network (see network_to_onnx)."""
    from fastnet.layers import Activation, Dense, Dropout

    onnx = _onnx()
    g = _Graph(onnx, net.dtype)
    x = "input"
    for i, layer in enumerate(net.layers):
        if isinstance(layer, Dense):
            b = layer.params["b"] if layer.use_bias else None
            x = g.linear(x, layer.params["w"], b, layer.activation, layer.alpha, hint=f"layer{i}")
        elif isinstance(layer, Activation):
            x = g.activation(x, layer.activation, layer.alpha, hint=f"layer{i}")
        elif isinstance(layer, Dropout):
            continue  # the identity at inference
        else:
            raise TypeError(f"layer {i} ({layer!r}) has no ONNX export; exportable layers: Dense, Activation, "
                            f"Dropout")
    output = "output"
    if proba:
        output = "probabilities"
        if net.loss.name == "softmax_cross_entropy":
            x = g.op("Softmax", [x], "softmax", axis=-1)
        elif net.loss.name == "binary_cross_entropy":
            x = g.op("Sigmoid", [x], "sigmoid")
        else:
            raise ValueError(f"proba=True needs a classification loss (softmax_cross_entropy or "
                             f"binary_cross_entropy); this network uses {net.loss.name!r}")
    g.op("Identity", [x], output=output)
    inputs = [g.tensor("input", g.elem_type, ["batch", net.n_features])]
    outputs = [g.tensor(output, g.elem_type, ["batch", net.n_outputs])]
    doc = (f"fastnet Network with {len(net.layers)} layers, loss {net.loss.name}; "
           f"{'probabilities (predict_proba)' if proba else 'raw outputs'}")
    metadata = {"fastnet_kind": "network", "fastnet_version": __version__, "loss": net.loss.name,
                "output": "probabilities" if proba else "raw",
                "architecture": json.dumps(net.architecture())}
    return g.model(inputs, outputs, doc, metadata)


def network_to_onnx(net, path, proba=False):
    """Write `net` as an ONNX file at `path`; returns the path.

    The graph takes "input" (batch, n_features) in the network's dtype and
    returns "output" (the raw outputs, as Network._output) or, with
    proba=True, "probabilities" (what predict_proba returns).
    """
    return _save(network_graph(net, proba=proba), path)


# ---- Translator ---------------------------------------------------------------------
def _weights(linear):
    """(w, b or None) of a transformer projection, a Dense (or a TiedOutput, whose w is the embedding's table.T)."""
    w = linear.params["w"] if "w" in linear.params else np.ascontiguousarray(linear.weight)
    return w, linear.params.get("b")


def _part(b, start, stop):
    return None if b is None else b[start:stop]


class _TransformerGraph(_Graph):
    """Embeddings, attention and transformer blocks of fastnet.seq2seq, as ONNX nodes.

    Tensors are (B, T, D); attention splits D into (H, dh) heads, scores are
    q.k / sqrt(dh), masked keys get _MASKED_SCORE before the softmax.
    """

    def embed(self, ids, module, hint):
        """Token embedding * sqrt(D) + sinusoidal positions 0..T-1."""
        table = self.const(module.embed.params["table"], hint + ".embed")
        x = self.op("Gather", [table, ids], hint + "_tok", axis=0)
        x = self.op("Mul", [x, self.scalar(module.embed.scale, hint + ".embed_scale")], hint + "_scaled")
        length = self.op("Gather", [self.op("Shape", [ids], hint + "_ids_shape"), self.ints(1, "one")],
                         hint + "_len", axis=0)
        positions = self.op("Slice", [self.const(module.pos.table, hint + ".positions"), self.ints([0], "zero_i"),
                                      self.op("Unsqueeze", [length, self.ints([0], "axis0")], hint + "_len1"),
                                      self.ints([0], "axis0")], hint + "_pos")
        return self.op("Add", [x, positions], hint + "_x")

    def mask_bias(self, pad_mask, hint):
        """(B, S) bool padding mask -> (B, 1, 1, S) additive score bias."""
        bias = self.op("Where", [pad_mask, self.scalar(_MASKED_SCORE, "masked"), self.scalar(0.0, "zero")],
                       hint + "_bias")
        return self.op("Unsqueeze", [bias, self.ints([1, 2], "axes12")], hint + "_bias4")

    def causal_bias(self, x, hint):
        """(T, T) bias: _MASKED_SCORE where the key comes after the query."""
        length = self.op("Gather", [self.op("Shape", [x], hint + "_shape"), self.ints(1, "one")], hint + "_T", axis=0)
        pos = self.op("Range", [self.ints(0, "zero_s"), length, self.ints(1, "one")], hint + "_range")
        later = self.op("Greater", [self.op("Unsqueeze", [pos, self.ints([0], "axis0")], hint + "_keys"),
                                    self.op("Unsqueeze", [pos, self.ints([1], "axis1")], hint + "_queries")],
                        hint + "_later")
        return self.op("Where", [later, self.scalar(_MASKED_SCORE, "masked"), self.scalar(0.0, "zero")], hint)

    def _heads(self, x, n_heads, d_head, hint, keys=False):
        """(B, T, D) -> (B, H, T, dh), or (B, H, dh, T) for keys (ready for q @ k^T)."""
        x = self.op("Reshape", [x, self.ints([0, 0, n_heads, d_head], f"heads_{n_heads}x{d_head}")], hint + "_split")
        return self.op("Transpose", [x], hint + "_heads", perm=[0, 2, 3, 1] if keys else [0, 2, 1, 3])

    def attention(self, x, attn, hint, memory=None, bias=None):
        """Multi-head attention of fastnet.seq2seq.layers.MultiHeadAttention (self or cross)."""
        D, H, dh = attn.d_model, attn.n_heads, attn.d_head
        if attn.cross:
            q = self.linear(x, *_weights(attn.q_proj), hint=hint + ".q")
            w, b = _weights(attn.kv_proj)
            k = self.linear(memory, w[:, :D], _part(b, 0, D), hint=hint + ".k")
            v = self.linear(memory, w[:, D:], _part(b, D, 2 * D), hint=hint + ".v")
        else:
            # the fused (D, 3D) projection's columns are [q | k | v], each split into heads
            w, b = _weights(attn.qkv_proj)
            q = self.linear(x, w[:, :D], _part(b, 0, D), hint=hint + ".q")
            k = self.linear(x, w[:, D:2 * D], _part(b, D, 2 * D), hint=hint + ".k")
            v = self.linear(x, w[:, 2 * D:], _part(b, 2 * D, 3 * D), hint=hint + ".v")
        q, k, v = (self._heads(q, H, dh, hint + "_q"), self._heads(k, H, dh, hint + "_k", keys=True),
                   self._heads(v, H, dh, hint + "_v"))
        qk = self.op("MatMul", [q, k], hint + "_qk")
        scores = self.op("Mul", [qk, self.scalar(1.0 / math.sqrt(dh), "inv_sqrt_dh")], hint + "_scores")
        if bias is not None:
            scores = self.op("Add", [scores, bias], hint + "_masked")
        probs = self.op("Softmax", [scores], hint + "_probs", axis=-1)
        ctx = self.op("MatMul", [probs, v], hint + "_ctx_heads")
        ctx = self.op("Transpose", [ctx], hint + "_ctx_t", perm=[0, 2, 1, 3])
        ctx = self.op("Reshape", [ctx, self.ints([0, 0, D], f"merge_{D}")], hint + "_ctx")
        return self.linear(ctx, *_weights(attn.out_proj), hint=hint + ".out")

    def feed_forward(self, x, ffn, hint):
        y = self.linear(x, *_weights(ffn.up), ffn.up.activation, hint=hint + ".up")
        return self.linear(y, *_weights(ffn.down), ffn.down.activation, hint=hint + ".down")

    def norm(self, x, ln, hint):
        return self.layer_norm(x, ln.params["gamma"], ln.params["beta"], ln.eps, hint)

    def encoder_layer(self, x, layer, bias, hint):
        x = self.op("Add", [x, self.attention(self.norm(x, layer.norm1, hint + ".norm1"), layer.attn, hint + ".attn",
                                              bias=bias)], hint + "_res1")
        return self.op("Add", [x, self.feed_forward(self.norm(x, layer.norm2, hint + ".norm2"), layer.ffn,
                                                    hint + ".ffn")], hint + "_res2")

    def decoder_layer(self, x, layer, memory, causal, memory_bias, hint):
        x = self.op("Add", [x, self.attention(self.norm(x, layer.norm1, hint + ".norm1"), layer.self_attn,
                                              hint + ".self_attn", bias=causal)], hint + "_res1")
        x = self.op("Add", [x, self.attention(self.norm(x, layer.norm2, hint + ".norm2"), layer.cross_attn,
                                              hint + ".cross_attn", memory=memory, bias=memory_bias)], hint + "_res2")
        return self.op("Add", [x, self.feed_forward(self.norm(x, layer.norm3, hint + ".norm3"), layer.ffn,
                                                    hint + ".ffn")], hint + "_res3")


def encoder_graph(encoder):
    """Encoder: "src_ids" (B, S) int64 -> "memory" (B, S, D), "memory_mask" (B, S) bool (True = padding),
    "representation" (B, D) (memory averaged over the non-padding positions, as Encoder.represent)."""
    onnx = _onnx()
    dtype = encoder.embed.params["table"].dtype
    g = _TransformerGraph(onnx, dtype)
    mask = g.op("Equal", ["src_ids", g.ints(encoder.pad_id, "pad_id")], output="memory_mask")
    bias = g.mask_bias(mask, "src")
    x = g.embed("src_ids", encoder, "enc")
    for i, layer in enumerate(encoder.layers):
        x = g.encoder_layer(x, layer, bias, f"enc.layer{i}")
    memory = g.norm(x, encoder.norm, "enc.norm")
    g.op("Identity", [memory], output="memory")
    keep = g.op("Unsqueeze", [g.op("Cast", [g.op("Not", [mask], "keep_b")], "keep_f", to=g.elem_type),
                              g.ints([2], "axis2")], "keep")
    total = g.op("ReduceSum", [g.op("Mul", [memory, keep], "kept"), g.ints([1], "axis1")], "total", keepdims=0)
    count = g.op("ReduceSum", [keep, g.ints([1], "axis1")], "count", keepdims=0)
    g.op("Div", [total, count], output="representation")
    D = encoder.d_model
    inputs = [g.tensor("src_ids", onnx.TensorProto.INT64, ["batch", "src_len"])]
    outputs = [g.tensor("memory", g.elem_type, ["batch", "src_len", D]),
               g.tensor("memory_mask", onnx.TensorProto.BOOL, ["batch", "src_len"]),
               g.tensor("representation", g.elem_type, ["batch", D])]
    metadata = {"fastnet_kind": "translator_encoder", "fastnet_version": __version__,
                "config": json.dumps(encoder.config())}
    return g.model(inputs, outputs, "fastnet translator encoder", metadata)


def decoder_step_graph(decoder):
    """One decoding step: "tokens" (B, T) int64 (bos and the tokens so far), "memory" (B, S, D),
    "memory_mask" (B, S) bool -> "logits" (B, V) of the token after the last one.

    The prefix is recomputed every step (no key/value cache inputs), which keeps
    the graph's interface to three inputs; sentences are short.
    """
    onnx = _onnx()
    g = _TransformerGraph(onnx, decoder.dtype)
    x = g.embed("tokens", decoder, "dec")
    causal = g.causal_bias(x, "causal")
    memory_bias = g.mask_bias("memory_mask", "mem")
    for i, layer in enumerate(decoder.layers):
        x = g.decoder_layer(x, layer, "memory", causal, memory_bias, f"dec.layer{i}")
    last = g.op("Gather", [x, g.ints(-1, "last")], "last_position", axis=1)  # only the newest position matters
    y = g.norm(last, decoder.norm, "dec.norm")
    logits = g.linear(y, *_weights(decoder.out), decoder.out.activation, hint="dec.out")
    g.op("Identity", [logits], output="logits")
    D, V = decoder.d_model, decoder.vocab_size
    inputs = [g.tensor("tokens", onnx.TensorProto.INT64, ["batch", "tgt_len"]),
              g.tensor("memory", g.elem_type, ["batch", "src_len", D]),
              g.tensor("memory_mask", onnx.TensorProto.BOOL, ["batch", "src_len"])]
    outputs = [g.tensor("logits", g.elem_type, ["batch", V])]
    metadata = {"fastnet_kind": "translator_decoder_step", "fastnet_version": __version__,
                "config": json.dumps(decoder.config())}
    return g.model(inputs, outputs, "fastnet translator decoder step (next-token logits)", metadata)


def _file_stem(name, taken):
    stem = "decoder_" + re.sub(r"[^A-Za-z0-9_-]", "_", name)
    candidate, k = stem, 1
    while candidate in taken:
        k += 1
        candidate = f"{stem}_{k}"
    taken.add(candidate)
    return candidate


def translator_to_onnx(tr, directory, decoders=None):
    """Export a Translator into `directory` (created if needed); returns the recipe as a dict.

    decoders: names of the text decoders to export (default: every text decoder;
    decoders of other kinds, e.g. pixels, are listed under "not_exported").
    """
    from fastnet.seq2seq.decoder import Decoder
    from fastnet.seq2seq.translator import LENGTH_EXTRA, MAX_LENGTH_RATIO, MAX_RUN, NO_REPEAT_NGRAM

    _onnx()
    directory = os.fspath(directory)
    names = list(tr.decoders) if decoders is None else list(decoders)
    for name in names:
        if name not in tr.decoders:
            raise KeyError(f"unknown decoder {name!r}; this translator has {list(tr.decoders)}")
        if decoders is not None and not isinstance(tr.decoders[name], Decoder):
            raise TypeError(f"decoder {name!r} is a {type(tr.decoders[name]).__name__}; only text decoders "
                            f"(fastnet.Decoder) have an ONNX export")
    os.makedirs(directory, exist_ok=True)
    _save(encoder_graph(tr.encoder), os.path.join(directory, "encoder.onnx"))
    enc_tok = tr.src_tokenizer
    recipe = {
        "format": RECIPE_FORMAT, "version": RECIPE_VERSION, "fastnet_version": __version__, "opset": OPSET,
        "decoding": "greedy",
        # the rules fastnet's translate follows (fastnet.seq2seq.decoding): never unk/pad/bos, at most
        # max_length_ratio x the source tokens + length_extra, no repeated n-gram of no_repeat_ngram tokens,
        # at least min_length tokens, no token more than max_run times in a row
        "rules": {"max_length_ratio": MAX_LENGTH_RATIO, "length_extra": LENGTH_EXTRA,
                  "no_repeat_ngram": NO_REPEAT_NGRAM, "min_length": 1, "max_run": MAX_RUN},
        "encoder": {"file": "encoder.onnx", "max_len": tr.encoder.max_len, "d_model": tr.encoder.d_model,
                    "pad_id": enc_tok.pad_id, "eos_id": enc_tok.eos_id, "add_bos": False, "add_eos": True,
                    "tokenizer": enc_tok.to_dict(),
                    "inputs": ["src_ids"], "outputs": ["memory", "memory_mask", "representation"]},
        "decoders": {}, "not_exported": {},
    }
    taken = set()
    for name in names:
        dec = tr.decoders[name]
        if not isinstance(dec, Decoder):
            recipe["not_exported"][name] = f"{type(dec).__name__} is not a text decoder"
            continue
        tok = tr.tokenizers[name]
        filename = _file_stem(name, taken) + ".onnx"
        _save(decoder_step_graph(dec), os.path.join(directory, filename))
        recipe["decoders"][name] = {
            "file": filename, "bos_id": tok.bos_id, "eos_id": tok.eos_id, "pad_id": tok.pad_id,
            "max_len": dec.max_len, "vocab_size": dec.vocab_size, "tokenizer": tok.to_dict(),
            "banned": sorted({tok.unk_id, tok.pad_id, tok.bos_id}),
            "inputs": ["tokens", "memory", "memory_mask"], "outputs": ["logits"],
        }
    if not recipe["decoders"]:
        raise ValueError("this translator has no text decoder to export")
    runner = os.path.join(os.path.dirname(os.path.abspath(__file__)), "onnx_runtime.py")
    with open(runner, "rb") as f:
        _write_atomic(os.path.join(directory, "translate.py"), f.read())
    _write_atomic(os.path.join(directory, "recipe.json"),
                  json.dumps(recipe, indent=1, ensure_ascii=False).encode("utf-8"))
    return recipe
