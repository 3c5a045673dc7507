"""What a fusion-head cell saw and said, item by item: the explorer's data.

A fusion-head cell saves, beside its predictions, ``explore.*`` arrays in its ``seed-N.npz``
(:func:`explorer_arrays`): each test item's image path and text, its truth, the prediction
and its confidence, and the knowledge-base rows it retrieved with their scores; the
knowledge-base rows that any item retrieved are stored once (image path, text, label).
:func:`cell_items` reads them back as :class:`ExplorerItem` s through
:mod:`ravlm_bench.store.cell_files`, which checks them against the checksum the cell
recorded; a damaged file is a one-line ``DataError``. ``ravlm-bench show`` prints them and
the ``explorer`` publisher draws them.

The prediction is the one the task scores: the class of highest probability (the first on
ties, as ``numpy.argmax``) for single-label tasks, every class whose probability reaches the
task's threshold for multi-label ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ravlm_bench.foundation.errors import DataError
from ravlm_bench.store.cell_files import array_names, arrays_path, read_arrays, read_cell

PREFIX = "explore."
OUTSIDE_LABEL_SPACE = "(outside the label space)"
NO_LABEL = ""  # external knowledge has no labels


@dataclass(frozen=True)
class Neighbour:
    image: str  # path of the neighbour's image as the run read it
    text: str
    label: str  # class name(s); "" for unlabelled external knowledge
    score: float


@dataclass(frozen=True)
class ExplorerItem:
    index: int  # position in the task's test split: the same item in every system and seed
    image: str
    text: str
    truth: str  # class name; "a, b" for multi-label
    prediction: str
    confidence: float  # the predicted class's probability (the highest, for multi-label)
    correct: bool
    neighbours: tuple[Neighbour, ...]  # best first; empty for a system without retrieval


def label_names(labels: np.ndarray, classes: list[str]) -> np.ndarray:
    """Class names of single-label indices (-1: outside the label space) or of multi-hot
    rows (joined with ", ")."""
    labels = np.asarray(labels)
    if labels.ndim == 2:
        return np.array([", ".join(c for c, on in zip(classes, row, strict=True) if on)
                         for row in labels.astype(bool)], dtype=str)
    return np.array([classes[i] if 0 <= i < len(classes) else OUTSIDE_LABEL_SPACE
                     for i in labels.tolist()], dtype=str)


def explorer_arrays(test, knowledge_items, kb_labels: np.ndarray, classes: list[str],
                    scores: np.ndarray, neighbours: np.ndarray,
                    neighbour_scores: np.ndarray, threshold: float = 0.5) -> dict:
    """The ``explore.*`` arrays of a fusion-head cell.

    ``test``: the test split (``image_paths``, ``texts``, ``labels``); ``knowledge_items``:
    what the knowledge base's rows are (``image_paths``, ``texts``); ``kb_labels`` their
    labels; ``scores`` the head's class probabilities; ``neighbours`` / ``neighbour_scores``
    the retrieved rows (-1 padding) and their scores.
    """
    scores = np.asarray(scores, np.float32)
    truth = np.asarray(test.labels)
    if truth.ndim == 2:
        predicted = scores >= threshold
        correct = (predicted == truth.astype(bool)).all(axis=1)
        confidence = scores.max(axis=1, initial=0.0)
    else:
        predicted = scores.argmax(axis=1)
        correct = predicted == truth
        confidence = scores[np.arange(len(scores)), predicted]
    # only the knowledge-base rows some item retrieved, renumbered
    neighbours = np.asarray(neighbours, np.int64)
    used = np.unique(neighbours[neighbours >= 0])
    rows = np.where(neighbours >= 0, np.searchsorted(used, neighbours), -1)
    paths, texts = list(knowledge_items.image_paths), list(knowledge_items.texts)
    kb_labels = np.asarray(kb_labels)
    kb_names = (label_names(kb_labels[used], classes) if len(used) else np.array([], str))
    if kb_labels.ndim == 1 and len(used):  # unlabelled external knowledge: -1
        kb_names = np.where(kb_labels[used] < 0, NO_LABEL, kb_names)
    return {
        f"{PREFIX}image": np.array(list(test.image_paths), dtype=str),
        f"{PREFIX}text": np.array(list(test.texts), dtype=str),
        f"{PREFIX}truth": label_names(truth, classes),
        f"{PREFIX}prediction": label_names(predicted, classes),
        f"{PREFIX}confidence": confidence.astype(np.float32),
        f"{PREFIX}correct": correct.astype(bool),
        f"{PREFIX}neighbours": rows.astype(np.int64),
        f"{PREFIX}neighbour_scores": np.asarray(neighbour_scores, np.float32),
        f"{PREFIX}kb_image": np.array([paths[i] for i in used.tolist()], dtype=str),
        f"{PREFIX}kb_text": np.array([texts[i] for i in used.tolist()], dtype=str),
        f"{PREFIX}kb_label": kb_names.astype(str),
    }


def cell_items(run_dir: str | Path, task: str, system: str, seed: int) -> list[ExplorerItem]:
    """The test items of a finished fusion-head cell, as it saw and scored them.

    Raises :class:`DataError` (one line naming the file) when the cell is missing, failed,
    damaged, or was written before cells carried explorer arrays.
    """
    cell_json = Path(run_dir) / "cells" / task / system / f"seed-{seed}.json"
    record, problem = read_cell(cell_json)
    if record is None:  # read_cell then says what is wrong in problem
        raise DataError(f"{cell_json} {problem}; is {task} / {system} / seed {seed} in this "
                        f"run? (ravlm-bench leaderboard {run_dir} lists them)")
    if record.get("status") != "ok":
        raise DataError(f"{cell_json}: the cell failed, so it has no predictions: "
                        f"{(record.get('error') or {}).get('message', 'no message')}")
    arrays = read_arrays(cell_json, record.get("arrays_sha256"),
                         wanted=lambda name: name.startswith(PREFIX))
    if f"{PREFIX}image" not in arrays:
        raise DataError(f"{arrays_path(cell_json)}: no explorer arrays (a joint-embedding "
                        f"task, or a cell written before they were saved; ravlm-bench run "
                        f"--force recomputes it)")
    return _items(arrays)


def _items(arrays: dict[str, np.ndarray]) -> list[ExplorerItem]:
    def column(name: str) -> np.ndarray:
        return arrays[PREFIX + name]

    kb: list[tuple[str, str, str]] = list(zip(
        column("kb_image").tolist(), column("kb_text").tolist(), column("kb_label").tolist(),
        strict=True))
    items = []
    rows, row_scores = column("neighbours"), column("neighbour_scores")
    for i, (image, text, truth, prediction, confidence, correct) in enumerate(zip(
            column("image").tolist(), column("text").tolist(), column("truth").tolist(),
            column("prediction").tolist(), column("confidence").tolist(),
            column("correct").tolist(), strict=True)):
        neighbours = _neighbours(kb, rows[i].tolist(), row_scores[i].tolist())
        items.append(ExplorerItem(i, image, text, truth, prediction, float(confidence),
                                  bool(correct), neighbours))
    return items


def _neighbours(kb: list[tuple[str, str, str]], rows: list[int], scores: list[float]
                ) -> tuple[Neighbour, ...]:
    """One item's neighbours: ``rows`` index ``kb`` (image, text, label); -1 pads."""
    return tuple(Neighbour(*kb[row], score=float(score))
                 for row, score in zip(rows, scores, strict=True) if row >= 0)


def explorable_cells(board) -> list[tuple[str, str, int]]:
    """``(task, system, seed)`` of every finished cell of ``board`` (a
    :class:`~ravlm_bench.publish.leaderboard.Leaderboard`) whose arrays hold explorer
    arrays, in the board's order.

    Raises :class:`DataError` (one line naming the file) for a cell whose arrays are
    missing, damaged or unreadable.
    """
    cells = board.cells
    if not len(cells):
        return []
    out = []
    for task, meta in board.tasks.items():
        for system in meta.get("systems", board.systems):
            ok = cells[(cells["task"] == task) & (cells["system"] == system)
                       & (cells["status"] == "ok")]
            out += [(task, system, int(row["seed"]))
                    for row in ok.sort_values("seed").to_dict("records")
                    if f"{PREFIX}image" in array_names(Path(row["path"]),
                                                       row.get("arrays_sha256"))]
    return out
