"""Component contracts: the shapes of what plugins return, and the checks that enforce them.

Encoders and retrievers are specified in DESIGN.md and the hook docstrings; datasets, tasks
and fusion heads exchange the plain data classes below. ``validate_*`` functions raise
:class:`ContractViolation`, which callers turn into a ``ComponentError`` naming the plugin.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

METRICS = ("cos", "ip", "l2sq")


class ContractViolation(ValueError):
    """A component returned something the public contract does not allow."""


# ---------------------------------------------------------------------------------------
# Encoders and retrievers (DESIGN.md "Public plugin API")
# ---------------------------------------------------------------------------------------


@runtime_checkable
class ImageEncoder(Protocol):
    dim: int

    def encode(self, images: list) -> np.ndarray: ...


@runtime_checkable
class TextEncoder(Protocol):
    dim: int

    def encode(self, texts: list[str]) -> np.ndarray: ...


@runtime_checkable
class Retriever(Protocol):
    def build(self, vectors: np.ndarray, keys: np.ndarray) -> None: ...

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...


@runtime_checkable
class LabelledRetriever(Protocol):
    """Optional retriever extension: a retriever that reads labels (the attribution bounds).

    It sets ``uses_labels = True``; ``build`` then also receives the knowledge base's labels
    and ``search`` the queries' labels (int64, ``-1`` = outside the label space), both as the
    keyword ``labels``. :func:`ravlm_bench.knowledge.build_index` and
    :func:`ravlm_bench.knowledge.retrieve` pass them; everything else about ``search`` (shapes,
    dtypes, best first, ``-1`` padding) is as for :class:`Retriever`.
    """

    uses_labels: bool

    def build(self, vectors: np.ndarray, keys: np.ndarray, labels: np.ndarray) -> None: ...

    def search(self, queries: np.ndarray, k: int,
               labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


def validate_vectors(out: Any, n: int, dim: int, what: str = "encode") -> np.ndarray:
    """Check an encoder's output: float32, shape (n, dim), finite."""
    if not isinstance(out, np.ndarray):
        raise ContractViolation(f"{what} returned {type(out).__name__}, expected a numpy array")
    if out.dtype != np.float32:
        raise ContractViolation(f"{what} returned dtype {out.dtype}, expected float32")
    if out.shape != (n, dim):
        raise ContractViolation(f"{what} returned shape {out.shape}, expected {(n, dim)}")
    if not np.isfinite(out).all():
        bad = int((~np.isfinite(out)).any(axis=1).sum())
        raise ContractViolation(f"{what} returned NaN or inf in {bad} of {n} rows")
    return out


