"""A small English / Swedish / Spanish grammar with correct agreement.

The lexicon lists every form a word takes, so rendering is table lookups and
nothing is guessed by suffix rules:

* Swedish nouns are "en" or "ett" words with four forms (a dog, the dog,
  dogs, the dogs: hund, hunden, hundar, hundarna). Adjectives have a common
  form (en stor hund), a neuter form (ett stort hus), a plural form (stora
  hundar) and a definite form (den stora hunden, det lilla huset); the
  definite singular of "liten" is "lilla", its plural "små".
* Spanish nouns are masculine or feminine with a plural; adjectives follow
  the noun and agree in gender and number (el perro grande, las casas
  lindas). A direct object that is a person always takes the personal "a",
  an animal only when it is definite (el gato ve al perro; el gato ve un
  perro).

A sentence is built as a small structure (``NounPhrase``, ``Clause``) and
rendered into the three languages by ``render``.
"""
from dataclasses import dataclass
from typing import Optional, Tuple


@dataclass(frozen=True)
class Noun:
    en: str
    en_plural: str
    sv_gender: str          # "en" or "ett"
    sv: Tuple[str, str, str, str]   # indefinite, definite, plural, definite plural
    es_gender: str          # "m" or "f"
    es: Tuple[str, str]     # singular, plural
    kind: str               # "person", "animal", "food" or "thing"

    @property
    def animate(self):
        return self.kind in ("person", "animal")


@dataclass(frozen=True)
class Adjective:
    en: str
    category: str           # two adjectives of one category never describe one noun
    sv: Tuple[str, str, str, str, str]  # common, neuter, plural, definite sg, definite pl
    es: Tuple[str, str, str, str]       # m sg, f sg, m pl, f pl


@dataclass(frozen=True)
class Verb:
    en: Tuple[str, str]     # base form, third person singular
    sv: str
    es: Tuple[str, str, str, str, str]  # yo, tú, él/ella, nosotros, ellos
    transitive: bool
    objects: str            # which nouns it takes as objects: "any", "food" or ""


@dataclass(frozen=True)
class Pronoun:
    en: str
    sv: str
    es: str                 # "" where Spanish drops the pronoun
    person: int             # index into Verb.es
    third_singular: bool


def _noun(en, en_plural, sv_gender, sv, es_gender, es, kind):
    return Noun(en, en_plural, sv_gender, tuple(sv.split()), es_gender, tuple(es.split()), kind)


NOUNS = {n.en: n for n in [
    _noun("dog", "dogs", "en", "hund hunden hundar hundarna", "m", "perro perros", "animal"),
    _noun("cat", "cats", "en", "katt katten katter katterna", "m", "gato gatos", "animal"),
    _noun("bird", "birds", "en", "fågel fågeln fåglar fåglarna", "m", "pájaro pájaros", "animal"),
    _noun("horse", "horses", "en", "häst hästen hästar hästarna", "m", "caballo caballos", "animal"),
    _noun("mouse", "mice", "en", "mus musen möss mössen", "m", "ratón ratones", "animal"),
    _noun("boy", "boys", "en", "pojke pojken pojkar pojkarna", "m", "chico chicos", "person"),
    _noun("girl", "girls", "en", "flicka flickan flickor flickorna", "f", "niña niñas", "person"),
    _noun("child", "children", "ett", "barn barnet barn barnen", "m", "niño niños", "person"),
    _noun("house", "houses", "ett", "hus huset hus husen", "f", "casa casas", "thing"),
    _noun("car", "cars", "en", "bil bilen bilar bilarna", "m", "coche coches", "thing"),
    _noun("boat", "boats", "en", "båt båten båtar båtarna", "m", "barco barcos", "thing"),
    _noun("book", "books", "en", "bok boken böcker böckerna", "m", "libro libros", "thing"),
    _noun("letter", "letters", "ett", "brev brevet brev breven", "f", "carta cartas", "thing"),
    _noun("table", "tables", "ett", "bord bordet bord borden", "f", "mesa mesas", "thing"),
    _noun("chair", "chairs", "en", "stol stolen stolar stolarna", "f", "silla sillas", "thing"),
    _noun("window", "windows", "ett", "fönster fönstret fönster fönstren", "f",
          "ventana ventanas", "thing"),
    _noun("ball", "balls", "en", "boll bollen bollar bollarna", "f", "pelota pelotas", "thing"),
    _noun("flower", "flowers", "en", "blomma blomman blommor blommorna", "f", "flor flores",
          "thing"),
    _noun("tree", "trees", "ett", "träd trädet träd träden", "m", "árbol árboles", "thing"),
    _noun("apple", "apples", "ett", "äpple äpplet äpplen äpplena", "f", "manzana manzanas",
          "food"),
    _noun("egg", "eggs", "ett", "ägg ägget ägg äggen", "m", "huevo huevos", "food"),
]}


