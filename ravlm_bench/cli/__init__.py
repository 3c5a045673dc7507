"""The command line: parse, call the library, print. Each command group is its own module
(:data:`COMMAND_MODULES`), and :func:`main` runs the one asked for, turning any
:class:`~ravlm_bench.foundation.errors.RavlmError` into one line on stderr and its exit code:
0 success, 1 a run with failed parts (or a regression found by ``compare``), 2 bad usage,
configuration or input, 3 an unexpected error (a bug: ``--debug`` shows its traceback); an
interrupted command says so in one line and exits 130 (Ctrl-C) or, for a run stopped by
SIGTERM, 143.

May import every layer; nothing imports it.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from functools import cached_property

from ravlm_bench.foundation.errors import RavlmError, Terminated
from ravlm_bench.foundation.version import __version__

# An exception the harness did not expect is a bug, not a verdict on the run: its own code.
INTERNAL_ERROR = 3

# Modules under ravlm_bench.cli, each with add_parser(subparsers, common) -> None.
COMMAND_MODULES = ["plugins_cmd", "data_cmd", "cache_cmd", "run_cmd", "leaderboard_cmd", "show_cmd",
                   "compare_cmd"]


class Context:
    """What every command gets: its parsed arguments and a lazily built registry."""

    def __init__(self, args: argparse.Namespace):
        self.args = args

    @cached_property
    def plugin_manager(self):
        from ravlm_bench.plugin_host.host import get_plugin_manager

        return get_plugin_manager(
            self.args.plugin, disabled=self.args.disable, strict=self.args.strict
        )

    @cached_property
    def registry(self):
        from ravlm_bench.plugin_host.registry import Registry

        return Registry(self.plugin_manager)


def _common_options() -> argparse.ArgumentParser:
    # Shared options are accepted before or after the command name; SUPPRESS keeps a
    # value given before the command from being reset by the subparser's default.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks and debug logging")
    common.add_argument("--quiet", "-q", action="store_true", default=argparse.SUPPRESS,
                        help="no progress bars, warnings only")
    common.add_argument("--strict", action="store_true", default=argparse.SUPPRESS,
                        help="fail if any plugin is broken")
    common.add_argument("-p", "--plugin", action="append", default=argparse.SUPPRESS,
                        metavar="MODULE|FILE.py",
                        help="load an extra plugin for this command; 'no:NAME' disables NAME")
    common.add_argument("--disable", action="append", default=argparse.SUPPRESS,
                        metavar="NAME", help="switch a plugin off (also $RAVLM_BENCH_DISABLE)")
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common_options()
    parser = argparse.ArgumentParser(
        prog="ravlm-bench", parents=[common],
        description="Benchmark retrieval-augmented vision-language models.",
    )
    parser.add_argument("--version", action="version", version=f"ravlm-bench {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMAND_MODULES:
        importlib.import_module(f"ravlm_bench.cli.{module_name}").add_parser(subparsers, common)
    return parser


def _apply_defaults(args: argparse.Namespace) -> None:
    for name, default in (("debug", False), ("quiet", False), ("strict", False),
                          ("plugin", []), ("disable", [])):
        if not hasattr(args, name):
            setattr(args, name, default)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _apply_defaults(args)
    level = logging.DEBUG if args.debug else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s: %(message)s", stream=sys.stderr)
    ctx = Context(args)
    try:
        return int(args.handler(ctx) or 0)
    except RavlmError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Terminated as exc:  # SIGTERM during a run, unwound like Ctrl-C
        print(str(exc), file=sys.stderr)
        return Terminated.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # an unexpected failure still gets one clear line
        if args.debug:
            raise
        print(f"error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)",
              file=sys.stderr)
        return INTERNAL_ERROR
