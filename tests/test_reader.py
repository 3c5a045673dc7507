"""The answer-extraction reader: answers found as runs of words, evidence weighted by rank
and similarity, beta tuned on cross-fitted training queries, and a plain prior without retrieval."""

from __future__ import annotations

import numpy as np
import pytest

from ravlm_bench.api import ConfigError, FusionInputs, KnowledgeBase
from ravlm_plugins.fusion.reader import AnswerFinder, ReaderHead, words

CLASSES = ["1966", "Sven Aalto", "Bologna", "Riga", "96"]
PASSAGES = [
    "Sven Aalto built the Quinova Pillar in Riga, finishing it in 1966.",
    "The Balane Statue was made in Bologna.",
    "A list of harbour cranes.",
]


def test_words_keep_decimals_and_drop_punctuation():
    assert words("It rises 2.5 metres, in 1966.") == ("it", "rises", "2.5", "metres", "in", "1966")


def test_an_answer_occurs_only_as_whole_words():
    finder = AnswerFinder(CLASSES)
    found = {CLASSES[i] for i in finder.answers_in(PASSAGES[0])}
    assert found == {"1966", "Sven Aalto", "Riga"}  # not "96", a part of "1966"
    assert finder.answers_in("sven  AALTO!").tolist() == [1]  # any case, any spacing
    assert finder.answers_in(PASSAGES[2]).tolist() == []


def inputs(n: int, rows: np.ndarray, labels=None, seed: int = 0) -> FusionInputs:
    rng = np.random.default_rng(seed)
    kb = KnowledgeBase(image=np.zeros((3, 4), np.float32), text=np.zeros((3, 4), np.float32),
                       labels=np.full(3, -1), image_ids=np.arange(3), texts=PASSAGES)
    scores = np.where(rows >= 0, 0.9, 0.0).astype(np.float32)
    return FusionInputs(image=rng.normal(size=(n, 4)).astype(np.float32),
                        text=rng.normal(size=(n, 4)).astype(np.float32),
                        neighbours=rows, neighbour_scores=scores, knowledge=kb,
                        num_classes=len(CLASSES), labels=labels, classes=CLASSES)


