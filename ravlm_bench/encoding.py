"""Running encoders over a dataset's images and texts, the way the runner needs it.

Image decoding (and, for encoders that expose ``preprocess``, resizing and normalising)
runs in DataLoader worker processes so that it overlaps the model. Every batch the encoder
returns is checked against the contract; a violation raises ``ContractViolation`` for the
caller to wrap in a ``ComponentError`` naming the plugin.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal, overload

import numpy as np

from ravlm_bench.contracts import validate_vectors
from ravlm_bench.errors import DataError

log = logging.getLogger(__name__)


class ImageFiles:
    """A map-style dataset of image files: each item is (index, image or tensor, error)."""

    def __init__(self, paths: list[str], preprocess=None):
        self.paths = paths
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        image, error = decode_image(self.paths[index])
        if error is not None or self.preprocess is None:
            return index, image, error
        return index, self.preprocess(image), None


def decode_image(path: str):
    """``(RGB image, None)``, or ``(None, why)`` when the file is missing or its pixels do not
    decode: ``load()`` decodes them all, so a truncated file fails here, not in the model.

    Errors are returned as text: a DataLoader re-raises worker exceptions with a multi-line
    traceback, and the user needs one line naming the file.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("RGB"), None
    except FileNotFoundError:
        return None, "file not found"
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError,
            ValueError) as exc:
        return None, f"cannot decode ({type(exc).__name__}: {exc})"


_ImageFiles = ImageFiles  # the name before 1.0; plugins import ravlm_bench.api.ImageFiles


def _collate(items):
    return items  # stacking happens in the main process, after checking for errors


def default_num_workers() -> int:
    """Decoding workers: half the cores, leaving the rest to the model (at least one)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(8, (cores or 1) // 2))


def encode_images(encoder: Any, image_paths: list[str], *, batch_size: int = 64,
                  num_workers: int | None = None, progress: bool = True) -> np.ndarray:
    """Encode image files into float32 features (n, encoder.dim), in order.

    :raises DataError: an image file is missing or cannot be decoded (naming the file).
    :raises ContractViolation: the encoder returned the wrong shape, dtype or NaN.
    """
    import torch
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    dim = int(encoder.dim)
    out = np.empty((len(image_paths), dim), np.float32)
    if not image_paths:
        return out
    preprocess = getattr(encoder, "preprocess", None)
    encode_batch = getattr(encoder, "encode_batch", None)
    tensors = callable(preprocess) and callable(encode_batch)
    workers = default_num_workers() if num_workers is None else int(num_workers)
    loader = DataLoader(
        ImageFiles(list(image_paths), preprocess if tensors else None),
        batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=_collate,
        prefetch_factor=4 if workers else None, persistent_workers=False,
    )
    with tqdm(total=len(image_paths), unit="img", desc="encoding images",
              disable=not progress, leave=False) as bar:
        for items in loader:
            for index, _, error in items:
                if error is not None:
                    raise DataError(f"image {image_paths[index]}: {error}")
            rows = [index for index, _, _ in items]
            payload = [value for _, value, _ in items]
            if tensors:
                features = encode_batch(torch.stack(payload))
            else:
                features = encoder.encode(payload)
            out[rows[0]:rows[-1] + 1] = validate_vectors(features, len(rows), dim,
                                                        what="encode")
            bar.update(len(rows))
    return out


def encode_texts(encoder: Any, texts: list[str], *, batch_size: int = 256,
                 progress: bool = True) -> np.ndarray:
    """Encode texts into float32 features (n, encoder.dim), in order, checking each batch."""
    from tqdm.auto import tqdm

    dim = int(encoder.dim)
    out = np.empty((len(texts), dim), np.float32)
    with tqdm(total=len(texts), unit="text", desc="encoding texts", disable=not progress,
              leave=False) as bar:
        for start in range(0, len(texts), batch_size):
            chunk = list(texts[start:start + batch_size])
            features = validate_vectors(encoder.encode(chunk), len(chunk), dim, what="encode")
            out[start:start + len(chunk)] = features
            bar.update(len(chunk))
    return out
