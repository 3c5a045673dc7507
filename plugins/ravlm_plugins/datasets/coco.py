"""COCO 2014 / 2017: official train/val splits, or Karpathy splits from ``dataset_coco.json``.

Kinds: ``images``, ``captions`` and (when instances files exist) ``instances``. Instances
always come from ``annotations/instances_{split}{year}.json`` and are matched to images by
id, whatever the split scheme; crowd boxes are kept with ``iscrowd=True``.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import get_args

import numpy as np

from ravlm_bench.api import DEFAULT_MAX_IMAGE_PIXELS, ConfigError, DataError

from ._assemble import (
    ImageIndex,
    attach_split,
    captions_table,
    concat_records,
    drop_dangling,
    drop_duplicate_ids,
    mask_records,
    take_strings,
)
from ._base import LoadedDataset, Parsed, open_dataset, resolve_root
from ._coco_files import AnnotationFile, read_captions, read_instances
from ._columns import (
    first_duplicates,
    int_column,
    int_value,
    lookup,
    split_column,
    str_column,
    unique_ids,
)
from ._json import (
    expect_object,
    get_list,
    karpathy_hook,
    karpathy_sentences,
    read_json,
    require_keys,
)
from ._options import SplitScheme
from ._paths import image_paths, list_dir, unsafe_reason
from ._schemas import box_array, make_table

NAME = "coco"
LOADER_VERSION = "1"
KARPATHY_FILE = "dataset_coco.json"
YEARS = (2017, 2014)
OFFICIAL_SPLITS = ("train", "val")
SCHEMES = get_args(SplitScheme)


class CocoDataset(LoadedDataset):
    def categories(self) -> list[tuple[int, str]]:
        """``(category id, name)`` in id order (ids are not contiguous, as in real COCO)."""
        return [(int(i), str(n)) for i, n in self._meta["extra"].get("categories", [])]


def annotation_path(root: Path, kind: str, split: str, year: int) -> Path:
    return root / "annotations" / f"{kind}_{split}{year}.json"


def detect_year(root: Path, year: int | str | None) -> int | None:
    if year is not None:
        try:
            year = int(year)
        except (TypeError, ValueError):
            year = None
        if year not in YEARS:
            raise ConfigError(f"coco: year must be 2014 or 2017, got {year!r}")
        return year
    for candidate in YEARS:  # 2017 first: newer copies are the common case
        if any(annotation_path(root, kind, split, candidate).is_file()
               for kind in ("captions", "instances") for split in OFFICIAL_SPLITS):
            return candidate
    for candidate in YEARS:
        if any((root / f"{split}{candidate}").is_dir() for split in OFFICIAL_SPLITS):
            return candidate
    return None


def create(root: str | Path | None = None, *, year: int | None = None,
           split_scheme: str | None = None, check_images: bool = True,
           on_bad_image: str = "fail",
           max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> CocoDataset:
    root = resolve_root(NAME, root)
    year = detect_year(root, year)
    if split_scheme is None:
        split_scheme = "karpathy" if (root / KARPATHY_FILE).is_file() else "official"
    if split_scheme not in SCHEMES:
        raise ConfigError(f"coco: split_scheme must be one of {', '.join(SCHEMES)}, "
                          f"got {split_scheme!r}")
    if split_scheme == "karpathy" and not (root / KARPATHY_FILE).is_file():
        raise DataError(f"coco ({root}): split_scheme='karpathy' needs {KARPATHY_FILE} at the "
                        "root; put the Karpathy split file there or use split_scheme='official'")
    if split_scheme == "official" and year is None:
        raise DataError(f"coco ({root}): no COCO annotation files; expected "
                        "annotations/captions_{train,val}{2014,2017}.json or instances_*.json "
                        f"(or {KARPATHY_FILE} for Karpathy splits)")
    years = [year] if year else []
    sources = [annotation_path(root, kind, split, y) for y in years
               for kind in ("captions", "instances") for split in OFFICIAL_SPLITS]
    if split_scheme == "karpathy":
        sources.append(root / KARPATHY_FILE)
    image_dirs = [root / f"{split}{y}" for y in (years or YEARS) for split in OFFICIAL_SPLITS]
    parse = partial(_parse_karpathy if split_scheme == "karpathy" else _parse_official, root, year)
    return open_dataset(
        NAME, LOADER_VERSION, root, sources, {"year": year, "split_scheme": split_scheme},
        parse, check_images=check_images, on_bad_image=on_bad_image, image_dirs=image_dirs,
        max_image_pixels=max_image_pixels, cls=CocoDataset)


def _display(root: Path, path: Path) -> str:
    return os.path.relpath(path, root)


# ---------------------------------------------------------------------------------------
# Official splits
# ---------------------------------------------------------------------------------------


def _parse_official(root: Path, year: int) -> Parsed:
    problems: list[str] = []
    split_names: list[str] = []
    caption_files: list[AnnotationFile] = []
    instance_files: list[AnnotationFile] = []
    image_parts = []
    for split in OFFICIAL_SPLITS:
        files = []
        path = annotation_path(root, "captions", split, year)
        if path.is_file():
            files.append(read_captions(path, _display(root, path)))
            caption_files.append(files[-1])
        path = annotation_path(root, "instances", split, year)
        if path.is_file():
            files.append(read_instances(path, _display(root, path)))
            instance_files.append(files[-1])
        if not files:
            continue
        split_names.append(split)
        for f in files:
            problems.extend(f.images.problems)
            f.records = drop_dangling(f.records, f.images.ids, f.display, "annotations",
                                      problems)
        image_parts.append(_union_images(files, len(split_names) - 1, root / f"{split}{year}"))

    images, index = _image_table(image_parts, split_names, problems)
    tables = {"images": images}
    if caption_files:
        tables["captions"] = captions_table(
            [(f.records, f.display) for f in caption_files], index, problems)
    extra = {}
    if instance_files:
        tables["instances"], categories = _instances_table(instance_files, index, problems, [])
        extra["categories"] = categories
    return Parsed(tables, problems, [], extra)


def _union_images(files: list[AnnotationFile], code: int, folder: Path) -> dict:
    """The images of one split: the captions and instances files list the same images."""
    ids = np.concatenate([f.images.ids for f in files])
    names = [n for f in files for n in f.images.names]
    width = np.concatenate([f.images.width for f in files])
    height = np.concatenate([f.images.height for f in files])
    rejected = np.concatenate([f.images.rejected for f in files])
    keep = ~first_duplicates(ids)
    paths = image_paths(folder, [n for n, k in zip(names, keep, strict=True) if k])
    return {"ids": ids[keep], "paths": paths, "width": width[keep], "height": height[keep],
            "codes": np.full(int(keep.sum()), code, np.int32), "rejected": rejected}


def _image_table(parts: list[dict], split_names: list[str], problems: list[str]):
    ids = np.concatenate([p["ids"] for p in parts])
    paths = [x for p in parts for x in p["paths"]]
    width = np.concatenate([p["width"] for p in parts])
    height = np.concatenate([p["height"] for p in parts])
    codes = np.concatenate([p["codes"] for p in parts])
    rejected = np.concatenate([p["rejected"] for p in parts])
    dup = first_duplicates(ids)
    if dup.any():
        problems.append(f"{int(dup.sum())} image ids appear in more than one split (first: "
                        f"{int(ids[dup][0])}); each kept in its first split")
    keep = ~dup & ~np.isin(ids, rejected)
    ids, width, height, codes = ids[keep], width[keep], height[keep], codes[keep]
    paths = [p for p, k in zip(paths, keep, strict=True) if k]
    table = make_table("images", {
        "image_id": ids, "image_path": paths, "split": take_strings(split_names, codes),
        "width": width, "height": height, "coco_id": ids,
        "flickr_id": np.full(len(ids), -1, np.int64),
    })
    return table, ImageIndex(ids, codes, split_names, rejected)


def _instances_table(files: list[AnnotationFile], index: ImageIndex, problems: list[str],
                     notes: list[str]):
    categories: dict[int, str] = {}
    for f in files:
        for cat_id, name in f.categories:
            if categories.setdefault(cat_id, name) != name:
                problems.append(f"{f.display}: category {cat_id} is named {name!r} here but "
                                f"{categories[cat_id]!r} in another file (kept the first)")
    cat_ids = np.array(sorted(categories), dtype=np.int64)
    cat_names = [categories[i] for i in cat_ids.tolist()]
    records, codes = [], []
    for f in files:
        part = drop_duplicate_ids(f.records, "annotation_id", f.display, "annotations", problems)
        known = lookup(part["category_id"], cat_ids) >= 0
        if not known.all():
            unknown = np.unique(part["category_id"][~known])
            problems.append(f"{f.display}: {int((~known).sum())} annotations have category ids "
                            f"not in 'categories' ({', '.join(map(str, unknown[:5]))}) (dropped)")
            part = mask_records(part, known)
        n_before = len(part["image_id"])
        outside = lookup(part["image_id"], index.ids) < 0
        outside &= ~np.isin(part["image_id"], index.rejected)
        part, part_codes = attach_split(part, index)
        if outside.any():
            notes.append(f"{f.display}: {int(outside.sum())} of {n_before} annotations belong "
                         "to images outside the split file (ignored)")
        records.append(part)
        codes.append(part_codes)
    merged = concat_records(records)
    cat_rows = lookup(merged["category_id"], cat_ids)
    table = make_table("instances", {
        "annotation_id": merged["annotation_id"], "image_id": merged["image_id"],
        "category_id": merged["category_id"].astype(np.int32),
        "category": take_strings(cat_names, cat_rows), "bbox": box_array(merged["bbox"]),
        "area": merged["area"], "iscrowd": merged["iscrowd"],
        "split": take_strings(index.split_names, np.concatenate(codes)),
    })
    return table, [[int(i), n] for i, n in zip(cat_ids, cat_names, strict=True)]


# ---------------------------------------------------------------------------------------
# Karpathy splits
# ---------------------------------------------------------------------------------------

KARPATHY_IMAGE_KEYS = ("cocoid", "filename", "split", "sentences")


def _parse_karpathy(root: Path, year: int | None) -> Parsed:
    problems: list[str] = []
    notes: list[str] = []
    display = KARPATHY_FILE
    top = expect_object(read_json(root / KARPATHY_FILE, display, karpathy_hook), display)
    entries = get_list(top, "images", display)
    instance_files = []
    for split in OFFICIAL_SPLITS:
        path = annotation_path(root, "instances", split, year) if year else None
        if path and path.is_file():
            instance_files.append((split, read_instances(path, _display(root, path))))
    # where each image lives in a 2017 layout, and its size, from the instances files
    folder_of: dict[int, str] = {}
    size_of: dict[int, tuple[int, int]] = {}
    for split, f in instance_files:
        problems.extend(f.images.problems)
        f.records = drop_dangling(f.records, f.images.ids, f.display, "annotations", problems)
        for i, w, h in zip(f.images.ids.tolist(), f.images.width.tolist(),
                           f.images.height.tolist(), strict=True):
            folder_of.setdefault(i, f"{split}{year}")
            size_of.setdefault(i, (w, h))
    listings = ({f"{s}{year}": list_dir(root / f"{s}{year}") for s in OFFICIAL_SPLITS}
                if year == 2017 else {})

    ids, rel_paths, split_of, cap_ids, cap_images, cap_texts = [], [], [], [], [], []
    rejected, positions = [], []
    for i, entry in enumerate(entries):
        require_keys(entry, KARPATHY_IMAGE_KEYS, display, f"images[{i}]")
        # checked here, not with the column: the id names the image file in a 2017 layout
        cocoid = int_value(entry["cocoid"], display, f"images[{i}]", "cocoid")
        if year == 2017:
            name = f"{int(cocoid):012d}.jpg"
            folder = folder_of.get(cocoid) or next(
                (d for d, names in listings.items() if name in names),
                "train2017" if entry.get("filepath") == "train2014" else "val2017")
            rel = f"{folder}/{name}"
        else:
            require_keys(entry, ("filepath",), display, f"images[{i}]")
            reason = unsafe_reason(entry["filepath"]) or unsafe_reason(entry["filename"])
            rel = f"{entry['filepath']}/{entry['filename']}"
            if reason:
                rejected.append(f"images[{i}] path {rel!r} {reason}")
                continue
        ids.append(cocoid)
        positions.append(i)
        rel_paths.append(rel)
        split_of.append(entry["split"])
        karpathy_sentences(entry, i, display, cocoid, cap_ids, cap_images, cap_texts)
    del top, entries
    if rejected:
        problems.append(f"{display}: {len(rejected)} images with unsafe paths rejected (with "
                        f"their captions), e.g. {rejected[0]}")

    ids = int_column(ids, display, "images", "cocoid")
    unique_ids(ids, display, lambda row: f"images[{positions[row]}]", "cocoid")
    image_records = {"image_id": ids, "path": rel_paths,
                     "split": split_column(split_of, display, "images", "split")}
    split_names = sorted(set(image_records["split"]))
    code_of = {s: k for k, s in enumerate(split_names)}
    split_codes = np.array([code_of[s] for s in image_records["split"]], dtype=np.int32)
    index = ImageIndex(ids, split_codes, split_names)
    sizes = [size_of.get(i, (-1, -1)) for i in ids.tolist()]
    tables = {"images": make_table("images", {
        "image_id": ids, "image_path": image_paths(root, image_records["path"]),
        "split": take_strings(split_names, split_codes),
        "width": np.array([s[0] for s in sizes], np.int32),
        "height": np.array([s[1] for s in sizes], np.int32),
        "coco_id": ids, "flickr_id": np.full(len(ids), -1, np.int64),
    })}
    captions = {
        "caption_id": int_column(cap_ids, display, "sentences", "sentid"),
        "image_id": np.array(cap_images, dtype=np.int64),
        "caption": [t.strip() for t in str_column(cap_texts, display, "sentences", "raw")],
    }
    tables["captions"] = captions_table([(captions, display)], index, problems)
    extra = {}
    if instance_files:
        tables["instances"], extra["categories"] = _instances_table(
            [f for _, f in instance_files], index, problems, notes)
    return Parsed(tables, problems, notes, extra)
