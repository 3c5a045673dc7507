"""The demo-world generator: determinism, content, and the cached copy."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from pathlib import Path

import pytest

from ravlm_bench import demo
from ravlm_bench.demo import SIZES, ensure_demo_world, generate_demo_world
from ravlm_bench.demo.shapes import CATEGORIES
from ravlm_bench.foundation.errors import ConfigError


def digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_other_bytes(demo_world, tmp_path):
    again = generate_demo_world(tmp_path / "again", seed=0, size="tiny")
    assert digest(tmp_path / "again") == digest(demo_world)
    generate_demo_world(tmp_path / "other", seed=1, size="tiny")
    assert digest(tmp_path / "other") != digest(demo_world)
    assert again.trees["coco"].images == sum(SIZES["tiny"]["coco"].values())


def test_three_trees_in_their_real_layouts(demo_world):
    assert sorted(p.name for p in (demo_world / "coco" / "annotations").iterdir()) == [
        "captions_train2017.json", "captions_val2017.json", "instances_train2017.json",
        "instances_val2017.json"]
    assert (demo_world / "coco" / "dataset_coco.json").is_file()
    assert (demo_world / "flickr30k" / "results_20130124.token").is_file()
    for name in ("image_data.json", "question_answers.json", "region_descriptions.json",
                 "objects.json"):
        assert (demo_world / "visual_genome" / name).is_file()
    jpeg = next((demo_world / "coco" / "train2017").glob("*.jpg")).read_bytes()
    assert jpeg[:2] == b"\xff\xd8"


def test_categories_long_tailed_and_present_in_train_and_test(demo_world):
    assert len(CATEGORIES) >= 8
    instances = {}
    for split in ("train", "val"):
        data = json.loads((demo_world / "coco/annotations" / f"instances_{split}2017.json")
                          .read_text())
        instances.update({a["id"]: a for a in data["annotations"]})
        ids = [c["id"] for c in data["categories"]]
        assert ids != list(range(1, len(ids) + 1))  # not contiguous, like real COCO
    karpathy = json.loads((demo_world / "coco/dataset_coco.json").read_text())["images"]
    split_of = {e["cocoid"]: e["split"] for e in karpathy}
    largest = {}
    for a in instances.values():
        if not a["iscrowd"] and a["area"] > largest.get(a["image_id"], {"area": -1})["area"]:
            largest[a["image_id"]] = a
    by_split = {s: Counter(a["category_id"] for i, a in largest.items() if split_of[i] == s)
                for s in ("train", "test")}
    every = {c for c, _, _ in CATEGORIES}
    assert set(by_split["train"]) == every and set(by_split["test"]) == every
    head, tail = CATEGORIES[0][0], CATEGORIES[-1][0]
    assert by_split["train"][head] >= 3 * by_split["train"][tail]
    assert any(a["iscrowd"] and isinstance(a["segmentation"], dict) for a in instances.values())


def test_captions_do_not_always_name_the_largest_shape(demo_world):
    karpathy = json.loads((demo_world / "coco/dataset_coco.json").read_text())["images"]
    data = json.loads((demo_world / "coco/annotations/instances_train2017.json").read_text())
    names = {c["id"]: c["name"] for c in data["categories"]}
    largest = {}
    for a in data["annotations"]:
        if not a["iscrowd"] and a["area"] > largest.get(a["image_id"], {"area": -1})["area"]:
            largest[a["image_id"]] = a
    named = total = 0
    counts = Counter()
    templates = set()
    for entry in karpathy:
        counts[len(entry["sentences"])] += 1
        if entry["cocoid"] not in largest:
            continue
        kind = names[largest[entry["cocoid"]]["category_id"]]
        for sentence in entry["sentences"]:
            total += 1
            named += bool(re.search(rf"\b{kind}\b", sentence["raw"]))
            templates.add(re.sub(r"\b(a|an)\b.*", "", sentence["raw"].lower())[:12])
    assert 0.3 < named / total < 0.9
    assert counts[5] > counts[6] + counts[7] > 0
    assert len(templates) >= 5


def test_vg_questions_look_like_visual_genome(demo_world):
    qas = json.loads((demo_world / "visual_genome/question_answers.json").read_text())
    pairs = [(q["question"], q["answer"]) for image in qas for q in image["qas"]]
    questions = {q for q, _ in pairs}
    assert any(q.startswith("What color is the ") for q in questions)
    assert any(q.startswith("How many ") for q in questions)
    assert any(q.startswith("What shape is left of the ") for q in questions)
    assert all(a.endswith(".") and a[0].isupper() for _, a in pairs)
    assert any(not image["qas"] for image in qas) or len(qas) < 100


def test_summary_file_matches_the_returned_summary(demo_world):
    recorded = demo.load_summary(demo_world)
    assert recorded["seed"] == 0 and recorded["size"] == "tiny"
    assert recorded["trees"]["coco"]["categories"] == len(CATEGORIES)


def test_refuses_a_non_empty_directory_and_unknown_sizes(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "file").write_text("keep me")
    with pytest.raises(ConfigError, match="is not empty"):
        generate_demo_world(tmp_path / "x", size="tiny")
    with pytest.raises(ConfigError, match="demo size 'huge'"):
        generate_demo_world(tmp_path / "y", size="huge")


def test_ensure_generates_once_and_atomically(monkeypatch):
    first = ensure_demo_world(seed=3, size="tiny")
    assert first.name == f"3-tiny-v{demo.GENERATOR_VERSION}"
    stamp = (first / "demo_world.json").stat().st_mtime_ns
    assert ensure_demo_world(seed=3, size="tiny") == first
    assert (first / "demo_world.json").stat().st_mtime_ns == stamp

    def killed(out, seed, size):
        (Path(out) / "coco").mkdir(parents=True)
        raise KeyboardInterrupt  # a generation killed half-way

    monkeypatch.setattr(demo.world, "generate_demo_world", killed)
    with pytest.raises(KeyboardInterrupt):
        ensure_demo_world(seed=4, size="tiny")
    target = first.parent / f"4-tiny-v{demo.GENERATOR_VERSION}"
    assert not target.exists()
    assert not [p for p in first.parent.iterdir() if p.name.startswith(".tmp-")]
    monkeypatch.undo()
    assert (ensure_demo_world(seed=4, size="tiny") / "coco" / "dataset_coco.json").is_file()


def test_a_killed_writers_temporary_directory_is_swept_once_a_day_old(tmp_path):
    from ravlm_bench.foundation.paths import STALE_TEMPORARY_S, directory_written_atomically

    target = tmp_path / "entry"
    old, recent = tmp_path / ".tmp-entry-old", tmp_path / ".tmp-other-recent"
    for leftover in (old, recent):
        (leftover / "coco").mkdir(parents=True)  # half-written, then the writer was killed
    day_ago = os.path.getmtime(old) - STALE_TEMPORARY_S - 60
    os.utime(old, (day_ago, day_ago))
    with directory_written_atomically(target, lambda t: True) as fresh:
        assert fresh.parent == tmp_path and fresh.name.startswith(".tmp-entry-")
        assert not old.exists()  # a day old: its writer is gone
        assert recent.exists()  # may still be being written by another process
        (fresh / "done").write_text("1")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["entry", recent.name])
    assert (target / "done").read_text() == "1"


@pytest.mark.parametrize("victim", ["coco/train2017/*.jpg", "coco/annotations/instances_*.json"])
def test_ensure_regenerates_a_damaged_world(monkeypatch, tmp_path, caplog, victim):
    monkeypatch.setenv("RAVLM_BENCH_CACHE", str(tmp_path / "cache"))
    world = ensure_demo_world(seed=0, size="tiny")
    damaged = sorted(world.glob(victim))[0]
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))

    caplog.clear()
    with caplog.at_level("INFO", logger="ravlm_bench.demo"):
        assert ensure_demo_world(seed=0, size="tiny") == world
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert str(damaged.relative_to(world)) in warnings[0] and str(world) in warnings[0]
    generate_demo_world(tmp_path / "fresh", seed=0, size="tiny")
    assert digest(world) == digest(tmp_path / "fresh")
    assert not [p for p in world.parent.iterdir() if p.name.startswith(".tmp-")]
