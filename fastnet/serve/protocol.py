"""The HTTP protocol of the server: uvicorn's parser plus the connection limits and timeouts it lacks.

uvicorn closes a kept-alive connection that stays silent, but never a
connection that sends nothing after connecting, sends its headers a byte at
a time, or stops half way through its body; and it accepts connections
until the process runs out of file descriptors. A few hundred such sockets
starve every real client. `guarded_protocol(Connections(...))` returns a
protocol class for uvicorn that adds:

- a header deadline: the request line and headers must be complete within
  `header_timeout` seconds of connecting (or of going idle after a reply,
  plus the keep-alive time), however slowly the bytes trickle in;
- a body deadline: the body must be complete within `body_timeout` seconds
  of its headers;
- a connection cap: past `max_connections` open sockets (kept, with the
  listen backlog, below the process's file-descriptor limit), a new connection evicts the oldest one
  that has not sent a complete request, so idle sockets cannot lock real
  clients out; if every connection is busy with a request, the new one is
  closed;
- word of a lost connection: every request's scope carries, under the
  extension "fastnet.connection_lost", a future that is done once the
  client's connection is lost, so a queued request can leave the queue
  without a task per request waiting for ASGI's http.disconnect;
- one send per response: uvicorn writes the status line and headers, then
  the body, as two writes; the writes of one event-loop step are joined
  (`CoalescedWrites`), which saves a system call per response here and a
  wake-up per response in the client.

A request in flight is never cut: the batching deadline bounds its time.

The parser is httptools (C, about a third less CPU per request than h11 in
bench/bench_serve_load.py) when it is installed, else h11; `http=` picks one.
The deadlines follow the cycle uvicorn's protocols share (`cycle.more_body`,
`cycle.response_complete`), so one mixin guards both.
"""
import resource
from dataclasses import dataclass

from fastnet.checks import positive_int

# The ASGI scope extension under which every request finds an asyncio.Future that is done once
# its client's connection is lost (see the module notes).
CONNECTION_LOST = "fastnet.connection_lost"
# descriptors kept free for the model file, the key database, metrics files and logs
_DESCRIPTOR_RESERVE = 64
_MAX_BACKLOG = 2048  # uvicorn's default listen backlog


