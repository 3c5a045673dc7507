"""Comparing two runs: did anything get worse from run A (before) to run B (after)?

For every (task, system) both runs hold, :func:`compare_runs` takes each compared metric
(the task's main metric, or with ``metrics="all"`` every bootstrapped one) over the seeds
both runs finished and reports A and B (seed means, as the leaderboard's paired test takes
them), their difference ``delta = B - A``, a 95% percentile interval of the delta and two
one-sided paired tests:

* regression: the null is "B is no worse than A"; p = (1 + #{resamples whose delta is in
  the better-or-equal direction}) / (1 + #resamples), so identical runs give p = 1;
* improvement: the mirror image (null "B is no better than A").

The resamples are the run's shared cluster bootstrap over test units (images, each with all
its test items): resample b draws the same test units in both runs, because the
resampler is seeded by (resample seed, unit name, unit count) alone, and each drawn unit
carries its rows from every paired seed, so resample b of a run is the mean over the paired
seeds of their values on resample b
(:func:`ravlm_bench.publish.leaderboard.cluster_replicates`). By default the resampled
deltas are widened by the variance of the per-seed deltas
(:mod:`ravlm_bench.scoring.seed_variance`), so a retrained model whose seeds simply landed
elsewhere is not a regression; ``--conditional`` tests conditionally on the seeds that ran.
The test therefore assumes both runs scored the same test items with the same bootstrap
settings. Where the cells show otherwise (different bootstrap settings or resample counts,
different test split sizes in run.json, different ``image_ids``, ``y_true`` or
``caption_image`` arrays where both cells hold them) the row is ``unpaired: <reason>``: its
point delta only, no test, never counted as a regression. Holm's adjustment runs over the
family of tested rows (every task, system and metric compared), once per direction, leaving
out rows that cannot add a test: a row whose delta is 0 on every resample (an unchanged
system), and a metric whose resampled deltas repeat another's of the same task and system
(weighted recall and accuracy are one number by definition); such rows are reported with
the reason, the repeating one with its twin's adjusted p. A row is a regression (or an
improvement) when its Holm-adjusted p-value is below ``alpha``.

A system that finished in A and whose every cell failed in B is ``failed in B``, which
counts as a regression. The runs' cells and arrays are read checked
(:mod:`ravlm_bench.publish.run_reader`): a cell whose arrays are missing or do not match
their checksum stops the comparison with a one-line ``DataError`` naming the file.

Output: the terminal table (:func:`render_terminal`) always, and with ``--json PATH`` the
same rows as JSON (:meth:`Comparison.as_dict`). Exit status of ``ravlm-bench compare``: 0 no
significant regression, 1 at least one (or a system failed in B), 2 bad input (a missing
run directory, a damaged cell, runs sharing no (task, system)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ravlm_bench.foundation.errors import ConfigError, DataError
from ravlm_bench.publish.display import format_number
from ravlm_bench.publish.leaderboard import (
    Leaderboard,
    cluster_replicates,
    holm,
    load_run,
    paired_resamples,
    tails,
)
from ravlm_bench.publish.run_reader import Replicates
from ravlm_bench.scoring.evaluation import Metric
from ravlm_bench.scoring.resampling import percentile_interval
from ravlm_bench.store.cell_files import read_arrays

REGRESSION, IMPROVEMENT, NO_CHANGE = "regression", "improvement", "no significant change"
UNPAIRED, MISSING_IN_A, MISSING_IN_B = "unpaired", "missing in A", "missing in B"
# finished in A, only failed cells in B: for CI as bad as a regression
FAILED_IN_B = "failed in B"
# Prediction arrays that name a cell's test items (a retrieval cell's images and which image
# each caption shows); equal where both cells hold them.
TEST_ITEM_ARRAYS = ("image_ids", "y_true", "caption_image")


@dataclass
class Change:
    """One row: a metric of a (task, system) from A to B. ``reason`` says why an
    ``unpaired`` row has no test; p-values are NaN for rows without one."""

    task: str
    system: str
    metric: str
    verdict: str
    higher_is_better: bool = True
    a: float = math.nan
    b: float = math.nan
    delta: float = math.nan
    delta_ci95: tuple[float, float] | None = None
    p_regression: float = math.nan
    p_regression_holm: float = math.nan
    p_improvement: float = math.nan
    p_improvement_holm: float = math.nan
    paired_seeds: list[int] = field(default_factory=list)
    n_resamples: int = 0
    reason: str = ""
    # why a tested row is outside Holm's family ("" inside it): see compare_runs
    not_counted: str = ""
    deltas: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def tested(self) -> bool:
        return not math.isnan(self.p_regression)

    def as_dict(self) -> dict:
        def number(value):
            return None if value is None or math.isnan(value) else float(value)

        return {"task": self.task, "system": self.system, "metric": self.metric,
                "verdict": self.verdict, "reason": self.reason or None,
                "higher_is_better": self.higher_is_better,
                "a": number(self.a), "b": number(self.b), "delta": number(self.delta),
                "delta_ci95": list(self.delta_ci95) if self.delta_ci95 else None,
                "p_regression": number(self.p_regression),
                "p_regression_holm": number(self.p_regression_holm),
                "p_improvement": number(self.p_improvement),
                "p_improvement_holm": number(self.p_improvement_holm),
                "paired_seeds": list(self.paired_seeds), "n_resamples": self.n_resamples,
                "not_counted": self.not_counted or None}


@dataclass
class Comparison:
    run_a: Leaderboard
    run_b: Leaderboard
    metrics: str
    alpha: float
    changes: list[Change]

    def having(self, verdict: str) -> list[Change]:
        return [c for c in self.changes if c.verdict == verdict]

    @property
    def n_tests(self) -> int:
        """The rows in Holm's family: tested, and counted (see compare_runs)."""
        return sum(c.tested and not c.not_counted for c in self.changes)

    @property
    def resolution_note(self) -> str:
        """Non-empty when no row can be significant: a bootstrap p-value is at least
        1/(1 + #resamples), and Holm multiplies the smallest by the number of tests."""
        resamples = max((c.n_resamples for c in self.changes if c.tested), default=0)
        if not resamples or self.n_tests / (1 + resamples) < self.alpha:
            return ""
        return (f"no row can be significant: with {resamples} resamples the smallest p is "
                f"1/{1 + resamples}, and Holm over {self.n_tests} tests needs one below "
                f"{self.alpha:g}/{self.n_tests}; compare fewer metrics or run more resamples")

    @property
    def exit_status(self) -> int:
        return 1 if self.having(REGRESSION) or self.having(FAILED_IN_B) else 0

    def as_dict(self) -> dict:
        def run(board: Leaderboard) -> dict:
            return {"path": str(board.run_dir), "suite": board.suite,
                    "suite_sha256": board.suite_sha256, "seeds": board.seeds}

        return {"run_a": run(self.run_a), "run_b": run(self.run_b),
                "metrics": self.metrics, "alpha": self.alpha, "n_tests": self.n_tests,
                "regressions": len(self.having(REGRESSION)),
                "failed_in_b": len(self.having(FAILED_IN_B)),
                "improvements": len(self.having(IMPROVEMENT)),
                "unpaired": len(self.having(UNPAIRED)), "exit_status": self.exit_status,
                "note": self.resolution_note or None,
                "rows": [c.as_dict() for c in self.changes]}


