"""The run's shared bootstrap resamples and the percentile interval drawn from them.

Resamples depend only on the resampled unit's name and count (and the run's resample seed),
never on the system or the seed of a cell, so every cell of a task is scored on the same
resamples: the leaderboard pairs systems and pools seeds resample by resample.

The unit is the data's cluster: test items that share an image (the captions of an image,
the questions about it) are not independent, so a resample draws images and each drawn
image brings all its items (:meth:`Resampler.weights`). Drawing items as if independent
makes intervals too narrow when items share images.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

__all__ = ["INTERVAL_METHODS", "N_RESAMPLES", "RESAMPLE_SEED", "Resampler",
           "bias_corrected_interval", "cluster_index", "interval", "percentile_interval"]

N_RESAMPLES = 1000
RESAMPLE_SEED = 0
# Bound the (resamples x units) index block materialised at once: ~32 MB of int64.
_BLOCK_CELLS = 4_000_000


class Resampler:
    """The shared bootstrap resamples of a run: ``n_resamples`` draws with replacement of
    each unit, from a stream seeded by (``seed``, unit name, unit count) alone."""

    def __init__(self, n_resamples: int = N_RESAMPLES, seed: int = RESAMPLE_SEED):
        self.n_resamples = int(n_resamples)
        self.seed = int(seed)

    def key(self, units: dict[str, int]) -> str:
        """What identifies the resamples of ``units``: cells pair only when keys match."""
        text = f"{self.seed}:{self.n_resamples}:" + ",".join(
            f"{name}={units[name]}" for name in sorted(units))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def blocks(self, units: dict[str, int]) -> Iterator[dict[str, np.ndarray]]:
        """Blocks of resamples: each a dict unit -> int64 ``(b, count)`` row indices, the
        same rows of every unit belonging to the same resamples, in order."""
        streams = {name: np.random.default_rng(
            [self.seed, int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "little"),
             int(n)]) for name, n in units.items()}
        widest = max([1, *units.values()])
        block = max(1, _BLOCK_CELLS // widest)
        for start in range(0, self.n_resamples, block):
            size = min(block, self.n_resamples - start)
            yield {name: streams[name].integers(0, max(n, 1), size=(size, n))
                   for name, n in units.items()}

    def cluster_counts(self, n_clusters: int, unit: str) -> Iterator[np.ndarray]:
        """Blocks of resamples of ``n_clusters`` clusters (the unit named ``unit``): float64
        ``(b, n_clusters)``, how often each cluster is drawn in each resample."""
        for block in self.blocks({unit: n_clusters}):
            drawn = block[unit]
            offsets = (np.arange(len(drawn), dtype=np.int64) * n_clusters)[:, None]
            counts = np.bincount((drawn + offsets).ravel(), minlength=len(drawn) * n_clusters)
            yield counts.reshape(len(drawn), n_clusters).astype(np.float64)

    def weights(self, clusters: npt.ArrayLike, unit: str = "image") -> Iterator[np.ndarray]:
        """Blocks of resamples as item weights, float64 ``(b, n)``: how often each item is
        drawn, when a resample draws the clusters (``unit``) with replacement and a drawn
        cluster brings all its items. ``clusters`` holds each item's cluster id (an image
        id, say); ids that are all distinct resample items (unit ``"item"``): then the
        weights are those of :meth:`blocks` ``({"item": n})``, resample by resample.
        """
        cluster_of, n_clusters = cluster_index(clusters)
        name = unit if n_clusters < len(cluster_of) else "item"
        rows = max(1, _BLOCK_CELLS // max(1, len(cluster_of)))
        for counts in self.cluster_counts(n_clusters, name):
            for start in range(0, len(counts), rows):  # bound the (b, n) weights too
                yield counts[start:start + rows][:, cluster_of]


def cluster_index(clusters: npt.ArrayLike) -> tuple[np.ndarray, int]:
    """Each item's cluster as a row number (clusters numbered in order of first appearance,
    so distinct ids number as the items do), and the number of clusters."""
    ids = np.asarray(clusters)
    if ids.ndim != 1:
        raise ValueError(f"cluster ids must be one per item, got shape {ids.shape}")
    _, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    rank = np.empty(len(first), np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return rank[inverse.ravel()], len(first)


def percentile_interval(values: np.ndarray) -> list[float] | None:
    """The 2.5th and 97.5th percentiles of the finite values; None if there are none."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if not len(values):
        return None
    lo, hi = np.percentile(values, [2.5, 97.5])
    return [float(lo), float(hi)]


def bias_corrected_interval(values: np.ndarray, point: float) -> list[float] | None:
    """The bias-corrected (BC) percentile interval of Efron: the percentiles
    Phi(2 z0 +- 1.96) of the finite values, z0 = Phi^-1(share of values below ``point``,
    ties counting half). Where the resamples sit off-centre from the estimate (a ratio of
    small counts, such as the F1 of rare classes in macro-F1), the plain percentile
    interval misses the truth on that side; BC moves both ends to compensate. None if
    there are no finite values; the percentile interval where ``point`` is undefined."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if not len(values):
        return None
    if point is None or not np.isfinite(point):
        return percentile_interval(values)
    below = (np.sum(values < point) + 0.5 * np.sum(values == point)) / len(values)
    normal = NormalDist()
    z0 = normal.inv_cdf(float(np.clip(below, 0.5 / len(values), 1 - 0.5 / len(values))))
    levels = [100 * normal.cdf(2 * z0 + normal.inv_cdf(q)) for q in (0.025, 0.975)]
    lo, hi = np.percentile(values, levels)
    return [float(lo), float(hi)]


# How a metric's 95% interval is drawn from its resamples (``Metric.interval``).
INTERVAL_METHODS = ("percentile", "bias-corrected")


def interval(values: np.ndarray, point: float | None, method: str = "percentile"
             ) -> list[float] | None:
    """The 95% interval of ``values`` (resamples of an estimate whose value is ``point``)
    by ``method``, one of :data:`INTERVAL_METHODS`."""
    if method == "bias-corrected":
        return bias_corrected_interval(values, point if point is not None else math.nan)
    if method != "percentile":
        raise ValueError(f"interval method {method!r}: expected one of {INTERVAL_METHODS}")
    return percentile_interval(values)
