"""Metrics: classification scores with bootstrap intervals, and image-text Recall@K.

Classification follows scikit-learn (``average="weighted"``, ``zero_division=0``) over the
label space ``range(num_classes)``. A test label of ``-1`` (an item whose answer lies outside
the label space) is kept, never dropped, and counts as wrong everywhere: it is a false
positive of whatever class was predicted for it, and it forms an "outside" class of its own
that no prediction can hit (precision, recall and F1 of 0, weighted by its support), exactly
as scikit-learn scores ``labels=[*range(num_classes), -1]``. So weighted recall still equals
accuracy, as it must for single-label classification.

Bootstrap resamples test items, or the clusters they form (their images), with
replacement. Every resample is scored from per-class counts (true positives, true and
predicted totals, each item weighted by how often it was drawn) computed for all resamples
at once, so 1,000 resamples of 1,000 items take milliseconds; the counts reproduce
scikit-learn's ``sample_weight`` exactly.

Recall@K is CLIP_benchmark's: from a joint embedding's rankings, :func:`ranking_hits` flags
each caption whose image is in its top K and each image with one of its captions in its top
K, and :func:`recall_from_hits` averages the flags, on the whole test split or per resample
of the test images (each drawn image bringing its captions).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from ravlm_bench.foundation.errors import ConfigError
from ravlm_bench.scoring.resampling import Resampler, interval

CLASSIFICATION_METRICS = (
    "weighted_precision", "weighted_recall", "weighted_f1", "accuracy", "macro_f1",
    "head_f1", "tail_f1",
)
RETRIEVAL_KS = (1, 5, 10)

# Per-class counts, one row per resample: true positives, true totals, predicted totals (each
# (B, num_classes + 1)), and the correct count (B,).
ClassCounts = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


# ---------------------------------------------------------------------------------------
# Classification
# ---------------------------------------------------------------------------------------


def head_tail_classes(train_counts: Sequence[int] | np.ndarray, head_fraction: float = 0.5
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Split classes into head and tail by training frequency.

    Classes are sorted by training count, most frequent first (ties: lower class index
    first). The head is the shortest prefix of that order whose training items add up to at
    least ``head_fraction`` of all training items; the tail is every other class. With
    ``head_fraction=0.5`` the head holds the frequent classes covering half the training set.
    """
    counts = np.asarray(train_counts, dtype=np.int64)
    if not 0.0 < head_fraction <= 1.0:
        raise ConfigError(f"head_fraction must be in (0, 1], got {head_fraction}")
    order = np.argsort(-counts, kind="stable")
    total = counts.sum()
    if total <= 0:
        return np.array([], dtype=np.int64), np.arange(len(counts), dtype=np.int64)
    covered = np.cumsum(counts[order])
    n_head = int(np.searchsorted(covered, head_fraction * total, side="left")) + 1
    return np.sort(order[:n_head]), np.sort(order[n_head:])


