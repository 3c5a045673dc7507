"""Timing and the baseline rate shared by the benchmark scripts (`python benchmarks/NAME.py`)."""

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


def matmul_rate(dtype=None, size: int = 2048, seconds: float = 2.0) -> float:
    """Sustained FLOP/s of a square torch matrix product on all of torch's threads: the
    baseline the encoder and retriever benchmarks report their ratios against."""
    import torch

    dtype = dtype or torch.float32
    a = torch.randn(size, size).to(dtype)
    b = torch.randn(size, size).to(dtype)
    torch.mm(a, b)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        torch.mm(a, b)
        count += 1
    return 2 * size**3 * count / (time.perf_counter() - start)


def square_matmuls(flops: float, dtype=None, size: int = 2048):
    """A baseline job of about ``flops`` FLOPs of square matrix products, to time interleaved
    with the job it is the baseline for (same length, same spells of load): returns the
    job and the FLOPs it does."""
    import torch

    count = max(1, round(flops / (2 * size**3)))
    a = torch.ones(size, size, dtype=dtype or torch.float32)

    def job() -> None:
        for _ in range(count):
            torch.mm(a, a)

    return job, 2.0 * size**3 * count
