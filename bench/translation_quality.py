"""Translation quality against training minutes: fastnet beside a PyTorch transformer of the same size.

    python bench/translation_quality.py [--minutes 10] [--marks 1 2 5] [--data ../shared/data]

For Swedish alone, then Swedish + Spanish together, two processes train at the same
time on the same machine, one thread each, so both see the same load:
  * fastnet: `train_on_pairs` -- exactly what `fastnet train-translator` runs (SentencePiece
    subwords, tied embeddings, EMA weights, dev checks keeping the best dev chrF);
  * PyTorch: nn.TransformerEncoder + one nn.TransformerDecoder per language (the parts
    nn.Transformer is made of) of the same size (d_model 128, 4 heads, 2+2 layers, ff 512,
    ReLU, pre-norm, dropout 0.1), tied embeddings, the same sinusoidal positions, the
    same SentencePiece models, split, batches (lengths bucketed, languages interleaved),
    label smoothing, Adam with the same warmup and inverse-square-root decay, global-norm
    clipping and EMA; no dev checks (they would cost it training time).
Each side keeps a copy of its EMA weights when `marks` minutes of training have passed;
after training every copy translates (greedy) the same held-out sentences, scored with
sacrebleu chrF and BLEU on the raw text. The last point is the end of the budget (for
fastnet: the model train-translator saves). fastnet's final model is also scored with
beam 4 beside greedy on the first 2000 held-out sentences of each language. Tokenisation time
is measured against one epoch's training time.

Writes bench/results/translation_quality.json and bench/translation_quality.png and prints a
Markdown summary for README. Needs torch, sacrebleu, matplotlib (the bench extra + torch).
"""
import argparse
import json
import math
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_DATA = os.environ.get("FASTNET_DATA", os.path.join(ROOT, "..", "shared", "data"))
FILES = {"sv": "tatoeba-eng-swe.tsv", "es": "tatoeba-eng-spa.tsv"}
EVAL_SENTENCES = 800  # held-out sentences per language scored at every mark (the same for both sides)
BEAM_SENTENCES = 2000  # held-out sentences per language translated greedily and with beam 4


def _setup(langs, data, seed):
    """The split and tokenisation of train_on_pairs, rebuilt the same way (SentencePiece is seeded)."""
    from fastnet.demo.translation import RECIPE, _load_split
    from fastnet.seq2seq import Translator

    splits = {lang: _load_split(os.path.join(data, FILES[lang]), 12, seed) for lang in langs}
    train_src = {lang: sp[0] for lang, sp in splits.items()}
    train_tgt = {lang: sp[1] for lang, sp in splits.items()}
    tr = Translator.build(train_src, train_tgt, tokenizer="subword", min_freq=2, lowercase=False, seed=seed,
                          tie_embeddings=True, **RECIPE)
    return splits, train_src, train_tgt, tr


def _test_subset(splits):
    return {lang: (sp[4][:EVAL_SENTENCES], sp[5][:EVAL_SENTENCES]) for lang, sp in splits.items()}


def _scores(hyps, refs):
    from fastnet.seq2seq import metrics

    return {"chrf": metrics.chrf(hyps, refs), "bleu": metrics.bleu(hyps, refs)}


