"""`ravlm-bench data demo` (write the demo world) and `ravlm-bench data check` (validate a tree)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from tabulate import tabulate

from ravlm_bench.foundation.errors import DataError

KIND_COLUMNS = ("images", "captions", "instances", "questions", "regions", "objects")
# what data check says instead of "decoded N images" when it did not decode them
MODE_NOTES = {
    "headers": "--fast: headers only; truncated or corrupt pixel data is not detected",
    "none": "--no-image-check: image files were not opened",
}


# the sizes of ravlm_bench.demo.SIZES, spelled out so that building the parser does not
# import numpy and Pillow (tests/test_cli_data.py checks that the two agree)
DEMO_SIZES = ("tiny", "small", "medium")


def add_parser(subparsers, common) -> None:
    p = subparsers.add_parser("data", parents=[common], help="demo world and dataset checks")
    actions = p.add_subparsers(dest="data_action", metavar="ACTION", required=True)

    demo = actions.add_parser("demo", parents=[common],
                              help="write the synthetic demo world (COCO, Flickr30k, VG and "
                                   "knowledge VQA trees)")
    demo.add_argument("--out", required=True, type=Path, metavar="DIR",
                      help="new or empty directory to write into")
    demo.add_argument("--seed", type=int, default=0, help="same seed, same bytes (default 0)")
    demo.add_argument("--size", choices=DEMO_SIZES, default="small",
                      help="how many images (default small)")
    demo.add_argument("--json", action="store_true", help="machine-readable output")
    demo.set_defaults(handler=write_demo)

    check = actions.add_parser("check", parents=[common],
                               help="validate a dataset tree and list every problem found")
    check.add_argument("dir", type=Path, metavar="DIR", help="the dataset's root directory")
    check.add_argument("--format", required=True, metavar="NAME",
                       help="dataset plugin: coco, flickr30k, visual_genome (or a plugin's)")
    check.add_argument("--on-bad-image", choices=["fail", "skip"], default="fail",
                       help="missing or corrupt image files: fail (default) or skip them")
    check.add_argument("--max-image-pixels", type=int, metavar="N",
                       help="an image whose header announces more pixels is a bad image "
                            "(default: the dataset's max_image_pixels)")
    check.add_argument("--fast", action="store_true",
                       help="check image headers only: truncated or corrupt pixel data is "
                            "not detected")
    check.add_argument("--no-image-check", action="store_true",
                       help="do not open the image files")
    check.add_argument("--json", action="store_true", help="machine-readable output")
    check.set_defaults(handler=check_tree)


def write_demo(ctx) -> int:
    from ravlm_bench.demo import generate_demo_world

    args = ctx.args
    summary = generate_demo_world(args.out, seed=args.seed, size=args.size)
    if args.json:
        print(json.dumps(summary.to_json(), indent=2))
        return 0
    # one questions column: a tree holds VG's questions or knowledge questions, never both
    rows = [[name, t.images, t.captions, t.instances, t.categories,
             t.questions + t.knowledge_questions, t.passages, t.regions, t.objects,
             _split_counts(t)] for name, t in summary.trees.items()]
    print(f"demo world (seed {summary.seed}, size {summary.size}) written to {args.out}")
    print(tabulate(rows, headers=["tree", "images", "captions", "instances", "categories",
                                  "questions", "passages", "regions", "objects",
                                  "images (questions) per split"]))
    print(f"check one with: ravlm-bench data check {args.out / 'coco'} --format coco")
    return 0


def _split_counts(tree) -> str:
    return ", ".join(f"{split} {n}" + (f" ({tree.question_splits[split]})"
                                       if split in tree.question_splits else "")
                     for split, n in tree.splits.items())


def open_dataset(ctx, name: str, root: Path, **params):
    """Create a dataset through the registry (data errors keep their own one-line message)."""
    return ctx.registry.create("datasets", name, root=str(root), **params)


def check_tree(ctx) -> int:
    """Load the tree (the dataset checks headers), then decode every image unless --fast.

    Any bad image fails the check (exit 2): one that does not decode or is over the size
    limit, like a missing file. With --on-bad-image skip the dataset drops them, the report
    lists them, and the exit is still 2: the tree is not clean.
    """
    args = ctx.args
    # only passed when given: a third-party dataset plugin may not take the option
    limit = ({} if args.max_image_pixels is None
             else {"max_image_pixels": args.max_image_pixels})
    dataset = open_dataset(ctx, args.format, args.dir, on_bad_image=args.on_bad_image,
                           check_images=not args.no_image_check, **limit)
    mode = "none" if args.no_image_check else "headers" if args.fast else "pixels"
    undecodable, decoded = [], ""
    if mode == "pixels":
        start = time.perf_counter()
        paths = list(dict.fromkeys(image_paths(dataset)))  # unique, in table order
        undecodable = decode_all(dataset, paths, not args.quiet and sys.stderr.isatty())
        decoded = f"decoded {len(paths)} images in {time.perf_counter() - start:.1f} s"
    skipped = list(getattr(dataset, "bad_images", []))
    if args.json:
        print_json(dataset, mode, undecodable, skipped)
    else:
        print_report(dataset, MODE_NOTES.get(mode, decoded), undecodable, skipped)
    if undecodable and args.on_bad_image == "fail":
        raise DataError(f"{dataset.name} ({dataset.root}): {len(undecodable)} image files "
                        "cannot be decoded (listed above); a run fails on them unless "
                        "on_bad_image='skip' (data check: --on-bad-image skip)")
    if undecodable or skipped:
        raise DataError(f"{dataset.name} ({dataset.root}): {len(undecodable) + len(skipped)} "
                        "image files are missing, corrupt, too large or cannot be decoded "
                        "(listed above); a run with on_bad_image='skip' leaves them out")
    return 0


def decode_all(dataset, paths: list[str], progress: bool) -> list[tuple[str, str]]:
    """``(path relative to the root, why)`` of every image whose pixels do not decode or
    that is over the dataset's size limit."""
    from ravlm_bench.stages.encoding import DEFAULT_MAX_IMAGE_PIXELS, find_undecodable

    limit = getattr(dataset, "max_image_pixels", DEFAULT_MAX_IMAGE_PIXELS)
    failed = find_undecodable(paths, progress=progress, max_pixels=limit)
    return [(os.path.relpath(paths[i], dataset.root), why) for i, why in sorted(failed.items())]


