"""Leaderboards: a run directory read into per-task tables of systems, with intervals and
paired tests against the baseline.

:func:`load_run` reads a run (:func:`~ravlm_bench.publish.run_reader.read_run`: run.json
and every cell, checked) into a :class:`Leaderboard` without any task plugin: per-task
tables (systems as rows; each metric aggregated over the seeds that finished as its
declaration says, mean ± sample std or median; the cost and retrieval-diagnostic columns
beside them), an overview of the main metric, and for every system a paired test against
the run's baseline. :mod:`ravlm_bench.publish.display` renders the tables as text and
publishers (plugins) write them to files.

Intervals are a cluster bootstrap: a resample draws test units (the images, each with all
its test items, as the metric declares) and each drawn unit carries its rows from every
seed, so resample b of a system is the mean over its seeds of their values on resample b.
By default each resample is then widened by the seeds' own variance
(:mod:`ravlm_bench.scoring.seed_variance`), so an interval says how a rerun with new seeds
would vary; ``seed_variance=False`` keeps the intervals conditional on the seeds that ran.
The paired test takes the difference of two systems on the same resamples, over the seeds
both finished (widened by the variance of the per-seed differences). The
tables show its two-sided p-value (``p_two_sided``: twice the smaller tail, "no difference
from the baseline"); the one-sided p-value of "no better than the baseline" (``p_value``),
which gates use, stays beside it in the data; each is Holm-adjusted over the systems
compared on a task. A cell whose arrays are missing or do not match their checksum stops
the loading with a one-line :class:`~ravlm_bench.foundation.errors.DataError`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd

from ravlm_bench.foundation.errors import DataError
from ravlm_bench.publish.run_reader import Replicates, read_run
from ravlm_bench.scoring.dependence import DEPENDENCE_LEVELS
from ravlm_bench.scoring.evaluation import Metric
from ravlm_bench.scoring.resampling import interval as resampled_interval
from ravlm_bench.scoring.resampling import percentile_interval
from ravlm_bench.scoring.seed_variance import with_seed_variance

# What names a p-value in a Holm family: a system (the leaderboard), a row index (compare)
TestName = TypeVar("TestName", str, int)

COST_COLUMNS = ("retrieval_qps", "latency_p50_ms", "latency_p99_ms", "index_memory_bytes",
                "index_build_s", "train_s")
# What retrieval found (knowledge.retrieval_diagnostics), seed means
DIAGNOSTIC_COLUMNS = ("label_precision_at_k", "recall_vs_exact", "all_padding", "one_image",
                      "pseudo_recall_at_k", "evidence_recall_at_k")
# The retrieval dependence's curve: the main metric with a share p of each query's
# retrieved items corrupted, and with none retrieved (stages.corruption), seed means; and
# RA-VQA's answer-versus-evidence shares of a knowledge task's questions
DEPENDENCE_COLUMNS = tuple(f"dependence_{level}" for level in DEPENDENCE_LEVELS)
ANSWER_EVIDENCE_COLUMNS = ("right_with_evidence", "right_without_evidence",
                           "wrong_with_evidence", "wrong_without_evidence")
# which way is better for each cost and diagnostic column (metrics declare their own)
COLUMN_BETTER = {"retrieval_qps": "higher", "latency_p50_ms": "lower",
                 "latency_p99_ms": "lower", "index_memory_bytes": "lower",
                 "index_build_s": "lower", "train_s": "lower",
                 "label_precision_at_k": "higher", "recall_vs_exact": "higher",
                 "all_padding": "lower", "one_image": "lower",
                 "pseudo_recall_at_k": "higher", "evidence_recall_at_k": "higher"}
# Tiers: adjacent systems differ when their Holm-adjusted two-sided p is below this
TIER_ALPHA = 0.05
TIER_COLUMNS = ("tier", "p_vs_above", "p_vs_above_holm")
COMPARISON_COLUMNS = ("delta_vs_baseline", "delta_ci95_lo", "delta_ci95_hi", "p_value",
                      "p_holm", "p_two_sided", "p_two_sided_holm", "paired_seeds")


@dataclass
class Leaderboard:
    """Everything a publisher needs, as plain data and pandas DataFrames.

    ``tables[task]``: index ``system``; per metric ``m``: columns ``m`` (mean), ``m_std``,
    ``m_ci95_lo``, ``m_ci95_hi`` (the cluster bootstrap); then :data:`COST_COLUMNS` and
    :data:`DIAGNOSTIC_COLUMNS`, :data:`DEPENDENCE_COLUMNS` and
    :data:`ANSWER_EVIDENCE_COLUMNS` (means), ``retrieval_key``,
    ``n_seeds`` (finished seeds), ``n_failed``, ``status`` (``ok``, ``failed``, ``partial``,
    ``incomplete``, ``not run``), ``error``, :data:`TIER_COLUMNS` (rows ordered by the main
    metric, grouped into tiers: :func:`tiers`), and with a baseline
    :data:`COMPARISON_COLUMNS`.
    ``seed_variance``: whether intervals and tests include the seeds' variance.
    ``overview``: index ``system``, one column per task: the main metric's mean.
    ``cells``: one row per cell read (checked against its checksum), with its metrics,
    costs, diagnostics, ``bootstrap`` settings (JSON text) and ``fingerprint:<kind>`` of its
    components. ``versions``: the library versions run.json records.
    """

    run_dir: Path
    suite: str
    suite_sha256: str
    baseline: str | None
    tasks: dict[str, dict]
    systems: dict[str, dict]
    seeds: list[int]
    created: str
    cells: pd.DataFrame
    versions: dict[str, str] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    overview: pd.DataFrame | None = None
    seed_variance: bool = True

    def declarations(self, task: str) -> dict[str, Metric]:
        return {m["name"]: Metric.from_dict(m) for m in self.tasks[task]["metrics"]}

    def metrics(self, task: str) -> list[str]:
        """The metric columns of ``task``'s table, main metric first."""
        names = list(self.declarations(task))
        main = self.main_metric(task)
        return ([main] if main else []) + [m for m in names if m != main]

    def main_metric(self, task: str) -> str | None:
        return self.tasks[task]["main_metric"]


