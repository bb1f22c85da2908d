"""fastnet beside PyTorch in alternating rounds in one process, best of each.

pytest-benchmark runs one implementation's rounds, then the next one's. On a
shared host whose speed changes from one second to the next (AMX units shared
with another tenant's hyperthread made the same product run at ~400 or ~1100
GFLOP/s), that compares an implementation's good second with the other's bad
one. Here every round runs each implementation once, in turn, and each keeps
its best round; the per-round ratios' median is printed beside the ratio of
the bests.

    python bench/alternating.py gemm --threads 1 --rounds 5
    python bench/alternating.py mlp --threads 2 --rounds 6
    python bench/alternating.py sgemm --threads 2 --rounds 5
    python bench/alternating.py int8 --model sv.safetensors --threads 1 --rounds 8 --batch 64

gemm: bf16 products (fastnet takes float32 arrays and rounds while packing;
PyTorch is handed bfloat16 tensors made beforehand), GFLOP/s.
sgemm: float32 products at T threads, fastnet beside NumPy's BLAS (OpenBLAS;
its threads set with threadpoolctl) and PyTorch, and fastnet on one thread in
the same rounds, so its T-thread scaling is measured side by side too, GFLOP/s.
mlp: the 784-1024-1024-10 SGD step at batch 256 of bench_training.py, float32
and bf16 (PyTorch autocast), ms.
int8: greedy translation of 1000 held-out Tatoeba sentences (train-translator's
split of the model's pair file, $FASTNET_DATA or ../shared/data) by a saved
translator and by its int8 copy, ms; no PyTorch needed.
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

import fastnet as fn
from fastnet import ops

GEMM_SHAPES = [(1024, 1024, 1024, "NN"), (2048, 2048, 2048, "NN"), (256, 1024, 1024, "NN"),
               (256, 1024, 1024, "NT"), (256, 1024, 1024, "TN"), (256, 1024, 1024, "TT")]
SGEMM_SHAPES = [(256, 256, 256, "NN"), (1024, 1024, 1024, "NN"), (2048, 2048, 2048, "NN"),
                (64, 256, 784, "NN"), (256, 1024, 1024, "NT")]
MLP_WIDTHS = (784, 1024, 1024, 10)


def best_time(run, seconds):
    """The fastest of the calls that fit in `seconds` (at least 3), after one warm-up call."""
    run()
    times, start = [], time.perf_counter()
    while time.perf_counter() - start < seconds or len(times) < 3:
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return min(times)


def alternate(impls, rounds, seconds):
    """{name: [best time of each round]}, the implementations taking turns in every round."""
    times = {name: [] for name in impls}
    for _ in range(rounds):
        for name, run in impls.items():
            times[name].append(best_time(run, seconds))
    return times


def ratio_line(times, slower_name, faster_name):
    """'<best ratio> (median <median of the per-round ratios>)' of slower_name's time over faster_name's."""
    per_round = [s / f for s, f in zip(times[slower_name], times[faster_name])]
    return f"{min(times[slower_name]) / min(times[faster_name]):.2f}x (median {statistics.median(per_round):.2f}x)"


def gemm(torch, rounds, threads):
    rng = np.random.default_rng(0)
    for m, n, k, trans in GEMM_SHAPES:
        ta, tb = trans[0] == "T", trans[1] == "T"
        a = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
        b = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
        ta_torch, tb_torch = torch.from_numpy(a).bfloat16(), torch.from_numpy(b).bfloat16()
        ta_torch, tb_torch = (ta_torch.t() if ta else ta_torch), (tb_torch.t() if tb else tb_torch)
        times = alternate({"fastnet": lambda: ops.matmul(a, b, trans_a=ta, trans_b=tb, precision="bf16"),
                           "torch": lambda: torch.mm(ta_torch, tb_torch)}, rounds, 0.6)
        gflop = 2 * m * n * k / 1e9
        print(f"{m}x{n}x{k} {trans}, {threads}t: fastnet bf16 {gflop / min(times['fastnet']):.0f} GFLOP/s, "
              f"PyTorch bf16 {gflop / min(times['torch']):.0f}; fastnet / PyTorch "
              f"{ratio_line(times, 'torch', 'fastnet')}", flush=True)


def sgemm(torch, rounds, threads):
    from threadpoolctl import threadpool_limits

    def fastnet_at(n_threads, a, b, tb):
        def run():
            with fn.threads(n_threads):
                ops.matmul(a, b, trans_b=tb)
        return run

    rng = np.random.default_rng(0)
    with threadpool_limits(limits=threads, user_api="blas"):
        for m, n, k, trans in SGEMM_SHAPES:
            tb = trans[1] == "T"
            a = rng.standard_normal((m, k)).astype(np.float32)
            b = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
            b_np = b.T if tb else b
            a_torch, b_torch = torch.from_numpy(a), torch.from_numpy(b)
            b_torch = b_torch.t() if tb else b_torch
            times = alternate({"fastnet": fastnet_at(threads, a, b, tb), "fastnet-1t": fastnet_at(1, a, b, tb),
                               "openblas": lambda: a @ b_np, "torch": lambda: torch.mm(a_torch, b_torch)},
                              rounds, 0.6)
            gflop = 2 * m * n * k / 1e9
            print(f"{m}x{n}x{k} {trans}, {threads}t, GFLOP/s: "
                  + ", ".join(f"{name} {gflop / min(t):.0f}" for name, t in times.items()), flush=True)
            print(f"  fastnet / OpenBLAS {ratio_line(times, 'openblas', 'fastnet')}, "
                  f"/ PyTorch {ratio_line(times, 'torch', 'fastnet')}, "
                  f"/ own one thread {ratio_line(times, 'fastnet-1t', 'fastnet')}", flush=True)


def mlp(torch, rounds, threads):
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_training import batch, fastnet_step, torch_step

    x, y = batch(MLP_WIDTHS, 256)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    f32, bf16 = fastnet_step(MLP_WIDTHS, "sgd"), fastnet_step(MLP_WIDTHS, "sgd", precision="bf16")
    t32, _ = torch_step(MLP_WIDTHS, "sgd")
    autocast, _ = torch_step(MLP_WIDTHS, "sgd", autocast=True)
    times = alternate({"fastnet": lambda: f32(x, y), "fastnet-bf16": lambda: bf16(x, y),
                       "torch": lambda: t32(xt, yt), "autocast": lambda: autocast(xt, yt)}, rounds, 0.3)
    print(f"MLP {'-'.join(map(str, MLP_WIDTHS))} SGD step, batch 256, {threads}t, best ms: "
          + ", ".join(f"{name} {min(t) * 1e3:.1f}" for name, t in times.items()))
    print(f"  float32: fastnet / PyTorch {ratio_line(times, 'torch', 'fastnet')}; "
          f"bf16: fastnet / autocast {ratio_line(times, 'autocast', 'fastnet-bf16')}; "
          f"fastnet bf16 / own float32 {ratio_line(times, 'fastnet', 'fastnet-bf16')}")


def int8(model, pairs, batch, rounds, threads):
    import copy
    import os

    from fastnet.demo.translation import _load_split

    data = os.environ.get("FASTNET_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
    pairs = pairs or os.path.join(data, "tatoeba-eng-swe.tsv")
    f32 = fn.load(model)
    lang = next(iter(f32.decoders))
    quantized = copy.deepcopy(f32).quantize("int8")
    sentences = _load_split(pairs, 12, 0)[4][:1000]  # train-translator's held-out split (seed 0)
    outputs = {}

    def run(name, tr):
        def call():
            outputs[name] = tr.translate(sentences, to=lang, batch_size=batch)
        return call

    times = alternate({"float32": run("float32", f32), "int8": run("int8", quantized)}, rounds, 0.0)
    same = sum(a == b for a, b in zip(outputs["float32"], outputs["int8"]))
    print(f"greedy translation of {len(sentences)} held-out sentences into {lang}, batch {batch}, {threads}t, "
          f"int8 kernels {fn.config()['int8_path']}, best ms: "
          + ", ".join(f"{name} {min(t) * 1e3:.0f}" for name, t in times.items()))
    print(f"  int8 / float32 {ratio_line(times, 'float32', 'int8')}; {same} of {len(sentences)} outputs identical")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["gemm", "sgemm", "mlp", "int8"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--model", help="int8: a translator saved by fastnet train-translator")
    parser.add_argument("--pairs", help="int8: its pair file (default: tatoeba-eng-swe.tsv in the data folder)")
    parser.add_argument("--batch", type=int, default=64, help="int8: sentences per batch")
    args = parser.parse_args()
    fn.set_num_threads(args.threads)
    paths = f"paths: float32 {fn.config()['cpu_path']}, bf16/int8 {fn.config()['mma_path']}"
    if args.what == "int8":
        if not args.model:
            parser.error("int8 needs --model")
        print(paths)
        int8(args.model, args.pairs, args.batch, args.rounds, args.threads)
        return
    import torch

    torch.set_num_threads(args.threads)
    print(f"{paths}; torch {torch.__version__}")
    {"gemm": gemm, "sgemm": sgemm, "mlp": mlp}[args.what](torch, args.rounds, args.threads)


if __name__ == "__main__":
    main()
