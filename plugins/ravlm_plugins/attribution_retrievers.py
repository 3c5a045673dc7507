"""Attribution retrievers: the bounds that tell a retrieval miss from a fusion miss.

``oracle`` returns the knowledge-base items that share the query's label (nearest first):
the most any retriever could hand the fusion head. ``random`` returns seeded random items:
what a retriever that knows nothing hands it. Both declare ``uses_labels = True`` (the
optional retriever extension in :mod:`ravlm_bench.contracts`): ``build`` and ``search`` take
``labels=``, and :func:`ravlm_bench.knowledge.retrieve` passes them. Scores are the real
similarities under ``metric`` (higher = more similar), best first, ``-1`` padding.
"""

from __future__ import annotations

import hashlib

import numpy as np

from ravlm_bench.contracts import METRICS
from ravlm_bench.errors import ConfigError, DataError
from ravlm_bench.hookspecs import hookimpl

QUERY_CHUNK = 1024  # queries scored at once against one label's items


@hookimpl
def register_retrievers(register) -> None:
    register("oracle", OracleRetriever,
             description="upper bound: knowledge-base items with the query's label (needs labels)")
    register("random", RandomRetriever,
             description="lower bound: seeded random knowledge-base items (param seed)")


class _LabelledIndex:
    """Shared storage and scoring of the attribution retrievers."""

    uses_labels = True
    name = "?"

    def __init__(self, *, dim: int, metric: str = "cos"):
        if metric not in METRICS:
            raise ConfigError(f"retriever {self.name}: unknown metric {metric!r}; use one of "
                              f"{METRICS}")
        self.dim, self.metric = int(dim), metric
        self.vectors = np.empty((0, self.dim), np.float32)
        self.keys = np.empty(0, np.int64)
        self.labels: np.ndarray | None = None

    def build(self, vectors: np.ndarray, keys: np.ndarray, labels: np.ndarray | None = None):
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        keys = np.asarray(keys, dtype=np.int64)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim or keys.shape != (len(vectors),):
            raise DataError(f"retriever {self.name}: build got vectors {vectors.shape} and keys "
                            f"{keys.shape}, expected (n, {self.dim}) and (n,)")
        if labels is not None:
            labels = np.asarray(labels, dtype=np.int64)
            if labels.shape != keys.shape:
                raise DataError(f"retriever {self.name}: labels have shape {labels.shape}, "
                                f"expected {keys.shape}")
        if self.metric == "cos":
            vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        self.vectors, self.keys, self.labels = vectors, keys, labels

    def _scores(self, queries: np.ndarray, rows: np.ndarray | slice) -> np.ndarray:
        """Similarity of each query to the items ``rows`` (higher = more similar)."""
        items = self.vectors[rows]
        if self.metric == "cos":
            queries = queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
        if self.metric == "l2sq":
            return -(np.sum(queries**2, axis=1, keepdims=True) - 2 * queries @ items.T
                     + np.sum(items**2, axis=1)[None, :])
        return queries @ items.T

    def _check_queries(self, queries: np.ndarray) -> np.ndarray:
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise DataError(f"retriever {self.name}: queries have shape {queries.shape}, "
                            f"expected (m, {self.dim})")
        return queries


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the k best scores per row, best first (ties: lower index first)."""
    k = min(k, scores.shape[1])
    if k < scores.shape[1]:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -part_scores), axis=1)
    return np.take_along_axis(part, order, axis=1)


class OracleRetriever(_LabelledIndex):
    """The nearest knowledge-base items that share the query's label."""

    name = "oracle"

    def search(self, queries: np.ndarray, k: int, labels: np.ndarray | None = None):
        queries = self._check_queries(queries)
        if labels is None or self.labels is None:
            raise ConfigError("retriever oracle needs labels at build and search time "
                              "(build(vectors, keys, labels=...), search(queries, k, labels=...))")
        labels = np.asarray(labels, dtype=np.int64)
        if labels.shape != (len(queries),):
            raise DataError(f"retriever oracle: labels have shape {labels.shape}, "
                            f"expected ({len(queries)},)")
        keys = np.full((len(queries), k), -1, np.int64)
        scores = np.zeros((len(queries), k), np.float32)
        # A query with a label no item has (-1: outside the label space) gets only padding.
        for label in np.unique(labels[labels >= 0]):
            items = np.flatnonzero(self.labels == label)
            if not len(items):
                continue
            asking = np.flatnonzero(labels == label)
            for start in range(0, len(asking), QUERY_CHUNK):
                rows = asking[start:start + QUERY_CHUNK]
                sims = self._scores(queries[rows], items)
                best = _top_k(sims, k)
                keys[rows, :best.shape[1]] = self.keys[items[best]]
                scores[rows, :best.shape[1]] = np.take_along_axis(sims, best, axis=1)
        return keys, scores


class RandomRetriever(_LabelledIndex):
    """Random knowledge-base items, drawn from the seed and the query's own bytes.

    Seeding per query makes the result independent of batching and repeatable across runs;
    labels are accepted (and ignored) so the harness can treat both bounds alike.
    """

    name = "random"

    def __init__(self, *, dim: int, metric: str = "cos", seed: int = 0):
        super().__init__(dim=dim, metric=metric)
        self.seed = int(seed)

    def search(self, queries: np.ndarray, k: int, labels: np.ndarray | None = None):
        queries = self._check_queries(queries)
        n_items = len(self.keys)
        take = min(k, n_items)
        keys = np.full((len(queries), k), -1, np.int64)
        scores = np.zeros((len(queries), k), np.float32)
        if take == 0:
            return keys, scores
        picks = np.stack([self._draw(query, take, n_items) for query in queries])
        for start in range(0, len(queries), QUERY_CHUNK):
            rows = slice(start, start + QUERY_CHUNK)
            chosen = picks[rows]
            items = self.vectors[chosen]  # (q, take, d)
            if self.metric == "l2sq":
                sims = -np.sum((queries[rows, None, :] - items) ** 2, axis=2)
            else:
                sims = np.einsum("qd,qkd->qk", self._scored_queries(queries[rows]), items)
            order = np.lexsort((chosen, -sims), axis=1)
            keys[rows, :take] = self.keys[np.take_along_axis(chosen, order, axis=1)]
            scores[rows, :take] = np.take_along_axis(sims, order, axis=1)
        return keys, scores

    def _draw(self, query: np.ndarray, take: int, n_items: int) -> np.ndarray:
        digest = hashlib.blake2b(query.tobytes(), digest_size=8).digest()
        rng = np.random.default_rng([self.seed, int.from_bytes(digest, "little")])
        return rng.choice(n_items, size=take, replace=False)

    def _scored_queries(self, queries: np.ndarray) -> np.ndarray:
        if self.metric == "cos":
            return queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
        return queries
