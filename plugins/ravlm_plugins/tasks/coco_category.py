"""coco-category: image + caption -> the category of the image's largest non-crowd instance."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from ravlm_bench.api import SingleLabelEvaluation
from ravlm_plugins.tasks import splits
from ravlm_plugins.tasks.labelled import classification_data, label_space

log = logging.getLogger(__name__)


class CocoCategory(SingleLabelEvaluation):
    name = "coco-category"
    dataset = "coco"

    def __init__(self, captions_per_image: int = 1, min_count: int = 1):
        self.captions_per_image = int(captions_per_image)
        self.min_count = int(min_count)

    def build(self, dataset, seed: int):
        images = splits.split_frames(dataset, "images")
        all_captions = splits.load(dataset, "captions", dataset.splits())
        all_instances = splits.load(dataset, "instances", dataset.splits())
        rng = np.random.default_rng(seed)
        frames = {}
        for role in images:
            ids = images[role]["image_id"]
            primary = primary_categories(all_instances[all_instances["image_id"].isin(ids)])
            items = images[role][["image_id", "image_path"]].merge(primary, on="image_id")
            dropped = len(images[role]) - len(items)
            if dropped:
                log.info("coco-category: %d %s images have no non-crowd instance; skipped",
                         dropped, role)
            captions = all_captions[all_captions["image_id"].isin(ids)]
            frames[role] = _with_captions(items, captions, self.captions_per_image, rng)
        classes = label_space(frames["train"]["label"], min_count=self.min_count,
                              task=self.name)
        return classification_data(self.name, frames, classes)


def primary_categories(instances: pd.DataFrame) -> pd.DataFrame:
    """image_id -> label: the category of the largest non-crowd instance (ties: lowest id)."""
    solid = instances[~instances["iscrowd"].astype(bool)]
    solid = solid.sort_values(["image_id", "area", "annotation_id"],
                              ascending=[True, False, True])
    first = solid.drop_duplicates("image_id")
    return first[["image_id", "category"]].rename(columns={"category": "label"})


def _with_captions(items: pd.DataFrame, captions: pd.DataFrame, per_image: int,
                   rng: np.random.Generator) -> pd.DataFrame:
    """One row per (image, caption), ``per_image`` captions per image picked with ``rng``."""
    captions = captions.sort_values(["image_id", "caption_id"])
    grouped = captions.groupby("image_id")["caption"].apply(list)
    rows = []
    for item in items.sort_values("image_id").itertuples(index=False):
        texts = grouped.get(item.image_id, [])
        if not texts:
            continue
        picks = rng.choice(len(texts), size=min(per_image, len(texts)), replace=False)
        rows.extend((item.image_id, item.image_path, texts[i], item.label) for i in sorted(picks))
    return pd.DataFrame(rows, columns=["image_id", "image_path", "text", "label"])
