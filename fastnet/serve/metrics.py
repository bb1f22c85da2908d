"""Prometheus metrics of the translation service, through the official prometheus-client.

One process: the metrics live in the service's own CollectorRegistry, so two
apps in one process (as in the tests) never mix their counts. Worker
processes: the supervisor sets PROMETHEUS_MULTIPROC_DIR before a worker
starts, prometheus-client then keeps every value in files there, and
/metrics merges all workers' files (MultiProcessCollector), so whichever
worker answers reports the whole service.
"""
import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def multiprocess_dir():
    return os.environ.get(MULTIPROC_ENV) or None


class ServeMetrics:
    """Every metric the service reports; `exposition()` is the /metrics body."""

    def __init__(self):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("fastnet_requests", "HTTP requests answered, by endpoint and status",
                                ["endpoint", "status"], registry=r)
        self.sentences = Counter("fastnet_sentences_translated", "Sentences translated", registry=r)
        self.characters = Counter("fastnet_characters_translated", "Characters of source text translated",
                                  registry=r)
        self.dropped = Counter("fastnet_sentences_dropped",
                               "Queued sentences dropped before translation, by reason (disconnect, deadline)",
                               ["reason"], registry=r)
        # livesum: with workers, the sum over the processes alive now
        self.queue = Gauge("fastnet_queue_sentences", "Sentences waiting in the batching queue", registry=r,
                           multiprocess_mode="livesum")
        self.in_flight = Gauge("fastnet_requests_in_flight", "Requests being handled now", registry=r,
                               multiprocess_mode="livesum")
        self.batch_size = Histogram("fastnet_batch_sentences", "Sentences per model call", buckets=BATCH_BUCKETS,
                                    registry=r)
        self.queue_wait = Histogram("fastnet_queue_wait_seconds", "Time a request waited before its batch ran",
                                    buckets=LATENCY_BUCKETS, registry=r)
        self.translation = Histogram("fastnet_translation_seconds", "Time of one model call (one batch)",
                                     buckets=LATENCY_BUCKETS, registry=r)
        self.latency = Histogram("fastnet_request_seconds", "Whole request time in the server, by endpoint",
                                 ["endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self._answered = {}  # (endpoint, status) -> (its requests counter, its latency histogram)

    def answered(self, endpoint, status, seconds):
        """Count one answered request (the labelled children are looked up once per endpoint and status)."""
        children = self._answered.get((endpoint, status))
        if children is None:
            children = self._answered[endpoint, status] = (self.requests.labels(endpoint, str(status)),
                                                           self.latency.labels(endpoint))
        children[0].inc()
        children[1].observe(seconds)

    def exposition(self):
        """The Prometheus text format of this process, or of all workers in multiprocess mode."""
        if multiprocess_dir():
            registry = CollectorRegistry()
            MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)
