"""The reference publishers, loaded as a plugin, writing every format from a real run dir."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from test_leaderboard import CLASSES, SYSTEMS, build_run, stored

from ravlm_bench import api
from ravlm_bench.foundation.errors import DataError
from ravlm_bench.plugin_host.host import get_plugin_manager
from ravlm_bench.plugin_host.registry import Registry
from ravlm_bench.publish.leaderboard import load_run
from ravlm_bench.store.explorer_arrays import ExplorerItem, Neighbour

FORMATS = {"markdown": ["leaderboard.md"], "csv": ["leaderboard.csv", "overview.csv"],
           "json": ["leaderboard.json"], "latex": ["leaderboard.tex"],
           "html": ["leaderboard.html"], "png": ["leaderboard.png"],
           "fronts": ["fronts.png", "fronts.svg"], "explorer": ["explorer.html"]}
FAILED = {
    ("shape-category", "knn", 1): ("retrievers", "search returned NaN scores"),
    ("shape-retrieval", "knn", 0): ("retrievers", "index | build failed"),
    ("shape-retrieval", "knn", 1): ("retrievers", "index | build failed"),
    ("shape-retrieval", "knn", 2): ("retrievers", "index | build failed"),
}


# ---------------------------------------------------------------------------------------
# A run with a sweep and explorer data (shared with test_browser.py)
# ---------------------------------------------------------------------------------------

N_ITEMS = 30  # explorer items per cell


def build_published_run(root: Path) -> Path:
    """build_run's run, with knn and xattn recorded as two variants of one sweep."""
    run_dir = build_run(root, failed=FAILED)
    run = json.loads((run_dir / "run.json").read_text())
    for system, ef in (("knn", 16), ("xattn", 64)):
        run["systems"][system]["sweep"] = {"base": "hnsw",
                                           "values": {"retriever.expansion_search": ef}}
    (run_dir / "run.json").write_text(json.dumps(run, indent=2))
    return run_dir


def explorer_images(root: Path) -> list[str]:
    """Five small images, one unreadable file and one missing path."""
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, colour in enumerate(["red", "green", "blue", "yellow", "purple"]):
        path = root / f"image-{i}.png"
        Image.new("RGB", (64, 40), colour).save(path)
        paths.append(str(path))
    broken = root / "broken.png"
    broken.write_bytes(b"not an image")
    return [*paths, str(broken), str(root / "missing.png")]


def right_answer(system: str, index: int) -> bool:
    return {"concat": index % 3 != 0, "knn": index % 2 == 0, "xattn": index % 5 != 0}[system]


def fake_items(images: list[str], system: str) -> list[ExplorerItem]:
    """Explorer items of shape-category: concat without neighbours, knn and xattn with."""
    items = []
    for i in range(N_ITEMS):
        truth = CLASSES[i % len(CLASSES)]
        wrong = CLASSES[(i + 1) % len(CLASSES)]
        neighbours = () if system == "concat" else tuple(
            Neighbour(images[(i + k) % len(images)] if k < 3 else "",
                      f"neighbour {k} of item {i} <b>{system}</b>",
                      CLASSES[(i + k) % len(CLASSES)], round(0.9 - 0.1 * k - i / 1000, 4))
            for k in range(4))
        correct = right_answer(system, i)
        items.append(ExplorerItem(i, images[i % len(images)], f"item {i}: a {truth} </script>",
                                  truth, truth if correct else wrong,
                                  0.5 + (i % 10) / 20, correct, neighbours))
    return items


def fake_explorer(monkeypatch, images: list[str]) -> None:
    """api.explorable_cells / cell_items serving :func:`fake_items` for shape-category."""
    def explorable_cells(board):
        cells = board.cells[(board.cells["task"] == "shape-category")
                            & (board.cells["status"] == "ok")]
        return [(r.task, r.system, int(r.seed)) for r in cells.itertuples()]

    def cell_items(run_dir, task, system, seed):
        if task != "shape-category":
            raise DataError(f"{run_dir}: no explorer arrays for {task}")
        return fake_items(images, system)

    monkeypatch.setattr(api, "explorable_cells", explorable_cells, raising=False)
    monkeypatch.setattr(api, "cell_items", cell_items, raising=False)


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    root = tmp_path_factory.mktemp("publish")
    run_dir = build_published_run(root)
    registry = Registry(get_plugin_manager(["ravlm_plugins.publishers"], entry_points=False))
    board = load_run(run_dir)
    out = root / "out"
    with pytest.MonkeyPatch.context() as monkeypatch:
        fake_explorer(monkeypatch, explorer_images(root / "images"))
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