def load_run(run_dir: str | Path, *, tables: bool = True,
             seed_variance: bool = True) -> Leaderboard:
    """Read ``run_dir`` (run.json and the finished cells) into a :class:`Leaderboard`;
    ``tables=False`` leaves out its tables, intervals and paired tests (the cells only);
    ``seed_variance=False`` makes intervals and tests conditional on the seeds that ran.

    Raises :class:`DataError` naming the file for a missing or malformed run directory, a
    damaged cell record, or (with ``tables``) a cell whose arrays are missing or damaged.
    Cells of tasks, systems or seeds that run.json does not list are ignored, as is every
    file under ``cells/`` not named ``seed-<n>.json`` (temporary files of a running run).
    """
    run_dir = Path(run_dir)
    run, cells = read_run(run_dir)
    board = Leaderboard(
        run_dir=run_dir, suite=run["suite"], suite_sha256=str(run.get("suite_sha256", "")),
        baseline=run.get("baseline"), tasks=run["tasks"], systems=run["systems"],
        seeds=[int(s) for s in run["seeds"]], created=str(run.get("created", "")),
        cells=cells,
        versions=run["versions"] if isinstance(run.get("versions"), dict) else {},
        seed_variance=seed_variance,
    )
    if board.baseline is not None and board.baseline not in board.systems:
        raise DataError(f"{run_dir / 'run.json'}: baseline {board.baseline!r} is not one of "
                        f"the systems ({', '.join(board.systems)})")
    if not tables:
        return board
    overview = {}
    for task in board.tasks:
        table = board.tables[task] = _task_table(board, task)
        main = board.main_metric(task)
        overview[task] = table[main] if main else pd.Series(math.nan, index=table.index)
    board.overview = pd.DataFrame(overview).reindex(list(board.systems))
    board.overview.index.name = "system"
    return board


