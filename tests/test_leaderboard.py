"""Leaderboards read from run directories written here in the runner's exact format.

``build_run`` is shared with test_publishers.py and test_cli_leaderboard.py.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from ravlm_bench.foundation.errors import DataError
from ravlm_bench.plugin_host.contracts import (
    ClassificationData,
    LabelledSplit,
    PairedSplit,
    RetrievalData,
)
from ravlm_bench.publish.display import render_terminal
from ravlm_bench.publish.leaderboard import COST_COLUMNS, load_run
from ravlm_bench.scoring.evaluation import (
    ClassScores,
    RankingEvaluation,
    Rankings,
    Resampler,
    SingleLabelEvaluation,
    task_declaration,
)
from ravlm_bench.scoring.ranking import exact_top_k
from ravlm_bench.scoring.seed_variance import with_seed_variance
from ravlm_bench.store.ledger import RunLedger, record_checksum

CLASSES = ["circle", "square", "triangle", "star"]
SYSTEMS = {"concat": 0.55, "knn": 0.45, "xattn": 0.8}  # system -> accuracy it is built with
SEEDS = [0, 1, 2]
N_TEST = 150


def _cell_path(run_dir: Path, task: str, system: str, seed: int, suffix=".json") -> Path:
    return run_dir / "cells" / task / system / f"seed-{seed}{suffix}"


def _write_cell(run_dir: Path, cell: dict, evaluation=None) -> None:
    """Written as the runner writes it (the ledger), with its evaluation's arrays."""
    if evaluation is not None:
        cell["metrics"] = {**evaluation.metrics, "ci95": {}}
    RunLedger(run_dir).write_cell(cell, evaluation)


RESAMPLER = Resampler(n_resamples=300)


def _category_data(y_true: np.ndarray, train_counts: np.ndarray) -> ClassificationData:
    train_labels = np.repeat(np.arange(len(train_counts)), train_counts)
    def split(labels):
        return LabelledSplit(np.arange(len(labels)), [""] * len(labels), [""] * len(labels),
                             labels)
    return ClassificationData(CLASSES, split(train_labels), None, split(y_true))


def _retrieval_data(caption_image: np.ndarray) -> RetrievalData:
    n_images = int(caption_image.max()) + 1
    split = PairedSplit(np.arange(n_images), [""] * n_images, [""] * len(caption_image),
                        caption_image)
    return RetrievalData(split, None, split)


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
        "tasks": {"shape-category": {**task_declaration(SingleLabelEvaluation()),
                                     "classes": CLASSES},
                  "shape-retrieval": task_declaration(RankingEvaluation())},
        "systems": {name: {"image_encoder": {"name": "tiny-cnn"},
                           "text_encoder": {"name": "hash-bow"},
                           "retriever": {"name": "exact"}, "fusion_head": {"name": name}}
                    for name in SYSTEMS},
        "seeds": SEEDS, "created": "2025-01-01T00:00:00+00:00",
    }
    (run_dir / "run.json").write_text(json.dumps(run, indent=2))
    train_counts = np.array([60, 30, 20, 10])
    # every seed scores the same test items, as in a run; -1: outside the label space
    y_true = np.random.default_rng(99).choice([-1, 0, 1, 2, 3], size=N_TEST,
                                              p=[0.04, 0.4, 0.3, 0.16, 0.1])
    category = _category_data(y_true, train_counts)
    caption_image = np.repeat(np.arange(20), 5)
    retrieval = _retrieval_data(caption_image)
    for seed in SEEDS:
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
                    scores = np.eye(len(CLASSES), dtype=np.float32)[y_pred]
                    _write_cell(run_dir, cell, SingleLabelEvaluation().evaluate(
                        category, ClassScores(scores), RESAMPLER))
                else:
                    images = sys_rng.normal(size=(20, 8)).astype(np.float32)
                    texts = images[caption_image] + (2.5 - 2 * accuracy) * sys_rng.normal(
                        size=(100, 8)).astype(np.float32)
                    rankings = Rankings(t2i=exact_top_k(texts, images, 10, "ip")[0],
                                        i2t=exact_top_k(images, texts, 10, "ip")[0])
                    _write_cell(run_dir, cell, RankingEvaluation().evaluate(
                        retrieval, rankings, RESAMPLER))
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


def replicates(run_dir: Path, task: str, system: str, seed: int, metric: str) -> np.ndarray:
    with np.load(_cell_path(run_dir, task, system, seed, ".npz")) as data:
        return data[f"replicate.{metric}"]


