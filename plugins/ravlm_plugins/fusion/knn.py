"""``knn``: retrieval only. The labels of the top-``k`` retrieved items vote.

Scores are cosine similarities (the harness retrieves with metric ``"cos"``), so the cosine
distance is ``1 - score``. Weightings: ``uniform``; ``similarity`` (the score, negatives
clipped to 0); ``distance`` (``1 / distance`` as scikit-learn's ``weights="distance"``,
including its rule that exact matches take all the weight); ``softmax``
(``exp(score / temperature)``, the kNN-LM weighting). With ``interpolate=lambda`` the vote is
mixed with a trained ``concat`` head as kNN-LM does: ``lambda p_knn + (1 - lambda) p_head``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ravlm_bench.errors import ConfigError

WEIGHTINGS = ("uniform", "similarity", "distance", "softmax")


class KnnHead:
    name = "knn"
    uses_retrieval = True

    def __init__(self, *, dim: int, k: int = 10, weights: str = "similarity",
                 temperature: float = 0.1, interpolate: float | None = None, **head_params):
        if weights not in WEIGHTINGS:
            raise ConfigError(f"fusion head knn: weights {weights!r}; use one of {WEIGHTINGS}")
        if interpolate is not None and not 0.0 <= float(interpolate) <= 1.0:
            raise ConfigError(f"fusion head knn: interpolate must be in [0, 1], got {interpolate}")
        if temperature <= 0:
            raise ConfigError(f"fusion head knn: temperature must be > 0, got {temperature}")
        self.dim, self.k, self.weights = int(dim), int(k), weights
        self.temperature = float(temperature)
        self.interpolate = None if interpolate is None else float(interpolate)
        self.num_classes: int | None = None
        self.head = None
        if self.interpolate is not None:
            from .concat import ConcatHead

            self.head = ConcatHead(dim=dim, **head_params)
        elif head_params:
            raise ConfigError(f"fusion head knn: unknown parameters {sorted(head_params)} (a "
                              f"trained head's parameters need interpolate=...)")

    def fit(self, train, val=None, *, seed: int, checkpoint_dir: Path | str | None = None) -> dict:
        self.num_classes = int(train.num_classes)
        stats = {"head": self.name, "epochs": 0, "steps": 0, "seconds": 0.0}
        if self.head is not None:
            head_stats = self.head.fit(train, val, seed=seed, checkpoint_dir=checkpoint_dir)
            stats.update({k: v for k, v in head_stats.items() if k != "head"})
            stats["interpolated_head"] = self.head.name
        return stats

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


def vote(rows: np.ndarray, scores: np.ndarray, kb_labels: np.ndarray, num_classes: int,
         weights: str, temperature: float = 0.1) -> np.ndarray:
    """Class probabilities from neighbour labels; no valid neighbour -> uniform."""
    rows = np.asarray(rows, np.int64)
    scores = np.asarray(scores, np.float64)
    n = len(rows)
    labels = np.where(rows >= 0, kb_labels[np.maximum(rows, 0)], -1)
    valid = (labels >= 0) & (labels < num_classes)
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
    w = np.where(valid, w, 0.0)
    proba = np.zeros((n, num_classes), np.float64)
    np.add.at(proba, (np.repeat(np.arange(n), rows.shape[1]), np.maximum(labels, 0).ravel()),
              w.ravel())
    total = proba.sum(axis=1, keepdims=True)
    return np.where(total > 0, proba / np.where(total > 0, total, 1.0), 1.0 / num_classes)