def compare_runs(run_a: str | Path, run_b: str | Path, *, metrics: str = "main",
                 alpha: float = 0.05, seed_variance: bool = True) -> Comparison:
    """Compare run B against run A (see the module docstring); ``seed_variance=False``
    tests conditionally on the seeds that ran. Raises :class:`DataError` for a bad run
    directory or runs that share no (task, system), :class:`ConfigError` for ``metrics``
    other than "main" or "all"."""
    if metrics not in ("main", "all"):
        raise ConfigError(f"metrics {metrics!r}: expected 'main' or 'all'")
    # the cells alone: the comparison reads the resamples it needs itself
    board_a, board_b = load_run(run_a, tables=False), load_run(run_b, tables=False)
    changes: list[Change] = []
    shared_any = False
    for task in list(board_a.tasks) + [t for t in board_b.tasks if t not in board_a.tasks]:
        systems_a, systems_b = _systems(board_a, task), _systems(board_b, task)
        pair = (_TaskPair(board_a, board_b, task, seed_variance) if systems_a and systems_b
                else None)
        for system in systems_a + [s for s in systems_b if s not in systems_a]:
            # pair is None only when one run lacks every system of the task
            if pair is None or system not in systems_b or system not in systems_a:
                board, verdict = (board_a, MISSING_IN_B) if system in systems_a \
                    else (board_b, MISSING_IN_A)
                changes.append(Change(task, system, board.main_metric(task) or "–", verdict))
                continue
            shared_any = True
            changes += [pair.change(system, metric) for metric in pair.metrics(metrics)]
    if not shared_any:
        raise DataError(f"{board_a.run_dir} (suite {board_a.suite!r}) and {board_b.run_dir} "
                        f"(suite {board_b.suite!r}) share no (task, system) to compare")
    twins = _holm_family(changes)
    family = {i: c for i, c in enumerate(changes) if c.tested and not c.not_counted}
    regression_holm = holm({i: c.p_regression for i, c in family.items()})
    improvement_holm = holm({i: c.p_improvement for i, c in family.items()})
    for i, change in enumerate(changes):
        if not change.tested:
            continue
        if i in family:
            change.p_regression_holm = regression_holm[i]
            change.p_improvement_holm = improvement_holm[i]
        elif i in twins:  # the same test as the row it repeats
            twin = changes[twins[i]]
            change.p_regression_holm = twin.p_regression_holm
            change.p_improvement_holm = twin.p_improvement_holm
        else:  # unchanged on every resample: nothing to adjust, never significant
            change.p_regression_holm, change.p_improvement_holm = 1.0, 1.0
        change.verdict = (REGRESSION if change.p_regression_holm < alpha
                          else IMPROVEMENT if change.p_improvement_holm < alpha else NO_CHANGE)
    return Comparison(board_a, board_b, metrics, alpha, changes)


