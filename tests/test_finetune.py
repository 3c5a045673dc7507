"""The ``concat-finetune`` head: the concat baseline with its encoders trained end to end."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file

from ravlm_bench.api import check_fusion_head
from ravlm_bench.foundation.errors import ConfigError, DataError
from ravlm_bench.plugin_host.contracts import FusionInputs, KnowledgeBase
from ravlm_plugins.fusion.checkpoint import CHECKSUM_KEY, checksum

WORDS = ["a", "photo", "of", "the", "some", "thing", "picture", "an", "object"]
COLOURS = [(200, 40, 40), (40, 200, 40), (40, 40, 200), (200, 200, 40)]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """A small random ResNet and a 2-layer BERT with its fast tokenizer, save_pretrained."""
    from transformers import BertConfig, BertModel, BertTokenizerFast, ResNetConfig, ResNetModel

    root = tmp_path_factory.mktemp("finetune-models")
    torch.manual_seed(1)
    resnet = ResNetConfig(num_channels=3, embedding_size=8, hidden_sizes=[8, 16],
                          depths=[1, 1], layer_type="basic")
    ResNetModel(resnet).save_pretrained(root / "resnet")
    bert_dir = root / "bert"
    bert_dir.mkdir()
    vocab = bert_dir / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True)
    bert = BertConfig(vocab_size=len(WORDS) + 5, hidden_size=32, num_hidden_layers=2,
                      num_attention_heads=4, intermediate_size=64, max_position_embeddings=64)
    BertModel(bert).save_pretrained(bert_dir)
    tokenizer.save_pretrained(bert_dir)
    return root / "resnet", bert_dir


def colour_split(directory, n: int, seed: int, *, raw: str | None = "fields") -> FusionInputs:
    """Noisy images whose label is their tint; captions are random words (no label). The raw
    items travel in ``FusionInputs.image_paths`` / ``texts`` (``raw="fields"``), in an
    ``extras`` attribute as callers once set them (``"extras"``), or not at all."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    paths, texts, labels = [], [], []
    for i in range(n):
        label = i % len(COLOURS)
        noise = rng.integers(0, 256, (40, 48, 3))
        pixels = (0.5 * noise + 0.5 * np.array(COLOURS[label])).astype(np.uint8)
        path = directory / f"{i}.png"
        Image.fromarray(pixels).save(path)
        paths.append(str(path))
        texts.append(" ".join(rng.choice(WORDS, 4)))
        labels.append(label)
    kb = KnowledgeBase(image=np.zeros((1, 1), np.float32), text=np.zeros((1, 1), np.float32),
                       labels=np.zeros(1, np.int64), image_ids=np.zeros(1, np.int64))
    split = FusionInputs(
        image=np.zeros((n, 1), np.float32), text=np.zeros((n, 1), np.float32),
        neighbours=np.empty((n, 0), np.int64), neighbour_scores=np.empty((n, 0), np.float32),
        knowledge=kb, num_classes=len(COLOURS), labels=np.array(labels, np.int64))
    if raw == "fields":
        split.image_paths, split.texts = paths, texts
    elif raw == "extras":
        split.extras = {"image_paths": paths, "texts": texts}
    return split


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    root = tmp_path_factory.mktemp("colours")
    return colour_split(root / "train", 40, seed=0), colour_split(root / "val", 20, seed=1)


@pytest.fixture
def make_head(registry, tiny_models):
    resnet_dir, bert_dir = tiny_models

    def make(**params):
        params = {"hidden": 32, "lr": 1e-3, "encoder_lr": 1e-3, "epochs": 6, "batch_size": 8,
                  "patience": 0, "progress": False, "freeze_text": True, **params}
        return registry.create(
            "fusion-heads", "concat-finetune", dim=1,
            image_encoder={"name": "resnet18", "weights": str(resnet_dir), "image_size": 32},
            text_encoder={"name": "bert", "weights": str(bert_dir), "max_length": 16},
            **params)

    return make


def image_weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def accuracy(head, split) -> float:
    return float((head.predict_proba(split).argmax(1) == split.labels).mean())


