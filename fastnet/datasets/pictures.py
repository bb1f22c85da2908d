"""``toy_pictures``: small RGB pictures drawn from English descriptions.

Every picture shows one to three objects of one kind -- a circle, a square, a
triangle or a cat face -- in one colour, on a white background:

    "a big red circle on the left"     "two small blue squares"
    "a cute orange cat"                "three green triangles at the top"

The same descriptions come in Swedish and Spanish too (``.sv``, ``.es``):
"en stor röd cirkel till vänster", "un círculo rojo grande a la izquierda".

A description names the count (a/an, two, three), the size (small, big, or
nothing for the medium size -- a medium cat is "cute"), the colour, the shape
and the position ("on the left", "on the right", "at the top", "at the
bottom", "in the center"; the center may go unsaid). Several objects stand in
a row through that position: side by side for top, center and bottom, one
above the other for left and right, and they are drawn smaller so they fit.

Images are ``uint8`` arrays (n, size, size, 3) with values 0..255;
``ToyPictures.float_images()`` gives float32 in [0, 1]. Drawing is pure NumPy:
one vectorised mask per (object slot, shape) over all pictures at once.

Split: the (colour, shape) combinations in ``TEST_COMBOS`` are drawn only in
``split="test"``; ``split="train"`` never draws them. Every colour and every
shape still appears in training with other partners.
"""
import random
from dataclasses import dataclass, field
from typing import List

import numpy as np

__all__ = ["toy_pictures", "ToyPictures", "parse_description", "describe", "draw_pictures",
           "COLOURS", "SHAPES", "SIZES", "POSITIONS", "TEST_COMBOS", "BACKGROUND"]

COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 160, 50),
    "blue": (30, 70, 220),
    "yellow": (240, 200, 20),
    "orange": (250, 130, 20),
    "purple": (130, 40, 180),
    "pink": (250, 110, 190),
    "brown": (120, 70, 30),
}
SHAPES = ("circle", "square", "triangle", "cat")
SIZES = ("small", "medium", "big")
POSITIONS = ("left", "right", "top", "bottom", "center")
BACKGROUND = (255, 255, 255)
EYES = (20, 20, 20)

#: Held out of training: each shape with one or two colours, each colour at most once.
TEST_COMBOS = frozenset({
    ("blue", "circle"), ("pink", "circle"), ("yellow", "square"),
    ("red", "triangle"), ("purple", "triangle"), ("green", "cat"),
})

_COUNT_WORDS = {1: "a", 2: "two", 3: "three"}
_POSITION_PHRASES = {"left": "on the left", "right": "on the right", "top": "at the top",
                     "bottom": "at the bottom", "center": "in the center"}
# Radius of an object's bounding circle as a share of the picture side...
_RADIUS = {"small": 0.12, "medium": 0.18, "big": 0.24}
# ...shrunk when several objects share the picture, so three big ones still fit.
_CROWD_SCALE = {1: 1.0, 2: 0.8, 3: 0.6}
# Where the row of objects stands (share of the side), along its free axis.
_ANCHOR = {"left": 0.27, "right": 0.73, "top": 0.27, "bottom": 0.73, "center": 0.5}


