"""`ravlm-bench run [SUITE]`: load a suite (the built-in demo suite by default), run its
cells into the run directory (once per rank under torchrun), print its leaderboard and a
summary, and exit 1 when a cell failed. While it runs, SIGTERM stops it as Ctrl-C does
(the lock released, finished cells kept), and the command exits 143 with one line."""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def add_parser(subparsers, common) -> None:
    p = subparsers.add_parser(
        "run", parents=[common], help="run a benchmark suite and print its leaderboard",
        description="Run every (task, system, seed) cell of a suite. Finished cells are kept "
                    "in the run directory; a rerun resumes.")
    p.add_argument("suite", nargs="?", default=None,
                   help="a suite .toml file or a built-in suite name (default: demo)")
    p.add_argument("--out", type=Path, default=None,
                   help="run directory (default: runs/<suite name>)")
    p.add_argument("--force", action="store_true",
                   help="recompute finished cells (a finished training of the same head, "
                        "data, seed and code is reloaded, not repeated)")
    p.add_argument("--retrain", action="store_true",
                   help="recompute finished cells and train every head afresh")
    p.add_argument("--retriever", metavar="NAME[,NAME...]", default="",
                   help="the retrievers to benchmark, each in place of a suite's open "
                        "retriever (retriever = \"<candidate>\"), beside its references: "
                        "e.g. ravlm-bench run retrievers --retriever numpy-flat")
    p.set_defaults(handler=run_suite)


def run_suite(ctx) -> int:
    from ravlm_bench.config.suite import load_suite, resolve_suite_path
    from ravlm_bench.foundation.distributed import init_distributed, shutdown
    from ravlm_bench.publish.display import render_terminal
    from ravlm_bench.publish.leaderboard import load_run
    from ravlm_bench.run.runner import Runner

    candidates = [name.strip() for name in ctx.args.retriever.split(",") if name.strip()]
    suite = load_suite(resolve_suite_path(ctx.args.suite), candidates)
    run_dir = ctx.args.out or Path("runs") / suite.name
    dist = init_distributed()  # one process, or the ranks torchrun started
    try:
        with _sigterm_stops(f"terminated (SIGTERM); the finished cells in {run_dir} are "
                            f"kept, and a rerun resumes"):
            runner = Runner(ctx.registry, suite, run_dir, force=ctx.args.force,
                            retrain=ctx.args.retrain,
                            progress=not ctx.args.quiet, dist=dist)
            summary = runner.run()
    finally:
        shutdown(dist)
    if not dist.is_main:
        # rank 0 reports for the run (and exits 1 for failed cells); a rank that exits
        # non-zero first would make torchrun stop rank 0 before it prints the leaderboard
        return 0
    print(render_terminal(load_run(run_dir)))
    print(f"\n{len(summary.done)} cells run, {len(summary.skipped)} already finished, "
          f"{len(summary.failed)} failed; results in {run_dir}")
    for task, system, seed, message in summary.failed:
        print(f"failed: {task} / {system} / seed {seed}: {message}", file=sys.stderr)
    return summary.exit_code


@contextmanager
def _sigterm_stops(message: str) -> Iterator[None]:
    """While inside, SIGTERM raises :class:`~ravlm_bench.foundation.errors.Terminated`
    (a KeyboardInterrupt), so the run unwinds as it does on Ctrl-C; the handler before is
    put back on the way out (tests call the CLI in their own process)."""
    from ravlm_bench.foundation.errors import Terminated

    def stop(signum, frame):
        # once: a second SIGTERM must not cut short the unwinding that releases the lock
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated(message)

    try:
        previous = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread: signals are not ours to take
        yield
        return
    try:
        yield
    finally:  # None: a handler not set from Python, which only the default can stand for
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
