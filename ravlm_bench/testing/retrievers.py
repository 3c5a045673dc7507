"""Conformance checks for retrievers: the search contract, ties by ascending key,
and recall against brute force."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ravlm_bench.plugin_host.contracts import (
    METRICS,
    ContractViolation,
    validate_search,
)
from ravlm_bench.testing._common import _fail


def check_retriever(
    factory: Callable[..., Any],
    *,
    metrics: tuple[str, ...] = METRICS,
    n: int = 200,
    dim: int = 16,
    k: int = 10,
    min_recall: float = 0.9,
    seed: int = 0,
) -> None:
    """Check a retriever factory against the contract for every metric.

    Builds on clustered random vectors and checks: shapes and dtypes, best-first scores,
    ``-1`` padding when fewer than k items exist, the nearest item of a stored vector is
    itself, recall@k against brute force, and results unchanged by query batch size. Then,
    on data where some vectors are stored several times under shuffled keys: equal scores
    come by ascending key, copies of one vector score alike, and the results do not change
    with the insertion order or the query batch size, except for queries whose recall is
    not exact (what an approximate index may miss).

    ``min_recall=1`` demands exact search: then of a tie at the k-th place, the lowest keys
    must be kept. A retriever with ``uses_labels`` gets one label for every item and query;
    one that knows nothing (the ``random`` bound) passes with ``min_recall=0``.
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(8, dim)).astype(np.float32)
    vectors = (centres[rng.integers(0, 8, n)] + 0.3 * rng.normal(size=(n, dim))).astype(np.float32)
    keys = (np.arange(n, dtype=np.int64) * 7 + 3)  # keys are not row numbers
    queries = vectors[:20] + 0.01 * rng.normal(size=(20, dim)).astype(np.float32)

    for metric in metrics:
        retriever = _built_retriever(factory, dim, metric, vectors, keys)
        found, scores = _checked_search(retriever, queries, k, f"metric {metric}")
        one, _ = _checked_search(retriever, queries[:1], k, f"metric {metric}")
        if not set(found[found >= 0].tolist()) <= set(keys.tolist()):
            _fail(f"metric {metric}: search returned keys that were never added")
        if not np.array_equal(found[:1], one):
            _fail(f"metric {metric}: results depend on the query batch size")
        expected = _brute_force(vectors, keys, queries, k, metric)
        recall = _recall(found, expected).mean()
        if recall < min_recall:
            _fail(f"metric {metric}: recall@{k} {recall:.3f} against brute force < {min_recall}")
        self_found = np.mean(found[:, 0] == keys[:20])
        if metric != "ip" and self_found < min_recall:  # approximate indexes may miss a few
            _fail(f"metric {metric}: a stored vector is its own nearest neighbour for only "
                  f"{self_found:.0%} of queries (< {min_recall:.0%})")

        small = _built_retriever(factory, dim, metric, vectors[:3], keys[:3])
        padded, _ = _checked_search(small, queries[:2], 5, f"metric {metric}, 3 items, k=5")
        if not (padded[:, 3:] == -1).all() or not (padded[:, :3] >= 0).all():
            _fail(f"metric {metric}: with 3 items and k=5, keys must end in two -1 pads, "
                  f"got {padded.tolist()}")

        _check_ties(factory, dim, metric, k, min_recall, rng)


def _built_retriever(factory: Callable[..., Any], dim: int, metric: str, vectors: np.ndarray,
                     keys: np.ndarray) -> Any:
    from ravlm_bench.plugin_host.contracts import capability

    retriever = factory(dim=dim, metric=metric)
    if capability(retriever, "retrievers", "uses_labels"):
        retriever.build(vectors, keys, labels=np.zeros(len(keys), np.int64))
    else:
        retriever.build(vectors, keys)
    return retriever


def _checked_search(retriever: Any, queries: np.ndarray, k: int,
                    where: str) -> tuple[np.ndarray, np.ndarray]:
    from ravlm_bench.plugin_host.contracts import capability

    try:
        if capability(retriever, "retrievers", "uses_labels"):
            result = retriever.search(queries, k, labels=np.zeros(len(queries), np.int64))
        else:
            result = retriever.search(queries, k)
        return validate_search(result, len(queries), k)
    except ContractViolation as exc:
        _fail(f"{where}: {exc}")


