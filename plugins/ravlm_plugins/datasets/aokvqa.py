"""A-OKVQA (v1.0): ``aokvqa_v1p0_{train,val,test}.json``, each a JSON list of questions over
COCO 2017 images (``IMAGE_ROOT/{split}2017/%012d.jpg``).

A record: ``question_id`` (a string), ``image_id``, ``question``, four ``choices``,
``correct_choice_idx``, ten ``direct_answers`` and three ``rationales`` (not read). Test
records carry no answers. A question's ``answers`` are its direct answers as given (the
official direct-answer score neither normalises nor leaves one out); its training
``answer`` is the correct choice.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from ravlm_bench.api import DEFAULT_MAX_IMAGE_PIXELS, DataError

from ._base import LoadedDataset, Parsed, open_dataset, resolve_root
from ._json import expect_list, read_json, require_keys
from ._knowledge import (
    QuestionRows,
    id_field,
    int_field,
    resolve_image_root,
    split_files,
    text_field,
    texts_field,
)

NAME = "aokvqa"
LOADER_VERSION = "1"
KEYS = ("question_id", "image_id", "question", "choices")
ANSWER_KEYS = ("correct_choice_idx", "direct_answers")  # not in the test split


def split_file(split: str) -> str:
    return f"aokvqa_v1p0_{split}.json"


def create(root: str | Path | None = None, *, image_root: str | None = None,
           check_images: bool = True, on_bad_image: str = "fail",
           max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> LoadedDataset:
    root = resolve_root(NAME, root)
    images = resolve_image_root(NAME, root, image_root, check_images)
    splits = split_files(NAME, root, split_file, "A-OKVQA")
    return open_dataset(NAME, LOADER_VERSION, root, [root / split_file(s) for s in splits],
                        {"image_root": str(images)}, partial(_parse, root, images, splits),
                        image_dirs=[images / f"{s}2017" for s in splits],
                        check_images=check_images, on_bad_image=on_bad_image,
                        max_image_pixels=max_image_pixels)


def _parse(root: Path, images: Path, splits: list[str]) -> Parsed:
    rows = QuestionRows(coco_images=True)
    for split in splits:
        display = split_file(split)
        records = expect_list(read_json(root / display, display), display, "the top level")
        for i, record in enumerate(records):
            _add(rows, record, display, f"[{i}]", split, images / f"{split}2017")
    return rows.parsed([], [])


def _add(rows: QuestionRows, record, display: str, where: str, split: str,
         folder: Path) -> None:
    require_keys(record, KEYS, display, where)
    question_id = id_field(record, "question_id", display, where)
    image_id = int_field(record, "image_id", display, where)
    question = text_field(record, "question", display, where)
    choices = texts_field(record, "choices", display, where)
    rows.claim(question_id, display, where)
    answered = split != "test" or any(key in record for key in ANSWER_KEYS)
    correct, answer, answers = -1, "", []
    if answered:
        require_keys(record, ANSWER_KEYS, display, where)
        correct = int_field(record, "correct_choice_idx", display, where)
        if not 0 <= correct < len(choices):
            raise DataError(f"{display}: {where} key 'correct_choice_idx' is {correct}, "
                            f"outside its {len(choices)} choices")
        answer = choices[correct]
        answers = texts_field(record, "direct_answers", display, where)
    rows.add(question_id=question_id, image_id=image_id,
             image_path=str(folder / f"{image_id:012d}.jpg"), split=split, question=question,
             answer=answer, answers=answers, choices=choices, correct_choice=correct)
