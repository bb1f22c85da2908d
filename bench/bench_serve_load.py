"""Load test of the translation service with locust (headless, bounded), against 127.0.0.1 only.

    python bench/bench_serve_load.py --json demo.json     # the demo's model: table and plot (a few minutes)
    python bench/bench_serve_load.py --model sv.safetensors --pairs tatoeba-eng-swe.tsv --label "real text" \
        --json real.json                                  # a model from `fastnet train-translator`
    python bench/bench_serve_load.py --plot demo.json real.json --png serve_load.png   # one plot of both
    python bench/bench_serve_load.py --users 1 8 --seconds 10 --configs on
    python bench/bench_serve_load.py --count-check 10000  # /metrics counts vs the client's, RSS steadiness
    python bench/bench_serve_load.py --interleaved 4 --seconds 10   # the 32-user ratio, side by side
    python -m pytest bench/bench_serve_load.py --benchmark-only   # one small round

Each configuration (micro-batching off; on with the model on a thread of the
HTTP process; on with the model in a process beside it, the default; and
that with 2 worker processes; one kernel thread per process) runs as
`fastnet serve`;
locust (a third process) sends one sentence per request from 1, 8 and 32
users, each run bounded by users, time and request count. Without --model
the model is a toy one with the demo's architecture (d_model 64, word
tokens) and the sentences are toy ones; --pairs takes English sentences from
a pair file for a model trained on real text. Side by side, the same model
translates the same sentences in-process on batches of 32 (1 and 2 kernel
threads): the target is a service at 32 users reaching 0.8x of that.

The load generator runs on the same cores as the server: every row gives
the CPU time per request of both (server processes, locust), and the run
prints the CPU, the kernel path and the load average (the machine may be
shared).
"""
import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for path in (ROOT, HERE):
    if path not in sys.path:
        sys.path.insert(0, path)

from bench_serve import (  # noqa: E402  (found through the sys.path entries above)
    _free_port,
    held_out_sentences,
    in_process,
    train_model,
    wait_ready,
)

# "on" runs the model in a process beside the HTTP process (the default); "on, thread" on a thread of it
CONFIGS = {"off": ["--no-batching"], "on, thread": ["--model-thread"], "on": [], "2 workers": ["--workers", "2"]}
PLOT_LABELS = {"off": "batching off", "on, thread": "batching on, model on a thread",
               "on": "batching on, model process", "2 workers": "batching on, model process, 2 workers"}
LOCUSTFILE = os.path.join(HERE, "locustfile.py")


def _env():
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))}


class Server:
    """`fastnet serve` on a free loopback port with the options of one configuration."""

    def __init__(self, model, options, log):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, "-m", "fastnet.cli", "serve", str(model), "--host",
                                      "127.0.0.1", "--port", str(self.port), "--threads", "1", *options],
                                     env=_env(), stdout=log, stderr=subprocess.STDOUT)

    def __enter__(self):
        wait_ready(self.url, self.proc)
        return self

    def __exit__(self, *exc):
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(60)

    def processes(self):
        import psutil

        root = psutil.Process(self.proc.pid)
        return [root, *root.children(recursive=True)]

    def cpu_seconds(self):
        """CPU time used so far by the server and its workers (a dead worker's time is lost)."""
        return sum(sum(p.cpu_times()[:2]) for p in self.processes())

    def rss_bytes(self):
        return sum(p.memory_info().rss for p in self.processes())


def run_locust(url, sentences_file, users, seconds, max_requests, workdir, bad_every=0):
    """One headless locust run; returns the client's counts (statuses, latencies, seconds)."""
    counts = os.path.join(workdir, f"counts-{users}.json")
    cmd = [sys.executable, "-m", "locust", "-f", LOCUSTFILE, "--headless", "-u", str(users), "-r", str(users),
           "-t", f"{seconds}s", "--stop-timeout", "10", "--host", url, "--only-summary", "--loglevel", "WARNING",
           "--sentences", sentences_file, "--max-requests", str(max_requests), "--counts-out", counts,
           "--bad-every", str(bad_every)]
    before = _children_cpu()
    subprocess.run(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False,
                   timeout=seconds + 120)
    with open(counts, encoding="utf-8") as f:
        result = json.load(f)
    result["client_cpu_s"] = _children_cpu() - before  # locust shares the cores with the server
    return result