def test_every_format_ranks_systems_in_the_same_tiers(published, tmp_path):
    """md, csv, json, latex, html and png show each system's tier, rows ranked alike."""
    run_dir = published[0]
    # conditional on the seeds: knn's two seeds disagree so much that, with their variance,
    # every adjacent pair is within noise and the fixture has one tier
    board = load_run(run_dir, seed_variance=False)
    registry = Registry(get_plugin_manager(["ravlm_plugins.publishers"], entry_points=False))
    out = tmp_path / "out"
    for name in ("markdown", "csv", "json", "latex", "html", "png"):
        registry.create("publishers", name).publish(board, out)
    table = board.tables["shape-category"]
    expected = {s: int(t) for s, t in table["tier"].items() if not math.isnan(t)}
    ranked = list(table.index)
    assert expected == {"xattn": 1, "knn": 2, "concat": 2}
    assert table.loc["knn", "p_vs_above_holm"] < 0.05 <= table.loc["concat", "p_vs_above_holm"]
    document = json.loads((out / "leaderboard.json").read_text())
    json_rows = document["tasks"]["shape-category"]["rows"]
    assert [r["system"] for r in json_rows] == ranked
    assert {r["system"]: r["tier"] for r in json_rows if r["tier"]} == expected
    with open(out / "leaderboard.csv", newline="") as handle:
        csv_rows = [r for r in csv.DictReader(handle) if r["task"] == "shape-category"]
    assert {r["system"]: int(float(r["tier"])) for r in csv_rows if r["tier"]} == expected
    md = markdown_table((out / "leaderboard.md").read_text(), "shape-category")
    assert list(md) == ranked
    assert {s: int(r["tier"]) for s, r in md.items() if r["tier"] != "–"} == expected
    tex = (out / "leaderboard.tex").read_text().split("shape-category", 1)[1]
    assert r"system & tier &" in tex
    html = _rows((out / "leaderboard.html").read_text(), "shape-category")
    assert list(html) == ranked
    for system, tier in expected.items():
        assert f'<td data-value="{float(tier)!r}"' in html[system]
        assert ("(top tier)</span>" in html[system]) == (tier == 1)
    assert (out / "leaderboard.png").stat().st_size > 0


def test_latex_uses_booktabs_and_escapes(published):
    text = (published[1] / "leaderboard.tex").read_text()
    for rule in (r"\toprule", r"\midrule", r"\bottomrule"):
        assert text.count(rule) == 3  # the overview and two tasks
    assert r"weighted\_f1" in text and r"$\pm$" in text
    assert "weighted_f1" not in text.replace(r"weighted\_f1", "")


def test_html_is_one_self_contained_page(published):
    text = (published[1] / "leaderboard.html").read_text()
    assert text.startswith("<!DOCTYPE html>") and "<style>" in text and "<script>" in text
    for external in ("<link", "src=", "http://", "https://", "@import", "url("):
        assert external not in text
    assert "search returned NaN scores" in text and "index | build failed" in text
    assert text.count("<table>") == 3 + 2  # overview, two tasks, two provenance tables


def _rows(text: str, task: str) -> dict[str, str]:
    """The <tr> of each system in ``task``'s table, as HTML."""
    section = text.split(f'<h2 id="task-{task}">', 1)[1].split("</section>", 1)[0]
    rows = section.split("<tbody>", 1)[1].split("</tbody>", 1)[0].split("</tr>")[:-1]
    return {row.split('data-system="', 1)[1].split('"', 1)[0]: row for row in rows}


def test_html_tables_carry_raw_values_best_markers_and_errors(published):
    run_dir, out, _ = published
    text = (out / "leaderboard.html").read_text()
    assert '<th scope="col" data-type="num"' in text and 'class="sort"' in text
    rows = _rows(text, "shape-category")
    accuracy = {s: float(np.mean(stored(run_dir, "shape-category", s, "accuracy")))
                for s in SYSTEMS}
    for system, row in rows.items():
        assert f'data-value="{accuracy[system]!r}"' in row
    # xattn tops the main metric's first tier; the marker is text, not colour alone
    assert '<strong>' in rows["xattn"] and "(top tier)</span>" in rows["xattn"]
    failed = _rows(text, "shape-retrieval")["knn"]
    assert '<td class="failed" data-value="">failed</td>' in failed
    assert 'class="error">seeds 0, 1, 2: plugin &#x27;retrievers&#x27;: index | build' in failed
    assert '<svg class="range"' in rows["xattn"]


