"""The API described: an OpenAPI 3.1 schema (GET /openapi.json) and a docs page rendered from it (GET /docs).

The schema is built per app from the service's real limits and languages, and
lists only the endpoints the app has (the /represent and /draw endpoints of
fastnet.serve.story appear when those routes are mounted). The docs page is
plain HTML made from the same dictionary on the server: no external scripts
or fonts, so it works offline and behind strict content policies.
"""
import html
import json

ERROR_CODES = ["invalid_json", "invalid_body", "invalid_texts", "invalid_to", "unknown_language", "too_many_texts",
               "body_too_large", "text_too_long", "empty_text", "untranslatable", "invalid_beam", "invalid_n_best",
               "unauthorized", "rate_limited", "overloaded", "deadline_exceeded", "no_pictures", "http_error",
               "internal_error"]


def _error(description, example_code):
    return {"description": description, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/Error"},
        "example": {"error": example_code, "message": "what was wrong, in words"}}}}


def _retry_error(description, example_code):
    response = _error(description, example_code)
    response["headers"] = {"Retry-After": {"description": "seconds to wait before trying again",
                                           "schema": {"type": "integer", "minimum": 1}}}
    return response


def _json(schema_ref, example, description="OK"):
    return {"description": description, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{schema_ref}"}, "example": example}}}


def _schemas(service):
    limits, languages = service.limits, service.languages
    texts = {"type": "array", "minItems": 1, "maxItems": limits.max_texts,
             "items": {"type": "string", "minLength": 1, "maxLength": limits.max_chars}}
    return {
        "TranslateRequest": {
            "type": "object", "required": ["texts", "to"], "additionalProperties": False,
            "properties": {
                "texts": {**texts, "description": "English sentences"},
                "to": {"type": "string", "enum": languages, "description": "target language"},
                "beam": {"type": "integer", "minimum": 1, "maximum": limits.max_beam,
                         "description": f"beam size (default {service.beam}; 1 is greedy)"},
                "n_best": {"type": "integer", "minimum": 1, "maximum": limits.max_n_best,
                           "description": "alternatives per sentence, best first (at most beam)"},
                "api_key": {"type": "string", "description": "the API key, if not sent in a header"}}},
        "TranslateResponse": {
            "type": "object", "required": ["translations", "to"],
            "properties": {
                "translations": {"type": "array", "items": {"type": "string"}},
                "to": {"type": "string"},
                "alternatives": {"type": "array", "items": {"type": "array", "items": {"type": "string"}},
                                 "description": "with n_best > 1: n_best translations per text, best first"}}},
        "Health": {
            "type": "object", "required": ["status", "languages", "limits", "keys_required"],
            "properties": {
                "status": {"type": "string", "const": "ok"},
                "languages": {"type": "array", "items": {"type": "string"}},
                "limits": {"type": "object", "properties": {
                    name: {"type": "integer", "minimum": 1}
                    for name in ("max_chars", "max_texts", "max_beam", "max_n_best")}},
                "keys_required": {"type": "boolean"},
                "has_pictures": {"type": "boolean"}}},
        "Ready": {"type": "object", "required": ["status"],
                  "properties": {"status": {"type": "string", "enum": ["ready", "draining"]}}},
        "Error": {
            "type": "object", "required": ["error", "message"],
            "properties": {
                "error": {"type": "string", "enum": ERROR_CODES},
                "message": {"type": "string"},
                "limit": {"type": "integer", "description": "the limit that was passed"},
                "retry_after": {"type": "integer", "description": "with 429 and 503: seconds to wait"},
                "available": {"type": "array", "items": {"type": "string"}}}},
        "RepresentRequest": {
            "type": "object", "required": ["texts"], "properties": {"texts": texts,
                                                                    "api_key": {"type": "string"}}},
        "RepresentResponse": {
            "type": "object", "required": ["representations", "map", "reference"],
            "properties": {
                "representations": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
                "map": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
                "reference": {"type": "object"}}},
        "DrawRequest": {
            "type": "object", "required": ["text"],
            "properties": {"text": {"type": "string", "minLength": 1, "maxLength": limits.max_chars},
                           "api_key": {"type": "string"}}},
    }


def _translate_path(service):
    example = {"texts": ["cats are cute", "dogs are big"], "to": service.languages[0]}
    return {"post": {
        "summary": "Translate English sentences",
        "description": "Concurrent requests are merged into batches (micro-batching); each reply holds its own "
                       "sentences in order. Sizes over the limits are refused before queueing.",
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/TranslateRequest"}, "example": example}}},
        "responses": {
            "200": _json("TranslateResponse", {"translations": ["...", "..."], "to": example["to"]}),
            "400": _error("not JSON (syntax, encoding, too deep, huge numbers) or an unknown language",
                          "invalid_json"),
            "401": _error("no valid API key while keys are required, or a key that is not valid",
                          "unauthorized"),
            "413": _error("body over max_body_bytes, or more than max_texts sentences", "too_many_texts"),
            "422": _error("wrong fields or types, an empty or too long sentence, beam or n_best out of range",
                          "invalid_texts"),
            "429": _retry_error("over the key's requests or characters per minute", "rate_limited"),
            "503": _retry_error("queue full, too many requests in flight, or the deadline passed",
                                "deadline_exceeded")}}}


def _story_paths():
    """/represent and /draw (fastnet.serve.story), documented when the app mounts them."""
    return {
        "/represent": {"post": {
            "summary": "Sentence representations and their 2-D map",
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/RepresentRequest"},
                "example": {"texts": ["cats are cute"]}}}},
            "responses": {"200": _json("RepresentResponse", {"representations": [[0.1, -0.2]], "map": [[0.5, 0.1]],
                                                             "reference": {"texts": [], "map": []}}),
                          "401": _error("no valid API key", "unauthorized"),
                          "422": _error("wrong fields or types", "invalid_texts"),
                          "429": _retry_error("over the key's limits", "rate_limited")}}},
        "/draw": {"post": {
            "summary": "A picture of an English description (models with a pixel decoder)",
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/DrawRequest"}, "example": {"text": "a big red circle"}}}},
            "responses": {"200": {"description": "a PNG image", "content": {"image/png": {
                                  "schema": {"type": "string", "contentMediaType": "image/png"}}}},
                          "404": _error("the model has no pixel decoder", "no_pictures"),
                          "401": _error("no valid API key", "unauthorized"),
                          "429": _retry_error("over the key's limits", "rate_limited")}}},
    }


