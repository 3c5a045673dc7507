"""Attribution retrievers: the bounds that tell a retrieval miss from a fusion miss.

``oracle`` returns the knowledge-base items that share the query's label (nearest first):
the most any retriever could hand the fusion head. ``random`` returns seeded random items:
what a retriever that knows nothing hands it. Both declare ``uses_labels = True`` (the
optional retriever extension in :mod:`ravlm_bench.plugin_host.contracts`): ``build`` and
``search`` take ``labels=``, and :func:`ravlm_bench.stages.retrieval.retrieve` passes them.
Scores are the real similarities under ``metric`` (higher = more similar), best first, equal
scores by ascending key, ``-1`` padding.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from ravlm_bench.api import (
    METRICS,
    ConfigError,
    DataError,
    hookimpl,
    option,
    pair_scores,
    sort_results,
)
from ravlm_plugins.retrievers import ExactRetriever, check_build_inputs


@dataclass
class OracleOptions:
    """``oracle`` has no parameters of its own (``dim`` and ``metric`` come from the harness)."""


@dataclass
class RandomOptions:
    """What a suite may set on ``random``."""

    seed: int = option(0, "seed of the draws (each query's draw also depends on its bytes)")


@hookimpl
def register_retrievers(register) -> None:
    register("oracle", OracleRetriever,
             description="upper bound: knowledge-base items with the query's label (needs labels)",
             options=OracleOptions)
    register("random", RandomRetriever,
             description="lower bound: seeded random knowledge-base items (param seed)",
             options=RandomOptions)


class _LabelledIndex:
    """Shared checks of the attribution retrievers."""

    uses_labels = True
    name = "?"

    def __init__(self, *, dim: int, metric: str = "cos"):
        if metric not in METRICS:
            raise ConfigError(f"retriever {self.name}: unknown metric {metric!r}; use one of "
                              f"{METRICS}")
        self.dim, self.metric = int(dim), metric

    def _check_build(self, vectors: np.ndarray, keys: np.ndarray, labels: np.ndarray | None):
        vectors, keys = check_build_inputs(vectors, keys, self.dim, self.name)
        if labels is not None:
            labels = np.asarray(labels, dtype=np.int64)
            if labels.shape != keys.shape:
                raise DataError(f"retriever {self.name}: labels have shape {labels.shape}, "
                                f"expected {keys.shape}")
        return vectors, keys, labels

    def _check_queries(self, queries: np.ndarray) -> np.ndarray:
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise DataError(f"retriever {self.name}: queries have shape {queries.shape}, "
                            f"expected (m, {self.dim})")
        return queries


class OracleRetriever(_LabelledIndex):
    """The nearest knowledge-base items that share the query's label: an ``exact`` index per
    label, so ties and scores are exactly as ``exact`` gives them."""

    name = "oracle"

    def __init__(self, *, dim: int, metric: str = "cos"):
        super().__init__(dim=dim, metric=metric)
        self._by_label: dict[int, ExactRetriever] | None = None

    def build(self, vectors: np.ndarray, keys: np.ndarray, labels: np.ndarray | None = None):
        vectors, keys, labels = self._check_build(vectors, keys, labels)
        if labels is None:
            self._by_label = None
            return
        self._by_label = {}
        for label in np.unique(labels):
            items = labels == label
            index = ExactRetriever(dim=self.dim, metric=self.metric)
            index.build(vectors[items], keys[items])
            self._by_label[int(label)] = index

    def search(self, queries: np.ndarray, k: int, labels: np.ndarray | None = None,
               query_keys: np.ndarray | None = None):
        queries = self._check_queries(queries)
        if labels is None or self._by_label is None:
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
            index = self._by_label.get(int(label))
            if index is None:
                continue
            asking = np.flatnonzero(labels == label)
            found, found_scores = index.search(queries[asking], k)
            keys[asking] = found
            scores[asking] = np.where(found >= 0, found_scores, np.float32(0))
        return keys, scores


class RandomRetriever(_LabelledIndex):
    """Random knowledge-base items, drawn from the seed and the query's key (the harness's
    ``query_keys``: the query item's identity), or without one from the query's own bytes.

    Seeding per query makes the result independent of batching and repeatable across runs;
    seeding by key makes it independent of the query vector's last bits too, which differ
    with the encoders' thread count, so one process and two give the same draws. Drawing
    positions in key order makes it independent of insertion order; labels are accepted
    (and ignored) so the harness can treat both bounds alike.
    """

    name = "random"
    uses_query_keys = True

    def __init__(self, *, dim: int, metric: str = "cos", seed: int = 0):
        super().__init__(dim=dim, metric=metric)
        self.seed = int(seed)
        self.vectors = np.empty((0, self.dim), np.float32)
        self.keys = np.empty(0, np.int64)

    def build(self, vectors: np.ndarray, keys: np.ndarray, labels: np.ndarray | None = None):
        vectors, keys, _ = self._check_build(vectors, keys, labels)
        in_key_order = np.argsort(keys, kind="stable")
        vectors, keys = vectors[in_key_order], keys[in_key_order]
        if self.metric == "cos":
            vectors = _normalise(vectors)
        self.vectors, self.keys = vectors, keys

    def search(self, queries: np.ndarray, k: int, labels: np.ndarray | None = None,
               query_keys: np.ndarray | None = None):
        queries = self._check_queries(queries)
        m, n_items = len(queries), len(self.keys)
        take = min(k, n_items)
        keys = np.full((m, k), -1, np.int64)
        scores = np.zeros((m, k), np.float32)
        if take == 0 or m == 0:
            return keys, scores
        seeds = (np.asarray(query_keys, np.int64).tolist() if query_keys is not None
                 else [_bytes_seed(query) for query in queries])
        picks = np.stack([self._draw(seed, take, n_items) for seed in seeds])
        scored = _normalise(queries) if self.metric == "cos" else queries
        # pair by pair: the same item drawn under two keys scores the same bits, a tie
        sims = pair_scores(self.metric, scored, self.vectors, np.repeat(np.arange(m), take),
                           picks.ravel()).reshape(m, take)
        keys[:, :take], scores[:, :take] = sort_results(self.keys[picks], sims)
        return keys, scores

    def _draw(self, query_seed: int, take: int, n_items: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, int(query_seed) % 2**64])
        return rng.choice(n_items, size=take, replace=False)


def _bytes_seed(query: np.ndarray) -> int:
    """A query's seed from its bytes, where the harness gives no key."""
    return int.from_bytes(hashlib.blake2b(query.tobytes(), digest_size=8).digest(), "little")


def _normalise(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)