def _adj(en, category, sv, es):
    return Adjective(en, category, tuple(sv.split()), tuple(es.split()))


ADJECTIVES = {a.en: a for a in [
    _adj("big", "size", "stor stort stora stora stora", "grande grande grandes grandes"),
    _adj("small", "size", "liten litet små lilla små", "pequeño pequeña pequeños pequeñas"),
    _adj("cute", "look", "söt sött söta söta söta", "lindo linda lindos lindas"),
    _adj("old", "age", "gammal gammalt gamla gamla gamla", "viejo vieja viejos viejas"),
    _adj("new", "age", "ny nytt nya nya nya", "nuevo nueva nuevos nuevas"),
    _adj("heavy", "weight", "tung tungt tunga tunga tunga", "pesado pesada pesados pesadas"),
    _adj("red", "colour", "röd rött röda röda röda", "rojo roja rojos rojas"),
    _adj("blue", "colour", "blå blått blå blå blå", "azul azul azules azules"),
    _adj("green", "colour", "grön grönt gröna gröna gröna", "verde verde verdes verdes"),
    _adj("black", "colour", "svart svart svarta svarta svarta", "negro negra negros negras"),
    _adj("white", "colour", "vit vitt vita vita vita", "blanco blanca blancos blancas"),
    _adj("yellow", "colour", "gul gult gula gula gula",
         "amarillo amarilla amarillos amarillas"),
]}


def _verb(en, sv, es, transitive, objects=""):
    return Verb(tuple(en.split()), sv, tuple(es.split()), transitive, objects)


VERBS = {v.en[0]: v for v in [
    _verb("see sees", "ser", "veo ves ve vemos ven", True, "any"),
    _verb("have has", "har", "tengo tienes tiene tenemos tienen", True, "any"),
    _verb("find finds", "hittar", "encuentro encuentras encuentra encontramos encuentran",
          True, "any"),
    _verb("eat eats", "äter", "como comes come comemos comen", True, "food"),
    _verb("run runs", "springer", "corro corres corre corremos corren", False),
    _verb("sleep sleeps", "sover", "duermo duermes duerme dormimos duermen", False),
    _verb("jump jumps", "hoppar", "salto saltas salta saltamos saltan", False),
    _verb("swim swims", "simmar", "nado nadas nada nadamos nadan", False),
]}

# Verbs whose animate direct objects take the Spanish personal "a".
_PERSONAL_A_VERBS = frozenset({"see", "find"})

PRONOUNS = {p.en: p for p in [
    Pronoun("i", "jag", "", 0, False),
    Pronoun("you", "du", "", 1, False),
    Pronoun("he", "han", "él", 2, True),
    Pronoun("she", "hon", "ella", 2, True),
    Pronoun("we", "vi", "", 3, False),
    Pronoun("they", "de", "ellos", 4, False),
]}

NUMBERS = {2: ("two", "två", "dos"), 3: ("three", "tre", "tres")}


@dataclass(frozen=True)
class NounPhrase:
    noun: str
    determiner: str          # "the", "a", "bare" (plural, no article) or "count"
    plural: bool = False
    count: int = 1           # 2 or 3 with determiner "count"
    adjective: Optional[str] = None

    def __post_init__(self):
        if self.determiner not in ("the", "a", "bare", "count"):
            raise ValueError(f"unknown determiner {self.determiner!r}")
        if self.determiner == "a" and self.plural:
            raise ValueError("'a' takes a singular noun")
        if self.determiner in ("bare", "count") and not self.plural:
            raise ValueError(f"determiner {self.determiner!r} takes a plural noun")
        if (self.determiner == "count") != (self.count in NUMBERS):
            raise ValueError(f"count {self.count} does not fit determiner {self.determiner!r}")


@dataclass(frozen=True)
class Clause:
    """One sentence. ``kind`` is "is" (subject is adjective), "verb" (subject
    verb [object]) or "there" (there is/are object)."""
    kind: str
    subject: object = None   # NounPhrase or pronoun name
    verb: Optional[str] = None
    obj: Optional[NounPhrase] = None
    predicate: Optional[str] = None  # the adjective of an "is" clause

    def combos(self):
        """The (noun, adjective) pairs the sentence puts together."""
        pairs = set()
        for phrase in (self.subject, self.obj):
            if isinstance(phrase, NounPhrase) and phrase.adjective:
                pairs.add((phrase.noun, phrase.adjective))
        if self.kind == "is":
            pairs.add((self.subject.noun, self.predicate))
        return frozenset(pairs)


# ----------------------------------------------------------------- English
def _en_np(p):
    noun = NOUNS[p.noun]
    words = [noun.en_plural if p.plural else noun.en]
    if p.adjective:
        words.insert(0, p.adjective)
    if p.determiner == "the":
        words.insert(0, "the")
    elif p.determiner == "a":
        words.insert(0, "an" if words[0][0] in "aeiou" else "a")
    elif p.determiner == "count":
        words.insert(0, NUMBERS[p.count][0])
    return " ".join(words)


