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
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import numpy as np

from ravlm_bench.api import (
    METRICS,
    ConfigError,
    DataError,
    ExactIndex,
    hookimpl,
    option,
    sort_results,
)

log = logging.getLogger(__name__)

# i8 quantises each unit vector's components to 8-bit integers (cos only, as usearch does)
UsearchDtype = Literal["f32", "f16", "bf16", "i8"]
USEARCH_DTYPES = get_args(UsearchDtype)
PROGRESS_FROM = 100_000  # items from which a build shows a progress bar (on a terminal)


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
             description="usearch HNSW graph index (dtype f32|f16|bf16|i8, connectivity, "
                         "expansion)",
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


def _params_hash(params: dict) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]


class ExactRetriever:
    """Brute-force search by :class:`ravlm_bench.api.ExactIndex`: matrix products propose,
    pair scores decide, so the results depend on the stored (key, vector) pairs and the query
    alone: not on insertion order, query batching or sharding."""

    name = "exact"

    def __init__(self, *, dim: int, metric: str = "cos", threads: int = 0):
        self.dim = int(dim)
        self.metric = _check_metric(metric, self.name)
        self.threads = int(threads)
        self._index = ExactIndex(np.zeros((0, self.dim), np.float32), self.metric)

    def build(self, vectors: np.ndarray, keys: np.ndarray) -> None:
        vectors, keys = check_build_inputs(vectors, keys, self.dim, self.name)
        self._index = ExactIndex(vectors, self.metric, keys)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        import torch

        queries = _check_queries(queries, self.dim, self.name)
        previous_threads = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            return self._index.search(queries, k)
        finally:
            torch.set_num_threads(previous_threads)

    def memory_bytes(self) -> int:
        return self._index.nbytes

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
        if dtype == "i8" and self.metric != "cos":
            raise ConfigError(f"retriever {self.name}: dtype 'i8' quantises unit vectors; "
                              f"use it with metric 'cos', not {self.metric!r}")
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
            show = len(keys) >= PROGRESS_FROM and sys.stderr.isatty()
            self._index.add(keys.astype(np.uint64), vectors, threads=self.build_threads,
                            log=f"{self.name}: indexing" if show else False)

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
        digest = _file_digest(tmp)
        os.replace(tmp, path)
        sidecar = dict(self.params(), usearch=usearch_version, count=len(self._index),
                       data=data_fingerprint, digest=digest)
        _sidecar(path).write_text(json.dumps(sidecar, sort_keys=True))

    def load(self, path: str | os.PathLike, data_fingerprint: str = "") -> bool:
        """Load a saved index if its parameters, usearch version, data and bytes (the digest
        saved with it) match; else False.

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
        if _file_digest(path) != saved.get("digest"):
            log.warning("index %s is damaged (its bytes do not match the digest saved with "
                        "it); rebuilding", path)
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


def _file_digest(path: Path) -> str:
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()
