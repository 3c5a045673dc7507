"""Quality-against-cost fronts: the Pareto logic, and the points read from a leaderboard."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from ravlm_bench.publish.fronts import (
    front_points,
    pareto_flags,
    sweep_series,
    tasks_with_costs,
    uses_log_scale,
)
from ravlm_bench.publish.leaderboard import Leaderboard
from ravlm_bench.scoring.evaluation import Metric


def test_a_single_point_is_the_front():
    assert pareto_flags([(0.5, 10.0)]) == [True]
    assert pareto_flags([]) == []


def test_a_dominated_point_is_off_the_front():
    # quality higher is better, cost lower is better
    points = [(0.8, 10.0), (0.7, 12.0), (0.9, 30.0), (0.6, 5.0)]
    assert pareto_flags(points) == [True, False, True, True]


def test_ties_are_deterministic():
    # an exact tie dominates neither copy; equal quality at a higher cost is dominated
    points = [(0.8, 10.0), (0.8, 10.0), (0.8, 11.0), (0.9, 20.0)]
    assert pareto_flags(points) == [True, True, False, True]
    assert pareto_flags(list(reversed(points))) == [True, False, True, True]
    # equal cost, lower quality: dominated
    assert pareto_flags([(0.5, 1.0), (0.6, 1.0)]) == [False, True]


def test_directions_follow_the_axis_and_the_metric():
    points = [(0.5, 1000.0), (0.6, 500.0), (0.4, 2000.0)]  # cost = queries per second
    assert pareto_flags(points, cost_higher=True) == [True, True, True]
    assert pareto_flags(points, cost_higher=False) == [False, True, False]
    # a loss (lower is better) against latency
    assert pareto_flags([(0.2, 1.0), (0.1, 2.0), (0.3, 3.0)], quality_higher=False) == \
        [True, True, False]


def _board(rows: dict[str, dict], systems: dict[str, dict] | None = None) -> Leaderboard:
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "system"
    tasks = {"t": {"metrics": [Metric("acc", main=True).as_dict()], "main_metric": "acc",
                   "kind": "fusion-head / single-label"}}
    return Leaderboard(run_dir=Path("."), suite="s", suite_sha256="", baseline=None,
                       tasks=tasks, systems=systems or {name: {} for name in rows}, seeds=[0],
                       created="", cells=pd.DataFrame(), tables={"t": table})


def _row(acc, qps=math.nan, p99=math.nan, memory=math.nan, lo=math.nan, hi=math.nan):
    return {"acc": acc, "acc_ci95_lo": lo, "acc_ci95_hi": hi, "retrieval_qps": qps,
            "latency_p99_ms": p99, "index_memory_bytes": memory}


def test_points_need_a_finite_metric_and_cost_and_come_cheapest_first():
    board = _board({"none": _row(0.5), "failed": _row(math.nan, qps=100.0),
                    "fast": _row(0.6, qps=900.0, lo=0.55, hi=0.65),
                    "slow": _row(0.7, qps=100.0), "worse": _row(0.55, qps=500.0)})
    points = front_points(board, "t", "retrieval_qps")
    assert [p.system for p in points] == ["fast", "worse", "slow"]
    assert [p.on_front for p in points] == [True, False, True]
    assert (points[0].quality_lo, points[0].quality_hi) == (0.55, 0.65)
    assert math.isnan(points[2].quality_lo)
    assert front_points(board, "t", "latency_p99_ms") == []
    assert tasks_with_costs(board) == ["t"]
    assert tasks_with_costs(_board({"none": _row(0.5)})) == []


def test_sweeps_form_series_ordered_by_their_values():
    def swept(ef):
        return {"sweep": {"base": "hnsw", "values": {"retriever.expansion_search": ef}}}
    board = _board({"hnsw[expansion_search=128]": _row(0.8, p99=3.0),
                    "hnsw[expansion_search=16]": _row(0.6, p99=1.0),
                    "hnsw[expansion_search=32]": _row(0.7, p99=2.0),
                    "exact": _row(0.81, p99=9.0)},
                   systems={"hnsw[expansion_search=128]": swept(128),
                            "hnsw[expansion_search=16]": swept(16),
                            "hnsw[expansion_search=32]": swept(32), "exact": {}})
    points = front_points(board, "t", "latency_p99_ms")
    (series,) = sweep_series(points)
    assert series.base == "hnsw"
    assert [p.sweep_label for p in series.points] == ["expansion_search=16",
                                                      "expansion_search=32",
                                                      "expansion_search=128"]
    assert all(p.on_front for p in points)


@pytest.mark.parametrize("axis, costs, expected", [
    ("retrieval_qps", [10.0, 2000.0], True), ("retrieval_qps", [10.0, 50.0], False),
    ("latency_p99_ms", [0.1, 100.0], False), ("index_memory_bytes", [0.0, 1e6], False),
    ("index_memory_bytes", [1e3], False),
])
def test_log_scale_only_for_wide_positive_qps_and_memory(axis, costs, expected):
    assert uses_log_scale(axis, costs) is expected