def validate_search(result: Any, m: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Check a retriever's ``search`` output: (keys int64 (m,k), scores float32 (m,k))."""
    if not (isinstance(result, tuple) and len(result) == 2):
        raise ContractViolation("search must return a (keys, scores) tuple")
    keys, scores = result
    for label, arr, dtype in (("keys", keys, np.int64), ("scores", scores, np.float32)):
        if not isinstance(arr, np.ndarray) or arr.dtype != dtype:
            got = getattr(arr, "dtype", type(arr).__name__)
            raise ContractViolation(f"search returned {label} of {got}, expected {dtype.__name__}")
        if arr.shape != (m, k):
            raise ContractViolation(f"search returned {label} of shape {arr.shape}, "
                                    f"expected {(m, k)}")
    valid = keys >= 0
    if (keys < -1).any():
        raise ContractViolation("search returned negative keys other than the -1 padding")
    if np.isnan(scores[valid]).any():
        raise ContractViolation("search returned NaN scores")
    # best first: scores never increase along a row, padding only at the end
    if k > 1:
        with np.errstate(invalid="ignore"):  # -inf - -inf in padded slots
            worse_first = (np.diff(scores, axis=1) > 1e-5) & valid[:, 1:]
        if worse_first.any():
            raise ContractViolation("search results are not sorted best first")
        if (~valid[:, :-1] & valid[:, 1:]).any():
            raise ContractViolation("search returned -1 padding before real results")
    return keys, scores


def validate_proba(out: Any, n: int, num_classes: int) -> np.ndarray:
    """Check a fusion head's class probabilities: float32 (n, num_classes), finite."""
    return validate_vectors(out, n, num_classes, what="predict_proba")


# ---------------------------------------------------------------------------------------
# Datasets
# ---------------------------------------------------------------------------------------

# Record kinds a dataset may provide, each a `datasets.Dataset` with these columns.
RECORD_SCHEMAS: dict[str, dict[str, str]] = {
    "images": {
        "image_id": "int64", "image_path": "string (absolute)", "split": "string",
        "width": "int32", "height": "int32",
        "coco_id": "int64 (-1: none)", "flickr_id": "int64 (-1: none)",
    },
    "captions": {
        "caption_id": "int64", "image_id": "int64", "caption": "string", "split": "string",
    },
    "instances": {
        "annotation_id": "int64", "image_id": "int64", "category_id": "int32",
        "category": "string", "bbox": "list<float32> [x, y, w, h]", "area": "float32",
        "iscrowd": "bool", "split": "string",
    },
    "questions": {
        "qa_id": "int64", "image_id": "int64", "question": "string", "answer": "string (raw)",
        "answer_norm": "string (VQA-normalised)", "split": "string",
    },
    "regions": {
        "region_id": "int64", "image_id": "int64", "phrase": "string",
        "x": "int32", "y": "int32", "width": "int32", "height": "int32", "split": "string",
    },
    "objects": {
        "object_id": "int64", "image_id": "int64", "names": "list<string>",
        "x": "int32", "y": "int32", "w": "int32", "h": "int32", "split": "string",
    },
}


@runtime_checkable
class Dataset(Protocol):
    """A loaded dataset: Arrow tables per record kind and split.

    ``kinds`` lists the record kinds of :data:`RECORD_SCHEMAS` it provides; ``table`` returns
    a memory-mapped ``datasets.Dataset`` and raises ``DataError`` for an empty split.
    """

    name: str
    root: Path
    kinds: tuple[str, ...]

    def splits(self) -> list[str]: ...

    def table(self, kind: str, split: str): ...

    def fingerprint(self) -> str: ...


# ---------------------------------------------------------------------------------------
# Tasks
# ---------------------------------------------------------------------------------------


@dataclass
class LabelledSplit:
    """Items of a classification task: one (image, text) query and its label each.

    ``labels`` index ``ClassificationData.classes``; -1 marks a label outside the label
    space (kept in test splits, where it always counts as wrong).
    """

    image_ids: np.ndarray  # int64 (n,)
    image_paths: list[str]
    texts: list[str]
    labels: np.ndarray  # int64 (n,)

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class ClassificationData:
    classes: list[str]
    train: LabelledSplit
    val: LabelledSplit | None
    test: LabelledSplit


@dataclass
class PairedSplit:
    """Images and captions of a retrieval task; ``caption_image`` maps captions to images."""

    image_ids: np.ndarray  # int64 (n_images,)
    image_paths: list[str]
    texts: list[str]  # (n_captions,)
    caption_image: np.ndarray  # int64 (n_captions,): row in image_ids

    def __len__(self) -> int:
        return len(self.image_ids)


@dataclass
class RetrievalData:
    train: PairedSplit
    val: PairedSplit | None
    test: PairedSplit


@runtime_checkable
class Task(Protocol):
    """A leaderboard column: it reads one dataset and defines the label space and metrics."""

    name: str
    dataset: str  # the dataset plugin it reads
    kind: Literal["classification", "retrieval"]

    def build(self, dataset: Dataset, seed: int) -> ClassificationData | RetrievalData: ...


# ---------------------------------------------------------------------------------------
# Fusion heads
# ---------------------------------------------------------------------------------------


@dataclass
class KnowledgeBase:
    """The items retrieval can return: the training split of a task."""

    image: np.ndarray  # float32 (N, d_image)
    text: np.ndarray  # float32 (N, d_text)
    labels: np.ndarray  # int64 (N,)
    image_ids: np.ndarray  # int64 (N,)

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class FusionInputs:
    """Queries with their retrieved neighbours, the input of every fusion head.

    ``neighbours`` are rows of ``knowledge`` (best first, -1 padding); during training they
    never include the query's own image.
    """

    image: np.ndarray  # float32 (n, d_image)
    text: np.ndarray  # float32 (n, d_text)
    neighbours: np.ndarray  # int64 (n, k)
    neighbour_scores: np.ndarray  # float32 (n, k)
    knowledge: KnowledgeBase
    num_classes: int
    labels: np.ndarray | None = None  # int64 (n,); None at prediction time
    image_ids: np.ndarray | None = None  # int64 (n,)
    extras: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.image)


@runtime_checkable
class FusionHead(Protocol):
    """Turns queries and their retrieved items into class probabilities.

    ``fit`` returns a dict of training statistics (epochs, seconds, best validation score,
    ...). A head with ``uses_retrieval = False`` gets empty neighbour arrays.
    """

    def fit(self, train: FusionInputs, val: FusionInputs | None, *, seed: int,
            checkpoint_dir: Path | None = None) -> dict: ...

    def predict_proba(self, inputs: FusionInputs) -> np.ndarray: ...


@runtime_checkable
class JointEmbedding(Protocol):
    """A fusion head usable on retrieval tasks: projects images and texts to one space."""

    def fit_pairs(self, image: np.ndarray, text: np.ndarray, caption_image: np.ndarray, *,
                  seed: int) -> dict: ...

    def embed_images(self, image: np.ndarray) -> np.ndarray: ...

    def embed_texts(self, text: np.ndarray) -> np.ndarray: ...