def _fixed_paths():
    text = {"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}}
    page = {"description": "OK", "content": {"text/html": {"schema": {"type": "string"}}}}
    return {
        "/": {"get": {"summary": "The translation page", "responses": {"200": page}}},
        "/health": {"get": {"summary": "Languages, limits and whether keys are required",
                            "responses": {"200": _json("Health", {"status": "ok", "languages": ["sv", "es"],
                                                                  "limits": {"max_chars": 500, "max_texts": 64,
                                                                             "max_beam": 4, "max_n_best": 4},
                                                                  "keys_required": False})}}},
        "/ready": {"get": {"summary": "Whether this server takes requests (503 while it shuts down)",
                           "responses": {"200": _json("Ready", {"status": "ready"}),
                                         "503": _json("Ready", {"status": "draining"}, "shutting down")}}},
        "/metrics": {"get": {"summary": "Prometheus metrics (text format): requests by status, sentences, "
                                        "characters, queue length, batch sizes, queue-wait and translation time",
                             "responses": {"200": text}}},
        "/openapi.json": {"get": {"summary": "This schema", "responses": {"200": {
            "description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}}}}},
        "/docs": {"get": {"summary": "This API, as a page", "responses": {"200": page}}},
    }


def openapi_schema(service, route_paths):
    """The OpenAPI 3.1 document for an app whose routes have `route_paths`."""
    paths = {**_fixed_paths(), "/translate": _translate_path(service), **_story_paths()}
    key_security = [{"ApiKeyHeader": []}, {"BearerKey": []}]
    for item in paths.values():
        for operation in item.values():
            if "requestBody" in operation and service.require_keys:
                operation["security"] = key_security
    return {
        "openapi": "3.1.0",
        "info": {"title": "fastnet translation service", "version": _version(),
                 "description": "Translate English into " + ", ".join(service.languages) + ". Every error is JSON "
                                '{"error": code, "message": text}.'},
        "paths": {path: item for path, item in paths.items() if path in route_paths},
        "components": {
            "schemas": _schemas(service),
            "securitySchemes": {
                "ApiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "BearerKey": {"type": "http", "scheme": "bearer"}}},
    }


def _version():
    import fastnet

    return fastnet.__version__


def docs_page(schema):
    """A self-contained HTML page describing every path of `schema`."""
    esc = html.escape
    parts = [(f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{esc(schema['info']['title'])}"
             "</title><style>body{font-family:system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem}"
             "pre{background:#f4f4f4;padding:.6rem;overflow-x:auto}code{background:#f4f4f4}"
             "td,th{text-align:left;padding:.2rem .6rem;vertical-align:top}</style></head><body>"),
             f"<h1>{esc(schema['info']['title'])} {esc(schema['info']['version'])}</h1>",
             (f"<p>{esc(schema['info']['description'])} The machine-readable schema is "
             "<a href=\"/openapi.json\">/openapi.json</a> (OpenAPI 3.1). API keys go in the <code>X-API-Key</code> "
             "header, as <code>Authorization: Bearer KEY</code>, or as <code>\"api_key\"</code> in a JSON body.</p>")]
    for path, item in schema["paths"].items():
        for method, op in item.items():
            parts.append(f"<section id=\"{esc(method)}-{esc(path)}\"><h2><code>{method.upper()} {esc(path)}</code>"
                         f"</h2><p>{esc(op['summary'])}. {esc(op.get('description', ''))}</p>")
            body = op.get("requestBody", {}).get("content", {}).get("application/json")
            if body:
                ref = body["schema"]["$ref"].rsplit("/", 1)[1]
                parts.append("<h3>Request</h3>" + _fields_table(schema["components"]["schemas"][ref]) +
                             f"<pre>{esc(json.dumps(body['example'], ensure_ascii=False))}</pre>")
            parts.append("<h3>Responses</h3><table><tr><th>status</th><th>meaning</th><th>example</th></tr>")
            for status, response in op["responses"].items():
                example = next(iter(response.get("content", {}).values()), {}).get("example")
                shown = esc(json.dumps(example, ensure_ascii=False)) if example is not None else ""
                retry = " (+ Retry-After)" if "headers" in response else ""
                parts.append(f"<tr><td>{status}{retry}</td><td>{esc(response['description'])}</td>"
                             f"<td><code>{shown}</code></td></tr>")
            parts.append("</table></section>")
    parts.append("</body></html>")
    return "".join(parts)


def _fields_table(schema):
    esc = html.escape
    rows = []
    for name, field in schema.get("properties", {}).items():
        required = "required" if name in schema.get("required", []) else "optional"
        bounds = ", ".join(f"{k} {field[k]}" for k in ("minimum", "maximum", "maxItems", "maxLength") if k in field)
        rows.append(f"<tr><td><code>{esc(name)}</code></td><td>{esc(field.get('type', ''))}</td><td>{required}"
                    f"</td><td>{esc(field.get('description', ''))} {esc(bounds)}</td></tr>")
    return "<table><tr><th>field</th><th>type</th><th></th><th></th></tr>" + "".join(rows) + "</table>"
