"""``infonce``: the joint embedding of retrieval tasks (image-text Recall@K). Two
projections (standardise, then Linear to ``width``) map image and text features to one
space, trained by :func:`.loop.fit` on the symmetric InfoNCE loss of CLIP over in-batch
negatives with a learned temperature (a log-scale logit multiplier, clamped to
``[0, log(100)]``); each epoch pairs every image with one of its captions drawn at random,
so a batch never holds two captions of one image (they would be false negatives).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ravlm_bench.api import ConfigError, DataError, JointEmbedding, TrainingReport, seed_everything

from .checkpoint import TrainState
from .digests import arrays_digest
from .loop import BatchLoss, Epoch, TrainConfig, TrainingProblem, TrainingRun, fit
from .options import InfoNCEOptions, parse_options
from .training import training_signature

MAX_LOGIT_SCALE = math.log(100.0)


class Projection(nn.Module):
    def __init__(self, d_in: int, width: int, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", mean.float())
        self.register_buffer("std", std.float())
        self.linear = nn.Linear(d_in, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.linear((x - self.mean) / self.std), dim=-1)


class JointProjection(nn.Module):
    """Both projections and the learned log-scale logit multiplier (1 / temperature)."""

    def __init__(self, image: np.ndarray, text: np.ndarray, width: int, temperature: float):
        super().__init__()
        self.image_proj = Projection(image.shape[1], width, *_stats(image))
        self.text_proj = Projection(text.shape[1], width, *_stats(text))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature)))

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """The symmetric InfoNCE loss of a batch of matching (image, caption) pairs."""
        logits = self.logit_scale.exp() * self.image_proj(image) @ self.text_proj(text).T
        target = torch.arange(len(image), device=logits.device)
        return (nn.functional.cross_entropy(logits, target)
                + nn.functional.cross_entropy(logits.T, target)) / 2

    def temperature(self) -> float:
        return float(torch.exp(-self.logit_scale.detach()))


class InfoNCEEmbedding(JointEmbedding):
    """A joint embedding trained with symmetric InfoNCE."""

    name = "infonce"
    data_parallel = True  # fit_pairs takes dist=
    checkpoints = True  # fit_pairs takes checkpoint_dir=

    def __init__(self, *, dim: int | None = None, **params):
        options = parse_options(InfoNCEOptions, f"joint embedding {self.name}", params)
        self.dim = dim  # the query width the harness passes; the projections need no more
        self.width, self.temperature = int(options.width), float(options.temperature)
        self.config = TrainConfig.of(options)
        self.model: JointProjection | None = None

    def fit_pairs(self, image: np.ndarray, text: np.ndarray, caption_image: np.ndarray, *,
                  seed: int, checkpoint_dir: Path | str | None = None,
                  dist=None) -> TrainingReport:
        """Train on (caption, its image) pairs; ``caption_image[j]`` is caption j's image row.

        With ``checkpoint_dir`` training is checkpointed (see :mod:`.loop`), a rerun resumes
        from it, and a finished training is reloaded rather than repeated. Under torchrun
        (``dist``) rank 0 trains and broadcasts the weights: cheaper than every rank
        training the same small model on one thread each.
        """
        image = np.ascontiguousarray(image, dtype=np.float32)
        text = np.ascontiguousarray(text, dtype=np.float32)
        caption_image = np.asarray(caption_image, dtype=np.int64)
        if caption_image.shape != (len(text),) or (
                len(caption_image) and not 0 <= caption_image.min() <= caption_image.max()
                < len(image)):
            raise DataError(f"joint embedding infonce: caption_image must map each of the "
                            f"{len(text)} captions to an image row in [0, {len(image)})")
        device = self.config.torch_device()
        problem = CaptionedImages(image, text, caption_image, device)
        generator = seed_everything(seed)
        self.model = JointProjection(image, text, self.width, self.temperature).to(device)
        signature = ""
        if checkpoint_dir is not None:
            signature = training_signature(
                self, self.config, seed=seed, data=arrays_digest(image, text, caption_image),
                width=self.width, temperature=self.temperature)
        report = fit(self.model, problem, TrainingRun(
            self.config, generator, checkpoint_dir=checkpoint_dir, signature=signature,
            desc=f"fit {self.name}", dist=dist))
        report.extra["head"] = self.name
        return report

    def embed_images(self, image: np.ndarray) -> np.ndarray:
        return self._embed("image_proj", image, "embed_images")

    def embed_texts(self, text: np.ndarray) -> np.ndarray:
        return self._embed("text_proj", text, "embed_texts")

    @torch.no_grad()
    def _embed(self, which: str, x: np.ndarray, what: str) -> np.ndarray:
        if self.model is None:
            raise ConfigError(f"joint embedding infonce: {what} called before fit_pairs")
        projection = getattr(self.model, which)
        device = self.config.torch_device()
        x = np.ascontiguousarray(x, dtype=np.float32)
        out = [np.empty((0, self.width), np.float32)]
        for begin in range(0, len(x), 4096):
            out.append(projection(torch.from_numpy(x[begin:begin + 4096]).to(device))
                       .float().cpu().numpy())
        return np.concatenate(out).astype(np.float32)


class CaptionedImages(TrainingProblem):
    """InfoNCE over (image, caption) pairs: each epoch pairs every image that has captions
    with one of them drawn at random, in a shuffled order; a batch of one pair, which has no
    negative, is skipped."""

    def __init__(self, image: np.ndarray, text: np.ndarray, caption_image: np.ndarray,
                 device: torch.device):
        # captions grouped by image: image i owns order[starts[i]:starts[i] + counts[i]]
        self.order = np.argsort(caption_image, kind="stable")
        self.counts = np.bincount(caption_image, minlength=len(image))
        self.starts = np.concatenate([[0], np.cumsum(self.counts)[:-1]])
        self.paired = torch.from_numpy(np.flatnonzero(self.counts > 0))
        if len(self.paired) < 2:
            raise DataError("joint embedding infonce: contrastive training needs at least 2 "
                            "images with captions")
        self.device, self.items = device, len(self.paired)
        self.image = torch.from_numpy(image).to(device)
        self.text = torch.from_numpy(text).to(device)

    def epoch(self, generator: torch.Generator, batch_size: int) -> Epoch:
        perm = self.paired[torch.randperm(len(self.paired), generator=generator)].numpy()
        pick = torch.rand(len(perm), generator=generator).numpy() * self.counts[perm]
        captions = self.order[self.starts[perm] + pick.astype(np.int64)]
        return Epoch(_pairs(perm, captions, batch_size), items=len(perm))

    def batch_loss(self, net: nn.Module, batch: tuple[np.ndarray, np.ndarray],
                   dist) -> BatchLoss:
        rows, cols = (torch.from_numpy(part) for part in batch)
        loss = net(self.image[rows.to(self.device)], self.text[cols.to(self.device)])
        return BatchLoss(loss=loss, summed=float(loss.detach()) * len(rows), items=len(rows))

    def after_step(self, model: nn.Module) -> None:
        with torch.no_grad():
            model.logit_scale.clamp_(0.0, MAX_LOGIT_SCALE)

    def progress(self, model: nn.Module) -> dict[str, float]:
        return {"temperature": round(model.temperature(), 4)}

    def outcome(self, model: nn.Module, state: TrainState, config: TrainConfig) -> dict:
        return {"temperature": model.temperature()}


def _pairs(images: np.ndarray, captions: np.ndarray, batch_size: int):
    """(image rows, caption rows) batches; a batch of one pair has no negative: skipped."""
    for begin in range(0, len(images), batch_size):
        if len(images[begin:begin + batch_size]) >= 2:
            yield images[begin:begin + batch_size], captions[begin:begin + batch_size]


def _stats(x: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(x.mean(axis=0)), torch.from_numpy(x.std(axis=0) + np.float32(1e-6))
