"""fn.Decoder: encoder memory + target tokens -> next-token logits; incremental decoding with a KV cache.

The decoder interface the Translator relies on (any decoder kind, e.g. one
that turns the representation into pixels, implements input_kind, loss,
backward_loss and config/params; the other two are optional):

    input_kind                      "memory": receives the encoder memory (B, S, D) and its
                                    padding mask (B, S) bool, True = pad;
                                    "representation": receives the pooled sentence vectors
                                    (B, D) (mask is None).
    loss(context, mask, target, training=False, label_smoothing=0.0) -> (loss, stats)
                                    forward pass and mean loss on a batch of targets; `stats`
                                    is a dict of summable counts (e.g. correct/count tokens).
    backward_loss(loss_scale=1.0) -> dcontext
                                    after loss(training=True): gradient of the loss (times
                                    loss_scale; a kind may omit the argument, which is then never
                                    passed) with respect to the context; parameter gradients are
                                    added to `grads`.
    loss_units(target) -> int       optional: how many terms the mean loss of `target` averages
                                    (tokens, pixel values); data-parallel training weighs each
                                    rank's part by it (by rows when a kind does not say).
    begin_training(context, target) optional: called before a training step with the whole
                                    batch's targets (a fresh pixel decoder starts from their mean).
    config() / params               constructor arguments and parameters, for saving.

Text decoders (this class) also provide start/step/reorder for greedy and beam search;
their targets are token ids (B, T) = bos, tokens..., eos, pad... from the target tokenizer.
Other kinds provide predict(context, mask) -> outputs, which Translator.translate returns.
"""
from typing import Dict, Optional, Tuple

import numpy as np

from fastnet import ops
from fastnet.layers.base import Layer
from fastnet.seq2seq.encoder import check_ids
from fastnet.seq2seq.layers import (
    TransformerDecoderLayer,
    _float_dtype,
    build_stack,
    projection,
    store_stack_hyperparameters,
)


class DecoderState:
    """What incremental decoding carries between steps: per-layer caches, the memory's keys/values
    and, for each decoding row, the memory row it reads."""

    def __init__(self, caches, memory_kv, memory_mask, memory_rows, project, one_call=None):
        self.caches = caches
        self.memory_kv = memory_kv
        self.memory_mask = memory_mask
        # The memory's keys and values stay where start() put them: rows that finish or beams that
        # reorder change only which memory row each decoding row reads (ops.attention's kv_rows),
        # where gathering the keys and values at every reorder copied them all.
        self.memory_rows = memory_rows
        self.project = project  # hidden states -> logits, for this run (see TiedOutput.decoding_projection)
        # the whole step as one C call (ops.DecoderStep), or None: layer by layer
        self.one_call = one_call
        self.position = 0

    def reorder(self, index):
        """Keep batch rows `index` (greedy drops finished rows; beam search picks hypotheses)."""
        for cache in self.caches:
            cache.reorder(index)
        self.memory_rows = self.memory_rows[index]


def rows_projection(d_in, d_out, product, reuse_logits=False):
    """project(x): logits (..., d_out) of hidden states x (..., d_in), from product(rows, out), which
    multiplies the rows of x (m, d_in) into out (m, d_out), or into a new array when out is None.
    reuse_logits: every call writes into one buffer, made by the first call and again by a call with
    more rows than it has, so each call's logits are overwritten by the next call's. For a decoding
    loop, which is done with a step's logits before the next step: at a batch of 256 sentences and
    4000 subwords each step's 4 MB of fresh logits were page-faulted in anew (about 5% of an int8
    translation's time)."""
    buffer = None

    def project(x):
        nonlocal buffer
        rows = np.ascontiguousarray(x.reshape(-1, d_in))
        if reuse_logits and buffer is not None and len(rows) <= len(buffer):
            logits = product(rows, buffer[:len(rows)])
        else:
            logits = product(rows, None)
            if reuse_logits:
                buffer = logits
        return logits.reshape(*x.shape[:-1], d_out)

    return project


