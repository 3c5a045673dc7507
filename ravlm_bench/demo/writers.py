"""Writing demo scenes as COCO, Flickr30k and Visual Genome trees, in their real formats.

Field names, nesting and file layout follow the released files (see FORMATS.md), so the
demo goes through exactly the loaders real data uses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ravlm_bench.demo.render import crowd_mask, render, rle_counts
from ravlm_bench.demo.scenes import IMAGE_SIZE, Scene
from ravlm_bench.demo.shapes import CATEGORIES
from ravlm_bench.demo.text import captions, questions, region_phrase, tokens

CATEGORY_ID = {name: cid for cid, name, _ in CATEGORIES}
VG_URL = "https://cs.stanford.edu/people/rak248/{folder}/{image_id}.jpg"


@dataclass
class TreeSummary:
    """What one tree holds, as its loader will count it."""

    images: int = 0
    captions: int = 0
    instances: int = 0
    categories: int = 0
    questions: int = 0
    regions: int = 0
    objects: int = 0
    knowledge_questions: int = 0
    passages: int = 0
    splits: dict[str, int] = field(default_factory=dict)  # images per split
    question_splits: dict[str, int] = field(default_factory=dict)  # knowledge questions


@dataclass
class WrittenImage:
    image_id: int
    path: Path
    scene: Scene


def _dump(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, separators=(",", ":")), encoding="utf-8")


def _caption_count(rng: np.random.Generator) -> int:
    return int(rng.choice([5, 6, 7], p=[0.85, 0.1, 0.05]))  # as in COCO: most have 5


def _unique_ids(rng: np.random.Generator, n: int, low: int, high: int) -> list[int]:
    """``n`` distinct sorted ids in [low, high), like the sparse ids of the real datasets."""
    seen: set[int] = set()
    while len(seen) < n:
        for v in rng.integers(low, high, size=n).tolist():
            if len(seen) < n:
                seen.add(v)
    return sorted(seen)


# ---------------------------------------------------------------------------------------
# COCO 2017 layout + Karpathy split file
# ---------------------------------------------------------------------------------------

COCO_INFO = {"description": "ravlm-bench demo world (synthetic shapes)", "url": "",
             "version": "1.0", "year": 2017, "contributor": "ravlm-bench demo generator",
             "date_created": "2017/09/01"}
COCO_LICENSES = [{"url": "http://creativecommons.org/licenses/by/2.0/", "id": 4,
                  "name": "Attribution License"}]


def write_coco(out: Path, scenes: dict[str, list[Scene]], rng: np.random.Generator):
    """``scenes`` maps Karpathy split -> scenes; returns the summary and the written images."""
    n = sum(len(v) for v in scenes.values())
    image_ids = rng.permutation(_unique_ids(rng, n, 1, 600_000)).tolist()
    caption_ids = iter(_unique_ids(rng, n * 7, 1, 900_000))
    annotation_ids = iter(_unique_ids(rng, n * 5, 1, 2_000_000))
    per_file: dict[str, dict[str, list[dict]]] = {
        s: {"images": [], "captions": [], "instances": []} for s in ("train", "val")}
    karpathy: list[dict] = []
    written: list[WrittenImage] = []
    summary = TreeSummary(categories=len(CATEGORIES))
    sentid, crowd_serial = 0, 0
    for split, split_scenes in scenes.items():
        for k, scene in enumerate(split_scenes):
            image_id = image_ids.pop()
            # the official 2017 split: half of Karpathy val/test sits in val2017 (as the real
            # Karpathy test images are spread over train2017 and val2017)
            official = "val" if split in ("val", "test") and k % 2 == 0 else "train"
            filename = f"{image_id:012d}.jpg"
            path = out / f"{official}2017" / filename
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(render(scene))
            written.append(WrittenImage(image_id, path, scene))
            files = per_file[official]
            files["images"].append({
                "license": 4, "file_name": filename,
                "coco_url": f"http://images.cocodataset.org/{official}2017/{filename}",
                "height": IMAGE_SIZE, "width": IMAGE_SIZE, "date_captured": "2013-11-14 16:28:13",
                "flickr_url": "", "id": image_id})
            texts = captions(scene, rng, _caption_count(rng))
            sentences = []
            for text in texts:
                # like the real files, a few raw captions carry trailing whitespace
                raw = text + (" " if rng.random() < 0.05 else "")
                files["captions"].append({"image_id": image_id, "id": next(caption_ids),
                                          "caption": raw})
                sentences.append({"tokens": tokens(text), "raw": raw, "imgid": len(karpathy),
                                  "sentid": sentid})
                sentid += 1
            for shape in scene.shapes:
                files["instances"].append({
                    "segmentation": [[round(float(v), 2) for v in shape.points.reshape(-1)]],
                    "area": round(shape.area, 2), "iscrowd": 0, "image_id": image_id,
                    "bbox": shape.bbox, "category_id": CATEGORY_ID[shape.kind],
                    "id": next(annotation_ids)})
            if scene.crowd:
                mask = crowd_mask(scene)
                ys, xs = np.nonzero(mask)
                crowd_serial += 1
                files["instances"].append({
                    "segmentation": {"counts": rle_counts(mask), "size": [IMAGE_SIZE, IMAGE_SIZE]},
                    "area": int(mask.sum()), "iscrowd": 1, "image_id": image_id,
                    "bbox": [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1),
                             float(ys.max() - ys.min() + 1)],
                    "category_id": CATEGORY_ID[scene.crowd.kind],
                    "id": 900100000000 + crowd_serial})
            filepath = "train2014" if split == "train" else "val2014"
            karpathy.append({
                "filepath": filepath, "sentids": [s["sentid"] for s in sentences],
                "filename": f"COCO_{filepath}_{image_id:012d}.jpg", "imgid": len(karpathy),
                "split": split, "sentences": sentences, "cocoid": image_id})
            summary.images += 1
            summary.captions += len(texts)
            summary.instances += len(scene.shapes) + (1 if scene.crowd else 0)
            summary.splits[split] = summary.splits.get(split, 0) + 1
    categories = [{"supercategory": sup, "id": cid, "name": name} for cid, name, sup in CATEGORIES]
    for official, files in per_file.items():
        common = {"info": COCO_INFO, "licenses": COCO_LICENSES, "images": files["images"]}
        _dump(out / "annotations" / f"captions_{official}2017.json",
              {**common, "annotations": files["captions"]})
        _dump(out / "annotations" / f"instances_{official}2017.json",
              {**common, "annotations": files["instances"], "categories": categories})
    _dump(out / "dataset_coco.json", {"images": karpathy, "dataset": "coco"})
    return summary, written


# ---------------------------------------------------------------------------------------
# Flickr30k: Karpathy file + the original token file
# ---------------------------------------------------------------------------------------


def write_flickr30k(out: Path, scenes: dict[str, list[Scene]], rng: np.random.Generator):
    n = sum(len(v) for v in scenes.values())
    photo_ids = rng.permutation(_unique_ids(rng, n, 1_000_000_000, 9_999_999_999)).tolist()
    karpathy: list[dict] = []
    token_lines: list[str] = []
    written: list[WrittenImage] = []
    summary = TreeSummary()
    sentid = 0
    for split, split_scenes in scenes.items():
        for scene in split_scenes:
            photo_id = photo_ids.pop()
            filename = f"{photo_id}.jpg"
            path = out / "flickr30k-images" / filename
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(render(scene))
            written.append(WrittenImage(photo_id, path, scene))
            texts = captions(scene, rng, 5)  # Flickr30k has exactly five per image
            sentences = []
            for k, text in enumerate(texts):
                sentences.append({"tokens": tokens(text), "raw": text, "imgid": len(karpathy),
                                  "sentid": sentid})
                token_lines.append(f"{filename}#{k}\t{text[:-1]} .")
                sentid += 1
            karpathy.append({"sentids": [s["sentid"] for s in sentences],
                             "imgid": len(karpathy), "sentences": sentences, "split": split,
                             "filename": filename})
            summary.images += 1
            summary.captions += len(texts)
            summary.splits[split] = summary.splits.get(split, 0) + 1
    _dump(out / "dataset_flickr30k.json", {"images": karpathy, "dataset": "flickr30k"})
    (out / "results_20130124.token").write_text("\n".join(token_lines) + "\n", encoding="utf-8")
    return summary, written


# ---------------------------------------------------------------------------------------
# Visual Genome v1.2
# ---------------------------------------------------------------------------------------


def write_visual_genome(out: Path, images: list[tuple[Scene, bytes | Path, int | None,
                                                      int | None]],
                        rng: np.random.Generator) -> TreeSummary:
    """``images``: (scene, JPEG bytes or a file to copy, coco_id, flickr_id) per image."""
    image_data, qa_file, region_file, object_file = [], [], [], []
    summary = TreeSummary()
    qa_id = region_id = object_id = 0
    for image_id, (scene, content, coco_id, flickr_id) in enumerate(images, start=1):
        folder = "VG_100K" if rng.random() < 0.7 else "VG_100K_2"
        path = out / folder / f"{image_id}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.read_bytes() if isinstance(content, Path) else content)
        image_data.append({"width": IMAGE_SIZE, "url": VG_URL.format(folder=folder,
                                                                      image_id=image_id),
                           "height": IMAGE_SIZE, "image_id": image_id, "coco_id": coco_id,
                           "flickr_id": flickr_id})
        qas = []
        if rng.random() >= 0.03:  # a few images have no questions, as in the real file
            for question, answer in questions(scene, rng):
                qa_id += 1
                qas.append({"a_objects": [], "question": question, "image_id": image_id,
                            "qa_id": qa_id, "answer": answer, "q_objects": []})
        qa_file.append({"id": image_id, "qas": qas})
        regions, objects = [], []
        for shape in scene.shapes:
            x, y, w, h = shape.bbox
            box = {"x": int(x), "y": int(y), "w": int(np.ceil(w)), "h": int(np.ceil(h))}
            region_id += 1
            regions.append({"region_id": region_id, "width": box["w"], "height": box["h"],
                            "image_id": image_id, "phrase": region_phrase(shape),
                            "y": box["y"], "x": box["x"]})
            object_id += 1
            obj = {"synsets": [f"{shape.kind}.n.01"], "h": box["h"], "object_id": object_id,
                   "merged_object_ids": [], "names": [shape.kind], "w": box["w"],
                   "y": box["y"], "x": box["x"]}
            if object_id % 7 == 0:  # optional keys are missing on some real objects
                del obj["synsets"], obj["merged_object_ids"]
            objects.append(obj)
        region_id += 1
        regions.append({"region_id": region_id, "width": IMAGE_SIZE, "height": IMAGE_SIZE,
                        "image_id": image_id, "phrase": f"a {scene.background} background",
                        "y": 0, "x": 0})
        region_file.append({"regions": regions, "id": image_id})
        object_file.append({"image_id": image_id, "objects": objects,
                            "image_url": VG_URL.format(folder=folder, image_id=image_id)})
        summary.images += 1
        summary.questions += len(qas)
        summary.regions += len(regions)
        summary.objects += len(objects)
    _dump(out / "image_data.json", image_data)
    _dump(out / "question_answers.json", qa_file)
    _dump(out / "region_descriptions.json", region_file)
    _dump(out / "objects.json", object_file)
    summary.splits = {"all": summary.images}
    return summary
