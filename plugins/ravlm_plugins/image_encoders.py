"""The reference image encoders: ResNet-18 and ResNet-50 from ``transformers``, pooled features.

Weights come from a local directory in Hugging Face format (``save_pretrained`` output or a
downloaded ``microsoft/resnet-50``); a hub id is honoured only with ``allow_download=True``.
Without weights the network is randomly initialised from ``seed``. Preprocessing (resize the
shorter side, centre crop, ImageNet mean/std) belongs to the encoder and to its fingerprint.
torch and transformers are imported inside the factory, never at import time. The
EfficientNet-Lite encoders (``ravlm_plugins.efficientnet``) build on its preprocessing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from ravlm_bench.api import ConfigError, cause, hookimpl, option

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
Precision = Literal["auto", "fp32", "bf16"]
PRECISIONS = get_args(Precision)
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")

# The standard torchvision / timm / microsoft/resnet-* layouts.
RESNET_CONFIGS: dict[str, dict[str, Any]] = {
    "resnet18": {"layer_type": "basic", "depths": [2, 2, 2, 2],
                 "hidden_sizes": [64, 128, 256, 512]},
    "resnet50": {"layer_type": "bottleneck", "depths": [3, 4, 6, 3],
                 "hidden_sizes": [256, 512, 1024, 2048]},
}


@dataclass
class ResNetOptions:
    """What a suite may set on ``resnet18`` and ``resnet50``."""

    weights: str | None = option(None, "save_pretrained() directory (a hub id with "
                                       "allow_download); none: random init from seed")
    image_size: int = option(224, "side of the centre crop, in pixels", minimum=1)
    resize_ratio: float = option(256 / 224, "the shorter side is resized to image_size times "
                                            "this before the crop")
    precision: Precision = option("auto", "auto: bf16 where the hardware computes it "
                                          "natively, else fp32")
    batch_size: int = option(16, "images per forward pass", minimum=1)
    seed: int = option(0, "seed of the random init (without weights)")
    allow_download: bool = option(False, "let weights name a Hugging Face hub id")
    compile: bool = option(False, "torch.compile the network (inference only; a CPU needs "
                                  "a C++ compiler)")
    trainable: bool = option(False, "fp32 weights and batch norm kept separate, for "
                                    "end-to-end fine-tuning")


@hookimpl
def register_image_encoders(register) -> None:
    for arch, cfg in RESNET_CONFIGS.items():
        register(arch, _factory(arch),
                 description=f"transformers ResNet ({cfg['hidden_sizes'][-1]}-d pooled); "
                             "weights=DIR, else random init",
                 options=ResNetOptions)


def _factory(arch: str):
    def create(**params: Any) -> ResNetImageEncoder:
        return ResNetImageEncoder(arch, **params)

    create.__name__ = f"create_{arch}"
    return create


def resolve_precision(precision: str) -> str:
    """``auto`` means bf16 where the CPU (or GPU) computes it natively, else fp32."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision {precision!r} is not one of {PRECISIONS}")
    if precision != "auto":
        return precision
    import torch

    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if torch.backends.mkldnn.is_available() and _cpu_has_bf16() else "fp32"


def trainable_precision(what: str, precision: str, trainable: bool) -> str:
    """The precision to load at: fine-tuning needs fp32 weights (``auto`` gives fp32)."""
    if not trainable:
        return resolve_precision(precision)
    if precision not in ("auto", "fp32"):
        raise ConfigError(f"{what}: precision {precision!r} cannot be fine-tuned; use "
                          "precision = \"fp32\" (or omit it) with trainable encoders")
    return "fp32"


def _cpu_has_bf16() -> bool:
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def directory_digest(directory: Path, suffixes: tuple[str, ...] = WEIGHT_SUFFIXES,
                     extra_names: tuple[str, ...] = ()) -> str:
    """sha256 over the weight files of a model directory (names and bytes, sorted)."""
    digest = hashlib.sha256()
    files = sorted(p for p in directory.iterdir()
                   if p.is_file() and (p.suffix in suffixes or p.name in extra_names))
    for file in files:
        digest.update(file.name.encode())
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 22), b""):
                digest.update(block)
    return digest.hexdigest()


