"""The ASGI application: request checking, limits, and translation in a worker thread."""
import json
import threading
from dataclasses import dataclass

try:
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException
    from starlette.requests import ClientDisconnect
    from starlette.responses import HTMLResponse, JSONResponse
    from starlette.routing import Route
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("fastnet.serve needs starlette and uvicorn: pip install 'fastnet[serve]'") from exc

from fastnet.serve.page import PAGE


@dataclass(frozen=True)
class Limits:
    """What one request may ask for; anything larger gets a 4xx naming the limit."""

    max_body_bytes: int = 64 * 1024
    max_texts: int = 64
    max_chars: int = 500

    def __post_init__(self):
        for name in ("max_body_bytes", "max_texts", "max_chars"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"Limits.{name} must be a positive int, got {value!r}")


class RequestError(Exception):
    """A bad request: its HTTP status and a JSON body naming what was wrong."""

    def __init__(self, status, error, message, **details):
        super().__init__(message)
        self.status = status
        self.body = {"error": error, "message": message, **details}


class TranslationService:
    """A loaded Translator behind a lock, plus the checks on what clients send it."""

    def __init__(self, translator, limits=None, beam=1):
        self.translator = translator
        self.limits = limits or Limits()
        self.beam = int(beam)
        # Layers keep per-call state, so one translate() runs at a time; the
        # kernels release the GIL, so the event loop keeps serving meanwhile.
        self._lock = threading.Lock()

    @property
    def languages(self):
        from fastnet.seq2seq.decoder import Decoder

        return [name for name, dec in self.translator.decoders.items() if isinstance(dec, Decoder)]

    def check(self, payload):
        """(texts, to) from a decoded JSON body, or RequestError."""
        if not isinstance(payload, dict):
            raise RequestError(422, "invalid_body", 'the body must be a JSON object like {"texts": ["..."], "to": "sv"}')
        unknown = sorted(set(payload) - {"texts", "to"})
        if unknown:
            raise RequestError(422, "invalid_body", f"unknown field(s) {unknown}; expected 'texts' and 'to'")
        texts, to = payload.get("texts"), payload.get("to")
        if not isinstance(texts, list):
            raise RequestError(422, "invalid_texts", f"'texts' must be a list of strings, got {type(texts).__name__}")
        if not isinstance(to, str):
            raise RequestError(422, "invalid_to", f"'to' must be a language name (string), got {type(to).__name__}")
        if to not in self.languages:
            raise RequestError(400, "unknown_language", f"unknown language {to!r}; available: {self.languages}",
                               available=self.languages)
        if not texts:
            raise RequestError(422, "invalid_texts", "'texts' is empty; send at least one sentence")
        if len(texts) > self.limits.max_texts:
            raise RequestError(413, "too_many_texts", f"{len(texts)} texts in one request; the limit is "
                               f"max_texts={self.limits.max_texts}", limit=self.limits.max_texts)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise RequestError(422, "invalid_texts", f"texts[{i}] is {type(text).__name__}, expected a string")
            if not text.strip():
                raise RequestError(422, "empty_text", f"texts[{i}] is empty")
            if len(text) > self.limits.max_chars:
                raise RequestError(422, "text_too_long", f"texts[{i}] has {len(text)} characters; the limit is "
                                   f"max_chars={self.limits.max_chars}", limit=self.limits.max_chars)
        return texts, to

    def run_exclusive(self, fn):
        """fn(self.translator) while holding the lock every other use of the model holds."""
        with self._lock:
            return fn(self.translator)

    def translate(self, texts, to):
        with self._lock:
            try:
                return self.translator.translate(list(texts), to=to, beam=self.beam)
            except ValueError as exc:  # e.g. more tokens than the encoder's max_len
                raise RequestError(422, "untranslatable", str(exc)) from None


async def _read_body(request, max_bytes):
    """The body, refusing (413) as soon as it is known to exceed max_bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise RequestError(400, "invalid_content_length", f"Content-Length {declared!r} is not a number")
        if int(declared) > max_bytes:
            raise RequestError(413, "body_too_large", f"the body has {int(declared)} bytes; the limit is "
                               f"max_body_bytes={max_bytes}", limit=max_bytes)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:  # chunked uploads declare no length: count as they arrive
            raise RequestError(413, "body_too_large", f"the body exceeds the limit max_body_bytes={max_bytes}",
                               limit=max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)


def _decode_json(body):
    if not body:
        raise RequestError(400, "invalid_json", "the body is empty; send JSON like {\"texts\": [\"...\"], \"to\": \"sv\"}")
    try:
        return json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise RequestError(400, "invalid_json", "the body is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise RequestError(400, "invalid_json", f"the body is not valid JSON: {exc}") from None


async def _http_error(request, exc):
    # 404 / 405 as JSON, like every other error this service returns
    return JSONResponse({"error": "http_error", "message": exc.detail}, status_code=exc.status_code)


async def _server_error(request, exc):
    return JSONResponse({"error": "internal_error", "message": f"{type(exc).__name__}: {exc}"}, status_code=500)


def create_app(translator, limits=None, beam=1):
    """A Starlette app serving `translator` (a fastnet Translator) with the given Limits."""
    # story.py builds on this module's request helpers, so it is imported here rather than at the top
    from fastnet.serve.story import has_pictures, story_routes

    service = TranslationService(translator, limits, beam)

    async def translate(request):
        try:
            body = await _read_body(request, service.limits.max_body_bytes)
            texts, to = service.check(_decode_json(body))
            translations = await run_in_threadpool(service.translate, texts, to)
        except RequestError as exc:
            return JSONResponse(exc.body, status_code=exc.status)
        except ClientDisconnect:
            return JSONResponse({"error": "client_disconnected", "message": "the client went away"}, 400)
        return JSONResponse({"translations": translations, "to": to})

    async def health(request):
        return JSONResponse({"status": "ok", "languages": service.languages,
                             "has_pictures": has_pictures(service.translator)})

    async def page(request):
        return HTMLResponse(PAGE)

    routes = [Route("/", page, methods=["GET"]), Route("/health", health, methods=["GET"]),
              Route("/translate", translate, methods=["POST"])]
    routes += story_routes(service)
    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_error, 500: _server_error})
    app.state.service = service
    return app
