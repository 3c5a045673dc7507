"""Shared pieces of the conformance kit: the failure helper and small sample inputs."""

from __future__ import annotations

from typing import NoReturn

import numpy as np


def _fail(message: str) -> NoReturn:
    raise AssertionError(message)


def sample_images(n: int = 5, size: int = 64, seed: int = 0) -> list:
    """Small deterministic RGB images with distinct colours and shapes."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    images = []
    for _ in range(n):
        image = Image.new("RGB", (size, size), tuple(int(c) for c in rng.integers(0, 255, 3)))
        draw = ImageDraw.Draw(image)
        x0, y0 = (int(v) for v in rng.integers(0, size // 2, 2))
        draw.ellipse([x0, y0, x0 + size // 2, y0 + size // 2],
                     fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
        images.append(image)
    return images


SAMPLE_TEXTS = [
    "a red circle above a blue square",
    "Two small green triangles.",
    "an empty striped background",
    "A yellow star next to a large purple circle on a grey floor",
    "",
]
