"""``concat``: the no-retrieval baseline. [image; text] -> Linear(hidden) -> ReLU -> classifier."""

from __future__ import annotations

import torch
from torch import nn

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
    uses_retrieval = False

    def __init__(self, *, dim: int, hidden: int = 1024, **params):
        super().__init__(dim=dim, **params)
        self.hidden = int(hidden)

    def hyperparameters(self) -> dict:
        return {**super().hyperparameters(), "hidden": self.hidden}

    def build_model(self, num_classes: int, mean: torch.Tensor, std: torch.Tensor) -> nn.Module:
        return ConcatNet(self.dim, self.hidden, num_classes, self.dropout, mean, std)
