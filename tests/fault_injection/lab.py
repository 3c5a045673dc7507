"""The lab every case runs in: one work path, the tiny suite, the baseline it is compared
with (an uninterrupted run and its published leaderboard), and the cases recorded so far.
A BAD case's files and steps are kept under ``bad/``."""

from __future__ import annotations

import os
import re
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .contract import BAD, difference, read_results
from .launcher import CALL_TIMEOUT_S, Finished, Launcher

SUITE = """\
name = "faults"
seeds = [0, 1]
baseline = "knn-exact"

[run]
demo_size = "tiny"

[data.coco]
root = "demo"

[defaults]
image_encoder = { name = "resnet18", image_size = 32, seed = 0 }
text_encoder = { name = "minilm-l6", max_length = 32 }

[systems.knn-exact]
retriever = "exact"
fusion_head = { name = "knn", k = 5 }

[systems.xattn-exact]
retriever = "exact"
fusion_head = { name = "xattn", k = 5, epochs = 6, width = 32, heads = 2, checkpoint_every_s = 0 }

[tasks.coco-category]
"""
CELLS = 4  # 1 task x 2 systems x 2 seeds
FEATURE_ARRAYS = 6  # images and texts of the train, val and test splits
TRAINED = 2  # cells that train (and checkpoint every epoch): xattn-exact's 2 seeds


@dataclass
class Case:
    category: str
    key: str  # e.g. "cell json / truncate", "after feature array 3", "drop-key"
    outcome: str
    detail: str
    steps: list[str]
    seconds: float
    named: bool | None = None  # damage cases that ended correct: was the file named?
    kept: str | None = None  # where a BAD case's files were kept


@dataclass
class Lab:
    """Every case runs at ``work/`` (caches key on absolute paths, so a copied cache is only
    warm at the path it was made at); ``baseline/`` keeps what the uninterrupted run left."""

    out: Path
    seed: int
    launcher: Launcher
    rng: np.random.Generator
    reference: dict = field(default_factory=dict)
    baseline_s: float = 0.0
    publish_s: float = 0.0
    missed: Counter = field(default_factory=Counter)
    cases: list[Case] = field(default_factory=list)

    @property
    def suite(self) -> Path:
        return self.out / "suite.toml"

    @property
    def work(self) -> Path:
        return self.out / "work"

    @property
    def run_dir(self) -> Path:
        return self.work / "run"

    @property
    def cache(self) -> Path:
        return self.work / "cache"

    @property
    def baseline(self) -> Path:
        return self.out / "baseline"

    @property
    def board(self) -> Path:
        return self.out / "board"

    def env(self) -> dict:
        return child_env(self.cache)

    def cli(self, *args: str, timeout: float = CALL_TIMEOUT_S) -> Finished:
        return self.launcher.run(list(args), self.env(), self.out, timeout)

    def run_suite(self, suite: Path | None = None, run_dir: Path | None = None) -> Finished:
        return self.cli("run", str(suite or self.suite), "--out", str(run_dir or self.run_dir),
                        "-q")

    def command(self, *args: str) -> str:
        """A call as a user types it, for the steps of a reproduction."""
        return f"RAVLM_BENCH_CACHE={self.cache} python -m ravlm_bench {' '.join(args)}"

    def rerun_step(self) -> str:
        return self.command("run", str(self.suite), "--out", str(self.run_dir), "-q")

    def record(self, case: Case, before: Path | None = None) -> Case:
        if case.outcome == BAD:
            case.kept = str(keep_bad_case(self, case, before))
        self.cases.append(case)
        return case


