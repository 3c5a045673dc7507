"""The reference retrievers: ``exact`` (BLAS brute force) and ``usearch-hnsw`` (a graph index).

Both take ``dim`` and ``metric`` (``cos``, ``ip``, ``l2sq``) from the harness and return
scores where higher means more similar: cosine similarity, inner product, or the negative
squared L2 distance. Heavy imports (torch, usearch) happen inside the classes, never at
import time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np

from ravlm_bench.contracts import METRICS
from ravlm_bench.errors import ConfigError, DataError
from ravlm_bench.hookspecs import hookimpl

log = logging.getLogger(__name__)

# Scores buffer per (query chunk x database block): large enough for an efficient GEMM.
SCORE_CHUNK_BYTES = 256 * 2**20
QUERY_CHUNK = 512  # queries per GEMM: wide enough to reuse each database block 512 times
USEARCH_DTYPES = ("f32", "f16", "bf16")
TOPK_BLOCK = 128


@hookimpl
def register_retrievers(register) -> None:
    register("exact", ExactRetriever,
             description="brute force: BLAS matrix products + top-k selection (cos, ip, l2sq)")
    register("usearch-hnsw", UsearchRetriever,
             description="usearch HNSW graph index (dtype f32|f16|bf16, connectivity, expansion)")


def _check_metric(metric: str, name: str) -> str:
    if metric not in METRICS:
        raise ConfigError(f"retriever {name}: unknown metric {metric!r}; use one of {METRICS}")
    return metric


def _check_build_inputs(vectors: np.ndarray, keys: np.ndarray, dim: int, name: str):
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
    """Row-wise top-k of a (m, n) torch tensor: (values, column indices), best first.

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


class ExactRetriever:
    """Brute-force search: one matrix product per chunk of queries and block of database
    rows, a top-k per block, and the blocks' top-k merged.

    ``l2sq`` ranks by ``2 q.v - |v|^2`` (the ``|q|^2`` term does not change the order) and adds
    it back only for the k results kept, so the whole search stays one GEMM per block.
    """

    name = "exact"

    def __init__(self, *, dim: int, metric: str = "cos", threads: int = 0):
        self.dim = int(dim)
        self.metric = _check_metric(metric, self.name)
        self.threads = int(threads)
        self._vectors = np.zeros((0, self.dim), np.float32)
        self._keys = np.zeros(0, np.int64)
        self._neg_sq_norms = None

    def build(self, vectors: np.ndarray, keys: np.ndarray) -> None:
        vectors, keys = _check_build_inputs(vectors, keys, self.dim, self.name)
        if self.metric == "cos":
            vectors = _normalise(vectors).astype(np.float32)
        self._vectors, self._keys = vectors, keys
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
        kept = min(k, n)
        if m == 0 or kept == 0:
            return keys, scores
        previous_threads = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            base = torch.from_numpy(self._vectors)
            bias = None if self._neg_sq_norms is None else torch.from_numpy(self._neg_sq_norms)
            chunk, rows_per_block = exact_blocking(m, n)
            # One scores buffer for every block: a fresh 256 MiB per block costs page faults
            # (measured: 30% of the search time at 100k vectors).
            buffer = torch.empty(chunk * rows_per_block, dtype=torch.float32)
            with torch.inference_mode():
                for start in range(0, m, chunk):
                    q = torch.from_numpy(queries[start:start + chunk])
                    top_scores, top_rows = self._search_blocks(q, base, bias, kept, buffer,
                                                               rows_per_block)
                    keys[start:start + chunk, :kept] = self._keys[top_rows.numpy()]
                    scores[start:start + chunk, :kept] = top_scores.numpy()
        finally:
            torch.set_num_threads(previous_threads)
        if self.metric == "l2sq":
            scores[:, :kept] -= np.einsum("ij,ij->i", queries, queries)[:, None]
        return keys, scores

    @staticmethod
    def _search_blocks(q, base, bias, k: int, buffer, rows_per_block: int):
        """The k best rows of ``base`` for the queries ``q``, one block of rows at a time.

        Blocking over the rows as well as the queries keeps each GEMM wide: a chunk of
        queries reads each block of the database once, where a 256 MiB scores buffer over a
        whole 1M-row database fits only 64 queries and reads all of it for each 64.
        """
        import torch

        best = None
        for first in range(0, len(base), rows_per_block):
            rows = base[first:first + rows_per_block]
            block = buffer[:len(q) * len(rows)].view(len(q), len(rows))
            if bias is None:
                torch.mm(q, rows.T, out=block)
            else:
                torch.addmm(bias[first:first + len(rows)].unsqueeze(0), q, rows.T,
                            alpha=2.0, out=block)
            values, columns = top_k_rows(block, min(k, len(rows)))
            found = (values, columns + first)
            if best is not None:  # merge with the best of the earlier blocks
                merged_values = torch.cat([best[0], found[0]], dim=1)
                merged_rows = torch.cat([best[1], found[1]], dim=1)
                values, positions = torch.topk(merged_values, k, dim=1)
                found = (values, torch.gather(merged_rows, 1, positions))
            best = found
        return best

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
        vectors, keys = _check_build_inputs(vectors, keys, self.dim, self.name)
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
        return keys, scores

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
