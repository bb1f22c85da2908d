"""The translation service: a real uvicorn server on a free loopback port, driven over HTTP."""
import contextlib
import importlib.util
import json
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import fastnet

pytest.importorskip("starlette", reason="the serve extra (starlette) is not installed")
pytest.importorskip("uvicorn", reason="the serve extra (uvicorn) is not installed")
httpx = pytest.importorskip("httpx", reason="httpx (the test client) is not installed")

from fastnet.serve import Limits, make_server  # noqa: E402
from fastnet.serve.protocol import http_protocols  # noqa: E402

# the HTTP parsers the server can use here (httptools is optional) and the event loops
PARSERS = sorted(http_protocols())
LOOPS = ["asyncio"] + (["uvloop"] if importlib.util.find_spec("uvloop") else [])
TIMEOUT = 20.0  # seconds for any single request, start-up or shut-down; the machine may be busy
SENTENCES = ["cats are cute", "dogs are big", "the cat sees the dog", "birds are small", "a dog runs",
             "the birds are happy", "cats are big", "dogs are cute"]


def wait_until_healthy(base_url, deadline, alive=lambda: True):
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"the server at {base_url} stopped while starting")
        try:
            if httpx.get(base_url + "/health", timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"the server at {base_url} did not answer /health within {TIMEOUT} s")


@contextlib.contextmanager
def serving(model_path, protocol=None, **options):
    """(base_url, uvicorn server) of a server in a background thread on a free port; always stopped after.

    The server object gives tests its service: server.config.app.state.service. protocol: a uvicorn
    protocol ("h11", a class) instead of fastnet's guarded one, to run the app as any ASGI server would."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    threads_before = fastnet.get_num_threads()  # threads=1 sets the process-wide count: restore it after
    server = make_server(model_path, "127.0.0.1", port, threads=1, **options)
    if protocol is not None:
        server.config.http = protocol
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="serve-test")
    thread.start()
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(base_url, time.monotonic() + TIMEOUT, thread.is_alive)
        yield base_url, server
    finally:
        server.should_exit = True
        thread.join(TIMEOUT)
        sock.close()
        fastnet.set_num_threads(threads_before)
        assert not thread.is_alive(), "the server did not stop"


@contextlib.contextmanager
def running_server(model_path, **options):
    """The base URL of a server in a background thread (see `serving`)."""
    with serving(model_path, **options) as (base_url, _):
        yield base_url


@pytest.fixture(scope="module")
def base_url(model_path):
    with running_server(model_path) as url:
        yield url


def expected(reference, texts, to):
    with fastnet.threads(1):
        return reference.translate(list(texts), to=to)


def post(base_url, payload=None, content=None, headers=None):
    if content is None:
        content = json.dumps(payload).encode()
    headers = {"content-type": "application/json", **(headers or {})}
    return httpx.post(base_url + "/translate", content=content, headers=headers, timeout=TIMEOUT)


def scrape(base_url):
    """/metrics as {(sample name, frozenset of label items): value}, parsed by prometheus-client's parser."""
    from prometheus_client.parser import text_string_to_metric_families

    reply = httpx.get(base_url + "/metrics", timeout=TIMEOUT)
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/plain")
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(reply.text) for sample in family.samples}


def metric(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0.0)


def assert_healthy(base_url):
    reply = httpx.get(base_url + "/health", timeout=TIMEOUT)
    assert reply.status_code == 200 and reply.json()["status"] == "ok"


# ---- the happy path ----

def test_health_lists_the_languages(base_url):
    reply = httpx.get(base_url + "/health", timeout=TIMEOUT)
    assert reply.status_code == 200
    assert reply.json() == {"status": "ok", "languages": ["sv", "es"], "keys_required": False, "has_pictures": False,
                            "limits": {"max_chars": 500, "max_texts": 64, "max_beam": 4, "max_n_best": 4}}


@pytest.mark.parametrize("to", ["sv", "es"])
def test_translate_equals_the_translator(base_url, reference, to):
    texts = SENTENCES[:5]
    reply = post(base_url, {"texts": texts, "to": to})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body == {"translations": expected(reference, texts, to), "to": to}
    assert all(body["translations"])  # the model is trained enough to say something


def test_the_page_has_its_controls_and_no_external_assets(base_url):
    reply = httpx.get(base_url + "/", timeout=TIMEOUT)
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/html")
    page = reply.text
    for element in ('id="source"', 'id="targets"', 'id="translate"', 'id="results"'):
        assert element in page
    assert "http://" not in page and "https://" not in page and "src=" not in page