# ------------------------------------------------------------------ text
# Swedish and Spanish: every shape noun is an "en" word and masculine, so only
# number changes the adjectives. Forms are (singular, plural).
_SV = {
    "count": {1: "en", 2: "två", 3: "tre"},
    "size": {"small": ("liten", "små"), "big": ("stor", "stora"), "cute": ("söt", "söta")},
    "colour": {"red": ("röd", "röda"), "green": ("grön", "gröna"), "blue": ("blå", "blå"),
               "yellow": ("gul", "gula"), "orange": ("orange", "orange"),
               "purple": ("lila", "lila"), "pink": ("rosa", "rosa"), "brown": ("brun", "bruna")},
    "shape": {"circle": ("cirkel", "cirklar"), "square": ("kvadrat", "kvadrater"),
              "triangle": ("triangel", "trianglar"), "cat": ("katt", "katter")},
    "position": {"left": "till vänster", "right": "till höger", "top": "högst upp",
                 "bottom": "längst ner", "center": "i mitten"},
}
_ES = {
    "count": {1: "un", 2: "dos", 3: "tres"},
    "size": {"small": ("pequeño", "pequeños"), "big": ("grande", "grandes"),
             "cute": ("lindo", "lindos")},
    "colour": {"red": ("rojo", "rojos"), "green": ("verde", "verdes"), "blue": ("azul", "azules"),
               "yellow": ("amarillo", "amarillos"), "orange": ("naranja", "naranja"),
               "purple": ("morado", "morados"), "pink": ("rosa", "rosa"),
               "brown": ("marrón", "marrones")},
    "shape": {"circle": ("círculo", "círculos"), "square": ("cuadrado", "cuadrados"),
              "triangle": ("triángulo", "triángulos"), "cat": ("gato", "gatos")},
    "position": {"left": "a la izquierda", "right": "a la derecha", "top": "arriba",
                 "bottom": "abajo", "center": "en el centro"},
}


def _size_word(a):
    if a["size"] != "medium":
        return a["size"]
    return "cute" if a["shape"] == "cat" else None


def describe(attributes, say_center=True, language="en"):
    """The description of one picture's attributes in English ("en"),
    Swedish ("sv") or Spanish ("es"). ``say_center=False`` leaves the
    center position unsaid."""
    a = _check_attributes(attributes)
    if language not in ("en", "sv", "es"):
        raise ValueError(f"language must be 'en', 'sv' or 'es', got {language!r}")
    count, size = a["count"], _size_word(a)
    say_position = a["position"] != "center" or say_center
    if language == "en":
        words = [_COUNT_WORDS[count], size, a["colour"], a["shape"] + ("s" if count > 1 else "")]
        if words[0] == "a" and (size or a["colour"])[0] in "aeiou":
            words[0] = "an"
        position = _POSITION_PHRASES[a["position"]]
    else:
        table, number = (_SV if language == "sv" else _ES), int(count > 1)
        size_form = table["size"][size][number] if size else None
        colour, noun = table["colour"][a["colour"]][number], table["shape"][a["shape"]][number]
        # Swedish: en stor röd cirkel; Spanish: un círculo rojo grande.
        middle = [size_form, colour, noun] if language == "sv" else [noun, colour, size_form]
        words = [table["count"][count]] + middle
        position = table["position"][a["position"]]
    if say_position:
        words.append(position)
    return " ".join(w for w in words if w)


_PHRASE_POSITIONS = {phrase: pos for pos, phrase in _POSITION_PHRASES.items()}
_PHRASE_POSITIONS.update({"in the centre": "center", "in the middle": "center"})
_COUNTS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3}


def parse_description(text):
    """The attributes of a description: a dict with count, size, colour,
    shape and position. Raises ValueError naming the word it cannot place."""
    if not isinstance(text, str):
        raise TypeError(f"description must be a str, got {type(text).__name__}")
    words = text.lower().strip().rstrip(".!").split()
    if not words:
        raise ValueError("empty description")
    if words[0] not in _COUNTS:
        raise ValueError(f"description {text!r} must start with a, an, one, two or three, "
                         f"not {words[0]!r}")
    count = _COUNTS[words[0]]
    rest = words[1:]
    position = "center"
    for phrase, pos in _PHRASE_POSITIONS.items():
        n = len(phrase.split())
        if rest[-n:] == phrase.split() and len(rest) > n:
            position, rest = pos, rest[:-n]
            break
    size_word = rest.pop(0) if rest and rest[0] in ("small", "big", "cute") else None
    size = size_word if size_word in ("small", "big") else "medium"
    if len(rest) != 2:
        raise ValueError(f"description {text!r}: expected '<colour> <shape>' after the count "
                         f"and size, found {' '.join(rest)!r}")
    colour, noun = rest
    if colour not in COLOURS:
        raise ValueError(f"description {text!r}: unknown colour {colour!r}; "
                         f"known: {', '.join(COLOURS)}")
    shape = noun[:-1] if count > 1 and noun.endswith("s") else noun
    if shape not in SHAPES or (count > 1) != (noun != shape):
        raise ValueError(f"description {text!r}: expected a shape ({', '.join(SHAPES)}) "
                         f"{'in the plural' if count > 1 else 'in the singular'}, found {noun!r}")
    if size_word == "cute" and shape != "cat":
        raise ValueError(f"description {text!r}: only cats are cute here, not a {shape}")
    return {"count": count, "size": size, "colour": colour, "shape": shape, "position": position}


