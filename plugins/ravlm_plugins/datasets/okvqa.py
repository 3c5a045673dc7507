"""OK-VQA (v1.1): VQA-style question and annotation files over COCO 2014 images.

Per split (``train2014`` -> ``train``, ``val2014`` -> ``val``) a questions file
``OpenEnded_mscoco_{sub}_questions.json`` (``questions``: ``image_id``, ``question``,
``question_id``) and an annotations file ``mscoco_{sub}_annotations.json`` (``annotations``:
``question_id``, ``image_id``, ten ``answers`` ``{answer, answer_confidence, answer_id}``,
``question_type``); images in ``IMAGE_ROOT/{sub}/COCO_{sub}_%012d.jpg``.

A question's ``answers`` are its ten raw answers (VQA accuracy scores against them); its
training ``answer`` is the most frequent of them after the official VQA normalisation, ties
broken alphabetically.
"""

from __future__ import annotations

from collections import Counter
from functools import partial
from pathlib import Path

from ravlm_bench.api import DEFAULT_MAX_IMAGE_PIXELS, DataError

from ._base import LoadedDataset, Parsed, open_dataset, resolve_root
from ._json import expect_list, expect_object, get_list, read_json, require_keys
from ._knowledge import (
    QuestionRows,
    int_field,
    resolve_image_root,
    text_field,
)
from .vqa_normalize import normalize_answer

NAME = "okvqa"
LOADER_VERSION = "1"
SUBSETS = {"train2014": "train", "val2014": "val"}
QUESTION_KEYS = ("image_id", "question", "question_id")
ANNOTATION_KEYS = ("question_id", "image_id", "answers", "question_type")


def questions_file(subset: str) -> str:
    return f"OpenEnded_mscoco_{subset}_questions.json"


def annotations_file(subset: str) -> str:
    return f"mscoco_{subset}_annotations.json"


def create(root: str | Path | None = None, *, image_root: str | None = None,
           check_images: bool = True, on_bad_image: str = "fail",
           max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> LoadedDataset:
    root = resolve_root(NAME, root)
    images = resolve_image_root(NAME, root, image_root, check_images)
    subsets = [s for s in SUBSETS
               if (root / questions_file(s)).is_file() or (root / annotations_file(s)).is_file()]
    if not subsets:
        raise DataError(f"okvqa ({root}): no OK-VQA files; expected "
                        f"{questions_file('val2014')} and {annotations_file('val2014')} (and "
                        "their train2014 pair) at the root")
    for subset in subsets:
        for present, missing in ((questions_file(subset), annotations_file(subset)),
                                 (annotations_file(subset), questions_file(subset))):
            if not (root / missing).is_file():
                raise DataError(f"okvqa ({root}): {present} is there but {missing} is not; "
                                "each split needs both")
    sources = [root / f(s) for s in subsets for f in (questions_file, annotations_file)]
    return open_dataset(NAME, LOADER_VERSION, root, sources, {"image_root": str(images)},
                        partial(_parse, root, images, subsets),
                        image_dirs=[images / s for s in subsets], check_images=check_images,
                        on_bad_image=on_bad_image, max_image_pixels=max_image_pixels)


def most_common_answer(answers: list[str], normalised: dict[str, str]) -> str:
    """The most frequent VQA-normalised answer, ties broken alphabetically; ``normalised``
    caches the normalisation (answers repeat a lot)."""
    counts = Counter(normalised.get(a) or normalised.setdefault(a, normalize_answer(a))
                     for a in answers)
    return min(counts.items(), key=lambda item: (-item[1], item[0]))[0]


def _parse(root: Path, images: Path, subsets: list[str]) -> Parsed:
    rows = QuestionRows(coco_images=True)
    problems: list[str] = []
    normalised: dict[str, str] = {}
    for subset in subsets:
        _read_subset(root, images, subset, rows, problems, normalised)
    return rows.parsed(problems, [])


def _read_annotations(root: Path, display: str) -> dict[int, tuple[int, dict]]:
    """question id -> (position, annotation)."""
    top = expect_object(read_json(root / display, display), display)
    by_question: dict[int, tuple[int, dict]] = {}
    for j, annotation in enumerate(get_list(top, "annotations", display)):
        where = f"annotations[{j}]"
        require_keys(annotation, ANNOTATION_KEYS, display, where)
        question_id = int_field(annotation, "question_id", display, where)
        int_field(annotation, "image_id", display, where)
        if question_id in by_question:
            raise DataError(f"{display}: {where} annotates question {question_id}, as does "
                            f"annotations[{by_question[question_id][0]}]; one annotation per "
                            "question")
        by_question[question_id] = (j, annotation)
    return by_question


def _raw_answers(annotation: dict, display: str, where: str) -> list[str]:
    answers = expect_list(annotation["answers"], display, f"{where} key 'answers'")
    if not answers:
        raise DataError(f"{display}: {where} key 'answers' is an empty list, expected the "
                        "annotators' answers")
    raw = []
    for k, item in enumerate(answers):
        require_keys(item, ("answer",), display, f"{where}.answers[{k}]")
        raw.append(text_field(item, "answer", display, f"{where}.answers[{k}]"))
    return raw


def _read_subset(root: Path, images: Path, subset: str, rows: QuestionRows,
                 problems: list[str], normalised: dict[str, str]) -> None:
    split, q_display, a_display = SUBSETS[subset], questions_file(subset), annotations_file(subset)
    annotations = _read_annotations(root, a_display)
    top = expect_object(read_json(root / q_display, q_display), q_display)
    folder = images / subset
    for i, question in enumerate(get_list(top, "questions", q_display)):
        where = f"questions[{i}]"
        require_keys(question, QUESTION_KEYS, q_display, where)
        question_id = int_field(question, "question_id", q_display, where)
        image_id = int_field(question, "image_id", q_display, where)
        text = text_field(question, "question", q_display, where)
        rows.claim(str(question_id), q_display, where)
        if question_id not in annotations:
            raise DataError(f"{q_display}: {where} (question {question_id}) has no annotation "
                            f"in {a_display}")
        j, annotation = annotations.pop(question_id)
        if annotation["image_id"] != image_id:
            raise DataError(f"{a_display}: annotations[{j}] (question {question_id}) is about "
                            f"image {annotation['image_id']}, but {q_display} {where} asks "
                            f"about image {image_id}")
        answers = _raw_answers(annotation, a_display, f"annotations[{j}]")
        question_type = text_field(annotation, "question_type", a_display, f"annotations[{j}]")
        rows.add(question_id=str(question_id), image_id=image_id,
                 image_path=str(folder / f"COCO_{subset}_{image_id:012d}.jpg"), split=split,
                 question=text, answer=most_common_answer(answers, normalised),
                 answers=answers, question_type=question_type)
    if annotations:
        problems.append(f"{a_display}: {len(annotations)} annotations are of questions not in "
                        f"{q_display} (ignored)")
