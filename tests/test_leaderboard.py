"""Leaderboards read from run directories written here in the runner's exact format.

``build_run`` is shared with test_publishers.py and test_cli_leaderboard.py.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from ravlm_bench.errors import DataError
from ravlm_bench.leaderboard import COST_COLUMNS, load_run, render_terminal
from ravlm_bench.metrics import (
    classification_metrics,
    paired_bootstrap,
    per_class_report,
    retrieval_recall,
)

CLASSES = ["circle", "square", "triangle", "star"]
SYSTEMS = {"concat": 0.55, "knn": 0.45, "xattn": 0.8}  # system -> accuracy it is built with
SEEDS = [0, 1, 2]
N_TEST = 150


def _cell_path(run_dir: Path, task: str, system: str, seed: int, suffix=".json") -> Path:
    return run_dir / "cells" / task / system / f"seed-{seed}{suffix}"


def _write_cell(run_dir: Path, cell: dict, predictions: dict | None = None) -> None:
    path = _cell_path(run_dir, cell["task"], cell["system"], cell["seed"])
    path.parent.mkdir(parents=True, exist_ok=True)
    if predictions is not None:
        np.savez(path.with_suffix(".npz"), **predictions)
    path.write_text(json.dumps(cell, indent=2))


def _cost(rng, retrieval: bool) -> dict:
    return {"retrieval_qps": float(rng.uniform(800, 1200)) if retrieval else None,
            "latency_p50_ms": float(rng.uniform(0.1, 0.2)) if retrieval else None,
            "latency_p99_ms": float(rng.uniform(0.3, 0.5)) if retrieval else None,
            "index_memory_bytes": int(rng.integers(10_000, 20_000)) if retrieval else None,
            "index_build_s": float(rng.uniform(0.01, 0.02)) if retrieval else None,
            "train_s": float(rng.uniform(1, 2))}


def build_run(root: Path, *, failed: dict | None = None, skip: tuple = ()) -> Path:
    """A run of a classification and a retrieval task, three systems, three seeds.

    ``failed``: {(task, system, seed): (plugin, message)} cells recorded as failed;
    ``skip``: (task, system, seed) cells not written (an unfinished run).
    """
    failed = failed or {}
    run_dir = root / "run"
    run_dir.mkdir(parents=True)
    run = {
        "suite": "demo", "suite_sha256": "ab" * 32, "baseline": "concat",
        "tasks": {"shape-category": {"kind": "classification", "main_metric": "weighted_f1",
                                     "classes": CLASSES},
                  "shape-retrieval": {"kind": "retrieval", "main_metric": "mean_recall"}},
        "systems": {name: {"image_encoder": {"name": "tiny-cnn"},
                           "text_encoder": {"name": "hash-bow"},
                           "retriever": {"name": "exact"}, "fusion_head": {"name": name}}
                    for name in SYSTEMS},
        "seeds": SEEDS, "created": "2025-01-01T00:00:00+00:00",
    }
    (run_dir / "run.json").write_text(json.dumps(run, indent=2))
    train_counts = np.array([60, 30, 20, 10])
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        # the test items differ per seed (like seeded hard negatives); -1: outside the labels
        y_true = rng.choice([-1, 0, 1, 2, 3], size=N_TEST, p=[0.04, 0.4, 0.3, 0.16, 0.1])
        for index, (system, accuracy) in enumerate(SYSTEMS.items()):
            sys_rng = np.random.default_rng(100 * seed + index)
            for task in run["tasks"]:
                key = (task, system, seed)
                if key in skip:
                    continue
                cell = {"task": task, "system": system, "seed": seed, "status": "ok",
                        "error": None, "timings": {"encode_s": 0.1, "index_s": 0.1,
                                                   "train_s": 1.0, "evaluate_s": 0.1},
                        "provenance": {"ravlm-bench": "0.1.0"}}
                if key in failed:
                    plugin, message = failed[key]
                    cell.update(status="failed", error={"plugin": plugin, "message": message},
                                metrics={}, cost={})
                    _write_cell(run_dir, cell)
                    continue
                cell["cost"] = _cost(sys_rng, retrieval=system != "concat")
                if task == "shape-category":
                    keep = sys_rng.random(N_TEST) < accuracy
                    y_pred = np.where(keep, np.clip(y_true, 0, None),
                                      sys_rng.integers(0, len(CLASSES), N_TEST))
                    cell["metrics"] = classification_metrics(
                        y_true, y_pred, num_classes=len(CLASSES), train_counts=train_counts,
                        classes=CLASSES, seed=seed, n_bootstrap=200)
                    cell["per_class"] = per_class_report(y_true, y_pred,
                                                         num_classes=len(CLASSES),
                                                         classes=CLASSES)
                    _write_cell(run_dir, cell, {"y_true": y_true, "y_pred": y_pred,
                                                "train_counts": train_counts})
                else:
                    images = sys_rng.normal(size=(20, 8)).astype(np.float32)
                    caption_image = np.repeat(np.arange(20), 5)
                    texts = images[caption_image] + (2.5 - 2 * accuracy) * sys_rng.normal(
                        size=(100, 8)).astype(np.float32)
                    cell["metrics"] = retrieval_recall(images, texts, caption_image)
                    _write_cell(run_dir, cell)
    return run_dir


def stored(run_dir: Path, task: str, system: str, metric: str) -> list[float]:
    """A metric of every finished cell, read straight from the cell files."""
    values = []
    for path in sorted((run_dir / "cells" / task / system).glob("seed-*.json")):
        cell = json.loads(path.read_text())
        if cell["status"] == "ok":
            values.append(cell["metrics"][metric])
    return values


@pytest.fixture
def run_dir(tmp_path) -> Path:
    return build_run(tmp_path, failed={
        ("shape-category", "knn", 1): ("retrievers", "search returned NaN scores"),
        ("shape-retrieval", "knn", 0): ("retrievers", "index build failed"),
        ("shape-retrieval", "knn", 1): ("retrievers", "index build failed"),
        ("shape-retrieval", "knn", 2): ("retrievers", "index build failed"),
    })


def test_tables_hold_mean_std_and_mean_ci_of_the_stored_cells(run_dir):
    board = load_run(run_dir)
    table = board.tables["shape-category"]
    assert list(table.index) == list(SYSTEMS)
    for system in ("concat", "xattn"):
        for metric in ("weighted_f1", "accuracy", "macro_f1", "head_f1", "tail_f1"):
            values = stored(run_dir, "shape-category", system, metric)
            assert table.loc[system, metric] == pytest.approx(np.mean(values))
            assert table.loc[system, f"{metric}_std"] == pytest.approx(np.std(values, ddof=1))
        bounds = [json.loads(p.read_text())["metrics"]["ci95"]["weighted_f1"]
                  for p in (run_dir / "cells/shape-category" / system).glob("seed-*.json")]
        assert table.loc[system, "weighted_f1_ci95_lo"] == pytest.approx(
            np.mean([b[0] for b in bounds]))
        assert table.loc[system, "weighted_f1_ci95_hi"] == pytest.approx(
            np.mean([b[1] for b in bounds]))
        assert table.loc[system, "n_seeds"] == 3 and table.loc[system, "status"] == "ok"
    assert list(board.metrics("shape-retrieval"))[0] == "mean_recall"
    retrieval = board.tables["shape-retrieval"]
    assert retrieval.loc["xattn", "t2i_R@5"] == pytest.approx(
        np.mean(stored(run_dir, "shape-retrieval", "xattn", "t2i_R@5")))
    assert set(COST_COLUMNS) <= set(table.columns)
    assert math.isnan(table.loc["concat", "retrieval_qps"])  # no retrieval, no cost
    assert table.loc["xattn", "train_s"] > 0
    assert board.overview.loc["xattn", "shape-retrieval"] == retrieval.loc["xattn", "mean_recall"]


def test_failed_cells_show_as_failed_with_the_error(run_dir):
    board = load_run(run_dir)
    partial = board.tables["shape-category"].loc["knn"]
    assert partial["status"] == "partial" and partial["n_seeds"] == 2
    assert partial["error"] == "seed 1: plugin 'retrievers': search returned NaN scores"
    assert partial["weighted_f1"] == pytest.approx(
        np.mean(stored(run_dir, "shape-category", "knn", "weighted_f1")))
    failed = board.tables["shape-retrieval"].loc["knn"]
    assert failed["status"] == "failed" and math.isnan(failed["mean_recall"])
    assert failed["error"] == "seeds 0, 1, 2: plugin 'retrievers': index build failed"
    text = render_terminal(board)
    assert "failed: knn: seeds 0, 1, 2: plugin 'retrievers': index build failed" in text
    assert "failed: knn: seed 1: plugin 'retrievers': search returned NaN scores" in text
    knn_rows = [line.split() for line in text.splitlines() if line.startswith("knn ")]
    assert knn_rows[1][-1] == "partial" and knn_rows[2][1] == "failed"


def test_paired_bootstrap_pools_the_seeds_both_systems_finished(run_dir):
    board = load_run(run_dir)
    table = board.tables["shape-category"]
    assert math.isnan(table.loc["concat", "delta_vs_baseline"])  # the baseline itself
    xattn = table.loc["xattn"]
    assert xattn["paired_seeds"] == 3 and xattn["delta_vs_baseline"] > 0
    assert xattn["delta_ci95_lo"] > 0 and xattn["p_value"] < 0.01

    def predictions(system, seed):
        with np.load(_cell_path(run_dir, "shape-category", system, seed, ".npz")) as data:
            return data["y_true"], data["y_pred"]

    seeds = [0, 2]  # knn's seed 1 failed, so only seeds 0 and 2 pair
    expected = paired_bootstrap(
        np.concatenate([predictions("knn", s)[0] for s in seeds]),
        np.concatenate([predictions("knn", s)[1] for s in seeds]),
        np.concatenate([predictions("concat", s)[1] for s in seeds]),
        num_classes=len(CLASSES))
    knn = table.loc["knn"]
    assert knn["paired_seeds"] == 2
    assert knn["delta_vs_baseline"] == pytest.approx(expected["delta"])
    assert knn["p_value"] == pytest.approx(expected["p_value"])
    assert "delta_vs_baseline" not in board.tables["shape-retrieval"].columns


def test_unfinished_runs_and_temporary_files(tmp_path):
    run_dir = build_run(tmp_path, skip=(("shape-category", "xattn", 2),
                                        ("shape-category", "knn", 0),
                                        ("shape-category", "knn", 1),
                                        ("shape-category", "knn", 2)))
    cell_dir = run_dir / "cells" / "shape-category" / "xattn"
    (cell_dir / ".seed-2.json.k3j2.tmp").write_text('{"task": "half-writ')
    (cell_dir / "seed-2.json.tmp").write_text("garbage")
    stray = run_dir / "cells" / "shape-category" / "removed-system"
    stray.mkdir()
    (stray / "seed-0.json").write_text(json.dumps(
        {"task": "shape-category", "system": "removed-system", "seed": 0, "status": "ok"}))
    board = load_run(run_dir)
    table = board.tables["shape-category"]
    assert table.loc["xattn", "status"] == "incomplete" and table.loc["xattn", "n_seeds"] == 2
    assert table.loc["knn", "status"] == "not run"
    assert "removed-system" not in table.index


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "run.json").unlink(), "run.json: not found"),
    (lambda d: (d / "run.json").write_text("{"), "run.json: not valid JSON"),
    (lambda d: (d / "run.json").write_text('{"suite": "x"}'), "key 'tasks' missing"),
    (lambda d: _cell_path(d, "shape-category", "knn", 0).write_text("[1"), "seed-0.json"),
])
def test_bad_run_directories_fail_with_one_line_naming_the_file(run_dir, damage, message):
    damage(run_dir)
    with pytest.raises(DataError, match=message) as info:
        load_run(run_dir)
    assert "\n" not in str(info.value)


def test_a_missing_run_directory_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="no such run directory"):
        load_run(tmp_path / "nowhere")
