"""Reading requests and writing answers: the helpers every endpoint of the service shares.

An endpoint hands `answer` its request and a coroutine that turns the decoded
JSON body into a response; `answer` reads the body (413 past the size cap, as
soon as that is known), decodes it (400 invalid_json for bad syntax, bad
UTF-8, nesting deeper than Python parses, NaN or integers of more than
MAX_INT_DIGITS digits) and turns every RequestError into its JSON answer.
`check_texts` and `check_text` are the sentence checks /translate and
/represent share, so both refuse the same inputs with the same codes.
"""
import json

from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse

from fastnet.serve.errors import ClientGone, RequestError

__all__ = ["MAX_INT_DIGITS", "answer", "check_text", "check_texts", "client_gone_response", "decode_json",
           "error_response", "read_body"]

# The longest integer literal a request may hold: Python refuses to convert
# integers of more than 4300 digits (and older Pythons take quadratic time).
MAX_INT_DIGITS = 32


async def answer(request, max_body_bytes, respond):
    """`await respond(payload)` for the request's decoded JSON body; every failure as its JSON answer."""
    try:
        return await respond(decode_json(await read_body(request, max_body_bytes)))
    except RequestError as exc:
        return error_response(exc)
    except (ClientDisconnect, ClientGone):
        return client_gone_response()


async def read_body(request, max_bytes):
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


def _bounded_int(text):
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise ValueError(f"a number with {digits} digits (at most {MAX_INT_DIGITS} are accepted)")
    return int(text)


def _no_constant(name):
    raise ValueError(f"{name} is not JSON")


def decode_json(body):
    """The decoded body, or RequestError 400 invalid_json (see the module notes)."""
    if not body:
        raise RequestError(400, "invalid_json",
                           "the body is empty; send JSON like {\"texts\": [\"...\"], \"to\": \"sv\"}")
    try:
        return json.loads(body.decode("utf-8"), parse_int=_bounded_int, parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise RequestError(400, "invalid_json", "the body is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise RequestError(400, "invalid_json", f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise RequestError(400, "invalid_json", "the body nests arrays or objects too deeply") from None
    except ValueError as exc:  # from the number hooks
        raise RequestError(400, "invalid_json", f"the body is not accepted JSON: {exc}") from None


def check_texts(texts, limits):
    """RequestError unless `texts` is a non-empty list of at most limits.max_texts acceptable sentences."""
    if not isinstance(texts, list):
        raise RequestError(422, "invalid_texts", f"'texts' must be a list of strings, got {type(texts).__name__}")
    if not texts:
        raise RequestError(422, "invalid_texts", "'texts' is empty; send at least one sentence")
    if len(texts) > limits.max_texts:
        raise RequestError(413, "too_many_texts", f"{len(texts)} texts in one request; the limit is "
                           f"max_texts={limits.max_texts}", limit=limits.max_texts)
    for i, text in enumerate(texts):
        check_text(text, f"texts[{i}]", limits)


def check_text(text, where, limits):
    """RequestError unless `text` (named `where` in the message) is a non-blank string of at most max_chars."""
    if not isinstance(text, str):
        raise RequestError(422, "invalid_texts", f"{where} is {type(text).__name__}, expected a string")
    if not text.strip():
        raise RequestError(422, "empty_text", f"{where} is empty")
    if len(text) > limits.max_chars:
        raise RequestError(422, "text_too_long", f"{where} has {len(text)} characters; the limit is "
                           f"max_chars={limits.max_chars}", limit=limits.max_chars)


def error_response(exc):
    """The JSON answer of a RequestError: its status, body and headers (Retry-After, WWW-Authenticate)."""
    return JSONResponse(exc.body, status_code=exc.status, headers=exc.headers)


def client_gone_response():
    # nobody reads this; 499 (as nginx logs it) keeps it apart in the metrics
    return JSONResponse({"error": "client_disconnected", "message": "the client went away"}, 499)
