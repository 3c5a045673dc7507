"""An external knowledge base: a system's ``knowledge = { dataset = ..., split = ... }``
retrieves from that split instead of its task's training split: from an image-caption
dataset, one unlabelled item per caption; from a passages dataset (a text knowledge base),
one item per passage, with its image where it has one. Every item that shows an image of the
task is left out unless ``leakage_guard = false`` (:func:`external_items`);
:class:`ExternalKnowledge` is what the system's cells read.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from ravlm_bench.config.suite import KnowledgeSpec
from ravlm_bench.stages.features import FeatureStore
from ravlm_bench.stages.leakage import same_bytes

log = logging.getLogger(__name__)

CROSS_IDS = ("coco_id", "flickr_id")


@dataclass
class ExternalItems:
    """The items a system retrieves from, with what the guard found."""

    image_paths: list[str]  # "" for a passage without an image
    texts: list[str]
    image_ids: np.ndarray  # int64, negative: a namespace of their own
    findings: dict = field(default_factory=dict)
    evidence: list[str] | None = None  # a passage's entity id ("" none)

    def __len__(self) -> int:
        return len(self.texts)


@dataclass
class ExternalKnowledge:
    """A system's external knowledge base as its cells read it: the items, and the feature
    store that encodes them (cached like a task's splits)."""

    items: ExternalItems
    features: FeatureStore


def external_items(spec: KnowledgeSpec, dataset, task_images) -> ExternalItems:
    """The (image, caption) pairs of ``spec.split`` of ``dataset`` (a loaded dataset), less
    those showing an image of ``task_images`` (a DataFrame with the task's image_id,
    image_path and the cross ids) when the guard is on.

    The guard drops every pair that shares a COCO or Flickr id with a task image (of any
    split; Visual Genome records both) or whose file is byte-identical to one; what it found
    is kept in ``findings`` and the cell. Since no remaining item shows a task image, the
    items' images get ids of their own (negative, never a task id), and leave-one-out
    retrieval needs nothing more.
    """
    if "passages" in dataset.kinds:
        return _passages(spec, dataset, task_images)
    images = dataset.table("images", spec.split).to_pandas()
    captions = dataset.table("captions", spec.split).to_pandas()
    pairs = captions.merge(images, on="image_id", suffixes=("", "_image"))
    pairs = pairs.sort_values(["image_id", "caption_id"]).reset_index(drop=True)
    findings = {**spec.as_dict(), "items": int(len(pairs)), "excluded": 0, "by_route": {}}
    if spec.leakage_guard and len(pairs):
        leaked, by_route = _shows_a_task_image(pairs, task_images)
        findings.update(excluded=int(leaked.sum()), by_route=by_route)
        if leaked.any():
            log.info("knowledge base %s/%s: %d of %d items show a task image; left out",
                     spec.dataset, spec.split, int(leaked.sum()), len(pairs))
        pairs = pairs[~leaked].reset_index(drop=True)
    first_row = {image: -(i + 2) for i, image in enumerate(pd_unique(pairs["image_id"]))}
    return ExternalItems(
        image_paths=pairs["image_path"].tolist(), texts=pairs["caption"].tolist(),
        image_ids=np.array([first_row[i] for i in pairs["image_id"]], dtype=np.int64),
        findings=findings)


def passage_text(title: str, text: str) -> str:
    """What a passage's text features and readers see: its title, then its text."""
    return f"{title}. {text}" if title else text


def _passages(spec: KnowledgeSpec, dataset, task_images) -> ExternalItems:
    """A text knowledge base: one item per passage, in the order of the corpus, with its
    image where it has one. The guard can only compare bytes (passages carry no COCO or
    Flickr ids): a passage whose image is a task image file is left out."""
    passages = dataset.table("passages", spec.split).to_pandas()
    findings = {**spec.as_dict(), "items": int(len(passages)), "excluded": 0, "by_route": {}}
    with_image = (passages["image_path"] != "").to_numpy()
    if spec.leakage_guard and with_image.any():
        leaked = np.zeros(len(passages), dtype=bool)
        leaked[with_image] = same_bytes(task_images["image_path"].tolist(),
                                        passages["image_path"][with_image].tolist()).hits
        findings.update(excluded=int(leaked.sum()), by_route={"file hash": int(leaked.sum())})
        if leaked.any():
            log.info("knowledge base %s/%s: %d of %d passages show a task image; left out",
                     spec.dataset, spec.split, int(leaked.sum()), len(passages))
        passages = passages[~leaked].reset_index(drop=True)
    # each passage is an item of its own: ids in a namespace no task image uses
    return ExternalItems(
        image_paths=passages["image_path"].tolist(),
        texts=[passage_text(t, x) for t, x in zip(passages["title"], passages["text"],
                                                  strict=True)],
        image_ids=-(np.arange(len(passages), dtype=np.int64) + 2), findings=findings,
        evidence=passages["entity_id"].tolist())


def _shows_a_task_image(pairs, task_images) -> tuple[np.ndarray, dict[str, int]]:
    """Knowledge-base rows sharing a cross id or the bytes of a task image, and how many
    each route found (image ids of two datasets mean nothing to each other)."""
    leaked, by_route = np.zeros(len(pairs), dtype=bool), {}
    for name in CROSS_IDS:
        ours = task_images[name].to_numpy()
        values = pairs[name].to_numpy()
        hits = (values >= 0) & np.isin(values, ours[ours >= 0])
        by_route[name], leaked = int(hits.sum()), leaked | hits
    hits = same_bytes(task_images["image_path"].tolist(), pairs["image_path"].tolist()).hits
    by_route["file hash"] = int(hits.sum())
    return leaked | hits, by_route


def pd_unique(values) -> list:
    """Distinct values in first-seen order."""
    return list(dict.fromkeys(values.tolist()))
