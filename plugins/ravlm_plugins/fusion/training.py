"""The training loop every trained fusion head shares.

Adam by default; optimizer, learning rate, weight decay, batch size, epochs and early
stopping (patience, on the validation score) are suite parameters (``options.py``). What
the head learns (labels, loss, validation score) is its objective (``objectives.py``):
cross-entropy over single labels, with class weights or balanced sampling for long-tailed
tasks, or binary cross-entropy over multi-hot rows. The loop writes ``last.safetensors`` in
``checkpoint_dir`` (weights, best weights, optimizer moments, random states, counters) every
``checkpoint_every_s`` seconds and when it ends, so a killed run resumes where it stopped and
ends bit-identical to one that was never interrupted, and a finished training is reloaded,
not repeated, while its signature (head, hyperparameters, seed, data, code, torch) matches.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ravlm_bench.api import (
    ConfigError,
    FusionHead,
    JointEmbedding,
    TrainingReport,
    all_gather_same_shape,
    broadcast_object,
    seed_everything,
)

from .checkpoint import Checkpoint, TrainState
from .objectives import Batches, Objective, SingleLabel
from .options import HeadOptions, TrainingOptions, parse_options

log = logging.getLogger(__name__)


@dataclass
class TrainConfig(TrainingOptions):
    """The training loop's settings: the :class:`TrainingOptions` fields of a component's
    options (declared, with their defaults and checks, in ``options.py``)."""

    @classmethod
    def of(cls, options) -> TrainConfig:
        """The loop's settings among ``options`` (a head's or a joint embedding's options
        dataclass); a setting it does not have keeps its default."""
        return cls(**{f.name: getattr(options, f.name) for f in dataclasses.fields(cls)
                      if hasattr(options, f.name)})

    def torch_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)


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
    its bases, this loop and the checkpoint format. Edited code never reuses a training."""
    from . import checkpoint, objectives

    files = {Path(__file__), Path(checkpoint.__file__), Path(objectives.__file__)}
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


def show_progress(enabled: bool) -> bool:
    """Bars only when asked for and a person is watching (not in CI logs or --quiet)."""
    return bool(enabled) and sys.stderr.isatty()


def progress_bar(total: int, initial: int, enabled: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="epoch", leave=False,
                disable=not show_progress(enabled))


def make_optimizer(config: TrainConfig, params) -> torch.optim.Optimizer:
    # the fused kernel updates every tensor in one pass: measured here it halved the step of
    # the concat head and cut xattn's by a sixth against the per-tensor loop
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay,
                                fused=True)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay,
                                 fused=True)
    return torch.optim.SGD(params, lr=config.lr, momentum=0.9, weight_decay=config.weight_decay)


# ---------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------


def train_on_rank_zero(model: nn.Module, dist, train) -> TrainingReport:
    """Rank 0 runs ``train() -> TrainingReport`` with every core of its machine and
    broadcasts the weights; the other ranks wait for them. Identical on every rank, and no
    per-step all-reduce, which costs more than a step of a small head."""
    if not dist.is_main:
        state, stats = broadcast_object(dist)
        if state is None:
            raise RuntimeError("training failed on rank 0; see its error")
        model.load_state_dict(state)
        model.eval()
        return stats
    threads = torch.get_num_threads()
    if next(model.parameters()).device.type == "cpu":
        # the other ranks only wait for the weights: their cores are this rank's to use
        torch.set_num_threads(max(threads, len(os.sched_getaffinity(0))))
    try:
        stats = train()
    except BaseException:
        broadcast_object(dist, (None, None))
        raise
    finally:
        torch.set_num_threads(threads)
    state = {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()}
    broadcast_object(dist, (state, stats))
    return stats


