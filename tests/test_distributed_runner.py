"""torchrun: a 2-process gloo run of a suite equals a 1-process run; a failing rank stops it.

Tolerance: heads trained data-parallel (``data_parallel = true, ddp_min_items = 0`` here)
with dropout off differ only in the floating-point order of gradient reductions, so on this
small suite a 2-process run gives the same predictions and metrics as a 1-process run
(asserted exactly here; over many epochs they drift apart, which is why data-parallel
training is opt-in); the probabilities and similarities themselves (the explorer's
confidence and neighbour scores) agree to 1e-5. Every other head is trained by rank 0 alone
and broadcast: identical to one process, dropout included.
"""

from __future__ import annotations

import json
import textwrap
import time

import numpy as np
import pytest
from clitools import run_cli
from testhelpers import TINY_SUITE_HEAD

SUITE = TINY_SUITE_HEAD + """
[systems.concat.fusion_head]
name = "concat"
epochs = 4
hidden = 64
dropout = 0.0
data_parallel = true
ddp_min_items = 0

[systems.concat-rank0]  # not data-parallel (the default): rank 0 trains it, dropout and all
fusion_head = {{ name = "concat", epochs = 4, hidden = 64 }}

[systems.knn-exact]
retriever = "exact"
fusion_head = {{ name = "knn", k = 5 }}

[systems.knn-hnsw]  # an approximate index: every process holds the whole one
retriever = {{ name = "usearch-hnsw", expansion_search = 16 }}
fusion_head = {{ name = "knn", k = 5 }}

[systems.knn-hnsw-sharded]  # each process holds a shard: another index, said so
retriever = {{ name = "usearch-hnsw", expansion_search = 16, shard_index = true }}
fusion_head = {{ name = "knn", k = 5 }}

[systems.xattn-random]  # random neighbours, drawn from the whole knowledge base
retriever = "random"
fusion_head = {{ name = "xattn", k = 5, epochs = 2, width = 32, heads = 2 }}

[systems.infonce-hnsw]
retriever = {{ name = "usearch-hnsw", expansion_search = 16 }}
joint_embedding = {{ name = "infonce", epochs = 3 }}

[systems.xattn-exact]
retriever = "exact"

[systems.xattn-exact.fusion_head]
name = "xattn"
k = 5
epochs = 4
width = 32
heads = 2
dropout = 0.0
neighbour_dropout = 0.0
data_parallel = true
ddp_min_items = 0  # data-parallel even on this tiny training set

[systems.xattn-rank0]  # rank 0 trains it, dropout and neighbour dropout on
retriever = "exact"
fusion_head = {{ name = "xattn", k = 5, epochs = 3, width = 32, heads = 2 }}

[systems.infonce-exact]
retriever = "exact"
joint_embedding = {{ name = "infonce", epochs = 3 }}

[systems.reader-learned]  # passages, by a key learned from the questions' gold entities
retriever = "exact"
retrieval_key = {{ name = "evidence-lda", width = 16 }}
knowledge = {{ dataset = "passages", split = "corpus" }}
fusion_head = {{ name = "reader", k = 3 }}

[systems.reader-oracle]
retriever = "oracle"
knowledge = {{ dataset = "passages", split = "corpus" }}
fusion_head = {{ name = "reader", k = 3 }}

[systems.reader-random]
retriever = "random"
knowledge = {{ dataset = "passages", split = "corpus" }}
fusion_head = {{ name = "reader", k = 3 }}

[data.flickr30k]  # its captions repeat (one caption many times): exact ties everywhere
root = "{root}/flickr30k"
[data.infoseek]
root = "{root}/infoseek"
[data.passages]
root = "{root}/passages"

[tasks.coco-category]
systems = ["concat", "concat-rank0", "knn-exact", "knn-hnsw", "knn-hnsw-sharded",
           "xattn-exact", "xattn-random"{extra}]

[tasks.flickr30k-itm]
systems = ["knn-exact", "xattn-rank0"]

[tasks.coco-retrieval]
systems = ["infonce-exact", "infonce-hnsw"]

[tasks.flickr30k-retrieval]
systems = ["infonce-exact"]

[tasks.infoseek]
systems = ["reader-learned", "reader-oracle", "reader-random"]
"""

RANK_ONE_FAILS = '''
import os
import numpy as np
from ravlm_bench.api import hookimpl


class FailsOnRankOne:
    def __init__(self, dim, metric):
        self.dim = dim

    def build(self, vectors, keys):
        self.vectors, self.keys = vectors, keys

    def search(self, queries, k):
        if os.environ.get("RANK") == "1":
            raise MemoryError("rank one ran out of memory")
        scores = queries @ self.vectors.T
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return self.keys[order], np.take_along_axis(scores, order, 1).astype(np.float32)


@hookimpl
def register_retrievers(register):
    register("fails-on-rank-one", FailsOnRankOne)
'''

