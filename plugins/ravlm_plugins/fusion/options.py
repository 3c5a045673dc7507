"""The suite parameters of the reference fusion heads and joint embedding, declared once as
dataclasses of :func:`ravlm_bench.api.option` fields: registered with each component so the
harness checks a suite before any work starts, and parsed by the component itself
(:func:`parse_options`); training options are shared by inheritance (:class:`LoopOptions`,
:class:`TrainingOptions`, :class:`HeadOptions`). This module imports no torch: the plugin
package imports it when the registry is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from ravlm_bench.api import ConfigError, option
from ravlm_bench.api import parse_options as api_parse_options

OPTIMIZERS = ("adam", "adamw", "sgd")
WEIGHTINGS = ("uniform", "similarity", "distance", "softmax")
Weighting = Literal["uniform", "similarity", "distance", "softmax"]
# option() bounds are inclusive: a strict bound (lr > 0) is declared as a minimum of 0 and
# checked in __post_init__


# Layer widths past this are typos, not models: a 2**16-wide square layer is already 16 GiB
MAX_WIDTH = 65_536

def parse_options(options: type, component: str, params: dict[str, Any]):
    """``options(**params)``, checked by the harness's declarations (names with a
    did-you-mean, types, bounds) and the dataclass's own checks; errors name ``component``."""
    return api_parse_options(options, params, component)


def _positive(**values: float) -> None:
    bad = [f"{name} must be > 0, got {value}" for name, value in values.items() if value <= 0]
    if bad:
        raise ConfigError("; ".join(bad))


# ---------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------


@dataclass
class LoopOptions:
    """What every training loop takes: optimizer, schedule, device, checkpoints."""

    optimizer: Literal["adam", "adamw", "sgd"] = option("adam", "optimizer")
    lr: float = option(1e-3, "learning rate (> 0)", minimum=0)
    weight_decay: float = option(0.0, "L2 penalty of the optimizer", minimum=0)
    batch_size: int = option(64, "training items per step", minimum=1)
    epochs: int = option(30, "epoch budget (more epochs continue a checkpointed run)",
                         minimum=0)
    progress: bool = option(True, "a progress bar per run (only when stderr is a terminal)")
    device: str = option("cpu", "torch device: cpu, cuda, cuda:N or auto")
    checkpoint_every_s: float = option(
        10.0, "at most one checkpoint write per this many seconds (and one at the end); "
              "0: every epoch", minimum=0)

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer {self.optimizer!r} is not supported; use one of "
                              f"{OPTIMIZERS}")
        if self.batch_size < 1 or self.epochs < 0 or self.lr <= 0:
            raise ConfigError(f"batch_size must be >= 1, epochs >= 0 and lr > 0; got "
                              f"{self.batch_size}, {self.epochs}, {self.lr}")


@dataclass
class TrainingOptions(LoopOptions):
    """What a head's training adds to :class:`LoopOptions`: early stopping, class balance,
    data parallelism (``loop.TrainConfig`` holds them all for the loop)."""

    patience: int = option(5, "epochs without a better validation score before stopping; "
                              "0: never", minimum=0)
    class_weights: Literal["none", "balanced"] | None = option(
        None, "balanced: weight the loss by inverse class frequency")
    sampling: Literal["shuffle", "balanced"] = option(
        "shuffle", "epoch order: a shuffle, or each class drawn equally often")
    data_parallel: bool = option(
        False, "under torchrun, train with DistributedDataParallel (from ddp_min_items "
               "items): steps divide over the ranks, but the weights then follow the ranks' "
               "reduction order and dropout masks, so results differ from one process's as "
               "another seed's would; off: rank 0 trains alone, exactly as one process does")
    ddp_min_items: int = option(
        4096, "with data_parallel, train data-parallel from this many training items; below "
              "it rank 0 trains alone", minimum=0)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.class_weights not in (None, "none", "balanced"):
            raise ConfigError(f"class_weights {self.class_weights!r}: use 'balanced' or omit it")
        if self.sampling not in ("shuffle", "balanced"):
            raise ConfigError(f"sampling {self.sampling!r}: use 'shuffle' or 'balanced'")


@dataclass
class HeadOptions(TrainingOptions):
    """Options of every head trained by ``training.TrainedHead``."""

    dropout: float = option(0.1, "dropout probability", minimum=0, maximum=1)


# ---------------------------------------------------------------------------------------
# Fusion heads
# ---------------------------------------------------------------------------------------


@dataclass
class ConcatOptions(HeadOptions):
    hidden: int = option(1024, "hidden layer width", minimum=1, maximum=MAX_WIDTH)


