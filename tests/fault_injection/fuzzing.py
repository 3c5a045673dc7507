"""What the two fuzzers share: the valid suite they mutate, paths into a parsed document,
the copy of the demo world's COCO tree they run over, and one fuzz case: the mutated suite
must exit 2 with one error line, or run with sane results (every cell ok, its arrays
matching their checksum, every metric in [0, 1])."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

from .contract import judge
from .lab import Case, Lab, snapshot

# The fuzz suites' starting point: every kind of table and value a suite has, cheap to run.
FUZZ_SUITE = """\
name = "fuzz"
seeds = [0]
baseline = "knn-exact"

[run]
data_seed = 0

[data.coco]
root = "{coco}"

[defaults]
image_encoder = {{ name = "resnet18", image_size = 32, seed = 0 }}
text_encoder = {{ name = "minilm-l6", max_length = 32 }}

[systems.knn-exact]
retriever = "exact"
fusion_head = {{ name = "knn", k = 5 }}

[systems.concat]
fusion_head = {{ name = "concat", epochs = 2, hidden = 16 }}

[tasks.coco-category]
systems = ["knn-exact", "concat"]
"""


KeyPath = tuple  # a path into a parsed TOML or JSON document: str keys, int indices


def leaf_paths(doc: Any, prefix: KeyPath = ()) -> list[KeyPath]:
    """Every key path of ``doc``, tables and lists included."""
    found = []
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) \
        if isinstance(doc, list) else ()
    for key, value in items:
        found.append((*prefix, key))
        found += leaf_paths(value, (*prefix, key))
    return found


def get_in(doc: Any, path: KeyPath) -> Any:
    for key in path:
        doc = doc[key]
    return doc


def set_in(doc: Any, path: KeyPath, value: Any) -> None:
    get_in(doc, path[:-1])[path[-1]] = value


def del_in(doc: Any, path: KeyPath) -> None:
    del get_in(doc, path[:-1])[path[-1]]


def rename_in(doc: dict, path: KeyPath, new: str) -> None:
    """Rename the key at ``path``, keeping its place among its siblings."""
    parent = get_in(doc, path[:-1])
    items = [(new if k == path[-1] else k, v) for k, v in parent.items()]
    parent.clear()
    parent.update(items)


def dotted(path: KeyPath) -> str:
    return ".".join(str(p) for p in path) or "(top level)"



def sane_results(run_dir: Path) -> str | None:
    """What is wrong with a successful fuzz run, None when nothing is: every cell of the
    suite as the run read it (run.json's tasks, their systems, its seeds) finished ok, its
    arrays match their checksum, and every metric is in [0, 1]."""
    try:
        run = json.loads((run_dir / "run.json").read_text())
        cells = [(task, system, int(seed)) for task, entry in run["tasks"].items()
                 for system in entry["systems"] for seed in run["seeds"]]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return f"{run_dir / 'run.json'}: no readable list of cells ({type(exc).__name__})"
    if not cells:
        return f"{run_dir / 'run.json'}: no cells"
    for task, system, seed in cells:
        problem = _cell_problem(run_dir / "cells" / task / system / f"seed-{seed}.json")
        if problem:
            return problem
    return None


def _cell_problem(path: Path) -> str | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return f"{path}: {type(exc).__name__}"
    if not isinstance(record, dict) or record.get("status") != "ok":
        return f"{path}: not a finished cell"
    arrays = path.with_suffix(".npz")
    if not arrays.exists() or hashlib.sha256(arrays.read_bytes()).hexdigest() \
            != record.get("arrays_sha256"):
        return f"{arrays}: missing or not matching its checksum"
    for name, value in _numbers(record.get("metrics")):
        # scores lie in [0, 1]; the retrieval dependence is a difference of two of them
        low = -1.0 if "retrieval_dependence" in name.split(".") else 0.0
        if not (math.isfinite(value) and low <= value <= 1.0):
            return f"{path}: metric {name} = {value}"
    return None


def _numbers(value: Any, prefix: str = "") -> list[tuple[str, float]]:
    if isinstance(value, dict):
        return [n for k, v in value.items() for n in _numbers(v, f"{prefix}{k}.")]
    if isinstance(value, list):
        return [n for i, v in enumerate(value) for n in _numbers(v, f"{prefix}{i}.")]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [(prefix.rstrip("."), float(value))]
    return []


def fuzz_data(lab: Lab) -> Path:
    """The baseline's COCO tree of the demo world, copied to a path of its own: fuzz cases
    never touch the baseline's cache."""
    data = lab.out / "data"
    if not (data / "coco").exists():
        world = next((lab.baseline / "cache" / "demo").glob("*/coco"))
        shutil.copytree(world, data / "coco")
    return data / "coco"


def fuzz_case(lab: Lab, category: str, kind: str, description: str, suite_text: str,
              names: list[str], setup: list[str], started: float) -> Case:
    suite = lab.work / "suite.toml"
    suite.write_text(suite_text)
    run_dir = lab.work / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    before = snapshot(lab, cache=False)
    finished = lab.run_suite(suite, run_dir)
    outcome, detail = judge(finished, lambda: sane_results(run_dir),
                            (suite.name, *names), error_rc=(2,))
    steps = [*setup, f"{len(setup) + 1}. suite {suite} ({description}); kept in before/",
             f"{len(setup) + 2}. {lab.command('run', str(suite), '--out', str(run_dir), '-q')}"]
    case = Case(category, kind, outcome, f"{description}: {detail}".rstrip(": "), steps,
                time.monotonic() - started)
    lab.record(case, before)
    shutil.rmtree(before, ignore_errors=True)
    return case
