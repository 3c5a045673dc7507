"""COCO fuzzing: a copy of the demo world's COCO tree with one annotation file mutated
(dropped fields, wrong types, dangling ids, missing or unsafe images, duplicates, missing or
mistyped sections), run with a one-system suite from an empty cache."""

from __future__ import annotations

import copy
import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from .fuzzing import FUZZ_SUITE, KeyPath, dotted, fuzz_case, fuzz_data
from .lab import Case, Lab, past, pick, reset_work

COCO_FILES = ("annotations/instances_train2017.json", "annotations/instances_val2017.json",
              "dataset_coco.json")
COCO_VALUES = ("12", 12.5, True, None, [], {}, -1, "", 2 ** 70, [1, 2, 3], "../x.jpg")


def records(doc: Any, rel: str) -> list[tuple[KeyPath, dict]]:
    """(path, record) of every record of an annotation file: images, annotations and
    categories; for the Karpathy file its images and their sentences."""
    found = []
    if not isinstance(doc, dict):
        return found
    for section in ("images", "annotations", "categories"):
        for i, item in enumerate(doc.get(section) or []):
            if isinstance(item, dict):
                found.append(((section, i), item))
                for j, sentence in enumerate(item.get("sentences") or []):
                    if isinstance(sentence, dict):
                        found.append(((section, i, "sentences", j), sentence))
    return found


def mutate_coco(doc: dict, rel: str, coco: Path, rng: np.random.Generator):
    """Mutate one parsed annotation file in place (or the tree, for a missing image);
    returns (mutation, description, names an error may give)."""
    kind = pick(rng, ("drop-field", "wrong-type", "dangling-id", "missing-image",
                      "unsafe-image-name", "duplicate", "drop-section", "wrong-section",
                      "empty-section", "bad-bbox", "top-level"))
    items = records(doc, rel)
    if kind in ("drop-field", "wrong-type"):
        path, item = pick(rng, items)
        key = pick(rng, list(item))
        if kind == "drop-field":
            del item[key]
            return kind, f"{rel}: drop {dotted((*path, key))}", [key]
        item[key] = pick(rng, [v for v in COCO_VALUES if type(v) is not type(item[key])])
        return kind, f"{rel}: set {dotted((*path, key))} to {item[key]!r}", [key]
    if kind == "dangling-id":
        path, item = pick(rng, [(p, r) for p, r in items if {"image_id", "category_id",
                                                               "cocoid"} & set(r)])
        key = pick(rng, sorted({"image_id", "category_id", "cocoid"} & set(item)))
        item[key] = 987654321
        # a 2017 tree finds a Karpathy image by its id: naming the missing file is naming it
        return kind, f"{rel}: set {dotted((*path, key))} to 987654321 (no such id)", \
            [key, "000987654321.jpg"]
    if kind == "missing-image":
        image = pick(rng, sorted(coco.glob("*/*.jpg")))
        image.unlink()
        return kind, f"delete the image {image.relative_to(coco)}", [image.name]
    if kind == "unsafe-image-name":
        path, item = pick(rng, [(p, r) for p, r in items if {"file_name", "filename"} & set(r)])
        key = "file_name" if "file_name" in item else "filename"
        item[key] = pick(rng, ("../../outside.jpg", "/etc/hostname", "", "nope.jpg", "a/../b"))
        return kind, f"{rel}: set {dotted((*path, key))} to {item[key]!r}", [key]
    if kind == "duplicate":
        path, item = pick(rng, [(p, r) for p, r in items if len(p) == 2])
        doc[path[0]].append(copy.deepcopy(item))
        return kind, f"{rel}: repeat {dotted(path)} (same id)", [path[0]]
    sections = [s for s in ("images", "annotations", "categories") if s in doc]
    section = pick(rng, sections)
    if kind == "drop-section":
        del doc[section]
        return kind, f"{rel}: drop {section}", [section]
    if kind == "wrong-section":
        doc[section] = pick(rng, ({}, "x", None, 3))
        return kind, f"{rel}: set {section} to {doc[section]!r}", [section]
    if kind == "empty-section":
        doc[section] = []
        return kind, f"{rel}: empty {section}", [section]
    if kind == "bad-bbox" and any("bbox" in r for _, r in items):
        path, item = pick(rng, [(p, r) for p, r in items if "bbox" in r])
        item["bbox"] = pick(rng, ([1, 2, 3], [-5, -5, 0, 0], ["a", "b", "c", "d"], [],
                                  [1, 2, 3, 1e400]))
        return "bad-bbox", f"{rel}: set {dotted((*path, 'bbox'))} to {item['bbox']!r}", \
            ["bbox"]
    return "top-level", f"{rel}: the whole file is a list", [rel.split("/")[-1]]


def run_coco_fuzz(lab: Lab, count: int | None = None,
                  deadline: float | None = None) -> list[Case]:
    """``count`` runs (or until ``deadline``) of a one-system suite over a copy of the demo
    world's COCO tree with one annotation file mutated, each from an empty cache."""
    source = fuzz_data(lab)
    done: list[Case] = []
    while (count is None or len(done) < count) and not past(deadline, minimum=not done):
        started = time.monotonic()
        reset_work(lab, "cold")
        coco = lab.work / "coco"
        shutil.copytree(source, coco)
        rel = pick(lab.rng, COCO_FILES)
        doc = json.loads((coco / rel).read_text())
        kind, description, names = mutate_coco(doc, rel, coco, lab.rng)
        (coco / rel).write_text(json.dumps([doc] if kind == "top-level" else doc))
        suite = FUZZ_SUITE.format(coco=coco).replace(
            'systems = ["knn-exact", "concat"]', 'systems = ["knn-exact"]')
        setup = [f"1. copy the demo world's COCO tree ({source}) to {coco}",
                 f"2. {description}"]
        done.append(fuzz_case(lab, "fuzz-coco", kind, description, suite,
                              [Path(rel).name, *names], setup, started))
    return done
