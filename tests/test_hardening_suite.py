"""Limits before work: a suite's size is counted before its sweeps are expanded and refused
over ``[run] max_cells``; error messages stay one short line however long the lists they
could quote; task options that would leave a split empty stop the run (exit 2) before any
cell; and the time-left estimate keeps one-off work apart from per-cell work."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest
from clitools import run_cli
from testhelpers import TINY_SUITE_HEAD

from ravlm_bench.config.suite import RunOptions, load_suite
from ravlm_bench.foundation.errors import ConfigError, DataError, clipped, listing
from ravlm_bench.run.runner import TimeLeft

SUITE = """
seeds = [0, 1, 2]
{top}
[run]
{run}
[data.coco]
root = "/nowhere/coco"
[defaults]
image_encoder = {{ name = "resnet18" }}
text_encoder = {{ name = "minilm-l6" }}
[systems.concat]
fusion_head = {{ name = "concat" }}
[systems.knn]
retriever = {{ name = "usearch-hnsw", expansion_search = {a} }}
fusion_head = {{ name = "knn", k = {b} }}
[tasks.coco-category]
{category}
[tasks.coco-multilabel]
systems = ["concat"]
"""


def values(n: int) -> str:
    return "[" + ", ".join(str(i + 1) for i in range(n)) + "]"


def write(tmp_path: Path, *, a: str = "16", b: str = "5", top: str = "", run: str = "",
          category: str = "") -> Path:
    path = tmp_path / "suite.toml"
    path.write_text(SUITE.format(a=a, b=b, top=top, run=run, category=category))
    return path


def refusal(tmp_path: Path, suite: Path) -> str:
    """The one line ``ravlm-bench run`` printed when it refused ``suite`` (exit 2)."""
    result = run_cli("run", str(suite), "--out", str(tmp_path / "run"))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


# -- how big a suite is, counted before it is built ---------------------------------------


@pytest.mark.parametrize("sweep, variants, axes", [
    (dict(a=values(1000), b=values(1000)), 10**6, "expansion_search x k"),
    (dict(a=values(1000) + ", connectivity = " + values(1000), b=values(1000)), 10**9,
     "expansion_search x connectivity x k"),
])
def test_a_huge_sweep_is_refused_in_well_under_a_second(tmp_path, sweep, variants, axes):
    suite = write(tmp_path, **sweep)
    started = time.perf_counter()
    with pytest.raises(ConfigError):
        load_suite(suite)
    assert time.perf_counter() - started < 1.0  # counted, not built: about 5 ms
    line = refusal(tmp_path, suite)
    # coco-category runs concat and every knn variant, coco-multilabel concat: 3 seeds each
    cells = (variants + 2) * 3
    assert line == (f"error: {suite}: [systems.knn] sweeps {variants:,} variants ({axes}): "
                    f"the suite would run {cells:,} cells, over [run] max_cells = 10000; "
                    f"sweep fewer values or raise max_cells")
    assert len(line) < 300
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("category", [
    "",  # every system
    'systems = ["knn", "concat"]',
    'systems = ["knn", "knn[expansion_search=1,k=2]", "concat"]',  # a variant beside its sweep
    'systems = ["knn[expansion_search=1,k=2]", "knn[expansion_search=2,k=2]"]',
])
def test_the_count_is_the_cells_the_suite_runs_and_the_limit_is_inclusive(tmp_path, category):
    suite = load_suite(write(tmp_path, a=values(2), b=values(2), category=category,
                             run="max_cells = 1000000"))
    cells = sum(len(task.systems) for task in suite.tasks) * len(suite.seeds)
    assert load_suite(write(tmp_path, a=values(2), b=values(2), category=category,
                            run=f"max_cells = {cells}")).run.max_cells == cells
    with pytest.raises(ConfigError, match=f"the suite would run {cells:,} cells, over "
                                          f"\\[run\\] max_cells = {cells - 1};"):
        load_suite(write(tmp_path, a=values(2), b=values(2), category=category,
                         run=f"max_cells = {cells - 1}"))


def test_systems_that_no_task_runs_count_against_the_limit_too(tmp_path):
    suite = write(tmp_path, a=values(200), b=values(100), category='systems = ["concat"]')
    with pytest.raises(ConfigError) as info:
        load_suite(suite)
    assert "[systems.knn] sweeps 20,000 variants (expansion_search x k): the suite expands " \
           "to 20,001 systems, over [run] max_cells = 10000" in str(info.value)


def test_many_plain_systems_are_blamed_on_the_systems_and_seeds(tmp_path):
    suite = write(tmp_path, run="max_cells = 5")
    with pytest.raises(ConfigError, match=r"suite.toml: 2 systems and 3 seeds: the suite "
                                          r"would run 9 cells, over \[run\] max_cells = 5;"):
        load_suite(suite)


def test_max_cells_is_a_typed_run_option_with_bounds(tmp_path):
    assert RunOptions().max_cells == 10_000
    assert "[run]: parameter 'max_cells' = 0: must be >= 1" in refusal(
        tmp_path, write(tmp_path, run="max_cells = 0"))
    assert "[run]: parameter 'max_cells' = \"many\": expected an integer" in refusal(
        tmp_path, write(tmp_path, run='max_cells = "many"'))


# -- one line of bounded length ---------------------------------------------------------


def test_listing_cuts_long_lists_and_clipped_cuts_long_values():
    assert listing([]) == "none"
    assert listing(["a", "b"]) == "a, b"
    assert listing(range(20)) == "0, 1, 2, 3, 4, 5, 6, 7 and 12 more"
    long = [f"system-{'x' * 50}-{i}" for i in range(5)]
    assert listing(long) == f"{long[0]}, {long[1]} and 3 more"  # held to about 160 characters
    assert listing(["y" * 500]).startswith("y") and len(listing(["y" * 500])) == 160
    assert clipped("a\nb") == "a b" and clipped("z" * 100, 10) == "zzzzzzz..."


@pytest.mark.parametrize("edit, fragment", [
    (dict(top='baseline = "knn"'), "baseline 'knn' is not a system (a sweep: name one of its "
                                   "variants, e.g. 'knn[expansion_search=1,k=1]'); defined: "
                                   "concat, knn[expansion_search=1,k=1]"),
    (dict(top='baseline = "' + "b" * 5000 + '"'), "baseline 'bbbbbbb"),
    (dict(category='systems = ["knn", "nope"]'), "systems names 'nope', which is not a "
                                                 "[systems.*] table; defined: concat, knn"),
    (dict(a="[" + "7, " * 1000 + "8]"), "expansion_search: the sweep repeats a value: 7"),
    (dict(top="seeds = " + values(3000)[:-1] + ", 1, 2]"), "'seeds' has duplicates: 1, 2"),
    (dict(top="x" * 5000 + " = 1"), "unknown top-level key 'xxxxxx"),
])
def test_every_refusal_is_one_short_line(tmp_path, edit, fragment):
    """An invalid baseline beside a sweep of 4,000 variants used to quote every one."""
    text = write(tmp_path, **{"a": values(40), "b": values(100),
                              "run": "max_cells = 100000", **edit}).read_text()
    if edit.get("top", "").startswith("seeds"):  # the one seeds line wins
        text = text.replace("seeds = [0, 1, 2]\n", "", 1)
    suite = tmp_path / "suite.toml"
    suite.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_suite(suite)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message and len(message) < 400, (len(message), message[:500])


# -- task options that would leave a split empty ----------------------------------------


def test_min_count_over_the_data_stops_the_run_before_any_cell(tmp_path, demo_world):
    suite = tmp_path / "tiny.toml"
    suite.write_text(TINY_SUITE_HEAD.format(name="tiny", root=demo_world) + """
