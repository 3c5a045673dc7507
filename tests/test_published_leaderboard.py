"""The published demo leaderboard is what the code produces: a change that moves its
numbers cannot land without `leaderboards/demo` regenerated in the same change.

The check reruns the demo suite's retrieval-only systems (`knn-exact`: the demo world,
the demo's encoders, exact search, the neighbours' vote; nothing is trained) on the very
data and seeds of the demo suite and compares every metric, its spread and its interval
with the committed `leaderboards/demo/leaderboard.json`. It assumes the machine kind that
regenerated the leaderboard (the encoders run in bf16 where the CPU has it, and bf16
arithmetic differs between CPU generations); trained heads are left out, since their
numbers also depend on the floating-point order of thousands of steps.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from clitools import run_cli

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
DEMO_SUITE = ROOT / "ravlm_bench" / "suites" / "demo.toml"
PUBLISHED = ROOT / "leaderboards" / "demo" / "leaderboard.json"
CHECKED_SYSTEMS = ("knn-exact",)


def _toml_value(value) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)  # strings, numbers, booleans and lists read alike in TOML


def untrained_demo_suite(path: Path) -> Path:
    """The demo suite with only :data:`CHECKED_SYSTEMS`, on the tasks that run them."""
    raw = tomllib.loads(DEMO_SUITE.read_text())
    lines = [f"name = {_toml_value(raw['name'])}", f"seeds = {_toml_value(raw['seeds'])}"]
    for table in ("run", "defaults"):
        lines.append(f"[{table}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in raw.get(table, {}).items()]
    for dataset, params in raw["data"].items():
        lines.append(f"[data.{dataset}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in params.items()]
    for system in CHECKED_SYSTEMS:
        lines.append(f"[systems.{system}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in raw["systems"][system].items()]
    for task, params in raw["tasks"].items():
        systems = [s for s in params.get("systems", raw["systems"]) if s in CHECKED_SYSTEMS]
        if systems:
            lines.append(f"[tasks.{task}]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in params.items() if k != "systems"]
            lines.append(f"systems = {_toml_value(systems)}")
    path.write_text("\n".join(lines) + "\n")
    return path


def metric_fields(row: dict, metrics: list[str]) -> dict:
    suffixes = ("", "_std", "_ci95_lo", "_ci95_hi")
    return {f"{m}{s}": row.get(f"{m}{s}") for m in metrics for s in suffixes}


def test_published_demo_leaderboard_matches_a_fresh_run(tmp_path):
    suite = untrained_demo_suite(tmp_path / "demo-untrained.toml")
    result = run_cli("run", str(suite), "--out", str(tmp_path / "run"), "-q", timeout=900)
    assert result.returncode == 0, result.stderr
    fresh = run_cli("leaderboard", str(tmp_path / "run"), "--format", "json", "--out",
                    str(tmp_path / "board"))
    assert fresh.returncode == 0, fresh.stderr
    ours = json.loads((tmp_path / "board" / "leaderboard.json").read_text())["tasks"]
    published = json.loads(PUBLISHED.read_text())["tasks"]
    compared = 0
    for task, table in ours.items():
        assert task in published, f"{task} is not in {PUBLISHED}: regenerate it"
        metrics = table["metrics"]
        rows = {row["system"]: row for row in published[task]["rows"]}
        for row in table["rows"]:
            assert row["system"] in rows, f"{task}/{row['system']} not in {PUBLISHED}"
            expected = metric_fields(rows[row["system"]], metrics)
            got = metric_fields(row, metrics)
            for name, value in got.items():
                assert value == pytest.approx(expected[name], abs=1e-12, nan_ok=True), (
                    f"{task} / {row['system']} / {name}: {value} now, {expected[name]} "
                    f"published; regenerate leaderboards/demo (tox -e bench-demo)")
                compared += 1
    assert compared >= 3 * 7 * 4  # three tasks' worth of metrics, spreads and intervals


def test_published_tiers_agree_with_the_published_paired_tests():
    """Every task of the committed leaderboard is ranked by its main metric, and a new tier
    starts exactly where the Holm-adjusted two-sided test against the system above rejects
    (alpha 0.05); the Holm adjustment is recomputed over the task's adjacent pairs."""
    document = json.loads(PUBLISHED.read_text())
    checked = 0
    for task, table in document["tasks"].items():
        main = table["main_metric"]
        ranked = [row for row in table["rows"] if row[main] is not None]
        values = [row[main] for row in ranked]
        assert values == sorted(values, reverse=True), task
        p_values = sorted((row["p_vs_above"], i) for i, row in enumerate(ranked[1:], 1))
        adjusted, running = {}, 0.0
        for rank, (p, i) in enumerate(p_values):
            running = max(running, min(1.0, (len(p_values) - rank) * p))
            adjusted[i] = running
        assert ranked[0]["tier"] == 1 and ranked[0]["p_vs_above"] is None
        for i in range(1, len(ranked)):
            assert ranked[i]["p_vs_above_holm"] == pytest.approx(adjusted[i], abs=1e-12)
            step = 1 if adjusted[i] < 0.05 else 0
            assert ranked[i]["tier"] == ranked[i - 1]["tier"] + step, (task, ranked[i]["system"])
            checked += 1
    assert checked >= 20
