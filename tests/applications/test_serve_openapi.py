"""The documented API: the OpenAPI schema validates, lists every endpoint, matches what the server does;
the docs page shows every endpoint without external assets."""
import pytest

pytest.importorskip("starlette", reason="the serve extra (starlette) is not installed")
pytest.importorskip("uvicorn", reason="the serve extra (uvicorn) is not installed")
httpx = pytest.importorskip("httpx", reason="httpx (the test client) is not installed")
validator = pytest.importorskip("openapi_spec_validator", reason="openapi-spec-validator is not installed")
jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is not installed")

from starlette.routing import Route  # noqa: E402

from test_serve import TIMEOUT, post, serving  # noqa: E402


@pytest.fixture(scope="module")
def served(model_path):
    with serving(model_path) as (url, server):
        yield url, server.config.app


@pytest.fixture(scope="module")
def schema(served):
    reply = httpx.get(served[0] + "/openapi.json", timeout=TIMEOUT)
    assert reply.status_code == 200
    return reply.json()


def resolve(schema, node):
    """`node` with every $ref replaced by what it points to (the schemas here have no cycles)."""
    if isinstance(node, dict):
        if "$ref" in node:
            target = schema
            for part in node["$ref"].lstrip("#/").split("/"):
                target = target[part]
            return resolve(schema, target)
        return {k: resolve(schema, v) for k, v in node.items()}
    if isinstance(node, list):
        return [resolve(schema, v) for v in node]
    return node


def test_the_schema_is_valid_openapi_3_1(schema):
    validator.validate(schema)
    assert schema["openapi"].startswith("3.1")


def test_the_schema_lists_every_endpoint_with_its_methods(served, schema):
    routes = [r for r in served[1].routes if isinstance(r, Route)]
    documented = {(path, method.upper()) for path, item in schema["paths"].items() for method in item}
    served_pairs = {(r.path, m) for r in routes for m in r.methods if m != "HEAD"}
    assert served_pairs == documented
    for path in ("/translate", "/health", "/ready", "/metrics", "/docs", "/openapi.json"):
        assert path in schema["paths"]


def test_the_schema_holds_the_servers_real_limits_and_languages(served, schema):
    request = schema["components"]["schemas"]["TranslateRequest"]["properties"]
    health = httpx.get(served[0] + "/health", timeout=TIMEOUT).json()
    assert request["texts"]["maxItems"] == health["limits"]["max_texts"]
    assert request["texts"]["items"]["maxLength"] == health["limits"]["max_chars"]
    assert request["beam"]["maximum"] == health["limits"]["max_beam"]
    assert request["to"]["enum"] == health["languages"]


def test_every_example_and_live_answer_fits_the_schema(served, schema, reference):
    url = served[0]
    operation = schema["paths"]["/translate"]["post"]
    body = operation["requestBody"]["content"]["application/json"]
    jsonschema.validate(body["example"], resolve(schema, body["schema"]))
    reply = post(url, body["example"])  # the documented example works as written
    assert reply.status_code == 200
    jsonschema.validate(reply.json(), resolve(schema, operation["responses"]["200"]["content"]["application/json"]
                                              ["schema"]))
    bad = post(url, {"texts": [], "to": "sv"})
    assert str(bad.status_code) in operation["responses"]
    jsonschema.validate(bad.json(), resolve(schema, {"$ref": "#/components/schemas/Error"}))
    for path in ("/health", "/ready"):
        live = httpx.get(url + path, timeout=TIMEOUT)
        documented = schema["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]
        jsonschema.validate(live.json(), resolve(schema, documented["schema"]))
        jsonschema.validate(documented["example"], resolve(schema, documented["schema"]))


def test_the_docs_page_describes_every_endpoint_without_external_assets(served, schema):
    reply = httpx.get(served[0] + "/docs", timeout=TIMEOUT)
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/html")
    page = reply.text
    for path, item in schema["paths"].items():
        for method in item:
            assert f"{method.upper()} {path}</code>" in page
    assert "X-API-Key" in page and "Retry-After" in page
    assert "<script" not in page and "src=" not in page and "https://" not in page
