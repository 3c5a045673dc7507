"""``concat-finetune``: the ``concat`` baseline with its reference ResNet and BERT encoders
trained end to end (at ``encoder_lr``, the classifier at ``lr``; ``freeze_image`` /
``freeze_text`` keep one fixed), reading the raw images and texts the runner puts in
``FusionInputs.image_paths`` and ``texts`` one batch at a time. Meant for a GPU; it runs on
the CPU, slowly.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ravlm_bench.api import (
    ConfigError,
    DataError,
    ImageFiles,
    TrainingReport,
    seed_everything,
)

from .concat import ConcatNet
from .loop import TrainingRun, fit
from .options import FinetuneOptions
from .training import ClassifierProblem, TrainedHead, training_signature

log = logging.getLogger(__name__)

NAME = "concat-finetune"
STATS_ITEMS = 512  # training items whose initial features give the standardisation
PREDICT_BATCH = 256


class FinetuneNet(nn.Module):
    """pixels + tokens -> ResNet pooled ; BERT pooled -> ``ConcatNet`` -> logits."""

    def __init__(self, image_model: nn.Module, text_model: nn.Module, classifier: ConcatNet, *,
                 pooling: str, normalize: bool, freeze_image: bool, freeze_text: bool):
        super().__init__()
        self.image_model, self.text_model, self.classifier = image_model, text_model, classifier
        self.pooling, self.normalize = pooling, normalize
        self.freeze_image, self.freeze_text = freeze_image, freeze_text
        for param in image_model.parameters():
            param.requires_grad_(not freeze_image)
        for param in text_model.parameters():
            param.requires_grad_(not freeze_text)
        # BERT's pooler is never used ([CLS] / mean pooling read last_hidden_state): frozen,
        # so neither the optimizer nor DistributedDataParallel waits for its gradients
        pooler = getattr(text_model, "pooler", None)
        if pooler is not None:
            for param in pooler.parameters():
                param.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        # The ResNet stays in eval mode even while it trains: batch-norm statistics from the
        # tiny batches that fit on a CPU (or a small GPU) would be noise, so the pretrained
        # running mean/var are used and only the affine weights (and convolutions) learn.
        self.image_model.eval()
        if self.freeze_text:  # a frozen encoder gives the same features as at evaluation
            self.text_model.eval()
        return self

    def features(self, pixels, input_ids, attention_mask, token_type_ids) -> torch.Tensor:
        from ravlm_plugins.text_encoders import pool_hidden_states

        grad = torch.is_grad_enabled()
        with torch.set_grad_enabled(grad and not self.freeze_image):
            image = self.image_model(pixel_values=pixels).pooler_output.flatten(1)
        with torch.set_grad_enabled(grad and not self.freeze_text):
            hidden = self.text_model(input_ids=input_ids, attention_mask=attention_mask,
                                     token_type_ids=token_type_ids).last_hidden_state
            text = pool_hidden_states(hidden, attention_mask, self.pooling, self.normalize)
        return torch.cat([image.float(), text.float()], dim=1)

    def forward(self, pixels, input_ids, attention_mask, token_type_ids) -> torch.Tensor:
        return self.classifier(self.features(pixels, input_ids, attention_mask, token_type_ids))


class ConcatFinetuneHead(TrainedHead):
    """``concat`` whose ResNet and BERT are part of the trained model.

    The encoders are the reference ones (``ravlm_plugins.image_encoders`` /
    ``text_encoders``), created with ``trainable=True`` so their weights stay fp32 and batch
    norm stays unfolded; the suite gives them as tables, e.g. ``image_encoder = {name =
    "resnet18", image_size = 64, seed = 0}`` and ``text_encoder = {name = "minilm-l6",
    max_length = 32}``. Images are decoded and preprocessed, and texts tokenised, one batch
    at a time; the cached features the runner also passes are not used (both encoders
    frozen is ``concat`` on features computed on the fly).
    """

    name = NAME
    Options = FinetuneOptions
    uses_retrieval = False
    neighbour_labels = "unused"
    targets = ("single-label",)

    def __init__(self, *, dim: int | None = None, **params):
        # ``dim`` is the width of the runner's cached features, which this head does not use
        super().__init__(dim=int(dim or 0), **params)
        options = self.options
        self.image_params = encoder_params("image_encoder", options.image_encoder,
                                           image_encoder_names())
        self.text_params = encoder_params("text_encoder", options.text_encoder,
                                          text_encoder_names())
        self.hidden = int(options.hidden)
        self.freeze_image, self.freeze_text = bool(options.freeze_image), bool(options.freeze_text)
        self.encoder_lr = float(options.encoder_lr)
        self.image_encoder = self.text_encoder = None  # created fresh by every fit

    def hyperparameters(self) -> dict:
        return {**super().hyperparameters(), "hidden": self.hidden,
                "image_encoder": self.image_params, "text_encoder": self.text_params,
                "freeze_image": self.freeze_image, "freeze_text": self.freeze_text,
                "encoder_lr": self.encoder_lr}

    # -- encoders and batches ------------------------------------------------------------

    def load_encoders(self) -> None:
        """Fresh pretrained (or seeded random) encoders, so a refit never starts from the
        weights an earlier fit tuned."""
        from ravlm_plugins.image_encoders import ResNetImageEncoder
        from ravlm_plugins.text_encoders import TEXT_ENCODERS

        image = dict(self.image_params)
        self.image_encoder = ResNetImageEncoder(image.pop("name"), trainable=True, **image)
        text = dict(self.text_params)
        factory, _ = TEXT_ENCODERS[text.pop("name")]
        self.text_encoder = factory(trainable=True, **text)

    def model_inputs(self, items: dict, idx: torch.Tensor) -> tuple:
        """Decode, preprocess and tokenise the items ``idx`` of one split."""
        rows = [int(i) for i in idx]
        pixels = load_pixels([items["image_paths"][i] for i in rows],
                             self.image_encoder.preprocess)
        tokens = self.text_encoder.tokenize([items["texts"][i] for i in rows])
        device = self.device
        token_type_ids = tokens.get("token_type_ids")
        return (pixels.to(device).contiguous(memory_format=torch.channels_last),
                tokens["input_ids"].to(device), tokens["attention_mask"].to(device),
                token_type_ids.to(device) if token_type_ids is not None else None)

    def build_net(self, num_classes: int, items: dict) -> FinetuneNet:
        text = self.text_encoder
        net = FinetuneNet(self.image_encoder.module, text.module, nn.Identity(),
                          pooling=text.pooling, normalize=text.normalize,
                          freeze_image=self.freeze_image, freeze_text=self.freeze_text)
        net = net.to(self.device)
        # the classifier standardises with the initial encoders' feature statistics, as
        # ``concat`` does with the cached features (std floored: see feature_scale)
        n = len(items["texts"])
        sample = torch.from_numpy(np.unique(np.linspace(0, n - 1, min(n, STATS_ITEMS))
                                            .astype(np.int64)))
        net.eval()
        with torch.no_grad():
            x = torch.cat([net.features(*self.model_inputs(items, sample[b:b + PREDICT_BATCH]))
                           for b in range(0, len(sample), PREDICT_BATCH)]).cpu()
        mean, std = x.mean(0), feature_scale(x, self.image_encoder.dim)
        net.classifier = ConcatNet(x.shape[1], self.hidden, num_classes, self.dropout,
                                   mean, std).to(self.device)
        return net

    def param_groups(self, net: FinetuneNet) -> list[dict]:
        """The classifier at ``lr``, the encoders' trainable weights at ``encoder_lr``."""
        encoders = [p for m in (net.image_model, net.text_model) for p in m.parameters()
                    if p.requires_grad]
        groups = [{"params": list(net.classifier.parameters())}]
        if encoders:
            groups.append({"params": encoders, "lr": self.encoder_lr})
        return groups

    # -- the contract ----------------------------------------------------------------------

    def fit(self, train, val=None, *, seed: int, checkpoint_dir: Path | str | None = None,
            dist=None) -> TrainingReport:
        if train.labels is None:
            raise ConfigError(f"fusion head {NAME}: fit needs training labels")
        self.objective = self.make_objective(train)
        prepared = {"train": raw_items(train, "train")}
        val_labels = None
        if val is not None and val.labels is not None and len(val):
            prepared["val"] = raw_items(val, "val")
            val_labels = val.labels
        generator = seed_everything(seed)
        self.load_encoders()
        self.num_classes = int(train.num_classes)
        self.model = self.build_net(self.num_classes, prepared["train"])
        signature = training_signature(
            self, self.config, seed=seed, data=raw_fingerprint(train, val),
            num_classes=self.num_classes, **self.hyperparameters(),
            encoders=[self.image_encoder.fingerprint(), self.text_encoder.fingerprint()])
        problem = ClassifierProblem(
            self.objective, lambda split, idx: self.model_inputs(prepared[split], idx),
            train.labels, val_labels)
        report = fit(self.model, problem, TrainingRun(
            self.config, generator, checkpoint_dir=checkpoint_dir, signature=signature,
            desc=f"fit {NAME}", dist=dist, param_groups=self.param_groups(self.model)))
        report.extra["head"] = NAME
        return report

    @torch.no_grad()
    def predict_proba(self, inputs) -> np.ndarray:
        if self.model is None:
            raise ConfigError(f"fusion head {NAME}: predict_proba called before fit")
        self.model.eval()
        items = raw_items(inputs, "predict")
        out = [np.empty((0, self.num_classes), np.float32)]
        for begin in range(0, len(inputs), PREDICT_BATCH):
            idx = torch.arange(begin, min(begin + PREDICT_BATCH, len(inputs)))
            logits = self.model(*self.model_inputs(items, idx)).float()
            out.append(self.objective.probabilities(logits).cpu().numpy())
        return np.concatenate(out).astype(np.float32)


