"""Leaderboards: read a run directory into tables, and render them for the terminal.

A run directory (written by the runner, :mod:`ravlm_bench.store.ledger`) holds ``run.json``, with
each task's metric declarations, and one ``seed-<n>.json`` per finished cell under
``cells/<task>/<system>/`` with a ``seed-<n>.npz`` of arrays: the task's predictions and each
bootstrapped metric's value on the run's shared resamples. :func:`load_run` turns it into a
:class:`Leaderboard` without any task plugin: per-task tables (systems as rows; each metric
aggregated over the seeds that finished as its declaration says, mean ± sample std or
median; the cost columns beside them), an overview of the main metric, and for every system
a paired test against the run's baseline.

Intervals are a cluster bootstrap: a resample draws test units (items, captions or images,
as the metric declares) and each drawn unit carries its rows from every seed, so resample b
of a system is the mean over its seeds of their values on resample b. The paired test takes
the difference of two systems on the same resamples, over the seeds both finished; its
one-sided p-value is that of "no better than the baseline", Holm-adjusted over the systems
compared on a task. Publishers (plugins) write these tables to files.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ravlm_bench.foundation.errors import DataError
from ravlm_bench.scoring.evaluation import Metric
from ravlm_bench.scoring.metrics import CLASSIFICATION_METRICS
from ravlm_bench.scoring.resampling import percentile_interval
from ravlm_bench.store.ledger import REPLICATE_PREFIX, read_cell

log = logging.getLogger(__name__)

RETRIEVAL_METRICS = ("i2t_R@1", "i2t_R@5", "i2t_R@10", "t2i_R@1", "t2i_R@5", "t2i_R@10",
                     "mean_recall")
COST_COLUMNS = ("retrieval_qps", "latency_p50_ms", "latency_p99_ms", "index_memory_bytes",
                "index_build_s", "train_s")
# What retrieval found (knowledge.retrieval_diagnostics), seed means
DIAGNOSTIC_COLUMNS = ("label_precision_at_k", "recall_vs_exact", "all_padding", "one_image")
# which way is better for each cost and diagnostic column (metrics declare their own)
COLUMN_BETTER = {"retrieval_qps": "higher", "latency_p50_ms": "lower",
                 "latency_p99_ms": "lower", "index_memory_bytes": "lower",
                 "index_build_s": "lower", "train_s": "lower",
                 "label_precision_at_k": "higher", "recall_vs_exact": "higher",
                 "all_padding": "lower", "one_image": "lower"}
COMPARISON_COLUMNS = ("delta_vs_baseline", "delta_ci95_lo", "delta_ci95_hi", "p_value",
                      "p_holm", "paired_seeds")
# Only files named exactly so are cells; the runner's temporary files never match.
_CELL_FILE = re.compile(r"^seed-(\d+)\.json$")
# run.json of runs made before tasks declared their metrics: the kinds they had
LEGACY_DECLARATIONS = {
    "classification": {"head": "fusion-head", "targets": "single-label",
                       "metrics": [Metric(m, main=m == "weighted_f1").as_dict()
                                   for m in CLASSIFICATION_METRICS],
                       "main_metric": "weighted_f1"},
    "retrieval": {"head": "joint-embedding", "targets": "single-label",
                  "metrics": [Metric(m, main=m == "mean_recall").as_dict()
                              for m in RETRIEVAL_METRICS],
                  "main_metric": "mean_recall"},
}


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


# ---------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _read_run_json(run_dir: Path) -> dict:
    if not run_dir.is_dir():
        raise DataError(f"{run_dir}: no such run directory (ravlm-bench run writes one)")
    path = run_dir / "run.json"
    if not path.is_file():
        raise DataError(f"{path}: not found; {run_dir} is not a run directory "
                        f"(ravlm-bench run writes run.json there)")
    run = _read_json(path)
    for key, kind in (("suite", str), ("tasks", dict), ("systems", dict), ("seeds", list)):
        if not isinstance(run.get(key), kind):
            raise DataError(f"{path}: key {key!r} missing or not a {kind.__name__}")
    for task, meta in run["tasks"].items():
        if not isinstance(meta, dict):
            raise DataError(f"{path}: tasks.{task} must be an object")
        if "metrics" not in meta and meta.get("kind") in LEGACY_DECLARATIONS:
            meta.update(LEGACY_DECLARATIONS[meta["kind"]])
        metrics = meta.get("metrics")
        if not isinstance(metrics, list) or not all(
                isinstance(m, dict) and isinstance(m.get("name"), str) for m in metrics):
            raise DataError(f"{path}: tasks.{task}.metrics must be a list of metric "
                            f"declarations")
        main = meta.get("main_metric")
        if metrics and main not in [m["name"] for m in metrics]:
            raise DataError(f"{path}: tasks.{task}.main_metric {main!r} is not one of its "
                            f"metrics")
        # a label for the renderings: the head interface and the targets
        meta["kind"] = " / ".join(str(v) for v in (meta.get("head"), meta.get("targets")) if v) \
            or "unknown"
    return run


def _cell_row(path: Path, cell: dict) -> dict:
    for key in ("task", "system", "seed", "status"):
        if key not in cell:
            raise DataError(f"{path}: cell without key {key!r}")
    if cell["status"] not in ("ok", "failed"):
        raise DataError(f"{path}: status {cell['status']!r} is neither 'ok' nor 'failed'")
    if not isinstance(cell["seed"], int) or isinstance(cell["seed"], bool):
        raise DataError(f"{path}: seed {cell['seed']!r} is not an integer")
    for key in ("error", "metrics", "cost", "retrieval"):
        if cell.get(key) is not None and not isinstance(cell[key], dict):
            raise DataError(f"{path}: {key!r} is a JSON {type(cell[key]).__name__}, not an "
                            f"object; ravlm-bench run --force recomputes it")
    error = cell.get("error") or {}
    row = {"task": cell["task"], "system": cell["system"], "seed": int(cell["seed"]),
           "status": cell["status"], "error_plugin": error.get("plugin"),
           "error_message": error.get("message"), "path": str(path),
           "arrays_sha256": cell.get("arrays_sha256"),
           "bootstrap": json.dumps(cell["bootstrap"], sort_keys=True)
           if isinstance(cell.get("bootstrap"), dict) else None}
    components = (cell.get("provenance") or {}).get("components") \
        if isinstance(cell.get("provenance"), dict) else None
    for kind, component in (components or {}).items():
        if isinstance(component, dict) and component.get("fingerprint"):
            row[f"fingerprint:{kind}"] = str(component["fingerprint"])
    metrics = cell.get("metrics") or {}
    for name, value in metrics.items():
        if name != "ci95" and isinstance(value, (int, float)) and not isinstance(value, bool):
            row[f"metric:{name}"] = float(value)
    for name, bounds in (metrics.get("ci95") or {}).items():
        if isinstance(bounds, (list, tuple)) and len(bounds) == 2 and None not in bounds:
            row[f"ci95_lo:{name}"], row[f"ci95_hi:{name}"] = float(bounds[0]), float(bounds[1])
    for name, value in (cell.get("cost") or {}).items():
        row[f"cost:{name}"] = float(value) if isinstance(value, (int, float)) else math.nan
    for name, value in (cell.get("retrieval") or {}).items():
        row[f"diag:{name}"] = float(value) if isinstance(value, (int, float)) else math.nan
    return row


def _read_cells(run_dir: Path, run: dict) -> pd.DataFrame:
    rows, seen = [], {}
    wanted_seeds = {int(s) for s in run["seeds"]}
    cells_dir = run_dir / "cells"
    paths = sorted(cells_dir.glob("*/*/seed-*.json")) if cells_dir.is_dir() else []
    for path in paths:
        if not _CELL_FILE.match(path.name):
            continue
        cell, problem = read_cell(path)
        if problem is not None:
            raise DataError(f"{path} {problem}; ravlm-bench run recomputes it")
        row = _cell_row(path, cell)
        key = (row["task"], row["system"], row["seed"])
        if row["task"] not in run["tasks"] or row["system"] not in run["systems"] \
                or row["seed"] not in wanted_seeds:
            log.info("ignoring %s: task, system or seed not in this run's run.json", path)
            continue
        if key in seen:
            raise DataError(f"{path}: cell {key} also stored in {seen[key]}")
        seen[key] = path
        rows.append(row)
    base = ["task", "system", "seed", "status", "error_plugin", "error_message", "path"]
    return pd.DataFrame(rows, columns=None if rows else base)


def _load_replicates(row) -> dict[str, np.ndarray] | None:
    """The cell's metric values on the shared resamples, checked against the checksum the
    cell recorded; None (with a warning) when missing or damaged."""
    import hashlib

    path = Path(row["path"]).with_suffix(".npz")
    try:
        data = path.read_bytes()
    except OSError:
        log.warning("%s: no arrays file; intervals and paired tests leave this cell out", path)
        return None
    expected = row.get("arrays_sha256")
    if isinstance(expected, str) and hashlib.sha256(data).hexdigest() != expected:
        log.warning("%s: damaged (checksum mismatch); left out of intervals and paired tests; "
                    "ravlm-bench run recomputes it", path)
        return None
    import io

    try:
        with np.load(io.BytesIO(data)) as arrays:
            return {name[len(REPLICATE_PREFIX):]: np.asarray(arrays[name], np.float64)
                    for name in arrays.files if name.startswith(REPLICATE_PREFIX)}
    except (OSError, ValueError) as exc:
        log.warning("%s: unreadable (%s); left out of intervals and paired tests", path, exc)
        return None


class _Replicates:
    """Each finished cell's resample values of a task, loaded once."""

    def __init__(self, cells: pd.DataFrame):
        self.cells = cells
        self._loaded: dict[str, dict | None] = {}

    def of(self, system: str, seeds: list[int], metric: str) -> dict[int, np.ndarray]:
        out = {}
        ok = self.cells[(self.cells["system"] == system) & (self.cells["status"] == "ok")] \
            if len(self.cells) else self.cells
        for row in ok.to_dict("records"):
            if row["seed"] not in seeds:
                continue
            if row["path"] not in self._loaded:
                self._loaded[row["path"]] = _load_replicates(row)
            values = (self._loaded[row["path"]] or {}).get(metric)
            if values is not None:
                out[row["seed"]] = values
        return out


