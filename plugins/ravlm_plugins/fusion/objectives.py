"""What a trained head learns: the form of its labels, its loss and its validation score,
which ``training.ClassifierProblem`` asks its objective for. :class:`SingleLabel`:
cross-entropy, optionally class-weighted or with class-balanced draws; validation accuracy;
softmax. :class:`MultiLabel`: binary cross-entropy over every (item, class) cell, optionally
with per-class positive weights; validation mean average precision or micro-F1; sigmoid.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch import nn

from ravlm_bench.api import ConfigError

from .labels import SCORES, check_multi_hot, check_single_label

Batches = Callable[[str, torch.Tensor], tuple]  # (split, item indices) -> model inputs
VAL_BATCH = 256  # validation batches are at least this large: no gradients to hold


class Objective:
    """The label-dependent parts of training. The loop divides a global batch's summed
    loss by :meth:`batch_weight`, which is what a mean-reduced loss does but splits exactly
    across data-parallel ranks."""

    score_name = "score"  # the validation score, as the loop reports it: "val_<score_name>"

    def targets(self, labels: np.ndarray) -> torch.Tensor:
        """The labels as the loss reads them, on the CPU (batches gather rows)."""
        raise NotImplementedError

    def epoch_order(self, labels: np.ndarray, generator: torch.Generator) -> torch.Tensor:
        """The item indices of one training epoch."""
        return torch.randperm(len(labels), generator=generator)

    def batch_weight(self, targets: torch.Tensor) -> torch.Tensor | float | None:
        """What a global batch's summed loss is divided by; None: it has nothing to learn."""
        raise NotImplementedError

    def loss_sum(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The summed loss of some rows of a batch."""
        raise NotImplementedError

    def evaluate(self, model: nn.Module, batches: Batches, labels: np.ndarray,
                 batch_size: int) -> tuple[float, float]:
        """The validation score (higher is better) and mean loss, in eval mode."""
        raise NotImplementedError

    @staticmethod
    def probabilities(logits: torch.Tensor) -> torch.Tensor:
        """What ``predict_proba`` returns for these logits."""
        raise NotImplementedError


def validation_logits(model: nn.Module, batches: Batches, n: int,
                      batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(item indices, float logits) over the validation split."""
    step = max(batch_size, VAL_BATCH)
    for begin in range(0, n, step):
        idx = torch.arange(begin, min(begin + step, n))
        yield idx, model(*batches("val", idx)).float()


# ---------------------------------------------------------------------------------------
# Single-label
# ---------------------------------------------------------------------------------------


class SingleLabel(Objective):
    score_name = "accuracy"

    def __init__(self, train_labels: np.ndarray, num_classes: int, *, class_weights=None,
                 sampling: str = "shuffle", device: torch.device | str = "cpu", head: str = ""):
        check_single_label(train_labels, head, "training")
        self.sampling = sampling
        weight = torch.ones(num_classes)
        if class_weights == "balanced":
            weight = balanced_class_weights(np.asarray(train_labels), num_classes)
        self.weight = weight.to(device)
        # summed here and divided by the global batch's total weight (batch_weight), which
        # is what CrossEntropyLoss's weighted mean does, but splits across ranks exactly
        self.loss_fn = nn.CrossEntropyLoss(weight=self.weight, ignore_index=-1, reduction="sum")

    def targets(self, labels: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.array(labels, dtype=np.int64))

    def epoch_order(self, labels: np.ndarray, generator: torch.Generator) -> torch.Tensor:
        """A shuffle, or a class-balanced draw with replacement."""
        labels = np.asarray(labels)
        n = len(labels)
        if self.sampling == "shuffle":
            return torch.randperm(n, generator=generator)
        counts = np.bincount(labels[labels >= 0])
        counts = np.maximum(counts, 1)  # only items with label -1 index an absent class
        weights = np.where(labels >= 0, 1.0 / counts[np.maximum(labels, 0)], 0.0)
        return torch.multinomial(torch.tensor(weights, dtype=torch.float64), n,
                                 replacement=True, generator=generator)

    def batch_weight(self, targets: torch.Tensor) -> torch.Tensor | None:
        labelled = targets[targets >= 0]
        if not len(labelled):
            return None
        return self.weight[labelled.to(self.weight.device)].sum()

    def loss_sum(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.loss_fn(logits, targets.to(logits.device))

    @torch.no_grad()
    def evaluate(self, model: nn.Module, batches: Batches, labels: np.ndarray,
                 batch_size: int) -> tuple[float, float]:
        """Accuracy (a ``-1`` label always counts as wrong) and mean cross-entropy."""
        model.eval()
        device = next(model.parameters()).device
        y = self.targets(labels)
        correct, loss_sum, counted = 0, 0.0, 0
        for idx, logits in validation_logits(model, batches, len(y), batch_size):
            target = y[idx].to(device)
            correct += int((logits.argmax(1) == target).sum())
            known = target >= 0
            if known.any():
                loss_sum += float(nn.functional.cross_entropy(logits[known], target[known],
                                                              reduction="sum"))
                counted += int(known.sum())
        model.train()
        return correct / len(y), loss_sum / max(counted, 1)

    @staticmethod
    def probabilities(logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits, dim=1)


def balanced_class_weights(labels: np.ndarray, num_classes: int) -> torch.Tensor:
    """scikit-learn's ``"balanced"``: n / (classes present * count); absent classes get 0."""
    counts = np.bincount(labels[labels >= 0], minlength=num_classes).astype(np.float64)
    present = max(int((counts > 0).sum()), 1)
    weights = np.where(counts > 0, counts.sum() / (present * np.maximum(counts, 1)), 0.0)
    return torch.tensor(weights, dtype=torch.float32)


# ---------------------------------------------------------------------------------------
# Multi-label
# ---------------------------------------------------------------------------------------


class MultiLabel(Objective):
    def __init__(self, train_labels: np.ndarray, num_classes: int, *, class_weights=None,
                 score: str = "map", device: torch.device | str = "cpu", head: str = ""):
        check_multi_hot(train_labels, num_classes, head, "training")
        if score not in SCORES:
            raise ConfigError(f"fusion head {head}: validation score {score!r}; use one of "
                              f"{tuple(SCORES)}")
        self.score_name, self.head, self.num_classes = score, head, num_classes
        self.pos_weight = None
        if class_weights == "balanced":
            self.pos_weight = balanced_positive_weights(train_labels).to(device)

    def targets(self, labels: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.array(labels, dtype=np.float32))

    def batch_weight(self, targets: torch.Tensor) -> float | None:
        return float(targets.numel()) or None  # the mean over every (item, class) cell

    def loss_sum(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return nn.functional.binary_cross_entropy_with_logits(
            logits, targets.to(logits.device), pos_weight=self.pos_weight, reduction="sum")

    @torch.no_grad()
    def evaluate(self, model: nn.Module, batches: Batches, labels: np.ndarray,
                 batch_size: int) -> tuple[float, float]:
        """Mean average precision or micro-F1, and the mean binary cross-entropy per cell."""
        check_multi_hot(labels, self.num_classes, self.head, "validation")
        model.eval()
        logits = torch.cat([out.cpu() for _, out in
                            validation_logits(model, batches, len(labels), batch_size)])
        y = self.targets(labels)
        loss = float(nn.functional.binary_cross_entropy_with_logits(logits, y))
        model.train()
        return SCORES[self.score_name](y.numpy(), torch.sigmoid(logits).numpy()), loss

    @staticmethod
    def probabilities(logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits)


def balanced_positive_weights(labels: np.ndarray) -> torch.Tensor:
    """Per class, negatives / positives (``pos_weight`` of the BCE loss): a rare class's
    positives weigh as much as its negatives. A class with no positive keeps weight 1."""
    labels = np.asarray(labels, np.float64)
    positives = labels.sum(axis=0)
    negatives = len(labels) - positives
    weights = np.where(positives > 0, negatives / np.maximum(positives, 1.0), 1.0)
    return torch.tensor(weights, dtype=torch.float32)
