"""Sweeps and the per-item explorer end to end: a swept suite runs one cell per variant and
resumes; each fusion-head cell saves what its items saw; `ravlm-bench show` prints it."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
from clitools import run_cli
from testhelpers import TINY_SUITE_HEAD

from ravlm_bench.store.explorer_arrays import cell_items

SUITE = TINY_SUITE_HEAD + """
[systems.concat]
fusion_head = {{ name = "concat", epochs = 3, hidden = 64 }}

[systems.knn]
retriever = {{ name = "usearch-hnsw", expansion_search = [16, 64] }}
fusion_head = {{ name = "knn", k = [1, 5] }}

[systems.multilabel-knn]
retriever = "exact"
fusion_head = {{ name = "multilabel-knn", k = 5 }}

[tasks.coco-category]
systems = ["concat", "knn"]

[tasks.coco-multilabel]
systems = ["multilabel-knn"]
"""
VARIANTS = [f"knn[expansion_search={e},k={k}]" for e in (16, 64) for k in (1, 5)]


@pytest.fixture(scope="module")
def swept_run(tmp_path_factory, demo_world):
    root = tmp_path_factory.mktemp("sweep")
    suite = root / "sweep.toml"
    suite.write_text(textwrap.dedent(SUITE.format(name="sweep", root=demo_world)))
    run_dir = root / "run"
    result = run_cli("run", str(suite), "--out", str(run_dir), "-q", cache=root / "cache")
    assert result.returncode == 0, result.stderr
    return suite, run_dir, root / "cache"


def test_a_sweep_runs_one_resumable_cell_per_variant(swept_run):
    suite, run_dir, cache = swept_run
    run = json.loads((run_dir / "run.json").read_text())
    assert run["tasks"]["coco-category"]["systems"] == ["concat", *VARIANTS]
    assert run["systems"]["knn[expansion_search=64,k=5]"]["sweep"] == {
        "base": "knn", "values": {"retriever.expansion_search": 64, "fusion_head.k": 5}}
    for variant in VARIANTS:
        assert sorted(p.name for p in (run_dir / "cells/coco-category" / variant).glob(
            "*.json")) == ["seed-0.json", "seed-1.json"]
    again = run_cli("run", str(suite), "--out", str(run_dir), "-q", cache=cache)
    assert again.returncode == 0 and "0 cells run, 12 already finished" in again.stdout


def test_cells_save_what_each_item_saw(swept_run):
    _, run_dir, _ = swept_run
    classes = json.loads((run_dir / "run.json").read_text())["tasks"]["coco-category"]["classes"]
    for variant in VARIANTS:
        items = cell_items(run_dir, "coco-category", variant, 0)
        arrays = np.load(run_dir / "cells/coco-category" / variant / "seed-0.npz")
        assert [i.prediction for i in items] == [classes[p] for p in arrays["y_pred"]]
        assert [i.correct for i in items] == list(arrays["y_pred"] == arrays["y_true"])
        k = int(variant[-2])
        for item in items:
            assert len(item.neighbours) == k and 0 < item.confidence <= 1
            scores = [n.score for n in item.neighbours]
            assert scores == sorted(scores, reverse=True)
            assert item.image.endswith(".jpg") and item.text
            if k == 1:  # a 1-NN head predicts what its one neighbour is
                assert item.prediction == item.neighbours[0].label
    assert all(not item.neighbours for item in cell_items(run_dir, "coco-category", "concat", 0))
    # multi-label: the truth lists every category of the item, the prediction those >= 0.5
    run = json.loads((run_dir / "run.json").read_text())["tasks"]["coco-multilabel"]
    arrays = np.load(run_dir / "cells/coco-multilabel/multilabel-knn/seed-1.npz")
    items = cell_items(run_dir, "coco-multilabel", "multilabel-knn", 1)
    for item, truth, scores in zip(items, arrays["y_true"], arrays["scores"], strict=True):
        assert item.truth.split(", ") == [
            c for c, on in zip(run["classes"], truth, strict=True) if on]
        assert item.prediction == ", ".join(
            c for c, s in zip(run["classes"], scores, strict=True) if s >= 0.5)
        assert item.correct == (set(item.truth.split(", ")) == set(item.prediction.split(", ")))


def test_show_prints_a_cells_items_and_filters_them(swept_run):
    _, run_dir, _ = swept_run
    system = "knn[expansion_search=64,k=5]"
    items = cell_items(run_dir, "coco-category", system, 1)
    wrong = [i for i in items if not i.correct]
    shown = run_cli("show", str(run_dir), "coco-category", system, "--seed", "1", "--wrong",
                    "--limit", "2")
    assert shown.returncode == 0, shown.stderr
    first = shown.stdout.splitlines()[0]
    assert f"{len(items)} test items, {len(items) - len(wrong)} right" in first
    assert f"{len(wrong)} match the filters, showing {min(2, len(wrong))}" in first
    blocks = shown.stdout.split("\n\n")[1:]
    assert [b.split()[0] for b in blocks] == [f"#{i.index}" for i in wrong[:2]]
    assert all("WRONG" in b for b in blocks)
    nbr = wrong[0].neighbours[0]
    assert f" 1. {nbr.score:+.3f}  {nbr.label}" in blocks[0]

    # against the baseline: only items whose prediction changed, saying fixed or broke
    base = cell_items(run_dir, "coco-category", "concat", 1)
    changed = run_cli("show", str(run_dir), "coco-category", system, "--seed", "1",
                      "--changed", "--limit", "0")
    expected = [i.index for i in items if i.prediction != base[i.index].prediction]
    assert [b.split()[0] for b in changed.stdout.split("\n\n")[1:]] == \
        [f"#{i}" for i in expected]
    assert "the baseline concat predicted" in changed.stdout


def test_show_names_what_is_wrong_in_one_line(swept_run, tmp_path):
    _, run_dir, _ = swept_run
    unknown = run_cli("show", str(run_dir), "coco-category", "knn")
    assert unknown.returncode == 2
    assert "task 'coco-category' has no system 'knn'; systems: concat, knn[" in unknown.stderr
    # damaged arrays are named, never shown
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    npz = copy / "cells/coco-category/concat/seed-0.npz"
    data = bytearray(npz.read_bytes())
    data[len(data) // 2] ^= 0xFF
    npz.write_bytes(bytes(data))
    damaged = run_cli("show", str(copy), "coco-category", "concat", "--seed", "0")
    assert damaged.returncode == 2 and len(damaged.stderr.strip().splitlines()) == 1
    assert f"{npz}: damaged (checksum mismatch)" in damaged.stderr


def test_the_explorer_page_shows_a_real_cells_neighbours(swept_run, tmp_path, driver):
    """The published explorer over a real run: real arrays, real images, real browser."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select
    from test_browser import console_errors, open_page

    from ravlm_bench.plugin_host.host import get_plugin_manager
    from ravlm_bench.plugin_host.registry import Registry
    from ravlm_bench.publish.leaderboard import load_run

    _, run_dir, _ = swept_run
    registry = Registry(get_plugin_manager(["ravlm_plugins.publishers"], entry_points=False))
    [page] = registry.create("publishers", "explorer").publish(load_run(run_dir), tmp_path)
    assert "could not be read" not in page.read_text()  # every thumbnail was made
    system = "knn[expansion_search=64,k=5]"
    items = cell_items(run_dir, "coco-category", system, 0)
    open_page(driver, page.as_uri())
    Select(driver.find_element(By.ID, "system")).select_by_visible_text(system)
    buttons = driver.find_elements(By.CSS_SELECTOR, "#items button.item")
    assert [int(b.get_attribute("data-index")) for b in buttons] == [i.index for i in items]
    buttons[3].click()
    rows = driver.find_elements(By.CSS_SELECTOR, "#neighbours tr.neighbour")
    assert [r.find_elements(By.TAG_NAME, "td")[2].text for r in rows] == \
        [n.text for n in items[3].neighbours]
    assert not driver.find_elements(By.CSS_SELECTOR, "#neighbours .placeholder")
    assert console_errors(driver) == []


def test_the_leaderboard_page_shows_a_real_runs_provenance(swept_run, tmp_path):
    """Versions from run.json and fingerprints from the checked cells reach the panel."""
    from ravlm_bench.plugin_host.host import get_plugin_manager
    from ravlm_bench.plugin_host.registry import Registry
    from ravlm_bench.publish.leaderboard import load_run

    _, run_dir, _ = swept_run
    board = load_run(run_dir)
    registry = Registry(get_plugin_manager(["ravlm_plugins.publishers"], entry_points=False))
    [page] = registry.create("publishers", "html").publish(board, tmp_path)
    details = page.read_text().split("<details>", 1)[1]
    run = json.loads((run_dir / "run.json").read_text())
    assert f"<code>{run['versions']['torch']}</code>" in details
    cell = json.loads((run_dir / "cells/coco-category/concat/seed-0.json").read_text())
    fingerprint = cell["provenance"]["components"]["image-encoders"]["fingerprint"]
    assert f"fingerprint <code>{fingerprint}</code>" in details
    assert "sweep of <b>knn</b>" in details
