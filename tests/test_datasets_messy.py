"""Every messy-data case of issue 3: its message (file and item) and its outcome."""

from __future__ import annotations

import json
import re

import pytest

from ravlm_bench.foundation.errors import DataError


def create(registry, name, root, **params):
    """Create through the registry, as a run does (a DataError passes through unwrapped)."""
    return registry.create("datasets", name, root=root, **params)


def captions_file(root):
    return root / "annotations" / "captions_train2017.json"


def test_annotations_referencing_unknown_images_are_dropped_and_counted(
        registry, demo_copy, edit_json):
    root = demo_copy("coco")
    clean = create(registry, "coco", root, split_scheme="official")

    def add_dangling(data):
        data["annotations"] += [{"image_id": 999_999_001, "id": 1_000_001, "caption": "x"},
                                {"image_id": 999_999_001, "id": 1_000_002, "caption": "y"},
                                {"image_id": 999_999_002, "id": 1_000_003, "caption": "z"}]

    edit_json(captions_file(root), add_dangling)
    coco = create(registry, "coco", root, split_scheme="official")
    assert coco.problems == ["annotations/captions_train2017.json: 3 annotations reference 2 "
                             "image ids not in 'images' (dropped)"]
    assert coco.summary()["counts"]["captions"] == clean.summary()["counts"]["captions"]


def test_missing_image_fails_by_default_naming_files_and_count(registry, demo_copy):
    root = demo_copy("coco")
    victims = sorted((root / "train2017").glob("*.jpg"))[:7]
    for path in victims:
        path.unlink()
    with pytest.raises(DataError) as info:
        create(registry, "coco", root)
    message = str(info.value)
    assert "7 image files are missing or corrupt" in message
    listed = re.findall(r"train2017/(\d+\.jpg) \(missing\)", message)
    assert len(listed) == 5 and set(listed) <= {p.name for p in victims}
    assert "and 2 more" in message and "on_bad_image='skip'" in message


def test_missing_and_corrupt_images_skipped_with_their_records(registry, demo_copy):
    root = demo_copy("coco")
    clean = create(registry, "coco", root)
    missing, corrupt = sorted((root / "val2017").glob("*.jpg"))[:2]
    missing.unlink()
    corrupt.write_bytes(b"this is not a JPEG")
    coco = create(registry, "coco", root, on_bad_image="skip")
    assert len(coco.problems) == 1
    problem = coco.problems[0]
    assert problem.startswith("2 image files are missing or corrupt: ")
    assert f"val2017/{missing.name} (missing)" in problem
    assert f"val2017/{corrupt.name} (corrupt: UnidentifiedImageError)" in problem
    assert problem.endswith("(skipped with their records)")
    ids = {int(missing.stem), int(corrupt.stem)}
    kept = {i for s in coco.splits() for i in coco.table("images", s)["image_id"]}
    assert not ids & kept
    for kind in ("captions", "instances"):
        rows = [i for s in coco.splits() for i in coco.table(kind, s)["image_id"]]
        assert not ids & set(rows)
        before = sum(clean.summary()["counts"][kind].values())
        assert 0 < before - len(rows) <= 7 * 2  # the two images' records went with them
    assert sum(coco.summary()["counts"]["images"].values()) == \
        sum(clean.summary()["counts"]["images"].values()) - 2


def test_check_images_false_does_not_open_them(registry, demo_copy):
    root = demo_copy("coco")
    next((root / "val2017").glob("*.jpg")).unlink()
    coco = create(registry, "coco", root, check_images=False)
    assert coco.problems == []


@pytest.mark.parametrize("bad_name, reason", [
    ("../../outside.jpg", "escapes the dataset root"),
    ("/etc/passwd", "is an absolute path"),
    ("sub/../../outside.jpg", "escapes the dataset root"),
    ("C:\\Windows\\win.ini", "is an absolute path"),
])
def test_file_names_escaping_the_root_are_rejected(registry, demo_copy, edit_json, bad_name,
                                                    reason):
    root = demo_copy("coco")
    data = json.loads(captions_file(root).read_text())
    victim = data["images"][2]["id"]

    def poison(d):
        for image in d["images"]:
            if image["id"] == victim:
                image["file_name"] = bad_name

    edit_json(captions_file(root), poison)
    edit_json(root / "annotations" / "instances_train2017.json", poison)
    coco = create(registry, "coco", root, split_scheme="official")
    assert (f"annotations/captions_train2017.json: 1 images with unsafe file names rejected "
            f"(with their records), e.g. images[2] file_name {bad_name!r} {reason}"
            in coco.problems)
    for kind in ("images", "captions", "instances"):
        assert victim not in coco.table(kind, "train")["image_id"]


