"""Evaluation-time corruption of what the test queries retrieved: how much a system uses its
retrieval, measured without retraining.

At level ``p`` a fraction ``p`` of each query's ``k`` neighbour slots holds a random
knowledge-base item instead of what the retriever found: ``p * k`` slots, rounded up or
down at random so that the expected share is ``p`` whatever ``k`` (with ``k = 3``,
``p = 0.25`` replaces one slot in three quarters of the queries). "none" leaves every slot
empty (padding, which every head must accept: a search may return fewer than ``k``). The draws
are seeded by the query item's key (:func:`~ravlm_bench.stages.retrieval.query_keys`), so
they do not depend on batching, sharding or the number of processes, and they are nested:
the slots replaced at one level are also replaced, by the same items, at every higher level.
A replacement item carries its real similarity to the query under the system's retrieval
key, and each query's slots are re-sorted best first, as a search returns them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import NamedTuple

import numpy as np

from ravlm_bench.plugin_host.contracts import FusionInputs
from ravlm_bench.scoring.dependence import NO_RETRIEVAL, level_name
from ravlm_bench.stages.retrieval import RetrievalKey, query_keys

CORRUPTION_SEED = 0x5EED_C0DE  # the draws' own stream, apart from training and resampling


class Draws(NamedTuple):
    """Each query's random draws (by its key): the order in which its slots are replaced
    (a permutation of ``0..k-1``, int64 ``(n, k)``), the random knowledge-base rows that
    replace them (int64 ``(n, k)``) and the uniform ``u`` in (0, 1] that rounds ``p * k``
    (float64 ``(n,)``)."""

    order: np.ndarray
    rows: np.ndarray
    rounding: np.ndarray

    def replaced(self, p: float) -> np.ndarray:
        """How many slots of each query level ``p`` replaces: ``floor(p k + 1 - u)``, which
        is ``p k`` rounded up with probability its fractional part, and never fewer at a
        higher level."""
        k = self.order.shape[1]
        return np.clip(np.floor(p * k + 1.0 - self.rounding), 0, k).astype(np.int64)


def corruption_draws(keys: np.ndarray, k: int, kb_size: int) -> Draws:
    """Each query's draws, from a generator seeded by its key alone."""
    n = len(keys)
    order = np.empty((n, k), np.int64)
    rows = np.empty((n, k), np.int64)
    rounding = np.empty(n, np.float64)
    for i, key in enumerate(np.asarray(keys, np.int64).tolist()):
        rng = np.random.default_rng((CORRUPTION_SEED, key & 0x7FFF_FFFF_FFFF_FFFF))
        order[i] = rng.permutation(k)
        rows[i] = rng.integers(0, kb_size, size=k)
        rounding[i] = 1.0 - rng.random()
    return Draws(order, rows, rounding)


def corrupted(inputs: FusionInputs, levels: Sequence[float], key: RetrievalKey
              ) -> dict[str, FusionInputs]:
    """The test queries' inputs at each corruption level, and with nothing retrieved
    (:data:`NO_RETRIEVAL`), by name (:func:`level_name`). ``inputs`` are the uncorrupted
    ones (``image_ids`` set: they key the draws)."""
    if inputs.image_ids is None:
        raise ValueError("corrupting retrieval needs the queries' image ids (their keys)")
    n, k = inputs.neighbours.shape
    kb = inputs.knowledge
    draws = corruption_draws(query_keys(inputs.image_ids), k, len(kb))
    random_rows = draws.rows
    queries = key.vectors(inputs.image, inputs.text)
    wanted = np.unique(random_rows)
    item_vectors = key.vectors(np.asarray(kb.image)[wanted], np.asarray(kb.text)[wanted])
    position = np.searchsorted(wanted, random_rows)
    # float64 products summed along the vector: a query's scores do not depend on its batch
    random_scores = (queries[:, None, :].astype(np.float64)
                     * item_vectors[position].astype(np.float64)).sum(axis=2).astype(np.float32)
    out: dict[str, FusionInputs] = {}
    for p in levels:
        # the first m of a query's slots in its replacement order
        rank_in_order = np.argsort(draws.order, axis=1)
        replace_slot = rank_in_order < draws.replaced(p)[:, None]
        rows = np.where(replace_slot, random_rows, inputs.neighbours)
        scores = np.where(replace_slot, random_scores, inputs.neighbour_scores)
        out[level_name(p)] = _best_first(inputs, rows, scores)
    out[NO_RETRIEVAL] = replace(inputs, neighbours=np.full((n, k), -1, np.int64),
                                neighbour_scores=np.zeros((n, k), np.float32))
    return out


def _best_first(inputs: FusionInputs, rows: np.ndarray, scores: np.ndarray) -> FusionInputs:
    """``inputs`` with neighbours ``rows`` sorted by score, best first, padding last (a
    stable sort: equal scores keep their slot order)."""
    rank = np.where(rows >= 0, -scores.astype(np.float64), np.inf)
    order = np.argsort(rank, axis=1, kind="stable")
    return replace(inputs, neighbours=np.take_along_axis(rows, order, axis=1),
                   neighbour_scores=np.take_along_axis(scores, order, axis=1)
                   .astype(np.float32))


def stacked(variants: dict[str, FusionInputs]) -> tuple[FusionInputs, dict[str, slice]]:
    """The variants' queries one after another, for a single prediction call, and each
    variant's rows in it."""
    parts = list(variants.values())
    first = parts[0]
    spans, start = {}, 0
    for name, part in variants.items():
        spans[name] = slice(start, start + len(part))
        start += len(part)

    def joined(field: str):
        values = [getattr(p, field) for p in parts]
        if values[0] is None:
            return None
        if isinstance(values[0], list):
            return [v for value in values for v in value]
        return np.concatenate(values)

    return replace(first, image=joined("image"), text=joined("text"),
                   neighbours=joined("neighbours"), neighbour_scores=joined("neighbour_scores"),
                   image_ids=joined("image_ids"), image_paths=joined("image_paths"),
                   texts=joined("texts"), labels=None), spans
