"""The demo suite end to end: a cold run, --force reruns on cached features, and torchrun.

Prints wall time and the per-stage sums (encode, index, train, evaluate) of every run, and
the ratios the runner and torchrun issues set: the cached rerun against the cold run
(target <= 0.2) and 2 processes against 1 (overhead target < 20%; no speed-up is expected
on a 2-core machine). Each torchrun run's cells are compared with the one-process run's:
how many differ in any metric or prediction array, and the largest difference of a saved
float array (probabilities, similarities: the order of floating-point reductions). The
--force rerun reloads finished trainings; a --retrain rerun, which trains every head again
on the cached features, is shown beside it.

    python benchmarks/bench_demo_suite.py [--suite demo] [--processes 1 2] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tabulate import tabulate

STAGES = ("encode_s", "index_s", "train_s", "evaluate_s")


def run_suite(suite: str, run_dir: Path, cache: Path, *flags: str, processes: int = 1) -> float:
    args = ["run", suite, "--out", str(run_dir), "-q", *flags]
    if processes == 1:
        command = [sys.executable, "-m", "ravlm_bench", *args]
    else:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1",
                   "--nproc-per-node", str(processes), "--master-addr", "127.0.0.1",
                   "--master-port", str(port), "-m", "ravlm_bench", *args]
    env = {**os.environ, "RAVLM_BENCH_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    started = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if result.returncode not in (0, 1):
        sys.exit(f"suite run failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return wall


def stage_sums(run_dir: Path) -> dict[str, float]:
    sums = dict.fromkeys(STAGES, 0.0)
    cells = failed = 0
    for path in (run_dir / "cells").rglob("seed-*.json"):
        record = json.loads(path.read_text())
        cells += 1
        failed += record["status"] != "ok"
        for stage in STAGES:
            sums[stage] += record.get("timings", {}).get(stage) or 0.0
    return {**sums, "cells": cells, "failed": failed}


def cell_agreement(one: Path, other: Path, caches: tuple[Path, Path]
                   ) -> tuple[int, int, float]:
    """(cells, cells whose metrics or non-float arrays differ, largest float difference).
    Paths are compared below each run's own cache (each run has one: the demo world's
    files lie in it)."""
    import numpy as np

    def below_cache(values, cache: Path):
        if values.dtype.kind != "U" or not values.size:
            return values
        return np.char.replace(values, str(cache), "")

    cells = sorted((one / "cells").rglob("seed-*.json"))
    differ, largest = 0, 0.0
    for path in cells:
        twin = other / path.relative_to(one)
        mine, theirs = json.loads(path.read_text()), json.loads(twin.read_text())
        same = mine["status"] == theirs["status"] and mine.get("metrics") == theirs.get("metrics")
        if path.with_suffix(".npz").exists():
            with np.load(path.with_suffix(".npz")) as a, np.load(twin.with_suffix(".npz")) as b:
                for name in a.files:
                    if a[name].dtype.kind == "f" and a[name].shape == b[name].shape:
                        gap = np.abs(np.nan_to_num(a[name]) - np.nan_to_num(b[name]))
                        largest = max(largest, float(gap.max(initial=0.0)))
                        same &= bool(gap.max(initial=0.0) <= 1e-5)
                    else:
                        same &= bool(np.array_equal(below_cache(a[name], caches[0]),
                                                    below_cache(b[name], caches[1])))
        differ += not same
    return len(cells), differ, largest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="demo")
    parser.add_argument("--processes", type=int, nargs="*", default=[1],
                        help="also run cold under torchrun with these process counts")
    parser.add_argument("--keep", type=Path, help="keep run directories and caches here")
    args = parser.parse_args()

    base = args.keep or Path(tempfile.mkdtemp(prefix="ravlm-bench-demo-"))
    rows, agreement = [], {}
    try:
        cold_cache = base / "cache-1"
        cold = run_suite(args.suite, base / "run-1", cold_cache)
        rows.append(("cold, 1 process", cold, stage_sums(base / "run-1")))
        warm = run_suite(args.suite, base / "run-1", cold_cache, "--force")
        rows.append(("--force rerun, features cached", warm, stage_sums(base / "run-1")))
        retrain = run_suite(args.suite, base / "run-1", cold_cache, "--retrain")
        rows.append(("--retrain rerun, features cached", retrain, stage_sums(base / "run-1")))
        for n in args.processes:
            if n == 1:
                continue
            wall = run_suite(args.suite, base / f"run-{n}", base / f"cache-{n}", processes=n)
            rows.append((f"cold, {n} processes (torchrun, gloo)", wall,
                         stage_sums(base / f"run-{n}")))
            agreement[n] = cell_agreement(base / "run-1", base / f"run-{n}",
                                          (cold_cache, base / f"cache-{n}"))
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)

    table = [[name, f"{wall:.1f}", f"{wall / cold:.2f}", *(f"{s[k]:.1f}" for k in STAGES),
              f"{s['cells']} ({s['failed']} failed)"] for name, wall, s in rows]
    print(tabulate(table, headers=["run", "wall s", "vs cold", *STAGES, "cells"]))
    print(f"\ncached rerun / cold run: {warm / cold:.2f} (target <= 0.20)")
    print(f"--retrain rerun / cold run: {retrain / cold:.2f} (heads trained again)")
    for name, wall, _ in rows[3:]:
        print(f"{name} / 1 process: {wall / cold:.2f} (overhead target < 1.20)")
    for n, (cells, differ, largest) in agreement.items():
        print(f"{n} processes against 1: {differ} of {cells} cells differ (target 0); largest "
              f"float difference {largest:.1e} (probabilities, similarities; <= 1e-5)")


if __name__ == "__main__":
    main()
