"""Hostile text in captions, class, system and suite names cannot break or script the pages.

:func:`inline_json` is the one serialiser every page uses for JSON inside ``<script>``; the
browser tests feed the leaderboard and the explorer every payload the hardening probes
tried and check in Chromium that every row and item renders, shows its text as text, and
that nothing ran (a payload that runs sets ``window.__pwned``).
"""

from __future__ import annotations

import json

import pytest
from test_browser import console_errors, open_page
from test_publishers import build_published_run, explorer_images

from ravlm_bench import api
from ravlm_bench.foundation.errors import DataError
from ravlm_bench.plugin_host.host import get_plugin_manager
from ravlm_bench.plugin_host.registry import Registry
from ravlm_bench.publish.leaderboard import load_run
from ravlm_bench.store.explorer_arrays import ExplorerItem, Neighbour
from ravlm_plugins.publishers._markup import inline_json

PAYLOADS = [
    "<!--<script>",
    "</script><script>window.__pwned = 1</script>",
    "<script>window.__pwned = 2</script>",
    '<img src=x onerror="window.__pwned = 3">',
    "<svg onload=window.__pwned=4>",
    "line\u2028separator\u2029paragraph",
    "]]>",
    "&lt;b&gt; &amp; &#60;script&#62;",
    "<!-- -->",
    "-->",
    "<![CDATA[x",
    "</style><style>body{display:none}</style>",
    "\"'`${window.__pwned = 5}`",
    "</SCRIPT ><!--",
    "\\u003c/script>",
]
# a "-->" anywhere after "<!--<script>" ends the state that swallows the page's script, so
# the pages are also built from the payloads without one (the lone caption)
PAYLOAD_SETS = {"all": PAYLOADS, "no-comment-end": [p for p in PAYLOADS if "-->" not in p]}
TASK = "shape-category"


# ---------------------------------------------------------------------------------------
# The serialiser
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("payload", PAYLOADS)
def test_inline_json_reads_back_the_same_value_and_holds_no_markup(payload):
    value = {"text": payload, "nested": [payload, {payload: 1.5}], "n": None}
    text = inline_json(value, separators=(",", ":"), ensure_ascii=False)
    assert json.loads(text) == value
    for unsafe in ("<", ">", "&", "\u2028", "\u2029"):
        assert unsafe not in text


def test_inline_json_escapes_as_unicode_escapes_and_passes_options_on():
    assert inline_json("<a & b>") == '"\\u003ca \\u0026 b\\u003e"'
    assert inline_json("\u2028\u2029", ensure_ascii=False) == '"\\u2028\\u2029"'
    assert inline_json({"a": 1, "b": [1, 2]}, separators=(",", ":")) == '{"a":1,"b":[1,2]}'
    with pytest.raises(ValueError):
        inline_json(float("nan"), allow_nan=False)


# ---------------------------------------------------------------------------------------
# A published run whose every name and text is a payload
# ---------------------------------------------------------------------------------------


def _system_names(systems, payloads: list[str]) -> dict[str, str]:
    """Each system renamed to carry a share of the payloads (all payloads over all names)."""
    names = list(systems)
    return {name: f"{name} " + " ".join(payloads[i::len(names)])
            for i, name in enumerate(names)}


def _rename_systems(board, rename: dict[str, str]) -> None:
    board.systems = {rename[k]: v for k, v in board.systems.items()}
    board.baseline = rename[board.baseline] if board.baseline else board.baseline
    board.cells["system"] = board.cells["system"].map(rename)
    board.overview = board.overview.rename(index=rename)
    for task, table in board.tables.items():
        board.tables[task] = table.rename(index=rename)
        if "systems" in board.tasks[task]:
            board.tasks[task]["systems"] = [rename[s] for s in board.tasks[task]["systems"]]


def _classes(payloads: list[str]) -> list[str]:
    return [f"class {i} {payload}" for i, payload in enumerate(payloads)]


def _items(images: list[str], payloads: list[str]) -> list[ExplorerItem]:
    classes = _classes(payloads)
    items = []
    for i in range(2 * len(payloads)):
        payload = payloads[i % len(payloads)]
        truth = classes[i % len(classes)]
        neighbours = tuple(Neighbour(images[k % len(images)], f"neighbour {k} {payload}",
                                     classes[(i + k) % len(classes)], 0.9 - 0.1 * k)
                           for k in range(3))
        items.append(ExplorerItem(i, images[i % len(images)], f"caption {i} {payload}", truth,
                                  truth, 0.75, True, neighbours))
    return items


