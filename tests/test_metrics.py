"""Metrics against scikit-learn and brute-force reimplementations of their definitions."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

from ravlm_bench.scoring.evaluation import Resampler
from ravlm_bench.scoring.metrics import (
    classification_metrics,
    head_tail_classes,
    per_class_report,
    ranking_hits,
    recall_from_hits,
)
from ravlm_bench.scoring.ranking import exact_top_k


def noisy_predictions(rng, y_true, num_classes, accuracy):
    keep = rng.random(len(y_true)) < accuracy
    return np.where(keep, np.clip(y_true, 0, None), rng.integers(0, num_classes, len(y_true)))


@pytest.fixture
def labelled():
    rng = np.random.default_rng(7)
    num_classes = 6
    # skewed classes, a few items outside the label space (-1), one class never in the test set
    y_true = rng.choice([-1, 0, 1, 2, 3, 4], size=300, p=[0.05, 0.4, 0.25, 0.15, 0.1, 0.05])
    y_pred = noisy_predictions(rng, y_true, num_classes, 0.6)
    train_counts = np.array([400, 250, 150, 100, 50, 50])
    return y_true, y_pred, num_classes, train_counts


def test_point_metrics_match_scikit_learn(labelled):
    y_true, y_pred, num_classes, train_counts = labelled
    result = classification_metrics(y_true, y_pred, num_classes=num_classes,
                                    train_counts=train_counts, n_bootstrap=0)
    labels = [*range(num_classes), -1]  # -1: the "outside the label space" class
    p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, labels=labels,
                                                 average="weighted", zero_division=0)
    assert result["weighted_precision"] == pytest.approx(p, abs=1e-12)
    assert result["weighted_recall"] == pytest.approx(r, abs=1e-12)
    assert result["weighted_f1"] == pytest.approx(f, abs=1e-12)
    assert result["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred), abs=1e-12)
    present = sorted(set(y_true.tolist()) | set(y_pred.tolist()))
    assert result["macro_f1"] == pytest.approx(
        f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0), abs=1e-12)
    head, tail = head_tail_classes(train_counts)
    assert head.tolist() == [0, 1] and tail.tolist() == [2, 3, 4, 5]
    assert result["head_f1"] == pytest.approx(
        f1_score(y_true, y_pred, labels=head, average="weighted", zero_division=0), abs=1e-12)
    assert result["tail_f1"] == pytest.approx(
        f1_score(y_true, y_pred, labels=tail, average="weighted", zero_division=0), abs=1e-12)
    assert result["details"]["n_outside_label_space"] == int((y_true == -1).sum()) > 0


def test_labels_outside_the_label_space_count_as_wrong():
    y_true = np.array([0, 1, -1, -1])
    y_pred = np.array([0, 1, 0, 1])
    result = classification_metrics(y_true, y_pred, num_classes=2, train_counts=[1, 1],
                                     n_bootstrap=0)
    assert result["accuracy"] == 0.5  # never silently dropped
    # each -1 item is a false positive of its predicted class and a miss of "outside"
    assert result["weighted_precision"] == 0.25
    assert result["weighted_recall"] == 0.5  # weighted recall equals accuracy


def test_bootstrap_intervals_equal_a_brute_force_bootstrap(labelled):
    y_true, y_pred, num_classes, train_counts = labelled
    n_boot, seed = 200, 3
    result = classification_metrics(y_true, y_pred, num_classes=num_classes,
                                    train_counts=train_counts, seed=seed, n_bootstrap=n_boot)
    # the resamples are the Resampler's: items drawn with replacement from its seeded stream
    index = np.concatenate([block["item"] for block in
                            Resampler(n_boot, seed).blocks({"item": len(y_true)})])
    assert index.shape == (n_boot, len(y_true)) and len(np.unique(index)) > len(y_true) // 2
    labels = [*range(num_classes), -1]
    f1s = [f1_score(y_true[i], y_pred[i], labels=labels, average="weighted", zero_division=0)
           for i in index]
    accs = [accuracy_score(y_true[i], y_pred[i]) for i in index]
    assert result["ci95"]["weighted_f1"] == pytest.approx(np.percentile(f1s, [2.5, 97.5]))
    assert result["ci95"]["accuracy"] == pytest.approx(np.percentile(accs, [2.5, 97.5]))
    for name in ("weighted_precision", "weighted_recall", "weighted_f1", "macro_f1",
                 "head_f1", "tail_f1"):
        lo, hi = result["ci95"][name]
        assert lo <= result[name] <= hi, name
    again = classification_metrics(y_true, y_pred, num_classes=num_classes,
                                   train_counts=train_counts, seed=seed, n_bootstrap=n_boot)
    assert again["ci95"] == result["ci95"]


def test_clustered_bootstrap_draws_images_with_all_their_items(labelled):
    y_true, y_pred, num_classes, train_counts = labelled
    # 100 images with three items each (say three captions, or three questions, per image)
    image_ids = np.repeat(np.arange(1000, 1100), 3)
    n_boot = 50
    result = classification_metrics(y_true, y_pred, num_classes=num_classes,
                                     train_counts=train_counts, resampler=Resampler(n_boot, 5),
                                     clusters=image_ids)
    draws = np.concatenate([b["image"] for b in Resampler(n_boot, 5).blocks({"image": 100})])
    labels = [*range(num_classes), -1]
    for b in (0, 17, 49):
        # the resample as scikit-learn would score it: every item of each drawn image, the
        # image as often as drawn
        rows = np.concatenate([np.arange(3 * image, 3 * image + 3) for image in draws[b]])
        assert result["replicates"]["weighted_f1"][b] == pytest.approx(f1_score(
            y_true[rows], y_pred[rows], labels=labels, average="weighted", zero_division=0))
        assert result["replicates"]["accuracy"][b] == pytest.approx(
            accuracy_score(y_true[rows], y_pred[rows]))


def test_items_with_distinct_images_resample_as_items(labelled):
    y_true, y_pred, num_classes, train_counts = labelled
    kwargs = dict(num_classes=num_classes, train_counts=train_counts)
    by_item = classification_metrics(y_true, y_pred, resampler=Resampler(40, 2), **kwargs)
    by_image = classification_metrics(y_true, y_pred, resampler=Resampler(40, 2),
                                      clusters=np.arange(len(y_true))[::-1] * 7, **kwargs)
    for name, values in by_item["replicates"].items():
        np.testing.assert_array_equal(by_image["replicates"][name], values)


def test_clustered_intervals_are_wider_when_an_images_items_agree():
    # every image's five items share their outcome: the item bootstrap sees 5x the evidence
    rng = np.random.default_rng(0)
    correct = np.repeat(rng.random(200) < 0.6, 5)
    y_true = np.zeros(1000, np.int64)
    y_pred = np.where(correct, 0, 1)
    kwargs = dict(num_classes=2, train_counts=np.array([5, 5]), resampler=Resampler(400, 0))
    items = classification_metrics(y_true, y_pred, **kwargs)["replicates"]["accuracy"]
    images = classification_metrics(y_true, y_pred, clusters=np.repeat(np.arange(200), 5),
                                    **kwargs)["replicates"]["accuracy"]
    assert 1.8 < images.std() / items.std() < 2.8  # sqrt(5) = 2.24


def test_head_tail_split_covers_half_the_training_items():
    assert head_tail_classes([50, 30, 10, 10])[0].tolist() == [0]  # exactly half
    assert head_tail_classes([10, 40, 30, 20])[0].tolist() == [1, 2]  # 40 < 50 <= 70
    assert head_tail_classes([5, 5, 5, 5])[0].tolist() == [0, 1]  # ties: lower index first
    head, tail = head_tail_classes([9])
    assert head.tolist() == [0] and tail.tolist() == []
    result = classification_metrics([0, 0], [0, 0], num_classes=1, train_counts=[9],
                                    n_bootstrap=10)
    assert result["tail_f1"] is None and result["ci95"]["tail_f1"] is None


def test_per_class_report_matches_scikit_learn(labelled):
    y_true, y_pred, num_classes, _ = labelled
    classes = [f"c{i}" for i in range(num_classes)]
    report = per_class_report(y_true, y_pred, num_classes=num_classes, classes=classes)
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=range(num_classes),
                                                 zero_division=0)
    assert list(report) == classes
    for i, name in enumerate(classes):
        assert report[name] == pytest.approx(
            {"precision": p[i], "recall": r[i], "f1": f[i], "support": s[i]})
    assert report["c5"]["support"] == 0


# ---------------------------------------------------------------------------------------
# Retrieval
# ---------------------------------------------------------------------------------------


def recall_from_rankings(t2i, i2t, caption_image, ks=(1, 5, 10)) -> dict[str, float]:
    """Recall@K of rankings as a joint-embedding task scores its whole test split."""
    t2i_hits, i2t_hits = ranking_hits(t2i, i2t, caption_image, ks)
    return {name: float(value[0])
            for name, value in recall_from_hits(t2i_hits, i2t_hits, ks).items()}


def retrieval_recall(image_emb, text_emb, caption_image, ks=(1, 5, 10)) -> dict[str, float]:
    """Recall@K of the rankings exact cosine search gives (the ``exact`` retriever's)."""
    t2i = exact_top_k(text_emb, image_emb, max(ks), "cos")[0]
    i2t = exact_top_k(image_emb, text_emb, max(ks), "cos")[0]
    return recall_from_rankings(t2i, i2t, caption_image, ks)


def brute_force_recall(image_emb, text_emb, caption_image, ks=(1, 5, 10)):
    """CLIP_benchmark's definition, one query at a time; ties rank the lower row first."""
    images = image_emb / np.linalg.norm(image_emb, axis=1, keepdims=True)
    texts = text_emb / np.linalg.norm(text_emb, axis=1, keepdims=True)
    scores = texts.astype(np.float64) @ images.T.astype(np.float64)
    n_captions, n_images = scores.shape
    out = {}
    for k in ks:
        found = 0
        for i in range(n_images):
            ranked = sorted(range(n_captions), key=lambda c, i=i: (-scores[c, i], c))[:k]
            found += any(caption_image[c] == i for c in ranked)
        out[f"i2t_R@{k}"] = found / n_images
    for k in ks:
        found = 0
        for c in range(n_captions):
            ranked = sorted(range(n_images), key=lambda j, c=c: (-scores[c, j], j))[:k]
            found += caption_image[c] in ranked
        out[f"t2i_R@{k}"] = found / n_captions
    out["mean_recall"] = float(np.mean(list(out.values())))
    return out


def paired_embeddings(seed=0, n_images=30, dim=12, noise=2.0):
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(n_images, dim)).astype(np.float32)
    # 5 captions per image, a few with 6 or 7 as in COCO; not sorted by image
    per_image = rng.choice([5, 6, 7], size=n_images, p=[0.8, 0.1, 0.1])
    caption_image = rng.permutation(np.repeat(np.arange(n_images), per_image))
    texts = images[caption_image] + noise * rng.normal(size=(len(caption_image), dim))
    return images, texts.astype(np.float32), caption_image


