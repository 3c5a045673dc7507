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

from ravlm_bench.foundation.distributed import merge_topk, shard_bounds

WORKER = textwrap.dedent('''
    import json, sys
    import numpy as np
    from ravlm_bench.plugin_host.host import get_plugin_manager
    from ravlm_bench.plugin_host.registry import Registry
    from ravlm_bench.foundation.distributed import (ReplicatedRetriever, ShardedRetriever,
                                                    gather_errors, init_distributed,
                                                    rank_failure, shutdown)

    mode, out = sys.argv[1], sys.argv[2]
    ctx = init_distributed(timeout_s=60)
    if mode == "search":
        data = np.load(sys.argv[3])
        vectors, keys, queries = data["vectors"], data["keys"], data["queries"]
        registry = Registry(get_plugin_manager())
        for metric in ("cos", "ip", "l2sq"):
            sharded = ShardedRetriever(
                registry.create("retrievers", "exact", dim=24, metric=metric), ctx)
            sharded.build(vectors, keys)
            found, scores = sharded.search(queries, 10)
            memory = sharded.memory_bytes()  # the whole index: every rank's shard
            if ctx.is_main:
                np.savez(f"{out}-{metric}.npz", keys=found, scores=scores, memory=memory)
    elif mode == "replicated":
        data = np.load(sys.argv[3])
        vectors, keys, queries = data["vectors"], data["keys"], data["queries"]
        labels = np.arange(len(queries)) % 3
        registry = Registry(get_plugin_manager())
        for name, params in (("usearch-hnsw", {"expansion_search": 16}), ("random", {})):
            replicated = ReplicatedRetriever(
                registry.create("retrievers", name, dim=24, metric="cos", **params), ctx)
            replicated.build(vectors, keys, **({"labels": keys % 3} if name == "random" else {}))
            found, scores = replicated.search(
                queries, 10, **({"labels": labels} if name == "random" else {}))
            if ctx.is_main:
                np.savez(f"{out}-{name}.npz", keys=found, scores=scores)
    elif mode == "resume":
        import torch
        from ravlm_bench.foundation.errors import ConfigError
        from ravlm_plugins.fusion.loop import TrainConfig, TrainingRun, fit
        from ravlm_plugins.fusion.objectives import SingleLabel
        from ravlm_plugins.fusion.training import ClassifierProblem

        x = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
        labels = (x[:, 0] > 0).long().numpy()
        # rank 0 sees a checkpoint that rank 1 does not: unshared run directories
        directory = sys.argv[3] if ctx.rank == 0 else sys.argv[4]
        try:
            fit(torch.nn.Linear(4, 2), ClassifierProblem(
                SingleLabel(labels, 2), lambda split, idx: (x[idx],), labels, None),
                TrainingRun(TrainConfig(epochs=2, data_parallel=True, ddp_min_items=0,
                                        progress=False),
                            torch.Generator().manual_seed(0), checkpoint_dir=directory,
                            signature="tiny", dist=ctx))
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
            messages = gather_errors(ctx, error)
            if any(m is not None for m in messages):
                raise rank_failure("encoding", messages)
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


def search_data():
    """1001 vectors, one of them stored 40 times across the shards, under shuffled keys; the
    first queries are that vector (a tie cut by the k-th place) and a zero vector."""
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(1001, 24)).astype(np.float32)
    vectors[rng.choice(1001, 40, replace=False)] = vectors[0]
    keys = rng.permutation(1001).astype(np.int64) * 3 + 11
    queries = rng.normal(size=(50, 24)).astype(np.float32)
    queries[0], queries[1] = vectors[0], 0.0
    return vectors, keys, queries


def test_merge_topk_breaks_ties_by_ascending_key():
    # two shards' lists side by side, each best first with its own ties by key
    keys = np.array([[8, 30, 4, -1], [2, 9, 5, 7]], dtype=np.int64)
    scores = np.array([[0.5, 0.5, 0.5, -np.inf], [0.9, 0.1, 0.9, 0.9]], dtype=np.float32)
    merged_keys, merged_scores = merge_topk(keys, scores, 3)
    assert merged_keys.tolist() == [[4, 8, 30], [2, 5, 7]]
    np.testing.assert_array_equal(merged_scores, np.float32([[0.5] * 3, [0.9] * 3]))
    swapped = merge_topk(keys[:, [2, 3, 0, 1]], scores[:, [2, 3, 0, 1]], 4)[0]
    assert swapped.tolist() == [[4, 8, 30, -1], [2, 5, 7, 9]]  # shard order does not matter


@pytest.mark.parametrize("world", [2, 3, 5])
def test_merged_shards_with_ties_equal_the_unsharded_exact_search(world):
    from ravlm_bench.plugin_host.host import get_plugin_manager
    from ravlm_bench.plugin_host.registry import Registry

    vectors, keys, queries = search_data()
    registry = Registry(get_plugin_manager())
    for metric in ("cos", "ip", "l2sq"):
        whole = registry.create("retrievers", "exact", dim=24, metric=metric)
        whole.build(vectors, keys)
        expected_keys, expected_scores = whole.search(queries, 10)
        shard_keys, shard_scores = [], []
        for rank in range(world):  # as ShardedRetriever splits and searches them
            start, stop = shard_bounds(len(keys), rank, world)
            shard = registry.create("retrievers", "exact", dim=24, metric=metric)
            shard.build(vectors[start:stop], keys[start:stop])
            found, scores = shard.search(queries, 10)
            shard_keys.append(found)
            shard_scores.append(scores)
        merged_keys, merged_scores = merge_topk(np.concatenate(shard_keys, axis=1),
                                                np.concatenate(shard_scores, axis=1), 10)
        assert np.array_equal(merged_keys, expected_keys), metric
        assert np.array_equal(merged_scores, expected_scores), metric
        if metric != "ip":  # the query equal to the stored copies gets their lowest keys
            copies = np.sort(keys[(vectors == queries[0]).all(axis=1)])
            assert merged_keys[0].tolist() == copies[:10].tolist()


@pytest.mark.slow
def test_sharded_exact_search_equals_unsharded(tmp_path):
    from ravlm_bench.plugin_host.host import get_plugin_manager
    from ravlm_bench.plugin_host.registry import Registry

    vectors, keys, queries = search_data()
    np.savez(tmp_path / "data.npz", vectors=vectors, keys=keys, queries=queries)
    run_two_ranks(tmp_path, "search", str(tmp_path / "data.npz"))
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
def test_replicated_approximate_and_random_search_equal_one_process(tmp_path):
    """The default under torchrun: every rank holds the whole index and searches its share
    of the queries, so HNSW and random retrieval give one process's results exactly."""
    from ravlm_bench.plugin_host.host import get_plugin_manager
    from ravlm_bench.plugin_host.registry import Registry

    vectors, keys, queries = search_data()
    np.savez(tmp_path / "data.npz", vectors=vectors, keys=keys, queries=queries)
    run_two_ranks(tmp_path, "replicated", str(tmp_path / "data.npz"))
    registry = Registry(get_plugin_manager())
    labels = np.arange(len(queries)) % 3
    for name, params in (("usearch-hnsw", {"expansion_search": 16}), ("random", {})):
        whole = registry.create("retrievers", name, dim=24, metric="cos", **params)
        extra = {"labels": keys % 3} if name == "random" else {}
        whole.build(vectors, keys, **extra)
        expected_keys, expected_scores = whole.search(
            queries, 10, **({"labels": labels} if name == "random" else {}))
        replicated = np.load(tmp_path / f"out-{name}.npz")
        assert np.array_equal(replicated["keys"], expected_keys), name
        assert np.array_equal(replicated["scores"], expected_scores), name


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

    from ravlm_plugins.fusion.loop import TrainConfig, TrainingRun, data_parallel_signature, fit
    from ravlm_plugins.fusion.objectives import SingleLabel
    from ravlm_plugins.fusion.training import ClassifierProblem

    x = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
    seen, unseen = tmp_path / "node0", tmp_path / "node1"
    labels = (x[:, 0] > 0).long().numpy()
    fit(torch.nn.Linear(4, 2), ClassifierProblem(
        SingleLabel(labels, 2), lambda split, idx: (x[idx],), labels, None),
        TrainingRun(TrainConfig(epochs=1, progress=False), torch.Generator().manual_seed(0),
                    checkpoint_dir=seen, signature=data_parallel_signature("tiny", 2)))
    run_two_ranks(tmp_path, "resume", str(seen), str(unseen))
    for rank in range(2):  # every rank stops with the same finding, none hangs
        message = (tmp_path / f"out-rank{rank}.txt").read_text()
        assert "ranks see different training checkpoints" in message
        assert "(rank 0: epoch 1, rank 1: none); put the run directory on a filesystem" in message


@pytest.mark.parametrize("n, block, world", [(400, 64, 2), (10, 64, 2), (0, 64, 2),
                                             (129, 64, 3), (730, 256, 2), (1000, 64, 4)])
def test_an_encoding_shard_is_whole_batches(n, block, world):
    """Each rank's items start on a batch boundary of the one-process encoding, so every
    item is encoded beside the same items as in one process; together they cover every
    item once, in order."""
    from ravlm_bench.stages.features import block_shard

    shards = [block_shard(n, block, rank, world) for rank in range(world)]
    assert [i for part in shards for i in range(n)[part]] == list(range(n))
    assert all(part.start % block == 0 for part in shards if part.start < n)
    blocks = [-(-(part.stop - part.start) // block) for part in shards]
    assert max(blocks) - min(blocks) <= 1  # balanced to a batch
