"""torch.distributed helpers: shards, top-k merges, and rank failures, on 2 gloo processes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from clitools import free_port

from ravlm_bench.distributed import merge_topk, shard_bounds

WORKER = textwrap.dedent('''
    import json, sys
    import numpy as np
    from ravlm_bench import Registry, get_plugin_manager
    from ravlm_bench.distributed import (ShardedRetriever, check_ranks, init_distributed,
                                         shutdown)

    mode, out = sys.argv[1], sys.argv[2]
    ctx = init_distributed(timeout_s=60)
    if mode == "search":
        rng = np.random.default_rng(0)
        vectors = rng.normal(size=(1001, 24)).astype(np.float32)
        keys = np.arange(1001, dtype=np.int64) * 3 + 11
        queries = rng.normal(size=(50, 24)).astype(np.float32)
        registry = Registry(get_plugin_manager())
        for metric in ("cos", "ip", "l2sq"):
            sharded = ShardedRetriever(
                registry.create("retrievers", "exact", dim=24, metric=metric), ctx)
            sharded.build(vectors, keys)
            found, scores = sharded.search(queries, 10)
            memory = sharded.memory_bytes()  # the whole index: every rank's shard
            if ctx.is_main:
                np.savez(f"{out}-{metric}.npz", keys=found, scores=scores, memory=memory)
    elif mode == "resume":
        import torch
        from ravlm_bench.errors import ConfigError
        from ravlm_plugins.fusion.training import TrainConfig, train_classifier

        x = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
        labels = (x[:, 0] > 0).long().numpy()
        # rank 0 sees a checkpoint that rank 1 does not: unshared run directories
        directory = sys.argv[3] if ctx.rank == 0 else sys.argv[4]
        try:
            train_classifier(torch.nn.Linear(4, 2), lambda split, idx: (x[idx],), labels,
                             None, num_classes=2, signature="tiny",
                             config=TrainConfig(epochs=2, ddp_min_items=0, progress=False),
                             generator=torch.Generator().manual_seed(0),
                             checkpoint_dir=directory, dist=ctx)
            message = "trained"
        except ConfigError as exc:
            message = str(exc)
        with open(f"{out}-rank{ctx.rank}.txt", "w") as handle:
            handle.write(message)
    else:
        error = None
        try:
            if ctx.rank == 1:
                raise RuntimeError("encoder ran out of memory")
        except Exception as exc:
            error = exc
        try:
            check_ranks(ctx, error, "encoding")
        except Exception as exc:
            with open(f"{out}-rank{ctx.rank}.txt", "w") as handle:
                handle.write(str(exc))
    shutdown(ctx)
''')


def run_two_ranks(tmp_path, mode: str, *args: str) -> float:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    port = free_port()
    procs = []
    started = time.monotonic()
    for rank in range(2):
        env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
               "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
               "OMP_NUM_THREADS": "1"}
        procs.append(subprocess.Popen([sys.executable, str(script), mode, str(tmp_path / "out"),
                                       *args],
                                      env=env, stderr=subprocess.PIPE, text=True))
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    return time.monotonic() - started


def test_shard_bounds_cover_everything_once():
    for n in (0, 1, 7, 100):
        for world in (1, 2, 3, 8):
            bounds = [shard_bounds(n, r, world) for r in range(world)]
            assert bounds[0][0] == 0 and bounds[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))
            sizes = [stop - start for start, stop in bounds]
            assert max(sizes) - min(sizes) <= 1


def test_merge_topk_equals_a_global_sort():
    rng = np.random.default_rng(1)
    scores = rng.normal(size=(20, 3, 5)).astype(np.float32)
    scores = -np.sort(-scores, axis=2)
    keys = rng.permutation(20 * 3 * 5 * 10)[: 20 * 15].reshape(20, 3, 5).astype(np.int64)
    keys[:, 2, 3:] = -1  # a short shard pads
    merged_keys, merged_scores = merge_topk(keys.reshape(20, 15), scores.reshape(20, 15), 7)
    for row in range(20):
        valid = keys[row].reshape(-1) >= 0
        flat_scores = scores[row].reshape(-1)[valid]
        flat_keys = keys[row].reshape(-1)[valid]
        best = np.argsort(-flat_scores, kind="stable")[:7]
        assert merged_keys[row].tolist() == flat_keys[best].tolist()
        assert np.allclose(merged_scores[row], flat_scores[best])


@pytest.mark.slow
def test_sharded_exact_search_equals_unsharded(tmp_path):
    from ravlm_bench import Registry, get_plugin_manager

    run_two_ranks(tmp_path, "search")
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(1001, 24)).astype(np.float32)
    keys = np.arange(1001, dtype=np.int64) * 3 + 11
    queries = rng.normal(size=(50, 24)).astype(np.float32)
    registry = Registry(get_plugin_manager())
    for metric in ("cos", "ip", "l2sq"):
        whole = registry.create("retrievers", "exact", dim=24, metric=metric)
        whole.build(vectors, keys)
        expected_keys, expected_scores = whole.search(queries, 10)
        sharded = np.load(tmp_path / f"out-{metric}.npz")
        assert np.array_equal(sharded["keys"], expected_keys), metric
        assert np.allclose(sharded["scores"], expected_scores, atol=1e-5), metric
        assert int(sharded["memory"]) == whole.memory_bytes(), metric


@pytest.mark.slow
def test_a_failing_rank_stops_every_rank_with_its_name(tmp_path):
    elapsed = run_two_ranks(tmp_path, "fail")
    for rank in range(2):
        message = (tmp_path / f"out-rank{rank}.txt").read_text()
        assert message == ("encoding failed on 1 of 2 ranks: rank 1: RuntimeError: encoder ran "
                           "out of memory")
    assert elapsed < 60  # well inside the collective timeout: nobody hung


def test_data_parallel_ranks_that_see_different_checkpoints_fail_alike(tmp_path):
    import torch

    from ravlm_plugins.fusion.training import TrainConfig, train_classifier

    x = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
    seen, unseen = tmp_path / "node0", tmp_path / "node1"
    train_classifier(torch.nn.Linear(4, 2), lambda split, idx: (x[idx],),
                     (x[:, 0] > 0).long().numpy(), None, num_classes=2, signature="tiny",
                     config=TrainConfig(epochs=1, progress=False),
                     generator=torch.Generator().manual_seed(0), checkpoint_dir=seen)
    run_two_ranks(tmp_path, "resume", str(seen), str(unseen))
    for rank in range(2):  # every rank stops with the same finding, none hangs
        message = (tmp_path / f"out-rank{rank}.txt").read_text()
        assert "ranks see different training checkpoints" in message
        assert "(rank 0: epoch 1, rank 1: none); put the run directory on a filesystem" in message
