"""``toy_translations``: aligned English / Swedish / Spanish sentences.

Sentences come from the small grammar in ``_grammar`` (correct Swedish en/ett
and definite forms, adjective endings; Spanish gender and number). They are
lower case without final punctuation.

Train / test split: every (noun, adjective) combination is assigned to train
or test once and for all by a hash of its words (about one in five goes to
test), independent of the seed. A test sentence puts together at least one
held-out combination, a train sentence none, so a model scored on the test
split meets combinations of known words it never saw in training. Sentences
without adjectives belong to train.
"""
import hashlib
import random
from dataclasses import dataclass, field
from typing import List

from fastnet.datasets import pictures as _pictures
from fastnet.datasets._grammar import (
    ADJECTIVES,
    NOUNS,
    PRONOUNS,
    VERBS,
    Clause,
    NounPhrase,
    render,
)

__all__ = ["toy_translations", "TranslationSet", "TEST_FRACTION", "is_test_combo"]

#: About this share of the (noun, adjective) combinations is held out for test.
TEST_FRACTION = 0.2
LANGUAGES = ("en", "sv", "es")

# Always part of split None / "train" (at its front): the story's examples.
SHOWCASE = (
    Clause("is", NounPhrase("cat", "bare", plural=True), predicate="cute"),
    Clause("is", NounPhrase("dog", "the"), predicate="big"),
    Clause("is", NounPhrase("house", "the"), predicate="big"),
)
_SHOWCASE_COMBOS = frozenset().union(*(c.combos() for c in SHOWCASE))


def is_test_combo(noun, adjective):
    """Whether the (noun, adjective) combination belongs to the test split.

    A picture's (shape, colour) follows ``pictures.TEST_COMBOS`` (this covers
    "cat" with the picture colours too), so sentences and pictures agree;
    shapes only pictures have (circle, square, triangle) keep every size."""
    if (noun, adjective) in _SHOWCASE_COMBOS:
        return False
    if noun in _pictures.SHAPES and (adjective in _pictures.COLOURS or noun not in NOUNS):
        return (adjective, noun) in _pictures.TEST_COMBOS
    digest = hashlib.sha256(f"{noun}|{adjective}".encode()).digest()
    return int.from_bytes(digest[:8], "big") < TEST_FRACTION * 2 ** 64


@dataclass
class TranslationSet:
    """Aligned sentences: ``en[i]``, ``sv[i]`` and ``es[i]`` say the same thing.
    ``combos[i]`` holds the (noun, adjective) pairs of sentence i."""
    en: List[str] = field(default_factory=list)
    sv: List[str] = field(default_factory=list)
    es: List[str] = field(default_factory=list)
    combos: List[frozenset] = field(default_factory=list)

    def __len__(self):
        return len(self.en)

    def pairs(self, target):
        """(English, target) tuples; ``target`` is "sv" or "es" (or "en")."""
        if target not in LANGUAGES:
            raise ValueError(f"unknown target language {target!r}; expected one of {LANGUAGES}")
        return list(zip(self.en, getattr(self, target)))

    def _add(self, clause):
        self._append(*render(clause), clause.combos())

    def _add_picture(self, descriptions, combos):
        self._append(descriptions["en"], descriptions["sv"], descriptions["es"], combos)

    def _append(self, en, sv, es, combos):
        self.en.append(en)
        self.sv.append(sv)
        self.es.append(es)
        self.combos.append(combos)