# ---------------------------------------------------------------------------------------
# Parameters and raw items
# ---------------------------------------------------------------------------------------


def image_encoder_names() -> tuple[str, ...]:
    from ravlm_plugins.image_encoders import RESNET_CONFIGS

    return tuple(RESNET_CONFIGS)


def text_encoder_names() -> tuple[str, ...]:
    from ravlm_plugins.text_encoders import TEXT_ENCODERS

    return tuple(TEXT_ENCODERS)


def encoder_params(key: str, value: Any, names: tuple[str, ...]) -> dict:
    """A suite's ``{name = ..., ...}`` encoder table, checked; ``trainable`` is this head's."""
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict) or value.get("name") not in names:
        raise ConfigError(f"fusion head {NAME}: {key} must be a table with name one of "
                          f"{', '.join(names)}, e.g. {key} = {{name = \"{names[0]}\"}}; "
                          f"got {value!r}")
    if "trainable" in value:
        raise ConfigError(f"fusion head {NAME}: {key} takes no 'trainable'; use "
                          f"freeze_{key.split('_')[0]} = true to keep the encoder fixed")
    return dict(value)


def feature_scale(x: torch.Tensor, image_dim: int) -> torch.Tensor:
    """Per-feature std, floored at a tenth of the RMS value of its encoder's block.

    A feature that barely varies at the start (a dead ReLU channel, the [CLS] vector of a
    random model) may come alive as its encoder trains; divided by its tiny initial std it
    would swamp the classifier.
    """
    std = x.std(0, unbiased=False)
    for block in (slice(0, image_dim), slice(image_dim, x.shape[1])):
        rms = float(x[:, block].square().mean().sqrt()) if x[:, block].numel() else 0.0
        std[block] = std[block].clamp(min=max(0.1 * rms, 1e-6))
    return std