class TiedOutput(Layer):
    """The output projection that shares its weights with the input embedding (Press & Wolf 2017):
    logits = x @ table.T + b. It owns only the bias; the table stays the Embedding's one tensor,
    read at every call (a ParameterStore rebinds it), and its gradient gets both uses added."""

    activation = "identity"

    def __init__(self, embedding, dtype=np.float32):
        super().__init__()
        self.embedding = embedding
        self.d_in, self.d_out = embedding.d_model, embedding.vocab_size
        self.add_param("b", np.zeros(self.d_out, dtype))
        self._x = None

    @property
    def weight(self):
        """The (d_model, vocab) matrix this layer multiplies by: a transposed view of the table."""
        return self.embedding.params["table"].T

    def forward(self, x, training=False):
        x2 = np.ascontiguousarray(x.reshape(-1, self.d_in))
        self._x = x2
        if self.embedding.quantized:  # int8 rows, one scale per row: one scale per logit
            y = self.embedding.quantized["table"].transposed().dense(x2, self.params["b"])
        else:
            y = ops.matmul(x2, self.embedding.params["table"], trans_b=True, precision=self.precision)
            y += self.params["b"]
        return y.reshape(*x.shape[:-1], self.d_out)

    def decoding_projection(self, reuse_logits=False):
        """forward for one decoding run, during which the table cannot change: the logits from the
        table packed once as the GEMM reads it (ops.pack_weights), with the bias added in the
        product's epilogue. forward multiplies by the table transposed, which packs the whole table
        (4000 x 128 for a real vocabulary) at every step: half of the logits' time for a batch of 8,
        a fifth for 64. A plain (d_model, vocab) copy read in place still took 1.1-1.5x the packed
        one's time (its panels' rows are 16 KB apart). The same sums in the same order: bitwise
        forward's logits. bf16 and float64 tables multiply a transposed copy (ops.transpose); int8
        ones their int8 transpose. reuse_logits: see rows_projection."""
        bias = self.params["b"]
        if self.embedding.quantized:
            matrix = self.embedding.quantized["table"].transposed()
            return rows_projection(self.d_in, self.d_out, lambda x, out: matrix.dense(x, bias, out=out),
                                   reuse_logits)
        table, precision = self.embedding.params["table"], self.precision
        if table.dtype == np.float32 and precision == "float32":
            packed = ops.pack_weights(table, trans=True)
            return rows_projection(self.d_in, self.d_out, lambda x, out: ops.dense_packed(x, packed, bias, out=out),
                                   reuse_logits)
        weight = ops.transpose(table)
        return rows_projection(self.d_in, self.d_out,
                               lambda x, out: ops.dense(x, weight, bias, precision=precision, out=out), reuse_logits)

    def backward(self, dy):
        dy2 = np.ascontiguousarray(dy.reshape(-1, self.d_out))
        table = self.embedding.params["table"]
        ops.matmul(dy2, self._x, trans_a=True, out=self.embedding.grads["table"], beta=1.0,
                   precision=self.precision)
        self.grads["b"] += dy2.sum(axis=0)
        return ops.matmul(dy2, table, precision=self.precision).reshape(*dy.shape[:-1], self.d_in)


