"""leaderboard.html and explorer.html driven in a real headless Chromium (selenium).

The ``driver`` fixture (conftest.py) skips, naming what is missing, where selenium,
chromium or chromedriver is not installed, and fails instead when
RAVLM_BENCH_REQUIRE_BROWSER=1 (CI sets it once it has installed them), so a CI without a
browser never passes silently.
"""

from __future__ import annotations

import math

import pytest
from test_leaderboard import CLASSES
from test_publishers import (
    N_ITEMS,
    build_published_run,
    explorer_images,
    fake_explorer,
    fake_items,
    right_answer,
)
from testhelpers import BROWSER_WIDTH as WIDTH

from ravlm_bench.plugin_host.host import get_plugin_manager
from ravlm_bench.plugin_host.registry import Registry
from ravlm_bench.publish.leaderboard import load_run


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    # conditional on the seeds, so the fixture's systems fall into two tiers
    board = load_run(build_published_run(root), seed_variance=False)
    registry = Registry(get_plugin_manager(["ravlm_plugins.publishers"], entry_points=False))
    images = explorer_images(root / "images")
    with pytest.MonkeyPatch.context() as monkeypatch:
        fake_explorer(monkeypatch, images)
        for name in ("html", "explorer"):
            registry.create("publishers", name).publish(board, root / "out")
    return {"leaderboard": (root / "out" / "leaderboard.html").as_uri(),
            "explorer": (root / "out" / "explorer.html").as_uri(), "images": images,
            "board": board}


def open_page(driver, url: str) -> None:
    driver.get(url)
    driver.get_log("browser")  # start each test with an empty console


def console_errors(driver) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser")
            if entry["level"] == "SEVERE"]


def column_values(driver, table, header: str) -> list[float | str]:
    """The data-value of each visible row's cell under ``header``, in display order."""
    return driver.execute_script("""
        const table = arguments[0], header = arguments[1];
        const ths = Array.from(table.tHead.rows[0].cells);
        const index = ths.findIndex(th => th.textContent.trim() === header);
        if (index < 0) throw new Error("no column " + header);
        return Array.from(table.tBodies[0].rows).filter(r => !r.hidden)
            .map(r => r.cells[index].getAttribute("data-value"));
    """, table, header)


def task_table(driver, task: str):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, f'section[aria-labelledby="task-{task}"] '
                                                f"table")


def header_button(table, label: str):
    from selenium.webdriver.common.by import By

    for button in table.find_elements(By.CSS_SELECTOR, "thead button.sort"):
        if button.text.strip() == label:
            return button
    raise AssertionError(f"no sortable column {label!r}")


def _numbers(values: list[str]) -> list[float]:
    return [float(v) if v else math.nan for v in values]


def test_sorting_reorders_rows_both_ways_with_missing_values_last(driver, pages):
    from selenium.webdriver.common.keys import Keys

    open_page(driver, pages["leaderboard"])
    table = task_table(driver, "shape-category")
    button = header_button(table, "accuracy")
    button.click()
    th = button.find_element("xpath", "..")
    assert th.get_attribute("aria-sort") == "ascending"
    ascending = _numbers(column_values(driver, table, "accuracy"))
    assert ascending == sorted(ascending) and len(ascending) == 3
    button.send_keys(Keys.ENTER)  # the keyboard works too
    assert th.get_attribute("aria-sort") == "descending"
    assert _numbers(column_values(driver, table, "accuracy")) == sorted(ascending, reverse=True)
    expected = pages["board"].tables["shape-category"]["accuracy"].sort_values(ascending=False)
    assert column_values(driver, table, "system") == list(expected.index)

    # knn failed every seed of the retrieval task: its mean_recall is missing, and last
    retrieval = task_table(driver, "shape-retrieval")
    button = header_button(retrieval, "mean_recall (main)")
    for _ in range(2):
        button.click()
        values = column_values(driver, retrieval, "mean_recall (main)")
        assert values[-1] == "" and "" not in values[:-1]
        numbers = _numbers(values[:-1])
        direction = button.find_element("xpath", "..").get_attribute("aria-sort")
        assert numbers == sorted(numbers, reverse=direction == "descending")
    assert column_values(driver, retrieval, "system")[-1] == "knn"
    assert console_errors(driver) == []


def test_the_filter_hides_rows_and_clearing_shows_them(driver, pages):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    open_page(driver, pages["leaderboard"])
    box = driver.find_element(By.ID, "system-filter")
    label = driver.find_element(By.CSS_SELECTOR, 'label[for="system-filter"]')
    assert label.text
    box.send_keys("xat")
    for task in ("shape-category", "shape-retrieval"):
        assert column_values(driver, task_table(driver, task), "system") == ["xattn"]
    assert driver.find_element(By.ID, "filter-summary").text == "1 of 3 systems shown"
    box.clear()
    box.send_keys(" ")  # clear() fires no input event; a blank filter matches everything
    # every row is back, in the table's ranked order
    assert column_values(driver, task_table(driver, "shape-category"), "system") == \
        list(pages["board"].tables["shape-category"].index)
    Select(driver.find_element(By.ID, "status-filter")).select_by_value("problem")
    assert column_values(driver, task_table(driver, "shape-retrieval"), "system") == ["knn"]
    assert console_errors(driver) == []


