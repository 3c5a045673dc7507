"""Seed variance in the intervals: how a rerun with new seeds would vary.

The run's shared resamples (:mod:`ravlm_bench.scoring.resampling`) give the sampling error of
a seed-aggregated metric over test images, conditional on the seeds that ran. A rerun with
new seeds moves the number too: trained systems differ from seed to seed. So by default the
leaderboard and ``compare`` add to resample b of a seed-aggregated value (a system's metric,
or a paired difference) a draw of the seed mean's own error,

    sqrt(v / S) * T_b,

where ``v`` is the variance of a seed's shift (:func:`seed_effect_variance`: how much the S
per-seed values vary beyond the item-level noise the resamples already carry), ``T_b`` a
Student t with S - 1 degrees of freedom (the pivot of the mean of S normal seed effects,
whose variance is itself estimated from S values), scaled by sqrt(pi / 2) for a metric
aggregated by median (the median's asymptotic variance). The draws come from a stream seeded
by (resample seed, S, resample count) alone, so a reviewer recomputes them with this module.
Percentile intervals and tail p-values are then taken as before, on the widened resamples.

Nothing is added where the seeds vary no more than their item-level noise explains (a
deterministic system; two runs that trained alike) or where only one seed ran: one seed
cannot measure seed variance, and the tables say so. The conditional resamples stay
available (``--conditional``). ``benchmarks/bench_coverage.py`` measures the coverage and
the tests' error rates this gives.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from ravlm_bench.scoring.resampling import RESAMPLE_SEED

__all__ = ["seed_error_draws", "with_seed_variance"]


def seed_error_draws(n_seeds: int, n_resamples: int, seed: int = RESAMPLE_SEED) -> np.ndarray:
    """``n_resamples`` Student-t draws with ``n_seeds - 1`` degrees of freedom, the same for
    every system and task with that many seeds."""
    rng = np.random.default_rng([int(seed), 0x5EED, int(n_seeds), int(n_resamples)])
    return rng.standard_t(n_seeds - 1, size=n_resamples)


def with_seed_variance(pooled: np.ndarray, per_seed: npt.ArrayLike, seed_values: npt.ArrayLike,
                       aggregate: str = "mean") -> np.ndarray:
    """``pooled``, the resamples of a seed-aggregated value, widened by the seeds' variance
    (see the module docstring). ``per_seed``: each seed's resamples ``(S, B)``, in the
    order of ``seed_values``, the S per-seed point values. Unchanged with fewer than two
    seeds or when the seeds vary no more than their resamples explain."""
    values = np.asarray(seed_values, np.float64)
    resamples = np.asarray(per_seed, np.float64)
    usable = np.isfinite(values)
    values, resamples = values[usable], resamples[usable]
    n_seeds = len(values)
    if n_seeds < 2:
        return pooled
    variance = seed_effect_variance(values, resamples)
    if variance <= 0.0:
        return pooled
    scale = math.sqrt(variance / n_seeds)
    if aggregate == "median":
        scale *= math.sqrt(math.pi / 2)
    return pooled + scale * seed_error_draws(n_seeds, len(pooled))


def seed_effect_variance(values: np.ndarray, resamples: np.ndarray) -> float:
    """The variance of a seed's shift, beyond the item-level noise the resamples carry.

    The S per-seed values on one test set vary by the seed's shift and by the seed's own
    item-level noise; the latter is in the resamples already (a resample of the seed mean
    averages it over seeds). Its per-seed size is estimated from how much averaging the
    seeds narrows the resamples: (mean single-seed variance - variance of the seed mean)
    * S / (S - 1); what the values vary beyond it is the shift's variance (never below 0).
    """
    n_seeds = len(values)
    between = float(values.var(ddof=1))
    with np.errstate(invalid="ignore"):
        single = float(np.nanmean(np.nanvar(resamples, axis=1)))
        of_mean = float(np.nanvar(np.nanmean(resamples, axis=0)))
    item_noise = (single - of_mean) * n_seeds / (n_seeds - 1)
    if not np.isfinite(item_noise):
        item_noise = 0.0
    return max(0.0, between - max(0.0, item_noise))
