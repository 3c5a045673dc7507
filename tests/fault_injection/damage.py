"""Damage cases: each kind of file a rerun reads back (FILE_KINDS) gets each damage (DAMAGES:
truncate to half, invert the middle byte, flip one random bit, empty, delete, garbage JSON)
and the suite is rerun from the state that makes the file be read: a finished run for the
run directory's files, a finished run less one cell for checkpoints, a new run directory
over the full cache for the feature and dataset caches, and a new run directory over a
cache holding only the demo world for the demo world's files."""

from __future__ import annotations

import fnmatch
import json
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .contract import CORRECT, judge
from .lab import Case, Lab, matches_baseline, past, reset_work, snapshot


@dataclass(frozen=True)
class FileKind:
    """Files a rerun reads back: ``pattern`` under the run directory or the cache, and the
    state the rerun starts from so that the file is read."""

    name: str
    root: str  # run or cache
    pattern: str
    state: str  # finished, finished+lock, cell-pending, fresh-run, demo-only


FILE_KINDS = (
    FileKind("run.json", "run", "run.json", "finished"),
    FileKind("stale .lock", "run", ".lock", "finished+lock"),
    FileKind("cell .json", "run", "cells/*/seed-*.json", "finished"),
    FileKind("cell .npz", "run", "cells/*/seed-*.npz", "finished"),
    FileKind("checkpoint", "run", "checkpoints/*/last.safetensors", "cell-pending"),
    FileKind("feature .npy", "cache", "features/*.npy", "fresh-run"),
    FileKind("feature .json sidecar", "cache", "features/*.json", "fresh-run"),
    FileKind("dataset cache meta.json", "cache", "datasets/*/meta.json", "fresh-run"),
    FileKind("dataset cache .arrow", "cache", "datasets/*.arrow", "fresh-run"),
    FileKind("demo dataset_coco.json", "cache", "demo/*/coco/dataset_coco.json", "demo-only"),
    FileKind("demo instances .json", "cache", "demo/*/coco/annotations/instances_*.json",
             "demo-only"),
    FileKind("demo image .jpg", "cache", "demo/*/coco/*.jpg", "demo-only"),
    FileKind("demo_world.json", "cache", "demo/*/demo_world.json", "fresh-run"),
)
DAMAGES = ("truncate", "flip-byte", "flip-bit", "empty", "delete", "garbage-json")