def _task_table(board: Leaderboard, task: str) -> pd.DataFrame:
    """One row per system the suite ran on ``task`` (see :class:`Leaderboard`)."""
    declarations = board.declarations(task)
    task_cells = board.cells[board.cells["task"] == task] if len(board.cells) \
        else board.cells
    replicates = Replicates(task_cells)
    rows = {}
    for system in board.tasks[task].get("systems", board.systems):
        sub = task_cells[task_cells["system"] == system] if len(task_cells) else task_cells
        row = _system_row(sub, declarations, len(board.seeds), replicates, system,
                          board.seed_variance)
        row["retrieval_key"] = retrieval_key(board.systems.get(system, {}))
        if board.baseline is not None:
            row.update(_compare_to_baseline(board, task, system, board.baseline, replicates))
        rows[system] = row
    if board.baseline is not None:
        for column, adjusted_column in (("p_value", "p_holm"),
                                        ("p_two_sided", "p_two_sided_holm")):
            adjusted = holm({system: row[column] for system, row in rows.items()})
            for system, row in rows.items():
                row[adjusted_column] = adjusted[system]
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "system"
    return tiers(board, task, table, replicates)


def cluster_replicates(per_seed: dict[int, np.ndarray],
                       aggregate: str = "mean") -> np.ndarray | None:
    """Resample b of the seed-aggregated metric: the mean (or, for a metric declaring
    ``aggregate = "median"``, the median) over seeds of each seed's value on resample b (the
    seeds' cells share the resamples), so the interval is of the number the table shows.
    None without seeds or when their resample counts differ."""
    if not per_seed or len({len(v) for v in per_seed.values()}) != 1:
        return None
    stacked = np.stack(list(per_seed.values()))
    return np.median(stacked, axis=0) if aggregate == "median" else np.mean(stacked, axis=0)


def seed_points(cells: pd.DataFrame, seeds: list[int], metric: str) -> np.ndarray:
    """``metric`` of the cells of ``seeds`` (one system's), in that order; NaN where a
    cell has no value."""
    column = f"metric:{metric}"
    if column not in cells.columns:
        return np.full(len(seeds), np.nan)
    by_seed = dict(zip(cells["seed"].astype(int), cells[column], strict=True))
    return np.array([by_seed.get(s, math.nan) for s in seeds], np.float64)


def seed_aggregate(values: pd.Series, aggregate: str) -> float:
    """The seeds' values summarised as the metric declares: mean, or median."""
    if not len(values):
        return math.nan
    return float(values.median() if aggregate == "median" else values.mean())


def _error_summary(failed: pd.DataFrame) -> str:
    # one entry per distinct error, naming the seeds it hit
    groups: dict[tuple, list[int]] = {}
    for row in failed.itertuples():
        groups.setdefault((row.error_plugin, row.error_message), []).append(int(row.seed))
    parts = []
    for (plugin, message), seeds in groups.items():
        label = "seed" if len(seeds) == 1 else "seeds"
        # the runner's messages name the plugin already; others get it prefixed
        named = plugin is None or f"(plugin {plugin!r})" in str(message)
        who = "" if named else f"plugin {plugin!r}: "
        parts.append(f"{label} {', '.join(map(str, sorted(seeds)))}: {who}{message}")
    return "; ".join(parts)


def _system_row(sub: pd.DataFrame, declarations: dict[str, Metric], n_seeds: int,
                replicates: Replicates, system: str, seed_variance: bool) -> dict:
    ok = sub[sub["status"] == "ok"] if len(sub) else sub
    failed = sub[sub["status"] == "failed"] if len(sub) else sub
    row: dict = {}

    def column(name: str) -> pd.Series:
        return ok[name].dropna() if name in ok.columns else pd.Series(dtype=float)

    seeds = [int(s) for s in ok["seed"]] if len(ok) else []
    for metric, declared in declarations.items():
        values = column(f"metric:{metric}")
        row[metric] = seed_aggregate(values, declared.aggregate)
        row[f"{metric}_std"] = values.std(ddof=1) if len(values) > 1 else math.nan
        interval = None
        if declared.bootstrap:
            per_seed = replicates.of(system, seeds, metric)
            pooled = cluster_replicates(per_seed, declared.aggregate)
            if pooled is not None and seed_variance:
                pooled = with_seed_variance(pooled, np.stack(list(per_seed.values())),
                                            seed_points(ok, list(per_seed), metric),
                                            declared.aggregate)
            interval = (resampled_interval(pooled, row[metric], declared.interval)
                        if pooled is not None else None)
        row[f"{metric}_ci95_lo"], row[f"{metric}_ci95_hi"] = interval or (math.nan, math.nan)
    for cost in COST_COLUMNS:
        values = column(f"cost:{cost}")
        row[cost] = values.mean() if len(values) else math.nan
    for name in (*DIAGNOSTIC_COLUMNS, *DEPENDENCE_COLUMNS, *ANSWER_EVIDENCE_COLUMNS):
        values = column(f"diag:{name}")
        row[name] = values.mean() if len(values) else math.nan
    n_ok, n_failed = len(ok), len(failed)
    row["n_seeds"], row["n_failed"] = n_ok, n_failed
    if n_failed and not n_ok:
        row["status"] = "failed"
    elif n_failed:
        row["status"] = "partial"
    elif not n_ok:
        row["status"] = "not run"
    else:
        row["status"] = "ok" if n_ok >= n_seeds else "incomplete"
    row["error"] = _error_summary(failed) if n_failed else ""
    return row


