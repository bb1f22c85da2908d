"""fn.Encoder: token ids -> memory (one vector per position) -> representation (one per sentence)."""
from typing import Optional

import numpy as np

from fastnet.layers.base import Layer
from fastnet.seq2seq.layers import (
    TransformerEncoderLayer,
    _float_dtype,
    build_stack,
    store_stack_hyperparameters,
)


def check_ids(ids, what):
    """Token ids must be a non-empty 2-D integer array (B, T)."""
    ids = np.asarray(ids)
    if ids.ndim != 2:
        raise ValueError(f"{what}: token ids must be 2-D (batch, time), got shape {ids.shape}")
    if ids.dtype.kind not in "iu":
        raise TypeError(f"{what}: token ids must be integers, got {ids.dtype}")
    if ids.shape[0] == 0 or ids.shape[1] == 0:
        raise ValueError(f"{what}: empty batch of token ids, shape {ids.shape}")
    return ids


class Encoder(Layer):
    """A stack of pre-norm transformer encoder layers.

    forward(ids (B, T), pad_mask (B, T) bool, True = padding) -> memory (B, T, D).
    When pad_mask is None, positions holding `pad_id` are padding.
    """

    def __init__(self, vocab_size, d_model=128, n_heads=4, n_layers=2, d_ff=512, max_len=64,
                 dropout=0.1, activation="gelu", pad_id=0, seed=0, dtype=np.float32):
        super().__init__()
        store_stack_hyperparameters(self, "Encoder", vocab_size, d_model, n_heads, n_layers, d_ff, max_len,
                                    dropout, activation, pad_id, seed)
        dtype = _float_dtype(dtype)
        seeds = np.random.SeedSequence([self.seed, 1]).generate_state(self.n_layers + 2)
        build_stack(self, TransformerEncoderLayer, seeds[0], seeds[1], seeds[2:], dtype)

    def sublayers(self):
        return [self.embed, *self.layers, self.norm]

    def pad_mask(self, ids: np.ndarray) -> np.ndarray:
        return np.asarray(ids) == self.pad_id

    def _checked(self, ids, pad_mask):
        ids = check_ids(ids, "Encoder")
        if pad_mask is None:
            pad_mask = self.pad_mask(ids)
        pad_mask = np.ascontiguousarray(pad_mask, dtype=bool)
        if pad_mask.shape != ids.shape:
            raise ValueError(f"Encoder: pad_mask shape {pad_mask.shape} does not match ids shape {ids.shape}")
        if pad_mask.all(axis=1).any():
            row = int(np.flatnonzero(pad_mask.all(axis=1))[0])
            raise ValueError(f"Encoder: sentence {row} of the batch is all padding (empty input)")
        return ids, pad_mask

    def forward(self, ids: np.ndarray, pad_mask: Optional[np.ndarray] = None, training: bool = False) -> np.ndarray:
        return self._forward(*self._checked(ids, pad_mask), training)

    def _forward(self, ids, pad_mask, training):
        x = self.drop.forward(self.pos.forward(self.embed.forward(ids)), training)
        for layer in self.layers:
            x = layer.forward(x, pad_mask, training)
        return self.norm.forward(x)

    def encode(self, ids: np.ndarray, pad_mask: Optional[np.ndarray] = None) -> np.ndarray:
        """forward for inference, computed on the real positions only: the same memory there, bit
        for bit, and zeros at the padding (which attention and the decoder never read). Everything
        but attention works row by row, so padded rows were pure waste: batches of 16 and 32 random
        Tatoeba sentences are 38% and 44% padding, and encode runs 1.3x and 1.4x faster than forward
        on them (one thread). Without padding it is forward."""
        ids, pad_mask = self._checked(ids, pad_mask)
        if not pad_mask.any():
            return self._forward(ids, pad_mask, False)
        B, T = ids.shape
        rows = np.flatnonzero(~pad_mask.reshape(-1))
        x = self.pos.forward(self.embed.forward(ids)).reshape(B * T, self.d_model)[rows]
        for layer in self.layers:
            x = layer.forward_rows(x, rows, pad_mask)
        memory = np.zeros((B * T, self.d_model), x.dtype)
        memory[rows] = self.norm.forward(x)
        return memory.reshape(B, T, self.d_model)

    def backward(self, dmemory: np.ndarray) -> None:
        dx = self.norm.backward(dmemory)
        for layer in reversed(self.layers):
            dx = layer.backward(dx)
        self.embed.backward(self.drop.backward(dx))
        return None

    def represent(self, ids: np.ndarray, pad_mask: Optional[np.ndarray] = None) -> np.ndarray:
        """One vector per sentence: the memory averaged over its non-padding positions, (B, D)."""
        ids = check_ids(ids, "Encoder.represent")
        if pad_mask is None:
            pad_mask = self.pad_mask(ids)
        return pool(self.forward(ids, pad_mask), pad_mask)

    def config(self):
        return {"vocab_size": self.vocab_size, "d_model": self.d_model, "n_heads": self.n_heads,
                "n_layers": self.n_layers, "d_ff": self.d_ff, "max_len": self.max_len,
                "dropout": self.dropout, "activation": self.activation, "pad_id": self.pad_id,
                "seed": self.seed}


def pool(memory, pad_mask):
    """Mean of memory (B, T, D) over the positions where pad_mask is False -> (B, D)."""
    keep = (~pad_mask).astype(memory.dtype)
    counts = keep.sum(axis=1, keepdims=True)
    return np.einsum("btd,bt->bd", memory, keep) / counts


def pool_backward(dpooled, pad_mask):
    """Gradient of `pool` with respect to memory: dpooled / count at every kept position."""
    keep = (~pad_mask).astype(dpooled.dtype)
    keep /= keep.sum(axis=1, keepdims=True)
    return keep[:, :, None] * dpooled[:, None, :]