def _children_cpu():
    """CPU seconds used by this process's finished children (locust, once it has exited)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def summarize(counts):
    ms = np.array(counts["latencies_ms"])
    ok = counts["statuses"].get("200", 0)
    return {"requests": counts["sent"], "ok": ok, "statuses": counts["statuses"],
            "sentences_per_s": ok / counts["seconds"] if counts["seconds"] else 0.0,
            "p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
            "p99_ms": float(np.percentile(ms, 99)),
            "client_cpu_ms": counts.get("client_cpu_s", 0.0) * 1e3 / max(1, counts["sent"])}


def load_average():
    return round(os.getloadavg()[0], 1)


def pair_file_sentences(path, n=2000, max_words=12, seed=1):
    """n distinct English sentences (at most max_words words) from a tab-separated pair file, in a
    fixed random order."""
    with open(path, encoding="utf-8") as f:
        english = dict.fromkeys(line.split("\t", 1)[0].strip() for line in f if "\t" in line)
    english = [s for s in english if s and len(s.split()) <= max_words]
    order = np.random.default_rng(seed).permutation(len(english))[:n]
    return [english[i] for i in order]


def machine():
    """What the numbers were measured on: CPU, cores, fastnet's kernel path, the server's event loop and parser."""
    import importlib.util

    import fastnet

    cpu = "unknown CPU"
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    has = importlib.util.find_spec
    return {"cpu": cpu, "cores": os.cpu_count(), "cpu_path": fastnet.config()["cpu_path"],
            "loop": "uvloop" if has("uvloop") else "asyncio", "http": "httptools" if has("httptools") else "h11"}


def measure(model, users=(1, 8, 32), seconds=20, max_requests=20000, configs=tuple(CONFIGS), to="sv",
            sentences=None, label="demo architecture, toy sentences"):
    sentences = sentences or held_out_sentences(2000)
    results = {"rows": [], "in_process": {}, "label": label, "machine": machine(), "load_before": load_average()}
    with tempfile.TemporaryDirectory() as tmp:
        sentences_file = os.path.join(tmp, "sentences.txt")
        with open(sentences_file, "w", encoding="utf-8") as f:
            f.write("\n".join(sentences))
        batches = [sentences[i:i + 32] for i in range(0, 1024, 32)]
        _in_process_rates(results, model, batches, to)
        for config in configs:
            with open(os.path.join(tmp, "server.log"), "ab") as log, Server(model, CONFIGS[config], log) as server:
                run_locust(server.url, sentences_file, 8, 3, 300, tmp)  # warm-up
                for n in users:
                    cpu = server.cpu_seconds()
                    row = {"config": config, "users": n, "load": load_average(),
                           **summarize(run_locust(server.url, sentences_file, n, seconds, max_requests, tmp))}
                    row["server_cpu_ms"] = (server.cpu_seconds() - cpu) * 1e3 / max(1, row["requests"])
                    results["rows"].append(row)
                    print(format_row(row, results["in_process"][1]), flush=True)
        _in_process_rates(results, model, batches, to)
    results["load_after"] = load_average()
    return results


def interleaved_ratio(model, rounds=4, seconds=10, users=32, config="on", to="sv", sentences=None):
    """The service against in-process translate, side by side: `rounds` times an in-process run on
    batches of 32 (1 kernel thread, as the server's model) and then a locust run at `users`, with
    one more in-process run at the end. The host's speed moves by up to 2x within seconds, so a
    single 20 s server run against the best of two short in-process runs says more about the host
    than the service: here each server run is set against the mean of the in-process runs on either
    side of it (the median over rounds), and the best server run against the best in-process one."""
    sentences = sentences or held_out_sentences(2000)
    batches = [sentences[i:i + 32] for i in range(0, 1024, 32)]
    bars, served = [], []
    with tempfile.TemporaryDirectory() as tmp:
        sentences_file = os.path.join(tmp, "sentences.txt")
        with open(sentences_file, "w", encoding="utf-8") as f:
            f.write("\n".join(sentences))
        with open(os.path.join(tmp, "server.log"), "ab") as log, Server(model, CONFIGS[config], log) as server:
            run_locust(server.url, sentences_file, 8, 3, 300, tmp)  # warm-up
            for _ in range(rounds):
                bars.append(len(batches) * 32 / in_process(model, batches, to, 1))
                served.append(summarize(run_locust(server.url, sentences_file, users, seconds, 10 ** 6,
                                                   tmp))["sentences_per_s"])
                print(f"in-process {bars[-1]:.0f}, served {served[-1]:.0f} sentences/s", flush=True)
            bars.append(len(batches) * 32 / in_process(model, batches, to, 1))
    ratios = [s / ((a + b) / 2) for s, a, b in zip(served, bars, bars[1:])]
    return {"config": config, "users": users, "seconds": seconds, "in_process": bars, "served": served,
            "ratios": ratios, "median_ratio": float(np.median(ratios)), "best_ratio": max(served) / max(bars)}


def _in_process_rates(results, model, batches, to):
    """In-process sentences/s on batches of 32, at 1 and 2 threads; measured before and after the
    server rows, and the faster of the two is the baseline: the shared host's speed moves by up
    to 1.7x within minutes, and a baseline caught in a slow spell would flatter the service."""
    for threads in (1, 2):
        wall, cpu = in_process(model, batches, to, threads, with_cpu=True)
        runs = results.setdefault("in_process_runs", {}).setdefault(threads, [])
        runs.append(len(batches) * 32 / wall)
        results["in_process"][threads] = max(runs)
        if threads == 1:
            results["in_process_cpu_ms"] = min(results.get("in_process_cpu_ms", float("inf")),
                                               cpu * 1e3 / (len(batches) * 32))


def format_row(row, in_process_1):
    return (f"| {row['config']:10} | {row['users']:5} | {row['sentences_per_s']:8.0f} | "
            f"{row['sentences_per_s'] / in_process_1:5.2f}x | {row['p50_ms']:7.1f} | {row['p95_ms']:7.1f} | "
            f"{row['p99_ms']:7.1f} | {row['p99_ms'] / row['p50_ms']:5.1f} | {row['server_cpu_ms']:5.2f} | "
            f"{row['client_cpu_ms']:5.2f} | {row['ok']}/{row['requests']} | {row['load']:4} |")


def table(results):
    lines = [("| batching  | users | sentences/s | vs in-process | p50 ms | p95 ms | p99 ms | p99/p50 | server CPU ms "
              "per request | client CPU ms per request | 200s/sent | load avg |"),
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [format_row(row, results["in_process"][1]) for row in results["rows"]]
    m = results["machine"]
    lines.append(f"Model: {results['label']}. {m['cpu']}, {m['cores']} cores, fastnet path {m['cpu_path']}, server "
                 f"{m['http']} + {m['loop']}; load average {results['load_before']} before, "
                 f"{results['load_after']} after.")
    runs = results.get("in_process_runs", {})
    lines.append(f"In-process Translator.translate on batches of 32 (the faster of the runs before and after the "
                 f"server rows: {', '.join(f'{r:.0f}' for r in runs.get(1, []))} at 1 thread): "
                 f"{results['in_process'][1]:.0f} sentences/s (1 thread), {results['in_process'][2]:.0f} (2 threads); "
                 f"{results['in_process_cpu_ms']:.2f} CPU ms per sentence (1 thread).")
    return "\n".join(lines)


def plot(all_results, path):
    """Throughput and latency against users, one row of two panels per model (a list of `measure` results)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(all_results), 2, figsize=(10, 4 * len(all_results)), squeeze=False)
    for (left, right), results in zip(axes, all_results):
        for config in dict.fromkeys(row["config"] for row in results["rows"]):
            rows = [r for r in results["rows"] if r["config"] == config]
            users = [r["users"] for r in rows]
            left.plot(users, [r["sentences_per_s"] for r in rows], marker="o", label=PLOT_LABELS.get(config, config))
            right.plot(users, [r["p99_ms"] for r in rows], marker="o", label=config)
            right.plot(users, [r["p50_ms"] for r in rows], marker=".", linestyle=":",
                       color=right.lines[-1].get_color())
        left.axhline(results["in_process"][1], color="gray", linestyle="--", label="in-process, batches of 32")
        left.axhline(0.8 * results["in_process"][1], color="gray", linestyle=":", label="0.8x in-process")
        left.set(xscale="log", xlabel="concurrent users (1 sentence per request)", ylabel="sentences / s",
                 title=f"throughput: {results['label']}")
        right.set(xscale="log", yscale="log", xlabel="concurrent users", ylabel="ms",
                  title="latency: p99 (solid), p50 (dotted)")
        left.set_ylim(bottom=0)
        left.legend(fontsize=8)
        for ax in (left, right):
            ax.set_xticks([1, 8, 32], ["1", "8", "32"])
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def translate_count(url):
    """{status: count} of POST /translate as /metrics reports it."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(url + "/metrics", timeout=30).text
    return {s.labels["status"]: int(s.value) for family in text_string_to_metric_families(text)
            for s in family.samples if s.name == "fastnet_requests_total" and s.labels["endpoint"] == "/translate"}


def count_check(model, n=10000, users=32, config="on"):
    """n requests from locust (every 20th invalid: 422): the server's counts by status must equal the
    client's; RSS after the first 1,000 requests vs after all n."""
    sentences = held_out_sentences(2000)
    with tempfile.TemporaryDirectory() as tmp:
        sentences_file = os.path.join(tmp, "sentences.txt")
        with open(sentences_file, "w", encoding="utf-8") as f:
            f.write("\n".join(sentences))
        with open(os.path.join(tmp, "server.log"), "ab") as log, Server(model, CONFIGS[config], log) as server:
            before = translate_count(server.url)
            rss, stop = {}, threading.Event()

            def watch():
                while not stop.wait(0.2):
                    done = sum(translate_count(server.url).values()) - sum(before.values())
                    if done >= 1000 and "first_1000" not in rss:
                        rss["first_1000"] = server.rss_bytes()

            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            client = run_locust(server.url, sentences_file, users, 600, n, tmp, bad_every=20)
            stop.set()
            watcher.join()
            rss["end"] = server.rss_bytes()
            after = translate_count(server.url)
    server_counts = {k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) - before.get(k, 0)}
    return {"client": client["statuses"], "server": server_counts, "sent": client["sent"],
            "rss_first_1000_mb": rss.get("first_1000", 0) / 2**20, "rss_end_mb": rss["end"] / 2**20,
            "load": load_average(), "summary": summarize(client)}