class Decoder(Layer):
    """A stack of pre-norm transformer decoder layers and an output projection to the vocabulary."""

    input_kind = "memory"

    def __init__(self, vocab_size, d_model=128, n_heads=4, n_layers=2, d_ff=512, max_len=64,
                 dropout=0.1, activation="gelu", pad_id=0, seed=0, dtype=np.float32, tie_embeddings=False):
        super().__init__()
        store_stack_hyperparameters(self, "Decoder", vocab_size, d_model, n_heads, n_layers, d_ff, max_len,
                                    dropout, activation, pad_id, seed)
        self.tie_embeddings = bool(tie_embeddings)
        dtype = _float_dtype(dtype)
        seeds = np.random.SeedSequence([self.seed, 2]).generate_state(self.n_layers + 3)
        build_stack(self, TransformerDecoderLayer, seeds[0], seeds[1], seeds[3:], dtype)
        # tied: the output projection is the embedding table, transposed (one tensor, saved once)
        self.out = (TiedOutput(self.embed, dtype=dtype) if self.tie_embeddings
                    else projection(self.d_model, self.vocab_size, seed=seeds[2], dtype=dtype))
        self._loss_cache = None

    def sublayers(self):
        return [self.embed, *self.layers, self.norm, self.out]

    @property
    def dtype(self):
        return self.embed.params["table"].dtype

    # ---- teacher forcing ----
    def forward(self, tgt_in: np.ndarray, memory: np.ndarray, memory_mask: Optional[np.ndarray] = None,
                training: bool = False) -> np.ndarray:
        """Logits (B, T, V) for every next token given the target prefix tgt_in (B, T)."""
        tgt_in = check_ids(tgt_in, "Decoder")
        if memory.ndim != 3 or memory.shape[0] != tgt_in.shape[0] or memory.shape[2] != self.d_model:
            raise ValueError(f"Decoder: memory must be (batch={tgt_in.shape[0]}, time, {self.d_model}), "
                             f"got {memory.shape}")
        x = self.drop.forward(self.pos.forward(self.embed.forward(tgt_in)), training)
        for layer in self.layers:
            x = layer.forward(x, memory, memory_mask, training)
        return self.out.forward(self.norm.forward(x))

    def backward(self, dlogits: np.ndarray) -> np.ndarray:
        """Gradient of the logits -> gradient of the memory (B, S, D)."""
        dx = self.norm.backward(self.out.backward(dlogits))
        dmemory = None
        for layer in reversed(self.layers):
            dx, dm = layer.backward(dx)
            dmemory = dm if dmemory is None else dmemory + dm
        self.embed.backward(self.drop.backward(dx))
        return dmemory

    def loss(self, context: np.ndarray, mask: Optional[np.ndarray], target: np.ndarray, training: bool = False,
             label_smoothing: float = 0.0) -> Tuple[float, Dict[str, int]]:
        """Mean cross-entropy of predicting target[:, 1:] from target[:, :-1]; pads count for nothing."""
        target = check_ids(target, "Decoder.loss")
        if target.shape[1] < 2:
            raise ValueError(f"Decoder.loss: targets need at least bos and one token, got shape {target.shape}")
        tgt_in, labels = target[:, :-1], np.ascontiguousarray(target[:, 1:], dtype=np.int64)
        logits = self.forward(tgt_in, context, mask, training)
        flat = logits.reshape(-1, self.vocab_size)
        loss, dlogits = ops.softmax_cross_entropy(
            flat, labels.reshape(-1), ignore_index=self.pad_id, label_smoothing=label_smoothing,
            return_grad=training)
        counted = labels != self.pad_id
        correct = (flat.argmax(axis=1).reshape(labels.shape) == labels) & counted
        self._loss_cache = dlogits.reshape(logits.shape) if training else None
        return float(loss), {"correct": int(correct.sum()), "count": int(counted.sum())}

    def loss_units(self, target: np.ndarray) -> int:
        """How many terms the mean loss of `target` averages: its labelled (non-pad) next tokens."""
        return int((np.asarray(target)[:, 1:] != self.pad_id).sum())

    def backward_loss(self, loss_scale: float = 1.0) -> np.ndarray:
        """After loss(training=True): the gradient of the loss times loss_scale w.r.t. the memory."""
        if self._loss_cache is None:
            raise RuntimeError("Decoder.backward_loss() needs a preceding loss(..., training=True)")
        dlogits, self._loss_cache = self._loss_cache, None
        if loss_scale != 1.0:
            dlogits *= dlogits.dtype.type(loss_scale)
        return self.backward(dlogits)

    # ---- incremental decoding ----
    def prepare_decoding(self, reuse_logits=False):
        """The logits projection for decoding while the weights stay as they are (one translate
        call, however many batches): tied, it holds a copy of the table (see
        TiedOutput.decoding_projection), which costs about a millisecond to make. reuse_logits:
        each call's logits overwrite the previous call's (rows_projection)."""
        if self.tie_embeddings:
            return self.out.decoding_projection(reuse_logits)
        return rows_projection(self.d_model, self.vocab_size, self.out.infer, reuse_logits)

    def start(self, memory: np.ndarray, memory_mask: Optional[np.ndarray] = None,
              capacity: Optional[int] = None, project=None, rows=None) -> DecoderState:
        """Begin decoding: precompute the memory's keys/values in every layer, allocate caches.
        project: from prepare_decoding() (made here when None). rows: the memory row each decoding
        row reads (beam search: each sentence's row once per hypothesis); all of them in order when None."""
        capacity = self.max_len if capacity is None else min(int(capacity), self.max_len)
        rows = np.arange(memory.shape[0]) if rows is None else np.asarray(rows, dtype=np.int64)
        caches = [layer.self_attn.new_cache(len(rows), capacity) for layer in self.layers]
        memory_kv = [layer.cross_attn.project_memory(memory) for layer in self.layers]
        mask = None if memory_mask is None else np.ascontiguousarray(memory_mask, dtype=bool)
        return DecoderState(caches, memory_kv, mask, rows, project or self.prepare_decoding(), self._one_call_step())

    def _one_call_step(self):
        """ops.DecoderStep over this decoder's weights as they are now (float32), or None (float64)."""
        layers = [layer.one_call_step() for layer in self.layers]
        if None in layers:
            return None
        norm = self.norm
        return ops.DecoderStep(layers, self.embed.params["table"], self.embed.scale, self.pos.table,
                               (norm.params["gamma"], norm.params["beta"], norm.eps))

    def step(self, state: DecoderState, ids: np.ndarray) -> np.ndarray:
        """Feed one token per row (B,) at the next position; returns logits (B, V) for the token after it."""
        if state.one_call is not None:  # float32: the same bits as below, without ~45 calls from Python
            x = state.one_call.step(ids, state.position, state.caches, state.memory_kv, state.memory_mask,
                                    state.memory_rows)
            state.position += 1
            return state.project(x)
        ids = np.asarray(ids, dtype=np.int64).reshape(-1, 1)
        x = self.pos.forward(self.embed.forward(ids), offset=state.position)
        for layer, cache, kv in zip(self.layers, state.caches, state.memory_kv):
            x = layer.step(x, cache, kv, state.memory_mask, state.memory_rows)
        state.position += 1
        return state.project(self.norm.forward(x))[:, 0]

    def config(self):
        return {"vocab_size": self.vocab_size, "d_model": self.d_model, "n_heads": self.n_heads,
                "n_layers": self.n_layers, "d_ff": self.d_ff, "max_len": self.max_len,
                "dropout": self.dropout, "activation": self.activation, "pad_id": self.pad_id,
                "seed": self.seed, "tie_embeddings": self.tie_embeddings}
