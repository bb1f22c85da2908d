"""The page's story endpoints: p50/p99 of POST /represent and POST /draw for one sentence (target: p50 < 20 ms).

    python bench/bench_story.py                                   # trains a demo-like model first (~30 s)
    python bench/bench_story.py --model fastnet-demo/model.safetensors --requests 300
    python -m pytest bench/bench_story.py --benchmark-only         # the same, as one pytest-benchmark round

The server runs `fastnet.serve.run` in its own process with 1 and then 2
kernel threads; this process sends one request at a time (one sentence each,
as the page does while a person types) over a keep-alive connection. Side by
side: /translate for the same sentences, and the same model calls made
in-process (represent; represent + draw + PNG), so the HTTP and JSON share of
each answer shows.
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for path in (ROOT, os.path.dirname(os.path.abspath(__file__))):
    if path not in sys.path:
        sys.path.insert(0, path)

from bench_serve import held_out_sentences, served  # noqa: E402

import fastnet  # noqa: E402


def train_model(path, seed=0):
    """The demo's recipe, briefly: DEMO_ARCH on toy sentences with picture descriptions, then the demo's
    pixel decoder (hidden 256, 512) on the frozen representation. Speed, not quality, is measured."""
    from fastnet.datasets import toy_pictures, toy_translations
    from fastnet.demo.translation import DEMO_ARCH
    from fastnet.image import train_pixels
    from fastnet.seq2seq.translator import Translator

    data = toy_translations(1000, seed=seed, split="train", pictures=0.3)
    targets = {"sv": data.sv, "es": data.es}
    tr = Translator.build(data.en, targets, seed=seed, **DEMO_ARCH)
    pictures = toy_pictures(500, seed=seed, split="train")
    with fastnet.threads(1):
        tr.fit(data.en, targets, epochs=6, batch_size=32, lr=3e-3, warmup=50, verbose=0)
        train_pixels(tr, pictures.texts, pictures.images, epochs=3, verbose=False, seed=seed)
    tr.save(path)
    return path


def _latencies(client, url, route, payloads):
    out = []
    for payload in payloads:
        start = time.perf_counter()
        reply = client.post(url + route, json=payload)
        out.append(time.perf_counter() - start)
        if reply.status_code != 200:
            raise RuntimeError(f"{route} failed: {reply.status_code} {reply.text[:200]}")
    return np.array(out) * 1e3


def _in_process_ms(fn, sentences):
    fn(sentences[0])  # warm-up
    out = []
    for sentence in sentences:
        start = time.perf_counter()
        fn(sentence)
        out.append(time.perf_counter() - start)
    return float(np.percentile(np.array(out) * 1e3, 50))


def measure(model_path, requests=200, threads=1):
    import httpx

    from fastnet.image import png_bytes

    sentences = held_out_sentences(requests)
    routes = {"/represent": [{"texts": [s]} for s in sentences], "/draw": [{"text": s} for s in sentences],
              "/translate": [{"texts": [s], "to": "sv"} for s in sentences]}
    with served(model_path, threads) as url, httpx.Client(timeout=60.0) as client:
        for route, payloads in routes.items():
            _latencies(client, url, route, payloads[:20])  # warm-up: the reference map, first calls
        ms = {route: _latencies(client, url, route, payloads) for route, payloads in routes.items()}
    tr = fastnet.load(model_path)
    with fastnet.threads(threads):
        direct = {"/represent": _in_process_ms(lambda s: tr.represent([s]), sentences),
                  "/draw": _in_process_ms(lambda s: png_bytes(tr.draw(s)), sentences),
                  "/translate": _in_process_ms(lambda s: tr.translate([s], to="sv"), sentences)}
    result = {"requests": requests, "threads": threads, "cpu_path": fastnet.config().get("cpu_path"),
              "load_average": os.getloadavg()[0]}
    for route, values in ms.items():
        name = route.strip("/")
        result.update({f"{name}_p50_ms": float(np.percentile(values, 50)),
                       f"{name}_p99_ms": float(np.percentile(values, 99)),
                       f"{name}_in_process_p50_ms": direct[route]})
    return result


def report(result, print=print):
    print(f"{result['requests']} requests of one sentence, one at a time; server on {result['threads']} kernel "
          f"thread(s), CPU path {result['cpu_path']}, load average {result['load_average']:.2f}:")
    for name in ("represent", "draw", "translate"):
        print(f"  /{name:<10} p50 {result[f'{name}_p50_ms']:6.2f} ms   p99 {result[f'{name}_p99_ms']:6.2f} ms   "
              f"(in-process model call p50 {result[f'{name}_in_process_p50_ms']:6.2f} ms)")


@pytest.mark.parametrize("threads", [1, 2])
def test_story_endpoints(benchmark, tmp_path, threads):
    """pytest-benchmark entry: one round per server thread count; the numbers go into extra_info."""
    result = benchmark.pedantic(measure, args=(train_model(tmp_path / "story.safetensors"), 200, threads),
                                rounds=1, iterations=1)
    benchmark.extra_info.update(result, impl="fastnet.serve.story")
    report(result)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="a saved Translator with a pixel decoder (default: train a demo-like one)")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="kernel threads in the server")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or train_model(os.path.join(tmp, "story.safetensors"))
        for threads in args.threads:
            report(measure(model, args.requests, threads))


if __name__ == "__main__":
    main()