def train_classifier(
    model: nn.Module,
    batches: Batches,
    train_labels: np.ndarray,
    val_labels: np.ndarray | None,
    *,
    num_classes: int,
    config: TrainConfig,
    generator: torch.Generator,
    checkpoint_dir: Path | str | None = None,
    signature: str = "",
    desc: str = "train",
    dist=None,
    param_groups: list[dict] | None = None,
    objective: Objective | None = None,
) -> TrainingReport:
    """Train ``model`` (already on the config's device) and leave its best weights in it.

    ``batches("train" | "val", indices)`` returns the model's positional inputs for those
    items. ``objective`` says what the labels are, the loss and the validation score
    (default: :class:`SingleLabel` with the config's class weights and sampling). With
    validation labels the best epoch is the one with the highest validation score (lower
    validation loss breaks ties) and training stops after ``patience`` epochs without one;
    without them the last epoch's weights are kept.

    With ``dist`` (a ``ravlm_bench.api.DistContext`` under torchrun) the model is
    wrapped in DistributedDataParallel: every rank draws the same global batch order and
    computes its shard of each global batch, with the loss normalised by the global batch,
    so the averaged gradient is the single-process gradient up to floating-point reduction
    order. Only dropout differs (each rank draws masks for its own rows). A head with fewer
    than ``config.ddp_min_items`` training items is trained by rank 0 alone instead.

    ``param_groups`` (torch optimizer groups, e.g. pretrained encoder weights at a lower
    learning rate) replaces ``model.parameters()`` in the optimizer; a group without ``lr``
    trains at the config's.
    """
    if dist is not None and dist.enabled and len(train_labels) < config.ddp_min_items:
        # a small head: rank 0 trains it alone (dist=None below) and broadcasts the weights
        return train_on_rank_zero(model, dist, lambda: train_classifier(
            model, batches, train_labels, val_labels, num_classes=num_classes, config=config,
            generator=generator, checkpoint_dir=checkpoint_dir, signature=signature,
            desc=desc, param_groups=param_groups, objective=objective))
    device = next(model.parameters()).device
    if objective is None:
        objective = SingleLabel(train_labels, num_classes, class_weights=config.class_weights,
                                sampling=config.sampling, device=device)
    distributed = dist is not None and dist.enabled
    net = model
    if distributed:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model)
    optimizer = make_optimizer(config, model.parameters() if param_groups is None
                               else param_groups)
    y_train = objective.targets(train_labels)
    state, best = TrainState(), None
    checkpoint = (Checkpoint(checkpoint_dir, signature, config.checkpoint_every_s)
                  if checkpoint_dir is not None else None)
    main_rank = dist is None or not dist.enabled or dist.is_main
    writes_checkpoints = checkpoint is not None and main_rank
    resumed_from = 0
    saved = checkpoint.resume(model, optimizer, generator) if checkpoint is not None else None
    if saved is not None:
        state, best = saved
        resumed_from = state.epoch
        log.info("resuming %s from %s at epoch %d", desc, checkpoint.path, state.epoch)
    if distributed:
        _check_ranks_resume_alike(dist, resumed_from if saved is not None else -1, checkpoint)

    start, steps_now = time.perf_counter(), 0
    show = config.progress and main_rank
    bar = progress_bar(config.epochs, min(state.epoch, config.epochs), show, desc)
    try:
        while not state.done and state.epoch < config.epochs:
            epoch_started = time.perf_counter()
            model.train()
            order = objective.epoch_order(train_labels, generator)
            total, count = 0.0, 0
            for begin in range(0, len(order), config.batch_size):
                idx = order[begin:begin + config.batch_size]
                batch_weight = objective.batch_weight(y_train[idx])
                if batch_weight is None:
                    continue
                mine = idx[dist.shard(len(idx))] if distributed else idx
                if len(mine):
                    loss_sum = objective.loss_sum(net(*batches("train", mine)), y_train[mine])
                else:  # this rank has no rows in a tiny last batch: it still joins the step
                    loss_sum = net(*batches("train", idx[:1])).sum() * 0.0
                # DDP averages gradients over ranks, hence the world size here
                scale = dist.world_size if distributed else 1
                loss = loss_sum * scale / batch_weight
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += float(loss_sum.detach() / batch_weight) * len(idx) * scale
                count += len(idx)
                steps_now += 1
                state.steps += 1
            state.epoch += 1
            record = {"epoch": state.epoch, "loss": total / max(count, 1)}
            if val_labels is not None and len(val_labels):
                score, val_loss = objective.evaluate(model, batches, val_labels,
                                                     config.batch_size)
                record.update({f"val_{objective.score_name}": score, "val_loss": val_loss})
                # the checkpoint's best_accuracy holds whichever score the objective keeps
                if (score > state.best_accuracy
                        or (score == state.best_accuracy and val_loss < state.best_loss)):
                    state.best_accuracy, state.best_loss = score, val_loss
                    state.best_epoch, state.bad_epochs = state.epoch, 0
                    best = {k: v.detach().clone() for k, v in model.state_dict().items()}
                else:
                    state.bad_epochs += 1
                    if config.patience and state.bad_epochs >= config.patience:
                        state.done = True
            else:
                state.best_epoch = state.epoch
            state.history.append(record)
            state.seconds += time.perf_counter() - epoch_started
            finished = state.done or state.epoch >= config.epochs
            if writes_checkpoints and checkpoint.due(finished):
                checkpoint.save(model, optimizer, state, best, generator)
            bar.update(1)
            bar.set_postfix({k: round(v, 4) for k, v in record.items() if k != "epoch"})
    finally:
        bar.close()
    if best is not None:
        model.load_state_dict(best)
    model.eval()
    seconds = time.perf_counter() - start
    last = state.history[-1] if state.history else {}
    best_score = state.best_accuracy if math.isfinite(state.best_accuracy) else None
    return training_stats(state, steps_now, seconds, resumed_from,
                          train_loss=last.get("loss"), best_epoch=state.best_epoch,
                          **{f"best_val_{objective.score_name}": best_score},
                          stopped_early=state.epoch < config.epochs)


