"""Micro-batching: concurrent requests share model calls, each gets its own translation; deadline,
disconnects, size caps and a full queue. The model is held (its lock taken) to line requests up."""
import contextlib
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("starlette", reason="the serve extra (starlette) is not installed")
pytest.importorskip("uvicorn", reason="the serve extra (uvicorn) is not installed")
httpx = pytest.importorskip("httpx", reason="httpx (the test client) is not installed")

from fastnet.serve import Batching
from test_serve import (
    PARSERS,
    SENTENCES,
    TIMEOUT,
    expected,
    metric,
    post,
    scrape,
    serving,
)


@contextlib.contextmanager
def model_held(service):
    """Holds the model lock (as /draw or any other model use would) until the block ends."""
    release, held = threading.Event(), threading.Event()

    def hold(_translator):
        held.set()
        release.wait(4 * TIMEOUT)

    thread = threading.Thread(target=service.run_exclusive, args=(hold,), daemon=True)
    thread.start()
    assert held.wait(TIMEOUT)
    try:
        yield
    finally:
        release.set()
        thread.join(TIMEOUT)


def wait_for(condition, what):
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def queued(url):
    return metric(scrape(url), "fastnet_queue_sentences")


def batches_started(url):
    return metric(scrape(url), "fastnet_queue_wait_seconds_count")


def send_all(url, jobs):
    """POST every (texts, to) job at once from its own thread; returns the pool's futures."""
    pool = ThreadPoolExecutor(max_workers=len(jobs))
    futures = [pool.submit(post, url, {"texts": texts, "to": to}) for texts, to in jobs]
    pool.shutdown(wait=False)
    return futures


def test_concurrent_requests_merge_into_batches_and_each_reply_is_its_own_translation(model_path, reference):
    first = (["a dog runs"], "sv")
    jobs = [(SENTENCES[i % 8: i % 8 + 1 + i % 2], "es" if i % 5 == 0 else "sv") for i in range(15)]
    with serving(model_path, batching=Batching(window_ms=50, max_sentences=64)) as (url, server):
        service = server.config.app.state.service
        with model_held(service):
            head = send_all(url, [first])
            wait_for(lambda: batches_started(url) == 1, "the first request to reach the model")
            futures = send_all(url, jobs)
            total = sum(len(texts) for texts, _ in jobs)
            wait_for(lambda: queued(url) == total, f"{total} sentences queued")
        replies = [f.result(TIMEOUT) for f in head + futures]
        samples = scrape(url)
    for (texts, to), reply in zip([first] + jobs, replies):
        assert reply.status_code == 200, reply.text
        assert reply.json() == {"translations": expected(reference, texts, to), "to": to}
    # one batch for the first request, then one per language for the 15 that waited together
    assert metric(samples, "fastnet_batch_sentences_count") == 3
    assert metric(samples, "fastnet_batch_sentences_sum") == total + 1
    assert metric(samples, "fastnet_batch_sentences_bucket", le="1.0") == 1  # only the first ran alone
    assert metric(samples, "fastnet_sentences_translated_total") == total + 1


def test_a_lone_request_does_not_wait_out_the_window(model_path, reference):
    """Nothing else is on its way into the queue, so waiting 3 s for company would only add latency."""
    with serving(model_path, batching=Batching(window_ms=3000)) as (url, _):
        post(url, {"texts": ["dogs are big"], "to": "sv"})  # warm-up
        start = time.monotonic()
        reply = post(url, {"texts": ["cats are cute"], "to": "sv"})
        assert time.monotonic() - start < 1.5
        assert reply.json()["translations"] == expected(reference, ["cats are cute"], "sv")


@pytest.mark.parametrize("budget, batches", [({"max_sentences": 2}, 4), ({"max_tokens": 8}, 4)],
                         ids=["sentence cap", "token budget"])
def test_batches_are_cut_at_the_sentence_cap_and_the_token_budget(model_path, reference, budget, batches):
    # "cats are cute" is 3 words + eos = 4 tokens: a budget of 8 padded tokens holds 2 of them
    jobs = [(["cats are cute"], "sv")] * 6
    with serving(model_path, batching=Batching(window_ms=20, **budget)) as (url, server):
        with model_held(server.config.app.state.service):
            futures = send_all(url, jobs[:1])
            wait_for(lambda: batches_started(url) == 1, "the first request to reach the model")
            futures += send_all(url, jobs[1:])
            wait_for(lambda: queued(url) == 5, "5 sentences queued")
        replies = [f.result(TIMEOUT) for f in futures]
        samples = scrape(url)
    assert all(r.json()["translations"] == expected(reference, ["cats are cute"], "sv") for r in replies)
    assert metric(samples, "fastnet_batch_sentences_count") == batches  # 1, then 2 + 2 + 1
    assert metric(samples, "fastnet_batch_sentences_bucket", le="2.0") == batches


def test_a_request_past_its_deadline_gets_503_with_retry_after(model_path, reference):
    with serving(model_path, batching=Batching(window_ms=1, deadline_s=0.5)) as (url, server):
        with model_held(server.config.app.state.service):
            futures = send_all(url, [(["cats are cute"], "sv")])
            wait_for(lambda: batches_started(url) == 1, "the first request to reach the model")
            start = time.monotonic()
            late = post(url, {"texts": ["dogs are big", "a dog runs"], "to": "sv"})  # waits in the queue
            waited = time.monotonic() - start
            first = futures[0].result(TIMEOUT)
        assert late.status_code == 503 and late.json()["error"] == "deadline_exceeded"
        assert int(late.headers["Retry-After"]) >= 1 and late.json()["retry_after"] >= 1
        assert 0.4 < waited < TIMEOUT
        assert first.status_code == 503  # it reached the model, but the model was not free in time either
        samples = scrape(url)
        assert metric(samples, "fastnet_sentences_dropped_total", reason="deadline") == 2
        assert metric(samples, "fastnet_queue_sentences") == 0
        good = post(url, {"texts": ["dogs are big"], "to": "sv"})
        assert good.status_code == 200 and good.json()["translations"] == expected(reference, ["dogs are big"], "sv")


