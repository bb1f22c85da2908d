"""The story endpoints: what the encoder makes of a sentence, and the picture it draws from it.

    POST /represent {"texts": [...]} -> {"representations": [[d_model floats] per text],
                                         "map": [[x, y] per text],
                                         "reference": {"texts": [...], "map": [[x, y], ...], "scale": s},
                                         "unknown": [[words the model's vocabulary lacks] per text]}
    POST /draw {"text": "..."}        -> image/png at the pixel decoder's own size (the page enlarges it)

Design: the map is the plots' PCA (fastnet.plot.pca_basis) fitted once per
model on a fixed set of reference sentences (the demo's DOTS_SENTENCES). A
typed sentence is projected onto that same basis, so the reference dots never
move and the new dot lands among them. "scale" is the largest magnitude in the
reference representations: the page colours every strip on that one scale, so
two sentences' strips can be compared. Both endpoints read bodies, report
errors and apply limits as /translate does, and touch the model only through
service.run_exclusive, under the lock every other use of the model holds.
A model without a pixel decoder answers /draw with 404 "no_pictures".
"""
import numpy as np
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fastnet.demo.pictures import DOTS_SENTENCES
from fastnet.image.translator import pixel_decoder_names, png_bytes
from fastnet.plot import pca_basis
from fastnet.serve.errors import RequestError
from fastnet.serve.messages import answer, check_text, check_texts, error_response

# Fields a client may send besides the request's own: the API key (checked by service.admit).
_COMMON_FIELDS = {"api_key"}


def picture_decoder(translator):
    """The name of the trained pixel decoder /draw uses (the first), or None."""
    trained = getattr(translator, "trained", set())
    names = [name for name in pixel_decoder_names(translator) if name in trained]
    return names[0] if names else None


class ReferenceMap:
    """The reference sentences' 2-D map and the PCA basis that places any other sentence on it."""

    def __init__(self, translator, sentences=DOTS_SENTENCES):
        self.texts = [s for s in sentences if _encodable(translator, s)]
        if len(self.texts) < 2:  # a model whose encoder takes none of them: no map, the page hides it
            self.mean = self.directions = None
            return
        reps = np.asarray(translator.represent(self.texts), dtype=np.float64)
        self.mean, self.directions = pca_basis(reps)
        self.points = self.place(reps)
        self.scale = float(np.max(np.abs(reps))) or 1.0

    def place(self, reps):
        """[[x, y] per row of reps], or [None per row] when the model has no map."""
        if self.directions is None:
            return [None] * len(reps)
        return ((np.asarray(reps, dtype=np.float64) - self.mean) @ self.directions).tolist()

    def as_json(self):
        if self.directions is None:
            return None
        return {"texts": self.texts, "map": self.points, "scale": self.scale}


def unknown_words(tokenizer, text):
    """The words (or characters) of `text` that `tokenizer` reads as its unknown token, each once, in order.

    Word and character tokenizers say which piece each id came from (split, or
    one id per character); a tokenizer that cannot (subwords, which fall back
    to bytes and know every input) reports none.
    """
    ids = tokenizer.encode(text)
    if tokenizer.unk_id not in ids:
        return []
    pieces = tokenizer.split(text) if hasattr(tokenizer, "split") else list(text)
    if len(pieces) != len(ids):
        return []
    return list(dict.fromkeys(p for p, i in zip(pieces, ids) if i == tokenizer.unk_id))


def _encodable(translator, sentence):
    try:
        translator.encode_source([sentence])
    except ValueError:  # longer than the encoder's max_len
        return False
    return True


def _check_fields(payload, required, example):
    if not isinstance(payload, dict):
        raise RequestError(422, "invalid_body", f"the body must be a JSON object like {example}")
    unknown = sorted(set(payload) - {required} - _COMMON_FIELDS)
    if unknown:
        raise RequestError(422, "invalid_body", f"unknown field(s) {unknown}; expected {required!r}")


def check_represent(payload, limits):
    """The texts of a /represent body, or RequestError (the same codes and limits as /translate)."""
    _check_fields(payload, "texts", '{"texts": ["..."]}')
    texts = payload.get("texts")
    check_texts(texts, limits)
    return texts


def check_draw(payload, limits):
    """The text of a /draw body, or RequestError."""
    _check_fields(payload, "text", '{"text": "a small green cat"}')
    if "text" not in payload:
        raise RequestError(422, "invalid_texts", "'text' is missing; send the sentence to draw")
    check_text(payload["text"], "'text'", limits)
    return payload["text"]


class Story:
    """The model's side of the two endpoints; every call runs under the service's model lock."""

    def __init__(self, service):
        self.service = service
        self._map = None  # built on first use, under the lock, then shared

    def _reference(self, translator):
        if self._map is None:
            self._map = ReferenceMap(translator)
        return self._map

    def represent(self, texts):
        def run(translator):
            try:
                reps = translator.represent(texts)
            except ValueError as exc:  # more tokens than the encoder's max_len
                raise RequestError(422, "untranslatable", str(exc)) from None
            reference = self._reference(translator)
            return {"representations": reps.astype(np.float64).tolist(), "map": reference.place(reps),
                    "reference": reference.as_json(),
                    "unknown": [unknown_words(translator.src_tokenizer, t) for t in texts]}

        return self.service.run_exclusive(run)

    def draw(self, text):
        def run(translator):
            try:
                picture = translator.draw(text, decoder=picture_decoder(translator))
            except ValueError as exc:
                raise RequestError(422, "untranslatable", str(exc)) from None
            return png_bytes(picture)

        return self.service.run_exclusive(run)


def _no_pictures(translator):
    return RequestError(404, "no_pictures", f"this model has no trained pixel decoder (its decoders: "
                        f"{list(translator.decoders)}); train one with fastnet.image.train_pixels")


def story_routes(service):
    """POST /represent and POST /draw for a TranslationService."""
    story = Story(service)

    async def represent(request):
        async def respond(payload):
            texts = check_represent(payload, service.limits)
            await service.admit(request, payload, sum(len(t) for t in texts))  # API key and per-key limits
            return JSONResponse(await run_in_threadpool(story.represent, texts))

        return await answer(request, service.limits.max_body_bytes, respond)

    async def draw(request):
        if not has_pictures(service.translator):  # before the body: nothing it says could change the answer
            return error_response(_no_pictures(service.translator))

        async def respond(payload):
            text = check_draw(payload, service.limits)
            await service.admit(request, payload, len(text))
            png = await run_in_threadpool(story.draw, text)
            return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})

        return await answer(request, service.limits.max_body_bytes, respond)

    return [Route("/represent", represent, methods=["POST"]), Route("/draw", draw, methods=["POST"])]


def has_pictures(translator):
    """Whether /draw can answer for this model (reported by /health so the page can hide the picture)."""
    return picture_decoder(translator) is not None