def test_html_draws_fronts_with_the_sweep_and_provenance(published):
    text = (published[1] / "leaderboard.html").read_text()
    category = text.split('<h2 id="task-shape-category">', 1)[1].split("</section>", 1)[0]
    assert category.count("<figure>") == 3  # qps, latency, memory
    assert '<polyline class="sweep" data-base="hnsw"' in category
    assert 'class="point on-front" data-system=' in category and "<title>" in category
    assert "knn" in category and "concat" not in category.split("<table>")[0].split(
        "<figcaption>")[-1]  # no retrieval, no cost: not on the fronts
    details = text.split("<details>", 1)[1]
    assert "ab" * 32 in details and "tiny-cnn" in details and "sweep of <b>hnsw</b>" in details


def test_fronts_chart_is_written_as_png_and_svg(published):
    import matplotlib.image

    out = published[1]
    assert (out / "fronts.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert float(matplotlib.image.imread(out / "fronts.png").std()) > 0
    svg = (out / "fronts.svg").read_text()
    assert "<svg" in svg and "Pareto front" in svg


def _explorer_data(path: Path) -> dict:
    text = path.read_text()
    payload = text.split('<script type="application/json" id="explorer-data">', 1)[1]
    return json.loads(payload.split("</script>", 1)[0])


def test_explorer_page_holds_each_cell_once_with_shared_thumbnails(published):
    out = published[1]
    text = (out / "explorer.html").read_text()
    for external in ("<link", "src=", "http://", "https://"):
        assert external not in text
    data = _explorer_data(out / "explorer.html")
    (task,) = data["tasks"]
    assert task["name"] == "shape-category" and task["classes"] == sorted(CLASSES)
    systems = {s["name"]: s for s in task["systems"]}
    assert set(systems) == set(SYSTEMS) and systems["knn"]["seed"] == 0
    assert len(data["thumbs"]) == 5  # five readable images, each once
    assert "2 image(s) could not be read" in text  # the broken and the missing one
    strings = data["strings"]
    item = systems["xattn"]["items"][7]
    assert strings[item[2]] == "item 7: a star </script>" and item[6] is True
    assert [strings[n[1]] for n in item[8]][0] == "neighbour 0 of item 7 <b>xattn</b>"
    assert item[8][3][0] == -1  # padding: no image
    # index 0: concat wrong, xattn wrong; 3: concat wrong, xattn right; 5: xattn broke it
    changes = {row[0]: row[7] for row in systems["xattn"]["items"]}
    assert changes[3] == "fixed" and changes[5] == "broke" and changes[1] == "same"
    baseline_said = {row[0]: strings[row[9]] for row in systems["xattn"]["items"]}
    assert baseline_said[3] == CLASSES[0] and baseline_said[5] == CLASSES[1]  # 3: wrong
    assert all(row[9] == -1 for row in systems["concat"]["items"])
    assert systems["concat"]["compared"] is False and systems["knn"]["compared"] is True
    assert "budget 5 MB" in text


def test_explorer_page_without_explorer_data_says_so(tmp_path, published):
    from ravlm_plugins.publishers.explorer_page import ExplorerPublisher

    board = load_run(published[0])
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr(api, "explorable_cells", lambda board: [], raising=False)
        (path,) = ExplorerPublisher().publish(board, tmp_path)
    assert 'id="empty"' in path.read_text()


def test_png_is_a_valid_image(published):
    import matplotlib.image

    path = published[1] / "leaderboard.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = matplotlib.image.imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 300
    assert not math.isclose(float(pixels.std()), 0.0)  # not a blank canvas


def test_a_run_without_costs_or_baseline_still_publishes(published, tmp_path):
    """No retrieval costs anywhere and no baseline: fronts say so, nothing crashes."""
    from ravlm_bench.publish.leaderboard import COST_COLUMNS
    from ravlm_plugins.publishers.fronts_chart import FrontsPublisher
    from ravlm_plugins.publishers.html_page import render_leaderboard

    board = load_run(published[0])
    board.baseline = None
    for task, table in board.tables.items():
        board.tables[task] = table.assign(**dict.fromkeys(COST_COLUMNS, math.nan)).drop(
            columns=["delta_vs_baseline"])
    page = render_leaderboard(board, "test")
    assert page.count("No retrieval costs recorded") == 2 and "<figure>" not in page
    assert "Δ vs" not in page
    png, svg = FrontsPublisher().publish(board, tmp_path)
    assert png.stat().st_size > 0 and "no task records retrieval costs" in svg.read_text()
