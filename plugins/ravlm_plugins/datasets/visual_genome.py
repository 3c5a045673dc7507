"""Visual Genome v1.2: ``image_data.json`` plus, when present, ``question_answers.json``,
``region_descriptions.json`` and ``objects.json``; images in ``VG_100K/`` and ``VG_100K_2/``.

Visual Genome has no official split. Images are split 80 / 10 / 10 into train / val / test
by a hash of the image id (SplitMix64 of ``image_id`` mixed with ``split_seed``): the split
of an image never depends on which other images a copy holds, so subsets and full copies
agree. Answers get the official VQA normalisation in ``answer_norm``.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np

from ravlm_bench.api import DEFAULT_MAX_IMAGE_PIXELS, DataError

from ._assemble import ImageIndex, attach_split, drop_dangling, drop_duplicate_ids, take_strings
from ._base import LoadedDataset, Parsed, open_dataset, resolve_root
from ._columns import int_column, optional_int_column, str_column, unique_ids
from ._json import expect_list, read_json, require_keys
from ._paths import image_paths
from ._schemas import make_table
from .vqa_normalize import normalize_answer

NAME = "visual_genome"
LOADER_VERSION = "1"
IMAGE_DATA = "image_data.json"
QUESTIONS = "question_answers.json"
REGIONS = "region_descriptions.json"
OBJECTS = "objects.json"
IMAGE_FOLDERS = ("VG_100K", "VG_100K_2")
SPLITS = ("train", "val", "test")
SPLIT_BOUNDS = (0.8, 0.9)  # cumulative fractions of train, val; test takes the rest

IMAGE_KEYS = ("image_id", "url", "width", "height")
QA_KEYS = ("qa_id", "image_id", "question", "answer")
REGION_KEYS = ("region_id", "image_id", "phrase", "x", "y", "width", "height")
OBJECT_KEYS = ("object_id", "x", "y", "w", "h")


class VisualGenomeDataset(LoadedDataset):
    pass


def create(root: str | Path | None = None, *, split_seed: int = 0, check_images: bool = True,
           on_bad_image: str = "fail",
           max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> VisualGenomeDataset:
    root = resolve_root(NAME, root)
    if not (root / IMAGE_DATA).is_file():
        raise DataError(f"visual_genome ({root}): {IMAGE_DATA} not found; the Visual Genome "
                        "v1.2 tree has image_data.json at its root")
    sources = [root / f for f in (IMAGE_DATA, QUESTIONS, REGIONS, OBJECTS)]
    return open_dataset(
        NAME, LOADER_VERSION, root, sources, {"split_seed": int(split_seed)},
        partial(_parse, root, int(split_seed)), check_images=check_images,
        on_bad_image=on_bad_image, image_dirs=[root / d for d in IMAGE_FOLDERS],
        max_image_pixels=max_image_pixels, cls=VisualGenomeDataset)


def hashed_split(image_ids: np.ndarray, seed: int) -> np.ndarray:
    """Split code per image (0 train, 1 val, 2 test) from SplitMix64(image_id ^ seed)."""
    with np.errstate(over="ignore"):
        x = image_ids.astype(np.uint64) ^ np.uint64((seed * 0x9E3779B97F4A7C15) % 2**64)
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    unit = (z >> np.uint64(11)).astype(np.float64) / float(2**53)
    return np.searchsorted(np.array(SPLIT_BOUNDS), unit, side="right").astype(np.int32)


def _hook(d: dict):
    # inner records become tuples; the per-image wrappers stay dicts
    try:
        if "qa_id" in d:
            return (d["qa_id"], d["image_id"], d["question"], d["answer"])
        if "region_id" in d:
            return (d["region_id"], d["image_id"], d["phrase"], d["x"], d["y"], d["width"],
                    d["height"])
        if "object_id" in d:
            names = d.get("names")
            if names is None:  # older releases wrote one "name"; some objects have none
                names = [d["name"]] if "name" in d else []
            return (d["object_id"], names, d["x"], d["y"], d["w"], d["h"])
        if "url" in d and "image_id" in d:
            return (d["image_id"], d["url"], d["width"], d["height"], d.get("coco_id"),
                    d.get("flickr_id"))
    except KeyError:
        pass
    return d


def _flatten(root: Path, filename: str, wrapper_id: str, list_key: str, keys: tuple[str, ...],
             width: int) -> list[tuple]:
    """Per-image wrappers ``[{"id": .., "qas": [...]}, ...]`` -> one list of record tuples."""
    top = expect_list(read_json(root / filename, filename, _hook), filename, "the top level")
    rows: list[tuple] = []
    for i, wrapper in enumerate(top):
        require_keys(wrapper, (wrapper_id, list_key), filename, f"[{i}]")
        items = expect_list(wrapper[list_key], filename, f"[{i}].{list_key}")
        for j, item in enumerate(items):
            if type(item) is not tuple:
                require_keys(item, keys, filename, f"[{i}].{list_key}[{j}]")
                raise DataError(f"{filename}: [{i}].{list_key}[{j}] is not a valid record")
            if list_key == "objects":  # objects carry their image id on the wrapper only
                item = (item[0], wrapper[wrapper_id], *item[1:])
            rows.append(item)
    return list(zip(*rows, strict=True)) if rows else [() for _ in range(width)]


def _parse(root: Path, seed: int) -> Parsed:
    problems: list[str] = []
    index, images = _images(root, seed, problems)
    tables = {"images": images}
    if (root / QUESTIONS).is_file():
        qa_id, image_id, question, answer = _flatten(root, QUESTIONS, "id", "qas", QA_KEYS, 4)
        answers = str_column(answer, QUESTIONS, "qas", "answer")
        normalised: dict[str, str] = {}  # answers repeat a lot ("Yes.", "Two.")
        records = {
            "qa_id": int_column(qa_id, QUESTIONS, "qas", "qa_id"),
            "image_id": int_column(image_id, QUESTIONS, "qas", "image_id"),
            "question": [q.strip() for q in str_column(question, QUESTIONS, "qas", "question")],
            "answer": list(answers),
            "answer_norm": [normalised.get(a) or normalised.setdefault(a, normalize_answer(a))
                            for a in answers],
        }
        tables["questions"] = _table("questions", records, "qa_id", QUESTIONS, "question "
                                     "answers", index, problems)
    if (root / REGIONS).is_file():
        cols = _flatten(root, REGIONS, "id", "regions", REGION_KEYS, 7)
        records = {"region_id": int_column(cols[0], REGIONS, "regions", "region_id"),
                   "image_id": int_column(cols[1], REGIONS, "regions", "image_id"),
                   "phrase": [p.strip() for p in str_column(cols[2], REGIONS, "regions",
                                                            "phrase")]}
        for name, column in zip(("x", "y", "width", "height"), cols[3:], strict=True):
            records[name] = int_column(column, REGIONS, "regions", name, dtype=np.int32)
        tables["regions"] = _table("regions", records, "region_id", REGIONS, "regions", index,
                                   problems)
    if (root / OBJECTS).is_file():
        cols = _flatten(root, OBJECTS, "image_id", "objects", OBJECT_KEYS, 7)
        records = {"object_id": int_column(cols[0], OBJECTS, "objects", "object_id"),
                   "image_id": int_column(cols[1], OBJECTS, "objects", "image_id"),
                   "names": _names(cols[0], cols[2])}
        for name, column in zip(("x", "y", "w", "h"), cols[3:], strict=True):
            records[name] = int_column(column, OBJECTS, "objects", name, dtype=np.int32)
        tables["objects"] = _table("objects", records, "object_id", OBJECTS, "objects", index,
                                   problems)
    return Parsed(tables, problems, [], {})


def _names(object_ids, names) -> list[list[str]]:
    for object_id, value in zip(object_ids, names, strict=True):
        if not (isinstance(value, list) and all(isinstance(n, str) for n in value)):
            raise DataError(f"{OBJECTS}: object {object_id} key 'names' is {value!r}, expected "
                            "a list of strings")
    return list(names)


def _images(root: Path, seed: int, problems: list[str]):
    top = expect_list(read_json(root / IMAGE_DATA, IMAGE_DATA, _hook), IMAGE_DATA,
                      "the top level")
    rows, rejected, positions = [], [], []
    for i, item in enumerate(top):
        if type(item) is not tuple:
            require_keys(item, IMAGE_KEYS, IMAGE_DATA, f"[{i}]")
        image_id, url = item[0], item[1]
        folder = next((p for p in reversed(str(url).split("/")) if p in IMAGE_FOLDERS), None)
        if folder is None:
            rejected.append(f"[{i}] url {url!r} names neither VG_100K/ nor VG_100K_2/")
            continue
        rows.append((image_id, f"{folder}/{image_id}.jpg", *item[2:]))
        positions.append(i)
    del top
    if rejected:
        problems.append(f"{IMAGE_DATA}: {len(rejected)} images rejected: {rejected[0]}")
    ids, rel, width, height, coco, flickr = (list(zip(*rows, strict=True)) if rows
                                            else [()] * 6)
    image_ids = int_column(ids, IMAGE_DATA, "images", "image_id")
    unique_ids(image_ids, IMAGE_DATA, lambda row: f"[{positions[row]}]", "image_id")
    records = {
        "image_id": image_ids, "rel": list(rel),
        "width": int_column(width, IMAGE_DATA, "images", "width", dtype=np.int32),
        "height": int_column(height, IMAGE_DATA, "images", "height", dtype=np.int32),
        "coco_id": optional_int_column(coco, IMAGE_DATA, "images", "coco_id"),
        "flickr_id": optional_int_column(flickr, IMAGE_DATA, "images", "flickr_id"),
    }
    ids = records["image_id"]
    codes = hashed_split(ids, seed)
    table = make_table("images", {
        "image_id": ids, "image_path": image_paths(root, records["rel"]),
        "split": take_strings(list(SPLITS), codes), "width": records["width"],
        "height": records["height"], "coco_id": records["coco_id"],
        "flickr_id": records["flickr_id"],
    })
    return ImageIndex(ids, codes, list(SPLITS)), table


def _table(kind: str, records: dict, id_column: str, display: str, what: str,
           index: ImageIndex, problems: list[str]):
    records = drop_duplicate_ids(records, id_column, display, what, problems)
    records = drop_dangling(records, index.ids, display, what, problems)
    records, codes = attach_split(records, index)
    records["split"] = take_strings(index.split_names, codes)
    return make_table(kind, records)
