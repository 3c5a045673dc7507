"""Feature cache: reading cached features against computing them, measured in one run.

    python benchmarks/bench_feature_cache.py          # ~1 minute
    python benchmarks/bench_feature_cache.py --full   # more images, a 1M x 384 array

Target (issue 4): reading cached features is at least 50x faster than computing them.
Reads include the sha256 verification and touching every value (a memory-mapped array that
is never read would cost nothing and prove nothing).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from tabulate import tabulate

from ravlm_bench.plugin_host.host import get_plugin_manager
from ravlm_bench.plugin_host.registry import Registry
from ravlm_bench.stages.encoding import encode_images
from ravlm_bench.store.feature_cache import FeatureCache


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def touch(array: np.ndarray) -> float:
    return float(np.asarray(array, dtype=np.float64).sum())


def bench_images(cache: FeatureCache, registry, n: int, folder: Path) -> list[list]:
    from bench_encoders import write_jpegs

    paths = write_jpegs(folder, n)
    rows = []
    for name in ("resnet18", "resnet50"):
        encoder = registry.create("image-encoders", name)

        def compute(enc=encoder):
            return encode_images(enc, paths, progress=False)

        fingerprint = encoder.fingerprint()
        _, compute_s = timed(lambda c=compute, f=fingerprint:
                             cache.get_or_compute(f, "bench-jpegs", "all", c))
        cached, read_s = timed(lambda c=compute, f=fingerprint:
                               touch(cache.get_or_compute(f, "bench-jpegs", "all", c)))
        rows.append([f"{name} features, {n} JPEGs", f"{compute_s:.2f} s (encode + write)",
                     f"{read_s * 1e3:.2f} ms", f"{compute_s / read_s:,.0f}x"])
    return rows


def bench_texts(cache: FeatureCache, registry, n: int) -> list[list]:
    encoder = registry.create("text-encoders", "minilm-l6")
    texts = [f"a photo of {i % 7} red circles next to a blue square number {i}"
             for i in range(n)]

    def compute():
        return encoder.encode(texts)

    _, compute_s = timed(lambda: cache.get_or_compute(encoder.fingerprint(), "bench", "t",
                                                      compute))
    _, read_s = timed(lambda: touch(cache.get_or_compute(encoder.fingerprint(), "bench", "t",
                                                         compute)))
    return [[f"minilm-l6 features, {n} sentences", f"{compute_s:.2f} s (encode + write)",
             f"{read_s * 1e3:.2f} ms", f"{compute_s / read_s:,.0f}x"]]


def bench_large(cache: FeatureCache, rows_: int, dim: int) -> list[list]:
    array = np.random.default_rng(0).normal(size=(rows_, dim)).astype(np.float32)
    _, write_s = timed(lambda: cache.get_or_compute("large", "bench", "x", lambda: array))
    _, read_s = timed(lambda: touch(cache.get_or_compute("large", "bench", "x", None)))
    mib = array.nbytes / 2**20
    return [[f"{rows_:,} x {dim} float32 ({mib:.0f} MiB)", f"write {mib / write_s:.0f} MiB/s",
             f"read+verify {mib / read_s:.0f} MiB/s", ""]]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    sys.path.insert(0, str(Path(__file__).parent))

    registry = Registry(get_plugin_manager())
    with tempfile.TemporaryDirectory() as tmp:
        cache = FeatureCache(Path(tmp) / "features")
        jpegs = Path(tmp) / "jpegs"
        jpegs.mkdir()
        rows = bench_images(cache, registry, 128 if args.full else 32, jpegs)
        rows += bench_texts(cache, registry, 4096 if args.full else 1024)
        rows += bench_large(cache, 1_000_000 if args.full else 200_000, 384)
    print(tabulate(rows, headers=["what", "compute", "cached read", "speed-up"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