def image_paths(dataset) -> list[str]:
    paths: list[str] = []
    for split in dataset.splits():
        try:
            table = dataset.table("images", split)
        except DataError:  # a split with captions or questions only
            continue
        paths.extend(table["image_path"])
    return paths


def print_json(dataset, mode: str, undecodable: list[tuple[str, str]],
               skipped: list[tuple[str, str]]) -> None:
    print(json.dumps({"dataset": dataset.name, "root": str(dataset.root), **dataset.summary(),
                      "problems": list(getattr(dataset, "problems", [])),
                      "notes": list(getattr(dataset, "notes", [])),
                      "image_check": mode,
                      "undecodable_images": [{"path": path, "error": why}
                                             for path, why in undecodable],
                      "skipped_images": [{"path": path, "error": why}
                                         for path, why in skipped]}, indent=2))


def print_report(dataset, image_check: str, undecodable: list[tuple[str, str]],
                 skipped: list[tuple[str, str]]) -> None:
    summary = dataset.summary()
    problems = list(getattr(dataset, "problems", []))
    counts = summary["counts"]
    kinds = [k for k in KIND_COLUMNS if k in counts]
    rows = [[split] + [counts[k].get(split, 0) for k in kinds] for split in summary["splits"]]
    rows.append(["total"] + [sum(counts[k].values()) for k in kinds])
    print(f"{dataset.name} at {dataset.root}: {len(summary['splits'])} splits, "
          f"{summary.get('categories', 0)} categories")
    print(tabulate(rows, headers=["split", *kinds]))
    for note in getattr(dataset, "notes", []):
        print(f"note: {note}")
    print(image_check)
    if problems:
        print(f"{len(problems)} problems found (the affected records were dropped):")
        for problem in problems:
            print(f"  - {problem}")
    if skipped:
        print(f"{len(skipped)} image files skipped (missing, corrupt or too large):")
        for path, why in skipped:
            print(f"  - {path}: {why}")
    if undecodable:
        print(f"{len(undecodable)} image files cannot be decoded:")
        for path, why in undecodable:
            print(f"  - {path}: {why}")
    if not problems and not undecodable:
        print("no problems found")
