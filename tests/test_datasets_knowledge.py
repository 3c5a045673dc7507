"""The knowledge dataset plugins: ``okvqa``, ``aokvqa``, ``infoseek`` and ``passages``, read
from small trees written here in their real file names and fields, with real JPEG files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from clitools import run_cli

from ravlm_bench.api import DataError, check_dataset

# ---------------------------------------------------------------------------------------
# Trees in the real formats
# ---------------------------------------------------------------------------------------


def write_jpeg(path: Path, size: tuple[int, int] = (8, 6)) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (120, 30, 200)).save(path, format="JPEG")


def write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")


def write_jsonl(path: Path, records: list) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def vqa_answers(*answers: str) -> list[dict]:
    return [{"answer": a, "answer_confidence": "yes", "answer_id": i + 1}
            for i, a in enumerate(answers)]


OKVQA = {  # subset -> [(question id, image id, question, ten answers, question type)]
    "train2014": [
        (90, 9, "What sport is this?", ["Tennis."] * 6 + ["tennis", "racket"] * 2, "eight"),
        (250, 25, "Who invented it?", ["edison"] * 4 + ["Tesla"] * 4 + ["a man"] * 2, "one"),
    ],
    "val2014": [
        (420, 42, "What is it made of?", ["Two"] * 3 + ["2"] * 3 + ["wood"] * 4, "two"),
        (421, 42, "Where is this?", ["kitchen"] * 10, "five"),
        (70, 7, "What animal is it?", ["dog"] * 10, "other"),
    ],
}


def okvqa_tree(root: Path, image_root: Path | None = None) -> Path:
    images = image_root or root
    for subset, rows in OKVQA.items():
        write_json(root / f"OpenEnded_mscoco_{subset}_questions.json", {
            "info": {}, "license": {}, "data_subtype": subset, "data_type": "mscoco",
            "task_type": "Open-Ended",
            "questions": [{"image_id": i, "question": q, "question_id": qid}
                          for qid, i, q, _, _ in rows]})
        write_json(root / f"mscoco_{subset}_annotations.json", {
            "info": {}, "license": {}, "data_subtype": subset,
            "annotations": [{"question_id": qid, "image_id": i, "answers": vqa_answers(*a),
                             "answer_type": "other", "question_type": t}
                            for qid, i, _, a, t in rows]})
        for _, image_id, _, _, _ in rows:
            write_jpeg(images / subset / f"COCO_{subset}_{image_id:012d}.jpg")
    return root


def aokvqa_record(split: str, question_id: str, image_id: int, correct: int | None):
    record = {"split": split, "image_id": image_id, "question_id": question_id,
              "question": f"What is {question_id} about?",
              "choices": ["bread", "cake", "pie", "soup"],
              "difficult_direct_answer": False}
    if correct is not None:
        record.update(correct_choice_idx=correct,
                      direct_answers=["cake"] * 7 + ["Cake", "pie", "bread"],
                      rationales=["r1", "r2", "r3"])
    return record


def aokvqa_tree(root: Path) -> Path:
    splits = {"train": [("22MexNkBPpdZGX6sxbxVBH", 11, 1), ("2fBr7r3PE8Zvx9vqyMA4ZJ", 12, 2)],
              "val": [("22jbM6gDGwZVQxS3e2hrwD", 21, 0)],
              "test": [("2KAGqnZ8qAwRByaoDLtL4K", 31, None)]}
    for split, rows in splits.items():
        write_json(root / f"aokvqa_v1p0_{split}.json",
                   [aokvqa_record(split, qid, image_id, c) for qid, image_id, c in rows])
        for _, image_id, _ in rows:
            write_jpeg(root / f"{split}2017" / f"{image_id:012d}.jpg")
    return root


INFOSEEK = {
    "train": [
        {"data_id": "infoseek_train_00000000", "image_id": "oven_01963180",
         "question": "Which country is this building in?", "answer": ["France", "FR"],
         "answer_eval": ["France", "French Republic"], "data_split": "train",
         "entity_id": "Q90"},
        {"data_id": "infoseek_train_00000001", "image_id": "oven_00000007",
         "question": "How tall is this tower in metres?", "answer": ["330"],
         "answer_eval": [{"wikidata": 330.0, "range": [297.0, 363.0]}], "data_split": "train",
         "entity_id": "Q243"},
    ],
    "val": [
        {"data_id": "infoseek_val_00000000", "image_id": "oven_01963180",
         "question": "What river runs by it?", "answer": ["Seine"],
         "answer_eval": ["Seine", "the Seine"], "data_split": "val_unseen_question",
         "entity_id": "Q90", "question_type": "String"},
        {"data_id": "infoseek_val_00000001", "image_id": "oven_00123456",
         "question": "When was it built?", "answer": ["1887"],
         "answer_eval": [{"wikidata": 1887, "range": [1887, 1887]}],
         "data_split": "val_unseen_entity", "question_type": "Time"},
    ],
}


def infoseek_tree(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, records in INFOSEEK.items():
        write_jsonl(root / f"infoseek_{name}.jsonl", records)
        for record in records:
            write_jpeg(root / "images" / f"{record['image_id']}.jpg")
    return root


PASSAGES = [
    {"_id": "p1", "title": "Eiffel Tower", "text": "A wrought-iron tower in Paris.",
     "image": "images/eiffel.jpg", "entity_id": "Q243"},
    {"_id": "p2", "title": "Seine", "text": "A river in France.", "entity_id": "Q1471"},
    {"_id": "p3", "title": "", "text": "Paris is the capital of France.",
     "image": "images/eiffel.jpg"},
    {"_id": "p4", "title": "Cake", "text": "A sweet baked food.", "image": None},
]


def passages_tree(root: Path, records: list[dict] = PASSAGES) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    write_jsonl(root / "corpus.jsonl", records)
    if any(r.get("image") for r in records):
        write_jpeg(root / "images" / "eiffel.jpg", (10, 4))
    return root


def rows(dataset, kind: str, split: str) -> list[dict]:
    return dataset.table(kind, split).to_list()


# ---------------------------------------------------------------------------------------
# What each loader reads
# ---------------------------------------------------------------------------------------


def test_okvqa_rows(registry, tmp_path):
    root = okvqa_tree(tmp_path / "okvqa")
    okvqa = registry.create("datasets", "okvqa", root=root)
    check_dataset(okvqa)
    assert okvqa.kinds == ("images", "knowledge_questions")
    assert okvqa.splits() == ["train", "val"]
    assert okvqa.problems == [] and okvqa.notes == []
    train = rows(okvqa, "knowledge_questions", "train")
    assert train[0] == {
        "question_id": "90", "image_id": 9, "question": "What sport is this?",
        # the ten answers as given; the training answer normalised ("Tennis." -> "tennis")
        "answer": "tennis", "answers": ["Tennis."] * 6 + ["tennis", "racket"] * 2,
        "choices": [], "correct_choice": -1, "answer_range": [], "question_type": "eight",
        "entity_id": "", "split": "train"}
    assert train[1]["answer"] == "edison"  # a 4-4 tie with "tesla": alphabetical
    val = {r["question_id"]: r for r in rows(okvqa, "knowledge_questions", "val")}
    assert val["420"]["answer"] == "2"  # "Two" and "2" are one answer once normalised
    images = rows(okvqa, "images", "val")
    assert [(i["image_id"], Path(i["image_path"])) for i in images] == [
        (42, root / "val2014" / "COCO_val2014_000000000042.jpg"),
        (7, root / "val2014" / "COCO_val2014_000000000007.jpg")]
    assert {(i["coco_id"], i["flickr_id"], i["width"], i["height"]) for i in images} == {
        (42, -1, 8, 6), (7, -1, 8, 6)}


def test_okvqa_images_under_another_root(registry, tmp_path):
    root = okvqa_tree(tmp_path / "okvqa", image_root=tmp_path / "coco")
    okvqa = registry.create("datasets", "okvqa", root=root, image_root="../coco")
    path = Path(rows(okvqa, "images", "train")[0]["image_path"])
    assert path == tmp_path / "coco" / "train2014" / "COCO_train2014_000000000009.jpg"
    with pytest.raises(DataError, match=r"^okvqa \(.*\): image_root .*elsewhere does not exist"):
        registry.create("datasets", "okvqa", root=root, image_root="elsewhere")


def test_aokvqa_rows(registry, tmp_path):
    root = aokvqa_tree(tmp_path / "aokvqa")
    aokvqa = registry.create("datasets", "aokvqa", root=root)
    check_dataset(aokvqa)
    assert aokvqa.splits() == ["train", "val", "test"]
    first = rows(aokvqa, "knowledge_questions", "train")[0]
    assert first == {
        "question_id": "22MexNkBPpdZGX6sxbxVBH", "image_id": 11,
        "question": "What is 22MexNkBPpdZGX6sxbxVBH about?", "answer": "cake",
        "answers": ["cake"] * 7 + ["Cake", "pie", "bread"],  # raw: no normalisation
        "choices": ["bread", "cake", "pie", "soup"], "correct_choice": 1, "answer_range": [],
        "question_type": "", "entity_id": "", "split": "train"}
    test = rows(aokvqa, "knowledge_questions", "test")[0]
    assert (test["answer"], test["answers"], test["correct_choice"]) == ("", [], -1)
    image = rows(aokvqa, "images", "test")[0]
    assert Path(image["image_path"]) == root / "test2017" / "000000000031.jpg"
    assert image["coco_id"] == 31


def test_infoseek_rows(registry, tmp_path):
    root = infoseek_tree(tmp_path / "infoseek")
    infoseek = registry.create("datasets", "infoseek", root=root)
    check_dataset(infoseek)
    assert infoseek.splits() == ["train", "unseen_entity", "unseen_question"]
    train = rows(infoseek, "knowledge_questions", "train")
    assert train[0] == {
        "question_id": "infoseek_train_00000000", "image_id": 1963180,
        "question": "Which country is this building in?", "answer": "France",
        "answers": ["France", "French Republic"], "choices": [], "correct_choice": -1,
        "answer_range": [], "question_type": "String", "entity_id": "Q90", "split": "train"}
    numeric = train[1]
    assert numeric["answers"] == ["330.0", "330"]
    assert numeric["answer_range"] == [297.0, 363.0]
    assert numeric["question_type"] == "Numerical"  # none given: it has a range
    entity = rows(infoseek, "knowledge_questions", "unseen_entity")[0]
    assert (entity["answers"], entity["answer_range"], entity["question_type"],
            entity["entity_id"]) == (["1887", "1887"], [1887.0, 1887.0], "Time", "")
    question = rows(infoseek, "knowledge_questions", "unseen_question")[0]
    assert question["question_type"] == "String"
    images = rows(infoseek, "images", "unseen_question")
    # an image asked about in two splits is listed in each
    assert [(i["image_id"], Path(i["image_path"]), i["coco_id"]) for i in images] == [
        (1963180, root / "images" / "oven_01963180.jpg", -1)]
    assert 1963180 in {i["image_id"] for i in rows(infoseek, "images", "train")}


def test_infoseek_test_questions_keep_a_split_of_their_own(registry, tmp_path):
    root = infoseek_tree(tmp_path / "infoseek")
    write_jsonl(root / "infoseek_test.jsonl", [
        {"data_id": "infoseek_test_00000000", "image_id": "oven_00000007",
         "question": "Who designed it?", "data_split": "test_unseen_entity"}])
    infoseek = registry.create("datasets", "infoseek", root=root)
    counts = infoseek.summary()["counts"]["knowledge_questions"]
    assert counts["unseen_entity"] == 1 and counts["test_unseen_entity"] == 1
    assert not infoseek.notes


def test_infoseek_test_questions_joining_a_scored_split_are_noted(registry, tmp_path):
    root = infoseek_tree(tmp_path / "infoseek")
    write_jsonl(root / "infoseek_test.jsonl", [
        {"data_id": "infoseek_test_00000000", "image_id": "oven_00000007",
         "question": "Who designed it?", "data_split": "unseen_entity"}])
    infoseek = registry.create("datasets", "infoseek", root=root)
    assert infoseek.summary()["counts"]["knowledge_questions"]["unseen_entity"] == 2
    assert len(infoseek.notes) == 1 and "infoseek_test.jsonl: 1 questions" in infoseek.notes[0]


def test_passages_jsonl_with_images(registry, tmp_path):
    root = passages_tree(tmp_path / "kb")
    passages = registry.create("datasets", "passages", root=root)
    check_dataset(passages)
    assert passages.kinds == ("passages", "images")
    assert passages.splits() == ["corpus"]
    table = rows(passages, "passages", "corpus")
    eiffel = str(root / "images" / "eiffel.jpg")
    assert table == [
        {"passage_id": "p1", "title": "Eiffel Tower", "text": "A wrought-iron tower in Paris.",
         "image_path": eiffel, "entity_id": "Q243", "split": "corpus"},
        {"passage_id": "p2", "title": "Seine", "text": "A river in France.",
         "image_path": "", "entity_id": "Q1471", "split": "corpus"},
        {"passage_id": "p3", "title": "", "text": "Paris is the capital of France.",
         "image_path": eiffel, "entity_id": "", "split": "corpus"},
        {"passage_id": "p4", "title": "Cake", "text": "A sweet baked food.",
         "image_path": "", "entity_id": "", "split": "corpus"}]
    assert rows(passages, "images", "corpus") == [
        {"image_id": 0, "image_path": eiffel, "split": "corpus", "width": 10, "height": 4,
         "coco_id": -1, "flickr_id": -1}]


def test_passages_without_images_have_no_images_kind(registry, tmp_path):
    records = [{k: v for k, v in r.items() if k != "image"} for r in PASSAGES]
    passages = registry.create("datasets", "passages", root=passages_tree(tmp_path / "kb",
                                                                          records))
    check_dataset(passages)
    assert passages.kinds == ("passages",)
    assert passages.splits() == ["corpus"]
    assert passages.summary()["counts"] == {"passages": {"corpus": 4}}
    with pytest.raises(DataError, match="has no 'images' records"):
        passages.table("images", "corpus")


def _as_frame(records: list[dict], id_column: str = "_id"):
    import pandas as pd

    frame = pd.DataFrame([{**r, "image": r.get("image")} for r in records])
    return frame.rename(columns={"_id": id_column})


@pytest.mark.parametrize("format", ["parquet", "hf"])
def test_passages_parquet_and_saved_dataset_read_like_jsonl(registry, tmp_path, format):
    expected = rows(registry.create("datasets", "passages",
                                    root=passages_tree(tmp_path / "jsonl")), "passages", "corpus")
    root = tmp_path / format
    write_jpeg(root / "images" / "eiffel.jpg", (10, 4))
    frame = _as_frame(PASSAGES, "id" if format == "hf" else "_id")
    if format == "parquet":
        frame.to_parquet(root / "corpus.parquet")
    else:
        from datasets import Dataset

        Dataset.from_pandas(frame, preserve_index=False).save_to_disk(str(root))
    passages = registry.create("datasets", "passages", root=root)  # format found on its own
    check_dataset(passages)
    got = rows(passages, "passages", "corpus")
    assert [{**r, "image_path": r["image_path"].replace(str(root), "ROOT")} for r in got] == [
        {**r, "image_path": r["image_path"].replace(str(tmp_path / "jsonl"), "ROOT")}
        for r in expected]


def test_second_load_is_served_from_the_cache(registry, tmp_path, monkeypatch):
    from ravlm_plugins.datasets import infoseek as infoseek_module

    root = infoseek_tree(tmp_path / "infoseek")
    first = registry.create("datasets", "infoseek", root=root)

    def no_parsing(*args, **kwargs):
        raise AssertionError("parsed again although the files did not change")

    monkeypatch.setattr(infoseek_module, "_parse", no_parsing)
    second = registry.create("datasets", "infoseek", root=root)
    assert second.fingerprint() == first.fingerprint()
    assert rows(second, "knowledge_questions", "train") == rows(first, "knowledge_questions",
                                                                "train")
    monkeypatch.undo()
    write_jsonl(root / "infoseek_val.jsonl", INFOSEEK["val"][:1])
    third = registry.create("datasets", "infoseek", root=root)
    assert third.fingerprint() != first.fingerprint()
    assert third.splits() == ["train", "unseen_question"]


def test_bad_images_fail_or_are_skipped_with_their_records(registry, tmp_path):
    root = passages_tree(tmp_path / "kb")
    (root / "images" / "eiffel.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match=r"images/eiffel.jpg \(corrupt"):
        registry.create("datasets", "passages", root=root)
    passages = registry.create("datasets", "passages", root=root, on_bad_image="skip")
    assert [r["passage_id"] for r in rows(passages, "passages", "corpus")] == ["p2", "p4"]
    assert passages.bad_images == [("images/eiffel.jpg", passages.bad_images[0][1])]

    root = okvqa_tree(tmp_path / "okvqa")
    (root / "val2014" / "COCO_val2014_000000000042.jpg").unlink()
    okvqa = registry.create("datasets", "okvqa", root=root, on_bad_image="skip")
    assert [r["question_id"] for r in rows(okvqa, "knowledge_questions", "val")] == ["70"]


# ---------------------------------------------------------------------------------------
# Malformed files: one line naming the file and the record
# ---------------------------------------------------------------------------------------


def _edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    write_json(path, data)


def _edit_line(path: Path, number: int, change) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    record = json.loads(lines[number - 1])
    change(record)
    lines[number - 1] = json.dumps(record)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _replace_line(path: Path, number: int, text: str) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[number - 1] = text
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _set(section: str | None, index: int, key: str, value):
    """A change to a JSON file: its record ``[section][index]`` gets ``key = value``."""
    def change(data):
        (data[section] if section else data)[index][key] = value
    return lambda path: _edit_json(path, change)


def _delete(section: str | None, index: int, key: str):
    def change(data):
        del (data[section] if section else data)[index][key]
    return lambda path: _edit_json(path, change)


def _setter(key: str, value):
    def change(record):
        record[key] = value
    return change


OKQ = "OpenEnded_mscoco_val2014_questions.json"
OKA = "mscoco_val2014_annotations.json"
AOK = "aokvqa_v1p0_train.json"
INFO = "infoseek_val.jsonl"

# (format, tree, file, how it is broken, the line that must follow "error: FILE: ")
BROKEN = {
    "okvqa invalid JSON": (
        "okvqa", okvqa_tree, OKQ, lambda p: p.write_text('{"questions": [1,]}'),
        "malformed JSON at line 1, column 18: Expecting value"),
    "okvqa question id a string": (
        "okvqa", okvqa_tree, OKQ, _set("questions", 1, "question_id", "421"),
        "questions[1] key 'question_id' is '421', expected an integer"),
    "okvqa question without image_id": (
        "okvqa", okvqa_tree, OKQ, _delete("questions", 2, "image_id"),
        "questions[2] lacks required key 'image_id'"),
    "okvqa duplicate question id": (
        "okvqa", okvqa_tree, OKQ, _set("questions", 1, "question_id", 420),
        f"questions[1] has question id '420', as has {OKQ} questions[0]; question ids must "
        "be unique"),
    "okvqa question without annotation": (
        "okvqa", okvqa_tree, OKA, lambda p: _edit_json(p, lambda d: d["annotations"].pop(0)),
        None),  # the message names the questions file: checked below
    "okvqa annotation about another image": (
        "okvqa", okvqa_tree, OKA, _set("annotations", 2, "image_id", 8),
        f"annotations[2] (question 70) is about image 8, but {OKQ} questions[2] asks about "
        "image 7"),
    "okvqa answers not a list": (
        "okvqa", okvqa_tree, OKA, _set("annotations", 0, "answers", "two"),
        "annotations[0] key 'answers' is a string, expected a list"),
    "okvqa answer not a string": (
        "okvqa", okvqa_tree, OKA,
        lambda p: _edit_json(p, lambda d: d["annotations"][1]["answers"][3].update(answer=3)),
        "annotations[1].answers[3] key 'answer' is 3, expected a string"),
    "aokvqa question id an integer": (
        "aokvqa", aokvqa_tree, AOK, _set(None, 1, "question_id", 17),
        "[1] key 'question_id' is 17, expected a string"),
    "aokvqa correct choice outside the choices": (
        "aokvqa", aokvqa_tree, AOK, _set(None, 0, "correct_choice_idx", 4),
        "[0] key 'correct_choice_idx' is 4, outside its 4 choices"),
    "aokvqa direct answers of the wrong type": (
        "aokvqa", aokvqa_tree, AOK, _set(None, 0, "direct_answers", [1, 2]),
        "[0] key 'direct_answers' is [1, 2], expected a list of strings"),
    "aokvqa train record without answers": (
        "aokvqa", aokvqa_tree, AOK, _delete(None, 1, "direct_answers"),
        "[1] lacks required key 'direct_answers'"),
    "infoseek invalid JSON line": (
        "infoseek", infoseek_tree, INFO, lambda p: _replace_line(p, 2, '{"data_id": '),
        "malformed JSON at line 2, column 13: Expecting value"),
    "infoseek NaN": (
        "infoseek", infoseek_tree, INFO,
        lambda p: _replace_line(p, 2, '{"data_id": NaN}'),
        "malformed JSON at line 2, column 13: NaN is not valid JSON (write null or a number)"),
    "infoseek image id not oven_digits": (
        "infoseek", infoseek_tree, INFO, lambda p: _edit_line(p, 2, _setter("image_id", "123")),
        "line 2 key 'image_id' is '123', expected oven_ and up to 18 digits"),
    "infoseek one image, two names": (
        "infoseek", infoseek_tree, INFO,
        lambda p: _edit_line(p, 2, _setter("image_id", "oven_1963180")),
        "line 2 key 'image_id' is 'oven_1963180', but line 1 names the same image "
        "'oven_01963180'; one image, one name"),
    "infoseek duplicate data_id": (
        "infoseek", infoseek_tree, INFO,
        lambda p: _edit_line(p, 1, _setter("data_id", "infoseek_train_00000001")),
        "line 1 has question id 'infoseek_train_00000001', as has infoseek_train.jsonl "
        "line 2; question ids must be unique"),
    "infoseek answers of the wrong type": (
        "infoseek", infoseek_tree, INFO, lambda p: _edit_line(p, 1, _setter("answer", "Seine")),
        "line 1 key 'answer' is 'Seine', expected a list of strings"),
    "infoseek range not low, high": (
        "infoseek", infoseek_tree, INFO,
        lambda p: _edit_line(p, 2, _setter("answer_eval", [{"wikidata": 1, "range": [2, 1]}])),
        "line 2 answer_eval[0] key 'range' is [2, 1], expected [low, high] numbers"),
    "infoseek deeply nested line": (
        "infoseek", infoseek_tree, INFO,
        lambda p: _replace_line(p, 2, "[" * 100_000 + "]" * 100_000),
        "malformed JSON at line 2: arrays or objects nested deeper than Python's recursion "
        "limit"),
    "passage without _id": (
        "passages", passages_tree, "corpus.jsonl",
        lambda p: _edit_line(p, 3, lambda r: r.pop("_id")), "line 3 lacks required key '_id'"),
    "passage with a duplicate _id": (
        "passages", passages_tree, "corpus.jsonl",
        lambda p: _edit_line(p, 4, _setter("_id", "p2")),
        "line 4 has _id 'p2', as has line 2; passage ids must be unique"),
    "passage text not a string": (
        "passages", passages_tree, "corpus.jsonl",
        lambda p: _edit_line(p, 2, _setter("text", ["a", "b"])),
        "line 2 key 'text' is ['a', 'b'], expected a string"),
}


@pytest.fixture(params=sorted(BROKEN))
def broken(request, tmp_path):
    """(format, root, the one line expected)"""
    format, tree, display, how, says = BROKEN[request.param]
    root = tree(tmp_path / format)
    how(root / display)
    if says is None:
        return format, root, (f"error: {OKQ}: questions[0] (question 420) has no annotation "
                              f"in {OKA}")
    return format, root, f"error: {display}: {says}"


def test_malformed_files_are_refused_with_one_line(registry, broken):
    format, root, says = broken
    with pytest.raises(DataError) as refused:
        registry.create("datasets", format, root=root)
    assert f"error: {refused.value}" == says


def test_data_check_passes_good_trees_and_refuses_bad_ones(tmp_path):
    cache = tmp_path / "cache"
    for format, tree in (("okvqa", okvqa_tree), ("aokvqa", aokvqa_tree),
                         ("infoseek", infoseek_tree), ("passages", passages_tree)):
        root = tree(tmp_path / format)
        good = run_cli("data", "check", str(root), "--format", format, "--json", cache=cache)
        assert good.returncode == 0, good.stderr
        report = json.loads(good.stdout)
        assert report["problems"] == [] and report["undecodable_images"] == []
    BROKEN["infoseek image id not oven_digits"][3](tmp_path / "infoseek" / INFO)
    bad = run_cli("data", "check", str(tmp_path / "infoseek"), "--format", "infoseek",
                  cache=cache)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        f"error: {INFO}: {BROKEN['infoseek image id not oven_digits'][4]}"]


def test_missing_files_are_named(registry, tmp_path):
    root = okvqa_tree(tmp_path / "okvqa")
    (root / OKA).unlink()
    with pytest.raises(DataError, match=f"{OKQ} is there but {OKA} is not"):
        registry.create("datasets", "okvqa", root=root)
    empty = tmp_path / "empty"
    empty.mkdir()
    for format, says in (("okvqa", "no OK-VQA files"), ("aokvqa", "no A-OKVQA files"),
                         ("infoseek", "no InfoSeek files"),
                         ("passages", "none of corpus.jsonl, corpus.parquet")):
        with pytest.raises(DataError, match=says):
            registry.create("datasets", format, root=empty)
    with pytest.raises(DataError, match="format 'parquet' needs corpus.parquet"):
        registry.create("datasets", "passages", root=passages_tree(tmp_path / "kb"),
                        format="parquet")


@pytest.mark.parametrize("name", ["okvqa", "aokvqa", "infoseek", "passages"])
def test_declared_options_are_the_factory_parameters_with_their_defaults(name):
    import dataclasses
    import importlib
    import inspect

    from ravlm_plugins.datasets import _options

    options = {"okvqa": _options.OkvqaOptions, "aokvqa": _options.AokvqaOptions,
               "infoseek": _options.InfoseekOptions, "passages": _options.PassagesOptions}[name]
    factory = importlib.import_module(f"ravlm_plugins.datasets.{name}").create
    declared = {f.name: f.default for f in dataclasses.fields(options)}
    taken = {p.name: p.default for p in inspect.signature(factory).parameters.values()}
    assert declared == taken


def test_suite_parameters_are_checked(registry):
    from ravlm_bench.api import ConfigError

    registry.get("datasets", "okvqa").check({"image_root": "/data/coco"}, "suite")
    with pytest.raises(ConfigError, match="format"):
        registry.get("datasets", "passages").check({"format": "xml"}, "suite")
