"""The image-size policy: an image whose header announces more pixels than
``max_image_pixels``, or that any decoder error refuses (decompression bombs included), is a
bad image, named before its pixels are decoded: a one-line error (exit 2) by default,
skipped under ``on_bad_image = "skip"``; ``data check`` lists it and exits non-zero."""

from __future__ import annotations

import json
import resource
import struct
import textwrap
import warnings
import zlib

import numpy as np
import pytest
from clitools import run_cli
from testhelpers import TINY_SUITE_HEAD

from ravlm_bench.foundation.errors import ConfigError, DataError
from ravlm_bench.stages.bad_images import pixel_limit
from ravlm_bench.stages.encoding import (
    DEFAULT_MAX_IMAGE_PIXELS,
    decode_image,
    encode_images,
    find_undecodable,
)

# demo images are 128 x 128 (16,384 pixels): this limit passes them and refuses 200 x 200
SMALL_LIMIT = 20_000


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data)))


def header_only_png(width: int, height: int) -> bytes:
    """A PNG of a few dozen bytes whose header announces ``width`` x ``height`` RGB pixels
    (and which has no pixel data at all)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IEND", b"")


def real_png(path, side: int = 200) -> None:
    """A genuine, fully decodable ``side`` x ``side`` image."""
    from PIL import Image

    noise = np.random.default_rng(0).integers(0, 255, (side, side, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path, "PNG")


class MeanColour:
    dim = 3

    def encode(self, images):
        return np.stack([np.asarray(i, np.float32).mean(axis=(0, 1)) for i in images])


@pytest.fixture
def bomb(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(header_only_png(30_000, 30_000))
    return str(path)


@pytest.fixture
def large(tmp_path):
    path = tmp_path / "large.png"
    real_png(path)
    return str(path)


def test_a_header_only_bomb_is_refused_from_its_header(bomb):
    assert len(open(bomb, "rb").read()) < 100
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    image, why = decode_image(bomb)
    assert image is None
    assert why == f"too large: the header announces more than max_image_pixels " \
                  f"{DEFAULT_MAX_IMAGE_PIXELS:,}"
    # nothing was decoded: 900 million pixels would have taken 2.7 GB
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # KiB
    assert find_undecodable([bomb], workers=1) == {0: why}


def test_a_real_image_over_a_configured_limit_is_refused_and_under_it_decodes(large):
    assert decode_image(large)[0].size == (200, 200)
    assert decode_image(large, SMALL_LIMIT) == (
        None, f"too large: 200 x 200 = 40,000 pixels, over max_image_pixels {SMALL_LIMIT:,}")
    assert list(find_undecodable([large], workers=1, max_pixels=SMALL_LIMIT)) == [0]
    with pytest.raises(DataError, match=rf"^image {large}: too large: 200 x 200"):
        encode_images(MeanColour(), [large], num_workers=0, progress=False,
                      max_pixels=SMALL_LIMIT)


@pytest.mark.parametrize("side", [10_000, 15_000])  # over Pillow's warning; over its error
def test_no_raw_pillow_warning_reaches_the_user(tmp_path, side):
    from ravlm_plugins.datasets._images import check_images

    path = tmp_path / f"{side}.png"
    path.write_bytes(header_only_png(side, side))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert decode_image(str(path))[1].startswith("too large: ")
        check = check_images([str(path)], DEFAULT_MAX_IMAGE_PIXELS)
    assert check.bad[0][1].startswith("too large: ") and check.sizes == [None]
    assert [w for w in caught if "DecompressionBomb" in w.category.__name__] == []
    # and the filter was only in force during the calls
    assert not any(f[2].__name__ == "DecompressionBombWarning" for f in warnings.filters)


@pytest.fixture(params=["bomb", "large"])
def bad_tree(request, demo_copy):
    """A COCO tree with one image replaced: (root, its path in the tree, data check's extra
    arguments, the dataset options giving the same limit, the start of its reason)."""
    root = demo_copy("coco")
    victim = sorted((root / "val2017").glob("*.jpg"))[0]
    if request.param == "bomb":
        victim.write_bytes(header_only_png(30_000, 30_000))
        return root, f"val2017/{victim.name}", [], {}, "too large: the header announces"
    real_png(victim)
    return (root, f"val2017/{victim.name}", ["--max-image-pixels", str(SMALL_LIMIT)],
            {"max_image_pixels": SMALL_LIMIT}, "too large: 200 x 200 = 40,000 pixels")


def test_data_check_fails_naming_the_image_by_default(bad_tree, tmp_path):
    root, victim, limit, _, reason = bad_tree
    result = run_cli("data", "check", str(root), "--format", "coco", *limit,
                     cache=tmp_path / "cache")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert f"1 image files are missing, corrupt or too large: {victim} ({reason}" \
        in result.stderr
    assert "Warning" not in result.stderr


def test_data_check_under_skip_lists_the_image_and_still_exits_2(bad_tree, tmp_path):
    root, victim, limit, _, reason = bad_tree
    result = run_cli("data", "check", str(root), "--format", "coco", "--on-bad-image",
                     "skip", *limit, cache=tmp_path / "cache")
    assert result.returncode == 2
    listed = [line for line in result.stdout.splitlines() if line.startswith(f"  - {victim}")]
    assert len(listed) == 1 and listed[0].startswith(f"  - {victim}: {reason}")
    assert "1 image files skipped (missing, corrupt or too large):" in result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: coco (")
    assert "1 image files are missing, corrupt, too large or cannot be decoded" \
        in result.stderr
    report = run_cli("data", "check", str(root), "--format", "coco", "--on-bad-image",
                     "skip", "--json", *limit, cache=tmp_path / "cache")
    assert report.returncode == 2
    skipped = json.loads(report.stdout)["skipped_images"]
    assert [entry["path"] for entry in skipped] == [victim]
    assert skipped[0]["error"].startswith(reason)


def test_the_dataset_skips_it_with_its_records_and_keeps_its_limit(bad_tree, registry):
    root, victim, _, options, reason = bad_tree
    with pytest.raises(DataError, match=f"{victim} \\({reason}"):
        registry.create("datasets", "coco", root=str(root), **options)
    coco = registry.create("datasets", "coco", root=str(root), on_bad_image="skip", **options)
    assert [path for path, _ in coco.bad_images] == [victim]
    assert coco.bad_images[0][1].startswith(reason)
    assert victim not in {p[len(str(root)) + 1:] for split in coco.splits()
                          for p in coco.table("images", split)["image_path"]}
    assert pixel_limit(coco) == options.get("max_image_pixels", DEFAULT_MAX_IMAGE_PIXELS)


def test_without_image_checks_the_harness_decoding_applies_the_dataset_limit(
        demo_copy, registry, tmp_path):
    root = demo_copy("coco")
    victim = sorted((root / "val2017").glob("*.jpg"))[0]
    real_png(victim)
    coco = registry.create("datasets", "coco", root=str(root), check_images=False,
                           max_image_pixels=SMALL_LIMIT)
    assert coco.bad_images == []
    paths = [str(victim), str(sorted((root / "val2017").glob("*.jpg"))[1])]
    assert find_undecodable(paths, workers=1, max_pixels=pixel_limit(coco)) == {
        0: f"too large: 200 x 200 = 40,000 pixels, over max_image_pixels {SMALL_LIMIT:,}"}


@pytest.mark.parametrize("limit", [0, -5, True])
def test_the_limit_must_be_a_positive_number_of_pixels(demo_world, registry, limit):
    with pytest.raises(ConfigError, match=r"max_image_pixels=.*expected a positive number"):
        registry.create("datasets", "coco", root=str(demo_world / "coco"),
                        max_image_pixels=limit)


SUITE = TINY_SUITE_HEAD + """
[systems.knn-exact]
retriever = "exact"
fusion_head = {{ name = "knn", k = 5 }}

