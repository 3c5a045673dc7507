"""coco-multilabel: image + caption -> every non-crowd category present in the image.

A task kind of its own, written against the public API alone: labels are multi-hot rows
over the categories seen in training, heads give independent per-class probabilities, and
the task scores them with scikit-learn's definitions:

* ``mAP``: ``average_precision_score(average="macro")`` over the categories with at least
  one positive test item (AP is undefined for the others);
* ``micro_f1``, ``macro_f1``, ``samples_f1``: ``f1_score`` with that ``average`` and
  ``zero_division=0``, of the predictions ``probability >= threshold``.

Bootstrap resamples draw test images (one item each); a resample is scored as
scikit-learn scores the data with each item weighted by how often it was drawn
(``sample_weight``), computed for all resamples at once.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd

from ravlm_bench.api import (
    ClassificationData,
    ClassScores,
    DataError,
    Evaluation,
    LabelledSplit,
    Metric,
    Resampler,
)
from ravlm_plugins.tasks import splits
from ravlm_plugins.tasks.coco_category import _with_captions
from ravlm_plugins.tasks.labelled import refuse_empty_label_space

log = logging.getLogger(__name__)

METRICS = ("mAP", "micro_f1", "macro_f1", "samples_f1")


class CocoMultilabel:
    name = "coco-multilabel"
    dataset = "coco"
    head = "fusion-head"
    targets = "multi-label"

    def __init__(self, captions_per_image: int = 1, min_count: int = 1,
                 threshold: float = 0.5):
        self.captions_per_image = int(captions_per_image)
        self.min_count = int(min_count)
        self.threshold = float(threshold)

    def metrics(self) -> tuple[Metric, ...]:
        return tuple(Metric(name, main=name == "mAP", bootstrap="images",
                            interval="bias-corrected" if name == "macro_f1" else "percentile")
                     for name in METRICS)

    # -- the splits -------------------------------------------------------------------------

    def build(self, dataset, seed: int) -> ClassificationData:
        images = splits.split_frames(dataset, "images")
        all_captions = splits.load(dataset, "captions", dataset.splits())
        all_instances = splits.load(dataset, "instances", dataset.splits())
        present = _categories_per_image(all_instances)
        rng = np.random.default_rng(seed)
        frames = {}
        for role, frame in images.items():
            items = frame[["image_id", "image_path"]].merge(present, on="image_id")
            if len(items) < len(frame):
                log.info("coco-multilabel: %d %s images have no non-crowd instance; skipped",
                         len(frame) - len(items), role)
            captions = all_captions[all_captions["image_id"].isin(items["image_id"])]
            frames[role] = _with_captions(items, captions, self.captions_per_image, rng)
        for role in ("train", "test"):
            if not len(frames[role]):
                raise DataError(f"{dataset.root}: coco-multilabel has no {role} image with a "
                                f"non-crowd instance and a caption")
        counts = frames["train"].drop_duplicates("image_id")["label"].explode().value_counts()
        refuse_empty_label_space(self.name, counts, self.min_count, "category",
                                 "training images")
        counts = counts[counts >= self.min_count]
        classes = sorted(counts.index, key=lambda c: (-counts[c], c))
        parts = {role: _split(frame, classes) for role, frame in frames.items()}
        return ClassificationData(classes=classes, train=parts["train"], val=parts.get("val"),
                                  test=parts["test"])

    # -- the scores -------------------------------------------------------------------------

    def evaluate(self, data: ClassificationData, outputs: ClassScores,
                 resampler: Resampler) -> Evaluation:
        y_true = np.asarray(data.test.labels, dtype=bool)
        scores = np.asarray(outputs.scores, dtype=np.float64)
        y_pred = scores >= self.threshold
        point = multilabel_scores(y_true, scores, y_pred, np.ones((1, len(y_true))))
        parts: dict[str, list[np.ndarray]] = {name: [] for name in METRICS}
        for weights in resampler.weights(data.test.image_ids):
            for name, values in multilabel_scores(y_true, scores, y_pred, weights).items():
                parts[name].append(values)
        return Evaluation(
            metrics={name: _finite(values[0]) for name, values in point.items()},
            replicates={name: np.concatenate(chunks) for name, chunks in parts.items()},
            details={"n_items": int(len(y_true)), "threshold": self.threshold,
                     "labels_per_item": float(y_true.sum(axis=1).mean()) if len(y_true) else 0.0,
                     "categories_without_test_positives": int((~y_true.any(axis=0)).sum())},
            predictions={"y_true": y_true, "scores": scores.astype(np.float32),
                         "image_ids": np.asarray(data.test.image_ids, np.int64)})


def _categories_per_image(instances: pd.DataFrame) -> pd.DataFrame:
    """image_id -> label: the sorted list of its non-crowd categories."""
    solid = instances[~instances["iscrowd"].astype(bool)]
    grouped = solid.groupby("image_id")["category"].agg(lambda c: sorted(set(c)))
    return grouped.rename("label").reset_index()


def _split(frame: pd.DataFrame, classes: list[str]) -> LabelledSplit:
    """Multi-hot rows over ``classes``; categories outside them are not scored."""
    column = {c: i for i, c in enumerate(classes)}
    labels = np.zeros((len(frame), len(classes)), np.float32)
    for row, present in enumerate(frame["label"]):
        for category in present:
            if category in column:
                labels[row, column[category]] = 1.0
    return LabelledSplit(image_ids=frame["image_id"].to_numpy(np.int64),
                         image_paths=frame["image_path"].tolist(),
                         texts=frame["text"].tolist(), labels=labels)


def multilabel_scores(y_true: np.ndarray, scores: np.ndarray, y_pred: np.ndarray,
                      weights: np.ndarray) -> dict[str, np.ndarray]:
    """mAP and micro / macro / samples F1, one value per row of ``weights`` (B, n): the
    items weighted as scikit-learn's ``sample_weight`` weighs them."""
    truth, pred = y_true.astype(np.float64), y_pred.astype(np.float64)
    tp = weights @ (truth * pred)  # (B, C)
    fp = weights @ ((1 - truth) * pred)
    fn = weights @ (truth * (1 - pred))
    micro = _divide(2 * tp.sum(1), 2 * tp.sum(1) + fp.sum(1) + fn.sum(1))
    macro = _divide(2 * tp, 2 * tp + fp + fn).mean(axis=1)
    hits, sizes = (truth * pred).sum(1), truth.sum(1) + pred.sum(1)
    per_item = _divide(2 * hits, sizes)  # zero_division=0 for items with nothing on either side
    samples = _divide(weights @ per_item, weights.sum(axis=1))
    return {"mAP": _mean_average_precision(truth, scores, weights), "micro_f1": micro,
            "macro_f1": macro, "samples_f1": samples}


