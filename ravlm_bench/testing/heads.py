"""Conformance checks for fusion heads and joint embeddings: training on synthetic data,
well-formed probabilities or embeddings, declared capabilities."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ravlm_bench.plugin_host.contracts import (
    ContractViolation,
    validate_vectors,
)
from ravlm_bench.testing._common import _fail, sample_images

_TARGETS = ("single-label", "multi-label")
_D_IMAGE, _D_TEXT, _CLASSES = 12, 8, 3


def check_fusion_head(factory: Callable[..., Any], *, targets: str = "single-label",
                      seed: int = 0, atol: float = 1e-5) -> None:
    """Check a fusion-head factory, called as ``factory(dim=...)``, against the contract.

    On a small synthetic task with ``targets`` labels (int64, or multi-hot float32 rows), the
    raw items (image files, texts) and, when the head ``uses_retrieval``, its ``k`` nearest
    neighbours by cosine similarity (two rows padded with -1), it checks: the declared
    capabilities; ``fit`` called with only the keywords they allow, with and without
    validation data, returning a ``TrainingReport``; ``predict_proba`` float32
    ``(n, num_classes)``, finite, in [0, 1] (rows summing to 1 for single-label targets),
    the same after two fits with one seed, and the same whatever the batch split.
    """
    import tempfile
    from pathlib import Path

    if targets not in _TARGETS:
        raise ValueError(f"targets must be one of {_TARGETS}, got {targets!r}")
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
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
    # the class names, and knowledge-base texts that name their items' classes: what a
    # reader that looks for answers in retrieved texts gets from the harness
    classes = [f"class {chr(ord('a') + c)}" for c in range(_CLASSES)]
    members = (kb_labels[:, None] == np.arange(_CLASSES) if kb_labels.ndim == 1
               else kb_labels > 0)
    kb_texts = [f"item {i} is of " + " and ".join(classes[c] for c in np.flatnonzero(row))
                for i, row in enumerate(members)]
    kb = KnowledgeBase(image=kb_x[:, :_D_IMAGE], text=kb_x[:, _D_IMAGE:], labels=kb_labels,
                       image_ids=kb_ids, texts=kb_texts,
                       evidence=[f"item-{i}" for i in kb_ids.tolist()])
    uses_retrieval = capability(head, "fusion-heads", "uses_retrieval")
    k = capability(head, "fusion-heads", "k") if uses_retrieval else 0
    splits: list[Any] = []
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
            texts=[f"a photo of item {i} in the {name} split" for i in range(len(x))],
            classes=classes))
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

    if not isinstance(report, TrainingReport):
        _fail(f"{what} returned {type(report).__name__}, expected a TrainingReport")


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
    capabilities; ``fit_pairs`` (``fit_evidence`` for a key learned from evidence: the images
    as knowledge-base items, a noisy copy of its image per caption as the queries) called
    with only the keywords they allow, returning a ``TrainingReport``; ``embed_images`` and
    ``embed_texts`` float32 ``(n, d)`` of one width ``d``, finite, the same after two fits
    with one seed, and the same for any batch size.
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
        fit = "fit_evidence" if declared["evidence"] else "fit_pairs"
        for method in (fit, "embed_images", "embed_texts"):
            if not callable(getattr(model, method, None)):
                _fail(f"the joint embedding has no {method}() method")
        _check_training_keywords(getattr(model, fit), fit, declared)
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
    from ravlm_bench.plugin_host.contracts import capability

    kwargs = _training_kwargs(model, "joint-embeddings", checkpoint_dir)
    if capability(model, "joint-embeddings", "evidence"):
        # each caption's image is its query; the knowledge base: the images, perturbed
        rng = np.random.default_rng(seed)
        queries = (image[caption_image]
                   + 0.1 * rng.normal(size=(len(caption_image), image.shape[1]))
                   ).astype(np.float32)
        report = model.fit_evidence(queries, text, image, text[::2], caption_image,
                                    seed=seed, **kwargs)
        _check_report(report, "fit_evidence")
    else:
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
