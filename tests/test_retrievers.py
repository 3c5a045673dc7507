"""The reference retrievers: `exact` and `usearch-hnsw`, through the registry."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ravlm_bench.cli import main
from ravlm_bench.errors import DataError, RavlmError
from ravlm_bench.host import get_plugin_manager
from ravlm_bench.registry import Registry
from ravlm_bench.testing import check_retriever


@pytest.fixture(scope="module")
def registry():
    return Registry(get_plugin_manager())


def clustered(n=300, dim=12, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(6, dim))
    vectors = centres[rng.integers(0, 6, n)] + 0.3 * rng.normal(size=(n, dim))
    return vectors.astype(np.float32), rng.normal(size=(15, dim)).astype(np.float32)


def reference_scores(vectors, queries, metric):
    if metric == "cos":
        v = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
        return q @ v.T
    if metric == "ip":
        return queries @ vectors.T
    return -((queries[:, None, :] - vectors[None, :, :]) ** 2).sum(-1)


@pytest.mark.parametrize("name,params", [
    ("exact", {}),
    ("usearch-hnsw", {}),
    ("usearch-hnsw", {"dtype": "f16"}),
])
def test_conformance_kit(registry, name, params):
    check_retriever(lambda **kw: registry.create("retrievers", name, **params, **kw))


@pytest.mark.parametrize("metric", ["cos", "ip", "l2sq"])
@pytest.mark.parametrize("n", [300, 6001])  # 6001: the blockwise top-k and a ragged tail
# database blocks of all rows, or of 4000 / 1000 rows merged (the last one a single row)
@pytest.mark.parametrize("rows_per_block", [None, 4000, 1000])
def test_exact_scores_are_the_true_similarities(registry, metric, n, rows_per_block,
                                                monkeypatch):
    import ravlm_plugins.retrievers

    vectors, queries = clustered(n=n)
    if rows_per_block:  # the scores buffer is sized per query chunk (here all 15 queries)
        monkeypatch.setattr(ravlm_plugins.retrievers, "SCORE_CHUNK_BYTES",
                            4 * len(queries) * rows_per_block)
    keys = np.arange(len(vectors), dtype=np.int64) + 1000
    retriever = registry.create("retrievers", "exact", dim=12, metric=metric)
    retriever.build(vectors, keys)
    found, scores = retriever.search(queries, 7)
    expected = reference_scores(vectors, queries, metric)
    order = np.argsort(-expected, axis=1)[:, :7]
    np.testing.assert_array_equal(found, keys[order])
    np.testing.assert_allclose(scores, np.take_along_axis(expected, order, 1), rtol=1e-4,
                               atol=1e-4)


@pytest.mark.parametrize("metric", ["cos", "ip", "l2sq"])
def test_usearch_scores_are_converted_to_similarities(registry, metric):
    # usearch reports 1 - dot for ip and 1 - cos for cos; scores must match `exact`'s.
    vectors, queries = clustered()
    keys = np.arange(len(vectors), dtype=np.int64)
    hnsw = registry.create("retrievers", "usearch-hnsw", dim=12, metric=metric,
                           expansion_search=256)
    hnsw.build(vectors, keys)
    found, scores = hnsw.search(queries, 5)
    expected = reference_scores(vectors, queries, metric)
    np.testing.assert_allclose(scores, np.take_along_axis(expected, found, 1), rtol=1e-3,
                               atol=1e-3)
    assert (np.diff(scores, axis=1) <= 1e-6).all()


@pytest.mark.parametrize("name", ["exact", "usearch-hnsw"])
def test_padding_large_keys_and_empty_index(registry, name):
    vectors, queries = clustered(n=4)
    big = np.array([2**40, 2**62, 5, 0], dtype=np.int64)  # beyond int32, near uint64's top
    retriever = registry.create("retrievers", name, dim=12, metric="cos")
    retriever.build(vectors, big)
    found, scores = retriever.search(queries[:3], 6)
    assert found.dtype == np.int64 and scores.dtype == np.float32
    assert set(found[:, :4].ravel().tolist()) == set(big.tolist())
    assert (found[:, 4:] == -1).all() and np.isneginf(scores[:, 4:]).all()
    empty = registry.create("retrievers", name, dim=12, metric="cos")
    empty.build(np.zeros((0, 12), np.float32), np.zeros(0, np.int64))
    found, _ = empty.search(queries[:2], 3)
    assert (found == -1).all()


@pytest.mark.parametrize("name", ["exact", "usearch-hnsw"])
def test_bad_inputs_are_data_errors(registry, name):
    vectors, _ = clustered(n=5)
    retriever = registry.create("retrievers", name, dim=12, metric="ip")
    with pytest.raises(DataError, match="non-negative"):
        retriever.build(vectors, np.array([0, 1, -3, 4, 5]))
    with pytest.raises(DataError, match="unique"):
        retriever.build(vectors, np.array([0, 1, 1, 4, 5]))
    with pytest.raises(DataError, match="expected \\(n, 12\\)"):
        retriever.build(vectors[:, :4], np.arange(5))


def test_bad_params_fail_naming_the_plugin(registry):
    with pytest.raises(RavlmError, match="retriever exact: unknown metric"):
        registry.create("retrievers", "exact", dim=4, metric="hamming")
    with pytest.raises(RavlmError, match="dtype 'i4' is not supported"):
        registry.create("retrievers", "usearch-hnsw", dim=4, metric="cos", dtype="i4")


def test_fingerprint_and_memory(registry):
    vectors, _ = clustered()
    a = registry.create("retrievers", "usearch-hnsw", dim=12, metric="cos")
    b = registry.create("retrievers", "usearch-hnsw", dim=12, metric="cos", connectivity=32)
    assert a.fingerprint() == a.fingerprint() != b.fingerprint()
    for name in ("exact", "usearch-hnsw"):
        retriever = registry.create("retrievers", name, dim=12, metric="l2sq")
        retriever.build(vectors, np.arange(len(vectors)))
        assert retriever.memory_bytes() >= vectors.nbytes


def test_usearch_save_load_and_rebuild_on_mismatch(registry, tmp_path):
    vectors, queries = clustered()
    keys = np.arange(len(vectors), dtype=np.int64) * 3
    path = tmp_path / "index" / "images.usearch"
    built = registry.create("retrievers", "usearch-hnsw", dim=12, metric="ip", dtype="f16")
    assert built.build_or_load(path, vectors, keys, data_fingerprint="d1") is False
    sidecar = json.loads(path.with_name("images.usearch.json").read_text())
    assert sidecar["dtype"] == "f16" and sidecar["usearch"] and sidecar["count"] == len(keys)

    same = registry.create("retrievers", "usearch-hnsw", dim=12, metric="ip", dtype="f16")
    assert same.load(path, data_fingerprint="d1") is True
    np.testing.assert_array_equal(same.search(queries, 5)[0], built.search(queries, 5)[0])

    other_params = registry.create("retrievers", "usearch-hnsw", dim=12, metric="ip",
                                   dtype="f16", connectivity=8)
    assert other_params.load(path, data_fingerprint="d1") is False
    assert same.load(path, data_fingerprint="d2") is False  # other data

    sidecar["usearch"] = "0.0.1"  # saved by another usearch version
    path.with_name("images.usearch.json").write_text(json.dumps(sidecar))
    fresh = registry.create("retrievers", "usearch-hnsw", dim=12, metric="ip", dtype="f16")
    assert fresh.build_or_load(path, vectors, keys, data_fingerprint="d1") is False
    assert fresh.load(path, data_fingerprint="d1") is True  # rebuilt and saved anew


def test_cli_lists_the_retrievers(capsys):
    assert main(["list", "retrievers"]) == 0
    out = capsys.readouterr().out
    assert "exact" in out and "usearch-hnsw" in out


def test_hnsw_builds_the_same_graph_every_time(registry):
    # a fixed seed must give the same metrics: the default single-threaded build is
    # deterministic, so two builds answer every query identically
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(3000, 32)).astype(np.float32)
    queries = rng.normal(size=(200, 32)).astype(np.float32)
    results = []
    for _ in range(2):
        index = registry.create("retrievers", "usearch-hnsw", dim=32, metric="cos",
                                expansion_search=16)
        index.build(vectors, np.arange(3000, dtype=np.int64))
        results.append(index.search(queries, 10))
    assert np.array_equal(results[0][0], results[1][0])
    assert np.array_equal(results[0][1], results[1][1])