def test_retrieval_recall_matches_brute_force():
    images, texts, caption_image = paired_embeddings()
    result = retrieval_recall(images, texts, caption_image)
    assert result == pytest.approx(brute_force_recall(images, texts, caption_image))
    assert 0 < result["t2i_R@1"] < result["t2i_R@10"] < 1  # the data are not trivial


def test_retrieval_recall_breaks_ties_by_lower_row():
    eye = np.eye(3, dtype=np.float32)
    images = np.stack([eye[0], eye[0], eye[1]])  # images 0 and 1 are identical
    texts = np.stack([eye[0], eye[0], eye[1], eye[2]])
    caption_image = np.array([1, 0, 2, 2])
    result = retrieval_recall(images, texts, caption_image, ks=(1, 2))
    assert result == pytest.approx(brute_force_recall(images, texts, caption_image, ks=(1, 2)))
    # caption 0 (of image 1) ties images 0 and 1: image 0 ranks first, so it misses at K=1;
    # caption 3 scores 0 with every image and ranks images 0, 1, 2: a miss at K=1 and K=2
    assert result["t2i_R@1"] == 0.5 and result["t2i_R@2"] == 0.75
    # image 0 ties captions 0 and 1 and ranks caption 0 (image 1's) first: a miss at K=1
    assert result["i2t_R@1"] == pytest.approx(2 / 3) and result["i2t_R@2"] == 1.0


