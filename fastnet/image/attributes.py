"""A hand-made representation of picture descriptions: the parsed attributes, one-hot.

It is what a perfect encoder would have to know about "two big red circles on
the left" (count, size, colour, shape, position) and nothing else. It lets a
pixel decoder be trained and tested apart from any encoder, and gives an
upper bound to compare a Translator's representation with.
"""
import numpy as np

from fastnet.datasets.pictures import COLOURS, POSITIONS, SHAPES, SIZES, parse_description

_FIELDS = (("count", (1, 2, 3)), ("size", SIZES), ("colour", tuple(COLOURS)),
           ("shape", SHAPES), ("position", POSITIONS))
ATTRIBUTE_DIM = sum(len(values) for _, values in _FIELDS)


def attribute_vectors(texts):
    """(N, ATTRIBUTE_DIM) float32: one block of one-hot values per attribute of each description."""
    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    out = np.zeros((len(texts), ATTRIBUTE_DIM), dtype=np.float32)
    for row, text in enumerate(texts):
        attributes = parse_description(text)
        offset = 0
        for name, values in _FIELDS:
            out[row, offset + values.index(attributes[name])] = 1.0
            offset += len(values)
    return out
