"""Leaderboards: read a run directory into tables, and render them for the terminal.

A run directory (written by the runner) holds ``run.json`` and one ``seed-<n>.json`` per
finished cell under ``cells/<task>/<system>/``, with a ``seed-<n>.npz`` of predictions for
classification cells. :func:`load_run` turns it into a :class:`Leaderboard`: per-task tables
(systems as rows; each metric as mean and sample standard deviation over the seeds that
finished, with the mean of the per-seed 95% CI bounds; the cost columns beside them), an
overview of the main metric (systems x tasks), and a paired bootstrap of every system against
the run's baseline. Publishers (plugins) write these tables to files.
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

from ravlm_bench.errors import DataError
from ravlm_bench.metrics import CLASSIFICATION_METRICS, paired_bootstrap

log = logging.getLogger(__name__)

RETRIEVAL_METRICS = ("i2t_R@1", "i2t_R@5", "i2t_R@10", "t2i_R@1", "t2i_R@5", "t2i_R@10",
                     "mean_recall")
COST_COLUMNS = ("retrieval_qps", "latency_p50_ms", "latency_p99_ms", "index_memory_bytes",
                "index_build_s", "train_s")
COMPARISON_COLUMNS = ("delta_vs_baseline", "delta_ci95_lo", "delta_ci95_hi", "p_value",
                      "paired_seeds")
# Only files named exactly so are cells; the runner's temporary files never match.
_CELL_FILE = re.compile(r"^seed-(\d+)\.json$")
PAIRED_RESAMPLES = 1000


@dataclass
class Leaderboard:
    """Everything a publisher needs, as plain data and pandas DataFrames.

    ``tables[task]``: index ``system``; per metric ``m``: columns ``m`` (mean), ``m_std``,
    ``m_ci95_lo``, ``m_ci95_hi``; then :data:`COST_COLUMNS` (means), ``n_seeds`` (finished
    seeds), ``n_failed``, ``status`` (``ok``, ``failed``, ``partial``, ``incomplete``,
    ``not run``), ``error``, and for classification :data:`COMPARISON_COLUMNS`.
    ``overview``: index ``system``, one column per task: the main metric's mean.
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
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    overview: pd.DataFrame | None = None

    def metrics(self, task: str) -> list[str]:
        """The metric columns of ``task``'s table, main metric first."""
        meta = self.tasks[task]
        known = CLASSIFICATION_METRICS if meta["kind"] == "classification" else RETRIEVAL_METRICS
        cells = self.cells[self.cells["task"] == task] if len(self.cells) else self.cells
        found = {c[7:] for c in cells.columns
                 if c.startswith("metric:") and cells[c].notna().any()}
        main = meta["main_metric"]
        names = list(known) + sorted(found - set(known))  # metrics a third-party task adds
        return [main] + [m for m in names if m != main]

    def main_metric(self, task: str) -> str:
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
        if not isinstance(meta, dict) or meta.get("kind") not in ("classification", "retrieval"):
            raise DataError(f"{path}: tasks.{task}.kind must be 'classification' or 'retrieval'")
        if not isinstance(meta.get("main_metric"), str):
            raise DataError(f"{path}: tasks.{task}.main_metric missing")
    return run


def _cell_row(path: Path, cell: dict) -> dict:
    for key in ("task", "system", "seed", "status"):
        if key not in cell:
            raise DataError(f"{path}: cell without key {key!r}")
    if cell["status"] not in ("ok", "failed"):
        raise DataError(f"{path}: status {cell['status']!r} is neither 'ok' nor 'failed'")
    error = cell.get("error") or {}
    row = {"task": cell["task"], "system": cell["system"], "seed": int(cell["seed"]),
           "status": cell["status"], "error_plugin": error.get("plugin"),
           "error_message": error.get("message"), "path": str(path)}
    metrics = cell.get("metrics") or {}
    for name, value in metrics.items():
        if name != "ci95" and isinstance(value, (int, float)) and not isinstance(value, bool):
            row[f"metric:{name}"] = float(value)
    for name, bounds in (metrics.get("ci95") or {}).items():
        if isinstance(bounds, (list, tuple)) and len(bounds) == 2 and None not in bounds:
            row[f"ci95_lo:{name}"], row[f"ci95_hi:{name}"] = float(bounds[0]), float(bounds[1])
    for name, value in (cell.get("cost") or {}).items():
        row[f"cost:{name}"] = float(value) if isinstance(value, (int, float)) else math.nan
    return row


