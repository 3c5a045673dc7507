"""``reader``: answer extraction from retrieved passages, the simplest retrieve-then-read.

Each answer in the task's vocabulary (``FusionInputs.classes``) is scored by where it occurs
in the texts of the query's retrieved items: an item at rank r (0 first) with similarity s
adds ``max(s, 0) / (r + 1)`` to every answer whose words occur in its text as a contiguous
run of words (lower-cased; "1966" in "finishing it in 1966." counts, "96" does not). That
evidence is added, times a weight beta, to the log of a prior P(answer | image, question),
a logistic regression on the query's unit-length image and text features (what ``concat``
sees), so that "who made this?" prefers makers and "in what year?" years even when a
passage names both:

    score(answer) = log P(answer | image, question) + beta * evidence(answer)

beta is picked from :data:`BETAS` by accuracy on the validation queries, or, without a
validation split, on every training query scored by a prior that did not learn from it
(:data:`FOLDS`-fold cross-fitting over seeded folds; with fewer than 25 training queries,
the one prior learned from all of them; ties: the smallest beta). A single held-out fifth
was too few questions on the demo's knowledge tasks: one seed in three picked a beta that
all but ignored the passages.
With beta = 0, or nothing retrieved, the reader is its prior: a no-retrieval baseline. The
reader reads no neighbour labels, so an external knowledge base of passages (labels -1)
serves it.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

from ravlm_bench.api import ConfigError, FusionHead, TrainingReport

from .digests import arrays_digest
from .labels import check_single_label
from .options import ReaderOptions, parse_options

BETAS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
FOLDS = 5  # cross-fitting folds of the training queries when beta is tuned on them
MIN_HELD_OUT = 5  # questions each fold needs
PRIOR_MAX_ITER = 300

# Priors fitted in this process, by a digest of what each learned from: a task's reader
# systems differ only in what they retrieve, so on one seed they fit the same six priors
# (on the demo's InfoSeek, 2-3 s each, most of a reader cell's training time). A prior is
# read, never changed, after its fit. The oldest go once the kept coefficients pass
# PRIORS_KEPT_BYTES (a real answer vocabulary of thousands makes a prior tens of MB).
_PRIORS: OrderedDict[str, Any] = OrderedDict()
PRIORS_KEPT_BYTES = 256 * 2 ** 20
# words, with the decimals of a number kept on it ("2.5" is one word, "2." is "2")
_WORD = re.compile(r"[0-9]+(?:\.[0-9]+)*|[^\W_]+")


def words(text: str) -> tuple[str, ...]:
    """The lower-cased words of ``text``, as the reader matches them."""
    return tuple(_WORD.findall(text.lower()))


def features(inputs) -> np.ndarray:
    """What the prior reads: the query's image and text features, each unit length."""
    image = np.asarray(inputs.image, np.float64)
    text = np.asarray(inputs.text, np.float64)
    return np.hstack([image / np.maximum(np.linalg.norm(image, axis=1, keepdims=True), 1e-12),
                      text / np.maximum(np.linalg.norm(text, axis=1, keepdims=True), 1e-12)])


class AnswerFinder:
    """Which answers of a vocabulary occur in a text as a run of its words; each text's
    answers are found once and kept (a reader asks about the same passages often)."""

    def __init__(self, classes: Sequence[str]):
        self.phrases: dict[tuple[str, ...], list[int]] = {}
        for index, answer in enumerate(classes):
            phrase = words(answer)
            if phrase:
                self.phrases.setdefault(phrase, []).append(index)
        self.lengths = sorted({len(p) for p in self.phrases})
        self._found: dict[str, np.ndarray] = {}

    def answers_in(self, text: str) -> np.ndarray:
        """The class indices whose answer occurs in ``text``."""
        found = self._found.get(text)
        if found is None:
            tokens = words(text)
            hits: set[int] = set()
            for n in self.lengths:
                for start in range(len(tokens) - n + 1):
                    hits.update(self.phrases.get(tokens[start:start + n], ()))
            found = self._found[text] = np.array(sorted(hits), np.int64)
        return found