def _check_attributes(a):
    expected = {"count": (1, 2, 3), "size": SIZES, "colour": tuple(COLOURS), "shape": SHAPES,
                "position": POSITIONS}
    if not isinstance(a, dict) or set(a) != set(expected):
        raise ValueError(f"attributes must be a dict with keys {sorted(expected)}, got {a!r}")
    for key, allowed in expected.items():
        if a[key] not in allowed:
            raise ValueError(f"attribute {key}={a[key]!r} is not one of {allowed}")
    return a


# ------------------------------------------------------------------ drawing
def _layout(attributes, size):
    """Centres (x, y) and radii of every object: three arrays (n, 3), NaN
    where a picture has fewer than three objects. Pixel (row i, column j)
    has its centre at x = j + 0.5, y = i + 0.5."""
    n = len(attributes)
    cx = np.full((n, 3), np.nan)
    cy = np.full((n, 3), np.nan)
    radius = np.full((n, 3), np.nan)
    for i, a in enumerate(attributes):
        k = a["count"]
        along = (np.arange(k) + 0.5) / k * size      # spread along the row
        anchor = _ANCHOR[a["position"]] * size
        if a["position"] in ("left", "right"):      # a column
            cx[i, :k], cy[i, :k] = anchor, along
        else:                                        # a row
            cx[i, :k], cy[i, :k] = along, anchor
        radius[i, :k] = _RADIUS[a["size"]] * _CROWD_SCALE[k] * size
    return cx, cy, radius


def _disc(dx, dy, r):
    return dx * dx + dy * dy <= r * r


def _triangle(dx, dy, r, apex_dy, base_dy, half_base):
    """Upward triangle: apex at dy = apex_dy, base at dy = base_dy."""
    t = (dy - apex_dy) / (base_dy - apex_dy)         # 0 at the apex, 1 at the base
    return (t >= 0) & (t <= 1) & (np.abs(dx) <= half_base * t)


def _shape_mask(shape, dx, dy, r):
    """Mask of the shape filled with its colour (dx, dy relative to the centre)."""
    if shape == "circle":
        return _disc(dx, dy, r)
    if shape == "square":
        # Half side 0.85 r: about the area of the circle, corners poking out of it.
        return (np.abs(dx) <= 0.85 * r) & (np.abs(dy) <= 0.85 * r)
    if shape == "triangle":
        return _triangle(dx, dy, r, -r, r, r)
    # Cat face: a round head and two pointed ears.
    head = _disc(dx, dy - 0.25 * r, 0.75 * r)
    ears = (_triangle(dx + 0.5 * r, dy, r, -r, 0.0, 0.35 * r)
            | _triangle(dx - 0.5 * r, dy, r, -r, 0.0, 0.35 * r))
    return head | ears


def _eyes_mask(dx, dy, r):
    eye_r = np.maximum(0.13 * r, 0.5)
    return _disc(dx + 0.3 * r, dy - 0.15 * r, eye_r) | _disc(dx - 0.3 * r, dy - 0.15 * r, eye_r)