def _read_cells(run_dir: Path, run: dict) -> pd.DataFrame:
    rows, seen = [], {}
    wanted_seeds = {int(s) for s in run["seeds"]}
    cells_dir = run_dir / "cells"
    paths = sorted(cells_dir.glob("*/*/seed-*.json")) if cells_dir.is_dir() else []
    for path in paths:
        if not _CELL_FILE.match(path.name):
            continue
        row = _cell_row(path, _read_json(path))
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


def _load_predictions(cell_json: str) -> tuple[np.ndarray, np.ndarray] | None:
    path = Path(cell_json).with_suffix(".npz")
    if not path.is_file():
        log.warning("%s: no predictions file; the paired test skips this cell", path)
        return None
    try:
        with np.load(path) as data:
            return np.asarray(data["y_true"], np.int64), np.asarray(data["y_pred"], np.int64)
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(f"{path}: unreadable predictions ({exc}); rerun the cell "
                        f"with ravlm-bench run --force") from None


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


def _system_row(sub: pd.DataFrame, metrics: list[str], n_seeds: int) -> dict:
    ok = sub[sub["status"] == "ok"] if len(sub) else sub
    failed = sub[sub["status"] == "failed"] if len(sub) else sub
    row: dict = {}

    def column(name: str) -> pd.Series:
        return ok[name].dropna() if name in ok.columns else pd.Series(dtype=float)

    for metric in metrics:
        values = column(f"metric:{metric}")
        row[metric] = values.mean() if len(values) else math.nan
        row[f"{metric}_std"] = values.std(ddof=1) if len(values) > 1 else math.nan
        lo, hi = column(f"ci95_lo:{metric}"), column(f"ci95_hi:{metric}")
        row[f"{metric}_ci95_lo"] = lo.mean() if len(lo) else math.nan
        row[f"{metric}_ci95_hi"] = hi.mean() if len(hi) else math.nan
    for cost in COST_COLUMNS:
        values = column(f"cost:{cost}")
        row[cost] = values.mean() if len(values) else math.nan
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


def _compare_to_baseline(board: Leaderboard, task: str, system: str) -> dict:
    """Paired bootstrap of ``system`` against the baseline, pooled over seeds.

    For every seed where both cells finished and scored the same test items, the
    predictions are concatenated (seed by seed, so items stay paired); one paired bootstrap
    then runs over the pooled items.
    """
    empty = dict.fromkeys(COMPARISON_COLUMNS, math.nan)
    empty["paired_seeds"] = 0
    cells = board.cells
    if system == board.baseline or not len(cells):
        return empty
    ok = cells[(cells["task"] == task) & (cells["status"] == "ok")].set_index(["system", "seed"])
    truth, pred_a, pred_b = [], [], []
    for seed in board.seeds:
        if (system, seed) not in ok.index or (board.baseline, seed) not in ok.index:
            continue
        a = _load_predictions(ok.loc[(system, seed), "path"])
        b = _load_predictions(ok.loc[(board.baseline, seed), "path"])
        if a is None or b is None:
            continue
        if not np.array_equal(a[0], b[0]):
            log.warning("task %s seed %s: %s and %s scored different test items; not paired",
                        task, seed, system, board.baseline)
            continue
        truth.append(a[0])
        pred_a.append(a[1])
        pred_b.append(b[1])
    if not truth:
        return empty
    classes = board.tasks[task].get("classes")
    result = paired_bootstrap(
        np.concatenate(truth), np.concatenate(pred_a), np.concatenate(pred_b),
        metric=board.main_metric(task), n_resamples=PAIRED_RESAMPLES, seed=0,
        num_classes=len(classes) if classes else None)
    lo, hi = result["ci95"] or (math.nan, math.nan)
    return {"delta_vs_baseline": result["delta"], "delta_ci95_lo": lo, "delta_ci95_hi": hi,
            "p_value": result["p_value"], "paired_seeds": len(truth)}


