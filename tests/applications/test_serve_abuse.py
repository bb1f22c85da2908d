"""The server against abuse: deep JSON, huge numbers, idle sockets, slow headers and bodies, floods
under a low file-descriptor limit. Real requests keep being answered within the timeouts."""
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

pytest.importorskip("starlette", reason="the serve extra (starlette) is not installed")
pytest.importorskip("uvicorn", reason="the serve extra (uvicorn) is not installed")
httpx = pytest.importorskip("httpx", reason="httpx (the test client) is not installed")

import fastnet
from fastnet.serve import Connections
from test_serve import (
    LOOPS,
    PARSERS,
    TIMEOUT,
    _free_port,
    expected,
    post,
    running_server,
    serving,
    wait_until_healthy,
)
from test_serve_batching import model_held, wait_for

GOOD = {"texts": ["cats are cute"], "to": "sv"}
FAST = Connections(keep_alive=0.5, header_timeout=0.5, body_timeout=0.5)


@pytest.fixture(scope="module")
def roomy_url(model_path):
    """A server that takes bodies of 400 kB, so the JSON parser (not the size cap) meets the abuse."""
    with running_server(model_path, max_body_bytes=400_000) as url:
        yield url


def port_of(url):
    return int(url.rsplit(":", 1)[1])


def assert_answers(url, reference):
    reply = post(url, GOOD)
    assert reply.status_code == 200 and reply.json()["translations"] == expected(reference, GOOD["texts"], "sv")


# ---- issue 13 item 9: JSON that breaks parsers gets 400 invalid_json, never 500 ----

DEEP = {
    "arrays 30,000 deep": b"[" * 30_000 + b"]" * 30_000,
    "objects 30,000 deep": b'{"a":' * 30_000 + b"1" + b"}" * 30_000,
    "deep inside a valid request": b'{"texts": ["cats"], "to": "sv", "n_best": ' + b"[" * 30_000 + b"]" * 30_000 + b"}",
}


@pytest.mark.parametrize("case", sorted(DEEP))
def test_json_nested_30000_deep_gets_400_invalid_json(roomy_url, reference, case):
    reply = post(roomy_url, content=DEEP[case])
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"] == "invalid_json" and "deeply" in reply.json()["message"]
    assert_answers(roomy_url, reference)


@pytest.mark.parametrize("where", ["alone", "as beam", "negative, in texts"])
def test_a_60000_digit_integer_gets_400_invalid_json(roomy_url, reference, where):
    digits = b"7" * 60_000
    content = {"alone": digits, "as beam": b'{"texts": ["cats"], "to": "sv", "beam": ' + digits + b"}",
               "negative, in texts": b'{"texts": [-' + digits + b'], "to": "sv"}'}[where]
    reply = post(roomy_url, content=content)
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"] == "invalid_json" and "60000 digits" in reply.json()["message"]
    assert_answers(roomy_url, reference)


def test_nan_and_infinity_are_not_json(roomy_url):
    reply = post(roomy_url, content=b'{"texts": ["cats"], "to": "sv", "beam": NaN}')
    assert reply.status_code == 400 and reply.json()["error"] == "invalid_json"


# ---- issue 13 item 10: idle and partial connections are timed out ----

def closed_by_server(sock, within):
    """True if the server closes `sock` within `within` seconds (recv sees EOF or a reset); what the
    server sent before closing is read and ignored."""
    deadline = time.monotonic() + within
    try:
        while True:
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            if sock.recv(65536) == b"":
                return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


@pytest.mark.parametrize("http", PARSERS)
def test_an_idle_connection_is_closed_after_the_header_timeout(model_path, http):
    with running_server(model_path, connections=FAST, http=http) as url, \
            socket.create_connection(("127.0.0.1", port_of(url))) as idle:
        start = time.monotonic()
        assert closed_by_server(idle, TIMEOUT)
        assert 0.3 < time.monotonic() - start < 5


