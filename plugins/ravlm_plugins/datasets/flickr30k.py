"""Flickr30k: Karpathy ``dataset_flickr30k.json`` (train / val / test), or, without it, the
original ``results_20130124.token`` or the widely shared ``results.csv`` (every image in one
split, ``"all"``).

Images live in ``flickr30k-images/``. ``image_id`` is the file name's number
(``1000092795.jpg`` -> 1000092795, the Flickr photo id) when it is numeric, else the
Karpathy ``imgid``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

from ravlm_bench.api import DEFAULT_MAX_IMAGE_PIXELS, DataError

from ._assemble import ImageIndex, captions_table, take_strings
from ._base import LoadedDataset, Parsed, open_dataset, resolve_root
from ._columns import int_column, shown, split_column, str_column, unique_ids
from ._json import (
    expect_object,
    get_list,
    karpathy_hook,
    karpathy_sentences,
    read_json,
    read_text,
    require_keys,
)
from ._paths import image_paths, unsafe_reason
from ._schemas import make_table

NAME = "flickr30k"
LOADER_VERSION = "1"
KARPATHY_FILE = "dataset_flickr30k.json"
TOKEN_FILE = "results_20130124.token"
CSV_FILE = "results.csv"
IMAGE_DIR = "flickr30k-images"
KARPATHY_IMAGE_KEYS = ("filename", "imgid", "split", "sentences")


class Flickr30kDataset(LoadedDataset):
    pass


def create(root: str | Path | None = None, *, check_images: bool = True,
           on_bad_image: str = "fail",
           max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> Flickr30kDataset:
    root = resolve_root(NAME, root)
    if (root / KARPATHY_FILE).is_file():
        source, parse = root / KARPATHY_FILE, partial(_parse_karpathy, root)
    elif (root / TOKEN_FILE).is_file():
        source = root / TOKEN_FILE
        parse = partial(_parse_caption_lines, root, TOKEN_FILE, _token_line,
                        "'NAME.jpg#N<TAB>caption'")
    elif (root / CSV_FILE).is_file():
        source = root / CSV_FILE
        parse = partial(_parse_caption_lines, root, CSV_FILE, _csv_line,
                        "'NAME.jpg| N| caption'")
    else:
        raise DataError(f"flickr30k ({root}): none of {KARPATHY_FILE}, {TOKEN_FILE} or "
                        f"{CSV_FILE} found; put one of them at the dataset root")
    return open_dataset(NAME, LOADER_VERSION, root, [source], {}, parse,
                        check_images=check_images, on_bad_image=on_bad_image,
                        image_dirs=[root / IMAGE_DIR], max_image_pixels=max_image_pixels,
                        cls=Flickr30kDataset)


def _image_id(filename: str, fallback, display: str, where: str) -> int:
    stem = os.path.splitext(filename)[0]
    # isascii: str.isdigit also accepts digits such as "²" that int() refuses
    if not (stem.isascii() and stem.isdigit()):
        return fallback
    if len(stem) > 18:  # 10**18 < 2**63: the number would not fit an int64 id
        raise DataError(f"{display}: {where} file name {shown(filename)} is a number too "
                        "large for an image id")
    return int(stem)


def _parse_karpathy(root: Path) -> Parsed:
    display = KARPATHY_FILE
    top = expect_object(read_json(root / KARPATHY_FILE, display, karpathy_hook), display)
    problems: list[str] = []
    ids, names, splits, cap_ids, cap_images, cap_texts, rejected = [], [], [], [], [], [], []
    positions = []
    for i, entry in enumerate(get_list(top, "images", display)):
        require_keys(entry, KARPATHY_IMAGE_KEYS, display, f"images[{i}]")
        filename = entry["filename"]
        reason = unsafe_reason(filename)
        if reason:
            rejected.append(f"images[{i}] filename {filename!r} {reason}")
            continue
        image_id = _image_id(filename, entry["imgid"], display, f"images[{i}]")
        ids.append(image_id)
        positions.append(i)
        names.append(filename)
        splits.append(entry["split"])
        karpathy_sentences(entry, i, display, image_id, cap_ids, cap_images, cap_texts)
    del top
    if rejected:
        problems.append(f"{display}: {len(rejected)} images with unsafe file names rejected "
                        f"(with their captions), e.g. {rejected[0]}")
    images = {"image_id": int_column(ids, display, "images", "imgid"), "name": names,
              "split": split_column(splits, display, "images", "split")}
    captions = {
        "caption_id": int_column(cap_ids, display, "sentences", "sentid"),
        "image_id": np.array(cap_images, dtype=np.int64),
        "caption": [t.strip() for t in str_column(cap_texts, display, "sentences", "raw")],
    }
    return _tables(root, images, captions, display, problems, [],
                   lambda row: f"images[{positions[row]}] ({names[row]})")


def _token_line(line: str) -> tuple[str, str] | None:
    """``1000092795.jpg#0<TAB>Two young guys ... .`` -> (file name, caption)."""
    key, tab, caption = line.partition("\t")
    filename, hash_, _ = key.partition("#")
    return (filename, caption) if tab and hash_ else None


