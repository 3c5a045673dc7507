"""coco-retrieval and flickr30k-retrieval: image-to-text and text-to-image Recall@K."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ravlm_bench.api import ConfigError, PairedSplit, RankingEvaluation, RetrievalData
from ravlm_plugins.tasks import splits


class ImageTextRetrieval(RankingEvaluation):

    def __init__(self, name: str, dataset: str, test_images: int | None = None,
                 train_images: int | None = None, ks: list[int] | None = None):
        self.name, self.dataset = name, dataset
        if ks is not None:
            if not ks or any(k < 1 for k in ks):
                raise ConfigError(f"task {name}: ks must be a non-empty list of K >= 1, "
                                  f"got {ks}")
            self.ks = tuple(sorted(set(ks)))
        self.test_images = test_images
        self.train_images = train_images

    def build(self, dataset, seed: int) -> RetrievalData:
        images = splits.split_frames(dataset, "images")
        captions = splits.load(dataset, "captions", dataset.splits())
        limits = {"train": self.train_images, "val": None, "test": self.test_images}
        paired = {role: paired_split(frame, captions, limits[role])
                  for role, frame in images.items()}
        return RetrievalData(train=paired["train"], val=paired.get("val"), test=paired["test"])


def paired_split(images: pd.DataFrame, captions: pd.DataFrame, limit: int | None) -> PairedSplit:
    """Images (first ``limit`` by id) and every one of their captions."""
    images = images.sort_values("image_id")
    if limit is not None:
        images = images.head(int(limit))
    captions = captions[captions["image_id"].isin(images["image_id"])]
    captions = captions.sort_values(["image_id", "caption_id"])
    images = images[images["image_id"].isin(captions["image_id"])]  # every image needs a caption
    row_of = pd.Series(np.arange(len(images)), index=images["image_id"].to_numpy())
    return PairedSplit(
        image_ids=images["image_id"].to_numpy(dtype=np.int64),
        image_paths=images["image_path"].tolist(),
        texts=captions["caption"].tolist(),
        caption_image=row_of.loc[captions["image_id"].to_numpy()].to_numpy(dtype=np.int64),
    )