def draw_pictures(attributes, size=32):
    """Draw pictures for a list of attribute dicts: uint8 (n, size, size, 3)."""
    if int(size) != size or size < 8:
        raise ValueError(f"size must be an integer >= 8, got {size!r}")
    size = int(size)
    attributes = [_check_attributes(a) for a in attributes]
    n = len(attributes)
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    images[...] = BACKGROUND
    if n == 0:
        return images
    cx, cy, radius = _layout(attributes, size)
    shapes = np.array([a["shape"] for a in attributes])
    colours = np.array([COLOURS[a["colour"]] for a in attributes], dtype=np.uint8)
    centres = np.arange(size) + 0.5
    for slot in range(3):   # objects of one slot belong to different pictures
        for shape in SHAPES:
            idx = np.flatnonzero((shapes == shape) & ~np.isnan(radius[:, slot]))
            if idx.size == 0:
                continue
            dx = centres[None, None, :] - cx[idx, slot, None, None]
            dy = centres[None, :, None] - cy[idx, slot, None, None]
            r = radius[idx, slot, None, None]
            mask = _shape_mask(shape, dx, dy, r)
            images[idx] = np.where(mask[..., None], colours[idx, None, None, :], images[idx])
            if shape == "cat":
                eyes = _eyes_mask(dx, dy, r)
                images[idx] = np.where(eyes[..., None], np.array(EYES, np.uint8), images[idx])
    return images


# ------------------------------------------------------------------ data set
@dataclass
class ToyPictures:
    """``texts[i]`` (also ``en[i]``) describes ``images[i]``, as do ``sv[i]``
    and ``es[i]``; ``attributes[i]`` is its parse."""
    texts: List[str] = field(default_factory=list)
    images: np.ndarray = None
    attributes: List[dict] = field(default_factory=list)
    sv: List[str] = field(default_factory=list)   # the descriptions in Swedish
    es: List[str] = field(default_factory=list)   # and in Spanish

    @property
    def en(self):
        return self.texts

    def __len__(self):
        return len(self.texts)

    def float_images(self):
        """The images as float32 in [0, 1]."""
        return self.images.astype(np.float32) / np.float32(255)


def _allowed_combos(split):
    combos = [(c, s) for c in COLOURS for s in SHAPES]
    if split == "train":
        return [cs for cs in combos if cs not in TEST_COMBOS]
    if split == "test":
        return [cs for cs in combos if cs in TEST_COMBOS]
    return combos


def sample_description(rng, combos):
    """Draw one picture's attributes with ``rng`` (a ``random.Random``) from the
    (colour, shape) ``combos``; return them and their description in English,
    Swedish and Spanish."""
    colour, shape = rng.choice(combos)
    a = {"count": rng.choices((1, 2, 3), weights=(3, 1, 1))[0],
         "size": rng.choice(SIZES), "colour": colour, "shape": shape,
         "position": rng.choice(POSITIONS)}
    say_center = rng.random() < 0.5
    return a, {language: describe(a, say_center, language) for language in ("en", "sv", "es")}


def toy_pictures(n, seed=0, size=32, split=None):
    """``n`` pictures of ``size`` x ``size`` pixels with their descriptions.

    ``split`` is None (every combination), "train" or "test" (only the
    (colour, shape) combinations of ``TEST_COMBOS``). Same arguments, same
    pictures.
    """
    if int(n) != n or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    if split not in (None, "train", "test"):
        raise ValueError(f"split must be None, 'train' or 'test', got {split!r}")
    rng = random.Random(seed)
    combos = _allowed_combos(split)
    attributes, texts = [], {"en": [], "sv": [], "es": []}
    for _ in range(int(n)):
        a, descriptions = sample_description(rng, combos)
        attributes.append(a)
        for language, sentences in texts.items():
            sentences.append(descriptions[language])
    return ToyPictures(texts["en"], draw_pictures(attributes, size), attributes,
                       texts["sv"], texts["es"])
