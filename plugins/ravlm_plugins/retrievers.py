"""The reference retrievers: ``exact`` (BLAS brute force) and ``usearch-hnsw`` (a graph index).

Both take ``dim`` and ``metric`` (``cos``, ``ip``, ``l2sq``) from the harness and return
scores where higher means more similar: cosine similarity, inner product, or the negative
squared L2 distance. Equal scores come by ascending key. Heavy imports (torch, usearch) happen
inside the classes, never at import time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import numpy as np

from ravlm_bench.api import METRICS, ConfigError, DataError, hookimpl, option

log = logging.getLogger(__name__)

# Scores buffer per (query chunk x database block): large enough for an efficient GEMM.
SCORE_CHUNK_BYTES = 256 * 2**20
QUERY_CHUNK = 512  # queries per GEMM: wide enough to reuse each database block 512 times
UsearchDtype = Literal["f32", "f16", "bf16"]
USEARCH_DTYPES = get_args(UsearchDtype)
TOPK_BLOCK = 128
PAIR_CHUNK = 16_384  # (query, item) pairs scored at once: bounds the gathered rows' memory
FLOAT32_EPS = 2.0**-24  # unit roundoff of float32


@dataclass
class ExactOptions:
    """What a suite may set on ``exact``."""

    threads: int = option(0, "torch threads for the search (0: torch's default)", minimum=0)


@dataclass
class UsearchOptions:
    """What a suite may set on ``usearch-hnsw``."""

    dtype: UsearchDtype = option("f32", "precision the index stores vectors in")
    connectivity: int = option(16, "graph edges per node (HNSW's M)", minimum=2)
    expansion_add: int = option(128, "candidates kept while inserting (efConstruction)",
                                minimum=1)
    expansion_search: int = option(64, "candidates kept while searching (ef)", minimum=1)
    threads: int = option(0, "search threads (0: every core)", minimum=0)
    build_threads: int = option(1, "build threads; 1 builds the same graph every time, "
                                   "0 uses every core", minimum=0)


@hookimpl
def register_retrievers(register) -> None:
    register("exact", ExactRetriever,
             description="brute force: BLAS matrix products + top-k selection (cos, ip, l2sq)",
             options=ExactOptions)
    register("usearch-hnsw", UsearchRetriever,
             description="usearch HNSW graph index (dtype f32|f16|bf16, connectivity, expansion)",
             options=UsearchOptions)


def _check_metric(metric: str, name: str) -> str:
    if metric not in METRICS:
        raise ConfigError(f"retriever {name}: unknown metric {metric!r}; use one of {METRICS}")
    return metric


def check_build_inputs(vectors: np.ndarray, keys: np.ndarray, dim: int, name: str):
    """``build``'s arguments as float32 (n, dim) vectors and unique non-negative int64 keys,
    or a DataError naming the retriever."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    keys = np.asarray(keys)
    if vectors.ndim != 2 or vectors.shape[1] != dim:
        raise DataError(f"retriever {name}: vectors have shape {vectors.shape}, "
                        f"expected (n, {dim})")
    if keys.shape != (len(vectors),) or not np.issubdtype(keys.dtype, np.integer):
        raise DataError(f"retriever {name}: keys must be integers of shape ({len(vectors)},), "
                        f"got {keys.dtype} {keys.shape}")
    keys = keys.astype(np.int64, copy=False)
    if len(keys) and keys.min() < 0:
        raise DataError(f"retriever {name}: keys must be non-negative (-1 is the padding key)")
    if len(np.unique(keys)) != len(keys):
        raise DataError(f"retriever {name}: keys must be unique")
    return vectors, keys


def _check_queries(queries: np.ndarray, dim: int, name: str) -> np.ndarray:
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if queries.ndim != 2 or queries.shape[1] != dim:
        raise DataError(f"retriever {name}: queries have shape {queries.shape}, "
                        f"expected (m, {dim})")
    return queries


def _normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def _params_hash(params: dict) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]