def test_locust_load(benchmark, tmp_path):
    """pytest-benchmark entry: one small locust round, batching on, 8 users."""
    model = train_model(tmp_path / "translator.safetensors")
    results = benchmark.pedantic(measure, args=(model,), kwargs={"users": (8,), "seconds": 5, "max_requests": 1000,
                                                                 "configs": ("on",)}, rounds=1, iterations=1)
    row = results["rows"][0]
    benchmark.extra_info.update(row, in_process=results["in_process"][1])
    assert row["ok"] == row["requests"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="a saved Translator (default: train a small toy one)")
    parser.add_argument("--pairs", help="take the English sentences of this pair file (default: toy sentences)")
    parser.add_argument("--label", default=None, help="what the model is, for the table and the plot")
    parser.add_argument("--to", default="sv", help="target language")
    parser.add_argument("--users", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--seconds", type=int, default=20, help="time bound of each run")
    parser.add_argument("--max-requests", type=int, default=20000, help="request bound of each run")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--png", default=os.path.join(ROOT, "serve_load.png"))
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--plot", nargs="+", metavar="JSON", help="instead: plot these saved results into --png")
    parser.add_argument("--interleaved", type=int, default=0, metavar="ROUNDS",
                        help="instead: ROUNDS in-process runs alternating with --seconds runs of the service "
                             "(batching on, 32 users), each served rate against its neighbours")
    parser.add_argument("--count-check", type=int, default=0, metavar="N",
                        help="instead: N requests, compare /metrics with the client's counts and RSS")
    args = parser.parse_args(argv)
    if args.plot:
        saved = []
        for name in args.plot:
            with open(name, encoding="utf-8") as f:
                saved.append(json.load(f, object_hook=lambda d: {int(k) if k.isdigit() else k: v
                                                                 for k, v in d.items()}))
        plot(saved, args.png)
        print(f"plot: {args.png}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or train_model(os.path.join(tmp, "translator.safetensors"))
        if args.interleaved:
            report = interleaved_ratio(model, args.interleaved, args.seconds, to=args.to,
                                       sentences=pair_file_sentences(args.pairs) if args.pairs else None)
            print(json.dumps(report, indent=1))
            if args.json:
                with open(args.json, "w", encoding="utf-8") as f:
                    json.dump(report, f, indent=1)
            return 0
        if args.count_check:
            report = count_check(model, args.count_check)
            print(json.dumps(report, indent=1))
            return 0 if report["client"] == report["server"] else 1
        sentences = pair_file_sentences(args.pairs) if args.pairs else None
        label = args.label or (os.path.basename(args.model) if args.model else "demo architecture, toy sentences")
        print(f"load average before: {os.getloadavg()}", flush=True)
        results = measure(model, args.users, args.seconds, args.max_requests, args.configs, args.to, sentences,
                          label)
    print(table(results))
    plot([results], args.png)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=1)
    print(f"plot: {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
