"""/metrics: Prometheus text from prometheus-client, with counts equal to what the clients saw."""
import collections
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("starlette", reason="the serve extra (starlette) is not installed")
pytest.importorskip("uvicorn", reason="the serve extra (uvicorn) is not installed")
httpx = pytest.importorskip("httpx", reason="httpx (the test client) is not installed")

from test_serve import (
    SENTENCES,
    TIMEOUT,
    metric,
    post,
    running_server,
    scrape,
)

FAMILIES = ["fastnet_requests", "fastnet_sentences_translated", "fastnet_characters_translated",
            "fastnet_sentences_dropped", "fastnet_queue_sentences", "fastnet_requests_in_flight",
            "fastnet_batch_sentences",
            "fastnet_queue_wait_seconds", "fastnet_translation_seconds", "fastnet_request_seconds"]


def test_metrics_is_the_prometheus_text_format_with_every_family(model_path):
    from prometheus_client.parser import text_string_to_metric_families

    with running_server(model_path) as url:
        reply = httpx.get(url + "/metrics", timeout=TIMEOUT)
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/plain; version=")
    names = {family.name for family in text_string_to_metric_families(reply.text)}
    assert set(FAMILIES) <= names


def test_metrics_counts_equal_what_the_clients_saw(model_path):
    """A mix of answers from 8 threads: every count in /metrics equals the clients' own tally."""
    requests = []
    for i in range(60):
        kind = i % 6
        if kind < 3:
            requests.append(("/translate", {"texts": SENTENCES[i % 8: i % 8 + 1 + kind], "to": "sv"}))
        elif kind == 3:
            requests.append(("/translate", {"texts": [], "to": "sv"}))  # 422
        elif kind == 4:
            requests.append(("/translate", {"texts": ["cats"], "to": "fr"}))  # 400
        else:
            requests.append(("/nowhere", None))  # 404

    def send(request):
        path, payload = request
        if payload is None:
            return path, httpx.get(url + path, timeout=TIMEOUT), payload
        return path, post(url, payload), payload

    with running_server(model_path) as url:
        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(send, requests))
        samples = scrape(url)
    seen = collections.Counter((path if path != "/nowhere" else "other", str(reply.status_code))
                               for path, reply, _ in results)
    seen[("/health", "200")] += 1  # the start-up check
    reported = {(dict(labels)["endpoint"], dict(labels)["status"]): value
                for (name, labels), value in samples.items() if name == "fastnet_requests_total"}
    assert reported == dict(seen)
    translated = [payload["texts"] for path, reply, payload in results if reply.status_code == 200]
    assert metric(samples, "fastnet_sentences_translated_total") == sum(map(len, translated))
    assert metric(samples, "fastnet_characters_translated_total") == sum(len(t) for ts in translated for t in ts)
    assert metric(samples, "fastnet_batch_sentences_sum") == sum(map(len, translated))
    assert metric(samples, "fastnet_request_seconds_count", endpoint="/translate") == seen[("/translate", "200")] + \
        seen[("/translate", "422")] + seen[("/translate", "400")]
    assert metric(samples, "fastnet_queue_sentences") == 0
