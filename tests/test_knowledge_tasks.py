"""The knowledge tasks end to end through the CLI: okvqa, aokvqa and infoseek over the demo
world's passages, with the reader and the no-retrieval baseline; each official metric in a
cell recomputed by hand from the cell's saved predictions and the dataset's own files."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
from clitools import run_cli

from ravlm_plugins.tasks.official_scores import (
    aokvqa_direct_answer,
    harmonic_mean,
    infoseek_match,
    vqa_accuracy,
)

SUITE = """
name = "knowledge"
seeds = [0]
baseline = "concat"
[data.okvqa]
root = "{root}/okvqa"
[data.aokvqa]
root = "{root}/aokvqa"
[data.infoseek]
root = "{root}/infoseek"
[data.passages]
root = "{root}/passages"
[defaults]
image_encoder = {{ name = "resnet18", image_size = 32, seed = 0 }}
text_encoder = {{ name = "minilm-l6", max_length = 16 }}
[systems.concat]
fusion_head = {{ name = "concat", epochs = 2 }}
[systems.reader-text]
retriever = "exact"
retrieval_key = "text"
knowledge = {{ dataset = "passages", split = "corpus" }}
fusion_head = {{ name = "reader", k = 3 }}
[systems.reader-oracle]
retriever = "oracle"
retrieval_key = "image"
knowledge = {{ dataset = "passages", split = "corpus" }}
fusion_head = {{ name = "reader", k = 3 }}
[systems.reader-random]
retriever = "random"
retrieval_key = "image"
knowledge = {{ dataset = "passages", split = "corpus" }}
fusion_head = {{ name = "reader", k = 3 }}
[tasks.okvqa]
systems = ["concat", "reader-text"]
[tasks.aokvqa]
systems = ["concat", "reader-text"]
[tasks.infoseek]
systems = ["concat", "reader-oracle", "reader-random"]
"""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, demo_world):
    root = tmp_path_factory.mktemp("knowledge-run")
    suite = root / "knowledge.toml"
    suite.write_text(textwrap.dedent(SUITE.format(root=demo_world)))
    result = run_cli("run", str(suite), "--out", str(root / "run"), "-q", cache=root / "cache")
    assert result.returncode == 0, result.stderr
    return root / "run"


def cell(run_dir, task: str, system: str) -> tuple[dict, dict]:
    path = run_dir / "cells" / task / system / "seed-0"
    record = json.loads(path.with_suffix(".json").read_text())
    assert record["status"] == "ok", record.get("error")
    with np.load(path.with_suffix(".npz")) as arrays:
        return record, {name: arrays[name] for name in arrays.files}


def test_okvqa_reports_vqa_accuracy_as_the_official_code_scores_the_predictions(
        run_dir, demo_world):
    record, arrays = cell(run_dir, "okvqa", "reader-text")
    annotations = json.loads(
        (demo_world / "okvqa/mscoco_val2014_annotations.json").read_text())["annotations"]
    answers = {str(a["question_id"]): [x["answer"] for x in a["answers"]] for a in annotations}
    ordered = [answers[q] for q in sorted(answers)]  # test items are in question-id order
    expected = np.mean([vqa_accuracy(str(p), a)
                        for p, a in zip(arrays["answer"], ordered, strict=True)])
    assert record["metrics"]["vqa_accuracy"] == pytest.approx(expected, abs=1e-12)
    assert record["task_declaration"]["metrics"][0]["name"] == "vqa_accuracy"
    assert "weighted_f1" in record["metrics"]  # the seed's metrics beside the official one
    low, high = record["metrics"]["ci95"]["vqa_accuracy"]
    assert low <= expected <= high


def test_aokvqa_scores_direct_answers_without_normalisation_and_choices_by_index(
        run_dir, demo_world):
    record, arrays = cell(run_dir, "aokvqa", "concat")
    questions = json.loads((demo_world / "aokvqa/aokvqa_v1p0_val.json").read_text())
    questions.sort(key=lambda q: q["question_id"])
    direct = np.mean([aokvqa_direct_answer(str(p), q["direct_answers"])
                      for p, q in zip(arrays["answer"], questions, strict=True)])
    assert record["metrics"]["direct_answer"] == pytest.approx(direct, abs=1e-12)
    # multiple choice: the saved choice against correct_choice_idx, compared as texts
    choice = np.mean([q["choices"][c] == q["choices"][q["correct_choice_idx"]]
                      for c, q in zip(arrays["choice"], questions, strict=True)])
    assert record["metrics"]["multiple_choice"] == pytest.approx(choice, abs=1e-12)


def test_infoseek_is_the_harmonic_mean_of_its_two_unseen_splits(run_dir, demo_world):
    record, arrays = cell(run_dir, "infoseek", "reader-oracle")
    rows = [json.loads(line) for line in
            (demo_world / "infoseek/infoseek_val.jsonl").read_text().splitlines()]
    rows.sort(key=lambda r: r["data_id"])
    matched = {"unseen_question": [], "unseen_entity": []}
    for predicted, row in zip(arrays["answer"], rows, strict=True):
        numeric = isinstance(row["answer_eval"][0], dict)
        answers = [] if numeric else row["answer_eval"]
        answer_range = row["answer_eval"][0]["range"] if numeric else None
        split = row["data_split"].removeprefix("val_")
        matched[split].append(infoseek_match(str(predicted), answers, answer_range,
                                             "Numerical" if numeric else "String"))
    question, entity = (float(np.mean(matched[s])) for s in ("unseen_question", "unseen_entity"))
    metrics = record["metrics"]
    assert metrics["unseen_question_accuracy"] == pytest.approx(question, abs=1e-12)
    assert metrics["unseen_entity_accuracy"] == pytest.approx(entity, abs=1e-12)
    assert metrics["infoseek_score"] == pytest.approx(harmonic_mean(question, entity), abs=1e-12)


def test_retrieval_cells_report_pseudo_relevance_and_gold_evidence_recall(run_dir):
    oracle, _ = cell(run_dir, "infoseek", "reader-oracle")
    random, _ = cell(run_dir, "infoseek", "reader-random")
    # the oracle returns the gold entity's passages, which state the answer
    assert oracle["retrieval"]["evidence_recall_at_k"] == 1.0
    assert oracle["retrieval"]["pseudo_recall_at_k"] == 1.0
    assert random["retrieval"]["evidence_recall_at_k"] < 0.5
    assert random["retrieval"]["pseudo_recall_at_k"] < oracle["retrieval"]["pseudo_recall_at_k"]
    assert oracle["metrics"]["accuracy"] > random["metrics"]["accuracy"]
    text, _ = cell(run_dir, "okvqa", "reader-text")
    assert text["retrieval"]["evidence_recall_at_k"] is None  # OK-VQA names no evidence
    assert 0.0 <= text["retrieval"]["pseudo_recall_at_k"] <= 1.0


def test_the_leaderboard_shows_the_knowledge_diagnostics(run_dir, tmp_path):
    result = run_cli("leaderboard", str(run_dir), "--format", "markdown", "--out",
                     str(tmp_path / "board"))
    assert result.returncode == 0, result.stderr
    page = (tmp_path / "board").rglob("*.md")
    text = "\n".join(p.read_text() for p in page)
    infoseek = text[text.index("## infoseek"):]
    for column in ("infoseek_score", "pseudo_recall_at_k", "evidence_recall_at_k"):
        assert column in infoseek
    # a diagnostic no system of a task has is left out: OK-VQA names no gold evidence
    okvqa = text[text.index("## okvqa"):]
    assert "pseudo_recall_at_k" in okvqa and "evidence_recall_at_k" not in okvqa


def test_retrieving_systems_report_their_retrieval_dependence_with_a_paired_interval(run_dir):
    oracle, oracle_arrays = cell(run_dir, "infoseek", "reader-oracle")
    random, _ = cell(run_dir, "infoseek", "reader-random")
    baseline, baseline_arrays = cell(run_dir, "infoseek", "concat")
    curve = {name.removeprefix("dependence_"): value
             for name, value in oracle["retrieval"].items() if name.startswith("dependence_")}
    assert set(curve) == {"p0", "p0.25", "p0.5", "p0.75", "p1", "none"}
    assert curve["p0"] == oracle["metrics"]["infoseek_score"]
    dependence = oracle["metrics"]["retrieval_dependence"]
    assert dependence == pytest.approx(curve["p0"] - curve["p1"], abs=1e-12)
    # the oracle's answers come from its passages: corrupting them costs, paired interval > 0
    low, high = oracle["metrics"]["ci95"]["retrieval_dependence"]
    assert 0 < low <= dependence <= high
    assert curve["p0"] > curve["p0.5"] > curve["p1"]
    np.testing.assert_allclose(oracle_arrays["replicate.retrieval_dependence"].mean(),
                               dependence, atol=0.05)
    # random retrieval has nothing to lose; a system that retrieves nothing reports nothing
    assert abs(random["metrics"]["retrieval_dependence"]) < 0.05
    # a system that retrieves nothing is measured too, and its predictions cannot move
    assert baseline["metrics"]["retrieval_dependence"] == 0.0
    assert not baseline_arrays["replicate.retrieval_dependence"].any()
    declared = [m["name"] for m in oracle["task_declaration"]["metrics"]]
    assert declared[-1] == "retrieval_dependence"


def test_knowledge_cells_report_answers_against_the_evidence_retrieved(run_dir):
    oracle, arrays = cell(run_dir, "infoseek", "reader-oracle")
    shares = {k: v for k, v in oracle["retrieval"].items() if k.endswith("_evidence")}
    assert sum(shares.values()) == pytest.approx(1.0)
    # the oracle's passages always hold the answer: nothing is answered without evidence
    assert shares["right_without_evidence"] == shares["wrong_without_evidence"] == 0.0
    assert shares["right_with_evidence"] > 0
