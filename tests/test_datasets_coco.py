"""The coco dataset plugin on the demo world: Karpathy and official splits, 2014 layouts."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from testhelpers import demo_tree

from ravlm_bench.foundation.errors import ConfigError, DataError
from ravlm_bench.plugin_host.contracts import RECORD_SCHEMAS, Dataset

ARROW_TYPES = {"int64": "int64", "int32": "int32", "string": "string", "float32": "float",
               "bool": "bool", "list<float32>": "list<item: float>",
               "list<string>": "list<item: string>"}


def check_schema(dataset) -> None:
    for kind in dataset.kinds:
        table = dataset.table(kind, dataset.splits()[0])
        schema = table.data.schema
        assert schema.names == list(RECORD_SCHEMAS[kind]), kind
        for name, description in RECORD_SCHEMAS[kind].items():
            assert str(schema.field(name).type) == ARROW_TYPES[description.split()[0]], name


def test_karpathy_splits_match_what_the_demo_wrote(registry, demo_world):
    coco = registry.create("datasets", "coco", root=demo_world / "coco")
    assert isinstance(coco, Dataset)
    expected = demo_tree(demo_world, "coco")
    assert coco.splits() == ["train", "restval", "val", "test"]
    assert coco.kinds == ("images", "captions", "instances")
    summary = coco.summary()
    assert summary["counts"]["images"] == expected["splits"]
    assert sum(summary["counts"]["captions"].values()) == expected["captions"]
    assert sum(summary["counts"]["instances"].values()) == expected["instances"]
    assert summary["categories"] == expected["categories"]
    assert coco.problems == []
    check_schema(coco)


def test_image_paths_are_absolute_and_resolved_in_the_2017_layout(registry, demo_world):
    coco = registry.create("datasets", "coco", root=demo_world / "coco")
    for split in coco.splits():
        paths = coco.table("images", split)["image_path"]
        assert all(os.path.isabs(p) and os.path.isfile(p) for p in paths)
    # Karpathy names COCO_val2014_*.jpg; the 2017 layout holds {cocoid:012d}.jpg
    test = coco.table("images", "test")
    folders = {Path(p).parent.name for p in test["image_path"]}
    assert folders == {"train2017", "val2017"}
    for image_id, path in zip(test["image_id"], test["image_path"], strict=True):
        assert Path(path).name == f"{image_id:012d}.jpg"


def test_categories_are_in_id_order_and_not_contiguous(registry, demo_world):
    coco = registry.create("datasets", "coco", root=demo_world / "coco")
    categories = coco.categories()
    ids = [i for i, _ in categories]
    assert ids == sorted(ids) and len(ids) >= 8
    assert ids != list(range(ids[0], ids[0] + len(ids)))
    names = dict(categories)
    instances = coco.table("instances", "train")
    for cat_id, name in zip(instances["category_id"][:50], instances["category"][:50],
                            strict=True):
        assert names[cat_id] == name


def test_crowd_instances_are_kept_and_flagged(registry, demo_world):
    coco = registry.create("datasets", "coco", root=demo_world / "coco", split_scheme="official")
    raw = []
    for split in ("train", "val"):
        data = json.loads((demo_world / "coco/annotations" / f"instances_{split}2017.json")
                          .read_text())
        raw += [a for a in data["annotations"] if a["iscrowd"]]
    assert raw, "the demo world should hold crowd boxes"
    crowd = [row for split in coco.splits() for row in coco.table("instances", split)
             if row["iscrowd"]]
    assert sorted(r["annotation_id"] for r in crowd) == sorted(a["id"] for a in raw)
    assert all(len(r["bbox"]) == 4 and r["area"] > 0 for r in crowd)


def test_official_splits(registry, demo_world):
    coco = registry.create("datasets", "coco", root=demo_world / "coco", split_scheme="official")
    assert coco.splits() == ["train", "val"]
    counts = coco.summary()["counts"]
    expected = demo_tree(demo_world, "coco")
    assert sum(counts["images"].values()) == expected["images"]
    assert sum(counts["captions"].values()) == expected["captions"]
    assert coco.table("images", "val")["width"][0] == 128
    assert coco.fingerprint() != registry.create(
        "datasets", "coco", root=demo_world / "coco").fingerprint()


def test_second_load_is_served_from_the_cache(registry, demo_world, monkeypatch):
    first = registry.create("datasets", "coco", root=demo_world / "coco")
    from ravlm_plugins.datasets import coco as coco_module

    def no_parsing(*args, **kwargs):
        raise AssertionError("parsed again although the files did not change")

    monkeypatch.setattr(coco_module, "_parse_karpathy", no_parsing)
    second = registry.create("datasets", "coco", root=demo_world / "coco")
    assert second.fingerprint() == first.fingerprint()
    assert second.table("captions", "test")["caption"] == first.table("captions", "test")["caption"]


def test_a_changed_file_is_parsed_again(registry, demo_copy, edit_json):
    root = demo_copy("coco")
    before = registry.create("datasets", "coco", root=root)
    edit_json(root / "dataset_coco.json", lambda d: d["images"].pop())
    after = registry.create("datasets", "coco", root=root)
    assert after.fingerprint() != before.fingerprint()
    assert sum(after.summary()["counts"]["images"].values()) == \
        sum(before.summary()["counts"]["images"].values()) - 1


def _to_2014_layout(src: Path, dst: Path) -> None:
    """The demo tree re-shaped as COCO 2014: COCO_{split}2014_*.jpg, *2014.json files."""
    karpathy = json.loads((src / "dataset_coco.json").read_text())
    by_id = {p.name: p for p in src.glob("*2017/*.jpg")}
    for entry in karpathy["images"]:
        target = dst / entry["filepath"] / entry["filename"]
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(by_id[f"{entry['cocoid']:012d}.jpg"], target)
    shutil.copyfile(src / "dataset_coco.json", dst / "dataset_coco.json")
    split_of = {e["cocoid"]: e["filepath"][:-4] for e in karpathy["images"]}
    (dst / "annotations").mkdir()
    for kind in ("captions", "instances"):
        merged = {"images": [], "annotations": []}
        for split in ("train", "val"):
            data = json.loads((src / "annotations" / f"{kind}_{split}2017.json").read_text())
            merged["images"] += data["images"]
            merged["annotations"] += data["annotations"]
            merged.update({k: v for k, v in data.items() if k not in merged})
        for split in ("train", "val"):
            images = [dict(i, file_name=f"COCO_{split}2014_{i['id']:012d}.jpg")
                      for i in merged["images"] if split_of[i["id"]] == split]
            ids = {i["id"] for i in images}
            data = dict(merged, images=images,
                        annotations=[a for a in merged["annotations"] if a["image_id"] in ids])
            (dst / "annotations" / f"{kind}_{split}2014.json").write_text(json.dumps(data))


def test_2014_layout_official_and_karpathy(registry, demo_world, tmp_path):
    root = tmp_path / "coco2014"
    _to_2014_layout(demo_world / "coco", root)
    official = registry.create("datasets", "coco", root=root, split_scheme="official")
    karpathy = registry.create("datasets", "coco", root=root)
    assert official.splits() == ["train", "val"]
    assert karpathy.splits() == ["train", "restval", "val", "test"]
    path = karpathy.table("images", "test")["image_path"][0]
    assert Path(path).parent.name == "val2014" and Path(path).name.startswith("COCO_val2014_")
    expected = demo_tree(demo_world, "coco")
    assert sum(karpathy.summary()["counts"]["instances"].values()) == expected["instances"]
    assert sum(official.summary()["counts"]["images"].values()) == expected["images"]


def test_root_from_environment_or_a_clear_error(registry, demo_world, monkeypatch):
    with pytest.raises(ConfigError) as info:
        registry.create("datasets", "coco")
    assert "RAVLM_DATA" in str(info.value) and "root=" in str(info.value)
    monkeypatch.setenv("RAVLM_DATA", str(demo_world))
    assert registry.create("datasets", "coco").root == (demo_world / "coco").resolve()


def test_unknown_split_names_the_dataset_and_the_splits(registry, demo_world):
    coco = registry.create("datasets", "coco", root=demo_world / "coco")
    with pytest.raises(DataError, match=r"coco .*split 'dev' has no captions; splits with "
                                        r"captions: train, restval, val, test"):
        coco.table("captions", "dev")
    with pytest.raises(DataError, match="has no 'questions' records"):
        coco.table("questions", "train")


@pytest.mark.parametrize("params, message", [
    ({"year": 2015}, "parameter 'year' = 2015: expected 2014 | 2017 | none"),
    ({"year": "2017"}, "parameter 'year' = \"2017\": expected 2014 | 2017 | none"),
    ({"split_scheme": "karpaty"},
     "parameter 'split_scheme' = \"karpaty\": expected \"official\" | \"karpathy\" | none"),
    ({"on_bad_image": "ignore"}, "expected one of \"fail\", \"skip\""),
    ({"roots": "/data/coco"}, "unknown parameter 'roots'; did you mean 'root'?"),
])
def test_suite_parameters_are_checked_against_the_declared_options(registry, params, message):
    entry = registry.get("datasets", "coco")
    entry.check({"root": "demo", "year": 2014, "split_scheme": "official"}, "suite.toml")
    with pytest.raises(ConfigError, match=re.escape(message)):
        entry.check(params, "suite.toml [data.coco]")
