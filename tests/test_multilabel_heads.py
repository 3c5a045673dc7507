"""The multi-label fusion heads (``multilabel-linear``, ``multilabel-knn``): independent
per-class probabilities from multi-hot labels, trained by the shared loop or voted by the
neighbours, and the conformance kit for multi-label targets."""

from __future__ import annotations

import numpy as np
import pytest

from ravlm_bench.api import (
    FusionHead,
    FusionInputs,
    KnowledgeBase,
    TrainingReport,
    check_fusion_head,
)
from ravlm_bench.foundation.errors import ConfigError
from ravlm_bench.plugin_host.contracts import validate_proba
from ravlm_plugins.fusion.labels import mean_average_precision, micro_f1

D_IMAGE, D_TEXT, CLASSES = 10, 6, 5
DIM = D_IMAGE + D_TEXT

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def head(registry, name, **params):
    return registry.create("fusion-heads", name, dim=DIM, **params)


def inputs(image, text, labels, kb, neighbours=None, scores=None) -> FusionInputs:
    n = len(image)
    return FusionInputs(
        image=image, text=text,
        neighbours=np.empty((n, 0), np.int64) if neighbours is None else neighbours,
        neighbour_scores=np.empty((n, 0), np.float32) if scores is None else scores,
        knowledge=kb, num_classes=kb.labels.shape[1] if kb.labels.ndim == 2 else CLASSES,
        labels=labels,
        image_ids=np.arange(n, dtype=np.int64))


def separable_task(n_train=600, n_val=150, n_test=200, seed=0):
    """Class c is present when the item's features lie on the positive side of the class's
    own hyperplane: every class independent of the others, each linearly separable."""
    rng = np.random.default_rng(seed)
    planes = rng.normal(size=(DIM, CLASSES))
    offsets = np.array([0.0, 0.5, -0.5, 1.0, 0.0])  # classes from common to rare

    def split(n):
        x = rng.normal(size=(n, DIM)).astype(np.float32)
        labels = (x @ planes > offsets * np.linalg.norm(planes, axis=0)).astype(np.float32)
        return x[:, :D_IMAGE], x[:, D_IMAGE:], labels

    train, val, test = split(n_train), split(n_val), split(n_test)
    kb = KnowledgeBase(train[0], train[1], train[2], np.arange(n_train, dtype=np.int64))
    return inputs(*train, kb), inputs(*val, kb), inputs(*test[:2], None, kb), test[2]


FAST = {"hidden": 64, "epochs": 40, "lr": 3e-3, "progress": False}


def test_multilabel_linear_learns_a_separable_multilabel_problem(registry):
    train, val, test, test_labels = separable_task()
    model = head(registry, "multilabel-linear", **FAST)
    report = model.fit(train, val, seed=0)
    proba = validate_proba(model.predict_proba(test), len(test), CLASSES)
    assert micro_f1(test_labels, proba) > 0.9
    assert mean_average_precision(test_labels, proba) > 0.95
    # early stopping followed validation mAP
    assert report.extra["head"] == "multilabel-linear" and report.extra["best_val_map"] > 0.9
    # independent per-class probabilities: an item may have several classes, or none
    predicted = (proba >= 0.5).sum(axis=1)
    assert predicted.max() >= 2 and predicted.min() == 0


def test_multilabel_linear_stops_early_on_validation_micro_f1(registry):
    train, val, _, _ = separable_task(seed=1)
    model = head(registry, "multilabel-linear", val_metric="micro_f1", patience=2,
                 **{**FAST, "lr": 3e-2, "epochs": 200})
    report = model.fit(train, val, seed=0)
    assert report.extra["stopped_early"]
    assert report.epochs == report.extra["best_epoch"] + 2
    assert micro_f1(val.labels, model.predict_proba(val)) == report.extra["best_val_micro_f1"]


def test_multilabel_linear_resumes_from_its_checkpoint_bit_identically(registry, tmp_path):
    train, val, test, _ = separable_task(n_train=200, n_val=50, n_test=50, seed=2)
    params = {"hidden": 32, "progress": False, "patience": 0, "class_weights": "balanced"}
    straight = head(registry, "multilabel-linear", epochs=4, **params)
    straight.fit(train, val, seed=3)
    head(registry, "multilabel-linear", epochs=2, **params).fit(train, val, seed=3,
                                                                checkpoint_dir=tmp_path)
    resumed = head(registry, "multilabel-linear", epochs=4, **params)
    report = resumed.fit(train, val, seed=3, checkpoint_dir=tmp_path)
    assert report.resumed_from_epoch == 2 and report.epochs == 4
    np.testing.assert_array_equal(straight.predict_proba(test), resumed.predict_proba(test))


def test_balanced_class_weights_weigh_a_classs_positives_by_its_negatives():
    from ravlm_plugins.fusion.objectives import balanced_positive_weights

    labels = np.array([[1, 0, 1], [0, 0, 1], [0, 0, 1], [0, 0, 1]], np.float32)
    np.testing.assert_allclose(balanced_positive_weights(labels).numpy(), [3.0, 1.0, 0.0])


def hand_built_votes():
    """Four knowledge-base items; three queries: two neighbours, one padded slot; one
    neighbour; none at all."""
    kb_labels = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 1], [0, 0, 0]], np.float32)
    zeros = np.zeros((4, 2), np.float32)
    kb = KnowledgeBase(zeros, zeros, kb_labels, np.arange(4, dtype=np.int64))
    queries = np.zeros((3, 2), np.float32)
    neighbours = np.array([[1, 2, -1], [3, -1, -1], [-1, -1, -1]], np.int64)
    scores = np.array([[0.6, 0.2, 0.0], [0.9, 0.0, 0.0], [0.0, 0.0, 0.0]], np.float32)
    return inputs(queries, queries, None, kb, neighbours, scores)


