"""The reference retrievers: `exact` and `usearch-hnsw`, through the registry."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_metrics import recall_from_rankings, retrieval_recall
from testhelpers import tied_vectors

from ravlm_bench.cli import main
from ravlm_bench.foundation.errors import ConfigError, DataError, RavlmError
from ravlm_bench.plugin_host.contracts import METRICS
from ravlm_bench.plugin_host.host import get_plugin_manager
from ravlm_bench.plugin_host.registry import Registry
from ravlm_bench.scoring.ranking import pair_scores, sort_results
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


def tie_aware_top_k(vectors, queries, metric, k, keys=None):
    """Row numbers of the exact top k, equal scores by ascending key (default: the row), pair
    by pair in float64, so copies of one vector tie exactly."""
    q, v = queries.astype(np.float64), vectors.astype(np.float64)
    if metric == "cos":
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    if metric == "l2sq":
        scores = -((q[:, None, :] - v[None, :, :]) ** 2).sum(-1)
    else:
        scores = (q[:, None, :] * v[None, :, :]).sum(-1)
    keys = np.broadcast_to(np.arange(len(v)) if keys is None else keys, scores.shape)
    return np.lexsort((keys, -scores), axis=1)[:, :k]


@pytest.mark.parametrize("name,params,min_recall", [
    ("exact", {}, 1.0),  # exact: of a tie at the k-th place, the lowest keys
    ("usearch-hnsw", {}, 0.9),
    ("usearch-hnsw", {"dtype": "f16"}, 0.9),
])
def test_conformance_kit(registry, name, params, min_recall):
    check_retriever(lambda **kw: registry.create("retrievers", name, **params, **kw),
                    min_recall=min_recall)


class InsertionOrderTies:
    """Exact scores, but a tie goes by insertion order: what the contract forbids.

    ``sort_kept`` re-sorts the k kept by key, so only the cut at the k-th place is wrong."""

    def __init__(self, *, dim, metric, sort_kept=False):
        self.metric, self.sort_kept = metric, sort_kept

    def build(self, vectors, keys):
        self.vectors, self.keys = vectors, keys

    def search(self, queries, k):
        scores = pair_score_matrix(self.metric, queries, self.vectors)
        rows = np.argsort(-scores, axis=1, kind="stable")[:, :k]  # ties: insertion order
        keys = np.full((len(queries), k), -1, np.int64)
        kept = np.full((len(queries), k), -np.inf, np.float32)
        keys[:, :rows.shape[1]] = self.keys[rows]
        kept[:, :rows.shape[1]] = np.take_along_axis(scores, rows, axis=1)
        return sort_results(keys, kept) if self.sort_kept else (keys, kept)


def pair_score_matrix(metric, queries, vectors):
    """Every (query, vector) score, float32, pair by pair: copies of one vector tie exactly."""
    if metric == "cos":
        queries, vectors = unit(queries), unit(vectors)
    m, n = len(queries), len(vectors)
    return pair_scores(metric, queries, vectors, np.repeat(np.arange(m), n),
                       np.tile(np.arange(n), m)).reshape(m, n)


def unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_the_kit_fails_a_retriever_that_orders_ties_by_insertion():
    with pytest.raises(AssertionError, match="equal scores must come by ascending key"):
        check_retriever(lambda **kw: InsertionOrderTies(**kw))


def test_the_kit_fails_an_exact_retriever_that_cuts_ties_by_insertion():
    cut_by_insertion = lambda **kw: InsertionOrderTies(sort_kept=True, **kw)  # noqa: E731
    with pytest.raises(AssertionError, match="keeps the lowest keys of a tie"):
        check_retriever(cut_by_insertion, min_recall=1.0)
    # an approximate index may cut a tie at the k-th place as it finds it
    check_retriever(cut_by_insertion, min_recall=0.9)


@pytest.mark.parametrize("metric", ["cos", "ip", "l2sq"])
@pytest.mark.parametrize("n", [300, 6001])  # 6001: the blockwise top-k and a ragged tail
# database blocks of all rows, or of 4000 / 1000 rows merged (the last one a single row)
@pytest.mark.parametrize("rows_per_block", [None, 4000, 1000])
def test_exact_scores_are_the_true_similarities(registry, metric, n, rows_per_block,
                                                monkeypatch):
    import ravlm_bench.scoring.ranking

    vectors, queries = clustered(n=n)
    if rows_per_block:  # the scores buffer is sized per query chunk (here all 15 queries)
        monkeypatch.setattr(ravlm_bench.scoring.ranking, "SCORE_CHUNK_BYTES",
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


def test_usearch_i8_searches_unit_vectors_close_to_exact(registry):
    vectors, queries = clustered()
    keys = np.arange(len(vectors), dtype=np.int64)
    found = {}
    for dtype in ("f32", "i8"):
        index = registry.create("retrievers", "usearch-hnsw", dim=12, metric="cos", dtype=dtype,
                                expansion_search=256)
        index.build(vectors, keys)
        found[dtype] = index.search(queries, 10)
    assert index.memory_bytes() > 0
    recall = np.mean([len(set(a) & set(b)) / 10
                      for a, b in zip(found["i8"][0], found["f32"][0], strict=True)])
    assert recall >= 0.8
    # scores stay cosine similarities, within the quantisation's error
    np.testing.assert_allclose(found["i8"][1][:, 0], found["f32"][1][:, 0], atol=0.05)


def test_bad_params_fail_naming_the_plugin(registry):
    with pytest.raises(RavlmError, match="retriever exact: unknown metric"):
        registry.create("retrievers", "exact", dim=4, metric="hamming")
    with pytest.raises(RavlmError, match="dtype 'i4' is not supported"):
        registry.create("retrievers", "usearch-hnsw", dim=4, metric="cos", dtype="i4")
    with pytest.raises(RavlmError, match="'i8' quantises unit vectors; use it with metric"):
        registry.create("retrievers", "usearch-hnsw", dim=4, metric="l2sq", dtype="i8")


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


def test_usearch_rebuilds_an_index_file_whose_bytes_changed(registry, tmp_path, caplog):
    vectors, queries = clustered()
    keys = np.arange(len(vectors), dtype=np.int64)
    path = tmp_path / "images.usearch"
    built = registry.create("retrievers", "usearch-hnsw", dim=12, metric="cos")
    built.build_or_load(path, vectors, keys, data_fingerprint="d1")
    damaged = bytearray(path.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF  # one flipped byte inside the graph
    path.write_bytes(bytes(damaged))
    again = registry.create("retrievers", "usearch-hnsw", dim=12, metric="cos")
    assert again.load(path, data_fingerprint="d1") is False
    assert f"index {path} is damaged" in caplog.text
    assert again.build_or_load(path, vectors, keys, data_fingerprint="d1") is False
    np.testing.assert_array_equal(again.search(queries, 5)[0], built.search(queries, 5)[0])


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


def data_with_copies(seed=0, dim=8):
    return tied_vectors(seed, dim)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("rows_per_block", [None, 7])  # 7: ties spread over many blocks
def test_exact_keeps_the_lowest_keys_of_every_tie(registry, metric, rows_per_block,
                                                  monkeypatch):
    import ravlm_bench.scoring.ranking

    vectors, keys, queries = data_with_copies()
    if rows_per_block:
        monkeypatch.setattr(ravlm_bench.scoring.ranking, "SCORE_CHUNK_BYTES",
                            4 * len(queries) * rows_per_block)
    expected = keys[tie_aware_top_k(vectors, queries, metric, 10, keys)]
    shuffled = np.random.default_rng(1).permutation(len(keys))
    for order in (np.arange(len(keys)), shuffled):
        exact = registry.create("retrievers", "exact", dim=8, metric=metric)
        exact.build(vectors[order], keys[order])
        together, scores = exact.search(queries, 10)
        one_by_one = np.concatenate([exact.search(q[None], 10)[0] for q in queries])
        np.testing.assert_array_equal(together, expected)
        np.testing.assert_array_equal(one_by_one, expected)
    # the first query is a vector stored 15 times: nearest are 10 of the copies, the lowest
    # keys (by inner product a longer vector may come first)
    copies = np.sort(keys[(vectors == queries[0]).all(axis=1)])
    if metric != "ip":
        assert len(copies) == 15 and together[0].tolist() == copies[:10].tolist()
        assert len(set(scores[0].tolist())) == 1


def captions_with_copies(seed):
    """60 images (three of them one embedding) and 150 captions near their images, two groups
    of captions with one embedding, though of different images."""
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(60, 32)).astype(np.float32)
    images[[17, 40]] = images[5]
    caption_image = np.concatenate([np.arange(60), rng.integers(0, 60, 90)])
    texts = images[caption_image] + 0.8 * rng.normal(size=(150, 32)).astype(np.float32)
    for group in ([0, 61, 99, 130], [3, 8, 70]):
        texts[group] = texts[group[0]]
    return images, texts.astype(np.float32), caption_image


def exact_rankings(registry, items, queries, seed):
    """Rows of ``items`` best first per query, from `exact` built in a shuffled order."""
    order = np.random.default_rng(seed).permutation(len(items))
    exact = registry.create("retrievers", "exact", dim=items.shape[1], metric="cos")
    exact.build(items[order], order.astype(np.int64))  # keys: row numbers
    return exact.search(queries, 10)[0]


@pytest.mark.parametrize("seed", range(3))
def test_recall_from_exact_rankings_counts_ties_for_the_lowest_row(registry, seed):
    images, texts, caption_image = captions_with_copies(seed)
    t2i = exact_rankings(registry, images, texts, seed)
    i2t = exact_rankings(registry, texts, images, seed)
    assert np.array_equal(t2i, tie_aware_top_k(images, texts, "cos", 10))
    assert np.array_equal(i2t, tie_aware_top_k(texts, images, "cos", 10))
    reference = recall_from_rankings(tie_aware_top_k(images, texts, "cos", 10),
                                     tie_aware_top_k(texts, images, "cos", 10), caption_image)
    assert recall_from_rankings(t2i, i2t, caption_image) == reference


@pytest.mark.parametrize("seed", range(3))
def test_recall_from_exact_rankings_equals_retrieval_recall(registry, seed):
    # retrieval_recall searches the items in their own order, `exact` in a shuffled one: the
    # same implementation must give ties to the lower row either way
    images, texts, caption_image = captions_with_copies(seed)
    t2i = exact_rankings(registry, images, texts, seed)
    i2t = exact_rankings(registry, texts, images, seed)
    assert recall_from_rankings(t2i, i2t, caption_image) == retrieval_recall(
        images, texts, caption_image)


@pytest.mark.parametrize("name", ["exact", "usearch-hnsw"])
def test_options_declare_what_the_factory_takes(registry, name):
    import inspect

    entry = registry.get("retrievers", name)
    taken = {p.name: p.default for p in inspect.signature(entry.factory).parameters.values()
             if p.name not in ("dim", "metric")}
    assert entry.params.declared
    assert {p.name: p.default for p in entry.params.params} == taken
    assert all(p.help for p in entry.params.params)


def test_options_reject_bad_suite_parameters(registry):
    usearch = registry.get("retrievers", "usearch-hnsw")
    with pytest.raises(ConfigError, match="'dtype' = \"i4\": expected one of"):
        usearch.check({"dtype": "i4"}, "suite")
    with pytest.raises(ConfigError, match="'connectivity' = 1: must be >= 2"):
        usearch.check({"connectivity": 1}, "suite")
    with pytest.raises(ConfigError, match="unknown parameter 'thread'; did you mean 'threads'"):
        registry.get("retrievers", "exact").check({"thread": 2}, "suite")
