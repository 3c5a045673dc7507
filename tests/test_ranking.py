"""The exact search of ravlm_bench.scoring.ranking: true scores, and ties by ascending key
whatever the blocking, the items' order or where copies of a vector lie."""

from __future__ import annotations

import numpy as np
import pytest
from testhelpers import tied_vectors

import ravlm_bench.scoring.ranking
from ravlm_bench.foundation.errors import ConfigError
from ravlm_bench.plugin_host.contracts import METRICS
from ravlm_bench.scoring.ranking import ExactIndex, exact_top_k, pair_scores, sort_results


def float64_scores(queries, items, metric):
    """Every (query, item) score in float64, pair by pair, so copies of one vector tie."""
    q, v = queries.astype(np.float64), items.astype(np.float64)
    if metric == "cos":
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    if metric == "l2sq":
        return -((q[:, None, :] - v[None, :, :]) ** 2).sum(-1)
    return (q[:, None, :] * v[None, :, :]).sum(-1)


def reference_top_k(queries, items, metric, k, keys):
    """Keys of the k best by float64 score, equal scores by ascending key, -1 padding."""
    scores = float64_scores(queries, items, metric)
    order = np.lexsort((np.broadcast_to(keys, scores.shape), -scores), axis=1)[:, :k]
    found = np.full((len(queries), k), -1, np.int64)
    found[:, :order.shape[1]] = keys[order]
    return found


def data_with_copies(seed=0, dim=8):
    return tied_vectors(seed, dim)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("rows_per_block", [None, 7, 1])  # 7 and 1: a tie spans many blocks
def test_ties_across_blocks_go_to_the_lowest_keys(metric, rows_per_block, monkeypatch):
    vectors, keys, queries = data_with_copies()
    if rows_per_block:  # the scores buffer is sized per query chunk (here all 8 queries)
        monkeypatch.setattr(ravlm_bench.scoring.ranking, "SCORE_CHUNK_BYTES",
                            4 * len(queries) * rows_per_block)
    expected = reference_top_k(queries, vectors, metric, 10, keys)
    found, scores = exact_top_k(queries, vectors, 10, metric, keys)
    np.testing.assert_array_equal(found, expected)
    # the first query is stored 15 times: 10 of its copies come first, the lowest keys, in
    # one score (by inner product a longer vector may come before them)
    copies = np.sort(keys[(vectors == queries[0]).all(axis=1)])
    if metric != "ip":
        assert found[0].tolist() == copies[:10].tolist()
        assert len(set(scores[0].tolist())) == 1


@pytest.mark.parametrize("metric", METRICS)
def test_results_do_not_depend_on_item_order_or_query_chunks(metric, monkeypatch):
    vectors, keys, queries = data_with_copies(seed=1)
    together = exact_top_k(queries, vectors, 10, metric, keys)
    monkeypatch.setattr(ravlm_bench.scoring.ranking, "QUERY_CHUNK", 3)
    monkeypatch.setattr(ravlm_bench.scoring.ranking, "SCORE_CHUNK_BYTES", 4 * 3 * 5)
    shuffled = np.random.default_rng(2).permutation(len(keys))
    index = ExactIndex(vectors[shuffled], metric, keys[shuffled])
    backwards = [result[::-1] for result in index.search(queries[::-1], 10)]
    for found, scores in (index.search(queries, 10), backwards):
        np.testing.assert_array_equal(found, together[0])
        assert scores.tobytes() == together[1].tobytes()  # the same bits, not just close


@pytest.mark.parametrize("metric", METRICS)
def test_copies_at_different_positions_score_identically(metric):
    # 37 dimensions and copies at the first, middle and last rows: the rows a matrix
    # product may sum with different kernels (its edge tiles)
    rng = np.random.default_rng(5)
    items = rng.normal(size=(1000, 37)).astype(np.float32)
    copy_rows = np.array([0, 1, 500, 998, 999])
    items[copy_rows] = 10 * rng.normal(size=37).astype(np.float32)
    queries = (items[:1] + 0.1 * rng.normal(size=(3, 37))).astype(np.float32)
    prepared = ExactIndex(items, metric)
    scored = ravlm_bench.scoring.ranking.unit_rows(queries) if metric == "cos" else queries
    each = pair_scores(metric, scored, prepared.items, np.repeat(np.arange(3), len(copy_rows)),
                       np.tile(copy_rows, 3)).reshape(3, -1)
    assert (each == each[:, :1]).all()
    # and the search keeps the lowest rows of the five, each with those very bits
    found, scores = exact_top_k(queries, items, 3, metric)
    assert (found == copy_rows[:3]).all()
    assert scores.tobytes() == each[:, :3].tobytes()


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("n", [300, 6001])  # 6001: the blockwise top-k and a ragged tail
def test_scores_are_the_true_similarities(metric, n):
    rng = np.random.default_rng(n)
    items = rng.normal(size=(n, 12)).astype(np.float32)
    queries = rng.normal(size=(15, 12)).astype(np.float32)
    keys = np.arange(n, dtype=np.int64) * 7 + 1000
    found, scores = exact_top_k(queries, items, 7, metric, keys)
    expected = float64_scores(queries, items, metric)
    order = np.argsort(-expected, axis=1)[:, :7]
    np.testing.assert_array_equal(found, keys[order])
    np.testing.assert_allclose(scores, np.take_along_axis(expected, order, 1), rtol=1e-5,
                               atol=1e-5)
    assert found.dtype == np.int64 and scores.dtype == np.float32