def test_retrieval_recall_with_many_ties_matches_brute_force():
    # every embedding is one of 4 prototypes: whole blocks of images tie for each caption
    rng = np.random.default_rng(4)
    prototypes = rng.normal(size=(4, 6)).astype(np.float32)
    images = prototypes[rng.integers(0, 4, 25)]
    caption_image = rng.permutation(np.repeat(np.arange(25), 5))
    texts = prototypes[rng.integers(0, 4, len(caption_image))]
    result = retrieval_recall(images, texts, caption_image)
    assert result == pytest.approx(brute_force_recall(images, texts, caption_image))


def test_retrieval_recall_gives_ties_between_copies_to_the_lower_row_wherever_they_lie():
    # Six copies of one image at the first, middle and last rows, where a BLAS matrix
    # product may sum them with different kernels (edge tiles) and so split their tie by
    # position; and captions sharing one embedding, of different images.
    rng = np.random.default_rng(6)
    images = rng.normal(size=(120, 37)).astype(np.float32)
    images[[0, 1, 60, 118, 119]] = images[7]
    # two captions per image, four for image 0: which copy a tie goes to changes the recall
    caption_image = rng.permutation(np.concatenate([np.repeat(np.arange(120), 2), [0, 0]]))
    texts = (images[caption_image] + 0.7 * rng.normal(size=(242, 37))).astype(np.float32)
    for group in ([0, 100, 239], [5, 6, 120, 200]):
        texts[group] = texts[group[0]]
    result = retrieval_recall(images, texts, caption_image)
    assert result == pytest.approx(brute_force_recall(images, texts, caption_image))
    # ties given to the higher row (the images in reverse) would score otherwise
    higher_first = brute_force_recall(images[::-1], texts, 119 - caption_image)
    assert higher_first["t2i_R@1"] < result["t2i_R@1"]


