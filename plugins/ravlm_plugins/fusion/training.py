"""The training loop every trained fusion head shares.

Adam and cross-entropy by default; optimizer, learning rate, weight decay, batch size,
epochs and early stopping (patience, on validation accuracy) are suite parameters; class
weights or balanced sampling for long-tailed tasks. The loop writes ``last.safetensors`` in
``checkpoint_dir`` (weights, best weights, optimizer moments, random states, counters) every
``checkpoint_every_s`` seconds and when it ends, so a killed run resumes where it stopped and
ends bit-identical to one that was never interrupted, and a finished training is reloaded,
not repeated, while its signature (head, hyperparameters, seed, data, code, torch) matches.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ravlm_bench.errors import ConfigError

from .checkpoint import Checkpoint, TrainState

log = logging.getLogger(__name__)

OPTIMIZERS = ("adam", "adamw", "sgd")


@dataclass
class TrainConfig:
    """Suite parameters of the training loop (shared by every trained head)."""

    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 64
    epochs: int = 30
    patience: int = 5  # epochs without a better validation score before stopping; 0: never
    class_weights: str | None = None  # None or "balanced" (inverse class frequency in the loss)
    sampling: str = "shuffle"  # "shuffle" or "balanced" (each class drawn equally often)
    progress: bool = True  # a bar per run, updated each epoch; also needs stderr to be a TTY
    device: str = "cpu"  # "cpu", "cuda", "cuda:N" or "auto"
    # Under torchrun, data-parallel training from this many training items; below it every
    # rank trains the whole (small) head itself, identically, with no per-step all-reduce.
    ddp_min_items: int = 4096
    # at most one checkpoint write per this many seconds (and one at the end); 0: every epoch
    checkpoint_every_s: float = 10.0

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer {self.optimizer!r} is not supported; use one of "
                              f"{OPTIMIZERS}")
        if self.class_weights not in (None, "none", "balanced"):
            raise ConfigError(f"class_weights {self.class_weights!r}: use 'balanced' or omit it")
        if self.sampling not in ("shuffle", "balanced"):
            raise ConfigError(f"sampling {self.sampling!r}: use 'shuffle' or 'balanced'")
        if self.batch_size < 1 or self.epochs < 0 or self.lr <= 0:
            raise ConfigError(f"batch_size must be >= 1, epochs >= 0 and lr > 0; got "
                              f"{self.batch_size}, {self.epochs}, {self.lr}")

    def torch_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)


def train_config(head: str, params: dict) -> TrainConfig:
    """A :class:`TrainConfig` from suite parameters; errors name the head and the parameter."""
    known = set(TrainConfig.__dataclass_fields__)
    unknown = sorted(set(params) - known)
    if unknown:
        raise ConfigError(f"fusion head {head}: unknown parameter(s) {', '.join(unknown)}; "
                          f"training parameters are {', '.join(sorted(known))}")
    try:
        return TrainConfig(**params)
    except ConfigError as exc:
        raise ConfigError(f"fusion head {head}: {exc}") from None


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
    from . import checkpoint

    files = {Path(__file__), Path(checkpoint.__file__)}
    for cls in head_class.__mro__:
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


def balanced_class_weights(labels: np.ndarray, num_classes: int) -> torch.Tensor:
    """scikit-learn's ``"balanced"``: n / (classes present * count); absent classes get 0."""
    counts = np.bincount(labels[labels >= 0], minlength=num_classes).astype(np.float64)
    present = max(int((counts > 0).sum()), 1)
    weights = np.where(counts > 0, counts.sum() / (present * np.maximum(counts, 1)), 0.0)
    return torch.tensor(weights, dtype=torch.float32)


def epoch_order(labels: np.ndarray, config: TrainConfig, generator: torch.Generator):
    """The item indices of one epoch: a shuffle, or a class-balanced draw with replacement."""
    n = len(labels)
    if config.sampling == "shuffle":
        return torch.randperm(n, generator=generator)
    counts = np.bincount(labels[labels >= 0])
    counts = np.maximum(counts, 1)  # only items with label -1 index an absent class
    weights = np.where(labels >= 0, 1.0 / counts[np.maximum(labels, 0)], 0.0)
    return torch.multinomial(torch.tensor(weights, dtype=torch.float64), n, replacement=True,
                             generator=generator)


# ---------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------

Batches = Callable[[str, torch.Tensor], tuple]  # (split, item indices) -> model inputs