@pytest.mark.parametrize("server_protocol", [*PARSERS, "plain h11"])
def test_a_client_that_disconnects_drops_its_sentences_from_the_queue(model_path, reference, server_protocol):
    """fastnet's protocol (either parser) reports the lost connection through the scope; under a plain
    uvicorn protocol the batcher waits for ASGI's http.disconnect instead: the same outcome."""
    options = {"protocol": "h11"} if server_protocol == "plain h11" else {"http": server_protocol}
    with serving(model_path, batching=Batching(window_ms=1), **options) as (url, server):
        port = int(url.rsplit(":", 1)[1])
        with model_held(server.config.app.state.service):
            futures = send_all(url, [(["cats are cute"], "sv")])
            wait_for(lambda: batches_started(url) == 1, "the first request to reach the model")
            body = b'{"texts": ["dogs are big", "a dog runs", "birds are small"], "to": "sv"}'
            with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw:
                raw.sendall(b"POST /translate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                            b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
                wait_for(lambda: queued(url) == 3, "the 3 sentences queued")
            wait_for(lambda: queued(url) == 0, "the queue to drop them")
            assert metric(scrape(url), "fastnet_sentences_dropped_total", reason="disconnect") == 3
        first = futures[0].result(TIMEOUT)
        assert first.status_code == 200 and first.json()["translations"] == expected(reference, ["cats are cute"],
                                                                                     "sv")
        assert metric(scrape(url), "fastnet_sentences_translated_total") == 1  # the dropped ones never ran


def test_requests_over_the_size_limits_are_refused_before_they_enter_the_queue(model_path):
    too_big = {
        "too_many_texts": {"texts": ["cats"] * 65, "to": "sv"},
        "text_too_long": {"texts": ["a" * 501], "to": "sv"},
        "untranslatable": {"texts": [" ".join(["cats"] * 40)], "to": "sv"},
    }
    with serving(model_path) as (url, server):
        with model_held(server.config.app.state.service):  # a queued request would wait for this
            for error, payload in too_big.items():
                reply = post(url, payload)
                assert 400 <= reply.status_code < 500 and reply.json()["error"] == error
            assert queued(url) == 0 and batches_started(url) == 0


def test_a_full_queue_answers_503_overloaded_before_queueing(model_path):
    with serving(model_path, batching=Batching(window_ms=1, max_queue=2)) as (url, server):
        with model_held(server.config.app.state.service):
            futures = send_all(url, [(["cats are cute"], "sv")])
            wait_for(lambda: batches_started(url) == 1, "the first request to reach the model")
            futures += send_all(url, [(["dogs are big", "a dog runs"], "sv")])
            wait_for(lambda: queued(url) == 2, "2 sentences queued")
            full = post(url, {"texts": ["birds are small"], "to": "sv"})
            assert full.status_code == 503 and full.json()["error"] == "overloaded"
            assert int(full.headers["Retry-After"]) >= 1
        assert [f.result(TIMEOUT).status_code for f in futures] == [200, 200]


def test_with_batching_off_each_request_is_its_own_model_call(model_path, reference):
    jobs = [(SENTENCES[i: i + 2], "sv") for i in range(6)]
    with serving(model_path, batching=Batching(enabled=False)) as (url, _):
        replies = [f.result(TIMEOUT) for f in send_all(url, jobs)]
        samples = scrape(url)
    for (texts, to), reply in zip(jobs, replies):
        assert reply.json()["translations"] == expected(reference, texts, to)
    assert metric(samples, "fastnet_batch_sentences_count") == 6
    assert metric(samples, "fastnet_batch_sentences_sum") == 12


@pytest.mark.parametrize("bad", [{"max_sentences": 0}, {"max_tokens": 1.5}, {"window_ms": -1},
                                 {"deadline_s": 0}, {"deadline_s": float("nan")}])
def test_batching_settings_are_checked(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        Batching(**bad)


def test_the_token_counts_of_the_batching_budget_are_the_encoders(reference):
    from fastnet.serve import TranslationService

    service = TranslationService(reference)
    texts = SENTENCES + ["cats", "an unknown wordy sentence"]
    ids = reference.encode_source(texts)
    assert service.source_tokens(texts) == (ids != reference.encoder.pad_id).sum(axis=1).tolist()


def test_the_batcher_waits_for_more_requests_only_while_more_are_expected():
    from types import SimpleNamespace

    from fastnet.serve.batching import MicroBatcher
    from fastnet.serve.metrics import ServeMetrics

    service = SimpleNamespace(in_flight=0, metrics=ServeMetrics())
    batcher = MicroBatcher(service, Batching(window_ms=5))
    cut_at = 0.005
    batcher._last_arrival, batcher._last_batch_requests = 0.0, 1
    assert batcher._wait_until(0.0001, cut_at) is None  # a lone client: translated at once
    batcher._last_batch_requests = 3  # clients sent concurrently: wait a fifth of the window for the next
    assert batcher._wait_until(0.0001, cut_at) == pytest.approx(0.001)
    assert batcher._wait_until(0.0015, cut_at) is None  # none came within it
    service.in_flight = 2  # requests being read or checked: wait for them, up to the window
    assert batcher._wait_until(0.0015, cut_at) == cut_at
    assert batcher._wait_until(cut_at, cut_at) is None  # the oldest has waited the window