def training_stats(state: TrainState, steps_now: int, seconds_now: float, resumed_from: int,
                   **extra) -> TrainingReport:
    """The report of a training loop: its cost in the fields the runner reads (``seconds``
    over all runs, ``seconds_this_run``: ``cells.training_cost``), and ``extra``."""
    return TrainingReport(
        epochs=state.epoch,
        steps=steps_now,
        seconds=state.seconds,  # what training this head took, over all runs
        seconds_this_run=seconds_now,
        # a finished training reloaded from its checkpoint: nothing was trained now
        reused=resumed_from > 0 and steps_now == 0,
        resumed_from_epoch=resumed_from,
        extra={"steps_per_second": state.steps / state.seconds if state.seconds > 0 else 0.0,
               **extra})


def _check_ranks_resume_alike(dist, epoch: int, checkpoint: Checkpoint | None) -> None:
    """Data-parallel ranks must start from the same epoch, or their steps (and collectives)
    fall out of step. They differ when the checkpoint directory is not on a filesystem that
    every node shares; every rank then raises the same error."""
    epochs = all_gather_same_shape(dist, np.array([epoch], dtype=np.int64)).ravel().tolist()
    if len(set(epochs)) > 1:
        found = ", ".join(f"rank {rank}: {'none' if e < 0 else f'epoch {e}'}"
                          for rank, e in enumerate(epochs))
        where = checkpoint.path if checkpoint is not None else "the checkpoint directory"
        raise ConfigError(f"ranks see different training checkpoints at {where} ({found}); "
                          "put the run directory on a filesystem that every node shares")


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
        report = train_classifier(
            self.model, lambda split, idx: self.model_inputs(prepared[split], idx),
            train.labels, val_labels, num_classes=self.num_classes, config=self.config,
            generator=generator, checkpoint_dir=checkpoint_dir, signature=signature,
            desc=f"fit {self.name}", dist=dist, objective=self.objective)
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
    digest = hashlib.blake2b(digest_size=12)
    for split in splits:
        if split is None:
            continue
        kb = split.knowledge
        for array in (split.image, split.text, split.labels, split.neighbours,
                      split.neighbour_scores, kb.image, kb.text, kb.labels):
            if array is not None:
                digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()
