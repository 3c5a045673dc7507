"""The official OK-VQA / A-OKVQA / InfoSeek per-item scores. Every expected value is worked
out by hand in the comment beside it, from the rules of the official scripts, never by
calling the code under test."""

import math

import numpy as np
import pytest

from ravlm_plugins.tasks.official_scores import (
    aokvqa_direct_answer,
    aokvqa_multiple_choice,
    harmonic_mean,
    infoseek_match,
    infoseek_normalize,
    infoseek_number,
    infoseek_score,
    range_iou,
    vqa_accuracy,
)


def ten(matching: int, answer: str = "dog", other: str = "cat") -> list[str]:
    return [answer] * matching + [other] * (10 - matching)


# ---- VQA accuracy: leave-one-out and the three-annotator cap ----

@pytest.mark.parametrize("matching, expected", [
    # each of the 10 answers scores min(1, matches among the other 9 / 3):
    (0, 0.0),  # 10 x 0
    (1, 0.3),  # the match: 0 others -> 0; 9 non-matches: 1/3 each; 9/3 = 3; 3/10
    (2, 0.6),  # 2 matches: 1/3 each = 2/3; 8 non-matches: 2/3 each = 16/3; 18/3 = 6; 6/10
    (3, 0.9),  # 3 matches: 2/3 each = 2; 7 non-matches: 3/3 = 1 each = 7; 9/10
    (4, 1.0),  # 4 matches: 3/3 = 1 each; 6 non-matches: 4/3 capped at 1; 10/10
    (6, 1.0),  # 6 x min(1, 5/3) + 4 x min(1, 6/3) = 10; 10/10: the cap
    (10, 1.0),  # 10 x min(1, 9/3) = 10; 10/10
])
def test_vqa_leave_one_out_over_ten_answers(matching, expected):
    assert vqa_accuracy("dog", ten(matching)) == pytest.approx(expected)


def test_vqa_fewer_than_ten_answers():
    # five answers, two match: 2 x 1/3 + 3 x 2/3 = 2/3 + 2 = 8/3; divided by 5 = 8/15
    assert vqa_accuracy("dog", ["dog", "dog", "cat", "cow", "cat"]) == pytest.approx(8 / 15)
    # three answers, all match: 3 x min(1, 2/3) = 2; 2/3
    assert vqa_accuracy("dog", ["dog"] * 3) == pytest.approx(2 / 3)
    # one answer: leaving it out leaves nobody to agree, so even the exact answer gets 0
    assert vqa_accuracy("dog", ["dog"]) == 0.0


def test_vqa_without_answers_is_an_error():
    with pytest.raises(ValueError, match="no human answers"):
        vqa_accuracy("dog", [])


# ---- VQA accuracy: the prediction's normalisation (ten agreeing answers: 4+ matches -> 1) ----

@pytest.mark.parametrize("prediction, answer", [
    ("Yes!", "yes"),  # '!' touches no space: becomes a space, then split away; lower case
    ("YES", "yes"),  # case
    ("yes, it is", "yes it is"),  # ',' next to a space is deleted
    ("5.", "5"),  # a period not followed by a digit goes
    ("2.5", "2.5"),  # a period followed by a digit stays
    ("10,000", "10000"),  # digit,digit: every mark is deleted, not spaced
    ("Two", "2"),  # number words zero..ten become digits
    ("none", "0"),  # and "none" is 0
    ("The dog", "dog"),  # articles a / an / the are dropped
    ("an apple", "apple"),
    ("dont", "don't"),  # the contractions table
    ("  dog\n", "dog"),  # newlines, tabs and surrounding spaces
])
def test_vqa_prediction_normalisation(prediction, answer):
    assert vqa_accuracy(prediction, [answer] * 10) == 1.0


@pytest.mark.parametrize("prediction, answer", [
    ("2.5", "25"),  # the decimal point between digits is kept
    ("dogs", "dog"),  # no stemming
    ("red dog", "dog"),  # no partial credit
])
def test_vqa_prediction_normalisation_stops_there(prediction, answer):
    assert vqa_accuracy(prediction, [answer] * 10) == 0.0


def test_vqa_human_answers_processed_only_when_they_disagree():
    # they agree: left as they are, so the prediction (normalised to "black and white")
    # never equals the unprocessed "black-and-white": 0
    assert vqa_accuracy("black-and-white", ["black-and-white"] * 10) == 0.0
    # they disagree: punctuation-processed, "black-and-white" -> "black and white",
    # 4 matches -> 1.0 (see the leave-one-out table)
    answers = ["black-and-white"] * 4 + ["white"] * 6
    assert vqa_accuracy("black-and-white", answers) == 1.0


def test_vqa_human_answers_get_punctuation_only():
    # they disagree, but only punctuation is processed: "Two" stays "Two" while the
    # prediction "Two" becomes "2", and "three" never becomes "3": no match, 0
    answers = ["Two"] * 3 + ["three"] * 7
    assert vqa_accuracy("Two", answers) == 0.0
    assert vqa_accuracy("3", answers) == 0.0


