"""What the knowledge-based VQA loaders (``okvqa``, ``aokvqa``, ``infoseek``) share: the image
root, each record's fields checked one at a time (a message names the file and the record),
question ids unique across all files, and the ``images`` and ``knowledge_questions`` tables.

Questions are few enough (InfoSeek's largest file holds under a million) to be read record by
record, which is what lets every message name the record: ``questions[12]`` or ``line 13``.
The ``images`` table has one row per image of each split (an image asked about in two splits
is listed in both), so every split's images can be read on their own.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ravlm_bench.api import DataError

from ._assemble import take_strings
from ._base import Parsed
from ._columns import int_value, shown
from ._schemas import make_table

KINDS = ("images", "knowledge_questions")


def resolve_image_root(name: str, root: Path, image_root: str | Path | None,
                       check_images: bool) -> Path:
    """The folder holding the image folders: ``image_root`` (relative: from ``root``)."""
    if image_root is None or image_root == "":
        return root
    folder = (root / Path(image_root).expanduser()).resolve()
    if check_images and not folder.is_dir():
        raise DataError(f"{name} ({root}): image_root {folder} does not exist or is not a "
                        "directory")
    return folder


def split_files(name: str, root: Path, file_of: Callable[[str], str], title: str) -> list[str]:
    """Which of train, val and (optional) test have their file at the root: one at least."""
    present = [split for split in ("train", "val", "test") if (root / file_of(split)).is_file()]
    if not present:
        raise DataError(f"{name} ({root}): no {title} files; expected {file_of('train')} and "
                        f"{file_of('val')} (and optionally {file_of('test')}) at the root")
    return present


def text_field(record: dict, key: str, display: str, where: str) -> str:
    value = record[key]
    if type(value) is not str:
        raise DataError(f"{display}: {where} key {key!r} is {shown(value)}, expected a string")
    return value


def id_field(record: dict, key: str, display: str, where: str) -> str:
    """A record id that the format writes as a string: a non-empty one."""
    value = text_field(record, key, display, where)
    if not value.strip():
        raise DataError(f"{display}: {where} key {key!r} is empty, expected an id")
    return value


def int_field(record: dict, key: str, display: str, where: str) -> int:
    return int_value(record[key], display, where, key)


def texts_field(record: dict, key: str, display: str, where: str, *,
                non_empty: bool = False) -> list[str]:
    value = record[key]
    if not (type(value) is list and all(type(v) is str for v in value)):
        raise DataError(f"{display}: {where} key {key!r} is {shown(value)}, expected a list "
                        "of strings")
    if non_empty and not value:
        raise DataError(f"{display}: {where} key {key!r} is an empty list, expected at least "
                        "one answer")
    return value


class QuestionRows:
    """Rows of ``knowledge_questions`` and the images they ask about, gathered file by file."""

    def __init__(self, *, coco_images: bool):
        self.coco_images = coco_images  # image ids are COCO ids
        self.columns: dict[str, list] = {
            name: [] for name in ("question_id", "image_id", "question", "answer", "answers",
                                  "choices", "correct_choice", "answer_range",
                                  "question_type", "entity_id", "split")}
        self.images: dict[tuple[str, int], str] = {}  # (split, image id) -> absolute path
        self._first_seen: dict[str, str] = {}  # question id -> "FILE RECORD"

    def claim(self, question_id: str, display: str, where: str) -> None:
        """Refuse a question id some record already has (in this file or another)."""
        earlier = self._first_seen.setdefault(question_id, f"{display} {where}")
        if earlier != f"{display} {where}":
            raise DataError(f"{display}: {where} has question id {shown(question_id)}, as has "
                            f"{earlier}; question ids must be unique")

    def add(self, *, question_id: str, image_id: int, image_path: str, split: str,
            question: str, answer: str, answers: list[str], choices: list[str] = (),
            correct_choice: int = -1, answer_range: list[float] = (),
            question_type: str = "", entity_id: str = "") -> None:
        """One question (its id already claimed) and the image of its split it asks about."""
        self.images.setdefault((split, image_id), image_path)
        row: dict[str, Any] = {
            "question_id": question_id, "image_id": image_id, "question": question.strip(),
            "answer": answer, "answers": list(answers), "choices": list(choices),
            "correct_choice": correct_choice, "answer_range": list(answer_range),
            "question_type": question_type, "entity_id": entity_id, "split": split,
        }
        for name, value in row.items():
            self.columns[name].append(value)

    def parsed(self, problems: list[str], notes: list[str]) -> Parsed:
        keys = list(self.images)
        split_names = sorted({split for split, _ in keys})
        code_of = {split: code for code, split in enumerate(split_names)}
        ids = np.array([image_id for _, image_id in keys], dtype=np.int64)
        images = make_table("images", {
            "image_id": ids, "image_path": list(self.images.values()),
            "split": take_strings(split_names,
                                  np.array([code_of[s] for s, _ in keys], dtype=np.int32)),
            # sizes come from the image headers when images are checked
            "width": np.full(len(ids), -1, np.int32), "height": np.full(len(ids), -1, np.int32),
            "coco_id": ids if self.coco_images else np.full(len(ids), -1, np.int64),
            "flickr_id": np.full(len(ids), -1, np.int64),
        })
        questions = make_table("knowledge_questions", self.columns)
        return Parsed({"images": images, "knowledge_questions": questions}, problems, notes)
