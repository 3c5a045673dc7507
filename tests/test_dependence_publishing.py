"""The retrieval dependence published: dependence.png and the explorer's dependence panel,
from a tiny real run (coco-category: ``knn-exact`` depends on what it retrieves, ``concat``
retrieves nothing, so its dependence is measured as 0) and the same suite opted out of the
dependence (``[run] retrieval_dependence = false``: no system has one)."""

from __future__ import annotations

import dataclasses
import json
import textwrap

import pytest
from clitools import run_cli
from testhelpers import TINY_CONCAT_AND_KNN, TINY_SUITE_HEAD

from ravlm_bench.plugin_host.host import get_plugin_manager
from ravlm_bench.plugin_host.registry import Registry
from ravlm_bench.publish.leaderboard import DEPENDENCE_COLUMNS, load_run

SUITE = TINY_SUITE_HEAD + TINY_CONCAT_AND_KNN + """
[tasks.coco-category]
systems = ["concat", "knn-exact"]
"""
TASK = "coco-category"
OPT_OUT = '[run]\nretrieval_dependence = false\n'
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def run_board(root, demo_world, cache, *, dependence: bool):
    """The leaderboard of :data:`SUITE` run into ``root/run`` (opted out of the retrieval
    dependence unless ``dependence``)."""
    text = textwrap.dedent(SUITE.format(name="dependence", root=demo_world))
    if not dependence:
        text = text.replace('baseline = "concat"\n', 'baseline = "concat"\n' + OPT_OUT, 1)
    suite = root / "suite.toml"
    suite.write_text(text)
    result = run_cli("run", str(suite), "--out", str(root / "run"), "-q", cache=cache)
    assert result.returncode == 0, result.stderr
    return load_run(root / "run")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def board(tmp_path_factory, demo_world, cache):
    return run_board(tmp_path_factory.mktemp("with"), demo_world, cache, dependence=True)


@pytest.fixture(scope="module")
def opted_out_board(tmp_path_factory, demo_world, cache):
    return run_board(tmp_path_factory.mktemp("without"), demo_world, cache, dependence=False)


@pytest.fixture(scope="module")
def publishers():
    return Registry(get_plugin_manager(["ravlm_plugins.publishers"], entry_points=False))


def test_the_runs_measure_the_dependence_unless_opted_out(board, opted_out_board):
    table = board.tables[TASK]
    assert table.loc["knn-exact", "retrieval_dependence"] > 0.1
    assert table.loc["knn-exact", list(DEPENDENCE_COLUMNS)].notna().all()
    # without retrieval the predictions cannot move: a flat curve, a dependence of 0
    assert table.loc["concat", "retrieval_dependence"] == 0
    assert table.loc["concat", list(DEPENDENCE_COLUMNS)].nunique() == 1
    opted_out = opted_out_board.tables[TASK]
    assert "retrieval_dependence" not in opted_out or opted_out["retrieval_dependence"].isna().all()


def test_the_dependence_chart_is_a_png_and_says_when_nothing_was_measured(
        board, opted_out_board, publishers, tmp_path):
    import matplotlib.image

    publisher = publishers.create("publishers", "dependence")
    written = publisher.publish(board, tmp_path / "with")
    assert written == [tmp_path / "with" / "dependence.png"]
    data = written[0].read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) > 5_000
    assert float(matplotlib.image.imread(written[0]).std()) > 0  # something is drawn

    # without a dependence the chart says so (the kit wants every publisher to write)
    empty = publisher.publish(opted_out_board, tmp_path / "without")
    assert empty == [tmp_path / "without" / "dependence.png"]
    assert empty[0].read_bytes()[:8] == PNG_SIGNATURE
    assert len(empty[0].read_bytes()) < len(data)  # one line of text, no curves


def _explorer_data(page: str) -> dict:
    payload = page.split('<script type="application/json" id="explorer-data">', 1)[1]
    return json.loads(payload.split("</script>", 1)[0])