def test_vqa_2021_revision():
    # all agree: nothing but stripping on either side, so the raw text matches: 10 x 1 -> 1.0
    assert vqa_accuracy("black-and-white", ["black-and-white"] * 10, revision="2021") == 1.0
    # ...and the prediction is not lower-cased: 0
    assert vqa_accuracy("Dog", ["dog"] * 10, revision="2021") == 0.0
    # disagreeing: both sides fully normalised, "Two" -> "2" x 3 and "three" -> "3" x 7;
    # prediction "2" matches 3: 3 x 2/3 + 7 x 1 = 9; 9/10
    answers = ["Two"] * 3 + ["three"] * 7
    assert vqa_accuracy("2", answers, revision="2021") == pytest.approx(0.9)
    with pytest.raises(ValueError, match="revision '2020'"):
        vqa_accuracy("2", answers, revision="2020")


# ---- A-OKVQA ----

@pytest.mark.parametrize("matching, expected", [
    (0, 0.0),
    (1, 1 / 3),  # 1/3 with no leave-one-out (VQA accuracy would give 0.3)
    (2, 2 / 3),  # VQA accuracy: 0.6
    (3, 1.0),  # VQA accuracy: 0.9
    (5, 1.0),  # 5/3 capped at 1
])
def test_aokvqa_direct_answer_counts_matches_over_three(matching, expected):
    assert aokvqa_direct_answer("dog", ten(matching)) == pytest.approx(expected)


@pytest.mark.parametrize("prediction", ["Dog", "dog ", "the dog", "dog."])
def test_aokvqa_direct_answer_is_not_normalised(prediction):
    # exact string equality: each differs from "dog" by case, space, article or period, 0
    assert aokvqa_direct_answer(prediction, ["dog"] * 10) == 0.0
    # where VQA accuracy normalises the prediction to "dog": 10 agreeing -> 1.0
    assert vqa_accuracy(prediction, ["dog"] * 10) == 1.0


def test_aokvqa_direct_answer_without_answers_scores_zero():
    # the official sum over no answers is 0 matches: min(1, 0/3) = 0
    assert aokvqa_direct_answer("dog", []) == 0.0


def test_aokvqa_multiple_choice():
    assert aokvqa_multiple_choice(2, 2) == 1.0
    assert aokvqa_multiple_choice(1, 2) == 0.0
    assert aokvqa_multiple_choice(-1, 0) == 0.0  # no choice made
    # the official script compares texts: choice 2 repeats choice 0's text, so it counts
    choices = ["red", "blue", "red", "green"]
    assert aokvqa_multiple_choice(2, 0, choices) == 1.0
    assert aokvqa_multiple_choice(1, 0, choices) == 0.0
    assert aokvqa_multiple_choice(-1, 3, choices) == 0.0  # -1 is no choice, not "green"
    with pytest.raises(ValueError, match="correct choice -1"):
        aokvqa_multiple_choice(-1, -1)
    with pytest.raises(ValueError, match="outside the 4 choices"):
        aokvqa_multiple_choice(4, 0, choices)


# ---- InfoSeek: strings and times ----

@pytest.mark.parametrize("raw, expected", [
    ("The Eiffel Tower!", "eiffel tower"),  # lower, '!' gone, article gone, spaces collapsed
    ("U.S.A.", "usa"),  # punctuation deleted, not spaced
    ("Eiffel-Tower", "eiffeltower"),  # so a hyphen joins the words
    ("  an   apple ", "apple"),
    ("Theatre", "theatre"),  # "the" only as a word
    ("Café", "café"),  # only ASCII punctuation goes; accents stay
])
def test_infoseek_normalisation(raw, expected):
    assert infoseek_normalize(raw) == expected


def test_infoseek_strings_match_any_alias_after_normalisation():
    aliases = ["United States", "U.S.A."]
    assert infoseek_match("USA", aliases, None, "String") == 1.0  # "usa" == "usa"
    assert infoseek_match("the united states.", aliases, None, "String") == 1.0
    assert infoseek_match("America", aliases, None, "String") == 0.0
    assert infoseek_match("Eiffel-Tower", ["Eiffel Tower"], None, "String") == 0.0
    # an unknown question type scores as a string, as the official code does
    assert infoseek_match("USA", aliases, None, "entity") == 1.0
    with pytest.raises(ValueError, match="no answers"):
        infoseek_match("USA", [], None, "String")


def test_infoseek_time_is_exact_match_without_year_tolerance():
    assert infoseek_match("1990", ["1990"], None, "Time") == 1.0
    assert infoseek_match("1990.", ["1990"], None, "time") == 1.0  # '.' removed
    assert infoseek_match("1991", ["1990"], None, "TIME") == 0.0  # no +-1 year
    assert infoseek_match("March 1990", ["1990"], None, "Time") == 0.0  # no year-only credit


# ---- InfoSeek: numbers ----

