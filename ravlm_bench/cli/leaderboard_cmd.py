"""`ravlm-bench leaderboard RUN_DIR`: print a run's leaderboard and publish it to files.

The publishers (plugins) are named by ``--format``. A run file that is missing or damaged
stops the command with one line naming it (exit 2); a publisher that fails otherwise is
named with its plugin (exit 1).
"""

from __future__ import annotations

from pathlib import Path

from ravlm_bench.foundation.errors import ComponentError, ConfigError, DataError

# Short spellings users type for the reference publishers.
FORMAT_ALIASES = {"md": "markdown", "tex": "latex", "htm": "html"}


def add_parser(subparsers, common) -> None:
    p = subparsers.add_parser(
        "leaderboard", parents=[common], help="render and publish a run's leaderboard",
        description="Print a run's leaderboard and write it in the chosen formats. Formats "
                    "are publisher plugins: `ravlm-bench list publishers` shows them.")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run directory")
    p.add_argument("--format", default="all", metavar="FORMATS",
                   help="comma-separated publishers (md,csv,json,latex,html,png,fronts,"
                        "dependence,explorer) or 'all' (every installed publisher; the default)")
    p.add_argument("--out", type=Path, metavar="DIR",
                   help="where to write the files (default: RUN_DIR/leaderboard)")
    p.add_argument("--conditional", action="store_true",
                   help="intervals and tests conditional on the seeds that ran (by default "
                        "they include the seeds' variance: how a rerun with new seeds varies)")
    p.set_defaults(handler=publish_leaderboard)


def publisher_names(spec: str, known: list[str]) -> list[str]:
    """The publishers ``--format`` asks for, in order, without repeats."""
    names: list[str] = []
    for part in (p.strip().lower() for p in spec.split(",")):
        if not part:
            continue
        wanted = known if part == "all" else [FORMAT_ALIASES.get(part, part)]
        names += [n for n in wanted if n not in names]
    if not names:
        raise ConfigError(f"--format {spec!r} names no format; known: {', '.join(known)}")
    return names


def publish_leaderboard(ctx) -> int:
    from ravlm_bench.publish.display import render_terminal
    from ravlm_bench.publish.leaderboard import load_run

    args = ctx.args
    board = load_run(args.run_dir, seed_variance=not args.conditional)
    names = publisher_names(args.format, ctx.registry.names("publishers"))
    publishers = {name: ctx.registry.create("publishers", name) for name in names}
    print(render_terminal(board))
    out_dir = args.out or args.run_dir / "leaderboard"
    print()
    for name, publisher in publishers.items():
        try:
            written = publisher.publish(board, out_dir)
        except DataError:
            raise  # a run file the publisher read is at fault, not the publisher
        except Exception as exc:  # a broken publisher is named, with its plugin
            plugin = ctx.registry.get("publishers", name).plugin
            raise ComponentError("publisher", name, plugin,
                                 f"publish failed: {type(exc).__name__}: {exc}") from exc
        for path in written:
            print(f"wrote {path}")
    return 0
