"""Connection limits and timeouts that uvicorn lacks: idle, slow-header and slow-body clients.

uvicorn (h11) closes a kept-alive connection that stays silent, but never a
connection that sends nothing after connecting, sends its headers a byte at
a time, or stops half way through its body; and it accepts connections
until the process runs out of file descriptors. A few hundred such sockets
starve every real client. `guarded_protocol(Connections(...))` returns an
h11 protocol class that adds:

- a header deadline: the request line and headers must be complete within
  `header_timeout` seconds of connecting (or of going idle after a reply,
  plus the keep-alive time), however slowly the bytes trickle in;
- a body deadline: the body must be complete within `body_timeout` seconds
  of its headers;
- a connection cap: past `max_connections` open sockets (kept, with the
  listen backlog, below the process's file-descriptor limit), a new connection evicts the oldest one
  that has not sent a complete request, so idle sockets cannot lock real
  clients out; if every connection is busy with a request, the new one is
  closed.

A request in flight is never cut: the batching deadline bounds its time.
"""
import resource
from dataclasses import dataclass

from uvicorn.protocols.http.h11_impl import H11Protocol

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
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Connections.{name} must be a positive int, got {value!r}")

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


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol plus the deadlines and the connection cap of `Connections`."""

    guard = Connections()
    cap = guard.budget()[0]

    def connection_made(self, transport):
        super().connection_made(transport)
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

    def handle_events(self):
        before = self.cycle
        super().handle_events()
        cycle = self.cycle
        if cycle is None or self.transport.is_closing():
            return
        if cycle is not before and self._phase in ("idle", "headers"):  # a request's headers are complete
            if cycle.more_body:
                self._set_phase("body", self.guard.body_timeout)
            else:
                self._set_phase("handling", None)
        elif self._phase == "body" and not cycle.more_body:
            self._set_phase("handling", None)

    def data_received(self, data):
        if self._phase == "idle":
            self._phase = "headers"  # the header deadline keeps running from when we started waiting
        super().data_received(data)

    def on_response_complete(self):
        super().on_response_complete()
        if not self.transport.is_closing() and self._phase == "handling":
            self._expect_request(self.guard.keep_alive + self.guard.header_timeout)

    # ---- helpers ----
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


def guarded_protocol(connections):
    """(h11 protocol class for uvicorn.Config(http=...) enforcing `connections`, listen backlog for uvicorn)."""
    cap, backlog = connections.budget()
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"guard": connections, "cap": cap}), backlog
