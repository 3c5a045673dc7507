"""``concat``, the no-retrieval baseline ([image; text] -> Linear(hidden) -> ReLU ->
classifier), and ``multilabel-linear``, the same net trained with binary cross-entropy on
multi-hot labels for independent per-class probabilities.
"""

from __future__ import annotations

import torch
from torch import nn

from .objectives import MultiLabel, Objective
from .options import ConcatOptions, MultilabelLinearOptions
from .training import TrainedHead


class ConcatNet(nn.Module):
    def __init__(self, d_in: int, hidden: int, num_classes: int, dropout: float,
                 mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", mean.float())
        self.register_buffer("std", std.float())
        self.body = nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Dropout(dropout),
                                  nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body((x - self.mean) / self.std)


class ConcatHead(TrainedHead):
    """The seed model: image and text features concatenated, one hidden layer, a classifier."""

    name = "concat"
    Options = ConcatOptions
    uses_retrieval = False
    neighbour_labels = "unused"
    targets = ("single-label",)

    def __init__(self, *, dim: int, **params):
        super().__init__(dim=dim, **params)
        self.hidden = int(self.options.hidden)

    def hyperparameters(self) -> dict:
        return {**super().hyperparameters(), "hidden": self.hidden}

    def build_model(self, num_classes: int, mean: torch.Tensor, std: torch.Tensor) -> nn.Module:
        return ConcatNet(self.dim, self.hidden, num_classes, self.dropout, mean, std)


class MultilabelLinearHead(ConcatHead):
    """``concat`` for multi-label tasks: a sigmoid per class, trained with binary
    cross-entropy by the shared loop; early stopping on validation mAP or micro-F1."""

    name = "multilabel-linear"
    Options = MultilabelLinearOptions
    targets = ("multi-label",)

    def hyperparameters(self) -> dict:
        return {**super().hyperparameters(), "val_metric": self.options.val_metric}

    def make_objective(self, train) -> Objective:
        return MultiLabel(train.labels, int(train.num_classes),
                          class_weights=self.config.class_weights,
                          score=self.options.val_metric, device=self.device, head=self.name)