def test_the_page_does_not_scroll_sideways_at_1400px(driver, pages):
    open_page(driver, pages["leaderboard"])
    scroll_width, inner_width = driver.execute_script(
        "return [document.documentElement.scrollWidth, window.innerWidth]")
    assert inner_width <= WIDTH and scroll_width <= inner_width
    assert console_errors(driver) == []


def test_the_explorer_shows_a_chosen_items_neighbours(driver, pages):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    open_page(driver, pages["explorer"])
    Select(driver.find_element(By.ID, "system")).select_by_visible_text("xattn")
    items = driver.find_elements(By.CSS_SELECTOR, "#items button.item")
    assert len(items) == N_ITEMS
    chosen = next(b for b in items if b.get_attribute("data-index") == "7")
    chosen.click()
    assert chosen.get_attribute("aria-pressed") == "true"
    rows = driver.find_elements(By.CSS_SELECTOR, "#neighbours tr.neighbour")
    expected = fake_items(pages["images"], "xattn")[7].neighbours
    assert len(rows) == len(expected)
    for row, neighbour in zip(rows, expected, strict=True):
        cells = row.find_elements(By.TAG_NAME, "td")
        assert cells[2].text == neighbour.text  # markup in the data shows as text
        assert cells[3].text == neighbour.label
        assert float(cells[4].get_attribute("data-value")) == pytest.approx(neighbour.score)
    # a padding neighbour (no image path) and the broken image get the placeholder
    assert rows[3].find_elements(By.CSS_SELECTOR, ".placeholder")
    assert not rows[0].find_elements(By.CSS_SELECTOR, ".placeholder")
    detail = driver.find_element(By.ID, "detail").text
    assert "item 7: a star </script>" in detail and "Item #7" in detail
    assert "The baseline (concat) predicted star on this item and seed: the same" in detail
    assert console_errors(driver) == []


def test_the_explorer_filters_wrong_items_classes_and_changes(driver, pages):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    open_page(driver, pages["explorer"])

    def shown() -> list[int]:
        return [int(b.get_attribute("data-index"))
                for b in driver.find_elements(By.CSS_SELECTOR, "#items button.item")]

    Select(driver.find_element(By.ID, "system")).select_by_visible_text("knn")
    Select(driver.find_element(By.ID, "outcome")).select_by_value("wrong")
    wrong = [i for i in range(N_ITEMS) if not right_answer("knn", i)]
    assert shown() == wrong
    assert all(b.get_attribute("data-correct") == "false"
               for b in driver.find_elements(By.CSS_SELECTOR, "#items button.item"))
    Select(driver.find_element(By.ID, "class")).select_by_value(CLASSES[1])
    assert shown() == [i for i in wrong if CLASSES[i % len(CLASSES)] == CLASSES[1]]
    Select(driver.find_element(By.ID, "class")).select_by_value("")
    Select(driver.find_element(By.ID, "outcome")).select_by_value("all")
    Select(driver.find_element(By.ID, "change")).select_by_value("fixed")
    assert shown() == [i for i in range(N_ITEMS)
                       if right_answer("knn", i) and not right_answer("concat", i)]
    Select(driver.find_element(By.ID, "change")).select_by_value("broke")
    assert shown() == [i for i in range(N_ITEMS)
                       if not right_answer("knn", i) and right_answer("concat", i)]
    summary = driver.find_element(By.ID, "summary").text
    assert f"of {N_ITEMS} items shown" in summary and "seed 0" in summary
    scroll_width, inner_width = driver.execute_script(
        "return [document.documentElement.scrollWidth, window.innerWidth]")
    assert scroll_width <= inner_width
    assert console_errors(driver) == []


def test_the_page_ranks_in_tiers_and_bolds_only_the_top_tier(driver, pages):
    from selenium.webdriver.common.by import By

    open_page(driver, pages["leaderboard"])
    table = task_table(driver, "shape-category")
    expected = pages["board"].tables["shape-category"]
    assert set(expected["tier"]) == {1, 2}
    assert column_values(driver, table, "system") == list(expected.index)
    assert column_values(driver, table, "tier") == [
        repr(float(t)) if t == t else "" for t in expected["tier"]]
    header = [th.text.strip() for th in table.find_elements(By.CSS_SELECTOR, "thead th")]
    main = header.index("weighted_f1 (main)")
    for row in table.find_elements(By.CSS_SELECTOR, "tbody tr"):
        system = row.get_attribute("data-system")
        cell = row.find_elements(By.CSS_SELECTOR, "th, td")[main]
        bold = cell.find_elements(By.TAG_NAME, "strong")
        assert bool(bold) == (expected.loc[system, "tier"] == 1), system
        if bold:  # the marker is read out, not colour alone
            assert "(top tier)" in cell.get_attribute("textContent")
    assert console_errors(driver) == []
