"""The embedded demo world: a deterministic synthetic dataset in the COCO, Flickr30k and
Visual Genome formats, and knowledge VQA data in the InfoSeek, OK-VQA, A-OKVQA and BEIR
passage formats (whose answers only the passages hold), so the harness runs on a fresh
machine with no download.

Core code (data generation, not model code); the dataset plugins read it like real data.

May import: foundation.
"""

from ravlm_bench.demo.world import (
    GENERATOR_VERSION,
    SIZES,
    DemoSummary,
    ensure_demo_world,
    generate_demo_world,
    load_summary,
)
from ravlm_bench.demo.writers import TreeSummary

__all__ = [
    "GENERATOR_VERSION", "SIZES", "DemoSummary", "TreeSummary", "ensure_demo_world",
    "generate_demo_world", "load_summary",
]