# ---- fastnet ----------------------------------------------------------------------------------
def run_fastnet(langs, minutes, marks, data, seed, out):
    import fastnet as fn
    from fastnet.callbacks import Callback
    from fastnet.demo import train_on_pairs

    class Marks(Callback):
        """Copies the EMA weights as each mark (minutes of training) passes."""

        def __init__(self):
            super().__init__()
            self.copies, self.start, self.tr = {}, None, None

        def on_train_begin(self, model):
            self.tr, self.start = model, time.monotonic()

        def on_train_end(self, logs=None):
            self.end = time.monotonic()

        def on_batch_end(self, step, logs=None):
            elapsed = (time.monotonic() - self.start) / 60.0
            for mark in marks:
                if elapsed >= mark and mark not in self.copies:
                    self.copies[mark] = self.tr.weight_average.average.copy()

    marker = Marks()
    pairs = {lang: os.path.join(data, FILES[lang]) for lang in langs}
    model = os.path.join(out, f"fastnet-{'+'.join(langs)}.safetensors")
    began = time.monotonic()
    with fn.threads(1):
        result = train_on_pairs(pairs, model, minutes=minutes, seed=seed, verbose=0, callbacks=[marker])
    trained_minutes = (marker.end - marker.start) / 60.0
    tr = fn.load(model)
    splits, train_src, train_tgt, _ = _setup(langs, data, seed)
    test = _test_subset(splits)
    curve = []
    final = tr.store.data.copy()
    with fn.threads(1):
        for mark, weights in sorted(marker.copies.items()):
            tr.store.data[...] = weights
            curve.append({"minutes": mark, **{lang: _scores(tr.translate(s, to=lang, truncate=True), r)
                                              for lang, (s, r) in test.items()}})
        tr.store.data[...] = final
        curve.append({"minutes": round(trained_minutes, 2), "final": True,
                      **{lang: _scores(tr.translate(s, to=lang, truncate=True), r) for lang, (s, r) in test.items()}})
        beam, greedy_unk = {}, {}
        for lang, sp in splits.items():
            src, refs = sp[4][:BEAM_SENTENCES], sp[5][:BEAM_SENTENCES]
            t0 = time.perf_counter()
            greedy = tr.translate(src, to=lang, truncate=True)
            t1 = time.perf_counter()
            hyps = tr.translate(src, to=lang, beam=4, truncate=True)
            beam[lang] = {"sentences": len(src), "greedy": {**_scores(greedy, refs), "seconds": t1 - t0},
                          "beam4": {**_scores(hyps, refs), "seconds": time.perf_counter() - t1},
                          "unk": sum("<unk>" in h for h in hyps)}
            greedy_unk[lang] = sum("<unk>" in h for h in tr.translate(sp[4], to=lang, truncate=True))
        tokenizing = _tokenizing_share(tr, train_src, train_tgt, result)
    return {"side": "fastnet", "langs": langs, "curve": curve, "total_minutes": (time.monotonic() - began) / 60.0,
            "trained_minutes": trained_minutes, "result": result, "beam4": beam, "greedy_unk": greedy_unk,
            "tokenizing": tokenizing, "n_params": int(tr.store.data.size), "load": os.getloadavg()}


