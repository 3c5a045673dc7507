import pytest

from ravlm_plugins.datasets.vqa_normalize import normalize_answer


@pytest.mark.parametrize("raw, expected", [
    ("Green.", "green"),
    ("Two.", "2"),
    ("On the table.", "on table"),
    ("  A red circle!\n", "red circle"),
    ("none", "0"),
    ("Ten", "10"),
    ("dont", "don't"),
    ("Its a dog", "its dog"),
    ("black-and-white", "black and white"),
    ("yes, it is", "yes it is"),
    ("10,000", "10000"),
    ("2.5 meters", "2.5 meters"),
    ("The man's hat.", "man's hat"),
    ("What? (maybe)", "what maybe"),
    ("\tAn apple\t", "apple"),
])
def test_official_vqa_normalisation(raw, expected):
    assert normalize_answer(raw) == expected


def test_normalisation_is_idempotent():
    for raw in ("Green.", "On the table.", "Three dogs!", "black-and-white"):
        once = normalize_answer(raw)
        assert normalize_answer(once) == once
