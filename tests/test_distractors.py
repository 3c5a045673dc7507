"""Distractors synthesised beside a knowledge base (stages/distractors.py), the index cache
(store/index_cache.py), and both through the CLI on the tiny demo world."""

from __future__ import annotations

import json

import numpy as np
import pytest
from clitools import run_cli
from testhelpers import INFOSEEK_DISTRACTORS_HEAD

from ravlm_bench.config.knowledge import KnowledgeSpec
from ravlm_bench.foundation.errors import ConfigError
from ravlm_bench.plugin_host.contracts import KnowledgeBase
from ravlm_bench.stages.distractors import (
    look_alike_rows,
    signal_directions,
    synthesise,
    with_retrieved,
)
from ravlm_bench.stages.retrieval import (
    RetrievalKey,
    build_index,
    fusion_inputs,
    retrieval_diagnostics,
)
from ravlm_bench.store.index_cache import cached_build


def items_in_a_subspace(n: int = 40, dim: int = 32, rank: int = 6, seed: int = 0):
    """Unit vectors spanning ``rank`` of ``dim`` dimensions (a learned key's picture), with
    two all-zero rows (items the key cannot see)."""
    projection = np.random.default_rng(0).standard_normal((rank, dim))
    vectors = np.random.default_rng(seed).standard_normal((n, rank)) @ projection
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors[[3, 7]] = 0.0
    return vectors.astype(np.float32)


def spec(count: int = 500, **options) -> KnowledgeSpec:
    return KnowledgeSpec("passages", "corpus", distractors=count, **options)


