"""Turning per-split item tables into a ClassificationData with a fixed label space."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from ravlm_bench.api import ClassificationData, LabelledSplit

log = logging.getLogger(__name__)


def label_space(train_labels: pd.Series, top_n: int | None = None, min_count: int = 1) -> list[str]:
    """The training labels seen at least ``min_count`` times, most frequent first (top N)."""
    counts = train_labels.value_counts()
    counts = counts[counts >= min_count]
    # ties broken by name so the label space never depends on row order
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    if top_n is not None:
        ordered = ordered[:top_n]
    return [label for label, _ in ordered]


def classification_data(
    task: str, frames: dict[str, pd.DataFrame], classes: list[str]
) -> ClassificationData:
    """Frames with columns image_id, image_path, text, label -> ClassificationData.

    Training items outside the label space are dropped (they cannot be learned); val and test
    items outside it keep label -1 and count as wrong, never silently dropped.
    """
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
        ) if len(frame) else None
    return ClassificationData(classes=classes, train=splits["train"], val=splits.get("val"),
                              test=splits["test"])
