"""The scale suite: HNSW against exact search over a million distractors, cold and warm.

Runs the built-in ``scale`` suite (ravlm_bench/suites/scale.toml; ``--distractors`` swaps
its count) twice: cold, on an empty cache (the demo world generated and encoded, every index
built and saved), then warm, into a fresh run directory on the same cache (features and
indexes loaded). Prints

* the front: for each system, recall against exact search, gold-evidence recall@k, the
  downstream InfoSeek score, queries per second and its ratio to exact search's (measured
  in the same run), the index's build (or load) time and memory;
* the two runs' wall times (targets for 1,000,000 distractors on 2 cores: cold <= 60 min,
  warm <= 5 min), the warm/cold ratio and the peak memory of a run;
* from each precision's measured index memory per item, the memory a 10,000,000-passage
  index needs per node: whole on every node (the default), or split over 2 and 4 nodes with
  ``shard_index = true`` (one process per node).

    python benchmarks/bench_scale.py [--distractors 1000000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tabulate import tabulate

from ravlm_bench.config.suite import builtin_suite

TARGET_ITEMS = 10_000_000


def scale_suite(folder: Path, distractors: int) -> Path:
    text = builtin_suite("scale").read_text()
    if text.count("distractors = 1_000_000") != 1:
        sys.exit("scale.toml no longer says 'distractors = 1_000_000' once; update this script")
    path = folder / "scale.toml"
    path.write_text(text.replace("distractors = 1_000_000", f"distractors = {distractors}"))
    return path


def run_suite(suite: Path, run_dir: Path, cache: Path) -> tuple[float, str]:
    env = {**os.environ, "RAVLM_BENCH_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "ravlm_bench", "run", str(suite), "--out",
                             str(run_dir)], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"scale suite failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return wall, result.stderr


def cells(run_dir: Path) -> dict[str, dict]:
    out = {}
    for path in sorted((run_dir / "cells" / "infoseek").glob("*/seed-0.json")):
        out[path.parent.name] = json.loads(path.read_text())
    return out


def front(records: dict[str, dict]) -> list[list]:
    exact_qps = records["reader-exact"]["cost"]["retrieval_qps"]
    rows = []
    for system, cell in sorted(records.items(), key=lambda kv: kv[1]["retrieval"]
                               ["recall_vs_exact"] or 0.0):
        cost, found = cell["cost"], cell["retrieval"]
        memory = cost.get("index_memory_bytes")
        rows.append([system, f"{found['recall_vs_exact']:.3f}",
                     f"{found['evidence_recall_at_k']:.3f}",
                     f"{cell['metrics']['infoseek_score']:.3f}",
                     f"{cost['retrieval_qps']:,.0f}", f"{cost['retrieval_qps'] / exact_qps:.1f}",
                     f"{cost['index_build_s']:.1f}",
                     "-" if memory is None else f"{memory / 2**20:,.0f}"])
    return rows


def memory_per_node(records: dict[str, dict], items: int) -> list[list]:
    """GiB per node for a TARGET_ITEMS index, from each precision's measured bytes per item
    (the densest graph measured with that precision)."""
    per_item: dict[str, float] = {}
    for cell in records.values():
        retriever = cell["provenance"]["components"].get("retrievers") or {}
        memory = cell["cost"].get("index_memory_bytes")
        if retriever.get("name") != "usearch-hnsw" or not memory:
            continue
        params = retriever.get("params", {})
        label = f"{params.get('dtype', 'f32')}, connectivity {params.get('connectivity')}"
        per_item[label] = max(per_item.get(label, 0.0), memory / items)
    return [[label, f"{b:.0f}", *(f"{b * TARGET_ITEMS / nodes / 2**30:.1f}"
                                  for nodes in (1, 2, 4))]
            for label, b in sorted(per_item.items())]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--distractors", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, help="keep run directories and the cache here")
    args = parser.parse_args()

    base = args.keep or Path(tempfile.mkdtemp(prefix="ravlm-bench-scale-"))
    base.mkdir(parents=True, exist_ok=True)
    try:
        suite = scale_suite(base, args.distractors)
        cold, _ = run_suite(suite, base / "cold", base / "cache")
        warm, log = run_suite(suite, base / "warm", base / "cache")
        records, warm_records = cells(base / "cold"), cells(base / "warm")
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20  # KiB -> GiB
    real_items = records["reader-exact"]["knowledge"]["items"]
    items = real_items + args.distractors

    print(f"scale suite: {real_items} real passages + {args.distractors:,} distractors\n")
    print(tabulate(front(records), headers=["system", "recall vs exact", "gold R@k",
                                            "infoseek score", "queries/s", "vs exact",
                                            "build s (cold)", "index MiB"]))
    same = sum(records[s]["metrics"] == warm_records[s]["metrics"] for s in records)
    print(f"\n{'run':<8}{'wall s':>10}{'vs cold':>10}")
    print(f"{'cold':<8}{cold:>10.0f}{1:>10.2f}")
    print(f"{'warm':<8}{warm:>10.0f}{warm / cold:>10.2f}")
    print(f"\ncold {cold / 60:.1f} min (target <= 60 for 1M on 2 cores), warm {warm / 60:.1f} min "
          f"(target <= 5); indexes loaded in the warm run: "
          f"{log.count('index usearch-hnsw: loaded')}; cells with the same metrics warm and "
          f"cold: {same} of {len(records)}; peak memory of a run {peak:.1f} GiB")
    print(f"\nmemory of a {TARGET_ITEMS:,}-item index per node (GiB), from the bytes per item "
          f"measured at {items:,}:")
    print(tabulate(memory_per_node(records, items),
                   headers=["precision, graph", "bytes/item", "1 node", "2 nodes (sharded)",
                            "4 nodes (sharded)"]))


if __name__ == "__main__":
    main()
