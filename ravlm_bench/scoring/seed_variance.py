"""Seed variance in the intervals: how a rerun with new seeds would vary.

The run's shared resamples (:mod:`ravlm_bench.scoring.resampling`) give the sampling error of
a seed-aggregated metric over test images, conditional on the seeds that ran. A rerun with
new seeds moves the number too: trained systems differ from seed to seed. So by default the
leaderboard and ``compare`` widen resample b of a seed-aggregated value (a system's metric,
or a paired difference) by a draw of the seed mean's own error,

    centre + a * (pooled_b - centre) + sqrt(v / S) * T_b,

``T_b`` a Student t with S - 1 degrees of freedom (the pivot of the mean of S normal seed
effects, whose variance is itself estimated from the S values), scaled by sqrt(pi / 2) for a
metric aggregated by median (the median's asymptotic variance). ``a`` and ``v`` come from
the variance components (:class:`SeedParts`): where the test set is the larger part of the
variance (a system's own interval) ``a = 1`` and ``v`` is what the seeds vary beyond the
item-level noise the resamples already carry; where the seeds are (a paired difference,
whose test-set part cancels) the resamples keep only their common part and ``v`` is the
seeds' whole spread. The draws come from a stream seeded by (resample seed, S, resample
count) alone, so a reviewer recomputes them with this module. Percentile intervals and tail
p-values are then taken as before, on the widened resamples.

Nothing changes where the seeds agree (a deterministic system; two runs that trained alike)
or where only one seed ran: one seed cannot measure seed variance, and the tables say so.
The conditional resamples stay available (``--conditional``).
``benchmarks/bench_coverage.py`` measures the coverage and the tests' error rates this gives.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ravlm_bench.scoring.resampling import RESAMPLE_SEED

__all__ = ["SeedParts", "seed_error_draws", "with_seed_variance"]


def with_seed_variance(pooled: np.ndarray, per_seed: npt.ArrayLike, seed_values: npt.ArrayLike,
                       aggregate: str = "mean") -> np.ndarray:
    """``pooled``, the resamples of a seed-aggregated value, widened by the seeds' variance
    (see the module docstring). ``per_seed``: each seed's resamples ``(S, B)``, in the
    order of ``seed_values``, the S per-seed point values. Unchanged with fewer than two
    seeds or when the seeds agree."""
    values = np.asarray(seed_values, np.float64)
    resamples = np.asarray(per_seed, np.float64)
    usable = np.isfinite(values)
    values, resamples = values[usable], resamples[usable]
    n_seeds = len(values)
    if n_seeds < 2:
        return pooled
    between = float(values.var(ddof=1))
    if between <= 0.0:
        return pooled
    parts = SeedParts.of(pooled, resamples, between)
    shrink, added = parts.plan(n_seeds)
    scale = math.sqrt(added / n_seeds)
    if aggregate == "median":
        scale *= math.sqrt(math.pi / 2)
    centre = float(np.nanmean(pooled))
    return (centre + shrink * (pooled - centre)
            + scale * seed_error_draws(n_seeds, len(pooled)))


@dataclass(frozen=True)
class SeedParts:
    """The variance components of a seed mean's resamples.

    A resample of the seed mean varies by the test set (``common`` to every seed) and by
    each seed's ``own`` item-level noise, averaged over the seeds; the S per-seed values
    vary (``between``, S - 1 degrees of freedom) by that own noise and by the seeds'
    shifts. Averaging the seeds reveals the own noise per seed: ``own = (mean single-seed
    variance - variance of the seed mean) * S / (S - 1)``, from the resamples (thousands of
    them: well known); ``common`` is the seed mean's variance less ``own / S``.
    """

    pooled: float
    common: float
    own: float
    between: float

    @classmethod
    def of(cls, pooled: np.ndarray, resamples: np.ndarray, between: float) -> SeedParts:
        n_seeds = len(resamples)
        with np.errstate(invalid="ignore"):
            of_mean = float(np.nanvar(pooled))
            single = float(np.nanmean(np.nanvar(resamples, axis=1)))
        if not (np.isfinite(of_mean) and np.isfinite(single)) or of_mean <= 0.0:
            return cls(max(of_mean, 0.0) if np.isfinite(of_mean) else 0.0, 0.0, 0.0, between)
        own = max(0.0, single - of_mean) * n_seeds / (n_seeds - 1)
        return cls(of_mean, max(0.0, of_mean - own / n_seeds), own, between)

    def plan(self, n_seeds: int) -> tuple[float, float]:
        """(factor on the pooled resamples' deviations, variance per seed of the t term).

        Where the test set is the larger part (a system's own interval), the resamples are
        kept whole, own noise included, and the t carries only what the seeds vary beyond
        their own noise: the shifts, estimated from S values. Where the seeds are the larger
        part (a paired difference: the test set cancels between systems), the resamples
        keep only their common part and the t carries the seeds' whole spread: the exact t
        interval of S per-seed differences when nothing is common."""
        if self.common >= self.between / n_seeds:
            return 1.0, max(0.0, self.between - self.own)
        share = math.sqrt(self.common / self.pooled) if self.pooled > 0 else 0.0
        return share, self.between


def seed_error_draws(n_seeds: int, n_resamples: int, seed: int = RESAMPLE_SEED) -> np.ndarray:
    """``n_resamples`` Student-t draws with ``n_seeds - 1`` degrees of freedom, from a stream
    seeded by (``seed``, ``n_seeds``, ``n_resamples``) alone: the same for every system."""
    rng = np.random.default_rng([int(seed), 0x5EED, int(n_seeds), int(n_resamples)])
    return rng.standard_t(n_seeds - 1, size=n_resamples)