def model_fingerprint(prefix: str, config, payload: dict) -> str:
    """``prefix-<hash>`` of a transformers config (less what does not change the output:
    library version, paths, dtype) and what else the features depend on."""
    config = config.to_dict()
    for volatile in ("transformers_version", "_name_or_path", "torch_dtype", "dtype",
                     "architectures"):
        config.pop(volatile, None)
    text = json.dumps({**payload, "config": config}, sort_keys=True, default=str)
    return f"{prefix}-{hashlib.sha256(text.encode()).hexdigest()[:20]}"


def state_dict_digest(model) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().contiguous().numpy().tobytes())
    return digest.hexdigest()


def fold_batch_norms(model):
    """Fold each eval-mode BatchNorm into the convolution before it.

    Same features (to float rounding) with one op fewer per layer: measured 2.3x faster
    for ResNet-50 in bf16 on a 2-core CPU, where the separate BatchNorm pass was
    memory-bound.
    """
    import torch
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for module in model.modules():
        conv = getattr(module, "convolution", None)
        norm = getattr(module, "normalization", None)
        if isinstance(conv, torch.nn.Conv2d) and isinstance(norm, torch.nn.BatchNorm2d):
            module.convolution = fuse_conv_bn_eval(conv, norm)
            module.normalization = torch.nn.Identity()
    return model


def cxx_compiler() -> str | None:
    """The C++ compiler torch.compile's CPU backend would build with, if there is one."""
    import shutil

    candidates = (os.environ.get("CXX"), "g++", "clang++", "c++")
    return next((path for name in candidates if name and (path := shutil.which(name))), None)


def _frozen(compiled):
    """Call ``compiled`` with inductor's freezing on, so that the compile its first call
    triggers folds the weights in as constants: convolutions prepacked for oneDNN, with
    the ReLU and the residual add fused in. ``torch.compile(options={"freezing": True})``
    does not do this (torch 2.13 compiles plain ``aten.convolution``s with it), and the
    global setting would leak into the user's other compiles."""
    import torch._inductor.config

    def forward(*args, **kwargs):
        with torch._inductor.config.patch(freezing=True):
            return compiled(*args, **kwargs)

    return forward


def missing_weights_message(what: str, weights: str, fix: str) -> str:
    return f"{what}: weights {weights!r} is not a local directory; {fix}"


class ImagePreprocess:
    """PIL image -> normalised float32 tensor (3, crop, crop): resize the shorter side,
    centre crop, scale to [0, 1], subtract ``mean``, divide by ``std`` (ImageNet's unless
    told otherwise; bilinear unless told ``bicubic``).

    Only the crop is resampled (PIL's ``resize(box=...)`` over the crop's region of the
    source): the same pixels as resizing the whole image and then cropping, to one grey
    level, in 0.6x the time (2.3 against 4.0 ms for a 640x480 photo).

    :meth:`decode_size` is the harness's hint for decoding image files: a JPEG at least
    twice the resize target is decoded DCT-scaled (libjpeg's 1/2, 1/4 or 1/8, never below
    that size; ``Image.draft``), as decoding a full 640x480 photo took the cores the model
    needed at small crops. Smaller images decode exactly as before.
    """

    FILTERS = {"bilinear": "BILINEAR", "bicubic": "BICUBIC"}

    def __init__(self, resize_size: int, crop_size: int,
                 mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD,
                 interpolation: str = "bilinear"):
        self.resize_size, self.crop_size = int(resize_size), int(crop_size)
        self.mean, self.std = tuple(mean), tuple(std)
        self.interpolation = interpolation

    def describe(self) -> dict[str, Any]:
        return {"resize_shorter": self.resize_size, "interpolation": self.interpolation,
                "centre_crop": self.crop_size, "resampled": "crop box",
                "jpeg_draft": "DCT-scaled to >= resize_shorter",
                "mean": self.mean, "std": self.std}

    def decode_size(self, width: int, height: int) -> tuple[int, int]:
        """The smallest decoded size of a ``width`` x ``height`` image that the resize still
        needs: the size it is resized to (shorter side ``resize_size``, rounded up, and no
        side under the crop). A hint: decoding at any larger size resizes from more pixels."""
        if min(width, height) <= 0:
            return width, height
        scale = self.resize_size / min(width, height)
        return (max(1, self.crop_size, math.ceil(width * scale)),
                max(1, self.crop_size, math.ceil(height * scale)))

    def __call__(self, image):
        import torch
        from PIL import Image

        if image.mode != "RGB":
            image = image.convert("RGB")
        width, height = image.size
        crop = self.crop_size
        scale = self.resize_size / min(width, height)
        size = (max(crop, round(width * scale)), max(crop, round(height * scale)))
        left, top = (size[0] - crop) // 2, (size[1] - crop) // 2
        to_x, to_y = width / size[0], height / size[1]  # resized -> source coordinates
        box = (left * to_x, top * to_y, (left + crop) * to_x, (top + crop) * to_y)
        resample = getattr(Image.Resampling, self.FILTERS[self.interpolation])
        image = image.resize((crop, crop), resample, box=box)
        pixels = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy())
        pixels = pixels.permute(2, 0, 1).float().div_(255.0)
        mean = torch.tensor(self.mean).view(3, 1, 1)
        std = torch.tensor(self.std).view(3, 1, 1)
        return pixels.sub_(mean).div_(std)


