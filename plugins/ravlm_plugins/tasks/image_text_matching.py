"""flickr30k-itm: does this caption describe this image?

Positives are true (image, caption) pairs. Negatives pair an image with a caption of another
image, drawn by retrieval: TF-IDF nearest captions to the image's own caption (hard
negatives), one picked at random (seeded) among the closest ``pool`` others.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ravlm_bench.api import SingleLabelEvaluation
from ravlm_plugins.tasks import splits
from ravlm_plugins.tasks.labelled import classification_data

CLASSES = ["mismatch", "match"]


class ImageTextMatching(SingleLabelEvaluation):
    name = "flickr30k-itm"
    dataset = "flickr30k"

    def __init__(self, negatives_per_positive: int = 1, pool: int = 10, hard: bool = True):
        self.negatives = int(negatives_per_positive)
        self.pool = int(pool)
        self.hard = bool(hard)

    def build(self, dataset, seed: int):
        images = splits.split_frames(dataset, "images")
        captions = splits.load(dataset, "captions", dataset.splits())
        rng = np.random.default_rng(seed)
        frames = {role: self._pairs(frame, captions, rng) for role, frame in images.items()}
        return classification_data(self.name, frames, CLASSES)

    def _pairs(self, images: pd.DataFrame, captions: pd.DataFrame,
               rng: np.random.Generator) -> pd.DataFrame:
        images = images.sort_values("image_id").reset_index(drop=True)
        caps = captions[captions["image_id"].isin(images["image_id"])]
        caps = caps.sort_values(["image_id", "caption_id"]).drop_duplicates("image_id")
        caps = caps.set_index("image_id").loc[images["image_id"]].reset_index()
        texts = caps["caption"].tolist()
        owners = caps["image_id"].to_numpy()
        candidates = self._negative_candidates(texts, owners)
        rows = []
        for i, image in enumerate(images.itertuples(index=False)):
            rows.append((image.image_id, image.image_path, texts[i], "match"))
            picks = rng.choice(candidates[i], size=min(self.negatives, len(candidates[i])),
                               replace=False)
            rows.extend((image.image_id, image.image_path, texts[j], "mismatch") for j in picks)
        return pd.DataFrame(rows, columns=["image_id", "image_path", "text", "label"])

    def _negative_candidates(self, texts: list[str], owners: np.ndarray) -> list[np.ndarray]:
        n = len(texts)
        if not self.hard:
            return [np.flatnonzero(owners != owners[i]) for i in range(n)]
        from sklearn.feature_extraction.text import TfidfVectorizer

        tfidf = TfidfVectorizer().fit_transform(texts)
        pool = min(self.pool, n - 1)
        candidates: list[np.ndarray] = []
        for start in range(0, n, 1024):  # chunks keep memory at 1024 x n on 30k-image splits
            stop = min(start + 1024, n)
            similarity = (tfidf[start:stop] @ tfidf.T).toarray()
            similarity[owners[start:stop, None] == owners[None, :]] = -np.inf  # never its own
            # stable sort so ties do not depend on the platform's sort
            order = np.argsort(-similarity, axis=1, kind="stable")[:, :pool]
            candidates.extend(order)
        return candidates
