"""``evidence-lda``, the image retrieval key learned from gold evidence: it passes the joint
embedding kit, finds unseen entities that raw cosine search misses, never returns an item
without an image, and is refused where there is no evidence to learn from."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
from clitools import run_cli

from ravlm_bench.api import ConfigError, check_joint_embedding


def lda(registry, **params):
    return registry.create("joint-embeddings", "evidence-lda", dim=48, **params)


def test_it_passes_the_joint_embedding_kit(registry):
    check_joint_embedding(lambda dim: registry.create("joint-embeddings", "evidence-lda",
                                                      dim=dim, width=8))


def entity_photos(rng, identities: np.ndarray, per_entity: int, nuisance: np.ndarray):
    """Photos: an entity's identity plus a large pose/background component shared by no
    entity in particular, plus noise."""
    entity = np.repeat(np.arange(len(identities)), per_entity)
    pose = rng.normal(size=(len(entity), nuisance.shape[0])) * 3.0
    photos = identities[entity] + pose @ nuisance + 0.1 * rng.normal(size=(len(entity), 32))
    return photos.astype(np.float32), entity


def recall_at_1(queries: np.ndarray, items: np.ndarray, truth: np.ndarray) -> float:
    q = queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
    v = items / np.maximum(np.linalg.norm(items, axis=1, keepdims=True), 1e-12)
    return float(((q @ v.T).argmax(axis=1) == truth).mean())


def test_it_finds_unseen_entities_that_raw_features_miss(registry):
    rng = np.random.default_rng(0)
    identities = rng.normal(size=(80, 32))
    nuisance = rng.normal(size=(8, 32))
    seen, unseen = np.arange(60), np.arange(60, 80)
    photos, entity = entity_photos(rng, identities[seen], 4, nuisance)
    key = lda(registry, width=24, shrinkage=0.1)
    key.fit_evidence(photos, np.zeros((len(photos), 16), np.float32), identities.astype(
        np.float32), np.zeros((80, 16), np.float32), entity, seed=0)
    test_photos, test_entity = entity_photos(rng, identities[unseen], 1, nuisance)
    truth = unseen[test_entity]
    raw = recall_at_1(test_photos, identities, truth)
    learned = recall_at_1(key.embed_images(test_photos), key.embed_images(identities), truth)
    assert learned >= 0.9 and learned > raw + 0.3, (raw, learned)


def test_an_item_without_an_image_embeds_to_zero_and_texts_are_ignored(registry):
    rng = np.random.default_rng(1)
    items = rng.normal(size=(10, 32)).astype(np.float32)
    queries = np.repeat(items, 3, axis=0) + 0.1 * rng.normal(size=(30, 32)).astype(np.float32)
    key = lda(registry)
    report = key.fit_evidence(queries, np.zeros((30, 16), np.float32), items,
                              np.zeros((10, 16), np.float32), np.repeat(np.arange(10), 3),
                              seed=0)
    assert report.extra["width"] == 9  # at most classes - 1 directions
    out = key.embed_images(np.vstack([np.zeros((1, 32), np.float32), items[:2]]))
    assert out.dtype == np.float32 and not out[0].any() and out[1:].any()
    assert not key.embed_texts(rng.normal(size=(4, 16))).any()
    with pytest.raises(ConfigError, match="learns from gold evidence"):
        key.fit_pairs(items, items, np.arange(10), seed=0)


SUITE = """
name = "evidence"
seeds = [0]
[data.infoseek]
root = "{root}/infoseek"
[data.okvqa]
root = "{root}/okvqa"
[data.passages]
root = "{root}/passages"
[defaults]
image_encoder = {{ name = "resnet18", image_size = 32, seed = 0 }}
text_encoder = {{ name = "minilm-l6", max_length = 16 }}
[systems.reader-learned]
retriever = "exact"
retrieval_key = {{ name = "evidence-lda", width = 16 }}
knowledge = {{ dataset = "passages", split = "corpus" }}
fusion_head = {{ name = "reader", k = 3 }}
[tasks.{task}]
systems = ["reader-learned"]
"""


def test_a_system_learns_its_key_from_the_questions_gold_entities(tmp_path, demo_world):
    suite = tmp_path / "evidence.toml"
    suite.write_text(textwrap.dedent(SUITE.format(root=demo_world, task="infoseek")))
    result = run_cli("run", str(suite), "--out", str(tmp_path / "run"), "-q",
                     cache=tmp_path / "cache")
    assert result.returncode == 0, result.stderr
    cell = json.loads((tmp_path / "run/cells/infoseek/reader-learned/seed-0.json").read_text())
    assert cell["status"] == "ok", cell.get("error")
    key = cell["provenance"]["components"]["retrieval_key"]
    assert "evidence-lda" in json.dumps(key)
    assert cell["retrieval"]["evidence_recall_at_k"] is not None


def test_a_task_that_names_no_evidence_fails_its_cell_with_the_reason(tmp_path, demo_world):
    suite = tmp_path / "evidence.toml"
    suite.write_text(textwrap.dedent(SUITE.format(root=demo_world, task="okvqa")))
    result = run_cli("run", str(suite), "--out", str(tmp_path / "run"), "-q",
                     cache=tmp_path / "cache")
    assert result.returncode != 0
    cell = json.loads((tmp_path / "run/cells/okvqa/reader-learned/seed-0.json").read_text())
    assert cell["status"] == "failed"
    assert "evidence-lda' has nothing to learn from" in cell["error"]["message"]


def test_a_system_without_a_knowledge_base_is_refused_before_any_work(tmp_path, demo_world):
    suite = tmp_path / "evidence.toml"
    text = textwrap.dedent(SUITE.format(root=demo_world, task="infoseek"))
    suite.write_text(text.replace('knowledge = { dataset = "passages", split = "corpus" }\n',
                                  ""))
    result = run_cli("run", str(suite), "--out", str(tmp_path / "run"), "-q",
                     cache=tmp_path / "cache")
    assert result.returncode == 2
    assert "[systems.reader-learned] retrieval_key: 'evidence-lda' learns from gold evidence" \
        in result.stderr
    assert not (tmp_path / "run" / "cells").exists()
