"""The one training loop of the reference fusion heads and joint embedding: :func:`fit`
trains a model on a :class:`TrainingProblem` (the batches of an epoch, the loss of a batch,
a validation score where there is one) and owns the rest: the optimizer, the best epoch's
weights and early stopping, checkpoints at most every ``checkpoint_every_s`` seconds and at
the end (resumed bit-identically, reloaded when finished), DistributedDataParallel or rank 0
alone under torchrun, and the timings of the :class:`TrainingReport`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ravlm_bench.api import ConfigError, TrainingReport, all_gather_same_shape, broadcast_object

from .checkpoint import Checkpoint, TrainState
from .options import TrainingOptions

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


@dataclass
class TrainingRun:
    """One training's settings, besides the model and what it learns."""

    config: TrainConfig
    generator: torch.Generator  # seeded by the caller; every epoch's order is drawn from it
    checkpoint_dir: Path | str | None = None
    signature: str = ""  # what a checkpoint must match to be resumed (training_signature)
    desc: str = "train"  # the progress bar's label
    dist: Any = None  # a ravlm_bench.api.DistContext under torchrun
    param_groups: list[dict] | None = None  # optimizer groups instead of model.parameters()


@dataclass
class Epoch:
    """One epoch's batches, in training order, as a problem's ``batch_loss`` takes them."""

    batches: Iterable[Any]
    # what the epoch's mean training loss divides by; None: the items of the batches stepped on
    items: int | None = None


@dataclass
class BatchLoss:
    """The loss to step on, and the batch's share of the epoch's summed training loss."""

    loss: torch.Tensor
    summed: float
    items: int


class TrainingProblem:
    """What :func:`fit` trains a model on; subclasses implement :meth:`epoch` and
    :meth:`batch_loss`, and :meth:`validate` where there is a validation split."""

    data_parallel = False  # batch_loss computes its rank's shard of a batch (DDP)
    items = 0  # training items; data-parallel training needs config.ddp_min_items of them
    score_name = "score"  # the validation score, reported as "val_<score_name>"

    def epoch(self, generator: torch.Generator, batch_size: int) -> Epoch:
        """The next epoch's batches of ``batch_size`` items; every random draw of the
        epoch's order happens here."""
        raise NotImplementedError

    def batch_loss(self, net: nn.Module, batch: Any, dist) -> BatchLoss | None:
        """The loss of ``batch`` through ``net``; None: the batch has nothing to learn.
        ``dist`` is the DistContext when training data-parallel, else None."""
        raise NotImplementedError

    def after_step(self, model: nn.Module) -> None:
        """Called after every optimizer step (e.g. to clamp a parameter)."""

    def validate(self, model: nn.Module, batch_size: int) -> tuple[float, float] | None:
        """The validation score (higher is better) and loss; None: no validation split."""
        return None

    def progress(self, model: nn.Module) -> dict[str, float]:
        """What the progress bar shows besides the epoch's losses."""
        return {}

    def outcome(self, model: nn.Module, state: TrainState,
                config: TrainConfig) -> dict[str, Any]:
        """The report's fields besides the training loss."""
        return {}


def fit(model: nn.Module, problem: TrainingProblem, run: TrainingRun) -> TrainingReport:
    """Train ``model`` (already on the config's device) and leave its best weights in it.

    With validation the best epoch is the one with the highest validation score (lower
    validation loss breaks ties) and training stops after ``patience`` epochs without one;
    without it the last epoch's weights are kept.

    Under torchrun (``run.dist``) training is rank 0's alone by default: it trains with
    every core and broadcasts the weights, so the model is the one a single process trains.
    With ``config.data_parallel``, a problem that declares ``data_parallel`` and has at least
    ``config.ddp_min_items`` items trains in DistributedDataParallel instead: every rank
    draws the same global batch order and computes its shard of each global batch, so the
    averaged gradient is the single-process gradient up to floating-point reduction order,
    and each rank draws dropout masks for its own rows. Over many epochs those differences
    grow into another model, so the checkpoint signature names the number of ranks.
    """
    dist = run.dist
    if dist is None or not dist.enabled:
        return TrainingLoop(model, problem, run).train()
    if not (run.config.data_parallel and problem.data_parallel
            and problem.items >= run.config.ddp_min_items):
        return train_on_rank_zero(model, dist, lambda: fit(
            model, problem, dataclasses.replace(run, dist=None)))
    signature = data_parallel_signature(run.signature, dist.world_size)
    report = TrainingLoop(model, problem, dataclasses.replace(run, signature=signature)).train()
    report.extra["data_parallel_processes"] = dist.world_size
    return report


def data_parallel_signature(signature: str, world_size: int) -> str:
    """The checkpoint signature of a data-parallel training over ``world_size`` ranks: its
    weights are not another process count's, so neither is its checkpoint."""
    return f"{signature}|data-parallel over {world_size} processes"