def _holm_family(changes: list[Change]) -> dict[int, int]:
    """Leave out of Holm's family the tested rows that cannot add a test, marking why
    (``not_counted``): a row whose delta is 0 on every resample (an unchanged system: its p
    is 1 whatever happens), and a row whose resampled deltas repeat, to 1e-12, those of an
    earlier metric of the same task and system (a metric equal to another by definition, as
    weighted recall is to accuracy). Returns each repeating row's index -> the row it
    repeats."""
    twins: dict[int, int] = {}
    seen: dict[tuple[str, str], list[int]] = {}
    for i, change in enumerate(changes):
        if not change.tested or change.deltas is None:
            continue
        if not np.any(change.deltas) and change.delta == 0:
            change.not_counted = "unchanged on every resample"
            continue
        earlier = seen.setdefault((change.task, change.system), [])
        twin = next((j for j in earlier if _same_test(changes[j], change)), None)
        if twin is None:
            earlier.append(i)
        else:
            twins[i] = twin
            change.not_counted = f"the same test as {changes[twin].metric}"
    return twins


def _same_test(first: Change, second: Change) -> bool:
    assert first.deltas is not None and second.deltas is not None
    return (first.deltas.shape == second.deltas.shape
            and first.higher_is_better == second.higher_is_better
            and abs(first.delta - second.delta) <= 1e-12
            and bool(np.allclose(first.deltas, second.deltas, rtol=0, atol=1e-12)))


def _systems(board: Leaderboard, task: str) -> list[str]:
    if task not in board.tasks:
        return []
    return list(board.tasks[task].get("systems", board.systems))


