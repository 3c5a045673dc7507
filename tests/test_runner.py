"""The runner end to end on the tiny demo world: results, failures, resume, third parties.

The tiny suite runs once for the module (``tiny_run``); a test that reruns it works on a
copy. The killed run is a real child process, killed with SIGKILL part-way."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
from clitools import cli_command, cli_env, run_cli
from testhelpers import TINY_CONCAT_AND_KNN, TINY_SUITE_HEAD

SUITE = TINY_SUITE_HEAD + TINY_CONCAT_AND_KNN + """
[systems.xattn-exact]
retriever = "exact"
fusion_head = {{ name = "xattn", k = 5, epochs = 3, width = 32, heads = 2 }}

[systems.infonce-exact]
retriever = "exact"
joint_embedding = {{ name = "infonce", epochs = 3 }}

[tasks.coco-category]
systems = ["concat", "knn-exact", "xattn-exact"{extra_systems}]

[tasks.coco-retrieval]
systems = ["infonce-exact"]
{extra}
"""

FLAKY_PLUGIN = '''
import numpy as np
from ravlm_bench.api import hookimpl


class NanRetriever:
    """Breaks the contract: NaN scores."""

    score = np.nan

    def __init__(self, dim, metric):
        self.dim = dim

    def build(self, vectors, keys):
        self.keys = keys

    def search(self, queries, k):
        keys = np.tile(self.keys[:k], (len(queries), 1)).astype(np.int64)
        return keys, np.full(keys.shape, self.score, dtype=np.float32)


class InfRetriever(NanRetriever):
    """Breaks the contract: infinite scores (the fusion head must not be blamed)."""

    score = np.inf


class Flat:
    def __init__(self, dim, metric):
        self.dim = dim

    def build(self, vectors, keys):
        self.vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        self.keys = keys

    def search(self, queries, k):
        q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
        scores = q @ self.vectors.T
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return self.keys[order], np.take_along_axis(scores, order, 1).astype(np.float32)


@hookimpl
def register_retrievers(register):
    register("nan-retriever", NanRetriever)
    register("inf-retriever", InfRetriever)
    register("third-party-flat", Flat)
'''

EXTRA = """
[systems.xattn-thirdparty]
retriever = "third-party-flat"
fusion_head = { name = "xattn", k = 5, epochs = 3, width = 32, heads = 2 }

[systems.xattn-nan]
retriever = "nan-retriever"
fusion_head = { name = "xattn", k = 5, epochs = 3, width = 32, heads = 2 }

