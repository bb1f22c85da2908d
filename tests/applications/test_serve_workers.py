"""`fastnet serve` as a process: graceful SIGTERM, --workers N sharing the port and the metrics,
a SIGKILLed worker replaced while the other keeps serving, /ready."""
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("starlette", reason="the serve extra (starlette) is not installed")
pytest.importorskip("uvicorn", reason="the serve extra (uvicorn) is not installed")
httpx = pytest.importorskip("httpx", reason="httpx (the test client) is not installed")
psutil = pytest.importorskip("psutil", reason="psutil (to find the worker processes) is not installed")

from fastnet.serve.model_process import child_command  # noqa: E402
from test_serve import SENTENCES, TIMEOUT, _free_port, expected, metric, post, scrape, serving, wait_until_healthy  # noqa: E402
from test_serve_batching import wait_for  # noqa: E402


class ServeProcess:
    """`fastnet serve MODEL --port P ...` (this fastnet, as its console script runs it: the working
    directory is not on sys.path) with its output in a file; cwd: where it runs."""

    def __init__(self, model_path, log_path, *options, cwd=None):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        command = child_command("from fastnet.cli import main; sys.exit(main(sys.argv[1:]))", "serve", model_path,
                                "--port", self.port, "--threads", 1, *options)
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(command, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)

    def __enter__(self):
        wait_until_healthy(self.url, time.monotonic() + 3 * TIMEOUT, lambda: self.proc.poll() is None)
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(2 * TIMEOUT)
        except subprocess.TimeoutExpired:
            for child in psutil.Process(self.proc.pid).children(recursive=True):
                child.kill()
            self.proc.kill()
            self.proc.wait(TIMEOUT)

    def workers(self):
        return psutil.Process(self.proc.pid).children()

    def log(self):
        return self.log_path.read_text(errors="replace")


def test_ready_answers_503_once_the_server_drains(model_path):
    with serving(model_path) as (url, server):
        assert httpx.get(url + "/ready", timeout=TIMEOUT).json() == {"status": "ready"}
        server.config.app.state.service.draining = True
        reply = httpx.get(url + "/ready", timeout=TIMEOUT)
        assert reply.status_code == 503 and reply.json() == {"status": "draining"}


def _read_reply(sock):
    """(status, JSON body) of one HTTP/1.1 response with a Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the connection closed after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length")))
    while len(body) < length:
        body += sock.recv(65536)
    return int(head.split()[1]), json.loads(body[:length])


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_finishes_every_request_in_flight(model_path, reference, tmp_path, workers):
    """8 requests whose bodies are half sent when SIGTERM arrives: each is still read, translated and
    answered, and then the server exits."""
    jobs = [SENTENCES[i: i + 1 + i % 2] for i in range(8)]
    with ServeProcess(model_path, tmp_path / "serve.log", "--workers", str(workers)) as server:
        socks = []
        for texts in jobs:
            body = json.dumps({"texts": texts, "to": "sv"}).encode()
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
            sock.sendall(b"POST /translate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body[:10]))
            socks.append((sock, body[10:]))
        # all 8 are in (and the scrape that counts them)
        wait_for(lambda: metric(scrape(server.url), "fastnet_requests_in_flight") == 9, "8 requests in flight")
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)  # the shutdown has begun
        for sock, rest in socks:
            sock.sendall(rest)
        replies = [_read_reply(sock) for sock, _ in socks]
        for sock, _ in socks:
            sock.close()
        server.proc.wait(2 * TIMEOUT)
    for texts, (status, body) in zip(jobs, replies):
        assert status == 200, body
        assert body["translations"] == expected(reference, texts, "sv")
    assert "Shutting down" in server.log()
    with pytest.raises(httpx.TransportError):  # and then it is gone
        httpx.get(server.url + "/health", timeout=2.0)


def test_two_workers_share_the_port_and_report_one_set_of_metrics(model_path, reference, tmp_path):
    with ServeProcess(model_path, tmp_path / "serve.log", "--workers", "2") as server:
        wait_for(lambda: len(server.workers()) == 2, "two worker processes")
        counts = {}
        for _ in range(4):  # fresh connections: the kernel spreads them over both workers' accepts
            with ThreadPoolExecutor(max_workers=8) as pool:
                replies = list(pool.map(lambda t: post(server.url, {"texts": [t], "to": "sv"}), SENTENCES))
            for text, reply in zip(SENTENCES, replies):
                assert reply.json()["translations"] == expected(reference, [text], "sv")
                counts[reply.status_code] = counts.get(reply.status_code, 0) + 1
        samples = scrape(server.url)
    assert counts == {200: 32}
    assert metric(samples, "fastnet_requests_total", endpoint="/translate", status="200") == 32
    assert metric(samples, "fastnet_sentences_translated_total") == 32


def test_workers_import_this_fastnet_from_a_folder_holding_another(model_path, reference, tmp_path):
    """Run from inside a source checkout (pip installed fastnet elsewhere), the workers and their model
    processes imported the checkout's unbuilt package, and none of them could start."""
    from test_serve_model_process import decoy_fastnet

    folder = decoy_fastnet(tmp_path / "checkout")
    with ServeProcess(model_path, tmp_path / "serve.log", "--workers", "2", cwd=folder) as server:
        reply = post(server.url, {"texts": SENTENCES[:4], "to": "sv"})
        assert reply.status_code == 200 and reply.json()["translations"] == expected(reference, SENTENCES[:4], "sv")
    assert "the fastnet of the working directory" not in server.log()


