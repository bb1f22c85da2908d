"""POST /represent and POST /draw on a real server: shapes, the map, the PNG, limits, JSON errors."""
import io
import json

import numpy as np
import pytest

import fastnet

pytest.importorskip("starlette", reason="the serve extra (starlette) is not installed")
pytest.importorskip("uvicorn", reason="the serve extra (uvicorn) is not installed")
httpx = pytest.importorskip("httpx", reason="httpx (the test client) is not installed")
PIL_Image = pytest.importorskip("PIL.Image", reason="Pillow (the serve extra) is not installed")

from fastnet.demo import DOTS_SENTENCES  # noqa: E402
from fastnet.plot import pca_2d  # noqa: E402
from test_serve import TIMEOUT, running_server  # noqa: E402

_STORY = {}  # one demo-like model per test session, shared with test_serve_browser.py


def train_story_model(path):
    """The demo's recipe, smaller (about 5 s on one thread): English -> sv + es on sentences that include
    picture descriptions, then a pixel decoder on the frozen representation; saved to `path`."""
    from fastnet.datasets import toy_pictures, toy_translations
    from fastnet.image import train_pixels
    from fastnet.seq2seq.translator import Translator

    data = toy_translations(1500, seed=0, split="train", pictures=0.3)
    targets = {"sv": data.sv, "es": data.es}
    tr = Translator.build(data.en, targets, seed=0, d_model=32, n_heads=2, n_layers=1, d_ff=64, dropout=0.0,
                          tokenizer="word")
    pictures = toy_pictures(600, seed=0, split="train")
    with fastnet.threads(1):  # multi-threaded regions stall on a loaded machine; this model is too small to gain
        tr.fit(data.en, targets, epochs=30, batch_size=32, lr=5e-3, verbose=0)
        train_pixels(tr, pictures.texts, pictures.images, epochs=40, verbose=False, seed=0, hidden=(64, 128))
    tr.save(path)
    return path


def story_model_path(tmp_path_factory):
    if "path" not in _STORY:
        _STORY["path"] = train_story_model(tmp_path_factory.mktemp("story") / "story.safetensors")
    return _STORY["path"]


@pytest.fixture(scope="module")
def story(tmp_path_factory):
    path = story_model_path(tmp_path_factory)
    with running_server(path) as url:
        yield url, fastnet.load(path)


def post(url, route, payload=None, content=None):
    if content is None:
        content = json.dumps(payload).encode()
    return httpx.post(url + route, content=content, headers={"content-type": "application/json"}, timeout=TIMEOUT)


def test_health_says_the_model_has_pictures(story):
    url, _ = story
    assert httpx.get(url + "/health", timeout=TIMEOUT).json()["has_pictures"] is True


def test_represent_returns_the_representations_and_their_place_on_the_map(story):
    url, model = story
    texts = ["cats are cute", "a small red cat"]
    reply = post(url, "/represent", {"texts": texts})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    with fastnet.threads(1):
        reps = model.represent(texts)
        reference_reps = model.represent(DOTS_SENTENCES)
    np.testing.assert_allclose(body["representations"], reps, rtol=1e-5, atol=1e-6)
    assert np.shape(body["representations"]) == (2, model.d_model) and np.shape(body["map"]) == (2, 2)
    # The reference map is the plots' PCA of the fixed sentences ...
    assert body["reference"]["texts"] == DOTS_SENTENCES
    np.testing.assert_allclose(body["reference"]["map"], pca_2d(reference_reps), rtol=1e-4, atol=1e-4)
    assert body["reference"]["scale"] == pytest.approx(float(np.abs(reference_reps).max()), rel=1e-5)
    # ... and a reference sentence typed again lands exactly on its own reference dot.
    i = DOTS_SENTENCES.index("cats are cute")
    np.testing.assert_allclose(body["map"][0], body["reference"]["map"][i], rtol=1e-4, atol=1e-4)


def test_represent_names_the_words_the_model_does_not_know(story):
    url, _ = story
    body = post(url, "/represent", {"texts": ["cats are cute", "zebras are cute", "the zebra sees the gnu"]}).json()
    assert body["unknown"] == [[], ["zebras"], ["zebra", "gnu"]]


def test_unknown_words_of_each_kind_of_tokenizer():
    from fastnet.serve.story import unknown_words
    from fastnet.text import AsciiTokenizer, CharTokenizer, WordTokenizer

    words = WordTokenizer.fit(["the cat sleeps"])
    assert unknown_words(words, "The dog sleeps, the dog!") == ["dog", ",", "!"]
    assert unknown_words(words, "the cat sleeps") == []
    assert unknown_words(CharTokenizer.fit(["abc "]), "a bad cab, zz") == ["d", ",", "z"]
    assert unknown_words(AsciiTokenizer(errors="replace"), "café") == ["é"]