[systems.concat]
fusion_head = {{ name = "concat", epochs = 1, hidden = 16 }}

[tasks.coco-category]
"""


def test_a_run_fails_naming_the_bomb_or_skips_it(demo_copy, tmp_path):
    coco = demo_copy("coco")
    victim = sorted((coco / "val2017").glob("*.jpg"))[0]
    victim.write_bytes(header_only_png(30_000, 30_000))
    suite = tmp_path / "bomb.toml"
    suite.write_text(textwrap.dedent(SUITE.format(name="bomb", root=tmp_path)))
    failed = run_cli("run", str(suite), "--out", str(tmp_path / "failed"), "-q",
                     cache=tmp_path / "cache")
    assert failed.returncode == 2
    assert len(failed.stderr.strip().splitlines()) == 1
    assert f"val2017/{victim.name} (too large: the header announces" in failed.stderr
    suite.write_text(suite.read_text().replace(
        f'root = "{tmp_path}/coco"', f'root = "{coco}"\non_bad_image = "skip"'))
    skipped = run_cli("run", str(suite), "--out", str(tmp_path / "skipped"), "-q",
                      cache=tmp_path / "cache")
    assert skipped.returncode == 0, skipped.stderr
    assert "Warning" not in skipped.stderr
    cell = json.loads((tmp_path / "skipped/cells/coco-category/knn-exact/seed-0.json")
                      .read_text())
    assert cell["status"] == "ok"
