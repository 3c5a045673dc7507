"""Built indexes kept on disk (``[run] cache_indexes = true``): a retriever that can save and
load its index (``build_or_load(path, vectors, keys, data_fingerprint) -> bool`` and
``params() -> dict``, as ``usearch-hnsw`` has) is loaded from the cache when the same
parameters were built on the same vectors and keys, else built and saved.

The file is named by a digest of the vectors and keys and of the retriever's build
parameters; the retriever checks what it loads against its sidecar (parameters, library
version, data digest, item count, the file's own digest) and rebuilds what does not match,
so a stale or damaged file is named in the log and replaced, never searched.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ravlm_bench.foundation import paths

log = logging.getLogger(__name__)

Build = Callable[[np.ndarray, np.ndarray], None]


def data_digest(vectors: np.ndarray, keys: np.ndarray) -> str:
    """A digest of what an index holds: the vectors' shape and bytes, and the keys. The
    arrays are hashed in place (their buffers), not copied: at a million items a copy of the
    vectors is a gigabyte."""
    digest = hashlib.blake2b(digest_size=16)
    vectors = np.ascontiguousarray(vectors, np.float32)
    digest.update(repr(vectors.shape).encode())
    digest.update(vectors.reshape(-1).view(np.uint8).data)
    digest.update(np.ascontiguousarray(keys, np.int64).reshape(-1).view(np.uint8).data)
    return digest.hexdigest()


def cached_build(retriever, name: str, root: Path | None = None) -> Build | None:
    """``retriever``'s build through the index cache under ``root`` (default: the cache
    directory's ``indexes``); None when the retriever cannot save and load its index."""
    build_or_load = getattr(retriever, "build_or_load", None)
    params = getattr(retriever, "params", None)
    if build_or_load is None or params is None:
        return None

    def build(vectors: np.ndarray, keys: np.ndarray) -> None:
        data = data_digest(vectors, keys)
        settings = hashlib.sha256(json.dumps(params(), sort_keys=True).encode()).hexdigest()
        folder = root if root is not None else paths.cache_subdir("indexes")
        path = folder / f"{name}-{settings[:16]}-{data[:16]}.index"
        loaded = build_or_load(path, vectors, keys, data)
        log.info("index %s: %s %s (%d items)", name, "loaded" if loaded else "built and saved",
                 path, len(keys))

    return build
