"""Queries + knowledge base -> FusionInputs: query vectors, the leave-one-out guard, leakage."""

from __future__ import annotations

import numpy as np
import pytest

from ravlm_bench.foundation.errors import ConfigError
from ravlm_bench.plugin_host.contracts import ContractViolation, KnowledgeBase, validate_search
from ravlm_bench.plugin_host.host import get_plugin_manager
from ravlm_bench.plugin_host.registry import Registry
from ravlm_bench.stages.leakage import find_leakage
from ravlm_bench.stages.retrieval import (
    build_index,
    fusion_inputs,
    query_vectors,
    retrieve,
)

D_IMAGE, D_TEXT = 12, 8
DIM = D_IMAGE + D_TEXT


@pytest.fixture(scope="module")
def registry():
    return Registry(get_plugin_manager())


def captioned_kb(images=40, captions=3, seed=0) -> KnowledgeBase:
    """Every image appears in ``captions`` rows (one per caption), as in COCO or VG-QA."""
    rng = np.random.default_rng(seed)
    image = np.repeat(rng.normal(size=(images, D_IMAGE)), captions, axis=0)
    text = rng.normal(size=(images * captions, D_TEXT))
    ids = np.repeat(np.arange(100, 100 + images, dtype=np.int64), captions)
    labels = np.repeat(rng.integers(0, 4, images), captions)
    return KnowledgeBase(image.astype(np.float32), text.astype(np.float32), labels, ids)


def test_query_vectors_weigh_image_and_text_equally_at_unit_length():
    rng = np.random.default_rng(0)
    image = 100 * rng.normal(size=(5, D_IMAGE))  # a much larger scale than the text
    text = rng.normal(size=(5, D_TEXT))
    text[2] = 0.0
    q = query_vectors(image, text)
    assert q.dtype == np.float32 and q.shape == (5, DIM)
    np.testing.assert_allclose(np.linalg.norm(q[:, :D_IMAGE], axis=1), np.sqrt(0.5), rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(q[[0, 1, 3, 4], D_IMAGE:], axis=1), np.sqrt(0.5),
                               rtol=1e-5)
    assert np.isfinite(q).all() and not q[2, D_IMAGE:].any()
    with pytest.raises(ConfigError, match="same n"):
        query_vectors(image, text[:3])


@pytest.mark.parametrize("retriever_name", ["exact", "usearch-hnsw"])
def test_leave_one_out_guard_by_image_id(registry, retriever_name):
    kb = captioned_kb()
    retriever = registry.create("retrievers", retriever_name, dim=DIM, metric="cos")
    build_index(retriever, kb)
    k = 5

    off = fusion_inputs(kb.image, kb.text, retriever=retriever, kb=kb, k=k, labels=kb.labels,
                        image_ids=kb.image_ids, exclude_same_image=False)
    # switched off, training retrieval hands each query back its own row, and its image
    assert (off.neighbours[:, 0] == np.arange(len(kb))).mean() > 0.95
    assert (kb.image_ids[off.neighbours[:, 0]] == kb.image_ids).all()

    on = fusion_inputs(kb.image, kb.text, retriever=retriever, kb=kb, k=k, labels=kb.labels,
                       image_ids=kb.image_ids, exclude_same_image=True)
    validate_search((on.neighbours, on.neighbour_scores), len(kb), k)
    assert (on.neighbours >= 0).all()  # 117 other rows exist: no padding needed
    assert not (kb.image_ids[on.neighbours] == kb.image_ids[:, None]).any()
    # the guard drops rows of the same image, not just the query's own row
    assert not np.isin(on.neighbours, np.flatnonzero(kb.image_ids == kb.image_ids[0])[1:])[0].any()