[systems.concat]
fusion_head = { name = "concat", epochs = 1 }
[tasks.coco-category]
min_count = 100000
""")
    result = run_cli("run", str(suite), "--out", str(tmp_path / "run"), "--quiet")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: coco-category: min_count = 100000 leaves no class "
                               "with that many training items (the most frequent has ")
    assert not (tmp_path / "run" / "cells").exists()
    assert not (tmp_path / "run" / ".lock").exists()


@pytest.mark.parametrize("task, dataset, message", [
    ("coco-multilabel", "coco", "coco-multilabel: min_count = 100000 leaves no category "
                                "with that many training images (the most frequent has "),
    ("vg-qa", "visual_genome", "vg-qa: min_count = 100000 leaves no answer with that many "
                               "training questions (the most frequent has "),
])
def test_every_min_count_is_checked_against_the_data(registry, demo_world, task, dataset,
                                                     message):
    built = registry.create("tasks", task, min_count=100000)
    source = registry.create("datasets", dataset, root=str(demo_world / dataset))
    with pytest.raises(DataError, match=message.replace("(", r"\(")):
        built.build(source, seed=0)


def test_an_empty_test_split_is_named_not_a_type_error():
    from ravlm_plugins.tasks.labelled import classification_data

    empty = pd.DataFrame(columns=["image_id", "image_path", "text", "label"])
    train = pd.DataFrame({"image_id": [1], "image_path": ["a.jpg"], "text": ["a cat"],
                          "label": ["cat"]})
    with pytest.raises(DataError, match="coco-category: the test split has no items"):
        classification_data("coco-category", {"train": train, "test": empty}, ["cat"])


def test_a_task_factory_refusing_its_options_is_caught_in_preflight(tmp_path):
    suite = tmp_path / "suite.toml"
    suite.write_text("""
