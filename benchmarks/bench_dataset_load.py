"""Benchmark: loading COCO annotation files through the ``coco`` dataset plugin (issue 3).

Generates captions and instances files shaped like COCO train2017 (``--full``: 118,287
images, 591,753 captions, 860,001 instances with polygon segmentations; by default 1/8 of
that), then measures, each in a fresh subprocess so that memory peaks do not mix:

- the baseline: a bare ``json.load`` of each file (one at a time, each dropped before the
  next: the smaller, stricter peak); for information also with the garbage collector
  paused, as the loader parses (most of a bare ``json.load``'s time on big files is the
  collector rescanning the growing object graph);
- the first load: ``Registry.create("datasets", "coco", ...)`` with an empty cache
  (parsing, validation, Arrow cache writing) and opening every table;
- the cached load: the same again, served from the Arrow cache.

Targets: first load <= 1.5x the json.load time; its peak memory <= json.load's; the cached
load >= 20x faster than the first. Peak memory is the rise of the peak resident set size
(VmHWM, reset before the measured step) over the resident size just before it.

    python benchmarks/bench_dataset_load.py            # 1/8 size, about a minute
    python benchmarks/bench_dataset_load.py --full     # COCO train2017 size
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FULL = {"images": 118_287, "captions": 591_753, "instances": 860_001}
WORDS = ("a man woman dog cat sitting standing on the with of in next to red blue large small "
         "table street grass bus train plate pizza").split()


# ---------------------------------------------------------------------------------------
# generating the files
# ---------------------------------------------------------------------------------------


def _polygon(rng: random.Random) -> str:
    n = rng.randint(8, 40)  # COCO polygons: tens of points, two decimals
    return "[[" + ",".join(f"{rng.uniform(0, 640):.2f}" for _ in range(2 * n)) + "]]"


def generate(out: Path, scale: float, seed: int = 0) -> list[Path]:
    rng = random.Random(seed)
    n_images = round(FULL["images"] * scale)
    n_captions = round(FULL["captions"] * scale)
    n_instances = round(FULL["instances"] * scale)
    ann = out / "annotations"
    ann.mkdir(parents=True, exist_ok=True)
    ids = rng.sample(range(1, 600_000), n_images)
    images = ",".join(
        json.dumps({"license": 3, "file_name": f"{i:012d}.jpg",
                    "coco_url": f"http://images.cocodataset.org/train2017/{i:012d}.jpg",
                    "height": 480, "width": 640, "date_captured": "2013-11-14 11:18:45",
                    "flickr_url": "http://farm4.staticflickr.com/1/1.jpg", "id": i},
                   separators=(",", ":"))
        for i in ids)
    header = ('{"info":{"description":"COCO 2017 Dataset (benchmark copy)","version":"1.0",'
              '"year":2017},"licenses":[{"url":"http://creativecommons.org/licenses/by/2.0/",'
              '"id":3,"name":"Attribution License"}],"images":[' + images + "]")
    captions = out / "annotations" / "captions_train2017.json"
    with open(captions, "w", encoding="utf-8") as f:
        f.write(header + ',"annotations":[')
        for k in range(n_captions):
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 14))).capitalize()
            image_id = ids[k % n_images]
            f.write(("," if k else "") + f'{{"image_id":{image_id},"id":{k + 1},'
                    f'"caption":"{text}."}}')
        f.write("]}")
    polygons = [_polygon(rng) for _ in range(2000)]
    categories = ",".join(f'{{"supercategory":"thing","id":{c},"name":"thing{c}"}}'
                          for c in range(1, 91) if c % 9)  # 80 ids in 1..90, with gaps
    category_ids = [c for c in range(1, 91) if c % 9]
    instances = out / "annotations" / "instances_train2017.json"
    with open(instances, "w", encoding="utf-8") as f:
        f.write(header + ',"annotations":[')
        for k in range(n_instances):
            crowd = rng.random() < 0.01
            segmentation = (
                '{"counts":[' + ",".join(str(rng.randint(1, 900)) for _ in range(60))
                + '],"size":[480,640]}' if crowd else polygons[k % len(polygons)])
            x, y = rng.uniform(0, 500), rng.uniform(0, 400)
            w, h = rng.uniform(2, 140), rng.uniform(2, 80)
            f.write(("," if k else "")
                    + f'{{"segmentation":{segmentation},"area":{w * h:.4f},'
                    f'"iscrowd":{int(crowd)},"image_id":{ids[k % n_images]},'
                    f'"bbox":[{x:.2f},{y:.2f},{w:.2f},{h:.2f}],'
                    f'"category_id":{rng.choice(category_ids)},"id":{k + 1}}}')
        f.write("],\"categories\":[" + categories + "]}")
    return [captions, instances]


# ---------------------------------------------------------------------------------------
# measuring (runs in a subprocess)
# ---------------------------------------------------------------------------------------


def _rss_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _reset_peak() -> None:
    try:  # Linux >= 4.0: writing 5 resets VmHWM to the current RSS
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def measure(mode: str, root: Path) -> dict:
    import datasets  # noqa: F401  (imported before timing: both sides pay it equally)
    import numpy  # noqa: F401
    import pyarrow  # noqa: F401

    from ravlm_bench.plugin_host.host import get_plugin_manager
    from ravlm_bench.plugin_host.registry import Registry

    registry = Registry(get_plugin_manager())
    files = sorted((root / "annotations").glob("*.json"))
    _reset_peak()
    before = _rss_kb("VmRSS")
    start = time.perf_counter()
    if mode in ("json", "json-nogc"):
        import gc

        if mode == "json-nogc":
            gc.disable()
        for path in files:
            with open(path) as f:
                data = json.load(f)
            del data
    else:
        dataset = registry.create("datasets", "coco", root=str(root), check_images=False)
        for kind in dataset.kinds:
            for split in dataset.splits():
                dataset.table(kind, split)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_mb": (_rss_kb("VmHWM") - before) / 1024}


def _run(mode: str, root: Path, cache: Path) -> dict:
    env = dict(os.environ, RAVLM_BENCH_CACHE=str(cache), HF_HUB_OFFLINE="1",
               HF_DATASETS_OFFLINE="1")
    out = subprocess.run([sys.executable, __file__, "--measure", mode, "--root", str(root)],
                         env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="COCO train2017 size")
    parser.add_argument("--scale", type=float, default=0.125, help="fraction of full size")
    parser.add_argument("--repeat", type=int, default=3, help="best of N runs per step (default 3)")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.root)))
        return 0

    scale = 1.0 if args.full else args.scale
    with tempfile.TemporaryDirectory(prefix="ravlm-bench-load-") as tmp:
        root, cache = Path(tmp) / "coco", Path(tmp) / "cache"
        t0 = time.perf_counter()
        files = generate(root, scale)
        size_mb = sum(p.stat().st_size for p in files) / 2**20
        print(f"generated {size_mb:.0f} MB of annotations at scale {scale:g} "
              f"({round(FULL['images'] * scale)} images, {round(FULL['captions'] * scale)} "
              f"captions, {round(FULL['instances'] * scale)} instances) in "
              f"{time.perf_counter() - t0:.1f} s")
        best = {}
        for _ in range(args.repeat):
            import shutil

            shutil.rmtree(cache, ignore_errors=True)
            for mode in ("json", "json-nogc", "first", "cached"):
                result = _run(mode, root, cache)
                if mode not in best or result["seconds"] < best[mode]["seconds"]:
                    best[mode] = result
    base, first, cached = best["json"], best["first"], best["cached"]
    nogc = best["json-nogc"]
    from tabulate import tabulate

    rows = [
        ["json.load (baseline)", f"{base['seconds']:.3f}", f"{base['peak_mb']:.0f}", "1.00x", ""],
        ["json.load, gc paused (info)", f"{nogc['seconds']:.3f}", f"{nogc['peak_mb']:.0f}",
         f"{nogc['seconds'] / base['seconds']:.2f}x", ""],
        ["first load (parse + cache)", f"{first['seconds']:.3f}", f"{first['peak_mb']:.0f}",
         f"{first['seconds'] / base['seconds']:.2f}x time, "
         f"{first['peak_mb'] / base['peak_mb']:.2f}x memory "
         f"({first['seconds'] / nogc['seconds']:.2f}x gc-paused time)",
         "<= 1.5x time, <= 1.0x memory"],
        ["cached load", f"{cached['seconds']:.3f}", f"{cached['peak_mb']:.0f}",
         f"{first['seconds'] / cached['seconds']:.0f}x faster than first", ">= 20x"],
    ]
    print(tabulate(rows, headers=["step", "seconds", "peak MB", "ratio", "target"]))
    ok = (first["seconds"] <= 1.5 * base["seconds"] and first["peak_mb"] <= base["peak_mb"]
          and first["seconds"] >= 20 * cached["seconds"])
    print("all targets met" if ok else "TARGET MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
