"""Do the leaderboard's intervals cover, and do its paired tests hold their level?

A simulation with the harness's own functions: test sets of images with several items each
(captions, questions) that share their image's label and difficulty, systems trained with
three seeds that each shift the system's skill, and the population value of every metric
(the mean over seeds of the metric on a very large test set) as the truth. For each
simulated test set the script scores every seed as a cell does
(:func:`~ravlm_bench.scoring.metrics.classification_metrics` with the images as clusters,
:func:`~ravlm_bench.scoring.metrics.recall_from_hits` on the shared image resamples), pools
seeds as the leaderboard does (:func:`~ravlm_bench.publish.leaderboard.cluster_replicates`,
:func:`~ravlm_bench.scoring.seed_variance.with_seed_variance`), takes the 95% interval by
the metric's declared method (bias-corrected for macro-F1) and counts how often it holds
the truth. A second part draws five systems and a
baseline of equal skill and counts how often the paired two-sided test (one system) and
Holm over the five reject at alpha 0.05.

    python benchmarks/bench_coverage.py [--simulations 1000] [--seed-sd 0.08]

prints one table: each metric's coverage (target 0.95; the Monte Carlo standard error is
about 0.007 at 1,000 simulations) with the item bootstrap and without seed variance (the
harness before clustering) beside it as the baseline, and the tests' false-positive rates.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

import numpy as np

from ravlm_bench.publish.leaderboard import cluster_replicates, holm, tail_p_values
from ravlm_bench.scoring.evaluation import SingleLabelEvaluation
from ravlm_bench.scoring.metrics import classification_metrics, recall_from_hits
from ravlm_bench.scoring.resampling import Resampler, interval
from ravlm_bench.scoring.seed_variance import with_seed_variance

CLASSIFICATION = ("weighted_f1", "accuracy", "macro_f1")
RECALL = ("t2i_R@1", "t2i_R@5", "t2i_R@10", "i2t_R@1", "i2t_R@5", "i2t_R@10", "mean_recall")
KS = (1, 5, 10)
# each metric's interval method as the classification tasks declare it (macro-F1: BC)
INTERVALS = {m.name: m.interval for m in SingleLabelEvaluation().metrics()}


@dataclass(frozen=True)
class World:
    """How the simulated data arise. Skill is on the logit scale: an item is answered
    (or retrieved within K) when ``base + image_sd * u_image + seed shift + logistic noise``
    is positive, ``u`` standard normal per image, the shift normal per (system, seed)."""

    n_images: int = 200
    items_per_image: int = 5
    n_classes: int = 12
    n_seeds: int = 3
    base: float = 0.6
    image_sd: float = 1.5
    seed_sd: float = 0.08
    recall_bases: tuple[float, ...] = (-0.8, 0.6, 1.2)  # thresholds of R@1, R@5, R@10

    def class_probabilities(self) -> np.ndarray:
        weights = 1.0 / np.arange(1, self.n_classes + 1)  # Zipf: a few rare classes
        return weights / weights.sum()


def classification_test_set(world: World, rng: np.random.Generator, n_images: int):
    """Labels and image difficulty, one row per item, and each item's image."""
    labels = rng.choice(world.n_classes, size=n_images, p=world.class_probabilities())
    difficulty = rng.standard_normal(n_images)
    image = np.repeat(np.arange(n_images), world.items_per_image)
    return labels[image], difficulty[image], image


def predictions(world: World, rng: np.random.Generator, labels: np.ndarray,
                difficulty: np.ndarray, shift: float) -> np.ndarray:
    """One seed's predictions: right when its latent skill is positive, else a wrong class
    drawn by class frequency."""
    skill = world.base + world.image_sd * difficulty + shift + rng.logistic(size=len(labels))
    wrong = rng.choice(world.n_classes, size=len(labels), p=world.class_probabilities())
    wrong = np.where(wrong == labels, (wrong + 1) % world.n_classes, wrong)
    return np.where(skill > 0, labels, wrong)


