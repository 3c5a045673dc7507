"""``evidence-lda``: an image retrieval key learned from gold evidence.

Pretrained image features place two photographs of one object far apart when pose,
scale and background differ, and an encyclopedia picture of it (upright, plain background)
further still: on the demo's entity world, image-only cosine search finds the entity's
passage among the top 5 for 14-31% of the questions. This key learns which directions of
the feature space tell entities apart: a linear discriminant analysis (scikit-learn's
``LinearDiscriminantAnalysis``, eigen solver with shrinkage) whose classes are the gold
evidence of the training queries, each class holding the queries' photographs and the
knowledge-base item's picture. Queries and items are then searched by their projections
onto the first ``width`` discriminant directions. Entities never seen in training (the
unseen-entity split) are found through the directions learned on the others.

The key reads images only: ``embed_texts`` returns zeros, and an item without an image
(an all-zero feature row) embeds to zeros, so image search never returns it.
"""

from __future__ import annotations

import numpy as np

from ravlm_bench.api import ConfigError, JointEmbedding, TrainingReport

from .options import EvidenceLdaOptions, parse_options


class EvidenceLDA(JointEmbedding):
    name = "evidence-lda"
    evidence = True

    def __init__(self, *, dim: int, **params):
        options = parse_options(EvidenceLdaOptions, f"joint embedding {self.name}", params)
        self.dim, self.width, self.shrinkage = int(dim), int(options.width), options.shrinkage
        self.model = None
        self.out_width: int | None = None

    def fit_pairs(self, image, text, caption_image, *, seed: int, **context) -> TrainingReport:
        raise ConfigError(f"joint embedding {self.name} learns from gold evidence, not from "
                          f"(image, caption) pairs: use it as the retrieval_key of a system "
                          f"with an external knowledge base whose items name evidence")

    def fit_evidence(self, query_image, query_text, item_image, item_text, item_of_query, *,
                     seed: int, **context) -> TrainingReport:
        from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

        query_image = np.asarray(query_image, np.float64)
        item_image = np.asarray(item_image, np.float64)
        item_of_query = np.asarray(item_of_query, np.int64)
        items = np.unique(item_of_query)
        features = np.concatenate([query_image, item_image[items]])
        groups = np.concatenate([item_of_query, items])
        keep = np.abs(features).sum(axis=1) > 0  # rows without an image teach nothing
        features, groups = features[keep], groups[keep]
        classes = len(np.unique(groups))
        if classes < 2:
            raise ConfigError(f"joint embedding {self.name}: the training queries name "
                              f"{classes} piece of evidence with an image; it needs two")
        self.out_width = min(self.width, classes - 1, features.shape[1])
        self.model = LinearDiscriminantAnalysis(
            solver="eigen", shrinkage=self.shrinkage, n_components=self.out_width)
        self.model.fit(features, groups)
        return TrainingReport(extra={"embedding": self.name, "classes": int(classes),
                                     "training_rows": int(len(features)),
                                     "width": int(self.out_width)})

    def embed_images(self, image) -> np.ndarray:
        if self.model is None:
            raise ConfigError(f"joint embedding {self.name}: embed_images called before "
                              f"fit_evidence")
        image = np.asarray(image, np.float64)
        out = np.zeros((len(image), self.out_width), np.float32)
        present = np.abs(image).sum(axis=1) > 0
        if present.any():
            out[present] = self.model.transform(image[present]).astype(np.float32)
        return out

    def embed_texts(self, text) -> np.ndarray:
        if self.out_width is None:
            raise ConfigError(f"joint embedding {self.name}: embed_texts called before "
                              f"fit_evidence")
        return np.zeros((len(text), self.out_width), np.float32)