def _check_labels(y_true: npt.ArrayLike, y_pred: npt.ArrayLike, num_classes: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    true = np.asarray(y_true, dtype=np.int64).ravel()
    pred = np.asarray(y_pred, dtype=np.int64).ravel()
    if true.shape != pred.shape:
        raise ValueError(f"y_true has {len(true)} items but y_pred has {len(pred)}")
    for label, arr in (("y_true", true), ("y_pred", pred)):
        if arr.size and (arr.min() < -1 or arr.max() >= num_classes):
            raise ValueError(f"{label} holds labels outside -1..{num_classes - 1}")
    return true, pred


def _class_counts(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int,
                  weights: np.ndarray | None = None) -> ClassCounts:
    """Per-class (tp, true, pred) counts and the correct count, per resample.

    ``weights`` (B, n) says how often each item is drawn in each resample; None means the
    data as given (one "resample"). Label -1 goes to an extra last slot: the "outside"
    class, which a correct prediction can never hit.
    """
    width = num_classes + 1
    true_slot = np.where(y_true < 0, num_classes, y_true)
    pred_slot = np.where(y_pred < 0, num_classes, y_pred)
    hit_slot = np.where((y_true == y_pred) & (y_true >= 0), y_true, num_classes)
    if weights is None:
        weights = np.ones((1, len(y_true)))
    n_resamples = weights.shape[0]
    offsets = (np.arange(n_resamples, dtype=np.int64) * width)[:, None]
    flat_weights = weights.ravel()

    def count(slots: np.ndarray) -> np.ndarray:
        flat = (slots[None, :] + offsets).ravel()
        return np.bincount(flat, weights=flat_weights, minlength=n_resamples * width
                           ).reshape(n_resamples, width)

    true, pred, tp = count(true_slot), count(pred_slot), count(hit_slot)
    tp[:, num_classes] = 0  # hit_slot parks wrong items there; the outside class has no hits
    correct = tp.sum(axis=1)
    return tp, true, pred, correct


def _divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    # zero_division=0, as scikit-learn is asked to do
    out = np.zeros(np.broadcast(num, den).shape, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _scores_from_counts(tp: np.ndarray, true: np.ndarray, pred: np.ndarray,
                        correct: np.ndarray, head: np.ndarray,
                        tail: np.ndarray) -> dict[str, np.ndarray]:
    """Every classification metric, one value per resample (row of the counts)."""
    precision = _divide(tp, pred)
    recall = _divide(tp, true)
    f1 = _divide(2 * tp, true + pred)  # = 2PR/(P+R), and 0 where undefined

    def weighted(values: np.ndarray, columns: np.ndarray | None = None) -> np.ndarray:
        if columns is not None:
            values, weights = values[:, columns], true[:, columns]
        else:
            weights = true
        total = weights.sum(axis=1)
        return _divide((values * weights).sum(axis=1), total)

    # macro-F1 averages the classes that occur (as a true or predicted label) in the data
    present = (true + pred) > 0
    macro = _divide((f1 * present).sum(axis=1), present.sum(axis=1))
    return {
        "weighted_precision": weighted(precision),
        "weighted_recall": weighted(recall),
        "weighted_f1": weighted(f1),
        "accuracy": _divide(correct, true.sum(axis=1)),
        "macro_f1": macro,
        "head_f1": weighted(f1, head) if len(head) else np.full(len(tp), np.nan),
        "tail_f1": weighted(f1, tail) if len(tail) else np.full(len(tp), np.nan),
    }


def _bootstrap_scores(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int,
                      head: np.ndarray, tail: np.ndarray, resampler: Resampler,
                      clusters: npt.ArrayLike | None) -> dict[str, np.ndarray]:
    """Every metric on each of ``resampler``'s resamples of the test items' clusters (of
    the items, without ``clusters``)."""
    units = np.arange(len(y_true)) if clusters is None else np.asarray(clusters)
    if len(units) != len(y_true):
        raise ValueError(f"clusters has {len(units)} ids for {len(y_true)} test items")
    parts: list[dict[str, np.ndarray]] = []
    for weights in resampler.weights(units):
        counts = _class_counts(y_true, y_pred, num_classes, weights)
        parts.append(_scores_from_counts(*counts, head, tail))
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _none_if_nan(value: float) -> float | None:
    return None if not np.isfinite(value) else float(value)


def classification_metrics(
    y_true: npt.ArrayLike,
    y_pred: npt.ArrayLike,
    *,
    num_classes: int,
    train_counts: Sequence[int] | np.ndarray,
    classes: Sequence[str] | None = None,
    head_fraction: float = 0.5,
    seed: int = 0,
    n_bootstrap: int = 1000,
    resampler: Resampler | None = None,
    clusters: npt.ArrayLike | None = None,
) -> dict[str, Any]:
    """Weighted P/R/F1, accuracy, macro-F1, head/tail F1 and their 95% bootstrap intervals.

    :param y_true: int labels in ``-1..num_classes-1`` (-1: outside the label space).
    :param y_pred: predicted labels in ``0..num_classes-1`` (-1 counts as wrong).
    :param train_counts: training items per class, for the head/tail split
        (:func:`head_tail_classes`).
    :param classes: class names; only used to name the head classes in the result.
    :returns: ``{"weighted_precision", "weighted_recall", "weighted_f1", "accuracy",
        "macro_f1", "head_f1", "tail_f1", "ci95": {metric: [lo, hi] | None},
        "details": {"n_items", "n_outside_label_space", "head_classes"}}``, plus
        ``"replicates": {metric: (n_resamples,) values}`` when ``resampler`` is given.

    * weighted P/R/F1: scikit-learn, ``average="weighted"``, ``zero_division=0``, over the
      labels ``[*range(num_classes), -1]``: the outside class ``-1`` is scored too (see the
      module docstring), so its items weigh in with precision, recall and F1 of 0.
    * macro-F1: the unweighted mean of per-class F1 over the classes that occur as a true or
      a predicted label (scikit-learn's default label set), the outside class included
      when a test item has label ``-1``.
    * head_f1 / tail_f1: support-weighted mean F1 over the head / tail classes
      (``f1_score(labels=head, average="weighted")``); None when a group is empty or has no
      test items.
    * ci95: percentile intervals (2.5, 97.5), bias-corrected for macro-F1
      (:func:`~ravlm_bench.scoring.resampling.bias_corrected_interval`), over resamples of
      the test items: those of
      ``resampler`` (shared by every cell of a run, so cells can be paired), else
      ``n_bootstrap`` resamples drawn from ``Resampler(n_bootstrap, seed)``. With
      ``clusters`` (one id per test item, e.g. its image id) a resample draws clusters,
      each bringing all its items (:meth:`Resampler.weights`); without, it draws items.
    """
    if len(train_counts) != num_classes:
        raise ValueError(f"train_counts has {len(train_counts)} entries, expected {num_classes}")
    true, pred = _check_labels(y_true, y_pred, num_classes)
    if not len(true):
        raise ValueError("no test items to score")
    head, tail = head_tail_classes(train_counts, head_fraction)

    point = _scores_from_counts(*_class_counts(true, pred, num_classes), head, tail)
    result: dict[str, Any] = {name: _none_if_nan(values[0]) for name, values in point.items()}
    # a group without test items has no F1 to report
    true_counts = np.bincount(true[true >= 0], minlength=num_classes)
    for name, group in (("head_f1", head), ("tail_f1", tail)):
        if not len(group) or true_counts[group].sum() == 0:
            result[name] = None

    ci95: dict[str, list[float] | None] = {}
    shared = resampler is not None
    if resampler is None and n_bootstrap > 0:
        resampler = Resampler(n_bootstrap, seed)
    if resampler is not None:
        samples = _bootstrap_scores(true, pred, num_classes, head, tail, resampler, clusters)
        for name in CLASSIFICATION_METRICS:
            if result[name] is None:
                samples[name] = np.full(resampler.n_resamples, np.nan)
            method = "bias-corrected" if name == "macro_f1" else "percentile"
            ci95[name] = (interval(samples[name], result[name], method)
                          if result[name] is not None else None)
        if shared:
            result["replicates"] = samples
    result["ci95"] = ci95
    result["details"] = {
        "n_items": int(len(true)),
        "n_outside_label_space": int((true < 0).sum()),
        "head_classes": [classes[i] for i in head] if classes is not None else head.tolist(),
    }
    return result


def per_class_report(y_true: npt.ArrayLike, y_pred: npt.ArrayLike, *, num_classes: int,
                     classes: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """Per-class precision, recall, F1 and support (scikit-learn, ``zero_division=0``).

    Keys are the class names (``classes``) or the class indices as strings.
    """
    from sklearn.metrics import precision_recall_fscore_support

    true, pred = _check_labels(y_true, y_pred, num_classes)
    names = list(classes) if classes is not None else [str(i) for i in range(num_classes)]
    if len(names) != num_classes:
        raise ValueError(f"classes has {len(names)} names, expected {num_classes}")
    precision, recall, f1, support = precision_recall_fscore_support(
        true, pred, labels=list(range(num_classes)), average=None, zero_division=0)
    return {
        name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for name, p, r, f, s in zip(names, precision, recall, f1, support, strict=True)
    }


# ---------------------------------------------------------------------------------------
# Retrieval (as CLIP_benchmark's zeroshot_retrieval computes it)
# ---------------------------------------------------------------------------------------


def ranking_hits(t2i_ranked_images: npt.ArrayLike, i2t_ranked_captions: npt.ArrayLike,
                 caption_image: npt.ArrayLike, ks: Sequence[int] = RETRIEVAL_KS
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Per query, whether a correct result is in its top K, for each K.

    :param t2i_ranked_images: int (n_captions, >= max(ks)): image rows, best first, per caption.
    :param i2t_ranked_captions: int (n_images, >= max(ks)): caption rows, best first, per image.
    :param caption_image: int (n_captions,): the image row of each caption.
    Rows are positions in the image / caption arrays (map retriever keys to rows first);
    ``-1`` pads rankings shorter than K and never matches.

    Returns bool ``(n_captions, len(ks))`` (the caption's image in its top K) and bool
    ``(n_images, len(ks))`` (one of the image's captions in its top K);
    :func:`recall_from_hits` averages them into text-to-image and image-to-text R@K.
    """
    caption_image = np.asarray(caption_image, dtype=np.int64)
    t2i = np.asarray(t2i_ranked_images, dtype=np.int64)
    i2t = np.asarray(i2t_ranked_captions, dtype=np.int64)
    n_captions = len(caption_image)
    if t2i.ndim != 2 or len(t2i) != n_captions:
        raise ValueError(f"t2i rankings must have one row per caption ({n_captions}), "
                         f"got shape {t2i.shape}")
    if i2t.ndim != 2:
        raise ValueError(f"i2t rankings must be 2-D, got shape {i2t.shape}")
    n_images = len(i2t)
    if n_captions and (caption_image.min() < 0 or caption_image.max() >= n_images):
        raise ValueError(f"caption_image must index the {n_images} images")
    if (caption_image.size and np.bincount(caption_image, minlength=n_images).min() == 0):
        raise ValueError("every image needs at least one caption (CLIP_benchmark's definition)")
    needed = max(ks)
    for label, ranked in (("t2i", t2i), ("i2t", i2t)):
        if ranked.shape[1] < needed:
            raise ValueError(f"{label} rankings have {ranked.shape[1]} columns; R@{needed} "
                             f"needs {needed}")
    t2i_hits = t2i == caption_image[:, None]  # (n_captions, depth)
    owner = np.where(i2t >= 0, caption_image[np.clip(i2t, 0, None)], -1)
    i2t_hits = owner == np.arange(n_images)[:, None]  # (n_images, depth)
    return (np.stack([t2i_hits[:, :k].any(axis=1) for k in ks], axis=1),
            np.stack([i2t_hits[:, :k].any(axis=1) for k in ks], axis=1))


def recall_from_hits(t2i_hits: np.ndarray, i2t_hits: np.ndarray,
                     ks: Sequence[int] = RETRIEVAL_KS, image_weights: np.ndarray | None = None,
                     caption_image: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Recall@K per resample from the hit flags of :func:`ranking_hits` (bool
    ``(n_captions, len(ks))`` and ``(n_images, len(ks))``) and ``image_weights`` float
    ``(B, n_images)``: how often each image is drawn in each resample, a drawn image
    bringing its captions (``caption_image``); None scores the data as given. Returns
    ``i2t_R@K``, ``t2i_R@K`` and ``mean_recall``, each float64 ``(B,)``."""
    if image_weights is None:
        image_weights, caption_weights = np.ones((1, len(i2t_hits))), np.ones((1, len(t2i_hits)))
    elif caption_image is None:
        raise ValueError("image_weights need caption_image to weigh the captions")
    else:
        caption_weights = image_weights[:, caption_image]
    i2t = (image_weights @ i2t_hits.astype(np.float64)) / image_weights.sum(axis=1)[:, None]
    t2i = (caption_weights @ t2i_hits.astype(np.float64)) / caption_weights.sum(axis=1)[:, None]
    result: dict[str, np.ndarray] = {}
    for j, k in enumerate(ks):
        result[f"i2t_R@{k}"] = i2t[:, j]
    for j, k in enumerate(ks):
        result[f"t2i_R@{k}"] = t2i[:, j]
    result["mean_recall"] = np.mean(np.stack(list(result.values())), axis=0)
    return result