def top_k_rows(scores, k: int, block: int = TOPK_BLOCK):
    """Row-wise top-k of a (m, n) torch tensor: (values, column indices), best first; which
    of several equal values it returns is unspecified.

    The k best of a row lie in the k column blocks with the highest block maxima (each of
    those blocks holds an element at least as large as its maximum's rank implies), so one
    max-reduction pass plus a top-k over k blocks replaces a top-k over all n columns:
    measured 3x cheaper than ``torch.topk`` on 512 x 100k scores (2 cores).
    """
    import torch

    m, n = scores.shape
    full_blocks = n // block
    if full_blocks < 4 * k:  # too few blocks for the shortcut to pay
        return torch.topk(scores, k, dim=1)
    maxima = scores[:, :full_blocks * block].reshape(m, full_blocks, block).amax(dim=2)
    best_blocks = torch.topk(maxima, k, dim=1).indices
    offsets = torch.arange(block)
    columns = (best_blocks.unsqueeze(-1) * block + offsets).reshape(m, k * block)
    if n > full_blocks * block:  # the ragged tail is always a candidate
        tail = torch.arange(full_blocks * block, n).expand(m, -1)
        columns = torch.cat([columns, tail], dim=1)
    values, positions = torch.topk(torch.gather(scores, 1, columns), k, dim=1)
    return values, torch.gather(columns, 1, positions)


