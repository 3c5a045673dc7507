"""The fusion heads through the public registry: what retrieval adds, kNN against
scikit-learn, seeds, checkpoints and resume, declared options and capabilities, and the
conformance kit (which the reference heads pass and broken heads fail)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import tomllib

from ravlm_bench.api import FusionHead, TrainingReport, check_fusion_head
from ravlm_bench.foundation.errors import ConfigError
from ravlm_bench.plugin_host.contracts import KnowledgeBase, validate_proba
from ravlm_bench.stages.retrieval import build_index, fusion_inputs, query_vectors
from ravlm_plugins.fusion.checkpoint import Checkpoint

D_IMAGE, D_TEXT = 24, 16
DIM = D_IMAGE + D_TEXT
FAST = {"epochs": 25, "batch_size": 64, "lr": 2e-3, "progress": False}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def head(registry, name, **params):
    return registry.create("fusion-heads", name, dim=DIM, **params)


def indexed(registry, kb: KnowledgeBase, retriever: str = "exact", **params):
    retriever = registry.create("retrievers", retriever, dim=DIM, metric="cos", **params)
    build_index(retriever, kb)
    return retriever


def accuracy(proba: np.ndarray, labels: np.ndarray) -> float:
    return float((proba.argmax(axis=1) == labels).mean())


def clustered_items(rng, centres_image, centres_text, clusters, noise=0.3):
    image = centres_image[clusters] + noise * rng.normal(size=(len(clusters), D_IMAGE))
    text = centres_text[clusters] + noise * rng.normal(size=(len(clusters), D_TEXT))
    return image.astype(np.float32), text.astype(np.float32)


def neighbour_only_task(registry, seed=0, classes=8, clusters=240):
    """Each cluster has a random label. The knowledge base holds 2 items of every cluster;
    training queries come from the first 160 clusters and test queries from the other 80,
    which no trained weight has seen: only the retrieved neighbours know their labels."""
    rng = np.random.default_rng(seed)
    centres_image = rng.normal(size=(clusters, D_IMAGE))
    centres_text = rng.normal(size=(clusters, D_TEXT))
    cluster_label = rng.integers(0, classes, clusters)
    kb_clusters = np.repeat(np.arange(clusters), 2)
    kb = KnowledgeBase(*clustered_items(rng, centres_image, centres_text, kb_clusters),
                       labels=cluster_label[kb_clusters],
                       image_ids=np.arange(len(kb_clusters), dtype=np.int64))
    retriever = indexed(registry, kb)

    def split(cluster_ids, first_id):
        image, text = clustered_items(rng, centres_image, centres_text, cluster_ids)
        ids = np.arange(first_id, first_id + len(cluster_ids), dtype=np.int64)
        return fusion_inputs(image, text, retriever=retriever, kb=kb, k=5,
                             labels=cluster_label[cluster_ids], image_ids=ids,
                             num_classes=classes)

    train = split(np.repeat(np.arange(160), 4), 10_000)
    test = split(np.repeat(np.arange(160, clusters), 2), 20_000)
    return train, test


def test_xattn_beats_concat_when_only_the_neighbours_know_the_label(registry):
    train, test = neighbour_only_task(registry)
    concat = head(registry, "concat", **FAST)
    concat.fit(train, None, seed=0)
    xattn = head(registry, "xattn", k=5, width=64, heads=4, **FAST)
    xattn.fit(train, None, seed=0)
    concat_acc = accuracy(validate_proba(concat.predict_proba(test), len(test), 8), test.labels)
    xattn_acc = accuracy(validate_proba(xattn.predict_proba(test), len(test), 8), test.labels)
    assert concat_acc < 0.3, concat_acc  # chance is 1/8
    assert xattn_acc > concat_acc + 0.4, (xattn_acc, concat_acc)


def test_xattn_is_not_worse_than_concat_when_retrieval_carries_no_information(registry):
    rng = np.random.default_rng(1)
    n, classes = 900, 4
    image = rng.normal(size=(n, D_IMAGE)).astype(np.float32)
    text = rng.normal(size=(n, D_TEXT)).astype(np.float32)
    labels = np.argmax(np.concatenate([image, text], 1) @ rng.normal(size=(DIM, classes)), 1)
    ids = np.arange(n, dtype=np.int64)
    kb = KnowledgeBase(image[:600], text[:600], labels[:600], ids[:600])
    retriever = indexed(registry, kb, "random", seed=3)  # neighbours unrelated to the query

    def split(rows, exclude):
        return fusion_inputs(image[rows], text[rows], retriever=retriever, kb=kb, k=5,
                             labels=labels[rows], image_ids=ids[rows],
                             exclude_same_image=exclude, num_classes=classes)

    train, test = split(slice(0, 600), True), split(slice(600, n), False)
    concat = head(registry, "concat", **FAST)
    concat.fit(train, None, seed=0)
    xattn = head(registry, "xattn", k=5, width=64, **FAST)
    xattn.fit(train, None, seed=0)
    concat_acc = accuracy(concat.predict_proba(test), test.labels)
    xattn_acc = accuracy(xattn.predict_proba(test), test.labels)
    assert concat_acc > 0.6, concat_acc  # the task is learnable from the query alone
    # noise: one standard error of accuracy on these 300 test items is about 0.018
    assert xattn_acc >= concat_acc - 0.05, (xattn_acc, concat_acc)


def knn_data(registry, seed=2, classes=5):
    rng = np.random.default_rng(seed)
    centres_image = rng.normal(size=(classes, D_IMAGE))
    centres_text = rng.normal(size=(classes, D_TEXT))
    train_labels = np.arange(300) % classes
    test_labels = rng.integers(0, classes, 120)
    kb = KnowledgeBase(*clustered_items(rng, centres_image, centres_text, train_labels, 1.5),
                       labels=train_labels, image_ids=np.arange(300, dtype=np.int64))
    test_image, test_text = clustered_items(rng, centres_image, centres_text, test_labels, 1.5)
    return kb, test_image, test_text, test_labels


@pytest.mark.parametrize("weights", ["uniform", "distance", "similarity"])
def test_knn_with_exact_retrieval_equals_sklearn(registry, weights):
    from sklearn.neighbors import KNeighborsClassifier

    kb, test_image, test_text, _ = knn_data(registry)
    k = 7
    retriever = indexed(registry, kb)
    train = fusion_inputs(kb.image, kb.text, retriever=retriever, kb=kb, k=k, labels=kb.labels,
                          image_ids=kb.image_ids, exclude_same_image=True)
    test = fusion_inputs(test_image, test_text, retriever=retriever, kb=kb, k=k,
                         num_classes=train.num_classes)
    knn = head(registry, "knn", k=k, weights=weights)
    knn.fit(train, None, seed=0)
    ours = validate_proba(knn.predict_proba(test), len(test), train.num_classes)

    sk_weights = (lambda d: 1.0 - d) if weights == "similarity" else weights
    reference = KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute",
                                     weights=sk_weights)
    reference.fit(query_vectors(kb.image, kb.text), kb.labels)
    queries = query_vectors(test_image, test_text)
    assert np.array_equal(ours.argmax(axis=1), reference.predict(queries))
    np.testing.assert_allclose(ours, reference.predict_proba(queries), atol=1e-5)
    assert len(set(ours.argmax(axis=1))) > 1  # a real comparison, not one constant class


def test_knn_interpolates_with_a_trained_head(registry):
    kb, test_image, test_text, test_labels = knn_data(registry)
    retriever = indexed(registry, kb)
    train = fusion_inputs(kb.image, kb.text, retriever=retriever, kb=kb, k=5, labels=kb.labels,
                          image_ids=kb.image_ids, exclude_same_image=True)
    test = fusion_inputs(test_image, test_text, retriever=retriever, kb=kb, k=5,
                         num_classes=train.num_classes)
    plain = head(registry, "knn", k=5)
    plain.fit(train, None, seed=0)
    mixed = head(registry, "knn", k=5, interpolate=0.5, hidden=64, epochs=5, progress=False)
    report = mixed.fit(train, None, seed=0)
    assert report.epochs == 5 and report.extra["interpolated_head"] == "concat"
    expected = 0.5 * plain.predict_proba(test) + 0.5 * mixed.head.predict_proba(test)
    np.testing.assert_allclose(mixed.predict_proba(test), expected, atol=1e-6)
    with pytest.raises(ConfigError, match="interpolate"):
        head(registry, "knn", hidden=64)


def small_task(registry, n=240, seed=4):
    rng = np.random.default_rng(seed)
    image = rng.normal(size=(n, D_IMAGE)).astype(np.float32)
    text = rng.normal(size=(n, D_TEXT)).astype(np.float32)
    labels = (image[:, 0] + text[:, 0] > 0).astype(np.int64) + 2 * (image[:, 1] > 0.5)
    kb = KnowledgeBase(image[:160], text[:160], labels[:160], np.arange(160, dtype=np.int64))
    retriever = indexed(registry, kb)
    make = lambda rows, ex: fusion_inputs(  # noqa: E731
        image[rows], text[rows], retriever=retriever, kb=kb, k=4, labels=labels[rows],
        image_ids=np.arange(n, dtype=np.int64)[rows], exclude_same_image=ex, num_classes=4)
    return make(slice(0, 160), True), make(slice(160, 200), False), make(slice(200, n), False)


@pytest.mark.parametrize("name", ["concat", "xattn"])
def test_same_seed_is_bit_identical_and_another_seed_is_not(registry, name):
    train, val, test = small_task(registry)
    params = {"epochs": 4, "hidden": 64} if name == "concat" else {"epochs": 4, "width": 32}

    def run(seed):
        model = head(registry, name, progress=False, **params)
        report = model.fit(train, val, seed=seed)
        return model.predict_proba(test), report.extra["best_val_accuracy"]

    first, first_val = run(7)
    again, again_val = run(7)
    other, _ = run(8)
    assert np.array_equal(first, again) and first_val == again_val
    assert not np.array_equal(first, other)


def test_training_resumes_from_its_last_checkpoint_bit_identically(registry, tmp_path,
                                                                  caplog):
    train, val, test = small_task(registry)
    params = {"width": 32, "dropout": 0.2, "progress": False, "patience": 0}
    straight = head(registry, "xattn", epochs=4, **params)
    straight.fit(train, val, seed=3)

    # a run killed after 2 epochs, then the same run started again
    head(registry, "xattn", epochs=2, **params).fit(train, val, seed=3, checkpoint_dir=tmp_path)
    assert (tmp_path / "last.safetensors").is_file()
    resumed = head(registry, "xattn", epochs=4, **params)
    report = resumed.fit(train, val, seed=3, checkpoint_dir=tmp_path)
    assert report.resumed_from_epoch == 2 and report.epochs == 4
    assert not report.reused and report.seconds > report.seconds_this_run
    assert np.array_equal(straight.predict_proba(test), resumed.predict_proba(test))

    # the finished training is reloaded, not repeated, and still reports what it cost
    reloaded = head(registry, "xattn", epochs=4, **params)
    again = reloaded.fit(train, val, seed=3, checkpoint_dir=tmp_path)
    assert again.reused and again.steps == 0 and again.seconds == report.seconds
    assert np.array_equal(straight.predict_proba(test), reloaded.predict_proba(test))

    # another configuration (or seed, data, code) does not match: it trains afresh
    other = head(registry, "xattn", epochs=1, **{**params, "width": 64})
    assert other.fit(train, val, seed=3, checkpoint_dir=tmp_path).resumed_from_epoch == 0
    # so does a damaged checkpoint, said in one line
    (tmp_path / "last.safetensors").write_bytes(b"not a safetensors file")
    with caplog.at_level(logging.WARNING):
        fresh = head(registry, "xattn", epochs=1, **params)
        assert fresh.fit(train, val, seed=3, checkpoint_dir=tmp_path).resumed_from_epoch == 0
    assert any(f"checkpoint {tmp_path / 'last.safetensors'} is unreadable" in r.getMessage()
               for r in caplog.records)
    with pytest.raises(ConfigError, match="different head configuration"):
        Checkpoint(tmp_path, "another signature").load(reloaded.model, None, None)


def test_the_training_signature_covers_the_code(registry):
    from ravlm_plugins.fusion.concat import ConcatHead
    from ravlm_plugins.fusion.training import code_digest, training_signature
    from ravlm_plugins.fusion.xattn import CrossAttentionHead

    assert code_digest(CrossAttentionHead) != code_digest(ConcatHead)
    concat = head(registry, "concat", epochs=1)
    signature = json.loads(training_signature(concat, concat.config, seed=0, data="d"))
    assert signature["code"] == code_digest(ConcatHead) and signature["torch"]
    assert "epochs" not in signature and "checkpoint_every_s" not in signature


def test_early_stopping_keeps_the_best_validation_epoch(registry, tmp_path):
    from safetensors import safe_open

    train, val, test = small_task(registry)
    params = {"hidden": 64, "epochs": 200, "patience": 3, "lr": 1e-2, "progress": False}
    model = head(registry, "concat", **params)
    report = model.fit(train, val, seed=0, checkpoint_dir=tmp_path)
    assert report.extra["stopped_early"] and report.epochs == report.extra["best_epoch"] + 3
    assert accuracy(model.predict_proba(val), val.labels) == report.extra["best_val_accuracy"]

    # a stopped training keeps only its final weights, and reloads to the same head
    with safe_open(str(tmp_path / "last.safetensors"), framework="pt") as handle:
        assert {key.split(".")[0] for key in handle.keys()} == {"model", "rng"}
    reloaded = head(registry, "concat", **params)
    assert reloaded.fit(train, val, seed=0, checkpoint_dir=tmp_path).reused
    assert np.array_equal(reloaded.predict_proba(test), model.predict_proba(test))


def test_class_weights_and_balanced_sampling_lift_the_rare_class(registry):
    rng = np.random.default_rng(5)
    n = 600
    image = rng.normal(size=(n, D_IMAGE)).astype(np.float32)
    text = rng.normal(size=(n, D_TEXT)).astype(np.float32)
    labels = (image[:, 0] + 0.5 * rng.normal(size=n) > 1.6).astype(np.int64)  # ~6% rare
    kb = KnowledgeBase(image, text, labels, np.arange(n, dtype=np.int64))
    train = fusion_inputs(image, text, retriever=None, kb=kb, k=0, labels=labels)

    def rare_recall(**options):
        model = head(registry, "concat", hidden=32, epochs=8, progress=False, **options)
        model.fit(train, None, seed=0)
        predicted = model.predict_proba(train).argmax(axis=1)
        return float((predicted[labels == 1] == 1).mean())

    plain = rare_recall()
    assert rare_recall(class_weights="balanced") > plain
    assert rare_recall(sampling="balanced") > plain


def test_heads_reject_bad_parameters_and_inputs(registry):
    with pytest.raises(ConfigError, match="concat: unknown parameter.*hiden"):
        head(registry, "concat", hiden=12)
    with pytest.raises(ConfigError, match="concat: parameter 'optimizer' = \"lbfgs\": "
                                          "expected one of \"adam\""):
        head(registry, "concat", optimizer="lbfgs")
    with pytest.raises(ConfigError, match="xattn: unknown parameter.*kk"):
        head(registry, "xattn", kk=3)
    with pytest.raises(ConfigError, match="divisible"):
        head(registry, "xattn", width=30, heads=4)
    train, _, _ = small_task(registry)
    wrong = registry.create("fusion-heads", "concat", dim=DIM + 1, progress=False)
    with pytest.raises(ConfigError, match="dim="):
        wrong.fit(train, None, seed=0)
    with pytest.raises(ConfigError, match="before fit"):
        head(registry, "xattn").predict_proba(train)


def test_heads_honour_the_contracts_and_show_progress_only_on_a_terminal(registry, monkeypatch):
    import sys

    from ravlm_plugins.fusion.loop import show_progress

    for name in ("concat", "knn", "xattn"):
        assert isinstance(head(registry, name), FusionHead)
        assert head(registry, name).targets == ("single-label",)
    assert head(registry, "xattn", k=7).k == 7 and head(registry, "knn", k=3).k == 3
    assert not head(registry, "concat").uses_retrieval and head(registry, "xattn").uses_retrieval
    # trained heads take dist= and checkpoint_dir=; knn only checkpoints its interpolated head
    assert head(registry, "concat").data_parallel and head(registry, "xattn").checkpoints
    assert not head(registry, "knn").data_parallel and head(registry, "knn").checkpoints
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    assert not show_progress(True)  # CI logs and redirected output stay clean
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert show_progress(True) and not show_progress(False)  # --quiet passes progress=False


# ---------------------------------------------------------------------------------------
# The conformance kit
# ---------------------------------------------------------------------------------------

KIT_FAST = {"epochs": 2, "progress": False}


@pytest.mark.parametrize(("name", "params"), [
    ("concat", {"hidden": 16, **KIT_FAST}),
    ("xattn", {"k": 4, "width": 16, **KIT_FAST}),
    ("knn", {"k": 5}),
    ("knn", {"k": 5, "weights": "softmax", "temperature": 0.5}),
    ("knn", {"k": 60, "weights": "distance"}),  # more neighbours than the knowledge base has
    ("knn", {"k": 5, "interpolate": 0.5, "hidden": 8, **KIT_FAST}),
    ("reader", {"k": 3}),
])
def test_reference_heads_pass_the_conformance_kit(registry, name, params):
    check_fusion_head(lambda **kw: registry.create("fusion-heads", name, **params, **kw))


class CentroidHead(FusionHead):
    """A correct minimal head: softmax over negative mean squared distances to the class
    centroids (mean, not sum: probabilities that do not saturate to 0 and 1)."""

    uses_retrieval = False

    def __init__(self, *, dim: int):
        self.centroids = None

    def fit(self, train, val, *, seed):
        x = np.concatenate([train.image, train.text], axis=1)
        self.centroids = np.stack([x[train.labels == c].mean(axis=0)
                                   for c in range(train.num_classes)])
        return TrainingReport(epochs=1)

    def logits(self, inputs) -> np.ndarray:
        x = np.concatenate([inputs.image, inputs.text], axis=1)
        return -((x[:, None, :] - self.centroids[None]) ** 2).mean(-1)

    def predict_proba(self, inputs) -> np.ndarray:
        logits = self.logits(inputs)
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


class Float64Head(CentroidHead):
    def predict_proba(self, inputs):
        return super().predict_proba(inputs).astype(np.float64)


class SigmoidHead(CentroidHead):  # independent probabilities where the task needs a softmax
    def predict_proba(self, inputs):
        return (1 / (1 + np.exp(-self.logits(inputs) / 100))).astype(np.float32)


class BatchNormalisingHead(CentroidHead):  # standardises with the prediction batch's statistics
    def logits(self, inputs):
        logits = super().logits(inputs)
        return logits - logits.mean(axis=0)


class UnseededHead(CentroidHead):
    def fit(self, train, val, *, seed):
        report = super().fit(train, val, seed=seed)
        self.centroids += np.random.default_rng().normal(size=self.centroids.shape)
        return report


class WrongWidthHead(CentroidHead):
    def predict_proba(self, inputs):
        return super().predict_proba(inputs)[:, :-1]


class NaNHead(CentroidHead):
    def predict_proba(self, inputs):
        proba = super().predict_proba(inputs)
        proba[0] = np.nan
        return proba


class LossReportingHead(CentroidHead):
    def fit(self, train, val, *, seed):
        super().fit(train, val, seed=seed)
        return 0.25


class UndeclaredCheckpointsHead(CentroidHead):
    checkpoints = True  # but fit takes no checkpoint_dir


class KlessRetrievalHead(CentroidHead):
    uses_retrieval = True
    k = 0


@pytest.mark.parametrize(("broken", "message"), [
    (Float64Head, "dtype float64, expected float32"),
    (SigmoidHead, "single-label rows must sum to 1"),
    (BatchNormalisingHead, "depends on how its inputs are batched"),
    (UnseededHead, "differs between two fits with seed 0"),
    (WrongWidthHead, r"shape \(12, 2\), expected \(12, 3\)"),
    (NaNHead, "NaN or inf in 1 of 12 rows"),
    (LossReportingHead, "fit returned float, expected a TrainingReport"),
    (UndeclaredCheckpointsHead, "checkpoints = True is declared but fit.. takes no "
                                "checkpoint_dir="),
    (KlessRetrievalHead, "must declare k, a positive int, got 0"),
])
def test_the_conformance_kit_says_what_a_broken_head_gets_wrong(broken, message):
    check_fusion_head(CentroidHead)  # the kit passes the correct head they all break
    with pytest.raises(AssertionError, match=message):
        check_fusion_head(broken)


# ---------------------------------------------------------------------------------------
# Declared options
# ---------------------------------------------------------------------------------------

FINETUNE_ENCODERS = {"image_encoder": {"name": "resnet18"}, "text_encoder": {"name": "bert"}}
SUITES = Path(__file__).parent.parent / "ravlm_bench" / "suites"


def plugin_entries(registry):
    return [entry for kind in ("fusion-heads", "joint-embeddings")
            for entry in registry.entries(kind) if entry.plugin == "fusion_heads"]


def test_every_reference_head_and_embedding_declares_its_options(registry):
    names = {entry.name for entry in plugin_entries(registry)}
    assert names == {"concat", "concat-finetune", "knn", "xattn", "multilabel-linear",
                     "multilabel-knn", "infonce", "reader", "evidence-lda"}
    for entry in plugin_entries(registry):
        assert entry.params.declared and not entry.params.open, entry.name
        assert "dim" not in entry.params.names(), entry.name  # the harness's, not a suite's
        for param in entry.params.params:
            assert param.help, (entry.name, param.name)


def test_declared_options_are_what_the_factories_accept(registry, monkeypatch):
    """Every declared parameter, at its default, is accepted; and the defaults are the
    components' own (a head built with them equals one built with none)."""
    from ravlm_plugins.fusion import finetune

    monkeypatch.setattr(finetune, "image_encoder_names", lambda: ("resnet18",))
    monkeypatch.setattr(finetune, "text_encoder_names", lambda: ("bert",))
    for entry in plugin_entries(registry):
        required = FINETUNE_ENCODERS if entry.name == "concat-finetune" else {}
        defaults = {p.name: p.default for p in entry.params.params if not p.required}
        explicit = registry.create(entry.kind, entry.name, dim=DIM, **defaults, **required)
        implicit = registry.create(entry.kind, entry.name, dim=DIM, **required)
        assert vars(explicit).keys() == vars(implicit).keys(), entry.name
        for key, value in vars(implicit).items():
            if key != "head":  # knn's interpolated head exists only with interpolate=
                assert repr(vars(explicit)[key]) == repr(value), (entry.name, key)


