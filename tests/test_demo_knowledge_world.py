"""The demo world's knowledge trees (InfoSeek, passages, OK-VQA, A-OKVQA): a world where
retrieval decides the answer, since only the passages hold it."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import PIL
import pytest
from PIL import Image

from ravlm_bench.demo import SIZES, generate_demo_world, world
from ravlm_bench.demo.entities import INFOSEEK_QUESTIONS
from ravlm_bench.demo.shapes import CATEGORIES, COLOURS

OLD_TREES = ("coco", "flickr30k", "visual_genome")
KNOWLEDGE_TREES = ("infoseek", "passages", "okvqa", "aokvqa")

# sha256 over (relative path, bytes) of every file of each tree of the tiny world, seed 0,
# computed with the code before the knowledge trees were added (GENERATOR_VERSION 2); JPEG
# bytes depend on the Pillow build, so they are compared only under the versions they were
# computed with
PRE_KNOWLEDGE_HASHES = {
    "coco": "0fb9db8331b202c15cd2a80f8d32acf2cc9833b3095ba7f3ebf8b143280352c4",
    "flickr30k": "742a1e2676359e25626fa48ea1172c931048bdc5aa4a74c730eecbc98ceeacbd",
    "visual_genome": "127572007f98ffdfee895bc47987b374b8b2ebf7a22ba9860a65c16a96cd2437",
}
HASHED_WITH = {"pillow": "13.0.0", "numpy": "2."}

INFOSEEK_FIELDS = {"data_id", "image_id", "question", "answer", "answer_eval", "data_split",
                   "entity_id", "question_type"}
OKVQA_QUESTION_FIELDS = {"image_id", "question", "question_id"}
OKVQA_ANNOTATION_FIELDS = {"question_id", "image_id", "answers", "answer_type",
                           "question_type"}
OKVQA_ANSWER_FIELDS = {"answer", "answer_confidence", "answer_id"}
AOKVQA_FIELDS = {"split", "image_id", "question_id", "question", "choices",
                 "correct_choice_idx", "direct_answers", "difficult_direct_answer",
                 "rationales"}
PASSAGE_FIELDS = {"_id", "title", "text"}
PASSAGE_OPTIONAL = {"image", "entity_id"}


@pytest.fixture(scope="module")
def world_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("knowledge") / "world"
    generate_demo_world(root, seed=0, size="tiny")
    return root


def tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(root.parent).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def infoseek(root: Path) -> list[dict]:
    return [r for name in ("train", "val")
            for r in read_jsonl(root / "infoseek" / f"infoseek_{name}.jsonl")]


def passages(root: Path) -> list[dict]:
    return read_jsonl(root / "passages" / "corpus.jsonl")


def okvqa(root: Path) -> list[tuple[dict, dict]]:
    """(question, annotation) pairs of both subsets."""
    pairs = []
    for subset in ("train2014", "val2014"):
        qs = json.loads((root / "okvqa" / f"OpenEnded_mscoco_{subset}_questions.json")
                        .read_text())["questions"]
        anns = json.loads((root / "okvqa" / f"mscoco_{subset}_annotations.json")
                          .read_text())["annotations"]
        pairs += list(zip(qs, anns, strict=True))
    return pairs


def aokvqa(root: Path) -> list[dict]:
    return [r for split in ("train", "val")
            for r in json.loads((root / "aokvqa" / f"aokvqa_v1p0_{split}.json").read_text())]


def kind_of(question: str) -> str:
    return next(k for k, phrasings in INFOSEEK_QUESTIONS.items() if question in phrasings)


def entity_passages(root: Path) -> dict[str, dict]:
    return {p["entity_id"]: p for p in passages(root) if "entity_id" in p}


def shape_answers(root: Path) -> list[tuple[str, str, str]]:
    """(question, shape of the image's largest shape, right answer) of OK-VQA and A-OKVQA."""
    primary = {}
    for split in ("train", "val"):
        data = json.loads((root / "coco/annotations" / f"instances_{split}2017.json")
                          .read_text())
        names = {c["id"]: c["name"] for c in data["categories"]}
        largest: dict[int, dict] = {}
        for a in data["annotations"]:
            if not a["iscrowd"] and a["area"] > largest.get(a["image_id"], {"area": -1})["area"]:
                largest[a["image_id"]] = a
        primary.update({i: names[a["category_id"]] for i, a in largest.items()})
    out = []
    for question, annotation in okvqa(root):
        votes = Counter(a["answer"].lower().rstrip(".").removeprefix("the ")
                        for a in annotation["answers"])
        out.append((question["question"], primary[question["image_id"]],
                    votes.most_common(1)[0][0]))
    out += [(r["question"], primary[r["image_id"]], r["choices"][r["correct_choice_idx"]])
            for r in aokvqa(root)]
    return out


# ---------------------------------------------------------------------------------------


def test_same_seed_same_bytes(world_root, tmp_path):
    generate_demo_world(tmp_path / "again", seed=0, size="tiny")
    for tree in KNOWLEDGE_TREES:
        assert tree_digest(tmp_path / "again" / tree) == tree_digest(world_root / tree), tree


def test_the_old_trees_are_unchanged_by_the_knowledge_trees(world_root, tmp_path, monkeypatch):
    monkeypatch.setattr(world, "write_knowledge_trees", lambda *args: {})
    generate_demo_world(tmp_path / "without", seed=0, size="tiny")
    assert not (tmp_path / "without" / "infoseek").exists()
    for tree in OLD_TREES:
        assert tree_digest(tmp_path / "without" / tree) == tree_digest(world_root / tree), tree


@pytest.mark.skipif(PIL.__version__ != HASHED_WITH["pillow"]
                    or not np.__version__.startswith(HASHED_WITH["numpy"]),
                    reason="the recorded hashes were computed under other library versions")
def test_the_old_trees_match_the_bytes_written_before_the_knowledge_trees(world_root):
    assert {tree: tree_digest(world_root / tree) for tree in OLD_TREES} == PRE_KNOWLEDGE_HASHES


def test_sizes_and_summary_counts(world_root):
    spec = SIZES["tiny"]["knowledge"]
    summary = world.load_summary(world_root)["trees"]
    records = infoseek(world_root)
    seen = {r["entity_id"] for r in records if r["data_split"] == "train"}
    unseen = {r["entity_id"] for r in records if r["data_split"] == "val_unseen_entity"}
    assert (len(seen), len(unseen)) == (spec["seen"], spec["unseen"])
    # a seen entity: 4 photographs x 2 questions in train, 2 in unseen_question
    assert summary["infoseek"]["knowledge_questions"] == len(records) == (
        10 * len(seen) + 4 * len(unseen))
    corpus = passages(world_root)
    n_entities = spec["seen"] + spec["unseen"] + spec["distractors"]
    assert summary["passages"]["passages"] == len(corpus) == (
        n_entities + len(CATEGORIES) * len(COLOURS) + spec["text_passages"])
    coco = SIZES["tiny"]["coco"]
    assert summary["okvqa"]["question_splits"] == {"train": coco["train"], "val": coco["test"]}
    assert summary["aokvqa"]["splits"] == {"train": coco["train"], "val": coco["test"]}


def test_records_carry_exactly_the_fields_of_the_formats(world_root):
    for record in infoseek(world_root):
        assert set(record) == INFOSEEK_FIELDS, record
        assert re.fullmatch(r"infoseek_(train|val)_\d{8}", record["data_id"])
        assert re.fullmatch(r"oven_\d{8}", record["image_id"])
        assert re.fullmatch(r"Q\d+", record["entity_id"])
        assert record["question_type"] in ("String", "Time", "Numerical")
    for question, annotation in okvqa(world_root):
        assert set(question) == OKVQA_QUESTION_FIELDS
        assert set(annotation) == OKVQA_ANNOTATION_FIELDS
        assert question["question_id"] == annotation["question_id"]
        assert [a["answer_id"] for a in annotation["answers"]] == list(range(1, 11))
        assert all(set(a) == OKVQA_ANSWER_FIELDS and a["answer_confidence"] in
                   ("yes", "maybe", "no") for a in annotation["answers"])
    for record in aokvqa(world_root):
        assert set(record) == AOKVQA_FIELDS
        assert len(record["choices"]) == 4 and len(set(record["choices"])) == 4
        assert len(record["direct_answers"]) == 10 and len(record["rationales"]) == 3
        assert record["difficult_direct_answer"] is False and len(record["question_id"]) == 22
    for passage in passages(world_root):
        assert PASSAGE_FIELDS <= set(passage) <= PASSAGE_FIELDS | PASSAGE_OPTIONAL, passage


def test_every_referenced_image_exists_and_every_image_decodes(world_root):
    root = world_root
    expected = {root / "infoseek/images" / f"{r['image_id']}.jpg" for r in infoseek(root)}
    expected |= {root / "passages" / p["image"] for p in passages(root) if "image" in p}
    for question, _ in okvqa(root):
        subset = "train2014" if (root / "okvqa/train2014" / (
            f"COCO_train2014_{question['image_id']:012d}.jpg")).exists() else "val2014"
        expected.add(root / "okvqa" / subset / f"COCO_{subset}_{question['image_id']:012d}.jpg")
    expected |= {root / "aokvqa" / f"{r['split']}2017" / f"{r['image_id']:012d}.jpg"
                 for r in aokvqa(root)}
    written = {p for tree in KNOWLEDGE_TREES for p in (root / tree).rglob("*.jpg")}
    assert written == expected
    for path in written:
        with Image.open(path) as image:
            image.load()
            assert image.size == (128, 128) and image.format == "JPEG"


def test_okvqa_images_are_the_coco_images(world_root):
    karpathy = json.loads((world_root / "coco/dataset_coco.json").read_text())["images"]
    split_of = {e["cocoid"]: e["split"] for e in karpathy}
    for question, _ in okvqa(world_root):
        image_id = question["image_id"]
        subset = "train2014" if split_of[image_id] == "train" else "val2014"
        assert split_of[image_id] in ("train", "test")
        copy = world_root / "okvqa" / subset / f"COCO_{subset}_{image_id:012d}.jpg"
        original = next(world_root.glob(f"coco/*2017/{image_id:012d}.jpg"))
        assert copy.read_bytes() == original.read_bytes()


def test_questions_name_neither_their_answer_nor_their_entity(world_root):
    titles = {e: p["title"] for e, p in entity_passages(world_root).items()}
    for record in infoseek(world_root):
        question = record["question"].lower()
        assert titles[record["entity_id"]].lower() not in question
        assert not any(word.lower() in question for word in titles[record["entity_id"]].split())
        for answer in record["answer"] + [a for a in record["answer_eval"] if isinstance(a, str)]:
            assert not re.search(rf"\b{re.escape(answer.lower())}\b", question), record
        assert not re.search(r"\d", question)
    for question, shape, answer in shape_answers(world_root):
        assert answer.lower() not in question.lower() and shape not in question.lower()


def test_every_answer_is_written_in_its_entitys_passage(world_root):
    by_entity = entity_passages(world_root)
    for record in infoseek(world_root):
        text = by_entity[record["entity_id"]]["text"]
        for answer in record["answer"]:
            assert re.search(rf"\b{re.escape(answer)}\b", text), (record, text)
        for alias in record["answer_eval"]:
            if isinstance(alias, dict):  # numeric: the value and its +-10% range
                assert alias["range"][0] < alias["wikidata"] < alias["range"][1]
                assert f"{alias['wikidata']:g} metres" in text
            else:
                assert re.search(rf"\b{re.escape(alias)}\b", text), (record, text)
    for _, shape, answer in shape_answers(world_root):  # in the passage of its coloured shape
        texts = [by_entity[f"cat-{colour}-{shape}"]["text"].lower() for colour in COLOURS]
        assert any(re.search(rf"\b{re.escape(answer.lower())}\b", t) for t in texts), (
            shape, answer)
    for record in aokvqa(world_root):  # the rationales name the coloured shape
        match = re.search(rf"\b({'|'.join(COLOURS)}) (\w+)\b", record["rationales"][0])
        assert match, record["rationales"]
        text = by_entity[f"cat-{match[1]}-{match[2]}"]["text"]
        answer = record["choices"][record["correct_choice_idx"]]
        assert re.search(rf"\b{re.escape(answer)}\b", text), (record, text)


def _free_text(root: Path) -> list[str]:
    """Every natural-language string of the world that is neither a passage's text nor an
    answer field: questions, rationales, passage titles, captions, VG's texts."""
    texts = [r["question"] for r in infoseek(root)]
    texts += [p["title"] for p in passages(root)]
    texts += [q["question"] for q, _ in okvqa(root)]
    texts += [t for r in aokvqa(root) for t in [r["question"], *r["rationales"]]]
    karpathy = json.loads((root / "coco/dataset_coco.json").read_text())["images"]
    texts += [s["raw"] for e in karpathy for s in e["sentences"]]
    texts += [line.split("\t", 1)[1] for line in
              (root / "flickr30k/results_20130124.token").read_text().splitlines()]
    qas = json.loads((root / "visual_genome/question_answers.json").read_text())
    texts += [t for image in qas for qa in image["qas"] for t in (qa["question"], qa["answer"])]
    regions = json.loads((root / "visual_genome/region_descriptions.json").read_text())
    texts += [r["phrase"] for image in regions for r in image["regions"]]
    return texts


def test_answers_are_written_only_in_passage_texts(world_root):
    answers = {a for r in infoseek(world_root) for a in r["answer"]}
    answers |= {answer for _, _, answer in shape_answers(world_root)}
    texts = "\n".join(_free_text(world_root)).lower()
    for answer in sorted(answers):
        assert not re.search(rf"\b{re.escape(answer.lower())}\b", texts), answer
    # and words alone do not find the passage: the makers, cities and years of entities
    # also occur in text-only passages
    text_only = " ".join(p["text"] for p in passages(world_root) if "entity_id" not in p)
    for kind in ("city", "maker", "year"):
        values = {r["answer"][0] for r in infoseek(world_root)
                  if kind_of(r["question"]) == kind}
        assert any(value in text_only for value in values), kind


def test_unseen_entities_and_unseen_questions(world_root):
    records = infoseek(world_root)
    asked = {split: {} for split in ("train", "val_unseen_question", "val_unseen_entity")}
    for record in records:
        kinds = asked[record["data_split"]].setdefault(record["entity_id"], set())
        kinds.add(kind_of(record["question"]))
    train, question, entity = asked.values()
    assert not set(entity) & set(train) and not set(entity) & set(question)
    assert set(question) == set(train)
    for entity_id, kinds in question.items():
        assert len(kinds) == 2 and not kinds & train[entity_id], entity_id
        assert len(train[entity_id]) == 2
    assert all(len(kinds) == 4 for kinds in entity.values())
    train_images = Counter(r["entity_id"] for r in records if r["data_split"] == "train")
    assert set(train_images.values()) == {8}  # four photographs, two questions on each
    images = [r["image_id"] for r in records]
    per_image = Counter(images)
    assert len({(r["image_id"], r["data_split"]) for r in records}) == len(per_image)


def test_numeric_answers_carry_a_ten_percent_range(world_root):
    for record in infoseek(world_root):
        if record["question_type"] != "Numerical":
            assert all(isinstance(a, str) for a in record["answer_eval"])
            continue
        (value,) = record["answer_eval"]
        h = float(record["answer"][0])
        assert value["wikidata"] == h
        assert value["range"] == pytest.approx([0.9 * h, 1.1 * h])


def test_distinct_emblems_and_names(world_root):
    corpus = [p for p in passages(world_root) if p.get("entity_id", "").startswith("Q")]
    assert len({p["title"] for p in corpus}) == len(corpus)
    pictures = {(world_root / "passages" / p["image"]).read_bytes() for p in corpus}
    assert len(pictures) == len(corpus)


@pytest.mark.parametrize("tree", KNOWLEDGE_TREES)
def test_the_dataset_plugins_count_what_the_summary_says(registry, world_root, tree):
    if tree not in registry.names("datasets"):
        pytest.skip(f"no {tree} dataset plugin installed")
    dataset = registry.create("datasets", tree, root=str(world_root / tree))
    counts = dataset.summary()["counts"]
    written = world.load_summary(world_root)["trees"][tree]
    assert counts["images"] == written["splits"]
    if tree == "passages":
        assert sum(counts["passages"].values()) == written["passages"]
    else:
        assert counts["knowledge_questions"] == written["question_splits"]


def test_emblems_share_their_colours_and_differ_in_pattern_and_symbol():
    """Colour narrows an emblem down to a quarter of them, never to one: recognising an
    entity takes its pattern, the pattern's scale and its symbol."""
    from ravlm_bench.demo.emblems import (
        PATTERNS,
        PERIODS,
        SCHEMES,
        emblem_tile,
        make_emblems,
        pattern_mask,
    )

    emblems = make_emblems(np.random.default_rng(0), 450)
    assert len(set(emblems)) == 450
    per_scheme = Counter(e.scheme for e in emblems)
    assert set(per_scheme) == set(range(len(SCHEMES)))
    assert min(per_scheme.values()) > 450 / (2 * len(SCHEMES))
    for pattern in PATTERNS:  # every pattern shows both of its colours at both scales
        for period in PERIODS:
            share = pattern_mask(pattern, period, 90).mean()
            assert 0.1 < share < 0.9, (pattern, period, share)
    masks = {p: pattern_mask(p, PERIODS[0], 90) for p in PATTERNS}
    assert len({m.tobytes() for m in masks.values()}) == len(PATTERNS)
    tile = np.asarray(emblem_tile(emblems[0], 90).convert("RGB")).reshape(-1, 3)
    colours = {tuple(int(v) for v in c) for c in np.unique(tile, axis=0)}
    assert set(SCHEMES[emblems[0].scheme]) <= colours  # pattern and ground, no third hue
    assert len(colours - set(SCHEMES[emblems[0].scheme])) <= 1  # the frame's dark grey