def test_the_explorer_data_holds_the_leaderboards_dependence(board, publishers, tmp_path):
    [path] = publishers.create("publishers", "explorer").publish(board, tmp_path)
    [task] = _explorer_data(path.read_text())["tasks"]
    systems = {system["name"]: system for system in task["systems"]}
    assert systems["concat"]["dependence"]["value"] == 0
    row = board.tables[TASK].loc["knn-exact"]
    dependence = systems["knn-exact"]["dependence"]
    assert dependence["text"] == (f"{row['retrieval_dependence']:.3f} "
                                  f"[{row['retrieval_dependence_ci95_lo']:.3f}, "
                                  f"{row['retrieval_dependence_ci95_hi']:.3f}]")
    assert [level["value"] for level in dependence["curve"]] == \
        pytest.approx(list(row[list(DEPENDENCE_COLUMNS)]))
    assert [level["level"] for level in dependence["curve"]] == \
        ["p=0", "p=0.25", "p=0.5", "p=0.75", "p=1", "none"]
    assert dependence["evidence"] is None  # coco is not a knowledge task


def test_the_explorer_data_has_no_dependence_when_opted_out(opted_out_board, publishers,
                                                           tmp_path):
    [path] = publishers.create("publishers", "explorer").publish(opted_out_board, tmp_path)
    [task] = _explorer_data(path.read_text())["tasks"]
    assert {s["name"]: s["dependence"] for s in task["systems"]} == {"concat": None,
                                                                    "knn-exact": None}


def test_a_knowledge_tasks_answer_evidence_shares_are_a_two_by_two_table(board):
    from ravlm_plugins.publishers.explorer_page import dependence_entry

    table = board.tables[TASK].copy()
    shares = {"right_with_evidence": 0.5, "right_without_evidence": 0.125,
              "wrong_with_evidence": 0.0625, "wrong_without_evidence": 0.3125}
    for column, share in shares.items():
        table.loc["knn-exact", column] = share
    knowledge = dataclasses.replace(board, tables={**board.tables, TASK: table})
    assert dependence_entry(knowledge, TASK, "knn-exact")["evidence"] == [
        ["50.0%", "12.5%"], ["6.2%", "31.2%"]]
    assert dependence_entry(knowledge, TASK, "concat")["evidence"] is None  # no shares


def _choose_system(driver, name: str) -> None:
    """Pick ``name`` (the baseline is listed as "name (baseline)") in the system menu."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    menu = Select(driver.find_element(By.ID, "system"))
    [option] = [o for o in menu.options if o.text.split(" (")[0] == name]
    menu.select_by_value(option.get_attribute("value"))


def _open(driver, path) -> None:
    driver.get(path.as_uri())
    driver.get_log("browser")  # start with an empty console


def _console_errors(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def test_the_explorer_shows_each_systems_dependence_and_no_panel_without_one(
        driver, board, opted_out_board, publishers, tmp_path):
    from selenium.webdriver.common.by import By

    explorer = publishers.create("publishers", "explorer")
    [path] = explorer.publish(board, tmp_path / "with")
    _open(driver, path)
    row = board.tables[TASK].loc["knn-exact"]
    _choose_system(driver, "knn-exact")
    panel = driver.find_element(By.ID, "dependence")
    assert panel.is_displayed() and "knn-exact" in panel.text
    value = driver.find_element(By.ID, "dependence-value")
    assert value.text.split()[0] == f"{row['retrieval_dependence']:.3f}"
    curve = driver.find_elements(By.CSS_SELECTOR, "#dependence-curve tbody td")
    assert [cell.text for cell in curve] == [f"{row[c]:.3f}" for c in DEPENDENCE_COLUMNS]
    assert driver.find_elements(By.CSS_SELECTOR, "#dependence svg.sparkline polyline")
    assert not driver.find_elements(By.ID, "answer-evidence")  # not a knowledge task
    _choose_system(driver, "concat")  # no retrieval: measured, as 0
    assert driver.find_element(By.ID, "dependence").is_displayed()
    assert driver.find_element(By.ID, "dependence-value").text.split()[0] == "0.000"
    assert _console_errors(driver) == []

    [path] = explorer.publish(opted_out_board, tmp_path / "without")
    _open(driver, path)
    for system in ("knn-exact", "concat"):
        _choose_system(driver, system)
        assert not driver.find_element(By.ID, "dependence").is_displayed()
        assert not driver.find_elements(By.ID, "dependence-value")
    assert _console_errors(driver) == []
