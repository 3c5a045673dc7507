"""The feature stage: a task's image and text features, encoded once per encoder (each
distinct item once) and kept in the on-disk cache (:mod:`ravlm_bench.store.feature_cache`)
keyed by the encoder's fingerprint and a hash of the dataset and the exact items; under
torchrun every rank encodes a shard of a cache miss and rank 0 writes the assembled rows.
"""

from __future__ import annotations

import functools
import hashlib
import sys

import numpy as np

from ravlm_bench.foundation.distributed import (
    SINGLE,
    DistContext,
    all_gather_rows,
    broadcast_object,
    shard_bounds,
)
from ravlm_bench.plugin_host.contracts import validate_vectors
from ravlm_bench.stages.components import Component, guard


class FeatureStore:
    """Encoded features of one task's splits, computed once per encoder and kept for the run.

    Features go through the on-disk cache keyed by the encoder's fingerprint and a hash of
    the dataset and the exact items, so a rerun (or another suite) never encodes twice.
    """

    def __init__(self, dataset_fingerprint: str, cache, progress: bool = True,
                 dist: DistContext = SINGLE, max_image_pixels: int | None = None):
        self.dataset_fingerprint = dataset_fingerprint
        # the dataset's image-size limit (None: the harness's default); it changes what is
        # refused, never a feature, so it is not part of the cache key
        self.max_image_pixels = max_image_pixels
        self.cache = cache
        # bars only on a terminal: logs of batch jobs stay readable
        self.progress = progress and dist.is_main and sys.stderr.isatty()
        self.dist = dist
        self._memo: dict[tuple, np.ndarray] = {}

    def images(self, encoder: Component, split: str, paths: list[str]) -> np.ndarray:
        from ravlm_bench.stages.encoding import IMAGE_BATCH, encode_images

        encode = (encode_images if self.max_image_pixels is None
                  else functools.partial(encode_images, max_pixels=self.max_image_pixels))
        return self._encode(encoder, f"{split}/images", paths, encode, IMAGE_BATCH)

    def texts(self, encoder: Component, split: str, texts: list[str]) -> np.ndarray:
        from ravlm_bench.stages.encoding import TEXT_BATCH, encode_texts

        return self._encode(encoder, f"{split}/texts", texts, encode_texts, TEXT_BATCH)

    def _encode(self, encoder: Component, split: str, items: list[str], encode,
                block: int) -> np.ndarray:
        def compute(part: list[str]):
            with guard(encoder, "encode"):
                return encode(encoder.obj, part, progress=self.progress)

        # items repeat images and texts (several captions, questions or pairs per image):
        # each distinct one is encoded once, then its row is repeated
        unique, rows = _unique(items)
        return self._get(encoder, split, unique, compute, block)[rows]

    def _get(self, encoder: Component, split: str, items: list[str], compute,
             block: int) -> np.ndarray:
        items_hash = hashlib.sha256("\n".join(items).encode()).hexdigest()[:16]
        key = (encoder.name, encoder.fingerprint() or id(encoder.obj), split, items_hash)
        if key not in self._memo:
            fingerprint = encoder.fingerprint()
            dataset_key = f"{self.dataset_fingerprint}-{items_hash}"
            if self.dist.enabled:
                array = self._get_sharded(fingerprint, dataset_key, split, items, compute,
                                          encoder.obj.dim, block)
            else:
                array = self.cache.get_or_compute(fingerprint, dataset_key, split,
                                                  lambda: compute(items))
            with guard(encoder, "encode"):
                validate_vectors(array, len(items), encoder.obj.dim)
            self._memo[key] = array
        return self._memo[key]

    def _get_sharded(self, fingerprint, dataset_key, split, items, compute,
                     dim: int, block: int) -> np.ndarray:
        """Rank 0 reads the cache; on a miss every rank encodes its shard and rank 0 stores
        the assembled features, so nothing is encoded twice and only rank 0 writes.

        A shard is a run of whole encoding batches (``block`` items, the batch the encode
        function forms), encoded at one process's thread count, so every item is encoded
        beside the very items, padded to the very length, in the very arithmetic that one
        process gives it: a feature depends on its batch and on the thread count in the last
        bits, and heads trained for many epochs grow those bits into other models."""
        ctx = self.dist
        cached = None
        if ctx.is_main and fingerprint is not None:
            try:
                cached = self.cache.get_or_compute(fingerprint, dataset_key, split, _miss)
            except _CacheMiss:
                cached = None
        if broadcast_object(ctx, cached is not None):
            # a hit: rank 0 holds every row, the other ranks contribute none
            mine = cached.shape[1] if ctx.is_main and cached is not None else None
            width = broadcast_object(ctx, mine)
            local = cached if ctx.is_main else np.empty((0, width), np.float32)
        else:
            from ravlm_bench.stages.encoding import one_process_threads

            shard = items[block_shard(len(items), block, ctx.rank, ctx.world_size)]
            with one_process_threads():
                local = compute(shard) if shard else np.empty((0, dim), np.float32)
        array = all_gather_rows(ctx, np.asarray(local, dtype=np.float32))
        if ctx.is_main and cached is None and fingerprint is not None:
            self.cache.get_or_compute(fingerprint, dataset_key, split, lambda: array)
        return array


def block_shard(n: int, block: int, rank: int, world_size: int) -> slice:
    """Rank ``rank``'s contiguous share of ``n`` items in whole blocks of ``block`` (the
    last block may be short); ranks differ by at most one block."""
    start, stop = shard_bounds(-(-n // block), rank, world_size)
    return slice(min(start * block, n), min(stop * block, n))


def _unique(items: list[str]) -> tuple[list[str], np.ndarray]:
    """Distinct items in first-seen order, and each item's row among them."""
    first: dict[str, int] = {}
    rows = np.fromiter((first.setdefault(item, len(first)) for item in items), np.int64,
                       count=len(items))
    return list(first), rows


class _CacheMiss(Exception):
    pass


def _miss():
    raise _CacheMiss