def test_concurrent_requests_are_all_answered_correctly(base_url, reference):
    # 16 requests from 8 threads, each with its own batch and language
    jobs = [(SENTENCES[i % 8: i % 8 + 1 + i % 3], "sv" if i % 2 else "es") for i in range(16)]
    answers = {texts_to: expected(reference, *texts_to) for texts_to in {(tuple(t), to) for t, to in jobs}}

    def call(job):
        texts, to = job
        return post(base_url, {"texts": texts, "to": to})

    with ThreadPoolExecutor(max_workers=8) as pool:
        replies = list(pool.map(call, jobs, timeout=4 * TIMEOUT))
    for (texts, to), reply in zip(jobs, replies):
        assert reply.status_code == 200, reply.text
        assert reply.json() == {"translations": answers[(tuple(texts), to)], "to": to}


def test_a_request_may_ask_for_its_own_beam(base_url, reference):
    texts = SENTENCES[:4]
    reply = post(base_url, {"texts": texts, "to": "es", "beam": 3})
    assert reply.status_code == 200, reply.text
    with fastnet.threads(1):
        assert reply.json()["translations"] == reference.translate(texts, to="es", beam=3)


def test_n_best_returns_the_alternatives_of_the_translator(base_url, reference):
    texts = SENTENCES[:3]
    reply = post(base_url, {"texts": texts, "to": "sv", "beam": 4, "n_best": 3})
    assert reply.status_code == 200, reply.text
    with fastnet.threads(1):
        alternatives = reference.translate(texts, to="sv", beam=4, n_best=3)
    body = reply.json()
    assert body["alternatives"] == alternatives
    assert body["translations"] == [alts[0] for alts in alternatives]
    assert all(len(alts) == 3 for alts in body["alternatives"])