class ReaderHead(FusionHead):
    """Scores the answer vocabulary by its occurrences in the retrieved texts, weighted by
    rank and similarity, on top of a prior from the query's image and question."""

    name = "reader"
    uses_retrieval = True
    neighbour_labels = "unused"
    targets = ("single-label",)

    def __init__(self, *, dim: int, **params):
        options = parse_options(ReaderOptions, f"fusion head {self.name}", params)
        self.dim, self.k = int(dim), int(options.k)
        self.prior_c = float(options.prior_c)
        self.prior = None  # the fitted logistic regression
        self.beta: float | None = None
        self.num_classes: int | None = None
        self.finder: AnswerFinder | None = None

    def fit(self, train, val=None, *, seed: int) -> TrainingReport:
        self.num_classes = int(train.num_classes)
        check_single_label(train.labels, self.name, "training")
        self.finder = AnswerFinder(self._classes(train))
        every = np.arange(len(train))
        if val is not None and val.labels is not None and len(val):
            tuning, tuned_on = val, "val"
            self.prior = self._fit_prior(train, every, seed)
            log_prior = self._log_prior(val)
        else:
            tuning, cross_fit = train, len(train) >= MIN_HELD_OUT * FOLDS
            tuned_on = (f"train, {FOLDS}-fold cross-fitted" if cross_fit
                        else "train (too few to hold out)")
            self.prior = self._fit_prior(train, every, seed)  # the final prior: every query
            log_prior = (self._cross_fitted_log_prior(train, seed) if cross_fit
                         else self._log_prior(train))
        evidence = self._evidence(tuning)
        truth = np.asarray(tuning.labels, np.int64)
        accuracy = {beta: float(((log_prior + beta * evidence).argmax(axis=1) == truth).mean())
                    for beta in BETAS}
        self.beta = max(BETAS, key=lambda b: (accuracy[b], -b))
        return TrainingReport(extra={
            "head": self.name, "beta": self.beta, "tuned_on": tuned_on,
            "accuracy_by_beta": {str(b): a for b, a in accuracy.items()}})

    def _cross_fitted_log_prior(self, train, seed: int) -> np.ndarray:
        """Each training query's log prior from the prior fitted on the other folds."""
        fold = np.random.default_rng(seed).permutation(len(train)) % FOLDS
        out = np.empty((len(train), self.num_classes))
        for k in range(FOLDS):
            prior = self._fit_prior(train, np.flatnonzero(fold != k), seed)
            out[fold == k] = self._log_prior(train, prior)[fold == k]
        return out

    def _fit_prior(self, train, rows: np.ndarray, seed: int):
        from sklearn.linear_model import LogisticRegression

        x = features(train)[rows]
        y = np.asarray(train.labels, np.int64)[rows]
        key = f"{self.prior_c!r}-{PRIOR_MAX_ITER}-{seed}-{x.shape}-{arrays_digest(x, y)}"
        if key in _PRIORS:
            _PRIORS.move_to_end(key)
            return _PRIORS[key]
        model = LogisticRegression(C=self.prior_c, max_iter=PRIOR_MAX_ITER, random_state=seed)
        _PRIORS[key] = model.fit(x, y)
        while (len(_PRIORS) > 1 and sum(prior.coef_.nbytes for prior in _PRIORS.values())
               > PRIORS_KEPT_BYTES):
            _PRIORS.popitem(last=False)
        return model

    def predict_proba(self, inputs) -> np.ndarray:
        if self.beta is None:
            raise ConfigError(f"fusion head {self.name}: predict_proba called before fit")
        self._classes(inputs)
        score = self._log_prior(inputs) + self.beta * self._evidence(inputs)
        score -= score.max(axis=1, keepdims=True)
        proba = np.exp(score)
        return (proba / proba.sum(axis=1, keepdims=True)).astype(np.float32)

    def _classes(self, inputs) -> list[str]:
        if inputs.classes is None or inputs.knowledge.texts is None:
            raise ConfigError(f"fusion head {self.name}: needs the task's answers "
                              "(FusionInputs.classes) and the knowledge base's texts "
                              "(KnowledgeBase.texts); this harness gave none")
        if len(inputs.classes) != self.num_classes:
            raise ConfigError(f"fusion head {self.name}: {len(inputs.classes)} classes given, "
                              f"{self.num_classes} at fit")
        return list(inputs.classes)

    def _log_prior(self, inputs, prior=None) -> np.ndarray:
        """log P(answer | image, question) over all classes (floored at 1e-6, so that
        evidence alone can still name an answer the prior never saw); ``prior``: the
        fitted prior to use, :attr:`prior` unless told."""
        prior = self.prior if prior is None else prior
        proba = np.full((len(inputs), self.num_classes), 0.0)
        proba[:, prior.classes_] = prior.predict_proba(features(inputs))
        return np.log(np.maximum(proba, 1e-6))

    def _evidence(self, inputs) -> np.ndarray:
        rows = np.asarray(inputs.neighbours[:, :self.k], np.int64)
        similarity = np.maximum(np.asarray(inputs.neighbour_scores[:, :self.k], np.float64), 0)
        texts = inputs.knowledge.texts
        evidence = np.zeros((len(inputs), self.num_classes))
        for query, (ranked, sims) in enumerate(zip(rows, similarity, strict=True)):
            for rank, (row, sim) in enumerate(zip(ranked, sims, strict=True)):
                if row < 0:
                    continue
                found = self.finder.answers_in(texts[int(row)])
                evidence[query, found] += sim / (rank + 1)
        return evidence