@dataclass
class CrossAttentionOptions(HeadOptions):
    k: int = option(10, "retrieved items attended over", minimum=1)
    width: int = option(256, "attention width (divisible by heads)", minimum=1,
                        maximum=MAX_WIDTH)
    heads: int = option(4, "attention heads", minimum=1)
    layers: int = option(1, "cross-attention blocks", minimum=1)
    neighbour_dropout: float = option(
        0.3, "probability of hiding a retrieved item in training, in [0, 1)", minimum=0,
        maximum=1)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.width % self.heads:
            raise ConfigError(f"width {self.width} is not divisible by heads {self.heads}")
        if not 0.0 <= self.neighbour_dropout < 1.0:
            raise ConfigError(f"neighbour_dropout must be in [0, 1), got "
                              f"{self.neighbour_dropout}")


@dataclass
class VoteOptions:
    """How retrieved neighbours' labels vote (``knn`` and ``multilabel-knn``)."""

    k: int = option(10, "neighbours that vote", minimum=1)
    weights: Weighting = option("similarity", "vote weighting")
    temperature: float = option(0.1, "softmax weighting's temperature (> 0)", minimum=0)

    def __post_init__(self) -> None:
        if self.weights not in WEIGHTINGS:
            raise ConfigError(f"weights {self.weights!r}; use one of {WEIGHTINGS}")
        _positive(temperature=self.temperature)


@dataclass
class KnnOptions(VoteOptions, ConcatOptions):
    """The vote's options, plus those of the ``concat`` head it trains when interpolating
    (``hidden``, ``dropout`` and the training options; only with ``interpolate``)."""

    interpolate: float | None = option(
        None, "mix lambda * vote + (1 - lambda) * a trained concat head", minimum=0, maximum=1)

    def __post_init__(self) -> None:
        VoteOptions.__post_init__(self)
        ConcatOptions.__post_init__(self)
        if self.interpolate is not None and not 0.0 <= float(self.interpolate) <= 1.0:
            raise ConfigError(f"interpolate must be in [0, 1], got {self.interpolate}")


@dataclass
class EvidenceLdaOptions:
    """The image retrieval key learned from gold evidence (``evidence-lda``)."""

    width: int = option(128, "discriminant directions kept (at most classes - 1)", minimum=1,
                        maximum=MAX_WIDTH)
    shrinkage: float = option(0.5, "Ledoit-Wolf-style shrinkage of the within-class "
                                   "covariance, 0 (none) to 1 (diagonal)", minimum=0,
                              maximum=1)


@dataclass
class ReaderOptions:
    """The answer-extraction reader (``reader``)."""

    k: int = option(5, "retrieved texts read per query", minimum=1)
    prior_c: float = option(1.0, "inverse L2 strength of the question-only prior's logistic "
                                 "regression (> 0)", minimum=0)

    def __post_init__(self) -> None:
        _positive(prior_c=self.prior_c)


@dataclass(kw_only=True)
class FinetuneOptions(ConcatOptions):
    image_encoder: dict | str = option(
        help="the image encoder to fine-tune: {name = resnet18 | resnet50, ...its parameters}")
    text_encoder: dict | str = option(
        help="the text encoder to fine-tune: {name = ..., ...its parameters}")
    freeze_image: bool = option(False, "keep the image encoder's weights fixed")
    freeze_text: bool = option(False, "keep the text encoder's weights fixed")
    encoder_lr: float = option(1e-5, "the encoders' learning rate (> 0)", minimum=0)

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive(encoder_lr=self.encoder_lr)


# ---------------------------------------------------------------------------------------
# Multi-label heads
# ---------------------------------------------------------------------------------------


@dataclass
class MultilabelLinearOptions(ConcatOptions):
    class_weights: Literal["none", "balanced"] | None = option(
        None, "balanced: weight each class's positives by its negatives / positives")
    # a multi-hot item belongs to several classes: there is no class to balance draws by
    sampling: Literal["shuffle"] = option("shuffle", "epoch order: a shuffle")
    val_metric: Literal["map", "micro_f1"] = option(
        "map", "validation score for early stopping: mean average precision, or micro-F1 at "
               "probability 0.5")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.sampling != "shuffle":
            raise ConfigError(f"sampling {self.sampling!r}: multi-label training only "
                              f"shuffles")
        if self.val_metric not in ("map", "micro_f1"):
            raise ConfigError(f"val_metric {self.val_metric!r}: use 'map' or 'micro_f1'")


@dataclass
class MultilabelKnnOptions(VoteOptions):
    pass


# ---------------------------------------------------------------------------------------
# Joint embeddings
# ---------------------------------------------------------------------------------------


@dataclass
class InfoNCEOptions(LoopOptions):
    width: int = option(256, "joint embedding width", minimum=1, maximum=MAX_WIDTH)
    temperature: float = option(0.07, "initial softmax temperature (> 0; learned)", minimum=0)
    batch_size: int = option(128, "pairs per step (the in-batch negatives)", minimum=2)

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive(temperature=self.temperature)
        if self.batch_size < 2:  # a batch of one pair has no negative to contrast with
            raise ConfigError(f"batch_size must be >= 2, got {self.batch_size}")