def _tokenizing_share(tr, train_src, train_tgt, result, batch_size=64):
    """Seconds to encode all training text (sources and targets) against the seconds of one training epoch
    (one pass over every pair), from the mean step time of the run."""
    t0 = time.perf_counter()
    for lang in train_src:
        tr.encode_source(train_src[lang], truncate=True)
        tr.encode_target(lang, train_tgt[lang])
    encode = time.perf_counter() - t0
    steps = result["epochs"] * result["steps_per_epoch"]
    step_seconds = sum(tr.history["time"]) / max(steps, 1)
    epoch_steps = sum(-(-len(s) // batch_size) for s in train_src.values())
    epoch = epoch_steps * step_seconds
    return {"encode_seconds": encode, "step_seconds": step_seconds, "epoch_steps": epoch_steps,
            "epoch_seconds": epoch, "share": encode / epoch}


# ---- PyTorch ----------------------------------------------------------------------------------
def _torch_model(torch, tr, dropout=0.1):
    nn = torch.nn
    enc, decs = tr.encoder, tr.decoders
    D = enc.d_model

    def sinusoids(n):
        from fastnet.seq2seq.layers import sinusoid_table

        return torch.tensor(sinusoid_table(n, D), dtype=torch.float32)

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.src_embed = nn.Embedding(enc.vocab_size, D)
            self.tgt_embed = nn.ModuleDict({n: nn.Embedding(d.vocab_size, D) for n, d in decs.items()})
            for e in [self.src_embed, *self.tgt_embed.values()]:
                nn.init.normal_(e.weight, 0.0, 1.0 / math.sqrt(D))  # as fastnet: unit entries after * sqrt(D)
            self.out_bias = nn.ParameterDict({n: nn.Parameter(torch.zeros(d.vocab_size)) for n, d in decs.items()})
            self.register_buffer("pe", sinusoids(max(enc.max_len, *(d.max_len for d in decs.values())) + 1))
            layer = dict(d_model=D, nhead=enc.n_heads, dim_feedforward=enc.d_ff, dropout=dropout, activation="relu",
                         batch_first=True, norm_first=True)
            self.encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(**layer), enc.n_layers,
                                                 norm=nn.LayerNorm(D), enable_nested_tensor=False)
            self.decoders = nn.ModuleDict({n: nn.TransformerDecoder(nn.TransformerDecoderLayer(**layer), d.n_layers,
                                                                    norm=nn.LayerNorm(D)) for n, d in decs.items()})
            self.drop = nn.Dropout(dropout)
            self.scale = math.sqrt(D)

        def encode(self, src, mask):
            x = self.drop(self.src_embed(src) * self.scale + self.pe[: src.shape[1]])
            return self.encoder(x, src_key_padding_mask=mask)

        def decode(self, lang, tgt_in, memory, mask):
            T = tgt_in.shape[1]
            x = self.drop(self.tgt_embed[lang](tgt_in) * self.scale + self.pe[:T])
            causal = torch.triu(torch.full((T, T), float("-inf")), diagonal=1)
            h = self.decoders[lang](x, memory, tgt_mask=causal, memory_key_padding_mask=mask)
            return h @ self.tgt_embed[lang].weight.T + self.out_bias[lang]  # tied output projection

    return Model()


def run_torch(langs, minutes, marks, data, seed, out):
    import torch

    from fastnet.demo.translation import LANGUAGE_TEMPERATURE
    from fastnet.seq2seq.training import TrainingData

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    began = time.monotonic()
    splits, train_src, train_tgt, tr = _setup(langs, data, seed)
    setup_minutes = (time.monotonic() - began) / 60.0
    model = _torch_model(torch, tr)
    pairs = TrainingData(tr, train_src, train_tgt, "torch")
    budget = 0.9 * (minutes - setup_minutes)  # what train_on_pairs gives fit, after the same setup
    opt = torch.optim.Adam(model.parameters(), lr=2e-3, betas=(0.9, 0.999), eps=1e-8)
    # train_on_pairs' rule: warm up for 10% of the steps the budget allows (50..500), from 3 timed steps
    warmup = [500]
    schedule = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warmup[0], math.sqrt(warmup[0] / (s + 1))))
    average = [p.detach().clone() for p in model.parameters()]
    rng = np.random.default_rng(seed)
    copies, steps, start, updates = {}, 0, time.monotonic(), 0
    model.train()
    while (time.monotonic() - start) / 60.0 < budget:
        for part, idx in pairs.batches(64, rng, True, LANGUAGE_TEMPERATURE):  # train_on_pairs' language shares
            src, tgts = part.batch(tr, idx)
            (lang, tgt), = tgts.items()
            src_t, tgt_t = torch.from_numpy(src), torch.from_numpy(tgt)
            mask = src_t == 0
            logits = model.decode(lang, tgt_t[:, :-1], model.encode(src_t, mask), mask)
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt_t[:, 1:].reshape(-1),
                                                     ignore_index=0, label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            schedule.step()
            steps += 1
            updates += 1
            if steps == 3:
                per_step = (time.monotonic() - start) / 3
                warmup[0] = max(50, min(500, int(0.1 * 60.0 * budget / per_step)))
            rate = 1.0 - min(0.999, (1.0 + updates) / (10.0 + updates))
            with torch.no_grad():
                for a, p in zip(average, model.parameters()):
                    a += rate * (p.detach() - a)
            elapsed = (time.monotonic() - start) / 60.0
            for mark in marks:
                if elapsed >= mark and mark not in copies:
                    copies[mark] = [a.clone() for a in average]
            if elapsed >= budget:
                break
    trained_minutes = (time.monotonic() - start) / 60.0
    copies[round(trained_minutes, 2)] = [a.clone() for a in average]
    test = _test_subset(splits)
    model.eval()
    curve = []
    for mark, weights in sorted(copies.items()):
        with torch.no_grad():
            for p, w in zip(model.parameters(), weights):
                p.copy_(w)
        curve.append({"minutes": mark, **({"final": True} if mark == round(trained_minutes, 2) else {}),
                      **{lang: _scores(_torch_greedy(torch, model, tr, lang, s), r) for lang, (s, r) in test.items()}})
    return {"side": "torch", "langs": langs, "curve": curve, "steps": steps, "warmup": warmup[0],
            "trained_minutes": trained_minutes,
            "total_minutes": (time.monotonic() - began) / 60.0, "load": os.getloadavg(),
            "n_params": sum(p.numel() for p in model.parameters())}


def _torch_greedy(torch, model, tr, lang, sentences, batch_size=200):
    """Greedy decoding as fastnet's: no unk/pad/bos, at most 2x the source + 5 tokens (nn.Transformer has no
    key/value cache: the prefix is run again every step)."""
    tok = tr.tokenizers[lang]
    out = []
    for start in range(0, len(sentences), batch_size):
        src = tr.encode_source(sentences[start:start + batch_size], truncate=True)
        caps = np.ceil(2.0 * (src != 0).sum(axis=1)).astype(np.int64) + 5
        caps = np.minimum(caps, tr.decoders[lang].max_len)
        with torch.no_grad():
            src_t = torch.from_numpy(src)
            mask = src_t == 0
            memory = model.encode(src_t, mask)
            ys = torch.full((len(src), 1), tok.bos_id, dtype=torch.long)
            done = torch.zeros(len(src), dtype=torch.bool)
            for t in range(int(caps.max())):
                logits = model.decode(lang, ys, memory, mask)[:, -1]
                logits[:, [tok.unk_id, tok.pad_id, tok.bos_id]] = float("-inf")
                nxt = logits.argmax(-1)
                nxt[torch.from_numpy(t + 1 >= caps)] = tok.eos_id
                nxt[done] = tok.pad_id
                ys = torch.cat([ys, nxt[:, None]], dim=1)
                done |= nxt == tok.eos_id
                if bool(done.all()):
                    break
        out.extend(tok.decode_batch(ys.numpy()))
    return out


