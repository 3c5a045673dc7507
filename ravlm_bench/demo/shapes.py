"""The demo world's vocabulary: shape categories, colours, backgrounds, and shape geometry.

Category ids are not contiguous, as in real COCO (whose 80 ids span 1..90), so code that
assumes ``id == index`` fails on the demo as it would on real data.
"""

from __future__ import annotations

import math

import numpy as np

# (COCO category id, name, supercategory); the order is the long-tail rank, head first
CATEGORIES: list[tuple[int, str, str]] = [
    (1, "circle", "round"), (2, "square", "polygon"), (4, "triangle", "polygon"),
    (5, "star", "symbol"), (7, "cross", "symbol"), (9, "ring", "round"),
    (13, "diamond", "polygon"), (16, "hexagon", "polygon"), (18, "heart", "symbol"),
    (21, "crescent", "round"),
]
PLURALS = {name: name + ("es" if name.endswith("s") else "s") for _, name, _ in CATEGORIES}
ZIPF_EXPONENT = 1.2


def category_weights() -> np.ndarray:
    """Long-tailed frequencies: the k-th category's weight is 1 / (k + 1) ** 1.2."""
    w = 1.0 / np.arange(1, len(CATEGORIES) + 1) ** ZIPF_EXPONENT
    return w / w.sum()


COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220),
    "yellow": (235, 210, 40), "purple": (140, 60, 180), "orange": (240, 140, 30),
    "white": (250, 250, 250), "black": (20, 20, 20),
}
BACKGROUNDS = ("striped", "checkered", "dotted", "noisy", "gradient")
BACKGROUND_TONES = [(200, 200, 200), (215, 200, 170), (170, 195, 215), (180, 210, 180),
                    (150, 150, 160)]


def _regular(n: int, r: float, phase: float) -> np.ndarray:
    a = phase + np.arange(n) * 2 * math.pi / n
    return np.stack([r * np.cos(a), r * np.sin(a)], axis=1)


def _star(r: float) -> np.ndarray:
    a = -math.pi / 2 + np.arange(10) * math.pi / 5
    radius = np.where(np.arange(10) % 2 == 0, r, 0.45 * r)
    return np.stack([radius * np.cos(a), radius * np.sin(a)], axis=1)


def _cross(r: float) -> np.ndarray:
    t = 0.35 * r
    return np.array([(-t, -r), (t, -r), (t, -t), (r, -t), (r, t), (t, t), (t, r), (-t, r),
                     (-t, t), (-r, t), (-r, -t), (-t, -t)], dtype=float)


def _heart(r: float) -> np.ndarray:
    a = np.linspace(0, 2 * math.pi, 32, endpoint=False)
    x = 16 * np.sin(a) ** 3
    y = -(13 * np.cos(a) - 5 * np.cos(2 * a) - 2 * np.cos(3 * a) - np.cos(4 * a))
    return np.stack([x, y], axis=1) * (r / 17.0)


def _crescent(r: float) -> np.ndarray:
    # the outer circle minus an inner circle shifted right: outer arc on the left, then
    # the inner arc back
    a = np.linspace(0, 2 * math.pi, 96, endpoint=False)
    centre, inner_r = np.array([0.45 * r, 0.0]), 0.8 * r
    outer = np.stack([r * np.cos(a), r * np.sin(a)], axis=1)
    outer = outer[np.linalg.norm(outer - centre, axis=1) > inner_r]
    inner = centre + np.stack([inner_r * np.cos(a), inner_r * np.sin(a)], axis=1)
    inner = inner[np.linalg.norm(inner, axis=1) < r]
    # order both arcs by angle around the left side (angle pi), then walk out and back
    key = lambda p: np.mod(np.arctan2(p[:, 1], p[:, 0] - 0.0), 2 * math.pi)  # noqa: E731
    outer = outer[np.argsort(key(outer))]
    inner = inner[np.argsort(key(inner - centre))[::-1]]
    return np.concatenate([outer, inner])


def outline(kind: str, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    """Polygon (k, 2) of a shape centred at (cx, cy) with half-extent ``r``, rotated."""
    if kind in ("circle", "ring"):
        points = _regular(24, r, 0.0)
    elif kind == "square":
        points = _regular(4, r * math.sqrt(2) * 0.8, math.pi / 4)
    elif kind == "triangle":
        points = _regular(3, r, -math.pi / 2)
    elif kind == "star":
        points = _star(r)
    elif kind == "cross":
        points = _cross(r)
    elif kind == "diamond":
        points = np.array([(0, -r), (0.65 * r, 0), (0, r), (-0.65 * r, 0)], dtype=float)
    elif kind == "hexagon":
        points = _regular(6, r, 0.0)
    elif kind == "heart":
        points = _heart(r)
    elif kind == "crescent":
        points = _crescent(r)
    else:
        raise ValueError(f"unknown shape {kind!r}")
    c, s = math.cos(angle), math.sin(angle)
    rotated = points @ np.array([[c, s], [-s, c]])
    return rotated + np.array([cx, cy])


def polygon_area(points: np.ndarray) -> float:
    x, y = points[:, 0], points[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)


def shape_area(kind: str, points: np.ndarray, r: float) -> float:
    if kind == "ring":  # the hole is background
        return polygon_area(points) * (1 - RING_HOLE ** 2)
    return polygon_area(points)


RING_HOLE = 0.6  # inner radius / outer radius