FAILING_SYSTEM = """
[systems.xattn-fails]
retriever = "fails-on-rank-one"
fusion_head = { name = "xattn", k = 5, epochs = 2, width = 32, heads = 2 }
"""


# what the explorer shows of the predicted class's probability and of the neighbours'
# similarities: equal up to the order of floating-point reductions (each rank encodes its
# shard on one thread), as the module docstring says
FLOAT_ORDER_ARRAYS = {"explore.confidence", "explore.neighbour_scores"}
# one thread a rank, and a short collective timeout so a failing rank is seen quickly
DIST_ENV = {"OMP_NUM_THREADS": "1", "RAVLM_BENCH_DIST_TIMEOUT": "30"}


def run(args: list[str], cache, processes: int = 1, timeout: int = 600):
    return run_cli(*args, cache=cache, env=DIST_ENV, processes=processes, timeout=timeout)


def write_suite(tmp_path, demo_world, extra: str = "", systems: str = ""):
    path = tmp_path / "dist.toml"
    text = SUITE.format(name="dist", root=demo_world, extra=systems)
    path.write_text(textwrap.dedent(text) + extra)
    return path


@pytest.mark.slow
def test_two_processes_give_the_same_results_as_one(tmp_path, demo_world):
    """torchrun's ranks run a thread each; the one process runs at its default threads."""
    suite = write_suite(tmp_path, demo_world)
    cache = tmp_path / "cache"
    one = run_cli("run", str(suite), "--out", str(tmp_path / "one"), "-q", cache=cache,
                  timeout=600)
    assert one.returncode == 0, one.stderr
    # a fresh cache, so the two ranks really encode their shards
    two = run(["run", str(suite), "--out", str(tmp_path / "two"), "-q"], tmp_path / "cache2",
              processes=2)
    assert two.returncode == 0, two.stderr

    cells = sorted((tmp_path / "one" / "cells").rglob("seed-*.json"))
    assert len(cells) == 30
    for path in cells:
        twin = tmp_path / "two" / path.relative_to(tmp_path / "one")
        a, b = json.loads(path.read_text()), json.loads(twin.read_text())
        assert a["status"] == b["status"] == "ok"
        assert b["provenance"]["world_size"] == 2
        if "knn-hnsw-sharded" in path.parts:  # a sharded HNSW index is another index
            fingerprint = b["provenance"]["components"]["retrievers"]["fingerprint"]
            assert "|sharded over 2 processes|" in fingerprint, fingerprint
            assert "sharded" not in a["provenance"]["components"]["retrievers"]["fingerprint"]
            continue
        # data-parallel training is the suite's explicit choice, and the cell says so
        data_parallel = path.parent.name in ("concat", "xattn-exact")
        processes = (b.get("training") or {}).get("data_parallel_processes")
        assert processes == (2 if data_parallel else None), path
        assert "data_parallel_processes" not in (a.get("training") or {})
        for name, value in a["metrics"].items():
            if isinstance(value, float):
                assert b["metrics"][name] == pytest.approx(value, abs=1e-9), (path, name)
        # predictions and every metric's values on the shared resamples
        with np.load(path.with_suffix(".npz")) as mine, \
                np.load(twin.with_suffix(".npz")) as theirs:
            assert sorted(mine.files) == sorted(theirs.files)
            for name in mine.files:
                a, b = mine[name], theirs[name]
                if name in FLOAT_ORDER_ARRAYS:  # the floating-point order of reductions
                    assert np.allclose(a, b, rtol=0, atol=1e-5), (path, name)
                else:  # strings (the explorer's texts and paths) have no NaN
                    floats = a.dtype.kind == "f"
                    assert np.array_equal(a, b, equal_nan=floats), (path, name)
    # only rank 0 wrote: one leaderboard's worth of files, no duplicates from rank 1
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["cells", "checkpoints",
                                                                     "run.json"]


@pytest.mark.slow
def test_a_rank_that_raises_stops_the_run_naming_it(tmp_path, demo_world):
    plugin = tmp_path / "rank_one.py"
    plugin.write_text(RANK_ONE_FAILS)
    suite = write_suite(tmp_path, demo_world, FAILING_SYSTEM, ', "xattn-fails"')
    started = time.monotonic()
    result = run(["-p", str(plugin), "run", str(suite), "--out", str(tmp_path / "run"), "-q"],
                 tmp_path / "cache", processes=2, timeout=300)
    elapsed = time.monotonic() - started
    assert result.returncode != 0
    assert ("coco-category / xattn-fails / seed 0 failed on 2 of 2 ranks:" in result.stderr)
    assert ("rank 1: retriever 'fails-on-rank-one' (plugin 'rank_one'): search failed: "
            "MemoryError: rank one ran out of memory") in result.stderr
    assert elapsed < 240  # bounded by the 30 s collective timeout, never a hang
    # the cells finished before the failure are kept
    assert (tmp_path / "run/cells/coco-category/concat/seed-0.json").exists()
