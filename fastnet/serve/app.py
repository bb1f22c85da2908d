"""The ASGI application: request checks, keys and limits, micro-batched translation, metrics.

A request to /translate goes: body read (size cap) -> JSON decoded (depth and
number-size guards) -> fields checked -> `admit` (API key, per-key limits)
-> source tokens counted (too long: 422 before queueing) -> the batching
queue (or, with batching off, one model call per request) -> the model
process (fastnet.serve.model_process) -> reply. Every
error is `{"error": code, "message": text, ...}` with its status; every
answer is counted in /metrics by endpoint and status.
"""
import contextlib
import threading
import time
from dataclasses import dataclass

try:
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException
    from starlette.middleware import Middleware
    from starlette.responses import HTMLResponse, JSONResponse, Response
    from starlette.routing import Route
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("fastnet.serve needs starlette and uvicorn: pip install 'fastnet[serve]'") from exc

from fastnet.checks import positive_int
from fastnet.serve.batching import Batching, MicroBatcher
from fastnet.serve.errors import RequestError
from fastnet.serve.messages import answer, check_texts, error_response
from fastnet.serve.metrics import CONTENT_TYPE, ServeMetrics
from fastnet.serve.model_process import InProcessModel, ModelProcess, ModelProcessError
from fastnet.serve.openapi import docs_page, openapi_schema
from fastnet.serve.page import PAGE
from fastnet.serve.protocol import Connections
from fastnet.serve.story import has_pictures, story_routes

__all__ = ["Batching", "Connections", "Limits", "RequestError", "TranslationService", "create_app"]

@dataclass(frozen=True)
class Limits:
    """What one request may ask for; anything larger gets a 4xx naming the limit."""

    max_body_bytes: int = 64 * 1024
    max_texts: int = 64
    max_chars: int = 500
    max_beam: int = 4
    max_n_best: int = 4

    def __post_init__(self):
        for name in ("max_body_bytes", "max_texts", "max_chars", "max_beam", "max_n_best"):
            object.__setattr__(self, name, positive_int(getattr(self, name), f"Limits.{name}"))

    def public(self):
        """The limits a client needs to know (GET /health)."""
        return {"max_chars": self.max_chars, "max_texts": self.max_texts, "max_beam": self.max_beam,
                "max_n_best": self.max_n_best}


@dataclass(frozen=True)
class TranslateRequest:
    texts: list
    to: str
    beam: int
    n_best: int


_FIELDS = {"texts", "to", "beam", "n_best", "api_key"}
_MISSING_KEY = ('this service needs an API key: send it in the X-API-Key header, as "Authorization: Bearer <key>", '
                'or as "api_key" in the JSON body')
_REFUSED_KEY = "the API key was not accepted (mistyped, revoked or not a key); ask the operator for a valid key"


def _positive_option(payload, name, default, maximum, error):
    value = payload.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise RequestError(422, error, f"'{name}' must be an integer from 1 to {maximum} (the server's "
                           f"max_{name}), got {value!r}", limit=maximum)
    return value


