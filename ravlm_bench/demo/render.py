"""Rendering a scene to JPEG bytes with Pillow: textured background, then the shapes.

Fixed encoder settings (quality, no optimisation, no progressive mode, 4:2:0) make the same
scene give the same bytes on the same Pillow build.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw

from ravlm_bench.demo.scenes import IMAGE_SIZE, Scene, Shape
from ravlm_bench.demo.shapes import COLOURS, RING_HOLE

JPEG_QUALITY = 90


def _shade(tone, delta: int) -> tuple[int, ...]:
    return tuple(int(min(255, max(0, c + delta))) for c in tone)


def background(scene: Scene) -> Image.Image:
    rng = np.random.default_rng(scene.texture_seed)
    n, tone = IMAGE_SIZE, scene.tone
    yy, xx = np.mgrid[0:n, 0:n]
    if scene.background == "striped":
        period = int(rng.integers(8, 17))
        lines = (xx + yy) if rng.random() < 0.5 else yy  # diagonal or horizontal stripes
        mask = (lines // (period // 2)) % 2 == 0
        pixels = np.where(mask[..., None], np.array(tone), np.array(_shade(tone, -35)))
    elif scene.background == "checkered":
        cell = int(rng.integers(8, 17))
        mask = ((xx // cell) + (yy // cell)) % 2 == 0
        pixels = np.where(mask[..., None], np.array(tone), np.array(_shade(tone, -30)))
    elif scene.background == "dotted":
        step = int(rng.integers(7, 12))
        mask = ((xx % step) < 2) & ((yy % step) < 2)
        pixels = np.where(mask[..., None], np.array(_shade(tone, -60)), np.array(tone))
    elif scene.background == "noisy":
        noise = rng.integers(-25, 26, size=(n, n, 1))
        pixels = np.clip(np.array(tone)[None, None, :] + noise, 0, 255)
    else:  # gradient
        ramp = (xx if rng.random() < 0.5 else yy)[..., None] / (n - 1)
        pixels = np.array(_shade(tone, 30)) * (1 - ramp) + np.array(_shade(tone, -40)) * ramp
    return Image.fromarray(pixels.astype(np.uint8), "RGB")


def _draw_shape(draw: ImageDraw.ImageDraw, shape: Shape) -> None:
    fill = COLOURS[shape.colour]
    if shape.kind == "circle":
        r = shape.r
        draw.ellipse([shape.cx - r, shape.cy - r, shape.cx + r, shape.cy + r], fill=fill)
    elif shape.kind == "ring":
        r = shape.r
        width = max(2, int(round(r * (1 - RING_HOLE))))
        draw.ellipse([shape.cx - r, shape.cy - r, shape.cx + r, shape.cy + r], outline=fill,
                     width=width)
    else:
        draw.polygon([(float(x), float(y)) for x, y in shape.points], fill=fill)


def render(scene: Scene) -> bytes:
    image = background(scene)
    draw = ImageDraw.Draw(image)
    for shape in scene.shapes:  # the primary first: smaller shapes lie on top of it
        _draw_shape(draw, shape)
    if scene.crowd:
        for member in scene.crowd.members:
            _draw_shape(draw, member)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=JPEG_QUALITY, optimize=False, progressive=False,
               subsampling=2)
    return buffer.getvalue()


def crowd_mask(scene: Scene) -> np.ndarray:
    """Binary (H, W) mask of the crowd's members, for its RLE segmentation."""
    mask = Image.new("L", (IMAGE_SIZE, IMAGE_SIZE), 0)
    draw = ImageDraw.Draw(mask)
    if scene.crowd is None:
        raise ValueError("the scene has no crowd to mask")
    for member in scene.crowd.members:
        draw.polygon([(float(x), float(y)) for x, y in member.points], fill=1)
    return np.asarray(mask, dtype=np.uint8)


def rle_counts(mask: np.ndarray) -> list[int]:
    """Uncompressed COCO RLE: run lengths in column-major order, starting with zeros."""
    flat = mask.flatten(order="F")
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    return runs if flat[0] == 0 else [0] + runs
