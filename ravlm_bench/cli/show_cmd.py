"""`ravlm-bench show RUN_DIR TASK SYSTEM`: a cell's test items in the terminal, each with
its truth, the prediction and its confidence, and what retrieval brought back."""

from __future__ import annotations

import textwrap
from pathlib import Path

from ravlm_bench.foundation.errors import ConfigError


def add_parser(subparsers, common) -> None:
    p = subparsers.add_parser(
        "show", parents=[common], help="show a cell's items, predictions and neighbours",
        description="Print the test items of a (task, system, seed) cell of a fusion-head "
                    "task: the item's text and image, its truth, the prediction and its "
                    "confidence, and the retrieved neighbours (score, label, text, image).")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run directory")
    p.add_argument("task", help="a task of the run")
    p.add_argument("system", help="a system the run ran on the task")
    p.add_argument("--seed", type=int, default=None,
                   help="which seed's cell (default: the run's first finished seed)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--wrong", action="store_true", help="only wrongly predicted items")
    which.add_argument("--right", action="store_true", help="only rightly predicted items")
    p.add_argument("--class", dest="label", metavar="NAME",
                   help="only items whose truth is (or, multi-label, includes) NAME")
    p.add_argument("--changed", action="store_true",
                   help="only items whose prediction differs from the baseline system's on "
                        "the same item and seed")
    p.add_argument("--limit", type=int, default=20, metavar="N",
                   help="show at most N items (default 20; 0 for all)")
    p.set_defaults(handler=show_cell)


def show_cell(ctx) -> int:
    from ravlm_bench.publish.run_reader import read_run
    from ravlm_bench.store.explorer_arrays import cell_items

    args = ctx.args
    if args.limit < 0:
        raise ConfigError(f"--limit must be 0 (all) or more, got {args.limit}")
    run, cells = read_run(args.run_dir)  # no bootstrap: only these cells are read
    seed = _seed(run, cells, args)
    items = cell_items(args.run_dir, args.task, args.system, seed)
    baseline = None
    if args.changed:
        if not run.get("baseline"):
            raise ConfigError(f"{args.run_dir / 'run.json'}: --changed compares with the "
                              f"baseline system, and this run has none")
        baseline = cell_items(args.run_dir, args.task, run["baseline"], seed)
    chosen = [item for item in items if _wanted(item, args, baseline)]
    right = sum(item.correct for item in items)
    shown = chosen if args.limit == 0 else chosen[:args.limit]
    print(f"{args.task} / {args.system} / seed {seed}: {len(items)} test items, {right} right "
          f"({right / max(len(items), 1):.1%}); {len(chosen)} match the filters, showing "
          f"{len(shown)}")
    for item in shown:
        print()
        print(_render(item, baseline[item.index] if baseline else None, run.get("baseline")))
    return 0


def _seed(run: dict, cells, args) -> int:
    from ravlm_bench.foundation.errors import DataError

    if args.task not in run["tasks"]:
        raise ConfigError(f"{args.run_dir}: no task {args.task!r}; tasks: "
                          f"{', '.join(run['tasks'])}")
    systems = run["tasks"][args.task].get("systems", list(run["systems"]))
    if args.system not in systems:
        raise ConfigError(f"{args.run_dir}: task {args.task!r} has no system {args.system!r}; "
                          f"systems: {', '.join(systems)}")
    if args.seed is not None:
        return args.seed
    finished = sorted(cells[(cells["task"] == args.task) & (cells["system"] == args.system)
                            & (cells["status"] == "ok")]["seed"]) if len(cells) else []
    if not finished:
        raise DataError(f"{args.run_dir}: {args.task} / {args.system} has no finished cell")
    return int(finished[0])


def _wanted(item, args, baseline) -> bool:
    if (args.wrong and item.correct) or (args.right and not item.correct):
        return False
    if args.label is not None and args.label not in item.truth.split(", "):
        return False
    return baseline is None or baseline[item.index].prediction != item.prediction


def _render(item, base, baseline_name: str | None) -> str:
    verdict = "right" if item.correct else "WRONG"
    lines = [f"#{item.index}  truth: {item.truth or '(none)'}  predicted: "
             f"{item.prediction or '(none)'} ({item.confidence:.2f})  {verdict}"]
    if base is not None:
        effect = ("fixed" if item.correct and not base.correct else
                  "broke" if base.correct and not item.correct else "changed")
        lines.append(f"    {effect}: the baseline {baseline_name} predicted "
                     f"{base.prediction or '(none)'} ({base.confidence:.2f})")
    lines.append(f"    text:  {_short(item.text, 100)}")
    lines.append(f"    image: {item.image}")
    if not item.neighbours:
        lines.append("    no retrieval")
    for rank, nbr in enumerate(item.neighbours, 1):
        label = nbr.label or "(unlabelled)"
        lines.append(f"    {rank:>2}. {nbr.score:+.3f}  {_short(label, 20):<20}  "
                     f"{_short(nbr.text, 60):<60}  {Path(nbr.image).name}")
    return "\n".join(lines)


def _short(text: str, width: int) -> str:
    return textwrap.shorten(" ".join(str(text).split()), width=width, placeholder="...")
