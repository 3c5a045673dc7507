"""The run's shared bootstrap resamples and the percentile interval drawn from them.

Resamples depend only on the resampled unit's name and count (and the run's resample seed),
never on the system or the seed of a cell, so every cell of a task is scored on the same
resamples: the leaderboard pairs systems and pools seeds resample by resample.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import numpy as np

__all__ = ["N_RESAMPLES", "RESAMPLE_SEED", "Resampler", "percentile_interval"]

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


def percentile_interval(values: np.ndarray) -> list[float] | None:
    """The 2.5th and 97.5th percentiles of the finite values; None if there are none."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if not len(values):
        return None
    lo, hi = np.percentile(values, [2.5, 97.5])
    return [float(lo), float(hi)]
