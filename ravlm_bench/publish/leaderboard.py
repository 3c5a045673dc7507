"""Leaderboards: a run directory read into per-task tables of systems, with intervals and
paired tests against the baseline.

:func:`load_run` reads a run (:func:`~ravlm_bench.publish.run_reader.read_run`: run.json
and every cell, checked) into a :class:`Leaderboard` without any task plugin: per-task
tables (systems as rows; each metric aggregated over the seeds that finished as its
declaration says, mean ± sample std or median; the cost and retrieval-diagnostic columns
beside them), an overview of the main metric, and for every system a paired test against
the run's baseline. :mod:`ravlm_bench.publish.display` renders the tables as text and
publishers (plugins) write them to files.

Intervals are a cluster bootstrap: a resample draws test units (items, captions or images,
as the metric declares) and each drawn unit carries its rows from every seed, so resample b
of a system is the mean over its seeds of their values on resample b. The paired test takes
the difference of two systems on the same resamples, over the seeds both finished. The
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
from ravlm_bench.scoring.evaluation import Metric
from ravlm_bench.scoring.resampling import percentile_interval

# What names a p-value in a Holm family: a system (the leaderboard), a row index (compare)
TestName = TypeVar("TestName", str, int)

COST_COLUMNS = ("retrieval_qps", "latency_p50_ms", "latency_p99_ms", "index_memory_bytes",
                "index_build_s", "train_s")
# What retrieval found (knowledge.retrieval_diagnostics), seed means
DIAGNOSTIC_COLUMNS = ("label_precision_at_k", "recall_vs_exact", "all_padding", "one_image",
                      "pseudo_recall_at_k", "evidence_recall_at_k")
# which way is better for each cost and diagnostic column (metrics declare their own)
COLUMN_BETTER = {"retrieval_qps": "higher", "latency_p50_ms": "lower",
                 "latency_p99_ms": "lower", "index_memory_bytes": "lower",
                 "index_build_s": "lower", "train_s": "lower",
                 "label_precision_at_k": "higher", "recall_vs_exact": "higher",
                 "all_padding": "lower", "one_image": "lower",
                 "pseudo_recall_at_k": "higher", "evidence_recall_at_k": "higher"}
COMPARISON_COLUMNS = ("delta_vs_baseline", "delta_ci95_lo", "delta_ci95_hi", "p_value",
                      "p_holm", "p_two_sided", "p_two_sided_holm", "paired_seeds")


@dataclass
class Leaderboard:
    """Everything a publisher needs, as plain data and pandas DataFrames.

    ``tables[task]``: index ``system``; per metric ``m``: columns ``m`` (mean), ``m_std``,
    ``m_ci95_lo``, ``m_ci95_hi`` (the cluster bootstrap); then :data:`COST_COLUMNS` and
    :data:`DIAGNOSTIC_COLUMNS` (means), ``retrieval_key``,
    ``n_seeds`` (finished seeds), ``n_failed``, ``status`` (``ok``, ``failed``, ``partial``,
    ``incomplete``, ``not run``), ``error``, and with a baseline :data:`COMPARISON_COLUMNS`.
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

    def declarations(self, task: str) -> dict[str, Metric]:
        return {m["name"]: Metric.from_dict(m) for m in self.tasks[task]["metrics"]}

    def metrics(self, task: str) -> list[str]:
        """The metric columns of ``task``'s table, main metric first."""
        names = list(self.declarations(task))
        main = self.main_metric(task)
        return ([main] if main else []) + [m for m in names if m != main]

    def main_metric(self, task: str) -> str | None:
        return self.tasks[task]["main_metric"]


def load_run(run_dir: str | Path, *, tables: bool = True) -> Leaderboard:
    """Read ``run_dir`` (run.json and the finished cells) into a :class:`Leaderboard`;
    ``tables=False`` leaves out its tables, intervals and paired tests (the cells only).

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
        row = _system_row(sub, declarations, len(board.seeds), replicates, system)
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
    return table


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
                replicates: Replicates, system: str) -> dict:
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
            pooled = cluster_replicates(replicates.of(system, seeds, metric),
                                        declared.aggregate)
            interval = percentile_interval(pooled) if pooled is not None else None
        row[f"{metric}_ci95_lo"], row[f"{metric}_ci95_hi"] = interval or (math.nan, math.nan)
    for cost in COST_COLUMNS:
        values = column(f"cost:{cost}")
        row[cost] = values.mean() if len(values) else math.nan
    for name in DIAGNOSTIC_COLUMNS:
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
    """The paired test of ``system`` against the baseline on the task's main metric, over
    the seeds both finished: the difference of seed means (medians, for a metric aggregated
    by median), its interval and its one- and
    two-sided p-values over the shared resamples. ``baseline`` is the board's baseline."""
    empty = dict.fromkeys(COMPARISON_COLUMNS, math.nan)
    empty["paired_seeds"] = 0
    main = board.main_metric(task)
    if system == baseline or main is None or not len(board.cells):
        return empty
    declared = board.declarations(task)[main]
    if not declared.bootstrap:
        return empty
    ours = replicates.of(system, board.seeds, main)
    theirs = replicates.of(baseline, board.seeds, main)
    shared = sorted(set(ours) & set(theirs))
    a = cluster_replicates({s: ours[s] for s in shared}, declared.aggregate)
    b = cluster_replicates({s: theirs[s] for s in shared}, declared.aggregate)
    if a is None or b is None or len(a) != len(b):
        return empty
    cells = board.cells[(board.cells["task"] == task) & (board.cells["status"] == "ok")]
    point = {}
    for name in (system, baseline):
        mine = cells[(cells["system"] == name) & cells["seed"].isin(shared)]
        point[name] = seed_aggregate(mine[f"metric:{main}"], declared.aggregate)
    delta = float(point[system] - point[baseline])
    resampled = a - b
    resampled = resampled[np.isfinite(resampled)]
    # one-sided: the share of resamples where the system is no better than the baseline;
    # two-sided: twice the smaller of the two tails, capped at 1
    not_better = (resampled <= 0) if declared.higher_is_better else (resampled >= 0)
    not_worse = (resampled >= 0) if declared.higher_is_better else (resampled <= 0)
    tails = [(1 + int(tail.sum())) / (1 + len(resampled)) for tail in (not_better, not_worse)]
    lo, hi = percentile_interval(resampled) or (math.nan, math.nan)
    return {"delta_vs_baseline": delta, "delta_ci95_lo": lo, "delta_ci95_hi": hi,
            "p_value": tails[0], "p_holm": math.nan,
            "p_two_sided": min(1.0, 2 * min(tails)), "p_two_sided_holm": math.nan,
            "paired_seeds": len(shared)}


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
