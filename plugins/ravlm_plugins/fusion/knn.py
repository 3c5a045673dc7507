"""``knn`` and ``multilabel-knn``, retrieval only: the labels of the top-``k`` retrieved
items vote, weighted uniformly, by similarity, by inverse distance or by a softmax
(:func:`neighbour_weights`); ``knn`` can mix its vote with a trained ``concat`` head as
kNN-LM does (``interpolate``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ravlm_bench.api import ConfigError, FusionHead, TrainingReport

from .labels import check_multi_hot, check_single_label
from .options import KnnOptions, MultilabelKnnOptions, VoteOptions, parse_options

# a knn parameter that is not one of these belongs to the interpolated concat head
VOTE_PARAMS = {f.name for f in dataclasses.fields(VoteOptions)} | {"interpolate"}


class KnnHead(FusionHead):
    """The neighbours' labels vote; with ``interpolate=lambda`` the vote is mixed with a
    trained ``concat`` head as kNN-LM does: ``lambda p_knn + (1 - lambda) p_head``."""

    name = "knn"
    uses_retrieval = True
    targets = ("single-label",)
    checkpoints = True  # fit takes checkpoint_dir= (for the interpolated head)

    def __init__(self, *, dim: int, **params):
        options = parse_options(KnnOptions, f"fusion head {self.name}", params)
        self.dim, self.k, self.weights = int(dim), int(options.k), options.weights
        self.temperature = float(options.temperature)
        self.interpolate = None if options.interpolate is None else float(options.interpolate)
        self.num_classes: int | None = None
        self.head = None
        head_params = {name: value for name, value in params.items() if name not in VOTE_PARAMS}
        if self.interpolate is not None:
            from .concat import ConcatHead

            self.head = ConcatHead(dim=dim, **head_params)
            return
        # without a head to train they would be ignored: a setting that changes nothing is
        # a mistake (a default value changes nothing either way)
        defaults = KnnOptions()
        unused = sorted(name for name, value in head_params.items()
                        if value != getattr(defaults, name))
        if unused:
            raise ConfigError(f"fusion head knn: parameters {unused} are the interpolated "
                              f"head's; they need interpolate=...")

    def fit(self, train, val=None, *, seed: int,
            checkpoint_dir: Path | str | None = None) -> TrainingReport:
        check_single_label(train.knowledge.labels, self.name, "knowledge-base")
        self.num_classes = int(train.num_classes)
        if self.head is None:
            return TrainingReport(extra={"head": self.name})
        report = self.head.fit(train, val, seed=seed, checkpoint_dir=checkpoint_dir)
        report.extra.update(head=self.name, interpolated_head=self.head.name)
        return report

    def predict_proba(self, inputs) -> np.ndarray:
        if self.num_classes is None:
            raise ConfigError("fusion head knn: predict_proba called before fit")
        proba = vote(inputs.neighbours[:, :self.k], inputs.neighbour_scores[:, :self.k],
                     np.asarray(inputs.knowledge.labels, np.int64), self.num_classes,
                     self.weights, self.temperature)
        if self.head is not None:
            lam = self.interpolate
            proba = lam * proba + (1.0 - lam) * self.head.predict_proba(inputs)
        return proba.astype(np.float32)


class MultilabelKnnHead(FusionHead):
    """Per class, the weighted share of the top-``k`` neighbours whose label row has it."""

    name = "multilabel-knn"
    uses_retrieval = True
    targets = ("multi-label",)

    def __init__(self, *, dim: int, **params):
        options = parse_options(MultilabelKnnOptions, f"fusion head {self.name}", params)
        self.dim, self.k, self.weights = int(dim), int(options.k), options.weights
        self.temperature = float(options.temperature)
        self.prior: np.ndarray | None = None  # training label frequencies, (num_classes,)

    def fit(self, train, val=None, *, seed: int) -> TrainingReport:
        num_classes = int(train.num_classes)
        check_multi_hot(train.knowledge.labels, num_classes, self.name, "knowledge-base")
        labels = train.knowledge.labels if train.labels is None else train.labels
        check_multi_hot(labels, num_classes, self.name, "training")
        self.prior = np.asarray(labels, np.float64).mean(axis=0) if len(labels) \
            else np.full(num_classes, 0.5)
        return TrainingReport(extra={"head": self.name})

    def predict_proba(self, inputs) -> np.ndarray:
        if self.prior is None:
            raise ConfigError(f"fusion head {self.name}: predict_proba called before fit")
        proba = multilabel_vote(inputs.neighbours[:, :self.k],
                                inputs.neighbour_scores[:, :self.k],
                                np.asarray(inputs.knowledge.labels), self.weights,
                                self.temperature, self.prior)
        return proba.astype(np.float32)


def neighbour_weights(scores: np.ndarray, valid: np.ndarray, weights: str,
                      temperature: float = 0.1) -> np.ndarray:
    """Each neighbour's vote weight (float64, 0 for an invalid neighbour).

    Scores are cosine similarities (the harness hands heads those whatever the metric), so
    the cosine distance is ``1 - score``. ``uniform``: 1; ``similarity``: the score,
    negatives clipped to 0; ``distance``: ``1 / distance`` as scikit-learn's
    ``weights="distance"``, including its rule that exact matches take all the weight;
    ``softmax``: ``exp(score / temperature)``, the kNN-LM weighting.
    """
    scores = np.asarray(scores, np.float64)
    if weights == "uniform":
        w = np.ones_like(scores)
    elif weights == "similarity":
        w = np.clip(scores, 0.0, None)
    elif weights == "softmax":
        # subtract each row's best valid score: exp never overflows
        top = np.max(np.where(valid, scores, -np.inf), axis=1, initial=-np.inf, keepdims=True)
        w = np.exp((scores - np.where(np.isfinite(top), top, 0.0)) / temperature)
    else:
        distance = np.maximum(1.0 - scores, 0.0)
        exact = (distance == 0) & valid
        with np.errstate(divide="ignore"):
            w = 1.0 / distance
        w = np.where(exact.any(axis=1, keepdims=True), exact.astype(np.float64), w)
    return np.where(valid, w, 0.0)


def vote(rows: np.ndarray, scores: np.ndarray, kb_labels: np.ndarray, num_classes: int,
         weights: str, temperature: float = 0.1) -> np.ndarray:
    """Class probabilities from neighbour labels; no valid neighbour -> uniform."""
    rows = np.asarray(rows, np.int64)
    n = len(rows)
    labels = np.where(rows >= 0, kb_labels[np.maximum(rows, 0)], -1)
    valid = (labels >= 0) & (labels < num_classes)
    w = neighbour_weights(scores, valid, weights, temperature)
    proba = np.zeros((n, num_classes), np.float64)
    np.add.at(proba, (np.repeat(np.arange(n), rows.shape[1]), np.maximum(labels, 0).ravel()),
              w.ravel())
    total = proba.sum(axis=1, keepdims=True)
    return np.where(total > 0, proba / np.where(total > 0, total, 1.0), 1.0 / num_classes)


def multilabel_vote(rows: np.ndarray, scores: np.ndarray, kb_labels: np.ndarray, weights: str,
                    temperature: float, prior: np.ndarray) -> np.ndarray:
    """Per-class probabilities: the weighted mean of the neighbours' multi-hot rows (the
    weighted share of neighbours that have the class). A row with no valid neighbour (or
    zero total weight) gets ``prior``, the training split's label frequencies: the best
    guess without evidence, where a uniform 0.5 would claim half of the classes."""
    rows = np.asarray(rows, np.int64)
    valid = (rows >= 0) & (rows < len(kb_labels))
    w = neighbour_weights(scores, valid, weights, temperature)
    votes = np.zeros((len(rows), kb_labels.shape[1]), np.float64)
    for slot in range(rows.shape[1]):  # one neighbour rank at a time: memory stays (n, classes)
        votes += w[:, slot, None] * kb_labels[np.where(valid[:, slot], rows[:, slot], 0)]
    total = w.sum(axis=1, keepdims=True)
    return np.where(total > 0, votes / np.where(total > 0, total, 1.0), prior[None, :])