@pytest.fixture(scope="module", params=list(PAYLOAD_SETS))
def hostile_pages(tmp_path_factory, request):
    payloads = PAYLOAD_SETS[request.param]
    root = tmp_path_factory.mktemp("payloads")
    board = load_run(build_published_run(root))
    rename = _system_names(board.systems, payloads)
    _rename_systems(board, rename)
    board.suite = "suite " + payloads[0] + payloads[1]
    board.tasks[TASK]["classes"] = _classes(payloads)
    images = explorer_images(root / "images")

    def explorable_cells(board):
        cells = board.cells[(board.cells["task"] == TASK) & (board.cells["status"] == "ok")]
        return [(r.task, r.system, int(r.seed)) for r in cells.itertuples()]

    def cell_items(run_dir, task, system, seed):
        if task != TASK:
            raise DataError(f"{run_dir}: no explorer arrays for {task}")
        return _items(images, payloads)

    registry = Registry(get_plugin_manager(["ravlm_plugins.publishers"], entry_points=False))
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr(api, "explorable_cells", explorable_cells, raising=False)
        monkeypatch.setattr(api, "cell_items", cell_items, raising=False)
        for name in ("html", "explorer"):
            registry.create("publishers", name).publish(board, root / "out")
    return {"leaderboard": root / "out" / "leaderboard.html",
            "explorer": root / "out" / "explorer.html", "systems": list(rename.values()),
            "board": board, "payloads": payloads}


def test_the_explorer_json_block_is_one_script_element_whatever_the_text(hostile_pages):
    page = hostile_pages["explorer"].read_text(encoding="utf-8")
    start = page.index('<script type="application/json" id="explorer-data">')
    block = page[start:page.index("</script>", start)]
    assert "<" not in block[1:] and "<!--" not in block and "\u2028" not in block
    data = json.loads(block.split(">", 1)[1])
    for i, payload in enumerate(hostile_pages["payloads"]):  # each reaches the data unchanged
        assert f"caption {i} {payload}" in data["strings"]


# ---------------------------------------------------------------------------------------
# In Chromium
# ---------------------------------------------------------------------------------------


def _pwned(driver):
    return driver.execute_script("return window.__pwned")


def test_the_leaderboard_renders_every_hostile_name_as_text(driver, hostile_pages):
    from selenium.webdriver.common.by import By

    open_page(driver, hostile_pages["leaderboard"].as_uri())
    assert _pwned(driver) is None
    assert driver.execute_script("return document.title") == \
        " ".join(f"Leaderboard: {hostile_pages['board'].suite}".split())
    for task in hostile_pages["board"].tasks:
        rows = driver.find_elements(
            By.CSS_SELECTOR, f'section[aria-labelledby="task-{task}"] tbody th[scope="row"]')
        shown = [driver.execute_script("return arguments[0].textContent", r) for r in rows]
        assert sorted(shown) == sorted(hostile_pages["systems"])
    # the page's own script still runs: filtering by a hostile name hides the others
    box = driver.find_element(By.ID, "system-filter")
    box.send_keys("concat <!--<script>")
    assert driver.find_element(By.ID, "filter-summary").text == "1 of 3 systems shown"
    assert _pwned(driver) is None
    assert console_errors(driver) == []


def test_the_explorer_renders_every_item_with_hostile_text(driver, hostile_pages):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    open_page(driver, hostile_pages["explorer"].as_uri())
    assert _pwned(driver) is None
    system = Select(driver.find_element(By.ID, "system"))
    shown = [o.get_attribute("textContent").removesuffix(" (baseline)")
             for o in system.options]
    assert sorted(shown) == sorted(hostile_pages["systems"])
    payloads = hostile_pages["payloads"]
    classes = Select(driver.find_element(By.ID, "class"))
    assert {o.get_attribute("textContent") for o in classes.options} >= set(_classes(payloads))
    for index in range(len(system.options)):
        system.select_by_index(index)
        items = driver.find_elements(By.CSS_SELECTOR, "#items button.item")
        assert len(items) == 2 * len(payloads)
        for i in (0, 1, 5, len(payloads) - 1):
            items[i].click()
            detail = driver.execute_script(
                "return document.getElementById('detail').textContent")
            assert f"caption {i} {payloads[i]}" in detail
            neighbours = driver.find_elements(By.CSS_SELECTOR, "#neighbours tr.neighbour")
            texts = [driver.execute_script("return arguments[0].cells[2].textContent", row)
                     for row in neighbours]
            assert texts == [f"neighbour {k} {payloads[i]}" for k in range(3)]
    assert _pwned(driver) is None
    assert console_errors(driver) == []