def test_recall_resamples_images_with_their_captions_for_both_directions():
    from ravlm_bench.api import PairedSplit, RankingEvaluation, Rankings, RetrievalData
    rng = np.random.default_rng(3)
    n_images, per_image = 40, 3
    caption_image = np.repeat(np.arange(n_images), per_image)
    t2i = np.stack([rng.permutation(n_images)[:10] for _ in caption_image])
    i2t = np.stack([rng.permutation(len(caption_image))[:10] for _ in range(n_images)])
    split = PairedSplit(image_ids=np.arange(n_images) + 500, image_paths=[""] * n_images,
                        texts=[""] * len(caption_image), caption_image=caption_image)
    data = RetrievalData(train=split, val=None, test=split)
    result = RankingEvaluation().evaluate(data, Rankings(t2i, i2t), Resampler(30, 1))
    draws = np.concatenate([b["image"] for b in Resampler(30, 1).blocks({"image": n_images})])
    t2i_hits, i2t_hits = ranking_hits(t2i, i2t, caption_image)
    for b in (0, 29):
        captions = np.concatenate([np.flatnonzero(caption_image == i) for i in draws[b]])
        assert result.replicates["t2i_R@5"][b] == pytest.approx(t2i_hits[captions, 1].mean())
        assert result.replicates["i2t_R@5"][b] == pytest.approx(i2t_hits[draws[b], 1].mean())
    assert result.details["resampled"] == "images (40, with their 120 captions)"


def test_recall_from_rankings_handles_padding_and_checks_shapes():
    caption_image = np.array([0, 0, 1])
    t2i = np.array([[0, -1], [1, 0], [-1, -1]])
    i2t = np.array([[2, 1], [-1, -1]])
    result = recall_from_rankings(t2i, i2t, caption_image, ks=(1, 2))
    assert result["t2i_R@1"] == pytest.approx(1 / 3) and result["t2i_R@2"] == pytest.approx(2 / 3)
    assert result["i2t_R@1"] == 0.0 and result["i2t_R@2"] == 0.5
    with pytest.raises(ValueError, match="R@5"):
        recall_from_rankings(t2i, i2t, caption_image, ks=(1, 5))
    with pytest.raises(ValueError, match="at least one caption"):
        recall_from_rankings(t2i, np.zeros((3, 2), np.int64), caption_image, ks=(1,))
