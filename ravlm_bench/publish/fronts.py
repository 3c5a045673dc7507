"""Quality against cost: the points, Pareto fronts and sweep series the publishers draw.

For a task of a :class:`~ravlm_bench.publish.leaderboard.Leaderboard`, every system with a finite
main metric and a finite cost becomes a :class:`FrontPoint` on each cost axis in
:data:`COST_AXES`. A point is on the Pareto front of its axis when no other point is at
least as good on both quality and cost and strictly better on one; points that tie exactly
dominate neither each other, so all of them are on the front (the same answer in every
order). Systems expanded from one sweep (run.json records ``"sweep": {"base": ...,
"values": {...}}``) form a :class:`SweepSeries`, ordered by their swept values, which the
charts join with a line.

Pure data (no plotting): :func:`front_chart` gathers what a chart of one task against one
cost axis draws (the points, the front as a staircase, the sweeps, the scale) into a
:class:`FrontChart`, from which both the PNG/SVG charts and the HTML page draw.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ravlm_bench.publish.leaderboard import COLUMN_BETTER, Leaderboard


@dataclass(frozen=True)
class CostAxis:
    column: str            # the column of the leaderboard table
    label: str             # what the chart's axis says
    higher_is_better: bool
    log_candidate: bool    # drawn on a log scale when its values span more than 10x


COST_AXES = tuple(
    CostAxis(column, label, COLUMN_BETTER[column] == "higher", log_candidate)
    for column, label, log_candidate in (
        ("retrieval_qps", "retrieval queries / s", True),
        ("latency_p99_ms", "latency p99 (ms)", False),
        ("index_memory_bytes", "index memory (bytes)", True)))
AXES_BY_COLUMN = {axis.column: axis for axis in COST_AXES}


@dataclass(frozen=True)
class FrontPoint:
    system: str
    quality: float       # the main metric's mean over seeds
    quality_lo: float    # its 95% interval (NaN where the task has none)
    quality_hi: float
    cost: float
    on_front: bool
    sweep_base: str | None = None                   # the system a sweep expanded from
    sweep_values: tuple[tuple[str, object], ...] = ()  # its swept parameters and values

    @property
    def sweep_value(self) -> str:
        """``32``: the swept values alone, for a label beside the point."""
        return ", ".join(str(value) for _, value in self.sweep_values)

    @property
    def sweep_label(self) -> str:
        """``expansion_search=32``: the swept values without their component prefix."""
        return ", ".join(f"{name.rsplit('.', 1)[-1]}={value}"
                         for name, value in self.sweep_values)


@dataclass(frozen=True)
class SweepSeries:
    base: str
    points: tuple[FrontPoint, ...]  # ordered by the swept values

    @property
    def swept(self) -> str:
        """``expansion_search, k``: the swept parameters without their component prefix."""
        return ", ".join(name.rsplit(".", 1)[-1] for name, _ in self.points[0].sweep_values)


@dataclass(frozen=True)
class FrontChart:
    """What a chart of ``task``'s main metric against one cost axis draws."""

    task: str
    metric: str                          # the task's main metric, the vertical axis
    axis: CostAxis
    points: tuple[FrontPoint, ...]       # cheapest first
    front: tuple[FrontPoint, ...]        # the points on the Pareto front, cheapest first
    sweeps: tuple[SweepSeries, ...]
    log_scale: bool                      # the cost axis on a log scale

    @property
    def dominated(self) -> tuple[FrontPoint, ...]:
        return tuple(p for p in self.points if not p.on_front)

    def front_steps(self) -> list[tuple[float, float]]:
        """The front as a staircase of ``(cost, quality)`` corners: from each front point
        along the cost axis at its quality to the next one's cost, then up or down to that
        one's quality (what matplotlib's ``step(where="post")`` draws)."""
        if not self.front:
            return []
        corners = [(self.front[0].cost, self.front[0].quality)]
        for before, point in zip(self.front, self.front[1:], strict=False):
            corners += [(point.cost, before.quality), (point.cost, point.quality)]
        return corners


