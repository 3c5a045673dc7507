"""`ravlm-bench compare RUN_A RUN_B`: what changed from run A (before) to run B (after).

Prints a table per (task, system, metric) both runs hold: A, B, delta = B - A with its 95%
interval, the one-sided paired p-value of "B is no worse than A" and its Holm adjustment
over every tested row, the seeds paired and a verdict. ``--json PATH`` also writes the rows
as JSON (schema: :meth:`ravlm_bench.publish.compare.Comparison.as_dict`). Exit status: 0 no
significant regression, 1 at least one (for CI), 2 bad input.
"""

from __future__ import annotations

import json
from pathlib import Path

from ravlm_bench.foundation.errors import ConfigError


def add_parser(subparsers, common) -> None:
    p = subparsers.add_parser(
        "compare", parents=[common], help="compare two runs; exit 1 on a significant regression",
        description="Compare run B (after) with run A (before): for every (task, system) both "
                    "hold, the change in each metric over the seeds both finished, with a "
                    "one-sided paired bootstrap test over the test items both runs scored "
                    "(the runs' shared resamples) and Holm's adjustment over every tested row. "
                    "Rows whose test items or bootstrap settings differ are 'unpaired' (point "
                    "delta only, never a regression). The table goes to stdout; --json PATH "
                    "writes the same rows as JSON. Exit status: 0 no significant regression, "
                    "1 a significant regression, 2 bad input.")
    p.add_argument("run_a", type=Path, metavar="RUN_A", help="the run before (a run directory)")
    p.add_argument("run_b", type=Path, metavar="RUN_B", help="the run after (a run directory)")
    p.add_argument("--metric", choices=("main", "all"), default="main",
                   help="compare each task's main metric (default) or every bootstrapped "
                        "metric (all of them in one Holm family)")
    p.add_argument("--alpha", type=float, default=0.05,
                   help="significance level of the Holm-adjusted p-values (default 0.05)")
    p.add_argument("--conditional", action="store_true",
                   help="test conditionally on the seeds that ran (without their variance; "
                        "by default the per-seed deltas' variance widens the test)")
    p.add_argument("--json", type=Path, metavar="PATH", dest="json_path",
                   help="also write the comparison as JSON to PATH")
    p.set_defaults(handler=compare)


def compare(ctx) -> int:
    from ravlm_bench.publish.compare import compare_runs, render_terminal

    args = ctx.args
    if not 0 < args.alpha < 1:
        raise ConfigError(f"--alpha {args.alpha:g} must lie strictly between 0 and 1")
    comparison = compare_runs(args.run_a, args.run_b, metrics=args.metric, alpha=args.alpha,
                              seed_variance=not args.conditional)
    print(render_terminal(comparison))
    if args.json_path is not None:
        try:
            args.json_path.parent.mkdir(parents=True, exist_ok=True)
            args.json_path.write_text(json.dumps(comparison.as_dict(), indent=2) + "\n",
                                      encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"--json {args.json_path}: cannot write ({exc.strerror})") from None
        print(f"wrote {args.json_path}")
    return comparison.exit_status