class TrainingLoop:
    """The state of one :func:`fit`: the model, its optimizer, its checkpoint and counters."""

    def __init__(self, model: nn.Module, problem: TrainingProblem, run: TrainingRun):
        self.model, self.problem, self.run, self.config = model, problem, run, run.config
        self.dist = run.dist if run.dist is not None and run.dist.enabled else None
        self.net = model
        if self.dist is not None:
            from torch.nn.parallel import DistributedDataParallel

            self.net = DistributedDataParallel(model)
        self.optimizer = make_optimizer(self.config, model.parameters()
                                        if run.param_groups is None else run.param_groups)
        self.checkpoint = (Checkpoint(run.checkpoint_dir, run.signature,
                                      self.config.checkpoint_every_s)
                           if run.checkpoint_dir is not None else None)
        self.main_rank = self.dist is None or self.dist.is_main
        self.state, self.best = TrainState(), None
        self.steps_now = 0

    def train(self) -> TrainingReport:
        resumed_from = self._resume()
        start = time.perf_counter()
        config, state = self.config, self.state
        bar = progress_bar(config.epochs, min(state.epoch, config.epochs),
                           config.progress and self.main_rank, self.run.desc)
        try:
            while not state.done and state.epoch < config.epochs:
                epoch_started = time.perf_counter()
                record = self._train_epoch()
                self._judge(record)
                state.history.append(record)
                state.seconds += time.perf_counter() - epoch_started
                finished = state.done or state.epoch >= config.epochs
                if self.checkpoint is not None and self.main_rank \
                        and self.checkpoint.due(finished):
                    self.checkpoint.save(self.model, self.optimizer, state, self.best,
                                         self.run.generator)
                bar.update(1)
                bar.set_postfix({**{k: round(v, 4) for k, v in record.items() if k != "epoch"},
                                 **self.problem.progress(self.model)})
        finally:
            bar.close()
        if self.best is not None:
            self.model.load_state_dict(self.best)
        self.model.eval()
        last = state.history[-1] if state.history else {}
        return training_report(state, self.steps_now, time.perf_counter() - start, resumed_from,
                               train_loss=last.get("loss"),
                               **self.problem.outcome(self.model, state, config))

    def _resume(self) -> int:
        """Continue from the checkpoint when there is a usable one; the epoch it holds."""
        saved = (self.checkpoint.resume(self.model, self.optimizer, self.run.generator)
                 if self.checkpoint is not None else None)
        if saved is not None:
            self.state, self.best = saved
            log.info("resuming %s from %s at epoch %d", self.run.desc, self.checkpoint.path,
                     self.state.epoch)
        if self.dist is not None:
            _check_ranks_resume_alike(self.dist, self.state.epoch if saved is not None else -1,
                                      self.checkpoint)
        return self.state.epoch if saved is not None else 0

    def _train_epoch(self) -> dict[str, Any]:
        """One optimizer step per batch; the epoch's history record."""
        self.model.train()
        epoch = self.problem.epoch(self.run.generator, self.config.batch_size)
        total, count = 0.0, 0
        for batch in epoch.batches:
            step = self.problem.batch_loss(self.net, batch, self.dist)
            if step is None:
                continue
            self.optimizer.zero_grad(set_to_none=True)
            step.loss.backward()
            self.optimizer.step()
            self.problem.after_step(self.model)
            total += step.summed
            count += step.items
            self.steps_now += 1
            self.state.steps += 1
        self.state.epoch += 1
        items = epoch.items if epoch.items is not None else max(count, 1)
        return {"epoch": self.state.epoch, "loss": total / items}

    def _judge(self, record: dict[str, Any]) -> None:
        """Validate the epoch: keep its weights when they are the best so far, stop after
        ``patience`` epochs without a better score."""
        state = self.state
        judged = self.problem.validate(self.model, self.config.batch_size)
        if judged is None:
            state.best_epoch = state.epoch
            return
        score, val_loss = judged
        record.update({f"val_{self.problem.score_name}": score, "val_loss": val_loss})
        # the checkpoint's best_accuracy holds whichever score the problem keeps
        if score > state.best_accuracy or (score == state.best_accuracy
                                           and val_loss < state.best_loss):
            state.best_accuracy, state.best_loss = score, val_loss
            state.best_epoch, state.bad_epochs = state.epoch, 0
            self.best = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        else:
            state.bad_epochs += 1
            if self.config.patience and state.bad_epochs >= self.config.patience:
                state.done = True


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


def training_report(state: TrainState, steps_now: int, seconds_now: float, resumed_from: int,
                    **extra) -> TrainingReport:
    """The report of a training: its cost in the fields the runner reads (``seconds`` over
    all runs, ``seconds_this_run``: ``cells.training_cost``), and ``extra``."""
    return TrainingReport(
        epochs=state.epoch,
        steps=steps_now,
        seconds=state.seconds,  # what training this model took, over all runs
        seconds_this_run=seconds_now,
        # a finished training reloaded from its checkpoint: nothing was trained now
        reused=resumed_from > 0 and steps_now == 0,
        resumed_from_epoch=resumed_from,
        extra={"steps_per_second": state.steps / state.seconds if state.seconds > 0 else 0.0,
               **extra})


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


def show_progress(enabled: bool) -> bool:
    """Bars only when asked for and a person is watching (not in CI logs or --quiet)."""
    return bool(enabled) and sys.stderr.isatty()


def progress_bar(total: int, initial: int, enabled: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="epoch", leave=False,
                disable=not show_progress(enabled))


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
