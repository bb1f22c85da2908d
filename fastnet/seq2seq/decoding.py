"""Turning decoder outputs into token sequences: greedy (KV-cached or not) and beam search, batched.

Each function takes a text Decoder, the encoder memory (B, S, D) with its
padding mask, the special token ids and a `Rules` object saying what a
translation may contain; greedy returns a list of B token-id lists (eos cut
off), beam search a list of B lists of (tokens, score), best first. What
they ask of the decoder: start(memory, mask, capacity=, project=, rows=) -> a
state with reorder(index), and step(state, ids) -> logits (B, V); rows (beam
search) gives the memory row of each decoding row.

The rules every search obeys (so a person can trust the output):
* banned ids (unk, pad, bos) are never produced -- `translate` never writes `<unk>`;
* eos may not come before `min_length` tokens -- a sentence never translates to nothing;
* each sentence has its own length cap (relative to its source length): at
  the cap the sentence ends;
* no n-gram of `no_repeat_ngram` tokens appears twice in one output, and no
  token comes more than `max_run` times in a row, which stops the endless
  loops ("a a a a ...", "rrrr") small models fall into.
"""
import numpy as np

from fastnet import ops


class Rules:
    """What decoding may produce: banned ids, per-sentence length caps (B,), a no-repeat n-gram size,
    and at least min_length tokens before eos_id (a sentence never translates to nothing)."""

    def __init__(self, banned=(), max_lengths=None, no_repeat_ngram=0, eos_id=None, min_length=0, max_run=0):
        self.banned = np.asarray(sorted(set(int(i) for i in banned)), dtype=np.int64)
        self.max_lengths = None if max_lengths is None else np.asarray(max_lengths, dtype=np.int64)
        self.no_repeat_ngram = int(no_repeat_ngram)
        if self.no_repeat_ngram < 0:
            raise ValueError(f"no_repeat_ngram must be >= 0 (0 = off), got {no_repeat_ngram}")
        self.eos_id, self.min_length = eos_id, int(min_length)
        self.max_run = int(max_run)  # > 0: no token more than max_run times in a row ("rrrr", "en en en")

    def longest(self, default):
        return default if self.max_lengths is None else int(min(default, self.max_lengths.max()))

    def cap(self, rows, default):
        """Length cap of each of the given source rows."""
        if self.max_lengths is None:
            return np.full(len(rows), default, dtype=np.int64)
        return np.minimum(self.max_lengths[rows], default)

    def apply(self, logp, history):
        """Set to -inf the scores of banned tokens and of tokens that would repeat an n-gram.

        logp (N, V) is changed in place; history (N, t) holds the t tokens each row has produced
        (every search keeps its live rows in step, so they all have produced the same number).
        Whole-array operations: a Python loop over the rows cost 0.6 ms a step for 250 rows,
        about a tenth of an int8 translation of short sentences."""
        history = np.asarray(history, dtype=np.int64).reshape(logp.shape[0], -1)
        t = history.shape[1]
        if self.banned.size:
            logp[:, self.banned] = -np.inf
        if self.eos_id is not None and t < self.min_length:
            logp[:, self.eos_id] = -np.inf
        run = self.max_run
        if 0 < run <= t:
            last = history[:, -1]
            same = history[:, t - run] == last
            for j in range(t - run + 1, t - 1):
                same &= history[:, j] == last
            if same.any():
                _ban(logp, np.flatnonzero(same), last[same])
        if self.no_repeat_ngram >= 1:
            _ban(logp, *repeated_ngram_ends(history, self.no_repeat_ngram))
        return logp


def _ban(logp, rows, tokens):
    if rows.size:  # most steps ban nothing: skip the indexing
        logp[rows, tokens] = -np.inf


def repeated_ngram_ends(history, n):
    """(rows, tokens): the tokens that, appended to row `rows[i]` of history (N, t), would complete
    an n-gram that already occurs in that row."""
    history = np.asarray(history, dtype=np.int64)
    N, t = history.shape
    if n < 1 or t < n - 1:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if n == 1:
        return np.repeat(np.arange(N), t), history.reshape(-1)
    starts = t - n + 1  # where an earlier (n - 1)-gram can start with a token after it
    match = history[:, :starts] == history[:, starts:starts + 1]
    for j in range(1, n - 1):  # token j of every window at once (3x faster than comparing window views)
        match &= history[:, j:j + starts] == history[:, starts + j:starts + j + 1]
    rows, start = np.nonzero(match)
    return rows, (history[rows, start + n - 1] if rows.size else start)


def _log_softmax(logits):
    z = logits - logits.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def _capacity(caps):
    """Positions the key/value caches need: the longest cap of the batch, not the decoder's max_len
    (the caches are rows x capacity x d_model per layer: sized by max_len, they follow the longest
    sentence the decoder could ever write rather than the ones being written)."""
    return int(caps.max()) if caps.size else 1


def greedy(decoder, memory, memory_mask, bos_id, eos_id, max_len, rules, project=None):
    """Most likely allowed next token at every step, with a key/value cache.

    Rows that have produced eos (or reached their cap) leave the batch, so the
    cost follows the sentences still being written. project: the logits
    projection from decoder.prepare_decoding() (made here when None).
    """
    B = memory.shape[0]
    caps = rules.cap(np.arange(B), max_len)
    capacity = _capacity(caps)
    state = decoder.start(memory, memory_mask, capacity=capacity, project=project)
    tokens = np.zeros((B, capacity), dtype=np.int64)  # at step t the live rows hold t each
    lengths = np.zeros(B, dtype=np.int64)
    rows = np.arange(B)
    ids = np.full(B, bos_id, dtype=np.int64)
    for t in range(int(caps.max())):
        logits = decoder.step(state, ids)  # a fresh array; float32 picks the same argmax as float64
        nxt = rules.apply(logits, tokens[rows, :t]).argmax(axis=1)
        nxt[t + 1 >= caps[rows]] = eos_id  # this sentence's cap: end it here
        alive = nxt != eos_id
        tokens[rows[alive], t] = nxt[alive]
        lengths[rows[alive]] = t + 1
        if not alive.all():
            if not alive.any():
                break
            keep = np.flatnonzero(alive)
            state.reorder(keep)
            rows, nxt = rows[keep], nxt[keep]
        ids = nxt
    return [row[:n].tolist() for row, n in zip(tokens, lengths)]


