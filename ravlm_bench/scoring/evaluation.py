"""How a task's results are scored: metric declarations, shared resamples, evaluations.

A task declares its metrics (:class:`Metric`) and scores a cell's outputs in ``evaluate``,
returning an :class:`Evaluation`: point values, and for every bootstrapped metric its value
on each of the run's shared resamples (:class:`Resampler`). Resamples depend only on the
resampled unit and its count, never on the system or the seed, so every cell of a task is
scored on the same resamples. That is what lets the leaderboard, with no plugin code, build

* a cluster bootstrap over seeds: resample ``b`` of a system is the mean over its seeds of
  each seed's value on resample ``b``, i.e. every resampled test item carries its rows from
  every seed (repeating a seed does not narrow the interval);
* a paired test: the difference of two systems on the same resample ``b``.

The two reference evaluations (:class:`SingleLabelEvaluation` for classification,
:class:`RankingEvaluation` for image-text retrieval) are mixins a task can inherit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ravlm_bench.plugin_host.contracts import ClassificationData, RetrievalData, capability
from ravlm_bench.scoring import metrics
from ravlm_bench.scoring.metrics import CLASSIFICATION_METRICS
from ravlm_bench.scoring.resampling import INTERVAL_METHODS, Resampler


@dataclass(frozen=True)
class Metric:
    """One metric a task reports.

    :param bootstrap: what a resample draws, in words (``"test items"``, ``"captions"``),
        or None for a metric without an interval.
    :param aggregate: how seeds are summarised on the leaderboard: ``"mean"`` (with the
        sample standard deviation) or ``"median"``.
    :param interval: how its 95% interval is drawn from the resamples: ``"percentile"``, or
        ``"bias-corrected"`` for a metric whose resamples sit off-centre from the estimate
        (macro-F1: the F1 of rare classes is a ratio of small counts), where percentile
        intervals undercover (:func:`~ravlm_bench.scoring.resampling.interval`).
    """

    name: str
    higher_is_better: bool = True
    aggregate: Literal["mean", "median"] = "mean"
    bootstrap: str | None = "test items"
    main: bool = False
    interval: Literal["percentile", "bias-corrected"] = "percentile"

    def __post_init__(self) -> None:
        if self.interval not in INTERVAL_METHODS:
            raise ValueError(f"metric {self.name!r}: interval {self.interval!r}, expected one "
                             f"of {', '.join(INTERVAL_METHODS)}")

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "higher_is_better": self.higher_is_better,
                "aggregate": self.aggregate, "bootstrap": self.bootstrap, "main": self.main,
                "interval": self.interval}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Metric:
        return cls(name=str(raw["name"]), higher_is_better=bool(raw.get("higher_is_better", True)),
                   aggregate=raw.get("aggregate", "mean"), bootstrap=raw.get("bootstrap"),
                   main=bool(raw.get("main", False)),
                   interval=raw.get("interval", "percentile"))


def main_metric(metrics: tuple[Metric, ...] | list[Metric]) -> Metric:
    """The metric marked ``main`` (exactly one must be)."""
    mains = [m for m in metrics if m.main]
    if len(mains) != 1:
        raise ValueError(f"exactly one metric must be main, got {[m.name for m in mains]}")
    return mains[0]


@dataclass
class Evaluation:
    """A cell's scores.

    ``metrics``: point values (None where undefined). ``replicates``: per bootstrapped
    metric, its value on each shared resample (float64 ``(n_resamples,)``, NaN where
    undefined). ``details``: JSON-able extras kept in the cell (item counts, per-class
    scores). ``predictions``: arrays saved beside the cell for inspection.
    """

    metrics: dict[str, float | None]
    replicates: dict[str, np.ndarray] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    predictions: dict[str, np.ndarray] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------
# What the pipelines hand a task's evaluate()
# ---------------------------------------------------------------------------------------


@dataclass
class ClassScores:
    """A fusion head's scores for the test items: float32 ``(n, num_classes)``."""

    scores: np.ndarray


@dataclass
class Rankings:
    """A joint embedding's rankings of the test split, best first, ``-1`` padded.

    ``t2i``: image rows per caption ``(n_captions, depth)``; ``i2t``: caption rows per
    image ``(n_images, depth)``.
    """

    t2i: np.ndarray
    i2t: np.ndarray


# ---------------------------------------------------------------------------------------
# The reference evaluations
# ---------------------------------------------------------------------------------------


