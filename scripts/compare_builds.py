"""Compare two builds of fastnet (e.g. the installed wheel and the in-place source build).

    python compare_builds.py run OUT.npz [--expect-prefix DIR]   # in each interpreter
    python compare_builds.py compare A.npz B.npz                  # bitwise check + speed ratios

`run` computes matmul, dense (every activation) and Network predict/predict_proba
outputs on fixed seeded inputs with a fixed thread count (2), times a few of them (1 thread),
and stores everything in OUT.npz. `compare` fails unless every output is
bitwise identical, and prints the median times side by side.
"""
import argparse
import statistics
import sys
import time

import numpy as np

THREADS = 2
ACTIVATIONS = ("identity", "step", "sigmoid", "tanh", "relu", "leaky_relu", "gelu")


def _seconds(fn, repeat=15, number=5):
    """(median, best) seconds per call over `repeat` rounds of `number` calls."""
    fn()  # warm-up: buffers, thread pool
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - start) / number)
    return np.array([statistics.median(times), min(times)])


def _digits_network(fn):
    return fn.Network([fn.Dense(64, 128, activation="relu"), fn.Dropout(0.1), fn.Dense(128, 10)], seed=0)


def run(out_path, expect_prefix):
    import fastnet as fn

    if expect_prefix and not fn.__file__.startswith(expect_prefix):
        sys.exit(f"fastnet was imported from {fn.__file__}, expected a file under {expect_prefix}")
    print(f"fastnet from {fn.__file__}")
    fn.set_num_threads(THREADS)
    rng = np.random.default_rng(2024)
    results, timings = {}, {}
    for m, k, n in ((1, 64, 10), (37, 129, 65), (256, 512, 384)):
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        results[f"matmul_{m}x{k}x{n}"] = fn.ops.matmul(a, b)
        results[f"matmul64_{m}x{k}x{n}"] = fn.ops.matmul(a.astype(np.float64), b.astype(np.float64))
    x = rng.standard_normal((300, 96), dtype=np.float32)
    w = rng.standard_normal((96, 70), dtype=np.float32) * 0.1
    bias = rng.standard_normal(70, dtype=np.float32)
    for act in ACTIVATIONS:
        results[f"dense_{act}"] = fn.ops.dense(x, w, bias, activation=act)
    net = _digits_network(fn)
    X = rng.standard_normal((256, 64), dtype=np.float32)
    y = rng.integers(0, 10, 256)
    for _ in range(5):
        net.train_on_batch(X[:32], y[:32])
    results["digits_predict_proba"] = net.predict_proba(X)
    results["digits_predict"] = net.predict(X)
    results["digits_weights_after_training"] = net.store.data.copy()

    # Timed on one thread: on a shared machine a descheduled OpenMP thread adds noise that has
    # nothing to do with how the build was compiled.
    fn.set_num_threads(1)
    big_a = rng.standard_normal((512, 512), dtype=np.float32)
    big_b = rng.standard_normal((512, 512), dtype=np.float32)
    timings["matmul 512^3"] = _seconds(lambda: fn.ops.matmul(big_a, big_b))
    xd = rng.standard_normal((256, 784), dtype=np.float32)
    wd = rng.standard_normal((784, 256), dtype=np.float32)
    bd = np.zeros(256, np.float32)
    timings["dense 256x784x256 relu"] = _seconds(lambda: fn.ops.dense(xd, wd, bd, activation="relu"))
    timings["digits predict_proba b=256"] = _seconds(lambda: net.predict_proba(X))
    timings["digits train step b=32"] = _seconds(lambda: net.train_on_batch(X[:32], y[:32]))
    np.savez(out_path, **results, **{"time/" + k: v for k, v in timings.items()})
    print(f"wrote {len(results)} results and {len(timings)} timings to {out_path}")


def compare(path_a, path_b):
    a, b = np.load(path_a), np.load(path_b)
    outputs = sorted(k for k in a.files if not k.startswith("time/"))
    if outputs != sorted(k for k in b.files if not k.startswith("time/")):
        sys.exit(f"{path_a} and {path_b} hold different results")
    differ = [k for k in outputs if a[k].dtype != b[k].dtype or a[k].shape != b[k].shape
              or a[k].tobytes() != b[k].tobytes()]
    if differ:
        sys.exit(f"builds differ (not bitwise identical) in: {', '.join(differ)}")
    print(f"bitwise identical: {len(outputs)} outputs (matmul f32/f64, dense x {len(ACTIVATIONS)} activations, "
          f"digits network predict/predict_proba/trained weights)")
    name_a, name_b = (p.rsplit("/", 1)[-1].split("_")[0] for p in (path_a, path_b))
    ratio = f"{name_a}/{name_b}"
    print(f"{'ms per call (median, best)':<28}{name_a:>16}{name_b:>16}{ratio + ' median':>22}{'best':>6}")
    for key in sorted(k for k in a.files if k.startswith("time/")):
        (ma, ba), (mb, bb) = a[key], b[key]
        print(f"{key[5:]:<28}{ma * 1e3:>8.3f}{ba * 1e3:>8.3f}{mb * 1e3:>8.3f}{bb * 1e3:>8.3f}{ma / mb:>22.2f}"
              f"{ba / bb:>6.2f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run")
    p_run.add_argument("out")
    p_run.add_argument("--expect-prefix", default="")
    p_cmp = sub.add_parser("compare")
    p_cmp.add_argument("a")
    p_cmp.add_argument("b")
    args = parser.parse_args(argv)
    if args.command == "run":
        run(args.out, args.expect_prefix)
    else:
        compare(args.a, args.b)


if __name__ == "__main__":
    main()