class ShortChanging:
    """An approximate retriever that returns only the first half of what it is asked for."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []

    def build(self, vectors, keys):
        self.inner.build(vectors, keys)

    def search(self, queries, k):
        self.calls.append(k)
        keys, scores = self.inner.search(queries, k)
        keys[:, (k + 1) // 2:] = -1
        return keys, scores


def test_leave_one_out_fetches_more_while_a_query_is_short(registry):
    kb = captioned_kb(images=30, captions=4)
    retriever = ShortChanging(registry.create("retrievers", "exact", dim=DIM, metric="cos"))
    build_index(retriever, kb)
    rows, scores = retrieve(retriever, query_vectors(kb.image, kb.text), 6,
                            query_image_ids=kb.image_ids, kb_image_ids=kb.image_ids,
                            exclude_same_image=True)
    assert len(retriever.calls) > 1 and retriever.calls[0] == 6 + 4
    assert (rows >= 0).all()
    assert not (kb.image_ids[rows] == kb.image_ids[:, None]).any()
    assert (np.diff(scores, axis=1) <= 1e-6).all()


def test_leave_one_out_pads_when_the_knowledge_base_runs_out(registry):
    kb = captioned_kb(images=3, captions=2)
    retriever = registry.create("retrievers", "exact", dim=DIM, metric="cos")
    build_index(retriever, kb)
    rows, scores = retrieve(retriever, query_vectors(kb.image, kb.text), 5,
                            query_image_ids=kb.image_ids, kb_image_ids=kb.image_ids,
                            exclude_same_image=True)
    assert (rows[:, :4] >= 0).all() and (rows[:, 4] == -1).all() and (scores[:, 4] == 0).all()
    with pytest.raises(ConfigError, match="query_image_ids"):
        retrieve(retriever, query_vectors(kb.image, kb.text), 5, exclude_same_image=True)


def test_fusion_inputs_without_a_retriever_has_empty_neighbours():
    kb = captioned_kb(images=4)
    inputs = fusion_inputs(kb.image, kb.text, retriever=None, kb=kb, k=10, labels=kb.labels)
    assert inputs.neighbours.shape == (12, 0) and inputs.neighbours.dtype == np.int64
    assert inputs.neighbour_scores.shape == (12, 0)
    assert inputs.neighbour_scores.dtype == np.float32
    assert inputs.num_classes == int(kb.labels.max()) + 1 and len(inputs) == 12


def test_a_retriever_that_breaks_the_contract_is_caught():
    class Unsorted:
        def build(self, vectors, keys):
            pass

        def search(self, queries, k):
            keys = np.tile(np.arange(k, dtype=np.int64), (len(queries), 1))
            return keys, np.tile(np.arange(k, dtype=np.float32), (len(queries), 1))

    kb = captioned_kb(images=4)
    with pytest.raises(ContractViolation, match="best first"):
        fusion_inputs(kb.image, kb.text, retriever=Unsorted(), kb=kb, k=3)


def test_retrievers_that_use_labels_get_them(registry):
    kb = captioned_kb()
    oracle = registry.create("retrievers", "oracle", dim=DIM, metric="cos")
    build_index(oracle, kb)
    inputs = fusion_inputs(kb.image, kb.text, retriever=oracle, kb=kb, k=4, labels=kb.labels,
                           image_ids=kb.image_ids, exclude_same_image=True)
    valid = inputs.neighbours >= 0
    assert valid.all()
    assert (kb.labels[inputs.neighbours] == kb.labels[:, None]).all()
    with pytest.raises(ConfigError, match="labels"):
        fusion_inputs(kb.image, kb.text, retriever=oracle, kb=kb, k=4)


def write(path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def test_find_leakage_by_id_file_hash_and_cross_dataset_id(tmp_path):
    train_paths = [write(tmp_path / f"train{i}.jpg", bytes([i]) * 100) for i in range(4)]
    test_paths = [
        write(tmp_path / "copy.jpg", bytes([2]) * 100),  # same bytes as train2.jpg
        write(tmp_path / "same_size.jpg", bytes([9]) * 100),  # same size, other bytes
        write(tmp_path / "other.jpg", b"x" * 50),
        write(tmp_path / "shared_id.jpg", b"y" * 60),
        str(tmp_path / "missing.jpg"),
    ]
    train_ids = np.array([1, 2, 3, 4])
    test_ids = np.array([10, 11, 12, 3, 14])  # 3 is a training id
    coco = (np.array([500, -1, 501, -1]), np.array([-1, -1, 501, -1, -1]))
    report = find_leakage(train_ids, train_paths, test_ids, test_paths,
                          cross_ids={"coco_id": coco})
    assert report.by_route == {"image id": 1, "file hash": 1, "coco_id": 1}
    assert report.leaked == 3 and report.unreadable == 1 and not report.clean
    message = report.message()
    assert "\n" not in message and "3 of 5" in message and "copy.jpg" in message

    clean = find_leakage(train_ids, train_paths, np.array([20]), [test_paths[2]])
    assert clean.clean and clean.message().startswith("no leakage")
