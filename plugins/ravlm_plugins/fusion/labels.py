"""The two label forms of fusion-head tasks (single-label: int64 ``(n,)``, ``-1`` outside
the label space; multi-label: multi-hot rows ``(n, num_classes)`` of 0 and 1), their
checks, and the multi-label validation scores (numpy only).
"""

from __future__ import annotations

import numpy as np

from ravlm_bench.api import ConfigError, DataError


def check_single_label(labels, head: str, split: str) -> None:
    shape = np.shape(labels)
    if len(shape) != 1:
        raise ConfigError(f"fusion head {head} predicts single-label targets, but the {split} "
                          f"labels are multi-hot rows {shape}: use a multi-label head "
                          f"(multilabel-linear, multilabel-knn)")


def check_multi_hot(labels, num_classes: int, head: str, split: str) -> None:
    shape = np.shape(labels)
    if len(shape) != 2 or shape[1] != num_classes:
        hint = " (a single-label task? use a single-label head)" if len(shape) == 1 else ""
        raise ConfigError(f"fusion head {head} predicts multi-label targets: the {split} labels "
                          f"must be multi-hot rows (n, {num_classes}), got shape {shape}{hint}")
    if not np.isin(np.asarray(labels), (0, 1)).all():
        raise DataError(f"fusion head {head}: the {split} labels must be 0 or 1")


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """The area under one class's precision-recall curve, as scikit-learn's
    ``average_precision_score`` (tied scores form one threshold). ``labels`` has a positive."""
    order = np.argsort(-scores, kind="stable")
    scores, labels = scores[order], labels[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    true_positives = np.cumsum(labels)[last_of_tie]
    precision = true_positives / (last_of_tie + 1)
    recall = true_positives / true_positives[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def mean_average_precision(labels: np.ndarray, proba: np.ndarray) -> float:
    """Average precision averaged over the classes with a positive item (0 if none has one:
    a class without positives has no precision-recall curve)."""
    labels = np.asarray(labels) > 0.5
    present = np.flatnonzero(labels.any(axis=0))
    if not len(present):
        return 0.0
    return float(np.mean([average_precision(labels[:, c], proba[:, c]) for c in present]))


def micro_f1(labels: np.ndarray, proba: np.ndarray, threshold: float = 0.5) -> float:
    """F1 over every (item, class) cell, a class predicted at probability >= ``threshold``
    (0 when there is neither a positive nor a prediction, as scikit-learn)."""
    truth, predicted = np.asarray(labels) > 0.5, np.asarray(proba) >= threshold
    true_positives = np.sum(truth & predicted)
    denominator = truth.sum() + predicted.sum()
    return float(2 * true_positives / denominator) if denominator else 0.0


SCORES = {"map": mean_average_precision, "micro_f1": micro_f1}
