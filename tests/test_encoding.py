"""encode_images / encode_texts: workers, fallbacks, contract checks, bad image files."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ravlm_bench.foundation.errors import DataError
from ravlm_bench.plugin_host.contracts import ContractViolation
from ravlm_bench.plugin_host.host import get_plugin_manager
from ravlm_bench.plugin_host.registry import Registry
from ravlm_bench.stages.encoding import encode_images, encode_texts, find_undecodable
from ravlm_bench.testing import sample_images


@pytest.fixture(scope="module")
def resnet():
    registry = Registry(get_plugin_manager())
    return registry.create("image-encoders", "resnet18", image_size=32, precision="fp32")


@pytest.fixture
def image_files(tmp_path):
    paths = []
    for i, image in enumerate(sample_images(7, size=40)):
        path = tmp_path / (f"{i}.png" if i % 2 else f"{i}.jpg")
        image.save(path)
        paths.append(str(path))
    return paths


class MeanColour:
    """An encoder with only the public API (no preprocess): the PIL fallback path."""

    dim = 3

    def __init__(self, result=None):
        self.result = result

    def encode(self, images):
        if self.result is not None:
            return self.result
        return np.stack([np.asarray(image, np.float32).mean((0, 1)) for image in images])


@pytest.mark.parametrize("workers", [0, 1])
def test_workers_give_the_same_features_as_encode(resnet, image_files, workers):
    features = encode_images(resnet, image_files, batch_size=3, num_workers=workers,
                             progress=False)
    expected = resnet.encode([Image.open(p).convert("RGB") for p in image_files])
    np.testing.assert_allclose(features, expected, rtol=1e-4, atol=1e-5)


def test_encoders_without_preprocess_get_pil_images(image_files):
    features = encode_images(MeanColour(), image_files, batch_size=2, num_workers=0,
                             progress=False)
    expected = [np.asarray(Image.open(p).convert("RGB"), np.float32).mean((0, 1))
                for p in image_files]
    np.testing.assert_allclose(features, np.stack(expected), rtol=1e-6)
    assert encode_images(MeanColour(), [], progress=False).shape == (0, 3)


def test_missing_or_corrupt_images_are_data_errors_naming_the_file(image_files, tmp_path):
    missing = str(tmp_path / "gone.jpg")
    with pytest.raises(DataError, match="gone.jpg: file not found"):
        encode_images(MeanColour(), image_files[:2] + [missing], num_workers=1, progress=False)
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"not a jpeg at all")
    with pytest.raises(DataError, match="garbage.jpg: cannot decode"):
        encode_images(MeanColour(), [str(garbage)], num_workers=0, progress=False)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(open(image_files[0], "rb").read()[:300])
    with pytest.raises(DataError, match="truncated.jpg: cannot decode"):
        encode_images(MeanColour(), [str(truncated)], num_workers=0, progress=False)


def truncate_half(path) -> str:
    """A real JPEG whose header is intact and whose scan data stops halfway."""
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[:len(data) // 2])
    return str(path)


@pytest.fixture
def with_bad_files(image_files, tmp_path):
    """The seven images with a half JPEG at index 2 and a missing file at 3 (one batch of 2)."""
    noise = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "half.jpg", quality=95)
    paths = list(image_files)
    paths.insert(2, truncate_half(tmp_path / "half.jpg"))
    paths.insert(3, str(tmp_path / "gone.jpg"))
    return paths


def test_default_is_still_a_one_line_data_error_for_a_truncated_jpeg(with_bad_files):
    with pytest.raises(DataError) as info:
        encode_images(MeanColour(), with_bad_files, batch_size=2, num_workers=0,
                      progress=False)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"image {with_bad_files[2]}: cannot decode (OSError: image file "
                              "is truncated")


def test_find_undecodable_names_what_encoding_would_fail_on(with_bad_files, tmp_path,
                                                            monkeypatch):
    from PIL import ImageFile

    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"\x89PNG not really")
    paths = with_bad_files + [str(garbage)]
    # a library that makes PIL pad truncated files must not hide them from the check
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    failed = find_undecodable(paths, workers=2)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # the caller's setting is left alone
    assert sorted(failed) == [2, 3, 9]
    assert failed[2].startswith("cannot decode (OSError: image file is truncated")
    assert failed[3] == "file not found"
    assert failed[9].startswith("cannot decode (UnidentifiedImageError")
    assert find_undecodable([]) == {}


def test_contract_violations_propagate(image_files):
    with pytest.raises(ContractViolation, match="shape"):
        encode_images(MeanColour(np.zeros((1, 3), np.float32)), image_files[:2],
                      num_workers=0, progress=False)
    with pytest.raises(ContractViolation, match="NaN"):
        encode_images(MeanColour(np.full((2, 3), np.nan, np.float32)), image_files[:2],
                      num_workers=0, progress=False)


class LengthEncoder:
    dim = 2

    def encode(self, texts):
        return np.array([[len(t), t.count(" ")] for t in texts], np.float32)


def test_encode_texts_keeps_order_across_batches():
    texts = [f"text {'x ' * i}" for i in range(11)]
    features = encode_texts(LengthEncoder(), texts, batch_size=4, progress=False)
    np.testing.assert_array_equal(features, LengthEncoder().encode(texts))
    assert encode_texts(LengthEncoder(), [], progress=False).shape == (0, 2)


def test_encode_texts_checks_dtype():
    class Float64(LengthEncoder):
        def encode(self, texts):
            return super().encode(texts).astype(np.float64)

    with pytest.raises(ContractViolation, match="float64"):
        encode_texts(Float64(), ["a"], progress=False)