def _compare_to_baseline(board: Leaderboard, task: str, system: str, baseline: str,
                         replicates: Replicates) -> dict:
    """The paired test of ``system`` against the baseline on the task's main metric (see
    :func:`paired_difference`): the difference, its interval and its one- and two-sided
    p-values. ``baseline`` is the board's baseline."""
    empty = dict.fromkeys(COMPARISON_COLUMNS, math.nan)
    empty["paired_seeds"] = 0
    if system == baseline:
        return empty
    paired = paired_difference(board, task, system, baseline, replicates)
    if paired is None:
        return empty
    delta, resampled, shared = paired
    main = board.main_metric(task) or ""  # paired_difference found a main metric
    p_one, p_two = tail_p_values(resampled, board.declarations(task)[main].higher_is_better)
    lo, hi = percentile_interval(resampled) or (math.nan, math.nan)
    return {"delta_vs_baseline": delta, "delta_ci95_lo": lo, "delta_ci95_hi": hi,
            "p_value": p_one, "p_holm": math.nan,
            "p_two_sided": p_two, "p_two_sided_holm": math.nan,
            "paired_seeds": len(shared)}


def paired_difference(board: Leaderboard, task: str, system: str, other: str,
                      replicates: Replicates) -> tuple[float, np.ndarray, list[int]] | None:
    """``system`` minus ``other`` on the task's main metric over the seeds both finished:
    the difference of seed means (medians, for a metric aggregated by median), its finite
    values on the shared resamples (widened by the per-seed differences' variance when the
    board includes seed variance), and the paired seeds. None without a bootstrapped main
    metric or shared resamples."""
    main = board.main_metric(task)
    if main is None or not len(board.cells):
        return None
    declared = board.declarations(task)[main]
    if not declared.bootstrap:
        return None
    ours = replicates.of(system, board.seeds, main)
    theirs = replicates.of(other, board.seeds, main)
    shared = sorted(set(ours) & set(theirs))
    a = cluster_replicates({s: ours[s] for s in shared}, declared.aggregate)
    b = cluster_replicates({s: theirs[s] for s in shared}, declared.aggregate)
    if a is None or b is None or len(a) != len(b):
        return None
    cells = board.cells[(board.cells["task"] == task) & (board.cells["status"] == "ok")]
    point, per_seed = {}, {}
    for name in (system, other):
        mine = cells[(cells["system"] == name) & cells["seed"].isin(shared)]
        point[name] = seed_aggregate(mine[f"metric:{main}"], declared.aggregate)
        per_seed[name] = seed_points(mine, shared, main)
    resampled = paired_resamples(a, b, ours, theirs, shared,
                                 per_seed[system] - per_seed[other], declared.aggregate,
                                 board.seed_variance)
    return float(point[system] - point[other]), resampled, shared


