"""Malformed annotations that used to escape the loaders' one-line errors (a traceback, a
wrong message) or pass silently: each now ends in exit 2 and one line naming the file and
the record, through ``ravlm-bench data check`` and ``ravlm-bench run``."""

from __future__ import annotations

import json
import textwrap

import pytest
from clitools import run_cli
from testhelpers import TINY_SUITE_HEAD

INSTANCES = "annotations/instances_train2017.json"


def _edit(path, change) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(json.dumps(data), encoding="utf-8")


def _deeply_nested(path) -> None:
    depth = 100_000
    path.write_text('{"images": ' + "[" * depth + "]" * depth + "}", encoding="utf-8")


def _set(section: str, row: int, key: str, value):
    def change(data):
        (data[section] if section else data)[row][key] = value
    return change


def _repeat_id(section: str, key: str):
    def change(data):
        items = data[section] if section else data
        items[1][key] = items[0][key]
    return change


def _lone_surrogate_answer(data) -> None:
    data[0]["qas"][0]["answer"] = "yes\ud800"  # json.dumps writes it as the escape \ud800


def _zero_padded_token_name(root) -> None:
    # without the Karpathy file the token file is read; "0N.jpg" gets the id of "N.jpg"
    (root / "dataset_flickr30k.json").unlink()
    token = root / "results_20130124.token"
    lines = token.read_text(encoding="utf-8").splitlines()
    lines[-1] = "0" + lines[0]
    token.write_text("\n".join(lines) + "\n", encoding="utf-8")


# (tree, file edited, how, what the one line must say after "FILE: ")
CASES = {
    "deeply nested JSON": (
        "coco", INSTANCES, _deeply_nested,
        "malformed JSON: arrays or objects nested deeper than Python's recursion limit"),
    "karpathy cocoid not an integer": (
        "coco", "dataset_coco.json", _set("images", 0, "cocoid", "abc"),
        "images[0] key 'cocoid' is 'abc', expected an integer"),
    "image id 1.5": (
        "coco", INSTANCES, _set("images", 0, "id", 1.5),
        "images[0] key 'id' is 1.5, expected an integer"),
    "image id 10**30": (
        "coco", INSTANCES, _set("images", 0, "id", 10**30),
        f"images[0] key 'id' is {10**30}, expected an integer from {-2**63} to {2**63 - 1}"),
    "category_id a string": (
        "coco", INSTANCES, _set("annotations", 0, "category_id", "1"),
        "annotations[0] key 'category_id' is '1', expected an integer"),
    "duplicate image ids, COCO instances": (
        "coco", INSTANCES, _repeat_id("images", "id"),
        "images[1] key 'id' is {id}, as has images[0]; image ids must be unique"),
    "duplicate image ids, COCO Karpathy": (
        "coco", "dataset_coco.json", _repeat_id("images", "cocoid"),
        "images[1] key 'cocoid' is {id}, as has images[0]; image ids must be unique"),
    "duplicate image ids, Flickr30k Karpathy": (
        "flickr30k", "dataset_flickr30k.json", _repeat_id("images", "filename"),
        "images[1] ({name}) has id {id}, as has images[0] ({name}); image ids must be unique"),
    "duplicate image ids, Flickr30k token file": (
        "flickr30k", "results_20130124.token", None,
        "image 0{name} has id {id}, as has image {name}; image ids must be unique"),
    "lone surrogate in a string": (
        "visual_genome", "question_answers.json", _lone_surrogate_answer,
        "malformed JSON at line 1, column {column}: \\ud800 is half a surrogate pair, not a "
        "character"),
    "duplicate image ids, Visual Genome": (
        "visual_genome", "image_data.json", _repeat_id(None, "image_id"),
        "[1] key 'image_id' is {id}, as has [0]; image ids must be unique"),
}


def _first_image(root, tree: str, display: str) -> tuple[int, str]:
    """The id and file name of the image the duplicate cases copy, before the edit."""
    if display == "results_20130124.token":
        name = (root / display).read_text(encoding="utf-8").split("#", 1)[0]
        return int(name.split(".")[0]), name
    data = json.loads((root / display).read_text(encoding="utf-8"))
    first = (data if tree == "visual_genome" else data["images"])[0]
    if tree == "flickr30k":
        return int(first["filename"].split(".")[0]), first["filename"]
    return first.get("image_id", first.get("cocoid", first.get("id"))), ""


@pytest.fixture(params=sorted(CASES))
def malformed(request, demo_copy):
    """(the tree, its format, the one line expected on stderr)"""
    tree, display, change, says = CASES[request.param]
    root = demo_copy(tree)
    image_id, name = _first_image(root, tree, display)
    if change is None:
        _zero_padded_token_name(root)
    elif change is _deeply_nested:
        change(root / display)
    else:
        _edit(root / display, change)
    column = (root / display).read_text(encoding="utf-8").find("\\ud800") + 1
    return root, tree, f"{display}: {says.format(id=image_id, name=name, column=column)}"


def _the_one_line(result) -> str:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr and len(lines[0]) < 300
    return lines[0]


def test_data_check_names_the_file_and_the_record(malformed, tmp_path):
    root, tree, says = malformed
    result = run_cli("data", "check", str(root), "--format", tree, cache=tmp_path / "cache")
    assert _the_one_line(result) == f"error: {says}"


SUITE = TINY_SUITE_HEAD + """
[systems.concat]
fusion_head = {{ name = "concat", epochs = 1, hidden = 16 }}

[tasks.coco-category]
"""


@pytest.mark.parametrize("case", ["deeply nested JSON", "karpathy cocoid not an integer",
                                  "image id 1.5"])
def test_a_run_stops_with_the_same_line(case, demo_copy, tmp_path):
    tree, display, change, says = CASES[case]
    root = demo_copy(tree)
    if change is _deeply_nested:
        change(root / display)
    else:
        _edit(root / display, change)
    suite = tmp_path / "suite.toml"
    suite.write_text(textwrap.dedent(SUITE.format(name="malformed", root=tmp_path)))
    result = run_cli("run", str(suite), "--out", str(tmp_path / "run"), "-q",
                     cache=tmp_path / "cache")
    assert _the_one_line(result) == f"error: {display}: {says}"
