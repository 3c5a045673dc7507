"""The reference tasks honour the task contract (the conformance kit's check_task), and
coco-multilabel scores exactly as scikit-learn does."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score

from ravlm_bench.api import ClassScores, Metric, Resampler, SingleLabelEvaluation
from ravlm_bench.testing import check_task

TASKS = {"coco-category": "coco", "coco-multilabel": "coco", "coco-retrieval": "coco",
         "flickr30k-retrieval": "flickr30k", "flickr30k-itm": "flickr30k",
         "vg-qa": "visual_genome"}


@pytest.mark.parametrize("task_name", sorted(TASKS))
def test_reference_tasks_pass_the_conformance_kit(task_name, registry, demo_world):
    dataset_name = TASKS[task_name]
    dataset = registry.create("datasets", dataset_name, root=str(demo_world / dataset_name))
    check_task(registry.create("tasks", task_name), dataset)


def test_a_task_whose_metrics_lack_a_main_one_fails_the_kit(registry, demo_world):
    class NoMain(SingleLabelEvaluation):
        name, dataset = "no-main", "coco"

        def metrics(self):
            return (Metric("accuracy"),)

    dataset = registry.create("datasets", "coco", root=str(demo_world / "coco"))
    with pytest.raises(AssertionError, match="exactly one metric must be main"):
        check_task(NoMain(), dataset)


def test_a_task_that_forgets_a_declared_metric_fails_the_kit(registry, demo_world):
    task = registry.create("tasks", "coco-multilabel")
    real = task.evaluate

    def forgetful(*args):
        evaluation = real(*args)
        del evaluation.metrics["samples_f1"]
        return evaluation

    task.evaluate = forgetful
    dataset = registry.create("datasets", "coco", root=str(demo_world / "coco"))
    with pytest.raises(AssertionError, match="did not report the declared metric samples_f1"):
        check_task(task, dataset)


def test_coco_multilabel_scores_as_scikit_learn(registry, demo_world):
    task = registry.create("tasks", "coco-multilabel")
    dataset = registry.create("datasets", "coco", root=str(demo_world / "coco"))
    data = task.build(dataset, seed=0)
    y_true = np.asarray(data.test.labels, bool)
    assert y_true.ndim == 2 and y_true.shape[1] == len(data.classes)
    assert y_true.any(axis=1).all()  # every item shows at least one category
    scores = np.round(np.random.default_rng(0).random(y_true.shape), 1).astype(np.float32)
    result = task.evaluate(data, ClassScores(scores), Resampler(n_resamples=20))
    present = y_true.any(axis=0)
    expected_map = np.mean([average_precision_score(y_true[:, c], scores[:, c])
                            for c in np.flatnonzero(present)])
    assert result.metrics["mAP"] == pytest.approx(expected_map)
    for average in ("micro", "macro", "samples"):
        assert result.metrics[f"{average}_f1"] == pytest.approx(
            f1_score(y_true, scores >= 0.5, average=average, zero_division=0))
    assert all(len(values) == 20 for values in result.replicates.values())
