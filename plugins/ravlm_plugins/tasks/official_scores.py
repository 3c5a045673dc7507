"""Per-item scores of OK-VQA, A-OKVQA and InfoSeek, ported rule for rule from the official
evaluation code so that the harness's numbers compare with published ones.

* **VQA accuracy** (OK-VQA): ``PythonEvaluationTools/vqaEvaluation/vqaEval.py`` of
  GT-Vision-Lab/VQA, ``VQAEval.evaluate``. The default follows its 2016 master (commit
  458a8b2, the version LAVIS copies and the published OK-VQA numbers of its models use):
  the prediction is always normalised (newlines and tabs to spaces, strip,
  ``processPunctuation``, ``processDigitArticle``, see
  :mod:`ravlm_plugins.datasets.vqa_normalize`); the human answers are only
  punctuation-processed, and only when they disagree with each other. ``revision="2021"``
  follows the current master (commit a013f00, "Fixed processing answers bug"): every
  answer's newlines/tabs go and it is stripped; when the human answers disagree, both they
  and the prediction get both steps; when they all agree, nothing else is done to either.
  Each human answer scores min(1, #other answers equal to the prediction / 3) and the item
  scores their mean. The official code leaves an answer out by dict inequality, and the
  answer dicts carry distinct ``answer_id`` values, so exactly that one answer is left
  out: here, by position.
* **A-OKVQA**: ``evaluation/eval_predictions.py`` of allenai/aokvqa, ``eval_aokvqa``:
  direct answer min(1, #``pred == da`` / 3) (no lower-casing, no stripping, no
  leave-one-out); multiple choice ``pred == choices[correct_choice_idx]``. That script
  also scores direct answers only on questions whose ``difficult_direct_answer`` is
  false, and a question without a prediction as 0: both are the caller's to do.
* **InfoSeek**: ``infoseek_eval.py`` of edchengg/infoseek_eval (linked from the InfoSeek
  README): String and Time questions by exact match after its ``normalize_answer``, best
  over the aliases in ``answer_eval`` (Time has no year tolerance, whatever the
  ``evaluate_time`` docstring says); Numerical ones by ``process_numerical_answer`` and
  ``metric_numerical_range`` against the ``[low, high]`` range of ``answer_eval``; the
  final score the harmonic mean of the accuracies on ``unseen_question`` and
  ``unseen_entity``. The official script rounds each split's score to 0.01 of a percent
  before that mean and turns a 0 into 1e-12 inside it; here nothing is rounded and a 0
  gives exactly 0.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from ravlm_plugins.datasets.vqa_normalize import (
    normalize_answer,
    process_digit_article,
    process_punctuation,
)

VQA_EVAL_REVISIONS = ("2016", "2021")
INFOSEEK_SPLITS = ("unseen_question", "unseen_entity")
# the official scripts' counts: three matching annotators give full credit; a predicted
# range is right when it overlaps the answer range this much
ANNOTATORS_FOR_FULL_CREDIT = 3
RANGE_IOU_THRESHOLD = 0.5


# ---- OK-VQA (VQA accuracy) ----

def vqa_accuracy(prediction: str, answers: Sequence[str], *, revision: str = "2016") -> float:
    """VQA accuracy of one predicted answer against the human ``answers`` (ten in VQA and
    OK-VQA, repeats included; any number works)."""
    if not answers:
        raise ValueError("vqa_accuracy: the question has no human answers to score against")
    if revision == "2016":
        predicted = normalize_answer(prediction)
        humans = list(answers)
        if len(set(humans)) > 1:
            humans = [process_punctuation(a) for a in humans]
    elif revision == "2021":
        predicted = _flatten_whitespace(prediction)
        humans = [_flatten_whitespace(a) for a in answers]
        if len(set(humans)) > 1:
            humans = [process_digit_article(process_punctuation(a)) for a in humans]
            predicted = process_digit_article(process_punctuation(predicted))
    else:
        raise ValueError(f"vqa_accuracy: revision {revision!r} is not one of "
                         f"{', '.join(VQA_EVAL_REVISIONS)}")
    matches = [a == predicted for a in humans]
    total = sum(matches)
    # summed in the official order so that the float result is the same to the last bit
    per_answer = [min(1, (total - own) / ANNOTATORS_FOR_FULL_CREDIT) for own in matches]
    return float(sum(per_answer)) / len(per_answer)


def _flatten_whitespace(text: str) -> str:
    return text.replace("\n", " ").replace("\t", " ").strip()


# ---- A-OKVQA ----

def aokvqa_direct_answer(prediction: str, direct_answers: Sequence[str]) -> float:
    """min(1, #direct answers identical to the prediction / 3); no normalisation at all."""
    matched = sum(prediction == answer for answer in direct_answers)
    return min(1.0, matched / ANNOTATORS_FOR_FULL_CREDIT)


def aokvqa_multiple_choice(predicted_index: int, correct_choice: int,
                           choices: Sequence[str] | None = None) -> float:
    """1.0 when the predicted choice is the correct one, else 0.0 (a negative
    ``predicted_index``: no choice made). Given ``choices``, the choice texts are compared,
    as the official script does, so a duplicated choice text counts as correct too."""
    if correct_choice < 0:
        raise ValueError(f"aokvqa_multiple_choice: correct choice {correct_choice} is not an "
                         "index; questions without an answer key cannot be scored")
    if predicted_index < 0:
        return 0.0
    if choices is None:
        return float(predicted_index == correct_choice)
    if correct_choice >= len(choices) or predicted_index >= len(choices):
        raise ValueError(f"aokvqa_multiple_choice: index {max(correct_choice, predicted_index)}"
                         f" is outside the {len(choices)} choices")
    return float(choices[predicted_index] == choices[correct_choice])


# ---- InfoSeek ----

_ARTICLE = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)
# the official number pattern: optional sign, optional leading point, digits with optional
# thousands commas, an optional fraction and exponent
_NUMBER = re.compile(r"[-+]?[.]?[\d]+(?:,\d\d\d)*[\.]?\d*(?:[eE][-+]?\d+)?")


