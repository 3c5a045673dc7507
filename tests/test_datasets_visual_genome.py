"""The visual_genome dataset plugin: hashed splits, questions, regions and objects."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from testhelpers import demo_tree

from ravlm_bench.plugin_host.contracts import Dataset


def test_counts_match_what_the_demo_wrote(registry, demo_world):
    vg = registry.create("datasets", "visual_genome", root=demo_world / "visual_genome")
    assert isinstance(vg, Dataset)
    expected = demo_tree(demo_world, "visual_genome")
    assert vg.kinds == ("images", "questions", "regions", "objects")
    assert vg.splits() == ["train", "val", "test"]
    counts = vg.summary()["counts"]
    for kind in ("images", "questions", "regions", "objects"):
        assert sum(counts[kind].values()) == expected[kind], kind
    assert vg.problems == []


def test_split_is_a_deterministic_hash_of_the_image_id(registry, demo_world):
    from ravlm_plugins.datasets.visual_genome import hashed_split

    ids = np.arange(1, 20001)
    codes = hashed_split(ids, seed=0)
    shares = np.bincount(codes, minlength=3) / len(ids)
    assert np.allclose(shares, [0.8, 0.1, 0.1], atol=0.01)
    assert (hashed_split(ids[::-1], 0) == codes[::-1]).all()  # depends on the id alone
    assert (hashed_split(ids, 1) != codes).any()
    vg = registry.create("datasets", "visual_genome", root=demo_world / "visual_genome")
    other = registry.create("datasets", "visual_genome", root=demo_world / "visual_genome",
                            split_seed=7)
    assert vg.table("images", "test")["image_id"] != other.table("images", "test")["image_id"]


def test_answers_are_normalised_and_questions_kept(registry, demo_world):
    vg = registry.create("datasets", "visual_genome", root=demo_world / "visual_genome")
    rows = [r for s in vg.splits() for r in vg.table("questions", s)]
    pairs = {(r["answer"], r["answer_norm"]) for r in rows}
    assert all(raw.endswith(".") and raw[0].isupper() for raw, _ in pairs)
    for raw, norm in pairs:
        assert norm == norm.lower() and not norm.endswith(".")
        if raw.startswith("Two"):
            assert norm == "2"
        if raw.startswith("The "):
            assert not norm.startswith("the ")


def test_images_folders_and_reused_coco_and_flickr_ids(registry, demo_world):
    vg = registry.create("datasets", "visual_genome", root=demo_world / "visual_genome")
    rows = [r for s in vg.splits() for r in vg.table("images", s)]
    assert {Path(r["image_path"]).parent.name for r in rows} == {"VG_100K", "VG_100K_2"}
    assert all(Path(r["image_path"]).is_file() for r in rows)
    coco_ids = {r["coco_id"] for r in rows} - {-1}
    flickr_ids = {r["flickr_id"] for r in rows} - {-1}
    assert coco_ids and flickr_ids
    coco = registry.create("datasets", "coco", root=demo_world / "coco")
    all_coco = {i for s in coco.splits() for i in coco.table("images", s)["image_id"]}
    assert coco_ids <= all_coco
    by_coco = {r["coco_id"]: r["image_path"] for r in rows if r["coco_id"] >= 0}
    coco_paths = {r["image_id"]: r["image_path"] for s in coco.splits()
                  for r in coco.table("images", s)}
    some = next(iter(by_coco))
    assert Path(by_coco[some]).read_bytes() == Path(coco_paths[some]).read_bytes()


def test_empty_qas_and_objects_without_optional_keys_are_fine(registry, demo_copy, edit_json):
    root = demo_copy("visual_genome")

    def strip(data):
        for obj in data[1]["objects"]:
            obj.pop("synsets", None)
            obj.pop("merged_object_ids", None)
            obj.pop("names", None)

    edit_json(root / "question_answers.json", lambda d: d[0].update(qas=[]))
    edit_json(root / "objects.json", strip)
    vg = registry.create("datasets", "visual_genome", root=root)
    assert vg.problems == []
    objects = [r for s in vg.splits() for r in vg.table("objects", s)]
    first_image = json.loads((root / "objects.json").read_text())[1]["image_id"]
    assert all(r["names"] == [] for r in objects if r["image_id"] == first_image)