def test_draw_returns_a_png_of_the_pixel_decoders_size_equal_to_draw(story):
    url, model = story
    reply = post(url, "/draw", {"text": "a big red circle"})
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == "image/png"
    assert reply.content[:8] == b"\x89PNG\r\n\x1a\n"
    picture = np.asarray(PIL_Image.open(io.BytesIO(reply.content)).convert("RGB"))
    size = model.decoders["pixels"].size
    assert picture.shape == (size, size, 3)
    with fastnet.threads(1):
        np.testing.assert_array_equal(picture, model.draw("a big red circle"))


def test_without_a_pixel_decoder_draw_is_a_404_and_health_says_so(model_path):
    with running_server(model_path) as url:  # the service tests' translator: sv and es, no pixel decoder
        assert httpx.get(url + "/health", timeout=TIMEOUT).json()["has_pictures"] is False
        reply = post(url, "/draw", {"text": "a big red circle"})
        assert reply.status_code == 404
        body = reply.json()
        assert body["error"] == "no_pictures" and "pixel decoder" in body["message"]
        assert post(url, "/represent", {"texts": ["cats are cute"]}).status_code == 200


def _json(payload):
    return json.dumps(payload).encode()


BAD_REQUESTS = {
    ("/represent", "not JSON"): (b'{"texts": ["cats"', 400, "invalid_json"),
    ("/represent", "empty body"): (b"", 400, "invalid_json"),
    ("/represent", "a list, not an object"): (_json(["cats"]), 422, "invalid_body"),
    ("/represent", "unknown field"): (_json({"texts": ["cats"], "to": "sv"}), 422, "invalid_body"),
    ("/represent", "texts is a string"): (_json({"texts": "cats"}), 422, "invalid_texts"),
    ("/represent", "no texts"): (_json({"texts": []}), 422, "invalid_texts"),
    ("/represent", "texts holds a number"): (_json({"texts": ["cats", 3]}), 422, "invalid_texts"),
    ("/represent", "blank text"): (_json({"texts": [" "]}), 422, "empty_text"),
    ("/represent", "too many texts"): (_json({"texts": ["cats"] * 65}), 413, "too_many_texts"),
    ("/represent", "text too long"): (_json({"texts": ["a" * 501]}), 422, "text_too_long"),
    ("/represent", "more tokens than the model takes"): (_json({"texts": [" ".join(["cats"] * 40)]}), 422,
                                                         "untranslatable"),
    ("/represent", "body too large"): (_json({"texts": ["cats"], "pad": "x" * 65536}), 413, "body_too_large"),
    ("/draw", "not JSON"): (b'{"text": "a cat', 400, "invalid_json"),
    ("/draw", "not UTF-8"): (b'{"text": "\xff\xfe"}', 400, "invalid_json"),
    ("/draw", "a string, not an object"): (_json("a cat"), 422, "invalid_body"),
    ("/draw", "texts instead of text"): (_json({"texts": ["a cat"]}), 422, "invalid_body"),
    ("/draw", "text missing"): (_json({}), 422, "invalid_texts"),
    ("/draw", "text is a list"): (_json({"text": ["a cat"]}), 422, "invalid_texts"),
    ("/draw", "blank text"): (_json({"text": ""}), 422, "empty_text"),
    ("/draw", "text too long"): (_json({"text": "a" * 501}), 422, "text_too_long"),
    ("/draw", "more tokens than the model takes"): (_json({"text": " ".join(["cats"] * 40)}), 422,
                                                    "untranslatable"),
}


@pytest.mark.parametrize("route, case", sorted(BAD_REQUESTS))
def test_bad_request_gets_its_json_error_and_the_server_keeps_serving(story, route, case):
    url, _ = story
    content, status, error = BAD_REQUESTS[(route, case)]
    reply = post(url, route, content=content)
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert body["error"] == error and body["message"]
    assert post(url, "/draw", {"text": "a cat"}).status_code == 200
    assert post(url, "/represent", {"texts": ["a cat"]}).status_code == 200


def test_limits_are_the_services_own(tmp_path_factory):
    with running_server(story_model_path(tmp_path_factory), max_texts=2, max_chars=10) as url:
        too_long = post(url, "/draw", {"text": "a big red circle"}).json()
        assert too_long["limit"] == 10 and "max_chars=10" in too_long["message"]
        assert post(url, "/represent", {"texts": ["cat"] * 3}).json()["limit"] == 2
        assert post(url, "/represent", {"texts": ["a cat", "a dog"]}).status_code == 200


def test_get_is_not_allowed(story):
    url, _ = story
    for route in ("/represent", "/draw"):
        reply = httpx.get(url + route, timeout=TIMEOUT)
        assert reply.status_code == 405 and reply.json()["error"] == "http_error"
