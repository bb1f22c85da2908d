"""Seq2seq transformer: one training step and greedy translation, fastnet beside PyTorch.

    python -m pytest bench/bench_seq2seq.py --benchmark-only --benchmark-group-by=group \
        --benchmark-columns=median,iqr,rounds

Shape (the issue's): d_model 128, 4 heads, 2 encoder + 2 decoder layers,
feed-forward 512, vocabulary 64, batch 32, source and target length 20, Adam.
PyTorch runs nn.Transformer of the same shape (pre-norm, batch_first, ReLU: its default)
with the same embeddings, output projection, label smoothing and thread
count; its cases skip when torch is not installed. Greedy translation of
1000 sentences: fastnet uses its key/value cache; PyTorch's nn.Transformer
has none, so its decoder reruns the prefix every step (the usual recipe).
Both decode exactly MAX_STEPS tokens per sentence (no early stop), so the
work is the same whatever the untrained models predict.
"""
import numpy as np
import pytest

import fastnet as fn
from fastnet.seq2seq import Decoder, Encoder
from fastnet.seq2seq.decoder import DecoderState  # noqa: F401  (the cache the greedy loop carries)

D_MODEL, HEADS, LAYERS, D_FF, VOCAB = 128, 4, 2, 512, 64
REAL_VOCAB = 4000  # train-translator's subword vocabulary
BATCH, SRC_LEN, TGT_LEN = 32, 20, 20
N_SENTENCES, DECODE_BATCH, MAX_STEPS = 1000, 250, 20
PAD, BOS = 0, 1
LR, SMOOTHING = 1e-3, 0.1
ACTIVATION = "relu"  # nn.Transformer's default feed-forward activation; both sides use it