[systems.xattn-inf]
retriever = "inf-retriever"
fusion_head = { name = "xattn", k = 5, epochs = 3, width = 32, heads = 2 }
"""


def make_suite(tmp_path: Path, demo_world: Path, with_plugin: bool = False) -> Path:
    extra_systems = ', "xattn-thirdparty", "xattn-nan", "xattn-inf"' if with_plugin else ""
    text = SUITE.format(name="tiny", root=demo_world, extra_systems=extra_systems,
                        extra=EXTRA if with_plugin else "")
    path = tmp_path / "tiny.toml"
    path.write_text(textwrap.dedent(text))
    return path


def cell_metrics(run_dir: Path) -> dict:
    cells = {}
    for path in sorted((run_dir / "cells").rglob("seed-*.json")):
        record = json.loads(path.read_text())
        cells[str(path.relative_to(run_dir))] = (record["status"], record["metrics"])
    return cells


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, demo_world, cache):
    """(suite, run directory, the run's CompletedProcess) of the tiny suite, run once from
    an empty cache; never modified."""
    root = tmp_path_factory.mktemp("tiny")
    suite = make_suite(root, demo_world)
    run_dir = root / "run"
    result = run_cli("run", str(suite), "--out", str(run_dir), "--quiet", cache=cache)
    assert result.returncode == 0, result.stderr
    return suite, run_dir, result


def test_run_writes_cells_and_leaderboard(tmp_path, tiny_run, cache):
    suite, finished, result = tiny_run
    cells = cell_metrics(finished)
    assert len(cells) == 8 and all(status == "ok" for status, _ in cells.values())
    category = cells["cells/coco-category/xattn-exact/seed-0.json"][1]
    assert 0.0 <= category["weighted_f1"] <= 1.0 and "ci95" in category
    retrieval = cells["cells/coco-retrieval/infonce-exact/seed-1.json"][1]
    assert 0.0 <= retrieval["t2i_R@1"] <= retrieval["t2i_R@10"] <= 1.0
    record = json.loads((finished / "cells/coco-category/knn-exact/seed-0.json").read_text())
    assert set(record["timings"]) >= {"encode_s", "index_s", "train_s", "evaluate_s"}
    assert record["cost"]["retrieval_qps"] > 0
    assert record["provenance"]["versions"]["torch"].startswith("2.")
    assert record["provenance"]["components"]["retrievers"]["name"] == "exact"
    assert "coco-category" in result.stdout and "xattn-exact" in result.stdout

    # a rerun skips every finished cell; a different seed order gives the same metrics
    run_dir = tmp_path / "run"
    shutil.copytree(finished, run_dir)
    again = run_cli("run", str(suite), "--out", str(run_dir), "--quiet", cache=cache)
    assert again.returncode == 0, again.stderr
    assert "0 cells run, 8 already finished" in again.stdout
    assert cell_metrics(run_dir) == cells

    # --force recomputes every cell from the finished trainings; --retrain trains afresh
    xattn = "cells/coco-category/xattn-exact/seed-0.json"
    trained = json.loads((run_dir / xattn).read_text())
    for flag, reused in (("--force", True), ("--retrain", False)):
        rerun = run_cli("run", str(suite), "--out", str(run_dir), "--quiet", flag, cache=cache)
        assert rerun.returncode == 0, rerun.stderr
        assert "8 cells run, 0 already finished" in rerun.stdout
        assert cell_metrics(run_dir) == cells
        for path in (xattn, "cells/coco-retrieval/infonce-exact/seed-1.json"):
            assert json.loads((run_dir / path).read_text())["training"]["reused"] is reused
        record = json.loads((run_dir / xattn).read_text())
        # a reloaded training's cost is still what training it took
        assert (record["training"]["seconds"] == trained["training"]["seconds"]) is reused
        assert record["cost"]["train_s"] >= record["training"]["seconds"] > 0


def test_failed_cell_is_recorded_and_third_party_gets_rows(tmp_path, demo_world, cache):
    plugin = tmp_path / "flaky.py"
    plugin.write_text(FLAKY_PLUGIN)
    suite = make_suite(tmp_path, demo_world, with_plugin=True)
    run_dir = tmp_path / "run"
    result = run_cli("-p", str(plugin), "run", str(suite), "--out", str(run_dir), "--quiet",
                     cache=cache)
    assert result.returncode == 1
    failed = json.loads((run_dir / "cells/coco-category/xattn-nan/seed-0.json").read_text())
    assert failed["status"] == "failed"
    assert failed["error"]["plugin"] == "flaky"
    assert "retriever 'nan-retriever' (plugin 'flaky'): broke the contract" in \
        failed["error"]["message"]
    assert "failed: coco-category / xattn-nan / seed 0: retriever 'nan-retriever'" in result.stderr
    infinite = json.loads((run_dir / "cells/coco-category/xattn-inf/seed-0.json").read_text())
    assert "retriever 'inf-retriever' (plugin 'flaky'): broke the contract: search returned " \
        "NaN or infinite scores" in infinite["error"]["message"]
    third = json.loads((run_dir / "cells/coco-category/xattn-thirdparty/seed-1.json").read_text())
    assert third["status"] == "ok"
    assert "xattn-thirdparty" in result.stdout  # its own leaderboard row


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_leaderboard(tmp_path, tiny_run, cache):
    suite, whole, _ = tiny_run
    killed = tmp_path / "killed"
    process = subprocess.Popen(cli_command("run", str(suite), "--out", str(killed), "--quiet"),
                               env=cli_env(cache),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and process.poll() is None:
        if len(list((killed / "cells").rglob("seed-*.json"))) >= 3:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    partial = len(list((killed / "cells").rglob("seed-*.json")))
    assert 3 <= partial < 8, "the run should have been killed part-way"

    resumed = run_cli("run", str(suite), "--out", str(killed), "--quiet", cache=cache)
    assert resumed.returncode == 0, resumed.stderr
    assert "already finished" in resumed.stdout
    assert cell_metrics(killed) == cell_metrics(whole)
    # the published leaderboards agree on every quality column (cost columns are timings)
    cost = ["retrieval_qps", "latency_p50_ms", "latency_p99_ms", "index_memory_bytes",
            "index_build_s", "train_s"]
    tables = []
    for run_dir in (whole, killed):
        board = tmp_path / f"board-{len(tables)}"
        out = run_cli("leaderboard", str(run_dir), "--format", "csv", "--out", str(board),
                      cache=cache)
        assert out.returncode == 0, out.stderr
        tables.append(pd.read_csv(board / "leaderboard.csv").drop(columns=cost))
    pd.testing.assert_frame_equal(*tables)


@pytest.mark.parametrize("suite, dataset", [("coco", "coco"), ("flickr30k", "flickr30k"),
                                            ("vg", "visual_genome")])
def test_real_data_suites_fail_fast_without_their_data(tmp_path, suite, dataset):
    env_cache = tmp_path / "cache"
    result = run_cli("run", suite, "--out", str(tmp_path / "run"), cache=env_cache)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {Path(__file__).parents[1] / 'ravlm_bench' / 'suites' / f'{suite}.toml'}: "
        f"no data for {dataset!r}; set root in [data.{dataset}] or point $RAVLM_DATA at a "
        f"folder holding {dataset}/")
    assert not (tmp_path / "run" / "cells").exists()


FINETUNE_SUITE = """
seeds = [0]
[data.coco]
root = "{root}/coco"
[defaults]
image_encoder = {{ name = "resnet18", image_size = 32, seed = 0 }}
text_encoder = {{ name = "minilm-l6", max_length = 16 }}
[systems.finetune.fusion_head]
name = "concat-finetune"
epochs = 2
hidden = 32
batch_size = 16
freeze_text = true
image_encoder = {{ name = "resnet18", image_size = 32, seed = 0 }}
text_encoder = {{ name = "minilm-l6", max_length = 16 }}
[tasks.coco-category]
"""


@pytest.mark.slow
def test_end_to_end_fine_tuning_runs_through_the_runner(tmp_path, demo_world, cache):
    suite = tmp_path / "finetune.toml"
    suite.write_text(FINETUNE_SUITE.format(root=demo_world))
    result = run_cli("run", str(suite), "--out", str(tmp_path / "run"), "-q", cache=cache)
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "run/cells/coco-category/finetune/seed-0.json").read_text())
    assert record["status"] == "ok" and record["training"]["epochs"] == 2
    assert 0.0 <= record["metrics"]["weighted_f1"] <= 1.0


def test_retrieval_dependence_is_measured_by_default_and_a_suite_can_opt_out(
        tmp_path, tiny_run, demo_world, cache):
    _, finished, _ = tiny_run
    cells = cell_metrics(finished)
    knn = cells["cells/coco-category/knn-exact/seed-0.json"][1]
    # a k-NN head's answer is its neighbours' vote: random neighbours undo it
    assert knn["retrieval_dependence"] > 0.1
    low, high = knn["ci95"]["retrieval_dependence"]  # the tiny test set: a wide interval
    assert low <= knn["retrieval_dependence"] <= high
    # a head that retrieves nothing is measured too: its predictions cannot move
    concat = cells["cells/coco-category/concat/seed-0.json"][1]
    assert concat["retrieval_dependence"] == 0.0
    assert concat["ci95"]["retrieval_dependence"] == [0.0, 0.0]
    # the ranking task's joint embedding has no retrieved items to corrupt
    assert "retrieval_dependence" not in cells["cells/coco-retrieval/infonce-exact/seed-0.json"][1]

    suite = make_suite(tmp_path, demo_world)
    opt_out = 'baseline = "concat"\n[run]\nretrieval_dependence = false\n'
    text = suite.read_text().replace('baseline = "concat"\n', opt_out, 1)
    suite.write_text(text)
    run_dir = tmp_path / "run"
    result = run_cli("run", str(suite), "--out", str(run_dir), "--quiet", cache=cache)
    assert result.returncode == 0, result.stderr
    opted_out = cell_metrics(run_dir)
    assert not any("retrieval_dependence" in metrics for _, metrics in opted_out.values())
    record = json.loads((run_dir / "cells/coco-category/knn-exact/seed-0.json").read_text())
    assert not any(name.startswith("dependence_") for name in record["retrieval"])
    # opting out changes nothing else
    assert opted_out["cells/coco-category/knn-exact/seed-0.json"][1]["weighted_f1"] == \
        knn["weighted_f1"]