@pytest.mark.parametrize("http", PARSERS)
def test_slow_headers_are_cut_at_the_header_deadline_however_steady_the_trickle(model_path, http):
    with running_server(model_path, connections=FAST, http=http) as url, \
            socket.create_connection(("127.0.0.1", port_of(url))) as slow:
        slow.sendall(b"POST /translate HTTP/1.1\r\nHost: x\r\n")
        start, cut = time.monotonic(), False
        while time.monotonic() - start < 5 and not cut:
            try:
                slow.sendall(b"X")  # a byte every 50 ms: never idle, never done
            except (BrokenPipeError, ConnectionResetError):
                cut = True
            time.sleep(0.05)
        assert cut or closed_by_server(slow, 1.0)
        assert time.monotonic() - start < 5


@pytest.mark.parametrize("http", PARSERS)
def test_a_slow_body_is_cut_at_the_body_deadline(model_path, reference, http):
    with running_server(model_path, connections=FAST, http=http) as url:
        with socket.create_connection(("127.0.0.1", port_of(url))) as slow:
            slow.sendall(b"POST /translate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 100\r\n\r\n{\"texts\"")
            start = time.monotonic()
            assert closed_by_server(slow, TIMEOUT)
            assert 0.3 < time.monotonic() - start < 5
        assert_answers(url, reference)


@pytest.mark.parametrize("http", PARSERS)
def test_an_idle_keep_alive_connection_is_closed(model_path, http):
    with running_server(model_path, connections=FAST, http=http) as url, \
            socket.create_connection(("127.0.0.1", port_of(url))) as conn:
        conn.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        conn.settimeout(TIMEOUT)
        assert conn.recv(65536).startswith(b"HTTP/1.1 200")
        assert closed_by_server(conn, TIMEOUT)


def test_the_in_flight_cap_answers_503_overloaded(model_path):
    with serving(model_path, connections=Connections(max_in_flight=1)) as (url, server):
        service = server.config.app.state.service
        with model_held(service):
            holder = threading.Thread(target=post, args=(url, GOOD), daemon=True)
            holder.start()
            wait_for(lambda: service.in_flight == 1, "one request in flight")
            reply = post(url, GOOD)
            assert reply.status_code == 503 and reply.json()["error"] == "overloaded"
            assert reply.headers["Retry-After"] == "1"
        holder.join(TIMEOUT)


@pytest.mark.parametrize("bad", [{"header_timeout": 0}, {"body_timeout": -1}, {"keep_alive": float("inf")},
                                 {"max_connections": 0}, {"max_in_flight": 2.5}])
