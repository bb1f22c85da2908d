"""Translation service under load: sentences/s and p50/p99 latency over loopback, from a second process.

    python bench/bench_serve.py                       # trains a small toy model first (~20 s)
    python bench/bench_serve.py --model tr.safetensors --requests 200 --concurrency 8 --batch 1
    python -m pytest bench/bench_serve.py --benchmark-only   # the same, as one pytest-benchmark round

The server runs `fastnet.serve.run` in its own process (one kernel thread by
default); this process sends `--requests` POST /translate requests from
`--concurrency` threads, each with a keep-alive connection, `--batch` sentences
per request. Side by side, the same sentences go through `Translator.translate`
in-process with the same batch size: the ratio shows what HTTP, JSON and
queueing cost on top of the model.
"""
import argparse
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import fastnet  # noqa: E402

STARTUP_TIMEOUT = 60.0
REQUEST_TIMEOUT = 60.0


def train_model(path, seed=0):
    """The demo's architecture (d_model 64, 2 layers) on toy sentences, trained briefly on one thread."""
    from fastnet.datasets import toy_translations
    from fastnet.demo.translation import DEMO_ARCH
    from fastnet.seq2seq.translator import Translator

    data = toy_translations(1000, seed=seed, split="train")
    targets = {"sv": data.sv, "es": data.es}
    tr = Translator.build(data.en, targets, seed=seed, **DEMO_ARCH)
    with fastnet.threads(1):
        tr.fit(data.en, targets, epochs=8, batch_size=32, lr=3e-3, warmup=50, verbose=0)
    tr.save(path)
    return path


def held_out_sentences(n, seed=1):
    from fastnet.datasets import toy_translations

    return toy_translations(n, seed=seed, split="test").en


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model_path, port, threads):
    code = (f"from fastnet.serve import run; run({str(model_path)!r}, host='127.0.0.1', port={port}, "
            f"threads={threads}, log_level='warning')")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def wait_ready(url, proc):
    import httpx

    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with status {proc.returncode} while starting")
        try:
            if httpx.get(url + "/health", timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready within {STARTUP_TIMEOUT} s")


@contextlib.contextmanager
def served(model_path, threads):
    """The URL of a `fastnet.serve.run` server on a free port in its own process, answering /health;
    the process is stopped on the way out."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_server(model_path, port, threads)
    try:
        wait_ready(url, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)


def load(url, batches, to, concurrency):
    """Send every batch (bounded to `concurrency` in flight); return (wall seconds, per-request latencies)."""
    import httpx

    local = threading.local()

    def send(texts):
        if not hasattr(local, "client"):
            local.client = httpx.Client(timeout=REQUEST_TIMEOUT)
        start = time.perf_counter()
        reply = local.client.post(url + "/translate", json={"texts": texts, "to": to})
        elapsed = time.perf_counter() - start
        if reply.status_code != 200 or len(reply.json()["translations"]) != len(texts):
            raise RuntimeError(f"request failed: {reply.status_code} {reply.text[:200]}")
        return elapsed

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        latencies = list(pool.map(send, batches))
    return time.perf_counter() - start, latencies


def in_process(model_path, batches, to, threads, with_cpu=False):
    """Wall seconds to translate `batches` one after another in this process (and CPU seconds, with_cpu)."""
    tr = fastnet.load(model_path)
    with fastnet.threads(threads):
        tr.translate(batches[0], to=to)  # warm-up
        start, cpu = time.perf_counter(), time.process_time()
        for texts in batches:
            tr.translate(texts, to=to)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return (wall, cpu) if with_cpu else wall


def measure(model_path, requests=200, concurrency=8, batch=1, to="sv", threads=1):
    sentences = held_out_sentences(requests * batch)
    batches = [sentences[i * batch:(i + 1) * batch] for i in range(requests)]
    with served(model_path, threads) as url:
        load(url, batches[: min(16, requests)], to, concurrency)  # warm-up: connections, first calls
        wall, latencies = load(url, batches, to, concurrency)
    direct = in_process(model_path, batches, to, threads)
    ms = np.array(latencies) * 1e3
    return {
        "requests": requests, "concurrency": concurrency, "batch": batch, "threads": threads,
        "sentences_per_s": requests * batch / wall, "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)), "mean_ms": statistics.fmean(ms.tolist()),
        "in_process_sentences_per_s": requests * batch / direct,
    }


def report(result, print=print):
    print(f"{result['requests']} requests x {result['batch']} sentence(s), {result['concurrency']} concurrent, "
          f"server on {result['threads']} kernel thread(s):")
    print(f"  service:    {result['sentences_per_s']:8.1f} sentences/s   p50 {result['p50_ms']:7.1f} ms   "
          f"p99 {result['p99_ms']:7.1f} ms")
    print(f"  in-process: {result['in_process_sentences_per_s']:8.1f} sentences/s   (Translator.translate, "
          f"same batches, one after another)")
    print(f"  service / in-process throughput: "
          f"{result['sentences_per_s'] / result['in_process_sentences_per_s']:.2f}x")


def test_service_under_load(benchmark, tmp_path):
    """pytest-benchmark entry: one round of the default load; the numbers go into extra_info."""
    model = train_model(tmp_path / "translator.safetensors")
    result = benchmark.pedantic(measure, args=(model,), rounds=1, iterations=1)
    benchmark.extra_info.update(result, impl="fastnet.serve")
    report(result)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="a saved Translator (default: train a small toy one)")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--batch", type=int, default=1, help="sentences per request")
    parser.add_argument("--to", default="sv")
    parser.add_argument("--threads", type=int, default=1, help="kernel threads in the server")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or train_model(os.path.join(tmp, "translator.safetensors"))
        report(measure(model, args.requests, args.concurrency, args.batch, args.to, args.threads))


if __name__ == "__main__":
    main()