def train_on_rank_zero(model: nn.Module, dist, train: Callable[[], dict]) -> dict:
    """Rank 0 runs ``train`` with every core of its machine and broadcasts the weights;
    the other ranks wait for them. Identical on every rank, and no per-step all-reduce,
    which costs more than a step of a small head."""
    from ravlm_bench.distributed import broadcast_object

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
) -> dict:
    """Train ``model`` (already on the config's device) and leave its best weights in it.

    ``batches("train" | "val", indices)`` returns the model's positional inputs for those
    items. With validation labels the best epoch is the one with the highest validation
    accuracy (lower validation loss breaks ties) and training stops after ``patience``
    epochs without one; without them the last epoch's weights are kept.

    With ``dist`` (a ``ravlm_bench.distributed.DistContext`` under torchrun) the model is
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
            desc=desc, param_groups=param_groups))
    device = next(model.parameters()).device
    distributed = dist is not None and dist.enabled
    net = model
    if distributed:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model)
    optimizer = make_optimizer(config, model.parameters() if param_groups is None
                               else param_groups)
    weight = torch.ones(num_classes)
    if config.class_weights == "balanced":
        weight = balanced_class_weights(train_labels, num_classes)
    weight = weight.to(device)
    # summed here and divided by the global batch's total weight below, which is what
    # CrossEntropyLoss's weighted mean does, but splits across ranks exactly
    loss_fn = nn.CrossEntropyLoss(weight=weight, ignore_index=-1, reduction="sum")
    y_train = torch.from_numpy(np.array(train_labels, dtype=np.int64))
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
            order = epoch_order(np.asarray(train_labels), config, generator)
            total, count = 0.0, 0
            for begin in range(0, len(order), config.batch_size):
                idx = order[begin:begin + config.batch_size]
                labelled = y_train[idx][y_train[idx] >= 0]
                if not len(labelled):
                    continue
                batch_weight = weight[labelled.to(device)].sum()
                mine = idx[dist.shard(len(idx))] if distributed else idx
                if len(mine):
                    loss_sum = loss_fn(net(*batches("train", mine)), y_train[mine].to(device))
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
                accuracy, val_loss = evaluate(model, batches, val_labels, config.batch_size)
                record.update(val_accuracy=accuracy, val_loss=val_loss)
                if (accuracy > state.best_accuracy
                        or (accuracy == state.best_accuracy and val_loss < state.best_loss)):
                    state.best_accuracy, state.best_loss = accuracy, val_loss
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
    return {
        **training_stats(state, steps_now, seconds, resumed_from),
        "train_loss": last.get("loss"),
        "best_epoch": state.best_epoch,
        "best_val_accuracy": state.best_accuracy if math.isfinite(state.best_accuracy) else None,
        "stopped_early": state.epoch < config.epochs,
    }


def training_stats(state: TrainState, steps_now: int, seconds_now: float,
                   resumed_from: int) -> dict:
    """What every training loop reports about its cost, in the keys the runner reads
    (``seconds`` over all runs and ``seconds_this_run``: ``cells.training_cost``)."""
    return {
        "epochs": state.epoch,
        "steps": steps_now,
        "seconds": state.seconds,  # what training this head took, over all runs
        "seconds_this_run": seconds_now,
        "steps_per_second": state.steps / state.seconds if state.seconds > 0 else 0.0,
        # a finished training reloaded from its checkpoint: nothing was trained now
        "reused": resumed_from > 0 and steps_now == 0,
        "resumed_from_epoch": resumed_from,
    }


def _check_ranks_resume_alike(dist, epoch: int, checkpoint: Checkpoint | None) -> None:
    """Data-parallel ranks must start from the same epoch, or their steps (and collectives)
    fall out of step. They differ when the checkpoint directory is not on a filesystem that
    every node shares; every rank then raises the same error."""
    from ravlm_bench.distributed import all_gather_same_shape

    epochs = all_gather_same_shape(dist, np.array([epoch], dtype=np.int64)).ravel().tolist()
    if len(set(epochs)) > 1:
        found = ", ".join(f"rank {rank}: {'none' if e < 0 else f'epoch {e}'}"
                          for rank, e in enumerate(epochs))
        where = checkpoint.path if checkpoint is not None else "the checkpoint directory"
        raise ConfigError(f"ranks see different training checkpoints at {where} ({found}); "
                          "put the run directory on a filesystem that every node shares")


@torch.no_grad()
def evaluate(model: nn.Module, batches: Batches, labels: np.ndarray,
             batch_size: int) -> tuple[float, float]:
    """Validation accuracy (a ``-1`` label always counts as wrong) and mean loss."""
    model.eval()
    device = next(model.parameters()).device
    y = torch.from_numpy(np.array(labels, dtype=np.int64))
    correct, loss_sum, counted = 0, 0.0, 0
    for begin in range(0, len(y), max(batch_size, 256)):
        idx = torch.arange(begin, min(begin + max(batch_size, 256), len(y)))
        logits = model(*batches("val", idx)).float()
        target = y[idx].to(device)
        correct += int((logits.argmax(1) == target).sum())
        known = target >= 0
        if known.any():
            loss_sum += float(nn.functional.cross_entropy(logits[known], target[known],
                                                          reduction="sum"))
            counted += int(known.sum())
    model.train()
    return correct / len(y), loss_sum / max(counted, 1)


# ---------------------------------------------------------------------------------------
# The shared head: fit / predict_proba around a torch model
# ---------------------------------------------------------------------------------------


class TrainedHead:
    """fit / predict_proba of a trained head; subclasses define the net and its inputs.

    The query is ``[image; text]`` standardised with the training split's mean and std
    (stored in the net, so checkpoints carry them).
    """

    name = "?"
    uses_retrieval = True

    def __init__(self, *, dim: int, dropout: float = 0.1, **train_params):
        self.dim = int(dim)
        self.dropout = float(dropout)
        self.config = train_config(self.name, train_params)
        self.model: nn.Module | None = None
        self.num_classes: int | None = None

    # -- what a subclass provides --------------------------------------------------------

    def hyperparameters(self) -> dict:
        return {"dropout": self.dropout}

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
            dist=None) -> dict:
        from ravlm_bench.seeding import seed_everything

        if train.labels is None:
            raise ConfigError(f"fusion head {self.name}: fit needs training labels")
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
        stats = train_classifier(
            self.model, lambda split, idx: self.model_inputs(prepared[split], idx),
            train.labels, val_labels, num_classes=self.num_classes, config=self.config,
            generator=generator, checkpoint_dir=checkpoint_dir, signature=signature,
            desc=f"fit {self.name}", dist=dist)
        return {"head": self.name, **stats}

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
            out.append(torch.softmax(logits, dim=1).cpu().numpy())
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
