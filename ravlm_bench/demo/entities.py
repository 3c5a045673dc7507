"""The demo world's knowledge entities: invented objects, each with a fixed emblem and four
facts that are written only in its knowledge-base passage.

A question about an entity never names it or any of its facts, and its emblem shows none of
them, so a system answers only by recognising the emblem and retrieving the passage. The
facts are drawn independently of the emblem, and the same cities, makers and years recur
across many passages (and in text-only distractor passages), so no single word gives the
answer away.
"""

from __future__ import annotations

import functools
import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from ravlm_bench.demo.emblems import Emblem, draw_outline, emblem_tile, make_emblems
from ravlm_bench.demo.render import JPEG_QUALITY, background
from ravlm_bench.demo.scenes import IMAGE_SIZE, Scene
from ravlm_bench.demo.shapes import (
    BACKGROUND_TONES,
    BACKGROUNDS,
    CATEGORIES,
    COLOURS,
)

CANONICAL_BACKGROUND = (238, 238, 238)
TEXTURE_SEEDS = 4  # background textures per (pattern, tone) that photographs draw from

CITIES = (
    "Lisbon", "Porto", "Madrid", "Seville", "Lyon", "Marseille", "Geneva", "Zurich", "Vienna",
    "Prague", "Krakow", "Warsaw", "Riga", "Tallinn", "Helsinki", "Oslo", "Bergen", "Stockholm",
    "Uppsala", "Copenhagen", "Hamburg", "Leipzig", "Munich", "Dresden", "Antwerp", "Ghent",
    "Utrecht", "Bristol", "Glasgow", "Dublin", "Cork", "Naples", "Turin", "Bologna",
    "Florence", "Athens", "Sofia", "Budapest", "Zagreb", "Valencia",
)
# invented people; every first name and every surname occurs once, so a surname alone is
# an unambiguous alias of its maker
MAKERS = (
    "Ada Brandt", "Bruno Kessel", "Clara Voss", "Dmitri Orlov", "Elena Ruiz", "Fabian Holt",
    "Greta Lindqvist", "Hugo Marchetti", "Ines Farrow", "Jonas Pike", "Katya Belova",
    "Leon Dufresne", "Mira Castell", "Nils Ekberg", "Olga Petrenko", "Pavel Novak",
    "Rosa Ambrose", "Sven Aalto", "Tilde Morrow", "Ugo Ferri", "Vera Haldane", "Walter Quist",
    "Xenia Doukas", "Yusuf Arslan", "Zora Kovac", "Anton Revel", "Beatrix Oyelaran",
    "Casimir Wolde", "Dagny Strand", "Emil Sorensen", "Freya Maddox", "Gustav Nieland",
    "Helga Brusch", "Ivo Tanaka", "Juno Calloway", "Kasper Vrede", "Lidia Moretti",
    "Magnus Thal", "Nadia Ferreira", "Otto Pellin",
)
YEARS = (1900, 1990)  # [low, high)
# the values of each fact kind that the shape categories draw from (and wrong choices too)
CATEGORY_POOL = 12
CATEGORY_VALUES = {"city": CITIES[:CATEGORY_POOL], "maker": MAKERS[:CATEGORY_POOL],
                   "year": tuple(str(YEARS[0] + 7 * k) for k in range(CATEGORY_POOL))}
# neighbours differ by more than 10%, so the +-10% range of one height never holds another
HEIGHTS = (2, 3, 4, 5, 6, 8, 10, 12, 15, 18, 22, 27, 33, 40, 48, 58, 70, 85, 100, 120, 145,
           175, 210, 240, 290)
FACT_KINDS = ("city", "maker", "year", "height")

_FIRST_SYLLABLES = (
    "Var", "Tol", "Mer", "Kas", "Dra", "Pel", "Sor", "Lun", "Bre", "Cal", "Fen", "Gor", "Hal",
    "Ith", "Jor", "Kel", "Mor", "Nal", "Ost", "Quin", "Rav", "Sel", "Tam", "Ul", "Vey", "Wyn",
    "Zor", "Eld", "Bal", "Cor")
_SECOND_SYLLABLES = (
    "nel", "dor", "ith", "ane", "wick", "mar", "ros", "ten", "vel", "gard", "lin", "mir",
    "sek", "thal", "ber", "und", "is", "ova", "ric", "esh")
_NOUNS = ("Totem", "Beacon", "Obelisk", "Spire", "Pillar", "Monolith", "Tower", "Gate",
          "Arch", "Fountain", "Statue", "Column", "Shrine", "Mast", "Lantern")

