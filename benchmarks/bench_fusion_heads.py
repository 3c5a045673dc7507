"""Training speed of each fusion head on cached-size features, as a ratio to ``concat``.

    python benchmarks/bench_fusion_heads.py            # 20k items, 1 epoch, 2 runs: ~2-4 min
    python benchmarks/bench_fusion_heads.py --full     # 3 epochs each
    python benchmarks/bench_fusion_heads.py --device cuda
    python benchmarks/bench_fusion_heads.py --threads 1  # steadier when other jobs share cores

Features are random float32 of cached-feature widths (ResNet-18 512, MiniLM 384) with 80
classes; neighbours come from the ``exact`` retriever with the leave-one-out guard, before
any timing. Each trained head runs its public ``fit`` at batch 256 with no validation split
and reports optimizer steps per second (the loop's own clock: batch gathering, forward,
backward, step). ``knn`` does not train: its row reports the vote over batches of 256 as
"steps" for comparison, and ``infonce`` trains on one caption per image. Prediction
throughput (items/s through ``predict_proba`` / ``embed_*``) is shown alongside. Each head
runs ``--repeats`` times and its fastest run counts: other load only ever slows a run down.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tabulate import tabulate  # noqa: E402

from ravlm_bench.plugin_host.contracts import KnowledgeBase  # noqa: E402
from ravlm_bench.plugin_host.host import get_plugin_manager  # noqa: E402
from ravlm_bench.plugin_host.registry import Registry  # noqa: E402
from ravlm_bench.stages.retrieval import build_index, fusion_inputs  # noqa: E402


def make_data(items: int, d_image: int, d_text: int, classes: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, d_image + d_text)).astype(np.float32)
    labels = rng.integers(0, classes, items)
    x = centres[labels] + rng.normal(size=(items, d_image + d_text)).astype(np.float32)
    image_ids = np.arange(items, dtype=np.int64) // 5  # five captions per image, as COCO
    return KnowledgeBase(x[:, :d_image].copy(), x[:, d_image:].copy(), labels, image_ids)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--d-image", type=int, default=512)
    parser.add_argument("--d-text", type=int, default=384)
    parser.add_argument("--classes", type=int, default=80)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads (0: torch's default); 1 is steadier on a busy machine")
    parser.add_argument("--repeats", type=int, default=2,
                        help="runs per head; the fastest counts (a busy machine only slows)")
    parser.add_argument("--full", action="store_true", help="3 epochs per head")
    args = parser.parse_args(argv)
    epochs = 3 if args.full else args.epochs
    if args.threads:
        torch.set_num_threads(args.threads)

    registry = Registry(get_plugin_manager())
    kb = make_data(args.items, args.d_image, args.d_text, args.classes)
    dim = args.d_image + args.d_text
    start = time.perf_counter()
    retriever = registry.create("retrievers", "exact", dim=dim, metric="cos")
    build_index(retriever, kb)
    train = fusion_inputs(kb.image, kb.text, retriever=retriever, kb=kb, k=args.k,
                          labels=kb.labels, image_ids=kb.image_ids, exclude_same_image=True,
                          num_classes=args.classes)
    retrieval_s = time.perf_counter() - start
    plain = fusion_inputs(kb.image, kb.text, retriever=None, kb=kb, k=0, labels=kb.labels,
                          num_classes=args.classes)

    common = {"batch_size": args.batch_size, "epochs": epochs, "progress": False,
              "device": args.device}
    rows = []
    for label, name, params, inputs in (
        ("concat", "concat", common, plain),
        (f"xattn (k={args.k})", "xattn", {**common, "k": args.k}, train),
        ("knn + concat (interpolate)", "knn", {**common, "k": args.k, "interpolate": 0.5},
         train),
    ):
        best_rate, best_items, steps = 0.0, 0.0, 0
        for _ in range(args.repeats):
            head = registry.create("fusion-heads", name, dim=dim, **params)
            report = head.fit(inputs, None, seed=0)
            steps = report.steps
            best_rate = max(best_rate, steps / report.seconds)
            best_items = max(best_items,
                             len(inputs) / timed(lambda h=head, i=inputs: h.predict_proba(i)))
        rows.append([label, steps, best_rate, best_items])

    knn = registry.create("fusion-heads", "knn", dim=dim, k=args.k)
    knn.fit(train, None, seed=0)
    batches = -(-len(train) // args.batch_size)
    vote_s = min(timed(lambda: [knn.predict_proba(subset(train, b, args.batch_size))
                                for b in range(0, len(train), args.batch_size)])
                 for _ in range(args.repeats))
    predict_s = min(timed(lambda: knn.predict_proba(train)) for _ in range(args.repeats))
    rows.append([f"knn (k={args.k}, vote only)", batches, batches / vote_s,
                 len(train) / predict_s])

    first_caption = np.flatnonzero(np.r_[True, np.diff(kb.image_ids) != 0])
    best_rate, best_items = 0.0, 0.0
    for _ in range(args.repeats):
        infonce = registry.create("joint-embeddings", "infonce", dim=dim, **common)
        report = infonce.fit_pairs(kb.image[first_caption], kb.text, kb.image_ids, seed=0)
        best_rate = max(best_rate, report.steps / report.seconds)
        embed_s = timed(lambda m=infonce: (m.embed_images(kb.image), m.embed_texts(kb.text)))
        best_items = max(best_items, len(kb) / embed_s)
    rows.append(["infonce (pairs = images)", report.steps, best_rate, best_items])

    base_steps, base_items = rows[0][2], rows[0][3]
    table = [[label, steps, f"{rate:,.1f}", f"{rate / base_steps:.2f}x", f"{items:,.0f}",
              f"{items / base_items:.2f}x"] for label, steps, rate, items in rows]
    print(f"fusion heads: {args.items:,} items, d_image {args.d_image}, d_text {args.d_text}, "
          f"{args.classes} classes, batch {args.batch_size}, {epochs} epoch(s), device "
          f"{args.device}, torch threads {torch.get_num_threads()}")
    print(f"(retrieval with leave-one-out for k={args.k}: {retrieval_s:.1f} s, not timed below)")
    print(tabulate(table, headers=["head", "steps", "train steps/s", "vs concat",
                                   "predict items/s", "vs concat"],
                   tablefmt="github", disable_numparse=True))
    return 0


def subset(inputs, begin: int, size: int):
    from dataclasses import replace

    rows = slice(begin, begin + size)
    return replace(inputs, image=inputs.image[rows], text=inputs.text[rows],
                   neighbours=inputs.neighbours[rows],
                   neighbour_scores=inputs.neighbour_scores[rows], labels=None, image_ids=None)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


if __name__ == "__main__":
    sys.exit(main())