def test_flickr_file_name_escaping_the_root_is_rejected(registry, demo_copy, edit_json):
    root = demo_copy("flickr30k")
    edit_json(root / "dataset_flickr30k.json",
              lambda d: d["images"][0].update(filename="../../../etc/hosts"))
    flickr = create(registry, "flickr30k", root)
    assert flickr.problems == [
        "dataset_flickr30k.json: 1 images with unsafe file names rejected (with their "
        "captions), e.g. images[0] filename '../../../etc/hosts' escapes the dataset root"]


def test_malformed_json_names_file_line_and_column(registry, demo_copy):
    root = demo_copy("coco")
    path = root / "annotations" / "instances_val2017.json"
    text = json.dumps(json.loads(path.read_text()), indent=1)
    lines = text.splitlines()
    lines[5] = lines[5].rstrip(",") + ",,"  # a doubled comma on line 6
    path.write_text("\n".join(lines))
    column = len(lines[5])
    with pytest.raises(DataError, match=(
            rf"^annotations/instances_val2017.json: malformed JSON at line 6, column {column}: "
            "Expecting")):
        create(registry, "coco", root)


def test_truncated_json_and_nan_are_malformed(registry, demo_copy):
    root = demo_copy("visual_genome")
    text = (root / "image_data.json").read_text()
    (root / "image_data.json").write_text(text[:200])
    with pytest.raises(DataError, match=r"^image_data.json: malformed JSON at line 1, column "):
        create(registry, "visual_genome", root)
    (root / "image_data.json").write_text('[{"image_id": 1, "url": "x/VG_100K/1.jpg",\n'
                                          '"width": NaN, "height": 2}]')
    with pytest.raises(DataError, match=r"line 2, column 10: NaN is not valid JSON"):
        create(registry, "visual_genome", root)


def test_missing_required_key_names_file_item_and_key(registry, demo_copy, edit_json):
    root = demo_copy("coco")
    edit_json(captions_file(root), lambda d: d["annotations"][3].pop("image_id"))
    with pytest.raises(DataError, match=r"^annotations/captions_train2017.json: annotations\[3\] "
                                        r"lacks required key 'image_id'$"):
        create(registry, "coco", root, split_scheme="official")
    root = demo_copy("visual_genome")
    edit_json(root / "question_answers.json", lambda d: d[4]["qas"][1].pop("answer"))
    with pytest.raises(DataError, match=r"^question_answers.json: \[4\].qas\[1\] lacks required "
                                        r"key 'answer'$"):
        create(registry, "visual_genome", root)


def test_missing_key_in_karpathy_and_wrong_types(registry, demo_copy, edit_json):
    root = demo_copy("coco")
    edit_json(root / "dataset_coco.json", lambda d: d["images"][5].pop("split"))
    with pytest.raises(DataError, match=r"^dataset_coco.json: images\[5\] lacks required key "
                                        r"'split'$"):
        create(registry, "coco", root)
    root = demo_copy("flickr30k")
    edit_json(root / "dataset_flickr30k.json",
              lambda d: d["images"][1]["sentences"][2].pop("raw"))
    with pytest.raises(DataError, match=r"images\[1\].sentences\[2\] lacks required key 'raw'"):
        create(registry, "flickr30k", root)


def test_wrong_value_type_names_the_item(registry, demo_copy, edit_json):
    root = demo_copy("coco")
    edit_json(root / "annotations" / "instances_train2017.json",
              lambda d: d["annotations"][8].update(bbox=[1, 2, 3]))
    with pytest.raises(DataError, match=r"instances_train2017.json: annotations\[8\] key 'bbox' "
                                        r"is \[1, 2, 3\], expected \[x, y, width, height\]"):
        create(registry, "coco", root)


