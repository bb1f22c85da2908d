"""Locust users for the translation service: each POSTs one sentence per request to /translate, no pause.

Run by bench/bench_serve_load.py (headless); by hand:

    locust -f bench/locustfile.py --headless -u 8 -r 8 -t 20s --host http://127.0.0.1:8000 \
        --sentences sentences.txt --max-requests 2000 --counts-out counts.json

The run is bounded three ways: users (-u), time (-t) and requests
(--max-requests: the users stop and locust quits once that many were sent).
--counts-out writes what the client saw: status counts, every latency, and
the time from the first request to the last answer.
"""
import itertools
import json
import time
from collections import Counter

import gevent
from locust import FastHttpUser, constant, events, task
from locust.exception import StopUser

STATE = {"sent": 0, "statuses": Counter(), "latencies_ms": [], "first": None, "last": None, "sentences": None}


@events.init_command_line_parser.add_listener
def _options(parser):
    parser.add_argument("--sentences", default="", help="file with one English sentence per line")
    parser.add_argument("--to", default="sv", help="target language")
    parser.add_argument("--max-requests", type=int, default=0, help="stop after this many requests (0: no cap)")
    parser.add_argument("--counts-out", default="", help="JSON file for the client-side counts and latencies")
    parser.add_argument("--bad-every", type=int, default=0,
                        help="every Nth request is invalid (an empty sentence: 422), to count errors too")


@events.test_start.add_listener
def _load_sentences(environment, **_):
    with open(environment.parsed_options.sentences, encoding="utf-8") as f:
        STATE["sentences"] = itertools.cycle([line.strip() for line in f if line.strip()])


@events.quitting.add_listener
def _write_counts(environment, **_):
    out = environment.parsed_options.counts_out
    if out:
        with open(out, "w", encoding="utf-8") as f:
            json.dump({"sent": STATE["sent"], "statuses": dict(STATE["statuses"]),
                       "latencies_ms": STATE["latencies_ms"],
                       "seconds": (STATE["last"] or 0) - (STATE["first"] or 0)}, f)


class Translator(FastHttpUser):
    wait_time = constant(0)

    @task
    def translate(self):
        options = self.environment.parsed_options
        if options.max_requests and STATE["sent"] >= options.max_requests:
            gevent.spawn(self.environment.runner.quit)  # every user stops; locust exits by itself
            raise StopUser()
        STATE["sent"] += 1
        bad = options.bad_every and STATE["sent"] % options.bad_every == 0
        payload = {"texts": [" " if bad else next(STATE["sentences"])], "to": options.to}
        start = time.perf_counter()
        STATE["first"] = STATE["first"] or start
        with self.client.post("/translate", json=payload, catch_response=True) as reply:
            end = time.perf_counter()
            STATE["last"] = end
            STATE["statuses"][str(reply.status_code)] += 1  # 0: no HTTP answer (connection lost)
            STATE["latencies_ms"].append((end - start) * 1e3)
            if reply.status_code != (422 if bad else 200):
                reply.failure(f"status {reply.status_code}")