def _running(pid):
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_killed_worker_is_replaced_while_the_other_keeps_serving(model_path, reference, tmp_path):
    with ServeProcess(model_path, tmp_path / "serve.log", "--workers", "2") as server:
        wait_for(lambda: len(server.workers()) == 2, "two worker processes")
        victim = server.workers()[0].pid
        stop, outcomes = threading.Event(), []

        def load():  # outcomes are stamped with when the request started
            while not stop.is_set():
                started = time.monotonic()
                try:
                    with httpx.Client(timeout=TIMEOUT) as client:  # one connection per request
                        reply = client.post(server.url + "/translate", json={"texts": ["dogs are big"], "to": "sv"})
                    outcomes.append((started, reply.status_code))
                except httpx.TransportError:  # only a request the killed worker had accepted
                    outcomes.append((started, "lost"))

        thread = threading.Thread(target=load, daemon=True)
        thread.start()
        wait_for(lambda: len(outcomes) >= 5, "some requests before the kill")
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: not _running(victim), "the killed worker to be gone")
        killed_at = time.monotonic()
        wait_for(lambda: len(server.workers()) == 2 and victim not in {p.pid for p in server.workers()},
                 "a new worker in place of the killed one")
        wait_for(lambda: sum(1 for t, _ in outcomes if t > killed_at) >= 10, "requests after the kill")
        stop.set()
        thread.join(TIMEOUT)
        assert post(server.url, {"texts": ["dogs are big"], "to": "sv"}).status_code == 200
    after = [status for t, status in outcomes if t > killed_at]  # sent after the kill: all answered
    assert after and all(status == 200 for status in after), after
    assert "starting a new one" in server.log()


def test_workers_that_die_on_start_stop_the_supervisor_instead_of_restarting_forever(tmp_path):
    from fastnet.serve import workers

    class Crashing(workers.Supervisor):
        def _spawn(self):  # a worker that exits at once, as one with a broken setup would
            proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
            self.workers[proc.pid] = (proc, time.monotonic())
            return proc

    start = time.monotonic()
    with pytest.raises(workers.WorkersFailing, match="status 3"):
        Crashing("model", None, 2, {}, str(tmp_path)).run()
    assert time.monotonic() - start < 4 * TIMEOUT