@pytest.mark.parametrize("text, expected", [
    ("95", 95.0),
    ("about 1,000 km", 1000.0),  # thousands commas dropped
    ("9-10", (9.0, 10.0)),  # a hyphen after a digit is a range dash
    ("-5", -5.0),  # at the start it is a minus sign
    ("108-95", 108.0),  # the first is larger: the first alone
    ("between 100 and 120 or 130", (100.0, 120.0)),  # the first two numbers
    ("5.", 5.0),  # trailing point stripped
    ("1e3", 1000.0),
    ("unknown", (0.0, 0.0)),  # no number: the range 0 to 0
])
def test_infoseek_number_parsing(text, expected):
    assert infoseek_number(text) == expected


@pytest.mark.parametrize("prediction, expected", [
    # the answer 100 with its +-10% range [90, 110]
    ("95", 1.0),  # inside
    ("110", 1.0),  # the bounds are inside
    ("90", 1.0),
    ("89.9", 0.0),  # just outside
    ("111", 0.0),
    ("100 metres", 1.0),
    ("92-108", 1.0),  # a range with both ends inside
    # overlap 110 - 95 = 15; union 25 + 20 - 15 = 30; IoU 15/30 = 0.5 >= 0.5
    ("95-120", 1.0),
    # overlap 110 - 100 = 10; union 40 + 20 - 10 = 50; IoU 0.2
    ("100-140", 0.0),
    ("120-100", 0.0),  # first larger: 120 alone, outside
    ("108-95", 1.0),  # first larger: 108 alone, inside
    ("unknown", 0.0),  # the range [0, 0]: outside and no overlap
])
def test_infoseek_numeric_range(prediction, expected):
    assert infoseek_match(prediction, ["100"], [90.0, 110.0], "Numerical") == expected


def test_infoseek_numeric_edge_cases():
    # no number reads as [0, 0]: inside an answer range around zero
    assert infoseek_match("unknown", [], [-0.1, 0.1], "Numerical") == 1.0
    assert infoseek_match("-5", [], [-6.0, -4.0], "Numerical") == 1.0
    # [1.5, 2.5] against [1, 2]: overlap 0.5; union 1 + 1 - 0.5 = 1.5; IoU 1/3
    assert infoseek_match("1.5 - 2.5", [], [1.0, 2.0], "Numerical") == 0.0
    # numbers are judged by the range alone, never by the answer strings
    assert infoseek_match("100", ["100"], [1.0, 2.0], "Numerical") == 0.0
    with pytest.raises(ValueError, match="needs answer_range"):
        infoseek_match("100", ["100"], None, "Numerical")


def test_range_iou():
    # [0, 10] and [5, 15]: overlap 5, union 10 + 10 - 5 = 15: 1/3
    assert range_iou([0.0, 10.0], [5.0, 15.0]) == pytest.approx(1 / 3)
    assert range_iou([15.0, 5.0], [10.0, 0.0]) == pytest.approx(1 / 3)  # ends in any order
    assert range_iou([0.0, 1.0], [2.0, 3.0]) == 0.0  # disjoint
    assert range_iou([0.0, 4.0], [0.0, 4.0]) == pytest.approx(1.0)  # 4 / (4 + 4 - 4)
    assert range_iou([3.0, 3.0], [3.0, 3.0]) == 0.0  # two points: 0 / 2e-12


# ---- the harmonic mean and the InfoSeek score ----

def test_harmonic_mean_of_scalars():
    assert harmonic_mean(0.3, 0.5) == pytest.approx(0.375)  # 2 x 0.15 / 0.8
    assert harmonic_mean(0.5, 0.5) == pytest.approx(0.5)
    assert harmonic_mean(0.0, 0.7) == 0.0  # one split at zero sinks the score
    assert harmonic_mean(0.0, 0.0) == 0.0  # not 0/0
    assert isinstance(harmonic_mean(0.3, 0.5), float)


def test_harmonic_mean_is_elementwise_over_arrays():
    left = np.array([0.3, 0.0, 1.0, np.nan])
    right = np.array([0.5, 0.7, 0.5, 0.0])
    # 0.375 (above); 0; 2 x 0.5 / 1.5 = 2/3; a split without items: NaN, even beside 0
    out = harmonic_mean(left, right)
    assert out[:3] == pytest.approx([0.375, 0.0, 2 / 3])
    assert math.isnan(out[3])
    with pytest.raises(ValueError, match="negative"):
        harmonic_mean(-0.1, 0.5)


def test_infoseek_score():
    # 2 x 0.4 x 0.2 / (0.4 + 0.2) = 0.16 / 0.6 = 4/15
    score = infoseek_score({"unseen_question": 0.4, "unseen_entity": 0.2})
    assert score == pytest.approx(4 / 15)
    assert infoseek_score({"unseen_question": 0.0, "unseen_entity": 0.9}) == 0.0
    with pytest.raises(ValueError, match="no accuracy for unseen_entity"):
        infoseek_score({"unseen_question": 0.4})