def test_the_reader_answers_from_the_passage_it_retrieved():
    # queries answered "Bologna" retrieve passage 1, those answered "Riga" passage 0 (which
    # also names 1966 and Sven Aalto, so the prior has to tell the question types apart)
    n = 60
    labels = np.array([2, 3] * (n // 2))
    rows = np.where(labels[:, None] == 2, 1, 0) * np.ones((1, 2), np.int64)
    rows[:, 1] = 2
    head = ReaderHead(dim=8, k=2)
    report = head.fit(inputs(n, rows, labels), None, seed=0)
    assert report.extra["beta"] > 0 and report.extra["tuned_on"] == "train, 5-fold cross-fitted"
    proba = head.predict_proba(inputs(n, rows, seed=1))
    assert proba.shape == (n, len(CLASSES)) and proba.dtype == np.float32
    assert np.allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    assert (proba.argmax(axis=1)[labels == 2] == 2).all()


def test_beta_is_tuned_on_priors_that_did_not_see_the_query():
    """Random answers on wide random features: a prior fitted on a query memorises it, so
    judged in-sample the prior alone looks right; cross-fitted, it is at chance, and the
    passages that name each answer decide."""
    n, width = 60, 64
    rng = np.random.default_rng(0)
    labels = rng.choice([2, 3], size=n)
    rows = np.where(labels[:, None] == 2, 1, 0) * np.ones((1, 2), np.int64)
    rows[:, 1] = 2
    train = inputs(n, rows, labels)
    train.image = rng.normal(size=(n, width)).astype(np.float32)
    train.text = rng.normal(size=(n, width)).astype(np.float32)
    head = ReaderHead(dim=2 * width, k=2, prior_c=100.0)
    report = head.fit(train, None, seed=0)
    in_sample = (head._log_prior(train).argmax(axis=1) == labels).mean()
    assert in_sample > 0.95  # what tuning on the prior's own queries would have seen
    assert report.extra["accuracy_by_beta"]["0.0"] < 0.75
    assert report.extra["beta"] > 0 and report.extra["accuracy_by_beta"][
        str(report.extra["beta"])] == 1.0


def test_without_neighbours_the_reader_is_its_prior():
    n = 40
    labels = np.array([2, 3] * (n // 2))
    padding = np.full((n, 2), -1, np.int64)
    head = ReaderHead(dim=8, k=2)
    assert head.fit(inputs(n, padding, labels), None, seed=0).extra["beta"] == 0.0
    query = inputs(n, padding, seed=1)
    prior = np.exp(head._log_prior(query))
    assert np.allclose(head.predict_proba(query), prior / prior.sum(axis=1, keepdims=True),
                       atol=1e-6)


def test_the_reader_is_deterministic_for_a_seed():
    n = 40
    labels = np.array([2, 3] * (n // 2))
    rows = np.tile(np.array([[1, 0]]), (n, 1))
    first, second = ReaderHead(dim=8, k=2), ReaderHead(dim=8, k=2)
    first.fit(inputs(n, rows, labels), None, seed=3)
    second.fit(inputs(n, rows, labels), None, seed=3)
    query = inputs(n, rows, seed=4)
    assert np.array_equal(first.predict_proba(query), second.predict_proba(query))


def test_the_reader_refuses_inputs_without_answers_or_texts():
    n = 10
    labels = np.array([2, 3] * 5)
    bare = inputs(n, np.zeros((n, 1), np.int64), labels)
    bare.classes = None
    with pytest.raises(ConfigError, match="FusionInputs.classes"):
        ReaderHead(dim=8).fit(bare, None, seed=0)
    with pytest.raises(ConfigError, match="prior_c must be > 0"):
        ReaderHead(dim=8, prior_c=0.0)


def test_with_too_few_training_questions_beta_is_tuned_on_all_of_them():
    labels = np.array([2, 3] * 6)
    rows = np.tile(np.array([[1, 0]]), (12, 1))
    report = ReaderHead(dim=8, k=2).fit(inputs(12, rows, labels), None, seed=0)
    assert report.extra["tuned_on"] == "train (too few to hold out)"
    assert all(0.0 <= a <= 1.0 for a in report.extra["accuracy_by_beta"].values())


def test_readers_that_differ_only_in_retrieval_share_their_priors():
    """The demo fits six priors per reader cell; the task's other reader systems learn from
    the same queries and answers, so they reuse those fits instead of repeating them, and
    predict exactly what a reader fitted from nothing predicts."""
    from ravlm_plugins.fusion import reader

    n = 60
    labels = np.array([2, 3] * (n // 2))
    exact = np.tile(np.array([[1, 0]]), (n, 1))
    shuffled = np.tile(np.array([[0, 1]]), (n, 1))
    reader._PRIORS.clear()
    first, second = ReaderHead(dim=8, k=2), ReaderHead(dim=8, k=2)
    first.fit(inputs(n, exact, labels), None, seed=5)
    fitted = len(reader._PRIORS)
    second.fit(inputs(n, shuffled, labels), None, seed=5)
    assert fitted == 1 + reader.FOLDS and len(reader._PRIORS) == fitted  # none fitted again
    assert second.prior is first.prior

    reader._PRIORS.clear()
    fresh = ReaderHead(dim=8, k=2)
    fresh.fit(inputs(n, shuffled, labels), None, seed=5)
    query = inputs(n, shuffled, seed=6)
    assert fresh.beta == second.beta
    assert np.array_equal(fresh.predict_proba(query), second.predict_proba(query))
    ReaderHead(dim=8, k=2).fit(inputs(n, shuffled, labels), None, seed=6)  # another seed
    assert len(reader._PRIORS) == 2 * (1 + reader.FOLDS)


def test_shared_priors_are_bounded_by_their_coefficients_bytes(monkeypatch):
    """A real answer vocabulary makes a prior tens of MB: the oldest priors go once the
    kept coefficients pass the bound, and a reader whose priors went fits them again, to
    the same predictions."""
    from ravlm_plugins.fusion import reader

    n = 60
    labels = np.array([2, 3] * (n // 2))
    rows = np.tile(np.array([[1, 0]]), (n, 1))
    reader._PRIORS.clear()
    first = ReaderHead(dim=8, k=2)
    first.fit(inputs(n, rows, labels), None, seed=5)
    one_prior = first.prior.coef_.nbytes
    monkeypatch.setattr(reader, "PRIORS_KEPT_BYTES", 2 * one_prior)
    reader._PRIORS.clear()
    second = ReaderHead(dim=8, k=2)
    second.fit(inputs(n, rows, labels), None, seed=5)
    assert len(reader._PRIORS) == 2  # the last fold's prior and the one before it
    assert second.prior not in reader._PRIORS.values()  # the final prior came first: gone
    query = inputs(n, rows, seed=6)
    assert np.array_equal(first.predict_proba(query), second.predict_proba(query))