def test_tables_hold_mean_std_and_cluster_bootstrap_ci_of_the_stored_cells(run_dir):
    board = load_run(run_dir)
    table = board.tables["shape-category"]
    conditional = load_run(run_dir, seed_variance=False).tables["shape-category"]
    # ranked by the main metric, best first
    assert set(table.index) == set(SYSTEMS)
    assert list(table["weighted_f1"]) == sorted(table["weighted_f1"], reverse=True)
    for system in ("concat", "xattn"):
        for metric in ("weighted_f1", "accuracy", "macro_f1", "head_f1", "tail_f1"):
            values = stored(run_dir, "shape-category", system, metric)
            assert table.loc[system, metric] == pytest.approx(np.mean(values))
            assert table.loc[system, f"{metric}_std"] == pytest.approx(np.std(values, ddof=1))
        # the cluster bootstrap: resample b is the seeds' mean on resample b
        pooled = np.mean([replicates(run_dir, "shape-category", system, s, "weighted_f1")
                          for s in SEEDS], axis=0)
        lo, hi = np.percentile(pooled, [2.5, 97.5])
        assert conditional.loc[system, "weighted_f1_ci95_lo"] == pytest.approx(lo)
        assert conditional.loc[system, "weighted_f1_ci95_hi"] == pytest.approx(hi)
        # by default widened by the seeds' variance beyond their item-level noise
        per_seed = np.stack([replicates(run_dir, "shape-category", system, s, "weighted_f1")
                             for s in SEEDS])
        widened = with_seed_variance(pooled, per_seed,
                                     stored(run_dir, "shape-category", system, "weighted_f1"))
        lo, hi = np.percentile(widened, [2.5, 97.5])
        assert table.loc[system, "weighted_f1_ci95_lo"] == pytest.approx(lo)
        assert table.loc[system, "weighted_f1_ci95_hi"] == pytest.approx(hi)
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
    # system, tier, main metric, ...: a failed system has no tier
    assert knn_rows[1][-1] == "partial" and knn_rows[2][1:3] == ["–", "failed"]


def test_the_paired_test_uses_the_seeds_both_systems_finished(run_dir):
    # conditional on the seeds here; the seed variance is tested below
    board = load_run(run_dir, seed_variance=False)
    table = board.tables["shape-category"]
    assert math.isnan(table.loc["concat", "delta_vs_baseline"])  # the baseline itself
    xattn = table.loc["xattn"]
    assert xattn["paired_seeds"] == 3 and xattn["delta_vs_baseline"] > 0
    assert xattn["delta_ci95_lo"] > 0 and xattn["p_value"] < 0.01

    seeds = [0, 2]  # knn's seed 1 failed, so only seeds 0 and 2 pair
    def seed_mean(system, what):
        return np.mean([what(system, s) for s in seeds], axis=0)
    delta = seed_mean("knn", lambda sy, s: stored_one(run_dir, sy, s)) - seed_mean(
        "concat", lambda sy, s: stored_one(run_dir, sy, s))
    resampled = seed_mean("knn", lambda sy, s: replicates(
        run_dir, "shape-category", sy, s, "weighted_f1")) - seed_mean(
        "concat", lambda sy, s: replicates(run_dir, "shape-category", sy, s, "weighted_f1"))
    knn = table.loc["knn"]
    assert knn["paired_seeds"] == 2
    assert knn["delta_vs_baseline"] == pytest.approx(delta)
    assert knn["p_value"] == pytest.approx((1 + (resampled <= 0).sum()) / (1 + len(resampled)))
    # Holm over the two systems compared with the baseline
    smaller, larger = sorted([knn["p_value"], xattn["p_value"]])
    holm = {smaller: min(1, 2 * smaller)}
    holm[larger] = max(holm[smaller], min(1, larger))
    assert knn["p_holm"] == pytest.approx(holm[knn["p_value"]])
    assert xattn["p_holm"] == pytest.approx(holm[xattn["p_value"]])
    # the tables' two-sided p: twice the smaller tail, capped at 1, Holm-adjusted alike
    upper = (1 + (resampled >= 0).sum()) / (1 + len(resampled))
    assert knn["p_two_sided"] == pytest.approx(min(1.0, 2 * min(knn["p_value"], upper)))
    assert xattn["p_two_sided"] >= xattn["p_value"]
    smaller, larger = sorted([knn["p_two_sided"], xattn["p_two_sided"]])
    assert sorted([knn["p_two_sided_holm"], xattn["p_two_sided_holm"]]) == pytest.approx(
        [min(1, 2 * smaller), max(min(1, 2 * smaller), min(1, larger))])
    # retrieval rows carry intervals and the paired test too
    retrieval = board.tables["shape-retrieval"].loc["xattn"]
    assert retrieval["mean_recall_ci95_lo"] <= retrieval["mean_recall"] \
        <= retrieval["mean_recall_ci95_hi"]
    assert retrieval["paired_seeds"] == 3 and not math.isnan(retrieval["p_value"])