@dataclass(frozen=True)
class Connections:
    """Timeouts (seconds) and limits on client connections; see the module notes."""

    keep_alive: float = 5.0
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 1024
    max_in_flight: int = 256  # requests being handled at once; more get 503 overloaded

    def __post_init__(self):
        for name in ("keep_alive", "header_timeout", "body_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
                raise ValueError(f"Connections.{name} must be a positive number of seconds, got {value!r}")
        for name in ("max_connections", "max_in_flight"):
            object.__setattr__(self, name, positive_int(getattr(self, name), f"Connections.{name}"))

    def budget(self):
        """(connection cap, accept batch) that fit the process's open-file limit.

        asyncio accepts up to `backlog` sockets in one go before any of them
        reaches the protocol (and the cap), so the cap plus that burst must
        stay below the limit: otherwise accept() fails with EMFILE and asyncio
        logs a traceback for every try."""
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            return self.max_connections, _MAX_BACKLOG
        room = max(2, soft - _DESCRIPTOR_RESERVE)
        backlog = min(_MAX_BACKLOG, max(1, room // 4))
        return max(1, min(self.max_connections, room - backlog)), backlog


class CoalescedWrites:
    """A connection's transport whose writes within one event-loop step go out as one write.

    The first write of a step schedules the flush (loop.call_soon); close()
    and write_eof() flush first, so nothing written is lost or reordered.
    Everything else is the transport's own."""

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport, loop):
        self._transport, self._loop, self._pending = transport, loop, None

    def write(self, data):
        if not data:
            return
        if self._pending is None:
            self._pending = [data]
            self._loop.call_soon(self.flush)
        else:
            self._pending.append(data)

    def writelines(self, chunks):
        for chunk in chunks:
            self.write(chunk)

    def flush(self):
        pending, self._pending = self._pending, None
        if pending and not self._transport.is_closing():
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self):
        self.flush()
        self._transport.close()

    def write_eof(self):
        self.flush()
        self._transport.write_eof()

    def get_write_buffer_size(self):
        return self._transport.get_write_buffer_size() + sum(map(len, self._pending or ()))

    def __getattr__(self, name):
        return getattr(self._transport, name)


class Guarded:
    """The deadlines, the connection cap and the joined writes, on top of a uvicorn HTTP protocol class."""

    guard = Connections()
    cap = guard.budget()[0]

    def connection_made(self, transport):
        super().connection_made(CoalescedWrites(transport, self.loop))
        self._lost = self.loop.create_future()
        self._announced = None  # the last cycle whose scope carries self._lost
        self._timer = None
        self._phase = None
        self._phase_since = self.loop.time()
        self._expect_request(self.guard.header_timeout)
        if len(self.connections) > self.cap:
            self._make_room()

    def connection_lost(self, exc):
        self._cancel_timer()
        self._phase = None
        super().connection_lost(exc)
        if not self._lost.done():
            self._lost.set_result(None)

    def data_received(self, data):
        if self._phase == "idle":
            self._phase = "headers"  # the header deadline keeps running from when we started waiting
        super().data_received(data)
        self._follow_cycle()

    def on_response_complete(self):
        super().on_response_complete()  # may start a pipelined request
        self._follow_cycle()

    # ---- helpers ----
    def _follow_cycle(self):
        """Move the deadline to where the current request/response cycle is."""
        if self._phase is None or self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None and cycle is not self._announced:
            # the request's task is created but has not run yet: it will find the future in its scope
            cycle.scope.setdefault("extensions", {})[CONNECTION_LOST] = self._lost
            self._announced = cycle
        if cycle is None or cycle.response_complete:
            if self._phase in ("body", "handling"):  # answered: wait for the next request
                self._expect_request(self.guard.keep_alive + self.guard.header_timeout)
        elif cycle.more_body:
            if self._phase != "body":
                self._set_phase("body", self.guard.body_timeout)
        elif self._phase != "handling":
            self._set_phase("handling", None)

    def _expect_request(self, seconds):
        self._set_phase("idle", seconds)

    def _set_phase(self, phase, seconds):
        self._cancel_timer()
        self._phase, self._phase_since = phase, self.loop.time()
        if seconds is not None:
            self._timer = self.loop.call_later(seconds, self._expire, phase)

    def _cancel_timer(self):
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self, phase):
        self._timer = None
        if self._phase == phase or (phase == "idle" and self._phase == "headers"):
            self.transport.close()  # the client was too slow: it sees the connection close

    def _make_room(self):
        waiting = [c for c in self.connections if c is not self and getattr(c, "_phase", None) in ("idle", "headers")
                   and not c.transport.is_closing()]
        if not waiting:
            self.transport.close()
            return
        oldest = min(waiting, key=lambda c: c._phase_since)
        oldest.transport.close()


def http_protocols():
    """{name: uvicorn protocol class} of the HTTP parsers installed here (h11 always; httptools if present)."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    protocols = {"h11": H11Protocol}
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # httptools is optional: h11 serves the same requests
        pass
    else:
        protocols["httptools"] = HttpToolsProtocol
    return protocols


def guarded_protocol(connections, http="auto"):
    """(protocol class for uvicorn.Config(http=...) enforcing `connections`, listen backlog for uvicorn).

    http: "httptools", "h11", or "auto" (httptools when installed)."""
    protocols = http_protocols()
    name = ("httptools" if "httptools" in protocols else "h11") if http == "auto" else http
    if name not in protocols:
        raise ValueError(f"http={http!r}: choose 'auto' or one of the installed parsers {sorted(protocols)}")
    cap, backlog = connections.budget()
    base = protocols[name]
    return type(f"Guarded{base.__name__}", (Guarded, base), {"guard": connections, "cap": cap}), backlog