# ---- the report ---------------------------------------------------------------------------------
def _run_pair(langs, args):
    """Both sides at once (one thread each), so they share whatever else the machine is doing."""
    procs = []
    for side in ("fastnet", "torch"):
        path = os.path.join(args.out, f"{side}-{'+'.join(langs)}.json")
        cmd = [sys.executable, os.path.abspath(__file__), "--side", side, "--langs", *langs, "--minutes",
               str(args.minutes), "--marks", *map(str, args.marks), "--data", args.data, "--out", args.out,
               "--seed", str(args.seed), "--json", path]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ROOT}
        procs.append((path, subprocess.Popen(cmd, env=env)))
    results = []
    for path, proc in procs:
        if proc.wait() != 0:
            raise SystemExit(f"{path}: the run failed (exit {proc.returncode})")
        with open(path, encoding="utf-8") as f:
            results.append(json.load(f))
        os.remove(path)  # one side's part of the report, which keeps it all
    return results


def _plot(runs, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    styles = {"fastnet": "-o", "torch": "--s"}
    for ax, metric in zip(axes, ("chrf", "bleu")):
        for run in runs:
            setting = "+".join(run["langs"])
            for lang in run["langs"]:
                xs = [p["minutes"] for p in run["curve"]]
                ys = [p[lang][metric] for p in run["curve"]]
                label = f"{'fastnet' if run['side'] == 'fastnet' else 'PyTorch'} {lang} ({setting} model)"
                ax.plot(xs, ys, styles[run["side"]], label=label)
        ax.set_xlabel("training minutes (2 shared cores, 1 thread each)")
        ax.set_ylabel(f"held-out {'chrF' if metric == 'chrf' else 'BLEU'} (sacrebleu)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("Tatoeba English -> Swedish / Spanish: fastnet vs a same-size PyTorch transformer")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def _summary(runs):
    lines = ["| model | language | " + " | ".join(f"{p['minutes']:g} min" for p in runs[0]["curve"]) + " |",
             "|---|---|" + "---:|" * len(runs[0]["curve"])]
    for run in runs:
        for lang in run["langs"]:
            cells = [f"{p[lang]['chrf']:.1f} / {p[lang]['bleu']:.1f}" for p in run["curve"]]
            name = "fastnet" if run["side"] == "fastnet" else "PyTorch"
            lines.append(f"| {name} {'+'.join(run['langs'])} | {lang} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--marks", type=float, nargs="*", default=[1.0, 2.0, 5.0])
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--settings", nargs="*", default=["sv", "sv+es"])
    parser.add_argument("--merge", action="store_true",
                        help="keep the saved runs of the other settings (rerun one setting alone)")
    parser.add_argument("--side", choices=("fastnet", "torch"), help=argparse.SUPPRESS)
    parser.add_argument("--langs", nargs="*", help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    if args.side:  # one side of one setting (a child process)
        run = (run_fastnet if args.side == "fastnet" else run_torch)(args.langs, args.minutes, args.marks, args.data,
                                                                      args.seed, args.out)
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(run, f, ensure_ascii=False, indent=1, default=str)
        return run
    runs = []
    for setting in args.settings:
        runs.extend(_run_pair(setting.split("+"), args))
    saved = os.path.join(args.out, "translation_quality.json")
    if args.merge and os.path.exists(saved):
        with open(saved, encoding="utf-8") as f:
            rerun = {tuple(run["langs"]) for run in runs}
            runs = [run for run in json.load(f)["runs"] if tuple(run["langs"]) not in rerun] + runs
        runs.sort(key=lambda run: len(run["langs"]))
    report = {"runs": runs, "uptime": os.getloadavg(), "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    with open(saved, "w", encoding="utf-8") as f:
        json.dump(report, f, ensure_ascii=False, indent=1, default=str)
    print(_summary(runs))
    print("plot:", _plot(runs, os.path.join(HERE, "translation_quality.png")))
    return report


if __name__ == "__main__":
    main()