def infoseek_normalize(text: str) -> str:
    """Lower case, drop ASCII punctuation, drop articles, collapse white space (in that
    order, as the official ``normalize_answer``)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLE.sub(" ", text).split())


def infoseek_number(prediction: str) -> float | tuple[float, float]:
    """The official ``process_numerical_answer``: the first two numbers of the text as a
    range ``(low, high)``; if the first is the larger, the first alone; one number: it;
    none: the range ``(0.0, 0.0)``. ``"9-10"`` reads as the range 9 to 10, not 9 and -10."""
    found = [n.replace(",", "").strip(".") for n in _NUMBER.findall(_spaced_ranges(prediction))]
    # "1.2.3" keeps what precedes its second point, as the official code does
    numbers = [float(n.split(".")[0] if n.count(".") > 1 else n) for n in found][:2]
    if len(numbers) == 2:
        first, second = numbers
        return (first, second) if first <= second else first
    if len(numbers) == 1:
        return numbers[0]
    return (0.0, 0.0)


def _spaced_ranges(text: str) -> str:
    # a hyphen right after a digit is a range dash, not a minus sign
    return "".join(" - " if ch == "-" and i >= 1 and text[i - 1].isdigit() else ch
                   for i, ch in enumerate(text))


def range_iou(first: Sequence[float], second: Sequence[float]) -> float:
    """Intersection over union of two closed ranges, as the official code computes it
    (each length padded by 1e-12, so that two points give 0 rather than 0 / 0)."""
    low_1, high_1 = min(first), max(first)
    low_2, high_2 = min(second), max(second)
    overlap = max(0.0, min(high_1, high_2) - max(low_1, low_2))
    union = (high_1 - low_1 + 1e-12) + (high_2 - low_2 + 1e-12) - overlap
    return overlap / union if union != 0 else 0.0


def infoseek_numeric_match(prediction: str, answer_range: Sequence[float]) -> float:
    """The official ``metric_numerical_range``: a number scores inside ``[low, high]``; a
    range scores when both its ends are inside or its IoU with the answer range is >= 0.5."""
    low, high = answer_range
    value = infoseek_number(prediction)
    if isinstance(value, float):
        return float(low <= value <= high)
    if low <= value[0] <= high and low <= value[1] <= high:
        return 1.0
    return float(range_iou(value, (low, high)) >= RANGE_IOU_THRESHOLD - 1e-12)


def infoseek_match(prediction: str, answers: Sequence[str],
                   answer_range: Sequence[float] | None, question_type: str) -> float:
    """1.0 when an InfoSeek prediction is right, else 0.0. ``question_type`` is the qtype
    file's ``String``, ``Numerical`` or ``Time`` (any case; anything else scores as a
    string). Numerical questions use ``answer_range`` only; the others ``answers``."""
    if question_type.lower() == "numerical":
        if answer_range is None or len(answer_range) != 2:
            raise ValueError(f"infoseek_match: a Numerical question needs answer_range "
                             f"[low, high], got {answer_range!r}")
        return infoseek_numeric_match(prediction, answer_range)
    if not answers:
        raise ValueError(f"infoseek_match: a {question_type} question has no answers to "
                         "score against")
    predicted = infoseek_normalize(prediction)
    return float(any(predicted == infoseek_normalize(a) for a in answers))


def harmonic_mean(a: npt.ArrayLike, b: npt.ArrayLike) -> float | npt.NDArray[np.float64]:
    """2ab / (a + b), elementwise over arrays; 0 where either is 0, NaN where either is NaN
    (a split with no items). Scalars in, a float out."""
    left = np.asarray(a, dtype=np.float64)
    right = np.asarray(b, dtype=np.float64)
    if np.any(left < 0) or np.any(right < 0):
        raise ValueError("harmonic_mean: accuracies cannot be negative")
    total = left + right
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(total > 0, 2 * left * right / total, 0.0)
    mean = np.where(np.isnan(total), np.nan, mean)
    return float(mean) if mean.ndim == 0 else mean


def infoseek_score(split_accuracies: Mapping[str, float]) -> float:
    """The InfoSeek final score: the harmonic mean of the ``unseen_question`` and
    ``unseen_entity`` accuracies (fractions in, a fraction out)."""
    missing = [s for s in INFOSEEK_SPLITS if s not in split_accuracies]
    if missing:
        raise ValueError(f"infoseek_score: no accuracy for {', '.join(missing)} (got "
                         f"{', '.join(map(str, split_accuracies)) or 'none'})")
    return float(harmonic_mean(*(split_accuracies[s] for s in INFOSEEK_SPLITS)))
