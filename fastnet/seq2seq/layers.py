"""Transformer building blocks: each a Layer with forward and backward.

Shapes: a batch of sequences is (B, T, D) with D = d_model. Every layer
caches what its backward needs during `forward`, so one layer instance is
used once per forward pass; `backward` adds parameter gradients into
`layer.grads` (views into a ParameterStore once one is built) and returns
the gradient with respect to its input.

Attention keeps the (B, T, H, dh) layout of a (B, T, D) projection reshaped,
so splitting into heads costs no transpose. Projections are fastnet.layers.Dense
(see `projection`) and dropout is fastnet.layers.Dropout with its own seed:
one layer family for the feed-forward networks and the transformer.
"""
import math
from typing import Optional, Tuple, Union

import numpy as np

from fastnet import initializers, ops
from fastnet.checks import positive_int
from fastnet.layers.base import Layer, check_affordable
from fastnet.layers.core import Dense, Dropout


def _float_dtype(dtype):
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    return dtype


def _check_last_dim(x, d, what):
    if x.ndim < 2 or x.shape[-1] != d:
        raise ValueError(f"{what}: expected an input of shape (..., {d}), got {x.shape}")


def projection(d_in: int, d_out: int, activation: str = "identity", bias: bool = True, seed: int = 0,
               dtype=np.float32) -> Dense:
    """A Dense layer as the transformer blocks use it: Glorot-uniform weights drawn from its own
    `seed` when built, parameters of `dtype`, and "linear" as its name in model files."""
    layer = Dense(d_in, d_out, activation=activation, init="glorot_uniform", use_bias=bias,
                  dtype=_float_dtype(dtype))
    layer.name = "linear"
    layer.initialize(np.random.default_rng(seed))
    return layer


class Embedding(Layer):
    """Token ids (B, T) -> vectors (B, T, D), scaled by sqrt(D) as in the original transformer."""

    quantizable_rows = ("table",)  # int8 rows in quantised model files

    def __init__(self, vocab_size: int, d_model: int, seed: int = 0, dtype=np.float32):
        super().__init__()
        self.vocab_size, self.d_model = int(vocab_size), int(d_model)
        check_affordable(self.vocab_size * self.d_model, f"an embedding of {self.vocab_size} x {self.d_model}")
        table = initializers.embedding_normal((self.vocab_size, self.d_model), np.random.default_rng(seed),
                                              self.vocab_size, self.d_model)
        self.add_param("table", table.astype(_float_dtype(dtype)))
        self.scale = math.sqrt(self.d_model)
        self._ids = None

    def forward(self, ids: np.ndarray, training: bool = False) -> np.ndarray:
        ids = np.asarray(ids)
        if ids.dtype.kind not in "iu":
            raise TypeError(f"Embedding: token ids must be integers, got {ids.dtype}")
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise ValueError(f"Embedding: token ids must lie in [0, {self.vocab_size}), "
                             f"got values in [{ids.min()}, {ids.max()}]")
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        self._ids = ids
        out = ops.embedding(ids, self.params["table"])
        out *= self.params["table"].dtype.type(self.scale)
        return out

    def backward(self, dy: np.ndarray) -> None:
        self.check_trainable()
        dy = dy * dy.dtype.type(self.scale)
        ops.embedding_backward(self._ids, dy, self.vocab_size, out=self.grads["table"])
        return None

    def config(self):
        return {"vocab_size": self.vocab_size, "d_model": self.d_model}