def cluster_replicates(per_seed: dict[int, np.ndarray]) -> np.ndarray | None:
    """Resample b of the seed-averaged metric: the mean over seeds of each seed's value on
    resample b (the seeds' cells share the resamples). None without seeds or when their
    resample counts differ."""
    if not per_seed or len({len(v) for v in per_seed.values()}) != 1:
        return None
    return np.mean(np.stack(list(per_seed.values())), axis=0)


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
                replicates: _Replicates, system: str) -> dict:
    ok = sub[sub["status"] == "ok"] if len(sub) else sub
    failed = sub[sub["status"] == "failed"] if len(sub) else sub
    row: dict = {}

    def column(name: str) -> pd.Series:
        return ok[name].dropna() if name in ok.columns else pd.Series(dtype=float)

    seeds = [int(s) for s in ok["seed"]] if len(ok) else []
    for metric, declared in declarations.items():
        values = column(f"metric:{metric}")
        if declared.aggregate == "median":
            row[metric] = values.median() if len(values) else math.nan
        else:
            row[metric] = values.mean() if len(values) else math.nan
        row[f"{metric}_std"] = values.std(ddof=1) if len(values) > 1 else math.nan
        interval = None
        if declared.bootstrap:
            pooled = cluster_replicates(replicates.of(system, seeds, metric))
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


