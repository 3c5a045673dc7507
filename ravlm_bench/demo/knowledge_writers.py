"""Writing the demo world's knowledge trees in their real formats (see FORMATS.md): a BEIR
passage corpus (the knowledge base), InfoSeek questions on photographs of invented entities,
and OK-VQA / A-OKVQA questions on the demo COCO images whose answers only passages hold.

Each tree draws from its own random stream, ``np.random.default_rng([seed, k])`` with k
from :data:`STREAMS`, apart from the COCO / Flickr30k / VG streams 0-2: adding these trees
left the older trees' bytes as they were, and changing one recipe leaves the others alone.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ravlm_bench.demo.entities import (
    CATEGORY_VALUES,
    FACT_KINDS,
    INFOSEEK_QUESTIONS,
    INFOSEEK_TYPES,
    Entity,
    answer_aliases,
    canonical_image,
    category_entities,
    category_id,
    make_entities,
    photo,
    text_passages,
)
from ravlm_bench.demo.writers import TreeSummary, WrittenImage, _dump, _unique_ids

STREAMS = {"entities": 3, "infoseek": 4, "okvqa": 5, "aokvqa": 6, "categories": 7}
CATEGORY_KINDS = ("maker", "city", "year")  # what the passages say about a shape category

# the question names neither the shape (the image shows it) nor anything the passage says
OKVQA_QUESTIONS = {
    "maker": ("Who first drew the largest shape in this picture?",
              "Who is credited with first drawing the biggest shape shown here?"),
    "city": ("In which city is the oldest known example of the largest shape here kept?",
             "Where is the oldest example of the biggest shape in this picture kept?"),
    "year": ("In what year was the largest shape in this picture first drawn?",
             "When was the biggest shape shown here first drawn?"),
}
AOKVQA_QUESTIONS = {
    "maker": ("Whose drawing introduced the main shape in this image?",
              "Which person first drew the main shape seen in this image?"),
    "city": ("The oldest example of the main shape in this image is kept in which city?",
             "Which city keeps the oldest known example of the main shape here?"),
    "year": ("The main shape in this image was first drawn in which year?",
             "Which year saw the main shape of this image drawn for the first time?"),
}
# rationales explain where the answer is written without writing it
_RATIONALES = (
    "The largest shape in the picture is a {shape}.",
    "The main shape here is a {shape}, and its history is written down.",
    "The reference note about the {shape} gives {what}.",
    "Whoever read the note on the {shape} knows {what}.",
    "The answer comes from the note about the {shape}, not from the picture.",
)
_RATIONALE_WHAT = {"maker": "the person who first drew it",
                   "city": "the city where its oldest example is kept",
                   "year": "the year it was first drawn"}
_AOKVQA_ID_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
OKVQA_INFO = {"description": "ravlm-bench demo world: OK-VQA format", "url": "",
              "version": "1.0", "year": 2019, "contributor": "ravlm-bench demo generator",
              "date_created": "2019-05-01"}
OKVQA_LICENSE = {"url": "http://creativecommons.org/licenses/by/4.0/",
                 "name": "Creative Commons Attribution 4.0 International License"}
# OK-VQA's question categories are "one".."ten" and "other": "nine" is geography, history,
# language and culture, which is what the shape facts are
OKVQA_QUESTION_TYPE = "nine"


def write_knowledge_trees(out: Path, coco_images: dict[str, list[WrittenImage]],
                          counts: dict[str, int], seed: int) -> dict[str, TreeSummary]:
    """Write ``out/infoseek``, ``out/passages``, ``out/okvqa`` and ``out/aokvqa``.

    ``coco_images`` are the written COCO tree's images per Karpathy split: OK-VQA and
    A-OKVQA ask about the "train" images for training and the "test" images for validation.
    ``counts``: seen, unseen and distractor entities, and text-only passages.
    """
    rngs = {tree: np.random.default_rng([seed, k]) for tree, k in STREAMS.items()}
    rng = rngs["entities"]
    n_seen, n_unseen = counts["seen"], counts["unseen"]
    entities = make_entities(rng, n_seen + n_unseen + counts["distractors"])
    # roles by a permutation, so that an entity's id does not tell whether it is asked about
    roles = rng.permutation(len(entities))
    seen = [entities[int(i)] for i in sorted(roles[:n_seen])]
    unseen = [entities[int(i)] for i in sorted(roles[n_seen:n_seen + n_unseen])]
    categories = category_entities(rngs["categories"])
    texts = text_passages(rng, counts["text_passages"], entities + categories)
    by_id = {e.entity_id: e for e in categories}
    return {
        "infoseek": write_infoseek(out / "infoseek", seen, unseen, rngs["infoseek"]),
        "passages": write_passages(out / "passages", entities + categories, texts, rng),
        "okvqa": write_okvqa(out / "okvqa", coco_images, by_id, rngs["okvqa"]),
        "aokvqa": write_aokvqa(out / "aokvqa", coco_images, by_id, rngs["aokvqa"]),
    }


def _write_jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


# ---------------------------------------------------------------------------------------
# passages: BEIR corpus.jsonl, with a canonical picture for every entity's passage
# ---------------------------------------------------------------------------------------


def write_passages(out: Path, entities: list[Entity], texts: list[tuple[str, str]],
                   rng: np.random.Generator) -> TreeSummary:
    rows: list[dict] = []
    for entity in entities:
        image = f"images/{entity.entity_id}.jpg"
        (out / image).parent.mkdir(parents=True, exist_ok=True)
        (out / image).write_bytes(canonical_image(entity))
        rows.append({"title": entity.name, "text": entity.passage, "image": image,
                     "entity_id": entity.entity_id})
    rows += [{"title": title, "text": text} for title, text in texts]
    order = rng.permutation(len(rows))  # entity and text-only passages interleaved
    _write_jsonl(out / "corpus.jsonl",
                 [{"_id": f"doc{k:06d}", **rows[int(i)]} for k, i in enumerate(order)])
    return TreeSummary(images=len(entities), passages=len(rows),
                       splits={"corpus": len(entities)})


# ---------------------------------------------------------------------------------------
# InfoSeek: questions about photographs of entities, asked without naming them
# ---------------------------------------------------------------------------------------

_INFOSEEK_SPLITS = {"train": "train", "val_unseen_question": "unseen_question",
                    "val_unseen_entity": "unseen_entity"}  # data_split -> loader's split


def _infoseek_answer(kind: str, answer: str) -> list:
    if kind == "height":
        h = float(answer)
        return [{"wikidata": h, "range": [round(0.9 * h, 6), round(1.1 * h, 6)]}]
    return answer_aliases(kind, answer)


# photographs of each seen entity in the training split: what a retrieval key learned from
# gold evidence sees of how one entity's photographs vary
TRAIN_PHOTOS = 4


def write_infoseek(out: Path, seen: list[Entity], unseen: list[Entity],
                   rng: np.random.Generator) -> TreeSummary:
    """train: four photographs of each seen entity, asking two of its four facts on each;
    val_unseen_question: a third photograph, asking the other two; val_unseen_entity: one
    photograph of each unseen entity, asking all four."""
    shots: list[tuple[str, Entity, list[str]]] = []
    for entity in seen:
        kinds = [FACT_KINDS[int(i)] for i in rng.permutation(len(FACT_KINDS))]
        shots += [("train", entity, kinds[:2])] * TRAIN_PHOTOS
        shots.append(("val_unseen_question", entity, kinds[2:]))
    shots += [("val_unseen_entity", entity, list(FACT_KINDS)) for entity in unseen]
    image_ids = rng.permutation(_unique_ids(rng, len(shots), 1, 100_000_000)).tolist()
    files: dict[str, list[dict]] = {"train": [], "val": []}
    summary = TreeSummary()
    questions: Counter[str] = Counter()
    for (data_split, entity, kinds), number in zip(shots, image_ids, strict=True):
        assert entity.emblem is not None
        image_id = f"oven_{number:08d}"
        path = out / "images" / f"{image_id}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(photo(entity.emblem, rng))
        for kind in kinds:
            answer = entity.facts[kind]
            phrasings = INFOSEEK_QUESTIONS[kind]
            files["train" if data_split == "train" else "val"].append({
                "image_id": image_id, "question": phrasings[int(rng.integers(len(phrasings)))],
                "answer": [answer], "answer_eval": _infoseek_answer(kind, answer),
                "data_split": data_split, "entity_id": entity.entity_id,
                "question_type": INFOSEEK_TYPES[kind]})
        split = _INFOSEEK_SPLITS[data_split]
        summary.splits[split] = summary.splits.get(split, 0) + 1
        questions[split] += len(kinds)
    for name, records in files.items():
        order = rng.permutation(len(records))  # not grouped by entity, as in the release
        _write_jsonl(out / f"infoseek_{name}.jsonl",
                     [{"data_id": f"infoseek_{name}_{k:08d}", **records[int(i)]}
                      for k, i in enumerate(order)])
    summary.images = len(shots)
    summary.knowledge_questions = sum(questions.values())
    summary.question_splits = {s: questions[s] for s in summary.splits}
    return summary


# ---------------------------------------------------------------------------------------
# OK-VQA and A-OKVQA: one question per COCO image about the history of its largest shape,
# a coloured shape (80 of them, 300 training questions over 240 of their facts): the
# training answers cannot teach them all, their passages can
# ---------------------------------------------------------------------------------------


def _ask(image: WrittenImage, categories: dict[str, Entity],
         phrasings: Mapping[str, tuple[str, ...]], rng: np.random.Generator):
    """(coloured shape, fact kind, question, answer) for the image's primary shape."""
    primary = image.scene.primary
    kind = CATEGORY_KINDS[int(rng.integers(len(CATEGORY_KINDS)))]
    question = phrasings[kind][int(rng.integers(len(phrasings[kind])))]
    answer = categories[category_id(primary.colour, primary.kind)].facts[kind]
    return f"{primary.colour} {primary.kind}", kind, question, answer