class ResNetImageEncoder:
    """A ResNet whose pooled output is the image feature, with its own preprocessing.

    The network is built on first use: a run whose features are all cached never imports
    the model code or reads the weights (their digest is the fingerprint's). ``trainable=True``
    is for end-to-end fine-tuning (the ``concat-finetune`` head): batch norm stays a
    separate layer and the weights stay fp32, so :attr:`module` can be trained.

    ``compile=True`` runs the network through ``torch.compile`` (inductor, weights frozen
    and prepacked for oneDNN with ReLU and residual adds fused in, one static batch shape).
    Measured on a shared 2-core CPU in bf16 at 224 px, after a one-off compile of 5-35 s:
    ResNet-50 at 1.3-1.8x the eager images/s and a median 0.76 of the bf16 matrix-product
    rate over eleven runs (0.69-0.95), ResNet-18 at 1.2-1.8x. Worth it for a large dataset,
    not for a small one; the features round differently, so it is part of the fingerprint.

    ``batch_size`` defaults to 16: in bf16 on a 2-core CPU, batches of 16 ran at 1.1-1.6x
    the images/s of 32 in seven of eight paired runs (compiled and eager, both networks), as
    a batch's activations stay closer to the caches.
    """

    def __init__(self, arch: str, *, weights: str | None = None, image_size: int = 224,
                 precision: str = "auto", batch_size: int = 16, seed: int = 0,
                 allow_download: bool = False, resize_ratio: float = 256 / 224,
                 trainable: bool = False, compile: bool = False):
        self.arch = arch
        self.image_size = int(image_size)
        self.resize_size = int(round(self.image_size * resize_ratio))
        self.trainable = bool(trainable)
        self.precision = trainable_precision(f"image encoder {arch}", precision, self.trainable)
        self.batch_size = int(batch_size)
        self.weights, self.seed = weights, int(seed)
        self.compile = bool(compile)
        if self.compile and self.trainable:
            raise ConfigError(f"image encoder {arch}: compile=true is for inference; a "
                              "trainable encoder cannot be compiled")
        self._model = self._forward = None
        self._config, self._weights_id = self._find_weights(weights, allow_download)
        self.dim = int(self._config.hidden_sizes[-1])
        # A small picklable object, so DataLoader workers never receive the model.
        self.preprocess = ImagePreprocess(self.resize_size, self.image_size)
        self._fingerprint: str | None = None

    def _find_weights(self, weights: str | None, allow_download: bool):
        """The model's config and what identifies its weights, checked without loading them."""
        import torch
        import transformers
        from transformers import ResNetConfig

        if weights is None:
            log.warning("image encoder %s is randomly initialised (seed %d): pass "
                        "weights=DIR for pretrained features", self.arch, self.seed)
            # Random init depends on the seed and on the library versions that drew it.
            return ResNetConfig(**RESNET_CONFIGS[self.arch]), {
                "seed": self.seed, "torch": torch.__version__,
                "transformers": transformers.__version__}
        directory = Path(weights).expanduser()
        if directory.is_dir():
            if not (directory / "config.json").is_file():
                raise ConfigError(f"image encoder {self.arch}: {directory} has no config.json; "
                                  "it must be a directory written by save_pretrained()")
            digest = directory_digest(directory)
            try:
                config = ResNetConfig.from_pretrained(directory, local_files_only=True)
                if not any(p.suffix in WEIGHT_SUFFIXES for p in directory.iterdir()):
                    raise OSError(f"no weights file ({', '.join(WEIGHT_SUFFIXES)})")
            except (OSError, ValueError) as exc:
                raise self._cannot_load(directory, exc) from exc
            return config, {"files": digest}
        if allow_download:  # the digest needs the weights, so a hub model loads now
            from transformers import ResNetModel

            self._model = self._prepare(ResNetModel.from_pretrained(weights))
            return self._model.config, {"hub": weights, "state": state_dict_digest(self._model)}
        raise ConfigError(missing_weights_message(
            f"image encoder {self.arch}", weights,
            "save a model there with ResNetModel.save_pretrained(DIR) or download one with "
            f"`hf download microsoft/{self.arch.replace('resnet', 'resnet-')} --local-dir DIR`,"
            " or pass allow_download=true to fetch a hub id"))

    def _cannot_load(self, directory: Path, exc: Exception) -> ConfigError:
        return ConfigError(f"image encoder {self.arch}: cannot load a ResNet from {directory} "
                           f"({cause(exc)}); write one there with save_pretrained()")

    def _load_model(self):
        import torch
        from transformers import ResNetModel

        if self.weights is None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                return ResNetModel(self._config)
        directory = Path(self.weights).expanduser()
        try:
            return ResNetModel.from_pretrained(directory, local_files_only=True)
        except Exception as exc:  # a damaged weights file raises its reader's own error type
            raise self._cannot_load(directory, exc) from exc

    def _prepare(self, model):
        import torch

        model = model.eval()
        if not self.trainable:  # folded weights cannot be trained: BN would be baked in
            model = fold_batch_norms(model)
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float32
        return model.to(dtype=dtype, memory_format=torch.channels_last)

    @property
    def model(self):
        """The network, built (or loaded) on first use."""
        if self._model is None:
            self._model = self._prepare(self._load_model())
        return self._model

    def _network(self):
        """What :meth:`encode_batch` calls: the network, or its compiled form."""
        if self._forward is None:
            import torch

            self._forward = self.model
            if self.compile:
                if self.model.device.type == "cpu" and not cxx_compiler():
                    raise ConfigError(f"image encoder {self.arch}: compile=true needs a C++ "
                                      "compiler for torch.compile on a CPU (g++ or clang++, "
                                      "or $CXX); install one or set compile=false")
                self._forward = _frozen(torch.compile(self.model, dynamic=False))
        return self._forward

    def preprocessing(self) -> dict[str, Any]:
        return self.preprocess.describe()

    @property
    def module(self):
        """The torch ``ResNetModel`` (pixel_values -> pooler_output); train it only when the
        encoder was created with ``trainable=True``."""
        return self.model

    # -- the model ------------------------------------------------------------------------

    def encode_batch(self, pixels) -> np.ndarray:
        """Preprocessed tensor (n, 3, H, W) -> float32 features (n, dim)."""
        import torch

        out = np.empty((len(pixels), self.dim), np.float32)
        network = self._network()
        dtype = next(self.model.parameters()).dtype
        with torch.inference_mode():
            for start in range(0, len(pixels), self.batch_size):
                chunk = pixels[start:start + self.batch_size]
                rows = len(chunk)
                if self.compile and rows < self.batch_size:
                    # one static shape: a short batch is padded rather than recompiled
                    chunk = torch.cat([chunk, chunk.new_zeros(
                        (self.batch_size - rows, *chunk.shape[1:]))])
                chunk = chunk.to(dtype=dtype).contiguous(memory_format=torch.channels_last)
                pooled = network(pixel_values=chunk).pooler_output[:rows]
                out[start:start + rows] = pooled.flatten(1).float().numpy()
        return out

    def encode(self, images: list) -> np.ndarray:
        import torch

        if not images:
            return np.zeros((0, self.dim), np.float32)
        return self.encode_batch(torch.stack([self.preprocess(image) for image in images]))

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = model_fingerprint(
                self.arch, self._config,
                {"encoder": "resnet", "weights": self._weights_id,
                 "preprocessing": self.preprocessing(), "precision": self.precision,
                 # unfolded batch norm and compiled kernels round differently; the
                 # defaults keep old fingerprints
                 **({"batch_norm": "unfolded"} if self.trainable else {}),
                 **({"compiled": "inductor, frozen"} if self.compile else {})})
        return self._fingerprint