def test_k_beyond_the_item_count_pads_with_minus_one():
    rng = np.random.default_rng(0)
    items = rng.normal(size=(4, 6)).astype(np.float32)
    queries = rng.normal(size=(3, 6)).astype(np.float32)
    found, scores = exact_top_k(queries, items, 7, "cos")
    np.testing.assert_array_equal(found, reference_top_k(queries, items, "cos", 7, np.arange(4)))
    assert (found[:, 4:] == -1).all() and np.isneginf(scores[:, 4:]).all()
    assert np.isfinite(scores[:, :4]).all()
    empty, empty_scores = exact_top_k(queries, np.zeros((0, 6), np.float32), 3, "ip")
    assert empty.shape == (3, 3) and (empty == -1).all() and np.isneginf(empty_scores).all()
    assert exact_top_k(queries, items, 0, "l2sq")[0].shape == (3, 0)


def test_pair_scores_do_not_depend_on_the_batch():
    rng = np.random.default_rng(0)
    queries = rng.normal(size=(50, 37)).astype(np.float32)
    items = rng.normal(size=(300, 37)).astype(np.float32)
    query_rows, item_rows = rng.integers(0, 50, 5000), rng.integers(0, 300, 5000)
    for metric in METRICS:
        together = pair_scores(metric, queries, items, query_rows, item_rows)
        for part in (slice(0, 1), slice(3, 10), slice(999, 4321)):
            alone = pair_scores(metric, queries, items, query_rows[part], item_rows[part])
            assert alone.tobytes() == together[part].tobytes(), metric


def test_sort_results_orders_by_score_then_key_with_padding_last():
    keys = np.array([[7, -1, 2, 4, 9], [3, 1, -1, -1, 2]])
    scores = np.array([[0.5, 0.9, 0.5, 0.7, 0.5], [0.1, 0.1, 0.0, 0.0, 0.1]], np.float32)
    sorted_keys, sorted_scores = sort_results(keys, scores)
    # padding goes last even where its score is higher (oracle pads with 0)
    assert sorted_keys.tolist() == [[4, 2, 7, 9, -1], [1, 2, 3, -1, -1]]
    expected = np.array([[0.7, 0.5, 0.5, 0.5, 0.9], [0.1, 0.1, 0.1, 0.0, 0.0]], np.float32)
    np.testing.assert_array_equal(sorted_scores, expected)


def test_bad_arguments_are_refused():
    items = np.ones((3, 4), np.float32)
    with pytest.raises(ConfigError, match="unknown metric 'hamming'"):
        ExactIndex(items, "hamming")
    with pytest.raises(ValueError, match=r"keys have shape \(2,\), expected \(3,\)"):
        ExactIndex(items, "ip", np.arange(2))
    with pytest.raises(ValueError, match=r"queries have shape \(2, 5\), expected \(m, 4\)"):
        ExactIndex(items, "ip").search(np.ones((2, 5), np.float32), 1)


@pytest.mark.parametrize("k", [1, 5])
def test_l2sq_far_from_the_origin_ranks_by_exact_distance(k):
    # Mirror images c + d and c - d about the query c tie exactly, but far from the origin
    # the matrix product (2 q.v - |v|^2) misorders them and their neighbours by rounding
    # errors of ~1: the margin must keep every item a pair score could rank in the top k.
    rng = np.random.default_rng(3)
    centre = (3000 + rng.integers(0, 1024, 16) / 128).astype(np.float32)
    offsets = rng.integers(-32, 33, size=(20, 16)).astype(np.float32) / 8  # exact in float32
    items = np.concatenate([centre + offsets, centre - offsets])
    keys = rng.permutation(len(items)).astype(np.int64)
    found, scores = exact_top_k(centre[None], items, k, "l2sq", keys)
    np.testing.assert_array_equal(found, reference_top_k(centre[None], items, "l2sq", k, keys))
    assert scores[0, 0] == -(offsets ** 2).sum(axis=1).min()  # pair scores are exact here