def test_fine_tuning_the_image_encoder_fits_what_frozen_features_do_not(make_head, splits,
                                                                       tiny_models):
    from transformers import ResNetModel

    train, val = splits
    initial = image_weights(ResNetModel.from_pretrained(tiny_models[0]))
    frozen = make_head(freeze_image=True)
    frozen_stats = frozen.fit(train, val, seed=0)
    tuned = make_head(freeze_image=False)
    tuned_stats = tuned.fit(train, val, seed=0)

    # the frozen encoder is bit-identical to the saved one; the tuned one moved
    after_frozen = image_weights(frozen.model.image_model)
    assert all(torch.equal(after_frozen[k], initial[k]) for k in initial)
    after_tuned = image_weights(tuned.model.image_model)
    conv = "encoder.stages.0.layers.0.layer.0.convolution.weight"
    assert not torch.equal(after_tuned[conv], initial[conv])
    # batch-norm running statistics stay the pretrained ones (the ResNet trains in eval mode)
    assert all(torch.equal(after_tuned[k], initial[k]) for k in initial if "running" in k)

    assert tuned_stats.extra["train_loss"] < 0.5 * frozen_stats.extra["train_loss"]
    assert accuracy(tuned, train) >= accuracy(frozen, train) + 0.1
    assert accuracy(tuned, val) >= accuracy(frozen, val)


def test_same_seed_gives_identical_probabilities(make_head, splits):
    train, val = splits
    runs = []
    for _ in range(2):
        head = make_head(epochs=2, freeze_text=False)
        head.fit(train, val, seed=3)
        runs.append(head.predict_proba(val))
    np.testing.assert_array_equal(runs[0], runs[1])
    assert runs[0].shape == (len(val), len(COLOURS)) and runs[0].dtype == np.float32
    other = make_head(epochs=2, freeze_text=False)
    other.fit(train, val, seed=4)
    assert not np.array_equal(other.predict_proba(val), runs[0])


def test_resumes_from_its_checkpoint_bit_identically(make_head, splits, tmp_path):
    train, val = splits
    make_head(epochs=2).fit(train, val, seed=0, checkpoint_dir=tmp_path)
    resumed = make_head(epochs=3)
    report = resumed.fit(train, val, seed=0, checkpoint_dir=tmp_path)
    assert report.resumed_from_epoch == 2
    straight = make_head(epochs=3)
    straight.fit(train, val, seed=0)
    np.testing.assert_array_equal(resumed.predict_proba(val), straight.predict_proba(val))


def test_a_checkpoint_torch_refuses_is_trained_afresh(make_head, splits, tmp_path, caplog):
    """Refused after the encoders, batch-norm statistics and both learning-rate groups'
    moments were loaded: all of them are put back, so the new training is a fresh one."""
    train, val = splits
    make_head(epochs=2).fit(train, val, seed=0, checkpoint_dir=tmp_path)
    path = tmp_path / "last.safetensors"
    with safe_open(str(path), framework="pt") as handle:
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}
        metadata = {k: v for k, v in handle.metadata().items() if k != CHECKSUM_KEY}
    tensors["rng.generator"] = torch.zeros_like(tensors["rng.generator"])  # an invalid state
    save_file(tensors, str(path), metadata={**metadata,
                                            CHECKSUM_KEY: checksum(tensors, metadata)})

    with caplog.at_level(logging.WARNING):
        again = make_head(epochs=2)
        report = again.fit(train, val, seed=0, checkpoint_dir=tmp_path)
    warned = [r.getMessage() for r in caplog.records if str(path) in r.getMessage()]
    assert len(warned) == 1 and "torch refused its state" in warned[0]
    assert not report.reused and report.resumed_from_epoch == 0
    fresh = make_head(epochs=2)
    fresh.fit(train, val, seed=0)
    np.testing.assert_array_equal(again.predict_proba(val), fresh.predict_proba(val))


