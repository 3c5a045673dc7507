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

from ravlm_bench.contracts import (
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
    itself, recall@k against brute force, and results unchanged by query batch size.
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(8, dim)).astype(np.float32)
    vectors = (centres[rng.integers(0, 8, n)] + 0.3 * rng.normal(size=(n, dim))).astype(np.float32)
    keys = (np.arange(n, dtype=np.int64) * 7 + 3)  # keys are not row numbers
    queries = vectors[:20] + 0.01 * rng.normal(size=(20, dim)).astype(np.float32)

    for metric in metrics:
        retriever = factory(dim=dim, metric=metric)
        retriever.build(vectors, keys)
        try:
            found, scores = validate_search(retriever.search(queries, k), len(queries), k)
            one, _ = validate_search(retriever.search(queries[:1], k), 1, k)
        except ContractViolation as exc:
            _fail(f"metric {metric}: {exc}")
        if not set(found[found >= 0].tolist()) <= set(keys.tolist()):
            _fail(f"metric {metric}: search returned keys that were never added")
        if not np.array_equal(found[:1], one):
            _fail(f"metric {metric}: results depend on the query batch size")
        expected = _brute_force(vectors, keys, queries, k, metric)
        recall = np.mean([len(set(a) & set(b)) / k for a, b in zip(found, expected, strict=True)])
        if recall < min_recall:
            _fail(f"metric {metric}: recall@{k} {recall:.3f} against brute force < {min_recall}")
        self_found = np.mean(found[:, 0] == keys[:20])
        if metric != "ip" and self_found < min_recall:  # approximate indexes may miss a few
            _fail(f"metric {metric}: a stored vector is its own nearest neighbour for only "
                  f"{self_found:.0%} of queries (< {min_recall:.0%})")

        small = factory(dim=dim, metric=metric)
        small.build(vectors[:3], keys[:3])
        try:
            padded, padded_scores = validate_search(small.search(queries[:2], 5), 2, 5)
        except ContractViolation as exc:
            _fail(f"metric {metric}, 3 items, k=5: {exc}")
        if not (padded[:, 3:] == -1).all() or not (padded[:, :3] >= 0).all():
            _fail(f"metric {metric}: with 3 items and k=5, keys must end in two -1 pads, "
                  f"got {padded.tolist()}")


def _brute_force(vectors, keys, queries, k, metric) -> np.ndarray:
    if metric == "cos":
        v = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
        scores = q @ v.T
    elif metric == "ip":
        scores = queries @ vectors.T
    else:
        scores = -((queries[:, None, :] - vectors[None, :, :]) ** 2).sum(-1)
    return keys[np.argsort(-scores, axis=1, kind="stable")[:, :k]]