@pytest.mark.parametrize(("weights", "first_row"), [
    ("uniform", [0.5, 1.0, 0.5]),  # items 1 and 2 count alike
    ("similarity", [0.75, 1.0, 0.25]),  # item 1 weighs 0.6, item 2 weighs 0.2
])
def test_multilabel_knn_gives_each_class_its_weighted_share_of_neighbours(registry, weights,
                                                                         first_row):
    query = hand_built_votes()
    model = head(registry, "multilabel-knn", k=3, weights=weights)
    training = query.knowledge  # the training split is the knowledge base
    model.fit(inputs(training.image, training.text, training.labels, training), None, seed=0)
    proba = validate_proba(model.predict_proba(query), 3, 3)
    np.testing.assert_allclose(proba[0], first_row, rtol=1e-6)
    np.testing.assert_array_equal(proba[1], [0, 0, 0])  # its one neighbour has no class
    # no neighbour: the training split's label frequencies (items 0-3: 2, 2 and 1 of 4)
    np.testing.assert_allclose(proba[2], [0.5, 0.5, 0.25])


def test_multilabel_knn_distance_weighting_gives_an_exact_match_all_the_weight(registry):
    query = hand_built_votes()
    query.neighbour_scores[0] = [1.0, 0.5, 0.0]  # item 1 is the query itself
    model = head(registry, "multilabel-knn", k=3, weights="distance")
    model.fit(inputs(query.knowledge.image, query.knowledge.text, query.knowledge.labels,
                     query.knowledge), None, seed=0)
    np.testing.assert_array_equal(model.predict_proba(query)[0], [1, 1, 0])


@pytest.mark.parametrize(("name", "params"), [
    ("multilabel-linear", {"hidden": 16, "epochs": 2, "progress": False}),
    ("multilabel-linear", {"hidden": 16, "epochs": 2, "progress": False,
                           "val_metric": "micro_f1", "class_weights": "balanced"}),
    ("multilabel-knn", {"k": 5}),
    ("multilabel-knn", {"k": 5, "weights": "softmax"}),
])
def test_multilabel_heads_pass_the_conformance_kit(registry, name, params):
    check_fusion_head(lambda **kw: registry.create("fusion-heads", name, **params, **kw),
                      targets="multi-label")


class RawVoteCountHead(FusionHead):
    """Broken: sums the neighbours' label rows instead of averaging them (counts, not
    probabilities)."""

    k = 5
    targets = ("multi-label",)

    def fit(self, train, val, *, seed):
        return TrainingReport()  # nothing to train

    def predict_proba(self, inputs):
        rows = inputs.neighbours[:, :self.k]
        labels = inputs.knowledge.labels[np.maximum(rows, 0)] * (rows >= 0)[..., None]
        return labels.sum(axis=1).astype(np.float32)


def test_the_conformance_kit_rejects_multilabel_scores_outside_0_1():
    with pytest.raises(AssertionError, match=r"probabilities must lie in \[0, 1\]"):
        check_fusion_head(lambda **kw: RawVoteCountHead(), targets="multi-label")


def test_heads_refuse_labels_of_the_other_form(registry):
    train, _, _, _ = separable_task(n_train=40, n_val=5, n_test=5)
    single = inputs(train.image, train.text, np.zeros(40, np.int64),
                    KnowledgeBase(train.image, train.text, np.zeros(40, np.int64),
                                  np.arange(40, dtype=np.int64)))
    with pytest.raises(ConfigError, match="concat predicts single-label targets.*"
                                          "multilabel-linear"):
        head(registry, "concat", epochs=1, progress=False).fit(train, None, seed=0)
    with pytest.raises(ConfigError, match="knn predicts single-label targets"):
        head(registry, "knn").fit(train, None, seed=0)
    with pytest.raises(ConfigError, match=r"multilabel-linear predicts multi-label targets.*"
                                          r"\(n, 5\), got shape \(40,\)"):
        head(registry, "multilabel-linear", epochs=1, progress=False).fit(single, None, seed=0)
    with pytest.raises(ConfigError, match="multilabel-knn predicts multi-label targets"):
        head(registry, "multilabel-knn").fit(single, None, seed=0)


def test_multilabel_heads_declare_their_targets(registry):
    linear, knn = head(registry, "multilabel-linear"), head(registry, "multilabel-knn", k=7)
    assert linear.targets == knn.targets == ("multi-label",)
    assert not linear.uses_retrieval and knn.uses_retrieval and knn.k == 7
    assert linear.data_parallel and linear.checkpoints
    assert not knn.data_parallel and not knn.checkpoints


def test_validation_scores_equal_scikit_learn():
    from sklearn.metrics import average_precision_score, f1_score

    rng = np.random.default_rng(3)
    labels = (rng.random((60, 6)) < 0.3).astype(np.float32)
    labels[:, 5] = 0  # a class with no positive is left out of the mean
    proba = np.round(rng.random((60, 6)), 1)  # ties: tied scores form one threshold
    present = labels[:, :5]
    expected_map = average_precision_score(present, proba[:, :5], average="macro")
    assert mean_average_precision(labels, proba) == pytest.approx(expected_map, abs=1e-12)
    expected_f1 = f1_score(labels, proba >= 0.5, average="micro")
    assert micro_f1(labels, proba) == pytest.approx(expected_f1, abs=1e-12)
