"""What the trained fusion heads share: :class:`TrainedHead` (``fit`` / ``predict_proba``
around a torch model a subclass defines), its training as a :class:`ClassifierProblem` for
:func:`.loop.fit`, and the :func:`training_signature` a checkpoint must match (head,
hyperparameters, seed, data, code, torch) to be resumed or reused.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ravlm_bench.api import (
    ConfigError,
    FusionHead,
    JointEmbedding,
    TrainingReport,
    seed_everything,
)

from .checkpoint import TrainState
from .digests import arrays_digest
from .loop import BatchLoss, Epoch, TrainConfig, TrainingProblem, TrainingRun, fit
from .objectives import Batches, Objective, SingleLabel
from .options import HeadOptions, parse_options

# Settings that change how training runs but not what it computes
NOT_IN_SIGNATURE = ("progress", "epochs", "checkpoint_every_s")


def training_signature(head, config: TrainConfig, *, seed: int, data: str, **fields) -> str:
    """What a checkpoint must match to be resumed or reused: the head's name and fields,
    the training config, the seed, the data fingerprint, the code and torch's version.

    The epoch budget is left out: more epochs continue a run.
    """
    settings = {k: v for k, v in asdict(config).items() if k not in NOT_IN_SIGNATURE}
    return json.dumps({"head": head.name, **fields, **settings, "seed": int(seed), "data": data,
                       "code": code_digest(type(head)), "torch": torch.__version__},
                      sort_keys=True, default=str)


@functools.cache
def code_digest(head_class: type) -> str:
    """sha256 of the source files a head's training runs: the modules of the class and of
    its bases, the training loop, this module, the objectives and the checkpoint format.
    Edited code never reuses a training."""
    from . import checkpoint, loop, objectives

    files = {Path(__file__), Path(checkpoint.__file__), Path(loop.__file__),
             Path(objectives.__file__)}
    for cls in head_class.__mro__:
        if cls in (FusionHead, JointEmbedding):  # the public base classes train nothing
            continue
        source = getattr(sys.modules.get(cls.__module__), "__file__", None)
        if source:
            files.add(Path(source))
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:20]


class ClassifierProblem(TrainingProblem):
    """A head learning labels: shuffled (or class-balanced) batches of the training items,
    the objective's loss, and its score on the validation split when there is one.

    ``batches("train" | "val", indices)`` returns the model's positional inputs for those
    items; ``objective`` says what the labels are, the loss and the validation score. The
    loss of a global batch is its summed loss divided by the objective's batch weight, so
    data-parallel ranks each compute a shard of it exactly.
    """

    data_parallel = True

    def __init__(self, objective: Objective, batches: Batches, train_labels: np.ndarray,
                 val_labels: np.ndarray | None):
        self.objective, self.batches = objective, batches
        self.train_labels, self.val_labels = train_labels, val_labels
        self.targets = objective.targets(train_labels)
        self.items = len(train_labels)
        self.score_name = objective.score_name

    def epoch(self, generator: torch.Generator, batch_size: int) -> Epoch:
        order = self.objective.epoch_order(self.train_labels, generator)
        return Epoch(order[begin:begin + batch_size] for begin in range(0, len(order), batch_size))

    def batch_loss(self, net: nn.Module, idx: torch.Tensor, dist) -> BatchLoss | None:
        batch_weight = self.objective.batch_weight(self.targets[idx])
        if batch_weight is None:
            return None
        mine = idx[dist.shard(len(idx))] if dist is not None else idx
        if len(mine):
            loss_sum = self.objective.loss_sum(net(*self.batches("train", mine)),
                                               self.targets[mine])
        else:  # this rank has no rows in a tiny last batch: it still joins the step
            loss_sum = net(*self.batches("train", idx[:1])).sum() * 0.0
        # DDP averages gradients over ranks, hence the world size here
        scale = dist.world_size if dist is not None else 1
        return BatchLoss(loss=loss_sum * scale / batch_weight,
                         summed=float(loss_sum.detach() / batch_weight) * len(idx) * scale,
                         items=len(idx))

    def validate(self, model: nn.Module, batch_size: int) -> tuple[float, float] | None:
        if self.val_labels is None or not len(self.val_labels):
            return None
        return self.objective.evaluate(model, self.batches, self.val_labels, batch_size)

    def outcome(self, model: nn.Module, state: TrainState, config: TrainConfig) -> dict:
        best_score = state.best_accuracy if math.isfinite(state.best_accuracy) else None
        return {"best_epoch": state.best_epoch, f"best_val_{self.score_name}": best_score,
                "stopped_early": state.epoch < config.epochs}


# ---------------------------------------------------------------------------------------
# The shared head: fit / predict_proba around a torch model
# ---------------------------------------------------------------------------------------


class TrainedHead(FusionHead):
    """fit / predict_proba of a trained head; subclasses define the net, its inputs and
    their options (a :class:`HeadOptions` dataclass, built from the suite's parameters).

    The query is ``[image; text]`` standardised with the training split's mean and std
    (stored in the net, so checkpoints carry them).
    """

    name = "?"
    Options: type[HeadOptions] = HeadOptions
    data_parallel = True  # fit takes dist=
    checkpoints = True  # fit takes checkpoint_dir=

    def __init__(self, *, dim: int, **params):
        self.dim = int(dim)
        self.options = parse_options(self.Options, f"fusion head {self.name}", params)
        self.dropout = float(self.options.dropout)
        self.config = TrainConfig.of(self.options)
        self.model: nn.Module | None = None
        self.num_classes: int | None = None
        self.objective: Objective | None = None

    # -- what a subclass provides --------------------------------------------------------

    def hyperparameters(self) -> dict:
        return {"dropout": self.dropout}

    def make_objective(self, train) -> Objective:
        """What the head learns from ``train.labels``."""
        return SingleLabel(train.labels, int(train.num_classes),
                           class_weights=self.config.class_weights,
                           sampling=self.config.sampling, device=self.device, head=self.name)

    def build_model(self, num_classes: int, mean: torch.Tensor, std: torch.Tensor) -> nn.Module:
        raise NotImplementedError

    def prepare(self, inputs) -> dict[str, torch.Tensor]:
        """Tensors of one split on the device, gathered per batch by :meth:`model_inputs`."""
        return {"x": torch.from_numpy(query_matrix(inputs, self.dim, self.name)).to(self.device)}

    def model_inputs(self, prepared: dict[str, torch.Tensor], idx: torch.Tensor) -> tuple:
        return (prepared["x"][idx.to(self.device)],)

    # -- the contract ----------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return self.config.torch_device()

    def fit(self, train, val=None, *, seed: int, checkpoint_dir: Path | str | None = None,
            dist=None) -> TrainingReport:
        if train.labels is None:
            raise ConfigError(f"fusion head {self.name}: fit needs training labels")
        self.objective = self.make_objective(train)
        generator = seed_everything(seed)
        x = query_matrix(train, self.dim, self.name)
        mean = torch.from_numpy(x.mean(axis=0))
        std = torch.from_numpy(x.std(axis=0) + np.float32(1e-6))
        self.num_classes = int(train.num_classes)
        self.model = self.build_model(self.num_classes, mean, std).to(self.device)
        prepared = {"train": self.prepare(train)}
        val_labels = None
        if val is not None and val.labels is not None and len(val):
            prepared["val"] = self.prepare(val)
            val_labels = val.labels
        signature = training_signature(self, self.config, seed=seed,
                                       data=data_fingerprint(train, val),
                                       num_classes=self.num_classes, **self.hyperparameters())
        problem = ClassifierProblem(
            self.objective, lambda split, idx: self.model_inputs(prepared[split], idx),
            train.labels, val_labels)
        report = fit(self.model, problem, TrainingRun(
            self.config, generator, checkpoint_dir=checkpoint_dir, signature=signature,
            desc=f"fit {self.name}", dist=dist))
        report.extra["head"] = self.name
        return report

    @torch.no_grad()
    def predict_proba(self, inputs) -> np.ndarray:
        if self.model is None:
            raise ConfigError(f"fusion head {self.name}: predict_proba called before fit")
        self.model.eval()
        prepared = self.prepare(inputs)
        out = [np.empty((0, self.num_classes), np.float32)]
        for begin in range(0, len(inputs), 1024):
            idx = torch.arange(begin, min(begin + 1024, len(inputs)))
            logits = self.model(*self.model_inputs(prepared, idx)).float()
            out.append(self.objective.probabilities(logits).cpu().numpy())
        return np.concatenate(out).astype(np.float32)


def query_matrix(inputs, dim: int, head: str) -> np.ndarray:
    """``[image; text]`` of a :class:`FusionInputs`, checked against the factory's ``dim``."""
    x = np.concatenate([np.asarray(inputs.image, np.float32),
                        np.asarray(inputs.text, np.float32)], axis=1)
    if x.shape[1] != dim:
        raise ConfigError(f"fusion head {head}: image + text features are {x.shape[1]} wide but "
                          f"the head was created with dim={dim}")
    return np.ascontiguousarray(x)


def data_fingerprint(*splits) -> str:
    """What the training data was (features, labels, neighbours and their scores, the
    knowledge base), so a checkpoint is never resumed or reused on other data."""
    return arrays_digest(*(array for split in splits if split is not None
                           for array in (split.image, split.text, split.labels,
                                         split.neighbours, split.neighbour_scores,
                                         split.knowledge.image, split.knowledge.text,
                                         split.knowledge.labels)
                           if array is not None))