def _surface(kind: str, answer: str, rng: np.random.Generator) -> str:
    """The answer as one annotator typed it: case, a trailing period, an article."""
    forms = [answer, answer, answer, answer.lower(), answer + "."]
    if kind != "year":
        forms += ["the " + answer, "The " + answer]
    return forms[int(rng.integers(len(forms)))]


def _ten_answers(kind: str, answer: str, rng: np.random.Generator) -> list[tuple[str, bool]]:
    """Ten annotators' (answer, is right): mostly the right one, 0-3 wrong ones."""
    n_wrong = int(rng.choice(4, p=[0.4, 0.3, 0.2, 0.1]))
    others = [v for v in CATEGORY_VALUES[kind] if v != answer]
    wrong = [(others[int(i)], False) for i in rng.choice(len(others), n_wrong, replace=False)]
    given = [(_surface(kind, answer, rng), True) for _ in range(10 - n_wrong)] + wrong
    return [given[int(i)] for i in rng.permutation(len(given))]


def write_okvqa(out: Path, coco_images: dict[str, list[WrittenImage]],
                categories: dict[str, Entity], rng: np.random.Generator) -> TreeSummary:
    summary = TreeSummary()
    for karpathy, subset, split in (("train", "train2014", "train"), ("test", "val2014", "val")):
        questions, annotations = [], []
        for image in coco_images.get(karpathy, []):
            target = out / subset / f"COCO_{subset}_{image.image_id:012d}.jpg"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(image.path, target)
            _, kind, question, answer = _ask(image, categories, OKVQA_QUESTIONS, rng)
            # as in the release: the image id followed by one digit
            question_id = image.image_id * 10 + int(rng.integers(10))
            questions.append({"image_id": image.image_id, "question": question,
                              "question_id": question_id})
            answers = [{"answer": text, "answer_confidence": _confidence(right, rng),
                        "answer_id": k + 1}
                       for k, (text, right) in enumerate(_ten_answers(kind, answer, rng))]
            annotations.append({"question_id": question_id, "image_id": image.image_id,
                                "answers": answers, "answer_type": "other",
                                "question_type": OKVQA_QUESTION_TYPE})
        common = {"info": OKVQA_INFO, "license": OKVQA_LICENSE, "data_subtype": subset,
                  "data_type": "mscoco"}
        _dump(out / f"OpenEnded_mscoco_{subset}_questions.json",
              {**common, "task_type": "Open-Ended", "questions": questions})
        _dump(out / f"mscoco_{subset}_annotations.json", {**common, "annotations": annotations})
        _count(summary, split, len(questions))
    return summary


