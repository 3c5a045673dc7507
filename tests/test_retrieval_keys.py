"""Retrieval as a stage a system chooses: its key, scores with one meaning whatever the
metric, and what retrieval found.

The headline check runs the CLI on a COCO-format dataset this test writes, whose captions
say nothing of the label ("a photo"): with ``retrieval_key = "image"``, exact search and the
``knn`` head, the harness must reproduce scikit-learn's k-NN accuracy on the same image
features (the knowledge base is the task's training split, as scikit-learn's fit set).
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
from clitools import run_cli
from PIL import Image

from ravlm_bench.config.suite import FIXED_KEYS
from ravlm_bench.plugin_host.contracts import KnowledgeBase
from ravlm_bench.stages.retrieval import (
    RetrievalKey,
    as_similarity,
    build_index,
    fusion_inputs,
    retrieval_diagnostics,
)

COLOURS = {"red": (200, 40, 40), "green": (40, 180, 60), "blue": (50, 60, 210),
           "yellow": (220, 210, 40)}


def write_coco(root: Path, per_split: dict[str, int], seed: int = 0) -> Path:
    """COCO 2017 files: one box per image, the category its colour; captions all alike."""
    rng = np.random.default_rng(seed)
    categories = [{"id": i + 1, "name": name, "supercategory": "colour"}
                  for i, name in enumerate(COLOURS)]
    (root / "annotations").mkdir(parents=True)
    next_id = 1
    for split, count in per_split.items():
        (root / f"{split}2017").mkdir()
        images, instances, captions = [], [], []
        for _ in range(count):
            category = int(rng.integers(len(COLOURS)))
            colour = np.array(list(COLOURS.values())[category])
            pixels = np.clip(colour + rng.normal(0, 60, (48, 48, 3)), 0, 255).astype(np.uint8)
            name = f"{next_id:012d}.jpg"
            Image.fromarray(pixels).save(root / f"{split}2017" / name, quality=95)
            images.append({"id": next_id, "file_name": name, "width": 48, "height": 48})
            instances.append({"id": next_id, "image_id": next_id, "category_id": category + 1,
                              "bbox": [4.0, 4.0, 40.0, 40.0], "area": 1600.0, "iscrowd": 0})
            captions.append({"id": next_id, "image_id": next_id, "caption": "a photo"})
            next_id += 1
        for kind, records in (("instances", instances), ("captions", captions)):
            body = {"images": images, "annotations": records}
            if kind == "instances":
                body["categories"] = categories
            (root / "annotations" / f"{kind}_{split}2017.json").write_text(json.dumps(body))
    return root


SUITE = """
name = "keys"
seeds = [0]
[data.coco]
root = "{root}"
[defaults]
image_encoder = {{ name = "resnet18", image_size = 32, seed = 0, precision = "fp32" }}
text_encoder = {{ name = "minilm-l6", max_length = 16 }}
[systems.knn-image]
retriever = "exact"
retrieval_key = "image"
fusion_head = {{ name = "knn", k = {k}, weights = "uniform" }}
[tasks.coco-category]
"""


# k = 1 checks the same path as k = 5 with another k: it runs with the slow tests
@pytest.mark.parametrize("k", [pytest.param(1, marks=pytest.mark.slow), 5])
def test_image_key_knn_reproduces_scikit_learns_knn(tmp_path, registry, k):
    from sklearn.neighbors import KNeighborsClassifier

    from ravlm_bench.stages.encoding import encode_images

    root = write_coco(tmp_path / "coco", {"train": 240, "val": 80})
    suite = tmp_path / "keys.toml"
    suite.write_text(textwrap.dedent(SUITE.format(root=root, k=k)))
    result = run_cli("run", str(suite), "--out", str(tmp_path / "run"), "-q",
                     cache=tmp_path / "cache")
    assert result.returncode == 0, result.stderr
    cell = json.loads((tmp_path / "run/cells/coco-category/knn-image/seed-0.json").read_text())
    assert cell["provenance"]["components"]["retrieval_key"] == {"name": "image"}

    # scikit-learn on the very items and image features of the task
    task = registry.create("tasks", "coco-category")
    data = task.build(registry.create("datasets", "coco", root=str(root)), 0)
    encoder = registry.create("image-encoders", "resnet18", image_size=32, seed=0,
                              precision="fp32")
    train = encode_images(encoder, data.train.image_paths)
    test = encode_images(encoder, data.test.image_paths)
    knn = KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute")
    expected = knn.fit(train, data.train.labels).score(test, data.test.labels)
    assert expected > 0.5  # the colours are learnable from pixels: a meaningful check
    assert cell["metrics"]["accuracy"] == pytest.approx(expected, abs=0.01)


def small_kb(n: int = 60, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    image = (np.eye(3)[labels] * 2 + rng.normal(0, 0.6, (n, 3))).astype(np.float32)
    text = rng.normal(size=(n, 4)).astype(np.float32)  # says nothing of the label
    return KnowledgeBase(image, text, labels.astype(np.int64), np.arange(n, dtype=np.int64))


@pytest.mark.parametrize("key", FIXED_KEYS)
def test_each_fixed_key_searches_unit_vectors_of_its_features(key):
    kb = small_kb()
    vectors = RetrievalKey(key).vectors(kb.image, kb.text)
    width = {"image": 3, "text": 4, "image+text": 7}[key]
    assert vectors.shape == (len(kb), width)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)


def test_the_image_key_finds_what_the_text_hides():
    kb = small_kb()
    found = {}
    for key in ("image", "text"):
        retriever_key = RetrievalKey(key)
        retriever = exact(retriever_key.vectors(kb.image[:1], kb.text[:1]).shape[1], "cos")
        build_index(retriever, kb, retriever_key)
        inputs = fusion_inputs(kb.image, kb.text, retriever=retriever, kb=kb, k=5,
                               labels=kb.labels, image_ids=kb.image_ids,
                               exclude_same_image=True, key=retriever_key)
        found[key] = retrieval_diagnostics(inputs, kb.labels)["label_precision_at_k"]
    assert found["image"] > 0.8 > 0.5 > found["text"]


def exact(dim: int, metric: str):
    from ravlm_plugins.retrievers import ExactRetriever

    return ExactRetriever(dim=dim, metric=metric)


HEADS = [("knn", {"k": 5, "weights": "similarity"}), ("knn", {"k": 5, "weights": "distance"}),
         ("knn", {"k": 5, "weights": "softmax"}), ("knn", {"k": 5, "weights": "uniform"}),
         ("xattn", {"k": 5, "epochs": 2, "width": 16, "heads": 2, "progress": False}),
         ("concat", {"epochs": 2, "hidden": 16, "progress": False})]


@pytest.mark.parametrize("head_name, params", HEADS)
def test_every_metric_gives_every_head_the_same_similarities(registry, head_name, params):
    """cos, ip and l2sq rank unit vectors alike, and heads read cosine similarities from
    each, so a head predicts the same whatever the metric."""
    kb = small_kb()
    queries = small_kb(20, seed=1)
    results = {}
    for metric in ("cos", "ip", "l2sq"):
        retriever = exact(7, metric)
        build_index(retriever, kb)

        def inputs(image, text, labels, ids, exclude, retriever=retriever, metric=metric):
            return fusion_inputs(image, text, retriever=retriever, kb=kb, k=5, labels=labels,
                                 image_ids=ids, exclude_same_image=exclude, num_classes=3,
                                 metric=metric)

        train = inputs(kb.image, kb.text, kb.labels, kb.image_ids, True)
        test = inputs(queries.image, queries.text, None, queries.image_ids + 1000, False)
        assert (test.neighbour_scores[test.neighbours >= 0] > 0).all()  # similarities
        head = registry.create("fusion-heads", head_name, dim=7, **params)
        head.fit(train, None, seed=0)
        results[metric] = (test.neighbours, test.neighbour_scores, head.predict_proba(test))
    for metric in ("ip", "l2sq"):
        assert np.array_equal(results[metric][0], results["cos"][0]), metric
        assert np.allclose(results[metric][1], results["cos"][1], atol=1e-5), metric
        assert np.allclose(results[metric][2], results["cos"][2], atol=1e-4), metric


def test_l2sq_scores_become_cosine_similarities():
    rng = np.random.default_rng(0)
    q, v = (x / np.linalg.norm(x) for x in rng.normal(size=(2, 8)))
    assert as_similarity(np.float32(-((q - v) ** 2).sum()), "l2sq") == pytest.approx(q @ v,
                                                                                     abs=1e-6)


def test_diagnostics_count_padding_one_image_neighbourhoods_and_recall():
    kb = small_kb(6)
    kb.image_ids[:] = [7, 7, 7, 8, 9, 9]
    kb.labels[:] = [0, 0, 1, 1, 2, 2]
    inputs = fusion_inputs(kb.image[:3], kb.text[:3], retriever=None, kb=kb, k=0)
    inputs.neighbours = np.array([[0, 1, 2], [-1, -1, -1], [3, 4, -1]])
    got = retrieval_diagnostics(inputs, np.array([0, 1, 2]),
                                exact_rows=np.array([[0, 1, 3], [3, 4, 5]]))
    assert got["all_padding"] == pytest.approx(1 / 3)
    assert got["one_image"] == pytest.approx(1 / 3)  # the first: three rows of image 7
    assert got["label_precision_at_k"] == pytest.approx(3 / 9)  # 0,0 for query 0; 2 for 2
    assert got["recall_vs_exact"] == pytest.approx(2 / 6)


LEARNED = """
name = "learned"
seeds = [0]
[data.coco]
root = "{root}/coco"
[defaults]
image_encoder = {{ name = "resnet18", image_size = 32, seed = 0 }}
text_encoder = {{ name = "minilm-l6", max_length = 16 }}
retriever = "exact"
retrieval_key = {{ name = "infonce", epochs = 2 }}
[systems.knn-learned]
fusion_head = {{ name = "knn", k = 5 }}
[systems.xattn-learned]
fusion_head = {{ name = "xattn", k = 5, epochs = 2, width = 16, heads = 2 }}
[tasks.coco-category]
"""


def test_a_learned_key_is_trained_once_and_shared_by_the_systems_naming_it(tmp_path,
                                                                          demo_world):
    suite = tmp_path / "learned.toml"
    suite.write_text(textwrap.dedent(LEARNED.format(root=demo_world)))
    result = run_cli("run", str(suite), "--out", str(tmp_path / "run"), "-q",
                     cache=tmp_path / "cache")
    assert result.returncode == 0, result.stderr
    keys = list((tmp_path / "run/checkpoints/coco-category").glob("#retrieval-key-infonce-*"))
    assert len(keys) == 1 and (keys[0] / "seed-0").is_dir()  # one training, checkpointed
    cells = {s: json.loads((tmp_path / f"run/cells/coco-category/{s}/seed-0.json")
                           .read_text()) for s in ("knn-learned", "xattn-learned")}
    for cell in cells.values():
        assert cell["provenance"]["components"]["retrieval_key"]["name"] == "infonce"
        assert cell["provenance"]["components"]["retrieval_key"]["params"] == {"epochs": 2}
    # the first system trained it; the second found it trained
    first, second = (cells[s]["timings"]["retrieval_key_s"] for s in cells)
    assert second < first / 5
    board = run_cli("leaderboard", str(tmp_path / "run"))
    assert "infonce (epochs=2)" in board.stdout  # the key column
