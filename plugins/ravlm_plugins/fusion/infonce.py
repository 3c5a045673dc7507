"""``infonce``: the joint embedding of retrieval tasks (image-text Recall@K).

Two projection heads (standardise, then Linear to ``width``) map image and text features to
one space; training minimises the symmetric InfoNCE loss of CLIP over in-batch negatives
with a learned temperature (a log-scale logit multiplier, clamped to ``[0, log(100)]``).
Each epoch pairs every image with one of its captions drawn at random, so a batch never
holds two captions of one image (they would be false negatives).
"""

from __future__ import annotations

import hashlib
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ravlm_bench.api import (
    ConfigError,
    DataError,
    JointEmbedding,
    TrainingReport,
    seed_everything,
)

from .checkpoint import Checkpoint, TrainState
from .options import InfoNCEOptions, parse_options
from .training import (
    TrainConfig,
    make_optimizer,
    progress_bar,
    train_on_rank_zero,
    training_signature,
    training_stats,
)

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

        With ``checkpoint_dir`` training is checkpointed (see ``TrainConfig``), a rerun
        resumes from it, and a finished training is reloaded rather than repeated. Under
        torchrun (``dist``) rank 0 trains and broadcasts the weights.
        """
        image = np.ascontiguousarray(image, dtype=np.float32)
        text = np.ascontiguousarray(text, dtype=np.float32)
        caption_image = np.asarray(caption_image, dtype=np.int64)
        if caption_image.shape != (len(text),) or (
                len(caption_image) and not 0 <= caption_image.min() <= caption_image.max()
                < len(image)):
            raise DataError(f"joint embedding infonce: caption_image must map each of the "
                            f"{len(text)} captions to an image row in [0, {len(image)})")
        # captions grouped by image: image i owns order[starts[i]:starts[i] + counts[i]]
        order = np.argsort(caption_image, kind="stable")
        counts = np.bincount(caption_image, minlength=len(image))
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        paired = torch.from_numpy(np.flatnonzero(counts > 0))
        if len(paired) < 2:
            raise DataError("joint embedding infonce: contrastive training needs at least 2 images "
                            "with captions")
        generator = seed_everything(seed)
        device = self.config.torch_device()
        self.model = model = JointProjection(image, text, self.width, self.temperature).to(device)

        def train() -> TrainingReport:
            optimizer = make_optimizer(self.config, model.parameters())
            state, checkpoint = TrainState(), None
            if checkpoint_dir is not None:
                signature = training_signature(
                    self, self.config, seed=seed, data=_fingerprint(image, text, caption_image),
                    width=self.width, temperature=self.temperature)
                checkpoint = Checkpoint(checkpoint_dir, signature, self.config.checkpoint_every_s)
                saved = checkpoint.resume(model, optimizer, generator)
                if saved is not None:
                    state = saved[0]
            resumed_from = state.epoch
            images_t = torch.from_numpy(image).to(device)
            texts_t = torch.from_numpy(text).to(device)
            start, steps = time.perf_counter(), 0
            bar = progress_bar(self.config.epochs, min(state.epoch, self.config.epochs),
                               self.config.progress, "fit infonce")
            model.train()
            try:
                while state.epoch < self.config.epochs:
                    epoch_started = time.perf_counter()
                    perm = paired[torch.randperm(len(paired), generator=generator)].numpy()
                    pick = (torch.rand(len(perm), generator=generator).numpy() * counts[perm])
                    captions = order[starts[perm] + pick.astype(np.int64)]
                    total = 0.0
                    for begin in range(0, len(perm), self.config.batch_size):
                        rows = torch.from_numpy(perm[begin:begin + self.config.batch_size])
                        if len(rows) < 2:
                            continue  # one pair has no negative
                        cols = torch.from_numpy(captions[begin:begin + self.config.batch_size])
                        loss = model(images_t[rows.to(device)], texts_t[cols.to(device)])
                        optimizer.zero_grad(set_to_none=True)
                        loss.backward()
                        optimizer.step()
                        with torch.no_grad():
                            model.logit_scale.clamp_(0.0, MAX_LOGIT_SCALE)
                        total += float(loss.detach()) * len(rows)
                        steps += 1
                        state.steps += 1
                    state.epoch += 1
                    state.history.append({"epoch": state.epoch, "loss": total / len(perm)})
                    state.seconds += time.perf_counter() - epoch_started
                    if checkpoint is not None and checkpoint.due(state.epoch >= self.config.epochs):
                        checkpoint.save(model, optimizer, state, None, generator)
                    bar.update(1)
                    bar.set_postfix(loss=round(total / len(perm), 4),
                                    temperature=round(model.temperature(), 4))
            finally:
                bar.close()
            model.eval()
            return training_stats(
                state, steps, time.perf_counter() - start, resumed_from, head=self.name,
                train_loss=state.history[-1]["loss"] if state.history else None,
                temperature=model.temperature())

        if dist is not None and dist.enabled:
            # rank 0 trains with every core and broadcasts the weights: cheaper than every
            # rank training the same small head on one thread each
            return train_on_rank_zero(model, dist, train)
        return train()

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


def _fingerprint(*arrays: np.ndarray) -> str:
    digest = hashlib.blake2b(digest_size=12)
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def _stats(x: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(x.mean(axis=0)), torch.from_numpy(x.std(axis=0) + np.float32(1e-6))
