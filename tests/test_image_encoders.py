"""The reference image encoders: ResNet-18/50 through the registry, and the weights path."""

from __future__ import annotations

import logging
import pickle
import re

import numpy as np
import pytest
import torch
from PIL import Image
from testhelpers import count_loads, damaged_copy

from ravlm_bench.cli import main
from ravlm_bench.foundation.errors import RavlmError
from ravlm_bench.plugin_host.host import get_plugin_manager
from ravlm_bench.plugin_host.registry import Registry
from ravlm_bench.testing import check_image_encoder, sample_images
from ravlm_plugins.image_encoders import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    _cpu_has_bf16,
    cxx_compiler,
)


@pytest.fixture(scope="module")
def registry():
    return Registry(get_plugin_manager())


def cosine(a, b):
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def save_tiny_resnet(directory):
    """Write a small random 16-d ResNet with non-trivial BatchNorm statistics to
    ``directory`` in Hugging Face format; return the model (test_conformance uses it too)."""
    from transformers import ResNetConfig, ResNetModel

    torch.manual_seed(1)
    config = ResNetConfig(num_channels=3, embedding_size=8, hidden_sizes=[8, 16],
                          depths=[1, 1], layer_type="basic")
    model = ResNetModel(config).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    model.save_pretrained(directory)
    return model


@pytest.fixture(scope="module")
def tiny_resnet_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tiny-resnet")
    return directory, save_tiny_resnet(directory)


@pytest.mark.parametrize("name,dim,size", [("resnet18", 512, 128), ("resnet50", 2048, 64)])
def test_conformance_kit(registry, name, dim, size):
    encoder = registry.create("image-encoders", name, image_size=size, precision="fp32")
    assert encoder.dim == dim
    check_image_encoder(encoder)


def test_weights_dir_gives_the_in_memory_models_features(registry, tiny_resnet_dir):
    directory, model = tiny_resnet_dir
    encoder = registry.create("image-encoders", "resnet18", weights=str(directory),
                              image_size=32, precision="fp32")
    assert encoder.dim == 16
    images = sample_images(4, size=48)
    with torch.inference_mode():
        pixels = torch.stack([encoder.preprocess(image) for image in images])
        expected = model(pixel_values=pixels).pooler_output.flatten(1).numpy()
    np.testing.assert_allclose(encoder.encode(images), expected, rtol=1e-4, atol=1e-5)
    check_image_encoder(encoder)


def test_the_network_loads_on_first_use_only(registry, tiny_resnet_dir, monkeypatch):
    from transformers import ResNetModel

    loads = count_loads(monkeypatch, ResNetModel)
    directory, _ = tiny_resnet_dir
    encoder = registry.create("image-encoders", "resnet18", weights=str(directory),
                              image_size=32, precision="fp32")
    # what a run with cached features needs: no weights read
    assert encoder.fingerprint() and encoder.dim == 16 and loads == []
    assert encoder.encode(sample_images(2)).shape == (2, 16) and len(loads) == 1


def test_a_damaged_weights_file_fails_in_one_line_naming_the_directory(registry,
                                                                      tiny_resnet_dir,
                                                                      tmp_path):
    directory = damaged_copy(tiny_resnet_dir[0], tmp_path)
    encoder = registry.create("image-encoders", "resnet18", weights=str(directory),
                              image_size=32)
    with pytest.raises(RavlmError, match=f"cannot load a ResNet from {directory} "
                                         r"\(SafetensorError: .*save_pretrained") as caught:
        encoder.encode(sample_images(1))  # the network loads on first use
    assert "\n" not in str(caught.value)


def test_fingerprint_covers_weights_preprocessing_and_precision(registry, tiny_resnet_dir):
    directory, _ = tiny_resnet_dir

    def fp(**params):
        return registry.create("image-encoders", "resnet18", **params).fingerprint()

    base = fp(weights=str(directory), image_size=32, precision="fp32")
    assert base == fp(weights=str(directory), image_size=32, precision="fp32", batch_size=3)
    assert base != fp(weights=str(directory), image_size=40, precision="fp32")
    assert base != fp(weights=str(directory), image_size=32, precision="bf16")
    assert fp(image_size=32, seed=0) != fp(image_size=32, seed=1)


def test_random_init_says_so_once_and_is_seeded(registry, caplog):
    with caplog.at_level(logging.WARNING):
        a = registry.create("image-encoders", "resnet18", image_size=32, seed=3,
                            precision="fp32")
    assert sum("randomly initialised" in r.message for r in caplog.records) == 1
    b = registry.create("image-encoders", "resnet18", image_size=32, seed=3, precision="fp32")
    images = sample_images(2)
    np.testing.assert_array_equal(a.encode(images), b.encode(images))


def test_bf16_agrees_with_fp32(registry):
    images = sample_images(6, size=96)
    fp32 = registry.create("image-encoders", "resnet18", image_size=96, precision="fp32")
    bf16 = registry.create("image-encoders", "resnet18", image_size=96, precision="bf16")
    assert cosine(fp32.encode(images), bf16.encode(images)).min() >= 0.99


