"""InfoSeek: ``infoseek_{train,val,test}.jsonl``, one question per line, over OVEN images in
``IMAGE_ROOT/images/<image_id>.jpg``.

A record: ``data_id``, ``image_id`` (``oven_<digits>``: the digits are the integer image
id), ``question``, ``answer`` (its first alias is the training answer), ``answer_eval``
(string aliases, or one ``{"wikidata": value, "range": [low, high]}`` for a numeric answer),
``data_split`` (``train``, ``val_unseen_question``, ``val_unseen_entity``...: the split is
the name without its ``val_`` prefix; a test file's ``test_unseen_entity`` stays a split of
its own, so questions without answers never join the scored ones), and optionally ``entity_id`` (the
``_withkb`` files) and ``question_type``. Test records carry no answers.
"""

from __future__ import annotations

import math
import os
import re
from functools import partial
from pathlib import Path

from ravlm_bench.api import DEFAULT_MAX_IMAGE_PIXELS, DataError

from ._base import LoadedDataset, Parsed, open_dataset, resolve_root
from ._columns import shown
from ._json import expect_object, read_json_lines, require_keys
from ._knowledge import (
    QuestionRows,
    id_field,
    resolve_image_root,
    split_files,
    text_field,
    texts_field,
)

NAME = "infoseek"
LOADER_VERSION = "1"
KEYS = ("data_id", "image_id", "question", "data_split")
ANSWER_KEYS = ("answer", "answer_eval")  # not in the test file
IMAGE_FOLDER = "images"
# 18 digits at most: 10**18 < 2**63, so every id fits an int64
_IMAGE_ID = re.compile(r"oven_(\d{1,18})")
# split names become file names of the parsed-data cache: short plain words
_DATA_SPLIT = re.compile(r"(?:val_)?([A-Za-z0-9_-]{1,64})")


def split_file(name: str) -> str:
    return f"infoseek_{name}.jsonl"


def create(root: str | Path | None = None, *, image_root: str | None = None,
           check_images: bool = True, on_bad_image: str = "fail",
           max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> LoadedDataset:
    root = resolve_root(NAME, root)
    images = resolve_image_root(NAME, root, image_root, check_images)
    files = split_files(NAME, root, split_file, "InfoSeek")
    return open_dataset(NAME, LOADER_VERSION, root, [root / split_file(f) for f in files],
                        {"image_root": str(images)}, partial(_parse, root, images, files),
                        image_dirs=[images / IMAGE_FOLDER], check_images=check_images,
                        on_bad_image=on_bad_image, max_image_pixels=max_image_pixels)


def _parse(root: Path, images: Path, files: list[str]) -> Parsed:
    rows = QuestionRows(coco_images=False)
    reader = _Reader(rows, images / IMAGE_FOLDER)
    for name in files:
        display = split_file(name)
        for number, record in read_json_lines(root / display, display):
            reader.add(expect_object(record, display, f"line {number}"), display,
                       f"line {number}", answered=name != "test")
    notes = []
    if reader.mixed:
        notes.append(f"{split_file('test')}: {reader.mixed} questions without answers share "
                     "a split with answered ones (data_split less its val_ prefix); "
                     "move the file away to score on the answered ones only")
    return rows.parsed([], notes)


class _Reader:
    """Adds InfoSeek records to ``rows``, checking that one integer id names one file."""

    def __init__(self, rows: QuestionRows, folder: Path):
        self.rows = rows
        self.prefix = os.path.join(str(folder), "")  # a string join per row, not a Path
        self.name_of: dict[int, tuple[str, str]] = {}  # image id -> (its name, where first)
        self.answered_splits: set[str] = set()
        self.mixed = 0  # test questions in a split that holds answered questions too

    def image_id(self, record: dict, display: str, where: str) -> int:
        name = text_field(record, "image_id", display, where)
        match = _IMAGE_ID.fullmatch(name)
        if match is None:
            raise DataError(f"{display}: {where} key 'image_id' is {shown(name)}, expected "
                            "oven_ and up to 18 digits")
        image_id = int(match.group(1))
        first_name, first_where = self.name_of.setdefault(image_id, (name, where))
        if first_name != name:
            raise DataError(f"{display}: {where} key 'image_id' is {shown(name)}, but "
                            f"{first_where} names the same image {shown(first_name)}; one "
                            "image, one name")
        return image_id

    def add(self, record: dict, display: str, where: str, *, answered: bool) -> None:
        require_keys(record, KEYS, display, where)
        question_id = id_field(record, "data_id", display, where)
        image_id = self.image_id(record, display, where)
        question = text_field(record, "question", display, where)
        split = _split(text_field(record, "data_split", display, where), display, where)
        entity_id = (text_field(record, "entity_id", display, where) if "entity_id" in record
                     else "")
        self.rows.claim(question_id, display, where)
        answer, answers, answer_range = "", [], []
        if answered or any(key in record for key in ANSWER_KEYS):
            require_keys(record, ANSWER_KEYS, display, where)
            aliases = texts_field(record, "answer", display, where, non_empty=True)
            answer = aliases[0]
            answers, answer_range = _answer_eval(record["answer_eval"], aliases, display, where)
            self.answered_splits.add(split)
        else:
            self.mixed += split in self.answered_splits
        question_type = (text_field(record, "question_type", display, where)
                         if "question_type" in record
                         else "Numerical" if answer_range else "String")
        self.rows.add(question_id=question_id, image_id=image_id,
                      image_path=f"{self.prefix}{record['image_id']}.jpg", split=split,
                      question=question, answer=answer, answers=answers,
                      answer_range=answer_range, question_type=question_type,
                      entity_id=entity_id)


def _split(data_split: str, display: str, where: str) -> str:
    match = _DATA_SPLIT.fullmatch(data_split)
    if match is None:
        raise DataError(f"{display}: {where} key 'data_split' is {shown(data_split)}, expected "
                        "a split name such as train or val_unseen_entity")
    return match.group(1)


def _answer_eval(value, aliases: list[str], display: str,
                 where: str) -> tuple[list[str], list[float]]:
    """``(answers, answer_range)`` from ``answer_eval``: its string aliases, or for a
    numeric answer ``[str(wikidata), *answer]`` and the ``[low, high]`` range."""
    if type(value) is not list or not value:
        raise DataError(f"{display}: {where} key 'answer_eval' is {shown(value)}, expected a "
                        "non-empty list of answers")
    if all(type(v) is str for v in value):
        return list(value), []
    if len(value) == 1 and type(value[0]) is dict:
        numeric = value[0]
        require_keys(numeric, ("wikidata", "range"), display, f"{where} answer_eval[0]")
        wikidata, bounds = numeric["wikidata"], numeric["range"]
        if not _finite(wikidata):
            raise DataError(f"{display}: {where} answer_eval[0] key 'wikidata' is "
                            f"{shown(wikidata)}, expected a number")
        if not (type(bounds) is list and len(bounds) == 2 and all(map(_finite, bounds))
                and bounds[0] <= bounds[1]):
            raise DataError(f"{display}: {where} answer_eval[0] key 'range' is "
                            f"{shown(bounds)}, expected [low, high] numbers")
        return [str(wikidata), *aliases], [float(b) for b in bounds]
    raise DataError(f"{display}: {where} key 'answer_eval' is {shown(value)}, expected string "
                    "aliases or one {\"wikidata\": number, \"range\": [low, high]}")


def _finite(value) -> bool:
    try:
        return type(value) in (int, float) and math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False