@pytest.mark.parametrize(("name", "params", "message"), [
    ("knn", {"k": 0}, "k' = 0: must be >= 1"),
    ("knn", {"weights": "cosine"}, "weights' = \"cosine\": expected one of"),
    ("xattn", {"neighbour_dropout": 1.5}, "must be <= 1"),
    ("concat", {"lr": -1.0}, "lr' = -1.0: must be >= 0"),
    ("concat", {"epochs": 2.5}, "expected an integer"),
    ("concat", {"sampling": "stratified"}, "expected one of \"shuffle\", \"balanced\""),
    ("multilabel-linear", {"sampling": "balanced"}, "expected one of \"shuffle\"$"),
    ("multilabel-linear", {"val_metric": "accuracy"}, "expected one of \"map\""),
    ("infonce", {"batch_size": 1}, "must be >= 2"),
])
def test_declared_options_reject_bad_suite_values(registry, name, params, message):
    kind = "joint-embeddings" if name == "infonce" else "fusion-heads"
    with pytest.raises(ConfigError, match=message):
        registry.get(kind, name).check(params, "suite s")


def test_strict_bounds_the_declarations_cannot_say_are_checked_by_the_components(registry):
    for name, params in (("concat", {"lr": 0.0}), ("knn", {"temperature": 0.0}),
                         ("xattn", {"neighbour_dropout": 1.0})):
        registry.get("fusion-heads", name).check(params, "suite s")  # inclusive bounds pass
        with pytest.raises(ConfigError, match=f"fusion head {name}: "):
            head(registry, name, **params)


@pytest.mark.parametrize("suite", sorted(SUITES.glob("*.toml")), ids=lambda p: p.stem)
def test_the_built_in_suites_parameters_validate(registry, suite):
    raw = tomllib.loads(suite.read_text())
    checked = 0
    for system_name, body in raw["systems"].items():
        system = {**raw.get("defaults", {}), **body}
        for role in ("fusion_head", "joint_embedding"):
            if role not in system:
                continue
            params = dict(system[role])
            name = params.pop("name")
            kind = "fusion-heads" if role == "fusion_head" else "joint-embeddings"
            registry.get(kind, name).check(params, f"suite {suite.stem}, system {system_name}")
            checked += 1
    assert checked