def test_requests_with_different_beams_in_one_queue_each_get_their_own_decoding(base_url, reference):
    jobs = [{"texts": [t], "to": "sv", "beam": 1 + i % 3, "n_best": 1 + (i % 3 == 2)} for i, t in enumerate(SENTENCES)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        replies = list(pool.map(lambda job: post(base_url, job), jobs))
    for job, reply in zip(jobs, replies):
        with fastnet.threads(1):
            want = reference.translate(job["texts"], to="sv", beam=job["beam"], n_best=job["n_best"])
        got = reply.json()
        assert got.get("alternatives", got["translations"]) == want


@pytest.mark.parametrize("payload, error", [
    ({"beam": 0}, "invalid_beam"), ({"beam": 5}, "invalid_beam"), ({"beam": "2"}, "invalid_beam"),
    ({"beam": True}, "invalid_beam"), ({"n_best": 0}, "invalid_n_best"), ({"n_best": 5}, "invalid_n_best"),
    ({"beam": 2, "n_best": 3}, "invalid_n_best")])
def test_beam_and_n_best_outside_their_range_get_422(base_url, payload, error):
    reply = post(base_url, {"texts": ["cats are cute"], "to": "sv", **payload})
    assert reply.status_code == 422 and reply.json()["error"] == error, reply.text
    assert "max_" in reply.json()["message"] or "beam=2" in reply.json()["message"]


# ---- bad requests: each its 4xx with a JSON error naming the fault; the server keeps serving ----

def _json(payload):
    return json.dumps(payload).encode()


BAD_REQUESTS = {
    "not JSON": (b'{"texts": ["cats"', 400, "invalid_json"),
    "empty body": (b"", 400, "invalid_json"),
    "not UTF-8": (b'{"texts": ["\xff\xfe"], "to": "sv"}', 400, "invalid_json"),
    "a list, not an object": (_json(["cats are cute"]), 422, "invalid_body"),
    "texts is a string": (_json({"texts": "cats are cute", "to": "sv"}), 422, "invalid_texts"),
    "texts holds a number": (_json({"texts": ["cats are cute", 3], "to": "sv"}), 422, "invalid_texts"),
    "texts missing": (_json({"to": "sv"}), 422, "invalid_texts"),
    "to missing": (_json({"texts": ["cats are cute"]}), 422, "invalid_to"),
    "to is a number": (_json({"texts": ["cats are cute"], "to": 1}), 422, "invalid_to"),
    "unknown field": (_json({"texts": ["cats are cute"], "to": "sv", "temperature": 4}), 422, "invalid_body"),
    "no texts": (_json({"texts": [], "to": "sv"}), 422, "invalid_texts"),
    "blank text": (_json({"texts": ["cats", "   "], "to": "sv"}), 422, "empty_text"),
    "unknown language": (_json({"texts": ["cats are cute"], "to": "fr"}), 400, "unknown_language"),
    "too many texts": (_json({"texts": ["cats are cute"] * 65, "to": "sv"}), 413, "too_many_texts"),
    "text too long": (_json({"texts": ["a" * 501], "to": "sv"}), 422, "text_too_long"),
    "more tokens than the model takes": (_json({"texts": [" ".join(["cats"] * 40)], "to": "sv"}), 422,
                                         "untranslatable"),
    "body too large": (_json({"texts": ["cats are cute"], "to": "sv", "pad": "x" * (64 * 1024)}), 413,
                       "body_too_large"),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_request_gets_its_4xx_and_the_server_keeps_serving(base_url, reference, case):
    content, status, error = BAD_REQUESTS[case]
    reply = post(base_url, content=content)
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert body["error"] == error and body["message"]
    good = post(base_url, {"texts": ["cats are cute"], "to": "sv"})
    assert good.status_code == 200 and good.json()["translations"] == expected(reference, ["cats are cute"], "sv")


def test_errors_name_the_limit_and_the_available_languages(base_url):
    assert "max_texts=64" in post(base_url, {"texts": ["cats"] * 65, "to": "sv"}).json()["message"]
    assert "max_chars=500" in post(base_url, {"texts": ["a" * 501], "to": "sv"}).json()["message"]
    unknown = post(base_url, {"texts": ["cats"], "to": "fr"}).json()
    assert unknown["available"] == ["sv", "es"] and "'sv'" in unknown["message"]
    big = post(base_url, content=b" " * (64 * 1024 + 1)).json()
    assert big["limit"] == 64 * 1024 and "max_body_bytes=65536" in big["message"]


def test_a_chunked_body_over_the_limit_is_refused(base_url):
    def chunks():  # no Content-Length: the server must count the bytes as they come
        for _ in range(20):
            yield b" " * 4096

    reply = httpx.post(base_url + "/translate", content=chunks(), timeout=TIMEOUT,
                       headers={"content-type": "application/json"})
    assert reply.status_code == 413 and reply.json()["error"] == "body_too_large"
    assert_healthy(base_url)


def test_a_chunked_body_within_the_limit_is_translated(base_url, reference):
    payload = _json({"texts": ["dogs are big"], "to": "es"})
    reply = httpx.post(base_url + "/translate", content=iter([payload[:10], payload[10:]]), timeout=TIMEOUT,
                       headers={"content-type": "application/json"})
    assert reply.status_code == 200 and reply.json()["translations"] == expected(reference, ["dogs are big"], "es")


def test_wrong_method_and_path_get_json_errors(base_url):
    wrong_method = httpx.get(base_url + "/translate", timeout=TIMEOUT)
    assert wrong_method.status_code == 405 and wrong_method.json()["error"] == "http_error"
    missing = httpx.get(base_url + "/nothing-here", timeout=TIMEOUT)
    assert missing.status_code == 404 and missing.json()["error"] == "http_error"
    assert_healthy(base_url)


def test_a_client_that_hangs_up_mid_body_does_not_hurt_the_server(base_url, reference):
    port = int(base_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw:
        raw.sendall(b"POST /translate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 1000\r\n\r\n{\"texts\": [\"ca")
    good = post(base_url, {"texts": ["cats are cute"], "to": "sv"})
    assert good.status_code == 200 and good.json()["translations"] == expected(reference, ["cats are cute"], "sv")


# ---- configuration ----

def test_custom_limits_apply(model_path):
    with running_server(model_path, max_texts=2, max_chars=10, max_body_bytes=200) as url:
        assert post(url, {"texts": ["cats"] * 3, "to": "sv"}).json()["limit"] == 2
        assert post(url, {"texts": ["cats are so very cute"], "to": "sv"}).json()["limit"] == 10
        assert post(url, {"texts": ["cats"], "to": "sv", "x": "y" * 300}).status_code == 413
        assert post(url, {"texts": ["cats", "dogs"], "to": "sv"}).status_code == 200


@pytest.mark.parametrize("bad", [{"max_texts": 0}, {"max_chars": -1}, {"max_body_bytes": 1.5}])
def test_limits_must_be_positive_ints(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        Limits(**bad)


def test_only_translator_files_can_be_served(tmp_path):
    with pytest.raises(FileNotFoundError):
        make_server(tmp_path / "missing.safetensors")
    net = fastnet.Network([fastnet.Dense(2, 2)], loss="mse", seed=0)
    net.save(tmp_path / "net.safetensors")
    with pytest.raises(TypeError, match="not a Translator"):
        make_server(tmp_path / "net.safetensors")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_run_serves_until_stopped(model_path, reference):
    """`fastnet.serve.run` in its own process, as `fastnet serve MODEL --port N` starts it."""
    port = _free_port()
    code = f"from fastnet.serve import run; run({str(model_path)!r}, host='127.0.0.1', port={port}, threads=1)"
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastnet.__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_healthy(url, time.monotonic() + 2 * TIMEOUT, lambda: proc.poll() is None)
        reply = post(url, {"texts": ["dogs are big"], "to": "sv"})
        assert reply.json()["translations"] == expected(reference, ["dogs are big"], "sv")
    finally:
        proc.terminate()
        try:
            output, _ = proc.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate(timeout=TIMEOUT)
    assert f"on http://127.0.0.1:{port}/" in output and "sv, es" in output