def test_encoders_train_at_encoder_lr(make_head, splits, tiny_models):
    from transformers import ResNetModel

    train, val = splits
    initial = image_weights(ResNetModel.from_pretrained(tiny_models[0]))
    moved = {}
    for encoder_lr in (1e-3, 1e-6):
        head = make_head(epochs=2, encoder_lr=encoder_lr)
        head.fit(train, val, seed=0)
        after = image_weights(head.model.image_model)
        moved[encoder_lr] = max(float((after[k] - initial[k]).abs().max())
                                for k in initial if after[k].is_floating_point())
    # Adam moves a weight by about lr per step: 10 steps here
    assert moved[1e-6] < 2e-5 < 1e-3 < moved[1e-3]


def test_missing_raw_items_say_to_use_the_runner(make_head, splits, tmp_path):
    train, val = splits
    bare = colour_split(tmp_path / "bare", 8, seed=2, raw=None)
    with pytest.raises(ConfigError, match="needs the raw images and texts.*ravlm-bench runner"):
        make_head().fit(bare, None, seed=0)
    head = make_head(epochs=1)
    head.fit(train, None, seed=0)
    with pytest.raises(ConfigError, match="needs the raw images and texts"):
        head.predict_proba(bare)


def test_raw_items_in_an_extras_dict_are_refused(make_head, splits, tmp_path):
    """The raw items travel in FusionInputs.image_paths and texts only; an ``extras`` dict
    set by an old caller is not read, and the head says which fields it needs."""
    train, _ = splits
    old_style = colour_split(tmp_path / "old", 12, seed=1, raw="extras")
    head = make_head(epochs=1)
    head.fit(train, None, seed=0)
    with pytest.raises(ConfigError, match=r"needs the raw images and texts "
                                          r"\(FusionInputs.image_paths and texts, missing"):
        head.predict_proba(old_style)


def test_passes_the_conformance_kit(make_head):
    check_fusion_head(lambda dim: make_head(epochs=1, freeze_text=False))


def test_unreadable_image_names_the_file(make_head, tmp_path):
    split = colour_split(tmp_path / "broken", 8, seed=5)
    broken = split.image_paths[3]
    with open(broken, "wb") as handle:
        handle.write(b"not a png")
    with pytest.raises(DataError, match=f"image {broken}: cannot decode"):
        make_head(epochs=1).fit(split, None, seed=0)


def test_bad_encoder_tables_are_config_errors(registry, tiny_models):
    resnet_dir, bert_dir = tiny_models
    text = {"name": "bert", "weights": str(bert_dir)}
    with pytest.raises(ConfigError, match="image_encoder must be a table with name one of "
                                          "resnet18, resnet50"):
        registry.create("fusion-heads", "concat-finetune", dim=1,
                        image_encoder={"name": "vit"}, text_encoder=text)
    with pytest.raises(ConfigError, match="freeze_image"):
        registry.create("fusion-heads", "concat-finetune", dim=1, text_encoder=text,
                        image_encoder={"name": "resnet18", "trainable": False})


def test_trainable_encoders_keep_batch_norm_and_fp32(tiny_models):
    from ravlm_plugins.image_encoders import ResNetImageEncoder
    from ravlm_plugins.text_encoders import create_bert

    resnet_dir, bert_dir = tiny_models
    trainable = ResNetImageEncoder("resnet18", weights=str(resnet_dir), image_size=32,
                                   trainable=True)
    folded = ResNetImageEncoder("resnet18", weights=str(resnet_dir), image_size=32,
                                precision="fp32")
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in trainable.module.modules())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.module.modules())
    assert trainable.precision == "fp32" and trainable.fingerprint() != folded.fingerprint()
    images = [Image.new("RGB", (40, 36), colour) for colour in COLOURS]
    np.testing.assert_allclose(trainable.encode(images), folded.encode(images),
                               rtol=1e-4, atol=1e-5)
    with pytest.raises(ConfigError, match="cannot be fine-tuned"):
        ResNetImageEncoder("resnet18", weights=str(resnet_dir), precision="bf16",
                           trainable=True)
    with pytest.raises(ConfigError, match="cannot be fine-tuned"):
        create_bert(weights=str(bert_dir), precision="bf16", trainable=True)
