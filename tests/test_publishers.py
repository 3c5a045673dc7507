"""The reference publishers, loaded as a plugin, writing every format from a real run dir."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from test_leaderboard import SYSTEMS, build_run, stored

from ravlm_bench.host import get_plugin_manager
from ravlm_bench.leaderboard import load_run
from ravlm_bench.registry import Registry

FORMATS = {"markdown": ["leaderboard.md"], "csv": ["leaderboard.csv", "overview.csv"],
           "json": ["leaderboard.json"], "latex": ["leaderboard.tex"],
           "html": ["leaderboard.html"], "png": ["leaderboard.png"]}


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    root = tmp_path_factory.mktemp("publish")
    run_dir = build_run(root, failed={
        ("shape-category", "knn", 1): ("retrievers", "search returned NaN scores"),
        ("shape-retrieval", "knn", 0): ("retrievers", "index | build failed"),
        ("shape-retrieval", "knn", 1): ("retrievers", "index | build failed"),
        ("shape-retrieval", "knn", 2): ("retrievers", "index | build failed"),
    })
    registry = Registry(get_plugin_manager(["ravlm_plugins.publishers"], entry_points=False))
    board = load_run(run_dir)
    out = root / "out"
    written = {name: registry.create("publishers", name).publish(board, out)
               for name in FORMATS}
    return run_dir, out, written


def markdown_table(text: str, heading: str) -> dict[str, dict[str, str]]:
    """The Markdown table under ``## heading``, as {system: {column: cell}}."""
    lines = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0].splitlines()
    rows = [line for line in lines if line.startswith("|")]
    split = [[c.strip() for c in row.strip("|").split(" | ")] for row in rows]
    header, body = split[0], split[2:]
    return {row[0]: dict(zip(header, row, strict=True)) for row in body}


def test_every_format_is_written_atomically(published):
    _, out, written = published
    for name, files in FORMATS.items():
        assert [p.name for p in written[name]] == files
        for path in written[name]:
            assert path.parent == out and path.stat().st_size > 0
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_markdown_agrees_with_the_stored_results(published):
    run_dir, out, _ = published
    text = (out / "leaderboard.md").read_text()
    table = markdown_table(text, "shape-category")
    for system in SYSTEMS:
        values = stored(run_dir, "shape-category", system, "accuracy")
        assert table[system]["accuracy"].startswith(
            f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f} [")
    assert table["knn"]["status"] == ("partial: seed 1: plugin 'retrievers': "
                                      "search returned NaN scores")
    retrieval = markdown_table(text, "shape-retrieval")
    assert retrieval["knn"]["mean_recall"] == "failed"
    assert "index \\| build failed" in retrieval["knn"]["status"]  # pipes escaped
    overview = markdown_table(text, "Overview (main metric per task)")
    values = stored(run_dir, "shape-retrieval", "xattn", "mean_recall")
    assert overview["xattn"]["shape-retrieval"] == (
        f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}")


def test_csv_and_json_agree_with_the_stored_results(published):
    run_dir, out, _ = published
    with open(out / "leaderboard.csv", newline="") as handle:
        rows = {(r["task"], r["system"]): r for r in csv.DictReader(handle)}
    document = json.loads((out / "leaderboard.json").read_text())
    json_rows = {(task, r["system"]): r for task, t in document["tasks"].items()
                 for r in t["rows"]}
    assert set(rows) == set(json_rows) == {(t, s) for t in ("shape-category", "shape-retrieval")
                                           for s in SYSTEMS}
    for task, metric in (("shape-category", "weighted_f1"), ("shape-category", "tail_f1"),
                         ("shape-retrieval", "t2i_R@10")):
        for system in ("concat", "xattn"):
            values = stored(run_dir, task, system, metric)
            assert float(rows[task, system][metric]) == pytest.approx(np.mean(values), abs=1e-12)
            assert json_rows[task, system][metric] == pytest.approx(np.mean(values), abs=1e-12)
            assert json_rows[task, system][f"{metric}_std"] == pytest.approx(
                np.std(values, ddof=1), abs=1e-12)
    failed = rows["shape-retrieval", "knn"]
    assert failed["status"] == "failed" and failed["mean_recall"] == ""
    assert json_rows["shape-retrieval", "knn"]["mean_recall"] is None
    assert float(rows["shape-category", "xattn"]["delta_vs_baseline"]) > 0
    assert document["baseline"] == "concat" and document["seeds"] == [0, 1, 2]
    with open(out / "overview.csv", newline="") as handle:
        overview = {r["system"]: r for r in csv.DictReader(handle)}
    assert float(overview["xattn"]["shape-category"]) == pytest.approx(
        np.mean(stored(run_dir, "shape-category", "xattn", "weighted_f1")))


def test_latex_uses_booktabs_and_escapes(published):
    text = (published[1] / "leaderboard.tex").read_text()
    for rule in (r"\toprule", r"\midrule", r"\bottomrule"):
        assert text.count(rule) == 3  # the overview and two tasks
    assert r"weighted\_f1" in text and r"$\pm$" in text
    assert "weighted_f1" not in text.replace(r"weighted\_f1", "")


def test_html_is_one_self_contained_page(published):
    text = (published[1] / "leaderboard.html").read_text()
    assert text.startswith("<!DOCTYPE html>") and "<style>" in text
    for external in ("<link", "src=", "http://", "https://", "<script"):
        assert external not in text
    assert '<td class="failed">failed</td>' in text
    assert "search returned NaN scores" in text


def test_png_is_a_valid_image(published):
    import matplotlib.image

    path = published[1] / "leaderboard.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = matplotlib.image.imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 300
    assert not math.isclose(float(pixels.std()), 0.0)  # not a blank canvas
