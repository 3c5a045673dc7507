"""The intervals cover and the paired tests hold their level, by simulation
(``benchmarks/bench_coverage.py``, with the harness's own scoring and pooling functions).

The simulated world: test sets of 200 images with five items each that share the image's
label and difficulty, three seeds per system, each shifting its skill. The default tests
run few simulations (Monte Carlo standard error about 0.02), enough to tell clustered from
item-wise resampling (about 0.7 coverage here); the benchmark runs 1,000.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_coverage.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_coverage", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_coverage"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_intervals_resampling_images_with_seed_variance_cover(bench):
    covered = bench.coverage(bench.World(), 120, n_resamples=500)
    assert set(covered) == {*bench.CLASSIFICATION, *bench.RECALL}
    for name, share in covered.items():
        assert 0.89 <= share <= 0.995, (name, share)


def test_intervals_resampling_items_undercover_clustered_data(bench):
    """The baseline the benchmark compares with: the harness before clustering."""
    covered = bench.coverage(bench.World(), 60, n_resamples=500, clustered=False,
                             seed_variance=False)
    for name in ("accuracy", "weighted_f1", "t2i_R@1", "mean_recall"):
        assert covered[name] < 0.85, (name, covered[name])


@pytest.mark.slow
def test_paired_tests_hold_their_level_with_seed_effects(bench):
    world = bench.World(seed_sd=0.15)  # a seed effect about as large as the item noise
    rates = bench.false_positives(world, 300, n_resamples=500)
    assert rates["paired test, one system"] <= 0.08, rates
    assert rates["Holm over 5 systems"] <= 0.08, rates
