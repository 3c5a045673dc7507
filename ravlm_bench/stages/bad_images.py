"""Images whose pixels fail to decode or that are over the dataset's size limit
(:func:`pixel_limit`), for datasets opened with ``on_bad_image = "skip"``: found once per
task before its cells and dropped from every split (:func:`drop_undecodable`), then counted
in each cell, rather than failing every cell."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DecodableData:
    """A task's data without the items whose image fails to decode, and those images."""

    data: Any  # ClassificationData or RetrievalData
    dropped: dict[str, str]  # image path -> why it fails to decode


def pixel_limit(dataset) -> int:
    """The most pixels an image of ``dataset`` may have: its ``max_image_pixels``, or the
    harness's default for a dataset plugin that sets none."""
    from ravlm_bench.stages.encoding import DEFAULT_MAX_IMAGE_PIXELS

    limit = getattr(dataset, "max_image_pixels", None)
    return DEFAULT_MAX_IMAGE_PIXELS if limit is None else int(limit)


def drop_undecodable(task: str, data, progress: bool = False,
                     max_pixels: int | None = None) -> DecodableData:
    """``data`` without the items whose image fails to decode or has more than
    ``max_pixels`` pixels (none: the default limit), and which images those are."""
    from ravlm_bench.stages.encoding import DEFAULT_MAX_IMAGE_PIXELS, find_undecodable

    limit = DEFAULT_MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    paths = sorted({p for role in _roles(data) for p in getattr(data, role).image_paths})
    failed = {paths[i]: why
              for i, why in find_undecodable(paths, progress=progress, max_pixels=limit).items()}
    if not failed:
        return DecodableData(data, {})
    log.warning("%s: %d images cannot be decoded and are left out of every split (e.g. %s: "
                "%s)", task, len(failed), *next(iter(failed.items())))
    splits = {role: _without(getattr(data, role), set(failed)) for role in _roles(data)}
    return DecodableData(dataclasses.replace(data, **splits), failed)


def _roles(data) -> list[str]:
    return [role for role in ("train", "val", "test") if getattr(data, role, None) is not None]


def _without(split, bad: set[str]):
    """A labelled split without the items showing ``bad`` images; a paired split without
    those images and their captions."""
    keep_image = np.array([p not in bad for p in split.image_paths], dtype=bool)
    if not hasattr(split, "caption_image"):
        return dataclasses.replace(
            split, image_ids=split.image_ids[keep_image],
            image_paths=[p for p, k in zip(split.image_paths, keep_image, strict=True) if k],
            texts=[t for t, k in zip(split.texts, keep_image, strict=True) if k],
            labels=split.labels[keep_image])
    new_row = np.cumsum(keep_image) - 1
    keep_caption = keep_image[split.caption_image]
    return dataclasses.replace(
        split, image_ids=split.image_ids[keep_image],
        image_paths=[p for p, k in zip(split.image_paths, keep_image, strict=True) if k],
        texts=[t for t, k in zip(split.texts, keep_caption, strict=True) if k],
        caption_image=new_row[split.caption_image[keep_caption]])