def _en(c):
    if c.kind == "there":
        return ("there are " if c.obj.plural else "there is ") + _en_np(c.obj)
    if isinstance(c.subject, str):
        pronoun = PRONOUNS[c.subject]
        subject, third_singular = pronoun.en, pronoun.third_singular
    else:
        subject, third_singular = _en_np(c.subject), not c.subject.plural
    if c.kind == "is":
        return f"{subject} {'is' if third_singular else 'are'} {c.predicate}"
    words = [subject, VERBS[c.verb].en[1 if third_singular else 0]]
    if c.obj:
        words.append(_en_np(c.obj))
    return " ".join(words)


# ----------------------------------------------------------------- Swedish
def _sv_np(p):
    noun = NOUNS[p.noun]
    adj = ADJECTIVES[p.adjective].sv if p.adjective else None
    neuter = noun.sv_gender == "ett"
    if p.determiner == "the":
        if not adj:
            return noun.sv[3] if p.plural else noun.sv[1]
        # Double definiteness: den stora hunden, det stora huset, de stora hundarna.
        if p.plural:
            return f"de {adj[4]} {noun.sv[3]}"
        return f"{'det' if neuter else 'den'} {adj[3]} {noun.sv[1]}"
    if p.determiner == "a":
        article = "ett" if neuter else "en"
        form = (adj[1] if neuter else adj[0]) + " " if adj else ""
        return f"{article} {form}{noun.sv[0]}"
    words = [adj[2], noun.sv[2]] if adj else [noun.sv[2]]
    if p.determiner == "count":
        words.insert(0, NUMBERS[p.count][1])
    return " ".join(words)


def _sv_predicate(p, adjective):
    forms = ADJECTIVES[adjective].sv
    if p.plural:
        return forms[2]
    return forms[1] if NOUNS[p.noun].sv_gender == "ett" else forms[0]


def _sv(c):
    if c.kind == "there":
        return "det finns " + _sv_np(c.obj)
    subject = PRONOUNS[c.subject].sv if isinstance(c.subject, str) else _sv_np(c.subject)
    if c.kind == "is":
        return f"{subject} är {_sv_predicate(c.subject, c.predicate)}"
    words = [subject, VERBS[c.verb].sv]
    if c.obj:
        words.append(_sv_np(c.obj))
    return " ".join(words)


# ----------------------------------------------------------------- Spanish
_ES_DEFINITE = {("m", False): "el", ("f", False): "la", ("m", True): "los", ("f", True): "las"}


def _es_adjective(noun, plural, adjective):
    forms = ADJECTIVES[adjective].es
    return forms[(2 if plural else 0) + (1 if noun.es_gender == "f" else 0)]


def _es_np(p, role):
    """``role`` is "subject" or "object": a bare plural subject takes the
    definite article in Spanish (los gatos son lindos), a bare object none
    (tengo gatos)."""
    noun = NOUNS[p.noun]
    words = [noun.es[1] if p.plural else noun.es[0]]
    if p.adjective:
        words.append(_es_adjective(noun, p.plural, p.adjective))
    if p.determiner == "the" or (p.determiner == "bare" and role == "subject"):
        words.insert(0, _ES_DEFINITE[noun.es_gender, p.plural])
    elif p.determiner == "a":
        words.insert(0, "una" if noun.es_gender == "f" else "un")
    elif p.determiner == "count":
        words.insert(0, NUMBERS[p.count][2])
    return " ".join(words)


def _es_object(verb, p):
    phrase = _es_np(p, "object")
    noun = NOUNS[p.noun]
    personal = verb in _PERSONAL_A_VERBS and (
        noun.kind == "person" or (noun.kind == "animal" and p.determiner == "the"))
    if not personal:
        return phrase
    if phrase.startswith("el "):
        return "al " + phrase[3:]
    return "a " + phrase


def _es(c):
    if c.kind == "there":
        return "hay " + _es_np(c.obj, "object")
    if isinstance(c.subject, str):
        pronoun = PRONOUNS[c.subject]
        subject, person = pronoun.es, pronoun.person
    else:
        subject, person = _es_np(c.subject, "subject"), 4 if c.subject.plural else 2
    if c.kind == "is":
        copula = "son" if c.subject.plural else "es"
        predicate = _es_adjective(NOUNS[c.subject.noun], c.subject.plural, c.predicate)
        return f"{subject} {copula} {predicate}"
    words = [subject, VERBS[c.verb].es[person]] if subject else [VERBS[c.verb].es[person]]
    if c.obj:
        words.append(_es_object(c.verb, c.obj))
    return " ".join(words)


def render(clause):
    """The clause in English, Swedish and Spanish."""
    return _en(clause), _sv(clause), _es(clause)
