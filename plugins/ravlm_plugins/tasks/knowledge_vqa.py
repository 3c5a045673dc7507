"""Knowledge-based VQA: ``okvqa``, ``aokvqa`` and ``infoseek``, image + question -> answer,
where the answer lives in a knowledge base rather than in the image.

Each is a classification over the training answers (the harness's fusion heads predict a
class), scored twice: by the seed's weighted precision / recall / F1 over that vocabulary,
and by the dataset's **official metric** on the predicted answer string
(:mod:`ravlm_plugins.tasks.official_scores`), which is the main metric:

* ``okvqa``: VQA accuracy against the ten human answers (leave-one-out, capped at three
  annotators, after the official normalisation);
* ``aokvqa``: the direct-answer score, min(1, exact matches among the ten direct answers / 3),
  with neither leave-one-out nor normalisation, and multiple-choice accuracy (the choice the
  head scores highest);
* ``infoseek``: exact match for strings, inside the range for numbers, and the final score
  the harmonic mean of the accuracies on ``unseen_question`` and ``unseen_entity``.

Every official metric is a mean of per-item scores (the harmonic mean: of two such means),
so it is resampled exactly as the classification metrics are: the same shared resamples
of the test images (a drawn image brings all its questions), the same paired tests. Each
test item also carries its acceptable answers and gold evidence, from which retrieval cells
report pseudo-relevance recall@k and evidence recall@k.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pandas as pd

from ravlm_bench.api import (
    ClassificationData,
    DataError,
    Evaluation,
    Metric,
    Resampler,
    SingleLabelEvaluation,
)
from ravlm_plugins.tasks import official_scores, splits
from ravlm_plugins.tasks.labelled import classification_data, label_space

# per-item fields the official metrics read; raw_answers are the answers as the file gives
# them (VQA accuracy counts OK-VQA's ten, repeats included)
ITEM_FIELDS = ("raw_answers", "choices", "correct_choice", "answer_range", "question_type",
               "split")


class KnowledgeVQA(SingleLabelEvaluation):
    """What the three tasks share: the splits, the label space, the per-item fields and the
    official metrics resampled beside the classification metrics."""

    name = "?"
    dataset = "?"
    train_splits: tuple[str, ...] = ("train",)
    test_splits: tuple[str, ...] = ("val",)
    official: tuple[str, ...] = ()  # official metric names, the first one main

    def __init__(self, top_answers: int = 5000, min_count: int = 1):
        self.top_answers = int(top_answers)
        self.min_count = int(min_count)

    def metrics(self) -> tuple[Metric, ...]:
        # the seed's classification metrics follow, none of them main
        return (*(Metric(name, main=i == 0, bootstrap="images")
                  for i, name in enumerate(self.official)),
                *(dataclasses.replace(m, main=False) for m in super().metrics()))

    def build(self, dataset, seed: int) -> ClassificationData:
        missing = [s for s in (*self.train_splits, *self.test_splits)
                   if s not in dataset.splits()]
        if missing:
            raise DataError(f"{self.name}: {dataset.name} at {dataset.root} has no split "
                            f"{', '.join(missing)} (it has {', '.join(dataset.splits())})")
        images = splits.load(dataset, "images", dataset.splits())
        images = images.drop_duplicates("image_id")[["image_id", "image_path"]]
        frames = {role: self._items(dataset, wanted, images)
                  for role, wanted in (("train", self.train_splits),
                                       ("test", self.test_splits))}
        self._refuse_unscorable(dataset, frames["test"])
        classes = label_space(frames["train"]["label"], top_n=self.top_answers,
                              min_count=self.min_count, task=self.name, label="answer",
                              items="training questions")
        return classification_data(self.name, frames, classes, item_fields=ITEM_FIELDS)

    def _items(self, dataset, wanted: tuple[str, ...], images: pd.DataFrame) -> pd.DataFrame:
        questions = splits.load(dataset, "knowledge_questions", list(wanted))
        qa = questions.merge(images, on="image_id", how="inner").sort_values("question_id")
        qa = qa.reset_index(drop=True)
        qa["raw_answers"] = [list(map(str, a)) for a in qa["answers"]]
        qa["answers"] = [sorted({*a, str(b)} - {""})
                         for a, b in zip(qa["raw_answers"], qa["answer"], strict=True)]
        qa = qa.rename(columns={"question": "text", "answer": "label", "entity_id": "evidence"})
        for column in ("choices", "answer_range"):
            qa[column] = [list(v) for v in qa[column]]
        return qa

    def _refuse_unscorable(self, dataset, test: pd.DataFrame) -> None:
        """A test question without an answer key (a test file's) cannot be scored."""
        unkeyed = test[[not a for a in test["raw_answers"]]]
        if len(unkeyed):
            first = unkeyed.iloc[0]
            raise DataError(f"{self.name}: {dataset.name} at {dataset.root}: question "
                            f"{first['question_id']} of split {first['split']} has no answers; "
                            f"the test splits {', '.join(self.test_splits)} need answer keys")

    def evaluate(self, data: ClassificationData, outputs, resampler: Resampler) -> Evaluation:
        evaluation = super().evaluate(data, outputs, resampler)
        scores = np.asarray(outputs.scores)
        predicted = [data.classes[i] for i in scores.argmax(axis=1)]
        fields = data.test.item_fields or {}
        raw = self.official_item_scores(data, scores, predicted, fields)
        groups = self.groups(fields)
        for name, (values, combine) in raw.items():
            point, replicates = resampled_score(values, groups, combine, resampler,
                                                self.clusters(data))
            evaluation.metrics[name] = point
            evaluation.replicates[name] = replicates
        evaluation.predictions["answer"] = np.array(predicted)
        evaluation.predictions.update(self.extra_predictions(data, scores, fields))
        return evaluation

    def extra_predictions(self, data: ClassificationData, scores: np.ndarray,
                          fields: dict[str, list]) -> dict[str, np.ndarray]:
        """Per-item arrays an official metric reads besides the answer, saved in the cell so
        that it can be rescored from its own files."""
        return {}

    def groups(self, fields: dict[str, list]) -> np.ndarray | None:
        """Each test item's group, for an official score combining group means; None."""
        return None

    def official_item_scores(self, data: ClassificationData, scores: np.ndarray,
                             predicted: list[str], fields: dict[str, list]
                             ) -> dict[str, tuple[np.ndarray, Callable | None]]:
        """metric -> (per-item score, how the group means (group -> means) combine; None:
        the plain mean over items)."""
        raise NotImplementedError


def resampled_score(values: np.ndarray, groups: np.ndarray | None,
                    combine: Callable | None, resampler: Resampler, clusters: np.ndarray
                    ) -> tuple[float | None, np.ndarray]:
    """A metric that is the mean of per-item ``values`` (or ``combine`` of the per-group
    means, given as group -> means; a group with no item on a resample is NaN there), on the
    test items and on each shared resample of their ``clusters`` (their images)."""
    values = np.asarray(values, np.float64)
    masks = ({"all": np.ones(len(values))} if combine is None or groups is None else
             {g: (groups == g).astype(np.float64) for g in sorted(set(groups.tolist()))})

    def score(weights: np.ndarray) -> np.ndarray:
        means = {}
        for group, mask in masks.items():
            count = weights @ mask
            with np.errstate(invalid="ignore", divide="ignore"):
                means[group] = np.where(count > 0, (weights @ (values * mask)) / count, np.nan)
        return combine(means) if combine is not None and groups is not None else means["all"]

    point = score(np.ones((1, len(values))))[0]
    parts = [score(weights) for weights in resampler.weights(clusters)]
    return (None if np.isnan(point) else float(point)), np.concatenate(parts)


class OKVQA(KnowledgeVQA):
    name = "okvqa"
    dataset = "okvqa"
    official = ("vqa_accuracy",)

    def official_item_scores(self, data, scores, predicted, fields):
        raw = [official_scores.vqa_accuracy(p, a)
               for p, a in zip(predicted, fields["raw_answers"], strict=True)]
        return {"vqa_accuracy": (np.array(raw), None)}


class AOKVQA(KnowledgeVQA):
    name = "aokvqa"
    dataset = "aokvqa"
    official = ("direct_answer", "multiple_choice")

    def official_item_scores(self, data, scores, predicted, fields):
        direct = [official_scores.aokvqa_direct_answer(p, a) for p, a in
                  zip(predicted, fields["raw_answers"], strict=True)]
        chosen = self.chosen_choices(data, scores, fields)
        mc = [official_scores.aokvqa_multiple_choice(int(c), int(t), list(choices))
              for c, t, choices in zip(chosen, fields["correct_choice"], fields["choices"],
                                       strict=True)]
        return {"direct_answer": (np.array(direct), None),
                "multiple_choice": (np.array(mc), None)}

    def extra_predictions(self, data, scores, fields):
        return {"choice": self.chosen_choices(data, scores, fields)}

    @staticmethod
    def chosen_choices(data, scores: np.ndarray, fields: dict[str, list]) -> np.ndarray:
        """Each question's multiple-choice answer: the index of the choice the head scores
        highest (a choice outside the answer vocabulary scores -inf; no choices: -1)."""
        index = {c: i for i, c in enumerate(data.classes)}
        chosen = []
        for row, choices in zip(scores, fields["choices"], strict=True):
            values = [row[index[c]] if c in index else -np.inf for c in choices]
            chosen.append(int(np.argmax(values)) if choices else -1)
        return np.array(chosen, np.int64)


class InfoSeek(KnowledgeVQA):
    name = "infoseek"
    dataset = "infoseek"
    test_splits = ("unseen_question", "unseen_entity")
    official = ("infoseek_score", "unseen_question_accuracy", "unseen_entity_accuracy")

    def groups(self, fields):
        return np.array(fields["split"])

    def official_item_scores(self, data, scores, predicted, fields):
        matched = np.array([
            official_scores.infoseek_match(p, a, r or None, t) for p, a, r, t in
            zip(predicted, data.test.answers, fields["answer_range"], fields["question_type"],
                strict=True)])
        return {
            "infoseek_score": (matched, _harmonic_mean_of_splits),
            "unseen_question_accuracy": (matched, _split_mean("unseen_question")),
            "unseen_entity_accuracy": (matched, _split_mean("unseen_entity")),
        }


def _harmonic_mean_of_splits(means: dict[str, np.ndarray]) -> np.ndarray:
    return official_scores.harmonic_mean(*(_of(means, split)
                                           for split in official_scores.INFOSEEK_SPLITS))


def _split_mean(split: str) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
    return lambda means: _of(means, split)


def _of(means: dict[str, np.ndarray], split: str) -> np.ndarray:
    # a split the test set does not hold has no accuracy: NaN, never a silent 0
    if split in means:
        return means[split]
    return np.full_like(next(iter(means.values())), np.nan)