def test_by_default_the_paired_test_widens_by_the_per_seed_differences(run_dir):
    table = load_run(run_dir).tables["shape-category"]
    seeds = [0, 2]
    per_seed = np.stack([
        replicates(run_dir, "shape-category", "knn", s, "weighted_f1")
        - replicates(run_dir, "shape-category", "concat", s, "weighted_f1") for s in seeds])
    points = np.array([stored_one(run_dir, "knn", s) - stored_one(run_dir, "concat", s)
                       for s in seeds])
    resampled = with_seed_variance(per_seed.mean(axis=0), per_seed, points)
    knn = table.loc["knn"]
    assert knn["p_value"] == pytest.approx((1 + (resampled <= 0).sum()) / (1 + len(resampled)))
    lo, hi = np.percentile(resampled, [2.5, 97.5])
    assert (knn["delta_ci95_lo"], knn["delta_ci95_hi"]) == pytest.approx((lo, hi))


def stored_one(run_dir: Path, system: str, seed: int) -> float:
    cell = json.loads(_cell_path(run_dir, "shape-category", system, seed).read_text())
    return cell["metrics"]["weighted_f1"]


def test_repeating_a_seed_does_not_narrow_the_intervals(tmp_path):
    """Seeds are not more test items: three copies of one seed give one seed's interval."""
    widths = []
    for copies in (1, 3):
        root = tmp_path / str(copies)
        run_dir = build_run(root)
        for system in SYSTEMS:
            for task in ("shape-category", "shape-retrieval"):
                for seed in SEEDS[1:copies] if copies > 1 else []:
                    for suffix in (".json", ".npz"):
                        source = _cell_path(run_dir, task, system, 0, suffix)
                        target = _cell_path(run_dir, task, system, seed, suffix)
                        data = source.read_bytes()
                        if suffix == ".json":
                            cell = json.loads(data)
                            cell["seed"] = seed
                            cell["record_sha256"] = record_checksum(cell)
                            data = json.dumps(cell).encode()
                        target.write_bytes(data)
        if copies == 1:
            run = json.loads((run_dir / "run.json").read_text())
            run["seeds"] = [0]
            (run_dir / "run.json").write_text(json.dumps(run))
        table = load_run(run_dir).tables["shape-category"]
        xattn = table.loc["xattn"]
        widths.append((xattn["delta_ci95_hi"] - xattn["delta_ci95_lo"],
                       xattn["weighted_f1_ci95_hi"] - xattn["weighted_f1_ci95_lo"]))
    assert widths[0] == pytest.approx(widths[1])


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


def test_a_median_aggregated_metric_has_median_intervals_and_deltas(tmp_path):
    run_dir = build_run(tmp_path)
    run = json.loads((run_dir / "run.json").read_text())
    for metric in run["tasks"]["shape-category"]["metrics"]:
        if metric["name"] == "weighted_f1":
            metric["aggregate"] = "median"
    (run_dir / "run.json").write_text(json.dumps(run))
    board = load_run(run_dir)
    xattn = board.tables["shape-category"].loc["xattn"]
    assert xattn["weighted_f1"] == pytest.approx(
        np.median(stored(run_dir, "shape-category", "xattn", "weighted_f1")))

    def median_replicates(system):
        return np.median([replicates(run_dir, "shape-category", system, s, "weighted_f1")
                          for s in SEEDS], axis=0)

    pooled = median_replicates("xattn")
    assert (xattn["weighted_f1_ci95_lo"], xattn["weighted_f1_ci95_hi"]) == pytest.approx(
        tuple(np.percentile(pooled, [2.5, 97.5])))
    concat = board.tables["shape-category"].loc["concat"]
    assert xattn["delta_vs_baseline"] == pytest.approx(
        xattn["weighted_f1"] - concat["weighted_f1"])
    resampled = pooled - median_replicates("concat")
    assert xattn["p_value"] == pytest.approx((1 + (resampled <= 0).sum()) / (1 + len(resampled)))


def test_systems_without_a_paired_test_share_a_tier(run_dir):
    """A main metric without resamples has no paired test: nothing shows the systems to
    differ, so one tier holds them all (ranked by the point values still)."""
    from ravlm_bench.publish.leaderboard import _task_table

    board = load_run(run_dir, tables=False)
    for metric in board.tasks["shape-category"]["metrics"]:
        metric["bootstrap"] = None
    table = _task_table(board, "shape-category")
    ranked = table[table["weighted_f1"].notna()]
    assert list(ranked["weighted_f1"]) == sorted(ranked["weighted_f1"], reverse=True)
    assert set(ranked["tier"]) == {1} and ranked["p_vs_above"].isna().all()
    # with resamples, the same systems fall into two tiers (see the publishers' tests)
    assert set(load_run(run_dir, seed_variance=False).tables["shape-category"]["tier"]) == {1, 2}
