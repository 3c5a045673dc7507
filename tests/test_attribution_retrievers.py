"""The attribution bounds: ``oracle`` (same-label items) and ``random`` (seeded random items)."""

from __future__ import annotations

import numpy as np
import pytest

from ravlm_bench.foundation.errors import ConfigError
from ravlm_bench.plugin_host.contracts import LabelledRetriever, validate_search
from ravlm_bench.plugin_host.host import get_plugin_manager
from ravlm_bench.plugin_host.registry import Registry
from ravlm_bench.testing import check_retriever

DIM = 16


@pytest.fixture(scope="module")
def registry():
    return Registry(get_plugin_manager())


def data(n=200, classes=5, seed=0):
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, DIM)).astype(np.float32)
    keys = np.arange(n, dtype=np.int64) * 7 + 3  # keys are not row numbers
    labels = rng.integers(0, classes, n)
    return vectors, keys, labels


def make(registry, name, metric="cos", **params):
    retriever = registry.create("retrievers", name, dim=DIM, metric=metric, **params)
    assert retriever.uses_labels and isinstance(retriever, LabelledRetriever)
    return retriever


@pytest.mark.parametrize("metric", ["cos", "ip", "l2sq"])
def test_oracle_returns_the_nearest_items_with_the_query_label(registry, metric):
    vectors, keys, labels = data()
    oracle = make(registry, "oracle", metric)
    oracle.build(vectors, keys, labels=labels)
    queries = vectors[:30] + 0.05
    query_labels = (labels[:30] + 1) % 5  # not the label of the nearest item
    found, scores = validate_search(oracle.search(queries, 8, labels=query_labels), 30, 8)
    label_of = dict(zip(keys.tolist(), labels.tolist(), strict=True))
    assert all(label_of[key] == query_labels[i] for i in range(30) for key in found[i])
    for i in range(30):  # the same as brute force over that label's items
        items = np.flatnonzero(labels == query_labels[i])
        if metric == "cos":
            sims = (vectors[items] / np.linalg.norm(vectors[items], axis=1, keepdims=True)
                    @ (queries[i] / np.linalg.norm(queries[i])))
        elif metric == "ip":
            sims = vectors[items] @ queries[i]
        else:
            sims = -((vectors[items] - queries[i]) ** 2).sum(axis=1)
        best = np.argsort(-sims, kind="stable")[:8]
        assert np.array_equal(found[i], keys[items[best]])
        np.testing.assert_allclose(scores[i], sims[best], rtol=1e-4, atol=1e-4)


def test_oracle_pads_when_few_items_share_the_label_and_needs_labels(registry):
    vectors, keys, _ = data(n=10)
    labels = np.array([0, 0, 0, 1, 1, 1, 1, 1, 1, 1])
    oracle = make(registry, "oracle")
    oracle.build(vectors, keys, labels=labels)
    found, _ = validate_search(oracle.search(vectors[:3], 5, labels=np.array([0, 2, -1])), 3, 5)
    assert (found[0, :3] >= 0).all() and (found[0, 3:] == -1).all()
    assert (found[1:] == -1).all()  # no item has label 2; -1 is outside the label space
    with pytest.raises(ConfigError, match="needs labels"):
        oracle.search(vectors[:3], 5)


@pytest.mark.parametrize("metric", ["cos", "ip", "l2sq"])
def test_random_honours_the_search_contract(registry, metric):
    vectors, keys, labels = data()
    retriever = make(registry, "random", metric, seed=1)
    retriever.build(vectors, keys)  # labels are optional for random
    queries = vectors[:40]
    found, scores = validate_search(retriever.search(queries, 10), 40, 10)
    assert set(found.ravel().tolist()) <= set(keys.tolist())
    assert all(len(set(row)) == 10 for row in found.tolist())  # no repeats within a row
    one, _ = validate_search(retriever.search(queries[:1], 10), 1, 10)
    assert np.array_equal(one, found[:1])  # independent of the query batch

    small = make(registry, "random", metric, seed=1)
    small.build(vectors[:3], keys[:3])
    padded, _ = validate_search(small.search(queries[:2], 5), 2, 5)
    assert (padded[:, :3] >= 0).all() and (padded[:, 3:] == -1).all()


def test_random_is_seeded_and_uninformative(registry):
    vectors, keys, labels = data(n=500)
    first = make(registry, "random", seed=1)
    first.build(vectors, keys, labels=labels)
    again = make(registry, "random", seed=1)
    again.build(vectors, keys, labels=labels)
    other = make(registry, "random", seed=2)
    other.build(vectors, keys, labels=labels)
    queries = vectors[:100]
    found, _ = first.search(queries, 10, labels=labels[:100])
    assert np.array_equal(found, again.search(queries, 10, labels=labels[:100])[0])
    assert not np.array_equal(found, other.search(queries, 10, labels=labels[:100])[0])
    # a stored vector's nearest item is itself for a real retriever, rarely for random
    assert (found == keys[:100, None]).any(axis=1).mean() < 0.1
    # every item gets drawn: the lower bound is not biased towards a region
    assert len(np.unique(found)) > 400


