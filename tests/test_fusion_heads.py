"""The fusion heads through the public registry: what retrieval adds, kNN against
scikit-learn, seeds, checkpoints and resume."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from ravlm_bench import ConfigError
from ravlm_bench.contracts import KnowledgeBase, validate_proba
from ravlm_bench.knowledge import build_index, fusion_inputs, query_vectors
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
    stats = mixed.fit(train, None, seed=0)
    assert stats["epochs"] == 5 and stats["interpolated_head"] == "concat"
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
        stats = model.fit(train, val, seed=seed)
        return model.predict_proba(test), stats["best_val_accuracy"]

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
    stats = resumed.fit(train, val, seed=3, checkpoint_dir=tmp_path)
    assert stats["resumed_from_epoch"] == 2 and stats["epochs"] == 4
    assert not stats["reused"] and stats["seconds"] > stats["seconds_this_run"]
    assert np.array_equal(straight.predict_proba(test), resumed.predict_proba(test))

    # the finished training is reloaded, not repeated, and still reports what it cost
    reloaded = head(registry, "xattn", epochs=4, **params)
    again = reloaded.fit(train, val, seed=3, checkpoint_dir=tmp_path)
    assert again["reused"] and again["steps"] == 0 and again["seconds"] == stats["seconds"]
    assert np.array_equal(straight.predict_proba(test), reloaded.predict_proba(test))

    # another configuration (or seed, data, code) does not match: it trains afresh
    other = head(registry, "xattn", epochs=1, **{**params, "width": 64})
    assert other.fit(train, val, seed=3, checkpoint_dir=tmp_path)["resumed_from_epoch"] == 0
    # so does a damaged checkpoint, said in one line
    (tmp_path / "last.safetensors").write_bytes(b"not a safetensors file")
    with caplog.at_level(logging.WARNING):
        fresh = head(registry, "xattn", epochs=1, **params)
        assert fresh.fit(train, val, seed=3, checkpoint_dir=tmp_path)["resumed_from_epoch"] == 0
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
    stats = model.fit(train, val, seed=0, checkpoint_dir=tmp_path)
    assert stats["stopped_early"] and stats["epochs"] == stats["best_epoch"] + 3
    assert accuracy(model.predict_proba(val), val.labels) == stats["best_val_accuracy"]

    # a stopped training keeps only its final weights, and reloads to the same head
    with safe_open(str(tmp_path / "last.safetensors"), framework="pt") as handle:
        assert {key.split(".")[0] for key in handle.keys()} == {"model", "rng"}
    reloaded = head(registry, "concat", **params)
    assert reloaded.fit(train, val, seed=0, checkpoint_dir=tmp_path)["reused"]
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
    with pytest.raises(ConfigError, match="concat: optimizer 'lbfgs'"):
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

    from ravlm_bench.contracts import FusionHead
    from ravlm_plugins.fusion.training import show_progress

    for name in ("concat", "knn", "xattn"):
        assert isinstance(head(registry, name), FusionHead)
    assert head(registry, "xattn", k=7).k == 7 and head(registry, "knn", k=3).k == 3
    assert not head(registry, "concat").uses_retrieval and head(registry, "xattn").uses_retrieval
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    assert not show_progress(True)  # CI logs and redirected output stay clean
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert show_progress(True) and not show_progress(False)  # --quiet passes progress=False