def recall_hits(world: World, rng: np.random.Generator, difficulty: np.ndarray,
                shift: float):
    """One seed's hit flags on images of ``difficulty``: t2i per caption and i2t per
    image, nested across K; and each caption's image."""
    caption_image = np.repeat(np.arange(len(difficulty)), world.items_per_image)

    def hits(rows: np.ndarray) -> np.ndarray:
        latent = world.image_sd * difficulty[rows] + shift + rng.logistic(size=len(rows))
        return np.stack([latent + base > 0 for base in world.recall_bases], axis=1)

    return hits(caption_image), hits(np.arange(len(difficulty))), caption_image


def truth(world: World, n_images: int = 200_000, n_seeds: int = 40) -> dict[str, float]:
    """Each metric's population value: the mean over many seeds of the metric on a very
    large test set (one item per image: items of an image are exchangeable)."""
    rng = np.random.default_rng(12345)
    one = World(**{**world.__dict__, "items_per_image": 1})
    values: dict[str, list[float]] = {}
    for _ in range(n_seeds):
        shift = rng.normal(0, world.seed_sd)
        labels, difficulty, _ = classification_test_set(one, rng, n_images)
        y_pred = predictions(one, rng, labels, difficulty, shift)
        scores = classification_metrics(labels, y_pred, num_classes=world.n_classes,
                                        train_counts=np.ones(world.n_classes), n_bootstrap=0)
        for name in CLASSIFICATION:
            values.setdefault(name, []).append(scores[name])
        t2i, i2t, _ = recall_hits(one, rng, rng.standard_normal(n_images), shift)
        for name, value in recall_from_hits(t2i, i2t, KS).items():
            values.setdefault(name, []).append(float(value[0]))
    return {name: float(np.mean(v)) for name, v in values.items()}


def simulate_intervals(world: World, rng: np.random.Generator, resampler: Resampler,
                       clustered: bool, seed_variance: bool) -> dict[str, list[float] | None]:
    """One simulated test set: each metric's 95% interval as the leaderboard builds it."""
    labels, difficulty, image = classification_test_set(world, rng, world.n_images)
    shifts = rng.normal(0, world.seed_sd, world.n_seeds)
    per_seed: dict[str, dict[int, np.ndarray]] = {}
    points: dict[str, list[float]] = {}
    clusters = image if clustered else np.arange(len(image))
    for seed, shift in enumerate(shifts):
        y_pred = predictions(world, rng, labels, difficulty, shift)
        scores = classification_metrics(
            labels, y_pred, num_classes=world.n_classes, train_counts=np.ones(world.n_classes),
            resampler=resampler, clusters=clusters)
        for name in CLASSIFICATION:
            per_seed.setdefault(name, {})[seed] = scores["replicates"][name]
            points.setdefault(name, []).append(scores[name])
    recall_difficulty = rng.standard_normal(world.n_images)  # the retrieval test set's images
    for seed, shift in enumerate(shifts):
        local = np.random.default_rng(rng.integers(2**63))
        t2i, i2t, caption_image = recall_hits(world, local, recall_difficulty, shift)
        point = recall_from_hits(t2i, i2t, KS)
        if clustered:
            blocks = list(resampler.cluster_counts(world.n_images, "image"))
            replicates = [recall_from_hits(t2i, i2t, KS, w, caption_image) for w in blocks]
        else:  # captions and images drawn independently: the harness before clustering
            replicates = [_independent_recall(t2i, i2t, resampler)]
        for name in RECALL:
            per_seed.setdefault(name, {})[seed] = np.concatenate([r[name] for r in replicates])
            points.setdefault(name, []).append(float(point[name][0]))
    out = {}
    for name, seeds in per_seed.items():
        pooled = cluster_replicates(seeds)
        if seed_variance:
            pooled = with_seed_variance(pooled, np.stack(list(seeds.values())), points[name])
        out[name] = interval(pooled, float(np.mean(points[name])),
                             INTERVALS.get(name, "percentile"))
    return out


def _independent_recall(t2i: np.ndarray, i2t: np.ndarray, resampler: Resampler
                        ) -> dict[str, np.ndarray]:
    units = {"caption": len(t2i), "image": len(i2t)}
    parts: dict[str, list[np.ndarray]] = {}
    for block in resampler.blocks(units):
        t2i_rate = t2i[block["caption"]].mean(axis=1)
        i2t_rate = i2t[block["image"]].mean(axis=1)
        values = {f"i2t_R@{k}": i2t_rate[:, j] for j, k in enumerate(KS)}
        values.update({f"t2i_R@{k}": t2i_rate[:, j] for j, k in enumerate(KS)})
        values["mean_recall"] = np.mean(np.stack(list(values.values())), axis=0)
        for name, value in values.items():
            parts.setdefault(name, []).append(value)
    return {name: np.concatenate(chunks) for name, chunks in parts.items()}