def test_each_distractor_looks_like_a_visible_item_at_the_chosen_similarity():
    items = items_in_a_subspace()
    evidence = [f"Q{i // 4}" for i in range(len(items))]
    made = synthesise(spec(distractor_similarity=0.7), items, evidence)
    assert len(made) == 500 and made.vectors.dtype == np.float32
    assert not np.isin(made.look_alike, [3, 7]).any()  # never an item the key cannot see
    u = items[made.look_alike]
    np.testing.assert_allclose(np.linalg.norm(made.vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose((made.vectors * u).sum(axis=1), 0.7, atol=1e-5)
    # what a distractor adds to its look-alike lies where the items do not vary: a query
    # embedded like the items scores it 0.7 times the look-alike
    queries = items_in_a_subspace(n=10, seed=1)[[0, 1, 2, 4, 5]]
    np.testing.assert_allclose(queries @ made.vectors.T, 0.7 * (queries @ u.T), atol=1e-4)
    # it carries the text of an item naming other evidence
    assert all(evidence[t] != evidence[a] for t, a in zip(made.text_of, made.look_alike,
                                                          strict=True))


def test_the_draws_depend_on_the_seed_alone():
    items = items_in_a_subspace()
    a, b = synthesise(spec(), items, None), synthesise(spec(), items.copy(), None)
    np.testing.assert_array_equal(a.vectors, b.vectors)
    np.testing.assert_array_equal(a.text_of, b.text_of)
    other = synthesise(spec(distractor_seed=1), items, None)
    assert not np.array_equal(a.vectors, other.vectors)
    assert (a.text_of != a.look_alike).all()  # without evidence: another item's text
    # the first distractors are the same whatever how many are drawn after them
    longer = synthesise(spec(70_000), items, None)
    np.testing.assert_array_equal(longer.look_alike[:500], a.look_alike)


def test_signal_directions_hold_the_items_and_their_mean():
    items = items_in_a_subspace()
    basis = signal_directions(items)
    assert len(basis) <= 6
    residual = items - (items @ basis.T) @ basis
    assert np.square(residual).sum() <= 0.01 * np.square(items).sum() + 1e-6


def test_items_that_fill_the_key_or_none_visible_are_refused():
    rng = np.random.default_rng(0)
    full = rng.standard_normal((200, 8)).astype(np.float32)
    with pytest.raises(ConfigError, match="fill 8 of the key's 8 dimensions"):
        synthesise(spec(), full / np.linalg.norm(full, axis=1, keepdims=True), None)
    with pytest.raises(ConfigError, match="no item has a non-zero retrieval-key vector"):
        synthesise(spec(), np.zeros((5, 8), np.float32), None)


def small_knowledge_base(vectors: np.ndarray) -> KnowledgeBase:
    n = len(vectors)
    return KnowledgeBase(image=vectors, text=np.zeros((n, 4), np.float32),
                         labels=np.full(n, -1, np.int64),
                         image_ids=-(np.arange(n, dtype=np.int64) + 2),
                         texts=[f"passage {i}" for i in range(n)],
                         evidence=[f"Q{i // 4}" for i in range(n)])


def test_only_the_distractors_retrieved_become_rows_and_keep_their_keys():
    items = items_in_a_subspace()
    kb = small_knowledge_base(items)
    made = synthesise(spec(20), items, kb.evidence)
    n = len(kb)
    extended, rows = with_retrieved(kb, np.array([[0, n + 12, n + 3], [n + 12, -1, 5]]), made)
    np.testing.assert_array_equal(rows, [[0, n + 1, n], [n + 1, -1, 5]])
    np.testing.assert_array_equal(extended.index_keys, [*range(n), n + 3, n + 12])
    assert len(extended) == n + 2 and extended.labels[n:].tolist() == [-1, -1]
    assert extended.evidence[n:] == ["", ""]
    assert extended.texts[n + 1] == kb.texts[made.text_of[12]]
    np.testing.assert_array_equal(extended.image[n], items[made.look_alike[3]])
    assert extended.image_ids[n:].min() < kb.image_ids.min()  # ids of their own
    np.testing.assert_array_equal(look_alike_rows(extended, made)[n:],
                                  made.look_alike[[3, 12]])


def test_exact_search_over_the_distractors_recalls_itself():
    items = items_in_a_subspace()
    kb = small_knowledge_base(items)
    made = synthesise(spec(3000, distractor_similarity=0.95), items, kb.evidence)
    from ravlm_plugins.retrievers import ExactRetriever

    key = RetrievalKey("image")
    retriever = ExactRetriever(dim=items.shape[1])
    indexed = build_index(retriever, kb, key, distractors=made)
    assert indexed.shape == (len(kb) + 3000, items.shape[1])
    queries = np.delete(items_in_a_subspace(n=14, seed=2), [3, 7], axis=0)
    inputs = fusion_inputs(queries, np.zeros((12, 4), np.float32), retriever=retriever, kb=kb,
                           k=5, key=key, distractors=made, num_classes=2)
    assert (inputs.neighbours >= len(kb)).any()  # at 0.95, look-alikes crowd in
    assert (inputs.neighbours < len(inputs.knowledge)).all()
    # diagnostics compare index keys: the rows' keys are what the retriever returned
    exact_keys, _ = retriever.search(key.vectors(queries, queries[:, :4]), 5)
    np.testing.assert_array_equal(inputs.knowledge.index_keys[inputs.neighbours], exact_keys)
    assert retrieval_diagnostics(inputs, None, exact_keys)["recall_vs_exact"] == 1.0
    assert retrieval_diagnostics(inputs, None, exact_keys[::-1])["recall_vs_exact"] < 0.5


def test_the_index_cache_loads_what_it_saved_and_rebuilds_a_damaged_file(registry, tmp_path):
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((300, 16)).astype(np.float32)
    keys = np.arange(300, dtype=np.int64)
    first = registry.create("retrievers", "usearch-hnsw", dim=16, metric="cos")
    cached_build(first, "usearch-hnsw", tmp_path)(vectors, keys)
    [saved] = list(tmp_path.glob("*.index"))
    second = registry.create("retrievers", "usearch-hnsw", dim=16, metric="cos",
                             expansion_search=32)  # a search width: the same graph
    cached_build(second, "usearch-hnsw", tmp_path)(vectors, keys)
    assert list(tmp_path.glob("*.index")) == [saved]
    np.testing.assert_array_equal(second.search(vectors[:5], 3)[0], first.search(vectors[:5], 3)[0])
    saved.write_bytes(saved.read_bytes()[:-64] + bytes(64))  # its tail zeroed
    third = registry.create("retrievers", "usearch-hnsw", dim=16, metric="cos")
    assert third.load(saved, "anything") is False
    cached_build(third, "usearch-hnsw", tmp_path)(vectors, keys)  # rebuilt, saved again
    assert json.loads(saved.with_name(saved.name + ".json").read_text())["count"] == 300
    exact = registry.create("retrievers", "exact", dim=16, metric="cos")
    assert cached_build(exact, "exact", tmp_path) is None  # nothing to save


SUITE = INFOSEEK_DISTRACTORS_HEAD + """
[systems.reader-exact]
retriever = "exact"
[systems.reader-hnsw]
retriever = {{ name = "usearch-hnsw", connectivity = 4, expansion_search = 4 }}
[tasks.infoseek]
systems = ["reader-exact", "reader-hnsw"]
"""


def test_a_suite_with_distractors_runs_and_a_rerun_loads_its_index(tmp_path, demo_world):
    suite = tmp_path / "distractors.toml"
    suite.write_text(SUITE.format(name="distractors", baseline="reader-exact",
                                  run="cache_indexes = true", distractors=5000,
                                  root=demo_world))
    cache = tmp_path / "cache"
    first = run_cli("run", str(suite), "--out", str(tmp_path / "a"), cache=cache)
    assert first.returncode == 0, first.stderr
    assert "index usearch-hnsw: built and saved" in first.stderr
    cells = {}
    for run in ("a", "b"):
        if run == "b":
            again = run_cli("run", str(suite), "--out", str(tmp_path / "b"), cache=cache)
            assert again.returncode == 0, again.stderr
            assert "index usearch-hnsw: loaded" in again.stderr
        for system in ("reader-exact", "reader-hnsw"):
            path = tmp_path / run / "cells" / "infoseek" / system / "seed-0"
            record = json.loads(path.with_suffix(".json").read_text())
            assert record["status"] == "ok", record.get("error")
            with np.load(path.with_suffix(".npz")) as arrays:
                cells[run, system] = record, {name: arrays[name] for name in arrays.files}
    exact, _ = cells["a", "reader-exact"]
    assert exact["knowledge"]["distractors"] == 5000
    assert exact["retrieval"]["recall_vs_exact"] == 1.0
    hnsw, arrays = cells["a", "reader-hnsw"]
    assert 0.0 <= hnsw["retrieval"]["recall_vs_exact"] < 1.0  # a sparse graph, a narrow search
    # the explorer shows each row retrieved, distractors included, with a text of its own
    assert len(arrays["explore.kb_text"]) == arrays["explore.neighbours"].max() + 1
    for system in ("reader-exact", "reader-hnsw"):  # the loaded index answers the same
        a, b = cells["a", system][1], cells["b", system][1]
        for name in a:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)
