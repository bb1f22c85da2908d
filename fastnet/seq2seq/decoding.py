"""Turning decoder outputs into token sequences: greedy (KV-cached or not) and beam search, batched.

Each function takes a text Decoder, the encoder memory (B, S, D) with its
padding mask, and the special token ids; it returns a list of B token-id
lists, each cut before the first eos.
"""
import numpy as np


def _log_softmax(logits):
    z = logits - logits.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def _cut(row, eos_id, pad_id):
    out = []
    for token in row:
        if token == eos_id:
            break
        if token != pad_id:
            out.append(int(token))
    return out


def greedy(decoder, memory, memory_mask, bos_id, eos_id, pad_id, max_len):
    """Most likely next token at every step, with a key/value cache.

    Rows that have produced eos leave the batch, so the cost follows the
    sentences still being written.
    """
    B = memory.shape[0]
    state = decoder.start(memory, memory_mask, capacity=max_len)
    out = np.full((B, max_len), pad_id, dtype=np.int64)
    rows = np.arange(B)
    ids = np.full(B, bos_id, dtype=np.int64)
    for t in range(max_len):
        nxt = decoder.step(state, ids).argmax(axis=1)
        out[rows, t] = nxt
        alive = nxt != eos_id
        if not alive.all():
            if not alive.any():
                break
            keep = np.flatnonzero(alive)
            state.reorder(keep)
            rows, nxt = rows[keep], nxt[keep]
        ids = nxt
    return [_cut(row, eos_id, pad_id) for row in out]


def greedy_uncached(decoder, memory, memory_mask, bos_id, eos_id, pad_id, max_len):
    """Greedy decoding that reruns the whole prefix every step (no cache): the slow reference."""
    B = memory.shape[0]
    prefix = np.full((B, 1), bos_id, dtype=np.int64)
    done = np.zeros(B, dtype=bool)
    for _ in range(max_len):
        nxt = decoder.forward(prefix, memory, memory_mask)[:, -1].argmax(axis=1)
        nxt[done] = pad_id
        prefix = np.concatenate([prefix, nxt[:, None]], axis=1)
        done |= nxt == eos_id
        if done.all():
            break
    return [_cut(row, eos_id, pad_id) for row in prefix[:, 1:]]


def length_normalizer(lengths, alpha):
    """GNMT length penalty ((5 + length) / 6) ** alpha; alpha 0 ranks by total log-probability."""
    return ((5.0 + lengths) / 6.0) ** alpha


def beam_search(decoder, memory, memory_mask, bos_id, eos_id, pad_id, max_len, beam, length_penalty=0.6):
    """Keep the `beam` best partial translations per sentence; rank the finished ones by
    log-probability / length_normalizer(length). Finished hypotheses stay in the beam,
    extended by pad at no cost, so they compete with the unfinished ones."""
    B, K = memory.shape[0], int(beam)
    mem = np.repeat(memory, K, axis=0)
    mask = None if memory_mask is None else np.repeat(memory_mask, K, axis=0)
    state = decoder.start(mem, mask, capacity=max_len)
    scores = np.full((B, K), -np.inf)
    scores[:, 0] = 0.0  # all beams start identical: only the first may expand at step 0
    tokens = np.zeros((B * K, 0), dtype=np.int64)
    finished = np.zeros(B * K, dtype=bool)
    lengths = np.zeros(B * K)
    ids = np.full(B * K, bos_id, dtype=np.int64)
    for _ in range(max_len):
        logp = _log_softmax(decoder.step(state, ids).astype(np.float64))
        logp[finished] = -np.inf
        logp[finished, pad_id] = 0.0
        V = logp.shape[1]
        cand = (scores.reshape(-1, 1) + logp).reshape(B, K * V)
        top = np.argsort(-cand, axis=1, kind="stable")[:, :K]
        scores = np.take_along_axis(cand, top, axis=1)
        source = (np.arange(B)[:, None] * K + top // V).ravel()
        ids = (top % V).ravel()
        state.reorder(source)
        lengths = lengths[source] + ~finished[source]
        finished = finished[source] | (ids == eos_id)
        tokens = np.concatenate([tokens[source], ids[:, None]], axis=1)
        if finished.all():
            break
    ranked = scores / length_normalizer(lengths.reshape(B, K), length_penalty)
    best = np.arange(B) * K + ranked.argmax(axis=1)
    return [_cut(tokens[i], eos_id, pad_id) for i in best]