def _finite(value) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def pareto_flags(points: list[tuple[float, float]], *, quality_higher: bool = True,
                 cost_higher: bool = False) -> list[bool]:
    """For each ``(quality, cost)`` point, whether it is on the Pareto front.

    A point is dominated when another is at least as good on both and strictly better on
    one; exact ties dominate neither, so tied points share the front.
    """
    def better_or_equal(a: float, b: float, higher: bool) -> bool:
        return a >= b if higher else a <= b

    flags = []
    for i, (q, c) in enumerate(points):
        dominated = False
        for j, (q2, c2) in enumerate(points):
            if i == j:
                continue
            if (better_or_equal(q2, q, quality_higher) and better_or_equal(c2, c, cost_higher)
                    and (q2 != q or c2 != c)):
                dominated = True
                break
        flags.append(not dominated)
    return flags


def _sweep_of(system: dict) -> tuple[str | None, tuple[tuple[str, object], ...]]:
    sweep = system.get("sweep") if isinstance(system, dict) else None
    if not isinstance(sweep, dict) or not isinstance(sweep.get("base"), str):
        return None, ()
    values = sweep.get("values")
    if not isinstance(values, dict):
        values = {}
    return sweep["base"], tuple(sorted(values.items()))


def front_points(board: Leaderboard, task: str, axis: str) -> list[FrontPoint]:
    """The systems of ``task`` with a finite main metric and a finite ``axis`` cost, ordered
    from the cheapest to the dearest (then by name), each marked on or off the front."""
    cost_axis = AXES_BY_COLUMN[axis]
    main = board.main_metric(task)
    table = board.tables.get(task)
    if main is None or table is None or axis not in table.columns:
        return []
    higher = board.declarations(task)[main].higher_is_better
    rows = []
    for system, row in table.iterrows():
        quality, cost = row.get(main), row.get(axis)
        if not (_finite(quality) and _finite(cost)):
            continue
        lo, hi = row.get(f"{main}_ci95_lo", math.nan), row.get(f"{main}_ci95_hi", math.nan)
        rows.append((str(system), float(quality), float(lo) if _finite(lo) else math.nan,
                     float(hi) if _finite(hi) else math.nan, float(cost)))
    flags = pareto_flags([(q, c) for _, q, _, _, c in rows], quality_higher=higher,
                         cost_higher=cost_axis.higher_is_better)
    points = []
    for (system, quality, lo, hi, cost), on_front in zip(rows, flags, strict=True):
        base, values = _sweep_of(board.systems.get(system, {}))
        points.append(FrontPoint(system, quality, lo, hi, cost, on_front, base, values))
    # cheapest first: ascending cost where lower is better, descending where higher is
    sign = -1.0 if cost_axis.higher_is_better else 1.0
    return sorted(points, key=lambda p: (sign * p.cost, p.system))


def _value_key(value) -> tuple:
    # numbers by value before anything else, which sorts by its text
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, float(value), "")
    return (1, 0.0, str(value))


def sweep_series(points: list[FrontPoint]) -> list[SweepSeries]:
    """The points of each sweep (two or more variants present), ordered by swept values."""
    groups: dict[str, list[FrontPoint]] = {}
    for point in points:
        if point.sweep_base is not None:
            groups.setdefault(point.sweep_base, []).append(point)
    return [SweepSeries(base, tuple(sorted(
                members, key=lambda p: ([(n, _value_key(v)) for n, v in p.sweep_values],
                                        p.system))))
            for base, members in sorted(groups.items()) if len(members) > 1]


def front_line(points: list[FrontPoint]) -> list[FrontPoint]:
    """The front's points in cost order (cheapest first), for drawing it as a line."""
    return [p for p in points if p.on_front]


def front_chart(board: Leaderboard, task: str, axis: str) -> FrontChart | None:
    """``task``'s chart against cost column ``axis``, or None when no system has a point
    on it."""
    points = front_points(board, task, axis)
    if not points:
        return None
    return FrontChart(task, str(board.main_metric(task)), AXES_BY_COLUMN[axis], tuple(points),
                      tuple(front_line(points)), tuple(sweep_series(points)),
                      uses_log_scale(axis, [p.cost for p in points]))


def tasks_with_costs(board: Leaderboard) -> list[str]:
    """The tasks with a point on at least one cost axis (the rest have no retrieval)."""
    return [task for task in board.tasks
            if any(front_points(board, task, axis.column) for axis in COST_AXES)]


def uses_log_scale(axis: str, costs: list[float]) -> bool:
    """Whether a cost axis should be drawn on a log scale: it allows one and its (all
    positive) costs span more than a factor of ten."""
    positive = [c for c in costs if c > 0]
    return (AXES_BY_COLUMN[axis].log_candidate and len(positive) == len(costs)
            and len(positive) > 1 and max(positive) / min(positive) > 10)
