"""NumPy reference of the transformer kernels: embedding, layer norm,
attention, dropout and the residual add, forward and backward.

Layouts match `fastnet.ops`: attention takes q (B, Tq, H, dh) and k, v
(B, Tk, H, dh), i.e. a (B, T, D) projection reshaped to (B, T, H, D/H), and
returns out (B, Tq, H, dh) with probs (B, H, Tq, Tk).
"""
import numpy as np

__all__ = [
    "embedding", "embedding_backward",
    "layer_norm", "layer_norm_backward",
    "attention", "attention_backward",
    "dropout", "dropout_backward", "dropout_mask",
    "add", "add_",
    "beam_candidates",
]

_MASK64 = (1 << 64) - 1


def _check_ids(ids, vocab_size):
    ids = np.asarray(ids)
    if not np.issubdtype(ids.dtype, np.integer):
        raise TypeError(f"ids must have an integer dtype, got {ids.dtype}")
    bad = (ids < 0) | (ids >= vocab_size)
    if bad.any():
        pos = np.unravel_index(int(np.flatnonzero(bad)[0]), ids.shape)
        raise ValueError(f"id {int(ids[pos])} at position {tuple(int(p) for p in pos)} "
                         f"is outside the vocabulary [0, {vocab_size})")
    return ids.astype(np.int64)


def embedding(ids, table):
    """table[ids]: shape ids.shape + (D,)."""
    ids = _check_ids(ids, table.shape[0])
    return table[ids]


def embedding_backward(ids, dout, vocab_size, out=None):
    """dtable (V, D): every row of dout added into the row of its id."""
    ids = _check_ids(ids, vocab_size)
    dim = dout.shape[-1]
    if out is None:
        out = np.zeros((vocab_size, dim), dtype=dout.dtype)
    np.add.at(out, ids.reshape(-1), dout.reshape(ids.size, dim))
    return out


def layer_norm(x, gamma, beta, eps=1e-5):
    """Normalise over the last axis: (y, mean, rstd), mean/rstd shape x.shape[:-1]."""
    mean = x.mean(axis=-1)
    var = ((x - mean[..., None]) ** 2).mean(axis=-1)
    rstd = (1.0 / np.sqrt(var + eps)).astype(x.dtype)
    xhat = (x - mean[..., None]) * rstd[..., None]
    return xhat * gamma + beta, mean, rstd


def layer_norm_backward(dy, x, gamma, mean, rstd):
    """(dx, dgamma, dbeta) of layer_norm."""
    dim = x.shape[-1]
    xhat = (x - mean[..., None]) * rstd[..., None]
    g = dy * gamma
    dx = rstd[..., None] * (g - g.mean(axis=-1, keepdims=True)
                            - xhat * (g * xhat).mean(axis=-1, keepdims=True))
    dgamma = (dy * xhat).reshape(-1, dim).sum(axis=0)
    dbeta = dy.reshape(-1, dim).sum(axis=0)
    return dx, dgamma, dbeta


def _allowed_keys(batch, tq, tk, key_padding_mask, causal):
    """(B, 1, Tq, Tk) bool: which key each query may attend."""
    allowed = np.ones((batch, 1, tq, tk), dtype=bool)
    if key_padding_mask is not None:
        allowed &= ~np.asarray(key_padding_mask, dtype=bool)[:, None, None, :]
    if causal:
        i = np.arange(tq)[:, None]
        j = np.arange(tk)[None, :]
        allowed &= (j <= i + (tk - tq))[None, None]
    return allowed


def _weighted_keys(weights, rows):
    """out[b, i, h, :] = sum over j of weights[b, h, i, j] * rows[b, j, h, :],
    leaving out the terms whose weight is exactly zero: a masked (or
    underflowed) key is never read, so a NaN or Inf there cannot leak."""
    terms = weights[..., None] * np.swapaxes(rows, 1, 2)[:, :, None]
    terms = np.where(weights[..., None] != 0, terms, 0.0)
    return np.swapaxes(terms.sum(axis=3), 1, 2)


def attention(q, k, v, key_padding_mask=None, causal=False, kv_rows=None):
    """Scaled dot-product attention: (out (B, Tq, H, dh), probs (B, H, Tq, Tk)).

    A query row with a NaN score (NaN in q or in a visible key, or Inf that
    turns into NaN) comes out all NaN, probabilities and output alike; a
    query with no visible key comes out all zeros. kv_rows: query row b
    attends to row kv_rows[b] of k, v and the mask.
    """
    if kv_rows is not None:
        k, v = k[kv_rows], v[kv_rows]
        key_padding_mask = None if key_padding_mask is None else np.asarray(key_padding_mask)[kv_rows]
    batch, tq, _, dh = q.shape
    tk = k.shape[1]
    scale = 1.0 / np.sqrt(dh)
    scores = np.einsum("bihd,bjhd->bhij", q, k) * scale
    allowed = _allowed_keys(batch, tq, tk, key_padding_mask, causal)
    scores = np.where(allowed, scores, -np.inf)
    row_max = scores.max(axis=-1, keepdims=True, initial=-np.inf)
    row_max = np.where(np.isfinite(row_max), row_max, 0.0)
    with np.errstate(invalid="ignore", over="ignore"):
        e = np.where(allowed, np.exp(scores - row_max), 0.0)
        total = e.sum(axis=-1, keepdims=True)
        probs = e / np.where(total > 0, total, 1.0)
        probs = np.where(np.isnan(total) | np.isinf(total), np.nan, probs).astype(q.dtype)
        out = _weighted_keys(probs, v).astype(q.dtype)
    return out, probs