class _TaskPair:
    """One task as both runs hold it: its cells, resamples and what identifies its test
    items, loaded once for all its systems and metrics."""

    def __init__(self, board_a: Leaderboard, board_b: Leaderboard, task: str,
                 seed_variance: bool):
        self.task = task
        self.seed_variance = seed_variance
        self.boards = (board_a, board_b)
        self.cells = tuple(b.cells[b.cells["task"] == task] if len(b.cells) else b.cells
                           for b in self.boards)
        self.replicates = tuple(Replicates(cells) for cells in self.cells)
        self.declarations = tuple(b.declarations(task) for b in self.boards)
        self.split_problem = _split_sizes_problem(*(b.tasks[task].get("sizes") or {}
                                                    for b in self.boards))

    def metrics(self, which: str) -> list[str]:
        if which == "main":
            mains = [b.main_metric(self.task) for b in self.boards]
            return [m for i, m in enumerate(mains) if m and m not in mains[:i]]
        names = [name for declarations in self.declarations
                 for name, metric in declarations.items() if metric.bootstrap]
        return list(dict.fromkeys(names))

    def finished(self, side: int, system: str) -> dict[int, dict[str, Any]]:
        """seed -> the cell's row, for the seeds ``system`` finished on this side."""
        cells = self.cells[side]
        if not len(cells):
            return {}
        ok = cells[(cells["system"] == system) & (cells["status"] == "ok")]
        return {int(row["seed"]): row for row in ok.to_dict("records")}

    def failed(self, side: int, system: str) -> str:
        """The first error message of ``system``'s failed cells on this side, or ""."""
        cells = self.cells[side]
        if not len(cells):
            return ""
        failed = cells[(cells["system"] == system) & (cells["status"] == "failed")]
        return str(failed["error_message"].iloc[0]) if len(failed) else ""

    def change(self, system: str, metric: str) -> Change:
        declared_a, declared_b = (d.get(metric) for d in self.declarations)
        if declared_a is None or declared_b is None:
            return Change(self.task, system, metric,
                          MISSING_IN_A if declared_a is None else MISSING_IN_B)
        change = Change(self.task, system, metric, UNPAIRED,
                        higher_is_better=declared_a.higher_is_better)
        rows_a, rows_b = self.finished(0, system), self.finished(1, system)
        shared = sorted(set(rows_a) & set(rows_b))
        if rows_a and not rows_b and self.failed(1, system):
            change.verdict = FAILED_IN_B
            change.reason = f"every cell of B failed ({self.failed(1, system)})"
            return change
        if not shared:
            change.reason = (f"no seed finished in both runs (A: {_seed_list(rows_a)}; "
                             f"B: {_seed_list(rows_b)})")
            return change
        resamples_a = self.replicates[0].of(system, shared, metric)
        resamples_b = self.replicates[1].of(system, shared, metric)
        # a seed whose cell holds no resamples of this metric cannot pair
        both = sorted(set(resamples_a) & set(resamples_b))
        paired = both or shared
        change.paired_seeds = paired
        aggregate = declared_a.aggregate
        change.a = _seed_aggregate(rows_a, paired, metric, aggregate)
        change.b = _seed_aggregate(rows_b, paired, metric, aggregate)
        change.delta = change.b - change.a
        a = cluster_replicates({s: resamples_a[s] for s in both}, aggregate)
        b = cluster_replicates({s: resamples_b[s] for s in both}, aggregate)
        change.reason = self._pairing_problem(declared_a, declared_b, rows_a, rows_b,
                                              paired, a, b)
        if change.reason:
            return change
        if a is None or b is None:
            raise AssertionError("unreachable: _pairing_problem reports missing resamples")
        per_seed = np.array([rows_b[s].get(f"metric:{metric}", math.nan)
                             - rows_a[s].get(f"metric:{metric}", math.nan) for s in both])
        resampled = paired_resamples(b, a, resamples_b, resamples_a, both, per_seed, aggregate,
                                     self.seed_variance)
        if not len(resampled):
            change.reason = "the metric is undefined on every resample"
            return change
        # a regression's null is "B is no worse than A"; an improvement's "no better"
        change.p_improvement, change.p_regression = tails(resampled,
                                                          declared_a.higher_is_better)
        interval = percentile_interval(resampled)
        if interval is None:
            raise AssertionError("unreachable: finite resamples always have an interval")
        change.delta_ci95 = (interval[0], interval[1])
        change.n_resamples = len(resampled)
        change.deltas = resampled
        return change

    def _pairing_problem(self, declared_a: Metric, declared_b: Metric,
                         rows_a: dict[int, dict[str, Any]], rows_b: dict[int, dict[str, Any]],
                         paired: list[int], a: np.ndarray | None, b: np.ndarray | None
                         ) -> str:
        """Why the resamples of A and B cannot be paired; "" when they can."""
        if not (declared_a.bootstrap and declared_b.bootstrap):
            side = "B" if declared_a.bootstrap else "A"
            return f"the metric has no bootstrap resamples in {side}"
        if declared_a.higher_is_better != declared_b.higher_is_better:
            return "the runs declare opposite directions for this metric"
        if a is None or b is None:
            return "no seed has resamples of this metric in both runs"
        if len(a) != len(b):
            return f"resample counts differ (A: {len(a)}, B: {len(b)})"
        if self.split_problem:
            return self.split_problem
        for seed in paired:
            problem = _cells_problem(rows_a[seed], rows_b[seed])
            if problem:
                return f"{problem} on seed {seed}"
        return ""


def _seed_list(rows: dict) -> str:
    return ", ".join(map(str, sorted(rows))) or "none"


