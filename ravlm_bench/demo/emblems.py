"""The emblems of the demo's knowledge entities: what a photograph shows of an entity.

An emblem is a framed tile filled with a two-colour pattern, with a symbol in the centre.
Its colours are one of four schemes, each shared by about a quarter of all emblems, so
colour narrows an emblem down but never names it: what tells two emblems apart is the
pattern, its scale and the symbol, that is shape and texture. That is what pretrained image
features are for. (The first emblems were three coloured stripes; an entity's identity was
then its colours, which the pooled features of a randomly initialised ResNet capture as well
as any, and the random network found the entity more often than the pretrained one.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from ravlm_bench.demo.shapes import RING_HOLE, outline

# (pattern colour, ground colour): the symbol is drawn in the ground colour, outlined in
# the pattern colour, so it reads on any pattern
SCHEMES: tuple[tuple[tuple[int, int, int], tuple[int, int, int]], ...] = (
    ((30, 60, 200), (245, 220, 30)),   # blue on yellow
    ((220, 30, 30), (250, 250, 250)),  # red on white
    ((20, 140, 50), (245, 140, 20)),   # green on orange
    ((20, 20, 20), (90, 180, 240)),    # black on sky blue
)
PATTERNS = ("hstripes", "vstripes", "diagonal", "checks", "dots", "grid", "rings", "zigzag",
            "waves", "crosshatch", "bricks")
PERIODS = (6, 11)  # pattern repeats per tile side: coarse or fine
SYMBOLS = ("circle", "triangle", "square", "diamond", "star", "cross", "hexagon", "heart")
BORDER = (45, 45, 45)  # a thin dark frame: the tile's edge stays visible on any background
SYMBOL_RADIUS = 0.30  # of the tile's side


@dataclass(frozen=True)
class Emblem:
    scheme: int  # index into SCHEMES
    pattern: str
    period: int  # repeats per tile side
    symbol: str


def make_emblems(rng: np.random.Generator, n: int) -> list[Emblem]:
    """``n`` distinct emblems (4 x 11 x 2 x 8 = 704 exist)."""
    emblems: list[Emblem] = []
    seen: set[Emblem] = set()
    while len(emblems) < n:
        emblem = Emblem(int(rng.integers(len(SCHEMES))), str(rng.choice(PATTERNS)),
                        int(rng.choice(PERIODS)), str(rng.choice(SYMBOLS)))
        if emblem not in seen:
            seen.add(emblem)
            emblems.append(emblem)
    return emblems


def pattern_mask(pattern: str, period: int, side: int) -> np.ndarray:
    """Boolean (side, side): where the pattern colour goes."""
    p = max(4.0, side / period)  # one repeat, in pixels
    half = p / 2
    yy, xx = np.mgrid[0:side, 0:side].astype(float)
    if pattern == "hstripes":
        return (yy // half) % 2 == 0
    if pattern == "vstripes":
        return (xx // half) % 2 == 0
    if pattern == "diagonal":
        return ((xx + yy) // half) % 2 == 0
    if pattern == "checks":
        return ((xx // p) + (yy // p)) % 2 == 0
    if pattern == "dots":
        return (xx % p - half) ** 2 + (yy % p - half) ** 2 < (p / 3.2) ** 2
    if pattern == "grid":
        return ((xx % p) < p / 4) | ((yy % p) < p / 4)
    if pattern == "rings":
        return (np.hypot(xx - side / 2, yy - side / 2) // half) % 2 == 0
    if pattern == "zigzag":
        return ((yy + np.abs(xx % p - half)) // half) % 2 == 0
    if pattern == "waves":
        return ((yy + p / 3 * np.sin(2 * math.pi * xx / p)) // half) % 2 == 0
    if pattern == "crosshatch":
        return (((xx + yy) % p) < p / 4) | (((xx - yy) % p) < p / 4)
    if pattern == "bricks":
        row = yy // half
        return ((yy % half) < p / 8) | (((xx + (row % 2) * half) % p) < p / 8)
    raise ValueError(f"unknown emblem pattern {pattern!r}")


def draw_outline(draw: ImageDraw.ImageDraw, kind: str, cx: float, cy: float, r: float,
                 angle: float, fill: tuple[int, int, int]) -> None:
    """A filled shape of the demo's vocabulary (a ring as a thick circle)."""
    if kind == "ring":
        width = max(2, int(round(r * (1 - RING_HOLE))))
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=fill, width=width)
    else:
        draw.polygon([(float(x), float(y)) for x, y in outline(kind, cx, cy, r, angle)],
                     fill=fill)


def emblem_tile(emblem: Emblem, side: int) -> Image.Image:
    """The emblem as a ``side`` x ``side`` RGBA tile: the pattern, a frame, the symbol."""
    ink, ground = SCHEMES[emblem.scheme]
    mask = pattern_mask(emblem.pattern, emblem.period, side)
    pixels = np.where(mask[..., None], np.array(ink), np.array(ground)).astype(np.uint8)
    tile = Image.fromarray(pixels, "RGB").convert("RGBA")
    draw = ImageDraw.Draw(tile)
    draw.rectangle([0, 0, side - 1, side - 1], outline=BORDER, width=max(1, side // 40))
    r = SYMBOL_RADIUS * side
    draw_outline(draw, emblem.symbol, side / 2, side / 2, 1.12 * r, 0.0, ink)
    draw_outline(draw, emblem.symbol, side / 2, side / 2, r, 0.0, ground)
    return tile
