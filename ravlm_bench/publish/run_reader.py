"""Reading a run directory back for publishing, checked: run.json, the cells, their arrays.

:func:`read_run` returns ``run.json`` (its tasks' metric declarations checked, runs made
before tasks declared their metrics given those of their kind) and one row per cell record
(:func:`ravlm_bench.store.cell_files.read_cell`, so a record that fails its checksum stops
the reading), flattened to ``metric:<name>``, ``ci95_lo:<name>``, ``cost:<name>``,
``diag:<name>`` and ``fingerprint:<kind>`` columns. :class:`Replicates` loads a finished
cell's ``replicate.<metric>`` arrays, the metric on each shared bootstrap resample, through
:func:`ravlm_bench.store.cell_files.read_arrays`. Every problem is a :class:`DataError`
whose message is one line naming the file.
"""

from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ravlm_bench.foundation.errors import DataError
from ravlm_bench.scoring.evaluation import Metric
from ravlm_bench.scoring.metrics import CLASSIFICATION_METRICS
from ravlm_bench.store.cell_files import REPLICATE_PREFIX, read_arrays, read_cell

log = logging.getLogger(__name__)

RETRIEVAL_METRICS = ("i2t_R@1", "i2t_R@5", "i2t_R@10", "t2i_R@1", "t2i_R@5", "t2i_R@10",
                     "mean_recall")
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


def read_run(run_dir: str | Path) -> tuple[dict, pd.DataFrame]:
    """``run_dir``'s run.json and its cells, checked, without computing any table.

    Cells of tasks, systems or seeds that run.json does not list are ignored, as is every
    file under ``cells/`` not named ``seed-<n>.json`` (temporary files of a running run).
    """
    run_dir = Path(run_dir)
    run = _read_run_json(run_dir)
    return run, _read_cells(run_dir, run)


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


def _check_cell(path: Path, cell: dict) -> None:
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


def _cell_row(path: Path, cell: dict) -> dict:
    _check_cell(path, cell)
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
    rows: list[dict[str, Any]] = []
    seen: dict[tuple[str, str, int], Path] = {}  # (task, system, seed) -> its file
    wanted_seeds = {int(s) for s in run["seeds"]}
    cells_dir = run_dir / "cells"
    paths = sorted(cells_dir.glob("*/*/seed-*.json")) if cells_dir.is_dir() else []
    for path in paths:
        if not _CELL_FILE.match(path.name):
            continue
        cell, problem = read_cell(path)
        if cell is None:  # read_cell then says what is wrong in problem
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


class Replicates:
    """The resample values of a task's finished cells (rows of :func:`read_run`'s cells),
    each cell's arrays read once and checked against the checksum its record holds."""

    def __init__(self, cells: pd.DataFrame):
        self.cells = cells
        self._loaded: dict[str, dict[str, np.ndarray]] = {}

    def of(self, system: str, seeds: list[int], metric: str) -> dict[int, np.ndarray]:
        """seed -> ``metric`` on each resample, for ``system``'s finished cells among
        ``seeds`` whose arrays hold that metric.

        :raises DataError: a cell's arrays are missing, damaged or unreadable.
        """
        out = {}
        ok = self.cells[(self.cells["system"] == system) & (self.cells["status"] == "ok")] \
            if len(self.cells) else self.cells
        for row in ok.to_dict("records"):
            if row["seed"] not in seeds:
                continue
            if row["path"] not in self._loaded:
                self._loaded[row["path"]] = _replicates(row)
            values = self._loaded[row["path"]].get(metric)
            if values is not None:
                out[row["seed"]] = values
        return out


def _replicates(row: dict) -> dict[str, np.ndarray]:
    arrays = read_arrays(Path(row["path"]), row.get("arrays_sha256"),
                         wanted=lambda name: name.startswith(REPLICATE_PREFIX))
    return {name[len(REPLICATE_PREFIX):]: np.asarray(values, np.float64)
            for name, values in arrays.items()}
