"""Helpers that more than one test module uses (the CLI ones are in clitools.py)."""

from __future__ import annotations

import json
from pathlib import Path

# The head of the small suites the runner tests run on the tiny demo world: two seeds over
# its COCO tree, a random 32-pixel ResNet-18 and MiniLM. ``str.format`` it with ``name`` and
# ``root`` (the demo world) after appending the systems and tasks.
# the window the HTML pages are tested in: the width the leaderboard must fit
BROWSER_WIDTH, BROWSER_HEIGHT = 1400, 1000

TINY_SUITE_HEAD = """
name = "{name}"
seeds = [0, 1]
baseline = "concat"

[data.coco]
root = "{root}/coco"

[defaults]
image_encoder = {{ name = "resnet18", image_size = 32, seed = 0 }}
text_encoder = {{ name = "minilm-l6", max_length = 32 }}
"""
# The head of a suite over the tiny demo world's InfoSeek, whose passages get ``distractors``
# synthesised beside them, read by a reader over the image key. ``str.format`` it with
# ``name``, ``baseline``, ``run`` (the [run] table's lines), ``distractors`` and ``root``
# after appending the systems and tasks.
INFOSEEK_DISTRACTORS_HEAD = """
name = "{name}"
seeds = [0]
baseline = "{baseline}"
[run]
{run}
[data.infoseek]
root = "{root}/infoseek"
[data.passages]
root = "{root}/passages"
[defaults]
image_encoder = {{ name = "resnet18", image_size = 32, seed = 0 }}
text_encoder = {{ name = "minilm-l6", max_length = 16 }}
retrieval_key = "image"
knowledge = {{ dataset = "passages", split = "corpus", distractors = {distractors} }}
fusion_head = {{ name = "reader", k = 3 }}
"""
# the tiny suite's two plainest systems: no retrieval, and a k-NN vote over exact search
TINY_CONCAT_AND_KNN = """
[systems.concat]
fusion_head = {{ name = "concat", epochs = 3, hidden = 64 }}

[systems.knn-exact]
retriever = "exact"
fusion_head = {{ name = "knn", k = 5 }}
"""


def demo_tree(world: Path, tree: str) -> dict:
    """What the demo generator says it wrote for one dataset tree (splits, counts)."""
    return json.loads((world / "demo_world.json").read_text())["trees"][tree]


def count_loads(monkeypatch, model_class) -> list:
    """Record every ``model_class.from_pretrained`` call, which still loads the model."""
    loads = []
    load = model_class.from_pretrained.__func__
    monkeypatch.setattr(model_class, "from_pretrained", classmethod(
        lambda cls, *args, **kwargs: loads.append(args) or load(cls, *args, **kwargs)))
    return loads


def damaged_copy(model_dir: Path, tmp_path: Path) -> Path:
    """A copy of a ``save_pretrained`` directory whose weights files are garbage."""
    import shutil

    directory = tmp_path / "damaged"
    shutil.copytree(model_dir, directory)
    for weights in directory.glob("*.safetensors"):
        weights.write_bytes(b"not a safetensors file")
    return directory


def tied_vectors(seed: int, dim: int = 8):
    """40 distinct vectors plus 14 more copies of the first and 3 of the second, in shuffled
    order under shuffled keys; queries: those two, a zero vector and random ones."""
    import numpy as np

    rng = np.random.default_rng(seed)
    distinct = rng.normal(size=(40, dim)).astype(np.float32)
    source = rng.permutation(np.concatenate([np.arange(40), np.zeros(14, int), np.ones(3, int)]))
    keys = rng.permutation(len(source)).astype(np.int64) * 3 + 2
    queries = np.concatenate([distinct[:2], np.zeros((1, dim)), rng.normal(size=(5, dim))])
    return distinct[source], keys, queries.astype(np.float32)


def load_builtin_suite(path: Path):
    """A built-in suite; one that leaves its retriever open (the retriever benchmark) with
    ``exact`` in its place, as ``run --retriever exact`` would load it."""
    from ravlm_bench.config.candidates import CANDIDATE
    from ravlm_bench.config.suite import load_suite

    return load_suite(path, ["exact"] if CANDIDATE in path.read_text() else ())
