"""Sampling demo scenes: which shapes, where, how big, on what background.

Every image has one *primary* shape, clearly the largest, whose category follows a
long-tailed distribution; each split gets every category at least once as a primary
(when it has room), so head and tail classes both exist in train and test. Up to three
smaller shapes of any category join it, and a few images hold a *crowd*: a cluster of tiny
shapes annotated as one ``iscrowd`` instance, as COCO does for crowds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ravlm_bench.demo.shapes import (
    BACKGROUND_TONES,
    BACKGROUNDS,
    CATEGORIES,
    COLOURS,
    category_weights,
    outline,
    shape_area,
)

IMAGE_SIZE = 128
CROWD_RATE = 0.04


@dataclass
class Shape:
    kind: str
    colour: str
    cx: float
    cy: float
    r: float
    angle: float
    points: np.ndarray  # polygon outline, image coordinates
    area: float

    @property
    def bbox(self) -> list[float]:
        x0, y0 = np.clip(self.points.min(axis=0), 0, IMAGE_SIZE)
        x1, y1 = np.clip(self.points.max(axis=0), 0, IMAGE_SIZE)
        return [round(float(x0), 2), round(float(y0), 2), round(float(x1 - x0), 2),
                round(float(y1 - y0), 2)]

    @property
    def size_word(self) -> str:
        return "large" if self.r >= 26 else "medium" if self.r >= 15 else "small"


@dataclass
class Crowd:
    kind: str
    colour: str
    members: list[Shape]


@dataclass
class Scene:
    background: str
    tone: tuple[int, int, int]
    shapes: list[Shape]  # the primary (largest) first
    crowd: Crowd | None = None
    texture_seed: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def primary(self) -> Shape:
        return self.shapes[0]


def primary_categories(n: int, rng: np.random.Generator) -> list[str]:
    """``n`` primary categories: long-tailed counts, every category at least once if n allows."""
    names = [name for _, name, _ in CATEGORIES]
    weights = category_weights()
    floor = 1 if n >= len(names) else 0
    counts = np.maximum(floor, np.floor(weights * n)).astype(int)
    while counts.sum() < n:  # hand the remainder to the head, which keeps the tail long
        counts[int(np.argmax(weights * n - counts))] += 1
    while counts.sum() > n:
        counts[int(np.argmax(counts))] -= 1
    out = [name for name, c in zip(names, counts, strict=True) for _ in range(c)]
    rng.shuffle(out)
    return out


def _shape(kind: str, r: float, rng: np.random.Generator, cx=None, cy=None) -> Shape:
    cx = float(rng.uniform(r, IMAGE_SIZE - r)) if cx is None else cx
    cy = float(rng.uniform(r, IMAGE_SIZE - r)) if cy is None else cy
    # squares and diamonds stay nearly upright, so that they remain tell-apart
    spread = 0.15 if kind in ("square", "diamond") else math.pi
    angle = float(rng.uniform(-spread, spread))
    colour = str(rng.choice(list(COLOURS)))
    points = outline(kind, cx, cy, r, angle)
    return Shape(kind, colour, cx, cy, r, angle, points, shape_area(kind, points, r))


def sample_scene(primary: str, rng: np.random.Generator, allow_crowd: bool = True) -> Scene:
    names = [name for _, name, _ in CATEGORIES]
    weights = category_weights()
    shapes = [_shape(primary, float(rng.uniform(26, 38)), rng)]
    for _ in range(int(rng.choice([0, 1, 2, 3], p=[0.25, 0.35, 0.25, 0.15]))):
        kind = str(rng.choice(names, p=weights))
        for _attempt in range(20):
            candidate = _shape(kind, float(rng.uniform(8, 18)), rng)
            far = all(math.hypot(candidate.cx - s.cx, candidate.cy - s.cy)
                      > 0.7 * (candidate.r + s.r) for s in shapes)
            if far and candidate.area < 0.7 * shapes[0].area:
                shapes.append(candidate)
                break
    crowd = None
    if allow_crowd and rng.random() < CROWD_RATE:
        kind = str(rng.choice(names, p=weights))
        colour = str(rng.choice(list(COLOURS)))
        x0, y0 = (float(v) for v in rng.uniform(6, IMAGE_SIZE - 46, 2))
        members = []
        for _ in range(int(rng.integers(5, 9))):
            member = _shape(kind, float(rng.uniform(3, 5)), rng, x0 + float(rng.uniform(0, 40)),
                            y0 + float(rng.uniform(0, 40)))
            member.colour = colour
            members.append(member)
        crowd = Crowd(kind, colour, members)
    return Scene(str(rng.choice(BACKGROUNDS)),
                 BACKGROUND_TONES[int(rng.integers(len(BACKGROUND_TONES)))], shapes, crowd,
                 int(rng.integers(2**31)))


def position_words(shape: Shape) -> str:
    third = IMAGE_SIZE / 3
    col = "left" if shape.cx < third else "right" if shape.cx > 2 * third else ""
    row = "top" if shape.cy < third else "bottom" if shape.cy > 2 * third else ""
    if row and col:
        return f"in the {row} {col}"
    if row:
        return f"at the {row}"
    if col:
        return f"on the {col}"
    return "in the centre"