def raw_items(inputs, split: str) -> dict:
    """The raw image paths and texts of a split: ``FusionInputs.image_paths`` and ``texts``."""
    paths, texts = getattr(inputs, "image_paths", None), getattr(inputs, "texts", None)
    if paths is None or texts is None:
        raise ConfigError(f"fusion head {NAME} needs the raw images and texts "
                          f"(FusionInputs.image_paths and texts, missing in the {split} "
                          "split); run it through the ravlm-bench runner")
    if len(paths) != len(inputs) or len(texts) != len(inputs):
        raise ConfigError(f"fusion head {NAME}: the {split} split has {len(inputs)} items but "
                          f"{len(paths)} image paths and {len(texts)} texts")
    return {"image_paths": list(paths), "texts": [str(t) for t in texts]}


def load_pixels(paths: list[str], preprocess) -> torch.Tensor:
    """Decode and preprocess one batch of image files: a float32 tensor (n, 3, H, W)."""
    files = ImageFiles(paths, preprocess)  # the runner's decoding and error texts
    tensors = []
    for index in range(len(paths)):
        _, tensor, error = files[index]
        if error is not None:
            raise DataError(f"image {paths[index]}: {error}")
        tensors.append(tensor)
    return torch.stack(tensors)


def raw_fingerprint(*splits) -> str:
    """What the training data was (paths, texts, labels, and the cached features, which
    change with the files' contents), so a checkpoint is never resumed or reused on other
    data."""
    digest = hashlib.blake2b(digest_size=12)
    for split in splits:
        if split is None:
            continue
        items = raw_items(split, "fingerprint")
        digest.update(json.dumps([items["image_paths"], items["texts"]]).encode())
        if split.labels is not None:
            digest.update(np.ascontiguousarray(split.labels, dtype=np.int64).tobytes())
        for features in (split.image, split.text):
            digest.update(np.ascontiguousarray(features, dtype=np.float32).tobytes())
    return digest.hexdigest()
