"""The README's multi-node invocation, two torchrun launches on one machine standing in for
two nodes (one process each, a static rendezvous on node 0), over a knowledge base with
20,000 distractors: an index split across the nodes (``shard_index = true``) and one each
node builds whole give every cell the one-process run gives."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from clitools import cli_env, free_port, run_cli, user_signals
from testhelpers import INFOSEEK_DISTRACTORS_HEAD

pytestmark = pytest.mark.slow

SUITE = INFOSEEK_DISTRACTORS_HEAD + """
[systems.reader-exact-sharded]
retriever = {{ name = "exact", shard_index = true }}
[systems.reader-hnsw]
retriever = {{ name = "usearch-hnsw", connectivity = 8, expansion_search = 16 }}
[tasks.infoseek]
systems = ["reader-exact-sharded", "reader-hnsw"]
"""


def node_command(rank: int, port: int, *args: str) -> list[str]:
    """The README's two-node command for node ``rank``, one process per node."""
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node-rank",
            str(rank), "--nproc-per-node", "1", "--master-addr", "127.0.0.1",
            "--master-port", str(port), "-m", "ravlm_bench", *args]


def cells(run_dir) -> dict:
    out = {}
    for path in sorted((run_dir / "cells").rglob("seed-0.json")):
        record = json.loads(path.read_text())
        assert record["status"] == "ok", record.get("error")
        with np.load(path.with_suffix(".npz")) as arrays:
            out[path.parent.name] = record["metrics"], {n: arrays[n] for n in arrays.files}
    return out


def test_two_nodes_give_the_cells_of_one_process(tmp_path, demo_world):
    suite = tmp_path / "multinode.toml"
    suite.write_text(SUITE.format(name="multinode", baseline="reader-exact-sharded",
                                  run="retrieval_dependence = false", distractors=20000,
                                  root=demo_world))
    single = run_cli("run", str(suite), "--out", str(tmp_path / "one"), "-q",
                     cache=tmp_path / "cache-one")
    assert single.returncode == 0, single.stderr

    port, shared = free_port(), tmp_path / "shared"  # the run directory both nodes see
    args = ("run", str(suite), "--out", str(shared / "run"), "-q")
    env = cli_env(shared / "cache")
    nodes = [subprocess.Popen(node_command(rank, port, *args), env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              preexec_fn=user_signals) for rank in (0, 1)]
    outputs = [node.communicate(timeout=900) for node in nodes]
    for node, (_, stderr) in zip(nodes, outputs, strict=True):
        assert node.returncode == 0, stderr[-3000:]

    one, two = cells(tmp_path / "one"), cells(shared / "run")
    assert set(one) == set(two) == {"reader-exact-sharded", "reader-hnsw"}
    for system, (metrics, arrays) in one.items():
        assert two[system][0] == metrics, system
        for name, values in arrays.items():
            if values.dtype.kind == "f":  # probabilities: the order of float reductions
                np.testing.assert_allclose(two[system][1][name], values, atol=1e-5)
            else:
                np.testing.assert_array_equal(two[system][1][name], values, err_msg=name)
    sharded = json.loads((shared / "run" / "cells" / "infoseek" / "reader-exact-sharded"
                          / "seed-0.json").read_text())
    assert "sharded over 2 processes" in json.dumps(sharded["provenance"])