def sinusoid_table(max_len, d_model):
    """Position p, channel 2i: sin(p / 10000^(2i/D)); channel 2i+1: cos of the same."""
    pos = np.arange(max_len, dtype=np.float64)[:, None]
    rates = np.exp(-math.log(10000.0) * (np.arange(0, d_model, 2, dtype=np.float64) / d_model))
    table = np.zeros((max_len, d_model))
    table[:, 0::2] = np.sin(pos * rates)
    table[:, 1::2] = np.cos(pos * rates[: d_model // 2])
    return table


class PositionalEncoding(Layer):
    """Adds the fixed sinusoidal position signal; `offset` shifts positions (incremental decoding)."""

    def __init__(self, max_len: int, d_model: int, dtype=np.float32):
        super().__init__()
        self.max_len, self.d_model = int(max_len), int(d_model)
        self.table = sinusoid_table(self.max_len, self.d_model).astype(_float_dtype(dtype))

    def forward(self, x: np.ndarray, training: bool = False, offset: int = 0) -> np.ndarray:
        T = x.shape[1]
        if offset + T > self.max_len:
            raise ValueError(f"sequence of length {offset + T} is longer than max_len={self.max_len}; "
                             f"build the model with a larger max_len or shorten the input")
        return x + self.table[offset:offset + T].astype(x.dtype, copy=False)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return dy

    def config(self):
        return {"max_len": self.max_len, "d_model": self.d_model}


class LayerNorm(Layer):
    """Normalise the last axis to zero mean and unit variance, then scale by gamma and shift by beta."""

    def __init__(self, d_model: int, eps: float = 1e-5, dtype=np.float32):
        super().__init__()
        self.d_model, self.eps = int(d_model), float(eps)
        dtype = _float_dtype(dtype)
        self.add_param("gamma", np.ones(self.d_model, dtype))
        self.add_param("beta", np.zeros(self.d_model, dtype))
        self._cache = None

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        _check_last_dim(x, self.d_model, "LayerNorm")
        x2 = np.ascontiguousarray(x.reshape(-1, self.d_model))
        y, mean, rstd = ops.layer_norm(x2, self.params["gamma"], self.params["beta"], self.eps)
        self._cache = (x2, mean, rstd)
        return y.reshape(x.shape)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        x2, mean, rstd = self._cache
        dx, dgamma, dbeta = ops.layer_norm_backward(
            np.ascontiguousarray(dy.reshape(-1, self.d_model)), x2, self.params["gamma"], mean, rstd)
        self.grads["gamma"] += dgamma
        self.grads["beta"] += dbeta
        return dx.reshape(dy.shape)

    def config(self):
        return {"d_model": self.d_model, "eps": self.eps}


class KVCache:
    """Keys and values of the positions decoded so far, for one self-attention layer.

    Stored (B, capacity, H, dh); `length` positions are filled.
    """

    def __init__(self, batch, capacity, n_heads, d_head, dtype):
        self.k = np.zeros((batch, capacity, n_heads, d_head), dtype)
        self.v = np.zeros((batch, capacity, n_heads, d_head), dtype)
        self.length = 0

    def append(self, k, v):
        t = k.shape[1]
        if self.length + t > self.k.shape[1]:
            raise ValueError(f"key/value cache is full ({self.k.shape[1]} positions)")
        self.k[:, self.length:self.length + t] = k
        self.v[:, self.length:self.length + t] = v
        self.length += t
        return self.k[:, :self.length], self.v[:, :self.length]

    def reorder(self, index):
        """Keep batch rows `index`: greedy decoding drops finished sentences, beam search picks
        which hypotheses survive (rows may repeat).

        Only the filled positions move, within the same buffers: indexing the whole
        capacity copied every empty position too, on every call (about 5% of an int8
        greedy run). The gather makes a copy first, so repeated rows are safe.
        """
        rows, n = len(index), self.length
        if rows > self.k.shape[0]:  # more rows than the buffers hold: new buffers
            self.k, self.v = self.k[index], self.v[index]
            return
        self.k[:rows, :n] = self.k[index, :n]
        self.v[:rows, :n] = self.v[index, :n]
        self.k, self.v = self.k[:rows], self.v[:rows]


class MultiHeadAttention(Layer):
    """Scaled dot-product attention over `n_heads` heads.

    Self-attention (cross=False) projects queries, keys and values with one
    fused (D, 3D) matrix; cross-attention projects queries from x and keys
    and values from the encoder memory with a fused (D, 2D) matrix.
    """

    def __init__(self, d_model: int, n_heads: int, cross: bool = False, causal: bool = False, seed: int = 0,
                 dtype=np.float32):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}")
        self.d_model, self.n_heads, self.cross, self.causal = int(d_model), int(n_heads), bool(cross), bool(causal)
        self.d_head = self.d_model // self.n_heads
        seeds = np.random.SeedSequence(seed).generate_state(3)
        D = self.d_model
        if self.cross:
            self.q_proj = projection(D, D, seed=seeds[0], dtype=dtype)
            self.kv_proj = projection(D, 2 * D, seed=seeds[1], dtype=dtype)
        else:
            self.qkv_proj = projection(D, 3 * D, seed=seeds[0], dtype=dtype)
        self.out_proj = projection(D, D, seed=seeds[2], dtype=dtype)
        self.name = "cross_attention" if self.cross else "self_attention"
        self._cache = None

    def sublayers(self):
        if self.cross:
            return [self.q_proj, self.kv_proj, self.out_proj]
        return [self.qkv_proj, self.out_proj]

    def _heads(self, x, n):
        """(B, T, n*D) projection -> n (B, T, H, dh) views; the kernels accept strided batch/time axes."""
        B, T = x.shape[:2]
        x = x.reshape(B, T, n, self.n_heads, self.d_head)
        return [x[:, :, i] for i in range(n)]

    def project_memory(self, memory: np.ndarray) -> np.ndarray:
        """Keys and values of the encoder memory (cross-attention) as one (B, S, 2, H, dh) array:
        [:, :, 0] the keys, [:, :, 1] the values, views of the fused projection (no copy)."""
        B, S = memory.shape[:2]
        return self.kv_proj.forward(memory).reshape(B, S, 2, self.n_heads, self.d_head)

    def forward(self, x: np.ndarray, memory: Optional[np.ndarray] = None,
                key_padding_mask: Optional[np.ndarray] = None, training: bool = False) -> np.ndarray:
        _check_last_dim(x, self.d_model, "MultiHeadAttention")
        if self.cross:
            if memory is None:
                raise ValueError("cross-attention needs the encoder memory")
            _check_last_dim(memory, self.d_model, "MultiHeadAttention memory")
            (q,) = self._heads(self.q_proj.forward(x), 1)
            kv = self.project_memory(memory)
            k, v = kv[:, :, 0], kv[:, :, 1]
        else:
            q, k, v = self._heads(self.qkv_proj.forward(x), 3)
        ctx, probs = ops.attention(q, k, v, key_padding_mask=key_padding_mask, causal=self.causal)
        self._cache = (q, k, v, probs)
        B, T = x.shape[:2]
        return self.out_proj.forward(ctx.reshape(B, T, self.d_model))

    def forward_rows(self, x: np.ndarray, rows: np.ndarray, key_padding_mask: np.ndarray) -> np.ndarray:
        """Self-attention for inference on some positions only: x (n, D) holds the flat positions
        `rows` of a (B, T) batch whose other positions are padding (key_padding_mask True). The
        projections run on those rows; attention reads the (B, T) layout with zeros at the padding,
        which the mask keeps out. forward's outputs at `rows`, bit for bit."""
        B, T = key_padding_mask.shape
        qkv = np.zeros((B * T, 3 * self.d_model), x.dtype)
        qkv[rows] = self.qkv_proj.forward(x)
        q, k, v = self._heads(qkv.reshape(B, T, 3 * self.d_model), 3)
        ctx, _ = ops.attention(q, k, v, key_padding_mask=key_padding_mask, causal=self.causal)
        return self.out_proj.forward(ctx.reshape(B * T, self.d_model)[rows])

    def backward(self, dy: np.ndarray) -> Union[np.ndarray, Tuple[np.ndarray, np.ndarray]]:
        """Returns dx for self-attention, (dx, dmemory) for cross-attention."""
        q, k, v, probs = self._cache
        B, T = dy.shape[:2]
        H, dh, D = self.n_heads, self.d_head, self.d_model
        dctx = self.out_proj.backward(dy).reshape(q.shape)
        # the kernel writes dq, dk, dv straight into the fused projection's gradient layout
        if self.cross:
            dq = np.empty(q.shape, dy.dtype)
            dkv = np.empty((B, k.shape[1], 2, H, dh), dy.dtype)
            ops.attention_backward(dctx, q, k, v, probs, dq=dq, dk=dkv[:, :, 0], dv=dkv[:, :, 1])
            dx = self.q_proj.backward(dq.reshape(B, T, D))
            return dx, self.kv_proj.backward(dkv.reshape(B, k.shape[1], 2 * D))
        dqkv = np.empty((B, T, 3, H, dh), dy.dtype)
        ops.attention_backward(dctx, q, k, v, probs, dq=dqkv[:, :, 0], dk=dqkv[:, :, 1], dv=dqkv[:, :, 2])
        return self.qkv_proj.backward(dqkv.reshape(B, T, 3 * D))

    # ---- incremental decoding (no gradients) ----
    def new_cache(self, batch: int, capacity: int) -> KVCache:
        return KVCache(batch, capacity, self.n_heads, self.d_head, self.qkv_proj.params["w"].dtype)

    def step(self, x: np.ndarray, cache: Optional[KVCache] = None,
             memory_kv: Optional[np.ndarray] = None,
             key_padding_mask: Optional[np.ndarray] = None, memory_rows: Optional[np.ndarray] = None) -> np.ndarray:
        """Attend from the new positions x (B, t, D) using cached keys/values.

        Self-attention appends this step's keys and values to `cache`;
        cross-attention uses `memory_kv` (M, S, 2, H, dh) from `project_memory`, row
        memory_rows[b] for row b of x (row b itself when None).
        """
        B, T = x.shape[:2]
        if self.cross:
            (q,) = self._heads(self.q_proj.forward(x), 1)
            k, v = memory_kv[:, :, 0], memory_kv[:, :, 1]
            ctx, _ = ops.attention(q, k, v, key_padding_mask=key_padding_mask, kv_rows=memory_rows)
        else:
            q, k_new, v_new = self._heads(self.qkv_proj.forward(x), 3)
            k, v = cache.append(k_new, v_new)
            ctx, _ = ops.attention(q, k, v, causal=self.causal)
        return self.out_proj.forward(ctx.reshape(B, T, self.d_model))

    def config(self):
        return {"d_model": self.d_model, "n_heads": self.n_heads, "cross": self.cross, "causal": self.causal}


class FeedForward(Layer):
    """Position-wise dense(D -> d_ff, activation) then dense(d_ff -> D)."""

    def __init__(self, d_model: int, d_ff: int, activation: str = "gelu", seed: int = 0, dtype=np.float32):
        super().__init__()
        if activation not in ("gelu", "relu"):
            raise ValueError(f"feed-forward activation must be 'gelu' or 'relu', got {activation!r}")
        s1, s2 = np.random.SeedSequence(seed).generate_state(2)
        self.d_model, self.d_ff, self.activation = int(d_model), int(d_ff), activation
        self.up = projection(d_model, d_ff, activation=activation, seed=s1, dtype=dtype)
        self.down = projection(d_ff, d_model, seed=s2, dtype=dtype)

    def sublayers(self):
        return [self.up, self.down]

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        # (no training flag to the Dense layers: it would reuse output buffers, one per row count,
        # and a batch of sentences has a new row count B*T at nearly every step)
        return self.down.forward(self.up.forward(x))

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return self.up.backward(self.down.backward(dy))

    def config(self):
        return {"d_model": self.d_model, "d_ff": self.d_ff, "activation": self.activation}


class TransformerEncoderLayer(Layer):
    """Pre-norm block: x + drop(attn(ln(x))), then x + drop(ffn(ln(x)))."""

    def __init__(self, d_model, n_heads, d_ff, dropout=0.1, activation="gelu", seed=0, dtype=np.float32):
        super().__init__()
        s = np.random.SeedSequence(seed).generate_state(4)
        self.norm1 = LayerNorm(d_model, dtype=dtype)
        self.attn = MultiHeadAttention(d_model, n_heads, seed=s[0], dtype=dtype)
        self.drop1 = Dropout(dropout, seed=s[1])
        self.norm2 = LayerNorm(d_model, dtype=dtype)
        self.ffn = FeedForward(d_model, d_ff, activation, seed=s[2], dtype=dtype)
        self.drop2 = Dropout(dropout, seed=s[3])

    def sublayers(self):
        return [self.norm1, self.attn, self.norm2, self.ffn]

    def forward(self, x: np.ndarray, pad_mask: Optional[np.ndarray] = None, training: bool = False) -> np.ndarray:
        a = self.attn.forward(self.norm1.forward(x), key_padding_mask=pad_mask, training=training)
        x = x + self.drop1.forward(a, training)
        f = self.ffn.forward(self.norm2.forward(x), training)
        return x + self.drop2.forward(f, training)

    def forward_rows(self, x: np.ndarray, rows: np.ndarray, pad_mask: np.ndarray) -> np.ndarray:
        """forward for inference on the real positions only: x (n, D) holds the flat positions `rows`
        of the (B, T) batch, the ones pad_mask leaves out. Norms, projections and feed-forward are
        row by row, so skipping the padding changes no bit of the rest (Encoder.encode)."""
        x = x + self.attn.forward_rows(self.norm1.forward(x), rows, pad_mask)
        return x + self.ffn.forward(self.norm2.forward(x))

    def backward(self, dy: np.ndarray) -> np.ndarray:
        dx = dy + self.norm2.backward(self.ffn.backward(self.drop2.backward(dy)))
        return dx + self.norm1.backward(self.attn.backward(self.drop1.backward(dx)))


class TransformerDecoderLayer(Layer):
    """Pre-norm block: causal self-attention, cross-attention to the memory, feed-forward; each residual."""

    def __init__(self, d_model, n_heads, d_ff, dropout=0.1, activation="gelu", seed=0, dtype=np.float32):
        super().__init__()
        s = np.random.SeedSequence(seed).generate_state(6)
        self.norm1 = LayerNorm(d_model, dtype=dtype)
        self.self_attn = MultiHeadAttention(d_model, n_heads, causal=True, seed=s[0], dtype=dtype)
        self.drop1 = Dropout(dropout, seed=s[1])
        self.norm2 = LayerNorm(d_model, dtype=dtype)
        self.cross_attn = MultiHeadAttention(d_model, n_heads, cross=True, seed=s[2], dtype=dtype)
        self.drop2 = Dropout(dropout, seed=s[3])
        self.norm3 = LayerNorm(d_model, dtype=dtype)
        self.ffn = FeedForward(d_model, d_ff, activation, seed=s[4], dtype=dtype)
        self.drop3 = Dropout(dropout, seed=s[5])

    def sublayers(self):
        return [self.norm1, self.self_attn, self.norm2, self.cross_attn, self.norm3, self.ffn]

    def forward(self, x: np.ndarray, memory: np.ndarray, memory_mask: Optional[np.ndarray] = None,
                training: bool = False) -> np.ndarray:
        a = self.self_attn.forward(self.norm1.forward(x), training=training)
        x = x + self.drop1.forward(a, training)
        c = self.cross_attn.forward(self.norm2.forward(x), memory, key_padding_mask=memory_mask, training=training)
        x = x + self.drop2.forward(c, training)
        f = self.ffn.forward(self.norm3.forward(x), training)
        return x + self.drop3.forward(f, training)

    def backward(self, dy: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Returns (dx, dmemory)."""
        dx = dy + self.norm3.backward(self.ffn.backward(self.drop3.backward(dy)))
        dq, dmemory = self.cross_attn.backward(self.drop2.backward(dx))
        dx = dx + self.norm2.backward(dq)
        dx = dx + self.norm1.backward(self.self_attn.backward(self.drop1.backward(dx)))
        return dx, dmemory

    def step(self, x: np.ndarray, cache: KVCache, memory_kv: np.ndarray,
             memory_mask: Optional[np.ndarray] = None, memory_rows: Optional[np.ndarray] = None) -> np.ndarray:
        """Incremental forward of new positions x (B, t, D) with cached keys/values (inference).
        For float32 weights Decoder.step runs the same step (one position) in one C call
        (ops.DecoderStep, with one_call_step's weights)."""
        x = x + self.self_attn.step(self.norm1.forward(x), cache=cache)
        x = x + self.cross_attn.step(self.norm2.forward(x), memory_kv=memory_kv, key_padding_mask=memory_mask,
                                     memory_rows=memory_rows)
        return x + self.ffn.forward(self.norm3.forward(x))

    def one_call_step(self) -> Optional["ops.DecoderLayerStep"]:
        """This layer's weights as Decoder's one-call step reads them (ops.DecoderLayerStep), as they
        are now: made per decoding run. None for float64 weights, which take step()."""
        if self.norm1.params["gamma"].dtype != np.float32:
            return None
        norms = [(n.params["gamma"], n.params["beta"], n.eps) for n in (self.norm1, self.norm2, self.norm3)]
        sa, ca, ffn = self.self_attn, self.cross_attn, self.ffn
        denses = [_step_weights(d) for d in (sa.qkv_proj, sa.out_proj, ca.q_proj, ca.out_proj, ffn.up, ffn.down)]
        return ops.DecoderLayerStep(sa.d_model, sa.n_heads, ffn.d_ff, norms, denses)


def _step_weights(dense):
    """A Dense layer's weights as ops.DecoderLayerStep takes them: (kind, weights, bias, activation, alpha)."""
    bias = dense.params["b"] if dense.use_bias else None
    if dense.quantized:
        matrix = dense.quantized["w"]
        return "int8", (matrix.packed, matrix.scale), bias, dense.activation, dense.alpha
    return dense.precision, dense.params["w"], bias, dense.activation, dense.alpha


def store_stack_hyperparameters(stack, kind, vocab_size, d_model, n_heads, n_layers, d_ff, max_len,
                                dropout, activation, pad_id, seed):
    """Check the sizes of an Encoder/Decoder stack (each >= 1) and store them as plain attributes."""
    for key, value in (("vocab_size", vocab_size), ("d_model", d_model), ("n_heads", n_heads),
                       ("n_layers", n_layers), ("d_ff", d_ff), ("max_len", max_len)):
        positive_int(value, f"{kind}: {key}")
    stack.vocab_size, stack.d_model, stack.n_heads = int(vocab_size), int(d_model), int(n_heads)
    stack.n_layers, stack.d_ff, stack.max_len = int(n_layers), int(d_ff), int(max_len)
    d = stack.d_model  # embedding, position table and per layer at least attention and feed-forward:
    check_affordable((stack.vocab_size + stack.max_len) * d + stack.n_layers * (4 * d * d + 2 * d * stack.d_ff),
                     f"a {kind} of {stack.n_layers} layers, d_model={d}")
    stack.dropout, stack.activation, stack.pad_id, stack.seed = float(dropout), activation, int(pad_id), int(seed)


def build_stack(stack, block, embed_seed, dropout_seed, block_seeds, dtype):
    """The parts an Encoder and a Decoder share, after store_stack_hyperparameters: the token
    embedding, the positions, the input dropout, one `block` per seed and the final norm."""
    stack.embed = Embedding(stack.vocab_size, stack.d_model, seed=embed_seed, dtype=dtype)
    stack.pos = PositionalEncoding(stack.max_len, stack.d_model, dtype=dtype)
    stack.drop = Dropout(stack.dropout, seed=dropout_seed)
    stack.layers = [block(stack.d_model, stack.n_heads, stack.d_ff, stack.dropout, stack.activation, seed=s,
                          dtype=dtype) for s in block_seeds]
    stack.norm = LayerNorm(stack.d_model, dtype=dtype)