def child_env(cache: Path) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAVLM_DATA", "RAVLM_BENCH_DISABLE")}
    env.update(RAVLM_BENCH_CACHE=str(cache), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1",
               # one torch thread: on a busy 2-core machine thread hand-offs cost more than
               # these tiny models' arithmetic (a cold run took 8 s with two, 2.7 s with one)
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


def prepare(out: Path, seed: int = 0, fresh_processes: bool = False) -> Lab:
    """Start the launcher and run the baseline: the suite once, uninterrupted, from an empty
    cache; then publish its leaderboard once. Everything later is compared with these."""
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    for leftover in ("work", "baseline", "board", "bad", "logs", "data"):
        shutil.rmtree(out / leftover, ignore_errors=True)
    (out / "logs").mkdir()
    (out / "suite.toml").write_text(SUITE)
    launcher = Launcher(out / "logs", fresh_processes, child_env(out / "work" / "cache"))
    lab = Lab(out, seed, launcher, np.random.default_rng(seed))
    reset_work(lab, "cold")
    first = lab.run_suite()
    lab.baseline_s = first.seconds
    problem = _baseline_problem(first, lab.run_dir)
    if problem:
        launcher.close()
        raise RuntimeError(f"the baseline run failed ({problem}); stderr:\n{first.stderr}")
    lab.reference = read_results(lab.run_dir)
    shutil.copytree(lab.work, lab.baseline, symlinks=True)
    published = lab.cli("leaderboard", str(lab.run_dir), "--out", str(lab.board), "-q")
    if published.rc != 0:
        raise RuntimeError(f"the baseline leaderboard failed:\n{published.stderr}")
    lab.publish_s = published.seconds
    return lab


def _baseline_problem(first: Finished, run_dir: Path) -> str | None:
    if first.rc != 0:
        return f"exit {first.rc}"
    results = read_results(run_dir)
    if len(results) != CELLS or any(v.get("status") != "ok" for v in results.values()):
        return f"expected {CELLS} finished cells, found {sorted(results)}"
    return None


def reset_work(lab: Lab, state: str) -> None:
    """Put ``work/`` in one of the states a case starts from.

    cold: nothing; finished: the baseline's run directory and cache; fresh-run: the
    baseline's cache and no run directory; demo-only: a cache holding only the demo world.
    """
    shutil.rmtree(lab.work, ignore_errors=True)
    lab.work.mkdir(parents=True)
    if state == "cold":
        lab.cache.mkdir()
        return
    # copytree keeps modification times, which the parsed-dataset cache keys on
    shutil.copytree(lab.baseline / "cache", lab.cache, symlinks=True)
    if state == "finished":
        shutil.copytree(lab.baseline / "run", lab.run_dir, symlinks=True)
    elif state == "demo-only":
        for derived in ("datasets", "features"):
            shutil.rmtree(lab.cache / derived, ignore_errors=True)
    elif state != "fresh-run":
        raise ValueError(f"unknown state {state!r}")


def snapshot(lab: Lab, cache: bool = True) -> Path:
    """A copy of ``work/`` as a call is about to start on it, for a BAD case's reproduction;
    without the cache where only the inputs matter (a replay then starts cold)."""
    target = lab.out / "before"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(lab.work, target, symlinks=True, ignore=None if cache else (
        lambda folder, _: ["cache"] if Path(folder) == lab.work else []))
    return target


def keep_bad_case(lab: Lab, case: Case, before: Path | None) -> Path:
    number = sum(c.outcome == BAD for c in lab.cases) + 1
    slug = re.sub(r"[^A-Za-z0-9.]+", "-", f"{case.category}-{case.key}").strip("-")[:80]
    kept = lab.out / "bad" / f"{number:03d}-{slug}"
    kept.mkdir(parents=True)
    if before is not None and before.exists():
        shutil.move(str(before), kept / "before")
    if lab.work.exists():  # what the failing call left, less the cache (before/ has it)
        shutil.copytree(lab.work, kept / "after", symlinks=True,
                        ignore=lambda folder, _: ["cache"] if Path(folder) == lab.work else [])
    out, err = lab.launcher.log_paths(lab.launcher.calls)  # the call the case was judged on
    shutil.copy(out, kept / "stdout.txt")
    shutil.copy(err, kept / "stderr.txt")
    steps = [*case.steps, "",
             f"To replay the last step: rm -rf {lab.work} && cp -a {kept / 'before'} "
             f"{lab.work}, then run it again (caches key on absolute paths)."]
    (kept / "steps.txt").write_text("\n".join(steps) + "\n")
    return kept



def matches_baseline(lab: Lab, run_dir: Path | None = None) -> Callable[[], str | None]:
    return lambda: difference(read_results(run_dir or lab.run_dir), lab.reference)


def past(deadline: float | None, minimum: bool = False) -> bool:
    """Is the deadline past? Never before a category's first case (``minimum``)."""
    return deadline is not None and not minimum and time.monotonic() >= deadline


def pick(rng: np.random.Generator, items: list | tuple) -> Any:
    return items[int(rng.integers(len(items)))]
