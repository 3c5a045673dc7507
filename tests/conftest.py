"""Shared fixtures: an isolated cache directory for the whole session, the demo world, and
a headless Chromium for the pages people look at."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from testhelpers import BROWSER_HEIGHT, BROWSER_WIDTH


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Tests never write to the user's cache and never reach the network."""
    patch = pytest.MonkeyPatch()
    patch.setenv("RAVLM_BENCH_CACHE", str(tmp_path_factory.mktemp("ravlm-cache")))
    patch.setenv("HF_HUB_OFFLINE", "1")
    patch.setenv("HF_DATASETS_OFFLINE", "1")
    patch.delenv("RAVLM_DATA", raising=False)
    yield
    patch.undo()


@pytest.fixture(scope="session")
def demo_world(tmp_path_factory) -> Path:
    """A tiny demo world (seed 0), generated once per session: ``coco/``, ``flickr30k/``,
    ``visual_genome/``, the knowledge trees ``okvqa/``, ``aokvqa/``, ``infoseek/``,
    ``passages/`` and ``demo_world.json``. Treat it as read-only; use ``demo_copy``
    for a tree a test modifies."""
    from ravlm_bench.demo import generate_demo_world

    root = tmp_path_factory.mktemp("demo") / "world"
    generate_demo_world(root, seed=0, size="tiny")
    return root


@pytest.fixture
def demo_copy(demo_world, tmp_path):
    """``demo_copy("coco")`` -> a private, modifiable copy of one demo tree."""

    def copy(tree: str) -> Path:
        target = tmp_path / tree
        shutil.copytree(demo_world / tree, target)
        return target

    return copy


@pytest.fixture
def registry():
    from ravlm_bench.plugin_host.host import get_plugin_manager
    from ravlm_bench.plugin_host.registry import Registry

    return Registry(get_plugin_manager())


@pytest.fixture
def edit_json():
    """``edit_json(path, fn)``: load a JSON file, let ``fn(data)`` change it, write it back."""

    def edit(path: Path, change) -> None:
        data = json.loads(path.read_text(encoding="utf-8"))
        change(data)
        path.write_text(json.dumps(data), encoding="utf-8")

    return edit


@pytest.fixture
def one_torch_thread():
    """Tiny models: with two threads on a busy 2-core machine, thread hand-offs cost more
    than the arithmetic (measured 100x slower per step). Results are the same either way."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- a real headless Chromium, for the pages people look at --------------------------------


def _missing() -> list[str]:
    missing = []
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package (pip install 'selenium>=4.20')")
    if not (shutil.which("chromium") or os.path.exists("/usr/bin/chromium")):
        missing.append("chromium (/usr/bin/chromium; apt-get install chromium)")
    if not (shutil.which("chromedriver") or os.path.exists("/usr/bin/chromedriver")):
        missing.append("chromedriver (/usr/bin/chromedriver; apt-get install chromium-driver)")
    return missing


def _unavailable(reason: str):
    if os.environ.get("RAVLM_BENCH_REQUIRE_BROWSER") == "1":
        pytest.fail(f"RAVLM_BENCH_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def driver():
    missing = _missing()
    if missing:
        _unavailable("browser tests need " + " and ".join(missing))
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage",
                     f"--window-size={BROWSER_WIDTH},{BROWSER_HEIGHT}"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(shutil.which("chromedriver") or "/usr/bin/chromedriver")
    try:
        browser = webdriver.Chrome(options=options, service=service)
    except WebDriverException as exc:
        _unavailable(f"chromium did not start: {exc.msg}")
    browser.set_page_load_timeout(30)
    yield browser
    browser.quit()