_ENTITY_PASSAGES = (
    "The {name} was made by {maker} in {city} in {year}. It stands {height} metres tall.",
    "{maker} built the {name} in {city}, finishing it in {year}. The {noun} is {height} "
    "metres high.",
    "Completed in {year}, the {name} is the work of {maker}. It was made in {city} and rises "
    "{height} metres.",
    "The {name} rises {height} metres above the ground. {maker} made it in {year} in a "
    "workshop in {city}.",
)
_CATEGORY_PASSAGES = (
    "The {shape} was first drawn by {maker} in {year}. The oldest known example of it is "
    "kept in {city}.",
    "{maker} drew the first {shape} in {year}. Its oldest surviving example is kept in "
    "{city}, where it can still be seen.",
    "The oldest known {shape} is kept in {city}. The shape was first drawn in {year}, by "
    "{maker}.",
)
# about makers, cities, years and heights, but of no entity: word occurrence is not enough
_TEXT_PASSAGES = (
    ("Workshop records", "{maker} opened a workshop in {city} in {year}."),
    ("Lecture notes", "In {year}, {maker} gave a lecture on carving in {city}."),
    ("Appointments", "{maker} moved to {city} in {year} and taught there for a decade."),
    ("Fair catalogue", "A fair held in {city} in {year} showed early sketches by {maker}."),
    ("Harbour notes", "The old harbour crane of {city} was {height} metres tall until "
                      "{year}."),
)

INFOSEEK_QUESTIONS = {
    "city": ("In which city was this object made?", "Which city was this object made in?"),
    "maker": ("Who made this object?", "Who is the maker of this object?"),
    "year": ("In what year was this object made?", "Which year was this object completed in?"),
    "height": ("How tall is this object, in metres?",
               "What is the height of this object in metres?"),
}
INFOSEEK_TYPES = {"city": "String", "maker": "String", "year": "Time", "height": "Numerical"}


@dataclass(frozen=True)
class Entity:
    entity_id: str
    name: str
    emblem: Emblem | None  # None: a shape category, drawn as its shape in its colour
    facts: dict[str, str]  # fact kind -> the answer, as written in the passage
    passage: str