def token_batch(n, length, seed):
    """Random ids in [4, VOCAB) with a few trailing pads per row."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(4, VOCAB, (n, length))
    lengths = rng.integers(length - 4, length + 1, n)
    ids[np.arange(length)[None, :] >= lengths[:, None]] = PAD
    return ids


# ---- fastnet --------------------------------------------------------------------
def fastnet_model(dropout=0.1, vocab=VOCAB, tie_embeddings=False):
    arch = dict(d_model=D_MODEL, n_heads=HEADS, n_layers=LAYERS, d_ff=D_FF, max_len=64, dropout=dropout,
                activation=ACTIVATION)
    enc, dec = Encoder(vocab, seed=0, **arch), Decoder(vocab, seed=1, tie_embeddings=tie_embeddings, **arch)
    return enc, dec


def fastnet_step(precision="float32"):
    enc, dec = fastnet_model()
    fn.layers.base.set_precision([enc, dec], precision)
    store = fn.layers.base.ParameterStore([enc, dec])
    opt = fn.Adam(LR, clip_norm=1.0)
    opt.bind(store)

    def step(src, tgt):
        store.zero_grad()
        mask = src == PAD
        memory = enc.forward(src, mask, training=True)
        loss, _ = dec.loss(memory, mask, tgt, training=True, label_smoothing=SMOOTHING)
        enc.backward(dec.backward_loss())
        opt.step()
        return loss

    return step


def fastnet_greedy(quantize=None, vocab=VOCAB, tie_embeddings=False):
    from fastnet.layers import quantized
    from fastnet.seq2seq import decoding

    enc, dec = fastnet_model(dropout=0.0, vocab=vocab, tie_embeddings=tie_embeddings)
    if quantize:
        store = fn.layers.base.ParameterStore([enc, dec])
        quantized.quantize_params(quantized.store_entries(store), store.dtype, quantize)
    no_eos = -1  # decode MAX_STEPS tokens for every sentence (same work as PyTorch below)

    def translate(src):
        out = []
        for start in range(0, len(src), DECODE_BATCH):
            ids = src[start:start + DECODE_BATCH]
            mask = ids == PAD
            memory = enc.forward(ids, mask)
            out += decoding.greedy(dec, memory, mask, BOS, no_eos, MAX_STEPS + 1, decoding.Rules())
        return out

    return translate


# ---- PyTorch ----------------------------------------------------------------------
def torch_model(torch, dropout=0.1):
    torch.set_num_threads(fn.get_num_threads())
    torch.manual_seed(0)
    nn = torch.nn

    class Seq2Seq(nn.Module):
        def __init__(self):
            super().__init__()
            self.src_embed = nn.Embedding(VOCAB, D_MODEL)
            self.tgt_embed = nn.Embedding(VOCAB, D_MODEL)
            self.core = nn.Transformer(D_MODEL, HEADS, LAYERS, LAYERS, D_FF, dropout=dropout, activation=ACTIVATION,
                                       batch_first=True, norm_first=True)
            self.out = nn.Linear(D_MODEL, VOCAB)
            position = torch.arange(64, dtype=torch.float32)[:, None]
            rates = torch.exp(-np.log(10000.0) * torch.arange(0, D_MODEL, 2, dtype=torch.float32) / D_MODEL)
            pe = torch.zeros(64, D_MODEL)
            pe[:, 0::2], pe[:, 1::2] = torch.sin(position * rates), torch.cos(position * rates)
            self.register_buffer("pe", pe)
            self.scale = D_MODEL ** 0.5

        def embed(self, table, ids):
            return table(ids) * self.scale + self.pe[: ids.shape[1]]

        def encode(self, src, src_pad):
            return self.core.encoder(self.embed(self.src_embed, src), src_key_padding_mask=src_pad)

        def decode(self, tgt_in, memory, src_pad):
            causal = self.core.generate_square_subsequent_mask(tgt_in.shape[1])
            x = self.core.decoder(self.embed(self.tgt_embed, tgt_in), memory, tgt_mask=causal,
                                  memory_key_padding_mask=src_pad)
            return self.out(x)

    return Seq2Seq()


def torch_step(torch, autocast=False):
    model = torch_model(torch)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    criterion = torch.nn.CrossEntropyLoss(ignore_index=PAD, label_smoothing=SMOOTHING)

    def step(src, tgt):
        opt.zero_grad(set_to_none=True)
        src_pad = src == PAD
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            logits = model.decode(tgt[:, :-1], model.encode(src, src_pad), src_pad)
            loss = criterion(logits.reshape(-1, VOCAB), tgt[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.item()

    return step


def torch_greedy(torch):
    model = torch_model(torch, dropout=0.0)
    model.eval()

    def translate(src):
        out = []
        with torch.inference_mode():
            for start in range(0, len(src), DECODE_BATCH):
                ids = src[start:start + DECODE_BATCH]
                src_pad = ids == PAD
                memory = model.encode(ids, src_pad)
                prefix = torch.full((ids.shape[0], 1), BOS, dtype=torch.long)
                for _ in range(MAX_STEPS):
                    nxt = model.decode(prefix, memory, src_pad)[:, -1].argmax(-1)
                    prefix = torch.cat([prefix, nxt[:, None]], dim=1)
                out += prefix[:, 1:].tolist()
        return out

    return translate


# ---- benchmarks ---------------------------------------------------------------------
def training_batch():
    src = token_batch(BATCH, SRC_LEN, seed=1)
    tgt = token_batch(BATCH, TGT_LEN + 1, seed=2)
    tgt[:, 0] = BOS
    return src, tgt


@pytest.mark.parametrize("impl", ["fastnet", "torch", "fastnet-bf16", "torch-autocast-bf16"])
def test_training_step(benchmark, impl):
    benchmark.group = "seq2seq training step d128 h4 2+2 ff512 b32 t20"
    benchmark.extra_info["path"] = fn.config()["mma_path"]
    src, tgt = training_batch()
    if impl.startswith("fastnet"):
        step = fastnet_step("bf16" if impl == "fastnet-bf16" else "float32")
    else:
        torch = pytest.importorskip("torch")
        step = torch_step(torch, autocast=impl == "torch-autocast-bf16")
        src, tgt = torch.from_numpy(src), torch.from_numpy(tgt)
    first = step(src, tgt)
    benchmark(step, src, tgt)
    assert np.isfinite(first)


@pytest.mark.parametrize("impl", ["fastnet", "torch", "fastnet-int8"])
def test_greedy_translation(benchmark, impl):
    benchmark.group = f"seq2seq greedy translation of {N_SENTENCES} sentences, {MAX_STEPS} steps"
    benchmark.extra_info["path"] = fn.config()["mma_path"]
    src = token_batch(N_SENTENCES, SRC_LEN, seed=3)
    if impl.startswith("fastnet"):
        translate = fastnet_greedy("int8" if impl == "fastnet-int8" else None)
    else:
        torch = pytest.importorskip("torch")
        translate = torch_greedy(torch)
        src = torch.from_numpy(src)
    out = benchmark.pedantic(translate, args=(src,), rounds=3, iterations=1, warmup_rounds=1)
    assert len(out) == N_SENTENCES


@pytest.mark.parametrize("impl", ["fastnet", "fastnet-int8"])
def test_greedy_translation_with_a_real_vocabulary(benchmark, impl):
    """The recipe's decoder: 4000 subwords, output projection tied to the embedding (its table's int8
    rows serve the int8 logits). With 64 words the output projection is negligible; here it is the
    largest product of a decoding step."""
    benchmark.group = f"seq2seq greedy translation of {N_SENTENCES} sentences, {MAX_STEPS} steps, tied vocabulary " \
                      f"{REAL_VOCAB}"
    benchmark.extra_info["path"] = fn.config()["mma_path"]
    translate = fastnet_greedy("int8" if impl == "fastnet-int8" else None, vocab=REAL_VOCAB, tie_embeddings=True)
    out = benchmark.pedantic(translate, args=(token_batch(N_SENTENCES, SRC_LEN, seed=3),), rounds=3, iterations=1,
                             warmup_rounds=1)
    assert len(out) == N_SENTENCES