def attention_backward(dout, q, k, v, probs, dq=None, dk=None, dv=None):
    """(dq, dk, dv) of attention, given the probs it returned (written into dq, dk, dv if given).

    A key whose probability is exactly zero takes no part, as in the forward.
    """
    dh = q.shape[-1]
    scale = 1.0 / np.sqrt(dh)
    with np.errstate(invalid="ignore", over="ignore"):
        dprobs = np.where(probs != 0, np.einsum("bihd,bjhd->bhij", dout, v), 0.0)
        row_dot = (dprobs * probs).sum(axis=-1, keepdims=True)
        dscores = np.where(probs != 0, probs * (dprobs - row_dot) * scale, 0.0)
        grads = (_weighted_keys(dscores, k),
                 _weighted_keys(np.swapaxes(dscores, -1, -2), q),
                 _weighted_keys(np.swapaxes(probs, -1, -2), dout))
    results = []
    for given, g in zip((dq, dk, dv), grads):
        if given is None:
            results.append(g.astype(q.dtype))
        else:
            given[...] = g
            results.append(given)
    return tuple(results)


def _mix64(z):
    """splitmix64's finaliser on uint64 arrays (wrapping arithmetic)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _mix32(x):
    """A 32-bit xorshift-multiply mixer on uint32 arrays (wrapping arithmetic)."""
    x = x ^ (x >> np.uint32(16))
    x = x * np.uint32(0x7FEB352D)
    x = x ^ (x >> np.uint32(15))
    x = x * np.uint32(0x846CA68B)
    return x ^ (x >> np.uint32(16))


def dropout_mask(n, p, seed):
    """uint8 keep-mask of n elements: a counter-based hash of (seed, index).

    Element i hashes (i mod 2^32) * 0x9E3779B9 + key, with a 32-bit key drawn
    from splitmix64 of the seed and i >> 32; it is kept when the top 24 bits
    of the hash are >= floor(p * 2^24).
    """
    index = np.arange(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        seed_key = _mix64(np.array([int(seed) & _MASK64], dtype=np.uint64))[0]
        block_key = _mix64(seed_key + (index >> np.uint64(32)) * np.uint64(0x9E3779B97F4A7C15))
        key = (block_key & np.uint64(0xFFFFFFFF)).astype(np.uint32)
        h = _mix32((index & np.uint64(0xFFFFFFFF)).astype(np.uint32) * np.uint32(0x9E3779B9) + key)
    threshold = np.uint32(int(np.floor(p * 16777216.0)))
    return ((h >> np.uint32(8)) >= threshold).astype(np.uint8)


def _check_p(p):
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability p must be in [0, 1), got {p}")


def dropout(x, p, seed):
    """(y, mask): y = x * mask / (1 - p), mask uint8 with 1 = kept."""
    _check_p(p)
    mask = dropout_mask(x.size, p, seed).reshape(x.shape)
    scale = x.dtype.type(1.0 / (1.0 - p))
    return np.where(mask.astype(bool), x * scale, x.dtype.type(0)), mask


def dropout_backward(dy, mask, p):
    _check_p(p)
    scale = dy.dtype.type(1.0 / (1.0 - p))
    return np.where(np.asarray(mask).astype(bool), dy * scale, dy.dtype.type(0))


def add(a, b):
    return a + b


def add_(a, b):
    a += b
    return a


def beam_candidates(scores, logp, n):
    """The n best of each sentence's beam x vocab candidates (scores[a, k] + logp[a * beam + k, v]),
    best first, ties by the lower index k * vocab + v; slots past the finite ones hold -inf, -1."""
    scores, logp = np.asarray(scores, np.float64), np.asarray(logp, np.float64)
    A, K = scores.shape
    if n < 1 or logp.shape[0] != A * K:
        raise ValueError(f"beam_candidates: n must be >= 1 and logp must have {A * K} rows")
    cand = (scores.reshape(-1, 1) + logp).reshape(A, K * logp.shape[1])
    values, indices = np.full((A, n), -np.inf), np.full((A, n), -1, np.int64)
    for a, row in enumerate(cand):
        index = np.flatnonzero(np.isfinite(row))
        best = index[np.lexsort((index, -row[index]))][:n]  # by score, then by index
        values[a, :len(best)], indices[a, :len(best)] = row[best], best
    return values, indices
