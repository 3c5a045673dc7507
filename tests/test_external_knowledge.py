"""An external knowledge base: another dataset's image-caption pairs, with the leakage guard
across datasets on by default, and refused to heads that need labels it does not have."""

from __future__ import annotations

import json
import textwrap

import numpy as np
from clitools import run_cli

from ravlm_bench.stages.external_knowledge import KnowledgeSpec, external_items

SUITE = """
name = "ext"
seeds = [0]
[data.coco]
root = "{root}/coco"
[data.visual_genome]
root = "{root}/visual_genome"
[defaults]
image_encoder = {{ name = "resnet18", image_size = 32, seed = 0 }}
text_encoder = {{ name = "minilm-l6", max_length = 16 }}
retriever = "exact"
[systems.xattn-coco]
knowledge = {{ dataset = "coco", split = "train"{guard} }}
fusion_head = {{ name = "{head}", k = 5, epochs = 2, width = 16, heads = 2 }}
[tasks.vg-qa]
"""


def task_images(registry, demo_world):
    from ravlm_bench.run.runner import _task_images

    dataset = registry.create("datasets", "visual_genome",
                              root=str(demo_world / "visual_genome"))
    data = registry.create("tasks", "vg-qa").build(dataset, 0)

    class Holder:
        obj = dataset

    return _task_images(Holder, data)


def test_the_guard_drops_items_showing_a_task_image(registry, demo_world):
    coco = registry.create("datasets", "coco", root=str(demo_world / "coco"))
    images = task_images(registry, demo_world)
    shared = set(images["coco_id"][images["coco_id"] >= 0]) & set(
        coco.table("images", "train").to_pandas()["image_id"])
    assert shared  # the demo's Visual Genome reuses COCO images: the case the guard is for
    guarded = external_items(KnowledgeSpec("coco"), coco, images)
    open_ = external_items(KnowledgeSpec("coco", leakage_guard=False), coco, images)
    captions = coco.table("captions", "train").to_pandas()
    dropped = int(captions["image_id"].isin(shared).sum())
    assert guarded.findings["excluded"] == dropped and len(open_) == len(guarded) + dropped
    assert guarded.findings["by_route"]["coco_id"] == dropped
    assert open_.findings["excluded"] == 0
    assert (guarded.image_ids < 0).all()  # ids of their own: never a task image's id
    assert set(guarded.texts) <= set(captions["caption"])


def test_a_system_retrieves_from_another_dataset_through_the_cli(tmp_path, demo_world):
    suite = tmp_path / "ext.toml"
    suite.write_text(textwrap.dedent(SUITE.format(root=demo_world, guard="", head="xattn")))
    result = run_cli("run", str(suite), "--out", str(tmp_path / "run"), "-q",
                     cache=tmp_path / "cache")
    assert result.returncode == 0, result.stderr
    cell = json.loads((tmp_path / "run/cells/vg-qa/xattn-coco/seed-0.json").read_text())
    assert cell["status"] == "ok"
    assert cell["knowledge"]["dataset"] == "coco" and cell["knowledge"]["excluded"] > 0
    assert cell["retrieval"]["label_precision_at_k"] is None  # the knowledge has no labels
    assert cell["provenance"]["system"]["knowledge"]["leakage_guard"] is True


def test_a_head_that_needs_labels_is_refused_before_any_encoding(tmp_path, demo_world):
    suite = tmp_path / "ext.toml"
    suite.write_text(textwrap.dedent(SUITE.format(root=demo_world, guard="", head="knn")
                                     .replace(", epochs = 2, width = 16, heads = 2", "")))
    result = run_cli("run", str(suite), "--out", str(tmp_path / "run"), "-q",
                     cache=tmp_path / "cache")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {suite}: [systems.xattn-coco] fusion_head: 'knn' reads its neighbours' "
        f"labels, and the knowledge base coco/train has none; use a head that does not "
        f"(e.g. xattn)")
    assert not list((tmp_path / "cache" / "features").rglob("*.npy"))


def test_a_misspelt_knowledge_table_fails_at_validation(tmp_path, demo_world):
    suite = tmp_path / "ext.toml"
    suite.write_text(textwrap.dedent(SUITE.format(root=demo_world, guard=", gaurd = true",
                                                  head="xattn")))
    result = run_cli("run", str(suite), "--out", str(tmp_path / "run"), "-q",
                     cache=tmp_path / "cache")
    assert result.returncode == 2
    assert "[systems.xattn-coco] knowledge: unknown parameter 'gaurd'" in result.stderr
    assert np.isin(["error:"], result.stderr.split()).all()