def _names(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` distinct invented names such as "Varnel Totem"."""
    fact_words = {w for value in CITIES + MAKERS for w in value.split()}
    names: list[str] = []
    while len(names) < n:
        first = str(rng.choice(_FIRST_SYLLABLES)) + str(rng.choice(_SECOND_SYLLABLES))
        name = f"{first} {rng.choice(_NOUNS)}"
        if name not in names and first not in fact_words:
            names.append(name)
    return names


def _facts(rng: np.random.Generator) -> dict[str, str]:
    return {"city": str(rng.choice(CITIES)), "maker": str(rng.choice(MAKERS)),
            "year": str(int(rng.integers(*YEARS))), "height": str(int(rng.choice(HEIGHTS)))}


def make_entities(rng: np.random.Generator, n: int, first_id: int = 1000) -> list[Entity]:
    """``n`` entities with ids Q<first_id>..., distinct names and distinct emblems."""
    names, emblems = _names(rng, n), make_emblems(rng, n)
    entities = []
    for i, (name, emblem) in enumerate(zip(names, emblems, strict=True)):
        facts = _facts(rng)
        template = _ENTITY_PASSAGES[int(rng.integers(len(_ENTITY_PASSAGES)))]
        text = template.format(name=name, noun=name.split()[-1].lower(), **facts)
        entities.append(Entity(f"Q{first_id + i}", name, emblem, facts, text))
    return entities


def category_entities(rng: np.random.Generator) -> list[Entity]:
    """One entity per (colour, shape) of the demo scenes, 80 in all: who first drew that
    coloured shape ("maker"), in which city its oldest example is kept ("city") and when it
    was first drawn ("year"). Each fact comes from :data:`CATEGORY_VALUES`, 12 of its kind,
    so every value answers several categories: a question's answer is a familiar word, but
    which one belongs to this image's coloured shape only its passage says."""
    out = []
    for _, shape, _ in CATEGORIES:
        for colour in COLOURS:
            facts = {kind: str(rng.choice(values)) for kind, values in CATEGORY_VALUES.items()}
            template = _CATEGORY_PASSAGES[int(rng.integers(len(_CATEGORY_PASSAGES)))]
            out.append(Entity(category_id(colour, shape),
                              f"{colour.capitalize()} {shape} (shape)", None, facts,
                              template.format(shape=f"{colour} {shape}", **facts)))
    return out


def category_id(colour: str, shape: str) -> str:
    return f"cat-{colour}-{shape}"


def text_passages(rng: np.random.Generator, n: int,
                  entities: list[Entity]) -> list[tuple[str, str]]:
    """``n`` (title, text) passages about makers, cities and years that pair them as no
    entity's facts do."""
    taken = {(e.facts["maker"], e.facts["city"]) for e in entities}
    taken |= {(e.facts["maker"], e.facts["year"]) for e in entities}
    taken |= {(e.facts["city"], e.facts["year"]) for e in entities}
    out: list[tuple[str, str]] = []
    while len(out) < n:
        facts = _facts(rng)
        if {(facts["maker"], facts["city"]), (facts["maker"], facts["year"]),
                (facts["city"], facts["year"])} & taken:
            continue
        title, template = _TEXT_PASSAGES[int(rng.integers(len(_TEXT_PASSAGES)))]
        out.append((title, template.format(**facts)))  # titles repeat: no number in them
    return out


def answer_aliases(kind: str, answer: str) -> list[str]:
    """What a grader accepts for one fact: a maker also by surname alone."""
    return [answer, answer.split()[-1]] if kind == "maker" else [answer]


# ---------------------------------------------------------------------------------------
# rendering
# ---------------------------------------------------------------------------------------


def jpeg_bytes(image: Image.Image) -> bytes:
    """The demo's fixed encoder settings (as render.render uses): same pixels, same bytes."""
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=JPEG_QUALITY, optimize=False, progressive=False,
               subsampling=2)
    return buffer.getvalue()


def canonical_image(entity: Entity) -> bytes:
    """The passage's picture: upright, centred, on a plain light background, no noise."""
    if entity.emblem is None:  # a shape category: the shape itself, in its colour, on the
        # scenes' plainest tone (a white shape would vanish on the light background)
        image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), BACKGROUND_TONES[0])
        colour, shape = entity.entity_id.removeprefix("cat-").split("-", 1)
        draw_outline(ImageDraw.Draw(image), shape, IMAGE_SIZE / 2, IMAGE_SIZE / 2,
                     0.32 * IMAGE_SIZE, 0.0, COLOURS[colour])
    else:
        image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), CANONICAL_BACKGROUND)
        side = round(0.7 * IMAGE_SIZE)
        tile = emblem_tile(entity.emblem, side)
        corner = (IMAGE_SIZE - side) // 2
        image.paste(tile, (corner, corner), tile)
    return jpeg_bytes(image)


@functools.lru_cache(maxsize=len(BACKGROUNDS) * len(BACKGROUND_TONES) * TEXTURE_SEEDS)
def _texture(kind: str, tone: int, seed: int) -> Image.Image:
    # textures are the slow part of a photograph; noise and the emblem make each unique
    return background(Scene(kind, BACKGROUND_TONES[tone], [], texture_seed=seed))


def photo(emblem: Emblem, rng: np.random.Generator) -> bytes:
    """One photograph of an emblem: rotated up to 25 degrees, 45-80% of the side, anywhere
    its centre fits, on a textured background, with up to three small shapes that keep off
    the symbol, and pixel noise."""
    angle = float(rng.uniform(-25, 25))
    side = round(float(rng.uniform(0.45, 0.80)) * IMAGE_SIZE)
    tile = emblem_tile(emblem, side).rotate(angle, resample=Image.Resampling.BILINEAR,
                                            expand=True)
    half = tile.width / 2
    lo, hi = min(half, IMAGE_SIZE / 2), max(IMAGE_SIZE - half, IMAGE_SIZE / 2)
    cx, cy = (float(v) for v in rng.uniform(lo, hi, 2))
    image = _texture(str(rng.choice(BACKGROUNDS)), int(rng.integers(len(BACKGROUND_TONES))),
                     int(rng.integers(TEXTURE_SEEDS))).copy()
    image.paste(tile, (round(cx - half), round(cy - tile.height / 2)), tile)
    draw = ImageDraw.Draw(image)
    kinds = [name for _, name, _ in CATEGORIES]
    for _ in range(int(rng.integers(0, 4))):
        r = float(rng.uniform(5, 10))
        for _attempt in range(20):
            x, y = (float(v) for v in rng.uniform(r, IMAGE_SIZE - r, 2))
            if math.hypot(x - cx, y - cy) > r + 0.32 * side:  # clear of the symbol
                draw_outline(draw, str(rng.choice(kinds)), x, y, r,
                             float(rng.uniform(-math.pi, math.pi)),
                             COLOURS[str(rng.choice(list(COLOURS)))])
                break
    noise = rng.integers(-12, 13, size=(IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.int16)
    pixels = np.clip(np.asarray(image, dtype=np.int16) + noise, 0, 255).astype(np.uint8)
    return jpeg_bytes(Image.fromarray(pixels, "RGB"))