class _Sampler:
    """Draws random clauses from the grammar with a ``random.Random``
    (its sequence for a seed is stable across Python versions)."""

    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.nouns = sorted(NOUNS)
        self.animate = sorted(n for n in NOUNS if NOUNS[n].animate)
        self.food = sorted(n for n in NOUNS if NOUNS[n].kind == "food")
        self.adjectives = sorted(ADJECTIVES)
        self.pronouns = sorted(PRONOUNS)
        self.transitive = sorted(v for v in VERBS if VERBS[v].transitive)
        self.intransitive = sorted(v for v in VERBS if not VERBS[v].transitive)

    def adjective(self, noun):
        """An adjective for ``noun``, or None half of the time."""
        if self.rng.random() < 0.5:
            return None
        return self.other_adjective(noun)

    def other_adjective(self, noun, avoid=None):
        """An adjective that fits ``noun``, never of the same category as ``avoid``."""
        banned = {ADJECTIVES[avoid].category} if avoid else set()
        if NOUNS[noun].kind == "person":
            banned.add("colour")  # no "green children"
        return self.rng.choice([a for a in self.adjectives if ADJECTIVES[a].category not in banned])

    def noun_phrase(self, nouns, determiners):
        noun = self.rng.choice(nouns)
        determiner = self.rng.choice(determiners)
        plural = determiner in ("bare", "count") or (determiner == "the" and self.rng.random() < 0.4)
        count = self.rng.choice((2, 3)) if determiner == "count" else 1
        return NounPhrase(noun, determiner, plural=plural, count=count,
                          adjective=self.adjective(noun))

    def clause(self):
        kind = self.rng.choices(("is", "transitive", "intransitive", "there"),
                                weights=(4, 4, 2, 1.5))[0]
        if kind == "is":
            subject = self.noun_phrase(self.nouns, ("the", "the", "bare"))
            return Clause("is", subject, predicate=self.other_adjective(subject.noun, subject.adjective))
        if kind == "there":
            return Clause("there", obj=self.noun_phrase(self.nouns, ("a", "count", "bare")))
        subject = self.subject()
        if kind == "intransitive":
            return Clause("verb", subject, verb=self.rng.choice(self.intransitive))
        verb = self.rng.choice(self.transitive)
        objects = self.food if VERBS[verb].objects == "food" else self.nouns
        obj = self.noun_phrase(objects, ("the", "a", "count", "bare"))
        return Clause("verb", subject, verb=verb, obj=obj)

    def subject(self):
        if self.rng.random() < 0.4:
            return self.rng.choice(self.pronouns)
        return self.noun_phrase(self.animate, ("the", "the", "bare"))


def _in_split_combos(combos, split):
    held_out = any(is_test_combo(noun, adj) for noun, adj in combos)
    return held_out if split == "test" else not held_out


def _in_split(clause, split):
    return _in_split_combos(clause.combos(), split)


def _picture_combos(a):
    """(shape, word) pairs of a picture description: its colour and size word."""
    combos = {(a["shape"], a["colour"])}
    if a["size"] != "medium":
        combos.add((a["shape"], a["size"]))
    elif a["shape"] == "cat":
        combos.add(("cat", "cute"))
    return frozenset(combos)


def toy_translations(n=2000, seed=0, split=None, pictures=0.0):
    """``n`` aligned English / Swedish / Spanish sentences.

    ``split`` is None (everything), "train" or "test" (see the module
    docstring). The same arguments always give the same sentences; sentences
    may repeat. Split None and "train" start with the story's examples:
    "cats are cute", "the dog is big", "the house is big".

    ``pictures``: the share of sentences (0..1) that are picture descriptions
    of ``toy_pictures`` ("a big red circle on the left" = "en stor röd cirkel
    till vänster" = "un círculo rojo grande a la izquierda"), so a
    translator learns the words a picture decoder needs; their test split
    holds the picture split's (colour, shape) combinations.
    """
    if int(n) != n or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    if split not in (None, "train", "test"):
        raise ValueError(f"split must be None, 'train' or 'test', got {split!r}")
    if not 0.0 <= pictures <= 1.0:
        raise ValueError(f"pictures must be a share between 0 and 1, got {pictures!r}")
    data = TranslationSet()
    if split != "test":
        for clause in SHOWCASE[: int(n)]:
            data._add(clause)
    sampler = _Sampler(seed)
    picture_combos = _pictures._allowed_combos(split)
    while len(data) < n:
        # Drawing the share only when asked keeps the sentences of pictures=0 unchanged.
        if pictures and sampler.rng.random() < pictures:
            attributes, descriptions = _pictures.sample_description(sampler.rng, picture_combos)
            combos = _picture_combos(attributes)
            if split is None or _in_split_combos(combos, split):
                data._add_picture(descriptions, combos)
            continue
        clause = sampler.clause()
        if split is None or _in_split(clause, split):
            data._add(clause)
    return data