def greedy_uncached(decoder, memory, memory_mask, bos_id, eos_id, max_len, rules):
    """Greedy decoding that reruns the whole prefix every step (no cache): the slow reference."""
    B = memory.shape[0]
    caps = rules.cap(np.arange(B), max_len)
    prefix = np.full((B, 1), bos_id, dtype=np.int64)
    histories = [[] for _ in range(B)]
    done = np.zeros(B, dtype=bool)
    for t in range(int(caps.max())):
        logits = decoder.forward(prefix, memory, memory_mask)[:, -1].astype(np.float64)
        nxt = rules.apply(logits, prefix[:, 1:]).argmax(axis=1)  # a finished row's choices are ignored
        nxt[t + 1 >= caps] = eos_id
        done |= nxt == eos_id
        for r in np.flatnonzero(~done):
            histories[r].append(int(nxt[r]))
        if done.all():
            break
        prefix = np.concatenate([prefix, nxt[:, None]], axis=1)
    return histories


def length_normalizer(lengths, alpha):
    """GNMT length penalty ((5 + length) / 6) ** alpha; alpha 0 ranks by total log-probability."""
    return ((5.0 + np.asarray(lengths, dtype=np.float64)) / 6.0) ** alpha


def beam_search(decoder, memory, memory_mask, bos_id, eos_id, max_len, rules, beam, length_penalty=1.0,
                project=None):
    """Keep the `beam` best unfinished translations per sentence.

    Every step scores the 2*beam best extensions: those among the best `beam`
    that end in eos become finished hypotheses, ranked by log-probability / length_normalizer(length
    with eos); the best `beam` others go on. A sentence stops once it has
    `beam` finished hypotheses or reaches its length cap. Returns, per
    sentence, up to 2*beam finished (tokens, score) pairs, best first, all
    different token sequences. project: as for greedy.
    """
    B, K = memory.shape[0], int(beam)
    caps = rules.cap(np.arange(B), max_len)
    state = decoder.start(memory, memory_mask, capacity=_capacity(caps), project=project,
                          rows=np.repeat(np.arange(B), K))  # K hypotheses read each sentence's memory
    # The sentences still open; open sentence a holds rows a * K .. a * K + K - 1 of the state.
    # A sentence that closes leaves the state, as a finished sentence leaves greedy's batch.
    sent = np.arange(B)
    scores = np.full((B, K), -np.inf)
    scores[:, 0] = 0.0  # all beams start identical: only the first may expand at step 0
    finished = [[] for _ in range(B)]
    ids = np.full(B * K, bos_id, dtype=np.int64)
    sequences = np.zeros((B * K, 0), dtype=np.int64)  # the tokens of each hypothesis (row a * K + k)
    for t in range(int(caps.max())):
        A = len(sent)
        logp = _log_softmax(decoder.step(state, ids).astype(np.float64))
        rules.apply(logp, sequences)
        ending = t + 1 >= caps[sent]  # at the cap only eos may follow
        for a in np.flatnonzero(ending):
            eos_scores = logp[a * K:(a + 1) * K, eos_id].copy()
            logp[a * K:(a + 1) * K] = -np.inf
            logp[a * K:(a + 1) * K, eos_id] = eos_scores
        V = logp.shape[1]
        # the 2 x beam best of each sentence's beam x V candidates scores[a, k] + logp[a * K + k, v],
        # best first (one pass in C: materialising them all and partitioning was 40% of a search)
        best, top = ops.beam_candidates(scores, logp, 2 * K)
        source = np.arange(A * K)  # which hypothesis each new beam slot continues
        ids = np.full(A * K, eos_id, dtype=np.int64)
        new_scores = np.full((A, K), -np.inf)
        still_open = np.ones(A, dtype=bool)
        for a, b in enumerate(sent):
            slot = 0
            for rank, (score, c) in enumerate(zip(best[a].tolist(), top[a].tolist())):
                if c < 0:  # no finite candidate left
                    break
                k, token = divmod(c, V)
                if token == eos_id:
                    if rank < K:  # an ending counts only among the beam's best (so beam 1 is greedy)
                        tokens = sequences[a * K + k].tolist()
                        finished[b].append((tokens, score / length_normalizer(len(tokens) + 1, length_penalty)))
                elif slot < K:
                    new_scores[a, slot] = score
                    source[a * K + slot] = a * K + k
                    ids[a * K + slot] = token
                    slot += 1
            if len(finished[b]) >= K or slot == 0 or ending[a]:
                still_open[a] = False
        keep = np.flatnonzero(still_open)
        if not keep.size:
            break
        rows = (keep[:, None] * K + np.arange(K)).reshape(-1)  # the slots of the sentences that go on
        state.reorder(source[rows])
        sequences = np.concatenate([sequences[source], ids[:, None]], axis=1)[rows]
        ids, scores, sent = ids[rows], new_scores[keep], sent[keep]
    return [sorted(f, key=lambda pair: -pair[1]) for f in finished]