def _check_ties(factory: Callable[..., Any], dim: int, metric: str, k: int, min_recall: float,
                rng: np.random.Generator) -> None:
    """Ties on vectors stored several times: see :func:`check_retriever`."""
    vectors, keys, copy_of, queries = _data_with_copies(dim, k, rng)
    where = f"metric {metric}, vectors stored several times"

    def search(order: np.ndarray, batch: int) -> tuple[np.ndarray, np.ndarray]:
        retriever = _built_retriever(factory, dim, metric, vectors[order], keys[order])
        parts = [_checked_search(retriever, queries[start:start + batch], k, where)
                 for start in range(0, len(queries), batch)]
        found = np.concatenate([p[0] for p in parts])
        scores = np.concatenate([p[1] for p in parts])
        _check_tied_rows(found, scores, keys, copy_of, where)
        return found, scores

    expected = _brute_force(vectors, keys, queries, k, metric)
    inserted = np.arange(len(keys))
    found, scores = search(inserted, len(queries))
    exact = _recall(found, expected) == 1.0
    variants = {"the insertion order": (rng.permutation(len(keys)), len(queries)),
                "the query batch size (1)": (inserted, 1),
                "the query batch size (5)": (inserted, 5)}
    for what, (order, batch) in variants.items():
        other, other_scores = search(order, batch)
        changed = (other != found).any(axis=1)
        changed |= ~np.isclose(other_scores, scores, rtol=1e-5, atol=1e-6).all(axis=1)
        changed &= exact & (_recall(other, expected) == 1.0)
        if changed.any():
            i = int(np.flatnonzero(changed)[0])
            _fail(f"{where}: results change with {what}: query {i} got keys "
                  f"{other[i].tolist()}, before {found[i].tolist()}")
    if min_recall >= 1 and not exact.all():  # an approximate index may cut a tie otherwise
        i = int(np.flatnonzero(~exact)[0])
        _fail(f"{where}: query {i} got keys {found[i].tolist()}, expected "
              f"{expected[i].tolist()} (exact search keeps the lowest keys of a tie at the "
              f"k-th place)")


def _data_with_copies(dim: int, k: int, rng: np.random.Generator):
    """Clustered vectors, four of them stored 2, 3, 5 and k + 2 times, in shuffled order under
    shuffled keys: (vectors, keys, copy_of: the first row of each row's vector, queries).

    The queries are the copied vectors themselves (a tie at the top; the largest group is
    cut by the k-th place), the same moved a little, and vectors near the clusters.
    """
    centres = rng.normal(size=(4, dim))
    distinct = (centres[rng.integers(0, 4, 40)] + 0.3 * rng.normal(size=(40, dim)))
    distinct = distinct.astype(np.float32)
    source = np.concatenate([np.arange(4, 40), np.repeat(np.arange(4), [2, 3, 5, k + 2])])
    source = source[rng.permutation(len(source))]
    keys = rng.permutation(len(source)).astype(np.int64) * 5 + 1
    copy_of = np.unique(source, return_index=True)[1][source]
    nearby = centres[rng.integers(0, 4, 4)] + 0.3 * rng.normal(size=(4, dim))
    queries = np.concatenate([distinct[:4], distinct[:4] + 0.01 * rng.normal(size=(4, dim)),
                              nearby]).astype(np.float32)
    return distinct[source], keys, copy_of, queries


def _check_tied_rows(found: np.ndarray, scores: np.ndarray, keys: np.ndarray,
                     copy_of: np.ndarray, where: str) -> None:
    """Within each returned row: copies of one vector score alike, equal scores ascend by key."""
    row_of_key = dict(zip(keys.tolist(), range(len(keys)), strict=True))
    for i, (row_keys, row_scores) in enumerate(zip(found, scores, strict=True)):
        valid = row_keys >= 0
        row_keys, row_scores = row_keys[valid], row_scores[valid]
        if not set(row_keys.tolist()) <= row_of_key.keys():
            _fail(f"{where}: search returned keys that were never added")
        vector = copy_of[[row_of_key[key] for key in row_keys.tolist()]]
        for copy in np.unique(vector):
            same = vector == copy
            if len(set(row_scores[same].tolist())) > 1:
                _fail(f"{where}: copies of one vector must score alike; query {i} got keys "
                      f"{row_keys[same].tolist()} with scores {row_scores[same].tolist()}")
        tied = row_scores[1:] == row_scores[:-1]
        if (tied & (row_keys[1:] <= row_keys[:-1])).any():
            _fail(f"{where}: equal scores must come by ascending key; query {i} got keys "
                  f"{row_keys.tolist()} with scores {row_scores.tolist()}")


def _recall(found: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Per query, the share of the expected keys found."""
    return np.array([len(set(a.tolist()) & set(b.tolist())) / len(b)
                     for a, b in zip(found, expected, strict=True)])


def _brute_force(vectors, keys, queries, k, metric) -> np.ndarray:
    """The exact top-k keys, equal scores by ascending key. Pair by pair in float64, so
    copies of one vector tie exactly (a matrix product may score them apart)."""
    q, v = queries.astype(np.float64), vectors.astype(np.float64)
    if metric == "cos":
        v = v / np.linalg.norm(v, axis=1, keepdims=True)
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
    if metric == "l2sq":
        scores = -((q[:, None, :] - v[None, :, :]) ** 2).sum(-1)
    else:
        scores = (q[:, None, :] * v[None, :, :]).sum(-1)
    order = np.lexsort((np.broadcast_to(keys, scores.shape), -scores), axis=1)
    return keys[order[:, :k]]
