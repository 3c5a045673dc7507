"""Kill cases: the suite's run from an empty cache, SIGKILLed right after a file appears
(the demo world being generated, the parsed-dataset cache, run.json, the n-th feature array
or sidecar, a checkpoint or its temporary file, the n-th cell's arrays or JSON), sometimes a
few milliseconds later, or at a random moment of the baseline's duration; then rerun to
completion and compared with the baseline. A ``ravlm-bench leaderboard`` publish is killed
the same way and republished; every file must be byte-identical to the uninterrupted
publish."""

from __future__ import annotations

import fnmatch
import os
import shutil
import signal
import time
from dataclasses import dataclass, replace
from pathlib import Path

from .contract import CORRECT, judge
from .lab import (
    CELLS,
    FEATURE_ARRAYS,
    TRAINED,
    Case,
    Lab,
    matches_baseline,
    past,
    pick,
    reset_work,
    snapshot,
)
from .launcher import CALL_TIMEOUT_S


@dataclass(frozen=True)
class KillPoint:
    """Kill when ``pattern`` (fnmatch over paths relative to ``root``) matches ``nth`` files
    at once, ``delay_s`` later; or, without a pattern, ``at_s`` after the start."""

    label: str
    group: str
    root: str = "run"  # run, cache or board
    pattern: str | None = None
    nth: int = 1
    at_s: float = 0.0
    delay_s: float = 0.0

    def fired(self, roots: dict[str, Path], elapsed: float) -> bool:
        if self.pattern is None:
            return elapsed >= self.at_s
        return count_matches(roots[self.root], self.pattern) >= self.nth


def count_matches(root: Path, pattern: str) -> int:
    found = 0
    for folder, dirs, files in os.walk(root):
        base = os.path.relpath(folder, root)
        for name in (*files, *dirs):
            rel = name if base == "." else f"{base}/{name}"
            found += fnmatch.fnmatchcase(rel, pattern)
    return found


def kill_stages() -> dict[str, list[KillPoint]]:
    """The file-triggered kill points of the suite's run, by stage."""
    def points(stage: str, label: str, root: str, pattern: str, upto: int = 1):
        return [KillPoint(label.format(n=n), stage, root, pattern, n) for n in range(1, upto + 1)]

    return {
        "demo world": points("demo world", "demo world being generated", "cache",
                             "demo/.tmp-*/*")
        + points("demo world", "demo world renamed into place", "cache",
                 "demo/[!.]*/demo_world.json"),
        "dataset parse": points("dataset parse", "dataset cache being written", "cache",
                                "datasets/.tmp-*/*.arrow")
        + points("dataset parse", "dataset cache renamed into place", "cache",
                 "datasets/[!.]*/meta.json"),
        "run.json": points("run.json", "run.json written", "run", "run.json"),
        "encoding": points("encoding", "feature array {n} renamed into place", "cache",
                           "features/*.npy", FEATURE_ARRAYS)
        + points("encoding", "feature sidecar {n} written", "cache", "features/*.json",
                 FEATURE_ARRAYS),
        "training": points("training", "checkpoint {n} first written", "run",
                           "checkpoints/*last.safetensors", TRAINED)
        + points("training", "a checkpoint being written", "run",
                 "checkpoints/*.last.safetensors.*.tmp"),
        "cell writing": points("cell writing", "cell arrays {n} written", "run", "cells/*.npz",
                               CELLS)
        + points("cell writing", "cell {n} written", "run", "cells/*.json", CELLS),
    }


def timed_point(lab: Lab, duration: float, group: str = "timed") -> KillPoint:
    at = float(lab.rng.uniform(0.03, 0.97)) * duration
    return KillPoint(f"at {at:.2f} s", group, at_s=at)


def some_later(lab: Lab, point: KillPoint) -> KillPoint:
    """Half the points kill up to 50 ms after their file: inside whatever comes next."""
    if lab.rng.random() < 0.5:
        return point
    return replace(point, delay_s=float(lab.rng.uniform(0, 0.05)))


def kill_when(lab: Lab, args: list[str], point: KillPoint, roots: dict[str, Path]) -> bool:
    """Start a call and SIGKILL it at ``point``; False when it ended before the point."""
    started = time.monotonic()
    child = lab.launcher.start(args, lab.env(), lab.out)
    while not point.fired(roots, time.monotonic() - started):
        if child.poll() is not None:
            lab.launcher.finish(args, started, child.poll())
            return False
        if time.monotonic() - started > CALL_TIMEOUT_S:
            break
        time.sleep(0.003)
    time.sleep(point.delay_s)
    rc = child.kill()
    lab.launcher.finish(args, started, rc)
    return rc == -signal.SIGKILL