[defaults]
image_encoder = "resnet18"
text_encoder = "minilm-l6"
[systems.ranker]
retriever = "exact"
joint_embedding = "infonce"
[tasks.coco-retrieval]
ks = []
""")
    assert refusal(tmp_path, suite) == (
        f"error: {suite}: [tasks.coco-retrieval]: task coco-retrieval: ks must be a "
        f"non-empty list of K >= 1, got []")


# -- time left --------------------------------------------------------------------------


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def run_cell(estimate: TimeLeft, clock: FakeClock, task: str, seconds: float,
             encode: float = 0.0, key: float = 0.0, failed: bool = False) -> None:
    estimate.start_cell()
    clock.now += seconds
    timings = {"encode_s": encode, "retrieval_key_s": key, "train_s": seconds - encode - key}
    estimate.finish_cell(task, None if failed else timings)


def test_one_off_work_of_the_first_cells_is_not_taken_for_the_rate():
    """Six cells of two tasks: the first of each encodes for 60 s, every cell then takes
    2 s. The old estimate (mean of cells so far) said ~2 min left after two cells."""
    clock = FakeClock()
    estimate = TimeLeft(["a", "a", "a", "b", "b", "b"], clock=clock)
    assert estimate.text() == "estimating time left"
    run_cell(estimate, clock, "a", 62, encode=60)
    assert estimate.text() == "estimating time left"  # no steady cell yet
    run_cell(estimate, clock, "a", 2)
    assert estimate.text() == "estimating time left"  # one steady cell is not enough
    run_cell(estimate, clock, "a", 2)
    # three cells at 2 s, and task b's one-off work, as much as task a's
    assert estimate.seconds() == pytest.approx(3 * 2 + 60)
    assert estimate.text() == "about 66 s left"
    run_cell(estimate, clock, "b", 63, encode=55, key=6)
    assert estimate.seconds() == pytest.approx(2 * 2)  # b has begun: per-cell work alone
    run_cell(estimate, clock, "b", 2)
    run_cell(estimate, clock, "b", 2)
    assert estimate.seconds() == 0.0


def test_failed_cells_count_but_do_not_set_the_rate_and_long_runs_read_in_hours():
    clock = FakeClock()
    estimate = TimeLeft(["a"] * 200, clock=clock)
    run_cell(estimate, clock, "a", 0.5, failed=True)
    run_cell(estimate, clock, "a", 30)
    run_cell(estimate, clock, "a", 30.5, encode=0.5)  # a cache read: under a tenth
    assert estimate.seconds() == pytest.approx(197 * 30.25)
    assert estimate.text() == "about 1.7 h left"
    for _ in range(100):
        run_cell(estimate, clock, "a", 30)
    assert estimate.text() == "about 48.5 min left"