class TranslationService:
    """A loaded Translator behind a lock, the checks on what clients send, keys, batching and metrics."""

    def __init__(self, translator, limits=None, beam=1, batching=None, keys=None, require_keys=False,
                 connections=None, model_process=True):
        self.translator = translator
        self._languages = None
        self.limits = limits or Limits()
        self.beam = int(beam)
        if not 1 <= self.beam <= self.limits.max_beam:
            raise ValueError(f"the default beam {self.beam} must be from 1 to max_beam={self.limits.max_beam}")
        if require_keys and keys is None:
            raise ValueError("require_keys needs a key database (keys=KeyStore(path))")
        self.keys = keys
        self.require_keys = bool(require_keys)
        self.batching = batching or Batching()
        self.connections = connections or Connections()
        self.metrics = ServeMetrics()
        self.draining = False  # set when the server begins a graceful shutdown: /ready turns 503
        self.in_flight = 0
        # Layers keep per-call state, so one model call runs at a time (every use of the
        # model takes this lock); the kernels release the GIL, so the event loop keeps serving.
        self._lock = threading.Lock()
        # Translations run in a process of their own (see fastnet.serve.model_process); the
        # translator here answers the checks (languages, token counts) and the story's pictures.
        self._model = ModelProcess(translator) if model_process else InProcessModel(translator)
        self._batcher = MicroBatcher(self, self.batching) if self.batching.enabled else None

    @property
    def languages(self):
        """The target languages (text decoders) of the model, looked up once: checked on every request."""
        if self._languages is None:
            from fastnet.seq2seq.decoder import Decoder

            self._languages = [name for name, dec in self.translator.decoders.items() if isinstance(dec, Decoder)]
        return self._languages

    @property
    def model_location(self):
        """Where translations run, for people: "in process PID" or "on a thread"."""
        pid = getattr(self._model, "pid", None)
        return f"in process {pid}" if pid is not None else "on a thread"

    def health(self):
        return {"status": "ok", "languages": self.languages, "limits": self.limits.public(),
                "keys_required": self.require_keys}

    # ---- checks ----
    def check(self, payload):
        """A TranslateRequest from a decoded JSON body, or RequestError."""
        if not isinstance(payload, dict):
            raise RequestError(422, "invalid_body", 'the body must be a JSON object like '
                               '{"texts": ["..."], "to": "sv"}')
        unknown = sorted(set(payload) - _FIELDS)
        if unknown:
            raise RequestError(422, "invalid_body", f"unknown field(s) {unknown}; expected {sorted(_FIELDS)}")
        texts, to = payload.get("texts"), payload.get("to")
        if not isinstance(texts, list):
            raise RequestError(422, "invalid_texts", f"'texts' must be a list of strings, got {type(texts).__name__}")
        if not isinstance(to, str):
            raise RequestError(422, "invalid_to", f"'to' must be a language name (string), got {type(to).__name__}")
        if to not in self.languages:
            raise RequestError(400, "unknown_language", f"unknown language {to!r}; available: {self.languages}",
                               available=self.languages)
        check_texts(texts, self.limits)
        beam = _positive_option(payload, "beam", self.beam, self.limits.max_beam, "invalid_beam")
        n_best = _positive_option(payload, "n_best", 1, self.limits.max_n_best, "invalid_n_best")
        if n_best > beam:
            raise RequestError(422, "invalid_n_best", f"n_best={n_best} is more than beam={beam}: the beam keeps "
                               f"only {beam} candidates; ask for a beam of at least {n_best}")
        return TranslateRequest(texts, to, beam, n_best)

    async def admit(self, request, payload, n_chars):
        """Check the request's API key and spend its per-key limits; the key's KeyInfo, or None if anonymous.

        Any endpoint calls this after decoding its JSON body. The key comes from
        the X-API-Key header, "Authorization: Bearer <key>", or payload["api_key"].
        Raises RequestError 401 (no valid key while keys are required, or a key
        that is not valid) or 429 (over the key's requests or characters per minute).
        """
        key = _api_key(request, payload)
        if key is None:
            if self.require_keys:
                raise RequestError(401, "unauthorized", _MISSING_KEY, headers={"WWW-Authenticate": "Bearer"})
            return None
        if self.keys is None:
            return None  # keys are not in use on this server: a key changes nothing
        decision = await run_in_threadpool(self.keys.admit, key, int(n_chars))
        if decision.allowed:
            return decision.key
        if decision.reason == "unknown":
            raise RequestError(401, "unauthorized", _REFUSED_KEY, headers={"WWW-Authenticate": "Bearer"})
        raise _rate_limited(decision, int(n_chars))

    def source_tokens(self, texts):
        """Tokens per sentence (with eos); a sentence longer than the encoder takes is refused here,
        before it can join a batch and fail everyone's translation. (The same check as
        Translator.encode_source, per sentence: encoding a padded batch costs 4x more per request.)"""
        tokenizer, limit = self.translator.src_tokenizer, self.translator.encoder.max_len
        counts = [len(tokenizer.encode(text, add_eos=True)) for text in texts]
        longest = max(counts)
        if longest > limit:
            raise RequestError(422, "untranslatable", f"a source sentence has {longest} tokens, more than the "
                               f"encoder's max_len={limit}")
        return counts

    # ---- the model ----
    def run_exclusive(self, fn):
        """fn(translator) while holding the lock every other use of the model holds."""
        with self._lock:
            return fn(self.translator)

    def translate_batch(self, texts, to, beam=1, n_best=1):
        """The model call: translations (n_best == 1) or lists of alternatives, under the model lock."""
        with self._lock:
            return self._call_model(texts, to, beam, n_best)

    def _call_model(self, texts, to, beam, n_best):
        try:
            return self._model.translate(texts, to, beam, n_best)
        except ValueError as exc:
            raise RequestError(422, "untranslatable", str(exc)) from None
        except ModelProcessError as exc:
            raise RequestError(500, "internal_error", str(exc)) from None

    def record_batch(self, texts, seconds):
        self.metrics.batch_size.observe(len(texts))
        self.metrics.translation.observe(seconds)
        self.metrics.sentences.inc(len(texts))
        self.metrics.characters.inc(sum(len(t) for t in texts))

    def _translate_alone(self, job):
        """Batching off: this request's sentences in their own model call, in arrival order."""
        arrived = time.perf_counter()
        self.metrics.queue.inc(len(job.texts))
        with self._lock:  # waiting here is this request's queue time
            started = time.perf_counter()
            self.metrics.queue.dec(len(job.texts))
            self.metrics.queue_wait.observe(started - arrived)
            outputs = self._call_model(job.texts, job.to, job.beam, job.n_best)
        self.record_batch(job.texts, time.perf_counter() - started)
        return outputs

    async def translate(self, request, job):
        """Outputs for a checked and admitted TranslateRequest, one per text."""
        if self._batcher is None:
            return await run_in_threadpool(self._translate_alone, job)
        tokens = self.source_tokens(job.texts)
        return await self._batcher.translate(request, job.texts, tokens, (job.to, job.beam, job.n_best))

    async def start(self):
        """Before the first request: the model is loaded where it runs."""
        await run_in_threadpool(self._model.wait_ready)

    async def close(self):
        if self._batcher is not None:
            await self._batcher.stop()
        self._model.close()