def _seed_aggregate(rows: dict[int, dict], seeds: list[int], metric: str,
                    aggregate: str) -> float:
    values = [rows[s].get(f"metric:{metric}", math.nan) for s in seeds]
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return math.nan
    return float(np.median(values) if aggregate == "median" else np.mean(values))


def _split_sizes_problem(sizes_a: dict, sizes_b: dict) -> str:
    # only the test split matters: the resamples draw test units
    differ = [k for k in sizes_a if k.startswith("test") and k in sizes_b
              and sizes_a[k] != sizes_b[k]]
    return "; ".join(f"{k} sizes differ (A: {sizes_a[k]}, B: {sizes_b[k]})" for k in differ)


def _cells_problem(row_a: dict, row_b: dict) -> str:
    """What, in a seed's two cells, shows they did not score the same test items on the
    same resamples; checked where both cells record it."""
    # JSON text, or missing (NaN in the frame) where a cell does not record them
    settings_a, settings_b = row_a.get("bootstrap"), row_b.get("bootstrap")
    if isinstance(settings_a, str) and isinstance(settings_b, str) and settings_a != settings_b:
        return f"bootstrap settings differ (A: {settings_a}, B: {settings_b})"
    arrays_a, arrays_b = _test_item_arrays(row_a), _test_item_arrays(row_b)
    for name in TEST_ITEM_ARRAYS:
        if name in arrays_a and name in arrays_b \
                and not np.array_equal(arrays_a[name], arrays_b[name]):
            return f"test items differ ({name})"
    return ""


def _test_item_arrays(row: dict) -> dict[str, np.ndarray]:
    return read_arrays(Path(row["path"]), row.get("arrays_sha256"),
                       wanted=lambda name: name in TEST_ITEM_ARRAYS)


# ---------------------------------------------------------------------------------------
# Display
# ---------------------------------------------------------------------------------------


def describe(comparison: Comparison) -> str:
    """What the numbers are, for the header of the table."""
    a, b = comparison.run_a, comparison.run_b
    suites = f"suite {a.suite!r}" if (a.suite, a.suite_sha256) == (b.suite, b.suite_sha256) \
        else f"suites {a.suite!r} (A) and {b.suite!r} (B), which differ"
    return (f"A = {a.run_dir}, B = {b.run_dir}, {suites}.\ndelta = B - A over the seeds "
            f"both finished, [95% interval]; p: one-sided, of 'B is no worse than A', paired "
            f"on the shared cluster bootstrap over test units; p_holm: Holm over the "
            f"{comparison.n_tests} tested rows that can add a test (not those unchanged on "
            f"every resample, nor a metric repeating another's test); alpha "
            f"{comparison.alpha:g}")


def display_rows(comparison: Comparison) -> list[dict[str, str]]:
    rows = []
    for c in comparison.changes:
        delta = format_number(c.delta, "+.3f")
        if c.delta_ci95:
            delta += f" [{c.delta_ci95[0]:+.3f}, {c.delta_ci95[1]:+.3f}]"
        rows.append({"task": c.task, "system": c.system, "metric": c.metric,
                     "A": format_number(c.a), "B": format_number(c.b),
                     "delta [lo, hi]": delta, "p": format_number(c.p_regression),
                     "p_holm": format_number(c.p_regression_holm),
                     "seeds": str(len(c.paired_seeds)) if c.paired_seeds else "–",
                     "verdict": _verdict_text(c)})
    return rows


def _verdict_text(change: Change) -> str:
    if change.reason:
        return f"{change.verdict}: {change.reason}"
    if change.not_counted:
        return f"{change.verdict} (not in Holm's family: {change.not_counted})"
    return change.verdict


def render_terminal(comparison: Comparison) -> str:
    from tabulate import tabulate

    table = tabulate(display_rows(comparison), headers="keys", tablefmt="simple",
                     disable_numparse=True)
    regressions = comparison.having(REGRESSION) + comparison.having(FAILED_IN_B)
    summary = (f"{len(regressions)} significant regression(s): "
               + ", ".join(f"{c.task} / {c.system} / {c.metric}" for c in regressions)
               if regressions else "no significant regression")
    unpaired = comparison.having(UNPAIRED)
    if unpaired:
        summary += f"; {len(unpaired)} unpaired row(s) not tested, so not counted"
    if comparison.resolution_note:
        summary += f"\nnote: {comparison.resolution_note}"
    return "\n".join([f"Compare: {describe(comparison)}", "", table, "", summary])
