"""The command line: ``python -m fault_injection [options]`` runs the baseline, then every
category of case within the time budget, prints the report and exits 1 if any case is BAD."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from .coco_fuzz import run_coco_fuzz
from .contract import BAD
from .damage import run_damage
from .fork_server import serve_forks
from .kills import run_kills, run_leaderboard_kills
from .lab import Lab, prepare
from .report import write_report
from .suite_fuzz import run_suite_fuzz

DESCRIPTION = ("Fault injection for ravlm-bench: kill runs, damage what they read back, fuzz "
               "their inputs.")

# shares of the time left after the damage matrix
SHARES = {"kill": 0.30, "kill-leaderboard": 0.05, "fuzz-suite": 0.15, "fuzz-coco": 0.25}
# and the rest, about a quarter, for more damage rounds (other files, other garbage)


def run_all(lab: Lab, budget_s: float) -> None:
    end = time.monotonic() + budget_s
    run_damage(lab, rounds=1)
    left = max(0.0, end - time.monotonic())
    for category, runner in (("kill", run_kills), ("kill-leaderboard", run_leaderboard_kills),
                             ("fuzz-suite", run_suite_fuzz), ("fuzz-coco", run_coco_fuzz)):
        runner(lab, deadline=time.monotonic() + SHARES[category] * left)
    run_damage(lab, rounds=10, deadline=end, first_round=1)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m fault_injection", description=DESCRIPTION)
    parser.add_argument("--budget-s", type=float, default=900.0,
                        help="seconds for the cases after the baseline (default 900)")
    parser.add_argument("--seed", type=int, default=0, help="seeds every choice (default 0)")
    parser.add_argument("--out", type=Path, default=None,
                        help="work directory (default: a new temporary directory)")
    parser.add_argument("--fresh-processes", action="store_true",
                        help="a new interpreter per CLI call instead of forked children")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    if argv is None and sys.argv[1:] == ["--fork-server"]:  # how ForkServer starts the package
        serve_forks()
        return 0
    args = parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="ravlm-faults-"))
    print(f"work directory: {out}", flush=True)
    lab = prepare(out, args.seed, args.fresh_processes)
    try:
        run_all(lab, args.budget_s)
    finally:
        lab.launcher.close()
        print(write_report(lab))
    return 1 if any(c.outcome == BAD for c in lab.cases) else 0