def damage_file(path: Path, how: str, rng: np.random.Generator, variant: str = "swapped") -> str:
    """Damage ``path`` in place (``variant``: garbage-json's); returns what was done."""
    data = path.read_bytes()
    if how == "truncate":
        path.write_bytes(data[: len(data) // 2])
        return f"truncate {path} to its first {len(data) // 2} of {len(data)} bytes"
    if how in ("flip-byte", "flip-bit"):
        # the middle byte inverted; or one bit of a random byte, which keeps text text
        # and numbers numbers: the damage only a checksum notices
        at = len(data) // 2 if how == "flip-byte" else int(rng.integers(len(data)))
        mask = 0xFF if how == "flip-byte" else 1 << int(rng.integers(8))
        flipped = bytearray(data)
        flipped[at] ^= mask
        path.write_bytes(bytes(flipped))
        return f"flip byte {at} of {path} (xor {mask:#04x}: {data[at:at + 1]!r} -> " \
               f"{bytes(flipped[at:at + 1])!r})"
    if how == "empty":
        path.write_bytes(b"")
        return f"empty {path}"
    if how == "delete":
        path.unlink()
        return f"delete {path}"
    if how == "garbage-json":
        path.write_text(garbage_json(data, variant))
        return f"replace {path} with garbage JSON ({variant!r}: see garbage_json)"
    raise ValueError(how)


GARBAGE = ("swapped", "list", "strings-only")  # garbage-json variants (see run_damage)


def garbage_json(data: bytes, variant: str) -> str:
    """Valid JSON of the wrong shape, from a JSON object's own keys (anything else becomes
    ``{"garbage": true}`` or ``["garbage"]``).

    swapped: every non-string value swapped for one of another type; strings stay, so a
    cell still says status "ok" and keeps its arrays' checksum. list: the object inside a
    list. strings-only: only the string values kept (a cell keeps its status and checksum
    and loses its metrics)."""
    try:
        original = json.loads(data)
    except ValueError:
        original = None
    if variant == "list":
        return json.dumps([original if isinstance(original, dict) else "garbage"])
    if not isinstance(original, dict):
        return json.dumps({"garbage": True})
    if variant == "strings-only":
        return json.dumps({k: v for k, v in original.items() if isinstance(v, str)})
    swapped = {dict: lambda v: [v], list: lambda v: {"items": v}, bool: lambda v: {"flag": v},
               int: lambda v: str(v), float: lambda v: str(v), type(None): lambda v: {}}
    return json.dumps({key: value if isinstance(value, str) else swapped[type(value)](value)
                       for key, value in original.items()})


def setup_damage_state(lab: Lab, kind: FileKind, target_rel: str) -> None:
    state = "finished" if kind.state in ("finished+lock", "cell-pending") else kind.state
    reset_work(lab, state)
    if kind.state == "finished+lock":
        # what a killed run leaves: its lock, naming a process that no longer runs
        (lab.run_dir / ".lock").write_text(json.dumps({"pid": dead_pid(),
                                                        "host": socket.gethostname()}))
    if kind.state == "cell-pending":
        # the cell of this checkpoint is not finished, so the rerun reloads its training
        cell = lab.run_dir / "cells" / Path(target_rel).parent.relative_to("checkpoints")
        for suffix in (".json", ".npz"):
            cell.with_suffix(suffix).unlink()


def dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def candidates(lab: Lab, kind: FileKind) -> list[str]:
    """The files of ``kind`` in the baseline (relative to the run directory or the cache)."""
    root = lab.baseline / kind.root
    if kind.state == "finished+lock":
        return [".lock"]
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if p.is_file() and fnmatch.fnmatchcase(p.relative_to(root).as_posix(),
                                                         kind.pattern))


def damage_case(lab: Lab, kind: FileKind, how: str, target_rel: str,
                variant: str = "swapped") -> Case:
    started = time.monotonic()
    setup_damage_state(lab, kind, target_rel)
    target = (lab.run_dir if kind.root == "run" else lab.cache) / target_rel
    done = damage_file(target, how, lab.rng, variant)
    before = snapshot(lab)
    rerun = lab.run_suite()
    names = (target.name, target_rel)
    outcome, detail = judge(rerun, matches_baseline(lab), names)
    named = any(name in rerun.stderr for name in names) if outcome == CORRECT else None
    steps = [f"1. baseline: {lab.rerun_step()} (from an empty cache)",
             f"2. state: {STATE_STEPS[kind.state]}", f"3. {done}",
             f"4. rerun: {lab.rerun_step()}"]
    case = Case("damage", f"{kind.name} / {how}", outcome,
                detail or f"{target_rel}", steps, time.monotonic() - started, named)
    lab.record(case, before)
    shutil.rmtree(before, ignore_errors=True)
    return case


STATE_STEPS = {
    "finished": "the finished baseline run directory and cache",
    "finished+lock": "the finished baseline, plus a .lock naming a process that has exited",
    "cell-pending": "the finished baseline less the JSON and .npz of this checkpoint's cell",
    "fresh-run": "the baseline's cache and a new (empty) run directory",
    "demo-only": "a new run directory and a cache holding only the demo world (no parsed "
                 "datasets, no features)",
}


def run_damage(lab: Lab, rounds: int = 1, deadline: float | None = None,
               first_round: int = 0) -> list[Case]:
    """Every damage on every file kind, ``rounds`` times or until ``deadline``. Round 0 (the
    whole matrix) always completes; each round picks other files of each kind where there
    are, and the k-th kind gets garbage-json's variant GARBAGE[(round + k) % 3], so every
    round tries every variant and three rounds try each on every kind."""
    done: list[Case] = []
    for round_ in range(first_round, first_round + rounds):
        for k, kind in enumerate(FILE_KINDS):
            files = candidates(lab, kind)
            order = lab.rng.permutation(len(files))
            for i, how in enumerate(DAMAGES):
                if round_ and past(deadline):
                    return done
                target = files[int(order[(round_ * len(DAMAGES) + i) % len(files)])]
                variant = GARBAGE[(round_ + k) % len(GARBAGE)]
                done.append(damage_case(lab, kind, how, target, variant))
    return done
