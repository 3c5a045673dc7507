"""Reading one COCO annotations file (captions or instances) into typed columns.

Each record is compacted into a tuple by the JSON object hook as soon as it is parsed;
segmentations are dropped on the spot (loaders never read them, and they are most of an
instances file), so parsing needs less memory than a plain ``json.load``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._columns import (
    bool_column,
    box_column,
    int_column,
    number_column,
    str_column,
    unique_ids,
)
from ._json import compact_records, expect_object, get_list, read_json, require_keys
from ._paths import all_plain, unsafe_reason

IMAGE_KEYS = ("id", "file_name", "width", "height")
CAPTION_KEYS = ("id", "image_id", "caption")
INSTANCE_KEYS = ("id", "image_id", "category_id", "bbox", "area", "iscrowd")
CATEGORY_KEYS = ("id", "name")


def coco_object_hook(d: dict):
    # the marker keys tell records apart; a record lacking a key stays a dict, and
    # compact_records later names the item and the key
    if "category_id" in d:
        d.pop("segmentation", None)
        try:
            return (d["id"], d["image_id"], d["category_id"], d["bbox"], d["area"], d["iscrowd"])
        except KeyError:
            return d
    if "caption" in d:
        try:
            return (d["id"], d["image_id"], d["caption"])
        except KeyError:
            return d
    if "file_name" in d:
        try:
            return (d["id"], d["file_name"], d["width"], d["height"])
        except KeyError:
            return d
    return d


@dataclass
class ImageColumns:
    ids: np.ndarray
    names: list[str]
    width: np.ndarray
    height: np.ndarray
    rejected: np.ndarray  # ids of images whose file_name is unsafe
    problems: list[str] = field(default_factory=list)


@dataclass
class AnnotationFile:
    display: str
    images: ImageColumns
    records: dict[str, object]  # column name -> numpy array / list
    categories: list[tuple[int, str]] = field(default_factory=list)


def _transpose(rows: list[tuple], width: int) -> list[tuple]:
    return list(zip(*rows, strict=True)) if rows else [() for _ in range(width)]


def read_images(rows: list, display: str) -> ImageColumns:
    compact_records(rows, IMAGE_KEYS, display, "images")
    ids, names, width, height = _transpose(rows, 4)
    ids = int_column(ids, display, "images", "id")
    unique_ids(ids, display, lambda row: f"images[{row}]", "id")
    names = str_column(names, display, "images", "file_name")
    width = int_column(width, display, "images", "width", dtype=np.int32)
    height = int_column(height, display, "images", "height", dtype=np.int32)
    problems, rejected = [], []
    for index, name in enumerate([] if all_plain(names) else names):
        reason = unsafe_reason(name)
        if reason:
            rejected.append(index)
            if len(rejected) == 1:
                first = f"images[{index}] file_name {name!r} {reason}"
    if rejected:
        problems.append(f"{display}: {len(rejected)} images with unsafe file names rejected "
                        f"(with their records), e.g. {first}")
    return ImageColumns(ids, names, width, height, ids[rejected], problems)


def read_captions(path: Path, display: str) -> AnnotationFile:
    top = expect_object(read_json(path, display, coco_object_hook), display)
    images = read_images(get_list(top, "images", display), display)
    rows = compact_records(get_list(top, "annotations", display), CAPTION_KEYS, display,
                           "annotations")
    del top
    ids, image_ids, texts = _transpose(rows, 3)
    del rows
    records = {
        "caption_id": int_column(ids, display, "annotations", "id"),
        "image_id": int_column(image_ids, display, "annotations", "image_id"),
        # Karpathy and COCO captions carry stray trailing whitespace and newlines
        "caption": [t.strip() for t in str_column(texts, display, "annotations", "caption")],
    }
    return AnnotationFile(display, images, records)


def read_instances(path: Path, display: str) -> AnnotationFile:
    top = expect_object(read_json(path, display, coco_object_hook), display)
    images = read_images(get_list(top, "images", display), display)
    categories = []
    for index, item in enumerate(get_list(top, "categories", display)):
        require_keys(item, CATEGORY_KEYS, display, f"categories[{index}]")
        categories.append((item["id"], item["name"]))
    cat_ids = int_column([c[0] for c in categories], display, "categories", "id")
    cat_names = str_column([c[1] for c in categories], display, "categories", "name")
    rows = compact_records(get_list(top, "annotations", display), INSTANCE_KEYS, display,
                           "annotations")
    del top
    ids, image_ids, category_ids, boxes, areas, crowd = _transpose(rows, 6)
    del rows
    records = {
        "annotation_id": int_column(ids, display, "annotations", "id"),
        "image_id": int_column(image_ids, display, "annotations", "image_id"),
        "category_id": int_column(category_ids, display, "annotations", "category_id"),
        "bbox": box_column(boxes, display, "annotations", "bbox"),
        "area": number_column(areas, display, "annotations", "area"),
        "iscrowd": bool_column(crowd, display, "annotations", "iscrowd"),
    }
    return AnnotationFile(display, images, records,
                          [(int(i), n) for i, n in zip(cat_ids, cat_names, strict=True)])
