"""Data sets: the package's own toy data and readers for pair files."""
from fastnet.datasets.pairs import load_pairs
from fastnet.datasets.pictures import (
    ToyPictures,
    describe,
    draw_pictures,
    parse_description,
    toy_pictures,
)
from fastnet.datasets.translations import TranslationSet, toy_translations

__all__ = ["toy_translations", "TranslationSet", "load_pairs", "toy_pictures", "ToyPictures",
           "parse_description", "describe", "draw_pictures"]
