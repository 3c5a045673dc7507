"""encode_images / encode_texts: workers, fallbacks, contract checks, bad image files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ravlm_bench.foundation.errors import DataError
from ravlm_bench.plugin_host.contracts import ContractViolation
from ravlm_bench.plugin_host.host import get_plugin_manager
from ravlm_bench.plugin_host.registry import Registry
from ravlm_bench.stages.encoding import (
    ImageFiles,
    decode_image,
    encode_images,
    encode_texts,
    find_undecodable,
)
from ravlm_bench.testing import sample_images
from ravlm_plugins.image_encoders import ImagePreprocess


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


# -- decoding a large JPEG at the size the resize needs (Image.draft) ---------------------

def photo_jpeg(path, width: int, height: int, seed: int = 0) -> str:
    """A photo-sized JPEG of noise and discs (what the encoder benchmark decodes)."""
    from PIL import ImageDraw

    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 60, (height, width, 3), dtype=np.uint8)
    image = Image.fromarray(noise + rng.integers(0, 190, 3, dtype=np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x, y = rng.integers(0, width - width // 8), rng.integers(0, height - height // 8)
        draw.ellipse([x, y, x + width // 8, y + width // 8],
                     fill=tuple(rng.integers(0, 255, 3).tolist()))
    image.save(path, quality=90)
    return str(path)


def demo_preprocessing() -> dict:
    """The demo's encoders' preprocessing at image_size 128: EfficientNet-Lite0 (resized
    to 160, bicubic) and ResNet-18 (resized to 146, bilinear)."""
    from ravlm_plugins.efficientnet import CROP_PADDING, LITE_MEAN, LITE_STD

    return {"efficientnet": ImagePreprocess(128 + CROP_PADDING, 128, mean=LITE_MEAN,
                                            std=LITE_STD, interpolation="bicubic"),
            "resnet": ImagePreprocess(round(128 * 256 / 224), 128)}


class SizeRecorder:
    """A preprocess that records the size of each image handed to it."""

    def __init__(self, preprocess):
        self.inner, self.sizes = preprocess, []
        self.decode_size = preprocess.decode_size

    def __call__(self, image):
        self.sizes.append(image.size)
        return self.inner(image)


@pytest.mark.parametrize("name", ["efficientnet", "resnet"])
def test_demo_sized_jpegs_decode_exactly_as_without_the_hint(tmp_path, name):
    # under twice the resize target nothing is DCT-scaled: the demo world's 128 x 128
    # JPEGs give the very tensors, bit for bit, of decoding them in full
    preprocess = demo_preprocessing()[name]
    paths = []
    for i, image in enumerate(sample_images(4, size=128)):
        image.save(tmp_path / f"{i}.jpg")
        paths.append(str(tmp_path / f"{i}.jpg"))
    paths.append(photo_jpeg(tmp_path / "noise.jpg", 128, 128))
    recorder = SizeRecorder(preprocess)
    hinted = [ImageFiles(paths, recorder)[i] for i in range(len(paths))]
    assert recorder.sizes == [(128, 128)] * len(paths)
    for path, (_, tensor, error) in zip(paths, hinted, strict=True):
        assert error is None
        assert torch.equal(tensor, preprocess(decode_image(path)[0]))


def test_a_photo_is_decoded_dct_scaled_and_gives_nearly_the_same_tensor(tmp_path):
    from ravlm_plugins.efficientnet import LITE_STD

    preprocess = demo_preprocessing()["efficientnet"]
    assert preprocess.decode_size(640, 480) == (214, 160)
    path = photo_jpeg(tmp_path / "photo.jpg", 640, 480)
    recorder = SizeRecorder(preprocess)
    _, drafted, error = ImageFiles([path], recorder)[0]
    assert error is None and recorder.sizes == [(320, 240)]  # 1/2: 1/4 would be under 214
    full = preprocess(decode_image(path)[0])
    assert drafted.shape == full.shape == (3, 128, 128)
    grey_levels = (drafted - full).abs() * torch.tensor(LITE_STD).view(3, 1, 1) * 255
    # measured on four such photos: a mean of 1.25-1.31 grey levels, at most 14-20
    assert 0 < grey_levels.mean() < 2.0 and grey_levels.max() < 40
    # at the weights' own 224 px (resized to 256) a 640 x 480 photo decodes in full
    pre_224 = ImagePreprocess(256, 224, interpolation="bicubic")
    assert torch.equal(ImageFiles([path], pre_224)[0][1], pre_224(decode_image(path)[0]))
    assert preprocess.describe()["jpeg_draft"] == "DCT-scaled to >= resize_shorter"


def test_decode_size_is_the_resized_size_rounded_up():
    preprocess = ImagePreprocess(160, 128)
    assert preprocess.decode_size(640, 480) == (214, 160)
    assert preprocess.decode_size(480, 640) == (160, 214)
    assert preprocess.decode_size(100, 50) == (320, 160)  # an upscale: decoded in full
    assert ImagePreprocess(64, 100).decode_size(1000, 500) == (128, 100)  # never under crop
    assert ImagePreprocess(1, 1).decode_size(10_000, 1) == (10_000, 1)


def test_the_fingerprint_says_jpegs_are_dct_scaled(resnet, monkeypatch):
    # features cached from full decoding are never reused for DCT-scaled ones
    assert "jpeg_draft" in resnet.preprocessing()
    drafted = resnet.fingerprint()
    describe = ImagePreprocess.describe

    def without_the_key(self):
        return {k: v for k, v in describe(self).items() if k != "jpeg_draft"}

    monkeypatch.setattr(ImagePreprocess, "describe", without_the_key)
    monkeypatch.setattr(resnet, "_fingerprint", None)
    assert resnet.fingerprint() != drafted


def test_bad_files_fail_alike_with_the_hint(tmp_path):
    preprocess = demo_preprocessing()["efficientnet"]
    photo = photo_jpeg(tmp_path / "photo.jpg", 640, 480)
    png = tmp_path / "photo.png"
    Image.open(photo).save(png)  # other formats ignore the hint: decoded in full
    truncated = truncate_half(photo_jpeg(tmp_path / "half.jpg", 640, 480, seed=1))
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"not a jpeg at all")
    paths = [truncated, str(garbage), str(tmp_path / "gone.jpg"), str(png), photo]
    hinted = [ImageFiles(paths, preprocess)[i] for i in range(len(paths))]
    assert [error for _, _, error in hinted] == [decode_image(p)[1] for p in paths]
    assert hinted[0][2].startswith("cannot decode (OSError: image file is truncated")
    assert hinted[1][2].startswith("cannot decode (UnidentifiedImageError")
    assert hinted[2][2] == "file not found"
    assert torch.equal(hinted[3][1], preprocess(decode_image(str(png))[0]))
    # the pixel limit is the header's size, not the DCT-scaled one (320 x 240)
    assert ImageFiles([photo], preprocess, max_pixels=250_000)[0][2] == (
        "too large: 640 x 480 = 307,200 pixels, over max_image_pixels 250,000")