def _api_key(request, payload):
    key = request.headers.get("x-api-key")
    if key is None:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            key = value.strip()
    if key is None and isinstance(payload, dict) and "api_key" in payload:
        key = payload["api_key"]
        if not isinstance(key, str):
            key = ""  # present but not a string: refused like any other malformed key
    return key


def _rate_limited(decision, n_chars):
    info, retry = decision.key, decision.retry_after
    if decision.reason == "requests":
        message = (f"this key's limit of {info.requests_per_minute} requests per minute is used up; "
                   f"retry in {retry} s")
        limit = info.requests_per_minute
    else:
        message = (f"this request's {n_chars} characters would pass this key's limit of {info.chars_per_minute} "
                   f"characters per minute ({info.chars_this_minute} used); retry in {retry} s")
        limit = info.chars_per_minute
    return RequestError(429, "rate_limited", message, headers={"Retry-After": str(retry)}, retry_after=retry,
                        limit=limit, limit_kind=decision.reason)


async def _http_error(request, exc):
    # 404 / 405 as JSON, like every other error this service returns
    return JSONResponse({"error": "http_error", "message": exc.detail}, status_code=exc.status_code)


async def _server_error(request, exc):
    return JSONResponse({"error": "internal_error", "message": f"{type(exc).__name__}: {exc}"}, status_code=500)


class Accounting:
    """ASGI middleware: the in-flight cap (503 overloaded past Connections.max_in_flight) and the
    request counts and latency by endpoint and status."""

    def __init__(self, app, service, endpoints):
        self.app, self.service, self.endpoints = app, service, endpoints

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        service, metrics = self.service, self.service.metrics
        endpoint = scope["path"] if scope["path"] in self.endpoints else "other"
        start, status = time.perf_counter(), []

        async def counted_send(message):
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        service.in_flight += 1
        metrics.in_flight.inc()
        try:
            if service.in_flight > service.connections.max_in_flight:
                await error_response(RequestError(
                    503, "overloaded", f"more than {service.connections.max_in_flight} requests in flight; retry "
                    f"in 1 s", headers={"Retry-After": "1"}, retry_after=1))(scope, receive, counted_send)
            else:
                await self.app(scope, receive, counted_send)
        finally:
            service.in_flight -= 1
            metrics.in_flight.dec()
            metrics.answered(endpoint, status[0] if status else 500, time.perf_counter() - start)


def create_app(translator, limits=None, beam=1, *, batching=None, keys=None, require_keys=False,
               connections=None, model_process=True):
    """A Starlette app serving `translator` (a fastnet Translator).

    limits: Limits per request; beam: the default beam; batching: Batching
    (micro-batching settings, Batching(enabled=False) for one call per
    request); keys: a KeyStore (API keys and per-key limits) and
    require_keys: refuse requests without a valid key; connections:
    Connections (timeouts, connection and in-flight caps); model_process: translate in a
    process of its own (False: on a thread of this one).
    """
    service = TranslationService(translator, limits, beam, batching, keys, require_keys, connections,
                                 model_process)

    async def translate(request):
        async def respond(payload):
            job = service.check(payload)
            await service.admit(request, payload, sum(len(t) for t in job.texts))
            outputs = await service.translate(request, job)
            if job.n_best > 1:
                return JSONResponse({"translations": [alts[0] for alts in outputs], "to": job.to,
                                     "alternatives": outputs})
            return JSONResponse({"translations": outputs, "to": job.to})

        return await answer(request, service.limits.max_body_bytes, respond)

    async def health(request):
        return JSONResponse({**service.health(), "has_pictures": has_pictures(service.translator)})

    async def ready(request):
        if service.draining:
            return JSONResponse({"status": "draining"}, status_code=503)
        return JSONResponse({"status": "ready"})

    async def metrics(request):
        return Response(service.metrics.exposition(), media_type=CONTENT_TYPE)

    async def page(request):
        return HTMLResponse(PAGE)

    async def openapi(request):
        return JSONResponse(documents["schema"])

    async def docs(request):
        return HTMLResponse(documents["page"])

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await service.start()
        yield
        await service.close()

    # the router tries routes in order: the busiest first
    routes = [Route("/translate", translate, methods=["POST"]), Route("/", page, methods=["GET"]),
              Route("/health", health, methods=["GET"]), Route("/ready", ready, methods=["GET"]),
              Route("/metrics", metrics, methods=["GET"]), Route("/openapi.json", openapi, methods=["GET"]),
              Route("/docs", docs, methods=["GET"])]
    routes += story_routes(service)
    endpoints = frozenset(route.path for route in routes)  # after every `routes +=`: metrics label by path
    schema = openapi_schema(service, endpoints)
    documents = {"schema": schema, "page": docs_page(schema)}
    app = Starlette(routes=routes, lifespan=lifespan,
                    middleware=[Middleware(Accounting, service=service, endpoints=endpoints)],
                    exception_handlers={HTTPException: _http_error, 500: _server_error})
    app.state.service = service
    return app