def _compare_to_baseline(board: Leaderboard, task: str, system: str,
                         replicates: _Replicates) -> dict:
    """The paired test of ``system`` against the baseline on the task's main metric, over
    the seeds both finished: the difference of seed means, its interval and one-sided
    p-value over the shared resamples."""
    empty = dict.fromkeys(COMPARISON_COLUMNS, math.nan)
    empty["paired_seeds"] = 0
    main = board.main_metric(task)
    if system == board.baseline or main is None or not len(board.cells):
        return empty
    declared = board.declarations(task)[main]
    if not declared.bootstrap:
        return empty
    ours = replicates.of(system, board.seeds, main)
    theirs = replicates.of(board.baseline, board.seeds, main)
    shared = sorted(set(ours) & set(theirs))
    a = cluster_replicates({s: ours[s] for s in shared})
    b = cluster_replicates({s: theirs[s] for s in shared})
    if a is None or b is None or len(a) != len(b):
        return empty
    cells = board.cells[(board.cells["task"] == task) & (board.cells["status"] == "ok")]
    point = {}
    for name in (system, board.baseline):
        mine = cells[(cells["system"] == name) & cells["seed"].isin(shared)]
        point[name] = mine[f"metric:{main}"].mean()
    delta = float(point[system] - point[board.baseline])
    resampled = a - b
    resampled = resampled[np.isfinite(resampled)]
    # one-sided: the share of resamples where the system is no better than the baseline
    not_better = (resampled <= 0) if declared.higher_is_better else (resampled >= 0)
    lo, hi = percentile_interval(resampled) or (math.nan, math.nan)
    return {"delta_vs_baseline": delta, "delta_ci95_lo": lo, "delta_ci95_hi": hi,
            "p_value": (1 + int(not_better.sum())) / (1 + len(resampled)),
            "p_holm": math.nan, "paired_seeds": len(shared)}


