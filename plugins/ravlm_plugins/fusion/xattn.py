"""``xattn``, the retrieval-augmented head: each query attends over its retrieved items
(their features, labels and scores) through cross-attention blocks, and the classifier
reads the query with what it attended to (:class:`CrossAttentionNet`).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from .options import CrossAttentionOptions
from .training import TrainedHead, query_matrix


class CrossAttentionBlock(nn.Module):
    """Multi-head cross-attention from one query vector to a memory, then a feed-forward."""

    def __init__(self, width: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.d_k = heads, width // heads
        self.q, self.k, self.v = (nn.Linear(width, width) for _ in range(3))
        self.out = nn.Linear(width, width)
        self.norm_attention = nn.LayerNorm(width)
        self.ffn = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(2 * width, width))
        self.norm_ffn = nn.LayerNorm(width)
        self.dropout = nn.Dropout(dropout)

    def forward(self, query: torch.Tensor, memory: torch.Tensor,
                valid: torch.Tensor) -> torch.Tensor:
        batch, slots, width = memory.shape
        q = self.q(query).view(batch, self.heads, 1, self.d_k)
        k = self.k(memory).view(batch, slots, self.heads, self.d_k).transpose(1, 2)
        v = self.v(memory).view(batch, slots, self.heads, self.d_k).transpose(1, 2)
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.d_k)  # (batch, heads, 1, slots)
        scores = scores.masked_fill(~valid[:, None, None, :], float("-inf"))
        weights = self.dropout(torch.softmax(scores, dim=-1))
        attended = (weights @ v).reshape(batch, width)
        x = self.norm_attention(query + self.dropout(self.out(attended)))
        return self.norm_ffn(x + self.dropout(self.ffn(x)))


class CrossAttentionNet(nn.Module):
    """The query attends over its retrieved items::

        query  = LayerNorm(Linear([image; text]))
        memory = Linear(item's [image; text]) + embedding(item's label) + Linear(item's
                 score), plus one learned "nothing retrieved" slot that is never masked, so
                 a query whose neighbours are all padding still has something to attend to
        layer  = q + softmax(Q K^T / sqrt(d_k)) V over the memory (padding masked),
                 LayerNorm, then a feed-forward block with residual and LayerNorm
        logits = classifier([query; attended])

    Neighbour dropout hides each retrieved item with probability ``neighbour_dropout``
    during training. Neighbour sets are fixed per training item, so without it the net can
    memorise items by their neighbours' labels, which costs accuracy when retrieval is
    uninformative.
    """

    def __init__(self, d_in: int, width: int, heads: int, layers: int, num_classes: int,
                 dropout: float, mean: torch.Tensor, std: torch.Tensor,
                 neighbour_dropout: float = 0.0):
        super().__init__()
        self.register_buffer("mean", mean.float())
        self.register_buffer("std", std.float())
        self.num_classes = num_classes
        self.neighbour_dropout = neighbour_dropout
        self.query_proj = nn.Sequential(nn.Linear(d_in, width), nn.LayerNorm(width))
        self.item_proj = nn.Linear(d_in, width)
        # index num_classes: a neighbour whose label is outside the label space
        self.label_embedding = nn.Embedding(num_classes + 1, width)
        self.score_proj = nn.Linear(1, width)
        self.memory_norm = nn.LayerNorm(width)
        self.empty_slot = nn.Parameter(torch.randn(1, 1, width) * 0.02)
        self.blocks = nn.ModuleList(CrossAttentionBlock(width, heads, dropout)
                                    for _ in range(layers))
        self.classifier = nn.Sequential(nn.Linear(2 * width, width), nn.ReLU(),
                                        nn.Dropout(dropout), nn.Linear(width, num_classes))

    def standardize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def forward(self, x, items, item_labels, item_scores, valid) -> torch.Tensor:
        """``items`` come standardised (:meth:`standardize`, once per knowledge base rather
        than for every retrieved copy in every batch)."""
        query = self.query_proj(self.standardize(x))
        labels = torch.where((item_labels >= 0) & (item_labels < self.num_classes),
                             item_labels, torch.full_like(item_labels, self.num_classes))
        memory = self.memory_norm(self.item_proj(items)
                                  + self.label_embedding(labels)
                                  + self.score_proj(item_scores.unsqueeze(-1)))
        batch = len(x)
        if self.training and self.neighbour_dropout > 0:
            keep = torch.rand(valid.shape, device=valid.device) >= self.neighbour_dropout
            valid = valid & keep
        memory = torch.cat([self.empty_slot.expand(batch, 1, -1), memory], dim=1)
        valid = torch.cat([torch.ones(batch, 1, dtype=torch.bool, device=x.device), valid], 1)
        attended = query
        for block in self.blocks:
            attended = block(attended, memory, valid)
        return self.classifier(torch.cat([query, attended], dim=1))


class CrossAttentionHead(TrainedHead):
    """The RA-VLM head: cross-attention over the top-``k`` retrieved knowledge-base items."""

    name = "xattn"
    Options = CrossAttentionOptions
    uses_retrieval = True
    neighbour_labels = "optional"  # label -1 has an embedding of its own
    targets = ("single-label",)

    def __init__(self, *, dim: int, **params):
        super().__init__(dim=dim, **params)
        options = self.options
        self.k, self.width = int(options.k), int(options.width)
        self.heads, self.layers = int(options.heads), int(options.layers)
        self.neighbour_dropout = float(options.neighbour_dropout)

    def hyperparameters(self) -> dict:
        return {**super().hyperparameters(), "k": self.k, "width": self.width,
                "heads": self.heads, "layers": self.layers,
                "neighbour_dropout": self.neighbour_dropout}

    def build_model(self, num_classes: int, mean: torch.Tensor, std: torch.Tensor) -> nn.Module:
        return CrossAttentionNet(self.dim, self.width, self.heads, self.layers, num_classes,
                                 self.dropout, mean, std, self.neighbour_dropout)

    def prepare(self, inputs) -> dict[str, torch.Tensor]:
        kb = inputs.knowledge
        neighbours = np.asarray(inputs.neighbours, np.int64)[:, :self.k]
        device = self.device
        kb_x = torch.from_numpy(query_matrix(kb, self.dim, self.name)).to(device)
        with torch.no_grad():
            kb_x = self.model.standardize(kb_x)
        return {
            "x": torch.from_numpy(query_matrix(inputs, self.dim, self.name)).to(device),
            "kb_x": kb_x,
            "kb_labels": torch.from_numpy(np.array(kb.labels, np.int64)).to(device),
            "neighbours": torch.from_numpy(np.ascontiguousarray(neighbours)).to(device),
            "scores": torch.from_numpy(np.ascontiguousarray(
                np.asarray(inputs.neighbour_scores, np.float32)[:, :self.k])).to(device),
        }

    def model_inputs(self, prepared: dict[str, torch.Tensor], idx: torch.Tensor) -> tuple:
        idx = idx.to(self.device)
        rows = prepared["neighbours"][idx]
        valid = rows >= 0
        safe = rows.clamp(min=0)
        labels = torch.where(valid, prepared["kb_labels"][safe], torch.full_like(safe, -1))
        scores = torch.where(valid, prepared["scores"][idx], torch.zeros_like(
            prepared["scores"][idx]))
        return prepared["x"][idx], prepared["kb_x"][safe], labels, scores, valid