def paired_resamples(a: np.ndarray, b: np.ndarray, per_seed_a: dict[int, np.ndarray],
                     per_seed_b: dict[int, np.ndarray], seeds: list[int],
                     seed_differences: np.ndarray, aggregate: str,
                     seed_variance: bool) -> np.ndarray:
    """The finite resamples of ``a - b``, two seed-aggregated values on the same resamples
    (:func:`cluster_replicates` of ``per_seed_a`` / ``per_seed_b`` over ``seeds``), widened
    by the variance of the per-seed differences (``seed_differences``, point values in
    ``seeds`` order) when ``seed_variance``. The leaderboard's paired tests and
    ``compare`` both take their differences here."""
    resampled = a - b
    if seed_variance:
        differences = np.stack([per_seed_a[s] - per_seed_b[s] for s in seeds])
        resampled = with_seed_variance(resampled, differences, seed_differences, aggregate)
    return resampled[np.isfinite(resampled)]


def tails(resampled: np.ndarray, higher_is_better: bool) -> tuple[float, float]:
    """The one-sided p-values of "no better" and of "no worse": the share of resamples
    where the difference is not in the better (worse) direction, with the +1 correction."""
    not_better = (resampled <= 0) if higher_is_better else (resampled >= 0)
    not_worse = (resampled >= 0) if higher_is_better else (resampled <= 0)
    total = 1 + len(resampled)
    return (1 + int(not_better.sum())) / total, (1 + int(not_worse.sum())) / total


def tail_p_values(resampled: np.ndarray, higher_is_better: bool) -> tuple[float, float]:
    """The one-sided p-value of "no better" and the two-sided one (twice the smaller
    tail of :func:`tails`, capped at 1)."""
    no_better, no_worse = tails(resampled, higher_is_better)
    return no_better, min(1.0, 2 * min(no_better, no_worse))


def tiers(board: Leaderboard, task: str, table: pd.DataFrame, replicates: Replicates,
          alpha: float = TIER_ALPHA) -> pd.DataFrame:
    """``table`` ordered by the main metric, best first (systems without a value last, in
    suite order), with columns ``tier`` (1 = top), ``p_vs_above`` (the two-sided paired
    p-value against the system above) and ``p_vs_above_holm`` (Holm-adjusted over the
    task's adjacent pairs). A system shares the tier of the one above unless their paired
    difference is significant at ``alpha`` after the adjustment; a pair without a test (a
    main metric without resamples) is not shown to differ, so it shares the tier too."""
    main = board.main_metric(task)
    table = table.copy()
    table["tier"], table["p_vs_above"], table["p_vs_above_holm"] = math.nan, math.nan, math.nan
    if main is None or main not in table.columns:
        return table
    better_high = board.declarations(task)[main].higher_is_better
    ranked = table[table[main].notna()]
    order = ranked[main].sort_values(ascending=not better_high, kind="stable").index.tolist()
    p_values = {}
    for above, system in zip(order, order[1:], strict=False):
        paired = paired_difference(board, task, above, system, replicates)
        p_values[system] = tail_p_values(paired[1], better_high)[1] if paired else math.nan
    adjusted = holm(p_values)
    tier = 1
    for position, system in enumerate(order):
        if position and adjusted[system] < alpha:  # NaN (untestable) compares False
            tier += 1
        table.loc[system, "tier"] = tier
        if position:
            table.loc[system, "p_vs_above"] = p_values[system]
            table.loc[system, "p_vs_above_holm"] = adjusted[system]
    unranked = [s for s in table.index if s not in order]
    return table.loc[order + unranked]


def retrieval_key(system: dict) -> str:
    """What a system searches with, as run.json recorded it ("" without a retriever)."""
    if not system.get("retriever"):
        return ""
    key = system.get("retrieval_key") or {"name": "image+text"}
    params = ", ".join(f"{k}={v}" for k, v in key.items() if k != "name")
    return f"{key['name']} ({params})" if params else key["name"]


def holm(p_values: dict[TestName, float]) -> dict[TestName, float]:
    """Holm's step-down adjustment of a family of p-values (NaNs are not in the family)."""
    family = sorted((p, name) for name, p in p_values.items() if not math.isnan(p))
    adjusted, running = {}, 0.0
    for i, (p, name) in enumerate(family):
        running = max(running, min(1.0, (len(family) - i) * p))
        adjusted[name] = running
    return {name: adjusted.get(name, math.nan) for name in p_values}