def coverage(world: World, simulations: int, *, clustered: bool = True,
             seed_variance: bool = True, n_resamples: int = 1000,
             seed: int = 0) -> dict[str, float]:
    """The share of simulated test sets whose 95% interval holds the truth, per metric."""
    target = truth(world)
    rng = np.random.default_rng(seed)
    resampler = Resampler(n_resamples)
    held = dict.fromkeys(target, 0)
    for _ in range(simulations):
        for name, bounds in simulate_intervals(world, rng, resampler, clustered,
                                               seed_variance).items():
            held[name] += bool(bounds and bounds[0] <= target[name] <= bounds[1])
    return {name: count / simulations for name, count in held.items()}


def false_positives(world: World, simulations: int, *, n_systems: int = 5,
                    seed_variance: bool = True, n_resamples: int = 1000,
                    seed: int = 1) -> dict[str, float]:
    """Under the null (every system as skilled as the baseline, each with its own seed
    shifts), how often one system's paired two-sided test rejects at 0.05, and how often
    Holm over ``n_systems`` rejects any (the family-wise error), on weighted F1."""
    rng = np.random.default_rng(seed)
    resampler = Resampler(n_resamples)
    single = family = 0
    for _ in range(simulations):
        labels, difficulty, image = classification_test_set(world, rng, world.n_images)
        systems, resamples_of = [], []
        for _system in range(n_systems + 1):
            replicates, points = {}, []
            for s, shift in enumerate(rng.normal(0, world.seed_sd, world.n_seeds)):
                y_pred = predictions(world, rng, labels, difficulty, shift)
                scores = classification_metrics(
                    labels, y_pred, num_classes=world.n_classes,
                    train_counts=np.ones(world.n_classes), resampler=resampler, clusters=image)
                replicates[s] = scores["replicates"]["weighted_f1"]
                points.append(scores["weighted_f1"])
            systems.append((cluster_replicates(replicates), np.array(points)))
            resamples_of.append(replicates)
        base_resamples, base_points = systems[0]
        p_values = {}
        for i, (resamples, points) in enumerate(systems[1:]):
            difference = resamples - base_resamples
            if seed_variance:
                difference = with_seed_variance(
                    difference, np.stack([resamples_of[i + 1][s] - resamples_of[0][s]
                                          for s in range(world.n_seeds)]),
                    points - base_points)
            p_values[i] = tail_p_values(difference, True)[1]
        single += p_values[0] < 0.05
        family += any(p < 0.05 for p in holm(p_values).values())
    return {"paired test, one system": single / simulations,
            f"Holm over {n_systems} systems": family / simulations}


def main(argv: list[str] | None = None) -> int:
    from tabulate import tabulate

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--simulations", type=int, default=1000)
    parser.add_argument("--seed-sd", type=float, default=World.seed_sd,
                        help="sd of a seed's shift on the logit scale (default %(default)s)")
    args = parser.parse_args(argv)
    world = World(seed_sd=args.seed_sd)
    print(f"world: {world}", file=sys.stderr)
    now = coverage(world, args.simulations)
    before = coverage(world, args.simulations, clustered=False, seed_variance=False)
    rows = [[name, f"{now[name]:.3f}", f"{before[name]:.3f}",
             f"{now[name] / 0.95:.3f}"] for name in now]
    print(tabulate(rows, headers=["metric", "coverage (images, seeds)",
                                  "baseline: items, conditional", "ratio to 0.95"]))
    print()
    rates = false_positives(world, max(1, args.simulations // 2))
    conditional = false_positives(world, max(1, args.simulations // 2), seed_variance=False)
    print(tabulate([[name, f"{rate:.3f}", f"{conditional[name]:.3f}"]
                    for name, rate in rates.items()],
                   headers=["null test at alpha 0.05", "false positives (seeds)",
                            "baseline: conditional"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