def test_unknown_metric_fails_naming_the_plugin(registry):
    with pytest.raises(ConfigError, match="oracle.*metric"):
        registry.create("retrievers", "oracle", dim=DIM, metric="hamming")


@pytest.mark.parametrize("name,params,min_recall", [
    ("oracle", {}, 1.0),  # with one label for everything, oracle is an exact search
    ("random", {"seed": 4}, 0.0),  # knows nothing, finds nothing on purpose
])
def test_conformance_kit(registry, name, params, min_recall):
    check_retriever(lambda **kw: registry.create("retrievers", name, **params, **kw),
                    min_recall=min_recall)


def with_copies(seed=0):
    """``data()`` where one vector is stored 12 times, all under label 1, in shuffled order
    under shuffled keys."""
    vectors, keys, labels = data(n=120, seed=seed)
    rng = np.random.default_rng(seed)
    copies = rng.choice(120, 12, replace=False)
    vectors[copies], labels[copies] = vectors[copies[0]], 1
    return vectors, rng.permutation(keys), labels, copies


@pytest.mark.parametrize("metric", ["cos", "ip", "l2sq"])
def test_oracle_keeps_the_lowest_keys_of_a_tie(registry, metric):
    vectors, keys, labels, copies = with_copies()
    oracle = make(registry, "oracle", metric)
    oracle.build(vectors, keys, labels=labels)
    found, scores = oracle.search(vectors[copies[:1]], 8, labels=np.array([1]))
    lowest = np.sort(keys[copies])[:8]
    if metric != "ip":  # by inner product a longer vector of label 1 may come first
        assert found[0].tolist() == lowest.tolist() and len(set(scores[0].tolist())) == 1
    shuffled = np.random.default_rng(1).permutation(len(keys))
    again = make(registry, "oracle", metric)
    again.build(vectors[shuffled], keys[shuffled], labels=labels[shuffled])
    assert np.array_equal(again.search(vectors[copies[:1]], 8, labels=np.array([1]))[0], found)


def test_random_draws_the_same_items_whatever_the_insertion_order(registry):
    vectors, keys, labels, copies = with_copies()
    first = make(registry, "random", seed=2)
    first.build(vectors, keys)
    shuffled = np.random.default_rng(1).permutation(len(keys))
    second = make(registry, "random", seed=2)
    second.build(vectors[shuffled], keys[shuffled])
    queries = vectors[:30]
    found, scores = first.search(queries, 20)
    assert np.array_equal(found, second.search(queries, 20)[0])
    # copies drawn together tie, by ascending key
    tied = (scores[:, 1:] == scores[:, :-1])
    assert tied.any() and (found[:, 1:] > found[:, :-1])[tied].all()


@pytest.mark.parametrize("name,declared", [("oracle", {}), ("random", {"seed": 0})])
def test_options_declare_what_the_factory_takes(registry, name, declared):
    entry = registry.get("retrievers", name)
    assert entry.params.declared
    assert {p.name: p.default for p in entry.params.params} == declared
    assert all(p.help for p in entry.params.params)
    with pytest.raises(ConfigError, match="unknown parameter 'k'"):
        entry.check({"k": 3}, "suite")


def test_random_draws_by_query_key_ignore_the_vectors_last_bits(registry):
    """One process and two encode with other thread counts, so a query's float bits can
    differ; drawn by its key (the harness's query_keys), its neighbours do not."""
    from ravlm_bench.stages.retrieval import query_keys

    rng = np.random.default_rng(4)
    vectors = rng.normal(size=(300, DIM)).astype(np.float32)
    keys = np.arange(300, dtype=np.int64)
    retriever = make(registry, "random", seed=1)
    retriever.build(vectors, keys)
    queries = rng.normal(size=(40, DIM)).astype(np.float32)
    nudged = np.nextafter(queries, np.float32(np.inf))  # the last bit of every coordinate
    ids = query_keys(np.repeat(np.arange(20) + 100, 2))  # two questions per image
    assert len(set(ids.tolist())) == 40
    first = retriever.search(queries, 5, query_keys=ids)[0]
    assert np.array_equal(first, retriever.search(nudged, 5, query_keys=ids)[0])
    # batch by batch, in another order: the same draws
    order = rng.permutation(40)
    again = np.concatenate([retriever.search(nudged[order][i:i + 7], 5,
                                             query_keys=ids[order][i:i + 7])[0]
                            for i in range(0, 40, 7)])
    assert np.array_equal(again, first[order])
    # without keys the bytes seed the draw: the nudged queries draw other items
    assert not np.array_equal(retriever.search(queries, 5)[0], retriever.search(nudged, 5)[0])