def exact_blocking(queries: int, rows: int) -> tuple[int, int]:
    """(queries per chunk, database rows per block) of the exact search: one chunk's
    scores for one block fill at most ``SCORE_CHUNK_BYTES``."""
    chunk = min(queries, QUERY_CHUNK)
    return chunk, int(np.clip(SCORE_CHUNK_BYTES // (4 * chunk), 1, rows))


def pair_scores(metric: str, queries: np.ndarray, items: np.ndarray, query_rows: np.ndarray,
                item_rows: np.ndarray) -> np.ndarray:
    """The score of each pair (``queries[query_rows[i]]``, ``items[item_rows[i]]``), float32.

    Each pair is one sum over its coordinates, in a fixed order, so a pair scores the same
    bits whatever else is scored with it. A BLAS matrix product does not promise that: its
    edge tiles are summed by other kernels, so the same vector stored twice can score
    differently by a rounding error, and a tie would split by where the copies lie, how the
    queries are batched or how the database is sharded. ``cos`` expects normalised rows;
    ``l2sq`` sums the squared differences (no cancellation between large terms).
    """
    out = np.empty(len(query_rows), np.float32)
    for start in range(0, len(out), PAIR_CHUNK):
        part = slice(start, start + PAIR_CHUNK)
        q, v = queries[query_rows[part]], items[item_rows[part]]
        if metric == "l2sq":
            difference = q - v
            out[part] = -np.einsum("pd,pd->p", difference, difference)
        else:
            out[part] = np.einsum("pd,pd->p", q, v)
    return out


def sort_results(keys: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Search results sorted best first, equal scores by ascending key, ``-1`` padding last."""
    order = np.lexsort((keys, -scores, keys < 0), axis=1)
    return np.take_along_axis(keys, order, axis=1), np.take_along_axis(scores, order, axis=1)


def _best_k_by_score_then_key(query: np.ndarray, rows: np.ndarray, scores: np.ndarray,
                             keys: np.ndarray, k: int):
    """Of candidate (query, row, score) triples, each query's k best: highest score first,
    equal scores by ascending ``keys[row]``. Returns the kept triples, sorted by query and
    then best first, and each one's rank within its query."""
    order = np.lexsort((keys[rows], -scores, query))
    query, rows, scores = query[order], rows[order], scores[order]
    rank = np.arange(len(query)) - np.searchsorted(query, query)
    keep = rank < k
    return query[keep], rows[keep], scores[keep], rank[keep]


def _candidate_pairs(block, k: int, margin) -> tuple[np.ndarray, np.ndarray]:
    """(query, column) pairs of ``block`` that may be among a query's k best pair scores.

    ``block`` is a torch (m, r) tensor of matrix-product scores and ``margin`` (m,) bounds,
    per query, how far below its k-th best product score an item of the k best pair scores
    may lie. Usually only the k best products come that close; a query whose (k+1)-th does
    too (a tie, a duplicate) gets every column of its row within the margin.
    """
    import torch

    m, r = block.shape
    if r <= k:
        return np.repeat(np.arange(m), r), np.tile(np.arange(r), m)
    values, columns = top_k_rows(block, k + 1)
    cut = values[:, k - 1] - margin
    close = values[:, k] >= cut
    query = torch.arange(m).unsqueeze(1).expand(m, k)[~close].reshape(-1)
    column = columns[:, :k][~close].reshape(-1)
    if close.any():
        tied = torch.nonzero(close).squeeze(1)
        positions, tied_columns = torch.nonzero(block[tied] >= cut[tied].unsqueeze(1),
                                                as_tuple=True)
        query = torch.cat([query, tied[positions]])
        column = torch.cat([column, tied_columns])
    return query.numpy(), column.numpy()


class ExactRetriever:
    """Brute-force search: matrix products propose, pair scores decide.

    One matrix product per chunk of queries and block of database rows gives every score,
    each within a rounding error of the exact one; a top-k per block keeps the candidates
    that rounding error cannot rule out, and :func:`pair_scores` scores those exactly the
    same way wherever they lie. The k best by that score, ties by ascending key, are kept
    across blocks. So the results depend on the stored (key, vector) pairs and the query
    alone: not on insertion order, query batching or sharding.

    ``l2sq`` products rank by ``2 q.v - |v|^2`` (the ``|q|^2`` term does not change the order),
    so the whole search stays one GEMM per block; its pair scores are ``-|q - v|^2``.
    """

    name = "exact"

    def __init__(self, *, dim: int, metric: str = "cos", threads: int = 0):
        self.dim = int(dim)
        self.metric = _check_metric(metric, self.name)
        self.threads = int(threads)
        self._vectors = np.zeros((0, self.dim), np.float32)
        self._keys = np.zeros(0, np.int64)
        self._neg_sq_norms = None
        self._max_norm = 0.0

    def build(self, vectors: np.ndarray, keys: np.ndarray) -> None:
        vectors, keys = check_build_inputs(vectors, keys, self.dim, self.name)
        if self.metric == "cos":
            vectors = _normalise(vectors).astype(np.float32)
        self._vectors, self._keys = vectors, keys
        norms = np.linalg.norm(vectors, axis=1)
        self._max_norm = float(norms.max()) if len(norms) else 0.0
        if self.metric == "l2sq":
            self._neg_sq_norms = -np.einsum("ij,ij->i", vectors, vectors)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        import torch

        queries = _check_queries(queries, self.dim, self.name)
        if self.metric == "cos":
            queries = _normalise(queries).astype(np.float32)
        m, n = len(queries), len(self._vectors)
        keys = np.full((m, k), -1, np.int64)
        scores = np.full((m, k), -np.inf, np.float32)
        if m == 0 or min(k, n) == 0:
            return keys, scores
        margins = torch.from_numpy(self._margins(queries))
        previous_threads = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            chunk, rows_per_block = exact_blocking(m, n)
            # One scores buffer for every block: a fresh 256 MiB per block costs page faults
            # (measured: 30% of the search time at 100k vectors).
            buffer = torch.empty(chunk * rows_per_block, dtype=torch.float32)
            with torch.inference_mode():
                for start in range(0, m, chunk):
                    part = slice(start, start + chunk)
                    query, rows, found, rank = self._search_blocks(
                        queries[part], margins[part], k, buffer, rows_per_block)
                    keys[start + query, rank] = self._keys[rows]
                    scores[start + query, rank] = found
        finally:
            torch.set_num_threads(previous_threads)
        return keys, scores

    def _margins(self, queries: np.ndarray) -> np.ndarray:
        """Per query, how far below the k-th best product score a candidate may lie.

        A float32 sum of d products, in any order, is within ``e = (d + 3) eps scale`` of
        the exact value (``scale``: the norms' product, or for l2sq the square of their sum,
        which covers its extra terms). A product score and a pair score of one item differ
        by at most 2e, so the k-th best pair score is at least the k-th best product score
        less 2e, and an item reaching it has a product score at most 4e below that. (This
        holds for float32 matrix products; a matmul precision lowered to bf16 voids it.)
        """
        norms = np.linalg.norm(queries, axis=1).astype(np.float64)
        if self.metric == "l2sq":
            scale = (norms + self._max_norm) ** 2
        else:
            scale = norms * self._max_norm
        return (4 * (self.dim + 3) * FLOAT32_EPS * scale).astype(np.float32)

    def _search_blocks(self, queries: np.ndarray, margins, k: int, buffer,
                       rows_per_block: int):
        """The k best rows for ``queries``, one block of database rows at a time, as the
        triples and ranks of :func:`_best_k_by_score_then_key`.

        Blocking over the rows as well as the queries keeps each GEMM wide: a chunk of
        queries reads each block of the database once, where a 256 MiB scores buffer over a
        whole 1M-row database fits only 64 queries and reads all of it for each 64.
        """
        import torch

        q = torch.from_numpy(queries)
        base = torch.from_numpy(self._vectors)
        query, rows, rank = (np.zeros(0, np.int64),) * 3
        found = np.zeros(0, np.float32)
        for first in range(0, len(base), rows_per_block):
            block_rows = base[first:first + rows_per_block]
            block = buffer[:len(q) * len(block_rows)].view(len(q), len(block_rows))
            if self._neg_sq_norms is None:
                torch.mm(q, block_rows.T, out=block)
            else:
                bias = torch.from_numpy(self._neg_sq_norms[first:first + len(block_rows)])
                torch.addmm(bias.unsqueeze(0), q, block_rows.T, alpha=2.0, out=block)
            new_query, columns = _candidate_pairs(block, k, margins)
            new_rows = columns + first
            new_found = pair_scores(self.metric, queries, self._vectors, new_query, new_rows)
            # merged with the best of the earlier blocks
            query, rows, found, rank = _best_k_by_score_then_key(
                np.concatenate([query, new_query]), np.concatenate([rows, new_rows]),
                np.concatenate([found, new_found]), self._keys, k)
        return query, rows, found, rank

    def memory_bytes(self) -> int:
        extra = 0 if self._neg_sq_norms is None else self._neg_sq_norms.nbytes
        return int(self._vectors.nbytes + self._keys.nbytes + extra)

    def fingerprint(self) -> str:
        return f"exact-{_params_hash({'metric': self.metric, 'dim': self.dim})}"


class UsearchRetriever:
    """An HNSW index from usearch, with every parameter passed explicitly.

    usearch's defaults for ``metric`` and ``dtype`` differ between its docs and its code, and
    ``dtype=None`` depends on the hardware, so both are always given. Keys travel as uint64
    and come back as int64; slots past each row's count hold sentinel keys and are replaced
    by ``-1`` padding. Distances become scores: ``1 - d`` for cos and ip (usearch reports
    ``1 - dot`` for ip), ``-d`` for l2sq.
    """

    name = "usearch-hnsw"

    def __init__(self, *, dim: int, metric: str = "cos", dtype: str = "f32",
                 connectivity: int = 16, expansion_add: int = 128, expansion_search: int = 64,
                 threads: int = 0, build_threads: int = 1):
        self.dim = int(dim)
        self.metric = _check_metric(metric, self.name)
        if dtype not in USEARCH_DTYPES:
            raise ConfigError(f"retriever {self.name}: dtype {dtype!r} is not supported; "
                              f"use one of {USEARCH_DTYPES}")
        self.dtype = dtype
        self.connectivity = int(connectivity)
        self.expansion_add = int(expansion_add)
        self._expansion_search = int(expansion_search)
        self.threads = int(threads)  # for search, which leaves the graph as it is
        # One thread builds the same graph every time; with several, insertion order follows
        # the thread scheduler, and so can the neighbours found (0: every core, for speed).
        self.build_threads = int(build_threads)
        self._index = self._new_index()

    def _new_index(self):
        from usearch.index import Index

        return Index(ndim=self.dim, metric=self.metric, dtype=self.dtype,
                     connectivity=self.connectivity, expansion_add=self.expansion_add,
                     expansion_search=self._expansion_search)

    @property
    def expansion_search(self) -> int:
        return self._expansion_search

    @expansion_search.setter
    def expansion_search(self, value: int) -> None:
        # A search-time knob: changing it needs no rebuild.
        self._expansion_search = int(value)
        self._index.expansion_search = int(value)

    def build(self, vectors: np.ndarray, keys: np.ndarray) -> None:
        vectors, keys = check_build_inputs(vectors, keys, self.dim, self.name)
        self._index = self._new_index()
        if len(keys):
            self._index.add(keys.astype(np.uint64), vectors, threads=self.build_threads)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = _check_queries(queries, self.dim, self.name)
        m = len(queries)
        keys = np.full((m, k), -1, np.int64)
        scores = np.full((m, k), -np.inf, np.float32)
        if m == 0 or k == 0 or len(self._index) == 0:
            return keys, scores
        found = self._index.search(queries, k, threads=self.threads)
        found_keys = np.asarray(found.keys).reshape(m, -1)
        distances = np.asarray(found.distances, dtype=np.float32).reshape(m, -1)
        # One query gives a Matches already cut to its count; a batch gives BatchMatches.
        counts = np.asarray(getattr(found, "counts", [found_keys.shape[1]])).reshape(m)
        width = found_keys.shape[1]
        valid = np.arange(width)[None, :] < counts[:, None]
        distances = np.where(valid, distances, 0.0)  # sentinel slots hold garbage
        converted = -distances if self.metric == "l2sq" else 1.0 - distances
        keys[:, :width] = np.where(valid, found_keys.astype(np.int64), -1)
        scores[:, :width] = np.where(valid, converted, -np.inf)
        # Equal scores by ascending key within what the graph search found; of a tie group
        # cut by the k-th place, the graph may keep other members than the lowest keys.
        return sort_results(keys, scores)

    def memory_bytes(self) -> int:
        return int(self._index.memory_usage)

    def params(self) -> dict:
        return {"ndim": self.dim, "metric": self.metric, "dtype": self.dtype,
                "connectivity": self.connectivity, "expansion_add": self.expansion_add}

    def fingerprint(self) -> str:
        from usearch import __version__ as usearch_version

        params = dict(self.params(), expansion_search=self._expansion_search,
                      usearch=usearch_version)
        return f"usearch-hnsw-{_params_hash(params)}"

    # -- persistence ----------------------------------------------------------------------

    def save(self, path: str | os.PathLike, data_fingerprint: str = "") -> None:
        """Write the index to ``path`` and its parameters to ``path.json``."""
        from usearch import __version__ as usearch_version

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        self._index.save(str(tmp))
        os.replace(tmp, path)
        sidecar = dict(self.params(), usearch=usearch_version, count=len(self._index),
                       data=data_fingerprint)
        _sidecar(path).write_text(json.dumps(sidecar, sort_keys=True))

    def load(self, path: str | os.PathLike, data_fingerprint: str = "") -> bool:
        """Load a saved index if its parameters, usearch version and data match; else False.

        A False return means the caller must :meth:`build` (and may :meth:`save`) again.
        """
        from usearch import __version__ as usearch_version

        path = Path(path)
        try:
            saved = json.loads(_sidecar(path).read_text())
        except (OSError, ValueError):
            return False
        expected = dict(self.params(), usearch=usearch_version, data=data_fingerprint)
        mismatched = sorted(key for key, value in expected.items() if saved.get(key) != value)
        if mismatched or not path.is_file():
            log.info("index %s is stale (%s differ); rebuilding", path,
                     ", ".join(mismatched) or "file missing")
            return False
        index = self._new_index()
        try:
            index.load(str(path))
        except Exception as exc:  # an unreadable index is rebuilt, not fatal
            log.warning("index %s could not be loaded (%s); rebuilding", path, exc)
            return False
        if len(index) != saved.get("count"):
            return False
        index.expansion_search = self._expansion_search
        self._index = index
        return True

    def build_or_load(self, path: str | os.PathLike, vectors: np.ndarray, keys: np.ndarray,
                      data_fingerprint: str) -> bool:
        """Load the index saved at ``path`` when it matches, else build and save it.

        Returns True when it was loaded.
        """
        if self.load(path, data_fingerprint):
            return True
        self.build(vectors, keys)
        self.save(path, data_fingerprint)
        return False


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")