def _confidence(right: bool, rng: np.random.Generator) -> str:
    if right:
        return "yes" if rng.random() < 0.8 else "maybe"
    return "maybe" if rng.random() < 0.5 else "no"


def _count(summary: TreeSummary, split: str, n: int) -> None:
    """One question per image: as many images as questions."""
    summary.images += n
    summary.knowledge_questions += n
    summary.splits[split] = n
    summary.question_splits[split] = n


def _rationales(shape: str, kind: str, rng: np.random.Generator) -> list[str]:
    picked = sorted(rng.choice(len(_RATIONALES), 3, replace=False))
    return [_RATIONALES[int(i)].format(shape=shape, what=_RATIONALE_WHAT[kind]) for i in picked]


def _aokvqa_id(rng: np.random.Generator) -> str:
    """A 22-character id like the release's (shortuuid's alphabet)."""
    picks = rng.integers(len(_AOKVQA_ID_ALPHABET), size=22)
    return "".join(_AOKVQA_ID_ALPHABET[int(i)] for i in picks)


def write_aokvqa(out: Path, coco_images: dict[str, list[WrittenImage]],
                 categories: dict[str, Entity], rng: np.random.Generator) -> TreeSummary:
    summary = TreeSummary()
    for karpathy, folder, split in (("train", "train2017", "train"), ("test", "val2017", "val")):
        records = []
        for image in coco_images.get(karpathy, []):
            target = out / folder / f"{image.image_id:012d}.jpg"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(image.path, target)
            shape, kind, question, answer = _ask(image, categories, AOKVQA_QUESTIONS, rng)
            others = [v for v in CATEGORY_VALUES[kind] if v != answer]
            choices = [answer] + [others[int(i)] for i in rng.choice(len(others), 3,
                                                                      replace=False)]
            choices = [choices[int(i)] for i in rng.permutation(4)]
            records.append({
                "split": split, "image_id": image.image_id, "question_id": _aokvqa_id(rng),
                "question": question, "choices": choices,
                "correct_choice_idx": choices.index(answer),
                "direct_answers": [text for text, _ in _ten_answers(kind, answer, rng)],
                "difficult_direct_answer": False, "rationales": _rationales(shape, kind, rng)})
        _dump(out / f"aokvqa_v1p0_{split}.json", records)
        _count(summary, split, len(records))
    return summary