_CSV_NUMBER_THEN_CAPTION = re.compile(r"\s*\d+\s+(.*)")


def _csv_line(line: str) -> tuple[str, str] | None:
    """``1000092795.jpg| 0| Two young guys ...`` -> (file name, caption). The common copy
    has one row without its second pipe (``2199200615.jpg| 4   A dog ...``): the number
    and the caption are then told apart by the spaces between them."""
    parts = line.split("|", 2)
    if len(parts) == 3 and parts[1].strip().isdigit():
        return parts[0].strip(), parts[2]
    if len(parts) == 2 and (match := _CSV_NUMBER_THEN_CAPTION.fullmatch(parts[1])):
        return parts[0].strip(), match.group(1)
    return None


def _parse_caption_lines(root: Path, display: str,
                         split_line: Callable[[str], tuple[str, str] | None],
                         shape: str) -> Parsed:
    """A file of one caption per line (five lines per image): the token file or the CSV."""
    problems: list[str] = []
    names: dict[str, int] = {}
    cap_images, cap_texts, bad_lines = [], [], []
    lines = read_text(root / display, display).splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip() or (number == 1 and line.startswith("image_name")):
            continue  # blank, or the CSV's header
        parsed = split_line(line)
        if parsed is None or not parsed[1].strip() or unsafe_reason(parsed[0]):
            bad_lines.append(number)
            continue
        filename, caption = parsed
        if filename not in names:
            names[filename] = _image_id(filename, len(names), display, f"line {number}")
        image_id = names[filename]
        cap_images.append(image_id)
        cap_texts.append(caption.strip())
    if bad_lines:
        lines_are = "1 line is" if len(bad_lines) == 1 else f"{len(bad_lines)} lines are"
        problems.append(f"{display}: {lines_are} not {shape} (skipped), first at line "
                        f"{bad_lines[0]}")
    images = {"image_id": np.array(list(names.values()), dtype=np.int64),
              "name": list(names), "split": ["all"] * len(names)}
    captions = {"caption_id": np.arange(len(cap_texts), dtype=np.int64),
                "image_id": np.array(cap_images, dtype=np.int64), "caption": cap_texts}
    notes = [f"no {KARPATHY_FILE}: all {len(names)} images of {display} are in one split "
             "'all' (add the Karpathy file for train/val/test)"]
    image_names = list(names)
    return _tables(root, images, captions, display, problems, notes,
                   lambda row: f"image {image_names[row]}")


def _tables(root: Path, images: dict, captions: dict, display: str, problems: list[str],
            notes: list[str], name: Callable[[int], str]) -> Parsed:
    """``name(row)`` says which image a row is in messages."""
    ids = images["image_id"]
    unique_ids(ids, display, name)
    split_names = sorted(set(images["split"]))
    code_of = {s: k for k, s in enumerate(split_names)}
    codes = np.array([code_of[s] for s in images["split"]], dtype=np.int32)
    index = ImageIndex(ids, codes, split_names)
    numeric = np.array([os.path.splitext(n)[0].isdigit() for n in images["name"]], dtype=bool)
    tables = {
        "images": make_table("images", {
            "image_id": ids, "image_path": image_paths(root / IMAGE_DIR, images["name"]),
            "split": take_strings(split_names, codes),
            # sizes come from the image headers when images are checked
            "width": np.full(len(ids), -1, np.int32), "height": np.full(len(ids), -1, np.int32),
            "coco_id": np.full(len(ids), -1, np.int64),
            "flickr_id": np.where(numeric, ids, -1).astype(np.int64),
        }),
        "captions": captions_table([(captions, display)], index, problems),
    }
    return Parsed(tables, problems, notes, {})