def _mean_average_precision(truth: np.ndarray, scores: np.ndarray,
                            weights: np.ndarray) -> np.ndarray:
    """scikit-learn's macro average precision over the categories with a positive item;
    tied scores form one threshold, as in ``precision_recall_curve``."""
    per_class = []
    for c in np.flatnonzero(truth.any(axis=0)):
        order = np.argsort(-scores[:, c], kind="stable")
        ranked = scores[order, c]
        last_of_tie = np.r_[np.flatnonzero(np.diff(ranked)), len(ranked) - 1]
        w = weights[:, order]
        tps = np.cumsum(w * truth[order, c], axis=1)[:, last_of_tie]
        seen = np.cumsum(w, axis=1)[:, last_of_tie]
        positives = tps[:, -1:]
        precision = _divide(tps, seen)
        recall = _divide(tps, positives)
        steps = np.diff(recall, axis=1, prepend=0.0)
        ap = (steps * precision).sum(axis=1)
        # a resample that drew no positive of this class has no AP for it
        per_class.append(np.where(positives[:, 0] > 0, ap, np.nan))
    if not per_class:
        return np.full(len(weights), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a resample with no AP at all: NaN
        return np.nanmean(np.stack(per_class, axis=1), axis=1)


def _divide(num, den) -> np.ndarray:
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    out = np.zeros(np.broadcast(num, den).shape)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None

