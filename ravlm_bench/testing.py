"""The conformance kit: pytest-ready checks that a component honours the public contract.

Plugin authors call these from their own tests::

    from ravlm_bench.testing import check_retriever

    def test_my_retriever_honours_the_contract():
        check_retriever(lambda **kw: MyRetriever(**kw))

Each check raises ``AssertionError`` with a message saying what is wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ravlm_bench.plugin_host.contracts import (
    METRICS,
    ContractViolation,
    validate_search,
    validate_vectors,
)


def _fail(message: str) -> None:
    raise AssertionError(message)


def sample_images(n: int = 5, size: int = 64, seed: int = 0) -> list:
    """Small deterministic RGB images with distinct colours and shapes."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    images = []
    for _ in range(n):
        image = Image.new("RGB", (size, size), tuple(int(c) for c in rng.integers(0, 255, 3)))
        draw = ImageDraw.Draw(image)
        x0, y0 = (int(v) for v in rng.integers(0, size // 2, 2))
        draw.ellipse([x0, y0, x0 + size // 2, y0 + size // 2],
                     fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
        images.append(image)
    return images


SAMPLE_TEXTS = [
    "a red circle above a blue square",
    "Two small green triangles.",
    "an empty striped background",
    "A yellow star next to a large purple circle on a grey floor",
    "",
]


def _check_encoder(encoder: Any, inputs: list, atol: float) -> np.ndarray:
    dim = getattr(encoder, "dim", None)
    if not isinstance(dim, int) or dim <= 0:
        _fail(f"encoder.dim must be a positive int, got {dim!r}")
    try:
        full = validate_vectors(encoder.encode(inputs), len(inputs), dim)
        single = validate_vectors(encoder.encode(inputs[:1]), 1, dim)
        split = [validate_vectors(encoder.encode(inputs[i:i + 2]), len(inputs[i:i + 2]), dim)
                 for i in range(0, len(inputs), 2)]
    except ContractViolation as exc:
        _fail(str(exc))
    if not np.allclose(full[:1], single, atol=atol):
        _fail("encode() results depend on the batch size (first item alone differs)")
    if not np.allclose(full, np.concatenate(split), atol=atol):
        _fail("encode() results depend on the batch size (batches of 2 differ)")
    fingerprint = getattr(encoder, "fingerprint", None)
    if fingerprint is not None:
        first, second = fingerprint(), fingerprint()
        if not isinstance(first, str) or not first or first != second:
            _fail("fingerprint() must return the same non-empty string every call")
    return full


def check_image_encoder(encoder: Any, images: list | None = None, atol: float = 1e-3) -> None:
    """Check ``dim``, ``encode`` shapes/dtypes/finiteness, batch-size invariance, fingerprint."""
    _check_encoder(encoder, images or sample_images(), atol)


def check_text_encoder(encoder: Any, texts: list[str] | None = None, atol: float = 1e-3) -> None:
    """As :func:`check_image_encoder`, for text (including an empty string)."""
    _check_encoder(encoder, texts or SAMPLE_TEXTS, atol)


def check_retriever(
    factory: Callable[..., Any],
    *,
    metrics: tuple[str, ...] = METRICS,
    n: int = 200,
    dim: int = 16,
    k: int = 10,
    min_recall: float = 0.9,
    seed: int = 0,
) -> None:
    """Check a retriever factory against the contract for every metric.

    Builds on clustered random vectors and checks: shapes and dtypes, best-first scores,
    ``-1`` padding when fewer than k items exist, the nearest item of a stored vector is
    itself, recall@k against brute force, and results unchanged by query batch size. Then,
    on data where some vectors are stored several times under shuffled keys: equal scores
    come by ascending key, copies of one vector score alike, and the results do not change
    with the insertion order or the query batch size, except for queries whose recall is
    not exact (what an approximate index may miss).

    ``min_recall=1`` demands exact search: then of a tie at the k-th place, the lowest keys
    must be kept. A retriever with ``uses_labels`` gets one label for every item and query;
    one that knows nothing (the ``random`` bound) passes with ``min_recall=0``.
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(8, dim)).astype(np.float32)
    vectors = (centres[rng.integers(0, 8, n)] + 0.3 * rng.normal(size=(n, dim))).astype(np.float32)
    keys = (np.arange(n, dtype=np.int64) * 7 + 3)  # keys are not row numbers
    queries = vectors[:20] + 0.01 * rng.normal(size=(20, dim)).astype(np.float32)

    for metric in metrics:
        retriever = _built_retriever(factory, dim, metric, vectors, keys)
        found, scores = _checked_search(retriever, queries, k, f"metric {metric}")
        one, _ = _checked_search(retriever, queries[:1], k, f"metric {metric}")
        if not set(found[found >= 0].tolist()) <= set(keys.tolist()):
            _fail(f"metric {metric}: search returned keys that were never added")
        if not np.array_equal(found[:1], one):
            _fail(f"metric {metric}: results depend on the query batch size")
        expected = _brute_force(vectors, keys, queries, k, metric)
        recall = _recall(found, expected).mean()
        if recall < min_recall:
            _fail(f"metric {metric}: recall@{k} {recall:.3f} against brute force < {min_recall}")
        self_found = np.mean(found[:, 0] == keys[:20])
        if metric != "ip" and self_found < min_recall:  # approximate indexes may miss a few
            _fail(f"metric {metric}: a stored vector is its own nearest neighbour for only "
                  f"{self_found:.0%} of queries (< {min_recall:.0%})")

        small = _built_retriever(factory, dim, metric, vectors[:3], keys[:3])
        padded, _ = _checked_search(small, queries[:2], 5, f"metric {metric}, 3 items, k=5")
        if not (padded[:, 3:] == -1).all() or not (padded[:, :3] >= 0).all():
            _fail(f"metric {metric}: with 3 items and k=5, keys must end in two -1 pads, "
                  f"got {padded.tolist()}")

        _check_ties(factory, dim, metric, k, min_recall, rng)


def _built_retriever(factory: Callable[..., Any], dim: int, metric: str, vectors: np.ndarray,
                     keys: np.ndarray) -> Any:
    from ravlm_bench.plugin_host.contracts import capability

    retriever = factory(dim=dim, metric=metric)
    if capability(retriever, "retrievers", "uses_labels"):
        retriever.build(vectors, keys, labels=np.zeros(len(keys), np.int64))
    else:
        retriever.build(vectors, keys)
    return retriever


def _checked_search(retriever: Any, queries: np.ndarray, k: int,
                    where: str) -> tuple[np.ndarray, np.ndarray]:
    from ravlm_bench.plugin_host.contracts import capability

    try:
        if capability(retriever, "retrievers", "uses_labels"):
            result = retriever.search(queries, k, labels=np.zeros(len(queries), np.int64))
        else:
            result = retriever.search(queries, k)
        return validate_search(result, len(queries), k)
    except ContractViolation as exc:
        _fail(f"{where}: {exc}")


def _check_ties(factory: Callable[..., Any], dim: int, metric: str, k: int, min_recall: float,
                rng: np.random.Generator) -> None:
    """Ties on vectors stored several times: see :func:`check_retriever`."""
    vectors, keys, copy_of, queries = _data_with_copies(dim, k, rng)
    where = f"metric {metric}, vectors stored several times"

    def search(order: np.ndarray, batch: int) -> tuple[np.ndarray, np.ndarray]:
        retriever = _built_retriever(factory, dim, metric, vectors[order], keys[order])
        parts = [_checked_search(retriever, queries[start:start + batch], k, where)
                 for start in range(0, len(queries), batch)]
        found = np.concatenate([p[0] for p in parts])
        scores = np.concatenate([p[1] for p in parts])
        _check_tied_rows(found, scores, keys, copy_of, where)
        return found, scores

    expected = _brute_force(vectors, keys, queries, k, metric)
    inserted = np.arange(len(keys))
    found, scores = search(inserted, len(queries))
    exact = _recall(found, expected) == 1.0
    variants = {"the insertion order": (rng.permutation(len(keys)), len(queries)),
                "the query batch size (1)": (inserted, 1),
                "the query batch size (5)": (inserted, 5)}
    for what, (order, batch) in variants.items():
        other, other_scores = search(order, batch)
        changed = (other != found).any(axis=1)
        changed |= ~np.isclose(other_scores, scores, rtol=1e-5, atol=1e-6).all(axis=1)
        changed &= exact & (_recall(other, expected) == 1.0)
        if changed.any():
            i = int(np.flatnonzero(changed)[0])
            _fail(f"{where}: results change with {what}: query {i} got keys "
                  f"{other[i].tolist()}, before {found[i].tolist()}")
    if min_recall >= 1 and not exact.all():  # an approximate index may cut a tie otherwise
        i = int(np.flatnonzero(~exact)[0])
        _fail(f"{where}: query {i} got keys {found[i].tolist()}, expected "
              f"{expected[i].tolist()} (exact search keeps the lowest keys of a tie at the "
              f"k-th place)")


def _data_with_copies(dim: int, k: int, rng: np.random.Generator):
    """Clustered vectors, four of them stored 2, 3, 5 and k + 2 times, in shuffled order under
    shuffled keys: (vectors, keys, copy_of: the first row of each row's vector, queries).

    The queries are the copied vectors themselves (a tie at the top; the largest group is
    cut by the k-th place), the same moved a little, and vectors near the clusters.
    """
    centres = rng.normal(size=(4, dim))
    distinct = (centres[rng.integers(0, 4, 40)] + 0.3 * rng.normal(size=(40, dim)))
    distinct = distinct.astype(np.float32)
    source = np.concatenate([np.arange(4, 40), np.repeat(np.arange(4), [2, 3, 5, k + 2])])
    source = source[rng.permutation(len(source))]
    keys = rng.permutation(len(source)).astype(np.int64) * 5 + 1
    copy_of = np.unique(source, return_index=True)[1][source]
    nearby = centres[rng.integers(0, 4, 4)] + 0.3 * rng.normal(size=(4, dim))
    queries = np.concatenate([distinct[:4], distinct[:4] + 0.01 * rng.normal(size=(4, dim)),
                              nearby]).astype(np.float32)
    return distinct[source], keys, copy_of, queries


def _check_tied_rows(found: np.ndarray, scores: np.ndarray, keys: np.ndarray,
                     copy_of: np.ndarray, where: str) -> None:
    """Within each returned row: copies of one vector score alike, equal scores ascend by key."""
    row_of_key = dict(zip(keys.tolist(), range(len(keys)), strict=True))
    for i, (row_keys, row_scores) in enumerate(zip(found, scores, strict=True)):
        valid = row_keys >= 0
        row_keys, row_scores = row_keys[valid], row_scores[valid]
        if not set(row_keys.tolist()) <= row_of_key.keys():
            _fail(f"{where}: search returned keys that were never added")
        vector = copy_of[[row_of_key[key] for key in row_keys.tolist()]]
        for copy in np.unique(vector):
            same = vector == copy
            if len(set(row_scores[same].tolist())) > 1:
                _fail(f"{where}: copies of one vector must score alike; query {i} got keys "
                      f"{row_keys[same].tolist()} with scores {row_scores[same].tolist()}")
        tied = row_scores[1:] == row_scores[:-1]
        if (tied & (row_keys[1:] <= row_keys[:-1])).any():
            _fail(f"{where}: equal scores must come by ascending key; query {i} got keys "
                  f"{row_keys.tolist()} with scores {row_scores.tolist()}")


def _recall(found: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Per query, the share of the expected keys found."""
    return np.array([len(set(a.tolist()) & set(b.tolist())) / len(b)
                     for a, b in zip(found, expected, strict=True)])


def _brute_force(vectors, keys, queries, k, metric) -> np.ndarray:
    """The exact top-k keys, equal scores by ascending key. Pair by pair in float64, so
    copies of one vector tie exactly (a matrix product may score them apart)."""
    q, v = queries.astype(np.float64), vectors.astype(np.float64)
    if metric == "cos":
        v = v / np.linalg.norm(v, axis=1, keepdims=True)
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
    if metric == "l2sq":
        scores = -((q[:, None, :] - v[None, :, :]) ** 2).sum(-1)
    else:
        scores = (q[:, None, :] * v[None, :, :]).sum(-1)
    order = np.lexsort((np.broadcast_to(keys, scores.shape), -scores), axis=1)
    return keys[order[:, :k]]


# ---------------------------------------------------------------------------------------
# Datasets and publishers
# ---------------------------------------------------------------------------------------

# A split name no dataset has: asking for its table must be a DataError, not a KeyError.
_ABSENT_SPLIT = "conformance-absent-split"


def check_dataset(dataset: Any) -> None:
    """Check a loaded dataset: ``name``, ``root`` and ``kinds`` (record kinds of
    ``RECORD_SCHEMAS``); ``splits()``; each kind's table per split has its schema's columns
    and only rows of that split, with a ``DataError`` for an empty split; image paths are
    absolute and exist; ``fingerprint()`` is a stable non-empty string."""
    _check_dataset_attributes(dataset)
    where = f"dataset {dataset.name!r}"
    splits = _dataset_splits(dataset, where)
    for kind in dataset.kinds:
        tables = _tables_of_kind(dataset, kind, splits, where)
        if not tables:
            _fail(f"{where}: kind {kind!r} has no rows in any of the splits {splits}")
        if kind == "images" and len(tables) < len(splits):
            empty = [s for s in splits if s not in tables]
            _fail(f"{where}: splits() lists {empty} but they have no images")
        for split, table in tables.items():
            _check_table(table, kind, split, f"{where}: table({kind!r}, {split!r})")
    _check_absent_split(dataset, where)
    first, second = dataset.fingerprint(), dataset.fingerprint()
    if not isinstance(first, str) or not first or first != second:
        _fail(f"{where}: fingerprint() must return the same non-empty string every call, "
              f"got {first!r} then {second!r}")


def _check_dataset_attributes(dataset: Any) -> None:
    from pathlib import Path

    from ravlm_bench.plugin_host.contracts import RECORD_SCHEMAS

    name = getattr(dataset, "name", None)
    if not isinstance(name, str) or not name:
        _fail(f"dataset.name must be a non-empty str, got {name!r}")
    root = getattr(dataset, "root", None)
    if not isinstance(root, Path) or not root.is_dir():
        _fail(f"dataset {name!r}: root must be the pathlib.Path of an existing directory, "
              f"got {root!r}")
    kinds = getattr(dataset, "kinds", None)
    if not isinstance(kinds, tuple) or not kinds or len(set(kinds)) != len(kinds):
        _fail(f"dataset {name!r}: kinds must be a non-empty tuple of distinct record kinds, "
              f"got {kinds!r}")
    unknown = [kind for kind in kinds if kind not in RECORD_SCHEMAS]
    if unknown:
        _fail(f"dataset {name!r}: kinds {unknown} are not record kinds of RECORD_SCHEMAS "
              f"({', '.join(RECORD_SCHEMAS)})")


def _dataset_splits(dataset: Any, where: str) -> list[str]:
    splits = dataset.splits()
    if (not isinstance(splits, list) or not splits
            or not all(isinstance(s, str) and s for s in splits)
            or len(set(splits)) != len(splits)):
        _fail(f"{where}: splits() must return a non-empty list of distinct split names, "
              f"got {splits!r}")
    return splits


def _tables_of_kind(dataset: Any, kind: str, splits: list[str], where: str) -> dict:
    """The non-empty tables of ``kind`` by split; an empty split raises DataError."""
    from ravlm_bench.foundation.errors import DataError

    tables = {}
    for split in splits:
        try:
            table = dataset.table(kind, split)
        except DataError:
            continue
        except Exception as exc:
            _fail(f"{where}: table({kind!r}, {split!r}) raised {type(exc).__name__}: {exc} "
                  "(an empty split must raise DataError)")
        if len(table) == 0:
            _fail(f"{where}: table({kind!r}, {split!r}) returned an empty table; an empty "
                  "split must raise DataError")
        tables[split] = table
    return tables


def _check_table(table: Any, kind: str, split: str, where: str) -> None:
    import os

    from ravlm_bench.plugin_host.contracts import RECORD_SCHEMAS

    columns = getattr(table, "column_names", None)
    if not isinstance(columns, list):
        _fail(f"{where}: returned {type(table).__name__}, expected a datasets.Dataset")
    missing = [c for c in RECORD_SCHEMAS[kind] if c not in columns]
    if missing:
        _fail(f"{where}: lacks the columns {missing} of RECORD_SCHEMAS[{kind!r}]")
    other_splits = sorted(set(_column(table, "split")) - {split})
    if other_splits:
        _fail(f"{where}: holds rows whose split column says {other_splits}")
    if kind == "images":
        bad = [p for p in _column(table, "image_path")
               if not (isinstance(p, str) and os.path.isabs(p) and os.path.isfile(p))]
        if bad:
            _fail(f"{where}: {len(bad)} image_path values are not absolute paths of existing "
                  f"files, e.g. {bad[0]!r}")


def _column(table: Any, name: str) -> list:
    # a datasets.Dataset's Arrow table converts a column at once, 150x faster than
    # iterating the Dataset's own column object row by row
    arrow = getattr(table, "data", None)
    column = arrow[name] if hasattr(arrow, "column_names") else table[name]
    return column.to_pylist() if hasattr(column, "to_pylist") else list(column)


def _check_absent_split(dataset: Any, where: str) -> None:
    from ravlm_bench.foundation.errors import DataError

    kind = dataset.kinds[0]
    try:
        dataset.table(kind, _ABSENT_SPLIT)
    except DataError:
        return
    except Exception as exc:
        _fail(f"{where}: table({kind!r}, {_ABSENT_SPLIT!r}) raised {type(exc).__name__}; a "
              "split the dataset does not have must raise DataError")
    _fail(f"{where}: table({kind!r}, {_ABSENT_SPLIT!r}) returned a table for a split the "
          "dataset does not have; it must raise DataError")


def check_publisher(publisher: Any, board: Any, out_dir: Any) -> None:
    """Check a publisher: a non-empty ``suffix`` string, and ``publish(board, out_dir)``
    returns a non-empty list of the paths it wrote, each a non-empty file under ``out_dir``
    (which it creates if needed)."""
    from pathlib import Path

    suffix = getattr(publisher, "suffix", None)
    if not isinstance(suffix, str) or not suffix:
        _fail(f"publisher.suffix must be a non-empty str, got {suffix!r}")
    out_dir = Path(out_dir)
    written = publisher.publish(board, out_dir)
    if not isinstance(written, list) or not written:
        _fail(f"publish() must return a non-empty list of the paths it wrote, got {written!r}")
    for path in written:
        if not isinstance(path, Path):
            _fail(f"publish() returned {path!r} ({type(path).__name__}), expected a Path")
        if not path.resolve().is_relative_to(out_dir.resolve()):
            _fail(f"publish() returned {path}, which is not under out_dir {out_dir}")
        if not path.is_file():
            _fail(f"publish() returned {path}, which is not a file")
        if path.stat().st_size == 0:
            _fail(f"publish() wrote an empty file: {path}")


# ---------------------------------------------------------------------------------------
# Tasks
# ---------------------------------------------------------------------------------------


def check_task(task: Any, dataset: Any, *, seed: int = 0) -> None:
    """Check a task against ``dataset`` (a loaded dataset it reads): its declarations (head
    interface, targets, metrics with exactly one main), ``build`` (the same data for the same
    seed; labels fitting the targets) and ``evaluate`` on outputs of the declared head
    interface: an Evaluation with a value for every declared metric, a resample value per
    bootstrapped metric, the same result twice."""
    from ravlm_bench.plugin_host.contracts import CAPABILITIES, capability
    from ravlm_bench.scoring.evaluation import (
        ClassScores,
        Evaluation,
        Metric,
        Rankings,
        Resampler,
        main_metric,
    )

    name = getattr(task, "name", type(task).__name__)
    head = capability(task, "tasks", "head")
    if head not in ("fusion-head", "joint-embedding"):
        _fail(f"task {name}: head {head!r} is neither 'fusion-head' nor 'joint-embedding'")
    if not isinstance(getattr(task, "dataset", None), str):
        _fail(f"task {name}: dataset must name the dataset plugin it reads")
    metrics = tuple(task.metrics())
    if not metrics or not all(isinstance(m, Metric) for m in metrics):
        _fail(f"task {name}: metrics() must return Metric declarations")
    try:
        main_metric(metrics)
    except ValueError as exc:
        _fail(f"task {name}: {exc}")
    data, again = task.build(dataset, seed), task.build(dataset, seed)
    if len(data.test) == 0 or len(data.train) == 0:
        _fail(f"task {name}: build() gave an empty train or test split")
    if not np.array_equal(np.asarray(data.test.image_ids), np.asarray(again.test.image_ids)):
        _fail(f"task {name}: build() with the same seed gave other test items")
    rng = np.random.default_rng(seed)
    if head == "fusion-head":
        targets = capability(task, "tasks", "targets")
        labels = np.asarray(data.test.labels)
        width = len(data.classes)
        expected_ndim = 2 if targets == "multi-label" else 1
        if labels.ndim != expected_ndim:
            _fail(f"task {name}: {targets} targets need labels of {expected_ndim} dimension(s), "
                  f"got shape {labels.shape}")
        scores = rng.random((len(data.test), width)).astype(np.float32)
        if targets != "multi-label":
            scores /= scores.sum(axis=1, keepdims=True)
        outputs = ClassScores(scores)
    else:
        depth = int(capability(task, "tasks", "ranking_depth") or
                    CAPABILITIES["tasks"]["ranking_depth"])
        n_images, n_captions = len(data.test.image_ids), len(data.test.texts)
        outputs = Rankings(
            t2i=np.stack([rng.permutation(n_images)[:depth] for _ in range(n_captions)]),
            i2t=np.stack([rng.permutation(n_captions)[:depth] for _ in range(n_images)]))
    resampler = Resampler(n_resamples=50)
    first = task.evaluate(data, outputs, resampler)
    second = task.evaluate(data, outputs, resampler)
    if not isinstance(first, Evaluation):
        _fail(f"task {name}: evaluate() returned {type(first).__name__}, not an Evaluation")
    for metric in metrics:
        value = first.metrics.get(metric.name, "missing")
        if value == "missing":
            _fail(f"task {name}: evaluate() did not report the declared metric {metric.name}")
        if value is not None and not np.isfinite(value):
            _fail(f"task {name}: metric {metric.name} is {value}")
        if metric.bootstrap:
            values = first.replicates.get(metric.name)
            if values is None or np.shape(values) != (resampler.n_resamples,):
                _fail(f"task {name}: bootstrapped metric {metric.name} needs one value per "
                      f"resample ({resampler.n_resamples}), got "
                      f"{None if values is None else np.shape(values)}")
            if not np.array_equal(values, second.replicates[metric.name], equal_nan=True):
                _fail(f"task {name}: evaluate() gave other resample values the second time")
    if first.metrics != second.metrics:
        _fail(f"task {name}: evaluate() gave other metrics the second time")


# ---------------------------------------------------------------------------------------
# Fusion heads and joint embeddings
# ---------------------------------------------------------------------------------------

_TARGETS = ("single-label", "multi-label")
_D_IMAGE, _D_TEXT, _CLASSES = 12, 8, 3


def check_fusion_head(factory: Callable[..., Any], *, targets: str = "single-label",
                      seed: int = 0, atol: float = 1e-5) -> None:
    """Check a fusion-head factory, called as ``factory(dim=...)``, against the contract.

    On a small synthetic task with ``targets`` labels (int64, or multi-hot float32 rows), the
    raw items (image files, texts) and, when the head ``uses_retrieval``, its ``k`` nearest
    neighbours by cosine similarity (two rows padded with -1), it checks: the declared
    capabilities; ``fit`` called with only the keywords they allow, with and without
    validation data, returning a ``TrainingReport`` (or a dict); ``predict_proba`` float32
    ``(n, num_classes)``, finite, in [0, 1] (rows summing to 1 for single-label targets),
    the same after two fits with one seed, and the same whatever the batch split.
    """
    import tempfile
    from pathlib import Path

    if targets not in _TARGETS:
        raise ValueError(f"targets must be one of {_TARGETS}, got {targets!r}")
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        head = factory(dim=_D_IMAGE + _D_TEXT)
        _check_head_capabilities(head, targets)
        train, val, test = _synthetic_fusion_splits(head, targets, seed, scratch)
        first = _fit_and_predict(head, train, val, test, seed, scratch / "first")
        _check_proba(first, len(test), targets, "predict_proba")
        again = _fit_and_predict(factory(dim=_D_IMAGE + _D_TEXT), train, val, test, seed,
                                 scratch / "again")
        if not np.allclose(first, again, rtol=0, atol=atol):
            _fail(f"predict_proba differs between two fits with seed {seed} (max difference "
                  f"{np.abs(first - again).max():.3g}); seed every source of randomness "
                  f"(ravlm_bench.api.seed_everything)")
        parts = []
        for part in (slice(0, 1), slice(1, 5), slice(5, len(test))):
            parts.append(head.predict_proba(_fusion_rows(test, part)))
            _check_proba(parts[-1], part.stop - part.start, targets,
                         f"predict_proba of rows {part.start}:{part.stop}")
        split = np.concatenate(parts)
        if not np.allclose(first, split, rtol=0, atol=atol):
            _fail(f"predict_proba depends on how its inputs are batched (max difference "
                  f"{np.abs(first - split).max():.3g} between all rows at once and batches "
                  f"of 1, 4 and 7): an item's probabilities must depend on that item alone")
        without_val = _fit_and_predict(factory(dim=_D_IMAGE + _D_TEXT), train, None, test, seed,
                                       scratch / "without-val")
        _check_proba(without_val, len(test), targets, "predict_proba after fit(train, None)")


def _check_head_capabilities(head: Any, targets: str) -> None:
    from ravlm_bench.plugin_host.contracts import CAPABILITIES, capability

    declared = {name: capability(head, "fusion-heads", name)
                for name in CAPABILITIES["fusion-heads"]}
    for flag in ("uses_retrieval", "data_parallel", "checkpoints"):
        if not isinstance(declared[flag], bool):
            _fail(f"the head's {flag} must be a bool, got {declared[flag]!r}")
    forms = declared["targets"]
    if not (isinstance(forms, tuple) and forms and all(form in _TARGETS for form in forms)):
        _fail(f"the head's targets must be a non-empty tuple of {_TARGETS}, got {forms!r}")
    if targets not in forms:
        _fail(f"the head declares targets {forms}, which lack {targets!r}")
    k = declared["k"]
    if declared["uses_retrieval"] and (not isinstance(k, int) or isinstance(k, bool) or k < 1):
        _fail(f"a head that uses retrieval must declare k, a positive int, got {k!r}")
    for method in ("fit", "predict_proba"):
        if not callable(getattr(head, method, None)):
            _fail(f"the head has no {method}() method")
    _check_training_keywords(head.fit, "fit", declared)


def _check_training_keywords(fit: Callable[..., Any], what: str, declared: dict) -> None:
    """A declared capability promises a keyword: ``checkpoints`` -> checkpoint_dir=,
    ``data_parallel`` -> dist=."""
    import inspect

    parameters = inspect.signature(fit).parameters
    open_ = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    for flag, keyword in (("checkpoints", "checkpoint_dir"), ("data_parallel", "dist")):
        if declared[flag] and not open_ and keyword not in parameters:
            _fail(f"{flag} = True is declared but {what}() takes no {keyword}=")


def _synthetic_fusion_splits(head: Any, targets: str, seed: int, scratch) -> tuple:
    """(train, val, test) FusionInputs; the training split is the knowledge base."""
    from ravlm_bench.plugin_host.contracts import FusionInputs, KnowledgeBase, capability

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(_CLASSES, _D_IMAGE + _D_TEXT))
    items = {name: _synthetic_items(n, targets, centres, rng, first_id)
             for name, n, first_id in (("train", 48, 0), ("val", 12, 1000), ("test", 12, 2000))}
    kb_x, kb_labels, kb_ids = items["train"]
    kb = KnowledgeBase(image=kb_x[:, :_D_IMAGE], text=kb_x[:, _D_IMAGE:], labels=kb_labels,
                       image_ids=kb_ids)
    uses_retrieval = capability(head, "fusion-heads", "uses_retrieval")
    k = capability(head, "fusion-heads", "k") if uses_retrieval else 0
    splits = []
    for name, (x, labels, ids) in items.items():
        rows, scores = _cosine_neighbours(x, kb_x, k, exclude_self=name == "train")
        paths = []
        for i, image in enumerate(sample_images(len(x), size=32, seed=seed + len(splits))):
            paths.append(str(scratch / f"{name}-{i}.png"))
            image.save(paths[-1])
        splits.append(FusionInputs(
            image=x[:, :_D_IMAGE].copy(), text=x[:, _D_IMAGE:].copy(), neighbours=rows,
            neighbour_scores=scores, knowledge=kb, num_classes=_CLASSES,
            labels=None if name == "test" else labels, image_ids=ids, image_paths=paths,
            texts=[f"a photo of item {i} in the {name} split" for i in range(len(x))]))
    return tuple(splits)


def _synthetic_items(n: int, targets: str, centres: np.ndarray, rng, first_id: int) -> tuple:
    """Features near their classes' centres, and labels: every class in every split."""
    one_hot = np.eye(_CLASSES)[np.arange(n) % _CLASSES]
    if targets == "single-label":
        labels = (np.arange(n) % _CLASSES).astype(np.int64)
        membership = one_hot
    else:
        membership = np.maximum(one_hot, rng.random((n, _CLASSES)) < 0.3)
        labels = membership.astype(np.float32)
    x = membership @ centres / membership.sum(axis=1, keepdims=True)
    x = (x + 0.5 * rng.normal(size=x.shape)).astype(np.float32)
    return x, labels, np.arange(first_id, first_id + n, dtype=np.int64)


def _cosine_neighbours(queries: np.ndarray, kb: np.ndarray, k: int,
                       exclude_self: bool) -> tuple[np.ndarray, np.ndarray]:
    """Best-first knowledge-base rows and scores, as the harness passes them: -1 rows with
    score 0 pad; row 0 keeps one neighbour and row 1 none, the cases heads get wrong."""
    rows = np.full((len(queries), k), -1, np.int64)
    scores = np.zeros((len(queries), k), np.float32)
    if k == 0:
        return rows, scores
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    v = kb / np.linalg.norm(kb, axis=1, keepdims=True)
    similarity = q.astype(np.float64) @ v.T.astype(np.float64)
    if exclude_self:
        np.fill_diagonal(similarity, -np.inf)
    found = min(k, len(kb) - int(exclude_self))
    order = np.argsort(-similarity, axis=1, kind="stable")[:, :found]
    rows[:, :found] = order
    scores[:, :found] = np.take_along_axis(similarity, order, axis=1)
    rows[0, 1:], scores[0, 1:] = -1, 0.0
    rows[1, :], scores[1, :] = -1, 0.0
    return rows, scores


def _fusion_rows(inputs: Any, part: slice) -> Any:
    import dataclasses

    def cut(value):
        return None if value is None else value[part]

    return dataclasses.replace(
        inputs, image=inputs.image[part], text=inputs.text[part],
        neighbours=inputs.neighbours[part], neighbour_scores=inputs.neighbour_scores[part],
        labels=cut(inputs.labels), image_ids=cut(inputs.image_ids),
        image_paths=cut(inputs.image_paths), texts=cut(inputs.texts))


def _training_kwargs(component: Any, kind: str, checkpoint_dir) -> dict:
    """The keywords a component's declared capabilities allow: a fresh checkpoint directory,
    a one-process distributed context."""
    from ravlm_bench.foundation.distributed import DistContext
    from ravlm_bench.plugin_host.contracts import capability

    kwargs: dict[str, Any] = {}
    if capability(component, kind, "checkpoints"):
        kwargs["checkpoint_dir"] = checkpoint_dir
    if capability(component, kind, "data_parallel"):
        kwargs["dist"] = DistContext()
    return kwargs


def _check_report(report: Any, what: str) -> None:
    from ravlm_bench.plugin_host.contracts import TrainingReport

    if not isinstance(report, (TrainingReport, dict)):
        _fail(f"{what} returned {type(report).__name__}, expected a TrainingReport "
              f"(or a dict)")


def _fit_and_predict(head: Any, train, val, test, seed: int, checkpoint_dir) -> np.ndarray:
    kwargs = _training_kwargs(head, "fusion-heads", checkpoint_dir)
    _check_report(head.fit(train, val, seed=seed, **kwargs), "fit")
    return head.predict_proba(test)


def _check_proba(proba: Any, n: int, targets: str, what: str) -> None:
    from ravlm_bench.plugin_host.contracts import validate_proba

    try:
        validate_proba(proba, n, _CLASSES)
    except ContractViolation as exc:
        _fail(f"{what}: {str(exc).removeprefix('predict_proba ')}")
    if proba.min() < -1e-6 or proba.max() > 1 + 1e-6:
        _fail(f"{what}: probabilities must lie in [0, 1], got values from {proba.min():.3g} "
              f"to {proba.max():.3g}")
    if targets == "single-label":
        worst = float(np.abs(proba.astype(np.float64).sum(axis=1) - 1.0).max())
        if worst > 1e-4:
            _fail(f"{what}: single-label rows must sum to 1 (class probabilities); a row is "
                  f"{worst:.3g} off")


def check_joint_embedding(factory: Callable[..., Any], *, seed: int = 0,
                          atol: float = 1e-5) -> None:
    """Check a joint-embedding factory, called as ``factory(dim=...)``, against the contract.

    On small synthetic (image, caption) pairs, two captions per image: the declared
    capabilities; ``fit_pairs`` called with only the keywords they allow, returning a
    ``TrainingReport`` (or a dict); ``embed_images`` and ``embed_texts`` float32 ``(n, d)``
    of one width ``d``, finite, the same after two fits with one seed, and the same for any
    batch size.
    """
    import tempfile
    from pathlib import Path

    from ravlm_bench.plugin_host.contracts import CAPABILITIES, capability

    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(24, 6))
    image = (latent @ rng.normal(size=(6, _D_IMAGE))
             + 0.3 * rng.normal(size=(24, _D_IMAGE))).astype(np.float32)
    caption_image = np.repeat(np.arange(24, dtype=np.int64), 2)
    text = (latent[caption_image] @ rng.normal(size=(6, _D_TEXT))
            + 0.3 * rng.normal(size=(48, _D_TEXT))).astype(np.float32)
    with tempfile.TemporaryDirectory() as scratch:
        model = factory(dim=_D_IMAGE + _D_TEXT)
        declared = {flag: capability(model, "joint-embeddings", flag)
                    for flag in CAPABILITIES["joint-embeddings"]}
        for flag, value in declared.items():
            if not isinstance(value, bool):
                _fail(f"the joint embedding's {flag} must be a bool, got {value!r}")
        for method in ("fit_pairs", "embed_images", "embed_texts"):
            if not callable(getattr(model, method, None)):
                _fail(f"the joint embedding has no {method}() method")
        _check_training_keywords(model.fit_pairs, "fit_pairs", declared)
        first = _fit_and_embed(model, image, text, caption_image, seed, Path(scratch) / "a")
        again = _fit_and_embed(factory(dim=_D_IMAGE + _D_TEXT), image, text, caption_image,
                               seed, Path(scratch) / "b")
    for side, ours, other in zip(("embed_images", "embed_texts"), first, again, strict=True):
        if not np.allclose(ours, other, rtol=0, atol=atol):
            _fail(f"{side} differs between two fits with seed {seed} (max difference "
                  f"{np.abs(ours - other).max():.3g}); seed every source of randomness")
    for side, inputs, full in (("embed_images", image, first[0]),
                               ("embed_texts", text, first[1])):
        embed = getattr(model, side)
        split = np.concatenate([_embedding(embed(inputs[part]), len(inputs[part]), side)
                                for part in (slice(0, 1), slice(1, 6), slice(6, None))])
        if not np.allclose(full, split, rtol=0, atol=atol):
            _fail(f"{side} depends on the batch size (max difference "
                  f"{np.abs(full - split).max():.3g} between all rows at once and batches "
                  f"of 1, 5 and the rest)")


def _fit_and_embed(model: Any, image, text, caption_image, seed: int,
                   checkpoint_dir) -> tuple[np.ndarray, np.ndarray]:
    kwargs = _training_kwargs(model, "joint-embeddings", checkpoint_dir)
    _check_report(model.fit_pairs(image, text, caption_image, seed=seed, **kwargs),
                  "fit_pairs")
    images = _embedding(model.embed_images(image), len(image), "embed_images")
    texts = _embedding(model.embed_texts(text), len(text), "embed_texts")
    if images.shape[1] != texts.shape[1]:
        _fail(f"embed_images gives {images.shape[1]}-wide vectors but embed_texts "
              f"{texts.shape[1]}-wide: both must be in one space")
    return images, texts


def _embedding(out: Any, n: int, what: str) -> np.ndarray:
    if not isinstance(out, np.ndarray) or out.ndim != 2 or out.shape[1] < 1:
        _fail(f"{what} returned {getattr(out, 'shape', type(out).__name__)}, expected a "
              f"float32 array (n, d)")
    try:
        return validate_vectors(out, n, out.shape[1], what=what)
    except ContractViolation as exc:
        _fail(str(exc))
