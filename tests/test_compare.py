"""`ravlm-bench compare`: paired tests of run B against run A on real run directories.

Run A is ``build_run``'s run; each run B starts as a copy of it and has some cells
rewritten through the ledger, as the runner writes them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from clitools import run_cli
from test_leaderboard import (
    CLASSES,
    RESAMPLER,
    SEEDS,
    _category_data,
    _cell_path,
    _retrieval_data,
    _write_cell,
    build_run,
    replicates,
    stored_one,
)

from ravlm_bench.cli import main
from ravlm_bench.foundation.errors import DataError
from ravlm_bench.publish.compare import compare_runs
from ravlm_bench.scoring.evaluation import (
    ClassScores,
    RankingEvaluation,
    Rankings,
    Resampler,
    SingleLabelEvaluation,
)

TASK = "shape-category"


@pytest.fixture(scope="module")
def run_a(tmp_path_factory) -> Path:
    return build_run(tmp_path_factory.mktemp("a"))


@pytest.fixture
def copy_of_a(run_a, tmp_path):
    """``copy_of_a("b")``: a private copy of run A to turn into a run B."""
    def copy(name: str) -> Path:
        return Path(shutil.copytree(run_a, tmp_path / name))
    return copy


def rescore(run_dir: Path, system: str, accuracy: float | list[float], *,
            resampler=RESAMPLER, shift_image_ids: int = 0,
            bootstrap: dict | None = None) -> None:
    """Rewrite ``system``'s shape-category cells: the same test items, predicted right with
    probability ``accuracy`` (or each seed's, from a list). ``shift_image_ids`` renames the
    test items (another test set); ``bootstrap``: the bootstrap settings the cells record."""
    for seed in SEEDS:
        p_right = accuracy[SEEDS.index(seed)] if isinstance(accuracy, list) else accuracy
        path = _cell_path(run_dir, TASK, system, seed)
        cell = json.loads(path.read_text())
        with np.load(path.with_suffix(".npz")) as arrays:
            y_true, train_counts = arrays["y_true"], arrays["train_counts"]
        rng = np.random.default_rng(1000 + seed)
        right = rng.random(len(y_true)) < p_right
        y_pred = np.where(right, np.clip(y_true, 0, None),
                          rng.integers(0, len(CLASSES), len(y_true)))
        evaluation = SingleLabelEvaluation().evaluate(
            _category_data(y_true, train_counts),
            ClassScores(np.eye(len(CLASSES), dtype=np.float32)[y_pred]), resampler)
        evaluation.predictions["image_ids"] = evaluation.predictions["image_ids"] \
            + shift_image_ids
        if bootstrap is not None:
            cell["bootstrap"] = bootstrap
        _write_cell(run_dir, cell, evaluation)


def row(comparison, system: str, task: str = TASK, metric: str = "weighted_f1"):
    [change] = [c for c in comparison.changes
                if (c.task, c.system, c.metric) == (task, system, metric)]
    return change


def test_identical_runs_change_nothing_and_every_p_is_one(run_a, copy_of_a, capsys):
    run_b = copy_of_a("b")
    for which in ("main", "all"):
        comparison = compare_runs(run_a, run_b, metrics=which)
        assert comparison.changes and all(c.tested for c in comparison.changes)
        for change in comparison.changes:
            # every resampled delta is 0, i.e. "not worse": p = (1 + n) / (1 + n)
            assert change.delta == 0 and change.delta_ci95 == (0, 0)
            assert change.p_regression == 1.0 and change.p_improvement == 1.0
            assert change.verdict == "no significant change" and change.paired_seeds == SEEDS
            # such a row cannot add a test: reported, not in Holm's family
            assert change.not_counted == "unchanged on every resample"
        assert comparison.n_tests == 0
    assert main(["compare", str(run_a), str(run_b)]) == 0
    assert "no significant regression" in capsys.readouterr().out


def test_a_degraded_system_is_a_significant_regression_and_exits_1(run_a, copy_of_a,
                                                                   capsys):
    run_b = copy_of_a("b")
    rescore(run_b, "xattn", accuracy=0.3)  # built with 0.8 in run A
    comparison = compare_runs(run_a, run_b)
    xattn = row(comparison, "xattn")
    assert xattn.verdict == "regression" and xattn.p_regression_holm < 0.05
    assert xattn.delta < 0 and xattn.delta_ci95[1] < 0
    # the test by hand: resample b of each run is its seeds' mean on resample b
    def pooled(run_dir):
        return np.mean([replicates(run_dir, TASK, "xattn", s, "weighted_f1") for s in SEEDS],
                       axis=0)
    resampled = pooled(run_b) - pooled(run_a)
    assert xattn.p_regression == (1 + (resampled >= 0).sum()) / (1 + len(resampled))
    # the unchanged systems are not in Holm's family: xattn's p is not multiplied by them
    assert comparison.n_tests == 1 and xattn.p_regression_holm == xattn.p_regression
    assert [c.verdict for c in comparison.changes if c is not xattn] \
        == ["no significant change"] * 5
    assert main(["compare", str(run_a), str(run_b)]) == 1
    out = capsys.readouterr().out
    assert "1 significant regression(s): shape-category / xattn / weighted_f1" in out
    assert [line.split()[-1] for line in out.splitlines()
            if line.startswith("shape-category   xattn")] == ["regression"]


def test_an_improvement_exits_0(run_a, copy_of_a):
    run_b = copy_of_a("b")
    rescore(run_b, "knn", accuracy=0.95)  # built with 0.45
    comparison = compare_runs(run_a, run_b)
    knn = row(comparison, "knn")
    assert knn.verdict == "improvement" and knn.delta > 0 and knn.p_improvement_holm < 0.05
    assert knn.p_regression > 0.95
    # conditional on the seeds, every resample is an improvement
    assert row(compare_runs(run_a, run_b, seed_variance=False), "knn").p_regression == 1.0
    assert comparison.exit_status == 0
    assert main(["compare", str(run_a), str(run_b)]) == 0


def test_a_retrained_model_whose_seeds_landed_elsewhere_is_not_a_regression(copy_of_a):
    """One seed of B trained worse, the others as before: conditional on these seeds the
    drop is significant; with the per-seed deltas' variance it is seed luck."""
    run_a, run_b = copy_of_a("a2"), copy_of_a("b")
    rescore(run_a, "knn", accuracy=0.6)
    rescore(run_b, "knn", accuracy=[0.35, 0.6, 0.6])
    conditional = row(compare_runs(run_a, run_b, seed_variance=False), "knn")
    assert conditional.delta < 0 and conditional.verdict == "regression"
    default = row(compare_runs(run_a, run_b), "knn")
    assert default.delta == conditional.delta and default.verdict == "no significant change"
    assert default.p_regression > 0.05 > conditional.p_regression


def test_lower_is_better_metrics_turn_the_test_around(run_a, copy_of_a):
    run_a, run_b = copy_of_a("a"), copy_of_a("b")
    for run_dir in (run_a, run_b):
        run = json.loads((run_dir / "run.json").read_text())
        for metric in run["tasks"][TASK]["metrics"]:
            metric["higher_is_better"] = False
        (run_dir / "run.json").write_text(json.dumps(run))
    rescore(run_b, "xattn", accuracy=0.3)
    xattn = row(compare_runs(run_a, run_b), "xattn")
    assert xattn.delta < 0 and xattn.verdict == "improvement" and xattn.p_regression == 1.0


@pytest.mark.parametrize("change_b, reason", [
    (dict(shift_image_ids=10_000), "test items differ (image_ids) on seed 0"),
    (dict(resampler=Resampler(n_resamples=200)), "resample counts differ (A: 300, B: 200)"),
    (dict(bootstrap={"resamples": 300, "resample_seed": 7}), "bootstrap settings differ"),
])
def test_runs_on_other_test_items_or_resamples_are_unpaired(run_a, copy_of_a, capsys,
                                                            change_b, reason):
    run_a, run_b = copy_of_a("a"), copy_of_a("b")
    rescore(run_a, "xattn", accuracy=0.8, bootstrap={"resamples": 300, "resample_seed": 0})
    rescore(run_b, "xattn", accuracy=0.3, **change_b)
    comparison = compare_runs(run_a, run_b)
    xattn = row(comparison, "xattn")
    assert xattn.verdict == "unpaired" and reason in xattn.reason
    assert xattn.delta < 0 and not xattn.tested and xattn.delta_ci95 is None
    assert comparison.n_tests == 0 and comparison.exit_status == 0  # the rest is unchanged
    assert main(["compare", str(run_a), str(run_b)]) == 0
    out = capsys.readouterr().out
    assert f"unpaired: {reason}" in out and "1 unpaired row(s) not tested" in out


def test_test_splits_of_other_sizes_are_unpaired(run_a, copy_of_a):
    run_a, run_b = copy_of_a("a"), copy_of_a("b")
    for run_dir, size in ((run_a, 150), (run_b, 151)):
        run = json.loads((run_dir / "run.json").read_text())
        run["tasks"][TASK]["sizes"] = {"train": 120, "test": size}
        (run_dir / "run.json").write_text(json.dumps(run))
    comparison = compare_runs(run_a, run_b)
    assert {row(comparison, s).reason for s in ("concat", "knn", "xattn")} \
        == {"test sizes differ (A: 150, B: 151)"}
    # the retrieval task still pairs (its rows are tested, unchanged, not counted)
    assert {c.not_counted for c in comparison.changes if c.task == "shape-retrieval"} \
        == {"unchanged on every resample"}


def test_only_the_seeds_both_runs_finished_are_paired(run_a, tmp_path):
    run_b = build_run(tmp_path, failed={(TASK, "knn", 1): ("retrievers", "NaN scores")})
    knn = row(compare_runs(run_a, run_b), "knn")
    assert knn.paired_seeds == [0, 2] and knn.delta == 0 and knn.p_regression == 1.0
    # the point value: the mean over the paired seeds of A's cells, as stored
    assert knn.a == pytest.approx(np.mean([stored_one(run_a, "knn", s) for s in (0, 2)]))


def test_a_system_that_only_fails_in_b_counts_as_a_regression(run_a, tmp_path):
    failed = {(TASK, "knn", seed): ("retrievers", "index | build failed") for seed in SEEDS}
    comparison = compare_runs(run_a, build_run(tmp_path, failed=failed))
    knn = row(comparison, "knn")
    assert knn.verdict == "failed in B" and "index | build failed" in knn.reason
    assert comparison.exit_status == 1


def test_tasks_and_systems_in_one_run_only_are_listed_not_compared(run_a, copy_of_a):
    run_b = copy_of_a("b")
    run = json.loads((run_b / "run.json").read_text())
    del run["systems"]["knn"], run["tasks"]["shape-retrieval"]
    (run_b / "run.json").write_text(json.dumps(run))
    comparison = compare_runs(run_a, run_b)
    verdicts = {(c.task, c.system): c.verdict for c in comparison.changes}
    assert verdicts[(TASK, "knn")] == "missing in B"
    assert {verdicts[("shape-retrieval", s)] for s in ("concat", "knn", "xattn")} \
        == {"missing in B"}
    assert all(c.tested for c in comparison.changes if c.verdict != "missing in B")
    assert comparison.n_tests == 0 and comparison.exit_status == 0
    # the other way round
    assert row(compare_runs(run_b, run_a), "knn").verdict == "missing in A"


def test_every_metric_is_one_holm_family_and_a_too_small_one_is_said(run_a, copy_of_a):
    run_b = copy_of_a("b")
    for system in ("concat", "knn", "xattn"):
        rescore(run_b, system, accuracy=0.3)
    comparison = compare_runs(run_a, run_b, metrics="all")
    # 3 systems x 6 classification metrics: accuracy repeats weighted recall's test (one
    # number by definition) and the unchanged retrieval task adds none
    assert comparison.n_tests == 18
    accuracy = row(comparison, "xattn", metric="accuracy")
    assert accuracy.not_counted == "the same test as weighted_recall"
    assert accuracy.p_regression_holm == row(comparison, "xattn",
                                             metric="weighted_recall").p_regression_holm
    assert {c.not_counted for c in comparison.changes if c.task == "shape-retrieval"} \
        == {"unchanged on every resample"}
    xattn = row(comparison, "xattn")
    assert xattn.p_regression_holm == min(1, 18 * xattn.p_regression)
    # 300 resamples: p >= 1/301, and 18/301 > 0.05, so nothing can be significant
    assert xattn.verdict == "no significant change"
    assert "no row can be significant" in comparison.resolution_note


def test_the_cli_writes_json_and_exits_1_on_a_regression(run_a, copy_of_a, tmp_path):
    run_b = copy_of_a("b")
    rescore(run_b, "xattn", accuracy=0.3)
    out_json = tmp_path / "out" / "compare.json"
    done = run_cli("compare", str(run_a), str(run_b), "--json", str(out_json))
    assert done.returncode == 1, done.stderr
    assert f"wrote {out_json}" in done.stdout
    report = json.loads(out_json.read_text())
    assert report["run_a"]["path"] == str(run_a) and report["run_b"]["path"] == str(run_b)
    assert (report["metrics"], report["alpha"], report["n_tests"]) == ("main", 0.05, 1)
    assert (report["regressions"], report["exit_status"], report["note"]) == (1, 1, None)
    [xattn] = [r for r in report["rows"] if (r["task"], r["system"]) == (TASK, "xattn")]
    assert xattn["verdict"] == "regression" and xattn["metric"] == "weighted_f1"
    assert xattn["delta"] == pytest.approx(xattn["b"] - xattn["a"]) and xattn["delta"] < 0
    assert xattn["delta_ci95"][0] <= xattn["delta"] <= xattn["delta_ci95"][1]
    assert xattn["p_regression_holm"] < 0.05 and xattn["paired_seeds"] == SEEDS
    assert xattn["n_resamples"] == 300 and xattn["reason"] is None


def test_bad_input_exits_2_with_one_line(run_a, copy_of_a, tmp_path, capsys):
    assert main(["compare", str(run_a), str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip()
    assert "no such run directory" in err and "\n" not in err
    other = copy_of_a("other")
    run = json.loads((other / "run.json").read_text())
    run.update(suite="other", systems={"unrelated": {}}, baseline="unrelated")
    (other / "run.json").write_text(json.dumps(run))
    with pytest.raises(DataError, match="share no"):
        compare_runs(run_a, other)
    assert main(["compare", str(run_a), str(other)]) == 2
    err = capsys.readouterr().err.strip()
    assert "share no (task, system)" in err and "\n" not in err
    assert main(["compare", str(run_a), str(run_a), "--alpha", "2"]) == 2


def test_a_retrieval_cell_is_rescored_from_its_own_files(run_a):
    """Recall@K from the cell's arrays with numpy alone: the rankings and which image each
    caption shows are saved beside the metrics."""
    path = _cell_path(run_a, "shape-retrieval", "xattn", 0)
    metrics = json.loads(path.read_text())["metrics"]
    with np.load(path.with_suffix(".npz")) as arrays:
        t2i, i2t = arrays["t2i"], arrays["i2t"]
        caption_image, image_ids = arrays["caption_image"], arrays["image_ids"]
    assert len(image_ids) == len(i2t)
    for k in (1, 5, 10):
        t2i_hit = (t2i[:, :k] == caption_image[:, None]).any(axis=1)
        i2t_hit = [(caption_image[i2t[image, :k]] == image).any()
                   for image in range(len(i2t))]
        assert metrics[f"t2i_R@{k}"] == pytest.approx(t2i_hit.mean())
        assert metrics[f"i2t_R@{k}"] == pytest.approx(np.mean(i2t_hit))


def test_retrieval_cells_of_other_caption_maps_are_unpaired(run_a, copy_of_a):
    run_b = copy_of_a("b")
    # the same number of captions and images, but other captions for the images
    caption_image = np.roll(np.repeat(np.arange(20), 5), 1)
    for seed in SEEDS:
        path = _cell_path(run_b, "shape-retrieval", "xattn", seed)
        cell = json.loads(path.read_text())
        with np.load(path.with_suffix(".npz")) as arrays:
            rankings = Rankings(t2i=arrays["t2i"], i2t=arrays["i2t"])
        _write_cell(run_b, cell, RankingEvaluation().evaluate(
            _retrieval_data(caption_image), rankings, RESAMPLER))
    xattn = row(compare_runs(run_a, run_b), "xattn", task="shape-retrieval",
                metric="mean_recall")
    assert xattn.verdict == "unpaired" and "test items differ (caption_image)" in xattn.reason
