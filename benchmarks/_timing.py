"""Timing shared by the benchmark scripts (run as `python benchmarks/NAME.py`)."""

from __future__ import annotations

import time


def best_of(fns, repeats: int = 3) -> list[float]:
    """Interleaved best-of-N seconds for each function: noise on a shared machine only
    ever adds time, and interleaving keeps a slow spell from hitting one side alone."""
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - start)
    return best