@pytest.mark.skipif(cxx_compiler() is None, reason="torch.compile on a CPU needs a C++ compiler")
def test_compiled_encoder_agrees_with_eager_and_has_its_own_fingerprint(registry,
                                                                      tiny_resnet_dir):
    directory, _ = tiny_resnet_dir
    # bf16 where oneDNN computes it (as the suites run), else fp32: both prepack when frozen
    params = {"weights": str(directory), "image_size": 32, "batch_size": 4,
              "precision": "bf16" if _cpu_has_bf16() else "fp32"}
    eager = registry.create("image-encoders", "resnet18", **params)
    compiled = registry.create("image-encoders", "resnet18", compile=True, **params)
    images = sample_images(6)  # a full batch and a short one, padded to the same shape
    features = compiled.encode(images)
    assert features.shape == (6, 16)
    assert cosine(features, eager.encode(images)).min() >= 0.99
    np.testing.assert_array_equal(compiled.encode(images[4:]), features[4:])
    assert compiled.fingerprint() != eager.fingerprint()
    # frozen: prepacked oneDNN convolutions, ReLU and add fused in
    ops = operators_called(lambda: compiled.encode(images))
    assert "mkldnn::_convolution_pointwise" in ops and "aten::convolution" not in ops
    with pytest.raises(RavlmError, match="compile=true is for inference"):
        registry.create("image-encoders", "resnet18", compile=True, trainable=True)


def operators_called(fn) -> set[str]:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return {event.key for event in prof.key_averages()}


def test_compile_without_a_compiler_says_how_to_fix_it(registry, monkeypatch):
    import ravlm_plugins.image_encoders as image_encoders

    monkeypatch.setattr(image_encoders, "cxx_compiler", lambda: None)
    encoder = registry.create("image-encoders", "resnet18", image_size=32, compile=True)
    with pytest.raises(RavlmError, match="needs a C\\+\\+ compiler.*compile=false"):
        encoder.encode(sample_images(1))


def test_preprocessing_resizes_shorter_side_and_centre_crops(registry):
    encoder = registry.create("image-encoders", "resnet18", image_size=32, precision="fp32")
    wide = Image.new("RGB", (300, 100), (255, 0, 0))
    wide.paste((0, 0, 255), (0, 0, 100, 100))  # a blue left third, cropped away
    pixels = encoder.preprocess(wide)
    assert pixels.shape == (3, 32, 32) and pixels.dtype == torch.float32
    red = (1.0 - 0.485) / 0.229
    assert torch.allclose(pixels[0], torch.full((32, 32), red), atol=1e-5)
    gray = Image.new("L", (20, 50), 128)  # other modes are converted to RGB
    assert encoder.preprocess(gray).shape == (3, 32, 32)
    assert encoder.encode([]).shape == (0, 512)
    # DataLoader workers get the preprocessing, never the model
    assert len(pickle.dumps(encoder.preprocess)) < 1000


@pytest.mark.parametrize("size", [(640, 480), (333, 500), (97, 150)])
def test_resampling_the_crop_box_matches_resizing_then_cropping(registry, size):
    encoder = registry.create("image-encoders", "resnet18", precision="fp32")
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    scale = 256 / min(size)
    resized = photo.resize((max(224, round(size[0] * scale)), max(224, round(size[1] * scale))),
                           Image.Resampling.BILINEAR)
    left, top = (resized.width - 224) // 2, (resized.height - 224) // 2
    expected = np.asarray(resized.crop((left, top, left + 224, top + 224)), np.float32)
    mean, std = np.array(IMAGENET_MEAN), np.array(IMAGENET_STD)
    grey_levels = (encoder.preprocess(photo).permute(1, 2, 0).numpy() * std + mean) * 255
    assert np.abs(grey_levels - expected).max() <= 1.0 + 1e-3


@pytest.mark.parametrize("params, message", [
    ({"image_sise": 64}, "unknown parameter 'image_sise'; did you mean 'image_size'?"),
    ({"precision": "fp8"}, "parameter 'precision' = \"fp8\": expected one of \"auto\""),
    ({"batch_size": 0}, "parameter 'batch_size' = 0: must be >= 1"),
    ({"compile": "yes"}, "parameter 'compile' = \"yes\": expected true or false"),
    ({"dim": 512}, "parameter 'dim' is set by the harness"),
])
def test_suite_parameters_are_checked_against_the_declared_options(registry, params, message):
    entry = registry.get("image-encoders", "resnet50")
    entry.check({"weights": "~/models/resnet-50", "precision": "bf16", "compile": True},
                "suite.toml")
    with pytest.raises(RavlmError, match=re.escape(message)):
        entry.check(params, "suite.toml [defaults.image_encoder]")


def test_missing_weights_explain_how_to_provide_them(registry, tmp_path):
    with pytest.raises(RavlmError, match="save_pretrained"):
        registry.create("image-encoders", "resnet50", weights=str(tmp_path / "nowhere"))
    with pytest.raises(RavlmError, match="allow_download"):
        registry.create("image-encoders", "resnet50", weights="microsoft/resnet-50")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RavlmError, match="no config.json"):
        registry.create("image-encoders", "resnet18", weights=str(tmp_path / "empty"))
    (tmp_path / "empty" / "config.json").write_text('{"model_type": "resnet"}')
    with pytest.raises(RavlmError, match="cannot load a ResNet from"):
        registry.create("image-encoders", "resnet18", weights=str(tmp_path / "empty"))
    with pytest.raises(RavlmError, match="precision"):
        registry.create("image-encoders", "resnet18", precision="fp8")


def test_cli_lists_the_image_encoders(capsys):
    assert main(["list", "image-encoders"]) == 0
    out = capsys.readouterr().out
    assert "resnet18" in out and "resnet50" in out
