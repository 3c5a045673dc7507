"""Conformance checks for tasks: declarations, deterministic ``build`` and an
``evaluate`` that scores its own outputs."""

from __future__ import annotations

from typing import Any

import numpy as np

from ravlm_bench.testing._common import _fail


def check_task(task: Any, dataset: Any, *, seed: int = 0) -> None:
    """Check a task against ``dataset`` (a loaded dataset it reads): its declarations (head
    interface, targets, metrics with exactly one main), ``build`` (the same data for the same
    seed; labels fitting the targets) and ``evaluate`` on outputs of the declared head
    interface: an Evaluation with a value for every declared metric, a resample value per
    bootstrapped metric, the same result twice."""
    from ravlm_bench.plugin_host.contracts import CAPABILITIES, capability
    from ravlm_bench.scoring.evaluation import (
        ClassScores,
        Evaluation,
        Metric,
        Rankings,
        Resampler,
        main_metric,
    )

    name = getattr(task, "name", type(task).__name__)
    head = capability(task, "tasks", "head")
    if head not in ("fusion-head", "joint-embedding"):
        _fail(f"task {name}: head {head!r} is neither 'fusion-head' nor 'joint-embedding'")
    if not isinstance(getattr(task, "dataset", None), str):
        _fail(f"task {name}: dataset must name the dataset plugin it reads")
    metrics = tuple(task.metrics())
    if not metrics or not all(isinstance(m, Metric) for m in metrics):
        _fail(f"task {name}: metrics() must return Metric declarations")
    try:
        main_metric(metrics)
    except ValueError as exc:
        _fail(f"task {name}: {exc}")
    data, again = task.build(dataset, seed), task.build(dataset, seed)
    if len(data.test) == 0 or len(data.train) == 0:
        _fail(f"task {name}: build() gave an empty train or test split")
    if not np.array_equal(np.asarray(data.test.image_ids), np.asarray(again.test.image_ids)):
        _fail(f"task {name}: build() with the same seed gave other test items")
    rng = np.random.default_rng(seed)
    if head == "fusion-head":
        targets = capability(task, "tasks", "targets")
        labels = np.asarray(data.test.labels)
        width = len(data.classes)
        expected_ndim = 2 if targets == "multi-label" else 1
        if labels.ndim != expected_ndim:
            _fail(f"task {name}: {targets} targets need labels of {expected_ndim} dimension(s), "
                  f"got shape {labels.shape}")
        scores = rng.random((len(data.test), width)).astype(np.float32)
        if targets != "multi-label":
            scores /= scores.sum(axis=1, keepdims=True)
        outputs: ClassScores | Rankings = ClassScores(scores)
    else:
        depth = int(capability(task, "tasks", "ranking_depth") or
                    CAPABILITIES["tasks"]["ranking_depth"])
        n_images, n_captions = len(data.test.image_ids), len(data.test.texts)
        outputs = Rankings(
            t2i=np.stack([rng.permutation(n_images)[:depth] for _ in range(n_captions)]),
            i2t=np.stack([rng.permutation(n_captions)[:depth] for _ in range(n_images)]))
    resampler = Resampler(n_resamples=50)
    first = task.evaluate(data, outputs, resampler)
    second = task.evaluate(data, outputs, resampler)
    if not isinstance(first, Evaluation):
        _fail(f"task {name}: evaluate() returned {type(first).__name__}, not an Evaluation")
    for metric in metrics:
        value = first.metrics.get(metric.name, "missing")
        if value == "missing":
            _fail(f"task {name}: evaluate() did not report the declared metric {metric.name}")
        if value is not None and not np.isfinite(value):
            _fail(f"task {name}: metric {metric.name} is {value}")
        if metric.bootstrap:
            values = first.replicates.get(metric.name)
            if values is None or np.shape(values) != (resampler.n_resamples,):
                _fail(f"task {name}: bootstrapped metric {metric.name} needs one value per "
                      f"resample ({resampler.n_resamples}), got "
                      f"{None if values is None else np.shape(values)}")
            if not np.array_equal(values, second.replicates[metric.name], equal_nan=True):
                _fail(f"task {name}: evaluate() gave other resample values the second time")
    if first.metrics != second.metrics:
        _fail(f"task {name}: evaluate() gave other metrics the second time")
