"""The retrieval-dependence sweep's parts: corrupting the retrieved items (seeded by the
query's key, nested across levels, the expected share p whatever k), RA-VQA's
answer-versus-evidence table, and the dependence metric's paired resamples."""

from __future__ import annotations

import numpy as np
import pytest

from ravlm_bench.plugin_host.contracts import FusionInputs, KnowledgeBase
from ravlm_bench.scoring.dependence import (
    CORRUPTION_LEVELS,
    DEPENDENCE_METRIC,
    NO_RETRIEVAL,
    add_dependence,
    level_name,
)
from ravlm_bench.scoring.evaluation import Evaluation
from ravlm_bench.stages.corruption import corrupted, stacked
from ravlm_bench.stages.retrieval import IMAGE_AND_TEXT, RetrievalKey, answer_evidence


def inputs(n: int = 400, k: int = 3, kb_size: int = 50, seed: int = 0) -> FusionInputs:
    rng = np.random.default_rng(seed)
    kb = KnowledgeBase(image=rng.normal(size=(kb_size, 4)).astype(np.float32),
                       text=rng.normal(size=(kb_size, 5)).astype(np.float32),
                       labels=np.full(kb_size, -1), image_ids=np.arange(kb_size))
    # the "retrieved" items: rows 0..k-1 for every query, a marker no draw imitates in bulk
    rows = np.tile(np.arange(k, dtype=np.int64), (n, 1))
    scores = np.tile(np.linspace(0.9, 0.8, k, dtype=np.float32), (n, 1))
    return FusionInputs(image=rng.normal(size=(n, 4)).astype(np.float32),
                        text=rng.normal(size=(n, 5)).astype(np.float32), neighbours=rows,
                        neighbour_scores=scores, knowledge=kb, num_classes=2,
                        image_ids=np.arange(n, dtype=np.int64) // 2)  # two items per image


def replaced(original: FusionInputs, variant: FusionInputs) -> np.ndarray:
    """Per query, how many of its original items were replaced."""
    kept = [len(set(a) & set(b)) for a, b in zip(original.neighbours, variant.neighbours,
                                                  strict=True)]
    return original.neighbours.shape[1] - np.array(kept)


def test_level_zero_keeps_the_retrieved_items_and_none_retrieves_nothing():
    base = inputs()
    out = corrupted(base, CORRUPTION_LEVELS, IMAGE_AND_TEXT)
    assert list(out) == ["p0", "p0.25", "p0.5", "p0.75", "p1", NO_RETRIEVAL]
    np.testing.assert_array_equal(out["p0"].neighbours, base.neighbours)
    np.testing.assert_array_equal(out["p0"].neighbour_scores, base.neighbour_scores)
    assert (out[NO_RETRIEVAL].neighbours == -1).all()
    assert (out[NO_RETRIEVAL].neighbour_scores == 0).all()


@pytest.mark.parametrize("k", [1, 3, 10])
def test_each_level_replaces_the_share_p_of_the_slots_on_average_whatever_k(k):
    base = inputs(n=4000, k=k, kb_size=100_000)  # random rows almost never hit rows 0..k-1
    out = corrupted(base, CORRUPTION_LEVELS, IMAGE_AND_TEXT)
    for p in CORRUPTION_LEVELS:
        share = replaced(base, out[level_name(p)]).mean() / k
        assert share == pytest.approx(p, abs=0.025), (p, k)
    # every slot at p = 1 (a random row may, rarely, be one of the original rows)
    assert (replaced(base, out["p1"]) == k).mean() > 0.99


def test_levels_are_nested_and_replacements_carry_their_real_similarity():
    base = inputs(k=10, kb_size=100_000)
    key = RetrievalKey("image")
    out = corrupted(base, CORRUPTION_LEVELS, key)
    previous = None
    for p in CORRUPTION_LEVELS:
        variant = out[level_name(p)]
        random_items = [set(row[row >= 10]) for row in variant.neighbours]
        if previous is not None:  # what a lower level replaced stays replaced, by the same
            assert all(a <= b for a, b in zip(previous, random_items, strict=True))
        previous = random_items
        # best first, and a random item's score is its cosine similarity to the query
        assert (np.diff(variant.neighbour_scores, axis=1) <= 0).all()
        q = key.vectors(base.image, base.text)
        items = key.vectors(base.knowledge.image, base.knowledge.text)
        mask = variant.neighbours >= 10
        expected = np.einsum("nd,nkd->nk", q, items[variant.neighbours])
        np.testing.assert_allclose(variant.neighbour_scores[mask], expected[mask], atol=1e-6)


def test_draws_depend_on_the_query_key_not_on_its_batch_or_position():
    base = inputs(n=300, k=5, kb_size=10_000)
    whole = corrupted(base, [0.5], IMAGE_AND_TEXT)["p0.5"]
    # a batch of some images' items, in another order (an image's items keep theirs: their
    # keys number them in split order)
    images = np.random.default_rng(1).choice(np.unique(base.image_ids), 60, replace=False)
    rows = np.concatenate([np.flatnonzero(base.image_ids == i) for i in images])
    part = FusionInputs(image=base.image[rows], text=base.text[rows],
                        neighbours=base.neighbours[rows],
                        neighbour_scores=base.neighbour_scores[rows],
                        knowledge=base.knowledge, num_classes=2, image_ids=base.image_ids[rows])
    batch = corrupted(part, [0.5], IMAGE_AND_TEXT)["p0.5"]
    np.testing.assert_array_equal(batch.neighbours, whole.neighbours[rows])
    np.testing.assert_array_equal(batch.neighbour_scores, whole.neighbour_scores[rows])
    # and a rerun draws the same
    np.testing.assert_array_equal(corrupted(base, [0.5], IMAGE_AND_TEXT)["p0.5"].neighbours,
                                  whole.neighbours)


def test_stacked_variants_keep_each_variants_rows():
    base = inputs(n=7)
    variants = corrupted(base, [0.5, 1.0], IMAGE_AND_TEXT)
    joined, spans = stacked(variants)
    assert len(joined) == 3 * 7 and joined.labels is None
    for name, span in spans.items():
        np.testing.assert_array_equal(joined.neighbours[span], variants[name].neighbours)
        np.testing.assert_array_equal(joined.image[span], base.image)


def test_answer_evidence_counts_each_question_once_by_hand():
    kb_texts = ["The tower was built in Paris.", "Founded by Ada Brandt in 1959.", "Nothing."]
    rows = np.array([[0, 2], [2, -1], [1, 2], [2, 2]])
    answers = [["paris"], ["paris"], ["1959", "fifty-nine"], ["rome"]]
    predicted = ["Paris", "Paris", "1960", "madrid"]
    # q0 right with evidence; q1 right without; q2 wrong with; q3 wrong without
    shares = answer_evidence(predicted, answers, rows, kb_texts)
    assert shares == {"right_with_evidence": 0.25, "right_without_evidence": 0.25,
                      "wrong_with_evidence": 0.25, "wrong_without_evidence": 0.25}


def test_dependence_is_the_paired_difference_on_every_resample():
    clean = Evaluation(metrics={"f1": 0.8}, replicates={"f1": np.array([0.7, 0.8, 0.9])})
    variants = {"p0.5": Evaluation(metrics={"f1": 0.6}),
                "p1": Evaluation(metrics={"f1": 0.5},
                                 replicates={"f1": np.array([0.5, 0.4, 0.6])}),
                NO_RETRIEVAL: Evaluation(metrics={"f1": 0.45})}
    curve = add_dependence(clean, variants, "f1")
    assert curve == {"p0": 0.8, "p0.5": 0.6, "p1": 0.5, NO_RETRIEVAL: 0.45}
    assert clean.metrics[DEPENDENCE_METRIC] == pytest.approx(0.3)
    np.testing.assert_allclose(clean.replicates[DEPENDENCE_METRIC], [0.2, 0.4, 0.3])
    undefined = Evaluation(metrics={"f1": None})
    add_dependence(undefined, {"p1": Evaluation(metrics={"f1": 0.5})}, "f1")
    assert undefined.metrics[DEPENDENCE_METRIC] is None
    assert DEPENDENCE_METRIC not in undefined.replicates
