"""Turning per-split item tables into a ClassificationData with a fixed label space, and
refusing, with one line naming the task and the option, the options or data that would
leave the label space or a split empty."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from ravlm_bench.api import ClassificationData, DataError, LabelledSplit

log = logging.getLogger(__name__)


def label_space(train_labels: pd.Series, top_n: int | None = None, min_count: int = 1, *,
                task: str, label: str = "class", items: str = "training items") -> list[str]:
    """The training labels seen at least ``min_count`` times, most frequent first (top N);
    a DataError when none is (``label`` and ``items`` say what they are in its message)."""
    counts = train_labels.value_counts()
    refuse_empty_label_space(task, counts, min_count, label, items)
    counts = counts[counts >= min_count]
    # ties broken by name so the label space never depends on row order
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    if top_n is not None:
        ordered = ordered[:top_n]
    return [label for label, _ in ordered]


def refuse_empty_label_space(task: str, counts: pd.Series, min_count: int,
                             label: str = "class", items: str = "training items") -> None:
    """A DataError when no label has ``min_count`` training items: the task would have no
    classes to learn, and every cell would fail alike."""
    if not len(counts):
        raise DataError(f"{task}: no {items} with a {label}; the task has nothing to learn")
    if int(counts.max()) < min_count:
        raise DataError(f"{task}: min_count = {min_count} leaves no {label} with that many "
                        f"{items} (the most frequent has {int(counts.max())})")


def classification_data(
    task: str, frames: dict[str, pd.DataFrame], classes: list[str],
    item_fields: tuple[str, ...] = (),
) -> ClassificationData:
    """Frames with columns image_id, image_path, text, label -> ClassificationData.

    Training items outside the label space are dropped (they cannot be learned); val and test
    items outside it keep label -1 and count as wrong, never silently dropped. Optional
    columns ``answers`` and ``evidence`` become the splits' fields of those names, and
    ``item_fields`` names further columns kept per item for the task's evaluate().
    """
    for role in ("train", "test"):
        if not len(frames[role]):
            raise DataError(f"{task}: the {role} split has no items the task can use (no "
                            f"image there has both a label and a text)")
    index = {label: i for i, label in enumerate(classes)}
    splits = {}
    for role, frame in frames.items():
        labels = frame["label"].map(index).fillna(-1).astype(np.int64).to_numpy()
        if role == "train":
            keep = labels >= 0
            if (~keep).any():
                log.info("%s: %d training items have labels outside the %d classes; dropped",
                         task, int((~keep).sum()), len(classes))
            frame, labels = frame[keep], labels[keep]
        elif (labels < 0).any():
            log.info("%s: %d %s items have labels outside the label space (count as wrong)",
                     task, int((labels < 0).sum()), role)
        splits[role] = LabelledSplit(
            image_ids=frame["image_id"].to_numpy(dtype=np.int64),
            image_paths=frame["image_path"].tolist(),
            texts=frame["text"].tolist(),
            labels=labels,
            answers=[list(a) for a in frame["answers"]] if "answers" in frame else None,
            evidence=frame["evidence"].tolist() if "evidence" in frame else None,
            item_fields={name: frame[name].tolist() for name in item_fields} or None,
        ) if len(frame) else None
    return ClassificationData(classes=classes, train=splits["train"], val=splits.get("val"),
                              test=splits["test"])