def kill_case(lab: Lab, point: KillPoint) -> Case | None:
    """Run the suite from an empty cache, kill it at ``point``, rerun it to completion and
    compare with the baseline. None when the run ended before the point was reached."""
    reset_work(lab, "cold")
    args = ["run", str(lab.suite), "--out", str(lab.run_dir), "-q"]
    started = time.monotonic()
    killed = kill_when(lab, args, point, {"run": lab.run_dir, "cache": lab.cache})
    if not killed:
        lab.missed["kill"] += 1
        return None
    before = snapshot(lab)
    rerun = lab.run_suite()
    outcome, detail = judge(rerun, matches_baseline(lab))
    leftovers = temporary_leftovers(lab.work)
    if leftovers and outcome == CORRECT:
        detail = f"left {len(leftovers)} temporary file(s), e.g. {leftovers[0]}"
    steps = [f"1. from an empty cache: {lab.rerun_step()}",
             f"2. SIGKILL it {point.label}" + (f" (+{point.delay_s * 1000:.0f} ms)"
                                               if point.delay_s else ""),
             f"3. rerun: {lab.rerun_step()}"]
    case = Case("kill", f"{point.group}: {point.label}", outcome, detail, steps,
                time.monotonic() - started)
    lab.record(case, before)
    shutil.rmtree(before, ignore_errors=True)
    return case


def temporary_leftovers(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if p.name.endswith(".tmp") or p.name.startswith(".tmp-"))


def run_kills(lab: Lab, count: int | None = None, deadline: float | None = None) -> list[Case]:
    """Kill cases until ``count`` of them killed something or ``deadline`` passes: first one
    in every stage (in a seeded order; a stage's other points are tried when the run ended
    before one), then points of any stage at random."""
    stages = kill_stages()
    stages["timed"] = [timed_point(lab, lab.baseline_s) for _ in range(3)]
    done: list[Case] = []

    def enough() -> bool:
        return (count is not None and len(done) >= count) or past(deadline, minimum=not done)

    for stage in [list(stages)[i] for i in lab.rng.permutation(len(stages))]:
        for i in lab.rng.permutation(len(stages[stage]))[:3]:
            if enough():
                return done
            case = kill_case(lab, some_later(lab, stages[stage][int(i)]))
            if case is not None:
                done.append(case)
                break
    every = [point for points in stages.values() for point in points]
    misses = 0
    while not enough() and misses < 20:
        point = timed_point(lab, lab.baseline_s) if lab.rng.random() < 0.3 else pick(lab.rng,
                                                                                      every)
        case = kill_case(lab, some_later(lab, point))
        misses += case is None
        if case is not None:
            done.append(case)
    return done



# -- the leaderboard --------------------------------------------------------------------------


def leaderboard_case(lab: Lab, point: KillPoint) -> Case | None:
    """Kill a publish of the baseline's leaderboard at ``point``, publish again, and compare
    every file with the uninterrupted publish, byte for byte."""
    reset_work(lab, "finished")
    out = lab.work / "board"
    args = ["leaderboard", str(lab.run_dir), "--out", str(out), "-q"]
    started = time.monotonic()
    if not kill_when(lab, args, point, {"board": out}):
        lab.missed["kill-leaderboard"] += 1
        return None
    before = snapshot(lab)
    again = lab.cli(*args)
    outcome, detail = judge(again, lambda: board_difference(out, lab.board))
    leftovers = temporary_leftovers(out) if out.exists() else []
    if leftovers and outcome == CORRECT:
        detail = f"left {len(leftovers)} temporary file(s), e.g. {leftovers[0]}"
    steps = [f"1. {lab.command(*args)}", f"2. SIGKILL it {point.label}",
             f"3. again: {lab.command(*args)}",
             f"4. compare {out} with an uninterrupted publish ({lab.board})"]
    case = Case("kill-leaderboard", point.label, outcome, detail, steps,
                time.monotonic() - started)
    lab.record(case, before)
    shutil.rmtree(before, ignore_errors=True)
    return case


def board_difference(found: Path, expected: Path) -> str | None:
    names = sorted(p.name for p in expected.iterdir())
    for name in names:
        path = found / name
        if not path.exists():
            return f"{name} missing"
        if path.read_bytes() != (expected / name).read_bytes():
            return f"{name} differs"
    # a killed atomic write leaves its hidden temporary file: noted, as for runs, not wrong
    extra = sorted(p.name for p in found.iterdir()
                   if p.name not in names and not p.name.endswith(".tmp"))
    return f"unexpected files {extra}" if extra else None


def run_leaderboard_kills(lab: Lab, count: int | None = None,
                          deadline: float | None = None) -> list[Case]:
    files = len(list(lab.board.iterdir()))
    points = [KillPoint(f"after its file {n} of {files} appeared", "publish", "board", "*", n)
              for n in range(1, files + 1)]
    points = [points[i] for i in lab.rng.permutation(len(points))]
    done: list[Case] = []
    tries = 0
    while (count is None or len(done) < count) and not past(deadline, minimum=not done):
        tries += 1
        point = points.pop() if points and tries % 2 else timed_point(lab, lab.publish_s,
                                                                      "publish")
        case = leaderboard_case(lab, point)
        if case is not None:
            done.append(case)
        if tries > 4 * (count or 10 ** 6) + 20:
            break
    return done
