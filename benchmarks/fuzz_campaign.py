"""The fuzz campaign: N damaged inputs per target, in process, and a table of outcomes.

The targets and mutators are those of ``tests/test_fuzz.py`` (COCO official and Karpathy,
Flickr30k Karpathy and token files, Visual Genome, the suite parser, the cell reader), each
input seeded by its number so a failure can be replayed. A failure is any exception other
than a one-line ``RavlmError`` with exit code 2, or an input that runs past the time limit;
memory is capped with ``RLIMIT_AS``. ``python benchmarks/fuzz_campaign.py --per-target N``
(``--targets "suite file,cell file"`` for some targets only).
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import resource
import shutil
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


class Hang(Exception):
    """An input ran past the per-input time limit."""


def _alarm(signum, frame):
    raise Hang("ran past the time limit")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-target", type=int, default=1000)
    parser.add_argument("--weights", default="suite file=4,cell file=4",
                        help="multipliers of --per-target for some targets")
    parser.add_argument("--targets", default="",
                        help="comma-separated target names to run (default: all)")
    parser.add_argument("--seconds", type=int, default=10, help="per-input time limit")
    parser.add_argument("--memory-gb", type=float, default=8.0)
    args = parser.parse_args(argv)
    limit = int(args.memory_gb * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    weights = dict((k, int(v)) for k, v in (p.split("=") for p in args.weights.split(",") if p))
    chosen = {name.strip() for name in args.targets.split(",") if name.strip()}
    scratch = Path(tempfile.mkdtemp(prefix="ravlm-fuzz-"))
    os.environ["RAVLM_BENCH_CACHE"] = str(scratch / "cache")
    from test_fuzz import build_targets

    from ravlm_bench.demo import generate_demo_world

    generate_demo_world(scratch / "world", seed=0, size="tiny")
    signal.signal(signal.SIGALRM, _alarm)
    logging.disable(logging.WARNING)  # the loaders' warnings about damaged records
    rows, examples = [], {}
    targets = build_targets(scratch / "world")
    unknown = chosen - {target.name for target in targets}
    if unknown:
        shutil.rmtree(scratch, ignore_errors=True)
        parser.error(f"unknown target(s) {sorted(unknown)}; targets: "
                     f"{', '.join(target.name for target in targets)}")
    for target in (t for t in targets if not chosen or t.name in chosen):
        n = args.per_target * weights.get(target.name, 1)
        counts = {"result": 0, "clean error": 0, "failure": 0}
        start = time.perf_counter()
        for i in range(n):
            work = scratch / "work" / str(i % 50)
            signal.alarm(args.seconds)
            try:
                counts[target.run(random.Random(i), work)] += 1
            except (Exception, RecursionError, MemoryError) as exc:  # noqa: BLE001 - counted
                counts["failure"] += 1
                key = (target.name, type(exc).__name__)
                examples.setdefault(key, (i, "".join(traceback.format_exception(exc))[-1500:]))
            finally:
                signal.alarm(0)
            shutil.rmtree(work, ignore_errors=True)
            if i % 200 == 0:
                shutil.rmtree(scratch / "cache", ignore_errors=True)
        rows.append((target.name, n, counts["result"], counts["clean error"],
                     counts["failure"], time.perf_counter() - start))
        print(f"{target.name}: {rows[-1][1:]}", file=sys.stderr, flush=True)
    print("| target | inputs tried | results | clean errors | failures | seconds |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, n, ok, clean, bad, seconds in rows:
        print(f"| {name} | {n:,} | {ok:,} | {clean:,} | {bad:,} | {seconds:.0f} |")
    total = [sum(r[i] for r in rows) for i in range(1, 5)]
    print(f"| all | {total[0]:,} | {total[1]:,} | {total[2]:,} | {total[3]:,} | |")
    for (name, kind), (seed, text) in examples.items():
        print(f"\n{name}: {kind} (first at input {seed})\n{text}")
    shutil.rmtree(scratch, ignore_errors=True)
    return 1 if total[3] else 0


if __name__ == "__main__":
    sys.exit(main())