def retrieval_key(system: dict) -> str:
    """What a system searches with, as run.json recorded it ("" without a retriever)."""
    if not system.get("retriever"):
        return ""
    key = system.get("retrieval_key") or {"name": "image+text"}
    params = ", ".join(f"{k}={v}" for k, v in key.items() if k != "name")
    return f"{key['name']} ({params})" if params else key["name"]


def holm(p_values: dict[str, float]) -> dict[str, float]:
    """Holm's step-down adjustment of a family of p-values (NaNs are not in the family)."""
    family = sorted((p, name) for name, p in p_values.items() if not math.isnan(p))
    adjusted, running = {}, 0.0
    for i, (p, name) in enumerate(family):
        running = max(running, min(1.0, (len(family) - i) * p))
        adjusted[name] = running
    return {name: adjusted.get(name, math.nan) for name in p_values}


def read_run(run_dir: str | Path) -> tuple[dict, pd.DataFrame]:
    """``run_dir``'s run.json and its cells, checked, without computing any table."""
    run_dir = Path(run_dir)
    run = _read_run_json(run_dir)
    return run, _read_cells(run_dir, run)


def load_run(run_dir: str | Path, *, tables: bool = True) -> Leaderboard:
    """Read ``run_dir`` (run.json and the finished cells) into a :class:`Leaderboard`;
    ``tables=False`` leaves out its tables, intervals and paired tests (the cells only).

    Raises :class:`DataError` naming the file for a missing or malformed run directory.
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
    for task, meta in board.tasks.items():
        declarations = board.declarations(task)
        task_cells = board.cells[board.cells["task"] == task] if len(board.cells) \
            else board.cells
        replicates = _Replicates(task_cells)
        rows = {}
        for system in meta.get("systems", board.systems):  # the systems the suite ran on it
            sub = task_cells[task_cells["system"] == system] if len(task_cells) else task_cells
            row = _system_row(sub, declarations, len(board.seeds), replicates, system)
            row["retrieval_key"] = retrieval_key(board.systems.get(system, {}))
            if board.baseline is not None:
                row.update(_compare_to_baseline(board, task, system, replicates))
            rows[system] = row
        if board.baseline is not None:
            adjusted = holm({system: row["p_value"] for system, row in rows.items()})
            for system, row in rows.items():
                row["p_holm"] = adjusted[system]
        table = pd.DataFrame.from_dict(rows, orient="index")
        table.index.name = "system"
        board.tables[task] = table
        main = board.main_metric(task)
        overview[task] = table[main] if main else pd.Series(math.nan, index=table.index)
    board.overview = pd.DataFrame(overview).reindex(list(board.systems))
    board.overview.index.name = "system"
    return board


# ---------------------------------------------------------------------------------------
# Display (shared by the terminal and the text publishers)
# ---------------------------------------------------------------------------------------


def _fmt(value, spec: str = ".3f") -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else format(value, spec)


def format_cost(name: str, value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if name == "index_memory_bytes":
        for unit in ("B", "KiB", "MiB", "GiB"):
            if abs(value) < 1024 or unit == "GiB":
                return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
            value /= 1024
    if name == "retrieval_qps":
        return f"{value:,.0f}"
    return f"{value:.3g}" if name.startswith("latency") else f"{value:.2f}"


def format_metric(row: pd.Series, metric: str, *, with_ci: bool) -> str:
    """``mean ± std [lo, hi]``: std over seeds, [lo, hi] the mean 95% bootstrap interval."""
    mean = row.get(metric, math.nan) if metric else math.nan
    if math.isnan(mean):
        return "failed" if row["status"] == "failed" else "–"
    text = _fmt(mean)
    std = row.get(f"{metric}_std", math.nan)
    if not math.isnan(std):
        text += f" ± {_fmt(std)}"
    lo, hi = row.get(f"{metric}_ci95_lo", math.nan), row.get(f"{metric}_ci95_hi", math.nan)
    if with_ci and not (math.isnan(lo) or math.isnan(hi)):
        text += f" [{_fmt(lo)}, {_fmt(hi)}]"
    return text


# Short headers for the terminal, where width is scarce.
COMPACT_HEADERS = {
    "weighted_precision": "w-prec", "weighted_recall": "w-rec", "accuracy": "acc",
    "macro_f1": "macro-F1", "head_f1": "head-F1", "tail_f1": "tail-F1",
    "retrieval_qps": "qps", "latency_p50_ms": "p50 ms", "latency_p99_ms": "p99 ms",
    "index_memory_bytes": "index mem", "index_build_s": "build s", "train_s": "train s",
    "retrieval_key": "key", "label_precision_at_k": "label P@k",
    "recall_vs_exact": "R vs exact", "all_padding": "no nbrs", "one_image": "one image",
}


def display_table(board: Leaderboard, task: str, *, compact: bool = False) -> pd.DataFrame:
    """``task``'s table as strings, ready to print.

    Full: every metric as ``mean ± std [CI]``, the status with its error. Compact (the
    terminal): the main metric in full, the others as means, short headers, and the status
    without the error (:func:`error_lines` lists those).
    """
    table = board.tables[task]
    main = board.main_metric(task)
    out = {}
    for system, row in table.iterrows():
        shown = {}
        for metric in board.metrics(task):
            if compact and metric != main:
                shown[metric] = _fmt(row[metric]) if not math.isnan(row[metric]) else (
                    "failed" if row["status"] == "failed" else "–")
            else:
                shown[metric] = format_metric(row, metric, with_ci=True)
        for cost in COST_COLUMNS:
            shown[cost] = format_cost(cost, row[cost])
        if table["retrieval_key"].astype(bool).any():
            shown["retrieval_key"] = row["retrieval_key"] or "–"
            for name in DIAGNOSTIC_COLUMNS:
                shown[name] = _fmt(row[name])
        if "delta_vs_baseline" in table.columns:
            if math.isnan(row["delta_vs_baseline"]):
                shown["vs baseline"] = "baseline" if system == board.baseline else "–"
            else:
                shown["vs baseline"] = (f"{row['delta_vs_baseline']:+.3f} "
                                        f"[{_fmt(row['delta_ci95_lo'], '+.3f')}, "
                                        f"{_fmt(row['delta_ci95_hi'], '+.3f')}] "
                                        f"p={row['p_value']:.3f} "
                                        f"(Holm {_fmt(row['p_holm'])})")
        shown["seeds"] = f"{row['n_seeds']}/{len(board.seeds)}"
        shown["status"] = row["status"] + (f": {row['error']}"
                                           if row["error"] and not compact else "")
        out[system] = shown
    frame = pd.DataFrame.from_dict(out, orient="index")
    frame.index.name = "system"
    if compact:
        frame = frame.rename(columns=COMPACT_HEADERS)
    return frame


def error_lines(board: Leaderboard, task: str) -> list[str]:
    """``system: error`` for every system of ``task`` with failed cells."""
    table = board.tables[task]
    return [f"{system}: {row['error']}" for system, row in table.iterrows() if row["error"]]


def display_overview(board: Leaderboard) -> pd.DataFrame:
    """Systems x tasks: the main metric as ``mean ± std``, or ``failed``."""
    out = {task: [format_metric(board.tables[task].loc[s], board.main_metric(task),
                                with_ci=False)
                  if s in board.tables[task].index and board.main_metric(task) else "–"
                  for s in board.systems]
           for task in board.tasks}
    frame = pd.DataFrame(out, index=list(board.systems))
    frame.index.name = "system"
    return frame


def describe(board: Leaderboard) -> str:
    """One line on what the numbers are, for the header of every rendering."""
    baseline = (f"; Δ vs baseline {board.baseline!r}: paired over the same resamples, "
                f"one-sided p, Holm-adjusted across systems") if board.baseline else ""
    return (f"suite {board.suite!r}, seeds {', '.join(map(str, board.seeds))}: mean ± std "
            f"over seeds [95% CI: a cluster bootstrap resampling test units (items; captions "
            f"and images for Recall@K), each carrying its rows from every seed]{baseline}")


def render_terminal(board: Leaderboard) -> str:
    """The leaderboard as plain text: the overview, then one compact table per task."""
    from tabulate import tabulate

    def grid(frame: pd.DataFrame) -> str:
        return tabulate(frame.reset_index(), headers="keys", tablefmt="simple",
                        showindex=False, disable_numparse=True)

    parts = [f"Leaderboard: {describe(board)}", "", "Overview (main metric per task)",
             grid(display_overview(board))]
    for task, meta in board.tasks.items():
        parts += ["", f"{task} ({meta['kind']}; main metric {meta['main_metric']})",
                  grid(display_table(board, task, compact=True))]
        parts += [f"  failed: {line}" for line in error_lines(board, task)]
    return "\n".join(parts)