def test_connection_settings_are_checked(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        Connections(**bad)


# ---- the protocol: parser choice, one send per response ----

def test_the_protocol_is_httptools_when_installed_else_h11_and_unknown_parsers_are_refused():
    from fastnet.serve.protocol import guarded_protocol

    protocol, _ = guarded_protocol(Connections())
    assert protocol.__name__ == ("GuardedHttpToolsProtocol" if "httptools" in PARSERS else "GuardedH11Protocol")
    assert guarded_protocol(Connections(), "h11")[0].__name__ == "GuardedH11Protocol"
    with pytest.raises(ValueError, match="http='spdy'"):
        guarded_protocol(Connections(), "spdy")


class RecordingTransport:
    def __init__(self):
        self.writes, self.closed = [], False

    def write(self, data):
        self.writes.append(data)

    def is_closing(self):
        return self.closed

    def get_write_buffer_size(self):
        return 0

    def close(self):
        self.closed = True

    def get_extra_info(self, name, default=None):
        return {"peername": ("127.0.0.1", 1)}.get(name, default)


def test_the_writes_of_one_loop_step_go_out_as_one_and_close_sends_what_is_pending():
    import asyncio

    from fastnet.serve.protocol import CoalescedWrites

    async def steps():
        raw = RecordingTransport()
        joined = CoalescedWrites(raw, asyncio.get_running_loop())
        joined.write(b"HTTP/1.1 200 OK\r\n\r\n")
        joined.write(b"")
        joined.write(b"{}")
        assert raw.writes == [] and joined.get_write_buffer_size() == 21
        await asyncio.sleep(0)  # the next step: one write with both parts, in order
        assert raw.writes == [b"HTTP/1.1 200 OK\r\n\r\n{}"]
        joined.write(b"last")
        joined.close()  # closing sends first
        assert raw.writes[-1] == b"last" and raw.closed
        await asyncio.sleep(0)
        assert len(raw.writes) == 2  # nothing sent twice
        assert joined.get_extra_info("peername") == ("127.0.0.1", 1)  # the rest is the transport's

    asyncio.run(steps())


# ---- the abuse test: a flood against a server with few file descriptors ----

# `fastnet.serve.run(model, port, http=..., loop=...)` with 1 s timeouts in a process whose open-file limit is 160
_SERVE_WITH_FEW_DESCRIPTORS = (
    "import resource, sys; resource.setrlimit(resource.RLIMIT_NOFILE, (160, resource.getrlimit("
    "resource.RLIMIT_NOFILE)[1])); from fastnet.serve import run; sys.exit(run(sys.argv[1], port=int(sys.argv[2]), "
    "http=sys.argv[3], loop=sys.argv[4], threads=1, connections=dict(header_timeout=1, body_timeout=1, "
    "keep_alive=1)))")
# the fastest server here and the one that needs nothing beyond h11 and asyncio
FLOOD_SERVERS = sorted({("httptools" if "httptools" in PARSERS else "h11", LOOPS[-1]), ("h11", "asyncio")})


class Trickle:
    """Sockets that each send one more byte every 0.1 s (slow headers or a slow body) until stopped."""

    def __init__(self, port, first, count):
        self.socks = []
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
            sock.sendall(first)
            self.socks.append(sock)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.wait(0.1):
            for sock in list(self.socks):
                try:
                    sock.sendall(b"x")
                except OSError:
                    self.socks.remove(sock)

    def close(self):
        self.stop.set()
        self.thread.join(TIMEOUT)
        for sock in self.socks:
            sock.close()


@pytest.mark.parametrize("http, loop", FLOOD_SERVERS)
def test_server_keeps_answering_real_requests_under_a_flood_of_idle_and_slow_sockets(model_path, reference,
                                                                                     tmp_path, http, loop):
    """200 idle sockets, 30 slow-header and 30 slow-body clients against a server limited to 160 file
    descriptors (the cap keeps it at 96 connections): real requests still get their translations."""
    port = _free_port()
    log = tmp_path / "server.log"
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastnet.__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", _SERVE_WITH_FEW_DESCRIPTORS, str(model_path), str(port),
                                 http, loop],
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    idle, trickles = [], []
    try:
        wait_until_healthy(url, time.monotonic() + 2 * TIMEOUT, lambda: proc.poll() is None)
        idle = [socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) for _ in range(200)]
        trickles = [Trickle(port, b"POST /translate HTTP/1.1\r\nHost: x\r\nX-Slow: ", 30),
                    Trickle(port, b"POST /translate HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n", 30)]
        more_idle = []
        for _ in range(10):  # the flood goes on while real clients come and go
            more_idle += [socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) for _ in range(10)]
            start = time.monotonic()
            with httpx.Client(timeout=TIMEOUT) as client:  # a fresh connection each time
                reply = client.post(url + "/translate", json=GOOD)
            assert reply.status_code == 200 and reply.json()["translations"] == expected(reference, GOOD["texts"],
                                                                                          "sv")
            assert time.monotonic() - start < 3.0  # well within the timeouts
        idle += more_idle
        # the server closed (or never kept) every idle and slow socket within its timeouts
        deadline = time.monotonic() + 5
        assert all(closed_by_server(s, max(0.05, deadline - time.monotonic())) for s in idle)
        for trickle in trickles:
            wait_for(lambda t=trickle: not t.socks, "the slow clients to be cut off")
        assert proc.poll() is None
    finally:
        for trickle in trickles:
            trickle.close()
        for sock in idle:
            sock.close()
        proc.terminate()
        proc.wait(TIMEOUT)
    assert log.stat().st_size < 20_000, log.read_text()[-2000:]  # no torrent of tracebacks