class SingleLabelEvaluation:
    """Single-label classification: weighted P/R/F1 (main: weighted F1), accuracy,
    macro-F1, head / tail F1, resampling the test items' images (the items of one image,
    its captions or questions, are drawn together). A task sets ``head_fraction``, and may
    override :meth:`clusters` to resample another unit."""

    head = "fusion-head"
    targets = "single-label"
    head_fraction = 0.5

    def metrics(self) -> tuple[Metric, ...]:
        return tuple(Metric(name, main=name == "weighted_f1", bootstrap="images",
                            interval="bias-corrected" if name == "macro_f1" else "percentile")
                     for name in CLASSIFICATION_METRICS)

    def clusters(self, data: ClassificationData) -> np.ndarray:
        """Each test item's cluster id, the unit a resample draws: its image. Items that
        share an image are not independent evidence; items with distinct ids are resampled
        one by one."""
        return np.asarray(data.test.image_ids, np.int64)

    def evaluate(self, data: ClassificationData, outputs: ClassScores,
                 resampler: Resampler) -> Evaluation:
        num_classes = len(data.classes)
        y_true = np.asarray(data.test.labels, np.int64)
        y_pred = np.asarray(outputs.scores).argmax(axis=1).astype(np.int64)
        train_counts = np.bincount(data.train.labels[data.train.labels >= 0],
                                   minlength=num_classes)
        clusters = self.clusters(data)
        scores = metrics.classification_metrics(
            y_true, y_pred, num_classes=num_classes, train_counts=train_counts,
            classes=data.classes, head_fraction=self.head_fraction, resampler=resampler,
            clusters=clusters)
        replicates = scores.pop("replicates")
        details = scores.pop("details")
        details["resampled"] = resampling_unit(clusters, "images")
        details["per_class"] = metrics.per_class_report(y_true, y_pred, num_classes=num_classes,
                                                        classes=data.classes)
        scores.pop("ci95")
        return Evaluation(
            metrics=scores, replicates=replicates, details=details,
            predictions={"y_true": y_true, "y_pred": y_pred,
                         "image_ids": np.asarray(data.test.image_ids, np.int64),
                         "train_counts": train_counts})


class RankingEvaluation:
    """Image-text retrieval: Recall@K both ways (main: their mean), resampling test images:
    a drawn image brings its captions, so text-to-image and image-to-text recall (and their
    mean) are resampled jointly, with each image's captions together. A task sets ``ks``."""

    head = "joint-embedding"
    targets = "image-text pairs"
    ks: tuple[int, ...] = (1, 5, 10)

    @property
    def ranking_depth(self) -> int:
        return max(self.ks)

    def metrics(self) -> tuple[Metric, ...]:
        return (*(Metric(f"i2t_R@{k}", bootstrap="images") for k in self.ks),
                *(Metric(f"t2i_R@{k}", bootstrap="images (with their captions)")
                  for k in self.ks),
                Metric("mean_recall", bootstrap="images (with their captions)", main=True))

    def evaluate(self, data: RetrievalData, outputs: Rankings,
                 resampler: Resampler) -> Evaluation:
        caption_image = np.asarray(data.test.caption_image, np.int64)
        t2i_hits, i2t_hits = metrics.ranking_hits(outputs.t2i, outputs.i2t, caption_image,
                                                  ks=self.ks)
        n_images = len(outputs.i2t)
        point = metrics.recall_from_hits(t2i_hits, i2t_hits, self.ks,
                                         np.ones((1, n_images)), caption_image)
        parts: dict[str, list[np.ndarray]] = {name: [] for name in point}
        for image_weights in resampler.cluster_counts(n_images, "image"):
            values = metrics.recall_from_hits(t2i_hits, i2t_hits, self.ks, image_weights,
                                              caption_image)
            for name, value in values.items():
                parts[name].append(value)
        return Evaluation(
            metrics={name: float(value[0]) for name, value in point.items()},
            replicates={name: np.concatenate(chunks) for name, chunks in parts.items()},
            details={"n_captions": int(len(caption_image)), "n_images": n_images,
                     "resampled": f"images ({n_images}, with their {len(caption_image)} "
                                  f"captions)"},
            # the rankings with what scores them: the cell can be rescored from its own files
            predictions={"t2i": np.asarray(outputs.t2i, np.int64),
                         "i2t": np.asarray(outputs.i2t, np.int64),
                         "caption_image": caption_image,
                         "image_ids": np.asarray(data.test.image_ids, np.int64)})


def resampling_unit(clusters: np.ndarray, unit: str) -> str:
    """What a resample drew, in words, for a cell's details: the clusters, or the items
    where no two items share one."""
    n_clusters = len(np.unique(clusters))
    if n_clusters == len(clusters):
        return f"test items ({len(clusters)}, one per {unit[:-1]})"
    return f"{unit} ({n_clusters}, with their {len(clusters)} test items)"


def task_declaration(task: Any) -> dict[str, Any]:
    """What run.json records of a task, so the leaderboard reads its cells without it.

    :raises ValueError: the task does not declare ``metrics()`` and ``evaluate()``, or its
        metric declarations are not valid.
    """
    if not (callable(getattr(task, "metrics", None)) and callable(getattr(task, "evaluate", None))):
        raise ValueError("a task declares metrics() and evaluate(); inherit "
                         "ravlm_bench.api.SingleLabelEvaluation or RankingEvaluation for the "
                         "reference ones")
    metrics = tuple(task.metrics())
    if not metrics or not all(isinstance(m, Metric) for m in metrics):
        raise ValueError("metrics() must return Metric declarations")
    names = [m.name for m in metrics]
    if len(set(names)) != len(names):
        raise ValueError(f"metrics() declares a name twice: {names}")
    return {"head": capability(task, "tasks", "head"),
            "targets": capability(task, "tasks", "targets"),
            "metrics": [m.as_dict() for m in metrics],
            "main_metric": main_metric(metrics).name}
