"""Component contracts: the shapes of what plugins return, and the checks that enforce them.

Encoders and retrievers are the protocols below (their hook docstrings in
:mod:`ravlm_bench.plugin_host.hookspecs` say more); datasets, tasks and fusion heads exchange
the plain data classes below. ``validate_*`` functions raise
:class:`ContractViolation`, which callers turn into a ``ComponentError`` naming the plugin.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

METRICS = ("cos", "ip", "l2sq")


class ContractViolation(ValueError):
    """A component returned something the public contract does not allow."""


# ---------------------------------------------------------------------------------------
# Encoders and retrievers
# ---------------------------------------------------------------------------------------


@runtime_checkable
class ImageEncoder(Protocol):
    """Turns images into feature vectors: ``encode(images)`` takes a list of PIL images and
    returns float32 ``(n, dim)``. An optional ``fingerprint() -> str`` (weights,
    preprocessing, precision) makes its features cacheable."""

    dim: int

    def encode(self, images: list) -> np.ndarray: ...


@runtime_checkable
class TextEncoder(Protocol):
    """Turns texts into feature vectors: ``encode(texts)`` returns float32 ``(n, dim)``. An
    optional ``fingerprint() -> str`` makes its features cacheable."""

    dim: int

    def encode(self, texts: list[str]) -> np.ndarray: ...


@runtime_checkable
class Retriever(Protocol):
    """A nearest-neighbour index: ``build(vectors, keys)`` with float32 ``(n, dim)`` vectors
    and int64 keys, then ``search(queries, k)`` returns int64 keys and float32 scores, both
    ``(m, k)``: best first, higher is more similar, equal scores by ascending key, ``-1`` keys
    padding rows with fewer than ``k`` results."""

    def build(self, vectors: np.ndarray, keys: np.ndarray) -> None: ...

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...


@runtime_checkable
class LabelledRetriever(Protocol):
    """Optional retriever extension: a retriever that reads labels (the attribution bounds).

    It sets ``uses_labels = True``; ``build`` then also receives the knowledge base's labels
    and ``search`` the queries' labels (int64, ``-1`` = outside the label space), both as the
    keyword ``labels``. :func:`ravlm_bench.stages.retrieval.build_index` and
    :func:`ravlm_bench.stages.retrieval.retrieve` pass them; everything else about ``search``
    (shapes, dtypes, best first, ``-1`` padding) is as for :class:`Retriever`. A retriever
    that also sets ``uses_query_keys = True`` gets the keyword ``query_keys`` in ``search``
    where the harness knows them (int64, one per query: :func:`ravlm_bench.stages.retrieval.
    query_keys`), the query item's identity, for draws that must not depend on the query's
    float bits (encoders' rounding differs with the thread count) or its batch.
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
    if not np.isfinite(scores[valid]).all():
        bad = int((~np.isfinite(scores) & valid).any(axis=1).sum())
        raise ContractViolation(f"search returned NaN or infinite scores for real results "
                                f"in {bad} of {m} queries")
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
    # knowledge-based VQA (OK-VQA, A-OKVQA, InfoSeek): one row per question
    "knowledge_questions": {
        "question_id": "string", "image_id": "int64", "question": "string",
        "answer": "string (the training answer: the answer a classifier learns)",
        "answers": "list<string> (what the official metric scores against)",
        "choices": "list<string> (multiple choice; empty: none)",
        "correct_choice": "int32 (-1: none)",
        "answer_range": "list<float64> ([low, high] of a numeric answer; empty: none)",
        "question_type": "string (empty: none)",
        "entity_id": "string (the gold entity; empty: none)",
        "split": "string",
    },
    # a text knowledge base (BEIR corpus.jsonl, Parquet or a saved `datasets` dataset)
    "passages": {
        "passage_id": "string", "title": "string", "text": "string",
        "image_path": "string (absolute; empty: no image)",
        "entity_id": "string (empty: none)", "split": "string",
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

    def table(self, kind: str, split: str) -> Any: ...

    def fingerprint(self) -> str: ...


# ---------------------------------------------------------------------------------------
# Tasks
# ---------------------------------------------------------------------------------------


@dataclass
class LabelledSplit:
    """Items of a classification task: one (image, text) query and its label each.

    Single-label tasks: ``labels`` int64 ``(n,)`` index ``ClassificationData.classes``; -1
    marks a label outside the label space (kept in test splits, where it always counts as
    wrong). Multi-label tasks: ``labels`` is a multi-hot ``(n, num_classes)`` array.
    """

    image_ids: np.ndarray  # int64 (n,)
    image_paths: list[str]
    texts: list[str]
    labels: np.ndarray  # int64 (n,), or multi-hot (n, num_classes)
    # knowledge tasks: each item's acceptable answers (pseudo-relevance recall reads them)
    # and the id of its gold evidence in the knowledge base ("" where none is named)
    answers: list[list[str]] | None = None
    evidence: list[str] | None = None
    # per-item fields only the task's own evaluate() reads (choices, answer ranges, ...)
    item_fields: dict[str, list] | None = None

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
    """A leaderboard column: it reads one dataset, builds its splits and scores outputs.

    ``head``: the head interface its systems need (``"fusion-head"``: class scores per test
    item; ``"joint-embedding"``: image-text rankings). ``targets``: for fusion-head tasks,
    ``"single-label"`` (int labels) or ``"multi-label"`` (multi-hot label rows).
    ``metrics()`` declares what ``evaluate`` reports (one is main);
    ``evaluate(data, outputs, resampler)`` scores a cell
    (:class:`ravlm_bench.scoring.evaluation.Evaluation`). Joint-embedding tasks also give
    ``ranking_depth`` (how many results each query needs).
    """

    name: str
    dataset: str  # the dataset plugin it reads
    head: str
    targets: str

    def metrics(self) -> tuple: ...

    def build(self, dataset: Dataset, seed: int) -> ClassificationData | RetrievalData: ...

    def evaluate(self, data: Any, outputs: Any, resampler: Any) -> Any: ...


# ---------------------------------------------------------------------------------------
# Fusion heads
# ---------------------------------------------------------------------------------------


@dataclass
class KnowledgeBase:
    """The items retrieval can return: the task's training split, or the system's external
    knowledge base (another dataset's split of image-caption pairs or of passages, whose
    items have no label: -1, or an empty row for multi-label tasks)."""

    image: np.ndarray  # float32 (N, d_image); zero rows: items without an image
    text: np.ndarray  # float32 (N, d_text)
    labels: np.ndarray  # int64 (N,), or multi-hot (N, num_classes)
    image_ids: np.ndarray  # int64 (N,)
    # the items' texts (captions, questions or passages), for readers that read them
    texts: list[str] | None = None
    # the evidence id of each item (a passage's entity; "" none): what gold evidence and the
    # oracle retriever match against
    evidence: list[str] | None = None
    # each row's key in the index where the two differ: the index also holds synthesised
    # distractors, of which only those a search returned are rows (after the real items)
    index_keys: np.ndarray | None = None

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
    labels: np.ndarray | None = None  # as LabelledSplit.labels; None at prediction time
    image_ids: np.ndarray | None = None  # int64 (n,)
    # the raw items, for heads that fine-tune the encoders end to end
    image_paths: list[str] | None = None
    texts: list[str] | None = None
    # the task's class names (answers, for readers that look for them in retrieved texts)
    classes: list[str] | None = None

    def __len__(self) -> int:
        return len(self.image)


@dataclass
class TrainingReport:
    """What a training reports. The runner reads the cost fields; ``extra`` is kept in the
    cell as it is (losses, best epoch, ...), so it must be JSON-able.

    ``seconds``: what training this model took over all runs (a resumed or reloaded training
    included); ``seconds_this_run``: the part this run spent; ``reused``: a finished training
    was reloaded from its checkpoint instead of repeated.
    """

    epochs: int = 0
    steps: int = 0
    seconds: float = 0.0
    seconds_this_run: float = 0.0
    reused: bool = False
    resumed_from_epoch: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    _FIELDS = ("epochs", "steps", "seconds", "seconds_this_run", "reused", "resumed_from_epoch")

    @classmethod
    def from_fit(cls, value: Any) -> TrainingReport:
        """The report a ``fit`` returned (None, for a head with nothing to train, is an empty
        report); anything else breaks the contract."""
        if isinstance(value, TrainingReport):
            return value
        if value is None:
            return cls()
        raise ContractViolation(f"fit returned {type(value).__name__}, expected a "
                                f"TrainingReport")

    def as_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self._FIELDS}
        return {**self.extra, **{k: (None if isinstance(v, float) and math.isnan(v) else v)
                                 for k, v in out.items()}}


# ---------------------------------------------------------------------------------------
# Optional capabilities: each declared once, here, with its default. The base classes
# below carry the same defaults; the harness reads them with capability(), so a plugin
# object that does not inherit a base class gets the defaults too.
# ---------------------------------------------------------------------------------------

CAPABILITIES: dict[str, dict[str, Any]] = {
    # build/search also receive labels= (the attribution bounds); search also receives
    # query_keys= (int64 per query: the query item's identity, the same whatever the
    # batching, sharding or number of processes), for a retriever seeding draws by query
    "retrievers": {"uses_labels": False, "uses_query_keys": False},
    "fusion-heads": {
        "uses_retrieval": True,  # False: neighbour arrays arrive empty
        # whether it reads the neighbours' labels: "required" (a knowledge base without
        # labels cannot serve it), "optional" (label -1 is understood) or "unused"
        "neighbour_labels": "required",
        "k": 10,  # neighbours retrieved per query
        "targets": ("single-label",),  # label forms fit() accepts
        "data_parallel": False,  # fit() takes dist= and trains with DistributedDataParallel
        "checkpoints": False,  # fit() takes checkpoint_dir= and resumes from it
    },
    # evidence: trained by fit_evidence on (training query, gold knowledge-base item) pairs
    # instead of fit_pairs on (image, caption) pairs
    "joint-embeddings": {"data_parallel": False, "checkpoints": False, "evidence": False},
    "tasks": {"head": "fusion-head", "targets": "single-label", "ranking_depth": 10},
    # images that fail to decode are dropped from the tasks' splits (and counted), not fatal
    "datasets": {"skips_bad_images": False},
}


def capability(obj: Any, kind: str, name: str) -> Any:
    """``obj``'s declared capability ``name``, or the default of :data:`CAPABILITIES`."""
    return getattr(obj, name, CAPABILITIES[kind][name])


class FusionHead:
    """Base class of fusion heads: turns queries and their retrieved items into class
    scores. Subclasses implement ``fit`` and ``predict_proba`` and override the capabilities
    they have.

    ``fit(train, val, *, seed, [checkpoint_dir], [dist]) -> TrainingReport`` (``val`` may be
    None; ``checkpoint_dir`` when ``checkpoints``, ``dist`` when ``data_parallel``);
    ``predict_proba(inputs) -> float32 (n, num_classes)``: class probabilities for
    single-label targets, independent per-class probabilities for multi-label targets.
    """

    uses_retrieval: bool = CAPABILITIES["fusion-heads"]["uses_retrieval"]
    neighbour_labels: str = CAPABILITIES["fusion-heads"]["neighbour_labels"]
    k: int = CAPABILITIES["fusion-heads"]["k"]
    targets: tuple[str, ...] = CAPABILITIES["fusion-heads"]["targets"]
    data_parallel: bool = CAPABILITIES["fusion-heads"]["data_parallel"]
    checkpoints: bool = CAPABILITIES["fusion-heads"]["checkpoints"]

    def fit(self, train: FusionInputs, val: FusionInputs | None, *, seed: int,
            **context: Any) -> TrainingReport:
        raise NotImplementedError

    def predict_proba(self, inputs: FusionInputs) -> np.ndarray:
        raise NotImplementedError


class JointEmbedding:
    """Base class of joint embeddings: projects images and texts into one space, trained on
    a task's (image, caption) pairs; retrieval tasks rank with it.

    ``fit_pairs(image, text, caption_image, *, seed, [checkpoint_dir], [dist])
    -> TrainingReport``; ``embed_images(image) / embed_texts(text) -> float32 (n, d)``.

    An embedding declaring ``evidence = True`` is a retrieval key learned from gold
    evidence instead: ``fit_evidence(query_image, query_text, item_image, item_text,
    item_of_query, *, seed, ...)`` gets the training queries and the knowledge-base items
    their gold evidence names (query i's is item ``item_of_query[i]``); it serves systems
    with an external knowledge base whose items name evidence (a passage's entity).
    """

    data_parallel: bool = CAPABILITIES["joint-embeddings"]["data_parallel"]
    checkpoints: bool = CAPABILITIES["joint-embeddings"]["checkpoints"]
    evidence: bool = CAPABILITIES["joint-embeddings"]["evidence"]

    def fit_pairs(self, image: np.ndarray, text: np.ndarray, caption_image: np.ndarray, *,
                  seed: int, **context: Any) -> TrainingReport:
        raise NotImplementedError

    def fit_evidence(self, query_image: np.ndarray, query_text: np.ndarray,
                     item_image: np.ndarray, item_text: np.ndarray,
                     item_of_query: np.ndarray, *, seed: int, **context: Any) -> TrainingReport:
        raise NotImplementedError

    def embed_images(self, image: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def embed_texts(self, text: np.ndarray) -> np.ndarray:
        raise NotImplementedError


@runtime_checkable
class Publisher(Protocol):
    """A leaderboard output format: ``publish(board, out_dir) -> list[Path]``."""

    def publish(self, board: Any, out_dir: Path) -> list[Path]: ...