def test_crowd_instances_are_flagged_never_dropped(registry, demo_world):
    coco = create(registry, "coco", demo_world / "coco")
    rows = [r for s in coco.splits() for r in coco.table("instances", s)]
    crowd = [r for r in rows if r["iscrowd"]]
    assert crowd and all(isinstance(r["iscrowd"], bool) for r in rows)
    assert len(rows) == json.loads((demo_world / "demo_world.json").read_text())[
        "trees"]["coco"]["instances"]


def test_vg_answers_are_normalised(registry, demo_copy, edit_json):
    root = demo_copy("visual_genome")

    def answers(data):
        qa = data[0]["qas"][0] if data[0]["qas"] else None
        if qa is None:
            data[0]["qas"] = [{"qa_id": 10**9, "image_id": data[0]["id"], "question": "Q?",
                               "answer": "", "q_objects": [], "a_objects": []}]
            qa = data[0]["qas"][0]
        qa["answer"] = "  Green. "

    edit_json(root / "question_answers.json", answers)
    vg = create(registry, "visual_genome", root)
    rows = [r for s in vg.splits() for r in vg.table("questions", s)]
    row = next(r for r in rows if r["answer"].strip() == "Green.")
    assert row["answer_norm"] == "green"


def test_empty_split_is_a_clear_error(registry, demo_copy, edit_json):
    root = demo_copy("coco")
    edit_json(root / "dataset_coco.json",
              lambda d: d.update(images=[i for i in d["images"] if i["split"] != "test"]))
    coco = create(registry, "coco", root)
    assert "test" not in coco.splits()
    with pytest.raises(DataError, match=r"^coco \(.*\): split 'test' has no images; splits with "
                                        r"images: train, restval, val$"):
        coco.table("images", "test")


def test_a_tree_with_no_usable_image_is_unusable(registry, demo_copy):
    root = demo_copy("flickr30k")
    for path in (root / "flickr30k-images").glob("*.jpg"):
        path.unlink()
    with pytest.raises(DataError, match=r"^flickr30k \(.*\): no usable images"):
        create(registry, "flickr30k", root, on_bad_image="skip")


def _largest_arrow(entry):
    return max(entry.glob("*.arrow"), key=lambda p: p.stat().st_size)


def _flip_middle_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _drop_checksums(path):
    meta = json.loads(path.read_text(encoding="utf-8"))
    del meta["integrity"]
    path.write_text(json.dumps(meta), encoding="utf-8")


CACHE_DAMAGE = {
    "arrow truncated": (_largest_arrow, lambda p: p.write_bytes(p.read_bytes()[:1000])),
    "arrow byte flipped": (_largest_arrow, _flip_middle_byte),
    "arrow emptied": (_largest_arrow, lambda p: p.write_bytes(b"")),
    "meta byte flipped": (lambda e: e / "meta.json", _flip_middle_byte),
    "meta emptied": (lambda e: e / "meta.json", lambda p: p.write_bytes(b"")),
    "meta a JSON list": (lambda e: e / "meta.json", lambda p: p.write_text("[1, 2]")),
    "meta without checksums (older version)": (lambda e: e / "meta.json", _drop_checksums),
}


def _all_tables(dataset):
    """Every (kind, split) table as Python rows: copies, so damaging the files leaves them."""
    return {(kind, split): dataset.table(kind, split).data.table.to_pylist()
            for kind in dataset.kinds for split in dataset.splits()
            if dataset.count(kind, split)}


@pytest.mark.parametrize("damage", list(CACHE_DAMAGE))
def test_a_damaged_parsed_dataset_cache_entry_is_parsed_again(registry, demo_copy, caplog,
                                                              damage):
    root = demo_copy("coco")
    clean = create(registry, "coco", root)
    expected = _all_tables(clean)
    entry = clean._directory
    victim, harm = CACHE_DAMAGE[damage]
    harm(victim(entry))
    del clean

    caplog.clear()
    with caplog.at_level("WARNING"):
        reloaded = create(registry, "coco", root)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert [w for w in warnings if "cache entry" in w] == warnings
    assert len(warnings) == 1 and str(entry) in warnings[0]
    if "checksums" in damage:
        assert "older version" in warnings[0]
    assert _all_tables(reloaded) == expected

    caplog.clear()
    with caplog.at_level("WARNING"):
        again = create(registry, "coco", root)  # the rewritten entry is trusted again
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
    assert _all_tables(again) == expected