def load_run(run_dir: str | Path) -> Leaderboard:
    """Read ``run_dir`` (run.json and the finished cells) into a :class:`Leaderboard`.

    Raises :class:`DataError` naming the file for a missing or malformed run directory.
    Cells of tasks, systems or seeds that run.json does not list are ignored, as is every
    file under ``cells/`` not named ``seed-<n>.json`` (temporary files of a running run).
    """
    run_dir = Path(run_dir)
    run = _read_run_json(run_dir)
    board = Leaderboard(
        run_dir=run_dir, suite=run["suite"], suite_sha256=str(run.get("suite_sha256", "")),
        baseline=run.get("baseline"), tasks=run["tasks"], systems=run["systems"],
        seeds=[int(s) for s in run["seeds"]], created=str(run.get("created", "")),
        cells=_read_cells(run_dir, run),
    )
    if board.baseline is not None and board.baseline not in board.systems:
        raise DataError(f"{run_dir / 'run.json'}: baseline {board.baseline!r} is not one of "
                        f"the systems ({', '.join(board.systems)})")
    overview = {}
    for task, meta in board.tasks.items():
        metrics = board.metrics(task)
        rows = {}
        for system in meta.get("systems", board.systems):  # the systems the suite ran on it
            sub = board.cells[(board.cells["task"] == task) & (board.cells["system"] == system)] \
                if len(board.cells) else board.cells
            row = _system_row(sub, metrics, len(board.seeds))
            if meta["kind"] == "classification" and board.baseline is not None:
                row.update(_compare_to_baseline(board, task, system))
            rows[system] = row
        table = pd.DataFrame.from_dict(rows, orient="index")
        table.index.name = "system"
        board.tables[task] = table
        overview[task] = table[board.main_metric(task)]
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
    mean = row.get(metric, math.nan)
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
        if "delta_vs_baseline" in table.columns:
            if math.isnan(row["delta_vs_baseline"]):
                shown["vs baseline"] = "baseline" if system == board.baseline else "–"
            else:
                shown["vs baseline"] = (f"{row['delta_vs_baseline']:+.3f} "
                                        f"[{_fmt(row['delta_ci95_lo'], '+.3f')}, "
                                        f"{_fmt(row['delta_ci95_hi'], '+.3f')}] "
                                        f"p={row['p_value']:.3f}")
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
                                with_ci=False) if s in board.tables[task].index else "–"
                  for s in board.systems]
           for task in board.tasks}
    frame = pd.DataFrame(out, index=list(board.systems))
    frame.index.name = "system"
    return frame


def describe(board: Leaderboard) -> str:
    """One line on what the numbers are, for the header of every rendering."""
    baseline = f"; Δ vs baseline {board.baseline!r}: paired bootstrap, seeds pooled" \
        if board.baseline else ""
    return (f"suite {board.suite!r}, seeds {', '.join(map(str, board.seeds))}: mean ± std "
            f"over seeds [mean 95% bootstrap CI]{baseline}")


def render_terminal(board: Leaderboard) -> str:
    """The leaderboard as plain text: the overview, then one compact table per task."""
    from tabulate import tabulate

    def grid(frame: pd.DataFrame) -> str:
        return tabulate(frame.reset_index(), headers="keys", tablefmt="simple",
                        showindex=False, disable_numparse=True)

    parts = [f"Leaderboard: {describe(board)}", "", "Overview (main metric per task)",
             grid(display_overview(board))]
    for task, meta in board.tasks.items():
        parts += ["", f"{task} ({meta['kind']}, main metric {meta['main_metric']})",
                  grid(display_table(board, task, compact=True))]
        parts += [f"  failed: {line}" for line in error_lines(board, task)]
    return "\n".join(parts)
