"""`ravlm-bench cache ls` (the feature cache's entries, sizes and last use) and
`ravlm-bench cache clear [--older-than 7d]` (delete all of them, or those unused that long)."""

from __future__ import annotations

import argparse
import json
import re
from datetime import timedelta

from tabulate import tabulate

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta:
    """``30m``, ``12h``, ``7d``, ``2w`` -> timedelta (an argparse type)."""
    match = _DURATION.match(text)
    if not match:
        raise argparse.ArgumentTypeError(
            f"invalid duration {text!r}: use a number and a unit s, m, h, d or w (e.g. 7d)")
    return timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})


def format_duration(age: timedelta) -> str:
    seconds = age.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size:.0f}{unit}"
    return f"{seconds:g}s"


def add_parser(subparsers, common) -> None:
    cache = subparsers.add_parser("cache", parents=[common], help="manage the feature cache")
    actions = cache.add_subparsers(dest="cache_command", metavar="ACTION", required=True)

    p = actions.add_parser("ls", parents=[common], help="list cached feature arrays")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=list_cache)

    p = actions.add_parser("clear", parents=[common], help="delete cached feature arrays")
    p.add_argument("--older-than", type=parse_duration, default=None, metavar="AGE",
                   help="only entries not used for AGE (e.g. 7d, 12h); default: all")
    p.set_defaults(handler=clear_cache)


def _human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def list_cache(ctx) -> int:
    from ravlm_bench.store.feature_cache import FeatureCache

    cache = FeatureCache()
    entries = cache.entries()
    if ctx.args.json:
        print(json.dumps([{
            "component": e.component, "dataset": e.dataset, "split": e.split,
            "shape": list(e.shape), "dtype": e.dtype, "bytes": e.nbytes, "path": str(e.path),
            "created": e.created.isoformat(), "last_used": e.last_used.isoformat(),
        } for e in entries], indent=2))
        return 0
    if not entries:
        print(f"feature cache {cache.root} is empty")
        return 0
    rows = [[e.component, e.dataset, e.split, "x".join(map(str, e.shape)), e.dtype,
             _human_bytes(e.nbytes), e.last_used.strftime("%Y-%m-%d %H:%M")] for e in entries]
    print(tabulate(rows, headers=["component", "dataset", "split", "shape", "dtype", "size",
                                  "last used"]))
    total = sum(e.nbytes for e in entries)
    noun = "entry" if len(entries) == 1 else "entries"
    print(f"\n{len(entries)} {noun}, {_human_bytes(total)} in {cache.root}")
    return 0


def clear_cache(ctx) -> int:
    from ravlm_bench.store.feature_cache import FeatureCache

    cache = FeatureCache()
    removed = cache.clear(ctx.args.older_than)
    age = f" not used for {format_duration(ctx.args.older_than)}" if ctx.args.older_than else ""
    noun = "entry" if removed == 1 else "entries"
    print(f"removed {removed} feature cache {noun}{age} from {cache.root}")
    return 0
